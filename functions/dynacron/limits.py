"""Rate limits: runs that share a limit never start faster than its rate, across every poller.

A limit is one item in the task table (``store.LimitRow``, pk ``L#<name>``) holding its rate,
its burst and a counter, ``tat_ms``: GCRA's *theoretical arrival time* (the generic cell rate
algorithm, a token bucket kept as one timestamp). With interval ``T = 1 / rate`` and tolerance
``tau = (burst - 1) * T``, a run that wants to start at ``s`` gets the slot
``start = max(s, tat - tau)`` and moves the counter to ``max(tat, start) + T``. So in any window
of ``W`` seconds at most ``burst + W * rate`` runs are given a start.

The dispatcher reserves the slots of a whole batch at once, right before it sends the batch
(``Throttle.apply``): one strongly consistent GetItem of the limit and one conditional
UpdateItem that moves the counter only if nobody moved it since (optimistic; a lost race reads
again). The slot travels in the SQS message (``not_before``): ``DelaySeconds`` is computed from
it and the worker waits for it, then records ``throttled_ms`` (slot - planned start) in the
same write that starts the run. Nothing else is written per run.

A run whose slot lies beyond what one claim can hold (the claim's lease, and 900 s of
``DelaySeconds``) is not sent: its claim is *deferred* (one UpdateItem: due again just before
its slot, the dispatch not counted), and it reserves again then. Over-rate runs wait; none is
dropped.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import DynacronError, ValidationError
from .registry import check_name
from .store import LIMIT_SK as LIMIT_SK  # re-exported: where a limit's item lives
from .store import RunRow, Store, start_ms
from .store import limit_pk as limit_pk

MAX_LIMIT_NAME = 64
#: Fastest and slowest rates a limit accepts, runs per second.
MAX_RATE_PER_S = 10_000.0
MIN_RATE_PER_S = 1.0 / 86_400
MAX_BURST = 1000
MAX_CONCURRENCY = 10_000
_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
_CAS_TRIES = 8
#: Slack kept between a slot and the end of the claim's lease (the worker reads, then starts).
LEASE_MARGIN_MS = 10_000


def check_limit_name(name: Any) -> str:
    return check_name("limit", name, MAX_LIMIT_NAME)


def parse_rate(rate: Any) -> float:
    """``"10/s"``, ``"100/m"``, ``"5/10s"``, ``"2/h"`` → runs per second; ``ValidationError``
    on anything else, a zero or a negative count."""
    if not isinstance(rate, str):
        raise ValidationError("rate", f"must be a string like '10/s', got {type(rate).__name__}")
    match = _RATE.match(rate.lower())
    if not match or match.group(3) not in _UNITS:
        raise ValidationError(
            "rate", f"{rate!r} is not COUNT/UNIT (e.g. '10/s', '100/m', '5/10s', '2/h')"
        )
    count = float(match.group(1))
    period = float(match.group(2) or 1) * _UNITS[match.group(3)]
    if count <= 0 or period <= 0:
        raise ValidationError("rate", f"{rate!r}: count and period must be > 0")
    per_s = count / period
    if not MIN_RATE_PER_S <= per_s <= MAX_RATE_PER_S:
        raise ValidationError(
            "rate", f"{rate!r} is {per_s:g}/s; must be 1/day .. {MAX_RATE_PER_S:g}/s"
        )
    return per_s


def _check_int(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValidationError(field, f"must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class Limit:
    """A limit as ``Scheduler.set_limit`` made it. ``rate`` None = no rate limit."""

    name: str
    rate: str | None
    burst: int
    concurrency: int | None
    per_s: float | None = None

    @property
    def interval_ms(self) -> float | None:
        return None if not self.per_s else 1000.0 / self.per_s


def make_limit(name: Any, rate: Any, burst: Any, concurrency: Any) -> Limit:
    """Validate ``set_limit``'s arguments (``ValidationError`` naming the field)."""
    check_limit_name(name)
    per_s = None if rate is None else parse_rate(rate)
    burst = _check_int("burst", burst, 1, MAX_BURST)
    if concurrency is not None:
        concurrency = _check_int("concurrency", concurrency, 1, MAX_CONCURRENCY)
    if per_s is None and concurrency is None:
        raise ValidationError("rate", "give a rate, a concurrency, or both")
    return Limit(name, rate, burst, concurrency, per_s)


