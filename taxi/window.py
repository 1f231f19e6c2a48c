"""The moving training window: which months a training run as of a date tests and trains on.

Pure: it is given the months the bucket holds (see taxi.ingest.months_present) and reads
nothing itself.

The test month is the newest month in the bucket that starts before `as_of`'s month (a month
still under way is never used: the TLC publishes a month about two months after it ends).
The training months are the `train_months` months just before the test month; all of them
must be in the bucket, because training silently on fewer months than asked for would make
runs incomparable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

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


def training_window(as_of: date, months_present: Iterable[Month], train_months: int = 1) -> TrainingWindow:
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
