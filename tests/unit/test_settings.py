"""Settings the flows read from the environment (no servers needed)."""

from __future__ import annotations

import pytest

from flows import tasks
from taxi.incoming import prediction_name


def test_io_retry_delays(monkeypatch):
    monkeypatch.delenv("TAXI_IO_RETRY_DELAYS", raising=False)
    assert tasks.io_retry_delays() == [2, 10, 30]
    monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", "1, 3")
    assert tasks.io_retry_delays() == [1, 3]
    for bad in ("fast", "1,-2"):
        monkeypatch.setenv("TAXI_IO_RETRY_DELAYS", bad)
        with pytest.raises(ValueError, match="TAXI_IO_RETRY_DELAYS"):
            tasks.io_retry_delays()


def test_signing_key_sources(monkeypatch):
    monkeypatch.delenv("TAXI_SIGNING_KEY", raising=False)
    monkeypatch.delenv("TAXI_SIGNING_KEY_BLOCK", raising=False)
    assert tasks.signing_key() is None
    monkeypatch.setenv("TAXI_SIGNING_KEY", "x" * 20)
    assert tasks.signing_key() == b"x" * 20
    monkeypatch.setenv("TAXI_SIGNING_KEY_BLOCK", "taxi-signing-key")
    with pytest.raises(ValueError, match="not both") as error:
        tasks.signing_key()
    assert "x" * 20 not in str(error.value)


def test_prediction_names_keep_the_whole_path():
    assert prediction_name("incoming/2021-03/yellow.csv") == "incoming/2021-03/yellow"
    assert prediction_name("incoming/a/green.parquet") == "incoming/a/green"
    assert prediction_name("incoming/b.csv.gz") == "incoming/b"
    assert prediction_name("incoming/no-suffix") == "incoming/no-suffix"
