"""Trip files that hold far more than their size on disk says: the hostile inputs of the tests of
the caps on rows and decompressed bytes (taxi.tlc.Caps). Each is built for real, from a real
trip of the sample months, as an uploader could build it."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.paths import GREEN_JAN, YELLOW_JAN

GREEN_COLUMNS = (
    "lpep_pickup_datetime",
    "lpep_dropoff_datetime",
    "PULocationID",
    "DOLocationID",
    "passenger_count",
    "trip_distance",
)
# Rows written at a time: the file's size, not the writer's memory, is what may be large.
_CHUNK_ROWS = 1 << 20


def row_bomb(path: Path, rows: int = 100_000_000) -> Path:
    """A green trip parquet file of `rows` copies of green 2021-01's first trip. The writer
    dictionary-encodes each column (one value, then a run of the same index), as it does a
    TLC month: a few MB for 100 million rows, which take GBs once read."""
    trip = pq.read_table(GREEN_JAN, columns=list(GREEN_COLUMNS)).slice(0, 1)
    indices = pa.array(np.zeros(min(rows, _CHUNK_ROWS), dtype=np.int8))
    chunk = pa.table(
        {
            name: pa.DictionaryArray.from_arrays(indices, trip[name].combine_chunks()).cast(
                trip[name].type
            )
            for name in GREEN_COLUMNS
        }
    )
    with pq.ParquetWriter(path, chunk.schema) as writer:
        for start in range(0, rows, _CHUNK_ROWS):
            writer.write_table(chunk.slice(0, min(_CHUNK_ROWS, rows - start)))
    return path


def zero_data_pages(path: Path) -> None:
    """Overwrite every byte between the leading magic and the footer with zeros: a reader that
    touches any data page fails, one that reads only the footer does not notice."""
    data = bytearray(path.read_bytes())
    footer_length = int.from_bytes(data[-8:-4], "little")
    footer_start = len(data) - 8 - footer_length
    data[4:footer_start] = bytes(footer_start - 4)
    path.write_bytes(bytes(data))


def gzip_bomb(path: Path, mebibytes: int, tail: bytes = b"") -> Path:
    """A gzipped yellow CSV that decompresses to about `mebibytes` MiB of copies of yellow
    2021-01's first trip: one gzip member of 1 MiB of them, compressed once and repeated (a
    gzip file may be several members), then `tail`. About 3.5 KB per MiB."""
    header, trip = YELLOW_JAN.read_bytes().split(b"\n", 2)[:2]
    block = (trip + b"\n") * ((1 << 20) // (len(trip) + 1))
    member = gzip.compress(block, compresslevel=9, mtime=0)
    with open(path, "wb") as out:
        out.write(gzip.compress(header + b"\n", mtime=0))
        for _ in range(mebibytes):
            out.write(member)
        out.write(tail)
    return path


def csv_bytes(path: Path) -> int:
    """The decompressed size of a gzipped CSV (read in chunks, never whole)."""
    size = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            size += len(chunk)
    return size
