"""Worker Lambda (SQS event source, ReportBatchItemFailures): one attempt per record."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from .. import registry
from ..batch import PartialItemFailureResponse, process_event
from ..execute import Executor
from ..settings import Settings

logger = Logger(service="dynacron")
metrics = Metrics(namespace="Dynacron", service="dynacron")


@cache
def _executor() -> Executor:
    from ..aws import sqs_client
    from ..store import Store

    settings = Settings.from_env()
    registry.load(settings.handlers)
    return Executor(Store(settings), sqs_client(settings), settings, logger=logger, metrics=metrics)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_event(event, context, _executor())
