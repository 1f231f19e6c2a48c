"""Where everything lives in the bucket: every prefix, object name and key, defined once.

    data/<color>/<color>_tripdata_YYYY-MM.parquet
                                            one TLC month, as published (taxi.ingest)
    data/<color>/<color>_tripdata_YYYY-MM.parquet.manifest.json
                                            its data manifest, written last: a month
                                            without it is not in the bucket
    incoming/<path>                         files for the hourly inference job to predict
    claims/incoming/<path>.json             "a run is predicting this file now" (taxi.incoming)
    processed/incoming/<path>.json          "this file is done", names its predictions
    failures/incoming/<path>.json           failed runs of a file so far (taxi.incoming)
    failed/incoming/<path>                  files set aside after repeated failures; moved
                                            back under incoming/ by a person to retry them
    models/<version>/model.pkl              fitted model
    models/<version>/vectorizer.pkl         fitted vectorizer
    models/<version>/metrics.json           evaluation figures
    models/<version>/evaluation.png         predicted vs actual, error by hour
    models/<version>/reference.json         reference statistics of the training trips
    models/<version>/manifest.json          written last: a version without it is incomplete
    models/<version>/manifest.json.sig      HMAC-SHA256 of the manifest's bytes (with a key)
    models/latest.json                      marker naming the current version
    predictions/<name>/<version>.parquet    <name>: the input's file name, or for incoming
                                            files their whole key, without the data suffix
    monitoring/predictions/<name>/<version>.json
                                            monitoring record of those predictions: the
                                            predictions key under monitoring/, .json
    monitoring/plots/monitoring.png         realized RMSE and drift over the newest records

Pure functions and constants: formatting a key or a URI needs no client and no bucket access.
"""

from __future__ import annotations

import re
from urllib.parse import quote

DATA_PREFIX = "data/"
INCOMING_PREFIX = "incoming/"
CLAIMS_PREFIX = "claims/"
PROCESSED_PREFIX = "processed/"
MODELS_PREFIX = "models/"
PREDICTIONS_PREFIX = "predictions/"
MONITORING_PREFIX = "monitoring/"
MONITORING_PLOTS_PREFIX = MONITORING_PREFIX + "plots/"
MONITORING_PLOT_KEY = MONITORING_PLOTS_PREFIX + "monitoring.png"
FAILURES_PREFIX = "failures/"
SET_ASIDE_PREFIX = "failed/"

MODEL_OBJECT = "model.pkl"
VECTORIZER_OBJECT = "vectorizer.pkl"
METRICS_OBJECT = "metrics.json"
PLOT_OBJECT = "evaluation.png"
REFERENCE_OBJECT = "reference.json"
MANIFEST_OBJECT = "manifest.json"
SIGNATURE_OBJECT = "manifest.json.sig"
LATEST_MARKER = "latest.json"
LATEST_KEY = MODELS_PREFIX + LATEST_MARKER

# Trip file suffixes, longest first so that ".csv.gz" is not taken for ".gz".
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
CSV_SUFFIXES: tuple[str, ...] = (".csv.gz", ".csv")
DATA_SUFFIXES: tuple[str, ...] = PARQUET_SUFFIXES + CSV_SUFFIXES
RECORD_SUFFIX = ".json"  # claims and done-records
DATA_MANIFEST_SUFFIX = ".manifest.json"

# The TLC's name of one monthly file; the bucket keeps it (and the TLC's site serves it).
TLC_FILE_NAME = "{color}_tripdata_{year:04d}-{month:02d}.parquet"
_TLC_FILE_NAME = re.compile(r"(yellow|green)_tripdata_(\d{4})-(\d{2})\.parquet")


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def browser_url(uri: str, template: str | None) -> str:
    """Where a person opens the s3:// object `uri` in a browser: `template` with {bucket} and {key}
    filled in, both percent-encoded (slashes too), e.g. MinIO's console
    http://localhost:9001/browser/{bucket}/{key}; without a template, `uri` itself."""
    if not template:
        return uri
    bucket, key = parse_s3_uri(uri)
    return template.format(bucket=quote(bucket, safe=""), key=quote(key, safe=""))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key') from 's3://bucket/key'."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"an S3 URI needs a bucket and a key, got {uri!r}")
    return bucket, key


