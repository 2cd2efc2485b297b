"""AWS plumbing shared by every part: client settings, loopback credentials, error reporting.

No module but this one decides which credentials a client uses or how an AWS error is described
to an operator.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from .settings import Settings

# What a loopback emulator (moto, ministack) accepts when the machine has no credentials at all.
LOOPBACK_CREDENTIALS = ("testing", "testing")
#: The longest SQS long poll (ReceiveMessage WaitTimeSeconds).
SQS_LONG_POLL_S = 20


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def loopback_credentials() -> dict[str, str]:
    """Credentials for a loopback endpoint, as boto3 client keyword arguments.

    The environment's own credentials win, *including* ``AWS_SESSION_TOKEN``: a Lambda running on
    an emulator that enforces IAM holds its execution role's temporary credentials, and a key
    without its token is refused (``UnrecognizedClientException``). Without any, a fresh machine
    still reaches a local emulator with placeholder keys.
    """
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (key and secret):
        key, secret = LOOPBACK_CREDENTIALS
        return {"aws_access_key_id": key, "aws_secret_access_key": secret}
    creds = {"aws_access_key_id": key, "aws_secret_access_key": secret}
    token = os.environ.get("AWS_SESSION_TOKEN")
    if token:
        creds["aws_session_token"] = token
    return creds


def client_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"region_name": settings.region}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
        if is_loopback(settings.endpoint_url):
            kwargs.update(loopback_credentials())
    return kwargs


def sqs_client(settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    # total_max_attempts counts the first attempt; Config's max_attempts would not (one extra)
    retries = {"mode": "standard", "total_max_attempts": 1 + settings.max_retries}
    config = Config(
        retries=retries,
        max_pool_connections=32,
        connect_timeout=settings.connect_timeout_s,
        # a long poll (WaitTimeSeconds ≤ 20, or the queue's own default) must not time out
        read_timeout=max(settings.read_timeout_s, SQS_LONG_POLL_S + 5),
    )
    return boto3.client("sqs", config=config, **client_kwargs(settings))


# --- errors an operator must see ------------------------------------------------------------


def aws_error(exc: BaseException) -> tuple[str, str] | None:
    """``(error code, operation)`` of the AWS call behind ``exc``, or None if it is not one.

    Follows PynamoDB's ``cause`` and Python's ``__cause__`` chain to the botocore error, so a
    ``pynamodb.exceptions.QueryError`` wrapping an ``AccessDeniedException`` reports
    ``("AccessDeniedException", "Query")``. A connection failure (no HTTP answer) reports its
    class name and the operation when botocore knows it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(response, dict) and "Error" in response:
            code = str(response["Error"].get("Code") or type(current).__name__)
            return code, str(getattr(current, "operation_name", "") or "?")
        if type(current).__module__.startswith(("botocore", "urllib3")):
            return type(current).__name__, str(getattr(current, "operation_name", "") or "?")
        current = getattr(current, "cause", None) or current.__cause__
    return None


def report_error(
    exc: BaseException, where: str, logger: Any = None, metrics: Any = None, **ids: Any
) -> None:
    """Log ``exc`` at ERROR with its AWS error code and operation, and count it.

    ``where`` names the step (``"query"``, ``"claim"``, ``"send"``, ``"execute"``); ``ids`` are
    task/run ids only: never the payload or the message body. The metric ``AwsErrors`` (or
    ``Errors`` for a non-AWS failure) is what the template's alarm watches.
    """
    info = aws_error(exc)
    extra: dict[str, Any] = {"step": where, **ids}
    if info is not None:
        extra.update(aws_error_code=info[0], aws_operation=info[1])
    extra["error"] = str(exc)[:500]
    if logger is not None:
        logger.error("AWS call failed" if info else "step failed", extra=extra)
    if metrics is not None:
        metrics.add_metric(name="AwsErrors" if info else "Errors", unit="Count", value=1)
