"""Monitoring on real data: a linear model trained on green 2021-01, batches from later months.

The changed months are built here from a real month (February) by moving its clock or
dropping part of its trips, then written as TLC parquet files and read back through the
pipeline's own loading and inference steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taxi import (
    evaluate_model,
    load_data,
    predict,
    process_inference_data,
    process_train_data,
    run_training,
)
from taxi.monitoring import (
    CATEGORICAL_FEATURES,
    DEFAULT_THRESHOLD,
    batch_record,
    drifted_statistics,
    reference_statistics,
)
from taxi.monitoring_plot import monitoring_plot
from taxi.zones import load_zone_lookup
from tests.paths import GREEN_FEB, GREEN_JAN, GREEN_MAR

PICKUP, DROPOFF = "lpep_pickup_datetime", "lpep_dropoff_datetime"


@pytest.fixture(scope="module")
def trained():
    return run_training(str(GREEN_JAN), str(GREEN_FEB))


@pytest.fixture(scope="module")
def reference(trained) -> dict:
    train = trained.train
    return reference_statistics(
        train.trips, predict(trained.model, train.X), include_trip_distance=True
    )


def monitor(trained, reference: dict, source: str, **kwargs) -> dict:
    """What the inference flow does: predict every trip of the file, then compare."""
    processed = process_inference_data(source, trained.vectorizer)
    predictions = predict(trained.model, processed.X)
    return batch_record(reference, load_data(source), predictions, source, "v-test", **kwargs)


def changed_month(tmp_path: Path, name: str, change) -> str:
    """February as a TLC parquet file, with `change` applied to its raw columns."""
    trips = change(pd.read_parquet(GREEN_FEB))
    path = tmp_path / f"green_tripdata_{name}.parquet"
    trips.reset_index(drop=True).to_parquet(path)
    return str(path)


def clock_moved(hours: int):
    def change(trips: pd.DataFrame) -> pd.DataFrame:
        shift = pd.Timedelta(hours=hours)
        return trips.assign(**{PICKUP: trips[PICKUP] + shift, DROPOFF: trips[DROPOFF] + shift})

    return change


def statistics(record: dict) -> dict[str, dict]:
    return {
        **record["features"],
        "predictions": record["prediction_drift"],
        "target": record["target_drift"],
    }


@pytest.mark.parametrize("month", [GREEN_FEB, GREEN_MAR], ids=["2021-02", "2021-03"])
def test_later_months_report_the_training_flows_test_rmse_and_no_drift(trained, reference, month):
    test = process_train_data(str(month), trained.vectorizer)
    expected_rmse = evaluate_model(trained.model, test.X, test.y)

    record = monitor(trained, reference, str(month))

    assert record["realized_rmse"] == pytest.approx(expected_rmse, abs=1e-6)
    assert record["realized_rows"] == test.rows_kept
    assert record["rows"] == test.rows_read  # every trip of the file, before the filter
    assert record["input"] == str(month) and record["model_version"] == "v-test"
    assert set(record["features"]) == {*CATEGORICAL_FEATURES, "trip_distance"}
    for name, statistic in statistics(record).items():
        assert statistic["statistic"] == "jensen_shannon"
        assert statistic["threshold"] == DEFAULT_THRESHOLD, (
            name
        )  # whole months: the noise is far below it
        assert 0 < statistic["value"] < 0.07, name  # measured: at most 0.066 (day of week, March)
        assert statistic["drift"] is False, name
    assert record["drift_detected"] is False
    assert drifted_statistics(record) == []
    json.dumps(record, allow_nan=False)


def test_february_rmse_is_the_readme_figure(trained, reference):
    record = monitor(trained, reference, str(GREEN_FEB))
    assert record["realized_rmse"] == pytest.approx(trained.rmse_test, abs=1e-6)
    assert round(record["realized_rmse"], 4) == 10.4475


def test_a_month_with_its_clock_moved_an_hour_is_flagged_on_the_pickup_hour(
    trained, reference, tmp_path
):
    record = monitor(trained, reference, changed_month(tmp_path, "clock", clock_moved(1)))

    assert record["drift_detected"] is True
    assert drifted_statistics(record) == ["pickup_hour"]
    assert record["features"]["pickup_hour"]["value"] > DEFAULT_THRESHOLD
    # The linear model does not use the time: its predictions and error are February's.
    assert record["realized_rmse"] == pytest.approx(trained.rmse_test, abs=1e-6)


def test_a_month_with_half_its_manhattan_pickups_gone_is_flagged_on_the_zones(
    trained, reference, tmp_path
):
    manhattan = set(load_zone_lookup().query("Borough == 'Manhattan'")["LocationID"])

    def drop_half_of_manhattan(trips: pd.DataFrame) -> pd.DataFrame:
        in_manhattan = trips["PULocationID"].isin(manhattan).to_numpy()
        dropped = in_manhattan & (np.random.default_rng(0).random(len(trips)) < 0.5)
        return trips[~dropped]

    record = monitor(trained, reference, changed_month(tmp_path, "zones", drop_half_of_manhattan))

    assert record["drift_detected"] is True
    assert {"pickup_zone", "pickup_borough"} <= set(drifted_statistics(record))
    assert not record["features"]["pickup_hour"]["drift"]


def test_a_file_without_dropoff_times_has_no_realized_rmse_but_still_reports_drift(
    trained, reference, tmp_path
):
    def no_dropoffs(trips: pd.DataFrame) -> pd.DataFrame:
        moved = clock_moved(3)(trips)
        return moved.assign(
            **{DROPOFF: pd.Series(pd.NaT, index=trips.index, dtype=trips[DROPOFF].dtype)}
        )

    record = monitor(trained, reference, changed_month(tmp_path, "no-dropoff", no_dropoffs))

    assert record["realized_rmse"] is None
    assert record["realized_rows"] == 0
    assert record["target_drift"] is None
    assert record["rows"] == len(pd.read_parquet(GREEN_FEB))
    assert record["drift_detected"] is True
    assert record["features"]["pickup_hour"]["drift"] is True
    assert record["prediction_drift"]["value"] is not None
    json.dumps(record, allow_nan=False)


def test_small_batches_are_judged_against_their_sampling_noise(trained, reference, tmp_path):
    def sample(trips: pd.DataFrame) -> pd.DataFrame:
        return trips.sample(1000, random_state=1)

    unchanged = monitor(trained, reference, changed_month(tmp_path, "sample", sample))
    zones = unchanged["features"]["pickup_zone"]
    # 1,000 trips from ~250 zones are far from January by chance alone (measured 0.22)...
    assert zones["value"] > DEFAULT_THRESHOLD
    assert zones["noise"] > DEFAULT_THRESHOLD and zones["threshold"] == pytest.approx(
        2 * zones["noise"], abs=1e-6
    )
    # ...which is not drift; a clock moved by three hours is, even in 1,000 trips.
    assert unchanged["drift_detected"] is False
    moved = monitor(
        trained,
        reference,
        changed_month(tmp_path, "sample-moved", lambda t: clock_moved(3)(sample(t))),
    )
    assert "pickup_hour" in drifted_statistics(moved)


def test_thresholds_are_configurable_and_checked(trained, reference):
    # March's day-of-week mix (five Mondays to Wednesdays) is 0.066 from January's; February's 0.042.
    strict = {"day_of_week": 0.05}
    assert drifted_statistics(monitor(trained, reference, str(GREEN_MAR), thresholds=strict)) == [
        "day_of_week"
    ]
    assert drifted_statistics(monitor(trained, reference, str(GREEN_FEB), thresholds=strict)) == []
    record = monitor(trained, reference, str(GREEN_FEB), thresholds=strict)
    assert record["features"]["day_of_week"]["configured_threshold"] == 0.05

    trips = load_data(str(GREEN_FEB))
    predictions = np.zeros(len(trips))
    with pytest.raises(ValueError, match="pickup_hours"):
        batch_record(reference, trips, predictions, "x", "v", thresholds={"pickup_hours": 0.1})
    with pytest.raises(ValueError, match="day_of_week"):
        batch_record(reference, trips, predictions, "x", "v", thresholds={"day_of_week": 0})


def test_unknown_zone_rows_count_trips_with_a_zone_never_seen_in_training(trained, reference):
    trips = load_data(str(GREEN_MAR))
    seen_pickup = set(trained.train.trips["PULocationID"])
    seen_dropoff = set(trained.train.trips["DOLocationID"])
    unseen = ~trips["PULocationID"].isin(seen_pickup) | ~trips["DOLocationID"].isin(seen_dropoff)
    assert unseen.sum() > 0  # March has a few

    record = monitor(trained, reference, str(GREEN_MAR))

    assert record["unknown_zone_rows"] == int(unseen.sum())


def test_the_reference_is_compact_and_holds_no_trips(trained, reference):
    encoded = json.dumps(reference, allow_nan=False)
    assert len(encoded) < 30_000
    assert reference["rows"] == trained.train.rows_kept
    for summary in [*reference["features"].values(), reference["target"], reference["predictions"]]:
        total = (
            sum(summary["counts"].values()) + summary["other"]
            if summary["kind"] == "categorical"
            else sum(summary["counts"])
        )
        assert total == trained.train.rows_kept  # counts of every training trip, no more
        assert len(summary["counts"]) <= 300
    assert (
        "trip_distance"
        not in reference_statistics(trained.train.trips, predict(trained.model, trained.train.X))[
            "features"
        ]
    )


def test_predictions_must_match_the_trips(reference):
    trips = load_data(str(GREEN_FEB))
    with pytest.raises(ValueError, match="1 values for 64572 trips"):
        batch_record(reference, trips, np.zeros(1), "x", "v")


def test_the_plot_shows_batches_with_and_without_realized_error(trained, reference, tmp_path):
    records = [
        monitor(trained, reference, str(GREEN_FEB)),
        monitor(
            trained,
            reference,
            changed_month(tmp_path, "no-dropoff", lambda t: t.assign(**{DROPOFF: pd.NaT})),
        ),
    ]
    assert records[1]["realized_rmse"] is None

    png = monitoring_plot(records)

    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    with pytest.raises(ValueError, match="at least one"):
        monitoring_plot([])
