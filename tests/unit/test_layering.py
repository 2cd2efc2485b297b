"""The storage layer owns the table: what may import PynamoDB, and what may write conditionally.

Parsed, not imported: a module that imports PynamoDB lazily inside a function is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "functions"
PACKAGE = SOURCE / "dynacron"
#: The storage layer (README, "Storage layer"): models and reads, and every transition.
STORAGE = {PACKAGE / "store.py", PACKAGE / "transitions.py"}


def _modules() -> list[Path]:
    found = sorted(SOURCE.rglob("*.py"))
    assert len(found) > 30 and set(found) >= STORAGE  # the walk sees the package
    return found


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_only_the_storage_layer_imports_pynamodb():
    importers = {
        path.relative_to(SOURCE).as_posix()
        for path in _modules()
        if any(m.split(".")[0] == "pynamodb" for m in _imported_modules(_tree(path)))
    }
    assert importers == {p.relative_to(SOURCE).as_posix() for p in STORAGE}


def test_the_check_sees_a_lazy_import():
    tree = ast.parse("def f():\n    from pynamodb.exceptions import UpdateError\n")
    assert "pynamodb.exceptions" in _imported_modules(tree)


def _private_imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(_tree(path)):
        if not isinstance(node, ast.ImportFrom):
            continue
        internal = node.level > 0 or (node.module or "").split(".")[0] == "dynacron"
        for alias in node.names if internal else ():
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                out.append(f"{path.relative_to(SOURCE)}:{node.lineno} {alias.name}")
    return out


def test_no_module_imports_a_private_name_of_another():
    found = [hit for path in _modules() for hit in _private_imports(path)]
    assert found == []


def _conditional_writes(path: Path) -> list[str]:
    """Calls that carry a write condition or update actions (``condition=``, ``actions=``),
    and transactions opened (``.transaction()``)."""
    out = []
    for node in ast.walk(_tree(path)):
        if not isinstance(node, ast.Call):
            continue
        keywords = {k.arg for k in node.keywords}
        opens = isinstance(node.func, ast.Attribute) and node.func.attr == "transaction"
        if keywords & {"condition", "actions"} or opens:
            out.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    return out


def test_every_conditional_write_is_in_the_storage_layer():
    outside = [hit for p in _modules() if p not in STORAGE for hit in _conditional_writes(p)]
    assert outside == []
    assert len([hit for p in STORAGE for hit in _conditional_writes(p)]) >= 20


@pytest.mark.parametrize(
    "name",
    ["claim", "claim_occurrence", "skip_occurrence", "start", "renew", "retry", "finish",
     "mark_dead", "skip", "redrive", "create", "update", "delete", "pause", "resume", "cancel",
     "defer", "reslot"],
)
def test_each_transition_is_a_named_operation_of_the_store(name):
    from dynacron.store import Store

    assert callable(getattr(Store, name))
