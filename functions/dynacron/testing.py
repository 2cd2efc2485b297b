"""Test your handlers and schedules in your own pytest suite: no servers, no waiting.

>>> with dynacron.testing.local() as env:          # or the pytest fixture ``dynacron_env``
...     t = env.scheduler.schedule("send-email", {"to": "a@b.c"}, trigger=Every(60))
...     env.advance(120)                             # runs what falls due, synchronously
...     env.scheduler.runs(t.task_id)

``local()`` provisions the table and queues of ``template.yaml`` on in-process moto (no
network, no AWS account) and gives a ``Scheduler`` whose clock stands still until
``advance(seconds)`` moves it. ``advance`` then plays the deployment forward: at each instant
something falls due it runs the real poller (``dispatch.Dispatcher.poll``) and hands each
message that becomes visible to the real worker (``execute.Executor.execute``), in the order
SQS would, so retries with their backoff, timeouts, misfire policies and the DLQ behave as
deployed. Virtual time is exact: a run due at 09:30:00 starts at 09:30:00.000 on the clock.

What is not virtual: a handler runs for real, on a thread, so a ``timeout`` is wall-clock
time (use ``timeout=0.2`` to test a timeout, not 30 s) and a handler that sleeps sleeps.

``Scheduler.wait`` in this environment advances virtual time instead of sleeping, so
``env.scheduler.wait(task_id, timeout=120)`` returns as soon as the next run has finished.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from . import registry
from .clock import FrozenClock, to_ms
from .errors import ValidationError
from .settings import Settings
from .types import Run, RunContext, to_seconds

#: The longest hide the fake event source asks of SQS: the 12 h visibility maximum.
_HIDE_S = 43_200
#: Shards of the test deployment: one query per poll (the poller's code is the same for N).
_SHARDS = 1
_MAX_STEPS = 100_000


@dataclass
class _Held:
    """A message the fake event source has received and not deleted."""

    message_id: str
    body: str
    receipt: str
    visible_at: datetime
    seq: int
    url: str


class VirtualQueue:
    """The real (moto) SQS client, with delays and visibility kept on the frozen clock.

    moto applies ``DelaySeconds`` and visibility timeouts on the wall clock, which a frozen clock
    cannot move; this wrapper forwards messages without them and remembers, per message, the
    instant (on the clock) at which SQS would make it visible.
    """

    def __init__(self, client: Any, clock: FrozenClock) -> None:
        self._client = client
        self.clock = clock
        self.visible_at: dict[str, datetime] = {}  # MessageId -> instant on the clock
        self._receipts: dict[str, str] = {}  # ReceiptHandle -> MessageId

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        now = self.clock.now()
        delays = {e["Id"]: int(e.get("DelaySeconds", 0)) for e in Entries}
        stripped = [{k: v for k, v in e.items() if k != "DelaySeconds"} for e in Entries]
        resp = self._client.send_message_batch(QueueUrl=QueueUrl, Entries=stripped)
        for ok in resp.get("Successful", []):
            self.visible_at[ok["MessageId"]] = now + timedelta(seconds=delays[ok["Id"]])
        return resp

    def receive_message(self, **kwargs: Any) -> Any:
        resp = self._client.receive_message(**kwargs)
        for m in resp.get("Messages", []):
            self._receipts[m["ReceiptHandle"]] = m["MessageId"]
        return resp

    def change_message_visibility(
        self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int
    ) -> Any:
        mid = self._receipts.get(ReceiptHandle)
        if mid is not None:
            self.visible_at[mid] = self.clock.now() + timedelta(seconds=VisibilityTimeout)
        return self._client.change_message_visibility(
            QueueUrl=QueueUrl, ReceiptHandle=ReceiptHandle, VisibilityTimeout=0
        )

    def change_message_visibility_batch(
        self, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> Any:
        for e in Entries:
            mid = self._receipts.get(e["ReceiptHandle"])
            if mid is not None:
                self.visible_at[mid] = self.clock.now() + timedelta(seconds=e["VisibilityTimeout"])
        zeroed = [{**e, "VisibilityTimeout": 0} for e in Entries]
        return self._client.change_message_visibility_batch(QueueUrl=QueueUrl, Entries=zeroed)


class _AdvancingClock:
    """The Scheduler's clock in a test environment: ``sleep`` plays virtual time forward."""

    def __init__(self, env: TestEnv) -> None:
        self._env = env

    def now(self) -> datetime:
        return self._env.clock.now()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._env.advance(seconds)

    def sleep_until_change(self, seconds: float) -> None:
        """Play up to ``seconds`` forward, stopping as soon as a run finishes."""
        if seconds > 0:
            self._env.advance(seconds, stop_on_finish=True)


