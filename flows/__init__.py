"""Prefect flows around the `taxi` package: orchestration only (retries, logging, artifacts)."""
