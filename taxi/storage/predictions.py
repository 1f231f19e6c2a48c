"""Writing predictions: one parquet object per input and model version (key: taxi.layout)."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from taxi.layout import predictions_key
from taxi.storage.objects import ObjectStore


def write_predictions(
    objects: ObjectStore,
    predictions: pd.DataFrame,
    source: str,
    version: str,
    name: str | None = None,
) -> str:
    """Store predictions as predictions/<name>/<version>.parquet (`name` defaults to the
    input's file name), recording the model version and the source in the file's metadata;
    returns its s3:// URI."""
    buffer = io.BytesIO()
    table = pa.Table.from_pandas(predictions, preserve_index=False)
    table = table.replace_schema_metadata(
        {
            **(table.schema.metadata or {}),
            b"taxi.model_version": version.encode(),
            b"taxi.source": source.encode(),
        }
    )
    pq.write_table(table, buffer)
    key = predictions_key(source, version, name)
    objects.put(key, buffer.getvalue())
    return objects.uri(key)
