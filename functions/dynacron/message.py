"""The work message: what the poller puts on a lane's queue and the worker reads back.

A pointer to a claimed run (task, run, fence, planned time, lane, a rate limit's slot), never its
payload: the worker reads the run and its task from the table. Versioned (``v``); a body of
another version, or malformed, is refused by :meth:`Message.parse` with a ``ValidationError``
naming the field, and the worker sends it to the DLQ as ``undecodable``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import ValidationError
from .registry import NAME_PATTERN
from .store import dumps

MESSAGE_VERSION = 1


@dataclass(frozen=True)
class Message:
    """The SQS message body: a pointer to a claimed run, never its payload."""

    task_id: str
    run_id: str
    fence: str
    scheduled_for: int  # epoch ms
    lane: str = "default"
    not_before: int | None = None  # epoch ms: the slot a rate limit gave the run (limits.py)
    slot_tol: int | None = None  # ms: a start later than not_before + this needs a new slot

    def to_body(self) -> str:
        body = {
            "v": MESSAGE_VERSION,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "fence": self.fence,
            "scheduled_for": self.scheduled_for,
            "lane": self.lane,
        }
        if self.not_before is not None:
            body["not_before"] = self.not_before
            if self.slot_tol is not None:
                body["slot_tol"] = self.slot_tol
        return dumps(body)

    @classmethod
    def parse(cls, body: str) -> Message:
        """Decode a message body; a malformed one raises ValidationError naming the field."""
        try:
            data = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise ValidationError("message", f"not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValidationError("message", f"must be a JSON object, got {type(data).__name__}")
        if data.get("v") != MESSAGE_VERSION:
            raise ValidationError("message.v", f"unsupported version {data.get('v')!r}")
        for name in ("task_id", "run_id", "fence", "lane"):
            value = data.get(name, "default" if name == "lane" else None)
            # The alphabet schedule() allows (ASCII, no key delimiter '#'): an id outside it names
            # no run, and one past DynamoDB's key size would fail the lookup on every delivery.
            if not isinstance(value, str) or len(value) > 256 or not NAME_PATTERN.fullmatch(value):
                raise ValidationError(
                    f"message.{name}",
                    "must be a non-empty string ≤ 256 chars of [A-Za-z0-9._:@+=-]",
                )
        sf = data.get("scheduled_for")
        if isinstance(sf, bool) or not isinstance(sf, int) or not 0 <= sf < 10**13:
            raise ValidationError("message.scheduled_for", "must be epoch milliseconds (int)")
        for name in ("not_before", "slot_tol"):
            value = data.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValidationError(f"message.{name}", "must be milliseconds (int ≥ 0)")
        lane = data.get("lane", "default")
        return cls(
            data["task_id"], data["run_id"], data["fence"], sf, lane,
            data.get("not_before"), data.get("slot_tol"),
        )
