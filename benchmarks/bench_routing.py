"""Canary and shadow routing: what a shadow costs the primary's traffic, and what routing costs per request.

1. Shadow cost on the primary. A repository with one model `m`: version 1 (the primary) and version 2, copies of the
   bundled `churn`, and version 3, a copy of `churn_mlp` (the heavier shadow); `[versions] policy = "all"`, so all
   three are loaded. One-row JSON requests to the primary from the open-loop Poisson generator (benchmarks/loadgen.py)
   at `--rate`, in windows of `--window` s, one server process throughout; before each window the admin API sets the
   condition: no shadow, version 2 as a shadow at sample 1.0, or version 3 as a shadow at sample 1.0 (`--no-heavy`
   leaves this one out). The conditions take turns in `--rounds` rounds, the order rotating from round to round, so
   that drift in the machine hits them alike. For each condition: p50/p99 from each request's intended send time,
   achieved throughput, the server's CPU time per request, and, from `GET /v1/models/m` once the shadow's queue has
   drained, how many copies the shadow compared, dropped and failed; reported as ratios to the no-shadow windows.
2. Highest rate within p99 <= `--slo-ms` with and without the version 2 shadow: the rate search of bench_batching
   (doubling from 1,000/s, then two bisections, trials of 1.5 s), `--passes` searches per condition in alternating
   order, the best of each condition's searches kept (noise only lowers it); `--no-search` skips it.
3. Routing per request, in-process (no HTTP), the model built with `fastserve.registry.Registry`:
   `fastserve.routing.router.choose` with no canary, a random 10% canary, a canary sticky on a header (8 request
   headers, 1,024 different user ids) and one sticky on a record field; `ShadowRunner.offer` when it queues the
   copy (its worker stopped), when the queue is full (the copy is dropped), at sample 0.1, and to the live shadow the
   config declares, one call per millisecond, so that each call also wakes its waiting worker thread; and the shadow
   worker's own cost per copy (run and comparison), at its default batch of up to 256 copies and one at a time.
The server runs pinned to core 0 (its shadow worker thread too), the generator and the in-process part on core 1.
Loopback only.

    python -m benchmarks.bench_routing [--quick] [--rate 1500] [--window 3] [--rounds 5] [--no-heavy] [--no-search]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks._harness import ROOT, Client, Process, pin_self, start_fastserve, time_cases, write_results
from benchmarks.loadgen import Run, max_rate, open_loop

MODELS = ROOT / "models"
MODEL = "m"
SHADOWS = {"shadow_churn": 2, "shadow_churn_mlp": 3}  # condition -> shadow version


def _repository(dest: Path, routing: str = "") -> Path:
    """`m`: v1 and v2 copies of the bundled churn, v3 a copy of churn_mlp (same 22 inputs); all loaded, v1 primary."""
    target = dest / MODEL
    target.mkdir(parents=True)
    config = (MODELS / "churn" / "fastserve.toml").read_text().replace("[model]\n", "[model]\nprimary = 1\n", 1)
    (target / "fastserve.toml").write_text(config + '\n[versions]\npolicy = "all"\n' + routing)
    for number, source in ((1, "churn"), (2, "churn"), (3, "churn_mlp")):
        shutil.copytree(MODELS / source / "1", target / str(number))
    return dest


def _rows() -> np.ndarray:
    return np.load(MODELS / "churn" / "1" / "validation.npz")["inputs"].astype(np.float32)


# -- over HTTP ------------------------------------------------------------------------------------------------------

def _admin(port: int, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = orjson.dumps(body) if body is not None else b""
    raw = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data
    with Client(port) as client:
        code, answer = client.send_raw(raw)
    if code != 200:
        raise RuntimeError(f"{method} {path} answered {code}: {answer[:300]!r}")
    return orjson.loads(answer)


def _status(port: int) -> dict[str, Any]:
    """The model's status over a fresh connection (idle keep-alive connections are closed after 5 s)."""
    with Client(port) as client:
        code, body = client.request("GET", f"/v1/models/{MODEL}")
    if code != 200:
        raise RuntimeError(f"GET /v1/models/{MODEL} answered {code}: {body[:300]!r}")
    return orjson.loads(body)


