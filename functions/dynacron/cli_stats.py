"""``dynacron stats`` and ``dynacron watch``: a deployment at a glance (``Scheduler.stats``).

Registered on the ``dynacron`` group by ``cli.py``; kept apart so the figures' layout lives
in one place. What each read costs is in ``dynacron.stats``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from .cli import (
    DURATION,
    EXIT_CODES_EPILOG,
    cli,
    pass_config,
)
from .cli import Config as _Config
from .cli import console as _console
from .cli import delta as _delta
from .cli import iso as _iso
from .cli import print_json as _print_json
from .cli_tables import plural


def _late(value: timedelta | None) -> str:
    if value is None:
        return "-"
    ms = value.total_seconds() * 1000
    return f"{ms:.0f} ms" if abs(ms) < 10_000 else f"{ms / 1000:.1f} s"


def stats_table(st: Any) -> Any:
    """The Stats as a two-column rich table (fits 80 columns)."""
    from rich.table import Table

    span = _span(st.until - st.since)
    table = Table(
        title=f"dynacron stats · runs scheduled in the last {span} · {_iso(st.until)}",
        title_justify="left",
        show_header=False,
    )
    table.add_column("figure", no_wrap=True)
    table.add_column("value", overflow="fold")
    shown = {k: v for k, v in st.runs.items() if v}
    table.add_row("runs", "  ".join(f"{k} {v:,}" for k, v in shown.items()) or "none")
    table.add_row(
        "lateness",
        f"p50 {_late(st.lateness_p50)}  p99 {_late(st.lateness_p99)}  max "
        f"{_late(st.lateness_max)}  ({plural(st.lateness_samples, 'first attempt')})",
    )
    table.add_row("retries", f"{st.retries:,}")
    table.add_row("dead", f"{st.dead:,}")
    table.add_row(
        "work queue", "-" if st.queue_depth is None else plural(st.queue_depth, "message")
    )
    table.add_row("DLQ", "-" if st.dlq_depth is None else plural(st.dlq_depth, "message"))
    late = st.oldest_overdue
    table.add_row(
        "oldest overdue",
        "none"
        if late is None
        else f"{late.task_id} {late.run_id} ({late.status.value}, due {_iso(late.scheduled_for)},"
        f" {_span(st.until - late.scheduled_for)} ago)",
    )
    read = f"{plural(st.scanned_items, 'item')} read in {plural(st.requests, 'request')}"
    table.add_row("cost", read + ("" if st.complete else " (sampled: --max-items)"))
    return table


def _span(td: timedelta) -> str:
    """``1h``, ``10m``, ``2d3h4m5s``."""
    return _delta(td).lstrip("+")


_since = click.option(
    "--since", type=DURATION, default="1h", show_default=True, help="Window (runs scheduled in it)."
)
_max_items = click.option(
    "--max-items",
    type=click.IntRange(1, 10_000_000),
    help="Stop the table scan after this many items [20000].",
)


@cli.command("stats", epilog=EXIT_CODES_EPILOG)
@_since
@_max_items
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_config
def stats_cmd(cfg: _Config, since: float, max_items: int | None, as_json: bool) -> None:
    """Runs by status, lateness, retries, dead, queue depths, the oldest overdue run."""
    st = cfg.scheduler().stats(since=timedelta(seconds=since), max_items=max_items)
    if as_json:
        _print_json({**_as_dict(st), "total": st.total})
    else:
        _console().print(stats_table(st))


def _as_dict(st: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(st, f.name) for f in dataclasses.fields(st)}


@cli.command("watch", epilog=EXIT_CODES_EPILOG)
@_since
@_max_items
@click.option("--interval", type=DURATION, default="5s", show_default=True)
@click.option("--iterations", type=click.IntRange(min=1), help="Stop after N refreshes.")
@pass_config
def watch_cmd(
    cfg: _Config, since: float, max_items: int | None, interval: float, iterations: int | None
) -> None:
    """``stats``, refreshed every --interval until Ctrl-C (each refresh is one stats read)."""
    from rich.live import Live

    scheduler = cfg.scheduler()
    console = _console()

    def read() -> Any:
        return stats_table(scheduler.stats(since=timedelta(seconds=since), max_items=max_items))

    done = 0
    try:
        if not console.is_terminal:  # piped: one table per refresh, no cursor movement
            while iterations is None or done < iterations:
                console.print(read())
                done += 1
                if iterations is None or done < iterations:
                    scheduler.clock.sleep(interval)
            return
        with Live(read(), console=console, auto_refresh=False) as live:
            done = 1
            while iterations is None or done < iterations:
                scheduler.clock.sleep(interval)
                live.update(read(), refresh=True)
                done += 1
    except KeyboardInterrupt:
        return
