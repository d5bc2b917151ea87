"""`fastserve bench`: its arguments, and the wiring from them to the servers, payloads, runs and report."""

from __future__ import annotations

import argparse
import datetime
import importlib
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastserve
from fastserve.bench import payloads, search
from fastserve.bench.data import Data, fit, random_rows, read_file, read_validation
from fastserve.bench.progress import Progress
from fastserve.bench.report import Row, details, plot, table, write_json
from fastserve.bench.results import Result, merge, summary, unreliable
from fastserve.bench.runner import Runner, Settings, engine, generator_pool
from fastserve.bench.target import Target, is_fastserve, model_input, parse_url
from fastserve.exceptions import BenchError

VARIANTS = 64  # distinct bodies per model: different rows, so no cache along the way sees one body repeated
DEFAULT_DURATION = {"rate": 10.0, "search": 5.0, "sweep": 5.0}

USAGE = """fastserve bench URL --model NAME[,NAME...] [--mix uniform|zipf:S] [--version V]
       [--rate R [--duration S] | --search --slo p99=10ms[,p999=50ms] [--max-errors 0.1%%] | --sweep R1,R2,...]
       [--arrivals poisson|constant] [--connections N] [--procs P] [--rows N] [--format json|msgpack|tensor]
       [--protocol native|v2|v2-binary] [--data FILE.csv|.jsonl|.parquet | --from-validation MODELS_DIR]
       [--header K:V ...] [--timeout-ms T] [--compare NAME=URL ...] [--rounds N] [--out results.json]
       [--plot report.png|report.html] [--quiet] [--self-test] [--server-pid PID] [--max-send-lag-us 100]"""


