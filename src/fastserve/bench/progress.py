"""The live progress line of `fastserve bench`, on standard error: rewritten in place on a terminal, one line per
finished trial elsewhere, nothing with --quiet."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """What is running (server, rate), its figures so far (p50, p99, errors) and the time left. The time left is of
    the trial, and of the whole run when its length is known (`planned_s`)."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, planned_s: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.planned_s = planned_s
        self._start = time.monotonic()
        self._trial: tuple[str, float, float, float] | None = None  # server, rate, started, length
        self._figures = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.live:
            self._ticker = threading.Thread(target=self._tick, name="bench-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._write("")

    def trial(self, server: str, rate: float, length_s: float) -> None:
        """A trial starts."""
        with self._lock:
            self._trial = (server, rate, time.monotonic(), length_s)
            self._figures = ""
        self._write(self._line())

    def update(self, summary: dict[str, Any], finished: bool) -> None:
        """Figures of the trial so far (results.summary); `finished`: the trial is over."""
        lat = summary["latency_ms"]
        figures = (f"achieved {summary['achieved_rps']:,.0f}/s  p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  "
                   f"errors {summary['errors']:,} ({summary['error_ratio']:.2%})")
        if summary["unreliable"]:
            figures += f"  send lag p99 {summary['send_lag_us']['p99']:,.0f} us!"
        with self._lock:
            self._figures = figures
        if finished and self.enabled and not self.live:
            print(self._line(done=True), file=self.stream, flush=True)
        else:
            self._write(self._line())

    def _line(self, done: bool = False) -> str:
        with self._lock:
            if self._trial is None:
                return ""
            server, rate, started, length = self._trial
            now = time.monotonic()
            parts = [f"{server}  offered {rate:,.0f}/s", self._figures]
            if not done:
                parts.append(f"trial left {_duration(started + length - now)}")
            if self.planned_s is not None:
                parts.append(f"run left ~{_duration(self._start + self.planned_s - now)}")
        return "  ".join(p for p in parts if p)

    def _write(self, line: str) -> None:
        if self.live:
            width = 160
            self.stream.write("\r\x1b[2K" + line[:width])
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._write(self._line())

    def note(self, text: str) -> None:
        """A line of its own (a warning, the search's verdict on a rate), kept above the progress line."""
        if self.enabled:
            self._write("")
            print(text, file=self.stream, flush=True)
