"""A uniform sample of rows over many batches, in bounded memory."""

from __future__ import annotations

import numpy as np
import pandas as pd


class UniformRowSample:
    """At most `size` rows drawn uniformly from all the frames added, the same rows for the same
    frames, order and seed.

    Bottom-k sampling: every row draws a random key and the `size` smallest keys stay, so each
    row has the same chance whatever batch it came in, without knowing the total in advance.
    Memory is the sample plus one batch. Kept rows stay in the order they were added.
    """

    def __init__(self, size: int, seed: int = 0):
        if size < 1:
            raise ValueError(f"sample size must be at least 1, got {size}")
        self.size = size
        self.seed = seed
        self.rows_seen = 0
        self._batches = 0
        self._rows: pd.DataFrame | None = None
        self._keys = np.empty(0)

    def add(self, frame: pd.DataFrame) -> None:
        keys = np.random.default_rng([self.seed, self._batches]).random(len(frame))
        self._batches += 1
        self.rows_seen += len(frame)
        rows = (
            frame.reset_index(drop=True)
            if self._rows is None
            else pd.concat([self._rows, frame], ignore_index=True)
        )
        keys = np.concatenate([self._keys, keys])
        if len(rows) > self.size:
            keep = np.sort(np.argpartition(keys, self.size - 1)[: self.size])
            rows, keys = rows.take(keep).reset_index(drop=True), keys[keep]
        self._rows, self._keys = rows, keys

    @property
    def rows(self) -> pd.DataFrame:
        if self._rows is None:
            raise ValueError("no rows were added")
        return self._rows

    @property
    def sampled(self) -> bool:
        """Whether rows were left out (more were seen than the sample holds)."""
        return self.rows_seen > self.size
