"""When to retry and how long to wait: the retry policy and one call's attempts under its deadline. No I/O:
the sync and async clients send and sleep, so both follow exactly the same rules."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from fastserve.client.exceptions import ConnectionFailed, DeadlineExceeded, FastserveClientError, Overloaded
from fastserve.client.wire import error

TIMEOUT_HEADER = "x-request-timeout-ms"


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on 429 and 503 (and, unless turned off, on connection failures), at most `max_retries` after the
    first attempt, never past the call's deadline. Any other error answer is raised at once.

    The wait before retry `n` (0 for the first) is the server's Retry-After, when it sent one, plus full jitter:
    a uniform draw in [0, min(backoff_max, backoff_base * 2**n)]. Retry-After alone would send every client the
    server refused at one moment back at one moment; the jitter spreads them out."""

    max_retries: int = 3
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    retry_connection_errors: bool = True
    respect_retry_after: bool = True
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)  # in [0, 1)

    def __post_init__(self) -> None:
        if type(self.max_retries) is not int or self.max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        if not 0 <= self.backoff_base <= self.backoff_max:
            raise ValueError(f"expected 0 <= backoff_base <= backoff_max, got backoff_base={self.backoff_base!r} "
                             f"and backoff_max={self.backoff_max!r}")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (0 for the first)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** min(retry, 64))
        wait = self.random() * ceiling
        if retry_after is not None and self.respect_retry_after:
            wait += retry_after
        return wait


class Call:
    """One call: its deadline, its attempts, and what each failure leads to (a wait, or the error raised)."""

    def __init__(self, method: str, path: str, policy: RetryPolicy, timeout: float | None,
                 connect_timeout: float | None, retries: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.method = method
        self.path = path
        self.request = f"{method} {path}"  # for messages
        self.policy = policy
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.clock = clock
        self.deadline = None if timeout is None else clock() + timeout
        self.attempts = 0
        self.last_error: FastserveClientError | None = None

    def begin(self) -> float | None:
        """Count an attempt; the seconds left before the deadline (None without one). DeadlineExceeded when none
        are left."""
        self.attempts += 1
        if self.deadline is None:
            return None
        left = self.deadline - self.clock()
        if left <= 0:
            exc = self._late()
            exc.attempts = self.attempts - 1
            raise exc from self.last_error
        return left

    def _late(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"{self.request}: no answer within the {self.timeout:g} s timeout")

    def headers(self, headers: Mapping[str, str], left: float | None) -> dict[str, str]:
        """`headers`, with the time left as X-Request-Timeout-Ms so that the server sheds work that could no longer
        be answered in time."""
        out = dict(headers)
        if left is not None:
            out[TIMEOUT_HEADER] = f"{left * 1000:.6g}"
        return out

    def httpx_timeout(self, left: float | None) -> httpx.Timeout:
        """Connect within `connect_timeout` (a refused or silent address is then retried while time is left);
        each read, write and wait for a pooled connection within the time left."""
        connect = self.connect_timeout
        if left is not None:
            connect = left if connect is None else min(left, connect)
        return httpx.Timeout(left, connect=connect)

    def failed(self, exc: httpx.TransportError) -> FastserveClientError:
        """The client's error for a transport failure."""
        out_of_time = self.deadline is not None and self.clock() >= self.deadline
        if isinstance(exc, httpx.TimeoutException) and (out_of_time or not isinstance(exc, httpx.ConnectTimeout)):
            late = self._late()
            late.__cause__ = exc
            return late
        what = str(exc) or exc.__class__.__name__
        failure = ConnectionFailed(f"{self.request}: cannot reach the server: {what}")
        failure.__cause__ = exc
        return failure

    def refused(self, answer: httpx.Response) -> FastserveClientError:
        """The client's error for an error answer."""
        return error(answer.status_code, answer.headers.get("content-type"), answer.content,
                     answer.headers.get("retry-after"), self.request)

    def wait(self, exc: FastserveClientError) -> float:
        """Seconds to wait before the next attempt; raises `exc` when it is not to be retried."""
        self.last_error = exc
        exc.attempts = self.attempts
        retryable = self.retries and (isinstance(exc, Overloaded) or (
            isinstance(exc, ConnectionFailed) and self.policy.retry_connection_errors))
        if not retryable:
            raise exc
        if self.attempts > self.policy.max_retries:
            raise exc.stopped(self.attempts, f"gave up after {self.attempts} attempts: max_retries is "
                                             f"{self.policy.max_retries}")
        retry_after = exc.retry_after if isinstance(exc, Overloaded) else None
        wait = self.policy.delay(self.attempts - 1, retry_after)
        if self.deadline is not None and self.clock() + wait >= self.deadline:
            raise exc.stopped(self.attempts, f"gave up after {self.attempts} attempts: the next, in {wait:.3g} s, "
                                             f"would start past the {self.timeout:g} s timeout")
        return wait
