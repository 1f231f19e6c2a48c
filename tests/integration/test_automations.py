"""Alerts as code on a real Prefect server: the automations of deploy/automations.yaml fire
and their webhook reaches a local HTTP receiver.

Runs of a taxi deployment are made the way a worker makes them (a flow run created from the
deployment, then executed by Prefect's flow engine in this process), so the state-change
events are the server's own. The drift event is the one the inference flow emits.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prefect import flow
from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from prefect.flow_engine import run_flow
from prefect.states import Crashed, Failed

from deploy.automations import (
    AlertSetupError,
    check_webhook_url,
    load_automations_file,
    setup_automations,
)
from flows.reports.monitoring import drift_event
from taxi import load_data, predict, process_inference_data
from taxi.monitoring import batch_record, reference_statistics
from tests.integration import prefect_api as api
from tests.integration.dying_flow import dying_flow, other_dying_flow
from tests.paths import GREEN_FEB, ROOT

WAIT_SECONDS = 90  # the server's trigger and action services work in the background


class Receiver:
    """A local webhook target that records the JSON bodies posted to it."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, **json.loads(body or b"{}")})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.token = secrets.token_hex(8)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?token={self.token}"

    def wait_for(self, text: str, timeout: float = WAIT_SECONDS) -> dict:
        """The first notification whose subject or body contains `text` (bounded wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in list(self.received):
                if text in message.get("subject", "") + message.get("body", ""):
                    return message
            time.sleep(0.25)
        raise AssertionError(
            f"no notification mentioning {text!r} within {timeout} s; got {self.received}"
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def alerts(prefect_api, receiver) -> Iterator[list[Automation]]:
    """The automations set up twice (the second run must update, not duplicate); removed
    afterwards so the session's other tests run without them."""
    _, declared = load_automations_file()
    # A first setup pointing nowhere, plus a stray copy of one automation: the second setup
    # must re-point the block and leave one automation of each name.
    asyncio.run(setup_automations("http://127.0.0.1:9/nowhere"))
    stray = Automation.model_validate({**declared[1], "actions": []})
    asyncio.run(stray.acreate())
    applied = asyncio.run(setup_automations(receiver.url))
    yield applied
    asyncio.run(_delete_automations([spec["name"] for spec in declared]))


def _ui(api_url: str) -> str:
    """The server's UI URL, which the test server is given (scripts/devstack.py)."""
    return api_url.removesuffix("/api")


async def _delete_automations(names: list[str]) -> None:
    async with get_client() as client:
        for name in names:
            for automation in await client.read_automations_by_name(name=name):
                await client.delete_automation(automation.id)


async def _automations_named(prefix: str) -> list:
    async with get_client() as client:
        return [a for a in await client.read_automations() if a.name.startswith(prefix)]


@flow(name="taxi-alert-test-flow")
def failing_flow() -> None:
    raise RuntimeError("injected failure for the alert test")


async def _run_of_deployment(deployment_name: str, of_flow=failing_flow):
    async with get_client() as client:
        flow_id = await client.create_flow(of_flow)
        deployment_id = await client.create_deployment(
            flow_id,
            deployment_name,
            entrypoint=f"{of_flow.fn.__module__.replace('.', '/')}.py:{of_flow.fn.__name__}",
        )
        return await client.create_flow_run_from_deployment(deployment_id)


def test_setup_leaves_exactly_the_declared_automations_and_keeps_the_url_secret(alerts, receiver):
    automations = asyncio.run(_automations_named("taxi-"))
    assert sorted(a.name for a in automations) == [
        "taxi-drift-detected",
        "taxi-flow-run-failed",
        "taxi-zombie-flow-runs",
    ]
    actions = {a.name: [action.type for action in a.actions] for a in automations}
    assert actions["taxi-zombie-flow-runs"] == ["change-flow-run-state"]
    assert (
        actions["taxi-flow-run-failed"] == actions["taxi-drift-detected"] == ["send-notification"]
    )
    assert {str(a.id) for a in automations} == {str(a.id) for a in alerts}

    async def stored_block() -> str:
        async with get_client() as client:
            block = await client.read_block_document_by_name(
                "taxi-alerts", "custom-webhook", include_secrets=False
            )
        return json.dumps(block.data, default=str)

    stored = asyncio.run(stored_block())
    assert receiver.token not in stored and "127.0.0.1" not in stored
    assert receiver.token not in json.dumps([a.model_dump(mode="json") for a in automations])


