"""moto server with O(1) TransactWriteItems, for benchmarks at thousands of items.

moto 5's ``transact_write_items`` backs up every table a transaction touches with
``copy.deepcopy(table)`` before applying it (once per item of the transaction), so one
TransactWriteItems costs time proportional to the whole table: measured on this machine
~6 ms on an empty table, ~70 ms at 500 items, ~430 ms at 2,000, ~700 ms at 5,000. Every claim of
a dynacron poller is a transaction, so on stock moto the dispatch rate falls as the table grows
and, past ~10 s per request, botocore's read timeout retries a transaction that moto already
applied (moto ignores ``ClientRequestToken``), which then fails its own condition and shows up as
a lost race.

The patch keeps moto's semantics (all-or-nothing, per-item conditions, the same errors) but backs
up only the items the transaction names, and restores just those on failure.

Likewise moto's SQS ``send_message`` reads ``queue.attributes`` (to look up one flag,
ContentBasedDeduplication), which counts the queue's messages by scanning them all: every
SendMessageBatch entry costs time proportional to the queue's length (a third of the server's
time in a dispatch of 1,000 runs, by py-spy). The patch answers that one lookup directly.

``python -m bench.motofix -p PORT`` runs moto's server with the patch applied.
"""

from __future__ import annotations

import copy
import sys
import threading
from typing import Any


def patch_moto_transactions() -> None:
    from moto.dynamodb import models as ddb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    if getattr(DynamoDBBackend.transact_write_items, "_bench_patched", False):
        return
    original = DynamoDBBackend.transact_write_items

    class _NoTableCopy:
        """``copy`` as moto's module sees it: a Table is not copied (we back up items instead)."""

        @staticmethod
        def deepcopy(obj: Any, memo: Any = None) -> Any:
            return obj if isinstance(obj, Table) else copy.deepcopy(obj, memo)

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

    ddb_models.copy = _NoTableCopy()

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        for entry in transact_items:
            try:
                _, op = next(iter(entry.items()))
                table_name = op.get("TableName")
                if not table_name or table_name not in self.tables:
                    continue
                table = self.tables[table_name]
                if "Item" in op:
                    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = op["Item"][table.range_key_attr]
                else:
                    key = op["Key"]
                current = self.get_item(table_name, key)
                backups.append((table_name, key,
                                None if current is None else current.to_json()["Attributes"]))
            except Exception:  # malformed entries: moto's own code reports them
                continue
        try:
            original(self, transact_items)
        except Exception:
            for table_name, key, attrs in reversed(backups):
                if attrs is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attrs)
            raise

    transact_write_items._bench_patched = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items


def patch_moto_sqs_send() -> None:
    from moto.sqs.models import Queue, SQSBackend

    if getattr(SQSBackend.send_message, "_bench_patched", False):
        return
    local = threading.local()
    full_attributes = Queue.attributes.fget
    original_send = SQSBackend.send_message

    def attributes(self: Any) -> dict[str, Any]:
        if not getattr(local, "sending", False):
            return full_attributes(self)
        if not self.fifo_queue:  # the flag is a FIFO attribute: absent on a standard queue
            return {}
        value = self.content_based_deduplication
        return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool)
                else value}

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        local.sending = True
        try:
            return original_send(self, *args, **kwargs)
        finally:
            local.sending = False

    send_message._bench_patched = True  # type: ignore[attr-defined]
    Queue.attributes = property(attributes)
    SQSBackend.send_message = send_message


def patch_moto() -> None:
    patch_moto_transactions()
    patch_moto_sqs_send()


def main() -> None:
    import logging

    patch_moto()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
