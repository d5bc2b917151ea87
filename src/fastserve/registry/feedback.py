"""Ground truth for a model's answers: each answer kept in the model's store under its request id, labels joined to
them later, and the joined rows scored by their version's quality monitor.

With worker processes the answers are kept where they were made (each worker's store) and scored in the supervisor:
`take_labels` runs in every worker, `score_labels` where the monitors report from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fastserve.exceptions import InvalidInput
from fastserve.quality.monitor import LabelError
from fastserve.quality.store import EXPIRED, JOINED, REPEATED, UNKNOWN, Joined, Store
from fastserve.registry.models import LoadedModel, LoadedVersion

OUTCOMES = (JOINED, UNKNOWN, EXPIRED, REPEATED)
LISTED = 100  # ids not joined, named in the answer


def keep_answer(model: LoadedModel, version: int, request_id: str, outputs: dict[str, np.ndarray]) -> None:
    """The request path's one step here: keep what the version answered under the request's id."""
    store, options = model.store, model.config.feedback
    if store is None or store.options is not options:
        if store is None or store.options != options:  # (a changed [feedback]: the answers kept so far go)
            store = model.store = Store(options, _width(outputs))
        store.options = options  # (the same settings in a config applied again)
    store.put(request_id, version, outputs)


def _width(outputs: dict[str, np.ndarray]) -> int:
    probabilities = outputs.get("probabilities")
    if probabilities is not None:
        return int(np.asarray(probabilities).reshape(len(probabilities), -1).shape[1])
    return 1 if "prediction" in outputs or "variable" in outputs else 0


def take_labels(model: LoadedModel, ids: list[str]) -> tuple[list[str], list[Joined]]:
    """This process's outcome for each id, and the rows it joined (taken out of its store)."""
    if model.store is None:
        return [UNKNOWN] * len(ids), []
    return model.store.join(ids)


def merge_outcomes(answers: list[tuple[list[str], list[Joined]]], count: int) -> tuple[list[str], list[Joined]]:
    """Several processes' `take_labels` for the same ids as one: an id joined anywhere is joined (once), else the
    most telling outcome (expired, then repeated, then unknown)."""
    rank = {JOINED: 3, EXPIRED: 2, REPEATED: 1, UNKNOWN: 0}
    outcomes = [UNKNOWN] * count
    joined: list[Joined] = []
    taken = np.zeros(count, bool)
    for answer, rows in answers:
        for i, outcome in enumerate(answer):
            if rank[outcome] > rank[outcomes[i]] and outcome != JOINED:
                outcomes[i] = outcome
        for part in rows:
            keep = ~taken[part.places]
            if keep.any():
                taken[part.places[keep]] = True
                joined.append(Joined(part.version, part.predicted[keep], part.scores[keep], part.places[keep]))
    for i in np.flatnonzero(taken).tolist():
        outcomes[i] = JOINED
    return outcomes, joined


def check_labels(model: LoadedModel, labels: list[Any]) -> None:
    """Refuse the whole feedback, before any id is taken, when a label cannot be scored: its type, or a class the
    model does not have."""
    monitor = next((v.quality for v in _by_recency(model) if v.quality is not None), None)
    if monitor is None:
        raise InvalidInput(f"model {model.name!r} has no version that can be scored on labels (its outputs are "
                           "neither classes nor a prediction) - at `$.labels`", detail={"path": "$.labels"})
    for i, value in enumerate(labels):
        try:
            monitor.check_label(value, i)
        except LabelError as exc:
            raise InvalidInput(f"{exc} - at `$.labels[{i}]`", detail={"path": f"$.labels[{i}]"}) from None


def _by_recency(model: LoadedModel) -> list[LoadedVersion]:
    primary = model.primary
    rest = sorted((v for v in model.versions.values() if v is not primary), key=lambda v: -v.number)
    return [primary, *rest] if primary is not None else rest


def score_labels(model: LoadedModel, joined: list[Joined], labels: list[Any]) -> None:
    """The joined rows into their versions' quality monitors."""
    for part in joined:
        version = model.versions.get(part.version)
        if version is None or version.quality is None:
            continue
        version.quality.add(part.predicted, part.scores, [labels[i] for i in part.places.tolist()])


@dataclass(frozen=True, slots=True)
class FeedbackAnswer:
    """What became of a feedback's ids: counted by outcome, and the first ones not joined with theirs."""

    model: str
    received: int
    counts: dict[str, int]  # by outcome, in OUTCOMES' order
    not_joined: list[tuple[str, str]]  # (id, outcome)

    def as_json(self) -> dict[str, Any]:
        return {"model": self.model, "received": self.received, **self.counts,
                "not_joined": [{"id": key, "outcome": outcome} for key, outcome in self.not_joined]}


def feedback_answer(model: LoadedModel, ids: list[str], outcomes: list[str]) -> FeedbackAnswer:
    """The feedback's answer, its outcomes counted in the model's (with workers: the supervisor's)."""
    counts = {outcome: 0 for outcome in OUTCOMES}
    for outcome in outcomes:
        counts[outcome] += 1
    model.feedback_ids.update(counts)
    missed = [(key, outcome) for key, outcome in zip(ids, outcomes, strict=True) if outcome != JOINED][:LISTED]
    return FeedbackAnswer(model.name, len(ids), counts, missed)
