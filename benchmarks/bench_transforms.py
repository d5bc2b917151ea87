"""Feature transforms: the compiled transform next to scikit-learn and to plain numpy, on 1 and on 64 records.

A synthetic sample of customer records (18 numeric fields, some with missing values, and 4 categorical ones) fits a
scikit-learn `ColumnTransformer` (median imputing, standardizing, log1p + min-max scaling, quantile binning, one-hot
and ordinal encoding). `fastserve.export.sklearn.translate` turns it into a feature spec, compiled into a
`FeatureTransform`. The same records (missing values left out, as a client sends them) then go through
  - `compiled`: `FeatureTransform.fill_records` into a float32 matrix allocated per call, as the server does;
  - `compiled_columns`: the same data as a columnar payload, `count_columns` then `fill_columns`;
  - `sklearn`: `pd.DataFrame(records)` then `ColumnTransformer.transform` (a server gets records, so building the
    frame is part of the cost);
  - `sklearn_transform_only`: `ColumnTransformer.transform` alone, on a frame built beforehand;
  - `numpy`: the same transformer written by hand, one list comprehension per group of fields that share a
    transformer, then whole-column impute / standardize / log1p / min-max / searchsorted / one-hot into a float32
    matrix.
All of them are checked to give the same matrix (within 1e-6) before anything is timed. Each case is timed in
repeats of enough calls for `--repeat-s` seconds, the cases taking turns repeat by repeat so that drift in the
machine hits them alike; the figure is the median repeat. Per field value is the time per call over
(rows x input fields).

    python -m benchmarks.bench_transforms [--quick] [--repeats 7] [--repeat-s 0.2]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks._harness import pin_self, time_cases, write_results

NAN = float("nan")
IMPUTED = ["age", "tenure_months", "monthly_charges", "support_calls", "satisfaction_score"]
SCALED = ["logins_30d", "sessions_per_week", "avg_session_minutes", "pages_per_session", "days_since_login",
          "devices", "discount_pct", "late_payments", "referrals"]
SKEWED = ["total_spend", "data_usage_gb", "transactions"]
BINNED = "credit_score"
ONEHOT = ["country", "plan"]
ORDINAL = ["channel", "payment_method"]
COUNTRIES = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "SE"]
PLANS = ["free", "basic", "pro", "enterprise"]
CHANNELS = ["web", "ios", "android", "partner"]
PAYMENTS = ["card", "paypal", "invoice", "bank_transfer"]


def customers(n: int, seed: int = 0) -> Any:
    """Synthetic customer records: 18 numeric fields (the first five ~5% missing) and 4 categorical (two with
    missing values)."""
    import pandas as pd

    rng = np.random.default_rng(seed)

    def with_missing(values: np.ndarray, share: float = 0.05) -> np.ndarray:
        values = values.astype(np.float64)
        values[rng.random(n) < share] = np.nan
        return values

    def category(values: list[str], p: list[float], share: float = 0.0) -> np.ndarray:
        out = rng.choice(np.array(values, dtype=object), size=n, p=p)
        out[rng.random(n) < share] = np.nan
        return out

    data = {
        "age": with_missing(rng.normal(42, 13, n).clip(18, 90).round()),
        "tenure_months": with_missing(rng.gamma(2.0, 14.0, n).round()),
        "monthly_charges": with_missing(rng.normal(65, 25, n).clip(5, None).round(2)),
        "support_calls": with_missing(rng.poisson(1.5, n)),
        "satisfaction_score": with_missing(rng.integers(1, 11, n)),
        "logins_30d": rng.poisson(12, n),
        "sessions_per_week": rng.gamma(3.0, 1.5, n).round(1),
        "avg_session_minutes": rng.lognormal(2.3, 0.5, n).round(1),
        "pages_per_session": rng.gamma(4.0, 1.2, n).round(1),
        "days_since_login": rng.exponential(6.0, n).round(),
        "devices": rng.integers(1, 6, n),
        "discount_pct": rng.choice([0.0, 5.0, 10.0, 15.0, 25.0], size=n),
        "late_payments": rng.poisson(0.4, n),
        "referrals": rng.poisson(0.7, n),
        "total_spend": rng.lognormal(6.5, 1.2, n).round(2),
        "data_usage_gb": rng.lognormal(1.5, 1.0, n).round(3),
        "transactions": rng.negative_binomial(2, 0.05, n),
        "credit_score": rng.normal(660, 75, n).clip(300, 850).round(),
        "country": category(COUNTRIES, [0.35, 0.15, 0.12, 0.1, 0.08, 0.08, 0.07, 0.05], 0.03),
        "plan": category(PLANS, [0.4, 0.3, 0.2, 0.1], 0.04),
        "channel": category(CHANNELS, [0.5, 0.2, 0.2, 0.1]),
        "payment_method": category(PAYMENTS, [0.55, 0.2, 0.15, 0.1]),
    }
    return pd.DataFrame(data)


def fit_column_transformer(frame: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        KBinsDiscretizer,
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
    )

    ct = ColumnTransformer([
        ("imputed", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), IMPUTED),
        ("scaled", StandardScaler(), SCALED),
        ("skewed", make_pipeline(FunctionTransformer(np.log1p), MinMaxScaler()), SKEWED),
        ("binned", KBinsDiscretizer(n_bins=8, encode="ordinal", quantile_method="averaged_inverted_cdf"), [BINNED]),
        ("onehot", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                 OneHotEncoder(handle_unknown="ignore", sparse_output=False)), ONEHOT),
        ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ORDINAL),
    ], remainder="drop")
    return ct.fit(frame)


class NumpyTransform:
    """The same column transformer, written by hand with numpy from the fitted transformers' attributes: one list
    comprehension per group of fields that share a transformer, then whole-column numpy operations."""

    def __init__(self, ct: Any) -> None:
        imputed = ct.named_transformers_["imputed"]
        self.median = imputed[0].statistics_
        self.imputed_mean, self.imputed_scale = imputed[1].mean_, imputed[1].scale_
        scaled = ct.named_transformers_["scaled"]
        self.scaled_mean, self.scaled_scale = scaled.mean_, scaled.scale_
        minmax = ct.named_transformers_["skewed"][1]
        self.minmax_scale, self.minmax_min = minmax.scale_, minmax.min_
        self.edges = ct.named_transformers_["binned"].bin_edges_[0][1:-1]
        onehot = ct.named_transformers_["onehot"]
        self.modes = list(onehot[0].statistics_)
        categories = onehot[1].categories_
        self.onehot_lookup = [{c: i for i, c in enumerate(cs)} for cs in categories]
        self.onehot_offsets = np.cumsum([0, *(len(cs) for cs in categories)])[:-1]
        self.ordinal_codes = [{c: float(i) for i, c in enumerate(cs)}
                              for cs in ct.named_transformers_["ordinal"].categories_]
        # Output columns, in the column transformer's order.
        self.scaled_at = len(IMPUTED)
        self.skewed_at = self.scaled_at + len(SCALED)
        self.binned_at = self.skewed_at + len(SKEWED)
        self.onehot_at = self.binned_at + 1
        self.ordinal_at = self.onehot_at + sum(len(cs) for cs in categories)
        self.width = self.ordinal_at + len(ORDINAL)

    def __call__(self, records: list[dict[str, Any]], dtype: Any = np.float32) -> np.ndarray:
        n = len(records)
        out = np.empty((n, self.width), dtype=dtype)
        x = np.array([[r.get(f, NAN) for f in IMPUTED] for r in records], dtype=np.float64)
        x = np.where(np.isnan(x), self.median, x)
        out[:, :self.scaled_at] = (x - self.imputed_mean) / self.imputed_scale
        x = np.array([[r[f] for f in SCALED] for r in records], dtype=np.float64)
        out[:, self.scaled_at:self.skewed_at] = (x - self.scaled_mean) / self.scaled_scale
        x = np.array([[r[f] for f in SKEWED] for r in records], dtype=np.float64)
        out[:, self.skewed_at:self.binned_at] = np.log1p(x) * self.minmax_scale + self.minmax_min
        x = np.array([r[BINNED] for r in records], dtype=np.float64)
        out[:, self.binned_at] = np.searchsorted(self.edges, x, side="right")
        hot = out[:, self.onehot_at:self.ordinal_at]
        hot[:] = 0
        rows = np.arange(n)
        for f, mode, lookup, offset in zip(ONEHOT, self.modes, self.onehot_lookup, self.onehot_offsets, strict=True):
            idx = np.array([lookup.get(r.get(f, mode), -1) for r in records], dtype=np.intp)
            known = idx >= 0  # unknown categories: all zeros (handle_unknown="ignore")
            hot[rows[known], offset + idx[known]] = 1
        for j, (f, codes) in enumerate(zip(ORDINAL, self.ordinal_codes, strict=True)):
            out[:, self.ordinal_at + j] = [codes.get(r[f], -1.0) for r in records]
        return out


def _cases(frame: Any, rows: int, ct: Any, transform: Any, by_hand: NumpyTransform
           ) -> dict[str, Callable[[], np.ndarray]]:
    """The timed calls on the first `rows` records of the sample, after checking they all give the same matrix."""
    import pandas as pd

    from fastserve.export.sklearn import sample_records

    fields = list(transform.fields)
    width = transform.width
    records = sample_records(frame.iloc[:rows], fields)
    columns = {f: [r.get(f) for r in records] for f in fields}
    prebuilt = pd.DataFrame(records, columns=fields)

    def compiled() -> np.ndarray:
        out = np.empty((len(records), width), dtype=np.float32)
        transform.fill_records(records, out)
        return out

    def compiled_columns() -> np.ndarray:
        out = np.empty((transform.count_columns(columns), width), dtype=np.float32)
        transform.fill_columns(columns, out)
        return out

    def sklearn() -> np.ndarray:
        return ct.transform(pd.DataFrame(records, columns=fields))

    def sklearn_transform_only() -> np.ndarray:
        return ct.transform(prebuilt)

    def numpy() -> np.ndarray:
        return by_hand(records)

    cases = {"compiled": compiled, "compiled_columns": compiled_columns, "sklearn": sklearn,
             "sklearn_transform_only": sklearn_transform_only, "numpy": numpy}

    # The same matrix from every implementation before anything is timed: in float64, then as timed.
    expected = ct.transform(frame.iloc[:rows])
    exact = np.empty((rows, width), dtype=np.float64)
    transform.fill_records(records, exact)
    np.testing.assert_allclose(exact, expected, rtol=0, atol=1e-6, err_msg="compiled vs sklearn")
    np.testing.assert_allclose(by_hand(records, np.float64), expected, rtol=0, atol=1e-6, err_msg="numpy vs sklearn")
    for name, fn in cases.items():
        got = fn()  # float32 for the compiled and numpy cases: allow for its rounding of values above 1
        np.testing.assert_allclose(got, expected, rtol=1e-6 if got.dtype == np.float32 else 0, atol=1e-6,
                                   err_msg=f"{name}, {rows} row(s)")
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 repeats of 0.05 s per case (about 10 s in all)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per case; the median is reported")
    parser.add_argument("--repeat-s", type=float, default=0.2, help="seconds of calls per repeat")
    parser.add_argument("--rows", type=int, default=5000, help="rows of the synthetic sample the transforms fit on")
    parser.add_argument("--core", type=int, default=1, help="core to pin this process to (-1: no pinning)")
    args = parser.parse_args(argv)
    repeats, seconds = (5, 0.05) if args.quick else (args.repeats, args.repeat_s)
    pin_self(args.core if args.core >= 0 else None)

    import pandas as pd
    import sklearn

    from fastserve._core import FeatureTransform
    from fastserve.export.sklearn import translate
    from fastserve.features import parse_features

    frame = customers(args.rows)
    ct = fit_column_transformer(frame)
    features = translate(ct, frame)
    transform = FeatureTransform(list(parse_features(features, "bench")))
    fields = list(transform.fields)
    by_hand = NumpyTransform(ct)
    assert by_hand.width == transform.width, (by_hand.width, transform.width)

    sizes = (1, 64)
    cases: dict[str, Callable[[], np.ndarray]] = {}
    for rows in sizes:
        cases.update({f"{rows}/{name}": fn for name, fn in _cases(frame, rows, ct, transform, by_hand).items()})
    # All cases take turns within each repeat: drift in the machine hits them alike.
    samples = time_cases({name: (lambda fn=fn: fn) for name, fn in cases.items()}, repeats, seconds)

    results: dict[str, Any] = {}
    table = []
    for rows in sizes:
        values = rows * len(fields)
        entry: dict[str, Any] = {"rows": rows, "fields": len(fields), "width": transform.width}
        for key, ns in samples.items():
            if key.startswith(f"{rows}/"):
                median = float(np.median(ns))
                entry[key.partition("/")[2]] = {"ns_per_call": median, "ns_per_value": median / values,
                                                "rows_per_s": rows / median * 1e9, "repeats_ns_per_call": ns}
        compiled = entry["compiled"]["ns_per_call"]
        entry["ratios"] = {f"{name}_over_compiled": entry[name]["ns_per_call"] / compiled
                           for name in ("sklearn", "sklearn_transform_only", "numpy", "compiled_columns")}
        results[f"rows_{rows}"] = entry
        for key in samples:
            if key.startswith(f"{rows}/"):
                name = key.partition("/")[2]
                table.append((rows, name, entry[name], entry[name]["ns_per_call"] / compiled))

    print(f"{len(fields)} input fields -> {transform.width} model inputs; median of {repeats} repeats of "
          f"~{seconds:g} s per case")
    print(f"{'rows':>5}  {'case':<24}{'us/call':>10}{'ns/value':>10}{'rows/s':>13}{'x compiled':>12}")
    for rows, name, r, ratio in table:
        print(f"{rows:>5}  {name:<24}{r['ns_per_call'] / 1e3:>10.2f}{r['ns_per_value']:>10.1f}"
              f"{r['rows_per_s']:>13,.0f}{ratio:>12.2f}")
    for rows in sizes:
        ratios = results[f"rows_{rows}"]["ratios"]
        print(f"{rows} row(s): sklearn/compiled {ratios['sklearn_over_compiled']:.1f}x "
              f"(transform only {ratios['sklearn_transform_only_over_compiled']:.1f}x), "
              f"numpy/compiled {ratios['numpy_over_compiled']:.1f}x")
    out = write_results("transforms", {
        "sample_rows": args.rows, "fields": fields, "width": transform.width, "repeats": repeats,
        "repeat_s": seconds, "versions": {"numpy": np.__version__, "pandas": pd.__version__,
                                          "scikit-learn": sklearn.__version__},
        "features": features, "results": results})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
