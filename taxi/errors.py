"""The project's error types that several modules raise or handle.

Here, in a module that imports nothing of the project, so that the modules raising them (the
input contract in taxi.tlc, the transfers in taxi.sources, the steps) and those deciding what
a failure means (the flows' retry rule) need not import each other. The storage errors stay
with the object store (taxi.storage.objects), the one place that raises them.
"""

from __future__ import annotations


class DataError(ValueError):
    """Input data that cannot be used; the message names the source and the problem.

    Not worth retrying: the same input will fail the same way."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class DataIntegrityError(ValueError):
    """A month in the bucket that is not what ingestion stored and vouched for: its file or
    data manifest altered, the manifest missing or not signed with the signing key. The
    message names the month and how to recover. Not worth retrying."""


class NotPublishedError(Exception):
    """The source has no such file (yet)."""


class DownloadError(RuntimeError):
    """The transfer failed midway or the server failed; trying again later may work."""


class DeadlineError(DownloadError):
    """The transfer (connecting, headers, redirects and body) was not done when its deadline
    passed. Worth retrying like any DownloadError: each attempt is bounded by its own deadline."""
