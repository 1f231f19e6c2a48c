"""The moving training window (taxi.window) and the month helpers it rests on."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from taxi.errors import DataIntegrityError
from taxi.months import month_name, month_range, parse_month, shift_month
from taxi.window import TrainingWindow, WindowError, WindowPlan, plan_window, training_window

SHIPPED = [(2021, 1), (2021, 2), (2021, 3)]  # the green months in ./data


def test_mid_march_tests_on_february_and_trains_on_january():
    assert training_window(date(2021, 3, 15), SHIPPED) == TrainingWindow(
        train=((2021, 1),), test=(2021, 2)
    )


def test_early_april_tests_on_march_and_trains_on_february():
    window = training_window(date(2021, 4, 2), SHIPPED)
    assert window == TrainingWindow(train=((2021, 2),), test=(2021, 3))
    assert window.describe() == "train 2021-02; test 2021-03"


def test_two_training_months():
    window = training_window(date(2021, 4, 2), SHIPPED, train_months=2)
    assert window == TrainingWindow(train=((2021, 1), (2021, 2)), test=(2021, 3))


def test_the_newest_month_before_as_of_is_the_test_month_even_long_after_it():
    # Nothing newer ingested yet: a run in June still tests on March, the newest month there is.
    assert training_window(date(2021, 6, 30), SHIPPED).test == (2021, 3)
    # A datetime is a date; its month decides, not its time of day.
    assert training_window(datetime(2021, 3, 1, 0, 0, tzinfo=UTC), SHIPPED).test == (2021, 2)


def test_missing_training_months_are_named():
    with pytest.raises(
        WindowError, match="training months missing from the bucket: 2020-12, 2021-01"
    ):
        training_window(date(2021, 3, 15), [(2021, 2), (2021, 3)], train_months=2)
    with pytest.raises(
        WindowError,
        match=r"missing from the bucket: 2020-10, 2020-11, 2020-12 \(as_of 2021-02-01: test month 2021-01",
    ):
        training_window(date(2021, 2, 1), SHIPPED, train_months=3)


def test_no_month_before_as_of_is_an_error():
    with pytest.raises(
        WindowError, match="no month in the bucket before 2021-01 .as_of 2021-01-20."
    ):
        training_window(date(2021, 1, 20), SHIPPED)
    with pytest.raises(WindowError, match="no month in the bucket before 2021-04"):
        training_window(date(2021, 4, 2), [])


@pytest.mark.parametrize("train_months", [0, -1, 1.5, True, "2"])
def test_train_months_must_be_a_positive_whole_number(train_months):
    with pytest.raises(ValueError, match="train_months must be a whole number of at least 1"):
        training_window(date(2021, 4, 2), SHIPPED, train_months=train_months)


def test_month_helpers():
    assert parse_month("2021-03") == (2021, 3)
    assert shift_month((2021, 1), -1) == (2020, 12) and shift_month((2020, 12), 1) == (2021, 1)
    assert shift_month((2021, 3), -15) == (2019, 12)
    assert month_range((2020, 11), (2021, 2)) == [(2020, 11), (2020, 12), (2021, 1), (2021, 2)]
    assert month_range((2021, 2), (2021, 1)) == []


@pytest.mark.parametrize(
    "text", ["2021-13", "2021-00", "21-03", "2021-3", "2021-03-01", "2021-03\n", "", None, 202103]
)
def test_bad_month_text_is_refused_without_repeating_it(text):
    with pytest.raises(ValueError) as error:
        parse_month(text, "start")
    assert str(error.value) == "start must be a month written YYYY-MM, e.g. 2021-03"


def test_a_plan_never_tests_on_a_month_after_today():
    months = [*SHIPPED, (2999, 12)]
    plan = plan_window(date(3000, 1, 15), date(2021, 5, 1), "green", months, 1, month_name, _sha)
    assert (plan.train_months, plan.test_month) == (((2021, 2),), (2021, 3))
    assert plan.test_source == "2021-03" and plan.current_test_month == (2021, 3)


def _sha(month) -> str:
    return f"sha256 of {month_name(month)}"


def test_a_window_month_is_refused_unless_its_bytes_hash_to_its_data_manifest():
    plan = plan_window(date(2021, 4, 2), date(2021, 5, 1), "green", SHIPPED, 2, month_name, _sha)
    assert plan.data_sha256 == (
        ("2021-01", _sha((2021, 1))),
        ("2021-02", _sha((2021, 2))),
        ("2021-03", _sha((2021, 3))),
    )
    for source in ("2021-01", "2021-02", "2021-03"):
        plan.check_read(source, f"sha256 of {source}")
    with pytest.raises(DataIntegrityError) as raised:
        plan.check_read("2021-02", _sha((2021, 1)))  # another month's bytes
    assert str(raised.value).startswith(
        "green 2021-02 (2021-02) does not match the sha256 of its data manifest"
    )
    assert "delete 2021-02.manifest.json and ingest the month again" in str(raised.value)
    with pytest.raises(DataIntegrityError, match="green 2021-03 .* does not match"):
        plan.check_read("2021-03", None)  # read with no hash at all
    # Files a caller names have no manifest: their hashes are recorded, not checked.
    WindowPlan.explicit("a.parquet", "b.parquet").check_read("a.parquet", None)
