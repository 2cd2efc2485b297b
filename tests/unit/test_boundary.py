"""No PynamoDB or botocore exception escapes the SDK; an unreachable endpoint fails fast."""

from __future__ import annotations

import inspect
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from dynacron import At, Every, Scheduler
from dynacron.errors import (
    BackendError,
    ConfigurationError,
    ConflictError,
    DynacronError,
    EndpointUnreachable,
    InvalidStateError,
)
from dynacron.settings import Settings


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _dead_endpoint(port: int, **overrides: Any) -> Scheduler:
    url = f"http://127.0.0.1:{port}"
    settings = Settings(table_name="t", queue_url=f"{url}/q", endpoint_url=url, **overrides)
    return Scheduler(settings=settings)


def test_an_unreachable_endpoint_is_ours_within_seconds(closed_port):
    s = _dead_endpoint(closed_port)
    began = time.monotonic()
    with pytest.raises(EndpointUnreachable) as info:
        s.get("x")
    elapsed = time.monotonic() - began
    # 3 attempts (sdk_max_retries=2) with botocore's jittered backoff of ≤ 1 s and ≤ 2 s
    assert elapsed < 6, f"took {elapsed:.1f}s"
    assert info.value.operation == "GetItem" and isinstance(info.value, ConnectionError)
    assert "EndpointConnectionError" in str(info.value)


def test_the_retry_count_is_a_setting(closed_port):
    s = _dead_endpoint(closed_port, sdk_max_retries=0)
    began = time.monotonic()
    with pytest.raises(EndpointUnreachable):
        s.get("x")
    assert time.monotonic() - began < 1.5  # one attempt, no backoff


def test_settings_read_timeouts_and_retries_from_the_environment():
    env = {
        "DYNACRON_CONNECT_TIMEOUT_SECONDS": "0.5",
        "DYNACRON_READ_TIMEOUT_SECONDS": "3",
        "DYNACRON_SDK_MAX_RETRIES": "1",
    }
    s = Settings.from_env(env)
    assert (s.connect_timeout_s, s.read_timeout_s, s.sdk_max_retries) == (0.5, 3.0, 1)
    assert s.for_sdk().max_retries == 1 and s.max_retries == 8  # the Lambdas keep theirs
    with pytest.raises(ConfigurationError):
        Settings.from_env({"DYNACRON_CONNECT_TIMEOUT_SECONDS": "0"})


def test_the_clients_use_the_settings():
    from dynacron.aws import sqs_client
    from dynacron.store import bind_models

    settings = Settings(table_name="t", connect_timeout_s=0.7, read_timeout_s=4, max_retries=1)
    meta = bind_models(settings).Task.Meta
    assert (meta.connect_timeout_seconds, meta.read_timeout_seconds) == (0.7, 4)
    assert meta.max_retry_attempts == 1
    config = sqs_client(settings).meta.config
    assert config.connect_timeout == 0.7
    assert config.read_timeout >= 20  # never shorter than a long poll
    assert config.retries["total_max_attempts"] == 2  # botocore counts the first attempt


def test_a_wrong_queue_url_is_reported_before_anything_is_written(env):
    from dataclasses import replace

    bad = env.settings.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    s = Scheduler(settings=replace(env.settings, queue_url=bad), clock=env.clock, sqs=env.sqs)
    with pytest.raises(ConfigurationError, match="DYNACRON_QUEUE_URL"):
        s.schedule("job", {}, trigger=At(env.clock.now() + timedelta(seconds=5)), task_id="a")
    assert env.table_items() == []
    # a task far ahead does not need the queue now: it is stored, the poller sends it
    s.schedule("job", {}, trigger=At(env.clock.now() + timedelta(hours=5)), task_id="b")
    with pytest.raises(ConfigurationError, match="no-such-queue"):
        s.trigger_now("b")


