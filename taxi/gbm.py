"""The gradient-boosting model ("gbm"): XGBoost trees on the trip features, and its saved format.

Why XGBoost (the measurements are in docs/performance.md): scikit-learn's
HistGradientBoostingRegressor needed 600 trees and predicted many times slower; LightGBM walked
the same trees slower than XGBoost. XGBoost's depth-wise trees reach a better test RMSE with
fewer trees than either, and its predictor evaluates them several times faster. The
`xgboost-cpu` wheel bundles its OpenMP runtime, so the image needs no system library.

A fitted model pickles as XGBoost's own UBJSON model bytes plus a format tag (never a pickled
C++ handle), so the artifact store's checksummed pickles stay the one way models are saved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xgboost as xgb

from taxi.config import MODEL_FORMATS
from taxi.gbm_tables import ForestTables, interaction_constraints

# The format of a pickled GbmRegressor, also recorded in each gbm version's manifest (the
# registry refuses other formats before unpickling: taxi.storage.registry.check_model_format).
GBM_FORMAT = MODEL_FORMATS["gbm"]

GBM_PARAMS: dict[str, Any] = dict(
    objective="reg:squarederror",
    tree_method="hist",
    learning_rate=0.15,
    max_depth=8,
    min_child_weight=100,
    reg_lambda=1.0,
    colsample_bynode=0.5,
    max_bin=256,
    seed=0,
)
# Predicting untabulated trees costs one root-to-leaf walk per tree and trip: nearly all of
# the inference time. 200 trees at learning rate 0.15 keep about the test RMSE of 300 at 0.1
# for 2/3 of the walks; 150 at 0.2 or 200 at 0.1 lose more (docs/models.md).
GBM_TREES = 200
# Trained within the encoder's interaction groups, the trees are predicted from lookup tables
# (taxi.gbm_tables), whose cost does not grow with the trees: deeper and more trees then buy
# test RMSE (docs/performance.md).
TABULATED_PARAMS: dict[str, Any] = dict(GBM_PARAMS, learning_rate=0.1, max_depth=10)
TABULATED_TREES = 400
# The trees are fitted on at most this many of the trips they are given (a fixed-seed
# uniform sample); the target encodings still use every trip given. A green month is used
# whole; on a yellow month this bounds the fitting time on two cores. Two samples apply in the
# training flow: taxi.pipeline.run_window_training first draws at most max_train_rows trips
# of the whole window (taxi.sampling), which the encoder is fitted on; the trees then fit on
# at most MAX_FIT_ROWS of those.
MAX_FIT_ROWS = 200_000


class GbmRegressor:
    """Gradient-boosted trees predicting trip minutes from `TripFeatureEncoder` features."""

    def __init__(
        self,
        n_trees: int | None = None,
        max_fit_rows: int = MAX_FIT_ROWS,
        params: dict[str, Any] | None = None,
    ):
        self.n_trees = n_trees  # None: TABULATED_TREES or GBM_TREES, whichever way it is fitted
        self.max_fit_rows = max_fit_rows
        self.params = None if params is None else dict(params)
        self.booster_: xgb.Booster | None = None
        self.tables_: ForestTables | None = None

    def fit(self, X: np.ndarray, y: np.ndarray, encoder: Any = None) -> GbmRegressor:
        """Fit the trees on (a sample of) X, y. With the fitted `encoder` that made X and its
        interaction groups, the trees are fitted within them and tabulated (taxi.gbm_tables)."""
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.float32)
        if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
            raise ValueError(
                f"need a 2-D feature matrix with one row per target, got {X.shape} and {y.shape}"
            )
        groups = encoder.interaction_groups() if hasattr(encoder, "interaction_groups") else None
        params = dict(self.params or (TABULATED_PARAMS if groups else GBM_PARAMS))
        if len(y) > self.max_fit_rows:
            rows = np.sort(
                np.random.default_rng(int(params.get("seed", 0))).choice(
                    len(y), self.max_fit_rows, replace=False
                )
            )
            X, y = X[rows], y[rows]
        self.n_fit_rows_ = len(y)
        n_trees = self.n_trees or (TABULATED_TREES if groups else GBM_TREES)
        if groups:
            names = [str(name) for name in encoder.get_feature_names_out()]
            if len(names) != X.shape[1]:
                raise ValueError(f"the encoder names {len(names)} features, X has {X.shape[1]}")
            params["interaction_constraints"] = interaction_constraints(groups, names)
        data = xgb.QuantileDMatrix(X, y, max_bin=int(params.get("max_bin", 256)))
        # XGBoost tracks its predictions on the rows it fits: their RMSE costs no tree walks.
        record: dict[str, Any] = {}
        params["eval_metric"] = "rmse"
        self.booster_ = xgb.train(
            params,
            data,
            num_boost_round=n_trees,
            evals=[(data, "fit")],
            evals_result=record,
            verbose_eval=False,
        )
        self.fit_rmse_ = float(record["fit"]["rmse"][-1])
        self.n_features_in_ = X.shape[1]
        self.tables_ = None
        if groups:
            self.tables_ = ForestTables(self.booster_, names, groups)
            self.tables_.fill(encoder.transform(encoder.tabulation_trips()))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.booster_ is None:
            raise ValueError("GbmRegressor is not fitted yet: call fit first")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"expected {self.n_features_in_} features, got an array of shape {X.shape}"
            )
        if self.tables_ is not None:
            return self.tables_.predict(self.booster_, X)
        return np.asarray(self.booster_.inplace_predict(X), dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        state = {key: value for key, value in self.__dict__.items() if key != "booster_"}
        state["format"] = GBM_FORMAT
        state["model"] = (
            None if self.booster_ is None else bytes(self.booster_.save_raw(raw_format="ubj"))
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        saved_format, model = state.pop("format", None), state.pop("model", None)
        if saved_format != GBM_FORMAT:
            raise ValueError(
                f"gbm model in format {saved_format!r}, this code reads {GBM_FORMAT!r}: retrain the model"
            )
        self.__dict__.update(state)
        self.__dict__.setdefault("tables_", None)  # saved before tabulation
        self.booster_ = None
        if model is not None:
            self.booster_ = xgb.Booster(model_file=bytearray(model))
