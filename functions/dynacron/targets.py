"""Targets: what a task runs when it is not a ``@handler`` — something the user already has.

``Scheduler.schedule()`` takes one of these in place of a handler name::

    from dynacron.targets import Lambda, Sqs, Sns, EventBus, StateMachine, Http
    s.schedule(Sqs("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"), {"a": 1}, trigger=...)

A target is a frozen value validated at construction (``ValidationError`` naming the field). It
is stored with the task (``to_dict`` / ``target_from_dict``) and its ``task_type`` is
``target:<kind>``. The task's payload is what the target receives; the run's idempotency key
travels with every attempt where the target has a place for it (see each class). Invocation lives
in :class:`TargetInvoker`; the HTTP client and its SSRF protection live in ``safehttp``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

from .errors import ValidationError

#: The payload key that carries dynacron's run metadata in Lambda events and EventBridge details.
META_KEY = "dynacron"
#: SQS and SNS message attribute that carries the idempotency key.
KEY_ATTRIBUTE = "dynacron-idempotency-key"
#: Target answers kept on the run (before the run's own MAX_RESULT_BYTES truncation).
MAX_ANSWER_CHARS = 1024
#: A secret fetched from Secrets Manager / SSM is reused for this long by one worker.
SECRET_TTL_S = 300.0

_PARTITION = r"arn:aws[a-zA-Z-]*"
_REGION = r"[a-z0-9-]+"
_ACCOUNT = r"\d{12}"
LAMBDA_ARN = re.compile(
    rf"{_PARTITION}:lambda:{_REGION}:{_ACCOUNT}:function:[A-Za-z0-9_-]{{1,64}}(:[A-Za-z0-9$_-]+)?"
)
LAMBDA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9$_-]+)?")
SNS_ARN = re.compile(rf"{_PARTITION}:sns:{_REGION}:{_ACCOUNT}:[A-Za-z0-9_-]{{1,256}}(\.fifo)?")
STATES_ARN = re.compile(
    rf"{_PARTITION}:states:{_REGION}:{_ACCOUNT}:stateMachine:[A-Za-z0-9_-]{{1,80}}"
)
BUS_NAME = re.compile(r"[A-Za-z0-9._/-]{1,256}")
BUS_ARN = re.compile(
    rf"{_PARTITION}:events:{_REGION}:{_ACCOUNT}:event-bus/[A-Za-z0-9._/-]{{1,256}}"
)
SECRET_REF = re.compile(
    rf"({_PARTITION}:secretsmanager:{_REGION}:{_ACCOUNT}:secret:[A-Za-z0-9/_+=.@-]+"
    rf"|{_PARTITION}:ssm:{_REGION}:{_ACCOUNT}:parameter/[A-Za-z0-9/_.-]+"
    r"|secretsmanager:[A-Za-z0-9/_+=.@-]{1,512}"
    r"|ssm:/?[A-Za-z0-9/_.-]{1,1011})"
)
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Headers dynacron sets itself (or that the transport owns): a task may not set them.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "idempotency-key"}
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")


def _arn(field_name: str, value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationError(field_name, f"must be {what}, got {value!r}")
    return value


def _text(field_name: str, value: object, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field_name, "must be a non-empty string")
    if len(value) > max_length:
        raise ValidationError(field_name, f"is {len(value)} characters, the limit is {max_length}")
    return value


class Target:
    """Base of the six targets: a value with a kind, a resource name and a stored form."""

    kind: ClassVar[str] = ""
    #: True when the payload gets a ``"dynacron"`` key with the run's metadata.
    adds_meta: ClassVar[bool] = False

    @property
    def task_type(self) -> str:
        return f"target:{self.kind}"

    def resource(self) -> str | None:
        """What IAM and ``DYNACRON_ALLOWED_TARGETS`` name (ARN, bus name); None for HTTP."""
        return None

    def describe(self) -> str:
        return f"{self.kind}:{self.resource()}"

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v is not None}
        return {"kind": self.kind, **data}

    def check_payload(self, payload: Mapping[str, Any]) -> None:
        if self.adds_meta and META_KEY in payload:
            raise ValidationError(
                "payload",
                f"the key {META_KEY!r} is reserved for run metadata of {self.kind} targets",
            )


@dataclass(frozen=True)
class Lambda(Target):
    """Invoke a function synchronously (``RequestResponse``) with the payload as its event.

    The event is the payload plus a ``"dynacron"`` key: ``task_id``, ``run_id``, ``attempt``,
    ``scheduled_for`` and ``idempotency_key``; the same object is the client context's
    ``custom``. A function error or a throttle is a failed attempt. ``function_arn`` may also be
    a bare function name (resolved in the worker's account, or by ``dynacron local``'s mapping).
    """

    function_arn: str
    kind: ClassVar[str] = "lambda"
    adds_meta: ClassVar[bool] = True

    def __post_init__(self) -> None:
        value = self.function_arn
        if not (
            isinstance(value, str) and (LAMBDA_ARN.fullmatch(value) or LAMBDA_NAME.fullmatch(value))
        ):
            raise ValidationError(
                "target.function_arn", f"must be a Lambda function ARN or name, got {value!r}"
            )

    def resource(self) -> str:
        return self.function_arn


@dataclass(frozen=True)
class Sqs(Target):
    """Send the payload as the message body; the key is a message attribute and, on a FIFO
    queue, the deduplication id (the group id defaults to the task id)."""

    queue_url: str
    group_id: str | None = None
    kind: ClassVar[str] = "sqs"

    def __post_init__(self) -> None:
        url = urlparse(self.queue_url) if isinstance(self.queue_url, str) else None
        if (
            url is None
            or url.scheme not in ("https", "http")
            or not url.netloc
            or url.path.count("/") != 2
        ):
            raise ValidationError(
                "target.queue_url",
                "must be a queue URL https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, "
                f"got {self.queue_url!r}",
            )
        if self.group_id is not None:
            _text("target.group_id", self.group_id, 128)

    @property
    def fifo(self) -> bool:
        return self.queue_url.endswith(".fifo")

    def resource(self) -> str:
        """The queue ARN when the URL is an AWS one (IAM names queues by ARN), else the URL."""
        url = urlparse(self.queue_url)
        _, account, name = url.path.split("/")
        host = url.hostname or ""
        match = re.fullmatch(
            r"(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(\.cn)?", host
        )
        if match:
            partition = "aws-cn" if match.group(3) else "aws"
            region = match.group(1) or match.group(2)
            return f"arn:{partition}:sqs:{region}:{account}:{name}"
        return self.queue_url


@dataclass(frozen=True)
class Sns(Target):
    """Publish the payload as the message; the key is a message attribute and, on a FIFO
    topic, the deduplication id (the group id is the task id)."""

    topic_arn: str
    kind: ClassVar[str] = "sns"

    def __post_init__(self) -> None:
        _arn("target.topic_arn", self.topic_arn, SNS_ARN, "an SNS topic ARN")

    def resource(self) -> str:
        return self.topic_arn


@dataclass(frozen=True)
class EventBus(Target):
    """Put one event whose ``Detail`` is the payload plus a ``"dynacron"`` key with the run's
    metadata (EventBridge has no deduplication of its own: consumers key on
    ``detail.dynacron.idempotency_key``)."""

    bus_name: str
    detail_type: str
    source: str
    kind: ClassVar[str] = "eventbus"
    adds_meta: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not (
            isinstance(self.bus_name, str)
            and (BUS_NAME.fullmatch(self.bus_name) or BUS_ARN.fullmatch(self.bus_name))
        ):
            raise ValidationError(
                "target.bus_name", f"must be an event bus name or ARN, got {self.bus_name!r}"
            )
        _text("target.detail_type", self.detail_type, 128)
        _text("target.source", self.source, 256)
        if self.source.startswith("aws."):
            raise ValidationError("target.source", "must not start with 'aws.' (reserved by AWS)")

    def resource(self) -> str:
        return self.bus_name


@dataclass(frozen=True)
class StateMachine(Target):
    """Start an execution with the payload as input, named by the idempotency key (Step
    Functions refuses a second execution of that name, so a repeated attempt starts nothing
    new). The run succeeds once the execution has started; its outcome is the state machine's."""

    arn: str
    kind: ClassVar[str] = "statemachine"

    def __post_init__(self) -> None:
        _arn("target.arn", self.arn, STATES_ARN, "a Step Functions state machine ARN")

    def resource(self) -> str:
        return self.arn


