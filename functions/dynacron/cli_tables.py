"""Tables that fit the terminal: columns dropped by priority, ids cut with an ellipsis.

Every table of the CLI (and the demo's summary) goes through ``render``. Below the terminal's
width, the least important columns are hidden first (the table says which, and ``--wide``
shows them all); what is left gets at least its ``min_width``, ids are cut with ``…`` and
free text (errors, triggers) wraps. ``--wide`` prints every column at its full width,
whatever the terminal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: What a column costs beside its text in rich's default box: padding 1+1 and a border.
_COLUMN_OVERHEAD = 3


@dataclass(frozen=True)
class Col:
    """A column: ``priority`` 0 is never hidden; higher numbers are hidden first."""

    name: str
    priority: int = 5
    min_width: int = 6
    wrap: bool = False  # free text: wraps onto more lines instead of being cut
    justify: str = "left"
    footer: str = ""


def as_col(spec: str | Col) -> Col:
    return spec if isinstance(spec, Col) else Col(spec)


#: Free text (errors, results) is cut after this many lines of its column.
MAX_TEXT_LINES = 3


def _natural(columns: Sequence[Col], rows: Sequence[Sequence[str]]) -> list[int]:
    return [
        max([len(c.name), len(c.footer), *(len(r[i]) for r in rows)])
        for i, c in enumerate(columns)
    ]


def fit(columns: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> dict[int, int]:
    """Which columns to show in ``width`` characters, and each one's width: {index: width}.

    Columns are hidden, least important first, until the rest fit at their minimum width; the
    room left is then given back to them up to their natural width, free text last.
    """
    natural = _natural(columns, rows)
    floor = [min(natural[i], max(c.min_width, 1)) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))

    def room(idx: list[int]) -> int:
        return width - 1 - _COLUMN_OVERHEAD * len(idx)

    while len(shown) > 1 and sum(floor[i] for i in shown) > room(shown):
        candidates = [i for i in shown if columns[i].priority > 0]
        if not candidates:
            break
        shown.remove(max(candidates, key=lambda i: (columns[i].priority, i)))
    widths = {i: floor[i] for i in shown}
    spare = room(shown) - sum(widths.values())
    # Give the spare room back: fixed columns first (ids, times: whole is better than cut),
    # by importance, then free text, which can wrap.
    order = sorted(shown, key=lambda i: (columns[i].wrap, columns[i].priority, i))
    for i in order:
        extra = min(max(spare, 0), natural[i] - widths[i])
        widths[i] += extra
        spare -= extra
    return widths


def render(
    console: Any,
    title: str | None,
    columns: Iterable[str | Col],
    rows: Iterable[Iterable[Any]],
    *,
    wide: bool = False,
    footer: bool = False,
) -> None:
    """Print a table on ``console`` fitted to its width (or, ``wide``, at full width)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    cols = [as_col(c) for c in columns]
    cells = [[_cell(v) for v in row] for row in rows]
    if wide:
        natural = _natural(cols, cells)
        widths = dict(enumerate(natural))
        full = 1 + sum(w + _COLUMN_OVERHEAD for w in natural)
        console = Console(
            file=console.file, width=max(console.width, full), highlight=False, markup=False
        )
    else:
        widths = fit(cols, cells, console.width)
    hidden = [c.name for i, c in enumerate(cols) if i not in widths]
    if hidden:
        title = f"{title or ''} · hidden: {', '.join(hidden)} (--wide)".lstrip(" ·")
    table = Table(title=title, title_justify="left", show_footer=footer)
    for i, w in widths.items():
        c = cols[i]
        table.add_column(
            c.name,
            footer=c.footer,
            justify=c.justify,  # type: ignore[arg-type]
            width=w,
            no_wrap=not c.wrap,
            overflow="fold" if c.wrap else "ellipsis",
        )
    for row in cells:
        table.add_row(*(Text(_clip(row[i], cols[i], w, wide)) for i, w in widths.items()))
    console.print(table)


def _clip(text: str, col: Col, width: int, wide: bool) -> str:
    limit = width * MAX_TEXT_LINES
    if wide or not col.wrap or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _cell(value: Any) -> str:
    from enum import Enum

    if value is None:
        return "-"
    if isinstance(value, Enum):
        return str(value.value)
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 task``, ``2 tasks``, ``0 tasks`` (``many`` for irregular plurals)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


# --- time zones ----------------------------------------------------------------------------


def env_zone() -> tzinfo | None:
    """The zone named by ``$TZ`` (an IANA name), if it names one."""
    name = (os.environ.get("TZ") or "").lstrip(":")
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def task_zone(task: Any) -> tzinfo:
    """A task's own zone: its Cron's ``tz``; UTC for At and Every."""
    name = getattr(getattr(task, "trigger", None), "tz", None)
    try:
        return ZoneInfo(name) if isinstance(name, str) and name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


def when(value: datetime | None, zone: tzinfo, with_zone: bool = False) -> str:
    """``2026-03-02 13:00:00`` in ``zone`` (``.123`` when it has milliseconds; the zone's
    abbreviation after it when ``with_zone``)."""
    if value is None:
        return "-"
    local = value.astimezone(zone)
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond // 1000:03d}"
    return f"{text} {local.tzname()}" if with_zone else text
