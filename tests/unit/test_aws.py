"""Credentials on loopback endpoints, and AWS errors an operator can see."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from pynamodb.exceptions import QueryError

from dynacron.aws import aws_error, client_kwargs, loopback_credentials, report_error
from dynacron.settings import Settings
from dynacron.store import bind_models


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def error(self, message: str, extra: dict[str, Any]) -> None:
        self.lines.append(("error", message, extra))

    def __getattr__(self, level: str) -> Any:
        return lambda message, extra=None: self.lines.append((level, message, extra or {}))


class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, float] = {}

    def add_metric(self, name: str, unit: str, value: float) -> None:
        self.counts[name] = self.counts.get(name, 0) + value


def denied(operation: str = "BatchGetItem") -> ClientError:
    error = {"Code": "AccessDeniedException", "Message": "not authorized"}
    return ClientError({"Error": error}, operation)


# --- credentials --------------------------------------------------------------------------


def test_role_credentials_keep_their_session_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAROLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-of-the-role")
    settings = Settings(table_name="t", endpoint_url="http://127.0.0.1:4566")
    assert client_kwargs(settings)["aws_session_token"] == "token-of-the-role"
    meta = bind_models(settings).Run.Meta
    assert (meta.aws_access_key_id, meta.aws_session_token) == ("ASIAROLE", "token-of-the-role")


def test_a_machine_without_credentials_reaches_a_local_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    creds = loopback_credentials()
    assert set(creds) == {"aws_access_key_id", "aws_secret_access_key"}
    assert all(creds.values())


def test_a_remote_endpoint_uses_the_normal_credential_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "t")
    kwargs = client_kwargs(Settings(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com"))
    assert not {"aws_access_key_id", "aws_session_token"} & set(kwargs)


# --- errors -------------------------------------------------------------------------------


def test_aws_error_sees_through_pynamodb_wrappers() -> None:
    wrapped = QueryError("Failed to query items", denied("Query"))
    assert aws_error(wrapped) == ("AccessDeniedException", "Query")
    try:
        try:
            raise denied("SendMessageBatch")
        except ClientError as exc:
            raise RuntimeError("send failed") from exc
    except RuntimeError as outer:
        assert aws_error(outer) == ("AccessDeniedException", "SendMessageBatch")
    assert aws_error(ValueError("bad payload")) is None
    unreachable = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert aws_error(unreachable) == ("EndpointConnectionError", "?")


def test_report_error_logs_code_and_operation_never_more_than_ids() -> None:
    log, metrics = Log(), Counter()
    report_error(denied(), "execute", log, metrics, task_id="t1", run_id="r1")
    ((level, message, extra),) = log.lines
    assert level == "error" and message == "AWS call failed"
    assert extra["aws_error_code"] == "AccessDeniedException"
    assert extra["aws_operation"] == "BatchGetItem"
    assert (extra["task_id"], extra["run_id"], extra["step"]) == ("t1", "r1", "execute")
    assert metrics.counts == {"AwsErrors": 1}


def test_a_worker_record_that_hits_an_aws_error_is_logged_and_counted(env: Any) -> None:
    from dynacron import At

    s = env.scheduler()
    task = s.schedule("send-email", {"to": "secret@example.com"}, trigger=At(env.clock.now()))
    (msg,) = env.receive()
    log, metrics = Log(), Counter()
    executor = env.executor(logger=log, metrics=metrics)

    def refuse(*_: Any, **__: Any) -> Any:
        raise denied()

    executor.store.get_run_and_task = refuse
    with pytest.raises(ClientError):
        executor.execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
    errors = [extra for level, _, extra in log.lines if level == "error"]
    assert [(e["aws_error_code"], e["aws_operation"], e["task_id"]) for e in errors] == [
        ("AccessDeniedException", "BatchGetItem", task.task_id)
    ]
    assert "secret@example.com" not in repr(log.lines)
    assert metrics.counts == {"AwsErrors": 1}


def test_a_poll_whose_send_is_refused_logs_it(env: Any) -> None:
    from datetime import timedelta

    from dynacron import At

    s = env.scheduler()
    s.schedule("send-email", {}, trigger=At(env.clock.now() + timedelta(seconds=70)))
    log, metrics = Log(), Counter()
    d = env.dispatcher(logger=log, metrics=metrics)

    class RefusingSQS:
        def send_message_batch(self, **_: Any) -> Any:
            raise denied("SendMessageBatch")

    d.sqs = RefusingSQS()
    report = d.poll()
    assert report.send_failed == 1
    errors = [extra for level, _, extra in log.lines if level == "error"]
    assert [(e["aws_operation"], e["step"]) for e in errors] == [("SendMessageBatch", "send")]
    assert metrics.counts == {"AwsErrors": 1}


def test_entries_sqs_refuses_inside_a_batch_are_logged(env: Any) -> None:
    from datetime import timedelta

    from dynacron import At

    s = env.scheduler()
    s.schedule("send-email", {}, trigger=At(env.clock.now() + timedelta(seconds=70)))
    log, metrics = Log(), Counter()
    d = env.dispatcher(logger=log, metrics=metrics)

    class PartialSQS:
        def send_message_batch(self, Entries: list[dict[str, Any]], **_: Any) -> Any:
            failed = [{"Id": e["Id"], "Code": "KMS.AccessDenied", "SenderFault": True}
                      for e in Entries]
            return {"Successful": [], "Failed": failed}

    d.sqs = PartialSQS()
    assert d.poll().send_failed == 1
    errors = [extra for level, _, extra in log.lines if level == "error"]
    assert [(e["aws_error_code"], e["aws_operation"]) for e in errors] == [
        ("KMS.AccessDenied", "SendMessageBatch")
    ]
