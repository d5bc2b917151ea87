"""Versions loaded, gated, swapped, drained and rolled back on a real server while clients keep calling."""

import asyncio
import os
import shutil
import threading
import time

import httpx
import msgpack
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import MODELS, start_server
from tests.loadclient import Answer, post_until

TOKEN = "test-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
X = np.random.default_rng(11).normal(size=(2, 22)).astype(np.float32)
BODY = msgpack.packb({"inputs": {"dtype": "float32", "shape": list(X.shape), "data": X.tobytes()}})
MSGPACK = {"content-type": "application/msgpack"}
SOURCES = {1: "churn_mlp", 2: "churn"}  # two versions that answer differently


def expected(source: str) -> np.ndarray:
    session = ort.InferenceSession(str(MODELS / source / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"inputs": X})[0]


def publish(model_dir, number, source):
    """A version folder made complete aside, then renamed into place (the repository's convention)."""
    staging = model_dir / f".staging-{number}"
    shutil.copytree(MODELS / source / "1", staging)
    os.replace(staging, model_dir / str(number))


def repository(tmp_path, config="[versions]\npolicy = \"all\"\n"):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "fastserve.toml").write_text(config)
    publish(model_dir, 1, SOURCES[1])
    (tmp_path / "token").write_text(TOKEN)
    return model_dir


def serve(tmp_path, *args):
    return start_server(tmp_path, "--admin-token-file", str(tmp_path / "token"), *args)


def status(srv):
    return httpx.get(f"{srv.url}/v1/models/m").json()


