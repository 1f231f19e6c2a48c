"""Compiled inference for gradient-boosted trees: the forest as a few lookup tables.

The gbm model is trained with interaction groups (XGBoost's interaction constraints): along any
root-to-leaf path, every feature tested belongs to one group. Each leaf then belongs to a group,
and the forest's prediction splits into one sum per group, each depending only on that group's
features:

    prediction(row) = base_score + sum over groups g of  S_g(row's features of g)

The encoder makes every group's features functions of a few discrete *key* columns (zone ids,
quarter hour, day of week, zone classes...), so S_g is a table indexed by the row's key. A
prediction is then one lookup per group instead of a root-to-leaf walk per tree (what that
saves: docs/performance.md).

The tables hold the keys the encoder's grid of synthetic trips covers (filled at training) and
are completed lazily from the rows that predict meets, evaluating the trees once per new key.
A check against the trees themselves on a spread of rows guards the assumption that rows
sharing a key share the group's features: a matrix that breaks it (for example the cross-fitted
training features, or a hand-edited one) is predicted tree by tree instead, exactly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Rows checked against the trees on each prediction, and the tolerance: the trees add their
# leaves in float32, the tables keep one float32 sum per group and add the groups in float64.
_CHECK_ROWS = 256
_CHECK_TOLERANCE = 1e-3


@dataclass(frozen=True)
class KeyColumn:
    """A feature whose values are codes: `value * scale` is an integer in [0, radix), or NaN."""

    feature: str
    scale: float
    radix: int


@dataclass(frozen=True)
class FeatureGroup:
    """Features that may interact in one tree path, and the key columns that determine them."""

    name: str
    features: tuple[str, ...]
    keys: tuple[KeyColumn, ...]

    @property
    def size(self) -> int:
        """Number of keys: each key column has its radix codes and one for NaN."""
        return int(np.prod([column.radix + 1 for column in self.keys], dtype=np.int64))


def interaction_constraints(groups: tuple[FeatureGroup, ...], feature_names: list[str]) -> str:
    """XGBoost's `interaction_constraints` parameter for `groups`."""
    return json.dumps([[feature_names.index(name) for name in group.features] for group in groups])


