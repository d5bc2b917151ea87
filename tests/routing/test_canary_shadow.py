"""Canary splits, stickiness, shadows and the guard, on a real server with real clients."""

import asyncio
import time

import httpx
import msgpack
import numpy as np
import pytest

from fastserve.config import CanaryOptions, GuardOptions
from fastserve.routing.canary import Canary, key_position
from tests.conftest import start_server
from tests.loadclient import post_many
from tests.routing import formula_models

TOKEN = "test-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MSGPACK = {"content-type": "application/msgpack"}


def tensor(x):
    return msgpack.packb({"inputs": {"dtype": "float32", "shape": list(x.shape), "data": x.tobytes()}})


def repository(tmp_path, config, *server_args, start=start_server, **versions):
    """Model `m` with formula versions: `v1={}`, `v2={"xor_column": 1}`..., served by `start`."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "fastserve.toml").write_text('[versions]\npolicy = "all"\n' + config)
    for name, options in versions.items():
        formula_models.write(tmp_path / "m" / name[1:], **options)
    (tmp_path / "token").write_text(TOKEN)
    return start(tmp_path, "--admin-token-file", str(tmp_path / "token"), "--poll-interval", "0", *server_args)


def fire(srv, bodies, connections=8, headers=None):
    return asyncio.run(post_many(srv.port, "/v1/models/m/predict", bodies, connections, {**MSGPACK, **(headers or {})}))


def versions_of(answers):
    return [int(a.headers["x-model-version"]) for a in answers]


def status(srv):
    return httpx.get(f"{srv.url}/v1/models/m").json()


def admin(srv, method, path, body=None):
    return httpx.request(method, f"{srv.url}/v1/admin/models/m{path}", headers=AUTH, json=body, timeout=60)


def test_canary_share_over_ten_thousand_requests_is_its_weight(tmp_path):
    srv = repository(tmp_path, "[routing]\ncanary = { version = 2, weight = 0.25 }\n", v1={}, v2={})
    try:
        answers = fire(srv, [tensor(np.zeros((1, 22), dtype=np.float32))] * 10_000)
        body = status(srv)
    finally:
        srv.stop()
    assert all(a.status_code == 200 for a in answers)
    n = versions_of(answers).count(2)
    sigma = (10_000 * 0.25 * 0.75) ** 0.5
    assert abs(n - 2500) < 5 * sigma, n  # a binomial tolerance of 5 standard deviations (~217)
    assert body["routing"]["canary"] == {"version": 2, "weight": 0.25, "sticky_key": None, "rollbacks": 0}


def test_sticky_keys_stay_put_and_a_weight_change_moves_only_the_keys_it_must(tmp_path):
    srv = repository(tmp_path, '[routing]\ncanary = { version = 2, weight = 0.2, sticky_key = "header:X-User-Id" }\n',
                     v1={}, v2={})
    users = [f"user-{i}" for i in range(300)]
    body = tensor(np.zeros((1, 22), dtype=np.float32))

    def sides():
        seen = {}
        for user in users:
            got = {versions_of(fire(srv, [body] * 2, connections=1, headers={"x-user-id": user}))[i] for i in (0, 1)}
            assert len(got) == 1, (user, got)  # the same key, the same version
            seen[user] = got.pop()
        return seen

    try:
        before = sides()
        assert admin(srv, "POST", "/canary", {"weight": 0.5}).json()["routing"]["canary"]["weight"] == 0.5
        after = sides()
        pinned = httpx.post(f"{srv.url}/v1/models/m/versions/1/predict", content=body,
                            headers={**MSGPACK, "x-user-id": next(u for u in users if after[u] == 2)})
    finally:
        srv.stop()
    assert {u for u in users if before[u] == 2} == {u for u in users if key_position(u) < 0.2}
    assert {u for u in users if after[u] == 2} == {u for u in users if key_position(u) < 0.5}
    moved = [u for u in users if before[u] != after[u]]
    assert all(before[u] == 1 and after[u] == 2 for u in moved)  # only primary -> canary, only those between
    assert 0.2 < len(moved) / len(users) < 0.4
    assert pinned.headers["x-model-version"] == "1"  # a version in the path bypasses the canary


def test_record_field_sticky_key_reads_the_first_record():
    canary = Canary(CanaryOptions(version=2, weight=0.5, sticky_key="user_id"), GuardOptions())
    assert canary.key({"records": [{"user_id": "u-7", "age": 3}, {"user_id": "u-8"}]}, []) == "u-7"
    assert canary.key({"columns": {"user_id": ["u-9", "u-1"]}}, []) == "u-9"
    assert canary.key({"inputs": [[1.0]]}, []) is None
    header = Canary(CanaryOptions(version=2, weight=0.5, sticky_key="header:X-User-Id"), GuardOptions())
    assert header.key({}, [(b"x-user-id", b"abc")]) == "abc"


def test_shadow_never_changes_answers_and_measures_its_disagreement(tmp_path):
    srv = repository(tmp_path, "[model]\nprimary = 1\n", v1={}, v2={"xor_column": 1, "shift_column": 2})
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(int(rng.integers(1, 5)), 22)).astype(np.float32) for _ in range(300)]
    try:
        alone = fire(srv, [tensor(x) for x in xs])
        assert admin(srv, "POST", "/shadows/2", {"sample": 1.0}).status_code == 200
        shadowed = fire(srv, [tensor(x) for x in xs])
        deadline = time.monotonic() + 20
        while status(srv)["routing"]["shadows"][0]["total"]["compared"] < len(xs) and time.monotonic() < deadline:
            time.sleep(0.05)
        body = status(srv)
        metrics = httpx.get(f"{srv.url}/metrics").text
    finally:
        srv.stop()
    assert [a.content for a in alone] == [a.content for a in shadowed]  # byte for byte
    assert set(versions_of(shadowed)) == {1}
    x = np.concatenate(xs)
    label1, p1 = formula_models.reference(x)
    label2, p2 = formula_models.reference(x, xor_column=1, shift_column=2)
    total = body["routing"]["shadows"][0]["total"]
    assert total["compared"] == len(xs) and total["dropped"] == 0 and total["errors"] == 0
    assert total["label_agreement"] == pytest.approx((label1 == label2).mean(), abs=1e-12)
    assert total["label_agreement"] == pytest.approx((x[:, 1] <= 0).mean(), abs=1e-12)
    assert total["mean_abs_diff"] == pytest.approx(np.abs(p1 - p2).mean(), abs=1e-5)
    assert total["max_abs_diff"] == pytest.approx(np.abs(p1 - p2).max(), abs=1e-5)
    assert total["latency_ms_mean"] is not None
    assert 'fastserve_shadow_requests_total{model="m",outcome="compared",version="2"} 300.0' in metrics
    assert 'fastserve_shadow_label_agreement_ratio{model="m",scope="total",version="2"}' in metrics


GUARD = "[routing.guard]\nmin_requests = 30\nwindow_s = 30\np99_slack_ms = 1000\n"  # latency: test_guard.py


def _guarded(tmp_path, canary_options, guard=GUARD):
    return repository(tmp_path, "[routing]\ncanary = { version = 2, weight = 0.5 }\n" + guard, v1={},
                      v2=canary_options)


def test_guard_pulls_back_a_canary_that_errs(tmp_path):
    srv = _guarded(tmp_path, {"fails_above": 10})
    x = np.zeros((1, 22), dtype=np.float32)
    x[0, 0] = 50.0  # the canary's run fails on it; the primary's does not
    try:
        first = fire(srv, [tensor(x)] * 200, connections=4)
        time.sleep(0.6)
        after = fire(srv, [tensor(x)] * 50, connections=2)
        body = status(srv)
        metrics = httpx.get(f"{srv.url}/metrics").text
    finally:
        srv.stop()
    assert {a.status_code for a in first} == {200, 500}
    assert all(a.status_code == 200 for a in after) and set(versions_of(after)) == {1}
    canary = body["routing"]["canary"]
    assert canary["weight"] == 0 and canary["rollbacks"] == 1
    assert any("error rate" in r for r in canary["tripped"]["reasons"]), canary
    assert canary["tripped"]["error_rate"]["canary"] > 0.9 and canary["tripped"]["error_rate"]["primary"] == 0
    event = next(e for e in body["events"] if e["event"] == "canary_rolled_back")
    assert event["version"] == 2 and "error rate" in event["detail"]
    assert 'fastserve_canary_rollbacks_total{model="m"} 1.0' in metrics


def test_guard_pulls_back_a_canary_that_answers_garbage(tmp_path):
    srv = _guarded(tmp_path, {"constant_label": True})
    rng = np.random.default_rng(5)
    try:
        answers = fire(srv, [tensor(rng.normal(size=(1, 22)).astype(np.float32)) for _ in range(400)], connections=4)
        time.sleep(0.6)
        fire(srv, [tensor(np.zeros((1, 22), dtype=np.float32))] * 20, connections=1)
        canary = status(srv)["routing"]["canary"]
    finally:
        srv.stop()
    assert all(a.status_code == 200 for a in answers)
    assert canary["weight"] == 0
    assert any("Jensen-Shannon" in r for r in canary["tripped"]["reasons"]), canary


def test_guard_leaves_a_good_canary_alone(tmp_path):
    # The label rule is checked after every answer: from 30 answers a version, two samples of the same model's labels
    # can differ by chance past the divergence limit (one run in tens did); from 100, they practically never do.
    srv = _guarded(tmp_path, {}, GUARD.replace("min_requests = 30", "min_requests = 100"))
    rng = np.random.default_rng(6)
    try:
        answers = fire(srv, [tensor(rng.normal(size=(1, 22)).astype(np.float32)) for _ in range(600)], connections=4)
        canary = status(srv)["routing"]["canary"]
    finally:
        srv.stop()
    assert set(versions_of(answers)) == {1, 2}
    assert canary["weight"] == 0.5 and canary["rollbacks"] == 0 and "tripped" not in canary, canary


def test_admin_canary_and_shadow_calls(tmp_path):
    srv = repository(tmp_path, "", v1={}, v2={}, v3={})
    try:
        r = admin(srv, "POST", "/canary", {"weight": 0.1})
        assert r.status_code == 409 and "has no canary" in r.json()["error"]["message"]
        r = admin(srv, "POST", "/canary", {"version": 2, "weight": 1.5})
        assert r.status_code == 422 and "between 0 and 1" in r.json()["error"]["message"]
        r = admin(srv, "POST", "/canary", {"version": 3, "weight": 0.3, "colour": "red"})
        assert r.status_code == 422 and "unknown field `colour`" in r.json()["error"]["message"]
        r = admin(srv, "POST", "/canary", {"version": 3, "weight": 0.3})
        assert r.status_code == 409 and "is the primary" in r.json()["error"]["message"]  # newest: v3 is primary
        r = admin(srv, "POST", "/canary", {"version": 2, "weight": 0.3, "sticky_key": "header:X-User-Id"})
        assert r.json()["routing"]["canary"]["sticky_key"] == "header:X-User-Id"
        assert admin(srv, "POST", "/shadows/1", {"sample": 0.5}).json()["routing"]["shadows"][0]["sample"] == 0.5
        body = admin(srv, "POST", "/canary/promote").json()
        assert body["primary"] == 2 and body["routing"]["canary"] is None
        assert admin(srv, "DELETE", "/shadows/1").json()["routing"]["shadows"] == []
        r = admin(srv, "DELETE", "/shadows/1")
        assert r.status_code == 409 and "is not a shadow" in r.json()["error"]["message"]
        # A body over the server's limit (8 MiB) is refused, declared or not, before it is buffered whole.
        url, big = f"{srv.url}/v1/admin/models/m/canary", b" " * (9 << 20)
        r = httpx.post(url, headers=AUTH, content=big)
        assert r.status_code == 413 and "over the limit of 8388608 bytes" in r.json()["error"]["message"]
        r = httpx.post(url, headers=AUTH, content=(big[i:i + 65536] for i in range(0, len(big), 65536)))
        assert r.status_code == 413 and "over the limit of 8388608 bytes" in r.json()["error"]["message"]
        events = [e["event"] for e in status(srv)["events"]]
    finally:
        srv.stop()
    for event in ("canary", "shadow", "promoted", "shadow_removed"):
        assert event in events, events