def test_a_failed_or_crashed_taxi_deployment_run_notifies_and_other_deployments_do_not(
    alerts, receiver, prefect_api
):
    suffix = secrets.token_hex(3)
    other = asyncio.run(_run_of_deployment(f"other-{suffix}"))
    failed = asyncio.run(_run_of_deployment(f"taxi-alert-test-{suffix}"))
    crashed = asyncio.run(_run_of_deployment(f"taxi-alert-crash-{suffix}"))
    timed_out = asyncio.run(_run_of_deployment(f"taxi-alert-timeout-{suffix}"))

    for run in (other, failed):
        state = run_flow(failing_flow, flow_run=run, return_type="state")
        assert state.is_failed()

    async def crash() -> None:  # what a worker reports when the infrastructure dies
        async with get_client() as client:
            await client.set_flow_run_state(
                crashed.id, Crashed(message="container exited with code 137"), force=True
            )
            # What the engine reports for a run past its flow's timeout_seconds (flows/deployed.py).
            await client.set_flow_run_state(
                timed_out.id,
                Failed(name="TimedOut", message="Flow run exceeded timeout of 3000.0 second(s)"),
                force=True,
            )

    asyncio.run(crash())

    failure = receiver.wait_for(failed.name)
    assert f"taxi-alert-test-{suffix}" in failure["subject"] and "Failed" in failure["subject"]
    assert "injected failure" in failure["body"]
    # The server's PREFECT_UI_URL (scripts/devstack.py sets it): a link to the run's page.
    assert (
        f"The run in the Prefect UI: {_ui(prefect_api)}/runs/flow-run/{failed.id}"
        in (failure["body"])
    )
    assert failure["path"].endswith(f"token={receiver.token}")
    crash_alert = receiver.wait_for(crashed.name)
    assert "Crashed" in crash_alert["subject"] and "code 137" in crash_alert["body"]
    timeout_alert = receiver.wait_for(timed_out.name)
    assert "TimedOut" in timeout_alert["subject"] and "exceeded timeout" in timeout_alert["body"]
    # The other deployment's run failed first; had it matched, its notification would be here.
    assert not [m for m in receiver.received if other.name in m["subject"] + m["body"]]
    for alert in (failure, crash_alert, timeout_alert):
        assert "None" not in alert["subject"] + alert["body"], alert


def test_an_alert_of_a_run_without_a_message_says_so(alerts, receiver, prefect_api):
    run = asyncio.run(_run_of_deployment(f"taxi-alert-quiet-{secrets.token_hex(3)}"))

    async def crash_silently() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(run.id, Crashed(message=None), force=True)

    asyncio.run(crash_silently())
    alert = receiver.wait_for(run.name)
    assert "Message: none given" in alert["body"] and "None" not in alert["body"]
    assert f"{_ui(prefect_api)}/runs/flow-run/{run.id}" in alert["body"]


@flow(name="taxi-alert-test-drift")
def drift_in_a_flow_run(event: dict) -> str:
    from prefect.runtime import flow_run

    emit_event(**event)
    return flow_run.id


def test_a_drift_event_notifies_with_the_input_and_model_version(
    alerts, receiver, small_model, tmp_path, prefect_api
):
    # A model trained on yellow trips, run on a green month: the zone mix is another city's.
    reference = reference_statistics(
        small_model.train.trips, predict(small_model.model, small_model.train.X)
    )
    processed = process_inference_data(str(GREEN_FEB), small_model.vectorizer)
    record = batch_record(
        reference,
        load_data(str(GREEN_FEB)),
        predict(small_model.model, processed.X),
        str(GREEN_FEB),
        "v-alert-test",
    )
    assert record["drift_detected"]

    emit_event(**drift_event(record, record_uri="s3://taxi-test/monitoring/example.json"))
    EventsWorker.drain_all(timeout=30, at_exit=False)

    message = receiver.wait_for("v-alert-test")
    assert str(GREEN_FEB) in message["subject"] and "pickup_zone" in message["body"]
    assert "s3://taxi-test/monitoring/example.json" in message["body"]
    # A page of the server's UI (the run's or the event's: Prefect's events worker may relate
    # an event emitted here to a run this process made before; the unit tests render both).
    assert f"in the Prefect UI: {_ui(prefect_api)}/" in message["body"]
    assert "None" not in message["body"]

    # Emitted by a flow run (as the inference flow does), with no stored record: the link is
    # the run's page, and the body says the record is missing.
    unstored = drift_event({**record, "model_version": "v-alert-test-run"})
    run_id = drift_in_a_flow_run(unstored)
    EventsWorker.drain_all(timeout=30, at_exit=False)
    from_run = receiver.wait_for("v-alert-test-run")
    assert (
        f"The inference run in the Prefect UI: {_ui(prefect_api)}/runs/flow-run/{run_id}"
        in (from_run["body"])
    )
    assert "Monitoring record: not stored" in from_run["body"]


