"""Version swaps: how long a published version takes to serve, and what swapping costs the traffic.

1. Publish to serving. For each bundled model, a repository holding version 1 and a server watching it every
   `--poll-interval` s; then versions 2, 3, ... are published the usual way (copied to a hidden staging folder,
   then `os.replace`d to their number) and timed from the rename until `GET /v1/models/<name>` (polled every
   `--status-interval` s) shows the new version as primary. The server's events split that time into detection (rename
   to `discovered`: the watcher sees a new folder on one poll and loads it once its files are unchanged on the next),
   loading (the server's own `load_seconds`, warm-up and validation gate included) and the rest.
2. Traffic during swaps. One-row JSON requests to the primary from the open-loop Poisson generator
   (benchmarks/loadgen.py) at `--rate`, in windows of `--window` s that alternate between steady state (nothing
   happens) and back-to-back swaps (one every `--swap-every` s, from a separate process), over `--rounds` rounds
   (steady first in odd rounds, swaps first in even ones); p50/p99/p99.9/max from each request's intended send time,
   steady and swap windows side by side, and every answer that is not 200 counted. Two kinds of swap:
   - `promote`: versions 1 and 2 both loaded (`[versions] policy = "all"`), each swap promotes the other one through
     the admin API;
   - `publish`: each swap publishes a new version folder, which the server detects, loads, warms, gates and promotes
     while the previous one drains and is unloaded (default policy, `latest = 1`).
The server runs pinned to core 0, the generator (and the swapping process) on core 1. Loopback only.

    python -m benchmarks.bench_swap [--quick] [--poll-interval 0.05] [--rate 1000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import secrets
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, Process, pin_self, start_fastserve, write_results
from benchmarks.loadgen import Run, open_loop

MODELS = ROOT / "models"
BUSY = ("loading", "warming", "gating", "draining")


def _repository(dest: Path, model: str, versions: int, config_extra: str = "") -> Path:
    """A repository at `dest` holding `model` as versions 1..`versions`, copies of the bundled version 1."""
    target = dest / model
    target.mkdir(parents=True)
    config = (MODELS / model / "fastserve.toml").read_text()
    (target / "fastserve.toml").write_text(config + config_extra)
    for number in range(1, versions + 1):
        shutil.copytree(MODELS / model / "1", target / str(number))
    return dest


def _stage(repo: Path, model: str, number: int) -> tuple[Path, Path]:
    """Copy the bundled version folder to a hidden staging name; returns (staging, final) for the rename."""
    staging = repo / model / f".staging-{number}"
    shutil.copytree(MODELS / model / "1", staging)
    return staging, repo / model / str(number)


def _status(client: Client | int, model: str) -> dict[str, Any]:
    """The model's status, over `client` or a fresh connection to a port (the server closes keep-alive connections
    idle for 5 s, so none is kept across a traffic window)."""
    if isinstance(client, int):
        with Client(client) as fresh:
            return _status(fresh, model)
    code, body = client.request("GET", f"/v1/models/{model}")
    if code != 200:
        raise RuntimeError(f"GET /v1/models/{model} answered {code}: {body[:300]!r}")
    return orjson.loads(body)


def _at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["at"]).timestamp()


def _event(status: dict[str, Any], kind: str, version: int) -> dict[str, Any] | None:
    return next((e for e in reversed(status["events"]) if e["event"] == kind and e.get("version") == version), None)


def _server(repo: Path, token_file: Path, poll_interval: float) -> Process:
    return start_fastserve(repo, 0, "--poll-interval", str(poll_interval), "--admin-token-file", str(token_file))


# -- 1. publish to serving --------------------------------------------------------------------------------------------

def publish_to_serving(model: str, tmp: Path, token_file: Path, poll_interval: float, status_interval: float,
                       repeats: int, timeout_s: float = 30.0) -> list[dict[str, float]]:
    repo = _repository(tmp / f"publish-{model}", model, 1)
    server = _server(repo, token_file, poll_interval)
    rng = random.Random(0)
    trials = []
    try:
        for number in range(2, repeats + 2):
            staging, final = _stage(repo, model, number)
            time.sleep(rng.uniform(0, 2 * poll_interval))  # no phase lock with the watcher's polls
            with Client(server.port) as client:
                renamed = time.time()
                started = time.perf_counter()
                os.replace(staging, final)
                while True:
                    status = _status(client, model)
                    if status["primary"] == number:
                        break
                    if time.perf_counter() - started > timeout_s:
                        raise RuntimeError(f"{model} v{number} not primary {timeout_s:g} s after its rename; "
                                           f"versions {status['versions']}, last events {status['events'][-6:]}")
                    time.sleep(status_interval)
                total = time.perf_counter() - started
                version = next(v for v in status["versions"] if v["version"] == number)
                discovered, loaded = _event(status, "discovered", number), _event(status, "loaded", number)
                primary = _event(status, "primary", number)
                if discovered is None or loaded is None or primary is None:
                    raise RuntimeError(f"{model} v{number}: missing events in {status['events'][-6:]}")
                detect = _at(discovered) - renamed
                trials.append({"version": number, "total_s": total, "detect_s": detect,
                               "load_seconds": version["load_seconds"], "warmup_seconds": version["warmup_seconds"],
                               "discovered_to_loaded_s": _at(loaded) - _at(discovered),
                               "loaded_to_primary_s": _at(primary) - _at(loaded),
                               "primary_to_seen_s": renamed + total - _at(primary)})
                print(f"  {model} v{number}: {total * 1e3:6.1f} ms (detection {detect * 1e3:5.1f}, load "
                      f"{version['load_seconds'] * 1e3:5.1f} of which warm-up {version['warmup_seconds'] * 1e3:5.1f})")
    finally:
        server.stop()
    return trials


def _publish_summary(trials: list[dict[str, float]]) -> dict[str, float]:
    def col(key: str) -> np.ndarray:
        return np.array([t[key] for t in trials])

    total = col("total_s")
    return {"n": len(trials), "median_s": float(np.median(total)), "max_s": float(total.max()),
            "detect_median_s": float(np.median(col("detect_s"))),
            "load_median_s": float(np.median(col("load_seconds"))),
            "warmup_median_s": float(np.median(col("warmup_seconds"))),
            "detect_share_median": float(np.median(col("detect_s") / total)),
            "load_share_median": float(np.median(col("load_seconds") / total))}


# -- 2. traffic during swaps ------------------------------------------------------------------------------------------

def _swapper(kind: str, port: int, token: str, model: str, plan: list[Any], offset_s: float, every_s: float,
             ready: Any, go: Any, done: Any, out: Any) -> None:
    """In its own process (so that it takes nothing from the generator's interpreter): one swap every `every_s` s
    from `offset_s` after `go`. `plan`: version numbers to promote, or (staging, final, number) renames. Reports
    and exits only after `done`, when the window is over, so that its exit does not take the generator's core."""
    log = []
    with Client(port) as client:
        raws = {n: (f"POST /v1/admin/models/{model}/versions/{n}/promote HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n").encode()
                for n in plan if kind == "promote"}
        ready.set()
        go.wait()
        start = time.monotonic()
        for i, step in enumerate(plan):
            delay = start + offset_s + i * every_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            at = time.time()
            if kind == "promote":
                code = client.send_raw(raws[step])[0]
                log.append((at, step, code))
            else:
                staging, final, number = step
                os.replace(staging, final)
                log.append((at, number, 0))
        done.wait()
    out.put(log)


def _merge(runs: list[Run]) -> dict[str, float]:
    merged = Run.merge(runs)
    s = merged.summary()
    ok = merged.latencies_us[merged.statuses == 200]
    s["p999_ms"] = float(np.percentile(ok, 99.9) / 1e3) if ok.size else float("nan")
    codes, counts = np.unique(merged.statuses[merged.statuses != 200], return_counts=True)
    s["error_codes"] = {str(int(c)): int(n) for c, n in zip(codes, counts, strict=True)}
    return s


def _settle(port: int, model: str, primary: int, timeout_s: float = 30.0) -> dict[str, Any]:
    """Wait until `primary` serves and no version is being loaded or drained."""
    deadline = time.monotonic() + timeout_s
    with Client(port) as client:
        while True:
            status = _status(client, model)
            busy = [v for v in status["versions"] if v["state"] in BUSY]
            if status["primary"] == primary and not busy:
                return status
            if time.monotonic() > deadline:
                raise RuntimeError(f"{model}: v{primary} not serving alone {timeout_s:g} s after the last swap; "
                                   f"versions {status['versions']}, last events {status['events'][-8:]}")
            time.sleep(0.02)


def traffic(kind: str, model: str, tmp: Path, token: str, token_file: Path, args: argparse.Namespace
            ) -> dict[str, Any]:
    extra = '\n[versions]\npolicy = "all"\n' if kind == "promote" else ""
    repo = _repository(tmp / f"traffic-{kind}", model, 2 if kind == "promote" else 1, extra)
    rows = np.load(MODELS / model / "1" / "validation.npz")["inputs"].astype(np.float32)
    raws = [Client.build("POST", f"/v1/models/{model}/predict", orjson.dumps({"inputs": [r.tolist()]}))
            for r in rows]
    per_window = max(1, round(args.window / args.swap_every))
    server = _server(repo, token_file, args.poll_interval)
    ctx = multiprocessing.get_context("spawn")
    runs: dict[str, list[Run]] = {"steady": [], "swap": []}
    actions: list[tuple[float, int, int]] = []
    events: dict[tuple[str, str, int | None], dict[str, Any]] = {}
    current, next_version = 2 if kind == "promote" else 1, 2
    try:
        open_loop(server.port, raws, args.rate, 1.0, seed=99)  # warm the path; not counted
        for r in range(args.rounds):
            for window in ("steady", "swap") if r % 2 == 0 else ("swap", "steady"):  # drift hits both alike
                if window == "steady":
                    print(f"  {kind}: round {r + 1}/{args.rounds}, steady window")
                    runs["steady"].append(open_loop(server.port, raws, args.rate, args.window, seed=2 * r))
                    continue
                if kind == "promote":
                    plan: list[Any] = [1 + (current + i) % 2 for i in range(per_window)]
                else:
                    plan = [(*_stage(repo, model, next_version + i), next_version + i) for i in range(per_window)]
                    next_version += per_window
                ready, go, done, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
                proc = ctx.Process(target=_swapper, args=(kind, server.port, token, model, plan,
                                                          args.swap_every / 2, args.swap_every, ready, go, done, out))
                proc.start()
                if not ready.wait(60):
                    raise RuntimeError("the swapping process did not start")
                print(f"  {kind}: round {r + 1}/{args.rounds}, swap window ({per_window} swaps)")
                go.set()
                runs["swap"].append(open_loop(server.port, raws, args.rate, args.window, seed=2 * r + 1))
                done.set()
                actions.extend(out.get(timeout=60))
                proc.join(30)
                current = actions[-1][1]
                status = _settle(server.port, model, current)
                for e in status["events"]:
                    events[(e["at"], e["event"], e.get("version"))] = e
    finally:
        server.stop()
    steady, swap = _merge(runs["steady"]), _merge(runs["swap"])
    result: dict[str, Any] = {"steady": steady, "swap": swap, "p99_ratio": swap["p99_ms"] / steady["p99_ms"],
                              "swaps_attempted": len(actions)}
    timeline = sorted(events.values(), key=_at)
    if kind == "promote":
        result["promotes_answered_200"] = sum(1 for _, _, code in actions if code == 200)
        result["promote_codes"] = sorted({code for _, _, code in actions})
        first = actions[0][0] if actions else 0.0
        result["primary_changes"] = sum(1 for e in timeline if e["event"] == "primary" and _at(e) >= first - 0.01)
    else:
        to_primary = []
        for at, number, _ in actions:
            primary = next((e for e in timeline if e["event"] == "primary" and e.get("version") == number), None)
            if primary is not None:
                to_primary.append(_at(primary) - at)
        result["became_primary"] = len(to_primary)
        result["publish_to_primary_median_s"] = float(np.median(to_primary)) if to_primary else float("nan")
        result["publish_to_primary_max_s"] = float(np.max(to_primary)) if to_primary else float("nan")
        result["unloaded"] = sum(1 for e in timeline if e["event"] == "unloaded")
        result["failed"] = [e for e in timeline if e["event"] in ("gate_failed", "load_failed")]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer publications, shorter and fewer windows")
    parser.add_argument("--models", default="churn,churn_mlp,spend", help="models for publish-to-serving")
    parser.add_argument("--traffic-model", default="churn", help="model the traffic goes to")
    parser.add_argument("--poll-interval", type=float, default=0.05, help="the server's repository poll interval, s")
    parser.add_argument("--status-interval", type=float, default=0.005, help="status polling while waiting, s")
    parser.add_argument("--repeats", type=int, default=None, help="publications per model (default 6; quick 2)")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s during the traffic windows")
    parser.add_argument("--window", type=float, default=None, help="seconds per window (default 5; quick 2)")
    parser.add_argument("--rounds", type=int, default=None, help="steady + swap window pairs (default 3; quick 1)")
    parser.add_argument("--swap-every", type=float, default=0.5, help="seconds between swaps in a swap window")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 6)
    args.window = args.window or (2.0 if args.quick else 5.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    pin_self(1)
    started = time.perf_counter()

    results: dict[str, Any] = {"poll_interval_s": args.poll_interval, "status_interval_s": args.status_interval}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        token = secrets.token_hex(24)
        token_file = tmp / "admin-token"
        token_file.write_text(token)
        token_file.chmod(0o600)

        publish: dict[str, Any] = {}
        print(f"publish to serving, poll interval {args.poll_interval:g} s, {args.repeats} publications per model:")
        for model in args.models.split(","):
            trials = publish_to_serving(model, tmp, token_file, args.poll_interval, args.status_interval,
                                        args.repeats)
            publish[model] = {"summary": _publish_summary(trials), "trials": trials}
        results["publish_to_serving"] = publish

        print(f"traffic to {args.traffic_model} at {args.rate:g}/s, {args.rounds} x ({args.window:g} s steady + "
              f"{args.window:g} s with a swap every {args.swap_every:g} s):")
        results["traffic"] = {"model": args.traffic_model, "rate": args.rate, "window_s": args.window,
                              "rounds": args.rounds, "swap_every_s": args.swap_every}
        for kind in ("promote", "publish"):
            results["traffic"][kind] = traffic(kind, args.traffic_model, tmp, token, token_file, args)

    print(f"\npublish to serving (rename -> primary seen in GET /v1/models/<name>), poll interval "
          f"{args.poll_interval:g} s, {args.repeats} publications per model:")
    print("| model | median | max | detection | load_seconds | of which warm-up | detection share | load share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for model, entry in publish.items():
        s = entry["summary"]
        ms = [f"{s[k] * 1e3:.0f} ms" for k in ("median_s", "max_s", "detect_median_s", "load_median_s",
                                                 "warmup_median_s")]
        print(f"| {model} | {' | '.join(ms)} | {s['detect_share_median']:.0%} | {s['load_share_median']:.0%} |")
    t = results["traffic"]
    print(f"\none-row JSON requests to {t['model']} at {t['rate']:g}/s, {t['rounds']} x {t['window_s']:g} s per "
          f"window, a swap every {t['swap_every_s']:g} s in swap windows:")
    print("| swaps | window | sent | errors | p50 ms | p99 ms | p99.9 ms | max ms | send lag p99 µs | "
          "p99 swap/steady |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in ("promote", "publish"):
        entry = t[kind]
        for window in ("steady", "swap"):
            s = entry[window]
            ratio = f"{entry['p99_ratio']:.2f}" if window == "swap" else ""
            print(f"| {kind} | {window} | {s['sent']:,} | {s['errors']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                  f"{s['p999_ms']:.2f} | {s['max_ms']:.2f} | {s['send_lag_p99_us']:.0f} | {ratio} |")
    p, q = t["promote"], t["publish"]
    print(f"promote: {p['swaps_attempted']} promotes, {p['promotes_answered_200']} answered 200, "
          f"{p['primary_changes']} primary changes")
    print(f"publish: {q['swaps_attempted']} publications, {q['became_primary']} became primary (median "
          f"{q['publish_to_primary_median_s'] * 1e3:.0f} ms, max {q['publish_to_primary_max_s'] * 1e3:.0f} ms from "
          f"the rename under load), {q['unloaded']} unloaded, {len(q['failed'])} failed")
    results["runtime_s"] = time.perf_counter() - started
    out = write_results("swap", results)
    print(f"total {results['runtime_s']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
