"""Configuration: the server's options and each model's `fastserve.toml`, validated in one place.

User-facing names map to implementations here (devices to execution providers, optimization levels to
onnxruntime's enums), so the rest of the code never parses strings.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fastserve._core import Feature
from fastserve.exceptions import ConfigError
from fastserve.features.spec import parse_features
from fastserve.toml_table import TomlTable

MODEL_CONFIG_FILE = "fastserve.toml"

# device name -> execution providers in order of preference; onnxruntime falls back along the list.
DEVICES: dict[str, tuple[str, ...]] = {
    "auto": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
GRAPH_OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True)
class RuntimeOptions:
    """How a version's ONNX Runtime session is built.

    Defaults suit tabular models on small batches: one intra-op thread and no spinning, because splitting a
    30-feature row across threads costs more than it saves and a spinning pool steals the core the event loop
    needs. Compute-heavy models (large MLPs, big batches) gain from `intra_op_threads` = physical cores.
    `inline_run_max_us`: a batch whose run is expected under this, with every instance idle, runs on the event loop
    thread, skipping the hand-off to a worker thread (see `fastserve.batching.Batcher`); 0 = always hand off.
    """

    device: str = "auto"
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False
    graph_optimization: str = "all"
    memory_arena: bool = True
    inline_run_max_us: int = 200


@dataclass(frozen=True)
class InputOptions:
    """What a request may carry for this model."""

    allow_non_finite: bool = False
    max_rows: int = 4096
    unknown_fields: str = "ignore"  # records: a field no feature reads is "ignore"d or an "error" (422)


@dataclass(frozen=True)
class BatchingOptions:
    """How requests are grouped into runs (see docs/configuration.md, "Batching").

    `max_batch_size = 1` turns batching off: every request runs on its own.
    """

    max_batch_size: int = 64
    max_delay_us: int = 1000
    max_queue_rows: int = 8192
    latency_slo_ms: float | None = None
    instances: int = 1
    oversize: str = "alone"  # a request over max_batch_size: "alone" runs it as a batch of its own, "refuse" = 422


OVERSIZE_POLICIES = ("alone", "refuse")
VERSION_POLICIES = ("latest", "specific", "all")


@dataclass(frozen=True)
class VersionOptions:
    """Which version folders are loaded: the `latest` N that load and pass their gate (failed ones do not count),
    a `specific` list, or `all`. The primary, and a version an operator promoted, stay loaded whatever the policy."""

    policy: str = "latest"
    latest: int = 1
    specific: tuple[int, ...] = ()


@dataclass(frozen=True)
class DriftOptions:
    enabled: bool = True
    window_rows: int = 5000  # a window closes after this many rows...
    window_seconds: float = 60.0  # ...or this many seconds, whichever first (0 = rows only)
    min_rows: int = 200  # a window closed by time with fewer rows is not scored (it carries on)
    alerts_per_day: float = 1.0  # false-alarm budget per model, for windows of `window_seconds`
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    psi_min_rows: int = 2000
    missing_min_change: float = 0.01  # the missing share must move by this much (absolute) as well


@dataclass(frozen=True)
class FeedbackOptions:
    """What each answer keeps for the labels that come later: at most `max_bytes` of it per model, for
    `ttl_seconds`, for a `sample` share of requests."""

    enabled: bool = True
    max_bytes: int = 4 << 20
    ttl_seconds: float = 86400.0
    sample: float = 1.0


@dataclass(frozen=True)
class QualityOptions:
    """Live quality against labels: windows close after `window_rows` labelled rows or `window_seconds`; a window
    of at least `min_rows` is compared with the version's reference quality at a false-alarm budget of
    `alerts_per_day`."""

    window_rows: int = 1000
    window_seconds: float = 3600.0
    min_rows: int = 100
    alerts_per_day: float = 1.0


@dataclass(frozen=True)
class GateOptions:
    """What a version must pass before it serves: its validation set's outputs within tolerance, no NaN/Inf, and
    (with a latency SLO) its warm-up run time within the SLO."""

    enabled: bool = True
    atol: float = 1e-4
    rtol: float = 1e-4


@dataclass(frozen=True)
class CanaryOptions:
    """A `weight` share of the model's traffic goes to `version`. With `sticky_key` (a record field, or
    `header:<Name>`), a key always lands on the same side, and changing the weight moves only the keys it must."""

    version: int
    weight: float
    sticky_key: str | None = None


@dataclass(frozen=True)
class ShadowOptions:
    """A `sample` share of requests is copied to `version`, off the critical path, and its answers compared."""

    version: int
    sample: float = 1.0


@dataclass(frozen=True)
class GuardOptions:
    """When the canary, over the last `window_s` seconds (with at least `min_requests` on each side), errs more,
    is slower, or predicts differently than the primary beyond these margins, its weight goes to 0."""

    enabled: bool = True
    window_s: float = 60.0
    min_requests: int = 100
    max_error_rate_increase: float = 0.01  # canary error rate - primary error rate
    max_p99_ratio: float = 2.0  # canary p99 / primary p99 (in-server latency)
    p99_slack_ms: float = 2.0  # a p99 within this many ms of the primary's never trips
    max_divergence: float = 0.05  # Jensen-Shannon divergence (base 2) of the predicted-label distributions
    quality: bool = False  # also judge on live labels: pull back a canary whose losses are worse beyond chance


@dataclass(frozen=True)
class RoutingOptions:
    canary: CanaryOptions | None = None
    shadows: tuple[ShadowOptions, ...] = ()
    guard: GuardOptions = field(default_factory=GuardOptions)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    description: str = ""
    primary: int | None = None
    keep_loaded: bool = False  # its primary is never evicted by the server's budget of loaded versions
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    inputs: InputOptions = field(default_factory=InputOptions)
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    versions: VersionOptions = field(default_factory=VersionOptions)
    gate: GateOptions = field(default_factory=GateOptions)
    routing: RoutingOptions = field(default_factory=RoutingOptions)
    drift: DriftOptions = field(default_factory=DriftOptions)
    feedback: FeedbackOptions = field(default_factory=FeedbackOptions)
    quality: QualityOptions = field(default_factory=QualityOptions)
    # [[features]], for versions without their own features.toml; compared through their text (compiled features
    # compare by identity).
    features: tuple[Feature, ...] | None = field(default=None, compare=False)
    features_text: str | None = None


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client connection may hold: each limit closes a slow or oversized client with an answer, so that
    clients cannot hold the server's connections or memory."""
    max_connections: int = 4096  # open connections; the next request gets 503 + Retry-After, then the close
    header_timeout_s: float = 10.0  # a request's line and headers must arrive within this, from its first byte
    min_body_rate: float = 1024.0  # bytes/s a body must average once header_timeout_s has passed since its start
    max_header_bytes: int = 32 * 1024  # request line + headers; over it: 431
    max_headers: int = 100
    keep_alive_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this


