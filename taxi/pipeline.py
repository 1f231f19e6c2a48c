"""The entrypoints: training (process, train, evaluate, then what a version stores besides its
model) and inference (process, predict, the predictions frame), from a source or from trips
already in memory.

This is the one place in `taxi/` that strings the steps together. The entrypoints take and
return plain Python objects and touch no storage, so they can be called from a notebook, a
test, a benchmark or the Prefect flows alike. Each starts by tuning the memory allocator for
trip months (taxi.memory).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from taxi.config import (
    DEFAULT_MAX_TRAIN_ROWS,
    MODEL_FORMATS,
    PREDICTION_COLUMN,
    REFERENCE_ROWS,
    SAMPLE_SEED,
    TARGET_COLUMN,
)
from taxi.evaluation import PromotionDecision, evaluation_plot
from taxi.features import Vectorizer
from taxi.layout import PLOT_OBJECT, REFERENCE_OBJECT
from taxi.memory import return_freed_memory_to_the_os
from taxi.model import (
    Model,
    OneHotNormalEquations,
    check_model_type,
    evaluate_model,
    make_vectorizer,
    predict,
    train_model,
    training_rmse,
)
from taxi.monitoring import reference_statistics
from taxi.records import ManifestDetails, ReferenceStatistics
from taxi.sampling import UniformRowSample
from taxi.sources import load_data
from taxi.steps import (
    INFERENCE_STEPS,
    TRAIN_STEPS,
    ProcessedData,
    StepRunner,
    apply_steps,
    call_directly,
    process,
    process_train_data,
    process_trips,
)
from taxi.tlc import PICKUP
from taxi.window import WindowPlan


@dataclass
class TrainingResult:
    model: Model
    vectorizer: Vectorizer
    train: ProcessedData
    test: ProcessedData
    rmse_train: float
    rmse_test: float

    @property
    def metrics(self) -> dict[str, float]:
        return {"rmse_train": self.rmse_train, "rmse_test": self.rmse_test}


def run_training(
    train_source: str, test_source: str, model_type: str = "linear", use_trip_distance: bool = False
) -> TrainingResult:
    """Process both months, fit on the first, report RMSE on both."""
    return_freed_memory_to_the_os()
    train = process_train_data(train_source, make_vectorizer(model_type, use_trip_distance))
    model = train_model(train.X, train.y, model_type, train.vectorizer)
    test = process_train_data(test_source, train.vectorizer)
    return TrainingResult(
        model=model,
        vectorizer=train.vectorizer,
        train=train,
        test=test,
        rmse_train=training_rmse(model, train.X, train.y),
        rmse_test=evaluate_model(model, test.X, test.y),
    )


@dataclass(frozen=True)
class MonthUsage:
    """What one training month contributed."""

    source: str
    rows_read: int
    rows_kept: int
    sha256: str | None  # of the bytes read


@dataclass
class WindowTrainingResult:
    """A model trained on several months, evaluated on a later one, next to the course baseline
    (the one-hot linear model fitted on every kept trip of the same months)."""

    model: Model
    vectorizer: Vectorizer
    test: ProcessedData
    months: list[MonthUsage]
    rows_trained: int  # trips the model was fitted on (a sample for "gbm" past max_train_rows)
    rmse_train: float  # on the trips the model was fitted on (gbm: see taxi.model.training_rmse)
    rmse_test: float
    rmse_test_course_baseline: float
    # A uniform sample of the window's kept trips (at most REFERENCE_ROWS), for the monitoring
    # reference: a histogram needs no more, and the months themselves are not kept.
    reference_trips: pd.DataFrame

    @property
    def rows_kept(self) -> int:
        return sum(month.rows_kept for month in self.months)

    @property
    def rows_read(self) -> int:
        return sum(month.rows_read for month in self.months)

    @property
    def sampled(self) -> bool:
        return self.rows_trained < self.rows_kept

    @property
    def metrics(self) -> dict[str, float]:
        return {
            "rmse_train": self.rmse_train,
            "rmse_test": self.rmse_test,
            "rmse_test_course_baseline": self.rmse_test_course_baseline,
        }


def run_window_training(
    train_sources: list[str],
    test_source: str,
    model_type: str = "linear",
    use_trip_distance: bool = False,
    max_train_rows: int = DEFAULT_MAX_TRAIN_ROWS,
    seed: int = SAMPLE_SEED,
    run: StepRunner = call_directly,
    check_read: Callable[[str, str | None], None] = lambda source, sha256: None,
) -> WindowTrainingResult:
    """Train on every month of `train_sources`, one month in memory at a time, and evaluate on
    `test_source`.

    The linear model folds each month into its normal equations, which gives the same fit as
    all months together. The gradient-boosting model trains on a uniform sample of at most
    `max_train_rows` kept trips across the months (all of them when there are fewer). `run` calls
    each processing step (the flows pass one that runs it as a Prefect task), `check_read` each
    month's source and sha256 as read, before its trips are used (WindowPlan.check_read)."""
    return_freed_memory_to_the_os()
    check_model_type(model_type, use_trip_distance)
    if not train_sources:
        raise ValueError("the training window has no months")
    if max_train_rows < 1:
        raise ValueError(f"max_train_rows must be at least 1, got {max_train_rows}")
    linear = OneHotNormalEquations()
    sample = UniformRowSample(max_train_rows, seed) if model_type == "gbm" else None
    reference = UniformRowSample(REFERENCE_ROWS, seed)
    months = []
    for source in train_sources:
        trips, rows_read, sha256 = apply_steps(source, TRAIN_STEPS, run)
        check_read(source, sha256)
        linear.add(trips, trips[TARGET_COLUMN].to_numpy(dtype=np.float64))
        if sample is not None:
            sample.add(trips)
        reference.add(trips)
        months.append(MonthUsage(source, rows_read, len(trips), sha256))
        del trips
    baseline, baseline_vectorizer = linear.fit()
    if sample is None:
        model, vectorizer, rows_trained, rmse_train = (
            baseline,
            baseline_vectorizer,
            linear.n_rows,
            linear.rmse(baseline),
        )
    else:
        trips = sample.rows
        y = trips[TARGET_COLUMN].to_numpy(dtype=np.float64)
        vectorizer = make_vectorizer(model_type, use_trip_distance)
        X = vectorizer.fit_transform(trips, y)
        del sample, trips
        model = run(train_model, X, y, model_type, vectorizer)
        rows_trained, rmse_train = y.size, training_rmse(model, X, y)
        del X, y
    test = process(test_source, vectorizer, TRAIN_STEPS, run)
    check_read(test_source, test.sha256)
    return WindowTrainingResult(
        model=model,
        vectorizer=vectorizer,
        test=test,
        months=months,
        rows_trained=rows_trained,
        rmse_train=rmse_train,
        rmse_test=evaluate_model(model, test.X, test.y),
        rmse_test_course_baseline=evaluate_model(
            baseline, baseline_vectorizer.transform(test.trips), test.y
        ),
        reference_trips=reference.rows,
    )


