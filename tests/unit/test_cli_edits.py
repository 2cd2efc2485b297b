"""``dynacron update`` and ``dynacron delete``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from helpers.cli import checked, clear_config_env


@pytest.fixture
def dc(env, monkeypatch):
    clear_config_env(monkeypatch)

    def invoke(*args: str, code: int = 0):
        result = checked(env, *args, code=code, columns=None)
        if code:
            assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
        return result

    return invoke


def _later(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def test_update_changes_only_what_is_given(dc):
    dc("schedule", "job", "--payload", '{"a":1}', "--every", "1h", "--task-id", "t",
       "--max-attempts", "5", "--timeout", "30")  # fmt: skip
    out = json.loads(dc("update", "t", "--payload", '{"a":2}', "--backoff-max", "60",
                        "--json").stdout)  # fmt: skip
    assert out["payload"] == {"a": 2} and out["timeout"] == 30
    assert out["retry"]["max_attempts"] == 5 and out["retry"]["backoff_max"] == 60
    assert out["trigger"]["type"] == "every"
    moved = json.loads(dc("update", "t", "--at", _later(2), "--json").stdout)
    assert moved["trigger"]["type"] == "at" and moved["payload"] == {"a": 2}


def test_update_refuses_nothing_and_bad_input(dc):
    dc("schedule", "job", "--every", "1h", "--task-id", "t")
    assert "nothing to update" in dc("update", "t", code=2).stderr
    assert "--tz" in dc("update", "t", "--tz", "Europe/Berlin", code=2).stderr
    assert "timeout" in dc("update", "t", "--timeout", "99999", code=2).stderr
    assert "not found" in dc("update", "nope", "--timeout", "5", code=3).stderr


def test_delete_frees_the_id_and_a_cancelled_id_says_how(dc):
    dc("schedule", "job", "--every", "1h", "--task-id", "t")
    dc("cancel", "t")
    err = dc("schedule", "job", "--every", "1h", "--task-id", "t", code=4).stderr
    assert "cancelled" in err and "dynacron delete t" in err
    assert "deleted" in dc("delete", "t").stdout
    dc("show", "t", code=3)
    dc("schedule", "job", "--every", "1h", "--task-id", "t")
    assert json.loads(dc("delete", "t", "--json").stdout)["deleted"] is True
