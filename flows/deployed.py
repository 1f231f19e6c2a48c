"""The flows as the deployments of prefect.yaml (and prefect-prebuilt.yaml) run them: the same
flows, each with a time limit on the whole run.

prefect.yaml cannot carry a flow's `timeout_seconds` itself (Prefect 3.9's deployment
configuration has no such field, and silently ignores unknown keys), so the deployments'
entrypoints name these copies instead. Flows called directly (the quickstart, tests,
notebooks) keep no limit.

Each limit is many times a normal run (measured in docs/performance.md and
docs/deployment.md), and long enough for one download that runs to its deadline
(TAXI_DOWNLOAD_DEADLINE_SECONDS, 15 minutes). Such a download is retried, each attempt with
a deadline of its own; the limit bounds what the attempts add up to. A run that reaches its
limit ends TimedOut, which the taxi-flow-run-failed automation reports like Failed.
"""

from __future__ import annotations

from flows.inference import incoming_inference_flow as _incoming_inference_flow
from flows.ingest import ingest_flow as _ingest_flow
from flows.training import training_flow as _training_flow

# Daily: usually one month of tens of MB, seconds to download and check. Two hours leave room
# for several months after a pause, each bounded by the download deadline; an ingestion cut
# short keeps the months it finished, and the next run continues from there.
INGEST_TIMEOUT_SECONDS = 2 * 60 * 60
# Weekly: an hour is more than ten times a one-month or a 12-month training
# (docs/performance.md).
TRAINING_TIMEOUT_SECONDS = 60 * 60
# Hourly: seconds per file (docs/performance.md). Fifty minutes ends a stuck run before the
# next one is due, so at most one run waits behind it (the deployment's concurrency limit of 1
# queues it).
INFERENCE_TIMEOUT_SECONDS = 50 * 60

ingest_flow = _ingest_flow.with_options(timeout_seconds=INGEST_TIMEOUT_SECONDS)
training_flow = _training_flow.with_options(timeout_seconds=TRAINING_TIMEOUT_SECONDS)
incoming_inference_flow = _incoming_inference_flow.with_options(
    timeout_seconds=INFERENCE_TIMEOUT_SECONDS
)
