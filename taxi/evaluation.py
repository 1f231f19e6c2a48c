"""Judging a trained model: the course baseline, the champion/challenger rule, and a plot."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from taxi.features import OneHotVectorizer
from taxi.model import evaluate_model, train_model
from taxi.steps import extract_x_y
from taxi.tlc import PICKUP


def course_baseline_rmse(train_trips: pd.DataFrame, test_trips: pd.DataFrame) -> float:
    """Test RMSE of the course model (one-hot zones and passenger count, linear regression)
    fitted on the same processed trips: the yardstick every model is reported against."""
    X_train, y_train, vectorizer = extract_x_y(train_trips, OneHotVectorizer())
    X_test, y_test, _ = extract_x_y(test_trips, vectorizer)
    return evaluate_model(train_model(X_train, y_train, "linear"), X_test, y_test)


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    challenger_rmse: float
    champion_version: str | None
    champion_rmse: float | None
    margin: float

    def as_dict(self) -> dict[str, bool | str | float | None]:
        return asdict(self)


def decide_promotion(
    challenger_rmse: float,
    champion_version: str | None,
    champion_rmse: float | None,
    margin: float,
    blocked: str | None = None,
) -> PromotionDecision:
    """Promote the new model only if it beats the current one by more than `margin` minutes
    of test RMSE on the same evaluation data (or if there is no current model), and nothing
    `blocked` it (e.g. a backfill run: the reason why not)."""
    if margin < 0:
        raise ValueError(f"the promotion margin must be >= 0 minutes, got {margin}")
    if blocked:
        return PromotionDecision(
            False,
            f"not promoted: {blocked}",
            challenger_rmse,
            champion_version,
            champion_rmse,
            margin,
        )
    if champion_version is None or champion_rmse is None:
        return PromotionDecision(
            True, "no model is published yet", challenger_rmse, None, None, margin
        )
    improvement = champion_rmse - challenger_rmse
    if improvement > margin:
        reason = f"test RMSE {challenger_rmse:.4f} beats the champion's {champion_rmse:.4f} by {improvement:.4f} > margin {margin:g}"
        return PromotionDecision(
            True, reason, challenger_rmse, champion_version, champion_rmse, margin
        )
    reason = (
        f"test RMSE {challenger_rmse:.4f} does not beat the champion's {champion_rmse:.4f} "
        f"by more than the margin {margin:g}: kept {champion_version} as latest"
    )
    return PromotionDecision(
        False, reason, challenger_rmse, champion_version, champion_rmse, margin
    )


def evaluation_plot(
    test_trips: pd.DataFrame, y_true: np.ndarray, y_pred: np.ndarray, title: str
) -> bytes:
    """PNG: predicted against actual minutes, and RMSE by pickup hour."""
    import matplotlib

    matplotlib.use("Agg")  # no display in workers and containers
    import matplotlib.pyplot as plt

    figure, (scatter, by_hour) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    scatter.hexbin(
        y_true, y_pred, gridsize=60, extent=(0, 60, 0, 60), bins="log", cmap="viridis", mincnt=1
    )
    scatter.plot([0, 60], [0, 60], color="white", linewidth=1, linestyle="--")
    scatter.set(
        xlabel="actual minutes",
        ylabel="predicted minutes",
        title="Predicted vs actual (test trips)",
    )
    hours = pd.to_datetime(test_trips[PICKUP]).dt.hour.to_numpy()
    squared = (np.asarray(y_pred) - np.asarray(y_true)) ** 2
    rmse_by_hour = np.sqrt(
        np.bincount(hours, weights=squared, minlength=24)
        / np.maximum(np.bincount(hours, minlength=24), 1)
    )
    by_hour.bar(np.arange(24), rmse_by_hour, color="#4c72b0")
    by_hour.set(
        xlabel="pickup hour",
        ylabel="RMSE (minutes)",
        title="Error by pickup hour",
        xticks=range(0, 24, 3),
    )
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
