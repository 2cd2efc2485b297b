"""dynacron: a serverless task scheduler for AWS (DynamoDB + SQS + Lambda).

The public names below are imported on first use (PEP 562), so a Lambda entrypoint that
imports ``dynacron.handlers.worker`` does not pay for the SDK and the trigger parsers at cold
start; ``from dynacron import Scheduler, At`` works as usual.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .deadletters import DeadLetter
    from .errors import DynacronError, TaskNotFound, ValidationError, WaitTimeout
    from .phrases import when
    from .recurrence import RRule
    from .registry import handler
    from .sdk import Scheduler
    from .stats import Stats
    from .triggers import At, Cron, Every
    from .types import MisfirePolicy, RetryPolicy, Run, RunContext, RunStatus, Task, TaskStatus

_WHERE = {
    "DynacronError": "errors", "TaskNotFound": "errors", "ValidationError": "errors",
    "handler": "registry", "Scheduler": "sdk", "At": "triggers", "Cron": "triggers",
    "Every": "triggers", "MisfirePolicy": "types", "RetryPolicy": "types", "Run": "types",
    "RunContext": "types", "RunStatus": "types", "Task": "types", "TaskStatus": "types",
    "when": "phrases", "RRule": "recurrence",
    "Stats": "stats", "DeadLetter": "deadletters", "WaitTimeout": "errors",
}
__all__ = [
    "At", "Cron", "DeadLetter", "DynacronError", "Every", "MisfirePolicy", "RRule", "RetryPolicy",
    "Run", "RunContext", "RunStatus", "Scheduler", "Stats", "Task", "TaskNotFound", "TaskStatus",
    "ValidationError", "WaitTimeout", "handler", "when",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dynacron' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # once resolved, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
