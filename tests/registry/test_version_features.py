"""Where a version's feature spec comes from, and a spec that does not fit its model."""

import asyncio

import numpy as np

from fastserve.registry import Registry
from tests.conftest import write_tiny_model

NUMERIC4 = "".join(f'[[features]]\nname = "f{i}"\ntype = "numeric"\n' for i in range(4))


def load(models_dir):
    registry = Registry(models_dir)
    registry.discover()
    asyncio.run(registry.load_all())
    return registry


def test_version_file_wins_over_the_models_spec(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "fastserve.toml").write_text('[versions]\npolicy = "all"\n' + NUMERIC4)
    write_tiny_model(tmp_path / "m" / "1")
    write_tiny_model(tmp_path / "m" / "2")
    own = NUMERIC4.replace('name = "f0"\ntype = "numeric"', 'name = "f0"\ntype = "numeric"\nimpute = 7.5')
    (tmp_path / "m" / "2" / "features.toml").write_text(own)
    registry = load(tmp_path)
    try:
        versions = registry.models["m"].versions
        out = np.empty((1, 4), dtype=np.float32)
        versions[2].transform.fill_records([{"f1": 1, "f2": 2, "f3": 3}], out)  # type: ignore[union-attr]
        assert out[0, 0] == 7.5
        assert versions[1].transform.fields == ("f0", "f1", "f2", "f3")  # type: ignore[union-attr]
        assert versions[1].transform.features[0].name == "f0"  # type: ignore[union-attr]
    finally:
        registry.close()


def test_spec_of_the_wrong_width_fails_the_version_with_the_reason(tmp_path):
    write_tiny_model(tmp_path / "m" / "1")
    (tmp_path / "m" / "1" / "features.toml").write_text(NUMERIC4 + '[[features]]\nname = "extra"\ntype = "numeric"\n')
    registry = load(tmp_path)
    version = registry.models["m"].versions[1]
    assert version.state == "failed"
    assert version.error == "m v1: the feature spec writes 5 columns but the model takes 4; fix features.toml or " \
                            "re-export the model"
    registry.close()


def test_invalid_features_file_fails_the_version(tmp_path):
    write_tiny_model(tmp_path / "m" / "1")
    (tmp_path / "m" / "1" / "features.toml").write_text('[[features]]\nname = "f0"\ntype = "text"\n')
    registry = load(tmp_path)
    version = registry.models["m"].versions[1]
    assert version.state == "failed" and "features.toml feature 'f0': `type` must be one of" in version.error
    registry.close()
