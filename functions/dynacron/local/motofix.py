"""Fixes to moto's cost, never to what it answers, so a moto server keeps up with thousands of runs.

Applied by ``patch_moto()`` in the server process of ``dynacron local`` (``local.server``), in
the moto server of the integration and reliability tests (``tests/helpers/backends.py``) and
in the benchmarks; unit tests (in-process ``mock_aws``) run stock moto.
``tests/integration/test_local_server.py`` sends the same requests to a patched and a stock
server and compares the answers. Each fix was found with py-spy on a busy ``dynacron local``:

1. **Transactions back up items, not tables.** moto's ``transact_write_items`` deep-copies every
   table a transaction touches (~430 ms per claim at 2,000 items), and on a cancelled
   transaction puts the whole copy back, which also undoes writes that landed meanwhile.
   Backing up the items the transaction names and restoring just those is what all-or-nothing
   means, in O(items).
2. **DynamoDB item results are written with ``json.dumps``.** They already are wire-format JSON
   (AttributeValue maps); moto's shape-driven serializer re-walks every member under several
   spellings to produce the same document (a quarter of a busy server's time).
3. **SQS reads one attribute, not all.** ``SendMessage`` (one flag) and ``ReceiveMessage`` (the
   retention period, once per message looked at) call ``queue.attributes``, which counts the
   queue's messages by scanning them: quadratic in queue depth. Visibility checks read the clock
   once with ``time.time()`` instead of building a datetime per message.
4. **Query does not sort the whole table first.** moto's ``Table.query`` sorts every item of the
   table (a Python-level key over DynamoType comparisons), then picks the partition's items and
   sorts those again; a poll of one shard of a 4,000-item table cost ~100 ms. The patch hands
   ``query`` the items unsorted; its own sort of the matches fixes the order, so the answer,
   pages included, is the same.
5. **UpdateExpressions are parsed once per distinct string.** moto parses each one twice per
   UpdateItem; the parse is pure (its validator deep-copies the tree before filling in values),
   and dynacron sends a handful of distinct expressions.
6. **Per-request bookkeeping is computed once.** Routing lists moto's package directory, and
   every action lists its response class's methods with ``inspect.getmembers`` (~15% of a
   GetItem), on every request; both lists never change while the server runs. Request ids come
   from ``secrets`` instead of 52 calls to ``random.choice``.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import time
import uuid
from typing import Any

# DynamoDB operations whose moto result already is the wire-format JSON object.
FAST_JSON_ACTIONS = frozenset({
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchWriteItem",
    "BatchGetItem", "TransactWriteItems", "TransactGetItems",
})


def patch_moto() -> None:
    """Apply every fix (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_dynacron_patched", False):
        return
    _patch_transactions()
    _patch_query()
    _patch_update_parse()
    _patch_dynamodb_json()
    _patch_sqs()
    _patch_routing()
    DynamoDBBackend._dynacron_patched = True  # type: ignore[attr-defined]


def _patch_transactions() -> None:
    from moto.dynamodb import models as ddb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    class _NoTableCopy:
        """``copy`` as moto's module sees it: a Table is not copied (items are backed up)."""

        @staticmethod
        def deepcopy(obj: Any, memo: Any = None) -> Any:
            return obj if isinstance(obj, Table) else copy.deepcopy(obj, memo)

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

    ddb_models.copy = _NoTableCopy()  # type: ignore[assignment]
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups = [b for b in (_backup(self, entry) for entry in transact_items) if b]
        try:
            original(self, transact_items)
        except Exception:
            for table_name, key, attrs in reversed(backups):
                if attrs is not None:
                    self.put_item(table_name, attrs)
                elif self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            raise

    DynamoDBBackend.transact_write_items = transact_write_items


def _backup(backend: Any, entry: dict[str, Any]) -> tuple[str, dict[str, Any], Any] | None:
    """(table, key, the item's attributes or None) for one transaction entry."""
    try:
        _, op = next(iter(entry.items()))
        table = backend.tables[op["TableName"]]
        source = op["Item"] if "Item" in op else op["Key"]
        key = {table.hash_key_attr: source[table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = source[table.range_key_attr]
        current = backend.get_item(op["TableName"], key)
    except Exception:  # a malformed entry: moto's own validation reports it
        return None
    return op["TableName"], key, None if current is None else current.to_json()["Attributes"]


def _patch_query() -> None:
    from moto.dynamodb.models.table import Table

    local = threading.local()
    all_items, query = Table.all_items, Table.query

    def items(self: Any) -> list[Any]:
        if not getattr(local, "querying", False):
            return all_items(self)
        if self.range_key_attr:
            return [item for partition in self.items.values() for item in partition.values()]
        return list(self.items.values())

    Table.all_items = items
    Table.query = _flagged(local, "querying", query)


def _flagged(local: threading.local, flag: str, method: Any) -> Any:
    """``method`` with ``local.<flag>`` set while it runs: how a patched helper knows which
    moto call it is answering for."""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        setattr(local, flag, True)
        try:
            return method(self, *args, **kwargs)
        finally:
            setattr(local, flag, False)

    return wrapper


def _patch_update_parse() -> None:
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    make = UpdateExpressionParser.make.__func__  # type: ignore[attr-defined]
    UpdateExpressionParser.make = classmethod(functools.lru_cache(maxsize=512)(make))


def _patch_dynamodb_json() -> None:
    from moto.dynamodb.responses import DynamoHandler

    serialized = DynamoHandler.serialized

    def fast_serialized(self: Any, action_result: Any) -> Any:
        result = action_result.result
        if self._get_action() in FAST_JSON_ACTIONS and isinstance(result, dict):
            try:
                body = json.dumps(result, separators=(",", ":"))
            except (TypeError, ValueError):  # a value only the shape-driven serializer knows
                return serialized(self, action_result)
            headers = {"Content-Type": "application/x-amz-json-1.0",
                       "x-amzn-requestid": uuid.uuid4().hex}
            headers.update(self.response_headers)
            return 200, headers, body
        return serialized(self, action_result)

    DynamoHandler.serialized = fast_serialized


def _patch_sqs() -> None:
    from moto.core.utils import unix_time
    from moto.sqs import models as sqs_models

    local = threading.local()
    all_attributes = sqs_models.Queue.attributes.fget
    send_message = sqs_models.SQSBackend.send_message

    def attributes(self: Any) -> dict[str, Any]:
        if not getattr(local, "sending", False):
            return all_attributes(self)
        if not self.fifo_queue:  # the one flag send_message looks up is a FIFO attribute
            return {}
        value = self.content_based_deduplication
        flag = str(value).lower() if isinstance(value, bool) else value
        return {"ContentBasedDeduplication": flag}

    def retained(self: Any, queue_name: str, message: Any) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return period + message.sent_timestamp / 1000 > unix_time()

    def messages(self: Any) -> list[Any]:  # visible and not delayed, one clock reading
        now = time.time() * 1000.0
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    sqs_models.Queue.attributes = property(attributes)
    sqs_models.Queue.messages = property(messages)
    sqs_models.SQSBackend.send_message = _flagged(local, "sending", send_message)
    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = retained
    # The same instant as moto's datetime-based clock, without a datetime per reading.
    sqs_models.unix_time = lambda dt=None: time.time() if dt is None else unix_time(dt)
    sqs_models.unix_time_millis = lambda dt=None: (
        time.time() * 1000.0 if dt is None else unix_time(dt) * 1000.0
    )


def _patch_routing() -> None:
    import secrets

    from moto import backends
    from moto.core import responses

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: iter(modules)
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(
        responses.method_names_from_class
    )

    def request_id(headerdict: dict[str, Any] | None = None) -> str:
        req_id = secrets.token_hex(26).upper()  # 52 characters, as moto's own
        if isinstance(headerdict, dict):
            headerdict["x-amzn-requestid"] = req_id
        return req_id

    responses.gen_amzn_requestid_long = request_id