def _shadow_total(port: int, number: int) -> dict[str, Any]:
    shadows = _status(port)["routing"]["shadows"]
    found = next((s for s in shadows if s["version"] == number), None)
    if found is None:
        raise RuntimeError(f"v{number} is not among the shadows of {MODEL!r}: {shadows}")
    return found["total"]


def _drained(port: int, number: int, offered: int, timeout_s: float = 10.0) -> dict[str, Any]:
    """The shadow's totals once every copy offered in the window is accounted for (compared, dropped or failed)."""
    started = time.monotonic()
    while True:
        total = _shadow_total(port, number)
        seen = total["compared"] + total["dropped"] + total["errors"]
        if seen >= offered or time.monotonic() - started > timeout_s:
            return {**total, "offered": offered, "unaccounted": max(0, offered - seen),
                    "drain_wait_s": time.monotonic() - started}
        time.sleep(0.01)


def _merge(runs: list[Run], cpu_s: float) -> dict[str, Any]:
    merged = Run.merge(runs)
    s: dict[str, Any] = merged.summary()
    codes, counts = np.unique(merged.statuses[merged.statuses != 200], return_counts=True)
    s["error_codes"] = {str(int(c)): int(n) for c, n in zip(codes, counts, strict=True)}
    s["server_cpu_s"] = cpu_s
    s["server_cpu_us_per_request"] = cpu_s / max(1, s["ok"]) * 1e6
    s["server_cpu_share"] = cpu_s / merged.duration_s
    return s


def shadow_cost(server: Process, token: str, raws: list[bytes], conditions: list[str], args: argparse.Namespace
                ) -> dict[str, Any]:
    port = server.port
    runs: dict[str, list[Run]] = {c: [] for c in conditions}
    cpu = dict.fromkeys(conditions, 0.0)
    shadow_totals: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions if c in SHADOWS}
    windows = []
    for r in range(args.rounds):
        order = conditions[r % len(conditions):] + conditions[:r % len(conditions)]  # rotate: no fixed position
        for condition in order:
            number = SHADOWS.get(condition)
            if number is not None:
                _admin(port, token, "POST", f"/v1/admin/models/{MODEL}/shadows/{number}", {"sample": 1.0})
            before = server.cpu_seconds()
            run = open_loop(port, raws, args.rate, args.window, seed=1000 * r + len(windows))
            used = server.cpu_seconds() - before
            runs[condition].append(run)
            cpu[condition] += used
            s = run.summary()
            entry: dict[str, Any] = {"round": r + 1, "condition": condition, **s, "server_cpu_s": used}
            if number is not None:
                total = _drained(port, number, s["ok"])
                _admin(port, token, "DELETE", f"/v1/admin/models/{MODEL}/shadows/{number}")
                shadow_totals[condition].append(total)
                entry["shadow"] = total
            windows.append(entry)
            extra = ""
            if number is not None:
                t = entry["shadow"]
                extra = (f"  shadow v{number}: compared {t['compared']:,} dropped {t['dropped']:,} errors "
                         f"{t['errors']} queue-to-answer mean {t['latency_ms_mean'] or 0:.2f} ms")
            print(f"  round {r + 1}/{args.rounds} {condition:<17} p50 {s['p50_ms']:6.2f} ms  p99 {s['p99_ms']:7.2f} ms"
                  f"  goodput {s['goodput']:7.0f}/s  errors {s['errors']}  server CPU {used / args.window:4.0%}"
                  f"  send lag p99 {s['send_lag_p99_us']:5.0f} us{extra}")
    result: dict[str, Any] = {"conditions": {}, "windows": windows}
    for condition in conditions:
        s = _merge(runs[condition], cpu[condition])
        if condition in SHADOWS:
            totals = shadow_totals[condition]
            s["shadow"] = {key: sum(t[key] for t in totals) for key in
                           ("offered", "compared", "dropped", "errors", "unaccounted")}
            for key in ("label_agreement", "mean_abs_diff", "latency_ms_mean"):
                values = [t[key] for t in totals if t[key] is not None]
                s["shadow"][key] = float(np.mean(values)) if values else None
            s["shadow"]["latency_ms_max"] = max((t["latency_ms_max"] or 0.0 for t in totals), default=None)
        result["conditions"][condition] = s
    # A round is clean when the generator kept to its schedule in all its windows (send lag p99 under 1 ms): in the
    # others something else on the machine took the generator's core, and its p99s say more about that.
    clean = [r + 1 for r in range(args.rounds)
             if all(w["send_lag_p99_us"] < 1000 for w in windows if w["round"] == r + 1)]
    result["clean_rounds"] = clean
    base = result["conditions"]["none"]
    for condition in conditions[1:]:
        s = result["conditions"][condition]
        per_round = {w["round"]: w["p99_ms"] / v["p99_ms"] for w in windows if w["condition"] == condition
                     for v in windows if v["condition"] == "none" and v["round"] == w["round"]}
        clean_ratios = [per_round[r] for r in clean]
        s["ratio"] = {"p50": s["p50_ms"] / base["p50_ms"], "p99": s["p99_ms"] / base["p99_ms"],
                      "goodput": s["goodput"] / base["goodput"],
                      "server_cpu_per_request": s["server_cpu_us_per_request"] / base["server_cpu_us_per_request"],
                      "p99_per_round": list(per_round.values()),
                      "p99_per_round_median": float(np.median(list(per_round.values()))),
                      "p99_clean_rounds_median": float(np.median(clean_ratios)) if clean_ratios else None}
    return result


