"""The records that cross from `taxi/` to the flows, and are stored or returned as JSON.

TypedDicts: each is the plain dict that is written to the bucket or returned by a flow, so
its JSON form is the one earlier releases wrote, and records they wrote still read. Keys that
older records may lack are NotRequired.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

# --- the model version's manifest (taxi.storage.registry) ------------------------------------


class StoredObject(TypedDict):
    """One object of a model version, as its manifest lists it."""

    key: str
    sha256: str
    bytes: int


class DataUsage(TypedDict):
    uri: str | list[str]
    rows_read: int
    rows_used: int
    # Of the bytes read: training's a list, one per month; test's one (window months: the sha256
    # their data manifests record).
    sha256: NotRequired[str | list[str | None] | None]


class MonthUsageRecord(TypedDict):
    """taxi.pipeline.MonthUsage as JSON."""

    source: str
    rows_read: int
    rows_kept: int
    sha256: NotRequired[str | None]


class TrainingSample(TypedDict):
    rows_trained: int
    sampled: bool
    max_train_rows: int | None
    months: list[MonthUsageRecord]


class WindowRecord(TypedDict):
    """taxi.window.WindowPlan.as_dict: the moving window a version was trained on."""

    as_of: str
    color: str | None
    train_months: list[str]
    test_month: str
    backfill: bool


class PromotionRecord(TypedDict):
    """taxi.evaluation.PromotionDecision.as_dict."""

    promote: bool
    reason: str
    challenger_rmse: float
    champion_version: str | None
    champion_rmse: float | None
    margin: float


class ManifestDetails(TypedDict):
    """What a training run says about its model version, stored in the manifest."""

    model_type: str
    model_format: str
    use_trip_distance: bool
    features: list[str]
    train_data: DataUsage
    test_data: DataUsage
    window: WindowRecord | None
    training_sample: TrainingSample
    promotion: PromotionRecord


class Manifest(TypedDict):
    """A model version's manifest.json: its details (versions stored by earlier releases may
    lack some), metrics, promotion and the checksums of its objects."""

    version: str
    created_at: str
    metrics: dict[str, float]
    promoted: bool
    library_versions: dict[str, str]
    objects: dict[str, StoredObject]
    model_type: NotRequired[str]
    model_format: NotRequired[str]
    use_trip_distance: NotRequired[bool]
    features: NotRequired[list[str]]
    train_data: NotRequired[DataUsage]
    test_data: NotRequired[DataUsage]
    window: NotRequired[WindowRecord | None]
    training_sample: NotRequired[TrainingSample]
    promotion: NotRequired[PromotionRecord]


class LatestMarker(TypedDict):
    """models/latest.json: the promoted version and the checksum of its manifest (markers
    written before the checksum existed lack it)."""

    version: str
    manifest: NotRequired[str]
    manifest_sha256: NotRequired[str | None]
    updated_at: NotRequired[str]


# --- monitoring (taxi.monitoring) ------------------------------------------------------------


class CategoricalReference(TypedDict):
    kind: str  # "categorical"
    counts: dict[str, int]
    other: int


class NumericReference(TypedDict):
    kind: str  # "numeric"
    edges: list[float]
    counts: list[int]


FeatureReference = CategoricalReference | NumericReference


class ReferenceStatistics(TypedDict):
    """A summary of a model version's training trips, stored with it (reference.json)."""

    format: int
    statistic: str
    rows: int
    features: dict[str, FeatureReference]
    target: NumericReference
    predictions: NumericReference


class DriftStatistic(TypedDict):
    """One statistic of a batch against the reference, and its verdict."""

    statistic: str
    value: float | None
    threshold: float
    drift: bool
    noise: float | None
    configured_threshold: float


class MonitoringRecord(TypedDict):
    """One inference batch compared with its model's reference (monitoring/<...>.json)."""

    input: str
    model_version: str
    rows: int
    unknown_zone_rows: int | None
    drift_statistics: str
    features: dict[str, DriftStatistic]
    prediction_drift: DriftStatistic | None
    target_drift: DriftStatistic | None
    drift_detected: bool
    realized_rmse: float | None
    realized_rows: int
    created_at: str


class MonitoringPlot(TypedDict):
    """Where the monitoring plot is, whether this run redrew it and what it shows."""

    uri: str
    redrawn: bool
    drawn_at: str
    records: int | None


# --- incoming files (taxi.incoming) ----------------------------------------------------------


class DoneRecord(TypedDict):
    """processed/<name>.json: an incoming file predicted, and where its predictions are."""

    input: str
    input_etag: str
    input_bytes: int
    predictions: str
    model_version: str
    run: str
    processed_at: str


# --- run summaries (what the flows return) ---------------------------------------------------


class TrainingSummary(TypedDict):
    """What training_flow returns."""

    model_version: str
    model_type: str
    promoted: bool
    promotion_reason: str
    champion_version: str | None
    champion_rmse_test: float | None
    rmse_train: float
    rmse_test: float
    rmse_test_course_baseline: float
    train_months: list[str]
    test_month: str | None
    train_rows: int
    trained_rows: int
    test_rows: int
    manifest_uri: str
    plot_uri: str
    predictions_uri: str
    model_signed: bool


class DataManifest(TypedDict):
    """data/<color>/<file>.manifest.json: one TLC month in the bucket, checked."""

    color: str
    month: str
    key: str
    source: str
    bytes: int
    sha256: str
    rows: int
    schema: str
    ingested_at: str
    package_version: str


class MonthIngested(TypedDict):
    month: str
    uri: str
    rows: int
    bytes: int


class MonthNotIngested(TypedDict):
    """A month skipped, not available yet or ignored, and why."""

    month: str
    reason: str


class MonthFailed(TypedDict):
    month: str
    error: str


class IngestSummary(TypedDict):
    """What ingest_flow returns."""

    color: str
    source: str
    ingested: list[MonthIngested]
    skipped: list[MonthNotIngested]
    not_available: list[MonthNotIngested]
    failed: list[MonthFailed]
    not_attempted: list[str]
    ignored: list[MonthNotIngested]  # keys of months after the current one


class FilePredicted(TypedDict):
    input: str
    predictions: str


class FileSkipped(TypedDict):
    input: str
    reason: str


class FileFailed(TypedDict):
    input: str
    error: str
    failures: int | None  # failed runs so far; None when they could not be counted
    set_aside: str | None  # where it was moved, or None


class FileSetAside(TypedDict):
    input: str
    moved_to: str


class HourlySummary(TypedDict):
    """What incoming_inference_flow returns."""

    model_version: str
    model_signed: bool
    files: int
    predicted: list[FilePredicted]
    skipped: list[FileSkipped]
    failed: list[FileFailed]
    set_aside: list[FileSetAside]
    monitoring_plot: MonitoringPlot | None


# A table artifact's rows.
TableRows = list[dict[str, Any]]
