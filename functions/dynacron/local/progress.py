"""Live progress of ``dynacron local``, counted from the poller's and the worker's event hooks.

The Dispatcher and the Executor report what they do through ``on_event(kind, info)``; this
module folds those events into gauges (queued, running, retrying: runs whose latest event put
them there) and counters (succeeded, dead, ...), plus the lateness of each started attempt. No
table scan is involved, except "due soon", one COUNT query of the due index per shard per tick.

On a terminal the figures are a ``rich.live.Live`` panel on stderr (4 refreshes a second);
otherwise a compact status line goes to stderr every few seconds, only when something changed.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TextIO

#: How far ahead "due soon" looks (pending runs in the due index).
DUE_SOON_S = 60.0
_LATENESS_SAMPLES = 10_000
_GAUGES = ("queued", "running", "retrying")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f} s"
    return f"{value:.0f} ms"


class Stats:
    """Thread-safe fold of dispatcher/executor events."""

    def __init__(self, keep_first_lateness: bool = False) -> None:
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], str] = {}  # non-terminal runs only
        self._lateness: deque[float] = deque(maxlen=_LATENESS_SAMPLES)
        self.first_lateness: dict[tuple[str, str], float] | None = (
            {} if keep_first_lateness else None
        )
        self.counts: dict[str, int] = {
            "claimed": 0,
            "sent": 0,
            "send_failed": 0,
            "started": 0,
            "succeeded": 0,
            "retries": 0,
            "dead": 0,
            "expired": 0,
            "skipped": 0,
            "undecodable": 0,
            "orphan": 0,
            "errors": 0,
        }
        self.due_soon: int | None = None
        self.polls = 0
        # Per lane: attempts started; per limit: attempts started and throttled ms in total.
        self.lane_started: dict[str, int] = {}
        self.limit_started: dict[str, int] = {}
        self.limit_throttled_ms: dict[str, int] = {}
        self.last_error: str | None = None
        self.started_at = time.monotonic()
        self.inflight_batches = 0

    # --- the hook ------------------------------------------------------------------------------

    def on_event(self, kind: str, info: dict[str, Any]) -> None:
        key = (str(info.get("task_id", "")), str(info.get("run_id", "")))
        with self._lock:
            if kind == "claimed":
                self.counts["claimed"] += 1
                self._state[key] = "queued"
            elif kind == "sent":
                # Only counted: a due-now run can start (even finish) before "sent" arrives.
                self.counts["sent"] += 1
            elif kind == "send_failed":
                self.counts["send_failed"] += int(info.get("count", 1) or 1)
            elif kind == "started":
                self.counts["started"] += 1
                self._state[key] = "running"
                self._by_lane_and_limit(info)
                lateness = info.get("lateness_ms")
                # A retry starts late on purpose (backoff): only first attempts measure precision.
                if isinstance(lateness, int | float) and info.get("attempt", 1) == 1:
                    self._lateness.append(float(lateness))
                    if self.first_lateness is not None:
                        self.first_lateness.setdefault(key, float(lateness))
            elif kind == "retrying":
                self.counts["retries"] += 1
                self._state[key] = "retrying"
            elif kind in ("succeeded", "dead", "expired", "skipped"):
                self.counts[kind] += 1
                self._state.pop(key, None)
            elif kind in ("undecodable", "orphan"):
                self.counts[kind] += 1
            elif kind == "error":
                self.counts["errors"] += 1
                self.last_error = str(info.get("error", ""))[:200]

    def _by_lane_and_limit(self, info: dict[str, Any]) -> None:
        """(caller holds the lock) the per-lane and per-limit figures of one start."""
        lane = str(info.get("lane") or "default")
        self.lane_started[lane] = self.lane_started.get(lane, 0) + 1
        limit = info.get("limit")
        if limit:
            self.limit_started[limit] = self.limit_started.get(limit, 0) + 1
            waited = int(info.get("throttled_ms") or 0)
            self.limit_throttled_ms[limit] = self.limit_throttled_ms.get(limit, 0) + waited

    def note_error(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self.counts["errors"] += 1
            self.last_error = f"{where}: {type(exc).__name__}: {exc}"[:200]

    def batch_started(self) -> None:
        with self._lock:
            self.inflight_batches += 1

    def batch_finished(self) -> None:
        with self._lock:
            self.inflight_batches -= 1

    # --- reading ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            gauges = dict.fromkeys(_GAUGES, 0)
            for state in self._state.values():
                gauges[state] = gauges.get(state, 0) + 1
            lateness = list(self._lateness)
            return {
                **self.counts,
                **gauges,
                "due_soon": self.due_soon,
                "polls": self.polls,
                "last_error": self.last_error,
                "inflight_batches": self.inflight_batches,
                "uptime_s": time.monotonic() - self.started_at,
                "p50": percentile(lateness, 50),
                "p99": percentile(lateness, 99),
            }


def status_line(snap: dict[str, Any]) -> str:
    due = "?" if snap["due_soon"] is None else snap["due_soon"]
    parts = [
        f"due≤{DUE_SOON_S:.0f}s {due}",
        f"queued {snap['queued']}",
        f"running {snap['running']}",
        f"succeeded {snap['succeeded']}",
        f"retrying {snap['retrying']}",
        f"dead {snap['dead']}",
    ]
    for extra in ("expired", "skipped", "errors"):
        if snap[extra]:
            parts.append(f"{extra} {snap[extra]}")
    parts.append(f"lateness p50 {fmt_ms(snap['p50'])} p99 {fmt_ms(snap['p99'])}")
    return "dynacron local: " + " · ".join(parts)


class Progress:
    """Shows ``Stats`` until stopped: rich Live on a TTY, else a status line every few seconds."""

    def __init__(
        self,
        stats: Stats,
        stream: TextIO | None = None,
        title: Callable[[], str] | None = None,
        line_every_s: float = 5.0,
        live: bool | None = None,
    ) -> None:
        self.stats = stats
        self.stream = stream or sys.stderr
        self.title = title or (lambda: "dynacron local")
        self.line_every_s = line_every_s
        self.live = self.stream.isatty() if live is None else live
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None

    def start(self) -> None:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream)
            self._live = Live(
                self._render(),
                console=console,
                refresh_per_second=4,
                transient=False,
                get_renderable=self._render,
            )
            self._live.start()
            return
        self._thread = threading.Thread(target=self._lines, name="dynacron-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _lines(self) -> None:
        last = ""
        while not self._stop.wait(self.line_every_s):
            line = status_line(self.stats.snapshot())
            if line != last:
                print(line, file=self.stream, flush=True)
                last = line

    def _render(self) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        snap = self.stats.snapshot()
        grid = Table.grid(padding=(0, 2))
        for _ in range(4):
            grid.add_column(justify="right")
            grid.add_column(justify="left")
        due = "…" if snap["due_soon"] is None else str(snap["due_soon"])
        grid.add_row(
            f"[bold]{due}[/]",
            f"due in ≤{DUE_SOON_S:.0f}s",
            f"[bold cyan]{snap['queued']}[/]",
            "queued",
            f"[bold yellow]{snap['running']}[/]",
            "running",
            f"[bold magenta]{snap['retrying']}[/]",
            "retrying",
        )
        grid.add_row(
            f"[bold green]{snap['succeeded']}[/]",
            "succeeded",
            f"[bold red]{snap['dead']}[/]",
            "dead",
            f"{snap['retries']}",
            "retries",
            f"{snap['expired'] + snap['skipped']}",
            "expired/skipped",
        )
        grid.add_row(
            fmt_ms(snap["p50"]),
            "lateness p50",
            fmt_ms(snap["p99"]),
            "lateness p99",
            f"{snap['started']}",
            "attempts",
            f"{snap['errors']}",
            "errors",
        )
        body: Any = grid
        if snap["last_error"]:
            outer = Table.grid()
            outer.add_row(grid)
            outer.add_row(f"[red]last error:[/] {snap['last_error']}")
            body = outer
        return Panel(body, title=self.title(), subtitle="Ctrl-C to stop", border_style="blue")
