"""The batch inference flows.

- `inference_flow`: load a model version, process one trip file, predict, store.
- `incoming_inference_flow`: the hourly job. Predicts every file under `incoming/` that has
  not been predicted yet, one `inference_flow` run per file, and records each file done only
  once its predictions are stored (bookkeeping in taxi/incoming.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import Task, flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.runtime import flow_run

from flows import tasks
from flows.processing import process_inference_data_flow
from flows.reports import table_cell
from taxi.incoming import Claim, IncomingFile
from taxi.layout import INCOMING_PREFIX, prediction_name, s3_uri
from taxi.pipeline import predictions_frame
from taxi.settings import Settings

DEFAULT_INCOMING_PREFIX = INCOMING_PREFIX


@flow(name="taxi-inference", version=tasks.VERSION, log_prints=True)
def inference_flow(input_path: str, model_version: str = "latest", output_name: str | None = None) -> str:
    """Predict the duration of every trip in `input_path` with model `model_version` ("latest"
    or a version id) and store the predictions as one parquet object,
    predictions/<output_name>/<version>.parquet (`output_name` defaults to the input's file
    name). Returns its s3:// URI."""
    logger = get_run_logger()
    retrying = tasks.io_retries(Settings.from_env())
    loaded = retrying(tasks.load_model)(model_version)
    processed = process_inference_data_flow(input_path, loaded.vectorizer)
    unknown = loaded.vectorizer.unknown_counts(processed.trips)
    if any(unknown.values()):
        logger.warning("Values not seen in training (predicted with the model's fallback for unknowns): %s", unknown)
    predictions = predictions_frame(processed, tasks.predict(loaded.model, processed.X))
    uri = retrying(tasks.write_predictions)(predictions, input_path, loaded.version, output_name)
    create_link_artifact(key="taxi-predictions", link=uri, link_text=uri, description=f"Predictions for `{input_path}`")
    create_markdown_artifact(
        key="taxi-inference-report",
        markdown=inference_report(
            input_path, uri, loaded.version, loaded.manifest.get("model_type", "linear"), len(predictions), unknown
        ),
        description=f"{len(predictions):,} trips predicted with model {loaded.version}",
    )
    logger.info("Predicted %d trips from %s with model %s -> %s", len(predictions), input_path, loaded.version, uri)
    return uri


def inference_report(input_path: str, uri: str, version: str, model_type: str, rows: int, unknown: dict[str, int]) -> str:
    unseen = "\n".join(f"| {column} | {count:,} |" for column, count in unknown.items())
    return f"""# Inference run

| | |
|---|---|
| input | `{input_path}` |
| trips predicted | {rows:,} (every input trip, in input order) |
| model version | `{version}` ({model_type}) |
| predictions | `{uri}` |

Values not seen in training (predicted with the model's fallback for unknowns):

| column | trips |
|---|---:|
{unseen}
"""


