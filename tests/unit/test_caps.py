"""The caps on what one trip file may hold (taxi.tlc.Caps: TAXI_MAX_ROWS, and
TAXI_DOWNLOAD_MAX_BYTES once decompressed), on hostile files built for real
(tests/hostile_files.py): every file `taxi.load_data` reads, local ones included."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from taxi import DataError, load_data
from taxi.settings import DEFAULT_MAX_ROWS, Settings
from tests.hostile_files import csv_bytes, gzip_bomb, row_bomb, zero_data_pages
from tests.paths import GREEN_JAN, ROOT, YELLOW_JAN

YELLOW_JAN_ROWS = 28_401
GREEN_JAN_ROWS = 76_518
# What a child process that loads one file prints: how it ended and its own peak RSS.
LOAD_IN_A_CHILD = """
import json, resource, sys
from taxi import DataError, load_data
try:
    ended = f"{len(load_data(sys.argv[1]))} trips"
except DataError as error:
    ended = str(error)
print(json.dumps({"ended": ended, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


@pytest.fixture(scope="module")
def hundred_million_rows(tmp_path_factory) -> str:
    return str(row_bomb(tmp_path_factory.mktemp("bomb") / "green_tripdata_2021-01.parquet"))


@pytest.fixture
def caps(monkeypatch):
    """Sets the caps load_data reads from the environment; the defaults until called."""
    monkeypatch.delenv("TAXI_MAX_ROWS", raising=False)
    monkeypatch.delenv("TAXI_DOWNLOAD_MAX_BYTES", raising=False)

    def set_caps(rows: int | None = None, decompressed: int | None = None) -> None:
        for name, value in (("TAXI_MAX_ROWS", rows), ("TAXI_DOWNLOAD_MAX_BYTES", decompressed)):
            if value is not None:
                monkeypatch.setenv(name, str(value))

    return set_caps


def _load_in_a_child(path: str, **environ: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **environ}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_CHILD, path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_the_row_cap_is_a_setting_of_5_million_rows_named_in_its_errors():
    assert Settings.from_env({}).max_rows == DEFAULT_MAX_ROWS == 5_000_000
    assert Settings.from_env({"TAXI_MAX_ROWS": " 1000 "}).max_rows == 1000
    for bad in ("0", "-1", "1e6", "8M", "1.5"):
        with pytest.raises(
            ValueError, match="^TAXI_MAX_ROWS must be a whole number of rows, at least 1$"
        ):
            Settings.from_env({"TAXI_MAX_ROWS": bad})


def test_a_small_parquet_declaring_100_million_rows_is_refused_from_its_footer(
    hundred_million_rows, caps, tmp_path
):
    size = os.path.getsize(hundred_million_rows)
    assert size < 5 * 1024 * 1024 and pq.read_metadata(hundred_million_rows).num_rows == 100_000_000
    expected = "declares 100,000,000 rows, more than the 5,000,000-row limit (TAXI_MAX_ROWS)"
    with pytest.raises(DataError) as raised:
        load_data(hundred_million_rows)
    assert str(raised.value) == f"{hundred_million_rows}: {expected}"

    # Only the footer was read: with every data page zeroed the refusal is the same, while a
    # reader let past the cap fails on the first page it touches.
    footer_only = tmp_path / "green_tripdata_2021-01.parquet"
    shutil.copy(hundred_million_rows, footer_only)
    zero_data_pages(footer_only)
    with pytest.raises(DataError, match=re.escape(expected)):
        load_data(str(footer_only))
    caps(rows=100_000_000)
    with pytest.raises(DataError, match="parquet file is corrupt or truncated"):
        load_data(str(footer_only))


def test_refusing_the_100_million_rows_takes_no_more_memory_than_a_small_file(hundred_million_rows):
    """Measured in child processes: read whole, those rows would take GBs."""
    refused = _load_in_a_child(hundred_million_rows)
    assert refused["ended"].endswith("more than the 5,000,000-row limit (TAXI_MAX_ROWS)")
    small = _load_in_a_child(str(GREEN_JAN))
    assert small["ended"] == f"{GREEN_JAN_ROWS} trips"
    assert refused["peak_kb"] < small["peak_kb"] + 50 * 1024, (refused, small)


def test_a_parquet_declaring_more_uncompressed_bytes_than_the_byte_cap_is_refused(caps):
    footer = pq.read_metadata(GREEN_JAN)
    declared = sum(footer.row_group(i).total_byte_size for i in range(footer.num_row_groups))
    assert declared > os.path.getsize(GREEN_JAN)  # the cap is on what it unpacks to
    caps(decompressed=declared)
    assert len(load_data(str(GREEN_JAN))) == GREEN_JAN_ROWS  # at the cap: read
    caps(decompressed=declared - 1)
    limit = f"the {declared - 1:,}-byte limit (TAXI_DOWNLOAD_MAX_BYTES)"
    with pytest.raises(DataError) as raised:
        load_data(str(GREEN_JAN))
    assert (
        str(raised.value)
        == f"{GREEN_JAN}: declares {declared:,} bytes uncompressed, more than {limit}"
    )


def test_a_parquet_or_csv_at_the_row_cap_is_read_one_row_over_it_refused(caps, tmp_path):
    caps(rows=GREEN_JAN_ROWS)
    assert len(load_data(str(GREEN_JAN))) == GREEN_JAN_ROWS
    caps(rows=GREEN_JAN_ROWS - 1)
    with pytest.raises(
        DataError, match=f"declares {GREEN_JAN_ROWS:,} rows, more than the 76,517-row limit"
    ):
        load_data(str(GREEN_JAN))

    caps(rows=YELLOW_JAN_ROWS)
    assert len(load_data(str(YELLOW_JAN))) == YELLOW_JAN_ROWS
    caps(rows=YELLOW_JAN_ROWS - 1)
    with pytest.raises(DataError) as raised:
        load_data(str(YELLOW_JAN))
    assert str(raised.value) == f"{YELLOW_JAN}: has more than the 28,400-row limit (TAXI_MAX_ROWS)"
    # A gzipped CSV of more rows than the cap, in fewer bytes than the byte cap.
    bomb = gzip_bomb(tmp_path / "yellow.csv.gz", mebibytes=2)
    caps(rows=10_000, decompressed=10 * 1024 * 1024)
    with pytest.raises(
        DataError, match=r"csv\.gz: has more than the 10,000-row limit \(TAXI_MAX_ROWS\)$"
    ):
        load_data(str(bomb))


def test_a_small_csv_gz_is_cut_off_once_its_decompressed_bytes_pass_the_cap(caps, tmp_path):
    bomb = gzip_bomb(tmp_path / "yellow.csv.gz", mebibytes=64, tail=b"not gzip at all " * 64)
    assert os.path.getsize(bomb) < 300_000
    caps(decompressed=1_000_000)
    expected = "is more than the 1,000,000-byte limit (TAXI_DOWNLOAD_MAX_BYTES) decompressed"
    with pytest.raises(DataError) as raised:
        load_data(str(bomb))
    assert str(raised.value) == f"{bomb}: {expected}"
    assert raised.value.__cause__ is None  # no Arrow or stream error with the bytes behind it
    # The read stopped at the cap: read to its end, the same file fails on its tail.
    caps(decompressed=10**12, rows=10**9)
    with pytest.raises(DataError, match="not a readable CSV file"):
        load_data(str(bomb))


def test_a_plain_csv_over_the_byte_cap_is_refused_too(caps):
    size = os.path.getsize(YELLOW_JAN)
    caps(decompressed=size)
    assert len(load_data(str(YELLOW_JAN))) == YELLOW_JAN_ROWS
    caps(decompressed=size - 1)
    with pytest.raises(
        DataError,
        match=rf"^{YELLOW_JAN}: is more than the {size - 1:,}-byte limit \(TAXI_DOWNLOAD_MAX_BYTES\)$",
    ):
        load_data(str(YELLOW_JAN))


def test_cutting_off_a_1_gib_csv_gz_takes_no_more_memory_than_a_small_file(tmp_path):
    """Measured in child processes: the whole 1 GiB of CSV would take GBs once read."""
    bomb = gzip_bomb(tmp_path / "yellow.csv.gz", mebibytes=1024)
    assert csv_bytes(bomb) > 10**9 and os.path.getsize(bomb) < 5 * 1024 * 1024
    cut = _load_in_a_child(str(bomb), TAXI_DOWNLOAD_MAX_BYTES="1000000")
    assert (
        cut["ended"]
        == f"{bomb}: is more than the 1,000,000-byte limit (TAXI_DOWNLOAD_MAX_BYTES) decompressed"
    )
    small = _load_in_a_child(str(YELLOW_JAN))
    assert small["ended"] == f"{YELLOW_JAN_ROWS} trips"
    assert cut["peak_kb"] < small["peak_kb"] + 50 * 1024, (cut, small)
