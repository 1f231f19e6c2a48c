"""Data processing flows: `taxi.process_train_data` and `taxi.process_inference_data` with
each step as a task, so every step shows in the Prefect UI. The steps and their order are
taxi.steps'; these flows only say how to run a step."""

from __future__ import annotations

from prefect import flow

from flows import policy, tasks
from taxi import steps
from taxi.features import Vectorizer
from taxi.memory import return_freed_memory_to_the_os
from taxi.settings import Settings
from taxi.steps import ProcessedData


@flow(name="process-train-data", version=policy.VERSION, validate_parameters=False)
def process_train_data_flow(source: str, vectorizer: Vectorizer | None = None) -> ProcessedData:
    """Load, compute the target, drop outliers, encode, and build features (fitting the
    vectorizer when none is given)."""
    return_freed_memory_to_the_os()
    return steps.process(
        source, vectorizer, steps.TRAIN_STEPS, tasks.step_runner(Settings.from_env())
    )


@flow(name="process-inference-data", version=policy.VERSION, validate_parameters=False)
def process_inference_data_flow(source: str, vectorizer: Vectorizer) -> ProcessedData:
    """Load, encode and build features with a fitted vectorizer; no target, no filtering."""
    return_freed_memory_to_the_os()
    return steps.process(
        source, vectorizer, steps.INFERENCE_STEPS, tasks.step_runner(Settings.from_env())
    )
