"""Poller Lambda (EventBridge, every minute): claim what falls due in the window and send it.

With ``DYNACRON_POLLER_FANOUT`` > 1 a tick starts one asynchronous invocation of this function per
group of shards and each polls only its group (``dynacron.fanout``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from ..dispatch import Dispatcher
from ..fanout import FanOut, handle, lambda_client
from ..settings import Settings

logger = Logger(service="dynacron")
metrics = Metrics(namespace="Dynacron", service="dynacron")


@cache
def _dispatcher() -> Dispatcher:
    from ..aws import sqs_client
    from ..store import Store

    settings = Settings.from_env()
    return Dispatcher(
        Store(settings), sqs_client(settings), settings, logger=logger, metrics=metrics
    )


@cache
def _lambda() -> Any:
    return lambda_client(_dispatcher().settings)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    """Returns (and logs) how many runs it found, claimed, sent and left for the next tick."""
    getter = getattr(context, "get_remaining_time_in_millis", None)
    time_left = (lambda: getter() / 1000.0) if getter else None
    dispatcher = _dispatcher()

    def fanout() -> FanOut:
        arn = context.invoked_function_arn
        return FanOut(_lambda(), arn, dispatcher.settings, logger=logger, metrics=metrics)

    report = handle(event, dispatcher.poll, fanout, dispatcher.settings, time_left, logger=logger)
    logger.info("poll finished", extra=report)
    return report
