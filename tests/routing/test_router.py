"""The route of a request (`routing/router.py`): the version that answers, whether it is the canary, and what serves
it, the session the request is read into (its dtype, width, fixed batch) and the batcher; none while the version
is not loaded."""

import asyncio

import pytest

from fastserve.exceptions import VersionNotFound
from fastserve.registry import Registry
from fastserve.registry.models import EVICTED
from fastserve.routing.router import choose, reading
from fastserve.routing.routes import ModelRoutes
from tests.conftest import write_tiny_model


def load(models_dir, lazy=False):
    registry = Registry(models_dir, lazy=lazy, routes=ModelRoutes)
    registry.discover()
    asyncio.run(registry.load_all())
    return registry


def test_a_loaded_primary_is_routed_with_what_serves_it(tmp_path):
    write_tiny_model(tmp_path / "m" / "1", n_features=5)
    registry = load(tmp_path)
    try:
        model = registry.model("m")
        route = choose(model, None)
        assert route.version is model.primary and not route.canary
        assert route.serving is model.primary.serving and route.serving is not None
        assert route.serving.session.n_features == 5  # what the body is read into
        assert choose(model, "1").serving is route.serving  # the version named in the path, the same
        assert reading(model) == (model.primary, route.serving)
        with pytest.raises(VersionNotFound):
            choose(model, "2")
    finally:
        registry.close()


def test_a_version_not_loaded_is_routed_with_nothing_to_serve_it(tmp_path):
    write_tiny_model(tmp_path / "m" / "1")
    registry = load(tmp_path, lazy=True)  # (wanted, and loaded by its first request)
    try:
        model = registry.model("m")
        assert model.primary is not None and model.primary.state == EVICTED
        route = choose(model, None)
        assert route.version is model.primary and route.serving is None
        assert choose(model, "1").serving is None
        assert reading(model) is None  # the body is read the general way
    finally:
        registry.close()