def without_data_suffix(name: str) -> str:
    for suffix in DATA_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --- TLC months (taxi.ingest) --------------------------------------------------------------


def tlc_file_name(color: str, month: tuple[int, int]) -> str:
    """E.g. green_tripdata_2021-01.parquet."""
    return TLC_FILE_NAME.format(color=color, year=month[0], month=month[1])


def parse_tlc_file_name(name: str) -> tuple[str, tuple[int, int]] | None:
    """(colour, (year, month)) of a TLC monthly file name; None for any other name."""
    found = _TLC_FILE_NAME.fullmatch(name)
    if found is None or not 1 <= int(found.group(3)) <= 12:
        return None
    return found.group(1), (int(found.group(2)), int(found.group(3)))


def data_color_prefix(color: str) -> str:
    return f"{DATA_PREFIX}{color}/"


def data_key(color: str, month: tuple[int, int]) -> str:
    """data/<color>/<the TLC's file name of that month>."""
    return data_color_prefix(color) + tlc_file_name(color, month)


def data_manifest_key(color: str, month: tuple[int, int]) -> str:
    return data_key(color, month) + DATA_MANIFEST_SUFFIX


# --- incoming files ------------------------------------------------------------------------


def incoming_key(file_name: str) -> str:
    return INCOMING_PREFIX + file_name


# --- model versions ------------------------------------------------------------------------


def model_prefix(version: str) -> str:
    return f"{MODELS_PREFIX}{version}/"


def model_key(version: str, name: str) -> str:
    """models/<version>/<name>, e.g. model_key(v, MANIFEST_OBJECT)."""
    return model_prefix(version) + name


# --- predictions ---------------------------------------------------------------------------


def source_name(source: str) -> str:
    """A short, key-safe name for an input: its file name without extension."""
    name = source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    return without_data_suffix(name) or "input"


def prediction_name(input_key: str) -> str:
    """Where an incoming file's predictions go, under predictions/: its whole key without the
    data suffix, so that incoming/a/x.parquet and incoming/b/x.parquet do not collide."""
    return without_data_suffix(input_key)


def predictions_key(source: str, version: str, name: str | None = None) -> str:
    """predictions/<name>/<version>.parquet; `name` defaults to the input's file name."""
    return f"{PREDICTIONS_PREFIX}{name or source_name(source)}/{version}.parquet"


# --- monitoring (taxi.monitoring) -----------------------------------------------------------


def monitoring_record_key(predictions_key: str) -> str:
    """monitoring/<predictions key without .parquet>.json: one record per predictions object."""
    name = predictions_key.removesuffix(".parquet")
    return MONITORING_PREFIX + name + RECORD_SUFFIX


def is_monitoring_record(key: str) -> bool:
    """A batch record under monitoring/ (not a plot or anything else kept under a sub-prefix)."""
    return key.startswith(MONITORING_PREFIX + PREDICTIONS_PREFIX) and key.endswith(RECORD_SUFFIX)


# --- the hourly job's bookkeeping (taxi.incoming) ------------------------------------------


def claim_key(input_key: str) -> str:
    return CLAIMS_PREFIX + input_key + RECORD_SUFFIX


def done_record_key(input_key: str) -> str:
    return PROCESSED_PREFIX + input_key + RECORD_SUFFIX


def done_records_prefix(input_prefix: str) -> str:
    """Where the done-records of the inputs under `input_prefix` are."""
    return PROCESSED_PREFIX + input_prefix


def done_record_input(key: str) -> str | None:
    """The input key a done-record key is about; None for any other key."""
    if not (key.startswith(PROCESSED_PREFIX) and key.endswith(RECORD_SUFFIX)):
        return None
    return key[len(PROCESSED_PREFIX) : -len(RECORD_SUFFIX)]


def failure_count_key(input_key: str) -> str:
    return FAILURES_PREFIX + input_key + RECORD_SUFFIX


def set_aside_key(input_key: str) -> str:
    """Where a file that kept failing is moved: failed/<its key>."""
    return SET_ASIDE_PREFIX + input_key