def rate_search(port: int, token: str, raws: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """bench_batching's search, with and without the shadow, in `args.passes` passes of alternating order. Whatever
    else runs on the machine can only lower the rate a search finds, so each condition's figure is its best pass."""
    out: dict[str, Any] = {"slo_ms": args.slo_ms, "passes": args.passes,
                           "none": {"searches": []}, "shadow_churn": {"searches": []}}
    for p in range(args.passes):
        for condition in ("none", "shadow_churn") if p % 2 == 0 else ("shadow_churn", "none"):
            number = SHADOWS.get(condition)
            if number is not None:
                _admin(port, token, "POST", f"/v1/admin/models/{MODEL}/shadows/{number}", {"sample": 1.0})
            print(f"  pass {p + 1}/{args.passes}, {condition}, p99 <= {args.slo_ms:g} ms:")
            rate, trials = max_rate(port, raws, args.slo_ms, start=args.search_start,
                                    duration_s=args.search_duration, refine=args.refine)
            search: dict[str, Any] = {"max_rate": rate, "trials": trials}
            if number is not None:
                offered = sum(int(t["ok"]) for t in trials)
                search["shadow"] = _drained(port, number, offered, timeout_s=30.0)
                _admin(port, token, "DELETE", f"/v1/admin/models/{MODEL}/shadows/{number}")
            out[condition]["searches"].append(search)
    for condition in ("none", "shadow_churn"):
        out[condition]["max_rate"] = max(s["max_rate"] for s in out[condition]["searches"])
    shadows = [s["shadow"] for s in out["shadow_churn"]["searches"]]
    out["shadow_churn"]["shadow"] = {key: sum(t[key] for t in shadows)
                                     for key in ("offered", "compared", "dropped", "errors", "unaccounted")}
    none, shadow = out["none"]["max_rate"], out["shadow_churn"]["max_rate"]
    out["ratio"] = shadow / none if none else float("nan")
    return out


# -- in-process -----------------------------------------------------------------------------------------------------

def _headers(user: int) -> list[tuple[bytes, bytes]]:
    """What uvicorn hands the app for a typical client's predict request, the sticky header among them."""
    return [(b"host", b"fastserve.internal:8000"), (b"user-agent", b"python-httpx/0.28.1"),
            (b"accept", b"application/json"), (b"accept-encoding", b"gzip, deflate"),
            (b"content-type", b"application/json"), (b"content-length", b"187"),
            (b"x-user-id", f"user-{user:08d}".encode()), (b"x-request-id", secrets.token_hex(16).encode())]


def worker_per_copy(runner_for: Callable[[int], Any], x: np.ndarray, outputs: dict[str, np.ndarray], copies: int,
                    repeats: int) -> float:
    """The shadow worker's time per copy: `copies` offers to a fresh runner (the request path's part is ~1 us), then
    wait until all are compared; the median repeat, in microseconds per copy."""
    times = []
    for _ in range(repeats):
        runner = runner_for(copies)
        started = time.perf_counter()
        for _ in range(copies):
            runner.offer(x, outputs)
        while True:
            total = runner.status().total
            if total.compared + total.dropped + total.errors >= copies:
                break
            time.sleep(0.0005)
        times.append(time.perf_counter() - started)
        runner.stop()
        if total.compared != copies:
            raise RuntimeError(f"shadow worker: {total.compared} of {copies} copies compared: {total}")
    return statistics.median(times) / copies * 1e6


def paced_offer(runner: Any, x: np.ndarray, outputs: dict[str, np.ndarray], n: int, gap_s: float) -> list[int]:
    """`offer` to a live shadow whose worker is waiting for work (a pause before each call lets it finish the
    previous copy): each call then also wakes the worker thread, as at moderate load. Nanoseconds per call."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        time.sleep(gap_s)
        t0 = clock()
        runner.offer(x, outputs)
        out.append(clock() - t0)
    return out


def in_process(tmp: Path, repeats: int, seconds: float, copies: int, paced: int) -> dict[str, Any]:
    from fastserve.config import CanaryOptions, GuardOptions
    from fastserve.registry import Registry
    from fastserve.routing.canary import Canary
    from fastserve.routing.router import choose
    from fastserve.routing.routes import ModelRoutes
    from fastserve.routing.shadow import ShadowRunner

    repo = _repository(tmp / "in-process", "\n[routing]\nshadows = [{ version = 2, sample = 1.0 }]\n")
    registry = Registry(repo, routes=ModelRoutes)
    registry.discover()
    asyncio.run(registry.load_all())
    try:
        model = registry.models[MODEL]
        if model.primary is None or model.primary.number != 1 or set(model.shadows) != {2}:
            raise RuntimeError(f"unexpected model state: primary {model.primary}, shadows {list(model.shadows)}")
        rows = _rows()
        payload = {"inputs": [rows[0].tolist()]}
        record_payload = {"records": [{"user_id": "user-00000042", "age": 41, "country": "FR"}]}
        headers = itertools.cycle([_headers(u) for u in range(1024)])
        x = rows[:1]
        outputs = model.primary.session.run(x)

        def routed(canary: Canary | None) -> Any:
            clone = copy.copy(model)  # same versions; its own canary
            clone.canary = canary
            return clone

        guard = GuardOptions()
        plain = routed(None)
        random_canary = routed(Canary(CanaryOptions(version=2, weight=0.1), guard))
        header_canary = routed(Canary(CanaryOptions(version=2, weight=0.1, sticky_key="header:X-User-Id"), guard))
        field_canary = routed(Canary(CanaryOptions(version=2, weight=0.1, sticky_key="user_id"), guard))

        def floor(model: Any, version: Any, payload: Any, headers: Any) -> None:
            return None

        def resolve() -> Any:
            return model.versions.get(2)

        def runner(sample: float = 1.0, max_pending_rows: int = 1 << 40) -> Any:
            """A shadow runner whose worker is stopped: every offer stays queued (or is dropped when full)."""
            r = ShadowRunner(MODEL, 2, resolve, sample, 60.0, max_pending_rows=max_pending_rows)
            r.stop()
            return r

        def offering(**kw: Any) -> Callable[[], Callable[[], object]]:
            def make() -> Callable[[], object]:
                offer = runner(**kw).offer  # a fresh queue for each repeat
                return lambda: offer(x, outputs)
            return make

        cases: dict[str, Callable[[], Callable[[], object]]] = {
            "call_floor": lambda: lambda: floor(plain, None, payload, next(headers)),
            "choose_no_canary": lambda: lambda: choose(plain, None, payload, next(headers)),
            "choose_random_canary": lambda: lambda: choose(random_canary, None, payload, next(headers)),
            "choose_header_sticky_canary": lambda: lambda: choose(header_canary, None, payload, next(headers)),
            "choose_field_sticky_canary": lambda: lambda: choose(field_canary, None, record_payload, next(headers)),
            "offer_queued": offering(),
            "offer_dropped_queue_full": offering(max_pending_rows=0),
            "offer_sample_0.1": offering(sample=0.1),
        }
        samples = time_cases(cases, repeats, seconds)
        floor_ns = statistics.median(samples["call_floor"])
        micro = {name: {"ns_per_call": statistics.median(ns),
                        "ns_over_floor": statistics.median(ns) - floor_ns if name.startswith("choose") else None,
                        "repeats_ns_per_call": ns} for name, ns in samples.items()}
        # The shadow the config declares, its worker live: one offer per millisecond.
        waiting = paced_offer(model.shadows[2], x, outputs, paced, 0.001)
        micro["offer_worker_waiting"] = {"ns_per_call": float(np.median(waiting)), "ns_over_floor": None,
                                         "p90_ns": float(np.percentile(waiting, 90)), "calls": paced}
        # Where the canary's share lands (sanity: ~10% of unversioned requests).
        share = {name: sum(choose(m, None, p, next(headers))[1] for _ in range(20_000)) / 20_000
                 for name, m, p in (("random", random_canary, payload), ("header", header_canary, payload))}

        def live(number: int, batch_rows: int) -> Callable[[int], Any]:
            return lambda copies: ShadowRunner(MODEL, number, lambda: model.versions.get(number), 1.0, 60.0,
                                               max_pending_rows=copies, batch_rows=batch_rows)

        worker = {}
        for number, source in ((2, "churn"), (3, "churn_mlp")):
            for batch_rows in (256, 1):
                n = copies if batch_rows > 1 else copies // 4
                worker[f"{source}_batch_{batch_rows}"] = {
                    "us_per_copy": worker_per_copy(live(number, batch_rows), x, outputs, n, 5), "copies": n,
                    "repeats": 5}
    finally:
        registry.close()
    return {"repeats": repeats, "repeat_s": seconds, "calls": micro, "canary_share_at_weight_0.1": share,
            "shadow_worker": worker}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short round, a coarse search, short repeats")
    parser.add_argument("--rate", type=float, default=1500.0, help="requests/s in the shadow-cost windows")
    parser.add_argument("--window", type=float, default=None, help="seconds per window (default 3; quick 1.5)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of all conditions (default 5; quick 1)")
    parser.add_argument("--heavy", action=argparse.BooleanOptionalAction, default=True,
                        help="also the churn_mlp shadow (default: on)")
    parser.add_argument("--search", action=argparse.BooleanOptionalAction, default=True,
                        help="the highest rate within the SLO, with and without the shadow (default: on)")
    parser.add_argument("--slo-ms", type=float, default=10.0)
    parser.add_argument("--passes", type=int, default=None, help="searches per condition (default 2; quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="in-process repeats (default 7; quick 3)")
    parser.add_argument("--repeat-s", type=float, default=None, help="in-process seconds per repeat (default 0.2)")
    args = parser.parse_args(argv)
    args.window = args.window or (1.5 if args.quick else 3.0)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.repeat_s = args.repeat_s or (0.05 if args.quick else 0.2)
    args.passes = args.passes or (1 if args.quick else 2)
    args.search_start, args.search_duration, args.refine = (1000.0, 1.0, 1) if args.quick else (1000.0, 1.5, 2)
    pin_self(1)
    started = time.perf_counter()
    conditions = ["none", "shadow_churn", *(["shadow_churn_mlp"] if args.heavy else [])]
    raws = [Client.build("POST", f"/v1/models/{MODEL}/predict", orjson.dumps({"inputs": [r.tolist()]}))
            for r in _rows()]
    results: dict[str, Any] = {"rate": args.rate, "window_s": args.window, "rounds": args.rounds}

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        token = secrets.token_hex(24)
        token_file = tmp / "admin-token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        server = start_fastserve(_repository(tmp / "http"), 0, "--admin-token-file", str(token_file))
        try:
            versions = {v["version"]: v["state"] for v in _status(server.port)["versions"]}
            if versions != {1: "serving", 2: "ready", 3: "ready"}:
                raise RuntimeError(f"unexpected versions: {versions}")
            for condition in conditions:  # warm every path once; not counted
                number = SHADOWS.get(condition)
                if number is not None:
                    _admin(server.port, token, "POST", f"/v1/admin/models/{MODEL}/shadows/{number}", {"sample": 1.0})
                open_loop(server.port, raws, args.rate, 1.0, seed=99)
                if number is not None:
                    _admin(server.port, token, "DELETE", f"/v1/admin/models/{MODEL}/shadows/{number}")
            print(f"shadow cost: one-row JSON requests to {MODEL} v1 at {args.rate:g}/s, {args.rounds} rounds of "
                  f"{len(conditions)} x {args.window:g} s windows:")
            results["shadow_cost"] = shadow_cost(server, token, raws, conditions, args)
            if args.search:
                print(f"highest rate within p99 <= {args.slo_ms:g} ms:")
                results["max_rate"] = rate_search(server.port, token, raws, args)
            results["server_rss_bytes"] = server.rss_bytes()
        finally:
            server.stop()

        print("routing in-process:")
        results["in_process"] = in_process(tmp, args.repeats, args.repeat_s, 2048 if args.quick else 4096,
                                           300 if args.quick else 2000)

    c = results["shadow_cost"]["conditions"]
    print(f"\none-row JSON requests to the primary (churn) at {args.rate:g}/s, {args.rounds} x {args.window:g} s per "
          "condition, conditions interleaved:")
    print("| shadow | sent | errors | p50 ms | p99 ms | goodput/s | server CPU µs/request | p99 x | p50 x | "
          "goodput x | CPU/request x | copies compared | dropped |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for condition in conditions:
        s = c[condition]
        ratio = s.get("ratio")
        ratios = (f"{ratio['p99']:.2f} | {ratio['p50']:.2f} | {ratio['goodput']:.3f} | "
                  f"{ratio['server_cpu_per_request']:.2f}") if ratio else "1 | 1 | 1 | 1"
        copies = f"{s['shadow']['compared']:,} | {s['shadow']['dropped']:,}" if "shadow" in s else "- | -"
        name = {"none": "none", "shadow_churn": "v2 (churn) at 1.0", "shadow_churn_mlp": "v3 (churn_mlp) at 1.0"}
        print(f"| {name[condition]} | {s['sent']:,} | {s['errors']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
              f"{s['goodput']:,.0f} | {s['server_cpu_us_per_request']:.0f} | {ratios} | {copies} |")
    for condition in conditions[1:]:
        s = c[condition]
        clean = s["ratio"]["p99_clean_rounds_median"]
        print(f"{condition}: p99 ratio per round {', '.join(f'{v:.2f}' for v in s['ratio']['p99_per_round'])} "
              f"(median {s['ratio']['p99_per_round_median']:.2f}; over the clean rounds "
              f"{results['shadow_cost']['clean_rounds']}: {'-' if clean is None else f'{clean:.2f}'}); "
              f"shadow label agreement {s['shadow']['label_agreement']}, mean |diff| "
              f"{s['shadow']['mean_abs_diff']}, queue-to-answer mean {s['shadow']['latency_ms_mean']:.2f} ms, "
              f"max {s['shadow']['latency_ms_max']:.1f} ms")
    if "max_rate" in results:
        m = results["max_rate"]
        passes = {c: ", ".join(f"{s['max_rate']:,.0f}" for s in m[c]["searches"]) for c in ("none", "shadow_churn")}
        print(f"\nhighest rate within p99 <= {args.slo_ms:g} ms, best of {m['passes']} searches: no shadow "
              f"{m['none']['max_rate']:,.0f}/s ({passes['none']}), with the churn shadow at 1.0 "
              f"{m['shadow_churn']['max_rate']:,.0f}/s ({passes['shadow_churn']}): {m['ratio']:.2f}x; during these "
              f"searches the shadow compared {m['shadow_churn']['shadow']['compared']:,} copies and dropped "
              f"{m['shadow_churn']['shadow']['dropped']:,}")
    p = results["in_process"]
    print(f"\nin-process, median of {p['repeats']} repeats of {p['repeat_s']:g} s:")
    print("| call | ns per call | ns over the call floor |")
    print("|---|---:|---:|")
    for name, v in p["calls"].items():
        over = "-" if v["ns_over_floor"] is None else f"{v['ns_over_floor']:.0f}"
        print(f"| {name} | {v['ns_per_call']:.0f} | {over} |")
    print(f"canary share at weight 0.1: random {p['canary_share_at_weight_0.1']['random']:.3f}, header-sticky "
          f"{p['canary_share_at_weight_0.1']['header']:.3f}")
    for name, v in p["shadow_worker"].items():
        print(f"shadow worker, {name}: {v['us_per_copy']:.1f} µs per copy ({v['copies']} copies)")
    results["runtime_s"] = time.perf_counter() - started
    out = write_results("routing", results)
    print(f"total {results['runtime_s']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
