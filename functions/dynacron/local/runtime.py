"""``dynacron local``: the whole system on one machine, with no Docker and no AWS account.

What runs, and how it maps to the cloud:

* an embedded moto server on loopback (``local.server.ServerProcess``: moto's
  ``ThreadedMotoServer`` in a child interpreter, so that it has a core of its own, with
  ``local.motofix``'s fixes to its cost; it exits with this process) holding the table and
  queues that ``template.yaml`` declares, created by ``local.provision.provision`` from the
  template itself;
* the **poller**: a thread calling ``Dispatcher.poll()`` (the function the poller Lambda runs)
  every ``period_s``; with ``--pollers N`` (the template's ``PollerFanout``), N threads, each
  polling only its group of shards (``fanout.shard_groups``, the split a cloud tick fans out),
  the way N fanned-out poller invocations do;
* the **worker**: per lane (``template.yaml``'s worker SQS events: default = WorkQueue, critical,
  bulk), as many threads as the lane's ``MaximumConcurrency`` (the default lane: ``--workers``,
  4), each behaving like one concurrent invocation of Lambda's SQS event source: ReceiveMessage
  (the lane's BatchSize, 1 s long poll), build the Lambda SQS event, call
  ``batch.process_event`` (the function the worker Lambda runs) with a context that simulates
  a 900 s invocation, then DeleteMessageBatch every record that is not in the returned
  ``batchItemFailures``. Messages are received with the queue's own VisibilityTimeout, as the
  event source does.

Local timing. In the cloud the poller ticks every 60 s and looks 90 s ahead. Locally it ticks
every second and looks 5 s ahead: claimed runs wait in SQS (``DelaySeconds``) until their second,
and moto's SQS does a linear scan of the queue on every ReceiveMessage, so a short look-ahead
keeps the queue shallow and receives cheap. The ticks fall at 0.2 s past the second: a run due
on a whole second (every cron fire, and At/Every times the SDK anchors on whole seconds) is sent
shortly after, with whole-second ``DelaySeconds``, so it becomes visible most of a second
early; that absorbs the worker's reads of the run and task, and the worker then waits for the
exact instant. (A long poll returns a delayed message as soon as it comes due, as SQS does:
``motofix`` fix 7; stock moto rechecks only once a second.)
Leases are 30 s instead of 300 s, so a run whose claim or attempt was lost comes back quickly.
Critical runs are claimed 30 s ahead (``LANE_LOOKAHEAD_S``, before anything else in a poll), so
a poller running behind a bulk herd does not make them late (README "Saturation").

Once ready it prints one line on stdout, ``export AWS_ENDPOINT_URL=... DYNACRON_TABLE=...
DYNACRON_QUEUE_URL=... DYNACRON_DLQ_URL=...`` (plus ``DYNACRON_SHARDS`` when ``--shards``
differs from the default, so that clients put tasks on shards the poller reads): ``eval`` it
in another shell and ``Scheduler()`` / the CLI work against this system; no AWS credentials are
needed for a loopback endpoint.

Ctrl-C (SIGINT) or SIGTERM stops gracefully: the poller stops, the workers stop receiving, the
batches in flight finish (bounded wait; a second Ctrl-C stops at once) and are acknowledged,
messages not processed are left on the queue (never deleted), then the server stops. A
SIGTERM sent to the whole process group stops it as promptly (the server child ignores it and
waits for this process). Everything lives in the server's memory and is gone after that,
unless ``--state FILE`` keeps the table and the dead letters (``local.state``); both the start
and the stop lines say which.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..fanout import shard_groups
from ..settings import Settings
from .progress import DUE_SOON_S, Progress, Stats

DEFAULT_PORT = 8765
DEFAULT_WORKERS = 4
DEFAULT_HANDLERS = ("dynacron.examples",)
PERIOD_S = 1.0
WINDOW_S = 5.0
LEASE_S = 30.0
POLL_PHASE_S = 0.2  # ticks at hh:mm:ss.2, see the module docstring
LAMBDA_TIMEOUT_S = 900.0  # each batch runs as if in a fresh 900 s worker invocation
STOP_GRACE_S = 30.0
RECEIVE_WAIT_S = 1
SHORT_POLL_PAUSE_S = 0.05  # between empty short polls (receive_wait_s=0)
DUE_SOON_EVERY = 3  # ticks between "due soon" counts (a query per shard: keep moto's load low)
# Saturation (issue 13): a poll behind a bulk herd takes many seconds of claims (every run due
# before a critical one used to be claimed first). Critical runs are claimed LANE_LOOKAHEAD_S
# ahead (the window is 5 s), so they are in SQS with their delay before a poller running that
# far behind could make them late, and each poll claims by lane across its whole read (the
# reorder buffer holds it), critical first. The critical lane is meant to be small, so its queue
# stays short for moto's receive scans. (A per-poll time budget was tried and dropped: re-reading
# the backlog every tick halved the poller's throughput on moto.)
REORDER_ROWS = 20_000
LANE_LOOKAHEAD_S = {"critical": 30.0}


@dataclass(frozen=True)
class LaneLoop:
    """One lane as the local event source runs it: ``concurrency`` receive loops, each taking
    up to ``batch_size`` messages (at most concurrency x batch_size handlers of it at once)."""

    lane: str
    queue_url: str
    queue_arn: str
    concurrency: int
    batch_size: int


class HandlerImportError(Exception):
    """A module named in ``--handlers`` could not be imported."""


@dataclass
class LambdaContext:
    """The parts of the Lambda context object that dynacron and Powertools read."""

    function_name: str = "dynacron-local-worker"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:dynacron-local-worker"
    )
    log_group_name: str = "/aws/lambda/dynacron-local-worker"
    log_stream_name: str = "local"
    timeout_s: float = LAMBDA_TIMEOUT_S
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class StopReport:
    inflight_batches: int = 0  # batches running when the stop began
    unfinished_batches: int = 0  # still running when the grace period ended
    returned: int = 0  # messages received during the stop and handed back unprocessed
    left_on_queue: int | None = None  # visible + in flight + delayed, just before shutdown
    forced: bool = False
    state_path: str | None = None  # --state FILE
    saved: Any = None  # state.StateSummary once saved
    save_error: str | None = None

    def describe(self) -> str:
        from ..cli_tables import plural

        parts = [
            f"{plural(self.inflight_batches, 'in-flight batch', 'in-flight batches')} "
            + (
                "finished"
                if not self.unfinished_batches
                else f"waited for, {self.unfinished_batches} cut off"
            )
        ]
        if self.left_on_queue is not None:
            parts.append(
                f"{plural(self.left_on_queue, 'message')} on the work queues not processed"
            )
        if self.returned:
            parts.append(f"{self.returned} returned unprocessed")
        parts.append(self._state())
        return "dynacron local: stopped: " + "; ".join(parts)

    def _state(self) -> str:
        if self.state_path is None:
            return (
                "its state (tasks, runs, queues) lived in memory and is gone "
                "(--state FILE keeps tasks and runs)"
            )
        if self.save_error is not None:
            return f"state NOT saved to {self.state_path}: {self.save_error}"
        return (
            f"state saved to {self.state_path} ({self.saved.describe()}; runs that were on "
            "the work queue come back by lease expiry after a restart)"
        )


def split_modules(handlers: Iterable[str] | None) -> list[str]:
    """``["a,b", "c"]`` → ``["a", "b", "c"]`` (order kept, duplicates dropped)."""
    out: list[str] = []
    for item in handlers or ():
        for name in str(item).split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return out


def _region_from_env() -> str:
    # The same resolution as Settings.from_env, so a client in another shell with the same
    # environment talks to the same (region-scoped) moto backend.
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _target_settings() -> dict[str, Any]:
    """Targets locally: plain http to loopback allowed, Lambda targets through the mapping of
    function names to Python callables in DYNACRON_LOCAL_LAMBDAS (moto needs Docker to run
    Lambda code); SQS, SNS, EventBridge and Step Functions targets use the embedded server."""
    from ..targets import parse_local_lambdas

    return {
        "http_allow_loopback": True,
        "local_lambdas": parse_local_lambdas(os.environ.get("DYNACRON_LOCAL_LAMBDAS")),
    }


class LocalRuntime:
    """Server, resources, poller and workers; ``start()`` then ``stop()``."""

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        handlers: Sequence[str] | None = None,
        shards: int | None = None,
        workers: int = DEFAULT_WORKERS,
        stats: Stats | None = None,
        host: str = "127.0.0.1",
        state_path: str | None = None,
        lanes: dict[str, tuple[int, int]] | None = None,
        receive_wait_s: int = RECEIVE_WAIT_S,
        pollers: int = 1,
    ) -> None:
        """``lanes`` overrides the template's ``{lane: (concurrency, batch_size)}``;
        ``receive_wait_s=0`` short-polls (servers that serialize SQS cannot serve long polls);
        ``pollers`` poller loops share the shards, one group each (at most one per shard)."""
        self.pollers = max(1, pollers)
        self.poller_groups: list[list[int]] = []
        self.state_path = state_path
        self.restored: Any = None  # state.StateSummary when --state FILE had something
        self.port = port
        self.receive_wait_s = receive_wait_s
        self.lane_overrides = dict(lanes or {})
        self.lane_loops: list[LaneLoop] = []
        self.host = host
        self.modules = split_modules(handlers)
        self.shards = shards
        self.workers = max(1, workers)
        self.stats = stats or Stats()
        self.server: Any = None
        self.settings: Settings | None = None
        self.queue_arn = ""
        self.queue_urls: dict[str, str] = {}  # template logical id -> URL
        self.visibility_timeout = 5400
        self._stop_poll = threading.Event()
        self._stop_recv = threading.Event()
        self._threads: list[threading.Thread] = []
        self._returned = 0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # --- start -------------------------------------------------------------------------------

    def start(self) -> None:
        from .. import registry
        from ..aws import client_kwargs, sqs_client
        from ..dispatch import Dispatcher
        from ..execute import Executor
        from ..store import Store
        from .provision import find_template, load_template, provision
        from .server import ServerProcess

        template = load_template(find_template())  # fail before starting anything
        self._load_handlers(registry)
        saved = None
        if self.state_path is not None:
            from . import state

            saved = state.read(self.state_path)  # StateFileError before starting anything
        # The embedded server accepts any credentials; boto3 still wants some.
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            os.environ["AWS_ACCESS_KEY_ID"] = "testing"
            os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"

        self.server = ServerProcess(self.host, self.port)
        self.server.start()
        self.port = self.server.port
        endpoint = self.server.endpoint_url
        boot = Settings(endpoint_url=endpoint, region=_region_from_env())
        import boto3

        self.dynamodb = boto3.client("dynamodb", **client_kwargs(boot))
        self.sqs = sqs_client(boot)
        res = provision(self.dynamodb, self.sqs, template, prefix="dynacron")
        self.queue_urls = dict(res.queue_urls)
        self.settings = Settings(
            table_name=res.table_name,
            queue_url=res.queue_url,
            dlq_url=res.dlq_url,
            lane_queues=dict(res.lane_queues),
            work_queue_urls=res.work_queues,
            endpoint_url=endpoint,
            region=boot.region,
            shards=self.shards or Settings.shards,
            poller_fanout=self.pollers,
            period_s=PERIOD_S,
            window_s=WINDOW_S,
            lease_s=LEASE_S,
            handlers=tuple(self.modules),
            **_target_settings(),
        )
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=res.queue_url, AttributeNames=["QueueArn", "VisibilityTimeout"]
        )["Attributes"]
        self.queue_arn = attrs["QueueArn"]
        self.visibility_timeout = int(attrs.get("VisibilityTimeout", 5400))
        if saved is not None:
            from . import state

            self.restored = state.load(self.dynamodb, self.sqs, self.settings, saved)

        self.dispatcher = Dispatcher(
            Store(self.settings), self.sqs, self.settings, on_event=self.stats.on_event,
            reorder_rows=REORDER_ROWS, lane_group_ms=0, lane_lookahead_s=LANE_LOOKAHEAD_S,
        )
        self.poller_groups = shard_groups(self.settings.shards, self.settings.poller_fanout)
        self.executor = Executor(
            Store(self.settings), self.sqs, self.settings, on_event=self.stats.on_event
        )
        self._start_pool(template)
        self._warm_up()
        self._spawn_pollers(Dispatcher, Store)
        self._spawn_workers()

    def start_workers(
        self, settings: Settings, sqs: Any, executor: Any, template: dict[str, Any] | None = None
    ) -> None:
        """Only the lane worker loops (the local SQS event source), on an existing deployment:
        what the reliability suite runs on its backends. ``stop()`` ends them."""
        from .provision import find_template, load_template

        self.settings, self.sqs, self.executor = settings, sqs, executor
        self._start_pool(template or load_template(find_template()))
        self._spawn_workers()

    def _start_pool(self, template: dict[str, Any]) -> None:
        from .provision import lane_workers

        self.lane_loops = [self._lane_loop(w) for w in lane_workers(template)]
        # One thread per handler the lanes may run at once (concurrency x batch size).
        slots = sum(loop.concurrency * loop.batch_size for loop in self.lane_loops)
        self._pool = ThreadPoolExecutor(
            max_workers=max(slots, 10), thread_name_prefix="dynacron-local-record"
        )

    def _spawn_workers(self) -> None:
        for loop in self.lane_loops:
            for i in range(loop.concurrency):
                self._spawn(self._worker_loop, f"dynacron-local-worker-{loop.lane}-{i}", loop)

    def _lane_loop(self, worker: Any) -> LaneLoop:
        assert self.settings is not None
        url = self.queue_urls.get(worker.queue_id) or self._queue_of(worker)
        concurrency = self.workers if worker.lane == "default" else worker.concurrency
        batch_size = worker.batch_size
        concurrency, batch_size = self.lane_overrides.get(worker.lane, (concurrency, batch_size))
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        return LaneLoop(worker.lane, url, arn, max(1, concurrency), max(1, min(10, batch_size)))

    def _queue_of(self, worker: Any) -> str:
        """The URL of a lane worker's queue from the settings (``start_workers`` without
        ``start``): WorkQueue, WorkQueue<n> (the default lane's others), or a lane queue."""
        from .provision import EXTRA_WORK_QUEUE

        assert self.settings is not None
        extra = EXTRA_WORK_QUEUE.match(worker.queue_id)
        if extra:
            return self.settings.work_queues[int(extra.group(1)) - 1]
        return self.settings.queue_for(worker.lane)

    def _warm_up(self) -> None:
        """Pay the first-call costs (imports, connection pools) before the first run is due."""
        from .. import batch  # noqa: F401 - Powertools' batch utilities take a while to import

        self.dispatcher.poll()
        self.stats.polls += 1
        # The worker's own connections (PynamoDB keeps one per model class).
        self.executor.store.get_task_row("warm-up")
        self.executor.store.get_run_row("warm-up", "warm-up")

    def _load_handlers(self, registry: Any) -> None:
        # `--handlers myjobs` means ./myjobs.py, as `python -m` would find it.
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        for module in self.modules:
            try:
                registry.load([module])
            except Exception as exc:  # one clear line for the user
                raise HandlerImportError(
                    f"cannot import handler module {module!r}: {type(exc).__name__}: {exc}"
                ) from exc

    def _spawn(self, target: Any, name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, name=name, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    @property
    def export_line(self) -> str:
        s = self.settings
        assert s is not None, "start() first"
        values = {
            "AWS_ENDPOINT_URL": s.endpoint_url or "",
            "DYNACRON_TABLE": s.table_name or "",
            "DYNACRON_QUEUE_URL": s.queue_url or "",
            "DYNACRON_DLQ_URL": s.dlq_url or "",
        }
        if s.lane_queues:
            values["DYNACRON_LANE_QUEUES"] = ",".join(f"{k}={v}" for k, v in s.lane_queues.items())
        if s.work_queue_urls:
            values["DYNACRON_WORK_QUEUE_URLS"] = ",".join(s.work_queue_urls)
        if s.shards != Settings.shards:
            values["DYNACRON_SHARDS"] = str(s.shards)
        return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in values.items())

    # --- the poller ------------------------------------------------------------------------------

    def _spawn_pollers(self, dispatcher_cls: Any, store_cls: Any) -> None:
        """One loop per shard group; each its own Dispatcher (and connections), as each
        fanned-out invocation is its own Lambda execution environment."""
        assert self.settings is not None
        if len(self.poller_groups) == 1:
            self._spawn(self._poll_loop, "dynacron-local-poller")
            return
        for i, group in enumerate(self.poller_groups):
            dispatcher = self.dispatcher if i == 0 else dispatcher_cls(
                store_cls(self.settings), self.sqs, self.settings, on_event=self.stats.on_event
            )
            self._spawn(self._poll_loop, f"dynacron-local-poller-{i}", dispatcher, group)

    def _poll_loop(self, dispatcher: Any = None, shards: list[int] | None = None) -> None:
        assert self.settings is not None
        period = self.settings.period_s
        dispatcher = dispatcher or self.dispatcher
        lead = shards is None or shards[0] == 0  # one loop counts polls and the due-soon figure
        while not self._stop_poll.is_set():
            try:
                dispatcher.poll(shards=shards)
                if lead:
                    self.stats.polls += 1
            except Exception as exc:  # the next tick tries again, as EventBridge would
                self.stats.note_error("poller", exc)
            if lead and self.stats.polls % DUE_SOON_EVERY == 1:
                try:
                    self.stats.due_soon = self._count_due_soon()
                except Exception:  # a display figure only
                    self.stats.due_soon = None
            now = time.time()
            tick = (math.floor((now - POLL_PHASE_S) / period) + 1) * period + POLL_PHASE_S
            self._stop_poll.wait(max(0.0, tick - now))

    def _count_due_soon(self) -> int:
        """Pending runs in the due index due within DUE_SOON_S (COUNT queries, every shard)."""
        from ..store import DUE_INDEX

        assert self.settings is not None
        horizon = int((time.time() + DUE_SOON_S) * 1000)
        total = 0
        for shard in range(self.settings.shards):
            kwargs: dict[str, Any] = {
                "TableName": self.settings.table_name,
                "IndexName": DUE_INDEX,
                "KeyConditionExpression": "due_shard = :s AND due_at <= :h",
                "FilterExpression": "#st = :p",
                "ExpressionAttributeNames": {"#st": "status"},
                "ExpressionAttributeValues": {
                    ":s": {"N": str(shard)},
                    ":h": {"N": str(horizon)},
                    ":p": {"S": "pending"},
                },
                "Select": "COUNT",
            }
            while True:
                page = self.dynamodb.query(**kwargs)
                total += int(page.get("Count", 0))
                if not page.get("LastEvaluatedKey"):
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return total

    # --- the worker (Lambda's SQS event source) --------------------------------------------------

    def _worker_loop(self, loop: LaneLoop | None = None) -> None:
        assert self.settings is not None
        loop = loop or self.lane_loops[0]
        queue_url = loop.queue_url
        while not self._stop_recv.is_set():
            try:
                got = self.sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=loop.batch_size,
                    WaitTimeSeconds=self.receive_wait_s,
                    VisibilityTimeout=self.visibility_timeout,
                    AttributeNames=["All"],
                ).get("Messages", [])
            except Exception as exc:  # e.g. the server is stopping
                if self._stop_recv.is_set():
                    return
                self.stats.note_error("receive", exc)
                self._stop_recv.wait(1.0)
                continue
            if not got:
                if not self.receive_wait_s:
                    self._stop_recv.wait(SHORT_POLL_PAUSE_S)  # the event source's own pacing
                continue
            if self._stop_recv.is_set():
                self._hand_back(got, queue_url)  # received during the stop: not ours any more
                return
            self._run_batch(got, loop)

    def _run_batch(self, messages: list[dict[str, Any]], loop: LaneLoop | None = None) -> None:
        from ..batch import process_event, sqs_event

        assert self.settings is not None
        queue_url = loop.queue_url if loop else self.settings.queue_url
        queue_arn = loop.queue_arn if loop else self.queue_arn
        event = sqs_event(messages, queue_arn, self.settings.region)
        self.stats.batch_started()
        try:
            response = process_event(event, LambdaContext(), self.executor, pool=self._pool)
        except Exception as exc:  # a function error: Lambda deletes nothing
            # The messages come back after their visibility timeout; the runs' leases bring
            # them back sooner through the poller.
            self.stats.note_error("worker", exc)
            return
        finally:
            self.stats.batch_finished()
        failed = {f.get("itemIdentifier") for f in (response or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if not done:
            return
        try:
            result = self.sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
            for failure in result.get("Failed", []):
                self.stats.note_error("delete", RuntimeError(failure.get("Message", "failed")))
        except Exception as exc:  # redelivered later, the fence makes it a no-op
            self.stats.note_error("delete", exc)

    def _hand_back(self, messages: list[dict[str, Any]], queue_url: str | None = None) -> None:
        assert self.settings is not None
        with self._lock:
            self._returned += len(messages)
        try:
            self.sqs.change_message_visibility_batch(
                QueueUrl=queue_url or self.settings.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(messages)
                ],
            )
        except Exception:  # they come back after their visibility timeout anyway
            pass

    def queue_depth(self, queue_url: str | None) -> int:
        """Messages on a queue: visible + in flight + delayed."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    # --- stop ------------------------------------------------------------------------------------

    def stop(
        self, grace_s: float = STOP_GRACE_S, force: threading.Event | None = None
    ) -> StopReport:
        """Stop polling and receiving, let batches in flight finish, then stop the server."""
        report = StopReport(inflight_batches=self.stats.inflight_batches)
        self._stop_poll.set()
        self._stop_recv.set()
        deadline = time.monotonic() + grace_s
        for thread in self._threads:
            while thread.is_alive() and time.monotonic() < deadline:
                if force is not None and force.is_set():
                    report.forced = True
                    break
                thread.join(timeout=0.1)
        report.unfinished_batches = max(0, self.stats.inflight_batches)
        report.returned = self._returned
        if self.settings is not None and self.server is not None:
            try:
                report.left_on_queue = sum(
                    self.queue_depth(url)
                    for url in self.settings.all_queues
                )
            except Exception:  # a figure for the user only
                report.left_on_queue = None
        report.state_path = self.state_path
        if self.state_path is not None and self.settings is not None and self.server is not None:
            from . import state

            try:
                report.saved = state.save(self.dynamodb, self.sqs, self.settings, self.state_path)
            except Exception as exc:  # said in the stop line; the exit code says it too
                report.save_error = f"{type(exc).__name__}: {exc}"
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.server is not None:
            try:
                self.server.stop()
            except Exception:  # the process is ending anyway
                pass
        return report


# --- the command ---------------------------------------------------------------------------------


def main(
    port: int = DEFAULT_PORT,
    handlers: list[str] | None = None,
    demo: bool = False,
    duration: float | None = None,
    shards: int | None = None,
    state: str | None = None,
    pollers: int = 1,
) -> int:
    """Run ``dynacron local``; returns the exit code.

    0: stopped by Ctrl-C/SIGTERM or after ``duration`` seconds, or a demo whose every run ended
    as intended; 1: the demo found a run that did not, or the port is taken; 2: a handler module
    failed to import or a bad argument; 130: interrupted demo or a second Ctrl-C.
    """
    from .server import PortInUse

    if duration is not None and duration <= 0:
        print("dynacron local: --duration must be > 0 seconds", file=sys.stderr)
        return 2
    modules = split_modules(handlers) or split_modules([os.environ.get("DYNACRON_HANDLERS", "")])
    modules = modules or list(DEFAULT_HANDLERS)
    if demo and "dynacron.examples" not in modules:
        modules.append("dynacron.examples")
    stats = Stats(keep_first_lateness=demo)
    from .state import StateFileError

    rt = LocalRuntime(
        port=port, handlers=modules, shards=shards, stats=stats, state_path=state, pollers=pollers
    )
    try:
        rt.start()
    except PortInUse as exc:
        print(
            f"dynacron local: {exc.strerror or exc} (another dynacron local running? "
            "pick another with --port)",
            file=sys.stderr,
        )
        return 1
    except HandlerImportError as exc:
        print(f"dynacron local: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, StateFileError) as exc:
        print(f"dynacron local: {exc}", file=sys.stderr)
        return 2
    print(rt.export_line, flush=True)
    print(f"dynacron local: {_state_line(rt)}", file=sys.stderr, flush=True)

    stop, force = threading.Event(), threading.Event()
    restore = _install_signals(stop, force)
    mode = "demo" if demo else f"handlers: {', '.join(rt.modules)}"
    settings = rt.settings
    assert settings is not None, "set by start()"
    progress = Progress(stats, title=lambda: f"dynacron local · {settings.endpoint_url} · {mode}")
    code = 0
    outcome: Any = None
    try:
        print(
            f"dynacron local: ready on {settings.endpoint_url} "
            f"(poll every {PERIOD_S:g}s, {settings.shards} shards{_pollers_note(rt)}, handlers: "
            f"{', '.join(rt.modules)}); Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        progress.start()
        if demo:
            from .demo import run_demo

            try:
                outcome = run_demo(rt, stop, duration)
            except Exception as exc:  # one line, not a traceback; the runtime still stops cleanly
                print(f"dynacron demo: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                code = 1
        else:
            end = None if duration is None else time.monotonic() + duration
            while not stop.is_set() and (end is None or time.monotonic() < end):
                stop.wait(0.25 if end is None else max(0.0, min(0.25, end - time.monotonic())))
    finally:
        progress.stop()
        if stop.is_set():
            from ..cli_tables import plural

            inflight = plural(stats.inflight_batches, "in-flight batch", "in-flight batches")
            print(
                f"dynacron local: stopping; waiting for {inflight} "
                "(Ctrl-C again to quit now)",
                file=sys.stderr,
                flush=True,
            )
        report = rt.stop(force=force)
        restore()
    if outcome is not None:
        outcome.print()
        code = outcome.exit_code
    print(report.describe(), file=sys.stderr, flush=True)
    if demo and stop.is_set():
        code = 130
    if report.forced:
        code = 130
    if report.save_error is not None and code == 0:
        code = 1
    if report.unfinished_batches or report.forced:
        # Handler threads still running would hold the interpreter open at exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _pollers_note(rt: LocalRuntime) -> str:
    groups = rt.poller_groups
    if len(groups) <= 1:
        return ""
    spans = " ".join(f"{g[0]}-{g[-1]}" if len(g) > 1 else str(g[0]) for g in groups)
    return f" over {len(groups)} pollers: {spans}"


def _state_line(rt: LocalRuntime) -> str:
    """Where the state lives, said at start (the stop line says it again)."""
    if rt.state_path is None:
        return (
            "state lives in memory only: tasks, runs and queues are gone when this stops "
            "(--state FILE keeps tasks and runs)"
        )
    if rt.restored is None:
        return f"state: {rt.state_path} does not exist yet; it is written when this stops"
    return f"state: restored {rt.restored.describe()} from {rt.state_path}"


def _install_signals(stop: threading.Event, force: threading.Event) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            force.set()
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
