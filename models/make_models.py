"""Builds the bundled models from a synthetic customer dataset, with fixed seeds.

    python models/make_models.py            # (re)write models/
    python models/make_models.py --check    # rebuild in a temp dir and compare bytes with models/

Needs fastserve installed with the `bench` extra (scikit-learn, skl2onnx, pandas). The churn classifier is a
scikit-learn pipeline on raw records, exported with `fastserve.export.sklearn` as `fastserve export sklearn` does.
Bytes are reproducible for the same versions of numpy, scikit-learn, skl2onnx and onnx (recorded in each version's
`build.json`); other versions may train a slightly different model or serialize the graph differently, so
`--check` says which versions differ when bytes do.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

# One BLAS thread, set before numpy loads: threaded reductions may sum in another order and change the last bits.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20261123
N_ROWS = 16_000
N_GOLDEN = 64
N_HOLDOUT = 4_000  # held-out rows: each version's reference quality (quality.json)

NUMERIC = [
    "age", "tenure_months", "monthly_spend", "total_spend", "support_calls", "late_payments",
    "logins_30d", "session_minutes", "devices", "discount_pct", "data_usage_gb", "days_since_login",
    "nps_score", "contract_months_left", "referrals", "complaints_90d", "bill_change_pct", "payment_failures",
]
CATEGORICAL = {
    "country": ["US", "GB", "DE", "FR", "ES", "IT", "NL", "BR"],
    "plan": ["basic", "standard", "pro", "enterprise"],
    "channel": ["web", "store", "partner", "phone"],
    "payment_method": ["card", "debit", "paypal", "invoice"],
}
FEATURES = NUMERIC + list(CATEGORICAL)


def make_dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers as a float matrix (categoricals as vocabulary indices), a churn label and next month's spend."""
    rng = np.random.default_rng(seed)
    age = rng.normal(42, 12, n).clip(18, 90)
    tenure = rng.gamma(2.0, 14.0, n).clip(0, 120)
    plan = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])
    monthly = (20 + 25 * plan + rng.normal(0, 8, n)).clip(5, None)
    total = monthly * tenure * rng.uniform(0.9, 1.1, n)
    support = rng.poisson(1.2 + 0.3 * (plan == 0), n)
    late = rng.poisson(0.4, n)
    logins = rng.poisson(12 + 3 * plan, n)
    minutes = rng.lognormal(2.5, 0.6, n)
    devices = 1 + rng.poisson(0.8 + 0.4 * plan, n)
    discount = rng.choice([0, 5, 10, 15, 25], n, p=[0.5, 0.2, 0.15, 0.1, 0.05]).astype(float)
    data_gb = rng.gamma(2.0, 5.0 + 2 * plan, n)
    since_login = rng.exponential(6, n).clip(0, 120)
    nps = rng.integers(0, 11, n).astype(float)
    months_left = rng.integers(0, 25, n).astype(float)
    referrals = rng.poisson(0.5, n)
    complaints = rng.poisson(0.3 + 0.2 * (support > 2), n)
    bill_change = rng.normal(0, 10, n)
    failures = rng.poisson(0.2 + 0.3 * late, n)
    country = rng.choice(8, n, p=[0.3, 0.15, 0.12, 0.12, 0.08, 0.08, 0.08, 0.07])
    channel = rng.choice(4, n, p=[0.5, 0.2, 0.2, 0.1])
    payment = rng.choice(4, n, p=[0.45, 0.25, 0.2, 0.1])
    X = np.column_stack([
        age, tenure, monthly, total, support, late, logins, minutes, devices, discount, data_gb, since_login,
        nps, months_left, referrals, complaints, bill_change, failures, country, plan, channel, payment,
    ]).astype(np.float32)
    logit = (
        -1.2 - 0.035 * tenure + 0.45 * support + 0.6 * late + 0.08 * since_login - 0.18 * (nps - 5)
        - 0.09 * months_left + 0.5 * complaints + 0.03 * bill_change + 0.7 * failures - 0.05 * logins
        + 0.4 * (plan == 0) - 0.5 * (plan == 3) + 0.3 * (channel == 2) + 0.35 * (payment == 3)
        + 0.25 * (country == 7) + 0.01 * (age - 42)
    )
    churn = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    spend = monthly * (1 + bill_change / 100) + 2.5 * devices + 0.4 * data_gb + rng.normal(0, 4, n)
    return X, churn, spend.astype(np.float32)