# The histograms that multiply by versions (request latency, batch size, queue wait, batch run): labelled by model
# and version, by model alone (version=""; a model's versions summed), or left out. "auto": by version while the
# server holds at most AUTO_PER_VERSION_MODELS models, by model above (10,000 models by version: 1.5 M series).
HISTOGRAM_DETAILS = ("auto", "version", "model", "off")
AUTO_PER_VERSION_MODELS = 100


@dataclass(frozen=True)
class ServerConfig:
    models_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    device: str | None = None  # overrides every model's runtime.device when set
    log_level: str = "info"
    max_body_bytes: int = 8 * 1024 * 1024
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    shutdown_grace_s: float = 30.0  # on SIGTERM: how long requests already accepted have to finish
    gil_switch_interval_s: float = 0.0002
    poll_interval_s: float = 2.0  # how often the repository is checked for new, changed or removed versions; 0 = never
    admin_token: str | None = None  # the admin API is off without one
    door_process: bool = True  # connections accepted, and held until their first headers, by a process of their own
    workers: int = 1  # serving processes; more than one: under a supervisor, behind the door process
    max_loaded_versions: int | None = None  # the budget: least recently used versions evicted past it
    lazy: bool = False  # versions loaded by their first request, not at start
    state_dir: Path | None = None  # the server's own files (gate results), apart from the repository
    histograms: str = "auto"  # labels of the histograms that multiply by versions: HISTOGRAM_DETAILS


