"""A poll over a window of 300,000 due rows stays inside the memory and time the template gives
the poller (PollerMemorySize, PollerTimeout).

Memory: the poll runs in a child process whose address space is capped (RLIMIT_AS) at what it
had after imports plus ``BUDGET_MIB``, and that cap plus its RSS is far below PollerMemorySize.
A control child that keeps every row it reads dies under the same cap, so the cap bites.
Time: the clock advances by a measured cost per claim; the poll's ``time_left`` is the
template's timeout minus that clock, and the poll stops with the reserve left.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_template import fn_prop, load_template, param_default

from dynacron.clock import FrozenClock, to_ms
from dynacron.dispatch import TIME_RESERVE_S, Dispatcher
from dynacron.settings import Settings
from dynacron.store import bind_models
from dynacron.transitions import Transitions

ROWS = 300_000
BUDGET_MIB = 48  # the poll's own growth allowed: a tenth of the smallest PollerMemorySize
# Poller CPU per claim measured by bench/burst.py on ministack (2 shared cores, 2026-12-01):
# ~3.5 ms on one local core. Lambda at 512 MB has 0.29 vCPU: ~12 ms. The slower figure is used.
CLAIM_S = 0.012


class WindowStore(Transitions):
    """``per_shard`` pending manual runs per shard, due within the window, built only when their
    page is read; a claim costs ``claim_s`` on ``clock`` and no I/O (the storage layer's
    transitions run on the rows' own ``update``, overridden below)."""

    def __init__(self, settings: Settings, clock: FrozenClock, per_shard: int,
                 claim_s: float = 0.0, hoard: bool = False) -> None:
        self.settings = settings
        self.models = bind_models(settings)
        self.client = object()
        self.claims = 0
        self.kept: list[Any] = []  # the control: every row read, kept alive
        self._t0, self._n, self._hoard = to_ms(clock.now()), per_shard, hoard
        store = self

        class Row(self.models.Run):
            def update(self, actions: Any = None, condition: Any = None, **_kw: Any) -> None:
                store.claims += 1
                clock.advance(claim_s)

        self._row = Row

    def due_page(self, shard: int, horizon_ms: int, last_key: Any, page_size: int = 500) -> Any:
        start = 0 if last_key is None else last_key["i"]
        stop = min(start + page_size, self._n)
        rows = [self._row(f"T#s{shard}-{i}", f"R#{i}", task_id=f"s{shard}-{i}", run_id=f"r{i}",
                          scheduled_for=self._t0 + i, status="pending", manual=True,
                          due_shard=shard, due_at=self._t0 + i)
                for i in range(start, stop)]
        if self._hoard:
            self.kept.extend(rows)
        return rows, ({"i": stop} if stop < self._n else None)

    def pending_ahead(self, shard: int, after_ms: int, horizon_ms: int, limit: int) -> int:
        return 0


class NullSQS:
    def __init__(self) -> None:
        self.sent = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        self.sent += len(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def _dispatcher(shards: int, claim_s: float = 0.0, hoard: bool = False) -> Any:
    clock = FrozenClock()
    settings = Settings(table_name="fake", queue_url="https://q.example/q", shards=shards)
    store = WindowStore(settings, clock, ROWS // shards, claim_s, hoard)
    sqs = NullSQS()
    return Dispatcher(store, sqs, settings, clock=clock, concurrency=1), clock, sqs


@pytest.fixture(scope="module")
def poller() -> dict[str, Any]:
    tpl = load_template()
    return {"memory_mb": param_default(tpl, fn_prop(tpl, "PollerFunction", "MemorySize")),
            "timeout_s": param_default(tpl, fn_prop(tpl, "PollerFunction", "Timeout")),
            "shards": param_default(tpl, {"Ref": "ShardCount"})}


CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    from test_poller_budget import _dispatcher

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) // 1024
    d, _clock, sqs = _dispatcher({shards}, hoard={hoard})
    base_vm, base_rss = status("VmSize:"), status("VmRSS:")
    cap = (base_vm + {budget}) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        report = d.poll()
    except MemoryError:
        print(json.dumps({{"memory_error": True}}))
        sys.exit(0)
    print(json.dumps({{"sent": sqs.sent, "found": report.found, "base_rss_mib": base_rss,
                      "peak_rss_mib": status("VmHWM:"), "memory_error": False}}))
""")


def _child(shards: int, hoard: bool) -> dict[str, Any]:
    code = CHILD.format(tests=str(Path(__file__).parent), shards=shards, hoard=hoard,
                        budget=BUDGET_MIB)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_budget_is_far_below_the_template_memory(poller):
    # the poller process measured by bench/burst.py: 45 MiB after imports, peak 79 MiB at
    # B = 20,000 (its pools' threads and botocore's buffers): < 100 MiB; with the poll's budget
    # on top, still under a quarter of the memory the template gives it
    assert poller["memory_mb"] / 4 > 100 + BUDGET_MIB


def test_a_poll_of_300k_due_rows_fits_in_the_smaller_budget(poller):
    res = _child(poller["shards"], hoard=False)
    assert not res["memory_error"], res
    assert res["found"] == ROWS and res["sent"] == ROWS
    assert res["peak_rss_mib"] < res["base_rss_mib"] + BUDGET_MIB < poller["memory_mb"]


def test_control_keeping_every_row_breaks_the_same_budget(poller):
    # the cap is real: holding the window's rows (what a non-streaming poll does) fails under it
    assert _child(poller["shards"], hoard=True)["memory_error"]


def test_a_poll_of_300k_due_rows_stops_inside_the_template_timeout(poller):
    timeout = float(poller["timeout_s"])
    d, clock, sqs = _dispatcher(poller["shards"], claim_s=CLAIM_S)
    t0 = clock.now()
    report = d.poll(time_left=lambda: timeout - (clock.now() - t0).total_seconds())
    used = (clock.now() - t0).total_seconds()
    assert report.stopped == 1 and report.sent < ROWS
    # it took new batches until the reserve, and one batch (10 claims) at most beyond that
    reserve, batch = TIME_RESERVE_S, 10 * CLAIM_S
    assert timeout - reserve - batch <= used <= timeout - reserve + batch
    assert sqs.sent == report.sent == round(used / CLAIM_S)
