"""Command line: `fastserve serve|models`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import fastserve
from fastserve.config import DEVICES, LOG_LEVELS, ServerConfig, default_models_dir
from fastserve.exceptions import ConfigError

log = logging.getLogger("fastserve")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fastserve.http import create_app

    config = ServerConfig(
        models_dir=Path(args.models_dir) if args.models_dir else default_models_dir(),
        host=args.host,
        port=args.port,
        device=args.device,
        log_level=args.log_level,
        max_body_bytes=args.max_body_bytes,
    )
    if not config.models_dir.is_dir():
        raise ConfigError(f"models directory {str(config.models_dir)!r} does not exist; pass MODELS_DIR "
                          "(e.g. `fastserve serve ./models`) or set FASTSERVE_MODELS_DIR")
    loop = "uvloop" if sys.platform != "win32" else "asyncio"
    # Batches finish on worker threads that need the GIL back from the event loop; at the default 5 ms switch
    # interval they may wait that long for it, which alone would break a 10 ms latency target.
    sys.setswitchinterval(config.gil_switch_interval_s)
    server = uvicorn.Server(uvicorn.Config(
        create_app(config), host=config.host, port=config.port, loop=loop, http="httptools", lifespan="on",
        log_config=None, log_level=config.log_level, access_log=False, server_header=False,
        timeout_keep_alive=args.keep_alive_timeout,
    ))
    log.info("fastserve %s serving %s on http://%s:%d (loop=%s, http=httptools)", fastserve.__version__,
             config.models_dir.resolve(), config.host, config.port, loop)
    server.run()
    return 0


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
    serve.add_argument("--keep-alive-timeout", type=float, default=5.0,
                       help="seconds an idle keep-alive connection stays open (default: %(default)s)")
    serve.set_defaults(run=_serve)

    models = sub.add_parser("models", help="list the models of a repository and check that each version loads")
    models.add_argument("models_dir", nargs="?", help="model repository (default: $FASTSERVE_MODELS_DIR or ./models)")
    models.add_argument("--device", choices=tuple(DEVICES), default=None)
    models.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    models.set_defaults(run=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"fastserve: {exc}", file=sys.stderr)
        return 2