@dataclass(frozen=True)
class Http(Target):
    """Send the payload as a JSON body (none for GET/DELETE) to ``url``.

    Headers sent: ``Idempotency-Key``, ``X-Dynacron-Task-Id``, ``X-Dynacron-Run-Id``,
    ``X-Dynacron-Attempt``, ``X-Dynacron-Timestamp`` and, with ``secret``,
    ``X-Dynacron-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``. ``secret`` is a
    *reference* — a Secrets Manager secret (ARN or ``secretsmanager:NAME``) or an SSM parameter
    (ARN or ``ssm:NAME``) — read by the worker at run time; the value is never stored or logged.
    ``headers`` are stored with the task in plain text: put nothing secret in them.
    """

    url: str
    method: str = "POST"
    headers: Mapping[str, str] | None = None
    secret: str | None = None
    kind: ClassVar[str] = "http"

    def __post_init__(self) -> None:
        from .safehttp import check_url_syntax

        check_url_syntax("target.url", self.url)
        if self.method not in HTTP_METHODS:
            raise ValidationError(
                "target.method", f"must be one of {', '.join(HTTP_METHODS)}, got {self.method!r}"
            )
        object.__setattr__(self, "headers", _headers(self.headers))
        if self.secret is not None and (
            not isinstance(self.secret, str) or not SECRET_REF.fullmatch(self.secret)
        ):
            raise ValidationError(
                "target.secret",
                "must reference a secret (a Secrets Manager or SSM parameter ARN, "
                "'secretsmanager:NAME' or 'ssm:NAME'), not hold its value",
            )

    def resource(self) -> str | None:
        return None

    def describe(self) -> str:
        return f"http:{self.method} {self.url}"

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.headers:
            data["headers"] = dict(self.headers)
        else:
            data.pop("headers", None)
        return data

    def __hash__(self) -> int:  # headers is a dict: hash the stored form instead
        return hash(json.dumps(self.to_dict(), sort_keys=True))


