"""Settings read from the environment (no servers needed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from flows import policy
from taxi.settings import Settings


def test_io_retry_delays(monkeypatch):
    monkeypatch.delenv("TAXI_IO_RETRY_DELAYS", raising=False)
    assert list(Settings.from_env().io_retry_delays) == [2, 10, 30]
    monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", "1, 3")
    assert list(Settings.from_env().io_retry_delays) == [1, 3]
    for bad in ("fast", "1,-2"):
        monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", bad)
        with pytest.raises(ValueError, match="TAXI_IO_RETRY_DELAYS"):
            list(Settings.from_env().io_retry_delays)


def test_signing_key_sources(monkeypatch):
    monkeypatch.delenv("TAXI_SIGNING_KEY", raising=False)
    monkeypatch.delenv("TAXI_SIGNING_KEY_BLOCK", raising=False)
    assert policy.signing_key() is None
    monkeypatch.setenv("TAXI_SIGNING_KEY", "x" * 20)
    assert policy.signing_key() == b"x" * 20
    monkeypatch.setenv("TAXI_SIGNING_KEY_BLOCK", "taxi-signing-key")
    with pytest.raises(ValueError, match="not both") as error:
        policy.signing_key()
    assert "x" * 20 not in str(error.value)


def test_settings_are_read_from_the_environment_each_time(monkeypatch):
    monkeypatch.setenv("TAXI_BUCKET", "first")
    assert Settings.from_env().bucket == "first"
    monkeypatch.setenv("TAXI_BUCKET", "second")
    assert Settings.from_env().bucket == "second"
    monkeypatch.setenv("TAXI_BUCKET", "")
    assert Settings.from_env().bucket == "taxi"


def test_settings_from_a_mapping_keep_secrets_out_of_their_repr():
    settings = Settings.from_env(
        {
            "TAXI_SIGNING_KEY": "signing-key-0123456789",
            "TAXI_SIGNING_KEY_BLOCK": " taxi-signing-key ",
            "TAXI_IO_RETRY_DELAYS": "1,2",
            "TAXI_WORK_POOL": "pool",
            "AWS_ACCESS_KEY_ID": "access-id-0123",
            "AWS_SECRET_ACCESS_KEY": "secret-0123456789",
        }
    )
    assert settings.signing_key == b"signing-key-0123456789" and settings.signing_key_block == "taxi-signing-key"
    assert settings.io_retry_delays == (1, 2) and settings.work_pool == "pool" and settings.bucket == "taxi"
    assert settings.aws_secret_access_key == "secret-0123456789"
    for secret in ("signing-key-0123456789", "access-id-0123", "secret-0123456789"):
        assert secret not in repr(settings)
    assert Settings.from_env({}) == Settings()


def test_tlc_source_is_read_from_the_environment_and_kept_out_of_the_repr():
    assert Settings.from_env({}).tlc_base_url == "https://d37ci6vzurychx.cloudfront.net/trip-data"
    assert Settings.from_env({"TAXI_TLC_BASE_URL": " "}).tlc_base_url == "https://d37ci6vzurychx.cloudfront.net/trip-data"
    mirror = "https://user:mirror-secret@mirror.example/trip-data"
    settings = Settings.from_env({"TAXI_TLC_BASE_URL": f" {mirror} "})
    assert settings.tlc_base_url == mirror
    assert "mirror-secret" not in repr(settings)
    assert Settings.from_env({"TAXI_TLC_BASE_URL": "/srv/tlc"}).tlc_base_url == "/srv/tlc"


def test_only_the_settings_module_reads_the_environment():
    root = Path(__file__).resolve().parents[2]
    readers = [
        str(path.relative_to(root))
        for package in ("taxi", "flows")
        for path in sorted((root / package).rglob("*.py"))
        if re.search(r"\bos\.(environ|getenv)\b|\bgetenv\(", path.read_text()) and path.name != "settings.py"
    ]
    assert readers == []
    assert "os.environ" in (root / "taxi" / "settings.py").read_text()


def test_importing_taxi_and_the_flows_leaves_the_allocator_alone():
    check = (
        "import pyarrow as pa; before = pa.default_memory_pool().backend_name; import taxi, flows.training, flows.inference; "
        "assert pa.default_memory_pool().backend_name == before, pa.default_memory_pool().backend_name; "
        "from taxi.memory import return_freed_memory_to_the_os; return_freed_memory_to_the_os(); "
        "print(before, pa.default_memory_pool().backend_name)"
    )
    before, after = subprocess.run([sys.executable, "-c", check], check=True, capture_output=True, text=True).stdout.split()
    if before == "system":
        pytest.skip("this pyarrow's default pool is already the system pool: nothing to tell apart")
    assert after == "system"


def test_monitoring_settings(monkeypatch):
    from taxi.monitoring import DEFAULT_THRESHOLD, drift_thresholds

    assert Settings.from_env({}).drift_thresholds == {} and Settings.from_env({}).set_aside_after_failures == 3
    one = Settings.from_env({"TAXI_DRIFT_THRESHOLDS": "0.2"}).drift_thresholds
    assert one == {"default": 0.2} and set(drift_thresholds(one).values()) == {0.2}
    named = Settings.from_env({"TAXI_DRIFT_THRESHOLDS": " pickup_zone = 0.15 , default=0.12"}).drift_thresholds
    limits = drift_thresholds(named)
    assert limits["pickup_zone"] == 0.15 and limits["pickup_hour"] == 0.12
    assert drift_thresholds({"pickup_zone": 0.3})["pickup_hour"] == DEFAULT_THRESHOLD
    for bad in ("high", "pickup_zone=0", "pickup_zone=1.5", "=0.1", "pickup_zone=0.1,"):
        with pytest.raises(ValueError, match="TAXI_DRIFT_THRESHOLDS"):
            Settings.from_env({"TAXI_DRIFT_THRESHOLDS": bad})
    with pytest.raises(ValueError, match="unknown drift statistic 'pickup_zon'"):
        drift_thresholds(Settings.from_env({"TAXI_DRIFT_THRESHOLDS": "pickup_zon=0.2"}).drift_thresholds)

    assert Settings.from_env({"TAXI_SET_ASIDE_AFTER_FAILURES": "5"}).set_aside_after_failures == 5
    for bad in ("0", "-1", "three"):
        with pytest.raises(ValueError, match="TAXI_SET_ASIDE_AFTER_FAILURES"):
            Settings.from_env({"TAXI_SET_ASIDE_AFTER_FAILURES": bad})

    url = "https://hooks.example.com/services/T000/B000/secret-token"
    settings = Settings.from_env({"TAXI_ALERT_WEBHOOK_URL": url})
    assert settings.alert_webhook_url == url and "secret-token" not in repr(settings)


def test_worker_and_pool_settings():
    settings = Settings.from_env({})
    assert (settings.keep_failed_containers_hours, settings.container_sweep_seconds) == (72.0, 60.0)
    assert settings.image is None and settings.flow_network is None
    settings = Settings.from_env(
        {
            "TAXI_KEEP_FAILED_CONTAINERS_HOURS": "0.5",
            "TAXI_CONTAINER_SWEEP_SECONDS": "2",
            "TAXI_IMAGE": "ghcr.io/o/taxi",
            "TAXI_FLOW_NETWORK": "taxi-net",
        }
    )
    assert (settings.keep_failed_containers_hours, settings.container_sweep_seconds) == (0.5, 2.0)
    assert (settings.image, settings.flow_network) == ("ghcr.io/o/taxi", "taxi-net")
    for bad in ("0", "-1", "a day", "inf"):
        with pytest.raises(ValueError, match="TAXI_KEEP_FAILED_CONTAINERS_HOURS must be a number greater than 0"):
            Settings.from_env({"TAXI_KEEP_FAILED_CONTAINERS_HOURS": bad})
