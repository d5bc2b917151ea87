"""What keeping answers for their labels costs: the store's step on the request path, a feedback's join, and the
share of a request's server CPU through HTTP.

    python -m benchmarks.bench_feedback [--quick]

1. In-process: `Store.put` for answers of 1 and 64 rows of a two-class model (label and probabilities) in a store
   that is full (every put writes over the oldest answer and remembers its id), per request and per row; `join` of a
   feedback of 1,000 labels (parsed, joined, scored), per label.
2. Through HTTP: the bundled churn model with answers kept and not (`[feedback] enabled = false`), one server
   each, in alternating rounds at the same open-loop rate of one-record JSON requests: server CPU per request and its
   ratio.
"""

from __future__ import annotations

import itertools

import numpy as np

from benchmarks._harness import (
    alternate_configs,
    churn_record_requests,
    machine,
    rate_parser,
    time_cases,
    write_results,
)
from fastserve.config import FeedbackOptions, QualityOptions
from fastserve.http.feedback import parse_feedback
from fastserve.quality.measures import CLASSIFICATION
from fastserve.quality.monitor import QualityMonitor
from fastserve.quality.store import Store


def in_process(repeats: int, seconds: float) -> dict:
    rng = np.random.default_rng(0)
    out: dict = {}
    for rows in (1, 64):
        p = rng.dirichlet([1, 1], rows).astype(np.float32)
        outputs = {"label": p.argmax(axis=1).astype(np.int64), "probabilities": p}
        store = Store(FeedbackOptions(max_bytes=1 << 20), width=2)
        ids = [f"{0x5eed0000:08x}{i:08x}" for i in range(200_000)]
        for key in ids[:20_000]:  # full: from here every put writes over the oldest answers
            store.put(key, 1, outputs)
        taken = itertools.cycle(ids)  # (an id comes back long after it fell out of the store)
        ns = float(np.median(time_cases({"put": lambda s=store, o=outputs, t=taken: lambda: s.put(next(t), 1, o)},
                                        repeats, seconds)["put"]))
        out[f"put_ns_{rows}_rows"] = ns
        out[f"put_ns_per_row_{rows}_rows"] = ns / rows
    store = Store(FeedbackOptions(max_bytes=16 << 20), width=2)
    p = rng.dirichlet([1, 1], 1).astype(np.float32)
    outputs = {"label": p.argmax(axis=1).astype(np.int64), "probabilities": p}
    monitor = QualityMonitor(CLASSIFICATION, QualityOptions(window_rows=10**9), "bench", None, [0, 1])
    ids = [f"req-{i}" for i in range(200_000)]
    for key in ids:
        store.put(key, 1, outputs)
    batches = iter(range(0, 200_000, 1000))  # (200 feedbacks: more than the timing takes)

    def feedback() -> None:
        start = next(batches)
        body = {"ids": ids[start:start + 1000], "labels": [1] * 1000}
        keys, labels = parse_feedback(body)
        _, joined = store.join(keys)
        for part in joined:
            monitor.add(part.predicted, part.scores, [labels[i] for i in part.places.tolist()])

    out["feedback_ns_per_label"] = float(np.median(time_cases({"join": lambda: feedback}, 3, 0.02)["join"])) / 1000
    return out


def main(argv: list[str] | None = None) -> int:
    args = rate_parser(__doc__).parse_args(argv)
    repeats, seconds, rounds, run_s = (3, 0.05, 2, 2.0) if args.quick else (7, 0.2, 5, 4.0)
    local = in_process(repeats, seconds)
    print(f"Store.put (full store, evicting): {local['put_ns_1_rows']:.0f} ns for a 1-row answer, "
          f"{local['put_ns_64_rows']:.0f} ns for 64 rows ({local['put_ns_per_row_64_rows']:.0f} ns/row)")
    print(f"feedback of 1,000 labels (parse, join, score): {local['feedback_ns_per_label']:.0f} ns per label")
    raws = churn_record_requests()
    http = alternate_configs("churn", {"kept": "", "not kept": "[feedback]\nenabled = false\n"}, raws,
                             args.rate, run_s, rounds)
    for name in ("kept", "not kept"):
        h = http[name]
        print(f"answers {name:>8}: {h['cpu_us_per_request']:.1f} us CPU per request, p50 {h['p50_ms']:.2f} ms, "
              f"p99 {h['p99_ms']:.2f} ms ({h['ok']}/{h['sent']} ok)")
    http["cpu_ratio_kept_over_not"] = http["kept"]["cpu_us_per_request"] / http["not kept"]["cpu_us_per_request"]
    print(f"CPU per request, kept / not kept: {http['cpu_ratio_kept_over_not']:.3f}")
    path = write_results("feedback", {"machine": machine(), "in_process": local, "http": http})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
