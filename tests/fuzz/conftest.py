"""Fuzz tests: bounded hypothesis runs of the targets in `targets.py`. A hang fails the run instead of stalling it."""

from __future__ import annotations

import faulthandler
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings

HANG_S = 120  # far above any one test here; a test still running then is stuck


def fuzz_settings(max_examples: int, deadline_s: float = 2.0) -> settings:
    """Bounded examples, and a deadline per example, so a slow path fails instead of passing quietly."""
    return settings(max_examples=max_examples, deadline=timedelta(seconds=deadline_s),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    """A deadline only fires when an example returns; a loop that never returns would stall the suite. Past HANG_S
    the process prints every thread's stack and exits, so the hang is seen and located."""
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session", autouse=True)
def models_loaded() -> None:
    """The targets' models load once, before any example runs: a first example must not pay for it against its
    deadline."""
    from tests.fuzz import targets

    targets.churn_session()
    targets.double_session()
    for strict in (False, True):
        targets.churn_transform(strict)
