"""`fastserve export sklearn`: exact translation or a clear refusal."""

import json
import subprocess
import sys
import warnings

import joblib
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, RobustScaler, StandardScaler

from fastserve.exceptions import ExportError
from fastserve.export.sklearn import export_pipeline
from fastserve.features import read_features_file
from tests import pipelines


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pipeline, frame = pipelines.fitted()
    out = tmp_path_factory.mktemp("repo")
    return export_pipeline(pipeline, frame, "demo", out, golden=32, seed=3)


def test_version_folder_has_everything(exported):
    assert exported.name == "1"
    assert sorted(p.name for p in exported.iterdir()) == [
        "build.json", "features.toml", "model.onnx", "profile.json", "validation.npz", "validation_records.json"]
    assert (exported.parent / "fastserve.toml").read_text().startswith("[model]\ndescription = ")
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # staging folder renamed away
    build = json.loads((exported / "build.json").read_text())
    assert build["estimator"] == "LogisticRegression" and "scikit-learn" in build["versions"]


def test_validation_set_is_the_pipelines_own_answers(exported):
    pipeline, _ = pipelines.fitted()
    records = json.loads((exported / "validation_records.json").read_text())
    golden = np.load(exported / "validation.npz")
    assert len(records) == 32 and golden["inputs"].shape == (32, pipelines.sklearn_transform(records[:1]).shape[1])
    np.testing.assert_array_equal(golden["inputs"], pipelines.sklearn_transform(records).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = pipeline.predict_proba(pipelines.as_frame(records))
    np.testing.assert_allclose(golden["probabilities"], expected, atol=1e-6)
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"inputs": golden["inputs"]})
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_array_equal(label, golden["label"])


def test_features_file_reads_back_in_output_order(exported):
    features = read_features_file(exported / "features.toml")
    names = [f.name for f in features]
    assert names[:4] == ["age", "score", "spend", "balance"] and names[-1] == "visits"  # remainder last
    assert "balance_2" in names and "plan_2" in names  # a field used twice gets a second feature


def _frame(n=200):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(["a", "b"], n)}), rng.integers(0, 2, n)


def _fit(transformers, estimator=None, **kw):
    frame, y = _frame()
    pipeline = Pipeline([("ct", ColumnTransformer(transformers, **kw)), ("m", estimator or LogisticRegression())])
    return pipeline.fit(frame, y), frame


@pytest.mark.parametrize(("transformers", "message"), [
    ([("r", RobustScaler(), ["x"])], "RobustScaler cannot be translated exactly"),
    ([("i", SimpleImputer(add_indicator=True), ["x"])], "add_indicator=True) is not supported"),
    ([("f", FunctionTransformer(np.exp), ["x"])], "FunctionTransformer('exp') cannot be translated"),
    ([("s", make_pipeline(StandardScaler(), SimpleImputer()), ["x"])], "SimpleImputer must come before"),
    ([("s", make_pipeline(OneHotEncoder(), StandardScaler(with_mean=False)), ["c"])],
     "an encoder must be the last step"),
])
def test_what_cannot_be_translated_is_named(tmp_path, transformers, message):
    pipeline, frame = _fit(transformers)
    with pytest.raises(ExportError) as info:
        export_pipeline(pipeline, frame, "m", tmp_path)
    assert message in str(info.value), str(info.value)
    assert "transformer '" in str(info.value)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_missing_values_as_a_category_need_an_imputer(tmp_path):
    frame, y = _frame()
    frame.loc[:5, "c"] = None
    pipeline = Pipeline([("ct", ColumnTransformer([("c", OneHotEncoder(), ["c"])])), ("m", LogisticRegression())])
    pipeline.fit(frame, y)
    with pytest.raises(ExportError, match="put a SimpleImputer before the encoder"):
        export_pipeline(pipeline, frame, "m", tmp_path)


def test_pipeline_shape_is_checked(tmp_path):
    frame, _y = _frame()
    with pytest.raises(ExportError, match="expected a fitted sklearn Pipeline"):
        export_pipeline(LogisticRegression(), frame, "m", tmp_path)
    scaler_first = make_pipeline(StandardScaler(), LogisticRegression())
    with pytest.raises(ExportError, match=r"got \[StandardScaler, LogisticRegression\]"):
        export_pipeline(scaler_first, frame, "m", tmp_path)
    unfitted = Pipeline([("ct", ColumnTransformer([("x", StandardScaler(), ["x"])])), ("m", LogisticRegression())])
    with pytest.raises(ExportError, match="not fitted"):
        export_pipeline(unfitted, frame, "m", tmp_path)


def test_regressor_exports_a_prediction_output(tmp_path):
    frame, _ = _frame()
    y = frame["x"] * 3 + 1
    pipeline = Pipeline([("ct", ColumnTransformer([("x", StandardScaler(), ["x"]), ("c", OneHotEncoder(), ["c"])])),
                         ("m", LinearRegression())]).fit(frame, y)
    folder = export_pipeline(pipeline, frame, "reg", tmp_path)
    golden = np.load(folder / "validation.npz")
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (prediction,) = session.run(["prediction"], {"inputs": golden["inputs"]})
    np.testing.assert_allclose(prediction, golden["prediction"], rtol=1e-5)


def test_cli_exports_next_versions_and_refuses_to_overwrite(tmp_path):
    pipeline, frame = _fit([("x", StandardScaler(), ["x"]), ("c", OneHotEncoder(), ["c"])])
    joblib.dump(pipeline, tmp_path / "p.joblib")
    frame.to_csv(tmp_path / "sample.csv", index=False)
    command = [sys.executable, "-m", "fastserve", "export", "sklearn", str(tmp_path / "p.joblib"), "--sample",
               str(tmp_path / "sample.csv"), "--name", "clf", "--out", str(tmp_path / "repo")]
    for expected in ("1", "2"):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"repo/clf/{expected} " in done.stdout
    done = subprocess.run([*command, "--version", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "already exists; pass another --version" in done.stderr
    done = subprocess.run([*command[:7], str(tmp_path / "sample.txt"), *command[8:]], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "expected a .csv or .parquet file" in done.stderr
