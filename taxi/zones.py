"""The TLC taxi zone lookup (LocationID, Borough, Zone, service_zone), shipped with the package."""

from __future__ import annotations

from importlib import resources

import pandas as pd


def load_zone_lookup() -> pd.DataFrame:
    """The 265 TLC zones. "N/A" is a real value in this file, hence keep_default_na=False."""
    with resources.files("taxi").joinpath("taxi_zone_lookup.csv").open("rb") as f:
        return pd.read_csv(f, keep_default_na=False)
