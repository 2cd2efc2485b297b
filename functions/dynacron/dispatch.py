"""Claim and send: one code path for the poller and for the SDK's short-notice dispatch.

A run is *claimed* with a conditional write that admits a ``pending`` run, or a claimed run
whose lease (its ``due_at`` in the index) has expired. The claim sets a new ``fence`` and keys
the run in the due index by its lease expiry, so a claim that is never followed by a send (the
poller crashed, SQS refused the entry) falls due again by itself and is claimed anew.

For an occurrence of a recurring task the claim, the creation of the next occurrence and the
task's ``next_fire_at`` go in one transaction: the next run's key is derived from its time and
written with ``attribute_not_exists``, so every occurrence exists exactly once however many
pollers race. Claimed runs go to SQS in batches of 10 with ``DelaySeconds`` chosen so that the
message becomes visible at most one second before ``scheduled_for``; the worker waits the rest.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .aws import report_error
from .clock import Clock, SystemClock, from_ms, to_ms
from .deadletters import clip as clip  # re-exported
from .deadletters import send_dead_letter as send_dead_letter  # re-exported
from .duestream import PageFetch, by_lane, merged, shard_rows
from .errors import DynacronError, ValidationError
from .message import MESSAGE_VERSION as MESSAGE_VERSION  # re-exported
from .message import Message as Message  # re-exported: the work message
from .settings import Settings
from .store import RunRow, Store, alive, scheduled_run_id, start_ms
from .types import CATCH_UP_LIMIT, MisfirePolicy, RunStatus

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds limit
SEND_BATCH = 10  # SendMessageBatch limit
SEND_TRIES = 3  # rounds for the entries of a batch that SQS failed on its own side
SEND_RETRY_S = 0.05  # the pause before the second round; doubled before each next one
TIME_RESERVE_S = 5.0  # a poll stops taking new batches with less time left than this
_CLAIMED_STATES = (RunStatus.QUEUED.value, RunStatus.RUNNING.value, RunStatus.RETRYING.value)

EventHook = Callable[[str, dict[str, Any]], None]


def new_fence() -> str:
    return secrets.token_hex(8)


@dataclass
class DispatchReport:
    """What one poll (or one short-notice dispatch) did."""

    found: int = 0
    claimed: int = 0
    sent: int = 0
    send_failed: int = 0
    skipped: int = 0
    dead: int = 0
    lost_races: int = 0
    errors: int = 0
    left: int = 0
    pages: int = 0
    released: int = 0  # claimed runs whose message was not sent: due again at once
    deferred: int = 0  # claimed runs a rate limit held back for a later tick (limits.py)
    stopped: int = 0  # 1 when the time budget ended the poll before the window was read
    probed: int = 0  # pending runs counted beyond the window by the look-ahead probe
    lookahead_s: int = 0  # how far ahead this poll claimed: the window, or max_lookahead_s
    shards: int = 0  # how many shards this poll read (all, or its fan-out group: fanout.py)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass
class _Claimed:
    row: RunRow
    fence: str
    not_before: int | None = None  # a rate limit's slot (limits.py), epoch ms
    slot_tol: int | None = None  # how late (ms) the worker may start it in that slot


class Dispatcher:
    """Finds due runs, claims them, chains recurring occurrences and sends them to SQS."""

    def __init__(
        self,
        store: Store,
        sqs: Any,
        settings: Settings,
        clock: Clock | None = None,
        on_event: EventHook | None = None,
        concurrency: int = 8,
        page_size: int = 500,
        logger: Any = None,
        metrics: Any = None,
        reorder_rows: int | None = None,
        lane_group_ms: int = 1000,
        lane_lookahead_s: dict[str, float] | None = None,
    ) -> None:
        """``logger`` and ``metrics`` (Powertools-like) receive every AWS error at ERROR level.

        ``reorder_rows`` bounds the lane reorder buffer (default: one page); lane order holds
        among rows due within the same ``lane_group_ms`` (``duestream.by_lane``).
        ``lane_lookahead_s`` claims the runs of the lanes it names that far ahead (when longer
        than the window), before anything else: ``{"critical": 30}`` has a critical run in SQS
        (``DelaySeconds``) up to 30 s before it is due, so a poller running behind a bulk herd
        does not make it late (one extra Query per shard, filtered on the lane).
        """
        self.store = store
        self.sqs = sqs
        self.settings = settings
        self.clock = clock or SystemClock()
        self.on_event = on_event
        self.concurrency = max(1, concurrency)
        self.page_size = page_size
        self.reorder_rows = max(1, reorder_rows or page_size)
        self.lane_group_ms = lane_group_ms
        self.lane_lookahead_ms = {
            lane: int(seconds * 1000) for lane, seconds in (lane_lookahead_s or {}).items()
            if seconds > settings.window_s
        }
        self.logger = logger
        self.metrics = metrics
        self._triggers: dict[str, Any] = {}

    # --- the poller's entry point --------------------------------------------------------

    def poll(
        self,
        time_left: Callable[[], float] | None = None,
        shards: Sequence[int] | None = None,
    ) -> DispatchReport:
        """Stream every shard's due rows, earliest due first, claiming and sending as pages
        arrive (see ``duestream`` for the order and the memory bound).

        ``time_left`` returns the seconds this invocation may still use; it is checked before
        every batch, and when it runs low the poller stops reading and reports the rows it had
        read but not claimed as ``left`` (and ``stopped=1``: more may remain unread; they stay
        due for the next tick).

        ``shards`` limits the poll to those shards of the due index (a fan-out group,
        ``fanout.py``); None reads all of them. Polls of overlapping groups stay safe: every
        claim is conditional.
        """
        owned = _owned_shards(shards, self.settings.shards)
        report = DispatchReport(shards=len(owned))
        now = self.clock.now()
        horizon_ms = to_ms(now + timedelta(seconds=self.settings.window_s))
        far_ms = to_ms(now + timedelta(seconds=self.settings.max_lookahead_s))
        _ = self.store.client  # build the client once, before threads race to build their own
        with self._read_pool(len(owned)) as pool:

            def window(shard: int, key: dict[str, Any] | None) -> tuple[list[RunRow], Any]:
                return self.store.due_page(shard, horizon_ms, key, self.page_size)

            def beyond(shard: int, key: dict[str, Any] | None) -> tuple[list[RunRow], Any]:
                return self.store.due_page_between(shard, horizon_ms, far_ms, key, self.page_size)

            taken = self._lanes_ahead(to_ms(now), horizon_ms, report, pool, time_left, owned)
            taken += self._stream(self._due_rows(window, report, pool, owned), report, time_left)
            report.add(lookahead_s=int(self.settings.window_s))
            if self._backlog_ahead(horizon_ms, far_ms, report, pool, time_left, owned):
                # A burst is coming that one window could not send: claim it from now on,
                # earliest first, so it is in SQS (DelaySeconds) before it falls due.
                report.lookahead_s = int(self.settings.max_lookahead_s)
                taken += self._stream(
                    self._due_rows(beyond, report, pool, owned), report, time_left
                )
        report.add(left=report.found - taken)
        return report

    def _lanes_ahead(
        self,
        now_ms: int,
        horizon_ms: int,
        report: DispatchReport,
        pool: ThreadPoolExecutor | None,
        time_left: Callable[[], float] | None,
        shards: Sequence[int],
    ) -> int:
        """First, the runs of each ``lane_lookahead_s`` lane due past the window but inside that
        lane's look-ahead: a Query per shard filtered on the lane, so only they are returned."""
        taken = 0
        for lane, ahead_ms in self.lane_lookahead_ms.items():

            def ahead(shard: int, key: dict[str, Any] | None, lane: str = lane,
                      until: int = now_ms + ahead_ms) -> tuple[list[RunRow], Any]:
                return self.store.due_page_between(
                    shard, horizon_ms, until, key, self.page_size, lane=lane
                )

            taken += self._stream(self._due_rows(ahead, report, pool, shards), report, time_left)
        return taken

    def _backlog_ahead(
        self,
        horizon_ms: int,
        far_ms: int,
        report: DispatchReport,
        pool: ThreadPoolExecutor | None,
        time_left: Callable[[], float] | None,
        shards: Sequence[int],
    ) -> bool:
        """Whether at least ``lookahead_backlog`` pending runs wait in (horizon, far]: one
        bounded Query page per shard, reading at most ``2 * backlog / shards`` items each (twice
        the even share, so a moderately uneven spread over the shards still counts). A fan-out
        group decides for its own shards, against its share of the backlog."""
        need = self.settings.lookahead_backlog
        if need <= 0 or report.stopped or far_ms <= horizon_ms:
            return False
        if time_left is not None and time_left() < TIME_RESERVE_S:
            return False
        limit = math.ceil(2 * need / self.settings.shards)
        need = math.ceil(need * len(shards) / self.settings.shards)

        def probe(shard: int) -> int:
            try:
                return self.store.pending_ahead(shard, horizon_ms, far_ms, limit)
            except Exception as exc:
                report_error(exc, "probe", self.logger, self.metrics, shard=shard)
                raise

        counts = list(pool.map(probe, shards) if pool is not None else map(probe, shards))
        report.add(probed=sum(counts))
        return sum(counts) >= need

    def dispatch(self, rows: Iterable[RunRow]) -> DispatchReport:
        """Claim and send specific runs now (the SDK's short-notice path), chaining included."""
        report = DispatchReport()
        rows = list(rows)
        report.add(found=len(rows))
        self._dispatch_rows(rows, report, None)
        return report

    # --- streaming ------------------------------------------------------------------------

    def _read_pool(self, shards: int) -> Any:
        # Prefetching overlaps the next page's round trip with claiming the current one. With
        # one claim thread (in-process moto in unit tests is not thread-safe for a query beside a
        # transaction) pages are read on the claiming thread instead.
        if self.concurrency <= 1:
            return nullcontext(None)
        return ThreadPoolExecutor(
            max_workers=min(shards, 16), thread_name_prefix="dynacron-read"
        )

    def _due_rows(
        self,
        fetch: PageFetch,
        report: DispatchReport,
        pool: ThreadPoolExecutor | None,
        shards: Sequence[int],
    ) -> Iterator[RunRow]:
        def fetch_reported(shard: int, key: dict[str, Any] | None) -> tuple[list[RunRow], Any]:
            try:
                return fetch(shard, key)
            except Exception as exc:
                report_error(exc, "query", self.logger, self.metrics, shard=shard)
                raise

        def on_page(n: int) -> None:
            report.add(pages=1, found=n)

        streams = [shard_rows(s, fetch_reported, on_page, pool) for s in shards]
        return by_lane(merged(streams), self.reorder_rows, self.lane_group_ms)

    def _stream(
        self,
        rows: Iterator[RunRow],
        report: DispatchReport,
        time_left: Callable[[], float] | None,
    ) -> int:
        """Claim and send ``rows`` in batches, at most ``2 * concurrency`` batches in flight;
        returns how many rows it took (the rest were read but left for the next tick)."""
        taken = 0
        in_flight: deque[Future[None]] = deque()
        with self._claim_pool() as pool:
            for chunk in _chunks(rows, SEND_BATCH):
                if time_left is not None and time_left() < TIME_RESERVE_S:
                    report.add(stopped=1)
                    break
                taken += len(chunk)
                if pool is None:
                    self._claim_and_send(chunk, report)
                    continue
                in_flight.append(pool.submit(self._claim_and_send, chunk, report))
                if len(in_flight) >= 2 * self.concurrency:
                    in_flight.popleft().result()  # wait for the oldest: bounds what is held
            for fut in in_flight:
                fut.result()
        return taken

    def _claim_pool(self) -> Any:
        if self.concurrency <= 1:
            return nullcontext(None)
        return ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="dynacron-claim")

    def _claim_and_send(self, chunk: list[RunRow], report: DispatchReport) -> None:
        claimed: list[_Claimed] = []
        for row in chunk:
            claimed.extend(self._process(row, report))
        self._send(claimed, report)

    def _dispatch_rows(
        self, rows: list[RunRow], report: DispatchReport, time_left: Callable[[], float] | None
    ) -> None:
        chunks = [rows[i : i + SEND_BATCH] for i in range(0, len(rows), SEND_BATCH)]

        def work(chunk: list[RunRow]) -> None:
            if time_left is not None and time_left() < TIME_RESERVE_S:
                report.add(left=len(chunk))
                return
            self._claim_and_send(chunk, report)

        if len(chunks) <= 1:
            for chunk in chunks:
                work(chunk)
            return
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            list(pool.map(work, chunks))

    # --- claiming --------------------------------------------------------------------------

    def _process(self, row: RunRow, report: DispatchReport) -> list[_Claimed]:
        """Claim ``row`` and, for a recurring task, every next occurrence inside the window."""
        out: list[_Claimed] = []
        current: RunRow | None = row
        while current is not None:
            now = self.clock.now()
            horizon_ms = to_ms(now) + int(self.settings.window_s * 1000)
            try:
                claimed, nxt = self._claim_one(current, now, report)
            except DynacronError as exc:  # what the storage layer raises for a backend failure
                # One bad row must never stop the tick; it stays due and is retried next time.
                report.add(errors=1)
                report_error(exc, "claim", self.logger, self.metrics, **_ids(current))
                self._emit("error", current, error=str(exc)[:200])
                return out
            if claimed is not None:
                out.append(claimed)
            current = nxt if nxt is not None and start_ms(nxt) <= horizon_ms else None
        return out

    def _claim_one(
        self, row: RunRow, now: datetime, report: DispatchReport
    ) -> tuple[_Claimed | None, RunRow | None]:
        now_ms = to_ms(now)
        if row.status == RunStatus.PENDING.value:
            if row.manual or not row.trigger:
                return self._claim_single(row, now_ms, report, RunStatus.PENDING.value), None
            return self._claim_occurrence(row, now, report)
        if row.status in _CLAIMED_STATES:
            # its lease is still running, or its worker renews it (the index lease may pass
            # first: the renewal that moves it is on its way)
            if (row.due_at or 0) > now_ms or alive(row, now_ms):
                return None, None
            return self._reclaim(row, now_ms, report), None
        self._leave_index(row)  # a finished run that kept its index keys: tidy, never dispatch
        return None, None

    def _claim_single(
        self, row: RunRow, now_ms: int, report: DispatchReport, observed_status: str
    ) -> _Claimed | None:
        fence = new_fence()
        if not self.store.claim(row, fence, now_ms):
            report.add(lost_races=1)
            return None
        report.add(claimed=1)
        self._emit("claimed", row)
        return _Claimed(row, fence)

    def _reclaim(self, row: RunRow, now_ms: int, report: DispatchReport) -> _Claimed | None:
        exhausted = row.status == RunStatus.RUNNING.value and (row.attempt or 0) >= (
            row.max_attempts or 1
        )
        if exhausted or (row.dispatches or 0) >= self.settings.max_dispatches:
            reason = (
                f"attempt {row.attempt} of {row.max_attempts} never finished (worker crashed "
                "or was stopped)"
                if exhausted
                else f"dispatched {row.dispatches} times without finishing (worker crashing?)"
            )
            self.mark_dead(row, reason, report, observed_status=row.status)
            return None
        return self._claim_single(row, now_ms, report, row.status)

    def _trigger(self, spec: str) -> Any:
        trig = self._triggers.get(spec)
        if trig is None:
            from .triggers import trigger_from_dict

            trig = self._triggers[spec] = trigger_from_dict(json.loads(spec))
        return trig

    def _claim_occurrence(
        self, row: RunRow, now: datetime, report: DispatchReport
    ) -> tuple[_Claimed | None, RunRow | None]:
        trigger = self._trigger(row.trigger)
        scheduled = from_ms(row.scheduled_for)
        # Overdue against the planned start: a spread offset is not a misfire.
        planned = from_ms(start_ms(row))
        overdue = planned < now - timedelta(seconds=self.settings.misfire_grace_s)
        policy = MisfirePolicy(row.misfire or MisfirePolicy.RUN_ONCE.value)
        if overdue and policy is MisfirePolicy.SKIP:
            return None, self._skip_to(
                row, trigger.next(now), "missed (misfire policy skip)", report
            )
        if overdue and policy is MisfirePolicy.CATCH_UP:
            oldest = _oldest_allowed(trigger, scheduled, now)
            if oldest is not None and oldest > scheduled:
                reason = f"missed beyond the catch_up limit of {CATCH_UP_LIMIT}"
                return None, self._skip_to(row, oldest, reason, report)
        after = now if overdue and policy is MisfirePolicy.RUN_ONCE else scheduled
        nxt_time = trigger.next(after)
        fence = new_fence()
        nxt = self._next_row(row, nxt_time)
        if not self._transact(row, fence, nxt, report, skip_reason=None):
            return None, None
        report.add(claimed=1)
        self._emit("claimed", row)
        return _Claimed(row, fence), nxt

    def _skip_to(
        self, row: RunRow, nxt_time: datetime | None, reason: str, report: DispatchReport
    ) -> RunRow | None:
        nxt = self._next_row(row, nxt_time)
        if not self._transact(row, None, nxt, report, skip_reason=reason):
            return None
        report.add(skipped=1)
        self._emit("skipped", row, reason=reason)
        return nxt

    def _next_row(self, row: RunRow, when: datetime | None) -> RunRow | None:
        if when is None:
            return None
        ms = to_ms(when)
        return self.store.pending_run(
            row, scheduled_run_id(ms), ms, int(row.max_attempts), int(row.due_shard)
        )

    def _transact(
        self,
        row: RunRow,
        fence: str | None,
        nxt: RunRow | None,
        report: DispatchReport,
        skip_reason: str | None,
    ) -> bool:
        """Claim (or skip) ``row``, create ``nxt``, move the task's ``next_fire_at``: atomically."""
        now_ms = to_ms(self.clock.now())
        if skip_reason is None:
            done = self.store.claim_occurrence(row, fence or "", nxt, now_ms)
        else:
            done = self.store.skip_occurrence(row, nxt, skip_reason, now_ms)
        if not done:
            report.add(lost_races=1)
        return done

    def _leave_index(self, row: RunRow) -> None:
        self.store.leave_index(row)  # not applied: it changed, whoever changed it owns it

    # --- dead runs --------------------------------------------------------------------------

    def mark_dead(
        self, row: RunRow, reason: str, report: DispatchReport | None, observed_status: str
    ) -> bool:
        """DLQ message first, then ``dead``: a crash between repeats the message, never loses it."""
        now_ms = to_ms(self.clock.now())
        send_dead_letter(self.sqs, self.settings, row, reason, row.error, self.clock.now())
        text = clip(f"{reason}; last error: {row.error}" if row.error else reason)
        if row.status != observed_status or not self.store.mark_dead(row, text, now_ms):
            return False
        if report is not None:
            report.add(dead=1)
        self._emit("dead", row, reason=reason)
        return True

    # --- sending ----------------------------------------------------------------------------

    def _send(self, claimed: list[_Claimed], report: DispatchReport) -> None:
        claimed = self._throttle(claimed, report)
        by_queue: dict[str, list[_Claimed]] = {}
        for item in claimed:
            url = self.settings.queue_for(item.row.lane, item.row.task_id)
            by_queue.setdefault(url, []).append(item)
        for queue_url, items in by_queue.items():
            for i in range(0, len(items), SEND_BATCH):
                self._send_batch(queue_url, items[i : i + SEND_BATCH], report)

    def _throttle(self, claimed: list[_Claimed], report: DispatchReport) -> list[_Claimed]:
        """Rate limits (limits.py): one reservation per limit for the whole batch; runs whose
        slot is past what a claim can hold are deferred, not sent."""
        if not any(c.row.limit for c in claimed):
            return claimed
        from .limits import Throttle

        throttle = Throttle(self.store, self.settings.lease_s, MAX_DELAY_SECONDS)
        now_ms = to_ms(self.clock.now())
        try:
            slots = throttle.apply([c.row for c in claimed], now_ms)
        except Exception as exc:  # the claims stay; their leases bring them back
            report.add(errors=len(claimed))
            report_error(exc, "throttle", self.logger, self.metrics, count=len(claimed))
            return []
        out = []
        for item, (slot, tol) in zip(claimed, slots, strict=True):
            if slot == -1:
                throttle.defer(item.row, item.fence, now_ms)
                report.add(deferred=1)
                self._emit("deferred", item.row)
                continue
            item.not_before, item.slot_tol = slot, tol
            out.append(item)
        return out

    def _send_batch(self, queue_url: str, items: list[_Claimed], report: DispatchReport) -> None:
        """Send up to 10 claimed runs. Entries SQS fails on its own side (``SenderFault``
        false) are sent again, ``SEND_TRIES`` rounds in all; a run still unsent is released
        (``Store.release``: due again now), so the next poll takes it back at once instead of
        when its lease ends (300 s at the defaults: a canary of the burst benchmark came
        back that way). A whole call that raises is not tried again here: the client has
        already retried it ``max_retries`` times."""
        retry, unsent = list(items), []
        for attempt in range(SEND_TRIES):
            if not retry:
                break
            if attempt:
                self.clock.sleep(SEND_RETRY_S * 2 ** (attempt - 1))
            retry, refused = self._send_once(queue_url, retry, report)
            unsent += refused
        unsent += retry
        if unsent:
            report.add(send_failed=len(unsent))
            self._release(unsent, report)

    def _send_once(
        self, queue_url: str, items: list[_Claimed], report: DispatchReport
    ) -> tuple[list[_Claimed], list[_Claimed]]:
        """One SendMessageBatch: (the entries worth sending again, the entries refused)."""
        now_ms = to_ms(self.clock.now())
        entries = [
            {
                "Id": str(i),
                "MessageBody": Message(
                    c.row.task_id,
                    c.row.run_id,
                    c.fence,
                    int(c.row.scheduled_for),
                    c.row.lane,
                    c.not_before,
                    c.slot_tol,
                ).to_body(),
                "DelaySeconds": delay_seconds(max(start_ms(c.row), c.not_before or 0), now_ms),
            }
            for i, c in enumerate(items)
        ]
        try:
            response = self.sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except Exception as exc:
            report_error(exc, "send", self.logger, self.metrics, count=len(items))
            self._emit("send_failed", items[0].row, error=str(exc)[:200], count=len(items))
            return [], items
        failures = response.get("Failed", [])
        if failures:
            self._report_failed_entries(failures, items)
        failed = {f["Id"]: bool(f.get("SenderFault")) for f in failures}
        report.add(sent=len(items) - len(failed))
        for i, c in enumerate(items):
            if str(i) not in failed:
                self._emit("sent", c.row)
        again = [items[int(i)] for i, sender in failed.items() if not sender]
        refused = [items[int(i)] for i, sender in failed.items() if sender]
        for c in refused:
            self._emit("send_failed", c.row)
        return again, refused

    def _release(self, unsent: list[_Claimed], report: DispatchReport) -> None:
        now_ms = to_ms(self.clock.now())
        for c in unsent:
            try:
                # not applied: the run moved on (a worker took a message that did get
                # through after all, or it was cancelled): whoever moved it owns it
                if self.store.release(c.row, c.fence, now_ms):
                    report.add(released=1)
            except DynacronError as exc:  # the lease still brings it back
                report_error(exc, "release", self.logger, self.metrics, **_ids(c.row))

    def _report_failed_entries(self, failures: list[dict[str, Any]], items: list[_Claimed]) -> None:
        """Entries SQS refused inside a successful SendMessageBatch: each is an AWS error too."""
        for failure in failures:
            row = items[int(failure["Id"])].row
            if self.logger is not None:
                self.logger.error(
                    "AWS call failed",
                    extra={
                        "step": "send",
                        "aws_error_code": failure.get("Code", "?"),
                        "aws_operation": "SendMessageBatch",
                        "sender_fault": failure.get("SenderFault"),
                        **_ids(row),
                    },
                )
            if self.metrics is not None:
                self.metrics.add_metric(name="AwsErrors", unit="Count", value=1)

    def _emit(self, kind: str, row: RunRow, **info: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, {"task_id": row.task_id, "run_id": row.run_id, **info})


