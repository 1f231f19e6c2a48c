"""The encoders that turn processed trips into a model's input matrix, one module each:

- `onehot.OneHotVectorizer`: the course model's one-hot categories (sparse);
- `trip.TripFeatureEncoder`: the gradient-boosting model's request-time trip features, with
  the keys a trip is looked up by in `trip_keys`, and the interaction groups and grid of its
  tabular features in `tabulation`.
"""

import numpy as np
import scipy.sparse as sp

from taxi.features.onehot import OneHotVectorizer
from taxi.features.trip import TripFeatureEncoder

Vectorizer = OneHotVectorizer | TripFeatureEncoder
# What the vectorizers make: a sparse one-hot matrix, or a dense array of trip features.
FeatureMatrix = sp.csr_matrix | np.ndarray

__all__ = ["FeatureMatrix", "OneHotVectorizer", "TripFeatureEncoder", "Vectorizer"]
