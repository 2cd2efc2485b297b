"""Metrics per lane and per limit: one metric with its own dimensions.

The worker's Powertools ``Metrics`` object carries one dimension set for all its metrics
(``service``); a figure per lane or per limit needs dimensions of its own, which Powertools
writes as a separate EMF record (``single_metric``). Names (namespace ``Dynacron``):

=====================  ==========================  ==========================================
metric                 dimensions                  what
=====================  ==========================  ==========================================
``LaneRunsStarted``    ``service``, ``lane``       attempts started in the lane
``LaneLatenessMs``     ``service``, ``lane``       first-attempt lateness in the lane
``LimitRunsStarted``   ``service``, ``limit``      attempts started under the limit
``LimitThrottledMs``   ``service``, ``limit``      how long the limit held a start back
``LimitWaits``         ``service``, ``limit``      starts put off: the limit was at concurrency
=====================  ==========================  ==========================================

Queue depth per lane is SQS's own ``ApproximateNumberOfMessagesVisible`` per lane queue (the
dashboard's Queues widget); ``LocalRuntime.queue_depth`` reads the same locally.
"""

from __future__ import annotations

from typing import Any

SERVICE = "dynacron"


def emit(metrics: Any, name: str, unit: str, value: float, **dimensions: str) -> None:
    """Publish ``name`` with ``dimensions`` (plus ``service``) on ``metrics``' namespace.

    A metrics object with ``add_dimensioned_metric`` (a test double, another backend) gets the
    call as is; a Powertools ``Metrics`` goes through ``single_metric``.
    """
    if metrics is None:
        return
    direct = getattr(metrics, "add_dimensioned_metric", None)
    if direct is not None:
        direct(name, unit, value, dimensions)
        return
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    namespace = getattr(metrics, "namespace", None)
    with single_metric(
        name=name, unit=MetricUnit(unit), value=value, namespace=namespace
    ) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)
