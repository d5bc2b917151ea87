"""Feature specs: raw records (named numeric and categorical fields) into the model's input, as training did."""

from fastserve.features.spec import FEATURES_FILE, describe, load_transform, parse_features, read_features_file

__all__ = ["FEATURES_FILE", "describe", "load_transform", "parse_features", "read_features_file"]
