"""What the hourly job does once per run rather than once per file, on the real Prefect and S3
servers: loading the model, redrawing the monitoring plot."""

from __future__ import annotations

import pytest

from taxi.layout import MODEL_OBJECT, model_key
from taxi.storage import IntegrityError
from tests.conftest import YELLOW_FEB
from tests.integration import prefect_api as api


def test_the_model_is_loaded_once_per_run_and_lent_only_to_its_files(published):
    from flows.inference import incoming_inference_flow, inference_flow

    store, version = published
    store.put("incoming/a.csv", YELLOW_FEB.read_bytes())
    store.put("incoming/b.csv", YELLOW_FEB.read_bytes())

    state = incoming_inference_flow("incoming/", return_state=True)
    summary = state.result()
    assert sorted(p["input"] for p in summary["predicted"]) == ["incoming/a.csv", "incoming/b.csv"]
    run = state.state_details.flow_run_id
    api.task_runs(run, "write-predictions", until=lambda runs: len(runs) == 2)  # both files' tasks recorded
    assert len(api.task_runs(run, "load-model")) == 1

    # Outside the hourly run nothing is lent: a standalone run loads (and verifies) the version
    # itself, and so refuses it once its model object no longer matches the manifest.
    store.put(model_key(version, MODEL_OBJECT), b"tampered")
    with pytest.raises(IntegrityError, match="does not match the sha256 in its manifest"):
        inference_flow(str(YELLOW_FEB), version)