def wait_for(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def admin(srv, path):
    return httpx.post(f"{srv.url}/v1/admin/models/m{path}", headers=AUTH, timeout=60)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Traffic:
    """Clients calling the model's primary on 4 connections from a thread, until stopped."""

    def __init__(self, srv):
        self._stop = False
        self.results: list = []
        self._thread = threading.Thread(target=self._run, args=(srv.port,))
        self.started = time.monotonic()
        self._thread.start()

    def _run(self, port):
        self.results = asyncio.run(post_until(port, "/v1/models/m/predict", BODY, 4, lambda: self._stop, MSGPACK))

    def stop(self):
        self._stop = True
        self._thread.join(30)
        self.seconds = time.monotonic() - self.started
        return self.results


def check_answers(results, want):
    failures = [r for r in results if not isinstance(r, Answer) or r.status_code != 200]
    assert not failures, failures[:3]
    seen = set()
    for r in results:
        version = int(r.headers["x-model-version"])
        seen.add(version)
        got = np.array(msgpack.unpackb(r.content)["outputs"]["probabilities"], dtype=np.float32)
        np.testing.assert_allclose(got, want[version], atol=1e-5, err_msg=f"answer labelled v{version}")
    return seen


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads resident memory from /proc")
def test_fifty_swaps_under_load_lose_nothing_and_release_sessions(tmp_path):
    model_dir = repository(tmp_path)
    publish(model_dir, 2, SOURCES[2])
    want = {n: expected(s) for n, s in SOURCES.items()}
    srv = serve(tmp_path, "--poll-interval", "0")
    try:
        assert status(srv)["primary"] == 2
        traffic = Traffic(srv)
        time.sleep(0.3)
        memory = []
        current = 2
        for i in range(50):  # each swap: load the other version, promote it, unload the old one
            other = 3 - current
            assert admin(srv, f"/versions/{other}/load").status_code == 200
            assert admin(srv, f"/versions/{other}/promote").json()["primary"] == other
            assert admin(srv, f"/versions/{current}/unload").status_code == 200
            current = other
            if i in (1, 49):
                memory.append(rss_kib(srv.proc.pid))
        time.sleep(0.2)
        results = traffic.stop()
        final = status(srv)
        text = httpx.get(f"{srv.url}/metrics").text
    finally:
        log = srv.stop()
    assert "Traceback" not in log, log
    assert len(results) / traffic.seconds >= 200, f"{len(results)} requests in {traffic.seconds:.1f} s"
    assert check_answers(results, want) == {1, 2}
    assert final["primary"] == current and [v["state"] for v in final["versions"]].count("unloaded") == 1
    assert 'fastserve_model_swaps_total{model="m"} 50.0' in text
    growth = (memory[1] - memory[0]) / 1024
    assert growth < 40, f"resident memory grew {growth:.1f} MiB over 48 swaps: old sessions are not released"


def test_new_version_folder_is_gated_and_served_and_rollback_restores(tmp_path):
    model_dir = repository(tmp_path, "")  # default policy: the latest version that passes
    want = {n: expected(s) for n, s in SOURCES.items()}
    srv = serve(tmp_path, "--poll-interval", "0.2")
    try:
        traffic = Traffic(srv)
        publish(model_dir, 2, SOURCES[2])
        wait_for(lambda: status(srv)["primary"] == 2)
        wait_for(lambda: status(srv)["versions"][0]["state"] == "unloaded")  # outside `latest = 1`: retired
        r = admin(srv, "/rollback")
        assert r.status_code == 200 and r.json()["primary"] == 1
        time.sleep(0.3)
        results = traffic.stop()
        after = httpx.post(f"{srv.url}/v1/models/m/predict", content=BODY, headers=MSGPACK)
        events = [e["event"] for e in status(srv)["events"]]
    finally:
        srv.stop()
    assert check_answers(results, want) == {1, 2}
    assert after.headers["x-model-version"] == "1"
    np.testing.assert_allclose(msgpack.unpackb(after.content)["outputs"]["probabilities"], want[1], atol=1e-5)
    for event in ("discovered", "loaded", "primary", "unloaded", "rolled_back"):
        assert event in events, events


def _corrupt(folder):
    (folder / "model.onnx").write_bytes(b"not an onnx graph")


def _wrong_spec(folder):
    (folder / "features.toml").write_text('[[features]]\nname = "a"\ntype = "numeric"\n')


def _bad_golden(folder):
    with np.load(folder / "validation.npz") as data:
        golden = {k: data[k] for k in data.files}
    golden["probabilities"] = golden["probabilities"][:, ::-1].copy()
    np.savez(folder / "validation.npz", **golden)


@pytest.mark.parametrize(("spoil", "event", "reason"), [
    (_corrupt, "load_failed", "onnxruntime could not load"),
    (_wrong_spec, "load_failed", "the feature spec writes 1 columns but the model takes 22"),
    (_bad_golden, "gate_failed", "validation gate failed: output `probabilities` differs from the validation set"),
])
def test_a_bad_version_is_refused_with_its_reason_while_the_old_one_serves(tmp_path, spoil, event, reason):
    model_dir = repository(tmp_path, "")
    srv = serve(tmp_path, "--poll-interval", "0.2")
    try:
        traffic = Traffic(srv)
        staging = model_dir / ".staging"
        shutil.copytree(MODELS / "churn" / "1", staging)
        spoil(staging)
        os.replace(staging, model_dir / "2")
        wait_for(lambda: len(status(srv)["versions"]) == 2 and status(srv)["versions"][1]["state"] == "failed")
        results = traffic.stop()
        body = status(srv)
        text = httpx.get(f"{srv.url}/metrics").text
    finally:
        srv.stop()
    assert check_answers(results, {1: expected("churn_mlp")}) == {1}
    assert body["primary"] == 1
    failed = body["versions"][1]
    assert reason in failed["error"], failed
    assert any(e["event"] == event and e["version"] == 2 and reason in e["detail"] for e in body["events"])
    if event == "gate_failed":
        assert 'fastserve_model_gate_failures_total{model="m"} 1.0' in text


def test_folder_being_written_is_not_picked_up_half_written(tmp_path):
    model_dir = repository(tmp_path, "")
    # A folder is taken once two looks find it unchanged: a look every 0.5 s, a chunk every ~0.1 s (a margin of
    # five for a loaded machine's stalls), over ~3 looks.
    srv = serve(tmp_path, "--poll-interval", "0.5")
    try:
        folder = model_dir / "2"
        shutil.copytree(MODELS / "churn" / "1", folder, ignore=shutil.ignore_patterns("model.onnx"))
        data = (MODELS / "churn" / "1" / "model.onnx").read_bytes()
        with open(folder / "model.onnx", "wb") as f:  # written slowly, in place, over ~1.5 s
            for chunk in range(15):
                f.write(data[chunk * len(data) // 15:(chunk + 1) * len(data) // 15])
                f.flush()
                time.sleep(0.1)
                assert all(v["state"] != "failed" for v in status(srv)["versions"])
        wait_for(lambda: status(srv)["primary"] == 2)
    finally:
        srv.stop()


def test_config_changes_apply_without_a_restart_or_are_refused(tmp_path):
    model_dir = repository(tmp_path, "[model]\ndescription = \"one\"\n")
    srv = serve(tmp_path, "--poll-interval", "0.2")
    try:
        traffic = Traffic(srv)
        (model_dir / "fastserve.toml").write_text("[model]\ndescription = \"two\"\n[batching]\nmax_batch_size = 8\n")
        wait_for(lambda: status(srv)["description"] == "two")
        (model_dir / "fastserve.toml").write_text("[batching]\nmax_batch_size = 0\n")
        wait_for(lambda: any(e["event"] == "config_refused" for e in status(srv)["events"]))
        time.sleep(0.3)
        results = traffic.stop()
        body = status(srv)
    finally:
        srv.stop()
    assert check_answers(results, {1: expected("churn_mlp")}) == {1}
    refused = next(e for e in body["events"] if e["event"] == "config_refused")
    assert "`max_batch_size` must be >= 1" in refused["detail"]
    assert body["description"] == "two" and body["primary"] == 1  # the previous config keeps serving
    assert any(e["event"] == "config_applied" and "rebuilt" in e.get("detail", "") for e in body["events"])


def test_removed_version_folder_is_unloaded(tmp_path):
    model_dir = repository(tmp_path)
    publish(model_dir, 2, SOURCES[2])
    srv = serve(tmp_path, "--poll-interval", "0.2")
    try:
        shutil.rmtree(model_dir / "2")
        wait_for(lambda: [v["version"] for v in status(srv)["versions"]] == [1])
        assert status(srv)["primary"] == 1
        r = httpx.post(f"{srv.url}/v1/models/m/versions/2/predict", content=BODY, headers=MSGPACK)
        assert r.status_code == 404
    finally:
        srv.stop()


def test_admin_api_is_off_without_a_token_and_checks_it(tmp_path):
    repository(tmp_path)
    srv = start_server(tmp_path)
    try:
        r = httpx.post(f"{srv.url}/v1/admin/models/m/rollback", headers=AUTH)
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"
    finally:
        srv.stop()
    srv = serve(tmp_path)
    try:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
            r = httpx.post(f"{srv.url}/v1/admin/models/m/rollback", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = admin(srv, "/rollback")
        assert r.status_code == 409 and "no previous primary" in r.json()["error"]["message"]
        r = admin(srv, "/versions/1/unload")
        assert r.status_code == 409 and "the only version serving" in r.json()["error"]["message"]
        assert admin(srv, "/versions/7/promote").status_code == 404
        assert httpx.post(f"{srv.url}/v1/admin/models/nope/rollback", headers=AUTH).status_code == 404
        # Names come from the repository's own listing, never from the client: a path goes nowhere.
        (tmp_path / "outside").mkdir()
        for name, version in (("..%2Foutside", "1"), ("m", "..%2F..%2Foutside"), ("%2Fetc", "1"), ("m", "1%2F..")):
            r = httpx.post(f"{srv.url}/v1/admin/models/{name}/versions/{version}/load", headers=AUTH)
            assert r.status_code == 404, (name, version, r.text)
            assert "Traceback" not in r.text
    finally:
        srv.stop()


def test_cli_talks_to_a_running_server(tmp_path):
    import subprocess
    import sys

    model_dir = repository(tmp_path)
    publish(model_dir, 2, SOURCES[2])
    srv = serve(tmp_path)
    try:
        base = [sys.executable, "-m", "fastserve", "models"]
        common = ["--url", srv.url, "--token-file", str(tmp_path / "token")]
        done = subprocess.run([*base, "promote", "m", "1", *common], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "m  primary: 1 (promoted: v1)" in done.stdout, done.stderr
        done = subprocess.run([*base, "rollback", "m", *common], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "m  primary: 2" in done.stdout, done.stderr
        done = subprocess.run([*base, "status", "--url", srv.url], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "v2  serving" in done.stdout and "rolled_back v2" in done.stdout
        done = subprocess.run([*base, "promote", "m", "1", "--url", srv.url], capture_output=True, text=True,
                              timeout=60, env={k: v for k, v in os.environ.items() if k != "FASTSERVE_ADMIN_TOKEN"})
        assert done.returncode == 2 and "401 missing or wrong admin token" in done.stderr
    finally:
        srv.stop()