@dataclass
class TestEnv:
    """One isolated dynacron deployment on in-process moto with a frozen clock.

    ``scheduler`` is a ``Scheduler`` bound to it; ``dispatcher`` and ``executor`` are the
    poller's and the worker's objects that ``advance`` drives.
    """

    __test__ = False  # not a pytest test class, whatever its name

    settings: Settings
    clock: FrozenClock
    sqs: VirtualQueue
    dispatcher: Any = None
    executor: Any = None
    scheduler: Any = None
    _held: dict[str, _Held] = field(default_factory=dict)
    _seq: Iterator[int] = field(default_factory=itertools.count)
    _finished: list[tuple[str, str]] = field(default_factory=list)
    _advancing: bool = False

    # --- time --------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The current instant on the environment's clock (aware, UTC)."""
        return self.clock.now()

    def advance(self, seconds: float | timedelta, *, stop_on_finish: bool = False) -> list[Run]:
        """Move the clock forward by ``seconds``, running every run that falls due meanwhile.

        Returns the runs that reached a final state (succeeded, dead, skipped, expired) during
        the call, in the order they did. Handlers run synchronously on this thread's watch;
        the call returns once the clock stands at ``now() + seconds`` with nothing left due
        (or, with ``stop_on_finish``, at the instant the first run finishes).
        """
        step = to_seconds(seconds, "seconds")
        if step < 0:
            raise ValidationError("seconds", f"must be ≥ 0, got {step:g}")
        if self._advancing:
            raise RuntimeError("advance() called from a handler: virtual time cannot nest")
        end = self.clock.now() + timedelta(seconds=step)
        self._advancing = True
        start = len(self._finished)
        try:
            self._play_until(end, start if stop_on_finish else None)
        finally:
            self._advancing = False
        return [self.scheduler.get_run(t, r) for t, r in self._finished[start:]]

    def _play_until(self, end: datetime, stop_after: int | None = None) -> None:
        polled_at: datetime | None = None
        for _ in range(_MAX_STEPS):
            if stop_after is not None and len(self._finished) > stop_after:
                return
            # The poller claims by time: a second poll at the same instant finds nothing new
            # (the SDK dispatches what it creates for "now" itself), so poll when time moved.
            if polled_at != self.clock.now():
                polled_at = self.clock.now()
                self.dispatcher.poll()
            self._collect()
            ready = self._next_ready()
            if ready is not None and ready.visible_at <= self.clock.now():
                self._deliver(ready)
                continue
            nxt = self._next_event(end, ready)
            if nxt is None:
                self.clock.set(max(self.clock.now(), end))
                return
            self.clock.set(nxt)
        raise RuntimeError(f"advance() did not settle in {_MAX_STEPS} steps")

    def _next_event(self, end: datetime, ready: _Held | None) -> datetime | None:
        """The earliest instant ≤ ``end`` at which a message becomes visible or a run (or a
        lease) falls due in the index; None when nothing happens before ``end``."""
        now_ms, end_ms = to_ms(self.clock.now()), to_ms(end)
        times = [to_ms(ready.visible_at)] if ready is not None else []
        for shard in range(self.settings.shards):
            due = self.dispatcher.store.next_due(shard, now_ms, end_ms)
            if due is not None:
                times.append(due)
        times = [t for t in times if t <= end_ms]
        if not times:
            return None
        from .clock import ms_to_datetime

        return ms_to_datetime(max(min(times), now_ms + 1))

    # --- the fake event source ---------------------------------------------------------------

    def _collect(self) -> None:
        """Receive everything on the work queue(s) into ``_held`` (hidden from SQS meanwhile)."""
        for url in self._queue_urls():
            while True:
                got = self.sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=_HIDE_S,
                    WaitTimeSeconds=0,
                ).get("Messages", [])
                if not got:
                    break
                for m in got:
                    when = self._ready_at(m)
                    old = self._held.get(m["MessageId"])
                    seq = old.seq if old is not None else next(self._seq)
                    self._held[m["MessageId"]] = _Held(
                        m["MessageId"], m["Body"], m["ReceiptHandle"], when, seq, url
                    )

    def _ready_at(self, message: dict[str, Any]) -> datetime:
        """When the worker would start on ``message``: once visible, and not before its run's
        time (a message may be visible up to a second early; the worker waits the rest, so
        the clock is moved there first and ``advance`` never runs a run due after its end)."""
        from .clock import ms_to_datetime
        from .dispatch import Message

        visible = self.sqs.visible_at.get(message["MessageId"], self.clock.now())
        try:
            return max(visible, ms_to_datetime(Message.parse(message["Body"]).scheduled_for))
        except ValidationError:
            return visible  # the worker dead-letters it when it comes

    def _queue_urls(self) -> list[str]:
        return list(self.settings.all_queues)

    def _next_ready(self) -> _Held | None:
        if not self._held:
            return None
        return min(self._held.values(), key=lambda h: (h.visible_at, h.seq))

    def _deliver(self, held: _Held) -> None:
        url = held.url
        result = self.executor.execute(held.body, held.receipt, url)
        if result.outcome.value == "ack":
            del self._held[held.message_id]
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=held.receipt)
        else:  # retry or return: the executor set its visibility, so _collect receives it
            del self._held[held.message_id]  # again (a new receipt), visible at that instant

    def _on_event(self, kind: str, info: dict[str, Any]) -> None:
        if kind in ("succeeded", "dead", "skipped", "expired") and "run_id" in info:
            self._finished.append((info["task_id"], info["run_id"]))

    # --- handlers ------------------------------------------------------------------------------

    def run_handler(
        self,
        task_type: str,
        payload: dict[str, Any] | None = None,
        *,
        attempt: int = 1,
        task_id: str = "test-task",
        run_id: str | None = None,
        scheduled_for: datetime | None = None,
        timeout: float | timedelta = 60,
    ) -> Any:
        """Call the handler registered for ``task_type`` once, with a real ``RunContext``.

        Returns what the handler returns and raises what it raises (nothing is written to the
        table). ``idempotency_key`` is derived from ``task_id`` and ``run_id`` as the worker
        derives it; ``deadline`` is ``now() + timeout``.
        """
        from .execute import idempotency_key
        from .store import manual_run_id

        func = registry.get(task_type)
        if func is None:
            known = ", ".join(registry.names()) or "none"
            raise ValidationError("task_type", f"no handler {task_type!r} (registered: {known})")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValidationError("attempt", f"must be an integer ≥ 1, got {attempt!r}")
        now = self.clock.now()
        run_id = run_id or manual_run_id(to_ms(now), secrets.token_hex(3))
        ctx = RunContext(
            task_id=task_id,
            run_id=run_id,
            attempt=attempt,
            scheduled_for=scheduled_for or now,
            idempotency_key=idempotency_key(task_id, run_id),
            deadline=now + timedelta(seconds=to_seconds(timeout, "timeout")),
            task_type=task_type,
        )
        # A JSON round trip, as the worker does: the handler gets what it would in the cloud.
        return func(json.loads(json.dumps({} if payload is None else payload)), ctx)

    # --- the dead-letter queue -----------------------------------------------------------------

    def dead_letters(self) -> list[dict[str, Any]]:
        """The records on the DLQ (decoded JSON), oldest first; they stay on the queue."""
        out: dict[str, dict[str, Any]] = {}
        handles = []
        dlq_url = self.settings.dlq_url
        assert dlq_url is not None, "local() provisions the DLQ"
        while True:
            got = self.sqs.receive_message(
                QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=_HIDE_S
            ).get("Messages", [])
            if not got:
                break
            for m in got:
                out[m["MessageId"]] = json.loads(m["Body"])
                handles.append(m["ReceiptHandle"])
        for handle in handles:
            self.sqs.change_message_visibility(
                QueueUrl=dlq_url, ReceiptHandle=handle, VisibilityTimeout=0
            )
        return list(out.values())


