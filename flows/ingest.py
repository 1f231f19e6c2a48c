"""The ingestion flow: copy new TLC months into the bucket (the logic is in taxi/ingest.py).

python -m flows.ingest --color green --start 2021-01 --end 2021-03
python -m flows.ingest --color yellow        # the months after the newest one in the bucket
"""

from __future__ import annotations

import argparse
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows import policy
from flows.parameters import ingest_parameters
from flows.policy import io_task
from flows.reports.ingest import ingest_report
from taxi import ingest
from taxi.data_manifests import is_trusted
from taxi.layout import s3_uri
from taxi.months import Month, month_name, parse_month
from taxi.records import IngestSummary
from taxi.settings import Settings
from taxi.sources import public_url
from taxi.storage.objects import ObjectStore

DATA_UNSIGNED_WARNING = (
    "Data manifests are NOT signed (TAXI_ALLOW_UNSIGNED=1): training checks each month against "
    "its manifest's sha256, which anyone who can write to the bucket can rewrite"
)


class IngestError(RuntimeError):
    """A month could not be ingested; the months before it were. `summary` has the lists."""

    def __init__(self, summary: IngestSummary):
        self.summary = summary
        failed = summary["failed"][0]
        super().__init__(
            f"{summary['color']} {failed['month']} could not be ingested: {failed['error']}"
        )


def months_in_bucket(store: ObjectStore, color: str) -> ingest.BucketMonths:
    """The bucket's months of `color` (ingest.bucket_months), each key of a month after the
    current one logged as ignored. Called inside a task (ingestion's, training's)."""
    listed = ingest.bucket_months(store, color)
    logger = get_run_logger()
    for _, key in listed.future:
        logger.warning(ingest.FUTURE_MONTH_WARNING, key)
    return listed


@task(name="list-data-months", tags=["taxi", "io", "s3"], **io_task)
def list_data_months(color: str) -> ingest.BucketMonths:
    store = ObjectStore()
    # Ingestion is what first fills a new bucket (the quickstart's, a fresh stack's).
    store.ensure_bucket()
    return months_in_bucket(store, color)


@task(name="check-data-manifests", tags=["taxi", "io", "s3"], **io_task)
def untrusted_months(color: str, months: list[str]) -> list[str]:
    """Those of `months` (in the bucket) whose data manifest a training run would refuse: not
    signed with the configured key (an earlier release's, or altered). They are copied again."""
    settings = Settings.from_env()
    store, key = ObjectStore(bucket=settings.bucket), policy.signing_key(settings)
    untrusted = [m for m in months if not is_trusted(store, color, parse_month(m), key)]
    for month in untrusted:
        get_run_logger().warning(
            "%s %s is in the bucket, but its data manifest is not signed with the configured "
            "signing key: copying it again from the source",
            color,
            month,
        )
    return untrusted


@task(name="ingest-month", tags=["taxi", "io", "s3", "tlc"], **io_task)
def ingest_month(color: str, month: str) -> ingest.MonthResult:
    # The source and the signing key are read here rather than passed in, so that neither a
    # mirror URL with credentials in it nor the key ever becomes a task parameter.
    settings = Settings.from_env()
    store = ObjectStore(bucket=settings.bucket)
    result = ingest.ingest_month(
        store,
        color,
        parse_month(month),
        settings.tlc_base_url.get_secret_value(),
        max_bytes=settings.download_max_bytes,
        deadline_seconds=settings.download_deadline_seconds,
        signing_key=policy.signing_key(settings),
    )
    logger = get_run_logger()
    if result.manifest is not None:
        logger.info(
            "Ingested %s %s: %s -> %s",
            color,
            month,
            result.detail,
            store.uri(result.manifest["key"]),
        )
    else:
        logger.info("%s %s is not available yet: %s", color, month, result.detail)
    return result


