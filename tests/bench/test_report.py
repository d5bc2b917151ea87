"""The report: the table, the JSON file of every trial, and plots that decode to the expected size."""

import json

import matplotlib.image
import numpy as np
import pytest

from fastserve.bench import report
from fastserve.bench.histogram import Histogram
from fastserve.bench.results import Result, merge, summary


def result(rate: float, median_ms: float, seed: int = 0, errors: int = 0) -> Result:
    rng = np.random.default_rng(seed)
    latency, lag = Histogram(), Histogram()
    for ms in rng.lognormal(np.log(median_ms), 0.5, size=2000):
        latency.record(int(ms * 1e6))
    for us in rng.exponential(10, size=2000):
        lag.record(int(us * 1e3))
    return Result(rate, 2.0, 2000 + errors, 2000 + errors, {200: 2000, **({503: errors} if errors else {})},
                  {}, latency, lag, 2.01, 0.4, {"requests": 2000, "batch_rows_mean": 1.3, "cpu_us_per_request": 210.0,
                                                 "refusals": {"shed_queue_full": errors}})


def rows() -> list[report.Row]:
    out = []
    for server, scale in (("fastserve", 1.0), ("other", 2.5)):
        for i, rate in enumerate((500.0, 1000.0, 2000.0)):
            r = result(rate, scale * (1 + i), seed=i, errors=3 if rate == 2000 else 0)
            out.append(report.Row(server, "sweep", r, [] if i < 2 else ["p99 30 ms > 10 ms"]))
    return out


def test_table_and_details_name_every_trial():
    text = report.table(rows())
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["server", "step", "offered/s", "achieved/s"] and len(lines) == 2 + 6
    assert "FAIL" in lines[-1] and "pass" in lines[2] and "1.3" in lines[2]
    notes = report.details(rows())
    assert any("status 503: 3" in n and "server refused shed_queue_full: 3" in n for n in notes)


def test_json_holds_every_trial(tmp_path):
    path = tmp_path / "results.json"
    trials = [{"server": r.server, **summary(r.result, 100.0), "latency_histogram": r.result.latency.to_dict()}
              for r in rows()]
    report.write_json(path, {"trials": trials})
    back = json.loads(path.read_text())["trials"]
    assert len(back) == 6 and back[0]["sent"] == 2000 and back[-1]["statuses"] == {"200": 2000, "503": 3}
    assert Histogram.from_dict(back[0]["latency_histogram"]).count == 2000
    assert 0.9 < back[0]["latency_ms"]["p50"] < 1.1


@pytest.mark.parametrize(("servers", "panels"), [(("fastserve",), 2), (("fastserve", "other"), 3)])
def test_png_decodes_at_the_expected_size(tmp_path, servers, panels):
    chosen = [r for r in rows() if r.server in servers]
    picks = {s: merge([r.result for r in chosen if r.server == s], side_by_side=False) for s in servers}
    path = tmp_path / "report.png"
    report.plot(path, chosen, picks, {"p99": 10.0}, best={"fastserve": 1000.0, "other": 500.0})
    image = matplotlib.image.imread(path)
    width, height = report.PANEL_IN[0] * report.DPI * panels, report.PANEL_IN[1] * report.DPI
    assert image.shape[:2] == (height, width) and image.std() > 0.05  # drawn, not blank


def test_html_embeds_each_plot(tmp_path):
    path = tmp_path / "report.html"
    picks = {"fastserve": rows()[0].result, "other": rows()[3].result}
    report.plot(path, rows(), picks, {"p99": 10.0}, text="the <table>")
    page = path.read_text()
    assert page.count('src="data:image/png;base64,') == 3 and "the &lt;table&gt;" in page
