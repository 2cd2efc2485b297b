"""What the reliability suite drives dynacron with: deployments, a virtual-time SQS, faults.

* ``Deployment``: one isolated table + work queue + DLQ on a loopback backend, with factories for
  the SDK, pollers and workers that share (or deliberately skew) one frozen clock.
* ``VirtualSQS``: wraps a real SQS client for frozen-clock tests. The emulators apply
  ``DelaySeconds`` and visibility timeouts on the wall clock, which a frozen clock cannot move;
  the wrapper forwards messages without them and remembers, per message, the instant (on the
  frozen clock) at which SQS would make it visible. ``deliver()`` then hands messages to a worker
  in that order, moving the clock forward as SQS time would pass.
* ``Faults``: botocore ``before-send`` hooks that answer a chosen fraction of calls with the
  error AWS would send (throttling, 5xx, transaction conflicts). botocore's own retry logic sees
  a real error response, so the retry path under test is the production one.
* ``Ledger``: handler-side counters keyed by (task_id, run_id, attempt).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from botocore.awsrequest import AWSResponse

from dynacron.aws import sqs_client
from dynacron.clock import Clock, FrozenClock, to_ms
from dynacron.local.provision import Resources, find_template, load_template, provision
from dynacron.settings import Settings
from dynacron.store import RUN_PREFIX, RunRow, Store, run_sk, shard_of, task_pk

TEMPLATE = load_template(find_template())


class ProcessCrash(BaseException):
    """Raised to model a process that dies on the spot (nothing after it runs, nothing caught)."""


# --- handler-side ledger ------------------------------------------------------------------------


class Ledger:
    """Counts handler starts per (task_id, run_id, attempt); thread-safe."""

    def __init__(self) -> None:
        self.starts: Counter[tuple[str, str, int]] = Counter()
        self.lock = threading.Lock()
        self.start_times: dict[tuple[str, str, int], datetime] = {}

    def record(self, ctx: Any, when: datetime | None = None) -> int:
        key = (ctx.task_id, ctx.run_id, ctx.attempt)
        with self.lock:
            self.starts[key] += 1
            if when is not None:
                self.start_times.setdefault(key, when)
            return self.starts[key]

    def duplicates(self) -> int:
        """Extra starts beyond one per attempt."""
        with self.lock:
            return sum(n - 1 for n in self.starts.values() if n > 1)

    def runs_started(self) -> set[tuple[str, str]]:
        with self.lock:
            return {(t, r) for (t, r, _a) in self.starts}

    def attempts_of(self, task_id: str, run_id: str) -> list[int]:
        with self.lock:
            return sorted(a for (t, r, a) in self.starts if (t, r) == (task_id, run_id))


# --- virtual-time SQS ---------------------------------------------------------------------------


class VirtualSQS:
    """A real SQS client whose delays and visibility changes are kept on a (frozen) clock.

    ``send_message_batch`` forwards entries without ``DelaySeconds`` and records when each message
    would become visible; ``change_message_visibility`` records the new visible-at instant and
    makes the message visible at once on the real queue (``deliver`` holds it back until then).
    ``batch_hook(entries) -> (to_send, failed_ids, crash_after_send)`` can drop entries (a
    partial failure), raise before sending, or have the sender die right after sending a part.
    """

    def __init__(self, client: Any, clock: Clock, duplicate_sends: bool = False) -> None:
        self._client = client
        self.clock = clock
        self.duplicate_sends = duplicate_sends
        self.lock = threading.Lock()
        self.sent: list[dict[str, Any]] = []  # every entry SQS accepted (body, delay, queue)
        self.visible_at: dict[str, datetime] = {}  # MessageId -> instant on the clock
        self.receipts: dict[str, str] = {}  # ReceiptHandle -> MessageId
        self.visibility_requests: list[int] = []
        self.batch_hook: (
            Callable[[list[dict[str, Any]]], tuple[list[dict], list[str], bool]] | None
        ) = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        now = self.clock.now()
        entries, failed_ids, crash = list(Entries), [], False
        if self.batch_hook is not None:
            entries, failed_ids, crash = self.batch_hook(entries)
        delays = {e["Id"]: int(e.get("DelaySeconds", 0)) for e in entries}
        stripped = [{k: v for k, v in e.items() if k != "DelaySeconds"} for e in entries]
        resp: dict[str, Any] = {"Successful": [], "Failed": []}
        if stripped:
            resp = self._client.send_message_batch(QueueUrl=QueueUrl, Entries=stripped)
            if self.duplicate_sends:  # the same bodies again: an at-least-once duplicate
                self._client.send_message_batch(QueueUrl=QueueUrl, Entries=stripped)
        by_id = {e["Id"]: e for e in entries}
        with self.lock:
            for ok in resp.get("Successful", []):
                entry = by_id[ok["Id"]]
                self.visible_at[ok["MessageId"]] = now + timedelta(seconds=delays[ok["Id"]])
                self.sent.append({**entry, "QueueUrl": QueueUrl, "MessageId": ok["MessageId"]})
        if crash:
            raise ProcessCrash("the sender died after SendMessageBatch")
        failed = list(resp.get("Failed", [])) + [
            {"Id": i, "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for i in failed_ids
        ]
        return {"Successful": resp.get("Successful", []), "Failed": failed}

    def receive_message(self, **kwargs: Any) -> Any:
        resp = self._client.receive_message(**kwargs)
        with self.lock:
            for m in resp.get("Messages", []):
                self.receipts[m["ReceiptHandle"]] = m["MessageId"]
        return resp

    def change_message_visibility(
        self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int
    ) -> Any:
        with self.lock:
            self.visibility_requests.append(VisibilityTimeout)
            mid = self.receipts.get(ReceiptHandle)
            if mid is not None:
                self.visible_at[mid] = self.clock.now() + timedelta(seconds=VisibilityTimeout)
        return self._client.change_message_visibility(
            QueueUrl=QueueUrl, ReceiptHandle=ReceiptHandle, VisibilityTimeout=0
        )

    def sent_runs(self) -> Counter[tuple[str, str]]:
        """Messages SQS accepted, per (task_id, run_id)."""
        with self.lock:
            return Counter(_run_key(e["MessageBody"]) for e in self.sent)


def _run_key(body: str) -> tuple[str, str]:
    data = json.loads(body)
    return data["task_id"], data["run_id"]


def run_keys(messages: Iterable[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """Received messages per (task_id, run_id)."""
    return Counter(_run_key(m["Body"]) for m in messages)


# --- fault injection ----------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_kw: Any) -> Iterable[bytes]:
        yield self._body


def error_response(
    service: str, code: str, status: int, extra: dict[str, Any] | None = None
) -> AWSResponse:
    """An HTTP error response as the JSON protocol of DynamoDB / SQS sends it."""
    prefix = "com.amazonaws.dynamodb.v20120810#" if service == "dynamodb" else "com.amazonaws.sqs#"
    body = json.dumps({"__type": prefix + code, "message": "injected fault", **(extra or {})})
    headers = {
        "x-amzn-RequestId": uuid.uuid4().hex,
        "Content-Type": "application/x-amz-json-1.0",
        "Content-Length": str(len(body)),
    }
    if service == "sqs":
        headers["x-amzn-query-error"] = f"{code};Receiver"
    return AWSResponse("https://injected", status, headers, _Raw(body.encode()))


@dataclass
class FaultRule:
    service: str  # "dynamodb" or "sqs"
    operations: set[str] | None  # None = every operation
    rate: float
    choices: list[tuple[str, int]]  # (error code, HTTP status)
    transaction_conflict_rate: float = (
        0.0  # TransactWriteItems only: cancelled, TransactionConflict
    )


class Faults:
    """Answers a fraction of calls with an AWS error before they reach the server."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.rules: list[FaultRule] = []

    @property
    def total(self) -> int:
        return sum(self.injected.values())

    def add(self, rule: FaultRule) -> None:
        self.rules.append(rule)

    def attach(self, client: Any) -> Any:
        client.meta.events.register_first("before-send", self._before_send)
        return client

    def attach_store(self, store: Store) -> Store:
        """Both PynamoDB models of a Store have their own connection (and botocore client)."""
        for model in (store.models.Run, store.models.Task):
            self.attach(model._get_connection().connection.client)
        return store

    def _before_send(self, request: Any = None, **kwargs: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target", "")
        target = target.decode() if isinstance(target, bytes) else str(target)
        service = "dynamodb" if target.startswith("DynamoDB") else "sqs"
        operation = target.rsplit(".", 1)[-1]
        for rule in self.rules:
            if rule.service != service or (rule.operations and operation not in rule.operations):
                continue
            with self.lock:
                roll = self.rng.random()
                if operation == "TransactWriteItems" and roll < rule.transaction_conflict_rate:
                    items = json.loads(request.body)["TransactItems"]
                    reasons = [{"Code": "TransactionConflict", "Message": "injected"}] + [
                        {"Code": "None"} for _ in items[1:]
                    ]
                    self.injected[f"{service}:{operation}:TransactionConflict"] += 1
                    return error_response(
                        service,
                        "TransactionCanceledException",
                        400,
                        {"CancellationReasons": reasons},
                    )
                if roll < rule.transaction_conflict_rate + rule.rate:
                    code, status = rule.choices[self.rng.randrange(len(rule.choices))]
                    self.injected[f"{service}:{operation}:{code}"] += 1
                    return error_response(service, code, status)
        return None


def fast_botocore_backoff(monkeypatch: Any) -> None:
    """Keep botocore's retry decisions but shrink its sleeps (up to 20 s) to milliseconds."""
    from botocore.retries import standard

    original = standard.ExponentialBackoff.delay_amount
    monkeypatch.setattr(
        standard.ExponentialBackoff,
        "delay_amount",
        lambda self, context: min(original(self, context), 0.01),
    )


# --- a deployment -------------------------------------------------------------------------------


_counter = iter(range(1_000_000))


@dataclass
class Deployment:
    backend: str
    url: str
    resources: Resources
    settings: Settings
    ddb: Any
    sqs: Any
    clock: FrozenClock
    stores: list[Store] = field(default_factory=list)
    _reader: Store | None = None

    @classmethod
    def create(cls, backend: str, url: str, clock: FrozenClock, **settings: Any) -> Deployment:
        import boto3

        kw = {
            "endpoint_url": url,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        ddb = boto3.client("dynamodb", **kw)
        prefix = f"rel{next(_counter)}-{uuid.uuid4().hex[:6]}"
        base = Settings(endpoint_url=url, region="us-east-1")
        sqs = sqs_client(base)
        res = provision(ddb, sqs, TEMPLATE, prefix=prefix)
        full = replace(
            base,
            table_name=res.table_name,
            queue_url=res.queue_url,
            dlq_url=res.dlq_url,
            lane_queues=res.lane_queues,
            **settings,
        )
        return cls(backend, url, res, full, ddb, sqs, clock)

    def destroy(self) -> None:
        for call in (
            lambda: self.ddb.delete_table(TableName=self.resources.table_name),
            lambda: self.sqs.delete_queue(QueueUrl=self.resources.queue_url),
            lambda: self.sqs.delete_queue(QueueUrl=self.resources.dlq_url),
            *(
                (lambda url=url: self.sqs.delete_queue(QueueUrl=url))
                for url in self.resources.lane_queues.values()
            ),
        ):
            try:
                call()
            except Exception:
                pass

    # --- factories ---------------------------------------------------------------------------

    def store(self, settings: Settings | None = None) -> Store:
        st = Store(settings or self.settings)
        self.stores.append(st)
        return st

    def new_sqs(self) -> Any:
        return sqs_client(self.settings)

    def scheduler(
        self,
        sqs: Any = None,
        clock: Clock | None = None,
        short_notice: bool = True,
        store: Store | None = None,
    ) -> Any:
        from dynacron import Scheduler

        settings = self.settings if short_notice else replace(self.settings, queue_url=None)
        s = Scheduler(settings=settings, clock=clock or self.clock, sqs=sqs)
        if store is not None:
            s.store = store
        return s

    def dispatcher(
        self, sqs: Any, clock: Clock | None = None, store: Store | None = None, **kw: Any
    ) -> Any:
        from dynacron.dispatch import Dispatcher

        return Dispatcher(
            store or self.store(), sqs, self.settings, clock=clock or self.clock, **kw
        )

    def executor(
        self, sqs: Any, clock: Clock | None = None, store: Store | None = None, **kw: Any
    ) -> Any:
        from dynacron.execute import Executor

        kw.setdefault("rand", lambda: 0.0)
        return Executor(store or self.store(), sqs, self.settings, clock=clock or self.clock, **kw)

    # --- queues ------------------------------------------------------------------------------

    def receive(
        self,
        queue_url: str | None = None,
        sqs: Any = None,
        visibility: int = 600,
        max_messages: int = 10,
    ) -> list[dict[str, Any]]:
        return (
            (sqs or self.sqs)
            .receive_message(
                QueueUrl=queue_url or self.settings.queue_url,
                MaxNumberOfMessages=max_messages,
                VisibilityTimeout=visibility,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            )
            .get("Messages", [])
        )

    def drain(self, queue_url: str | None = None, sqs: Any = None) -> list[dict[str, Any]]:
        """Receive and delete everything visible (two empty receives in a row end it)."""
        url = queue_url or self.settings.queue_url
        out: list[dict[str, Any]] = []
        empty = 0
        while empty < 2:
            got = self.receive(url, sqs)
            if not got:
                empty += 1
                continue
            empty = 0
            out.extend(got)
            self.sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
        return out

    def dlq(self) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in self.drain(self.settings.dlq_url)]

    # --- table -------------------------------------------------------------------------------

    @property
    def reader(self) -> Store:
        """A store no fault is attached to: what the test itself reads the table with."""
        if self._reader is None:
            self._reader = Store(self.settings)
        return self._reader

    def runs(self) -> list[RunRow]:
        st = self.reader
        return list(st.models.Run.scan(st.models.Run.sk.startswith(RUN_PREFIX)))

    def write_runs(
        self,
        store: Store,
        task_id: str,
        when_ms: Iterable[int],
        task_type: str,
        max_attempts: int = 3,
    ) -> list[str]:
        """Pending manual runs written straight to the table (as trigger_now would, in bulk)."""
        shard = shard_of(task_id, self.settings.shards)
        ids = []
        with store.models.Run.batch_write() as batch:
            for i, ms in enumerate(when_ms):
                run_id = f"{ms:013d}-m{i:06x}"
                ids.append(run_id)
                batch.save(
                    store.models.Run(
                        pk=task_pk(task_id),
                        sk=run_sk(run_id),
                        task_id=task_id,
                        run_id=run_id,
                        task_type=task_type,
                        scheduled_for=ms,
                        status="pending",
                        attempt=0,
                        max_attempts=max_attempts,
                        dispatches=0,
                        manual=True,
                        lane="default",
                        due_shard=shard,
                        due_at=ms,
                    )
                )
        return ids


# --- driving workers ----------------------------------------------------------------------------


@dataclass
class Delivery:
    message_id: str
    body: str
    receipt: str
    outcome: str
    status: str


def deliver(
    dep: Deployment,
    vsqs: VirtualSQS,
    executor: Any,
    clock: FrozenClock,
    until: datetime | None = None,
    crash_visibility_s: float = 5400.0,
    max_steps: int = 20_000,
) -> list[Delivery]:
    """Hand every message to ``executor`` in visible-at order, moving ``clock`` as SQS would.

    A message whose execution raises ``ProcessCrash`` (the worker died) is neither deleted nor
    changed: it comes back after ``crash_visibility_s`` (the queue's visibility timeout).
    Messages that would become visible after ``until`` are left on the queue.
    """
    url = dep.settings.queue_url
    held: dict[str, tuple[datetime, dict[str, Any]]] = {}
    log: list[Delivery] = []
    for _ in range(max_steps):
        for m in dep.receive(url, vsqs):
            ready = vsqs.visible_at.get(m["MessageId"], clock.now())
            held[m["MessageId"]] = (ready, m)
        if not held:
            return log
        ready, m = min(held.values(), key=lambda pair: (pair[0], pair[1]["MessageId"]))
        if until is not None and ready > until:
            for _r, msg in held.values():  # leave them on the queue for later
                dep.sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=0
                )
            return log
        del held[m["MessageId"]]
        if ready > clock.now():
            clock.set(ready)
        try:
            res = executor.execute(m["Body"], m["ReceiptHandle"], url)
        except ProcessCrash:
            vsqs.visible_at[m["MessageId"]] = clock.now() + timedelta(seconds=crash_visibility_s)
            dep.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
            log.append(Delivery(m["MessageId"], m["Body"], m["ReceiptHandle"], "crash", "crash"))
            continue
        log.append(
            Delivery(m["MessageId"], m["Body"], m["ReceiptHandle"], res.outcome.value, res.status)
        )
        if res.outcome.value == "ack":
            try:
                vsqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            except dep.sqs.exceptions.ReceiptHandleIsInvalid:
                pass  # a newer delivery of the same message holds the current handle
    raise AssertionError(f"deliver() did not settle in {max_steps} steps")


