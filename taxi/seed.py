"""Create the bucket, upload trip files to its data/ prefix, and drop a first file into
incoming/ for the hourly inference job to find.

    python -m taxi.seed --data-dir data [--incoming green_tripdata_2021-03.parquet]

Idempotent: objects already present with the same content are left alone, so re-seeding
does not make the hourly job predict a file again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from taxi.layout import DATA_SUFFIXES, INCOMING_PREFIX, data_key, incoming_key
from taxi.storage.objects import ObjectStore, sha256_hex

DEFAULT_INCOMING = ("green_tripdata_2021-03.parquet",)


def seed_bucket(data_dir: Path, store: ObjectStore | None = None, incoming: tuple[str, ...] = DEFAULT_INCOMING) -> list[str]:
    """Upload every trip file of `data_dir` to data/, and the files named in `incoming` to
    incoming/ as well; returns the s3:// URIs of the files now in the bucket. The bucket
    defaults to TAXI_BUCKET."""
    store = store or ObjectStore()
    files = sorted(p for p in Path(data_dir).iterdir() if p.is_file() and p.name.endswith(DATA_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no trip files ({', '.join(DATA_SUFFIXES)}) in {data_dir}")
    missing = sorted(set(incoming) - {p.name for p in files})
    if missing:
        raise FileNotFoundError(f"{missing} not in {data_dir}: nothing to put under {INCOMING_PREFIX}")
    store.ensure_bucket()
    uris = []
    for path in files:
        body = path.read_bytes()
        keys = [data_key(path.name)] + ([incoming_key(path.name)] if path.name in incoming else [])
        for key in keys:
            _put_unless_identical(store, key, body)
            uris.append(store.uri(key))
    return uris


def _put_unless_identical(store: ObjectStore, key: str, body: bytes) -> None:
    if store.exists(key) and sha256_hex(store.get(key)) == sha256_hex(body):
        return
    store.put(key, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument(
        "--incoming", action="append", metavar="FILE",
        help=f"a file of --data-dir to also put under {INCOMING_PREFIX} (repeatable; default {DEFAULT_INCOMING[0]})",
    )  # fmt: skip
    args = parser.parse_args()
    for uri in seed_bucket(args.data_dir, incoming=tuple(args.incoming or DEFAULT_INCOMING)):
        print(uri)


if __name__ == "__main__":
    main()
