"""Test hygiene: a test run rewrites no tracked file, and the library carries no test doubles."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _ignored(path: Path) -> bool:
    rel = path.resolve().relative_to(ROOT)
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(rel)], cwd=ROOT,
                             capture_output=True).returncode == 0
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", str(rel)],
                             cwd=ROOT).returncode == 0
    return ignored and not tracked


def test_the_reliability_figures_go_to_an_ignored_file() -> None:
    # tests/reliability/conftest.py imports the suite's own helpers: read its constant instead.
    source = (ROOT / "tests/reliability/conftest.py").read_text()
    assert 'REPORT = Path(__file__).resolve().parents[2] / ".pytest-results"' in source
    assert _ignored(ROOT / ".pytest-results" / "reliability.jsonl")
    assert not _ignored(ROOT / "README.md")  # the check can fail
    tracked = subprocess.run(["git", "ls-files", "tests/reliability"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert "tests/reliability/last_run.jsonl" not in tracked


def test_screenshots_go_to_docs_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNACRON_UPDATE_SCREENSHOTS", raising=False)
    # Not by importing the browser test: its module registers handlers of its own.
    from helpers.screenshots import screenshot_dir

    assert _ignored(screenshot_dir() / "ui-task.png")
    monkeypatch.setenv("DYNACRON_UPDATE_SCREENSHOTS", "1")
    assert screenshot_dir() == ROOT / "docs"
    assert "SHOTS = screenshot_dir()" in (ROOT / "tests/integration/test_ui_browser.py").read_text()


def test_the_library_carries_no_test_doubles() -> None:
    from dynacron import clock
    from dynacron.local import demo
    from dynacron.sdk import Scheduler
    from dynacron.store import Store

    assert not hasattr(clock, "SkewedClock")
    assert not hasattr(Store, "new_run_row")
    # The demo reports the SDK's dispatches through the public hook, not a subclass.
    assert not [v for v in vars(demo).values()
                if isinstance(v, type) and issubclass(v, Scheduler) and v is not Scheduler]
