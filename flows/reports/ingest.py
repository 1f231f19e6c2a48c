"""The ingestion run's report."""

from __future__ import annotations

from flows.reports.markdown import code, code_cell, text
from taxi.records import IngestSummary


def ingest_report(summary: IngestSummary) -> str:
    counts = (
        f"{len(summary['ingested'])} ingested, {len(summary['skipped'])} skipped, "
        f"{len(summary['not_available'])} not available yet, {len(summary['failed'])} failed."
    )
    lines = [
        f"# Ingestion of {summary['color']} TLC months",
        "",
        f"Source: {code(summary['source'])}. {counts}",
        "",
        "| month | result | details |",
        "|---|---|---|",
    ]
    for i in summary["ingested"]:
        lines.append(
            f"| {i['month']} | ingested | {i['rows']:,} trips, {i['bytes']:,} bytes: {code_cell(i['uri'])} |"
        )
    lines += [f"| {s['month']} | skipped | {text(s['reason'])} |" for s in summary["skipped"]]
    for n in summary["not_available"]:
        lines.append(f"| {n['month']} | not available yet | {text(n['reason'])} |")
    for f in summary["failed"]:
        lines.append(f"| {f['month']} | **failed** | {text(f['error'])} |")
    lines += [
        f"| {m} | not attempted | an earlier month failed |" for m in summary["not_attempted"]
    ]
    for i in summary["ignored"]:
        lines.append(f"| {i['month']} | **ignored** | {text(i['reason'])} |")
    return "\n".join(lines) + "\n"
