"""fastserve beside its peers: every installed peer and fastserve serve the bundled `churn_mlp` at once (each on core
0), each is checked to answer one request correctly, and then all are measured together by `fastserve bench --compare`
(on core 1): the highest rate whose p99 stays within 10 ms, and p50 at low load, with ratios to fastserve. Writes
`benchmarks/results/peers.json`, the plots, and the `peers` section of `benchmarks/README.md`.

    python -m benchmarks.peers.install            # once: a virtualenv per peer under /tmp/fastserve-peers
    python -m benchmarks.peers.run [--quick] [--peers fastapi,mlserver,...]

Ray Serve probes the network when it starts, so the whole run, generator included, goes into a network namespace
of its own with only loopback up (`unshare --net`, as root): the runner re-executes itself there.

Peers that take fastserve's native JSON request are compared with fastserve's native route, peers that speak the
Open Inference (V2) protocol with fastserve's V2 route: one `fastserve bench` run for each protocol, as it sends one
protocol to every server it compares. Loopback only; not part of the test suite or CI."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

from benchmarks._harness import ROOT, Client, free_port, machine, pin_self
from benchmarks.peers.peers import (
    HERE,
    MAX_BATCH,
    MAX_DELAY_MS,
    MODEL,
    MODEL_NAME,
    NATIVE,
    PEERS,
    V2,
    Peer,
    install_record,
    peers_dir,
    python,
)

RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "benchmarks" / "README.md"
SLO_MS = 10.0
SERVER_CORE, GENERATOR_CORE = 0, 1
START_TIMEOUT_S = 240.0
CONNECTIONS = 64  # fastserve bench's default
START_RATE = 100.0  # the first rate each search tries
BEGIN, END = "<!-- peers: written by python -m benchmarks.peers.run -->", "<!-- peers: end -->"
PEER_ENV = {"BENTOML_DO_NOT_TRACK": "true", "RAY_USAGE_STATS_ENABLED": "0", "LITSERVE_TELEMETRY": "0",
            "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


@dataclass
class Server:
    name: str
    protocol: str  # "native" or "v2"
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    log: Path | None = None
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and what it started (Ray's, Triton's processes)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def _pinned(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CORE), *cmd] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else cmd


def _log_tail(path: Path | None, lines: int = 12) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:])


# --- the requests and the check of one answer ------------------------------------------------------------------

def rows() -> np.ndarray:
    return np.load(MODEL.parent / "validation.npz")["inputs"].astype(np.float32)


def body(row: np.ndarray, protocol: str) -> bytes:
    if protocol == "native":
        return orjson.dumps({"inputs": [row.tolist()]})
    return orjson.dumps({"inputs": [{"name": "inputs", "shape": [1, len(row)], "datatype": "FP32",
                                     "data": row.tolist()}]})


def route(protocol: str) -> str:
    return NATIVE if protocol == "native" else V2


def probabilities(answer: Any, protocol: str) -> np.ndarray:
    """The probabilities in an answer: fastserve's native `{"outputs": {...}}`, a list of one answer per row (BentoML's
    batchable API), or V2's list of named tensors."""
    if protocol == "native":
        if isinstance(answer, list):
            return np.asarray([row["probabilities"] for row in answer], dtype=np.float64)
        return np.asarray(answer["outputs"]["probabilities"], dtype=np.float64)
    for tensor in answer["outputs"]:
        if tensor["name"] == "probabilities":
            return np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    raise KeyError("no output named probabilities")


def check(server: Server, row: np.ndarray, expected: np.ndarray, protocol: str | None = None) -> str | None:
    """None when one request gets the right probabilities (atol 1e-5), else what went wrong."""
    protocol = protocol or server.protocol
    with Client(server.port) as c:
        status, answer = c.request("POST", route(protocol), body(row, protocol))
    if status != 200:
        return f"{route(protocol)} answered {status}: {answer[:300]!r}"
    try:
        got = probabilities(orjson.loads(answer), protocol).reshape(expected.shape)
    except (ValueError, KeyError, TypeError) as exc:
        return f"answer without probabilities ({exc}): {answer[:300]!r}"
    if not np.allclose(got, expected, atol=1e-5, rtol=0):
        return f"wrong probabilities: {got.tolist()} against onnxruntime's {expected.tolist()}"
    return None