def _headers(headers: Any) -> dict[str, str] | None:
    if headers is None:
        return None
    if not isinstance(headers, Mapping):
        raise ValidationError("target.headers", "must be a mapping of header name to value")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValidationError("target.headers", f"{name!r} is not a valid header name")
        low = name.lower()
        if low in RESERVED_HEADERS or low.startswith("x-dynacron-"):
            raise ValidationError("target.headers", f"{name!r} is set by dynacron itself")
        if not isinstance(value, str) or len(value) > 4096 or any(c in value for c in "\r\n\0"):
            raise ValidationError(
                "target.headers",
                f"value of {name!r} must be a string of ≤ 4096 characters without CR, LF or NUL",
            )
        out[name] = value
    if len(out) > 32:
        raise ValidationError("target.headers", f"has {len(out)} headers, the limit is 32")
    return out or None


TARGET_CLASSES: dict[str, type[Target]] = {
    cls.kind: cls for cls in (Lambda, Sqs, Sns, EventBus, StateMachine, Http)
}


def target_from_dict(data: Mapping[str, Any]) -> Target:
    """The stored form back to a target (as written by ``Target.to_dict``)."""
    values = dict(data)
    cls = TARGET_CLASSES.get(values.pop("kind", ""))
    if cls is None:
        raise ValidationError("target", f"unknown target kind {data.get('kind')!r}")
    try:
        return cls(**values)
    except TypeError as exc:  # a stored form with fields this version does not know
        raise ValidationError("target", f"stored {cls.kind} target is malformed ({exc})") from None


