"""Calendar months as (year, month) pairs: parsing "YYYY-MM", naming, arithmetic.

The TLC publishes one file per colour and month, so a month is the unit of ingestion and of
the training window.
"""

from __future__ import annotations

import re
from datetime import date

Month = tuple[int, int]

_MONTH_TEXT = re.compile(r"(\d{4})-(\d{2})")


def parse_month(text: object, what: str = "month") -> Month:
    """(year, month) from "YYYY-MM". `what` names the value in the error, which never repeats
    the text itself (it may be anything a caller typed)."""
    found = _MONTH_TEXT.fullmatch(text) if isinstance(text, str) else None
    if found is None or not 1 <= int(found.group(2)) <= 12:
        raise ValueError(f"{what} must be a month written YYYY-MM, e.g. 2021-03")
    return int(found.group(1)), int(found.group(2))


def month_name(month: Month) -> str:
    """ "YYYY-MM"."""
    return f"{month[0]:04d}-{month[1]:02d}"


def month_of(day: date) -> Month:
    return day.year, day.month


def shift_month(month: Month, months: int) -> Month:
    """The month `months` months after `month` (before it when negative)."""
    index = month[0] * 12 + (month[1] - 1) + months
    return index // 12, index % 12 + 1


def month_range(first: Month, last: Month) -> list[Month]:
    """Every month from `first` to `last`, both included; empty when `last` is before `first`."""
    months = []
    while first <= last:
        months.append(first)
        first = shift_month(first, 1)
    return months
