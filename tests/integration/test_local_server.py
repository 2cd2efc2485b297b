"""The server of ``dynacron local``: patched moto answers as stock moto does; it dies with us.

``dynacron.local.motofix`` changes how moto computes its answers (item backups instead of table
copies, no whole-table sort, json.dumps, one SQS attribute), never what it answers. The same
script of requests, through the template's own table and queues, runs against the patched
server (``ServerProcess``) and the same server without the fixes (``ServerProcess(stock=True)``,
every fix reported off there and on here); the answers must be equal once
request ids, message ids and timestamps are set aside.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dynacron.local import motofix
from dynacron.local import server as server_module
from dynacron.local.provision import find_template, load_template, provision
from dynacron.local.server import PortInUse, ServerProcess

pytestmark = pytest.mark.integration
VOLATILE = {"ResponseMetadata", "MessageId", "ReceiptHandle", "MD5OfMessageBody", "SentTimestamp",
            "ApproximateFirstReceiveTimestamp", "SenderId", "ConsumedCapacity"}


def _clients(endpoint: str) -> tuple[Any, Any]:
    kw = {"endpoint_url": endpoint, "region_name": "us-east-1",
          "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    return boto3.client("dynamodb", **kw), boto3.client("sqs", **kw)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _call(fn: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return _strip(fn(**kwargs))
    except ClientError as exc:
        return {"error": exc.response["Error"]["Code"], "message": exc.response["Error"]["Message"],
                "reasons": [r.get("Code") for r in exc.response.get("CancellationReasons", [])]}


def _item(task: str, run: str, shard: int | None, due: int | None, status: str) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": {"S": f"T#{task}"}, "sk": {"S": f"RUN#{run}"},
                            "status": {"S": status}, "payload": {"S": '{"n": 1}'}}
    if shard is not None and due is not None:
        item["due_shard"] = {"N": str(shard)}
        item["due_at"] = {"N": str(due)}
    return item


def _script(endpoint: str) -> list[Any]:
    """Every kind of request dynacron makes, with answers worth comparing."""
    ddb, sqs = _clients(endpoint)
    res = provision(ddb, sqs, load_template(find_template()), prefix="cmp")
    table = res.table_name
    out: list[Any] = []
    items = [_item(f"t{i}", f"{1000 + i}-s", i % 2, 5000 - i * 10, "pending") for i in range(12)]
    items.append(_item("t99", "1-s", None, None, "succeeded"))  # not in the due index
    for item in items:
        out.append(_call(ddb.put_item, TableName=table, Item=item))
    # The due index, paged: order and LastEvaluatedKey must not depend on the unsorted scan.
    key: dict[str, Any] | None = None
    while True:
        page = _call(ddb.query, TableName=table, IndexName="due-index", Limit=2,
                     KeyConditionExpression="due_shard = :s AND due_at <= :h",
                     ExpressionAttributeValues={":s": {"N": "0"}, ":h": {"N": "4990"}},
                     **({"ExclusiveStartKey": key} if key else {}))
        out.append(page)
        key = page.get("LastEvaluatedKey")
        if not key:
            break
    out.append(_call(ddb.query, TableName=table, KeyConditionExpression="pk = :p",
                     ExpressionAttributeValues={":p": {"S": "T#t3"}}))
    update = {"TableName": table, "Key": {"pk": {"S": "T#t0"}, "sk": {"S": "RUN#1000-s"}},
              "UpdateExpression": "SET #st = :q, attempt = :one REMOVE due_shard, due_at",
              "ConditionExpression": "#st = :p", "ExpressionAttributeNames": {"#st": "status"},
              "ExpressionAttributeValues": {":q": {"S": "queued"}, ":p": {"S": "pending"},
                                            ":one": {"N": "1"}},
              "ReturnValues": "ALL_NEW"}
    out.append(_call(ddb.update_item, **update))
    out.append(_call(ddb.update_item, **update))  # the condition fails now
    out.extend(_updates(ddb, table))
    # A transaction whose second condition fails: the first write must not survive it.
    out.append(_call(ddb.transact_write_items, TransactItems=[
        {"Put": {"TableName": table, "Item": _item("t1", "1001-s", 1, 1, "queued")}},
        {"Update": {"TableName": table, "Key": {"pk": {"S": "T#t2"}, "sk": {"S": "RUN#1002-s"}},
                    "UpdateExpression": "SET #st = :q", "ConditionExpression": "#st = :x",
                    "ExpressionAttributeNames": {"#st": "status"},
                    "ExpressionAttributeValues": {":q": {"S": "queued"}, ":x": {"S": "nope"}}}},
        {"Put": {"TableName": table, "Item": _item("t50", "5-s", 0, 1, "pending")}},
    ]))
    out.append(_call(ddb.transact_write_items, TransactItems=[
        {"Update": {"TableName": table, "Key": {"pk": {"S": "T#t2"}, "sk": {"S": "RUN#1002-s"}},
                    "UpdateExpression": "SET #st = :q", "ConditionExpression": "#st = :p",
                    "ExpressionAttributeNames": {"#st": "status"},
                    "ExpressionAttributeValues": {":q": {"S": "queued"}, ":p": {"S": "pending"}}}},
    ]))
    for task, run in (("t1", "1001-s"), ("t2", "1002-s"), ("t50", "5-s")):
        out.append(_call(ddb.get_item, TableName=table, ConsistentRead=True,
                         Key={"pk": {"S": f"T#{task}"}, "sk": {"S": f"RUN#{run}"}}))
    out.append(_call(ddb.scan, TableName=table, Select="COUNT"))
    out.append(_call(ddb.batch_write_item, RequestItems={table: [
        {"DeleteRequest": {"Key": {"pk": {"S": "T#t99"}, "sk": {"S": "RUN#1-s"}}}}]}))
    # SQS: sends (single and batch), receives, attribute counts, deletes.
    out.append(_call(sqs.send_message, QueueUrl=res.queue_url, MessageBody="one"))
    out.append(_call(sqs.send_message_batch, QueueUrl=res.queue_url, Entries=[
        {"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)]))
    got = sqs.receive_message(QueueUrl=res.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                              AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
    out.append(sorted((m["Body"], m["Attributes"]["ApproximateReceiveCount"]) for m in got))
    out.append(_call(sqs.get_queue_attributes, QueueUrl=res.queue_url,
                     AttributeNames=["ApproximateNumberOfMessagesNotVisible",
                                     "ApproximateNumberOfMessages", "MessageRetentionPeriod"]))
    out.append(_call(sqs.delete_message_batch, QueueUrl=res.queue_url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]))
    return out


def _updates(ddb: Any, table: str) -> list[Any]:
    """Update expressions, valid and not, each twice: a check that passed for one request must
    still run for the next one whose names or expression differ (motofix remembers passes)."""
    key = {"pk": {"S": "T#t4"}, "sk": {"S": "RUN#1004-s"}}
    one = {":q": {"S": "queued"}, ":one": {"N": "1"}}
    cases = [
        ("SET #st = :q", {"#st": "status"}, {":q": one[":q"]}),
        ("SET #st = :q", {"#st": "pk"}, {":q": one[":q"]}),  # same text, now a key attribute
        ("SET #st = :q, #st = :q", {"#st": "status"}, {":q": one[":q"]}),
        ("SET #a = if_not_exists(#a, :one) + :one ADD #v :one REMOVE #d", {
            "#a": "attempt", "#v": "version", "#d": "due_at"}, {":one": one[":one"]}),
        ("SET #m.#k = :q", {"#m": "meta", "#k": "k"}, {":q": one[":q"]}),  # no map yet
        ("SET #l = list_append(if_not_exists(#l, :e), :l)", {"#l": "log"},
         {":e": {"L": []}, ":l": {"L": [{"S": "x"}]}}),
        ("SET #m = :m", {"#m": "meta"}, {":m": {"M": {"k": {"S": "v"}}}}),
        ("SET #m.#k = :q", {"#m": "meta", "#k": "k"}, {":q": one[":q"]}),
        ("SET #st = :q", {"#st": "status"}, {":q": {"S": ""}}),
        ("SET #st = :missing", {"#st": "status"}, {":q": one[":q"]}),
    ]
    out = []
    for expr, names, values in cases:
        for _ in range(2):
            out.append(_call(ddb.update_item, TableName=table, Key=key, UpdateExpression=expr,
                             ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                             ReturnValues="ALL_NEW"))
    return out


@pytest.fixture
def patched_server() -> Iterator[ServerProcess]:
    with ServerProcess() as server:
        yield server


@pytest.fixture
def patched(patched_server: ServerProcess) -> str:
    return patched_server.endpoint_url


@pytest.fixture
def stock_server() -> Iterator[ServerProcess]:
    """The same server without motofix, in a process of its own: this test process may have
    patched its own moto (``dynacron.testing`` does), so an in-process server could be patched."""
    with ServerProcess(stock=True) as server:
        yield server


def test_patched_server_answers_as_stock_moto(
    patched_server: ServerProcess, stock_server: ServerProcess
) -> None:
    # Every fix is on in the one and off in the other, or the comparison proves nothing.
    assert patched_server.patches == {patch.name for patch in motofix.PATCHES}
    assert stock_server.patches == frozenset()
    ours = _script(patched_server.endpoint_url)
    theirs = _script(stock_server.endpoint_url)
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a == b, f"request {i} differs"
    # The script exercised what it means to: a cancelled transaction, pages, a failed condition.
    assert any(isinstance(r, dict) and r.get("error") == "TransactionCanceledException"
               for r in ours)
    assert any(isinstance(r, dict) and r.get("error") == "ConditionalCheckFailedException"
               for r in ours)
    assert sum(1 for r in ours if isinstance(r, dict) and "LastEvaluatedKey" in r) >= 2


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_taken_port_is_a_clear_error(taken_port: int) -> None:
    with pytest.raises(PortInUse, match=str(taken_port)):
        ServerProcess(port=taken_port).start()


def test_a_port_taken_after_the_parents_check_is_the_same_clear_error(
    taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The parent's early check passes (as if the port were taken a moment later): the child's
    # bind fails, and its exit status, not its wording, makes it a PortInUse.
    monkeypatch.setattr(server_module, "check_port", lambda host, port: None)
    with pytest.raises(PortInUse, match=str(taken_port)):
        ServerProcess(port=taken_port).start()


def test_the_server_exits_when_its_parent_is_killed() -> None:
    code = ("from dynacron.local.server import ServerProcess; s = ServerProcess(); s.start(); "
            "print(s.pid, flush=True); import time; time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)  # no chance to stop its server
        parent.wait(10)
        deadline = time.monotonic() + 20
        while _alive(child):
            assert time.monotonic() < deadline, f"server {child} outlived its parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init in a container) counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_infra_provision_creates_the_template_resources_on_an_endpoint(patched: str) -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, os.path.join(root, "infra", "provision.py"), "--endpoint", patched,
         "--prefix", "infra"], capture_output=True, text=True, check=True, timeout=60)
    words = dict(w.split("=", 1) for w in out.stdout.split()[1:])
    assert out.stdout.startswith("export ")
    assert words["AWS_ENDPOINT_URL"] == patched
    ddb, sqs = _clients(patched)
    table = ddb.describe_table(TableName=words["DYNACRON_TABLE"])["Table"]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["due-index"]
    redrive = sqs.get_queue_attributes(QueueUrl=words["DYNACRON_QUEUE_URL"],
                                       AttributeNames=["RedrivePolicy"])["Attributes"]
    assert "deadLetterTargetArn" in redrive["RedrivePolicy"]
