"""The store of answers awaiting labels: joins by id and `id:row`, outcomes, the memory budget, the time to live."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fastserve.config import FeedbackOptions
from fastserve.quality.store import EXPIRED, JOINED, REPEATED, UNKNOWN, Store


def _outputs(n: int, label: int = 1) -> dict[str, np.ndarray]:
    p = np.tile(np.array([[0.25, 0.75]], np.float32), (n, 1))
    return {"label": np.full(n, label, np.int64), "probabilities": p}


def test_a_label_joins_the_row_its_id_names_once() -> None:
    store = Store(FeedbackOptions(), width=2)
    store.put("one", 1, _outputs(1))
    store.put("three", 2, _outputs(3, label=0))
    outcomes, joined = store.join(["three:2", "one", "three", "three:5", "nobody", "one", "three:0"])
    assert outcomes == [JOINED, JOINED, UNKNOWN, UNKNOWN, UNKNOWN, REPEATED, JOINED]
    by_version = {j.version: j for j in joined}
    assert sorted(by_version) == [1, 2]
    assert by_version[1].places.tolist() == [1] and by_version[1].predicted.tolist() == [1]
    assert sorted(by_version[2].places.tolist()) == [0, 6] and by_version[2].predicted.tolist() == [0, 0]
    np.testing.assert_allclose(by_version[2].scores, [[0.25, 0.75]] * 2)
    assert store.join(["three:2"])[0] == [REPEATED]  # a label counts once, in a later feedback too


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_labels_of_any_integer_kind_are_kept_as_their_values(dtype: type) -> None:
    store = Store(FeedbackOptions(), width=2)
    store.put("a", 1, {"label": np.array([0, 1], dtype=dtype), "probabilities": np.eye(2, dtype=np.float64)})
    _, joined = store.join(["a:1", "a:0"])
    assert joined[0].predicted.tolist() == [1, 0]
    np.testing.assert_array_equal(joined[0].scores, [[0, 1], [1, 0]])


@pytest.mark.parametrize("name", ["prediction", "variable"])
def test_a_regressors_prediction_is_kept_as_its_score(name: str) -> None:
    store = Store(FeedbackOptions(), width=1)
    store.put("r", 3, {name: np.array([[2.5], [-1.0]], dtype=np.float32)})
    _, joined = store.join(["r:0", "r:1"])
    assert joined[0].version == 3
    np.testing.assert_array_equal(joined[0].scores.ravel(), [2.5, -1.0])


def test_string_labels_come_back_as_strings() -> None:
    store = Store(FeedbackOptions(), width=2)
    store.put("a", 1, {"label": np.array(["yes", "no"], dtype=object), "probabilities": np.zeros((2, 2))})
    _, joined = store.join(["a:1", "a:0"])
    assert joined[0].predicted.tolist() == ["no", "yes"]


def test_past_its_time_to_live_an_answer_is_expired() -> None:
    store = Store(FeedbackOptions(ttl_seconds=60.0), width=2)
    store.put("old", 1, _outputs(1))
    start = store.ring.where["old"]
    assert store.join(["old"], now=store.ring.times[start] + 61.0)[0] == [EXPIRED]
    assert store.join(["old"], now=store.ring.times[start] + 59.0)[0] == [JOINED]


def test_a_flood_of_unanswered_ids_stays_in_the_budget_and_late_labels_are_told_expired() -> None:
    budget = 1 << 20
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = Store(FeedbackOptions(max_bytes=budget), width=2)
        for i in range(60_000):  # (each id as long as a generated one)
            store.put(f"request-{i:08d}", 1, _outputs(1 + i % 3))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.nbytes <= budget
    assert held <= budget, f"the store holds {held} bytes, over its budget of {budget}"
    assert store.status().fell_out > 30_000
    outcomes, _ = store.join(["request-00000000", "request-00000001", "request-00059999:2"])
    assert outcomes == [EXPIRED, EXPIRED, JOINED]
    # An id never sent may be found in the filter of fallen ids (false positives): a few percent at most.
    never = store.join([f"never-sent-{i}" for i in range(2000)])[0]
    assert set(never) <= {UNKNOWN, EXPIRED} and never.count(EXPIRED) < 60, never.count(EXPIRED)


def test_a_request_written_over_in_part_is_dropped_whole() -> None:
    store = Store(FeedbackOptions(max_bytes=65536), width=2)
    big = store.capacity // 2 + 1
    store.put("big", 1, _outputs(big))
    store.put("next", 1, _outputs(big))  # does not fit after "big": wraps to the start, over "big"
    assert store.join(["big:0", f"big:{big - 1}", "next:0"])[0] == [EXPIRED, EXPIRED, JOINED]


def test_sampled_out_answers_are_counted_not_kept() -> None:
    store = Store(FeedbackOptions(sample=0.0), width=2)
    store.put("a", 1, _outputs(1))
    assert store.counts["sampled_out"] == 1 and store.join(["a"])[0] == [UNKNOWN]


def test_a_store_holds_what_its_answers_need_not_its_budget() -> None:
    """A server of a thousand models keeps a store for each: one answer in each of 1,000 stores with the default
    4 MiB budget holds a few MB in all, not the budgets (the filter of fallen ids is made when the first falls out)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        stores = [Store(FeedbackOptions(), width=2) for _ in range(1000)]
        for store in stores:
            store.put("one", 1, _outputs(1))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 10 << 20, f"1,000 stores with an answer each hold {held / 2**20:.0f} MiB"
    assert all(s.nbytes < 8192 for s in stores)


def test_a_changed_feedback_config_gets_a_store_of_its_own_and_an_unchanged_one_keeps_it() -> None:
    from dataclasses import replace
    from pathlib import Path

    from fastserve.config import ModelConfig
    from fastserve.registry.feedback import keep_answer
    from fastserve.registry.models import LoadedModel

    model = LoadedModel("m", ModelConfig(name="m"), Path("/nowhere"))
    keep_answer(model, 1, "a", _outputs(1))
    first = model.store
    model.config = replace(model.config, feedback=FeedbackOptions())  # applied again, the same settings
    keep_answer(model, 1, "b", _outputs(1))
    assert model.store is first and first is not None and first.join(["a"])[0] == [JOINED]
    model.config = replace(model.config, feedback=FeedbackOptions(max_bytes=1 << 20))
    keep_answer(model, 1, "c", _outputs(1))
    assert model.store is not first and model.store is not None and model.store.options.max_bytes == 1 << 20
    assert model.store.join(["b", "c"])[0] == [UNKNOWN, JOINED]
