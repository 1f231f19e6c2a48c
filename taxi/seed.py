"""Create the bucket and upload trip files to its data/ prefix.

    python -m taxi.seed --data-dir data

Idempotent: objects already present with the same content are left alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from taxi.storage import ArtifactStore, sha256_hex

UPLOADED_SUFFIXES = (".parquet", ".csv")


def seed_bucket(data_dir: Path, store: ArtifactStore | None = None) -> list[str]:
    """Upload every trip file of `data_dir`; returns the s3:// URIs of the files now in the bucket."""
    store = store or ArtifactStore()
    files = sorted(p for p in Path(data_dir).iterdir() if p.is_file() and p.name.endswith(UPLOADED_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no .parquet or .csv files in {data_dir}")
    store.ensure_bucket()
    uris = []
    for path in files:
        key = f"{store.config.data_prefix}/{path.name}"
        body = path.read_bytes()
        existing = store.client.list_objects_v2(Bucket=store.bucket, Prefix=key, MaxKeys=1).get("Contents", [])
        if not (existing and existing[0]["Key"] == key and existing[0]["Size"] == len(body) and sha256_hex(store.get(key)) == sha256_hex(body)):
            store.put(key, body)
        uris.append(store.uri(key))
    return uris


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args()
    for uri in seed_bucket(args.data_dir):
        print(uri)


if __name__ == "__main__":
    main()
