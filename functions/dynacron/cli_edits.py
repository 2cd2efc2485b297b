"""``dynacron update`` and ``dynacron delete`` (``Scheduler.update`` / ``Scheduler.delete``).

Registered on the ``dynacron`` group by ``cli.py``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import click

from .cli import (
    DURATION,
    EXIT_CODES_EPILOG,
    cli,
    pass_config,
)
from .cli import Config as _Config
from .cli import build_trigger as _build_trigger
from .cli import payload as _payload
from .cli import print_json as _print_json
from .cli import show_task as _show_task
from .cli import trigger_options as _trigger_options
from .edits import UNSET
from .types import MisfirePolicy


@cli.command(epilog=EXIT_CODES_EPILOG)
@click.argument("task_id")
@click.option("--payload", "payload_text", metavar="JSON", help="New payload, a JSON object.")
@click.option(
    "--payload-file", type=click.File("r", encoding="utf-8"), help="Payload file (- = stdin)."
)
@_trigger_options
@click.option("--max-attempts", type=int, help="Attempts incl. the first.")
@click.option("--backoff-base", type=DURATION, help="First retry delay.")
@click.option("--backoff-max", type=DURATION, help="Longest retry delay.")
@click.option("--timeout", type=DURATION, help="Per attempt.")
@click.option("--misfire", type=click.Choice([p.value for p in MisfirePolicy]))
@click.option("--lane", metavar="LANE", help="Move the task to this lane: default, critical, bulk.")
@click.option("--spread", type=DURATION, help="Start each run up to this much later (≤ 900s).")
@click.option("--no-spread", is_flag=True, help="Remove the task's spread.")
@click.option("--limit", metavar="NAME", help="Share this limit (`dynacron limits set`).")
@click.option("--no-limit", is_flag=True, help="Remove the task's limit.")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@pass_config
def update(
    cfg: _Config,
    task_id: str,
    payload_text: str | None,
    payload_file: Any,
    at: datetime | None,
    every: float | None,
    cron: str | None,
    tz: str | None,
    start_at: datetime | None,
    end_at: datetime | None,
    max_attempts: int | None,
    backoff_base: float | None,
    backoff_max: float | None,
    timeout: float | None,
    misfire: str | None,
    lane: str | None,
    spread: float | None,
    no_spread: bool,
    limit: str | None,
    no_limit: bool,
    as_json: bool,
) -> None:
    """Change a task: only the options given change (a new trigger fires from now on)."""
    meta = click.get_current_context().meta
    trigger_given = any(v is not None for v in (at, every, cron)) or any(
        k in meta for k in ("dynacron.when", "dynacron.rrule")
    )
    if (tz or start_at or end_at) and not trigger_given:
        raise click.UsageError("--tz, --start-at and --end-at go with a new trigger")
    changes: dict[str, Any] = {}
    if payload_text is not None or payload_file is not None:
        changes["payload"] = _payload(payload_text, payload_file)
    if trigger_given:
        changes["trigger"] = _build_trigger(at, every, cron, tz, start_at, end_at)
    retry_parts = {"max_attempts": max_attempts, "backoff_base": backoff_base,
                   "backoff_max": backoff_max}  # fmt: skip
    scheduler = cfg.scheduler()
    if any(v is not None for v in retry_parts.values()):
        current = scheduler.get(task_id).retry
        given = {k: v for k, v in retry_parts.items() if v is not None}
        changes["retry"] = dataclasses.replace(current, **given)
    if timeout is not None:
        changes["timeout"] = timeout
    if misfire is not None:
        changes["misfire"] = misfire
    changes.update(_lane_changes(lane, spread, no_spread, limit, no_limit))
    if not changes:
        raise click.UsageError("nothing to update: give --payload, a trigger, --timeout, ...")
    task = scheduler.update(task_id, **{k: changes.get(k, UNSET) for k in changes})
    if as_json:
        _print_json(task)
    else:
        _show_task(task, title=f"updated task {task.task_id}")


def _lane_changes(
    lane: str | None, spread: float | None, no_spread: bool, limit: str | None, no_limit: bool
) -> dict[str, Any]:
    """``--lane``/``--spread``/``--limit`` (``--no-spread``/``--no-limit`` remove them); the
    values are checked by ``Scheduler.update`` as ``schedule`` checks them."""
    if no_spread and spread is not None:
        raise click.UsageError("--spread and --no-spread contradict each other")
    if no_limit and limit is not None:
        raise click.UsageError("--limit and --no-limit contradict each other")
    changes: dict[str, Any] = {}
    if lane is not None:
        changes["lane"] = lane
    if spread is not None or no_spread:
        changes["spread"] = spread
    if limit is not None or no_limit:
        changes["limit"] = limit
    return changes


@cli.command(epilog=EXIT_CODES_EPILOG)
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON.")
@pass_config
def delete(cfg: _Config, task_id: str, as_json: bool) -> None:
    """Delete a task, its pending runs and its whole history; the id can be used again."""
    runs = cfg.scheduler().delete(task_id)
    if as_json:
        _print_json({"task_id": task_id, "deleted": True, "runs": runs})
    else:
        click.echo(f"task {task_id} deleted with its {runs} run(s)")
