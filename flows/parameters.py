"""Each flow's parameters, checked in one place: one function per flow that refuses bad ones
(errors name the parameter and never repeat what was given, since a run's parameters may come
from anyone who can start a deployment run) and returns them as a frozen object.

The flows turn Prefect's own validation off where it would repeat the values given; the run
form still shows the choices and help from each flow's signature. inference_flow's parameters
are plain strings that Prefect validates; the sources a run may read are the source policy's
(flows.policy.check_sources).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from taxi.config import DEFAULT_MAX_TRAIN_ROWS
from taxi.incoming import check_incoming_prefix
from taxi.ingest import check_color, requested_months
from taxi.model import check_model_type
from taxi.months import Month
from taxi.window import parse_as_of, whole_number

MAX_BACKFILL_RUNS = 520  # ten years of weeks: a typo in a date should not start thousands of runs


@dataclass(frozen=True)
class TrainingParameters:
    train_path: str | None
    test_path: str | None
    model_type: str
    use_trip_distance: bool
    promotion_margin: float
    color: str
    as_of: date | None
    train_months: int
    max_train_rows: int
    promote: bool | None


def training_parameters(
    train_path: str | None = None,
    test_path: str | None = None,
    model_type: str = "linear",
    use_trip_distance: bool = False,
    promotion_margin: float = 0.0,
    color: str = "yellow",
    as_of: object = None,
    train_months: object = 1,
    max_train_rows: object = DEFAULT_MAX_TRAIN_ROWS,
    promote: bool | None = None,
) -> TrainingParameters:
    """training_flow's parameters, checked."""
    check_model_type(model_type, use_trip_distance)
    check_color(color)
    months = whole_number(train_months, "train_months")
    rows = whole_number(max_train_rows, "max_train_rows")
    day = None if as_of is None else parse_as_of(as_of)
    if not isinstance(use_trip_distance, bool) or promote not in (None, True, False):
        raise ValueError(
            "use_trip_distance must be true or false, and promote true, false or unset"
        )
    if isinstance(promotion_margin, bool) or not isinstance(promotion_margin, int | float):
        raise ValueError("promotion_margin must be a number of minutes")
    if (train_path or test_path) and not (train_path and test_path):
        raise ValueError(
            "give both train_path and test_path, or neither (the window then comes from as_of)"
        )
    return TrainingParameters(
        train_path,
        test_path,
        model_type,
        use_trip_distance,
        promotion_margin,
        color,
        day,
        months,
        rows,
        promote,
    )


@dataclass(frozen=True)
class IngestParameters:
    color: str
    first: Month | None  # None: the month after the newest one in the bucket
    last: Month


def ingest_parameters(
    color: object, start: str | None, end: str | None, today: date | None = None
) -> IngestParameters:
    """ingest_flow's parameters, checked (`today`: the current month's date, UTC)."""
    checked = check_color(color)
    first, last = requested_months(start, end, today or datetime.now(UTC).date())
    return IngestParameters(checked, first, last)


@dataclass(frozen=True)
class IncomingParameters:
    prefix: str  # incoming/ or a folder below it
    model_version: str  # checked when the model is loaded (taxi.storage.manifests)


def incoming_parameters(prefix: object, model_version: object) -> IncomingParameters:
    """incoming_inference_flow's parameters, checked: the job reads, and sets aside, only files
    under incoming/."""
    if not isinstance(model_version, str):
        raise ValueError("model_version must be 'latest' or a model version id")
    return IncomingParameters(check_incoming_prefix(prefix), model_version)


@dataclass(frozen=True)
class BackfillParameters:
    start: date
    end: date
    every_days: int
    dates: tuple[date, ...]  # the as_of date of each training run


def backfill_parameters(start: object, end: object, every_days: object = 7) -> BackfillParameters:
    """backfill_flow's own parameters, checked (each training run checks the ones it is given)."""
    first, last = parse_as_of(start, "start"), parse_as_of(end, "end")
    days = whole_number(every_days, "every_days")
    return BackfillParameters(first, last, days, tuple(backfill_dates(first, last, days)))


def backfill_dates(start: date, end: date, every_days: int = 7) -> list[date]:
    """start, start + every_days, ... up to end inclusive."""
    if every_days < 1:
        raise ValueError("every_days must be at least 1")
    if end < start:
        raise ValueError("the backfill's end is before its start")
    count = (end - start).days // every_days + 1
    if count > MAX_BACKFILL_RUNS:
        raise ValueError(
            f"the backfill would start {count} runs, more than {MAX_BACKFILL_RUNS}: narrow the range"
        )
    return [start + timedelta(days=every_days * n) for n in range(count)]