def parse_model_config(data: dict[str, Any], name: str, where: str) -> ModelConfig:
    top = TomlTable(data, where)
    model = top.sub("model")
    description = model.take("description", str, "")
    primary = model.take("primary", int, None)
    keep_loaded = model.take("keep_loaded", bool, False)
    if primary is not None and primary < 0:
        raise model.fail(f"`primary` must be a version number >= 0, got {primary}")
    model.done()
    sections = {key: parse(top.sub(key)) for key, parse in SECTIONS.items()}
    features = top.take("features", list, None)
    features_text = json.dumps(features, sort_keys=True) if features is not None else None
    if features is not None:
        features = parse_features(features, where)
    top.done()
    inputs, batching = sections["inputs"], sections["batching"]
    if batching.max_queue_rows < inputs.max_rows:
        raise ConfigError(f"{where}: [batching] max_queue_rows ({batching.max_queue_rows}) must be >= [inputs] "
                          f"max_rows ({inputs.max_rows}), or a request of max_rows rows could never be queued")
    return ModelConfig(name=name, description=description, primary=primary, keep_loaded=keep_loaded,
                       features=features, features_text=features_text, **sections)


def _parse_runtime(rt: TomlTable) -> RuntimeOptions:
    runtime = RuntimeOptions(
        device=rt.choice("device", tuple(DEVICES), "auto"),
        intra_op_threads=rt.positive("intra_op_threads", 1, minimum=0),
        inter_op_threads=rt.positive("inter_op_threads", 1, minimum=0),
        allow_spinning=rt.take("allow_spinning", bool, False),
        graph_optimization=rt.choice("graph_optimization", GRAPH_OPTIMIZATION_LEVELS, "all"),
        memory_arena=rt.take("memory_arena", bool, True),
        inline_run_max_us=rt.positive("inline_run_max_us", 200, minimum=0),
    )
    rt.done()
    return runtime


def _parse_inputs(inp: TomlTable) -> InputOptions:
    inputs = InputOptions(
        allow_non_finite=inp.take("allow_non_finite", bool, False),
        max_rows=inp.positive("max_rows", 4096),
        unknown_fields=inp.choice("unknown_fields", ("ignore", "error"), "ignore"),
    )
    inp.done()
    return inputs


def _parse_batching(bt: TomlTable) -> BatchingOptions:
    slo = bt.take("latency_slo_ms", (int, float), None)
    if slo is not None and not 0 < slo <= 3_600_000:
        raise bt.fail(f"`latency_slo_ms` must be > 0 (milliseconds), got {slo}")
    batching = BatchingOptions(
        max_batch_size=bt.positive("max_batch_size", 64),
        max_delay_us=bt.positive("max_delay_us", 1000, minimum=0),
        max_queue_rows=bt.positive("max_queue_rows", 8192),
        latency_slo_ms=float(slo) if slo is not None else None,
        instances=bt.positive("instances", 1),
        oversize=bt.choice("oversize", OVERSIZE_POLICIES, "alone"),
    )
    bt.done()
    return batching


