"""Where backend exceptions become ours: no PynamoDB or botocore exception leaves the SDK.

``guarded`` wraps every public method of a class (the ``Scheduler``) so that whatever
PynamoDB, botocore or urllib3 raises underneath comes out as a ``DynacronError`` subclass,
with the original chained as ``__cause__``:

* a condition that failed (a lost race: ``ConditionalCheckFailed``, a cancelled transaction)
  is a ``ConflictError`` (an ``InvalidStateError``);
* no HTTP answer at all (refused, timed out, DNS) is ``EndpointUnreachable``, after the bounded
  wait that ``Settings.connect_timeout_s``/``read_timeout_s``/``sdk_max_retries`` give;
* a table or queue that does not exist is a ``ConfigurationError`` naming the variable;
* any other AWS error is a ``BackendError`` carrying its ``code`` and ``operation``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

from .aws import aws_error
from .errors import (
    BackendError,
    ConfigurationError,
    ConflictError,
    DynacronError,
    EndpointUnreachable,
)

C = TypeVar("C", bound=type)

_CONFLICT_CODES = {
    "ConditionalCheckFailedException",
    "ConditionalCheckFailed",
    "TransactionCanceledException",
    "TransactionConflictException",
}
_MISSING_TABLE_CODES = {"ResourceNotFoundException"}
_MISSING_QUEUE_CODES = {
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "InvalidAddress",
}
_PYNAMODB_OPERATIONS = {
    "GetError": "GetItem",
    "PutError": "PutItem",
    "UpdateError": "UpdateItem",
    "DeleteError": "DeleteItem",
    "QueryError": "Query",
    "ScanError": "Scan",
    "TransactWriteError": "TransactWriteItems",
    "TransactGetError": "TransactGetItems",
}
_NO_ANSWER = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ConnectionError",
    "ProxyConnectionError",
)


def is_backend(exc: BaseException) -> bool:
    """Whether ``exc`` comes from PynamoDB, botocore or urllib3 (and must not escape)."""
    return type(exc).__module__.split(".")[0] in ("pynamodb", "botocore", "urllib3", "boto3")


def translate(exc: BaseException) -> DynacronError:
    """Our error for a backend exception (the caller chains the original)."""
    code, operation = aws_error(exc) or (type(exc).__name__, "?")
    if operation == "?":
        operation = _PYNAMODB_OPERATIONS.get(type(exc).__name__, "?")
    code = _transaction_code(exc) or code
    if code in _CONFLICT_CODES:
        return ConflictError(f"the item changed meanwhile ({code} on {operation}); read and retry")
    if code in _NO_ANSWER or code.endswith(("ConnectionError", "TimeoutError")):
        return EndpointUnreachable(code, operation, str(exc))
    if code in _MISSING_TABLE_CODES:
        return ConfigurationError(
            f"the table does not exist ({code} on {operation}): check DYNACRON_TABLE"
        )
    if code in _MISSING_QUEUE_CODES:
        return ConfigurationError(
            f"the queue does not exist ({code} on {operation}): check DYNACRON_QUEUE_URL / "
            "DYNACRON_DLQ_URL"
        )
    return BackendError(code, operation, str(exc))


def _transaction_code(exc: BaseException) -> str | None:
    """A cancelled transaction whose every reason is a failed condition is a lost race."""
    reasons = getattr(exc, "cancellation_reasons", None)
    if not reasons:
        return None
    codes = {getattr(r, "code", None) for r in reasons if r is not None} - {None, "None"}
    return "ConditionalCheckFailed" if codes == {"ConditionalCheckFailed"} else None


def _reraise(exc: BaseException) -> NoReturn:
    if isinstance(exc, DynacronError) or not is_backend(exc):
        raise exc
    raise translate(exc) from exc


def guard(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with backend exceptions translated (generators: while they are iterated)."""
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from func(*args, **kwargs)
            except Exception as exc:
                _reraise(exc)

        return gen

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            _reraise(exc)

    return call


def guarded(cls: C) -> C:
    """Guard every public method of ``cls``, its own and those of its bases (mixins)."""
    for klass in reversed(cls.__mro__[:-1]):
        for name, value in list(vars(klass).items()):
            if not name.startswith("_") and inspect.isfunction(value):
                setattr(cls, name, guard(value))
    return cls