TERMINAL = frozenset({"succeeded", "dead", "skipped", "expired"})


def statuses(dep: Deployment) -> dict[tuple[str, str], RunRow]:
    """Every run in the table, by (task_id, run_id)."""
    return {(r.task_id, r.run_id): r for r in dep.runs()}


def settle(
    dep: Deployment,
    poller: Any,
    executor: Any,
    vsqs: VirtualSQS,
    clock: FrozenClock,
    step_s: float = 30.0,
    max_rounds: int = 40,
    crash_visibility_s: float = 5400.0,
    poll: bool = True,
) -> int:
    """Poll every ``step_s`` (virtual) seconds and let workers drain in between, until every run
    in the table is terminal (runs scheduled more than an hour ahead aside). Returns the number
    of rounds it took."""
    horizon = to_ms(clock.now()) + 3_600_000
    for rounds in range(1, max_rounds + 1):
        tick = clock.now()
        if poll:
            poller.poll()
        deliver(
            dep,
            vsqs,
            executor,
            clock,
            until=tick + timedelta(seconds=step_s),
            crash_visibility_s=crash_visibility_s,
        )
        if all(r.status in TERMINAL for r in dep.runs() if r.scheduled_for <= horizon):
            return rounds
        clock.set(max(clock.now(), tick + timedelta(seconds=step_s)))
    raise AssertionError(
        "runs never settled: "
        + repr(
            sorted({(k, r.status) for k, r in statuses(dep).items() if r.status not in TERMINAL})[
                :5
            ]
        )
    )


def ms(when: datetime) -> int:
    return to_ms(when)


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