def _parse_versions(vt: TomlTable) -> VersionOptions:
    policy = vt.choice("policy", VERSION_POLICIES, "latest")
    specific = vt.take("specific", list, [])
    if any(type(v) is not int or v < 0 for v in specific) or (policy == "specific" and not specific):
        raise vt.fail(f"`specific` must be a non-empty list of version numbers with policy 'specific', got "
                      f"{specific!r}")
    versions = VersionOptions(policy=policy, latest=vt.positive("latest", 1), specific=tuple(specific))
    vt.done()
    return versions


def _parse_gate(gt: TomlTable) -> GateOptions:
    gate = GateOptions(enabled=gt.take("enabled", bool, True), atol=float(gt.take("atol", (int, float), 1e-4)),
                       rtol=float(gt.take("rtol", (int, float), 1e-4)))
    if not (gate.atol >= 0 and gate.rtol >= 0):
        raise gt.fail("`atol` and `rtol` must be >= 0")
    gt.done()
    return gate


def _parse_drift(dt: TomlTable) -> DriftOptions:
    drift = DriftOptions(
        enabled=dt.take("enabled", bool, True),
        window_rows=dt.positive("window_rows", 5000, minimum=100),
        window_seconds=float(dt.take("window_seconds", (int, float), 60.0)),
        min_rows=dt.positive("min_rows", 200),
        alerts_per_day=float(dt.take("alerts_per_day", (int, float), 1.0)),
        psi_warn=float(dt.take("psi_warn", (int, float), 0.1)),
        psi_alert=float(dt.take("psi_alert", (int, float), 0.25)),
        psi_min_rows=dt.positive("psi_min_rows", 2000),
        missing_min_change=float(dt.take("missing_min_change", (int, float), 0.01)),
    )
    if drift.window_seconds < 0 or drift.alerts_per_day <= 0 or not 0 < drift.psi_warn <= drift.psi_alert \
            or not 0 <= drift.missing_min_change <= 1:
        raise dt.fail("`window_seconds` must be >= 0, `alerts_per_day` > 0, 0 < psi_warn <= psi_alert, and "
                      "0 <= missing_min_change <= 1")
    dt.done()
    return drift


def _parse_feedback(ft: TomlTable) -> FeedbackOptions:
    feedback = FeedbackOptions(
        enabled=ft.take("enabled", bool, True),
        max_bytes=ft.positive("max_bytes", FeedbackOptions.max_bytes, minimum=65536),
        ttl_seconds=float(ft.take("ttl_seconds", (int, float), FeedbackOptions.ttl_seconds)),
        sample=_fraction(ft, "sample", 1.0),
    )
    if feedback.ttl_seconds <= 0:
        raise ft.fail("`ttl_seconds` must be > 0")
    ft.done()
    return feedback


def _parse_quality(qt: TomlTable) -> QualityOptions:
    quality = QualityOptions(
        window_rows=qt.positive("window_rows", QualityOptions.window_rows, minimum=10),
        window_seconds=float(qt.take("window_seconds", (int, float), QualityOptions.window_seconds)),
        min_rows=qt.positive("min_rows", QualityOptions.min_rows, minimum=10),
        alerts_per_day=float(qt.take("alerts_per_day", (int, float), QualityOptions.alerts_per_day)),
    )
    if quality.window_seconds < 0 or quality.alerts_per_day <= 0:
        raise qt.fail("`window_seconds` must be >= 0 and `alerts_per_day` > 0")
    qt.done()
    return quality


def _fraction(table: TomlTable, key: str, default: float | None) -> float:
    value = table.need(key, (int, float)) if default is None else table.take(key, (int, float), default)
    if not 0 <= value <= 1:
        raise table.fail(f"`{key}` must be between 0 and 1, got {value}")
    return float(value)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)


def sticky_key_error(sticky: str) -> str | None:
    """Why `sticky` cannot be a canary's sticky key (a record field, or `header:` and a header name), or None."""
    if not sticky or (sticky.startswith("header:") and not _HEADER_NAME.fullmatch(sticky[len("header:"):])):
        return f"`sticky_key` must name a record field, or a header as `header:X-User-Id`, got {sticky!r}"
    return None