def predictions_frame(processed: ProcessedData, predicted_minutes: np.ndarray) -> pd.DataFrame:
    """One row per processed trip, in order: when and where it starts and ends, and the prediction."""
    columns = [PICKUP, "PULocationID", "DOLocationID"]
    frame = processed.trips[columns].reset_index(drop=True)
    return frame.assign(**{PREDICTION_COLUMN: predicted_minutes})


# --- the end of a training run ---------------------------------------------------------------


@dataclass
class TrainingOutputs:
    """What a trained window leaves besides its model: the manifest's details, the evaluation
    plot and the monitoring reference (both stored in the version) and the test predictions."""

    details: ManifestDetails
    plot: bytes
    reference: ReferenceStatistics
    test_predictions: pd.DataFrame

    def attachments(self) -> dict[str, tuple[bytes, str]]:
        """The version's objects besides the model, vectorizer and metrics."""
        return {
            PLOT_OBJECT: (self.plot, "image/png"),
            REFERENCE_OBJECT: (json.dumps(self.reference).encode(), "application/json"),
        }


def finish_training(
    trained: WindowTrainingResult,
    plan: WindowPlan,
    model_type: str,
    use_trip_distance: bool,
    max_train_rows: int,
    promotion: PromotionDecision,
    run: StepRunner = call_directly,
) -> TrainingOutputs:
    """Predict the test month, plot it, describe the version for its manifest and summarise
    its training trips for monitoring (predicting and summarising through `run`)."""
    test = trained.test
    test_minutes = run(predict, trained.model, test.X)
    title = f"{model_type} model, test data {plan.test_source}"
    plot = evaluation_plot(test.trips, test.y, test_minutes, title)
    details = manifest_details(
        trained, plan, model_type, use_trip_distance, max_train_rows, promotion
    )
    # Monitoring reference (taxi.monitoring): a uniform sample of the window's training trips
    # and the model's predictions on them, stored in the version like its other objects
    # (manifest, sha256, signature); each inference batch is compared with it.
    trips = trained.reference_trips
    minutes = run(predict, trained.model, trained.vectorizer.transform(trips))
    reference = run(reference_statistics, trips, minutes, use_trip_distance)
    return TrainingOutputs(details, plot, reference, predictions_frame(test, test_minutes))


