"""Helpers for the flows' markdown artifacts (the run reports)."""

from __future__ import annotations


def table_cell(text: str) -> str:
    """One table cell: no pipes or line breaks, and not a whole traceback."""
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= 300 else flat[:297] + "..."