def _arg(fn: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """An argparse `type` whose ValueError message reaches the user (argparse hides other exceptions' text)."""
    def parse(text: str) -> Any:
        try:
            return fn(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = name
    return parse


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or (kind is float and not math.isfinite(value)):
            raise ValueError(f"expected a number above 0, got {text!r}")
        return value
    return _arg(parse, kind.__name__)


def _rates(text: str) -> list[float]:
    parse = _positive(float)
    rates = [parse(part) for part in text.split(",") if part.strip()]
    if not rates:
        raise ValueError(f"expected rates R1,R2,... (requests/s), got {text!r}")
    return rates


def _named_url(text: str) -> Target:
    name, sep, url = text.partition("=")
    if not sep or not name or "://" in name:
        raise ValueError(f"expected NAME=URL (e.g. triton=http://127.0.0.1:9000), got {text!r}")
    return parse_url(url, name)


def _models(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"expected model names separated by commas, each once, got {text!r}")
    return names


def add_parser(sub: Any, log_levels: Sequence[str]) -> None:
    bench = sub.add_parser(
        "bench", help="measure a server under open-loop load: latency, capacity within an SLO, several servers",
        usage=USAGE,
        description="Open-loop load (requests leave on schedule whether or not earlier ones were answered; latency "
        "is measured from each request's intended send time) from a compiled generator. Against a fastserve server "
        "it also reports what the server counted: batch sizes, queue wait, refusals, CPU per request.")
    bench.add_argument("url", nargs="?", metavar="URL", type=_arg(parse_url, "URL"), help="the server, http://HOST[:PORT]")
    bench.add_argument("--model", type=_arg(_models, "models"), help="model(s) to call, NAME[,NAME...]")
    bench.add_argument("--mix", type=_arg(payloads.parse_mix, "mix"), default="uniform",
                       help="share of each model with several: uniform, or zipf:S (the k-th named gets 1/k^S)")
    bench.add_argument("--version", default=None, help="model version to call (default: the primary)")
    mode = bench.add_argument_group("what to run (one of)")
    mode.add_argument("--rate", type=_positive(float), help="requests/s offered (with --search: the first rate tried, "
                      "default 100)")
    mode.add_argument("--duration", type=_positive(float), help="seconds per trial (default: 10 for --rate, 5 for "
                      "each trial of --search and --sweep)")
    mode.add_argument("--search", action="store_true", help="find the highest rate within --slo and --max-errors")
    mode.add_argument("--sweep", type=_arg(_rates, "rates"), help="run each rate R1,R2,... in turn")
    mode.add_argument("--slo", type=_arg(search.parse_slo, "SLO"), help="latency bounds, e.g. p99=10ms,p999=50ms "
                      "(percentiles p50 p90 p99 p999 p9999 max; needed by --search, judged in every mode)")
    mode.add_argument("--max-errors", type=_arg(search.parse_ratio, "share"), default=0.001,
                      help="share of requests allowed to fail (non-200 or no answer), e.g. 0.1%% (default)")
    load = bench.add_argument_group("the load")
    load.add_argument("--arrivals", choices=("poisson", "constant"), default="poisson",
                      help="gaps between sends: exponential (default) or equal")
    load.add_argument("--connections", type=_positive(int), default=64, help="keep-alive connections (default 64)")
    load.add_argument("--procs", type=_positive(int), default=1,
                      help="generator processes, each sending rate/P on connections/P (default 1)")
    load.add_argument("--timeout-ms", type=_positive(float), default=10_000.0,
                      help="a request unanswered this long counts as a timeout (default 10000)")
    load.add_argument("--seed", type=int, default=0, help="seed for data, mix order and arrivals (default 0)")
    body = bench.add_argument_group("the requests")
    body.add_argument("--rows", type=_positive(int), default=1, help="rows per request (default 1)")
    body.add_argument("--format", choices=payloads.FORMATS, default=None,
                      help="native body: JSON rows (default), msgpack rows, msgpack raw tensor")
    body.add_argument("--protocol", choices=payloads.PROTOCOLS, default="native",
                      help="native (/v1/.../predict), v2 (Open Inference JSON) or v2-binary (binary tensor data)")
    source = body.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, help="real rows: .csv or .parquet (numeric columns: rows; other columns:"
                        " records), .jsonl (arrays: rows; objects: records)")
    source.add_argument("--from-validation", type=Path, metavar="MODELS_DIR",
                        help="rows from MODELS_DIR/<model>/<version>/validation.npz")
    body.add_argument("--header", type=_arg(payloads.parse_header, "header"), action="append", default=[],
                      metavar="K:V", help="extra header on every request (repeatable)")
    servers = bench.add_argument_group("several servers")
    servers.add_argument("--compare", type=_arg(_named_url, "NAME=URL"), nargs="+", default=[], metavar="NAME=URL",
                         help="measure these servers too (URL itself first, when given), in alternating rounds")
    servers.add_argument("--rounds", type=_positive(int), default=3,
                         help="with --compare: rounds of each --rate or --sweep rate (default 3)")
    out = bench.add_argument_group("output")
    out.add_argument("--out", type=Path, help="write every trial to this JSON file")
    out.add_argument("--plot", type=Path, help="write plots: report.png (one image) or report.html (PNGs inside)")
    out.add_argument("--quiet", action="store_true", help="no progress line")
    out.add_argument("--self-test", action="store_true",
                     help="measure the generator alone first (its ceiling and send lag); alone, without URL")
    out.add_argument("--server-pid", type=_positive(int), help="a local non-fastserve server's process: its CPU from "
                     "/proc (fastserve's comes from its /metrics)")
    out.add_argument("--max-send-lag-us", type=_positive(float), default=100.0,
                     help="a trial whose send lag p99 exceeds this is marked unreliable (default 100)")
    bench.add_argument("--log-level", choices=log_levels, default="warning")
    bench.set_defaults(run=run, bench_parser=bench)


def _check(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments together, in words; None when they make sense."""
    targets = ([args.url] if args.url else []) + list(args.compare)
    if not targets:
        return None if args.self_test else "give the server's URL (or --compare NAME=URL ...; --self-test alone)"
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        return f"--compare: each server needs its own name, got {', '.join(names)}"
    if not args.model:
        return "--model NAME[,NAME...] is required"
    modes = [m for m in ("search", "sweep") if getattr(args, m)] + (["rate"] if args.rate and not args.search else [])
    if len(modes) != 1:
        return ("choose one of --rate R, --search or --sweep R1,R2,..." if not modes else
                f"--{modes[0]} and --{modes[1]} cannot go together (--rate with --search sets the first rate tried)")
    if args.search and not args.slo:
        return "--search needs --slo, e.g. --slo p99=10ms"
    if args.protocol != "native" and args.format is not None:
        return (f"--format applies to --protocol native; --protocol {args.protocol} sends "
                + ("JSON" if args.protocol == "v2" else "a JSON header and binary tensor data"))
    if args.connections < args.procs:
        return f"--connections {args.connections} is fewer than --procs {args.procs}: each process needs one"
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".html"):
        return f"--plot {args.plot}: expected a .png or .html file name"
    for option in ("out", "plot"):
        path = getattr(args, option)
        if path is not None and not path.resolve().parent.is_dir():
            return f"--{option} {path}: folder {path.resolve().parent} does not exist"
    if args.from_validation is not None and not args.from_validation.is_dir():
        return f"--from-validation {args.from_validation}: not a folder"
    if args.server_pid is not None and not Path(f"/proc/{args.server_pid}/stat").exists():
        return f"--server-pid {args.server_pid}: no such process here (read from /proc, Linux only)"
    return None


def _mode(args: argparse.Namespace) -> str:
    return "search" if args.search else "sweep" if args.sweep else "rate"


def _data(args: argparse.Namespace, model: payloads.ModelInput, file_data: Data | None) -> Data:
    if file_data is not None:
        data = file_data
    elif args.from_validation is not None:
        data = read_validation(args.from_validation, model.model, args.version)
    else:
        if model.width <= 0:
            raise BenchError(f"model {model.model!r} takes rows of any width; give rows with --data")
        data = random_rows(model.width, model.dtype, VARIANTS * args.rows, args.seed)
    data = fit(data, model.width, model.dtype, model.model)
    if data.records is not None and (args.protocol != "native" or args.format == "tensor"):
        raise BenchError(f"{data.source} holds records (named fields), which only native JSON or msgpack bodies "
                         "carry; drop --format tensor / use --protocol native, or give numeric rows")
    return data


def _bodies(args: argparse.Namespace, model: payloads.ModelInput, data: Data) -> list[payloads.Body]:
    """Up to VARIANTS bodies of `--rows` consecutive rows (or records) each, the data cycled."""
    n, k = len(data), args.rows
    count = max(1, min(VARIANTS, n // k if n >= k else 1))
    out = []
    for j in range(count):
        index = [(j * k + i) % n for i in range(k)]
        if data.rows is not None:
            out.append(payloads.rows_body(data.rows[index], args.format or "json", args.protocol, model.input_name))
        else:
            assert data.records is not None  # (a sample has rows or records)
            out.append(payloads.records_body([data.records[i] for i in index], args.format or "json"))
    return out


def _requests(args: argparse.Namespace, target: Target, fast: bool, file_data: Data | None
              ) -> tuple[list[bytes], dict[str, Any]]:
    """The raw requests for one server (the mix of models), and what was learned of each model."""
    groups, models = [], {}
    for name in args.model:
        model = model_input(target, name, args.version, fast)
        data = _data(args, model, file_data)
        path = payloads.predict_path(name, args.version, args.protocol)
        groups.append([payloads.raw_request(target.host_header, path, b, args.header)
                       for b in _bodies(args, model, data)])
        models[name] = {"input": model.input_name, "width": model.width, "dtype": model.dtype, "data": data.source,
                        "path": path, "body_bytes": len(groups[-1][0].partition(b"\r\n\r\n")[2])}
    weights = payloads.mix_weights(args.mix, len(args.model))
    for name, w in zip(args.model, weights, strict=True):
        models[name]["share"] = w
    return payloads.mixed(groups, weights, args.seed), models


def _self_test(progress: Progress) -> dict[str, Any]:
    """The generator's own ceiling against the compiled sink (selftest.py), 1 s per trial."""
    engine()  # the same message as a run's when the generator is not built
    progress.note("generator self-test: its ceiling against a sink that answers at once, 1 s per trial ...")
    result = dict(importlib.import_module("fastserve.bench.selftest").self_test(1.0, log=progress.note))
    progress.note(f"generator self-test: ceiling {result.get('ceiling_rps') or 0:,.0f} requests/s per process, "
                  f"send lag p99 {result.get('send_lag_p99_us') or float('nan'):,.1f} us there")
    return result


@dataclass
class Measured:
    """Every trial as a Row; each server's trial to picture (`picks`, at one rate common to all servers for --rate
    and --sweep); each server's merged trial per rate; and the searches, for --search."""

    rows: list[Row]
    picks: dict[str, Result]
    per_rate: dict[str, dict[float, Result]]
    searches: dict[str, search.Search[Result]]

    @property
    def best(self) -> dict[str, float] | None:
        return {server: s.good for server, s in self.searches.items()} or None


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem:
        args.bench_parser.error(problem)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("\nfastserve bench: interrupted; no report", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    self_test = _self_test(Progress(enabled=not args.quiet)) if args.self_test else None
    targets: list[Target] = ([args.url] if args.url else []) + list(args.compare)
    if not targets:
        print(table_of_self_test(self_test or {}))
        return 0
    mode = _mode(args)
    duration = args.duration or DEFAULT_DURATION[mode]
    ceiling = (self_test or {}).get("ceiling_rps")
    if ceiling and max(args.sweep or [args.rate or 0]) / args.procs > 0.8 * ceiling:
        print(f"fastserve bench: warning: {max(args.sweep or [args.rate]):,.0f}/s over {args.procs} process(es) is "
              f"near or past the generator's ceiling of {ceiling:,.0f}/s per process; use more --procs",
              file=sys.stderr)
    file_data = read_file(args.data) if args.data is not None else None
    fast = {t.name: is_fastserve(t) for t in targets}  # also: every server can be reached
    requests, servers = {}, {}
    for t in targets:
        requests[t.name], models = _requests(args, t, fast[t.name], file_data)
        servers[t.name] = {"url": t.url, "fastserve": fast[t.name], "models": models}
    settings = Settings(duration, args.connections, args.procs, args.arrivals == "poisson", args.timeout_ms,
                        args.max_send_lag_us)
    criteria = search.Criteria(args.slo or {}, args.max_errors)
    rounds = args.rounds if len(targets) > 1 else 1
    planned = (duration * rounds * len(targets) * (len(args.sweep) if args.sweep else 1)) if mode != "search" else None
    pool = generator_pool(args.procs, requests)
    try:
        with Progress(enabled=not args.quiet, planned_s=planned) as progress:
            runs = {t.name: Runner(t, requests[t.name], settings, progress=progress, pool=pool, fastserve=fast[t.name],
                                   models=args.model, server_pid=args.server_pid, seed=args.seed) for t in targets}
            measured = _measure(args, mode, runs, criteria, rounds)
    finally:
        if pool is not None:
            pool.terminate()
    _report(args, mode, measured, servers, settings, self_test, targets)
    return 0


def _measure(args: argparse.Namespace, mode: str, runs: dict[str, Runner], criteria: search.Criteria, rounds: int
             ) -> Measured:
    judge = bool(args.slo)
    rows: list[Row] = []

    def row(server: str, step: str, result: Result) -> Row:
        return Row(server, step, result, criteria.failures(result) if judge or args.search else None,
                   unreliable(result, args.max_send_lag_us))

    if mode == "search":
        searches = search.compare_search(runs, criteria, start=args.rate or 100.0)
        picks: dict[str, Result] = {}
        for server, s in searches.items():
            rows.extend(row(server, "search", t) for _, t, _ in s.trials)
            at = s.good or min(r for r, _, _ in s.trials)
            picks[server] = merge(s.confirmed(at), side_by_side=False)
        return Measured(rows, picks, {}, searches)
    per_rate: dict[str, dict[float, Result]] = {}
    passed: dict[float, bool] = {}
    for server, trials_by_rate in search.compare_rates(runs, args.sweep or [args.rate], rounds).items():
        for rate, trials in trials_by_rate:
            if len(trials) > 1:
                rows.extend(row(server, f"round {i + 1}", t) for i, t in enumerate(trials))
            merged = row(server, mode if len(trials) == 1 else "all rounds", merge(trials, side_by_side=False))
            rows.append(merged)
            per_rate.setdefault(server, {})[rate] = merged.result
            passed[rate] = passed.get(rate, True) and not merged.failures
    rates = sorted(passed)
    common = max((r for r in rates if passed[r]), default=rates[0]) if judge else rates[-1]
    return Measured(rows, {server: results[common] for server, results in per_rate.items()}, per_rate, {})


def table_of_self_test(result: dict[str, Any]) -> str:
    def shown(v: Any) -> str:
        if isinstance(v, dict):
            return "  ".join(f"{k} {shown(x)}" for k, x in v.items())
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
        return str(v)

    return "\n".join(f"{k:<24} {shown(v)}" for k, v in result.items() if k != "trials")


def _report(args: argparse.Namespace, mode: str, measured: Measured, servers: dict[str, Any], settings: Settings,
            self_test: dict[str, Any] | None, targets: list[Target]) -> None:
    lines = [table(measured.rows), *details(measured.rows)]
    bounds = ", ".join(f"{k} <= {v:g} ms" for k, v in (args.slo or {}).items())
    for server, s in measured.searches.items():
        if s.good:
            failed = f"; {s.bad:,.0f}/s failed" if s.bad else f"; stopped at the limit {s.limit:,.0f}/s"
            lines.append(f"{server}: highest rate within {bounds} and errors <= {args.max_errors:.2%}: "
                         f"{s.good:,.0f}/s{failed}")
        else:
            lines.append(f"{server}: no rate down to {s.floor:g}/s held {bounds} and errors <= {args.max_errors:.2%}")
    ratios = _ratios(measured) if len(targets) > 1 else None
    for what, values in (ratios or {}).items():
        lines.append(f"{what}, relative to {targets[0].name}: " + ", ".join(
            f"{name} {v:.2f}x" if v is not None else f"{name} -" for name, v in values.items()))
    lagging = sum(r.unreliable for r in measured.rows)
    if lagging:
        lines.append(f"! {lagging} of {len(measured.rows)} trials unreliable: the generator's send lag p99 exceeded "
                     f"{args.max_send_lag_us:g} us, so their latencies include its own delay (try more --procs, "
                     "fewer --connections, or a quieter machine)")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        write_json(args.out, _document(args, mode, measured, servers, settings, self_test, ratios))
        print(f"wrote {args.out}")
    if args.plot is not None:
        plot(args.plot, measured.rows, measured.picks, args.slo or {}, measured.best, text)
        print(f"wrote {args.plot}")


def _ratios(measured: Measured) -> dict[str, dict[str, float | None]]:
    """Each server against the first: capacity for --search; latency and achieved rate at each rate otherwise (only
    at the same offered rate do latencies compare)."""
    if measured.best:
        return {"highest rate within the SLO": search.ratios(measured.best)}
    out = {}
    first = next(iter(measured.per_rate.values()))
    for rate in first:
        at = {server: results[rate] for server, results in measured.per_rate.items()}
        for name in ("p50", "p99"):
            out[f"{name} at {rate:,.0f}/s"] = search.ratios({s: r.latency_ms(name) for s, r in at.items()})
        out[f"achieved at {rate:,.0f}/s"] = search.ratios({s: r.achieved_rate() for s, r in at.items()})
    return out


def _document(args: argparse.Namespace, mode: str, measured: Measured, servers: dict[str, Any], settings: Settings,
              self_test: dict[str, Any] | None, ratios: dict[str, Any] | None) -> dict[str, Any]:
    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        return value

    trials = []
    for r in measured.rows:
        trials.append(finite({"server": r.server, "step": r.step, **summary(r.result, args.max_send_lag_us),
                              "passed": None if r.failures is None else not r.failures, "failures": r.failures,
                              "latency_histogram": r.result.latency.to_dict(),
                              "send_lag_histogram": r.result.send_lag.to_dict()}))
    return {
        "fastserve_bench": {"version": fastserve.__version__, "command": sys.argv,
                            "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")},
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "mode": mode,
        "settings": {"duration_s": settings.duration_s, "connections": settings.connections, "procs": settings.procs,
                     "arrivals": args.arrivals, "timeout_ms": settings.timeout_ms, "rows": args.rows,
                     "format": args.format or ("json" if args.protocol == "native" else None),
                     "protocol": args.protocol, "mix": args.mix, "version": args.version, "headers": args.header,
                     "slo_ms": args.slo, "max_error_ratio": args.max_errors, "rounds": args.rounds,
                     "max_send_lag_us": settings.max_send_lag_us, "seed": args.seed},
        "generator_self_test": self_test,
        "servers": servers,
        "trials": trials,
        "search": {s: {"highest_rate": v.good, "lowest_failing_rate": v.bad}
                   for s, v in measured.searches.items()} or None,
        "ratios": ratios,
    }
