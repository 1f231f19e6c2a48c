"""taxi.evaluation: the course baseline yardstick, the promotion rule, the evaluation plot."""

from __future__ import annotations

import pytest

from taxi import process_train_data
from taxi.evaluation import course_baseline_rmse, decide_promotion, evaluation_plot
from tests.paths import GREEN_FEB, GREEN_JAN


def test_course_baseline_rmse_is_the_course_figure():
    train = process_train_data(str(GREEN_JAN))
    test = process_train_data(str(GREEN_FEB), train.vectorizer)
    assert round(course_baseline_rmse(train.trips, test.trips), 4) == 10.4475


def test_promotion_rule_both_ways():
    first = decide_promotion(10.4, None, None, margin=0.1)
    assert first.promote and "no model" in first.reason
    better = decide_promotion(6.36, "v1", 10.4475, margin=0.1)
    assert better.promote and better.champion_version == "v1"
    within_margin = decide_promotion(10.40, "v1", 10.4475, margin=0.1)
    assert not within_margin.promote and "kept v1" in within_margin.reason
    worse = decide_promotion(11.0, "v1", 10.4475, margin=0.0)
    assert not worse.promote
    tie = decide_promotion(10.4475, "v1", 10.4475, margin=0.0)
    assert not tie.promote  # equal is not better
    with pytest.raises(ValueError):
        decide_promotion(1.0, "v1", 2.0, margin=-1)


def test_evaluation_plot_is_a_png():
    train = process_train_data(str(GREEN_FEB))
    png = evaluation_plot(train.trips, train.y, train.y + 1.0, "title")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
