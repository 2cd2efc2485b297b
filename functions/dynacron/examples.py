"""Example handlers: what ``dynacron local --demo`` schedules, and the template's default module.

Each one is an ordinary ``@handler``: ``f(payload: dict, ctx: RunContext) -> object``. Use them
as a starting point for your own module (``dynacron local --handlers myjobs`` imports
``myjobs.py`` from the current directory; deployed, set the ``HandlerModules`` parameter).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .registry import handler
from .types import RunContext

log = logging.getLogger("dynacron.examples")


@handler("send-email")
def send_email(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Pretend to send an email. Logs ids only: never the address, the subject or the body."""
    # A real implementation passes ctx.idempotency_key to the provider (e.g. as a message
    # deduplication id) so that a retried attempt cannot send the email twice.
    log.info("email sent", extra={"task_id": ctx.task_id, "run_id": ctx.run_id})
    return {"status": "ok", "template": payload.get("template", "default")}


@handler("cleanup")
def cleanup(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Pretend to delete expired rows older than ``payload["older_than_days"]``."""
    return {"removed": 0, "older_than_days": payload.get("older_than_days", 30)}


@handler("report")
def report(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Pretend to build a periodic report for the minute it was scheduled for."""
    return {"report": payload.get("name", "report"), "period_end": ctx.scheduled_for.isoformat()}


@handler("flaky")
def flaky(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Fail the first ``payload["fail_attempts"]`` attempts (default 1), then succeed."""
    if ctx.attempt <= int(payload.get("fail_attempts", 1)):
        raise ConnectionError(f"upstream unavailable (simulated, attempt {ctx.attempt})")
    return {"status": "ok", "attempt": ctx.attempt}


@handler("always-fails")
def always_fails(payload: dict[str, Any], ctx: RunContext) -> None:
    """Fail every attempt: the run ends ``dead`` with a message on the dead-letter queue."""
    raise ValueError("the partner API rejected the request: 422 (simulated)")


@handler("slow")
def slow(payload: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Work for ``payload["seconds"]`` (default 5), longer than a short task timeout.

    It sleeps in small steps: the worker stops an overrunning handler by raising
    ``HandlerTimeout`` inside it, which takes effect between Python bytecodes, so code that
    returns to Python regularly stops right at its timeout.
    """
    deadline = time.monotonic() + float(payload.get("seconds", 5))
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return {"status": "ok"}