def parse_target(
    spec: str,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    secret: str | None = None,
) -> Target:
    """The CLI's ``--target`` syntax.

    ``lambda:ARN_OR_NAME``, ``sqs:QUEUE_URL`` (``?group_id=G`` for a FIFO group), ``sns:ARN``,
    ``eventbus:BUS?source=S&detail_type=D``, ``states:ARN``, and ``https://...`` (or
    ``http:https://...``) for HTTP, which alone takes ``method``, ``headers`` and ``secret``.
    """
    if not isinstance(spec, str) or not spec:
        raise ValidationError("target", "must not be empty")
    if spec.startswith(("https://", "http://")):
        return Http(spec, method=method, headers=headers, secret=secret)
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise ValidationError("target", f"{spec!r} is not KIND:VALUE or an https:// URL")
    if kind != "http" and (headers or secret or method != "POST"):
        raise ValidationError("target", "method, headers and secret apply to HTTP targets only")
    if kind == "lambda":
        return Lambda(rest)
    if kind == "sqs":
        url, _, query = rest.partition("?")
        group = parse_qs(query).get("group_id", [None])[0]
        return Sqs(url, group_id=group)
    if kind == "sns":
        return Sns(rest)
    if kind in ("states", "statemachine"):
        return StateMachine(rest)
    if kind == "eventbus":
        bus, _, query = rest.partition("?")
        args = {k: v[0] for k, v in parse_qs(query).items()}
        return EventBus(bus, args.get("detail_type", ""), args.get("source", ""))
    if kind == "http":
        return Http(rest, method=method, headers=headers, secret=secret)
    raise ValidationError(
        "target", f"unknown kind {kind!r} (lambda, sqs, sns, eventbus, states, http)"
    )


# --- outcomes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetOutcome:
    """What one attempt at a target came to.

    ``ok``: the target took it (``answer`` is kept as the run's result). Otherwise ``dead``
    says whether retrying can help, and ``retry_after`` is the target's own wait (seconds).
    """

    ok: bool
    answer: dict[str, Any] | None = None
    error: str = ""
    dead: bool = False
    retry_after: float | None = None


def succeeded(**answer: Any) -> TargetOutcome:
    return TargetOutcome(True, {k: v for k, v in answer.items() if v is not None})


def failed(error: str, retry_after: float | None = None) -> TargetOutcome:
    return TargetOutcome(False, error=error, retry_after=retry_after)


def dead(error: str) -> TargetOutcome:
    return TargetOutcome(False, error=error, dead=True)


#: Error codes meaning "this will not work however often you try" → dead at once.
DEAD_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "AuthorizationErrorException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ResourceNotFoundException",
        "NotFound",
        "NotFoundException",
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "StateMachineDoesNotExist",
        "StateMachineDeleting",
        "InvalidArn",
        "InvalidName",
        "InvalidExecutionInput",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidParameter",
        "InvalidParameterException",
        "InvalidRequestContentException",
        "RequestTooLargeException",
        "ValidationException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSNotFoundException",
        "KMSInvalidStateException",
        "ParameterNotFound",
        "NotAuthorizedForSourceException",
        "MalformedDetail",
        "InvalidArgument",
    }
)
#: Error codes of a momentary refusal → a failed attempt (retried with backoff).
RETRY_CODES = frozenset(
    {
        "TooManyRequestsException",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "Throttled",
        "RequestThrottled",
        "RequestLimitExceeded",
        "ExecutionLimitExceeded",
        "ServiceUnavailable",
        "ServiceException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ResourceNotReadyException",
        "ResourceConflictException",
        "KMSThrottlingException",
        "EC2ThrottledException",
    }
)


def classify_client_error(exc: Exception) -> TargetOutcome:
    """A botocore ``ClientError`` → dead (not found, denied, invalid) or a failed attempt."""
    response = getattr(exc, "response", {}) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    message = str(response.get("Error", {}).get("Message", ""))[:300]
    meta = response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode") or 0)
    retry_after = _retry_after_seconds(
        response.get("retryAfterSeconds") or meta.get("HTTPHeaders", {}).get("retry-after")
    )
    text = f"{code or 'error'} (HTTP {status}): {message}" if status else f"{code}: {message}"
    throttled = "Throttl" in code or "TooManyRequests" in code  # e.g. KMS.ThrottlingException
    if code in RETRY_CODES or throttled or status in (408, 429) or status >= 500:
        return failed(text, retry_after)
    if code in DEAD_CODES or 400 <= status < 500:
        return dead(text)
    return failed(text, retry_after)


def _retry_after_seconds(value: Any) -> float | None:
    from .safehttp import parse_retry_after

    return None if value in (None, "") else parse_retry_after(str(value))


def _answer_text(raw: bytes | str) -> Any:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if len(json.dumps(value, default=str)) > MAX_ANSWER_CHARS:
        return text[:MAX_ANSWER_CHARS] + "…"
    return value


