"""A run of the hourly job that dies on a file (killed, out of memory, its host lost), against the
real Prefect and S3 servers: its claim is taken over by the next run at once, since the Prefect
API has the dead run as Crashed, and its attempt counts as a failure, so that a file that kills
every run is set aside after TAXI_SET_ASIDE_AFTER_FAILURES of them.

A dead run is made as it is left: a flow run in the API, Crashed, and in the bucket what it wrote
before dying (its claim and its attempt, through the same functions the job calls). Killing a real
flow run's container: tests/e2e/test_crashed_runs.py; marking a run Crashed once its heartbeats
stop: tests/integration/test_automations.py."""

from __future__ import annotations

import asyncio
import json
import uuid

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.states import Completed, Crashed, Running

from taxi.failed_files import UNFINISHED, record_attempt
from taxi.incoming import Claim, ClaimResult, claim, list_incoming
from tests.paths import YELLOW_FEB

CLAIM = "claims/incoming/x.csv.json"


@flow(name="taxi-crash-test")
def _dead() -> None:
    pass


def _flow_run(*states) -> FlowRun:
    """A flow run in the Prefect API that went through `states`, the last one its own."""

    async def make() -> FlowRun:
        async with get_client() as client:
            run = await client.create_flow_run(flow=_dead, state=states[0])
            for state in states[1:]:
                await client.set_flow_run_state(run.id, state, force=True)
            return await client.read_flow_run(run.id)

    return asyncio.run(make())


def _died_on(store, file, run: FlowRun) -> None:
    """What `run` wrote before dying on `file`: its claim (taking over a dead run's), its attempt."""
    from flows.incoming_tasks import run_ended

    taken = claim(store, file, str(run.id), owner_ended=run_ended)
    assert taken.outcome is Claim.CLAIMED
    record_attempt(store, file, str(run.id), limit=99)


def test_the_claim_of_a_run_that_ended_is_taken_over_at_once_and_of_a_live_one_not(
    store, prefect_api
):
    from flows.incoming_tasks import run_ended

    store.put("incoming/x.csv", b"x")
    [file] = list_incoming(store, "incoming/")
    running = _flow_run(Running())
    unknown, not_a_run = str(uuid.uuid4()), "local"
    for owner in (str(running.id), unknown, not_a_run):  # the file waits for the claim's expiry
        store.delete(CLAIM)
        assert claim(store, file, owner).outcome is Claim.CLAIMED
        held = store.etag(CLAIM)
        assert claim(store, file, "next-run", owner_ended=run_ended) == ClaimResult(Claim.BUSY)
        assert store.etag(CLAIM) == held
    for ended in (Crashed(message="container exited with code 137"), Completed()):
        owner = _flow_run(Running(), ended)
        store.delete(CLAIM)
        claim(store, file, str(owner.id))
        taken = claim(store, file, "next-run", owner_ended=run_ended)
        assert taken.outcome is Claim.CLAIMED and taken.etag == store.etag(CLAIM), ended.name
        assert json.loads(store.get(CLAIM))["owner"] == "next-run"


def _run():
    from flows.inference import incoming_inference_flow

    state = incoming_inference_flow("incoming/", return_state=True)
    summary = state.result(raise_on_failure=False)
    return state, getattr(summary, "summary", summary)


def test_a_file_its_runs_die_on_is_counted_retried_at_once_and_set_aside(published, monkeypatch):
    """The spec's case: a file that kills the run predicting it (its container OOM-killed). Each
    death counts; the next run retries it at once instead of skipping it for the claim's 2 hours;
    once it has killed TAXI_SET_ASIDE_AFTER_FAILURES runs it is set aside without a try, and the
    files after it are predicted in that same run."""
    store, version = published
    monkeypatch.setenv("TAXI_SET_ASIDE_AFTER_FAILURES", "2")
    store.put("incoming/x.csv", YELLOW_FEB.read_bytes())
    store.put("incoming/y.csv", YELLOW_FEB.read_bytes())
    [x, _] = list_incoming(store, "incoming/")

    first = _flow_run(Running(), Crashed(message="container exited with code 137"))
    _died_on(store, x, first)
    record = json.loads(store.get("failures/incoming/x.csv.json"))
    assert record["failures"] == 1 and record["attempt_run"] == str(first.id)
    second = _flow_run(Running(), Crashed(message="container exited with code 137"))
    _died_on(store, x, second)  # took over the first one's claim at once, counted its death
    record = json.loads(store.get("failures/incoming/x.csv.json"))
    assert record["failures"] == 2 and record["attempt_run"] == str(second.id)
    assert record["last_error"] == UNFINISHED and record["last_run"] == str(first.id)

    state, summary = _run()
    assert state.is_failed() and "1 set aside under failed/" in state.message  # one alert
    [failed] = summary["failed"]
    assert failed["input"] == "incoming/x.csv" and failed["error"] == UNFINISHED
    assert failed["failures"] == 2 and failed["set_aside"]
    [copy] = store.list_keys("failed/")
    assert copy.endswith("/incoming/x.csv") and not store.exists("incoming/x.csv")
    assert [p["input"] for p in summary["predicted"]] == ["incoming/y.csv"]
    assert store.list_keys("claims/") == [] and store.list_keys("failures/") == []
    # Not tried: the run wrote no predictions of it.
    assert not store.exists(f"predictions/incoming/x.csv/{version}.parquet")


def test_after_one_death_the_next_run_predicts_the_file_and_forgets_the_failure(
    published, monkeypatch
):
    store, version = published
    monkeypatch.setenv("TAXI_SET_ASIDE_AFTER_FAILURES", "2")
    store.put("incoming/x.csv", YELLOW_FEB.read_bytes())
    [x] = list_incoming(store, "incoming/")
    _died_on(store, x, _flow_run(Running(), Crashed(message="container exited with code 137")))

    state, summary = _run()
    assert state.is_completed() and [p["input"] for p in summary["predicted"]] == ["incoming/x.csv"]
    assert store.exists(f"predictions/incoming/x.csv/{version}.parquet")
    assert store.list_keys("claims/") == [] and store.list_keys("failures/") == []


def test_a_run_that_fails_on_a_file_counts_its_attempt_once(published, monkeypatch):
    """The attempt counted at the claim is the failure itself, not one more."""
    store, _ = published
    monkeypatch.setenv("TAXI_SET_ASIDE_AFTER_FAILURES", "3")
    monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", "0")
    store.put("incoming/bad.parquet", b"PAR1 this upload was cut off")
    for count in (1, 2):
        state, summary = _run()
        assert state.is_completed() and [f["failures"] for f in summary["failed"]] == [count]
        record = json.loads(store.get("failures/incoming/bad.parquet.json"))
        assert record["failures"] == count and record["attempt_run"] is None
        assert "not a readable parquet file" in record["last_error"]