def raw_frame(X: np.ndarray, seed: int):
    """The customers as an application holds them: category names, and some values missing."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: X[:, j].astype(np.float64) for j, name in enumerate(NUMERIC)})
    for j, (name, vocabulary) in enumerate(CATEGORICAL.items()):
        frame[name] = np.array(vocabulary, dtype=object)[X[:, len(NUMERIC) + j].astype(int)]
    for name, share in (("nps_score", 0.05), ("days_since_login", 0.03), ("country", 0.02)):
        frame.loc[rng.random(len(frame)) < share, name] = np.nan
    return frame


def churn_pipeline():
    """One transformer per field, in FEATURES order, so the model input keeps the 22 columns of the other models."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder, StandardScaler

    def numeric(name: str):
        if name in ("total_spend", "session_minutes", "data_usage_gb"):  # long right tails
            return make_pipeline(FunctionTransformer(np.log1p), StandardScaler())
        if name in ("nps_score", "days_since_login"):  # sometimes missing
            return make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
        return StandardScaler()

    def categorical(name: str):
        unknown = {"handle_unknown": "use_encoded_value", "unknown_value": -1} if name in ("country", "channel") \
            else {}
        encoder = OrdinalEncoder(categories=[CATEGORICAL[name]], **unknown)
        return make_pipeline(SimpleImputer(strategy="most_frequent"), encoder) if name == "country" else encoder

    return ColumnTransformer([(name, numeric(name), [name]) for name in NUMERIC]
                             + [(name, categorical(name), [name]) for name in CATEGORICAL])


def build(out: Path) -> None:
    import warnings

    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastserve.drift.profile import build_profile, write_profile
    from fastserve.export.files import rename_outputs, to_onnx, write_version
    from fastserve.export.sklearn import export_pipeline, holdout_quality
    from fastserve.quality.measures import write_quality

    X, churn, spend = make_dataset(N_ROWS, SEED)
    X_gold, _, _ = make_dataset(N_GOLDEN, SEED + 1)
    X_hold, churn_hold, spend_hold = make_dataset(N_HOLDOUT, SEED + 2)
    d = X.shape[1]
    common = {"features": FEATURES, "categorical_vocabularies": CATEGORICAL, "rows": N_ROWS}

    def info(**extra) -> dict:
        return {**common, **extra, "seed": SEED}

    def classifier(name: str, model, estimator: str) -> None:
        golden = {"inputs": X_gold, "label": model.predict(X_gold).astype(np.int64),
                  "probabilities": model.predict_proba(X_gold)}
        write_version(out / name / "1", to_onnx(model, d, name, zipmap=False), golden, info(estimator=estimator))
        write_profile(out / name / "1", build_profile(X, FEATURES, {"label": model.predict(X),
                                                                   "probabilities": model.predict_proba(X)}))
        write_quality(out / name / "1", holdout_quality(model, X_hold, churn_hold, True))

    # The churn classifier is trained as applications hold their data (raw records with category names and gaps)
    # and goes through `fastserve export sklearn`, like any pipeline would.
    frame = raw_frame(X, SEED)
    gbm = Pipeline([("features", churn_pipeline()),
                    ("model", GradientBoostingClassifier(n_estimators=100, max_depth=6, learning_rate=0.1,
                                                         subsample=0.8, random_state=SEED))]).fit(frame, churn)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_pipeline(gbm, frame, "churn", Path(tmp), version=1, golden=N_GOLDEN, seed=SEED,
                                   holdout=(raw_frame(X_hold, SEED + 2), churn_hold))
        target = out / "churn" / "1"
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(exported, target)

    mlp = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(256, 256, 256), max_iter=15,
                                                         batch_size=256, random_state=SEED))
    with warnings.catch_warnings():
        # A fixed, short training run is the point: the model exists to be compute-heavy, not perfect.
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X, churn)
    classifier("churn_mlp", mlp, "MLPClassifier(256, 256, 256)")

    reg = GradientBoostingRegressor(n_estimators=100, max_depth=4, random_state=SEED).fit(X, spend)
    onx = to_onnx(reg, d, "spend")
    onx = rename_outputs(onx, {onx.graph.output[0].name: "prediction"})
    write_version(out / "spend" / "1", onx, {"inputs": X_gold, "prediction": reg.predict(X_gold).reshape(-1, 1)},
                  info(estimator="GradientBoostingRegressor(100, depth 4)", target="next month's spend"))
    write_profile(out / "spend" / "1", build_profile(X, FEATURES, {"prediction": reg.predict(X).reshape(-1, 1)}))
    write_quality(out / "spend" / "1", holdout_quality(reg, X_hold, spend_hold, False))


def _compare(a: Path, b: Path) -> list[str]:
    diffs = []
    # Version folders only: a model's hand-written fastserve.toml is not generated.
    for path in sorted(p for p in a.glob("*/*/*") if p.is_file() and p.suffix in {".onnx", ".npz", ".json", ".toml"}):
        other = b / path.relative_to(a)
        if not other.exists() or not filecmp.cmp(path, other, shallow=False):
            diffs.append(str(path.relative_to(a)))
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare with models/")
    args = parser.parse_args(argv)
    if not args.check:
        build(HERE)
        print(f"wrote models under {HERE}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        diffs = _compare(Path(tmp), HERE)
    if diffs:
        print("differs from models/: " + ", ".join(diffs), file=sys.stderr)
        from fastserve.export.files import library_versions

        print(f"this environment: {library_versions()} (see build.json for the versions models/ was built with)",
              file=sys.stderr)
        return 1
    print("models/ reproduced byte for byte")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
