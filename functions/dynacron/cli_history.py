"""``dynacron runs --status S --since D [TASK_ID]``: runs filtered by status and time.

With TASK_ID the task's runs (one Query of its partition) are filtered; without it every
task's runs are found by ``Scheduler.find_runs`` (a bounded Scan; its cost in
``dynacron.history``). Registered through ``cli.runs``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from .cli import Config as _Config
from .cli import display_zone as _display_zone
from .cli import print_json as _print_json
from .cli import run_columns as _run_columns
from .cli import run_row as _run_row
from .cli import table as _table

#: ``--status`` without ``--since`` and without TASK_ID looks this far back.
DEFAULT_SINCE_S = 3600.0


def filtered_runs(
    cfg: _Config,
    task_id: str | None,
    limit: int,
    status: str | None,
    since: float | None,
    as_json: bool,
    follow: bool,
    wide: bool,
    tz_name: str | None,
) -> None:
    from .cli_tables import Col, plural

    if follow:
        raise click.UsageError("--follow goes with TASK_ID alone (no --status or --since)")
    if since is not None and since <= 0:
        raise click.BadParameter("must be > 0", param_hint="'--since'")
    scheduler = cfg.scheduler()
    note = ""
    if task_id is not None:
        task = scheduler.get(task_id)
        cutoff = None if since is None else scheduler.clock.now() - timedelta(seconds=since)
        found = [
            r
            for r in scheduler.runs(task_id)
            if (status is None or r.status.value == status)
            and (cutoff is None or max(r.scheduled_for, r.finished_at or r.scheduled_for) >= cutoff)
        ][:limit]
        zone, title = _display_zone(tz_name, task), f"of {task_id}"
    else:
        window = DEFAULT_SINCE_S if since is None else since
        result = scheduler.find_runs(window, status=status)
        found = result.runs[:limit]
        zone, title = _display_zone(tz_name), "across tasks"
        if not result.complete:
            note = f" · scan stopped after {result.items_read} items: narrow --since"
    if as_json:
        _print_json(found)
        return
    what = f"{status} " if status else ""
    span = ""
    if task_id is None or since is not None:
        span = f" in the last {_span(since if since is not None else DEFAULT_SINCE_S)}"
    columns: tuple[Any, ...] = _run_columns()
    rows = [_run_row(r, zone) for r in found]
    if task_id is None:
        columns = (Col("task_id", 0, 8), *columns)
        rows = [[r.task_id, *row] for r, row in zip(found, rows, strict=True)]
    label = plural(len(found), what + "run")
    _table(f"{label} {title}{span}, newest first{note}", columns, rows, wide=wide)


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"

