"""The alert templates of deploy/automations.yaml, rendered by the Prefect server's own template
environment and filters, with the objects the server puts in their context: every body names a
page of the UI and no value reads `None`. (tests/integration/test_automations.py has a real
server send them.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from prefect.server.events.jinja_filters import all_filters
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.server.schemas.core import Deployment, Flow, FlowRun
from prefect.server.schemas.states import State, StateType
from prefect.server.utilities.user_templates import (
    register_user_template_filters,
    render_user_template_sync,
)
from prefect.settings import PREFECT_UI_URL, temporary_settings

from deploy.automations import load_automations_file
from flows.reports.monitoring import MAX_EVENT_BATCHES, hourly_drift_event

UI = "http://localhost:4200"


@pytest.fixture(autouse=True)
def server_filters():
    register_user_template_filters(all_filters)
    with temporary_settings({PREFECT_UI_URL: UI}):
        yield


def _action(name: str) -> dict:
    _, automations = load_automations_file()
    (automation,) = [a for a in automations if a["name"] == name]
    (action,) = automation["actions"]
    return action


def _render(action: dict, context: dict) -> tuple[str, str]:
    return (
        render_user_template_sync(action["subject"], context),
        render_user_template_sync(action["body"], context),
    )


def _flow_run(message: str | None) -> FlowRun:
    state = State(type=StateType.CRASHED, name="Crashed", message=message)
    return FlowRun(id=uuid.uuid4(), name="quiet-otter", flow_id=uuid.uuid4(), state=state)


def _event(payload: dict) -> ReceivedEvent:
    return ReceivedEvent(
        occurred=datetime(2026, 12, 4, tzinfo=UTC),
        event="taxi.drift.detected",
        resource={
            "prefect.resource.id": "taxi.batch.s3://taxi/incoming/a.parquet",
            "taxi.input": "s3://taxi/incoming/a.parquet",
            "taxi.model-version": "v7",
        },
        payload=payload,
        id=uuid.uuid4(),
    )


@pytest.mark.parametrize("message", ["container exited with code 137", None])
def test_a_failed_run_alert_links_the_run_and_never_reads_none(message):
    flow = Flow(id=uuid.uuid4(), name="training-flow")
    deployment = Deployment(id=uuid.uuid4(), name="taxi-training", flow_id=flow.id)
    run = _flow_run(message)
    context = {"flow_run": run, "deployment": deployment, "flow": flow}
    subject, body = _render(_action("taxi-flow-run-failed"), context)
    assert subject == "Taxi: taxi-training run quiet-otter Crashed"
    assert f"The run in the Prefect UI: {UI}/runs/flow-run/{run.id}" in body
    assert f"Message: {message or 'none given'}" in body
    assert "None" not in subject + body


def test_a_drift_alert_links_the_inference_run_that_emitted_it():
    event = _event({"drifted": ["pickup_zone"], "realized_rmse": 6.5, "record": "s3://taxi/m.json"})
    run = _flow_run("drift")
    _, body = _render(_action("taxi-drift-detected"), {"event": event, "flow_run": run})
    assert f"The inference run in the Prefect UI: {UI}/runs/flow-run/{run.id}" in body
    assert "Statistics over their threshold: pickup_zone." in body
    assert "Realized RMSE: 6.5." in body and "Monitoring record: s3://taxi/m.json" in body


def test_a_drift_alert_without_a_run_durations_or_record_says_so():
    # The server's context holds None when the event names no flow run it can read.
    event = _event({"drifted": ["trip_distance"], "realized_rmse": None, "record": None})
    _, body = _render(_action("taxi-drift-detected"), {"event": event, "flow_run": None})
    assert f"The event in the Prefect UI: {UI}/events/event/2026-12-04/{event.id}" in body
    assert "Realized RMSE: not known (the batch has no durations)." in body
    assert "Monitoring record: not stored" in body
    assert "None" not in body


def _drifted(input_: str, realized_rmse: float | None) -> dict:
    statistic = {"statistic": "psi", "value": 0.5, "threshold": 0.2, "drift": True}
    return {
        "input": input_,
        "model_version": "v7",
        "rows": 10,
        "drift_statistics": "computed",
        "features": {"pickup_zone": statistic},
        "prediction_drift": None,
        "target_drift": None,
        "drift_detected": True,
        "realized_rmse": realized_rmse,
    }


def test_an_hourly_run_has_one_drift_alert_that_lists_its_batches():
    many = MAX_EVENT_BATCHES + 2
    drifted = [
        (_drifted(f"s3://taxi/incoming/{i}.csv", None if i else 6.5), f"s3://taxi/m{i}.json")
        for i in range(many)
    ]
    drifted[1] = (_drifted("s3://taxi/incoming/two\nFAKE: line `|`.csv", 7.0), "s3://taxi/m1.json")
    kwargs = hourly_drift_event("s3://taxi/incoming/", "run-1", "v7", drifted)
    event = ReceivedEvent(occurred=datetime(2026, 12, 4, tzinfo=UTC), id=uuid.uuid4(), **kwargs)
    run = _flow_run("hourly")
    subject, body = _render(_action("taxi-drift-detected"), {"event": event, "flow_run": run})
    assert subject == f"Taxi: drift detected in s3://taxi/incoming/ ({many} files with drift)"
    lines = body.splitlines()
    batches = [line for line in lines if line.startswith("- s3://")]
    assert len(batches) == MAX_EVENT_BATCHES
    assert batches[0] == (
        "- s3://taxi/incoming/0.csv: pickup_zone; realized RMSE 6.5; record s3://taxi/m0.json"
    )
    assert batches[1].startswith("- s3://taxi/incoming/two FAKE: line `|`.csv: pickup_zone;")
    assert "realized RMSE not known" in batches[2]
    assert "- and 2 more batches (their records are under monitoring/)" in lines
    assert not [line for line in lines if line.startswith("FAKE")]
    assert "None" not in body and "Realized RMSE:" not in body
    assert f"The inference run in the Prefect UI: {UI}/runs/flow-run/{run.id}" in body
