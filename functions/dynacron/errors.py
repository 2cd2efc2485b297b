"""Every error dynacron raises on purpose, in one place.

Each error says what went wrong and, where it applies, which field and which limit.
"""

from __future__ import annotations


class DynacronError(Exception):
    """Base class of every error dynacron raises on purpose."""


class ValidationError(DynacronError, ValueError):
    """Input refused before anything was written.

    ``field`` names the offending argument (``"payload"``, ``"trigger.expr"``, ...).
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class TaskNotFound(DynacronError, LookupError):
    """No task with this id exists in the table."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id!r} not found")


class RunNotFound(DynacronError, LookupError):
    """No run with this id exists for the task."""

    def __init__(self, task_id: str, run_id: str) -> None:
        self.task_id = task_id
        self.run_id = run_id
        super().__init__(f"run {run_id!r} of task {task_id!r} not found")


class InvalidStateError(DynacronError):
    """The operation does not apply to the task or run in its current state."""


class ConfigurationError(DynacronError):
    """A required setting (table name, queue URL, ...) is missing or malformed."""


class HandlerTimeout(DynacronError, TimeoutError):
    """A handler overran its timeout (or the Lambda's remaining time) and was stopped."""


class WaitTimeout(DynacronError, TimeoutError):
    """``Scheduler.wait`` ran out of time before the run finished (a ``TimeoutError``)."""

    def __init__(self, task_id: str, run_id: str | None, timeout_s: float) -> None:
        self.task_id = task_id
        self.run_id = run_id
        self.timeout_s = timeout_s
        what = f"run {run_id!r} of task {task_id!r}" if run_id else f"a run of task {task_id!r}"
        super().__init__(f"{what} did not finish within {timeout_s:g}s")


class LocalExtraMissing(ConfigurationError):
    """``dynacron local`` or ``dynacron.testing`` without the ``[local]`` extra (moto's server)."""


class ConflictError(InvalidStateError):
    """A write lost a race: the task or run changed between our read and our conditional write
    (and kept changing over the retries we made). Reading again and retrying may succeed."""


class BackendError(DynacronError):
    """An AWS call failed; ``code`` and ``operation`` say which (the original is chained)."""

    def __init__(self, code: str, operation: str, detail: str = "") -> None:
        self.code = code
        self.operation = operation
        text = f"AWS {operation} failed: {code}"
        super().__init__(f"{text} ({detail[:300]})" if detail and detail != code else text)


class EndpointUnreachable(BackendError, ConnectionError):
    """No answer from the AWS endpoint (refused, timed out, unknown host), after the bounded
    wait of ``DYNACRON_CONNECT_TIMEOUT_SECONDS``/``DYNACRON_READ_TIMEOUT_SECONDS`` and
    ``DYNACRON_SDK_MAX_RETRIES`` retries."""
