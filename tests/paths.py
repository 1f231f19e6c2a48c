"""Where the tests find the repository and its sample trip files."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"

GREEN_JAN = DATA / "green_tripdata_2021-01.parquet"
GREEN_FEB = DATA / "green_tripdata_2021-02.parquet"
GREEN_MAR = DATA / "green_tripdata_2021-03.parquet"
YELLOW_JAN = DATA / "yellow_tripdata_2021-01.head28401.csv"
YELLOW_FEB = DATA / "yellow_tripdata_2021-02.head999.csv"
