"""moto's ThreadedMotoServer, run in a child process, made to behave like AWS under concurrency.

``python -m helpers.moto_server PORT`` (from ``tests/``) serves DynamoDB and SQS on 127.0.0.1.

Five changes to moto, none of which changes what a single request answers:

1. Requests are applied one at a time. moto's server runs each request on its own thread with
   no lock, so a conditional write's check and its write can interleave with another request's;
   DynamoDB applies each write atomically and serializes transactions.
2. ``TransactWriteItems`` snapshots only the items it writes. moto deep-copies every table a
   transaction touches (O(table) per transaction, seconds on a 2,000-run table) and, when the
   transaction is cancelled, puts the whole copy back, which would also undo any write that
   landed meanwhile; restoring just the transaction's own items is what "all or nothing" means.
3. SQS checks a message's retention period in O(1) and reads the clock with ``time.time()``.
   moto recomputes every queue attribute (a pass over all messages, building a datetime per
   message) for each message it sends or returns, which makes a deep queue quadratic.
4. DynamoDB data-plane results (already wire JSON) are written with ``json.dumps`` instead of
   moto's shape-driven serializer, which costs ~10 ms per item returned and gives the same JSON.
5. moto's router caches the list of its own service modules instead of listing its package
   directory on every request.

Running the server in its own process also keeps its work off the tests' interpreter lock.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable
from typing import Any

_FAST_ACTIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "Query",
        "Scan",
        "BatchWriteItem",
        "BatchGetItem",
        "TransactWriteItems",
        "TransactGetItems",
    }
)


def _patch_moto() -> None:
    # (5) routing: moto lists its own package directory (a listdir and ~60 stats) on every
    # request to match the Host header; the list never changes while it runs.
    from moto import backends
    from moto.core.utils import unix_time
    from moto.dynamodb import models as ddb_models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table
    from moto.sqs import models as sqs_models

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    # (4) DynamoDB data-plane answers written with json.dumps. Their results are already wire
    # JSON (AttributeValue maps); moto's shape-driven serializer re-walks every attribute of
    # every item (~10 ms per item-returning call) and produces the same document.
    from moto.dynamodb.responses import DynamoHandler

    serialized = DynamoHandler.serialized

    def fast_serialized(self: Any, action_result: Any) -> Any:
        result = action_result.result
        if self._get_action() in _FAST_ACTIONS and isinstance(result, dict):
            headers = {
                "Content-Type": "application/x-amz-json-1.0",
                "x-amzn-requestid": uuid.uuid4().hex,
            }
            headers.update(self.response_headers)
            return 200, headers, json.dumps(result)
        return serialized(self, action_result)

    DynamoHandler.serialized = fast_serialized

    # (2) transactions: per-item snapshot instead of whole-table copies
    shim = types.ModuleType("copy")
    shim.deepcopy = lambda x, memo=None: x if isinstance(x, Table) else copy.deepcopy(x, memo)
    shim.copy = copy.copy
    ddb_models.copy = shim
    original = ddb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = self.get_table(op["TableName"])
                attrs = op["Item"] if op_type == "Put" else op["Key"]
                h = DynamoType(attrs[table.hash_key_attr])
                r = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
                saved.append((table, h, r, copy.deepcopy(table.get_item(h, r))))
            except Exception:
                continue
        try:
            return original(self, transact_items)
        except BaseException:
            for table, h, r, old in reversed(saved):
                if old is None:
                    table.delete_item(h, r)
                elif r is not None:
                    table.items[h][r] = old
                else:
                    table.items[h] = old
            raise

    ddb_models.DynamoDBBackend.transact_write_items = transact_write_items

    # (3) SQS retention check without recomputing every queue attribute
    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        queue = self.get_queue(queue_name)
        return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()

    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = (
        is_message_valid_based_on_retention_period
    )

    def messages(self: Any) -> list[Any]:  # visible and not delayed, one clock reading
        now = time.time() * 1000.0
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    sqs_models.Queue.messages = property(messages)
    # ... and reads the clock through time.time() (moto builds a datetime for each reading,
    # several per queued message per request); same instant, same value.
    sqs_models.unix_time = lambda dt=None: time.time() if dt is None else unix_time(dt)
    sqs_models.unix_time_millis = lambda dt=None: (
        time.time() * 1000.0 if dt is None else unix_time(dt) * 1000.0
    )


def _serialized(app: Callable[..., Any]) -> Callable[..., Any]:
    lock = threading.Lock()

    import os

    prof = None
    if os.environ.get("MOTO_PROFILE"):
        import atexit
        import cProfile

        prof = cProfile.Profile()
        atexit.register(lambda: prof.dump_stats(os.environ["MOTO_PROFILE"]))

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            if prof is not None:
                prof.enable()
            try:
                return list(app(environ, start_response))  # the body is produced under the lock
            finally:
                if prof is not None:
                    prof.disable()

    return wsgi


def serve(port: int) -> None:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class KeepAliveHandler(MotoRequestHandler):
        # HTTP/1.1 keeps the clients' pooled connections open; werkzeug's default (HTTP/1.0)
        # closes each one, so every request paid for a TCP handshake and a new server thread.
        protocol_version = "HTTP/1.1"

    class SerializedMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = _serialized(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=KeepAliveHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    _patch_moto()
    server = SerializedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
