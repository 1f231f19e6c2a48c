"""What the hourly job does once per run rather than once per file, on the real Prefect and S3
servers: checking its prefix, loading the model, redrawing the monitoring plot."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taxi import monitoring
from taxi.layout import MODEL_OBJECT, model_key
from taxi.storage.errors import IntegrityError
from tests.integration import prefect_api as api
from tests.paths import YELLOW_FEB


def test_the_model_is_loaded_once_per_run_and_lent_only_to_its_files(published):
    from flows.inference import incoming_inference_flow, inference_flow

    store, version = published
    store.put("incoming/a.csv", YELLOW_FEB.read_bytes())
    store.put("incoming/b.csv", YELLOW_FEB.read_bytes())

    state = incoming_inference_flow("incoming/", return_state=True)
    summary = state.result()
    assert sorted(p["input"] for p in summary["predicted"]) == ["incoming/a.csv", "incoming/b.csv"]
    run = state.state_details.flow_run_id
    api.task_runs(
        run, "write-predictions", until=lambda runs: len(runs) == 2
    )  # both files' tasks recorded
    assert len(api.task_runs(run, "load-model")) == 1

    # Outside the hourly run nothing is lent: a standalone run loads (and verifies) the version
    # itself, and so refuses it once its model object no longer matches the manifest.
    store.put(model_key(version, MODEL_OBJECT), b"tampered")
    with pytest.raises(IntegrityError, match="does not match the sha256 in its manifest"):
        inference_flow(str(YELLOW_FEB), version)


def test_the_plot_is_redrawn_only_once_it_is_older_than_the_interval(published, monkeypatch):
    from flows.inference import incoming_inference_flow

    store, _ = published
    plot_key = "monitoring/plots/monitoring.png"

    def run_over(name: str):
        store.put(f"incoming/{name}", YELLOW_FEB.read_bytes())
        state = incoming_inference_flow("incoming/", return_state=True)
        return state, state.result()["monitoring_plot"]

    state, plot = run_over("a.csv")  # no plot yet: drawn
    assert plot["redrawn"] and plot["records"] == 1
    drawn = store.list_objects(plot_key)[0]

    state, plot = run_over("b.csv")  # a new record, but the plot is younger than the interval: kept
    assert not plot["redrawn"] and plot["records"] is None and plot["uri"] == store.uri(plot_key)
    assert plot["drawn_at"] == drawn["LastModified"].isoformat(timespec="seconds")
    assert store.list_objects(plot_key)[0]["ETag"] == drawn["ETag"]
    [report] = api.artifacts(state.state_details.flow_run_id, "taxi-incoming-inference")
    assert (
        f"drawn at {plot['drawn_at']}; redrawn by the first run that predicts a file 6 hours after that"
        in report.data
    )
    [link] = api.artifacts(state.state_details.flow_run_id, "taxi-monitoring-plot")
    assert plot["uri"] in link.data

    monkeypatch.setattr(
        monitoring, "PLOT_REDRAW_INTERVAL", timedelta(0)
    )  # as if the interval had passed
    state, plot = run_over("c.csv")
    assert plot["redrawn"] and plot["records"] == 3
    assert store.list_objects(plot_key)[0]["ETag"] != drawn["ETag"]


@pytest.mark.parametrize(
    "prefix", ["", "models/", "predictions/", "incoming", "incoming/../models/", "incoming//", None]
)
def test_a_prefix_outside_incoming_is_refused_before_any_work(published, prefix):
    """Three runs with prefix="models/" once moved both model versions and models/latest.json
    to failed/models/: the job reads, and sets aside, only what is under incoming/."""
    from flows.inference import incoming_inference_flow

    store, _ = published
    store.put("incoming/a.csv", YELLOW_FEB.read_bytes())
    before = {item["Key"]: item["ETag"] for item in store.list_objects("")}

    state = incoming_inference_flow(prefix, return_state=True)
    assert state.is_failed()
    assert state.message.startswith("Flow run encountered an exception: ValueError: prefix must be")
    assert "or a folder below it, ending in /" in state.message
    if prefix:
        assert prefix not in state.message.replace("incoming/", "")
    assert {item["Key"]: item["ETag"] for item in store.list_objects("")} == before
    # Its first task never ran (polled for a few seconds: task runs are recorded late).
    run = state.state_details.flow_run_id
    assert api.task_runs(run, "check-conditional-writes", timeout=3) == []
