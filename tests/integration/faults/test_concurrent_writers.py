"""Several trainings writing to one bucket: two signed trainings publishing at once, and the
versions that trainings which died (or are still running) left incomplete, which a later
training's save-model removes only past their age cut-off.

A new test of writers that overlap, race for `latest` through the flows, or leave a version
half-written belongs here.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import pytest

import taxi.storage.registry
from taxi import run_training
from taxi.storage.manifests import new_version_id
from taxi.storage.objects import ObjectStore
from taxi.storage.registry import INCOMPLETE_VERSION_MAX_AGE, ModelRegistry
from tests.integration import prefect_api as api
from tests.paths import YELLOW_FEB, YELLOW_JAN

SIGNING_KEY = "fault-table-signing-key-" + "k" * 16


def test_save_model_removes_incomplete_versions_older_than_the_cut_off_and_keeps_younger_ones(
    prefect_api, bucket_env, small_model, monkeypatch
):
    from prefect import flow

    from flows import tasks

    # Two versions a training died in (or is still in) the middle of: objects, no manifest.
    abandoned = new_version_id()
    bucket_env.put(f"models/{abandoned}/model.pkl", b"the start of a version")
    time.sleep(1.5)  # S3 times objects to the second
    in_progress = new_version_id()
    bucket_env.put(f"models/{in_progress}/model.pkl", b"the start of a version")
    written = {
        item["Key"].split("/")[1]: item["LastModified"]
        for item in bucket_env.list_objects("models/")
    }
    assert written[abandoned] < written[in_progress]

    # The server cannot back-date an object by hours, so the registry's clock moves instead:
    # to the cut-off after a moment between the two writes, so the first version is older
    # than the cut-off and the second younger, however long this run takes.
    between = written[abandoned] + (written[in_progress] - written[abandoned]) / 2
    later = between + INCOMPLETE_VERSION_MAX_AGE

    class ClockAfterTheCutOff(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:
            return later.astimezone(tz)

    monkeypatch.setattr(taxi.storage.registry, "datetime", ClockAfterTheCutOff)

    @flow(name="publish-a-model")
    def publish() -> dict[str, Any]:
        model = small_model
        return tasks.save_model(
            model.model, model.vectorizer, model.metrics, {"model_type": "linear"}, True, {}
        )

    state = publish(return_state=True)
    assert state.is_completed(), state.message
    version = state.result()["version"]
    left = {key.split("/")[1] for key in bucket_env.list_keys("models/") if key.count("/") == 2}
    assert left == {version, in_progress}
    logs = api.logs(state.state_details.flow_run_id)
    assert (
        f"Removed incomplete model versions left by failed training runs: ['{abandoned}']" in logs
    )


def _first_trips(path: Path, trips: int) -> str:
    """A CSV of the first `trips` trips of the January yellow sample."""
    path.write_text("\n".join(YELLOW_JAN.read_text().splitlines()[: trips + 1]) + "\n")
    return str(path)


@pytest.mark.parametrize("pair", ["one-better-one-worse", "both-better"])
def test_two_signed_trainings_publishing_at_once_leave_complete_versions_and_a_consistent_latest(
    prefect_api, bucket_env, small_model, tmp_path, monkeypatch, pair
):
    """A signed champion, then two trainings at once, each better than the champion (all of
    January) or worse (300 trips). Whatever the interleaving: both runs complete with complete,
    signed versions; each decides by the promotion rule against a verified champion (the one
    before both, or the other run's version if it was published first); `latest` ends on a
    promoted version and, meanwhile, only ever names complete, correctly signed ones. With one
    better and one worse run the outcome is fixed: the worse one loses to the champion and to
    the better run alike, so it is never promoted."""
    from flows.training import training_flow

    monkeypatch.setenv("TAXI_SIGNING_KEY", SIGNING_KEY)
    registry = ModelRegistry(ObjectStore(bucket_env.bucket), signing_key=SIGNING_KEY.encode())
    champion_data, worse_data = (
        _first_trips(tmp_path / "3000.csv", 3000),
        _first_trips(tmp_path / "300.csv", 300),
    )
    trained = run_training(champion_data, str(YELLOW_FEB))
    worse_rmse = run_training(worse_data, str(YELLOW_FEB)).metrics["rmse_test"]
    assert worse_rmse > trained.metrics["rmse_test"] > small_model.metrics["rmse_test"]
    champion = registry.save_model(
        trained.model, trained.vectorizer, metrics=trained.metrics, details={"model_type": "linear"}
    )
    second = worse_data if pair == "one-better-one-worse" else str(YELLOW_JAN)

    start = threading.Barrier(3)
    results: dict[str, Any] = {}

    def train(name: str, train_path: str) -> None:
        start.wait()
        results[name] = training_flow(train_path, str(YELLOW_FEB), return_state=True)

    runs = [
        threading.Thread(target=train, args=args)
        for args in (("first", str(YELLOW_JAN)), ("second", second))
    ]
    for run in runs:
        run.start()
    start.wait()
    reader = ModelRegistry(ObjectStore(bucket_env.bucket), signing_key=SIGNING_KEY.encode())
    seen = {champion["version"]}
    while any(run.is_alive() for run in runs):
        marker = reader.latest_marker()
        if marker["version"] not in seen:
            assert reader.load_model(marker["version"]).version == marker["version"]
            seen.add(marker["version"])
        time.sleep(0.02)
    for run in runs:
        run.join()

    assert {name: state.is_completed() for name, state in results.items()} == {
        "first": True,
        "second": True,
    }, [state.message for state in results.values()]
    first, second = results["first"].result(), results["second"].result()
    versions = {first["model_version"], second["model_version"]}
    assert len(versions) == 2
    # Both complete and signed with the key (load_model verifies the signature).
    manifests = {version: registry.load_model(version).manifest for version in versions}
    for outcome, other in ((first, second), (second, first)):
        assert outcome["champion_version"] in {champion["version"], other["model_version"]}
        better = outcome["champion_rmse_test"] - outcome["rmse_test"] > 0  # margin 0
        # The stored manifest records the decision; the run says whether `latest` names it: a
        # better version loses only a race for `latest` to the other run, and then says so.
        assert manifests[outcome["model_version"]]["promoted"] == better
        lost_race = "another training moved latest meanwhile" in outcome["promotion_reason"]
        assert outcome["promoted"] == (better and not lost_race)
        if lost_race:
            assert other["promoted"]
    latest = registry.load_model("latest").version
    assert latest in versions and manifests[latest]["promoted"]
    assert latest in {
        outcome["model_version"] for outcome in (first, second) if outcome["promoted"]
    }
    assert all(manifests[version]["promoted"] for version in seen - {champion["version"]})
    if pair == "one-better-one-worse":
        assert not second["promoted"] and latest == first["model_version"]
        assert second["model_version"] not in seen  # never latest, not even for a moment
    for state in results.values():
        assert not any(
            "cannot be trusted" in message for message in api.logs(state.state_details.flow_run_id)
        )
    assert registry.incomplete_versions(older_than=timedelta(0)) == []
