"""The canary's guard on live labels (`[routing.guard] quality = true`): a canary whose answers the labels say are
worse is pulled back; without the setting, the same labels change nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import copy_model, customers, start_server

CONFIG = """
[versions]
policy = "all"
[routing.canary]
version = 2
weight = 0.5
[routing.guard]
min_requests = 150
quality = {quality}
"""


def _repository(tmp_path: Path, quality: bool) -> Path:
    target = copy_model("churn_mlp", tmp_path, CONFIG.format(quality=str(quality).lower()))
    (target / "2").mkdir()
    for f in (target / "1").iterdir():
        (target / "2" / f.name).write_bytes(f.read_bytes())
    return tmp_path


@pytest.mark.parametrize("quality", [True, False])
def test_a_canary_the_labels_say_is_worse_is_pulled_back_only_when_asked(tmp_path: Path, quality: bool) -> None:
    x, churn, _ = customers(1000, 21)
    rng = np.random.default_rng(2)
    with start_server(_repository(tmp_path, quality)) as srv, httpx.Client(base_url=srv.url, timeout=20.0) as c:
        ids, labels = [], []
        for i in range(1000):
            r = c.post("/v1/models/churn_mlp/predict", json={"inputs": x[i:i + 1].tolist()})
            assert r.status_code == 200
            on_canary = r.headers["x-model-version"] == "2"
            truth = int(churn[i])
            if on_canary and rng.random() < 0.4:  # the canary's answers: 40% of its labels flipped
                truth = 1 - truth
            ids.append(r.headers["x-request-id"])
            labels.append(truth)
        assert c.post("/v1/models/churn_mlp/feedback", json={"ids": ids, "labels": labels}).json()["joined"] == 1000
        canary = c.get("/v1/models/churn_mlp").json()["routing"]["canary"]
    if quality:
        assert canary["weight"] == 0.0 and canary["rollbacks"] == 1
        assert canary["quality"]["verdict"] == "worse"
        assert "live labels" in canary["tripped"]["reasons"][0]
    else:
        assert canary["weight"] == 0.5 and "tripped" not in canary and "quality" not in canary
