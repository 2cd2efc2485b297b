"""Fixes to moto's cost (and to one delay), never to what it answers: thousands of runs a minute.

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
5. **Expressions are parsed and checked once per distinct string.** moto parses each
   UpdateExpression twice per UpdateItem and lexes each ConditionExpression; both are pure (its
   validator copies the tree before filling in values), and dynacron sends a handful of
   distinct expressions. The validator's structural passes (clause counts, overlapping paths,
   key attributes: functions of the expression, the attribute names and the table's keys) run
   once per combination; its tree copy is built directly instead of by ``deepcopy``; its passes
   look up each node class's processor once instead of rebuilding the map and running ABC
   ``isinstance`` checks per node. UpdateItem's backend cost: 2.4 -> 0.7 ms.
6. **Per-request bookkeeping is computed once.** Routing lists moto's package directory, and
   every action lists its response class's methods with ``inspect.getmembers`` (~15% of a
   GetItem), on every request; both lists never change while the server runs. Request ids come
   from ``secrets`` instead of 52 calls to ``random.choice``.
7. **A long poll wakes when a delayed message comes due.** moto's ``ReceiveMessage`` with
   ``WaitTimeSeconds`` waits on a condition that only a send notifies, rechecking once a second;
   a message whose ``DelaySeconds`` (or visibility timeout) ends meanwhile is returned up to a
   second late, where SQS returns it as soon as it is available. The wait now ends at the
   earliest such instant (still at most the poll's own timeout).

Each fix is a ``Patch`` in ``PATCHES`` with the moto range it was tested on (``TESTED_MOTO``, the
``[local]`` extra's pin); ``patch_moto()`` applies those that fit the installed moto, warns
(``MotoPatchWarning``) about the others, and returns the names of the active ones.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

# DynamoDB operations whose moto result already is the wire-format JSON object.
FAST_JSON_ACTIONS = frozenset({
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchWriteItem",
    "BatchGetItem", "TransactWriteItems", "TransactGetItems",
})


# The moto releases the fixes were written and tested against: the range of the `[local]` extra
# in pyproject.toml (5.1.0-5.2.1 fail at import). Outside it a fix replaces internals that may
# have changed, so it is not applied: stock moto answers, only slower.
TESTED_MOTO = ((5, 2, 5), (5, 3))


class MotoPatchWarning(UserWarning):
    """A fix was not applied (untested moto, or its internals changed): stock moto answers."""


@dataclass(frozen=True)
class Patch:
    name: str
    apply: Callable[[], None]
    tested: tuple[tuple[int, ...], tuple[int, ...]] = TESTED_MOTO  # [low, high)


_active: set[str] = set()
_lock = threading.Lock()


def moto_version() -> tuple[int, ...]:
    """The installed moto's release as integers (``5.2.5.dev3`` -> ``(5, 2, 5)``)."""
    return tuple(int(part) for part in re.findall(r"\d+", metadata.version("moto"))[:3])


def patch_moto() -> frozenset[str]:
    """Apply every fix this moto is known to take (idempotent); the names of the active ones.

    A fix whose tested range excludes the installed moto, or whose moto internals are not where
    it expects them, is skipped with a ``MotoPatchWarning``; the others still apply.
    """
    with _lock:
        skipped: list[str] = []
        version = moto_version()
        for patch in PATCHES:
            if patch.name in _active:
                continue
            low, high = patch.tested
            if not low <= version < high:
                skipped.append(f"{patch.name} (tested on moto >={_dotted(low)},<{_dotted(high)})")
                continue
            try:
                patch.apply()
            except (ImportError, AttributeError, TypeError) as exc:
                skipped.append(f"{patch.name} ({type(exc).__name__}: {exc})")
                continue
            _active.add(patch.name)
        if skipped:
            warnings.warn(
                f"dynacron: moto {_dotted(version)}: fixes not applied, stock moto answers "
                f"(slower): {'; '.join(skipped)}",
                MotoPatchWarning,
                stacklevel=2,
            )
        return frozenset(_active)


def active_patches() -> frozenset[str]:
    """The fixes applied in this process."""
    return frozenset(_active)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _replace(owner: Any, name: str, value: Any) -> None:
    """Set ``owner.name``: a patch replaces moto's methods and properties on purpose, which a
    type checker rightly refuses in a plain assignment."""
    setattr(owner, name, value)


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

    _replace(DynamoDBBackend, "transact_write_items", transact_write_items)


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

    _replace(Table, "all_items", items)
    _replace(Table, "query", _flagged(local, "querying", query))


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