def _answers(port: int, protocol: str, row: np.ndarray) -> bool:
    try:
        with Client(port) as c:
            return c.request("POST", route(protocol), body(row, protocol))[0] == 200
    except OSError:
        return False


# --- starting the servers --------------------------------------------------------------------------------------

def start(server: Server, cmd: list[str], env: dict[str, str], row: np.ndarray, cwd: Path) -> str | None:
    """Start `cmd` and wait until it answers a predict; None when it does, else why not."""
    server.log = peers_dir() / "logs" / f"{server.name}.log"
    server.log.parent.mkdir(parents=True, exist_ok=True)
    with server.log.open("wb") as log:
        server.proc = subprocess.Popen(_pinned(cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return f"exited with {server.proc.returncode} before answering: {_log_tail(server.log)}"
        if _answers(server.port, server.protocol, row):
            return None
        time.sleep(0.25)
    server.stop()
    return f"did not answer within {START_TIMEOUT_S:.0f} s: {_log_tail(server.log)}"


def start_fastserve(row: np.ndarray) -> Server:
    """fastserve on the bundled models: compared on its native route and on its V2 route."""
    server = Server("fastserve", "native", port=free_port())
    cmd = [sys.executable, "-m", "fastserve", "serve", str(ROOT / "models"), "--port", str(server.port),
           "--log-level", "warning"]
    problem = start(server, cmd, dict(os.environ), row, ROOT)
    if problem:
        raise RuntimeError(f"fastserve: {problem}")
    return server


def start_peer(peer: Peer, row: np.ndarray) -> Server:
    server = Server(peer.name, peer.protocol, port=free_port())
    cmd = [str(python(peer)), str(peer.server), "--port", str(server.port), "--model", str(MODEL),
           "--max-batch", str(MAX_BATCH), "--max-delay-ms", f"{MAX_DELAY_MS:g}"]
    env = {**os.environ, **PEER_ENV}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    problem = start(server, cmd, env, row, HERE)
    if problem:
        raise RuntimeError(problem)
    return server


def _group_cpu_seconds(pid: int) -> float:
    """CPU time so far of every process in the process group `pid` leads (the server and what it started)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pid:  # process group
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def idle_cpu(servers: list[Server], seconds: float = 5.0) -> dict[str, float]:
    """Each server's CPU use while no request comes (share of one core): what it takes from core 0 while the
    others are measured."""
    before = {s.name: _group_cpu_seconds(s.proc.pid) for s in servers if s.proc is not None}
    time.sleep(seconds)
    return {s.name: round((_group_cpu_seconds(s.proc.pid) - before[s.name]) / seconds, 4)
            for s in servers if s.proc is not None}


# --- measuring -------------------------------------------------------------------------------------------------

def bench_available() -> str | None:
    """None when `fastserve bench` and its compiled generator are there, else why not."""
    done = subprocess.run([sys.executable, "-m", "fastserve", "bench", "--help"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"`fastserve bench --help` failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    done = subprocess.run([sys.executable, "-c", "import fastserve.bench.engine"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"the compiled generator is not built: {done.stderr.strip().splitlines()[-1:]}"
    return None


def measure(group: list[Server], protocol: str, quick: bool) -> dict[str, dict[str, Any]]:
    """One `fastserve bench --compare` run over the group (fastserve first): the search, its JSON and its plot."""
    out = RESULTS / f"peers_{protocol}.json"
    plot = RESULTS / f"peers_{protocol}.png"
    cmd = ["taskset", "-c", str(GENERATOR_CORE)] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else []
    cmd += [sys.executable, "-m", "fastserve", "bench", "--model", MODEL_NAME, "--protocol", protocol,
            "--compare", *(f"{s.name}={s.url}" for s in group), "--search", "--rate", f"{START_RATE:g}",
            "--slo", f"p99={SLO_MS:g}ms",
            "--connections", str(CONNECTIONS), "--from-validation", str(ROOT / "models"), "--quiet",
            "--out", str(out), "--plot", str(plot)]
    if quick:
        cmd += ["--duration", "2"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    document = json.loads(out.read_text())
    figures: dict[str, dict[str, Any]] = {}
    for s in group:
        trials = [t for t in document["trials"] if t["server"] == s.name]
        low = min(trials, key=lambda t: t["offered_rps"]) if trials else None
        figures[s.name] = {
            "max_rate": (document.get("search") or {}).get(s.name, {}).get("highest_rate") or 0.0,
            "p50_low_ms": low["latency_ms"]["p50"] if low else None,
            "p99_low_ms": low["latency_ms"]["p99"] if low else None,
            "low_rate": low["offered_rps"] if low else None,
            "trials": len(trials),
            "unreliable_trials": sum(1 for t in trials if t.get("unreliable")),
        }
    figures["_files"] = {"json": str(out.relative_to(ROOT)), "plot": str(plot.relative_to(ROOT))}
    return figures


# --- the run ---------------------------------------------------------------------------------------------------

def installed(names: list[str]) -> tuple[list[Peer], dict[str, dict[str, Any]]]:
    """The peers ready to start, and every peer's install record (or why there is none)."""
    ready, records = [], {}
    for name in names:
        peer = PEERS[name]
        path = install_record(peer)
        record = json.loads(path.read_text()) if path.exists() else {
            "ok": False, "error": f"not installed: run `python -m benchmarks.peers.install {name}`"}
        records[name] = record
        if record.get("ok"):
            ready.append(peer)
    return ready, records


def namespace_problem() -> str | None:
    """None when a loopback-only network namespace can be made here (root, `unshare`, `ip`)."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "`unshare` or `ip` is not installed"
    done = subprocess.run(["unshare", "--net", "--", "sh", "-c", "ip link set lo up"], capture_output=True,
                          text=True)
    return None if done.returncode == 0 else f"`unshare --net` failed: {done.stderr.strip()}"


def inside(argv: list[str]) -> int:
    """Run this same command again in a new network namespace with only loopback up."""
    command = shlex.join([sys.executable, "-m", "benchmarks.peers.run", "--inside-namespace", *argv])
    return subprocess.run(["unshare", "--net", "--", "sh", "-c", f"ip link set lo up && exec {command}"],
                          cwd=ROOT).returncode


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = args.peers or list(PEERS)
    peers, records = installed(names)
    failures = {name: record["error"] for name, record in records.items() if not record.get("ok")}
    if not args.inside_namespace:
        for peer in [p for p in peers if p.network_namespace]:
            failures[peer.name] = ("probes the network at start and needs a loopback-only network namespace, which "
                                   f"could not be made here ({args.namespace_problem})")
            peers.remove(peer)
    data = rows()
    row = data[0]
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    expected = session.run(["probabilities"], {"inputs": row[None, :]})[0].astype(np.float64)
    pin_self(GENERATOR_CORE)
    servers: list[Server] = []
    try:
        fastserve = start_fastserve(row)
        servers.append(fastserve)
        for protocol in ("native", "v2"):
            problem = check(fastserve, row, expected, protocol)
            if problem:
                raise RuntimeError(f"fastserve: {problem}")
        for peer in peers:
            print(f"starting {peer.name} ...", flush=True)
            try:
                server = start_peer(peer, row)
            except RuntimeError as exc:
                failures[peer.name] = str(exc)
                print(f"  {peer.name}: could not run: {exc}", flush=True)
                continue
            servers.append(server)
            problem = check(server, row, expected)
            if problem:
                failures[peer.name] = f"started, but {problem}"
                server.stop()
                servers.remove(server)
            else:
                print(f"  {peer.name}: answers correctly on {server.url}", flush=True)
        if args.check_only:
            return {"checked": [s.name for s in servers], "failures": failures, "idle_cpu_share": idle_cpu(servers)}
        why_not = bench_available()
        if why_not:
            raise RuntimeError(f"cannot measure: {why_not}")
        idle = idle_cpu(servers)
        load = {"before": os.getloadavg()}
        figures: dict[str, dict[str, dict[str, Any]]] = {}
        files: dict[str, dict[str, str]] = {}
        for protocol in ("native", "v2"):
            group = [fastserve, *(s for s in servers if s.protocol == protocol and s is not fastserve)]
            if len(group) < 2:
                continue
            try:
                got = measure(group, protocol, args.quick)
            except subprocess.CalledProcessError as exc:
                for s in group[1:]:
                    failures[s.name] = f"`fastserve bench --protocol {protocol}` over its group failed (exit " \
                                       f"{exc.returncode}): see its output above"
                continue
            files[protocol] = got.pop("_files")
            base = got["fastserve"]
            for f in got.values():
                f["rate_ratio"] = f["max_rate"] / base["max_rate"] if base["max_rate"] else None
                f["p50_ratio"] = (f["p50_low_ms"] / base["p50_low_ms"]
                                  if f["p50_low_ms"] and base["p50_low_ms"] else None)
            figures[protocol] = got
        load["after"] = os.getloadavg()
    finally:
        for s in reversed(servers):
            s.stop()
    return {
        "machine": machine(),
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.peers.run" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "network_namespace": args.inside_namespace, "slo_ms": SLO_MS,
        "connections": CONNECTIONS, "start_rate": START_RATE, "idle_cpu_share": idle,
        "load_average": load,
        "fastserve": _fastserve_version(),
        "peers": {name: {"protocol": PEERS[name].protocol, "route": PEERS[name].route,
                         "batching": PEERS[name].batching, "versions": records[name].get("versions"),
                         "ran": name not in failures, "why_not": failures.get(name)} for name in names},
        "results": figures,  # by protocol, then server; ratios to fastserve on the same protocol
        "files": files,
    }


def _fastserve_version() -> str:
    import fastserve

    return str(fastserve.__version__)


# --- the README's section --------------------------------------------------------------------------------------

def _rate(value: float) -> str:
    return f"{value:,.0f}/s" if value else "none"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _ms(value: float | None) -> str:
    return f"{value:.2f} ms" if value is not None else "-"


def section(doc: dict[str, Any]) -> str:
    peers, results = doc["peers"], doc["results"]
    day = doc["at"][:10]
    lines = [BEGIN, "## `peers`: fastserve beside other servers", "",
             "`python -m benchmarks.peers.install` (once: each peer in a virtualenv of its own under "
             "`/tmp/fastserve-peers`, or `$FASTSERVE_PEERS_DIR`), then `python -m benchmarks.peers.run` (`--quick` "
             "for shorter trials). Each peer serves the bundled `churn_mlp` (`models/churn_mlp/1/model.onnx`) with "
             "onnxruntime on the CPU, fastserve's session options (one intra-op thread), and its own dynamic or "
             f"adaptive batching at max batch {MAX_BATCH} and {MAX_DELAY_MS:g} ms of delay where it has one. Every "
             "server runs pinned to core 0 and the generator to core 1; one-row JSON requests, "
             f"{doc['connections']} keep-alive connections, open loop "
             "(Poisson arrivals, latency from each request's intended send time). Each server must first answer one "
             "request with onnxruntime's probabilities (atol 1e-5). The whole run, generator included, is in a "
             "network namespace with only loopback up (`unshare --net`), since Ray probes the network at start. "
             "Peers that let one define the route take fastserve's native request "
             f"(`POST {NATIVE}`, `{{\"inputs\": [[22 floats]]}}`); those that speak the Open Inference (V2) protocol "
             f"natively are sent V2 requests (`POST {V2}`) and compared with fastserve's V2 route. The peers are a "
             "benchmark only: not in the test suite, CI or the package's extras.", "",
             "| server | route | batching | versions |", "|---|---|---|---|",
             f"| fastserve | native and V2 | its own, as bundled (`fastserve serve models`): max batch 64, max delay "
             f"1 ms | fastserve {doc['fastserve']} |"]
    for name, p in peers.items():
        versions = ", ".join(f"{k} {v}" for k, v in (p["versions"] or {}).items()) or "not installed"
        lines.append(f"| {name} | {'native' if p['protocol'] == 'native' else 'V2'} (`{p['route']}`) | "
                     f"{p['batching']} | {versions} |")
    gen = "`fastserve bench --compare ... --search`, one run per protocol" + (" (`--quick`)" if doc["quick"] else "")
    lines += ["", f"Run on {day}, {doc['machine']['cpus']} vCPUs, Python {doc['machine']['python']}, measured with "
              f"{gen}; `benchmarks/results/peers.json`. Highest rate whose p99 stays within "
              f"{doc['slo_ms']:g} ms with under 0.1% errors (doubling from {doc['start_rate']:g}/s, then "
              "bisections), p50 and p99 at low load (the lowest rate tried: the search's first for every server "
              "that held it), and ratios to fastserve on the same protocol, in the same run:", "",
              "| server | protocol | max rate, p99 <= 10 ms | x fastserve | p50 at low load | x fastserve | "
              "p99 at low load |", "|---|---|---:|---:|---:|---:|---:|"]
    for protocol, group in results.items():
        for name, f in group.items():
            lines.append(f"| {name} | {'native' if protocol == 'native' else 'V2'} | {_rate(f['max_rate'])} | "
                         f"{_ratio(f['rate_ratio'])} | {_ms(f['p50_low_ms'])} | {_ratio(f['p50_ratio'])} | "
                         f"{_ms(f['p99_low_ms'])} |")
    failed = {name: p["why_not"] for name, p in peers.items() if not p["ran"]}
    if failed:
        lines += ["", "Could not run:", ""]
        lines += [f"- **{name}**: {_one_line(why)}" for name, why in failed.items()]
    for protocol, files in doc["files"].items():
        lines += ["", f"`fastserve bench` on the {'native' if protocol == 'native' else 'V2'} route "
                  f"(`{files['json']}`):", "", f"![peers, {protocol}]({Path(files['plot']).relative_to('benchmarks')})"]
    idle = ", ".join(f"{name} {share:.1%}" for name, share in doc["idle_cpu_share"].items())
    lines += ["", f"CPU each server used while idle, on the core they share (what it takes from the one measured): "
              f"{idle}. Load average over the measurement (1 min): {doc['load_average']['before'][0]:.2f} before, "
              f"{doc['load_average']['after'][0]:.2f} after; the machine is shared."]
    unreliable = [f"{name} ({protocol}) {f['unreliable_trials']} of {f['trials']}"
                  for protocol, group in results.items() for name, f in group.items() if f.get("unreliable_trials")]
    if unreliable:
        lines += ["", "Trials whose generator send lag p99 exceeded 100 µs (their latencies include the generator's "
                  "own delay): " + ", ".join(unreliable) + "."]
    lines += [END]
    return "\n".join(lines)


def _one_line(text: str, limit: int = 400) -> str:
    text = re.sub(r"\s+", " ", text).strip().replace("|", "/")
    return text if len(text) <= limit else text[:limit] + " ..."


def write_readme(doc: dict[str, Any]) -> None:
    text = README.read_text()
    new = section(doc)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + new + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    README.write_text(text)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter trials")
    parser.add_argument("--peers", type=lambda s: [n for n in s.split(",") if n], default=None,
                        help=f"peers to run, comma-separated (default: all): {','.join(PEERS)}")
    parser.add_argument("--no-readme", action="store_true", help="write peers.json only")
    parser.add_argument("--check-only", action="store_true",
                        help="start every server and check its answer, measure nothing, write nothing")
    parser.add_argument("--inside-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [n for n in args.peers or [] if n not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; expected some of {', '.join(PEERS)}")
    args.namespace_problem = None
    if not args.inside_namespace:
        args.namespace_problem = namespace_problem()
        if args.namespace_problem is None:
            return inside(argv)
        print(f"no network namespace ({args.namespace_problem}): running here, without the peers that need one",
              flush=True)
    doc = run(args)
    if args.check_only:
        print(json.dumps(doc, indent=2))
        return 0 if not doc["failures"] else 1
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(section(doc))
    if not args.no_readme:
        write_readme(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
