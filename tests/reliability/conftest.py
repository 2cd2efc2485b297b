"""Reliability fixtures: two emulators on loopback, one fresh deployment per test, the report.

``backend`` is parametrized over moto's threaded server and ministack (started once per session,
only if a selected test needs it). ``dep`` provisions the template's table and queues under a
unique prefix and deletes them afterwards. ``figures`` prints the one line of figures each test
owes (past pytest's capture) and appends it to ``.pytest-results/reliability.jsonl`` (ignored by
git: a run's figures are not source; the README's table is the record).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dynacron import handler
from dynacron.clock import FrozenClock
from helpers.backends import STARTERS, Server
from helpers.harness import Deployment, Ledger, ProcessCrash

REPORT = Path(__file__).resolve().parents[2] / ".pytest-results" / "reliability.jsonl"
BACKENDS = ["moto", "ministack"]
#: The frozen clocks start at the real present: ministack (like DynamoDB) deletes items whose
#: TTL (``expires_at``, set on finished runs) has passed on the real clock.
T0 = datetime.now(UTC).replace(microsecond=0)

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log


# --- handlers (registered once; each test gets a fresh ledger and behaviour table) --------------


class Behaviour:
    """What the ``rel-*`` handlers do, keyed by the run's task_id; reset per test."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.clock: Any = None  # the true clock, to stamp handler starts
        self.fail_attempts: dict[str, set[int]] = {}  # task_id -> attempts that raise
        self.crash_attempts: dict[str, set[int]] = {}  # task_id -> attempts that kill the worker
        self.sleep_s: float = 0.0


CURRENT = Behaviour()


@handler("rel-ok")
def _rel_ok(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    b = CURRENT
    b.ledger.record(ctx, b.clock.now() if b.clock is not None else None)
    if b.sleep_s:
        time.sleep(b.sleep_s)
    if ctx.attempt in b.crash_attempts.get(ctx.task_id, set()):
        raise ProcessCrash(f"worker process died running {ctx.run_id} attempt {ctx.attempt}")
    if ctx.attempt in b.fail_attempts.get(ctx.task_id, set()):
        raise RuntimeError(f"injected failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@pytest.fixture
def behaviour() -> Iterator[Behaviour]:
    global CURRENT
    CURRENT = Behaviour()
    yield CURRENT


@pytest.fixture
def ledger(behaviour: Behaviour) -> Ledger:
    return behaviour.ledger


@pytest.fixture
def crash_aware(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``ProcessCrash`` raised in a handler kill the calling worker thread.

    ``run_with_timeout`` runs the handler in its own thread and turns any exception into a
    failed attempt; a real process death ends the worker instead. This wrapper re-raises the
    crash in the worker's thread so nothing after it (no write, no ack) runs.
    """
    from dynacron import execute

    real = execute.run_with_timeout

    def run(func: Any, payload: Any, ctx: Any, timeout_s: float) -> Any:
        crashed: list[BaseException] = []

        def guarded(p: Any, c: Any) -> Any:
            try:
                return func(p, c)
            except ProcessCrash as exc:
                crashed.append(exc)
                raise

        out = real(guarded, payload, ctx, timeout_s)
        if crashed:
            raise crashed[0]
        return out

    monkeypatch.setattr(execute, "run_with_timeout", run)


# --- servers and deployments --------------------------------------------------------------------


class _Servers:
    def __init__(self) -> None:
        self.running: dict[str, Server] = {}

    def get(self, name: str) -> Server:
        if name not in self.running:
            self.running[name] = STARTERS[name]()
        return self.running[name]

    def stop(self) -> None:
        for server in self.running.values():
            server.stop()


@pytest.fixture(scope="session")
def servers() -> Iterator[_Servers]:
    s = _Servers()
    yield s
    s.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, servers: _Servers) -> Server:
    return servers.get(request.param)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def make_dep(
    backend: Server, clock: FrozenClock, behaviour: Behaviour
) -> Iterator[Callable[..., Deployment]]:
    made: list[Deployment] = []
    behaviour.clock = clock

    def make(**settings: Any) -> Deployment:
        settings.setdefault("shards", 4)
        dep = Deployment.create(backend.name, backend.url, clock, **settings)
        made.append(dep)
        return dep

    yield make
    for dep in made:
        dep.destroy()


@pytest.fixture
def dep(make_dep: Callable[..., Deployment]) -> Deployment:
    return make_dep()


# --- the figures line ---------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _fresh_report() -> None:
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text("")


@pytest.fixture
def figures(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> Callable[..., None]:
    started = time.monotonic()

    def emit(
        name: str, backend: str, runs: int, duplicates: int, lost: int, faults: int, **extra: Any
    ) -> None:
        seconds = round(time.monotonic() - started, 2)
        fields = {
            "name": name,
            "backend": backend,
            "runs": runs,
            "duplicates": duplicates,
            "lost": lost,
            "faults": faults,
            **extra,
            "seconds": seconds,
        }
        line = "RELIABILITY " + " ".join(f"{k}={v}" for k, v in fields.items() if k != "name")
        line = line.replace("RELIABILITY ", f"RELIABILITY {name} ", 1)
        with capsys.disabled():
            sys.stdout.write("\n" + line + "\n")
            sys.stdout.flush()
        with REPORT.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({**fields, "test": request.node.nodeid}) + "\n")

    return emit