class LimitNotFound(ValidationError):
    def __init__(self, name: str) -> None:
        super().__init__("limit", f"unknown limit {name!r} (create it with set_limit first)")


class LimitStore:
    """Limit items, read and changed through the storage layer (``transitions``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def row(self, name: str) -> Any:
        return self.store.get_limit_row(name)

    def get(self, name: str) -> Limit:
        row = self.row(name)
        if row is None:
            raise LimitNotFound(name)
        return _limit_of(row)

    def put(self, limit: Limit) -> Limit:
        """Create or change a limit; the counter and leases survive a change of rate."""
        self.store.put_limit(limit.name, limit.rate, limit.per_s, limit.burst, limit.concurrency)
        return limit

    def delete(self, name: str) -> bool:
        row = self.row(name)
        return row is not None and self.store.delete_limit(row)

    def all(self) -> Iterator[Limit]:
        for row in self.store.scan_limit_rows():
            yield _limit_of(row)

    def reserve(
        self, name: str, wanted_ms: list[int], now_ms: int, latest_ms: int
    ) -> tuple[list[int], int | None]:
        """Slots for runs wanting to start at ``wanted_ms`` (any order), in one conditional write.

        Returns one slot per entry, in the order given (``-1``: its slot would be after
        ``latest_ms``, not reserved, the caller defers it) and the tolerance: how late (ms) a
        worker may still start a run in its slot (half the interval). A missing limit (cleared)
        or one without a rate gives every run its wanted time and no tolerance.
        """
        for _ in range(_CAS_TRIES):
            row = self.row(name)
            if row is None or not row.per_s:
                return list(wanted_ms), None
            interval = 1000.0 / float(row.per_s)
            tol = max(1, int(interval // 2))
            slots, tat = gcra(wanted_ms, row.tat_ms, interval, int(row.burst or 1), latest_ms)
            if tat is None or tat == row.tat_ms:
                return slots, tol  # nothing reserved (all deferred)
            if self.store.move_counter(row, tat):
                return slots, tol
            time.sleep(0.005)  # another poller moved the counter: read it again
        raise DynacronError(f"limit {name!r}: the counter kept changing; try again")


def gcra(
    wanted_ms: list[int], tat_ms: float | None, interval_ms: float, burst: int, latest_ms: int
) -> tuple[list[int], float | None]:
    """Pure GCRA over a batch: (slot per entry or -1, new counter). Earliest wanted first."""
    tau = (burst - 1) * interval_ms
    tat = tat_ms
    slots = [-1] * len(wanted_ms)
    for i in sorted(range(len(wanted_ms)), key=lambda k: wanted_ms[k]):
        want = wanted_ms[i]
        slot = want if tat is None else max(want, math.ceil(tat - tau))
        if slot > latest_ms:
            break  # deferred; slots only grow in this order, so every later run is too
        slots[i] = int(slot)
        tat = max(tat if tat is not None else slot, slot) + interval_ms
    return slots, tat


def reslot(store: Store, run: RunRow, now_ms: int) -> int:
    """A new slot for a run that reached its worker too late to start in its own (starting it
    anyway would crowd the runs of the next slots): the next free slot, kept on the run
    (``slot_ms``) so that a redelivery waits for it rather than reserving again."""
    limits = LimitStore(store)
    slots, _ = limits.reserve(str(run.limit), [now_ms], now_ms, now_ms + 900_000)
    slot = slots[0] if slots[0] >= 0 else now_ms + 900_000
    store.reslot(run, slot)  # not applied: the run moved on, whoever moved it owns it
    return slot


def _limit_of(row: Any) -> Limit:
    return Limit(
        name=row.name,
        rate=row.rate,
        burst=int(row.burst or 1),
        concurrency=None if row.concurrency is None else int(row.concurrency),
        per_s=None if row.per_s is None else float(row.per_s),
    )


class Throttle:
    """The dispatcher's step between claim and send: slots for the batch's limited runs."""

    def __init__(self, store: Store, lease_s: float, max_delay_s: int) -> None:
        self.limits = LimitStore(store)
        self.store = store
        self.lease_ms = int(lease_s * 1000)
        self.max_delay_ms = max_delay_s * 1000

    def apply(self, rows: list[RunRow], now_ms: int) -> list[tuple[int | None, int | None]]:
        """``(not_before, tolerance)`` (ms) per row: None for a row without a limit, -1 for a
        row to defer (its slot is past what the claim can hold)."""
        out: list[tuple[int | None, int | None]] = [(None, None)] * len(rows)
        by_limit: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            if row.limit:
                by_limit.setdefault(row.limit, []).append(i)
        for name, indexes in by_limit.items():
            wanted = [max(now_ms, start_ms(rows[i])) for i in indexes]
            # The slot must come before the claim's lease ends (the claim keyed it at
            # max(now, start) + lease) and within one DelaySeconds.
            latest = min(now_ms + self.max_delay_ms, min(wanted) + self.lease_ms - LEASE_MARGIN_MS)
            slots, tol = self.limits.reserve(name, wanted, now_ms, latest)
            if tol is None:
                continue  # no rate (cleared, or concurrency only): nothing to hold back
            for i, slot in zip(indexes, slots, strict=True):
                out[i] = (slot, tol)
        return out

    def defer(self, row: RunRow, fence: str, now_ms: int) -> bool:
        """Leave a claimed run for a later tick: due again in a few seconds short of the slots
        now taken, this dispatch not counted (so waiting never makes a run dead)."""
        due = now_ms + max(1000, self.lease_ms // 4)
        # not applied: it moved on (cancelled, reclaimed), whoever moved it owns it
        return self.store.defer(row, fence, due)


# --- concurrency: leases on the limit's item ---------------------------------------------------


class ConcurrencyGate:
    """At most ``concurrency`` runs of a limit running at once, by leases on the limit's item.

    A lease is ``leases[token] = expiry`` (epoch ms): the attempt's own running lease (timeout
    plus the lease period), one token per delivery (``lease_token``). A worker that dies never
    releases its lease, and the slot comes back when the lease expires: expired leases do not
    count and are dropped by the next write.
    Every change is a conditional write on the item's version (optimistic).
    """

    def __init__(self, store: Store) -> None:
        self.limits = LimitStore(store)
        self.store = store

    def acquire(self, name: str, token: str, now_ms: int, expiry_ms: int) -> bool:
        """Take a slot (True), or False when the limit is full. A limit without a concurrency
        (or cleared) always admits."""
        for _ in range(_CAS_TRIES):
            row = self.limits.row(name)
            if row is None or not row.concurrency:
                return True
            live = {k: v for k, v in _leases(row).items() if v > now_ms}
            if token not in live and len(live) >= int(row.concurrency):
                return False
            live[token] = expiry_ms
            if self._write(row, live):
                return True
        raise DynacronError(f"limit {name!r}: its leases kept changing; try again")

    def release(self, name: str, token: str, now_ms: int) -> None:
        for _ in range(_CAS_TRIES):
            row = self.limits.row(name)
            leases = _leases(row) if row is not None else {}
            if token not in leases:
                return
            live = {k: v for k, v in leases.items() if k != token and v > now_ms}
            if self._write(row, live):
                return
        # Not released: the lease expires by itself.

    def _write(self, row: Any, leases: dict[str, int]) -> bool:
        return bool(self.store.set_leases(row, leases))


def _leases(row: Any) -> dict[str, int]:
    raw = row.leases
    if raw is None:
        return {}
    data = raw.as_dict() if hasattr(raw, "as_dict") else dict(raw)
    return {str(k): int(v) for k, v in data.items()}


def lease_token(task_id: str, run_id: str, attempt: int) -> str:
    """One delivery's claim on a slot. Each delivery takes its own token: two copies of one
    attempt's message (SQS delivers at least once; a re-claim sends another) may both reach
    the gate, and the copy whose start then loses releases its token. Had they shared one,
    that release would free the slot of the copy still running (over-admission)."""
    return f"{task_id}/{run_id}/{attempt}/{secrets.token_hex(4)}"
