"""``dynacron local --pollers N``: the fan-out at small scale, on the embedded server.

Each poller loop polls only its own group of shards, so the loops never race for a run: every
run is claimed exactly once, with no lost race, and each by the loop that owns its shard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from dynacron import At, Scheduler
from dynacron.dispatch import Dispatcher

RUNS = 30


@pytest.fixture
def polls(monkeypatch) -> list[tuple[tuple[int, ...], dict[str, int]]]:
    """Every ``Dispatcher.poll`` the runtime makes: (its shards, its report)."""
    seen: list[tuple[tuple[int, ...], dict[str, int]]] = []
    lock = threading.Lock()
    poll = Dispatcher.poll

    def recording(self: Dispatcher, time_left: Any = None, shards: Any = None) -> Any:
        report = poll(self, time_left, shards)
        with lock:
            seen.append((tuple(shards) if shards is not None else (), report.as_dict()))
        return report

    monkeypatch.setattr(Dispatcher, "poll", recording)
    return seen


@pytest.fixture
def runtime(polls) -> Iterator[Any]:
    from dynacron.local.runtime import LocalRuntime

    rt = LocalRuntime(port=0, shards=6, pollers=3, handlers=["dynacron.examples"])
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()


def test_three_poller_loops_each_claim_only_their_shards(runtime, polls):
    assert runtime.poller_groups == [[0, 1], [2, 3], [4, 5]]
    names = {t.name for t in threading.enumerate()}
    assert {f"dynacron-local-poller-{i}" for i in range(3)} <= names
    # No queue for the SDK: only the poller loops send (no short-notice dispatch).
    sdk = Scheduler(settings=replace(runtime.settings, queue_url=None))
    at = At(sdk.clock.now() + timedelta(seconds=2))
    ids = [sdk.schedule("send-email", {"to": f"u{i}@example.com"}, trigger=at).task_id
           for i in range(RUNS)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = [r.status.value for t in ids for r in sdk.runs(t)]
        if statuses.count("succeeded") == RUNS or "dead" in statuses:
            break
        time.sleep(0.25)
    assert statuses.count("succeeded") == RUNS, statuses
    grouped = [p for p in polls if p[0]]
    assert {p[0] for p in grouped} == {(0, 1), (2, 3), (4, 5)}
    # only start()'s warm-up poll reads every shard, before any run exists
    assert [r["found"] for s, r in polls if not s] == [0]
    assert sum(r["claimed"] for _, r in grouped) == RUNS
    assert sum(r["lost_races"] for _, r in grouped) == 0
    assert {r["shards"] for _, r in grouped} == {2}
