"""The self-test's search, in miniature (the real one takes tens of seconds: `python -m fastserve.bench.selftest`)."""

import sys

import pytest

from fastserve.bench.selftest import one_row_request, self_test

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the generator needs epoll (Linux)")


def test_one_row_request_is_whole():
    raw = one_row_request()
    head, body = raw.split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/models/") and f"Content-Length: {len(body)}".encode() in head
    assert body.count(b",") == 21


def test_search_reports_every_trial_and_the_ceiling_among_them():
    result = self_test(0.3, start_rps=2_000, limit_rps=4_000, bisections=1, lag_bound_us=10_000)
    trials = result["trials"]
    assert trials and all(t["sent"] > 0 and t["offered_rps"] in (1_000, 2_000, 3_000, 4_000) for t in trials)
    passed = [t["offered_rps"] for t in trials if t["pass"]]
    assert result["ceiling_rps"] == max(passed, default=0.0)
    if passed:
        assert result["send_lag_p99_us"] < 10_000 and result["cpu_per_request_us"] > 0
    assert result["pinned"] == (result["generator_core"] is not None)
    gaps = result["core_gaps"]  # what the machine takes from a thread spinning on the generator's core
    assert 0 <= gaps["share"] < 1 and gaps["per_s"] >= 0 and 0 <= gaps["p50_us"] <= gaps["p99_us"] <= gaps["max_us"]
