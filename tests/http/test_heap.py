"""The heap loading made is frozen out of the cycle collector's full collections, and a version frozen with it is
still freed once it is removed from the repository and unloaded."""

import asyncio
import gc
import shutil
import weakref

from fastserve.config import ServerConfig
from fastserve.http.app import App
from tests.conftest import copy_model


def test_loaded_heap_is_frozen_and_a_removed_version_is_still_freed(tmp_path):
    model = copy_model("churn", tmp_path)
    shutil.copytree(model / "1", model / "2")  # two versions: 2 is primary, 1 can be removed
    app = App(ServerConfig(models_dir=tmp_path, poll_interval_s=0.05))
    gone: list[weakref.ref] = []

    async def main() -> int:
        task = asyncio.create_task(app._load())
        while gc.get_freeze_count() == 0:
            await asyncio.sleep(0.01)
        frozen = gc.get_freeze_count()
        gone.append(weakref.ref(app.registry.models["churn"].versions[1]))
        shutil.rmtree(model / "1")
        for _ in range(500):  # unloaded, then freed
            await asyncio.sleep(0.02)
            if gone[0]() is None:
                break
        task.cancel()
        return frozen

    try:
        frozen = asyncio.run(main())
    finally:
        app.registry.close()
        gc.unfreeze()
    assert frozen > 1000
    assert gone[0]() is None, "the removed version was never freed"
