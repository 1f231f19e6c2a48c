"""The training and backfill runs' reports: the markdown report, the metrics table, a backfill row."""

from __future__ import annotations

from datetime import date
from typing import Any

from flows.reports.markdown import NOT_APPLICABLE, code_cell, object_link, signing_line
from taxi.records import ManifestDetails, TableRows, TrainingSummary


def metrics_table(result: TrainingSummary) -> TableRows:
    """The run's RMSE figures as rows of a table artifact: the new model, the champion, the
    course baseline."""
    new, baseline = f"new ({result['model_type']})", "course baseline (one-hot + linear)"
    rows = [
        _rmse_row(new, result["model_version"], result["rmse_train"], result["rmse_test"]),
        _rmse_row(baseline, None, None, result["rmse_test_course_baseline"]),
    ]
    if result["champion_version"]:
        champion = "champion (latest before this run)"
        row = _rmse_row(champion, result["champion_version"], None, result["champion_rmse_test"])
        rows.insert(1, row)
    return rows


def _rmse_row(
    model: str, version: str | None, train: float | None, test: float | None
) -> dict[str, Any]:
    """A row of the metrics table; what a model lacks (the baseline's version, a train RMSE
    not computed) is None, an empty cell in the UI."""
    rounded = None if train is None else round(train, 4)
    return {"model": model, "version": version, "rmse_train": rounded, "rmse_test": round(test, 4)}


def training_report(
    result: TrainingSummary, details: ManifestDetails, object_url_template: str | None = None
) -> str:
    """The run's markdown artifact: what was used, how it scored, what was decided, where it is."""
    test, sample = details["test_data"], details["training_sample"]
    train_rows = "\n".join(
        f"| train | {code_cell(m['source'])} | {m['rows_read']:,} | {m['rows_read'] - m['rows_kept']:,} | {m['rows_kept']:,} |"
        for m in sample["months"]
    )
    window = details["window"]
    window_line = (
        f"Window as of {window['as_of']} ({window['color']}): trained on "
        f"{', '.join(window['train_months'])}, tested on {window['test_month']}"
        f"{' (a backfill)' if window['backfill'] else ''}."
        if window
        else "Files given by the caller (no moving window)."
    )
    if sample["sampled"]:
        window_line += f" The model trained on a uniform sample of {sample['rows_trained']:,} of the kept trips."
    na = NOT_APPLICABLE
    champion = (
        f"`{result['champion_version']}` | {na} | {result['champion_rmse_test']:.4f}"
        if result["champion_version"]
        else f"none published yet | {na} | {na}"
    )
    promoted, kept = "**Promoted**: now `latest`.", "**Not promoted**: `latest` unchanged."
    verdict = promoted if result["promoted"] else kept
    distance = " with planned trip distance" if details["use_trip_distance"] else ""
    new_model = f"new: {details['model_type']}{distance}, {len(details['features'])} features"
    test_row = f"| test | {code_cell(test['uri'])} | {test['rows_read']:,} | {test['rows_read'] - test['rows_used']:,} | {test['rows_used']:,} |"
    new_row = f"| {new_model} | `{result['model_version']}` | {result['rmse_train']:.4f} | {result['rmse_test']:.4f} |"

    def link(uri: str) -> str:
        return object_link(uri, object_url_template)

    return f"""# Training run: model version `{result["model_version"]}`

{verdict} {result["promotion_reason"]}.

Model signature: {signing_line(result["model_signed"])}.

## Data

{window_line}

| | source | trips read | filtered out | kept (1-60 min) |
|---|---|---:|---:|---:|
{train_rows}
{test_row}

## RMSE (minutes)

| model | version | train | test |
|---|---|---:|---:|
{new_row}
| champion (current `latest`) | {champion} |
| course baseline (one-hot + linear) | {na} | {na} | {result["rmse_test_course_baseline"]:.4f} |

## Stored in S3

- Manifest: {link(result["manifest_uri"])}
- Evaluation plot (predicted vs actual, error by hour): {link(result["plot_uri"])}
- Test-set predictions: {link(result["predictions_uri"])}
"""


def backfill_row(as_of: date, result: TrainingSummary) -> dict[str, Any]:
    """One row of the backfill's table artifact: one training run as of `as_of`."""
    return {
        "as_of": as_of.isoformat(),
        "model_version": result["model_version"],
        "train_months": ", ".join(result["train_months"]),
        "test_month": result["test_month"],
        "rmse_train": round(result["rmse_train"], 4),
        "rmse_test": round(result["rmse_test"], 4),
        "promoted": result["promoted"],
    }
