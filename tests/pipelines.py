"""Fitted scikit-learn pipelines that use every transformer the exporter supports, on raw customer-like records."""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

NUMERIC = ["age", "spend", "balance", "visits", "score"]
COUNTRIES = ["US", "GB", "DE", "FR", "ES", "BR"]  # BR is rare: an infrequent category
PLANS = ["basic", "pro", "team"]
CHANNELS = ["web", "store", "phone"]
ROOMS = [1, 2, 3, 4]
FIELDS = [*NUMERIC, "country", "plan", "rooms", "channel", "tier"]


def training_frame(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(40, 12, n),
        "spend": rng.lognormal(3, 1, n),
        "balance": rng.normal(0, 3, n),
        "visits": rng.integers(0, 50, n),
        "score": rng.normal(600, 80, n),
        "country": rng.choice(COUNTRIES, n, p=[0.4, 0.2, 0.15, 0.15, 0.09, 0.01]),
        "plan": rng.choice(PLANS, n),
        "rooms": rng.choice(ROOMS, n),
        "channel": rng.choice(CHANNELS, n),
        "tier": rng.choice(["gold", "silver"], n),
    })
    frame.loc[rng.random(n) < 0.1, "age"] = np.nan
    frame.loc[rng.random(n) < 0.1, "score"] = np.nan
    frame.loc[rng.random(n) < 0.05, "country"] = None
    return frame


def column_transformer() -> ColumnTransformer:
    return ColumnTransformer([
        ("age", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), ["age"]),
        ("score", make_pipeline(SimpleImputer(strategy="constant", fill_value=-1.0),
                                MinMaxScaler(feature_range=(-1, 1), clip=True)), ["score"]),
        ("spend", make_pipeline(FunctionTransformer(np.log1p), StandardScaler(with_mean=False)), ["spend"]),
        ("balance", make_pipeline(FunctionTransformer(np.clip, kw_args={"a_min": -2.0, "a_max": 2.0}),
                                  MinMaxScaler()), ["balance"]),
        ("balance_bins", KBinsDiscretizer(n_bins=5, encode="ordinal", strategy="uniform"), ["balance"]),
        ("age_bins", make_pipeline(SimpleImputer(strategy="median"),
                                   KBinsDiscretizer(n_bins=4, encode="onehot-dense", strategy="uniform")), ["age"]),
        ("country", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                  OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=0.05)),
         ["country"]),
        ("plan_rooms", OneHotEncoder(drop="first", handle_unknown="ignore"), ["plan", "rooms"]),
        ("tier", OneHotEncoder(drop="if_binary"), ["tier"]),
        ("channel", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["channel"]),
        ("plan_ordinal", OrdinalEncoder(), ["plan"]),
    ], remainder="passthrough")


@cache
def fitted() -> tuple[Pipeline, pd.DataFrame]:
    """The pipeline (column transformer + logistic regression) fitted on the training frame, and that frame."""
    frame = training_frame()
    rng = np.random.default_rng(1)
    y = (rng.random(len(frame)) < 1 / (1 + np.exp(-(frame["balance"] / 3 + (frame["plan"] == "pro"))))).astype(int)
    pipeline = Pipeline([("features", column_transformer()), ("model", LogisticRegression(max_iter=500))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pipeline.fit(frame, y)
    return pipeline, frame


def as_frame(records: list[dict]) -> pd.DataFrame:
    """Records as a pandas-based service would hand them to the pipeline: absent fields and nulls become NaN (a None
    left in an object column would reach the encoders as a category of its own)."""
    frame = pd.DataFrame(records, columns=FIELDS)
    frame = frame.where(frame.notna(), np.nan)
    frame[NUMERIC] = frame[NUMERIC].astype(np.float64)  # as JSON numbers are: one column of ints would be int64
    return frame


def sklearn_transform(records: list[dict]) -> np.ndarray:
    pipeline, _ = fitted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "unknown categories will be encoded as ..."
        out = pipeline.named_steps["features"].transform(as_frame(records))
    return np.asarray(out, dtype=np.float64)