# Parameters are checked by flows.parameters, not by Prefect's validation, whose errors repeat
# the values given.
@flow(name="taxi-ingest", version=policy.VERSION, log_prints=True, validate_parameters=False)
def ingest_flow(
    color: Literal["yellow", "green"] = "yellow", start: str | None = None, end: str | None = None
) -> IngestSummary:
    """Copy the TLC's monthly `color` trip files for `start`..`end` ("YYYY-MM", both included)
    into the bucket's data/ folder, each checked against the input contract and with a data
    manifest. Without `start`: the months after the newest one already in the bucket; without
    `end`: up to the current month. Keys of months after the current one are ignored (logged,
    and listed in the report).

    Creates the bucket if it does not exist. Months already in the bucket are skipped (a
    rerun downloads nothing), except months whose data manifest is not signed with the
    signing key (ingested by an earlier release): those are copied again. Months go oldest
    first, and the first one that is not published yet (HTTP 403/404, or no file in a local
    source) ends the run, Completed: later months are not published either, and the next run
    continues from there. A month that fails (bad or truncated data, a download that keeps
    failing) ends the run Failed, so that no month is skipped over. Returns (and publishes as
    the artifact `taxi-ingest-report`) the months ingested, skipped, not available yet, failed
    and not attempted.

    Args:
        color: Which TLC trip records: yellow or green taxis.
        start: First month to copy, YYYY-MM (default: the month after the newest one in the bucket).
        end: Last month to copy, YYYY-MM, included (default: the current month).
    """
    parameters = ingest_parameters(color, start, end)
    logger = get_run_logger()
    settings = Settings.from_env()
    policy.s3_keys_from_blocks(settings)
    ingest.check_base_url(settings.tlc_base_url.get_secret_value())  # before any work
    # Data manifests are signed with the models' key: no key (and no opt-out), no ingestion.
    signed = policy.signing_key(settings) is not None
    if not signed:
        logger.warning(DATA_UNSIGNED_WARNING)
    retrying = policy.io_retries(settings)
    listed = retrying(list_data_months)(color)
    present = listed.months
    months = ingest.months_to_ingest(color, parameters.first, parameters.last, present)
    there = [month_name(m) for m in months if m in present]
    if signed and there:  # months ingested unsigned (an earlier release) are copied again
        again = retrying(untrusted_months)(color, there)
        present = [m for m in present if month_name(m) not in again]
    summary: IngestSummary = {
        "color": color,
        "source": public_url(settings.tlc_base_url.get_secret_value()),
        "ingested": [],
        "skipped": [],
        "not_available": [],
        "failed": [],
        "not_attempted": [],
        "ignored": [
            {"month": month_name(m), "reason": f"{key}: after the current month, no TLC file"}
            for m, key in listed.future
        ],
    }
    for index, month in enumerate(months):
        name, later = month_name(month), [month_name(m) for m in months[index + 1 :]]
        if month in present:
            summary["skipped"].append({"month": name, "reason": "already in the bucket"})
            continue
        try:
            result = retrying(ingest_month)(color, name)
        except Exception as error:  # noqa: BLE001 (reported below; the run then fails)
            summary["failed"].append({"month": name, "error": f"{type(error).__name__}: {error}"})
            summary["not_attempted"] = later
            break
        if result.manifest is None:
            summary["not_available"].append({"month": name, "reason": result.detail})
            reason = f"not requested: {name} is not published yet"
            summary["not_available"] += [{"month": m, "reason": reason} for m in later]
            break
        manifest = result.manifest
        uri = s3_uri(settings.bucket, manifest["key"])
        summary["ingested"].append(
            {"month": name, "uri": uri, "rows": manifest["rows"], "bytes": manifest["bytes"]}
        )
    logger.info(
        "%s months %s: %d ingested, %d already in the bucket, %d not available yet, %d failed",
        color,
        _span(months),
        *(len(summary[outcome]) for outcome in ("ingested", "skipped", "not_available", "failed")),
    )
    create_markdown_artifact(
        key="taxi-ingest-report",
        markdown=ingest_report(summary),
        description=f"{color} months {_span(months)}",
    )
    if summary["failed"]:
        raise IngestError(summary)
    return summary


def _span(months: list[Month]) -> str:
    if not months:
        return "(none: the bucket is up to date)"
    return (
        month_name(months[0])
        if len(months) == 1
        else f"{month_name(months[0])}..{month_name(months[-1])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Copy TLC monthly trip files into the bucket, once, outside any deployment."
    )
    parser.add_argument("--color", default="yellow", help="yellow or green (default yellow)")
    parser.add_argument(
        "--start",
        help="first month, YYYY-MM (default: the month after the newest one in the bucket)",
    )
    parser.add_argument("--end", help="last month, YYYY-MM (default: the current month)")
    args = parser.parse_args()
    summary = ingest_flow(args.color, args.start, args.end)
    for outcome in ("ingested", "skipped", "not_available"):
        months = ", ".join(entry["month"] for entry in summary[outcome]) or "none"
        print(f"{outcome.replace('_', ' ')}: {months}")


if __name__ == "__main__":
    main()
