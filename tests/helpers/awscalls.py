"""Records the AWS API calls that the Lambda code paths make, as IAM (action, resource) pairs.

``install()`` (called once from ``tests/conftest.py``) wraps the Lambda code paths,
``Dispatcher.poll`` and ``FanOut.start`` (the poller) and ``Executor.execute`` (the worker, one
record) with ``Executor.hide_batch`` (the worker, a batch's first visibility change), so that
while they run every botocore call is attributed to the function whose execution role would
make it. The hook is botocore's ``before-parameter-build`` event (it sees the call's own
parameters), registered on every client as it is created: PynamoDB's and boto3's clients alike,
in-process moto or a server over HTTP. ``tests/unit/test_permissions.py`` checks what was
recorded against ``template.yaml``; nothing here knows what the template grants.

Attribution follows the code path into the dispatcher's and the batch's thread pools:
``ThreadPoolExecutor.submit`` is wrapped to run each task in a copy of the submitter's context.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import threading
from dataclasses import dataclass
from typing import Any

# IAM authorizes some API operations with another operation's action:
# SQS batch calls with the single-message action
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html),
# a DynamoDB transaction with the action of each item it carries
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).
_SQS_BATCH = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_TRANSACT_ITEM = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


@dataclass(frozen=True, order=True)
class Grant:
    """One permission a call needs: ``function`` (template logical id), IAM action, resource.

    ``resource`` is a template logical id (``TasksTable``, ``WorkQueue``), an index of one
    (``TasksTable/index/due-index``), or ``?name`` for a resource the settings do not name.
    """

    function: str
    action: str
    resource: str


@dataclass(frozen=True)
class _Role:
    function: str
    names: dict[str, str]  # table name / queue URL -> template logical id


_ROLE: contextvars.ContextVar[_Role | None] = contextvars.ContextVar("dynacron_role", default=None)
_lock = threading.Lock()
RECORDED: set[Grant] = set()
_installed = False


def _names(settings: Any) -> dict[str, str]:
    names = {}
    if settings.table_name:
        names[settings.table_name] = "TasksTable"
    if settings.queue_url:
        names[settings.queue_url] = "WorkQueue"
    # the default lane's other queues, in template order (WorkQueueCount > 1)
    for n, url in enumerate(settings.work_queue_urls, start=2):
        names.setdefault(url, f"WorkQueue{n}")
    if settings.dlq_url:
        names[settings.dlq_url] = "DeadLetterQueue"
    lane_ids = _lane_queue_ids()
    for lane, url in settings.lane_queues.items():
        names.setdefault(url, lane_ids.get(lane, f"?lane-queue:{lane}"))
    return names


@functools.cache
def _lane_queue_ids() -> dict[str, str]:
    """``{lane: logical id}`` of the template's lane queues (tagged ``dynacron:lane``)."""
    from dynacron.local.provision import find_template, lane_queue_ids, load_template

    return lane_queue_ids(load_template(find_template()))


def _as(function: str, method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _ROLE.get() is not None:  # already inside a Lambda code path
            return method(self, *args, **kwargs)
        names = _names(self.settings)
        own = getattr(self, "function_arn", None)  # a fan-out invokes its own function
        if own:
            names[own] = function
        token = _ROLE.set(_Role(function, names))
        try:
            return method(self, *args, **kwargs)
        finally:
            _ROLE.reset(token)

    return wrapper


def _grants(role: _Role, service: str, operation: str, params: dict[str, Any]) -> list[Grant]:
    def resource(name: str | None) -> str:
        return role.names.get(name or "", f"?{name}")

    if service == "sqs":
        action = _SQS_BATCH.get(operation, operation)
        return [Grant(role.function, f"sqs:{action}", resource(params.get("QueueUrl")))]
    if service == "lambda" and operation == "Invoke":
        return [Grant(role.function, "lambda:InvokeFunction", resource(params.get("FunctionName")))]
    if service != "dynamodb":
        return [Grant(role.function, f"{service}:{operation}", "?")]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        out = []
        for item in params.get("TransactItems", []):
            for kind, body in item.items():
                action = _TRANSACT_ITEM[kind]
                out.append(Grant(role.function, f"dynamodb:{action}", resource(body["TableName"])))
        return out
    if operation in ("BatchGetItem", "BatchWriteItem"):
        tables = params.get("RequestItems", {})
        return [Grant(role.function, f"dynamodb:{operation}", resource(t)) for t in tables]
    table = resource(params.get("TableName"))
    if params.get("IndexName"):
        table = f"{table}/index/{params['IndexName']}"
    return [Grant(role.function, f"dynamodb:{operation}", table)]


def _before_parameter_build(model: Any, params: dict[str, Any], **_: Any) -> None:
    role = _ROLE.get()
    if role is None:
        return
    service = model.service_model.endpoint_prefix
    found = _grants(role, service, model.name, params)
    with _lock:
        RECORDED.update(found)


def _hook_clients() -> None:
    import botocore.client

    create = botocore.client.ClientCreator.create_client

    @functools.wraps(create)
    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build.*.*", _before_parameter_build)
        return client

    botocore.client.ClientCreator.create_client = create_client  # type: ignore[method-assign]


def _propagate_context() -> None:
    submit = concurrent.futures.ThreadPoolExecutor.submit

    @functools.wraps(submit)
    def submit_in_context(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    concurrent.futures.ThreadPoolExecutor.submit = submit_in_context  # type: ignore[method-assign]


def install() -> None:
    """Start recording (idempotent). Must run before the first botocore client is created."""
    global _installed
    if _installed:
        return
    _installed = True
    from dynacron.dispatch import Dispatcher
    from dynacron.execute import Executor
    from dynacron.fanout import FanOut

    _hook_clients()
    _propagate_context()
    Dispatcher.poll = _as("PollerFunction", Dispatcher.poll)  # type: ignore[method-assign]
    FanOut.start = _as("PollerFunction", FanOut.start)  # type: ignore[method-assign]
    Executor.execute = _as("WorkerFunction", Executor.execute)  # type: ignore[method-assign]
    Executor.hide_batch = _as("WorkerFunction", Executor.hide_batch)  # type: ignore[method-assign]