def test_bad_settings_are_reported_without_echoing_the_url(tmp_path):
    with pytest.raises(AlertSetupError, match="TAXI_ALERT_WEBHOOK_URL must be") as raised:
        check_webhook_url("ftp://secret-token@example.com/hook")
    assert "secret-token" not in str(raised.value)
    broken = tmp_path / "automations.yaml"
    broken.write_text("notification_block: x\nautomations:\n  - name: a\n  - name: a\n")
    with pytest.raises(AlertSetupError, match="unique"):
        load_automations_file(broken)


def test_no_webhook_and_no_block_sets_up_only_what_notifies_nobody(
    prefect_api, monkeypatch, tmp_path, capsys
):
    """The zombie detection is applied whether or not alerts are: it is what ends a dead run."""
    declared = tmp_path / "automations.yaml"
    declared.write_text(
        "notification_block: taxi-alerts-unset\nautomations:\n"
        "  - name: taxi-never-created\n    trigger: {expect: [x]}\n"
        "    actions: [{type: send-notification, subject: s, body: b}]\n"
        "  - name: taxi-silent-test\n    trigger: {expect: [x]}\n"
        "    actions: [{type: change-flow-run-state, state: CRASHED}]\n"
    )
    monkeypatch.delenv("TAXI_ALERT_WEBHOOK_URL", raising=False)
    try:
        applied = asyncio.run(setup_automations(path=declared))
        assert [a.name for a in applied] == ["taxi-silent-test"]
        assert "TAXI_ALERT_WEBHOOK_URL" in capsys.readouterr().out
        assert asyncio.run(_automations_named("taxi-never-created")) == []
        assert [a.name for a in asyncio.run(_automations_named("taxi-silent-test"))] == [
            "taxi-silent-test"
        ]
    finally:
        asyncio.run(_delete_automations(["taxi-silent-test"]))
    # The project's zombie detection is such an automation.
    _, project = load_automations_file()
    [zombie] = [a for a in project if a["name"] == "taxi-zombie-flow-runs"]
    assert [action["type"] for action in zombie["actions"]] == ["change-flow-run-state"]


def _states(run_ids) -> dict:
    async def read() -> dict:
        async with get_client() as client:
            return {run_id: (await client.read_flow_run(run_id)).state for run_id in run_ids}

    return asyncio.run(read())


def test_a_run_whose_process_dies_ends_crashed_with_its_subflow_and_alerts(
    alerts, receiver, prefect_api
):
    """A real flow process (heartbeats every 30 s, as the pool sets) killed with SIGKILL, as the
    kernel's OOM killer does, while its subflow runs: nothing reports the run's end, yet both runs
    end Crashed through taxi-zombie-flow-runs, and the run of the taxi deployment alerts. A run
    of another project's flow on the same server, killed too, is left to its project."""
    run = asyncio.run(_run_of_deployment(f"taxi-zombie-{secrets.token_hex(3)}", dying_flow))
    other = asyncio.run(_run_of_deployment(f"other-{secrets.token_hex(3)}", other_dying_flow))
    assert os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"  # tests/servers.py
    module = [sys.executable, "-m", "tests.integration.dying_flow"]
    other_process = subprocess.Popen([*module, str(other.id), "other"], cwd=ROOT)
    process = subprocess.Popen([*module, str(run.id)], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(family := api.run_family(run.id)) < 2:
            assert process.poll() is None, "the flow process exited by itself"
            time.sleep(0.5)
        assert len(family) == 2, "the subflow run never started"
        while time.monotonic() < deadline and not all(
            s and s.is_running() for s in _states(family).values()
        ):
            time.sleep(0.5)
        while time.monotonic() < deadline and not (
            (state := _states([other.id])[other.id]) and state.is_running()
        ):
            time.sleep(0.5)
    finally:
        for dying in (process, other_process):
            os.kill(dying.pid, signal.SIGKILL)
            dying.wait()
    killed = time.monotonic()
    states = _states(family)
    while time.monotonic() - killed < 240 and not all(s.is_crashed() for s in states.values()):
        time.sleep(1)
        states = _states(family)
    took = time.monotonic() - killed
    assert all(s.is_crashed() for s in states.values()), states
    assert all("No heartbeat for 90 s" in s.message for s in states.values()), states
    assert took < 150, took  # the last heartbeat at most 30 s before the kill, then 90 s
    time.sleep(max(0, 150 - took))  # past any bound the other run would have been marked by
    assert _states([other.id])[other.id].is_running()
    alert = receiver.wait_for(run.name)
    assert "Crashed" in alert["subject"] and "No heartbeat for 90 s" in alert["body"]
    print(f"\n  killed flow run and subflow run Crashed {took:.0f} s after the kill")
