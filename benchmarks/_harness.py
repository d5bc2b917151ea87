"""Shared pieces of the benchmarks: servers in subprocesses pinned to a core, a minimal keep-alive HTTP client,
percentiles, and JSON results. Loopback only."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pinned(cmd: list[str], core: int | None) -> list[str]:
    if core is None or not hasattr(os, "sched_setaffinity") or os.cpu_count() in (None, 1):
        return cmd
    return ["taskset", "-c", str(core), *cmd]


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    port: int

    def pids(self) -> list[int]:
        """The server process and its children (the door process) (Linux)."""
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if parent == self.proc.pid:
                    children.append(int(entry.name))
        return [self.proc.pid, *children]

    def rss_bytes(self) -> int:
        """Resident memory of the server process and its children (Linux)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process and its children have used so far, all threads (Linux)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _wait(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with Client(port) as c:
                if c.request("GET", path)[0] == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not answer {path} within {timeout} s")


def start_fastserve(models_dir: Path, core: int | None, *args: str) -> Process:
    port = free_port()
    cmd = [sys.executable, "-m", "fastserve", "serve", str(models_dir), "--port", str(port), "--log-level",
           "warning", *args]
    proc = subprocess.Popen(_pinned(cmd, core), cwd=ROOT)
    _wait(port, "/readyz")
    return Process(proc, port)


def start_echo(core: int | None) -> Process:
    port = free_port()
    code = ("import uvicorn; from benchmarks.echo_app import app; "
            f"uvicorn.run(app, host='127.0.0.1', port={port}, loop='uvloop', http='httptools', "
            "log_level='warning', access_log=False, server_header=False)")
    proc = subprocess.Popen(_pinned([sys.executable, "-c", code], core), cwd=ROOT)
    _wait(port, "/")
    return Process(proc, port)


def pin_self(core: int | None) -> None:
    if core is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {core})


class Client:
    """Blocking HTTP/1.1 keep-alive client with almost no overhead of its own: what it adds is the same for
    every server measured, so differences between servers are the servers'."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    @staticmethod
    def build(method: str, path: str, body: bytes = b"", content_type: str = "application/json",
              headers: Mapping[str, str] | None = None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body or method == "POST":
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        return head.encode() + b"\r\n" + body

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:  # the server closed the connection (an idle keep-alive times out after 5 s)
            raise ConnectionError("server closed the connection")
        return chunk

    def send_raw(self, raw: bytes) -> tuple[int, bytes]:
        sock = self.sock
        sock.sendall(raw)
        buf = self._recv()
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv()
        head = buf[:end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        while len(buf) < end + 4 + length:
            buf += self._recv()
        return int(head[9:12]), buf[end + 4:end + 4 + length]

    def request(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
                ) -> tuple[int, bytes]:
        return self.send_raw(self.build(method, path, body, content_type))


def calibrate(fn: Callable[[], object], seconds: float) -> int:
    """Calls per repeat for about `seconds` of work."""
    calls = 1
    while True:
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter_ns() - t0
        if elapsed >= seconds * 1e9 / 10:
            return max(1, int(calls * seconds * 1e9 / elapsed))
        calls *= 4


def time_cases(cases: Mapping[str, Callable[[], Callable[[], object]]], repeats: int, seconds: float,
               cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Nanoseconds per call, per repeat. Each case is a factory called before each repeat (a fresh shadow queue
    for each, say); the cases take turns within each repeat, so that drift in the machine hits them alike. With
    `cpu`, it also gets this thread's CPU nanoseconds per call, per repeat: what the calls cost the caller,
    whatever the time spent waiting on a server."""
    calls = {}
    for name, make in cases.items():
        calibrate(make(), seconds / 4)  # warm
        calls[name] = calibrate(make(), seconds)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for _ in range(repeats):
        for name, make in cases.items():
            fn, n = make(), calls[name]
            gc.collect()
            c0 = cpu_clock()
            t0 = clock()
            for _ in range(n):
                fn()
            samples[name].append((clock() - t0) / n)
            if cpu is not None:
                cpu.setdefault(name, []).append((cpu_clock() - c0) / n)
    return samples


def summarize(samples_ns: list[int] | np.ndarray) -> dict[str, float]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {"n": int(us.size), "p50_us": float(np.percentile(us, 50)), "p90_us": float(np.percentile(us, 90)),
            "p99_us": float(np.percentile(us, 99)), "mean_us": float(us.mean())}


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "platform": platform.platform()}


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    return path


def alternate_configs(model: str, configs: Mapping[str, str], raws: list[bytes], rate: float, seconds: float,
                      rounds: int) -> dict[str, Any]:
    """One server per config of a bundled `model` (its fastserve.toml replaced), pinned to core 0, in alternating
    rounds at the same open-loop rate from core 1: server CPU per request (median over rounds), p50 and p99."""
    import shutil
    import tempfile

    from benchmarks.loadgen import open_loop

    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        cpu: dict[str, list[float]] = {name: [] for name in configs}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
        try:
            for name, config in configs.items():
                folder = Path(tmp) / name
                shutil.copytree(ROOT / "models" / model, folder / model)
                (folder / model / "fastserve.toml").write_text(config)
                servers[name] = start_fastserve(folder, 0)
            pin_self(1)
            for _ in range(rounds):
                for name, server in servers.items():
                    before = server.cpu_seconds()
                    summary = open_loop(server.port, raws, rate, seconds).summary()
                    cpu[name].append((server.cpu_seconds() - before) / max(1, summary["ok"]) * 1e6)
                    runs[name].append(summary)
        finally:
            for server in servers.values():
                server.stop()
    out: dict[str, Any] = {"rate": rate, "seconds_per_round": seconds, "rounds": rounds}
    for name in configs:
        out[name] = {"cpu_us_per_request": float(np.median(cpu[name])),
                     "p50_ms": float(np.median([r["p50_ms"] for r in runs[name]])),
                     "p99_ms": float(np.median([r["p99_ms"] for r in runs[name]])),
                     "ok": int(sum(r["ok"] for r in runs[name])), "sent": int(sum(r["sent"] for r in runs[name]))}
    return out


def churn_record_requests() -> list[bytes]:
    """One-record JSON predicts to the bundled churn model, one per golden record."""
    records = json.loads((ROOT / "models" / "churn" / "1" / "validation_records.json").read_text())
    return [Client.build("POST", "/v1/models/churn/predict", json.dumps({"records": [record]}).encode())
            for record in records]


def rate_parser(doc: str | None) -> Any:
    """The arguments of a benchmark with an in-process part and an HTTP part at one open-loop rate."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=1500.0, help="one-row requests per second (default 1500)")
    return parser
