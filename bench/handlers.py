"""Handlers the benchmarks schedule (``DYNACRON_HANDLERS=bench.handlers``)."""

from __future__ import annotations

from typing import Any

from dynacron import RunContext, handler


@handler("bench-noop")
def noop(payload: dict[str, Any], ctx: RunContext) -> None:
    """Does nothing: the benchmarks measure dynacron, not the handler."""
    return None


@handler("bench-sleep")
def sleep(payload: dict[str, Any], ctx: RunContext) -> None:
    """Holds its run for ``payload["s"]`` seconds: a worker killed meanwhile holds it too."""
    import time

    time.sleep(float(payload.get("s", 20)))
