"""The pieces every report is made of, and how untrusted text goes into them.

Bucket keys and error messages come from whoever uploaded a file or wrote an object: a key
may hold a backtick, a pipe, brackets or a line break. Put into a report as they are, these
end a code span, split a table row or start a line of their own. So every such text goes
through `code`, `code_cell`, `text` or `object_link`, which keep it on one line and
literal."""

from __future__ import annotations

import re

from flows.policy import UNSIGNED_WARNING
from taxi.layout import browser_url

# A markdown table's cell with no value (a figure that does not exist, e.g. the baseline's
# train RMSE).
NOT_APPLICABLE = "n/a"
# Longer texts (a whole traceback) are cut in reports and alerts.
MAX_TEXT = 300
_BACKTICKS = re.compile(r"`+")
# Characters with a meaning in inline markdown: escaped in link texts.
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>!#~&|])")


def one_line(text: object, limit: int = MAX_TEXT) -> str:
    """`text` on one line: line breaks, tabs and other control characters become single
    spaces, and a text over `limit` characters is cut with "..."."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def code(text: object) -> str:
    """`text` as an inline code span, whatever backticks it holds (CommonMark: a fence longer
    than any run of backticks inside, padded when the text starts or ends with one)."""
    flat = one_line(text, limit=10 * MAX_TEXT)
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(flat)), default=0) + 1)
    padded = f" {flat} " if flat.startswith("`") or flat.endswith("`") else flat
    return f"{fence}{padded}{fence}"


def code_cell(text: object) -> str:
    """`code(text)` in a markdown table's cell: GFM ends a cell at any unescaped pipe, even in
    a code span, and reads the escaped one as a pipe."""
    return code(text).replace("|", "\\|")


def text(value: object) -> str:
    """`value` as plain text on one line, its markup characters escaped (an error message
    quoting a key shows that key, not a link or emphasis), and not a whole traceback. Safe in a
    table cell."""
    return _INLINE_MARKUP.sub(r"\\\1", one_line(value))


def object_link(uri: str, template: str | None) -> str:
    """Markdown for an s3:// object: a link a browser opens (TAXI_OBJECT_URL_TEMPLATE: the S3
    UI of the stack, set in the work pool) named by the plain URI, or the URI as code when no
    template is set. Safe in a table cell."""
    if not template:
        return code_cell(uri)
    name = _INLINE_MARKUP.sub(r"\\\1", one_line(uri, 10 * MAX_TEXT))
    return f"[{name}]({browser_url(uri, template)})"


def signing_line(signed: bool) -> str:
    """The run report's line on model signing."""
    if signed:
        return "signed and checked (HMAC-SHA256 of each manifest)"
    return f"**unsigned**: {UNSIGNED_WARNING}"
