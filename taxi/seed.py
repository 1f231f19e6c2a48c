"""Create the bucket, ingest the TLC monthly files of a directory into its data/ prefix, and
drop a first file into incoming/ for the hourly inference job to find.

    python -m taxi.seed --data-dir data [--incoming green_tripdata_2021-03.parquet]

The months go in exactly as the taxi-ingest flow copies them (taxi.ingest, with the
directory as the source): data/<color>/<TLC file name> with its data manifest, signed with
TAXI_SIGNING_KEY when it is set (a Secret block is read only by the flows). Only files
named as the TLC names them (<color>_tripdata_YYYY-MM.parquet) are months; other files
(the yellow CSV excerpts) are not uploaded.

Idempotent: months already in the bucket and incoming/ objects with the same content are
left alone, so re-seeding does not make the hourly job predict a file again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from taxi.ingest import ingest_month, months_present
from taxi.layout import INCOMING_PREFIX, data_key, incoming_key, parse_tlc_file_name
from taxi.settings import Settings
from taxi.storage.objects import ObjectStore, sha256_hex

DEFAULT_INCOMING = ("green_tripdata_2021-03.parquet",)


def seed_bucket(
    data_dir: Path,
    store: ObjectStore | None = None,
    incoming: tuple[str, ...] = DEFAULT_INCOMING,
    signing_key: bytes | None = None,
) -> list[str]:
    """Ingest every TLC monthly file of `data_dir` into data/<color>/ (data manifests signed
    with `signing_key`, if given), and put the files named in `incoming` under incoming/ as
    well; returns the s3:// URIs of the files now in the bucket. The bucket defaults to
    TAXI_BUCKET."""
    store = store or ObjectStore()
    names = sorted(p.name for p in Path(data_dir).iterdir() if p.is_file())
    months = sorted(parsed for name in names if (parsed := parse_tlc_file_name(name)) is not None)
    if not months:
        raise FileNotFoundError(
            f"no TLC monthly files (<color>_tripdata_YYYY-MM.parquet) in {data_dir}"
        )
    missing = sorted(set(incoming) - set(names))
    if missing:
        raise FileNotFoundError(
            f"{missing} not in {data_dir}: nothing to put under {INCOMING_PREFIX}"
        )
    store.ensure_bucket()
    present = {color: months_present(store, color) for color in {color for color, _ in months}}
    uris = []
    for color, month in months:
        if month not in present[color]:
            result = ingest_month(store, color, month, str(data_dir), signing_key=signing_key)
            if result.manifest is None:  # the file went away since it was listed
                raise FileNotFoundError(result.detail)
        uris.append(store.uri(data_key(color, month)))
    for name in incoming:
        key = incoming_key(name)
        _put_unless_identical(store, key, (Path(data_dir) / name).read_bytes())
        uris.append(store.uri(key))
    return uris


def _put_unless_identical(store: ObjectStore, key: str, body: bytes) -> None:
    if store.exists(key) and sha256_hex(store.get(key)) == sha256_hex(body):
        return
    store.put(key, body)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument(
        "--incoming",
        action="append",
        metavar="FILE",
        help=f"a file of --data-dir to also put under {INCOMING_PREFIX} (repeatable; default {DEFAULT_INCOMING[0]})",
    )
    args = parser.parse_args()
    key = Settings.from_env().signing_key
    signing_key = None if key is None else key.get_secret_value().encode()
    incoming = tuple(args.incoming or DEFAULT_INCOMING)
    for uri in seed_bucket(args.data_dir, incoming=incoming, signing_key=signing_key):
        print(uri)


if __name__ == "__main__":
    main()