def parse_canary(table: TomlTable) -> CanaryOptions:
    version = table.need("version", int)
    weight = _fraction(table, "weight", None)
    sticky = table.take("sticky_key", str, None)
    why = sticky_key_error(sticky) if sticky is not None else None
    if why is not None:
        raise table.fail(why)
    table.done()
    return CanaryOptions(version=version, weight=weight, sticky_key=sticky)


def parse_shadow(table: TomlTable) -> ShadowOptions:
    shadow = ShadowOptions(version=table.need("version", int), sample=_fraction(table, "sample", 1.0))
    table.done()
    return shadow


def parse_routing(table: TomlTable) -> RoutingOptions:
    canary = table.take("canary", dict, None)
    shadows = table.take("shadows", list, [])
    if any(type(s) is not dict for s in shadows):
        raise table.fail("`shadows` must be a list of tables like { version = 3, sample = 0.5 }")
    g = table.sub("guard")
    guard = GuardOptions(
        enabled=g.take("enabled", bool, True),
        window_s=float(g.take("window_s", (int, float), 60.0)),
        min_requests=g.positive("min_requests", 100),
        max_error_rate_increase=_fraction(g, "max_error_rate_increase", 0.01),
        max_p99_ratio=float(g.take("max_p99_ratio", (int, float), 2.0)),
        p99_slack_ms=float(g.take("p99_slack_ms", (int, float), 2.0)),
        max_divergence=_fraction(g, "max_divergence", 0.05),
        quality=g.take("quality", bool, False),
    )
    if guard.window_s <= 0 or guard.max_p99_ratio < 1 or guard.p99_slack_ms < 0:
        raise g.fail("`window_s` must be > 0, `max_p99_ratio` >= 1 and `p99_slack_ms` >= 0")
    g.done()
    table.done()
    where = table.where
    parsed = tuple(parse_shadow(TomlTable(s, f"{where} shadows[{i}]")) for i, s in enumerate(shadows))
    if len({s.version for s in parsed}) != len(parsed):
        raise table.fail("a version is a shadow twice")
    return RoutingOptions(canary=parse_canary(TomlTable(canary, f"{where} canary")) if canary is not None else None,
                          shadows=parsed, guard=guard)


# [section] of fastserve.toml -> its parser (each refuses unknown keys); the keys are ModelConfig's fields.
SECTIONS: dict[str, Callable[[TomlTable], Any]] = {
    "runtime": _parse_runtime, "inputs": _parse_inputs, "batching": _parse_batching, "versions": _parse_versions,
    "gate": _parse_gate, "routing": parse_routing, "drift": _parse_drift, "feedback": _parse_feedback,
    "quality": _parse_quality,
}


def load_model_config(model_dir: Path) -> ModelConfig:
    """Read `<model_dir>/fastserve.toml`; a model folder without one gets the defaults."""
    path = model_dir / MODEL_CONFIG_FILE
    if not path.exists():
        return ModelConfig(name=model_dir.name)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    return parse_model_config(data, model_dir.name, str(path))


def for_server(config: ModelConfig, device: str | None, max_threads: int | None = None) -> ModelConfig:
    """The server-wide `--device` overrides each model's own choice; with worker processes, each session's intra-op
    threads are capped at `max_threads` (0, onnxruntime's "one per core", becomes the cap)."""
    runtime = config.runtime
    if device is not None:
        runtime = replace(runtime, device=device)
    if max_threads is not None and not 0 < runtime.intra_op_threads <= max_threads:
        runtime = replace(runtime, intra_op_threads=max_threads)
    return config if runtime is config.runtime else replace(config, runtime=runtime)


def default_models_dir() -> Path:
    """$FASTSERVE_MODELS_DIR, else ./models (the bundled models when run from the repository)."""
    env = os.environ.get("FASTSERVE_MODELS_DIR")
    return Path(env) if env else Path("models")
