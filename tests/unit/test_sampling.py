"""taxi.sampling: a uniform sample of rows over many batches, in bounded memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from taxi.sampling import UniformRowSample


def test_uniform_sample_is_bounded_uniform_across_batches_and_repeatable():
    batches = [
        pd.DataFrame({"batch": b, "row": np.arange(n)}) for b, n in enumerate((1_000, 3_000, 6_000))
    ]

    def draw(seed: int) -> pd.DataFrame:
        sample = UniformRowSample(2_000, seed=seed)
        for batch in batches:
            sample.add(batch)
        assert sample.rows_seen == 10_000 and sample.sampled
        return sample.rows

    rows = draw(7)
    assert len(rows) == 2_000
    assert not rows.duplicated().any()
    # In the order added: batch by batch, rows ascending within each.
    assert rows.sort_values(["batch", "row"]).index.tolist() == rows.index.tolist()
    shares = rows["batch"].value_counts(normalize=True).sort_index().to_numpy()
    assert np.allclose(shares, [0.1, 0.3, 0.6], atol=0.04)
    pd.testing.assert_frame_equal(rows, draw(7))
    assert not rows.equals(draw(8))


def test_uniform_sample_keeps_everything_below_its_size():
    sample = UniformRowSample(100)
    sample.add(pd.DataFrame({"x": range(30)}))
    sample.add(pd.DataFrame({"x": range(30, 60)}))
    assert sample.rows["x"].tolist() == list(range(60))
    assert not sample.sampled
    with pytest.raises(ValueError, match="at least 1"):
        UniformRowSample(0)
