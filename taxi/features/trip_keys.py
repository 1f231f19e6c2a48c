"""The discrete keys the trip encoder looks a trip up by (zone slots, borough codes, zone and
borough pairs, the pickup's hour and day of week), and the features that are functions of
them alone."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

# Zone ids live in slots 0..N_ZONE_SLOTS-1 of lookup arrays; slot 0 is "unknown" (missing,
# -1, or an id outside the TLC's range).
N_ZONE_SLOTS = 300
N_ZONE_PAIRS = N_ZONE_SLOTS * N_ZONE_SLOTS
# With tabular features, the pickup hour is in quarter hours and blocks of this many hours.
HOUR_BLOCK_HOURS = 4


@dataclass(frozen=True)
class TripKeys:
    """Each trip's lookup keys into the fitted tables: one array per kind, one entry per trip."""

    pickup_zone: np.ndarray  # zone slot, 0 for unknown
    dropoff_zone: np.ndarray
    pickup_borough: np.ndarray  # borough code, 0 for unknown
    dropoff_borough: np.ndarray
    zone_pair: np.ndarray  # pickup_zone * N_ZONE_SLOTS + dropoff_zone
    borough_pair: np.ndarray  # pickup_borough * n_boroughs + dropoff_borough
    distance: np.ndarray  # the ride's planned miles, NaN where missing or implausible

    def rows(self, index: np.ndarray | slice) -> TripKeys:
        return TripKeys(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def trip_keys(
    trips: pd.DataFrame, borough_of: np.ndarray, n_boroughs: int, max_distance: float
) -> TripKeys:
    """The keys of `trips`, given each zone slot's borough code (`zone_codes`)."""
    pickup = zone_slot(trips["PULocationID"].to_numpy(dtype=np.int64))
    dropoff = zone_slot(trips["DOLocationID"].to_numpy(dtype=np.int64))
    pickup_borough, dropoff_borough = borough_of[pickup], borough_of[dropoff]
    if "trip_distance" in trips:
        distance = trips["trip_distance"].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        distance = np.full(len(trips), np.nan)
    return TripKeys(
        pickup_zone=pickup,
        dropoff_zone=dropoff,
        pickup_borough=pickup_borough,
        dropoff_borough=dropoff_borough,
        zone_pair=pickup * N_ZONE_SLOTS + dropoff,
        borough_pair=pickup_borough * n_boroughs + dropoff_borough,
        distance=np.where((distance > 0) & (distance <= max_distance), distance, np.nan),
    )


def zone_slot(ids: np.ndarray) -> np.ndarray:
    """Each zone id's slot: the id itself, or 0 for an unknown zone."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.where((ids > 0) & (ids < N_ZONE_SLOTS), ids, 0)


def zone_codes(lookup: pd.DataFrame, column: str) -> np.ndarray:
    """The code (1 + rank of the sorted distinct values) of `column` of the zone lookup for
    each zone slot; 0 for unknown."""
    values = lookup[column].astype(str)
    codes = values.map({value: i + 1 for i, value in enumerate(sorted(values.unique()))}).to_numpy()
    ids = lookup["LocationID"].to_numpy(dtype=np.int64)
    valid = (ids > 0) & (ids < N_ZONE_SLOTS)
    by_slot = np.zeros(N_ZONE_SLOTS, dtype=np.int64)
    by_slot[ids[valid]] = codes[valid]
    return by_slot


def hour_and_day_of_week(pickup: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Hour of day at minute resolution and day of week (Monday 0), NaN for a missing time:
    integer arithmetic on the minutes since 1970-01-01 (a Thursday), several times faster
    than pandas' datetime field accessors."""
    minutes = pd.to_datetime(pickup).to_numpy(dtype="datetime64[m]")
    missing = np.isnat(minutes)
    count = minutes.view(np.int64)
    hour = np.where(missing, np.nan, (count % 1440) / 60.0)
    day = np.where(missing, np.nan, (count // 1440 + 3) % 7)
    return hour, day


def target_free_features(
    trips: pd.DataFrame, keys: TripKeys, service_of: np.ndarray, tabular: bool, with_distance: bool
) -> dict[str, np.ndarray]:
    """The trip encoder's features that do not depend on training durations, by feature name
    (float32): functions of the pickup time and of `keys` alone (`service_of`: each zone
    slot's service-zone code). With `tabular`, the hour in quarter hours and its block."""
    hour, day = hour_and_day_of_week(trips["pickup_datetime"])
    if tabular:
        hour = np.floor(hour * 4) / 4
    features = {
        "hour": as_float32(hour),
        "dow": as_float32(day),
        "weekend": as_float32(day >= 5),
        **({"hour_block": as_float32(np.floor(hour / HOUR_BLOCK_HOURS))} if tabular else {}),
        "pu_id": as_float32(keys.pickup_zone),
        "do_id": as_float32(keys.dropoff_zone),
        "pu_borough": as_float32(keys.pickup_borough),
        "do_borough": as_float32(keys.dropoff_borough),
        "pu_service": as_float32(service_of[keys.pickup_zone]),
        "do_service": as_float32(service_of[keys.dropoff_zone]),
        "same_zone": as_float32(keys.pickup_zone == keys.dropoff_zone),
        "same_borough": as_float32(keys.pickup_borough == keys.dropoff_borough),
    }
    if with_distance:
        features["dist"] = as_float32(keys.distance)
    return features


def as_float32(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)