class IncomingFilesFailed(RuntimeError):  # noqa: N818 (a public name since 0.1)
    """Some incoming files could not be predicted; the others were. `summary` has the lists."""

    def __init__(self, summary: dict[str, Any]):
        self.summary = summary
        failed = summary["failed"]
        listed = "; ".join(f"{f['input']}: {f['error']}" for f in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        super().__init__(
            f"{len(failed)} of {summary['files']} incoming file(s) failed and will be retried next run: {listed}{more}"
        )


@flow(name="taxi-incoming-inference", version=tasks.VERSION, log_prints=True)
def incoming_inference_flow(prefix: str = DEFAULT_INCOMING_PREFIX, model_version: str = "latest") -> dict[str, Any]:
    """Predict every file under `prefix` in the bucket that has no done-record yet.

    Every file of one run is predicted with the same model version (`model_version` resolved
    once, at the start). A file that fails does not stop the others; it is listed and tried
    again by the next run, and the run ends Failed so that it shows (and alerts) as such.
    Returns {"model_version", "files", "predicted", "skipped", "failed"}.
    """
    logger = get_run_logger()
    settings = Settings.from_env()
    retrying = tasks.io_retries(settings)
    run = str(flow_run.get_id() or "local")
    # Loaded (and verified) once here so a bad model fails the run before any file is touched;
    # each file's run then loads this exact version, even if `latest` moves meanwhile.
    version = retrying(tasks.load_model)(model_version).version
    files = retrying(tasks.list_incoming)(prefix)
    done = retrying(tasks.list_processed)(prefix)
    claim_file, record_done = retrying(tasks.claim_file), retrying(tasks.record_done)
    release_claim = retrying(tasks.release_claim)
    summary: dict[str, Any] = {"model_version": version, "files": len(files), "predicted": [], "skipped": [], "failed": []}
    for file in files:
        if file.key in done:
            summary["skipped"].append({"input": file.key, "reason": "already predicted"})
            continue
        claim = claim_file(file, run)
        if claim is not Claim.CLAIMED:
            reason = "already predicted" if claim is Claim.DONE else "being predicted by another run"
            summary["skipped"].append({"input": file.key, "reason": reason})
            continue
        try:
            state = inference_flow(s3_uri(settings.bucket, file.key), version, prediction_name(file.key), return_state=True)
            if state.is_completed():
                uri = state.result()
                record_done(file, uri, version, run)
                summary["predicted"].append({"input": file.key, "predictions": uri})
            else:
                summary["failed"].append({"input": file.key, "error": state.message or state.name})
        except Exception as error:  # noqa: BLE001 (one file's failure must not stop the others)
            summary["failed"].append({"input": file.key, "error": f"{type(error).__name__}: {error}"})
        finally:
            _release(release_claim, file)
    for entry in summary["failed"]:
        logger.error("Could not predict %s: %s", entry["input"], entry["error"])
    logger.info(
        "Incoming files under %s: %d predicted, %d skipped, %d failed (model %s)",
        s3_uri(settings.bucket, prefix), len(summary["predicted"]), len(summary["skipped"]), len(summary["failed"]), version,
    )  # fmt: skip
    create_markdown_artifact(
        key="taxi-incoming-inference",
        markdown=_incoming_report(s3_uri(settings.bucket, prefix), summary),
        description=f"Model {version}",
    )
    if summary["failed"]:
        raise IncomingFilesFailed(summary)
    return summary


def _release(release_claim: Task[[IncomingFile], None], file: IncomingFile) -> None:
    """Release a claim; if that fails too, the claim expires on its own (taxi.incoming.CLAIM_TTL)."""
    try:
        release_claim(file)
    except Exception as error:  # noqa: BLE001
        get_run_logger().warning("Could not release the claim on %s (it expires by itself): %s", file.key, error)


def _incoming_report(where: str, summary: dict[str, Any]) -> str:
    lines = [
        f"# Incoming files under `{where}`",
        "",
        f"Model version `{summary['model_version']}`: {len(summary['predicted'])} predicted, "
        f"{len(summary['skipped'])} skipped, {len(summary['failed'])} failed.",
        "",
        "| file | result | details |",
        "|---|---|---|",
    ]
    lines += [f"| `{p['input']}` | predicted | `{p['predictions']}` |" for p in summary["predicted"]]
    lines += [f"| `{f['input']}` | **failed** (retried next run) | {table_cell(f['error'])} |" for f in summary["failed"]]
    lines += [f"| `{s['input']}` | skipped | {s['reason']} |" for s in summary["skipped"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Run an inference flow once, outside any deployment.")
    parser.add_argument("input_path", nargs="?", help="a trip file; omit with --incoming")
    parser.add_argument("--model-version", default="latest")
    parser.add_argument(
        "--incoming", metavar="PREFIX", help=f"predict every new file under PREFIX (e.g. {DEFAULT_INCOMING_PREFIX})"
    )
    args = parser.parse_args()
    if args.incoming:
        print(incoming_inference_flow(args.incoming, args.model_version))
    elif args.input_path:
        print(inference_flow(args.input_path, args.model_version))
    else:
        parser.error("give an input path or --incoming PREFIX")


if __name__ == "__main__":
    main()
