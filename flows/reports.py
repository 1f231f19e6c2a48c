"""Helpers for the flows' markdown artifacts (the run reports)."""

from __future__ import annotations

from taxi.layout import browser_url


def table_cell(text: str) -> str:
    """One table cell: no pipes or line breaks, and not a whole traceback."""
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= 300 else flat[:297] + "..."


def object_link(uri: str, template: str | None) -> str:
    """Markdown for an s3:// object: a link a browser opens (TAXI_OBJECT_URL_TEMPLATE, e.g. the
    MinIO console) named by the URI, or the bare URI as code when no template is set."""
    return f"[`{uri}`]({browser_url(uri, template)})" if template else f"`{uri}`"