def _owned_shards(shards: Sequence[int] | None, count: int) -> list[int]:
    """The shards a poll reads: all ``count`` of them, or the given subset (sorted, deduplicated,
    each in 0..count-1: a shard outside it holds nothing the SDK writes)."""
    if shards is None:
        return list(range(count))
    bad = [s for s in shards if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < count]
    if bad or not shards:
        raise ValidationError("shards", f"must be a non-empty subset of 0..{count - 1}, got {bad}")
    return sorted(set(shards))


def _ids(row: RunRow) -> dict[str, str]:
    return {"task_id": row.task_id, "run_id": row.run_id}


def _chunks(rows: Iterator[RunRow], size: int) -> Iterator[list[RunRow]]:
    chunk: list[RunRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def delay_seconds(scheduled_ms: int, now_ms: int) -> int:
    """Whole seconds to delay so the message shows up at most 1 s before ``scheduled_ms``."""
    seconds = (scheduled_ms - now_ms) / 1000.0 - 1.0
    return max(0, min(MAX_DELAY_SECONDS, math.ceil(seconds)))


def _oldest_allowed(trigger: Any, scheduled: datetime, now: datetime) -> datetime | None:
    """The oldest occurrence catch_up still replays: the CATCH_UP_LIMIT-th most recent one."""
    recent: deque[datetime] = deque(maxlen=CATCH_UP_LIMIT)
    t: datetime | None = scheduled
    steps = 0
    while t is not None and t <= now and steps < 1_000_000:
        recent.append(t)
        t = trigger.next(t)
        steps += 1
    return recent[0] if recent else None
