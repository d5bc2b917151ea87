"""Command line: `fastserve serve|models|drift|quality|profile|export|bench`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import fastserve
from fastserve.bench.cli import add_parser as add_bench_parser
from fastserve.config import (
    AUTO_PER_VERSION_MODELS,
    DEVICES,
    HISTOGRAM_DETAILS,
    LOG_LEVELS,
    ConnectionLimits,
    ServerConfig,
    default_models_dir,
)
from fastserve.exceptions import BenchError, ConfigError, ExportError
from fastserve.remote import RemoteError

log = logging.getLogger("fastserve")
_FILES_BESIDES_CONNECTIONS = 256  # models, logs, the door's channel, worker threads' wake-up pipes


def _setup_logging(level: str, process: str = "") -> None:
    logging.basicConfig(level=level.upper(), format=f"%(asctime)s %(levelname)s {process}%(name)s: %(message)s",
                        stream=sys.stderr, force=True)


def _admin_token(path: str | None) -> str | None:
    """From --admin-token-file, else $FASTSERVE_ADMIN_TOKEN (never a command-line value: `ps` would show it)."""
    token = Path(path).read_text(encoding="utf-8").strip() if path else os.environ.get("FASTSERVE_ADMIN_TOKEN")
    if token is not None and len(token) < 16:
        raise ConfigError("the admin token must be at least 16 characters (e.g. `openssl rand -hex 24`)")
    return token or None


def _serve(args: argparse.Namespace) -> int:
    from fastserve.http.app import create_app
    from fastserve.http.server import build_server
    from fastserve.malloc import keep_freed_blocks
    from fastserve.open_files import raise_open_files_limit

    workers = _workers(args.workers)
    config = ServerConfig(
        models_dir=Path(args.models_dir) if args.models_dir else default_models_dir(),
        host=args.host,
        port=args.port,
        device=args.device,
        log_level=args.log_level,
        max_body_bytes=args.max_body_bytes,
        limits=ConnectionLimits(max_connections=args.max_connections, header_timeout_s=args.header_timeout,
                                min_body_rate=args.min_body_rate, max_header_bytes=args.max_header_bytes,
                                keep_alive_timeout_s=args.keep_alive_timeout),
        shutdown_grace_s=args.shutdown_grace,
        poll_interval_s=args.poll_interval,
        admin_token=_admin_token(args.admin_token_file),
        door_process=args.door_process,
        workers=workers,
        max_loaded_versions=args.max_loaded_versions,
        lazy=args.lazy,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        histograms=args.histograms,
    )
    if config.max_loaded_versions is not None and config.max_loaded_versions < 1:
        raise ConfigError(f"--max-loaded-versions must be >= 1, got {config.max_loaded_versions}")
    if not config.models_dir.is_dir():
        raise ConfigError(f"models directory {str(config.models_dir)!r} does not exist; pass MODELS_DIR "
                          "(e.g. `fastserve serve ./models`) or set FASTSERVE_MODELS_DIR")
    if workers > 1 and args.worker is None:
        from fastserve.http.door import door_supported
        from fastserve.workers.supervisor import serve_with_workers

        if not config.door_process or not door_supported():
            raise ConfigError("--workers > 1 needs the door process, which passes each connection to a worker "
                              "(Linux); without it, run one server per core behind a load balancer, or --workers 1")
        sys.setswitchinterval(config.gil_switch_interval_s)
        return serve_with_workers(config, args.argv, workers, args.balance)
    log.info("%s", keep_freed_blocks())  # before the models load: their buffers come from the same heap
    # Each connection is a file, and the door process (started later) holds those waiting for their headers.
    log.info("%s", raise_open_files_limit(config.limits.max_connections + _FILES_BESIDES_CONNECTIONS))
    loop = "uvloop" if sys.platform != "win32" else "asyncio"
    # Batches finish on worker threads that need the GIL back from the event loop; at the default 5 ms switch
    # interval they may wait that long for it, which alone would break a 10 ms latency target.
    sys.setswitchinterval(config.gil_switch_interval_s)
    worker = None
    if args.worker is not None:  # a worker process of a supervisor (workers/supervisor.py)
        from fastserve.http.door_process import die_with_parent

        die_with_parent()
        _setup_logging(args.log_level, f"[worker {args.worker}] ")
        worker = (args.worker, args.control_dir)
        # The connection limit is the server's: each worker takes its share (the door spreads connections evenly).
        config = replace(config, limits=replace(config.limits, max_connections=-(-config.limits.max_connections
                                                                                  // workers)))
    from fastserve.batching import set_run_threads
    from fastserve.cores import usable_cores

    set_run_threads(max(2, usable_cores() // workers))  # the batches of every version run on these
    if worker is not None:
        from fastserve.workers.worker import WorkerControl

        index, control = worker
        app = create_app(config, lambda app: WorkerControl(app, index, os.path.join(control, "control.sock")))
    else:
        app = create_app(config)
    server = build_server(app, config, loop, on_shutdown=app.begin_shutdown, stats=app.metrics.stats,
                          admission=app.admission, http=args.http,
                          join=os.path.join(args.control_dir, "door.sock") if worker else None)
    if worker is None:
        log.info("fastserve %s serving %s on http://%s:%d (loop=%s, http=%s)", fastserve.__version__,
                 config.models_dir.resolve(), config.host, config.port, loop,
                 "uvicorn's httptools protocol" if args.http == "asgi" else "the compiled protocol")
    server.run()
    return 0


def _workers(value: str) -> int:
    from fastserve.cores import usable_cores

    if value == "auto":
        return usable_cores()
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ConfigError(f"--workers must be a number >= 1 or `auto`, got {value!r}")
    return workers


def _models(args: argparse.Namespace) -> int:
    from fastserve.registry import Registry

    registry = Registry(Path(args.models_dir) if args.models_dir else default_models_dir(), args.device)
    registry.discover()
    asyncio.run(registry.load_all())
    failed = 0
    for name, model in sorted(registry.models.items()):
        print(f"{name}  (primary: {model.primary.number if model.primary else 'none'})")
        for number, version in sorted(model.versions.items()):
            if version.session is None:
                failed += 1
                print(f"  v{number}  {version.state}: {version.error}")
                continue
            s = version.session
            outputs = ", ".join(f"{o.name} {o.dtype}{list(o.shape)}" for o in s.outputs)
            print(f"  v{number}  {version.state}  input {s.input.name} {s.input.dtype}{list(s.input.shape)} -> "
                  f"{outputs}  on {s.providers[0]}  (load {version.load_seconds:.3f} s)")
    registry.close()
    if not registry.models:
        print(f"no models under {registry.models_dir}")
    return 1 if failed else 0


def _export_sklearn(args: argparse.Namespace) -> int:
    try:
        import joblib

        from fastserve.export.sklearn import export_pipeline, read_sample
    except ImportError as exc:
        raise ExportError(f"exporting needs the export extra: pip install 'fastserve[export]' ({exc})") from exc
    # joblib files are pickles: loading one runs code from it. Export only pipelines you trust.
    pipeline = joblib.load(args.pipeline)
    sample = read_sample(Path(args.sample))
    holdout = None
    if args.holdout:
        if not args.label:
            raise ExportError("--holdout needs --label COLUMN: the holdout's column of labels")
        records = read_sample(Path(args.holdout))
        if args.label not in records.columns:
            raise ExportError(f"the holdout has no column {args.label!r} (columns: {', '.join(records.columns)})")
        holdout = (records.drop(columns=[args.label]), records[args.label].to_numpy())
    folder = export_pipeline(pipeline, sample, args.name, Path(args.out), version=args.version, golden=args.golden,
                             description=args.description, holdout=holdout)
    print(f"wrote {folder} (model.onnx, features.toml, validation set); serve it with `fastserve serve {args.out}`")
    return 0


REMOTE_CALLS = (
    ("status", False, "a running server's models: versions, states, recent events"),
    ("load", True, "load (and gate) a version on a running server and keep it loaded"),
    ("unload", True, "unload a version on a running server and keep it unloaded"),
    ("promote", True, "make a version the primary on a running server"),
    ("rollback", False, "make the previous primary the primary again on a running server"),
)


def _remote(args: argparse.Namespace) -> int:
    from fastserve import remote

    if args.call == "status":
        path = f"/v1/models/{args.model}" if args.model else "/v1/models"
        answer = remote.call(args.url, "GET", path, None)
        models = [answer] if args.model else [remote.call(args.url, "GET", f"/v1/models/{m['name']}", None)
                                              for m in answer["models"]]
    else:
        path = f"/v1/admin/models/{args.model}" + (f"/versions/{args.version}/{args.call}"
                                                    if args.call != "rollback" else "/rollback")
        models = [remote.call(args.url, "POST", path, remote.token(args.token_file))]
    print("\n".join(remote.describe(m) for m in models))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from fastserve.export.profile import profile_version

    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir()
    print(f"wrote {profile_version(Path(args.data), models_dir, args.model)}")
    return 0


def _drift(args: argparse.Namespace) -> int:
    from fastserve import remote

    print(remote.drift_table(remote.call(args.url, "GET", f"/v1/models/{args.model}/drift", None)))
    return 0


def _quality(args: argparse.Namespace) -> int:
    from fastserve import remote

    print(remote.quality_table(remote.call(args.url, "GET", f"/v1/models/{args.model}/quality", None)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastserve", description="High-performance inference server for ONNX models")
    parser.add_argument("--version", action="version", version=f"fastserve {fastserve.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the models of a repository over HTTP")
    serve.add_argument("models_dir", nargs="?", help="model repository (default: $FASTSERVE_MODELS_DIR or ./models)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--device", choices=tuple(DEVICES), default=None,
                       help="execution device for every model (default: each model's fastserve.toml, else auto)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    serve.add_argument("--max-body-bytes", type=int, default=ServerConfig.max_body_bytes,
                       help="largest request body accepted (default: %(default)s)")
    limits = ConnectionLimits()
    serve.add_argument("--keep-alive-timeout", type=float, default=limits.keep_alive_timeout_s,
                       help="seconds an idle keep-alive connection stays open (default: %(default)s)")
    serve.add_argument("--max-connections", type=int, default=limits.max_connections,
                       help="open connections; a request on one more is answered 503 with Retry-After "
                       "(default: %(default)s)")
    serve.add_argument("--header-timeout", type=float, default=limits.header_timeout_s,
                       help="seconds a request's line and headers may take to arrive; also the grace before "
                       "--min-body-rate applies (default: %(default)s)")
    serve.add_argument("--min-body-rate", type=float, default=limits.min_body_rate,
                       help="bytes/s a request body must average (default: %(default)s)")
    serve.add_argument("--max-header-bytes", type=int, default=limits.max_header_bytes,
                       help="request line and headers, in bytes; over it: 431 (default: %(default)s)")
    serve.add_argument("--http", choices=("compiled", "asgi"), default=os.environ.get("FASTSERVE_HTTP", "compiled"),
                       help="the connection protocol: fastserve's own, compiled (the default; $FASTSERVE_HTTP sets "
                            "another), or uvicorn's, extended (asgi)")
    serve.add_argument("--no-door-process", dest="door_process", action="store_false",
                       help="accept connections in the serving process itself, instead of a process of their own "
                       "that holds each until its first request's headers are in (the default where Unix sockets "
                       "can pass connections)")
    serve.add_argument("--shutdown-grace", type=float, default=ServerConfig.shutdown_grace_s,
                       help="on SIGTERM, seconds that requests already accepted have to finish before the process "
                       "exits (default: %(default)s)")
    serve.add_argument("--poll-interval", type=float, default=ServerConfig.poll_interval_s,
                       help="seconds between looks at the repository for new, changed or removed versions; 0 = "
                       "never (default: %(default)s)")
    serve.add_argument("--admin-token-file", default=None,
                       help="file holding the admin API token (default: $FASTSERVE_ADMIN_TOKEN; no token = no admin "
                       "API)")
    serve.add_argument("--workers", default="1",
                       help="serving processes: N, or `auto` (one per usable core, within the CPU affinity and a "
                       "container's CPU quota: the production setting). More than one run under a supervisor that "
                       "owns the repository and the decisions, behind the door process (default: 1)")
    serve.add_argument("--balance", choices=("connections", "requests"), default="connections",
                       help="with --workers: each connection goes to the worker with the fewest open connections, or "
                       "the fewest requests in flight (default: %(default)s)")
    serve.add_argument("--max-loaded-versions", type=int, default=None,
                       help="the budget of versions loaded at once: past it, the least recently used is unloaded "
                       "(never a `keep_loaded` model's primary, a canary or a shadow) and loaded again on its next "
                       "request, which waits for it (default: no budget)")
    serve.add_argument("--lazy", action="store_true",
                       help="load each version on its first request instead of at start (ready once the repository "
                       "is read; for thousands of models): off by default, so a broken version is found when it is "
                       "published, not by a client")
    serve.add_argument("--state-dir", default=None,
                       help="a directory of the server's own (the repository may be read-only) where gate results "
                       "are kept: a version that passed and has not changed is not gated again at its next load")
    serve.add_argument("--histograms", choices=HISTOGRAM_DETAILS, default=ServerConfig.histograms,
                       help="labels of the histograms that multiply by versions (request latency, batch size, queue "
                       "wait, batch run): `version`, `model` (a model's versions summed, version=\"\"), or `off`; "
                       f"`auto`: by version up to {AUTO_PER_VERSION_MODELS} models, by model above (default: "
                       "%(default)s)")
    serve.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
    serve.add_argument("--control-dir", default=None, help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    models = sub.add_parser("models", help="check a repository, or see and change a running server's versions")
    calls = models.add_subparsers(dest="call", required=True)
    check = calls.add_parser("check", help="list a repository's models and check that each version loads (the "
                             "default: `fastserve models [MODELS_DIR]`)")
    check.add_argument("models_dir", nargs="?", help="model repository (default: $FASTSERVE_MODELS_DIR or ./models)")
    check.add_argument("--device", choices=tuple(DEVICES), default=None)
    check.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    check.set_defaults(run=_models)
    for name, needs_version, text in REMOTE_CALLS:
        call = calls.add_parser(name, help=text)
        call.add_argument("model", nargs=None if name != "status" else "?")
        if needs_version:
            call.add_argument("version", type=int)
        call.add_argument("--url", default=os.environ.get("FASTSERVE_URL", "http://127.0.0.1:8000"),
                          help="the server (default: $FASTSERVE_URL or %(default)s)")
        call.add_argument("--token-file", default=None, help="admin token file (default: $FASTSERVE_ADMIN_TOKEN)")
        call.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
        call.set_defaults(run=_remote)

    drift = sub.add_parser("drift", help="a running server's drift table for a model")
    drift.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    drift.add_argument("model")
    drift.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    drift.set_defaults(run=_drift)

    quality = sub.add_parser("quality", help="a running server's live quality against labels for a model")
    quality.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    quality.add_argument("model")
    quality.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    quality.set_defaults(run=_quality)

    profile = sub.add_parser("profile", help="write a version's reference profile (drift) from a data sample")
    profile.add_argument("data", help="training sample, .csv or .parquet: raw fields for a model with a feature "
                         "spec, else one column per model input, in order")
    profile.add_argument("--model", required=True, help="NAME/VERSION")
    profile.add_argument("--models-dir", default=None, help="model repository (default: $FASTSERVE_MODELS_DIR or "
                         "./models)")
    profile.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    profile.set_defaults(run=_profile)

    export = sub.add_parser("export", help="turn a trained pipeline into a model version folder")
    kinds = export.add_subparsers(dest="kind", required=True)
    sk = kinds.add_parser("sklearn", help="a fitted Pipeline([ColumnTransformer, estimator]) saved with joblib",
                          description="Translate the ColumnTransformer into a feature spec (checked to reproduce it "
                          "on the sample within 1e-6), convert the estimator with skl2onnx, and write "
                          "OUT/NAME/VERSION with a validation set drawn from the sample.")
    sk.add_argument("pipeline", help="the pipeline, saved with joblib.dump (a pickle: load only files you trust)")
    sk.add_argument("--sample", required=True, help="training data sample, .csv or .parquet, with the raw columns")
    sk.add_argument("--name", required=True, help="model name (its folder under --out)")
    sk.add_argument("--version", type=int, default=None, help="version number (default: the next free one)")
    sk.add_argument("--out", required=True, help="model repository to write into")
    sk.add_argument("--golden", type=int, default=64, help="validation records drawn from the sample (default 64)")
    sk.add_argument("--description", default="", help="model description for a new fastserve.toml")
    sk.add_argument("--holdout", default=None, help="held-out records with their labels, .csv or .parquet: the "
                    "version's reference quality (quality.json), which live quality is compared with")
    sk.add_argument("--label", default=None, help="the holdout's column of labels")
    sk.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    sk.set_defaults(run=_export_sklearn)

    add_bench_parser(sub, LOG_LEVELS)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    calls = {"check", "-h", "--help"} | {name for name, _, _ in REMOTE_CALLS}
    if argv[:1] == ["models"] and (len(argv) == 1 or argv[1] not in calls):
        argv.insert(1, "check")  # `fastserve models [MODELS_DIR]` checks a repository, as it always has
    args = build_parser().parse_args(argv)
    args.argv = argv
    _setup_logging(args.log_level)
    try:
        return int(args.run(args))
    except (BenchError, ConfigError, ExportError, FileExistsError, RemoteError) as exc:
        print(f"fastserve: {exc}", file=sys.stderr)
        return 2
