"""``@handler("name")`` and the lookup the worker does.

The worker imports the modules named in ``DYNACRON_HANDLERS``; importing them runs their
``@handler`` decorators, which fill the registry.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .errors import ValidationError

HandlerFunc = Callable[[dict[str, Any], Any], object]

#: task_type and task_id: letters, digits and ``._:@+=-``; no key delimiter (#), no control chars.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]*")

_registry: dict[str, HandlerFunc] = {}
_lock = threading.Lock()


def check_name(field: str, value: object, max_length: int = 128) -> str:
    """Validate an id or type name; the error names the field, the limit and the rule."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise ValidationError(field, "must not be empty")
    if len(value) > max_length:
        raise ValidationError(field, f"is {len(value)} characters, the limit is {max_length}")
    if not NAME_PATTERN.fullmatch(value):
        raise ValidationError(
            field,
            "may contain only letters, digits and ._:@+=- and must start with a letter or digit "
            "(no '#', '/', spaces or control characters)",
        )
    return value


def handler(name: str) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register ``f(payload: dict, ctx: RunContext) -> object`` for tasks of type ``name``."""
    check_name("task_type", name)

    def register(func: HandlerFunc) -> HandlerFunc:
        with _lock:
            _registry[name] = func
        return func

    return register


def get(name: str) -> HandlerFunc | None:
    return _registry.get(name)


def names() -> list[str]:
    return sorted(_registry)


def load(modules: Iterable[str]) -> list[str]:
    """Import each module so its handlers register; returns the modules imported."""
    loaded = []
    for module in modules:
        importlib.import_module(module)
        loaded.append(module)
    return loaded


def unregister(name: str) -> None:
    """Forget the handler of ``name`` (nothing if there is none). Public testing API: a test
    that registers a handler of its own removes it afterwards, so that a later test sees the
    task type as unknown again (``@handler`` for a name already registered replaces it)."""
    with _lock:
        _registry.pop(name, None)
