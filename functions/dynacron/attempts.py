"""The history of a run's attempts, kept on the run item.

Each attempt that ends appends one compact JSON record to the run's ``attempts`` list, in the
same conditional UpdateItem that records its outcome (``execute``): no extra request per fire,
about 60-70 bytes more on the item per attempt (plus its error, cut to
``MAX_ATTEMPT_ERROR_CHARS``). An attempt still running is not in the list yet: it is
``Run.attempt``/``Run.started_at``. Outcomes: ``succeeded``; ``failed`` (retried, or the run
went dead after it); ``lost`` (its worker died or ran out of time: the lease expired and the
run was taken over, or went dead, without the attempt ever reporting).
"""

from __future__ import annotations

import json
from typing import Any

from .clock import from_ms
from .types import RunAttempt

#: An attempt's error as kept in the history (the run's ``error`` keeps the last one longer).
MAX_ATTEMPT_ERROR_CHARS = 300
SUCCEEDED, FAILED, LOST = "succeeded", "failed", "lost"


def record(
    number: int, started_ms: float | None, ended_ms: float | None, outcome: str, error: str | None
) -> str:
    """One attempt as stored (short keys: every byte is billed on each later write)."""
    data: dict[str, Any] = {
        "n": number,
        "s": None if started_ms is None else int(started_ms),
        "e": None if ended_ms is None else int(ended_ms),
        "o": outcome,
    }
    if error:
        data["x"] = error if len(error) <= MAX_ATTEMPT_ERROR_CHARS else (
            error[: MAX_ATTEMPT_ERROR_CHARS - 1] + "…"
        )
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def append_action(model: Any, text: str) -> Any:
    """The update action that appends ``text`` to the run's history (created if absent)."""
    return model.attempts.set((model.attempts | []).append([text]))


def unreported(model: Any, row: Any) -> Any:
    """The action recording ``row``'s latest attempt as ``lost`` if it started and never
    reported (its worker died: the run was taken over or reclaimed), else None."""
    number = int(row.attempt or 0)
    if number == 0 or row.status not in ("running", "queued"):
        return None  # not started, or retrying/dead/...: its end was recorded
    recorded = parse(row.attempts)
    if recorded and recorded[-1].number >= number:
        return None
    return append_action(model, record(number, row.started_at, None, LOST, None))


def parse(texts: Any) -> tuple[RunAttempt, ...]:
    """The stored records (a list of JSON strings, or None) as values, oldest first."""
    out = []
    for text in texts or ():
        try:
            data = json.loads(text)
            out.append(
                RunAttempt(
                    number=int(data["n"]),
                    started_at=from_ms(data.get("s")),
                    finished_at=from_ms(data.get("e")),
                    outcome=str(data["o"]),
                    error=data.get("x"),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a damaged record is left out, never a failure to read the run
    return tuple(out)