def manifest_details(
    trained: WindowTrainingResult,
    plan: WindowPlan,
    model_type: str,
    use_trip_distance: bool,
    max_train_rows: int,
    promotion: PromotionDecision,
) -> ManifestDetails:
    """What the manifest says of how the version was trained."""
    test = trained.test
    train_uri = plan.train_sources[0] if len(plan.train_sources) == 1 else list(plan.train_sources)
    return {
        "model_type": model_type,
        "model_format": MODEL_FORMATS[model_type],
        "use_trip_distance": use_trip_distance,
        "features": [str(name) for name in trained.vectorizer.get_feature_names_out()],
        "train_data": {
            "uri": train_uri,
            "rows_read": trained.rows_read,
            "rows_used": trained.rows_kept,
            "sha256": [month.sha256 for month in trained.months],
        },
        "test_data": {
            "uri": plan.test_source,
            "rows_read": test.rows_read,
            "rows_used": test.rows_kept,
            "sha256": test.sha256,
        },
        "window": plan.as_dict(),
        "training_sample": {
            "rows_trained": trained.rows_trained,
            "sampled": trained.sampled,
            "max_train_rows": max_train_rows if model_type == "gbm" else None,
            "months": [asdict(month) for month in trained.months],
        },
        "promotion": promotion.as_dict(),
    }


# --- inference ---------------------------------------------------------------------------------


@dataclass
class InferenceResult:
    """Trips and their predictions, every input trip in input order."""

    processed: ProcessedData  # the trips as processed: categories encoded, none dropped
    predicted_minutes: np.ndarray
    predictions: pd.DataFrame  # predictions_frame: what is stored

    def unknown_counts(self) -> dict[str, int]:
        """Trips per input column with a value not seen in training (the model's fallback
        for unknowns predicted them)."""
        return self.processed.vectorizer.unknown_counts(self.processed.trips)


def predict_processed(
    processed: ProcessedData, model: Model, run: StepRunner = call_directly
) -> InferenceResult:
    """Predict processed trips (predicting through `run`) and frame the predictions."""
    minutes = run(predict, model, processed.X)
    return InferenceResult(processed, minutes, predictions_frame(processed, minutes))


def predict_trips(
    trips: pd.DataFrame,
    model: Model,
    vectorizer: Vectorizer,
    source: str = "trips in memory",
    run: StepRunner = call_directly,
) -> InferenceResult:
    """Predict the duration of trips already in memory (as taxi.load_data returns them), each
    processing step through `run`; `source` names them in errors."""
    return predict_processed(
        process_trips(trips, source, vectorizer, INFERENCE_STEPS, run), model, run
    )


def run_inference(source: str, model: Model, vectorizer: Vectorizer) -> pd.DataFrame:
    """Predict the duration of every trip in `source`, in input order."""
    return_freed_memory_to_the_os()
    # As predict_trips, with the loaded trips handed on, not held here while they are processed.
    processed = process_trips(load_data(source), source, vectorizer, INFERENCE_STEPS)
    return predict_processed(processed, model).predictions