def _patch_expressions() -> None:
    """Fix 5: expressions parsed, lexed and structurally checked once (see the module doc)."""
    from collections import deque

    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    cached: Any = functools.lru_cache(maxsize=512)(UpdateExpressionParser.make.__func__)
    _replace(UpdateExpressionParser, "make", classmethod(cached))

    # Lexing a condition depends on its text alone; the tokens are tuples nobody mutates.
    lex = ConditionExpressionParser._lex_condition_expression
    tokens = functools.lru_cache(maxsize=512)(
        lambda text: tuple(lex(ConditionExpressionParser(text, None, None)))
    )
    _replace(
        ConditionExpressionParser,
        "_lex_condition_expression",
        lambda self: deque(tokens(self.condition_expression)),
    )
    _patch_condition_parse(ConditionExpressionParser)
    validators.deepcopy = _copy_tree
    _patch_traverser()
    _patch_structure_checks(validators.UpdateExpressionValidator)


def _patch_condition_parse(parser_class: Any) -> None:
    """One parse per condition: moto's request layer parses a ConditionExpression to check the
    names and values it uses, then its backend parses the same text again to evaluate it. The
    parse is a function of the text, names and values, and evaluating its tree changes nothing;
    the last few parses are kept (DynamoDB requests reach moto one at a time, see server.py)."""
    parse = parser_class.parse
    recent: dict[tuple[Any, ...], tuple[Any, tuple[str, ...], tuple[str, ...]]] = {}

    def cached_parse(self: Any) -> Any:
        try:
            key = (
                self.condition_expression,
                json.dumps(self.expression_attribute_names, sort_keys=True),
                json.dumps(self.expression_attribute_values, sort_keys=True),
            )
        except (TypeError, ValueError):
            return parse(self)
        hit = recent.get(key)
        if hit is None:
            op = parse(self)  # raises for a bad expression: nothing is kept
            if len(recent) >= 16:
                recent.clear()
            hit = recent[key] = (
                op, tuple(self.expr_attr_names_found), tuple(self.expr_attr_values_found)
            )
            return op
        op, names, values = hit
        self.expr_attr_names_found.extend(names)
        self.expr_attr_values_found.extend(values)
        return op

    parser_class.parse = cached_parse


def _copy_tree(node: Any, memo: Any = None) -> Any:
    """``deepcopy`` of an update-expression AST (the validator's only use of it), built directly.

    Nodes hold ``type`` (a str), ``children`` (nodes or str/int leaves) and ``parent``; anything
    else goes to ``copy.deepcopy``.
    """
    from moto.dynamodb.parsing.ast_nodes import Node

    if not isinstance(node, Node) or node.parent is not None or set(vars(node)) != _NODE_ATTRS:
        return copy.deepcopy(node, memo)
    return _clone(node, None)


_NODE_ATTRS = frozenset({"type", "children", "parent"})


def _clone(node: Any, parent: Any) -> Any:
    new = object.__new__(type(node))
    new.type = node.type
    new.parent = parent
    kids = node.children
    if kids is None:
        new.children = None
    else:
        new.children = [
            _clone(k, new) if hasattr(k, "children") else copy.deepcopy(k) for k in kids
        ]
    return new


def _patch_traverser() -> None:
    """Walk ASTs with each node class's processor looked up once per validator pass.

    moto's ``DepthFirstTraverser`` rebuilds its processing map and runs ``isinstance`` against
    ABCs for every node of every pass (ten passes per UpdateItem). The order of the map (first
    matching class wins) and the walk (children first, ``pre_processing_of_child``, the
    processed node put back into its parent) are moto's own.
    """
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        table = self.__dict__.get("_dc_table")
        if table is None:
            table = self._dc_table = {}
            self._dc_map = list(self._processing_map().items())
        cls = type(node)
        entry = table.get(cls)
        if entry is None:
            entry = table[cls] = _processor_entry(self._dc_map, cls, Node)
        if entry is _NOT_A_NODE:
            return node
        parent_node = node.parent
        if node.children is not None:
            for i, child_node in enumerate(node.children):
                self.pre_processing_of_child(node, i)
                self.traverse_node_recursively(child_node, i)
        if entry is not _UNPROCESSED:
            node = entry(node)
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
        return node

    DepthFirstTraverser.traverse_node_recursively = traverse_node_recursively


