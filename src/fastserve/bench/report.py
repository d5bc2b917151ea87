"""What `fastserve bench` hands a person: the final table, the JSON file of every trial, and the plots (latency
percentiles against offered rate with the SLO drawn, a latency histogram, the servers side by side), as one PNG or
one HTML file with the PNGs inside."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastserve.bench.results import Result, merge

PANEL_IN = (6.4, 4.8)  # inches per panel
DPI = 100
_PLOTTED = ("p50", "p99", "p99.9")
_STYLES = {"p50": "-", "p99": "--", "p99.9": ":"}
_MARKERS = {"p50": "o", "p99": "s", "p99.9": "^"}


@dataclass
class Row:
    """One trial as reported: on which server, in what part of the run, and its verdict (None: no SLO to judge)."""

    server: str
    step: str  # "rate", "sweep", "search", "round 2", ...
    result: Result
    failures: list[str] | None = None
    unreliable: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        mark = "!" if self.unreliable else ""
        return ("-" if self.failures is None else "pass" if not self.failures else "FAIL") + mark


def _ms(value: float) -> str:
    if value != value:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def table(rows: Sequence[Row]) -> str:
    """Every trial, one line each: rates, counts, latency percentiles, the generator's lag and CPU, the server's
    mean batch size, mean queue wait and CPU per request where it said, and the verdict."""
    head = ["server", "step", "offered/s", "achieved/s", "sent", "errors", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
            "p99.99 ms", "max ms", "lag p99 us", "gen cpu s", "batch", "queue ms", "srv us/req", "verdict"]
    lines = [head]
    for row in rows:
        r, side = row.result, row.result.server_side or {}
        batch, per_request, wait = (side.get("batch_rows_mean"), side.get("cpu_us_per_request"),
                                    side.get("queue_wait_ms_mean"))
        lines.append([row.server, row.step, f"{r.offered_rate:,.0f}", f"{r.achieved_rate():,.0f}", f"{r.sent:,}",
                      f"{r.error_ratio:.2%}", *(_ms(r.latency_ms(k)) for k in ("p50", "p90", "p99", "p99.9",
                                                                                 "p99.99", "max")),
                      f"{r.send_lag_us(99):,.0f}", f"{r.cpu_s:.2f}", f"{batch:.1f}" if batch else "-",
                      _ms(wait) if wait is not None else "-",
                      f"{per_request:,.0f}" if per_request else "-", row.verdict])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
           for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def details(rows: Sequence[Row]) -> list[str]:
    """The lines under the table: errors by status and kind, the server's refusals, what failed."""
    out = []
    for row in rows:
        r, side = row.result, row.result.server_side or {}
        what = []
        bad = {k: v for k, v in r.statuses.items() if k != 200}
        if bad:
            what.append("status " + ", ".join(f"{k}: {v:,}" for k, v in sorted(bad.items())))
        lost = {k: v for k, v in r.errors.items() if v}
        if lost:
            what.append("no answer " + ", ".join(f"{k}: {v:,}" for k, v in sorted(lost.items())))
        if side.get("refusals"):
            what.append("server refused " + ", ".join(f"{k}: {v:,}" for k, v in sorted(side["refusals"].items())))
        if row.failures:
            what.append("fails: " + "; ".join(row.failures))
        what.extend(row.notes)
        if what:
            out.append(f"{row.server} {row.step} {r.offered_rate:,.0f}/s: " + "; ".join(what))
    return out


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, allow_nan=False, default=_plain) + "\n", encoding="utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def by_rate(rows: Sequence[Row]) -> dict[str, list[tuple[float, Result]]]:
    """Each server's trials at each offered rate merged into one, in rate order."""
    grouped: dict[str, dict[float, list[Result]]] = {}
    for row in rows:
        grouped.setdefault(row.server, {}).setdefault(round(row.result.offered_rate, 6), []).append(row.result)
    return {server: [(rate, merge(rs, side_by_side=False)) for rate, rs in sorted(rates.items())]
            for server, rates in grouped.items()}


