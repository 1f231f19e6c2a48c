"""Deployment helpers for the taxi-duration project (used by docker-compose and CI)."""
