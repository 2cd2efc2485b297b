"""Handlers the benchmarks schedule (``DYNACRON_HANDLERS=bench.handlers``)."""

from __future__ import annotations

from typing import Any

from dynacron import RunContext, handler


@handler("bench-noop")
def noop(payload: dict[str, Any], ctx: RunContext) -> None:
    """Does nothing: the benchmarks measure dynacron, not the handler."""
    return None
