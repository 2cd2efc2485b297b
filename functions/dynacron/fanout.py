"""Fan-out: one poller tick spread over parallel invocations, one per group of shards.

The EventBridge schedule invokes the poller once a minute (a *tick*). With
``poller_fanout`` (``DYNACRON_POLLER_FANOUT``, template ``PollerFanout``) above 1, the tick splits
the due index's shards ``0..shards-1`` into that many contiguous groups (``shard_groups``),
starts one asynchronous invocation of its own function (``InvocationType=Event``) per group but
the first, with the payload ``{"dynacron": "shards", "v": 1, "shards": [...], "tick_at": ms}``
(``ShardTick``), and polls the first group itself. Each invocation claims only its own shards,
so the groups never race each other for a run.

What may go wrong, and why it stays safe:

* a group whose invocation cannot be started (throttled, a missing permission, an emulator
  without Lambda) is polled by the tick itself, after its own group: the tick degrades to the
  single poller it was before fan-out, it never drops shards;
* a group invoked twice (Lambda may deliver an asynchronous event more than once), or a slow
  group still polling when the next tick's group starts: the two poll the same shards and the
  conditional claim lets exactly one of them claim each run;
* a shard invocation that arrives late (Lambda's asynchronous queue can hold an event for up to
  six hours, and retries a failed one) is dropped once older than ``STALE_TICKS`` poll periods:
  the ticks since have polled those shards;
* a shard invocation never fans out again, so there is no invocation loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .aws import client_kwargs, report_error
from .clock import Clock, SystemClock, to_ms
from .errors import ValidationError
from .settings import Settings

EVENT_KIND = "shards"
EVENT_VERSION = 1
STALE_TICKS = 2  # a shard invocation older than this many poll periods is dropped
START_THREADS = 16  # Invoke calls in flight at once while a tick starts its groups


def shard_groups(shards: int, groups: int) -> list[list[int]]:
    """``0..shards-1`` in ``min(groups, shards)`` contiguous groups whose sizes differ by at
    most one, in shard order (group 0 holds shard 0). Every shard is in exactly one group."""
    if shards < 1 or groups < 1:
        raise ValidationError("poller_fanout", f"needs shards ≥ 1 and groups ≥ 1, got {shards}, "
                              f"{groups}")
    n = min(groups, shards)
    return [list(range(g * shards // n, (g + 1) * shards // n)) for g in range(n)]


@dataclass(frozen=True)
class ShardTick:
    """The payload of one group's invocation: which shards, and when its tick started."""

    shards: tuple[int, ...]
    tick_at: int  # epoch ms

    def to_payload(self) -> bytes:
        body = {"dynacron": EVENT_KIND, "v": EVENT_VERSION, "shards": list(self.shards),
                "tick_at": self.tick_at}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, event: Any, shard_count: int) -> ShardTick | None:
        """The shard tick in ``event``, None for any other event (the schedule's own); a
        malformed shard tick raises ValidationError naming the field."""
        if not isinstance(event, dict) or event.get("dynacron") != EVENT_KIND:
            return None
        if event.get("v") != EVENT_VERSION:
            raise ValidationError("event.v", f"unsupported version {event.get('v')!r}")
        shards = event.get("shards")
        if (
            not isinstance(shards, list)
            or not shards
            or not all(_is_int(s) and 0 <= s < shard_count for s in shards)
        ):
            raise ValidationError(
                "event.shards", f"must be a non-empty list of shards in 0..{shard_count - 1}"
            )
        tick_at = event.get("tick_at")
        if not isinstance(tick_at, int) or isinstance(tick_at, bool) or not 0 <= tick_at < 10**13:
            raise ValidationError("event.tick_at", "must be epoch milliseconds (int)")
        return cls(tuple(shards), tick_at)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def lambda_client(settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    # One attempt plus a few retries: a group that cannot be started is polled by the tick.
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        max_pool_connections=START_THREADS,
    )
    return boto3.client("lambda", config=config, **client_kwargs(settings))


class FanOut:
    """Starts the asynchronous invocations of one tick's groups (all but the first)."""

    def __init__(
        self,
        client: Any,
        function_arn: str,
        settings: Settings,
        logger: Any = None,
        metrics: Any = None,
    ) -> None:
        self.client = client
        self.function_arn = function_arn
        self.settings = settings
        self.logger = logger
        self.metrics = metrics

    def start(self, groups: Sequence[Sequence[int]], tick_at: int) -> list[list[int]]:
        """Invoke this function once per group; returns the groups that could not be started."""
        if not groups:
            return []

        def invoke(group: Sequence[int]) -> list[int] | None:
            payload = ShardTick(tuple(group), tick_at).to_payload()
            try:
                self.client.invoke(
                    FunctionName=self.function_arn, InvocationType="Event", Payload=payload
                )
            except Exception as exc:
                report_error(exc, "fanout", self.logger, self.metrics, shards=list(group))
                return list(group)
            return None

        with ThreadPoolExecutor(min(START_THREADS, len(groups)), "dynacron-fanout") as pool:
            return [g for g in pool.map(invoke, groups) if g is not None]


PollFn = Callable[[Callable[[], float] | None, Sequence[int] | None], Any]


def handle(
    event: Any,
    poll: PollFn,
    fanout: Callable[[], FanOut] | None,
    settings: Settings,
    time_left: Callable[[], float] | None = None,
    clock: Clock | None = None,
    logger: Any = None,
) -> dict[str, int]:
    """One poller invocation: a tick (fans out, polls its own group and any it could not start)
    or a shard tick (polls its group). ``poll(time_left, shards)`` is ``Dispatcher.poll``;
    ``fanout()`` builds the ``FanOut`` (called only when there is a group to start).

    Returns the poll's report, plus for a tick ``groups`` (invocations polling this tick, itself
    included) and ``fanout_failed`` (groups it polled itself instead); a late shard tick returns
    ``stale=1`` and a malformed one ``refused=1`` (logged, not raised)."""
    clock = clock or SystemClock()
    now_ms = to_ms(clock.now())
    try:
        tick = ShardTick.parse(event, settings.shards)
    except ValidationError as exc:
        # Never raised: Lambda would retry an asynchronous event that can never parse.
        if logger is not None:
            logger.error("shard tick refused", extra={"field": exc.field, "error": str(exc)})
        return {"refused": 1}
    if tick is not None:
        if now_ms - tick.tick_at > STALE_TICKS * settings.period_s * 1000:
            return {"stale": 1, "shards": len(tick.shards)}
        return dict(_report(poll(time_left, tick.shards)))
    groups = shard_groups(settings.shards, settings.poller_fanout)
    own, others = groups[0], groups[1:]
    failed = fanout().start(others, now_ms) if others and fanout is not None else others
    owned = own + [s for g in failed for s in g]
    report = _report(poll(time_left, owned if len(groups) > 1 else None))
    report.update(groups=1 + len(others) - len(failed), fanout_failed=len(failed))
    return report


def _report(report: Any) -> dict[str, int]:
    return dict(report.as_dict()) if hasattr(report, "as_dict") else dict(report)