class ForestTables:
    """The lookup tables of one fitted booster (see the module docstring)."""

    def __init__(self, booster: Any, feature_names: list[str], groups: tuple[FeatureGroup, ...]):
        import xgboost as xgb

        self.feature_names = list(feature_names)
        self.groups = tuple(groups)
        if any(group.size >= 2**31 for group in self.groups):
            raise ValueError("an interaction group has too many keys for a lookup table")
        model = json.loads(bytes(booster.save_raw(raw_format="json")))
        learner = model["learner"]
        self.base_score = float(str(learner["learner_model_param"]["base_score"]).strip("[]"))
        forest = learner["gradient_booster"]["model"]
        masks = [
            sum(1 << self.feature_names.index(name) for name in group.features)
            for group in self.groups
        ]
        leaf_groups = [
            _leaf_groups(tree, masks, number) for number, tree in enumerate(forest["trees"])
        ]
        # One booster per group: the trees with leaves in the group, every other leaf set to 0,
        # so that XGBoost's own predictor sums the group's leaves (fast, multi-threaded).
        self.group_models: list[bytes] = []
        for group in range(len(self.groups)):
            trees = []
            for tree, groups_of_nodes in zip(forest["trees"], leaf_groups, strict=True):
                if (groups_of_nodes == group).any():
                    leaf_values = np.where(groups_of_nodes == group, tree["split_conditions"], 0.0)
                    kept = np.where(groups_of_nodes == -1, tree["split_conditions"], leaf_values)
                    trees.append({**tree, "id": len(trees), "split_conditions": kept.tolist()})
            forest_of_group = {
                **forest,
                "trees": trees,
                "tree_info": [0] * len(trees),
                "iteration_indptr": list(range(len(trees) + 1)),
                "gbtree_model_param": {
                    **forest["gbtree_model_param"],
                    "num_trees": str(len(trees)),
                },
            }
            model_of_group = {
                **model,
                "learner": {
                    **learner,
                    "gradient_booster": {**learner["gradient_booster"], "model": forest_of_group},
                },
            }
            masked = xgb.Booster(model_file=bytearray(json.dumps(model_of_group).encode()))
            self.group_models.append(bytes(masked.save_raw(raw_format="ubj")))
        # Filled entries, by group: sorted keys and their sums. Dense arrays are built from
        # them on first use and not pickled, nor are the group boosters.
        self.filled: list[tuple[np.ndarray, np.ndarray]] = [
            (np.zeros(0, np.int32), np.zeros(0, np.float32)) for _ in self.groups
        ]
        self._dense: list[np.ndarray] | None = None
        self._boosters: list[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dense": None, "_boosters": None}

    # --- prediction --------------------------------------------------------------------------

    def predict(self, booster: Any, X: np.ndarray) -> np.ndarray:
        """The booster's predictions for X, from the tables where they hold."""
        dense = self._tables()
        keys, valid = self.keys(X)
        sums = [table[key] for key, table in zip(keys, dense, strict=True)]
        missing = [np.isnan(group_sums) & valid for group_sums in sums]
        new = self._evaluate_new_keys(X, keys, missing)
        for group, (new_keys, new_sums) in new.items():
            sums[group][missing[group]] = new_sums[
                np.searchsorted(new_keys, keys[group][missing[group]])
            ]
        total = np.full(len(X), self.base_score)
        for group_sums in sums:
            total += group_sums
        del sums
        if not valid.all():
            total[~valid] = booster.inplace_predict(X[~valid])
        if not self._agrees_with_trees(booster, X, total):
            log.warning(
                "gbm features are not those of the encoder this model was fitted with "
                "(rows that share a key differ in their features): predicting tree by tree"
            )
            return np.asarray(booster.inplace_predict(X), dtype=np.float64)
        for group, (new_keys, new_sums) in new.items():
            dense[group][new_keys] = new_sums
        return total

    def fill(self, X: np.ndarray) -> None:
        """Fill (and keep in the pickle) the entries of every key in X, e.g. the encoder's grid."""
        keys, valid = self.keys(X)
        new = self._evaluate_new_keys(X, keys, [valid] * len(keys))
        for group, (new_keys, new_sums) in new.items():
            old_keys, old_sums = self.filled[group]
            merged_keys, first = np.unique(np.concatenate([new_keys, old_keys]), return_index=True)
            self.filled[group] = (
                merged_keys,
                np.concatenate([new_sums, old_sums])[first].astype(np.float32),
            )
        self._dense = None

    def keys(self, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Each row's key in each group, and whether every key column of the row holds a code
        (where not, its keys are meaningless)."""
        valid = np.ones(len(X), dtype=bool)
        keys = []
        for group in self.groups:
            key = np.zeros(len(X), dtype=np.int32)
            stride = 1
            for column in group.keys:
                codes, invalid = _codes(
                    X[:, self.feature_names.index(column.feature)], column.scale, column.radix
                )
                valid &= ~invalid
                codes *= stride
                key += codes
                stride *= column.radix + 1
            keys.append(key)
        return keys, valid

    # --- internals -----------------------------------------------------------------------------

    def _tables(self) -> list[np.ndarray]:
        if self._dense is None:
            dense = []
            for group, (keys, sums) in zip(self.groups, self.filled, strict=True):
                table = np.full(group.size, np.nan, dtype=np.float32)
                table[keys] = sums
                dense.append(table)
            self._dense = dense
        return self._dense

    def _group_booster(self, group: int) -> Any:
        import xgboost as xgb

        if self._boosters is None:
            self._boosters = [
                xgb.Booster(model_file=bytearray(model)) for model in self.group_models
            ]
        return self._boosters[group]

    def _evaluate_new_keys(
        self, X: np.ndarray, keys: list[np.ndarray], missing: list[np.ndarray]
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """For each group, the sorted keys flagged in `missing` and their sums: the group's
        leaves that one row of X per key reaches."""
        new = {}
        for group, (key, wanted) in enumerate(zip(keys, missing, strict=True)):
            rows = np.flatnonzero(wanted)
            if len(rows):
                unique_keys, first = np.unique(key[rows], return_index=True)
                walked = self._group_booster(group).inplace_predict(X[rows[first]])
                new[group] = (unique_keys, np.asarray(walked, dtype=np.float64) - self.base_score)
        return new

    def _agrees_with_trees(self, booster: Any, X: np.ndarray, predicted: np.ndarray) -> bool:
        if len(X) == 0:
            return True
        rows = np.unique(np.linspace(0, len(X) - 1, min(len(X), _CHECK_ROWS)).astype(np.int64))
        walked = np.asarray(booster.inplace_predict(X[rows]), dtype=np.float64)
        return bool(
            np.all(
                np.abs(walked - predicted[rows])
                <= _CHECK_TOLERANCE * np.maximum(1.0, np.abs(walked))
            )
        )


def _codes(values: np.ndarray, scale: float, radix: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of one key column (NaN -> radix), and where a value is not a code."""
    scaled = values * values.dtype.type(scale) if scale != 1 else values.copy()
    nan = np.isnan(scaled)
    scaled[nan] = radix
    with np.errstate(invalid="ignore"):  # infinities and huge values: flagged below
        codes = scaled.astype(np.int32)
    invalid = (codes != scaled) | (codes.view(np.uint32) > radix) | ((codes == radix) & ~nan)
    codes[invalid] = radix  # any index within the table: the row is predicted by the trees
    return codes, invalid


def _leaf_groups(tree: dict[str, Any], masks: list[int], number: int) -> np.ndarray:
    """Per node: the first group holding every feature on the path to it (leaves), -1 for splits."""
    left, parents, splits = tree["left_children"], tree["parents"], tree["split_indices"]
    paths = [0] * len(left)
    groups = np.full(len(left), -1, dtype=np.int8)
    for node in range(len(left)):
        if node:  # XGBoost numbers children after their parent
            parent = parents[node]
            paths[node] = paths[parent] | (1 << splits[parent])
        if left[node] == -1:
            group = next((g for g, mask in enumerate(masks) if paths[node] & ~mask == 0), None)
            if group is None:
                raise ValueError(
                    f"tree {number} has a leaf whose path crosses interaction groups: cannot tabulate"
                )
            groups[node] = group
    return groups
