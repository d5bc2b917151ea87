"""Reading a model repository: which folders are models and versions (configs: tests/test_config.py)."""

import pytest

from fastserve.config import ModelConfig
from fastserve.exceptions import ConfigError
from fastserve.registry import scan
from tests.conftest import MODELS, write_tiny_model


def test_bundled_repository():
    found = {m.name: m for m in scan(MODELS)}
    assert set(found) == {"churn", "churn_mlp", "spend"}
    for model in found.values():
        assert list(model.versions) == [1]
        assert (model.versions[1] / "model.onnx").stat().st_size < 5 * 1024 * 1024
        assert model.config.description
        assert (model.versions[1] / "validation.npz").is_file()


def test_scan_skips_what_is_not_a_model(tmp_path):
    write_tiny_model(tmp_path / "good" / "3")
    write_tiny_model(tmp_path / "good" / "10")
    (tmp_path / "good" / "draft").mkdir()  # not a number
    (tmp_path / "good" / "4").mkdir()  # no model.onnx
    write_tiny_model(tmp_path / ".hidden" / "1")
    (tmp_path / "empty").mkdir()
    (tmp_path / "README").write_text("x")
    (model,) = scan(tmp_path)
    assert model.name == "good" and sorted(model.versions) == [3, 10]
    assert model.config == ModelConfig(name="good")


def test_missing_directory_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; pass MODELS_DIR or set FASTSERVE_MODELS_DIR"):
        scan(tmp_path / "nowhere")