@contextmanager
def local(
    start: datetime | None = None,
    *,
    handlers: Iterable[str] = (),
    shards: int = _SHARDS,
    prefix: str = "dynacron-test",
    fast_moto: bool | None = None,
    **settings: Any,
) -> Iterator[TestEnv]:
    """A dynacron deployment on in-process moto for one test; see the module docstring.

    ``start`` is where the clock starts (aware datetime; default: now, on a whole second).
    ``handlers`` are modules to import for their ``@handler``s. Other keyword arguments
    override ``Settings`` fields (e.g. ``lease_s=60``). Needs the ``[local]`` extra (moto);
    provisions from dynacron's own ``template.yaml`` (shipped in the package; see
    ``local.provision.find_template``), never one in the working directory.

    ``fast_moto`` (default: on, unless ``$DYNACRON_TESTING_STOCK_MOTO=1``) applies
    ``dynacron.local.motofix`` to moto in this process, as ``dynacron local`` does in its server:
    fixes to what moto's answers cost, never to what they are (stock moto copies the whole table
    on every transaction, so a claim costs more with every run in the table). It is global and
    stays for the rest of the process, for other moto users in the same test run too.
    """
    from .local import require_local

    require_local("dynacron.testing", modules=("moto",))
    import boto3
    from moto import mock_aws

    from .dispatch import Dispatcher
    from .execute import Executor
    from .local.provision import find_template, load_template, provision
    from .sdk import Scheduler
    from .store import Store

    if start is not None and start.tzinfo is None:
        raise ValidationError("start", "must be an aware datetime (naive datetimes are refused)")
    registry.load(handlers)
    if fast_moto is None:
        fast_moto = os.environ.get("DYNACRON_TESTING_STOCK_MOTO", "") not in ("1", "true")
    if fast_moto:
        from .local.motofix import patch_moto

        patch_moto()
    clock = FrozenClock(start or datetime.now(UTC).replace(microsecond=0))
    template = load_template(find_template())
    with mock_aws():
        region = "us-east-1"
        dynamodb = boto3.client("dynamodb", region_name=region)
        sqs = boto3.client("sqs", region_name=region)
        res = provision(dynamodb, sqs, template, prefix=prefix)
        conf = replace(
            Settings(region=region, shards=shards),
            table_name=res.table_name,
            queue_url=res.queue_url,
            dlq_url=res.dlq_url,
            **settings,
        )
        env = TestEnv(conf, clock, VirtualQueue(sqs, clock))
        # One claim at a time: in-process moto is not safe under concurrent transactions.
        env.dispatcher = Dispatcher(Store(conf), env.sqs, conf, clock=clock, concurrency=1)
        env.executor = Executor(
            Store(conf), env.sqs, conf, clock=clock, rand=lambda: 0.0, on_event=env._on_event
        )
        env.scheduler = Scheduler(settings=conf, clock=_AdvancingClock(env), sqs=env.sqs)
        yield env
