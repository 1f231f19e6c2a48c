"""Where everything lives in the bucket: every prefix, object name and key, defined once.

    data/<color>/<color>_tripdata_YYYY-MM.parquet
                                            one TLC month, as published (taxi.ingest)
    data/<color>/<color>_tripdata_YYYY-MM.parquet.manifest.json
                                            its data manifest, written last: a month
                                            without it is not in the bucket
    data/<color>/<color>_tripdata_YYYY-MM.parquet.manifest.json.sig
                                            HMAC-SHA256 of the data manifest (with a key)
    incoming/<path>                         files for the hourly inference job to predict
    claims/<name>.json                      "a run is predicting this file now" (taxi.incoming)
    processed/<name>.json                   "this file is done", names its predictions
    failures/<name>.json                    failed runs of a file so far (taxi.incoming)
    failed/<id>/incoming/<path>             files set aside after repeated failures (<id>: when,
                                            and a random part); moved back under incoming/ by
                                            a person to retry them (failed/<id>/<name> when that
                                            key would be too long)
    models/<version>/model.pkl              fitted model
    models/<version>/vectorizer.pkl         fitted vectorizer
    models/<version>/metrics.json           evaluation figures
    models/<version>/evaluation.png         predicted vs actual, error by hour
    models/<version>/reference.json         reference statistics of the training trips
    models/<version>/manifest.json          written last: a version without it is incomplete
    models/<version>/manifest.json.sig      HMAC-SHA256 of the manifest's bytes (with a key)
    models/latest.json                      marker naming the current version
    predictions/<name>/<version>.parquet    <name>: the input's file name without the data
                                            suffix, or for incoming files their <name> below
    monitoring/predictions/<name>/<version>.json
                                            monitoring record of those predictions: the
                                            predictions key under monitoring/, .json
    monitoring/plots/monitoring.png         realized RMSE and drift over the newest records

<name> of an incoming file (incoming_name): its whole key, suffix included (incoming/a/x.csv),
so that distinct input keys never share an object; a key too long for the keys above to stay
within S3's limits goes by a shortened name ending in ~<32 hex digits of its SHA-256>.

Pure functions and constants: formatting a key or a URI needs no client and no bucket access.
"""

from __future__ import annotations

import hashlib
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
DATA_SIGNATURE_SUFFIX = DATA_MANIFEST_SUFFIX + ".sig"

# S3's limit on a key (AWS and SeaweedFS: KeyTooLongError past it); SeaweedFS also refuses a
# `/`-separated part longer than 255 bytes.
MAX_KEY_BYTES = 1024
# The hourly job's keys about an incoming file put at most 124 bytes around its name (the longest,
# monitoring/predictions/<name>/<version>.json, 52 with today's 23-byte version ids) and append
# .json to its last part: names within these bounds keep every such key a valid S3 key.
MAX_INCOMING_NAME_BYTES = 900
MAX_INCOMING_NAME_PART_BYTES = 250
# A shortened name: the leading folders of the key that fit in this many bytes, the start of its
# file name, then ~ and the first 32 hex digits of the key's SHA-256.
SHORTENED_FOLDERS_BYTES = 600
SHORTENED_FILE_NAME_BYTES = 64
_SHORTENED_NAME = re.compile(r"~[0-9a-f]{32}\Z")

# The TLC's name of one monthly file; the bucket keeps it (and the TLC's site serves it).
TLC_FILE_NAME = "{color}_tripdata_{year:04d}-{month:02d}.parquet"
_TLC_FILE_NAME = re.compile(r"(yellow|green)_tripdata_(\d{4})-(\d{2})\.parquet")


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def browser_url(uri: str, template: str | None) -> str:
    """Where a person opens the s3:// object `uri` in a browser: `template` with {bucket} and {key}
    filled in, both percent-encoded (slashes too), e.g. MinIO's console
    http://localhost:9001/browser/{bucket}/{key} or SeaweedFS's admin UI
    http://localhost:9001/api/files/download?path=/buckets/{bucket}/{key} (a query value:
    %2F reads as "/"); without a template, `uri` itself."""
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