def _log_scale(axis: Any) -> None:
    """A log axis labelled in plain numbers at 1, 2 and 5 of each decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _latency_panel(ax: Any, rows: Sequence[Row], slo_ms: Mapping[str, float],
                   best: Mapping[str, float] | None) -> None:
    series = by_rate(rows)
    top = 0.0
    for i, (server, points) in enumerate(series.items()):
        rates = [rate for rate, _ in points]
        top = max(top, *rates)
        for name in _PLOTTED:
            values = [r.latency_ms(name) for _, r in points]
            ax.plot(rates, values, _STYLES[name], marker=_MARKERS[name], color=f"C{i}", markersize=5,
                    label=f"{server} {name}" if len(series) > 1 else name)
            if len(points) <= 3:  # too few points for a line to show: the values themselves
                for rate, value in zip(rates, values, strict=True):
                    ax.annotate(f"{_ms(value)} ms", (rate, value), xytext=(4, 4), textcoords="offset points",
                                fontsize=7, color=f"C{i}")
    for name, bound in slo_ms.items():
        ax.axhline(bound, color="red", linewidth=1, alpha=0.7)
        ax.annotate(f"SLO {name} {bound:g} ms", (0.01, bound), xycoords=("axes fraction", "data"), color="red",
                    fontsize=8, va="bottom")
    for i, rate in enumerate((best or {}).values()):
        if rate > 0:
            ax.axvline(rate, color=f"C{i}", linewidth=1, alpha=0.6)
            ax.annotate(f"highest within SLO {rate:,.0f}/s", (rate, 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=7, color=f"C{i}", ha="right", va="bottom")
    ax.set_xlim(0, top * 1.15 if top > 0 else 1)
    ax.set_yscale("log")
    _log_scale(ax.yaxis)
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("latency from intended send (ms)")
    ax.set_title("Latency percentiles by offered rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _histogram_panel(ax: Any, picks: Mapping[str, Result]) -> None:
    """The latency distribution, from the histogram's quantiles: 2,000 of equal probability, binned on a log scale."""
    quantiles = np.linspace(0.025, 99.975, 2000)
    samples = {s: np.array([r.latency.percentile(q) for q in quantiles]) / 1e6
               for s, r in picks.items() if r.latency.count}
    if not samples:
        ax.text(0.5, 0.5, "no answers", ha="center", transform=ax.transAxes)
        return
    low = max(min(v.min() for v in samples.values()), 1e-3)
    high = max(max(v.max() for v in samples.values()), low * 1.01)
    bins = np.geomspace(low, high, 60)
    for i, (server, values) in enumerate(samples.items()):
        r = picks[server]
        counts, _ = np.histogram(np.clip(values, low, high), bins=bins)
        ax.stairs(counts / len(values), bins, color=f"C{i}", fill=len(samples) == 1, alpha=0.6,
                  label=f"{server} at {r.offered_rate:,.0f}/s (n={r.latency.count:,})")
        ax.axvline(r.latency_ms("p99"), color=f"C{i}", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    _log_scale(ax.xaxis)
    ax.set_xlabel("latency (ms); dashed: p99")
    ax.set_ylabel("share of requests")
    ax.set_title("Latency histogram")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _compare_panel(ax: Any, picks: Mapping[str, Result], best: Mapping[str, float] | None) -> None:
    servers = list(picks)
    if best:
        values = [best.get(s, 0.0) for s in servers]
        bars = ax.bar(servers, values, color=[f"C{i}" for i in range(len(servers))])
        ax.bar_label(bars, labels=[f"{v:,.0f}/s" for v in values], fontsize=8)
        ax.set_ylabel("highest rate within the SLO (requests/s)")
        ax.set_title("Servers side by side: capacity")
        return
    x = np.arange(len(_PLOTTED))
    width = 0.8 / len(servers)
    for i, server in enumerate(servers):  # each server in its colour of the other panels
        values = [picks[server].latency_ms(name) for name in _PLOTTED]
        bars = ax.bar(x + (i - (len(servers) - 1) / 2) * width, values, width, color=f"C{i}", label=server)
        ax.bar_label(bars, labels=[_ms(v) for v in values], fontsize=7)
    ax.set_xticks(x, list(_PLOTTED))
    ax.set_ylabel("latency (ms)")
    rates = sorted({round(picks[s].offered_rate) for s in servers})
    ax.set_title("Servers side by side at " + ", ".join(f"{r:,}/s" for r in rates))
    ax.legend(fontsize=7)


def _figures(rows: Sequence[Row], picks: Mapping[str, Result], slo_ms: Mapping[str, float],
             best: Mapping[str, float] | None, together: bool) -> list[Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    panels: list[Any] = [lambda ax: _latency_panel(ax, rows, slo_ms, best), lambda ax: _histogram_panel(ax, picks)]
    if len(picks) > 1:
        panels.append(lambda ax: _compare_panel(ax, picks, best))
    if together:
        fig = Figure(figsize=(PANEL_IN[0] * len(panels), PANEL_IN[1]), dpi=DPI, layout="constrained")
        for draw, ax in zip(panels, fig.subplots(1, len(panels)), strict=True):
            draw(ax)
        return [fig]
    figures = []
    for draw in panels:
        fig = Figure(figsize=PANEL_IN, dpi=DPI, layout="constrained")
        draw(fig.subplots())
        figures.append(fig)
    return figures


def plot(path: Path, rows: Sequence[Row], picks: Mapping[str, Result], slo_ms: Mapping[str, float],
         best: Mapping[str, float] | None = None, text: str = "") -> None:
    """`path` .png: the panels side by side in one image; .html: each panel's PNG inside one page, with `text` (the
    table) under them. `picks`: each server's trial for the histogram and the side by side panel."""
    if path.suffix.lower() == ".png":
        _figures(rows, picks, slo_ms, best, together=True)[0].savefig(path, format="png", dpi=DPI)
        return
    images = []
    for fig in _figures(rows, picks, slo_ms, best, together=False):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        images.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    body = "\n".join(f'<img alt="plot {i + 1}" src="data:image/png;base64,{data}">' for i, data in enumerate(images))
    path.write_text(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>fastserve bench</title>\n<style>body{font-family:"
        "sans-serif;margin:1.5em}img{max-width:100%;margin:0 1em 1em 0}pre{font-size:12px;overflow-x:auto}</style>"
        f"</head>\n<body><h1>fastserve bench</h1>\n{body}\n<pre>{html.escape(text)}</pre>\n</body></html>\n",
        encoding="utf-8")
