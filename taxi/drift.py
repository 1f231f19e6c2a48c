"""How one batch's distribution is compared with the reference's (taxi.monitoring): the
Jensen-Shannon distance between two histograms, judged by the configured threshold, raised
for small batches to a multiple of the distance that sampling noise alone gives.

Why this distance, the threshold and the noise, with the measured values: docs/monitoring.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from taxi.records import CategoricalReference, DriftStatistic, NumericReference

STATISTIC = "jensen_shannon"
# A statistic is flagged only above this many times the distance sampling noise alone gives.
NOISE_MULTIPLIER = 2.0


def histogram(values: np.ndarray, edges: Sequence[float]) -> list[int]:
    """Counts of (-inf, e1), [e1, e2), ..., [em, inf), then of missing (NaN) values."""
    finite = np.isfinite(values)
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), values[finite], side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return [int(n) for n in counts] + [int((~finite).sum())]


def compare_categorical(
    summary: CategoricalReference, keys: pd.Series, threshold: float
) -> DriftStatistic:
    """A batch's category keys against the reference's counts (unseen keys count as "other")."""
    categories = list(summary["counts"])
    expected = np.array([*summary["counts"].values(), summary["other"]], dtype=np.float64)
    batch = keys.value_counts()
    observed = batch.reindex(categories, fill_value=0).to_numpy(dtype=np.float64)
    observed = np.append(observed, len(keys) - observed.sum())
    return _statistic(expected, observed, threshold)


def compare_numeric(
    summary: NumericReference, values: np.ndarray, threshold: float
) -> DriftStatistic:
    """A batch's values against the reference's histogram, on the reference's bin edges."""
    expected = np.asarray(summary["counts"], dtype=np.float64)
    observed = np.asarray(
        histogram(np.asarray(values, dtype=np.float64), summary["edges"]), dtype=np.float64
    )
    return _statistic(expected, observed, threshold)


def _statistic(expected: np.ndarray, observed: np.ndarray, threshold: float) -> DriftStatistic:
    """The distance, the threshold it is judged by (the configured one, raised to twice the
    sampling noise for small batches) and whether it is over it."""
    n_reference, n_batch = expected.sum(), observed.sum()
    if n_batch == 0 or n_reference == 0:
        return {
            "statistic": STATISTIC,
            "value": None,
            "threshold": threshold,
            "drift": False,
            "noise": None,
            "configured_threshold": threshold,
        }
    value = float(jensenshannon(expected / n_reference, observed / n_batch, base=2))
    buckets = int(np.count_nonzero(expected + observed))
    noise = math.sqrt(max(buckets - 1, 0) * (1 / n_batch + 1 / n_reference) / (8 * math.log(2)))
    effective = round(max(threshold, NOISE_MULTIPLIER * noise), 6)
    return {
        "statistic": STATISTIC,
        "value": round(value, 6),
        "threshold": effective,
        "drift": bool(value > effective),
        "noise": round(noise, 6),
        "configured_threshold": threshold,
    }