def data_signature_key(color: str, month: tuple[int, int]) -> str:
    return data_key(color, month) + DATA_SIGNATURE_SUFFIX


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


def incoming_name(input_key: str) -> str:
    """What the hourly job calls an incoming file in its own keys (claims/<name>.json,
    processed/<name>.json, failures/<name>.json, predictions/<name>/<version>.parquet): the
    input key itself, suffix and all, so that incoming/x.csv and incoming/x.parquet (or
    incoming/a/x.csv and incoming/b/x.csv) never share an object and the bucket stays readable.

    A key too long for those keys to stay valid S3 keys (more than MAX_INCOMING_NAME_BYTES, or a
    part longer than MAX_INCOMING_NAME_PART_BYTES) is shortened: its leading folders while they
    fit in SHORTENED_FOLDERS_BYTES, the first SHORTENED_FILE_NAME_BYTES of its file name, and
    "~" with 32 hex digits of the key's SHA-256. A key that already ends that way is shortened
    too, so that a key kept whole never equals another key's shortened name."""
    parts = input_key.split("/")
    fits = len(input_key.encode()) <= MAX_INCOMING_NAME_BYTES and all(
        len(part.encode()) <= MAX_INCOMING_NAME_PART_BYTES for part in parts
    )
    if fits and not _SHORTENED_NAME.search(input_key):
        return input_key
    folders = ""
    for part in parts[:-1]:
        if (
            len(part.encode()) > MAX_INCOMING_NAME_PART_BYTES
            or len(f"{folders}{part}/".encode()) > SHORTENED_FOLDERS_BYTES
        ):
            break
        folders += part + "/"
    # Cut on a byte count, dropping a character split in two by the cut.
    file_name = parts[-1].encode()[:SHORTENED_FILE_NAME_BYTES].decode("utf-8", errors="ignore")
    return f"{folders}{file_name}~{hashlib.sha256(input_key.encode()).hexdigest()[:32]}"


def claim_key(input_key: str) -> str:
    return CLAIMS_PREFIX + incoming_name(input_key) + RECORD_SUFFIX


def done_record_key(input_key: str) -> str:
    return PROCESSED_PREFIX + incoming_name(input_key) + RECORD_SUFFIX


def done_records_prefix(input_prefix: str) -> str:
    """Where the done-records of the inputs under `input_prefix` are (those of shortened names
    too, while the prefix is shorter than SHORTENED_FOLDERS_BYTES)."""
    return PROCESSED_PREFIX + input_prefix


def done_record_name(key: str) -> str | None:
    """The incoming name (incoming_name) a done-record key is about; None for any other key."""
    if not (key.startswith(PROCESSED_PREFIX) and key.endswith(RECORD_SUFFIX)):
        return None
    return key[len(PROCESSED_PREFIX) : -len(RECORD_SUFFIX)]


def failure_count_key(input_key: str) -> str:
    return FAILURES_PREFIX + incoming_name(input_key) + RECORD_SUFFIX


def set_aside_key(input_key: str, set_aside_id: str) -> str:
    """Where a file that kept failing is moved: failed/<set_aside_id>/<its key>, so that moving
    it back is dropping failed/<set_aside_id>/, and a file set aside again under the same key
    (a new upload that fails too) never replaces the first one; failed/<set_aside_id>/<its
    incoming name> when that would be too long (the run's report names both)."""
    folder = f"{SET_ASIDE_PREFIX}{set_aside_id}/"
    whole = folder + input_key
    return whole if len(whole.encode()) <= MAX_KEY_BYTES else folder + incoming_name(input_key)


def conditional_write_probe_key(probe_id: str) -> str:
    """A throwaway object with which a run checks that the S3 server honours conditional
    writes (taxi.incoming.check_conditional_writes); deleted by the check."""
    return f"{CLAIMS_PREFIX}.conditional-write-probe/{probe_id}{RECORD_SUFFIX}"
