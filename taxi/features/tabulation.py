"""What makes the trip encoder's features tabulable: its interaction groups and its grid.

With `tabular`, every feature of the encoder is a function of a few discrete keys: the zone
pair, the quarter hour and day of week, the zones' borough and service zone, the 4-hour block
of the day and the pair's length class (one of N_PAIR_LENGTH_CLASSES quantile classes of the
pairs' mean training duration). `interaction_groups` says which features the trees may combine
and which key columns determine them; a model trained within these groups predicts from lookup
tables (taxi.gbm_tables), filled at training from the synthetic trips of `tabulation_trips`.

Pure functions of the fitted encoder's state (its zone codes and target tables).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from taxi.features.trip_keys import HOUR_BLOCK_HOURS, N_ZONE_SLOTS
from taxi.gbm_tables import FeatureGroup, KeyColumn

# Zone pairs fall in this many classes by their mean training duration.
N_PAIR_LENGTH_CLASSES = 16
# Features that are functions of the zone pair, and of its zones' borough and service zone.
PAIR_FEATURES = (
    "pu_id",
    "do_id",
    "pu_borough",
    "do_borough",
    "pu_service",
    "do_service",
    "same_zone",
    "same_borough",
    "te_pu",
    "te_do",
    "te_bpair",
    "te_pair",
    "n_pu",
    "n_do",
    "n_pair",
    "pair_dist",
    "pair_length",
)
ZONE_CLASS_FEATURES = (
    "pu_borough",
    "do_borough",
    "pu_service",
    "do_service",
    "same_borough",
    "te_bpair",
)
TIME_FEATURES = ("hour", "dow", "weekend", "hour_block")


def interaction_groups(n_boroughs: int, n_services: int) -> tuple[FeatureGroup, ...]:
    """The feature groups a tabulated model is trained within: the zone pair with the time
    block, the time with the zones' boroughs and service zones, the time with the length
    class. Borough and service-zone codes run below `n_boroughs` and `n_services`."""
    quarter_hour, day = KeyColumn("hour", 4.0, 96), KeyColumn("dow", 1.0, 7)
    zone_pair_keys = (
        KeyColumn("pu_id", 1.0, N_ZONE_SLOTS),
        KeyColumn("do_id", 1.0, N_ZONE_SLOTS),
        KeyColumn("hour_block", 1.0, 24 // HOUR_BLOCK_HOURS),
        KeyColumn("weekend", 1.0, 2),
    )
    zone_class_keys = (
        quarter_hour,
        day,
        KeyColumn("pu_borough", 1.0, n_boroughs),
        KeyColumn("do_borough", 1.0, n_boroughs),
        KeyColumn("pu_service", 1.0, n_services),
        KeyColumn("do_service", 1.0, n_services),
    )
    length_keys = (quarter_hour, day, KeyColumn("pair_length", 1.0, N_PAIR_LENGTH_CLASSES))
    return (
        FeatureGroup(
            "zone pair x time block", (*PAIR_FEATURES, "hour_block", "weekend"), zone_pair_keys
        ),
        FeatureGroup(
            "time x zone classes", (*TIME_FEATURES, *ZONE_CLASS_FEATURES), zone_class_keys
        ),
        FeatureGroup("time x pair length", (*TIME_FEATURES, "pair_length"), length_keys),
    )


def tabulation_trips(
    pair_count: np.ndarray,
    pair_mean: np.ndarray,
    borough_of: np.ndarray,
    service_of: np.ndarray,
    length_edges: np.ndarray,
) -> pd.DataFrame:
    """Synthetic trips whose features cover the keys of `interaction_groups` that trips are
    likely to have: every zone pair seen in training (`pair_count` > 0) at every time block,
    and every quarter hour of the week (and a missing time) with every pair of zone classes
    and every length class. Other keys (pairs never seen in training) are tabulated when
    first predicted."""
    monday = np.datetime64("2021-01-04T00:00", "m")  # any Monday
    minute = np.timedelta64(1, "m")
    block_starts = [
        day * 1440 + block * HOUR_BLOCK_HOURS * 60
        for day in (0, 5)
        for block in range(24 // HOUR_BLOCK_HOURS)
    ]
    block_times = np.append(monday + np.asarray(block_starts) * minute, np.datetime64("NaT"))
    quarter_hours = np.append(monday + np.arange(7 * 96) * 15 * minute, np.datetime64("NaT"))
    seen = np.flatnonzero(pair_count > 0)
    zone_class = borough_of * n_services(service_of) + service_of
    class_zones = np.unique(zone_class, return_index=True)[1]
    lengths = pair_length_classes(length_edges, pair_mean)[seen]
    length_pairs = seen[np.unique(lengths, return_index=True)[1]]
    n_classes = len(class_zones)
    parts = [
        _trips_at(seen // N_ZONE_SLOTS, seen % N_ZONE_SLOTS, block_times),
        _trips_at(
            np.repeat(class_zones, n_classes), np.tile(class_zones, n_classes), quarter_hours
        ),
        _trips_at(length_pairs // N_ZONE_SLOTS, length_pairs % N_ZONE_SLOTS, quarter_hours),
    ]
    return pd.concat(parts, ignore_index=True)


def length_class_edges(pair_means: np.ndarray) -> np.ndarray:
    """The edges between the N_PAIR_LENGTH_CLASSES quantile classes of the training trips'
    zone-pair mean durations."""
    quantiles = np.arange(1, N_PAIR_LENGTH_CLASSES) / N_PAIR_LENGTH_CLASSES
    return np.quantile(pair_means, quantiles)


def pair_length_classes(length_edges: np.ndarray, pair_mean: np.ndarray) -> np.ndarray:
    """The length class (0 .. N_PAIR_LENGTH_CLASSES-1) of each zone pair's mean duration."""
    return np.searchsorted(length_edges, pair_mean, side="right")


def n_services(service_of: np.ndarray) -> int:
    """The number of service-zone codes, unknown included, given each zone slot's code."""
    return int(service_of.max()) + 1


def _trips_at(
    pickup_zones: np.ndarray, dropoff_zones: np.ndarray, times: np.ndarray
) -> pd.DataFrame:
    """Every pair (pickup_zones[i], dropoff_zones[i]) at every time, as trips without a distance."""
    return pd.DataFrame(
        {
            "pickup_datetime": np.tile(times, len(pickup_zones)).astype("datetime64[us]"),
            "PULocationID": np.repeat(pickup_zones, len(times)),
            "DOLocationID": np.repeat(dropoff_zones, len(times)),
            "trip_distance": np.nan,
        }
    )
