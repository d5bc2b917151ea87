"""`fastserve bench` against a real server: what it says it sent is what the server counted."""

import json

import httpx

from fastserve.bench.metrics import parse
from fastserve.cli import main


def requests_counted(url: str) -> dict[str, float]:
    samples = parse(httpx.get(url + "/metrics").text)
    out: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if name == "fastserve_requests_total":
            model = dict(labels)["model"]
            out[model] = out.get(model, 0.0) + value
    return out


def test_counts_equal_the_servers_own(server, tmp_path):
    before = requests_counted(server.url)
    out = tmp_path / "results.json"
    assert main(["bench", server.url, "--model", "churn_mlp,spend", "--mix", "zipf:1.1", "--rate", "300",
                 "--duration", "1", "--format", "tensor", "--out", str(out), "--quiet"]) == 0
    after = requests_counted(server.url)
    doc = json.loads(out.read_text())
    (trial,) = doc["trials"]
    assert trial["server"] == f"127.0.0.1:{server.port}" and trial["step"] == "rate"
    sent = {m: after.get(m, 0) - before.get(m, 0) for m in ("churn_mlp", "spend")}
    assert trial["sent"] == sum(sent.values()) == trial["server_side"]["requests"] > 200
    assert trial["statuses"] == {"200": trial["sent"]} and trial["errors"] == 0
    assert trial["server_side"]["requests_by_model"] == {m: int(n) for m, n in sent.items()}
    assert sent["churn_mlp"] > sent["spend"]  # zipf: the first named gets the larger share
    assert trial["latency_ms"]["p50"] > 0 and "p99" in trial["send_lag_us"] and trial["generator_cpu_s"] > 0


def test_processes_and_v2_binary_with_an_html_report(server, tmp_path):
    before = requests_counted(server.url)
    out, page = tmp_path / "results.json", tmp_path / "report.html"
    assert main(["bench", server.url, "--model", "spend", "--protocol", "v2-binary", "--sweep", "100,200",
                 "--duration", "0.5", "--procs", "2", "--connections", "8", "--slo", "p99=1s", "--out", str(out),
                 "--plot", str(page), "--quiet"]) == 0
    trials = json.loads(out.read_text())["trials"]
    assert [t["offered_rps"] for t in trials] == [100, 200] and all(t["passed"] for t in trials)
    assert sum(t["sent"] for t in trials) == requests_counted(server.url)["spend"] - before.get("spend", 0)
    assert page.read_text().count("data:image/png;base64,") == 2