def test_the_queue_is_checked_once_per_scheduler(env):
    calls: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(env.sqs, name)

    s = Scheduler(settings=env.settings, clock=env.clock, sqs=Counting())
    for i in range(3):
        s.schedule("job", {}, trigger=At(env.clock.now() + timedelta(seconds=5)), task_id=f"t{i}")
    assert calls.count("get_queue_attributes") == 1
    assert calls.count("send_message_batch") == 3


# --- every public method, with every backend call failing in turn ---------------------------

FAILURES = [
    ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Any"),
    ClientError(
        {"Error": {"Code": "ConditionalCheckFailedException", "Message": "lost"}}, "UpdateItem"
    ),
    ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "Any"),
    EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
]


def _calls(s: Scheduler, run_id: str) -> dict[str, Any]:
    """One call of each public method (a new public method must be added here)."""
    soon = At(s.clock.now() + timedelta(seconds=5))
    return {
        "schedule": lambda: s.schedule("job", {}, trigger=soon, task_id="new"),
        "get": lambda: s.get("a"),
        "list": lambda: list(s.list()),
        "runs": lambda: s.runs("a"),
        "get_run": lambda: s.get_run("a", run_id),
        "wait": lambda: s.wait("a", run_id, timeout=0),
        "stats": lambda: s.stats(),
        "pause": lambda: s.pause("a"),
        "resume": lambda: s.resume("a"),
        "cancel": lambda: s.cancel("c"),
        "trigger_now": lambda: s.trigger_now("a"),
        "dead_letters": lambda: s.dead_letters(),
        "redrive": lambda: s.redrive("a", run_id),
        "redrive_all": lambda: s.redrive_all(),
        "update": lambda: s.update("a", payload={"n": 2}),
        "delete": lambda: s.delete("d"),
        "find_runs": lambda: s.find_runs(timedelta(hours=1), status="dead"),
        "set_limit": lambda: s.set_limit("smtp", rate="5/s"),
        "get_limit": lambda: s.get_limit("smtp"),
        "limits": lambda: s.limits(),
        "clear_limit": lambda: s.clear_limit("smtp"),
        "items_for": lambda: s.items_for("job", {}, soon),
    }


def _public(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if not n.startswith("_") and inspect.isfunction(v)}


def test_no_backend_exception_escapes_any_public_method(env, monkeypatch):
    s = env.scheduler()
    for task_id in ("a", "c", "d"):
        s.schedule("job", {}, trigger=Every(60), task_id=task_id)
    run_id = s.runs("a")[0].run_id
    calls = _calls(s, run_id)
    assert _public(Scheduler) <= calls.keys(), "add the new public method to _calls"
    real = BaseClient._make_api_call
    state = {"n": 0, "fail_at": 0, "exc": FAILURES[0]}

    def failing(self: Any, operation: str, params: Any) -> Any:
        state["n"] += 1
        if state["n"] == state["fail_at"]:
            raise state["exc"]
        return real(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", failing)
    seen: set[type] = set()
    for name in sorted(_public(Scheduler)):
        for exc in FAILURES:
            # fail the 1st backend call, then the 2nd, ... until the method gets through
            for k in range(1, 40):
                state.update(n=0, fail_at=k, exc=exc)
                try:
                    calls[name]()
                except DynacronError as err:
                    seen.add(type(err))
                except Exception as err:  # pragma: no cover - what this test is for
                    pytest.fail(f"{name} (call {k} fails with {exc!r}) raised {err!r}")
                if state["n"] < k:
                    break  # the method made fewer than k calls: every one of them was tried
    assert {BackendError, EndpointUnreachable} <= seen
    assert any(issubclass(t, InvalidStateError) for t in seen)


def test_a_lost_race_is_a_conflict_error():
    from pynamodb.exceptions import UpdateError

    from dynacron.boundary import translate

    cause = ClientError(
        {"Error": {"Code": "ConditionalCheckFailedException", "Message": "x"}}, "UpdateItem"
    )
    err = translate(UpdateError("failed", cause))
    assert isinstance(err, ConflictError) and isinstance(err, InvalidStateError)