# --- invocation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """The run metadata an invocation sends along (never the payload: that is separate)."""

    task_id: str
    run_id: str
    attempt: int
    scheduled_for: str  # ISO 8601
    idempotency_key: str

    def meta(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TargetInvoker:
    """Calls targets with boto3 clients built from the settings (endpoint, region), one per
    service, without botocore's own retries: a throttle is a failed attempt, retried by the run's
    policy. ``clients`` overrides a service's client (``dynacron local`` gives ``"lambda"`` a
    :class:`LocalLambda`; tests give stubs)."""

    settings: Any
    clients: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    _secrets: dict[str, tuple[float, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self.clients:
                if service == "lambda" and getattr(self.settings, "local_lambdas", None):
                    self.clients[service] = LocalLambda(self.settings.local_lambdas)
                else:
                    self.clients[service] = self._boto(service)
            return self.clients[service]

    def _boto(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        from .aws import client_kwargs

        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=max(60, int(self.settings.max_timeout_s) + 30),
        )
        return boto3.client(service, config=config, **client_kwargs(self.settings))

    def allowed(self, target: Target) -> str | None:
        """None if the settings allow ``target``, else the reason it is refused."""
        return refusal(target, self.settings)

    def invoke(
        self, target: Target, payload: dict[str, Any], attempt: Attempt, budget_s: float
    ) -> TargetOutcome:
        """One attempt; every exception becomes an outcome (nothing of the payload in it)."""
        from botocore.exceptions import BotoCoreError, ClientError

        call = getattr(self, f"_invoke_{target.kind}")
        try:
            return call(target, payload, attempt, budget_s)
        except ClientError as exc:
            return classify_client_error(exc)
        except BotoCoreError as exc:  # connection refused, endpoint timeout, ...
            return failed(f"{type(exc).__name__}: {exc}"[:300])

    # --- one method per kind ----------------------------------------------------------------

    def _invoke_lambda(
        self, target: Lambda, payload: dict[str, Any], at: Attempt, budget_s: float
    ) -> TargetOutcome:
        event = {**payload, META_KEY: at.meta()}
        context = base64.b64encode(json.dumps({"custom": at.meta()}).encode()).decode()
        out = self.client("lambda").invoke(
            FunctionName=target.function_arn,
            InvocationType="RequestResponse",
            Payload=json.dumps(event, separators=(",", ":")).encode(),
            ClientContext=context,
        )
        body = out["Payload"].read(64 * 1024) if out.get("Payload") is not None else b""
        if out.get("FunctionError"):
            detail = _answer_text(body)
            if isinstance(detail, dict):
                detail = f"{detail.get('errorType', 'Error')}: {detail.get('errorMessage', '')}"
            return failed(f"function error ({out['FunctionError']}): {str(detail)[:300]}")
        return succeeded(
            status_code=out.get("StatusCode"),
            executed_version=out.get("ExecutedVersion"),
            response=_answer_text(body) if body else None,
        )

    def _invoke_sqs(
        self, target: Sqs, payload: dict[str, Any], at: Attempt, budget_s: float
    ) -> TargetOutcome:
        kwargs: dict[str, Any] = {
            "QueueUrl": target.queue_url,
            "MessageBody": json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
            "MessageAttributes": _attributes(at),
        }
        if target.fifo:
            kwargs["MessageDeduplicationId"] = at.idempotency_key
            kwargs["MessageGroupId"] = target.group_id or at.task_id
        elif target.group_id:
            kwargs["MessageGroupId"] = target.group_id
        out = self.client("sqs").send_message(**kwargs)
        return succeeded(message_id=out.get("MessageId"), sequence_number=out.get("SequenceNumber"))

    def _invoke_sns(
        self, target: Sns, payload: dict[str, Any], at: Attempt, budget_s: float
    ) -> TargetOutcome:
        kwargs: dict[str, Any] = {
            "TopicArn": target.topic_arn,
            "Message": json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
            "MessageAttributes": _attributes(at),
        }
        if target.topic_arn.endswith(".fifo"):
            kwargs["MessageDeduplicationId"] = at.idempotency_key
            kwargs["MessageGroupId"] = at.task_id
        out = self.client("sns").publish(**kwargs)
        return succeeded(message_id=out.get("MessageId"), sequence_number=out.get("SequenceNumber"))

    def _invoke_eventbus(
        self, target: EventBus, payload: dict[str, Any], at: Attempt, budget_s: float
    ) -> TargetOutcome:
        entry = {
            "EventBusName": target.bus_name,
            "Source": target.source,
            "DetailType": target.detail_type,
            "Detail": json.dumps({**payload, META_KEY: at.meta()}, separators=(",", ":")),
        }
        out = self.client("events").put_events(Entries=[entry])
        (result,) = out.get("Entries") or [{}]
        code = result.get("ErrorCode")
        if out.get("FailedEntryCount") or code:
            text = f"{code}: {str(result.get('ErrorMessage', ''))[:300]}"
            return failed(text) if code in RETRY_CODES else dead(text)
        return succeeded(event_id=result.get("EventId"))

    def _invoke_statemachine(
        self, target: StateMachine, payload: dict[str, Any], at: Attempt, budget_s: float
    ) -> TargetOutcome:
        from botocore.exceptions import ClientError

        sfn = self.client("stepfunctions")
        try:
            out = sfn.start_execution(
                stateMachineArn=target.arn,
                name=at.idempotency_key,
                input=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise
            # An earlier attempt started it (its answer was lost): that execution is this run's.
            arn = target.arn.replace(":stateMachine:", ":execution:") + f":{at.idempotency_key}"
            return succeeded(execution_arn=arn, already_started=True)
        start = out.get("startDate")
        return succeeded(
            execution_arn=out.get("executionArn"),
            start_date=start.isoformat() if hasattr(start, "isoformat") else start,
        )

    def _invoke_http(
        self, target: Http, payload: dict[str, Any], at: Attempt, budget_s: float
    ) -> TargetOutcome:
        from .safehttp import HttpPolicy, send

        secret: str | None = None
        if target.secret is not None:
            found = self.secret(target.secret)
            if isinstance(found, TargetOutcome):
                return found
            secret = found
        policy = HttpPolicy.from_settings(self.settings)
        return send(target, payload, at, secret, policy, budget_s)

    # --- secrets ---------------------------------------------------------------------------

    def secret(self, ref: str) -> str | TargetOutcome:
        """The value behind a secret reference, cached for ``SECRET_TTL_S``; never logged."""
        from botocore.exceptions import BotoCoreError, ClientError

        now = self.clock()
        cached = self._secrets.get(ref)
        if cached is not None and now - cached[0] < SECRET_TTL_S:
            return cached[1]
        try:
            value = self._fetch_secret(ref)
        except ClientError as exc:
            outcome = classify_client_error(exc)
            return TargetOutcome(False, error=f"secret {ref}: {outcome.error}", dead=outcome.dead)
        except BotoCoreError as exc:
            return failed(f"secret {ref}: {type(exc).__name__}")
        self._secrets[ref] = (now, value)
        return value

    def _fetch_secret(self, ref: str) -> str:
        if ref.startswith("ssm:") or ":ssm:" in ref:
            name = ref[4:] if ref.startswith("ssm:") else ref
            out = self.client("ssm").get_parameter(Name=name, WithDecryption=True)
            return str(out["Parameter"]["Value"])
        secret_id = ref.removeprefix("secretsmanager:")
        out = self.client("secretsmanager").get_secret_value(SecretId=secret_id)
        if "SecretString" in out:
            return str(out["SecretString"])
        return base64.b64encode(out["SecretBinary"]).decode()


def _attributes(at: Attempt) -> dict[str, Any]:
    def text(value: Any) -> dict[str, str]:
        return {"DataType": "String", "StringValue": str(value)}

    return {
        KEY_ATTRIBUTE: text(at.idempotency_key),
        "dynacron-task-id": text(at.task_id),
        "dynacron-run-id": text(at.run_id),
        "dynacron-attempt": {"DataType": "Number", "StringValue": str(at.attempt)},
    }


def refusal(target: Target, settings: Any) -> str | None:
    """Why the configured allow list refuses ``target`` (None: allowed or no list).

    ``DYNACRON_ALLOWED_TARGETS`` (a comma list; the template sets it from its target
    parameters) names ARNs and bus names; an empty list means "not known here" and allows
    everything — IAM still refuses what the worker was not granted (a dead run). HTTP targets
    are not governed by it (no IAM); ``safehttp`` guards them.
    """
    allowed = tuple(getattr(settings, "allowed_targets", ()) or ())
    resource = target.resource()
    if not allowed or resource is None or resource in allowed:
        return None
    # A bare name of an allowed function or bus (IAM lists them by ARN); a queue URL whose host
    # names no region (an emulator, a VPC endpoint) by its account and name.
    suffix = {"lambda": f":function:{resource}", "eventbus": f":event-bus/{resource}"}
    if target.kind == "sqs" and resource.startswith(("http://", "https://")):
        _, account, name = urlparse(resource).path.split("/")
        suffix["sqs"] = f":sqs:{getattr(settings, 'region', '')}:{account}:{name}"
    if target.kind in suffix and any(a.endswith(suffix[target.kind]) for a in allowed):
        return None
    return (
        f"{target.kind} target {resource!r} is not in the allowed targets "
        "(template parameters Target*; DYNACRON_ALLOWED_TARGETS)"
    )


# --- local Lambda ----------------------------------------------------------------------------


class _LocalContext:
    def __init__(self, name: str, custom: dict[str, Any], request_id: str) -> None:
        self.function_name = name
        self.aws_request_id = request_id
        self.client_context = type("ClientContext", (), {"custom": custom})()

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


class LocalLambda:
    """A stand-in for the Lambda client's ``invoke`` that calls Python functions in-process.

    moto runs Lambda code only in Docker, so ``dynacron local`` maps function names to
    callables: ``DYNACRON_LOCAL_LAMBDAS="report=myjobs:report,bill=billing.handlers:main"``
    (or ``dynacron local --lambda report=myjobs:report``). A target's ARN is matched by its
    function name. The callable gets ``(event, context)`` like a Lambda handler; what it returns
    is the answer, what it raises is a function error; an unmapped name is
    ``ResourceNotFoundException`` (dead), as in AWS.
    """

    def __init__(self, mapping: Mapping[str, str | Callable[..., Any]]) -> None:
        self.mapping = dict(mapping)
        self.calls = 0

    def _resolve(self, name: str) -> Callable[..., Any] | None:
        func = self.mapping.get(name)
        if func is None or callable(func):
            return func
        import importlib

        module, _, attr = func.partition(":")
        try:
            resolved = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:  # a mapping that cannot work: dead
            raise _not_found(f"local mapping {name}={func} does not import ({exc})") from None
        self.mapping[name] = resolved
        return resolved

    def invoke(
        self, FunctionName: str, Payload: bytes, ClientContext: str = "", **_: Any
    ) -> dict[str, Any]:
        import io
        import uuid

        name = FunctionName.split(":function:")[-1].split(":")[0]
        func = self._resolve(name)
        if func is None:
            raise _not_found(f"Function not found: {name} (not in DYNACRON_LOCAL_LAMBDAS)")
        custom = (
            json.loads(base64.b64decode(ClientContext)).get("custom", {}) if ClientContext else {}
        )
        self.calls += 1
        event = json.loads(Payload)
        try:
            value = func(event, _LocalContext(name, custom, str(uuid.uuid4())))
        except Exception as exc:
            body = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": io.BytesIO(json.dumps(body).encode()),
            }
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(value, default=str).encode())}


def _not_found(message: str) -> Exception:
    from botocore.exceptions import ClientError

    error = {"Code": "ResourceNotFoundException", "Message": message}
    meta = {"HTTPStatusCode": 404, "HTTPHeaders": {}}
    return ClientError({"Error": error, "ResponseMetadata": meta}, "Invoke")


def parse_local_lambdas(raw: str | None) -> dict[str, str]:
    """``"name=module:func,name2=module2:func2"`` → {name: "module:func"}."""
    from .errors import ConfigurationError

    out: dict[str, str] = {}
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        name, sep, ref = part.partition("=")
        if not sep or ":" not in ref or not name.strip():
            raise ConfigurationError(
                f"DYNACRON_LOCAL_LAMBDAS entry {part!r} is not name=module:function"
            )
        out[name.strip()] = ref.strip()
    return out
