import numpy as np

from fastserve.bench.histogram import Histogram
from fastserve.bench.sink import sink as sink

ERROR_KINDS: tuple[str, ...]

class Trial:
    offered_rate: float
    duration_s: float
    sent: int                  # requests due in the trial: each answered or counted in errors
    written: int               # requests actually written to a connection
    answered: int              # a whole HTTP response read
    statuses: dict[int, int]   # answered, by status code
    errors: dict[str, int]     # refused, timeout, reset, closed, other, dropped (past max_in_flight)
    latency: Histogram         # intended send time -> last byte of the answer (ns)
    send_lag: Histogram        # the generator's own lag: when the request could go -> its write (ns), see engine.pyx
    conn_wait: Histogram       # intended send time -> a connection free for it (ns; counted in latency)
    elapsed_s: float           # first intended send -> last answer or timeout
    cpu_s: float               # this process's CPU during the trial
    spin_s: float              # of which busy-polling before intended sends
    cpu_wait_s: float          # time the generator was ready to run but other processes had its CPU (NaN: unknown)
    records: dict[str, np.ndarray] | None  # with run_trial(record=N): intended_ns, latency_ns, status, send_lag_ns
    def __init__(self, *, offered_rate: float, duration_s: float, sent: int, written: int, answered: int,
                 statuses: dict[int, int], errors: dict[str, int], latency: Histogram, send_lag: Histogram,
                 conn_wait: Histogram, elapsed_s: float, cpu_s: float, spin_s: float,
                 cpu_wait_s: float = ..., records: dict[str, np.ndarray] | None = ...) -> None: ...
    def achieved_rate(self) -> float: ...
    def reliable(self, bound_us: float = 100.0) -> bool: ...
    def busy_cpu_s(self) -> float: ...

def run_trial(host: str, port: int, requests: list[bytes], rate: float, duration_s: float, *,
              connections: int = 64, poisson: bool = True, timeout_ms: float = 10_000.0, seed: int = 0,
              max_in_flight: int | None = None, record: int = 0, warm: bool = False) -> Trial: ...

def machine_gaps(seconds: float = 1.0, threshold_us: float = 10.0) -> dict[str, float]: ...