_NOT_A_NODE = object()
_UNPROCESSED = object()


def _processor_entry(processing: list[tuple[type, Any]], cls: type, node_type: type) -> Any:
    if not issubclass(cls, node_type):
        return _NOT_A_NODE
    for class_key, processor in processing:
        if issubclass(cls, class_key):
            return processor
    return _UNPROCESSED


# The first three passes of moto's UpdateExpressionValidator (clause counts, overlapping paths,
# key attributes) read only the parsed expression, the attribute names and the table's key
# attributes, and change nothing; combinations that passed them once are remembered here.
_STRUCTURE_PASSES = 3
_structure_ok: set[tuple[Any, ...]] = set()


def _patch_structure_checks(validator_class: Any) -> None:
    from moto.dynamodb.parsing.validators import (
        ActionCountValidator,
        OverlappingPathsValidator,
        UpdateHashRangeKeyValidator,
    )

    init, validate_all = validator_class.__init__, validator_class.validate
    structural = (ActionCountValidator, OverlappingPathsValidator, UpdateHashRangeKeyValidator)

    def __init__(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        init(self, expression, *args, **kwargs)
        self._dc_source = expression  # the parse cache's object: the same per expression text

    def validate(self: Any) -> Any:
        processors = self.processors
        if tuple(map(type, processors[:_STRUCTURE_PASSES])) != structural:  # another moto
            return validate_all(self)
        names = self.expression_attribute_names or {}
        key = (self._dc_source, tuple(sorted(names.items())), tuple(self.table.table_key_attrs))
        known = key in _structure_ok
        node = self.node_to_validate
        for i, processor in enumerate(processors):
            if known and i < _STRUCTURE_PASSES:
                continue
            node = processor.traverse(node)
            if i == _STRUCTURE_PASSES - 1 and len(_structure_ok) < 4096:
                _structure_ok.add(key)
        return node

    validator_class.__init__ = __init__
    validator_class.validate = validate


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

    _replace(DynamoHandler, "serialized", fast_serialized)


def _patch_sqs() -> None:
    from moto.core.utils import unix_time
    from moto.sqs import models as sqs_models

    local = threading.local()
    all_attributes = sqs_models.Queue.__dict__["attributes"].fget  # the property's getter
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

    _replace(sqs_models.Queue, "wait_for_messages", wait_for_messages)
    _replace(sqs_models.Queue, "attributes", property(attributes))
    _replace(sqs_models.Queue, "messages", property(messages))
    _replace(sqs_models.SQSBackend, "send_message", _flagged(local, "sending", send_message))
    _replace(sqs_models.SQSBackend, "is_message_valid_based_on_retention_period", retained)
    # The same instant as moto's datetime-based clock, without a datetime per reading.
    sqs_models.unix_time = lambda dt=None: time.time() if dt is None else unix_time(dt)
    sqs_models.unix_time_millis = lambda dt=None: (
        time.time() * 1000.0 if dt is None else unix_time(dt) * 1000.0
    )


def wait_for_messages(queue: Any, timeout: float) -> None:
    """Wait up to ``timeout`` s for a visible message: woken by a send, or when one comes due."""
    deadline = time.time() + timeout
    with queue._messages_lock:
        while not queue.messages:
            now = time.time()
            if now >= deadline:
                return
            due = _next_due_ms(queue._messages, now * 1000.0)
            wait = deadline - now if due is None else min(deadline - now, due / 1000.0 - now)
            queue._messages_lock.wait(max(wait, 0.001))


def _next_due_ms(messages: list[Any], now_ms: float) -> float | None:
    """The earliest instant, from ``now_ms`` on, at which a message stops being delayed or hidden.

    Called only while no message is visible, so every such instant still lies ahead (one equal
    to ``now_ms`` is a message hidden *until* now: moto shows it strictly after ``visible_at``).
    """
    due = [max(m.visible_at, m.delayed_until) for m in messages]
    return min((t for t in due if t >= now_ms), default=None)


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


PATCHES: tuple[Patch, ...] = (
    Patch("transactions", _patch_transactions),  # fix 1
    Patch("query", _patch_query),  # fix 4
    Patch("expressions", _patch_expressions),  # fix 5
    Patch("dynamodb_json", _patch_dynamodb_json),  # fix 2
    Patch("sqs", _patch_sqs),  # fixes 3 and 7
    Patch("routing", _patch_routing),  # fix 6
)
