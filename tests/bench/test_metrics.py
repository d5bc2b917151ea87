"""The server's side of a trial, from fastserve's /metrics read before and after."""

import httpx

from fastserve.bench import metrics
from fastserve.bench.target import parse_url

ROW = {"inputs": [[0.5] * 22]}


def test_what_the_server_counted_between_two_scrapes(server):
    target = parse_url(server.url)
    before = metrics.scrape(target)
    for _ in range(5):
        assert httpx.post(server.url + "/v1/models/spend/predict", json=ROW).status_code == 200
    assert httpx.post(server.url + "/v1/models/spend/predict", json={"inputs": [[0.5] * 21]}).status_code == 422
    # Another model, not counted in the requests; enough of them that the server's CPU, which its metric counts in
    # ticks of 10 ms, surely moves between the scrapes.
    with httpx.Client() as client:
        for _ in range(300):
            client.post(server.url + "/v1/models/churn_mlp/predict", json=ROW)
    side = metrics.server_side(before, metrics.scrape(target), ["spend"])
    assert side["requests"] == 6 and side["requests_by_status"] == {"200": 5, "422": 1}
    assert side["batches"] == 5 and side["batch_rows_mean"] == 1.0 and side["batch_rows_p99_le"] == 1.0
    assert side["queue_wait_ms_mean"] is not None and side["refusals"] == {}
    assert side["cpu_s"] > 0 and side["cpu_us_per_request"] == side["cpu_s"] / 6 * 1e6


def test_process_cpu_from_proc(server):
    assert metrics.process_cpu_seconds(server.proc.pid) > 0
