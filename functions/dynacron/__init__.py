"""dynacron: a serverless task scheduler for AWS (DynamoDB + SQS + Lambda)."""

from .errors import DynacronError, TaskNotFound, ValidationError
from .registry import handler
from .sdk import Scheduler
from .triggers import At, Cron, Every
from .types import MisfirePolicy, RetryPolicy, Run, RunContext, RunStatus, Task, TaskStatus

__all__ = [
    "At",
    "Cron",
    "DynacronError",
    "Every",
    "MisfirePolicy",
    "RetryPolicy",
    "Run",
    "RunContext",
    "RunStatus",
    "Scheduler",
    "Task",
    "TaskNotFound",
    "TaskStatus",
    "ValidationError",
    "handler",
]
__version__ = "0.1.0"
