"""The moving training window: which months a training run as of a date tests and trains on.

Pure: it is given the months the bucket holds (see taxi.ingest.bucket_months, which leaves
out months after the current one) and reads nothing itself.

The test month is the newest month in the bucket that starts before `as_of`'s month (a month
still under way is never used: the TLC publishes a month about two months after it ends).
The training months are the `train_months` months just before the test month; all of them
must be in the bucket, because training silently on fewer months than asked for would make
runs incomparable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from taxi.errors import DataIntegrityError
from taxi.layout import DATA_MANIFEST_SUFFIX
from taxi.months import Month, month_name, month_of, shift_month


class WindowError(ValueError):
    """The bucket does not hold the months a training window needs; the message names them."""


@dataclass(frozen=True)
class TrainingWindow:
    train: tuple[Month, ...]  # oldest first
    test: Month

    def describe(self) -> str:
        """E.g. "train 2021-01, 2021-02; test 2021-03"."""
        return f"train {', '.join(month_name(m) for m in self.train)}; test {month_name(self.test)}"


def training_window(
    as_of: date, months_present: Iterable[Month], train_months: int = 1
) -> TrainingWindow:
    """The test month and the training months for a run as of `as_of` (see the module doc)."""
    if isinstance(train_months, bool) or not isinstance(train_months, int) or train_months < 1:
        raise ValueError("train_months must be a whole number of at least 1")
    present = set(months_present)
    current = month_of(as_of)
    earlier = [m for m in present if m < current]
    if not earlier:
        raise WindowError(
            f"no month in the bucket before {month_name(current)} (as_of {as_of:%Y-%m-%d}) to test on: ingest the months first"
        )
    test = max(earlier)
    train = tuple(shift_month(test, -n) for n in range(train_months, 0, -1))
    missing = [m for m in train if m not in present]
    if missing:
        raise WindowError(
            f"training months missing from the bucket: {', '.join(month_name(m) for m in missing)} "
            f"(as_of {as_of:%Y-%m-%d}: test month {month_name(test)}, {train_months} training month(s) before it); "
            "ingest them first"
        )
    return TrainingWindow(train, test)


@dataclass(frozen=True)
class WindowPlan:
    """What a training run reads: its training and test sources and, for a moving window, the
    months behind them and whether the window is the newest one (promotion depends on it)."""

    train_sources: tuple[str, ...]
    test_source: str
    as_of: date | None = None
    color: str | None = None
    train_months: tuple[Month, ...] = ()
    test_month: Month | None = None
    current_test_month: Month | None = None  # the test month of a run as of today
    # (source, sha256 of its data manifest) of each window month: what its bytes must hash to.
    data_sha256: tuple[tuple[str, str], ...] = ()

    @classmethod
    def explicit(cls, train_path: str, test_path: str) -> WindowPlan:
        """Files given by the caller: no window, promotion as usual."""
        return cls((train_path,), test_path)

    def check_read(self, source: str, sha256: str | None) -> None:
        """Refuse a window month whose bytes, as read, are not those its data manifest vouches
        for (files given by the caller are recorded, not checked: they have no manifest)."""
        if self.test_month is None or (source, sha256) in self.data_sha256:
            return
        sources = (*self.train_sources, self.test_source)
        month = dict(zip(sources, (*self.train_months, self.test_month), strict=True)).get(source)
        name = f"{self.color} {month_name(month)}" if month is not None else "a window month"
        raise DataIntegrityError(
            f"{name} ({source}) does not match the sha256 of its data "
            "manifest, written when it was ingested: the file was replaced in the bucket since; "
            f"refusing to train on it: delete {source}{DATA_MANIFEST_SUFFIX} and ingest the "
            "month again, which copies it from the TLC source"
        )

    @property
    def is_backfill(self) -> bool:
        """A window older than today's: its model must not replace today's unless asked."""
        return (
            self.test_month is not None
            and self.current_test_month is not None
            and self.test_month < self.current_test_month
        )

    def promotion_blocked(self, promote: bool | None) -> str | None:
        """Why this run must not promote its model (None: promote if it beats the champion)."""
        if promote is False:
            return "promotion turned off for this run (promote=False)"
        if promote is None and self.is_backfill:
            assert self.test_month is not None and self.current_test_month is not None
            return (
                f"backfill: test month {month_name(self.test_month)} is older than today's window's "
                f"{month_name(self.current_test_month)} (promote=True allows it)"
            )
        return None

    def describe(self) -> str:
        if self.test_month is None:
            return f"train {', '.join(self.train_sources)}; test {self.test_source}"
        assert self.as_of is not None
        window = TrainingWindow(self.train_months, self.test_month).describe()
        return f"{self.color} months as of {self.as_of:%Y-%m-%d}: {window}"

    def as_dict(self) -> dict[str, object] | None:
        if self.test_month is None or self.as_of is None:
            return None
        return {
            "as_of": self.as_of.isoformat(),
            "color": self.color,
            "train_months": [month_name(m) for m in self.train_months],
            "test_month": month_name(self.test_month),
            "backfill": self.is_backfill,
        }


def plan_window(
    as_of: date,
    today: date,
    color: str,
    months_present: Iterable[Month],
    train_months: int,
    source: Callable[[Month], str],
    manifest_sha256: Callable[[Month], str],
) -> WindowPlan:
    """The plan of a window run as of `as_of`, with each month's source given by `source` and
    the sha256 its bytes must have by `manifest_sha256` (which raises for a month it cannot
    vouch for). Months after `today`'s are left out: the TLC cannot have published them, so
    even a run as of a later date never tests on one."""
    present = {m for m in months_present if m <= month_of(today)}
    window = training_window(as_of, present, train_months)
    earlier_than_today = [m for m in present if m < month_of(today)]
    months = (*window.train, window.test)
    return WindowPlan(
        train_sources=tuple(source(m) for m in window.train),
        test_source=source(window.test),
        data_sha256=tuple((source(m), manifest_sha256(m)) for m in months),
        as_of=as_of,
        color=color,
        train_months=window.train,
        test_month=window.test,
        current_test_month=max(earlier_than_today) if earlier_than_today else None,
    )


def parse_as_of(value: object, name: str = "as_of") -> date:
    """A date from a date, a datetime, "YYYY-MM-DD" or an ISO date-time; run parameters arrive
    as text from the API and the UI. The error does not repeat what was given."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        for parse in (date.fromisoformat, lambda text: datetime.fromisoformat(text).date()):
            try:
                return parse(value.strip())
            except ValueError:
                continue
    raise ValueError(f"{name} must be a date written YYYY-MM-DD")


def whole_number(value: object, name: str, minimum: int = 1) -> int:
    """`value` as an int of at least `minimum`, or an error naming the parameter (not its value)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}")
    return value
