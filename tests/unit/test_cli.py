"""The ``dynacron`` CLI against in-process moto (the ``env`` fixture's table and queues)."""

from __future__ import annotations

import json
import sys
import types
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from dynacron import At
from dynacron.cli import cli
from helpers.cli import checked, clear_config_env

UNREGISTERED = "cli-no-such-handler"


@pytest.fixture
def dc(env, monkeypatch):
    """Invoke the CLI with the env's resources; check the exit code and the error contract."""
    clear_config_env(monkeypatch)

    def invoke(*args: str, code: int = 0, config: bool = True, input: str | None = None):
        result = checked(env, *args, code=code, flags=config, input=input, columns=None)
        assert "Traceback" not in result.output
        if code:
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        else:
            assert result.stderr == ""
        return result

    def js(*args: str, **kwargs):
        return json.loads(invoke(*args, "--json", **kwargs).stdout)

    invoke.json = js
    return invoke


def _soon(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat().replace("+00:00", "Z")


def test_schedule_each_trigger_then_list_show_runs(dc):
    at = dc.json(
        "schedule",
        "send",
        "--payload",
        '{"to": "a@b.c"}',
        "--at",
        _soon(hours=1),
        "--task-id",
        "one",
        "--max-attempts",
        "5",
        "--timeout",
        "30",
    )
    assert at["task_id"] == "one" and at["status"] == "active"
    assert at["trigger"]["type"] == "at" and at["payload"] == {"to": "a@b.c"}
    assert at["retry"]["max_attempts"] == 5 and at["timeout"] == 30
    every = dc.json("schedule", "tick", "--every", "1h", "--backoff-base", "1", "--misfire", "skip")
    assert every["trigger"]["interval"] == 3600 and every["misfire"] == "skip"
    assert every["trigger"]["start_at"].endswith("Z")
    cron = dc.json("schedule", "report", "--cron", "30 2 * * *", "--tz", "Europe/Berlin")
    assert cron["trigger"] == {
        "type": "cron",
        "expr": "30 2 * * *",
        "tz": "Europe/Berlin",
        "start_at": None,
        "end_at": None,
        "description": "At 02:30 (Europe/Berlin)",
    }
    nxt = datetime.fromisoformat(cron["next_fire_at"]).astimezone(UTC)
    assert nxt > datetime.now(UTC) and (nxt.minute, nxt.second) == (30, 0)

    listed = dc.json("list")
    assert {t["task_id"] for t in listed} == {"one", every["task_id"], cron["task_id"]}
    assert [t["task_id"] for t in dc.json("list", "--type", "tick")] == [every["task_id"]]
    assert dc.json("list", "--status", "paused") == []
    assert dc.json("show", "one") == at

    runs = dc.json("runs", every["task_id"])
    # Due now: dispatched at once, and the next occurrence is chained (newest first).
    assert [r["status"] for r in runs] == ["pending", "queued"]
    assert runs[-1]["scheduled_for"] == every["trigger"]["start_at"]
    assert [r["status"] for r in dc.json("runs", "one")] == ["pending"]

    table = dc("list").stdout  # human output is readable in a non-TTY
    assert "3 tasks" in table and every["task_id"] in table and "Europe/Berlin" in table
    assert (
        "scheduled task one"
        in dc(
            "schedule",
            "send",
            "--payload",
            '{"to": "a@b.c"}',
            "--at",
            at["trigger"]["when"],
            "--task-id",
            "one",
            "--max-attempts",
            "5",
            "--timeout",
            "30",
        ).stdout
    )


def test_payload_file_and_idempotent_task_id(dc, tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"n": 1}')
    first = dc.json(
        "schedule",
        "job",
        "--payload-file",
        str(path),
        "--every",
        "60",
        "--task-id",
        "same",
        "--start-at",
        "2030-01-01T00:00:00+01:00",
    )
    assert first["payload"] == {"n": 1}
    assert first["trigger"]["start_at"] == "2029-12-31T23:00:00Z"
    again = dc.json(
        "schedule",
        "job",
        "--payload-file",
        "-",
        "--every",
        "60",
        "--task-id",
        "same",
        "--start-at",
        "2029-12-31T23:00:00Z",
        input='{"n": 1}',
    )
    assert again == first
    err = dc("schedule", "job", "--every", "60", "--task-id", "same", code=2).stderr
    assert "--task-id" in err and "different arguments" in err


def test_pause_resume_cancel_and_trigger(dc):
    # Far from now: a run the poller already claimed would trip the resume bug (see report).
    tid = dc.json("schedule", "tick", "--cron", "0 0 1 1 *")["task_id"]
    assert "paused: status paused" in dc("pause", tid).stdout
    assert dc.json("show", tid)["status"] == "paused"
    assert dc.json("resume", tid)["status"] == "active"

    run = dc.json("trigger", tid)
    assert run["manual"] is True and run["task_id"] == tid
    runs = dc.json("runs", tid)
    assert run["run_id"] in [r["run_id"] for r in runs]
    assert len(dc.json("runs", tid, "--limit", "1")) == 1
    assert f"new run of {tid}" in dc("trigger", tid).stdout

    assert dc.json("cancel", tid)["status"] == "cancelled"
    assert dc.json("show", tid)["next_fire_at"] is None
    assert "cancelled" in dc("resume", tid, code=4).stderr
    assert "cancelled" in dc("trigger", tid, code=4).stderr


def test_next_across_the_spring_gap():
    args = [
        "next",
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-03-28T00:00:00Z",
        "-n",
        "3",
    ]
    out = CliRunner().invoke(cli, [*args, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["fires"] == [
        {"utc": "2026-03-28T01:30:00Z", "local": "2026-03-28T02:30:00+01:00"},
        {"utc": "2026-03-29T01:00:00Z", "local": "2026-03-29T03:00:00+02:00"},  # 02:30 is gone
        {"utc": "2026-03-30T00:30:00Z", "local": "2026-03-30T02:30:00+02:00"},
    ]
    text = CliRunner().invoke(cli, args).stdout
    for instant in (
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00Z",
        "2026-03-29T03:00:00+02:00 CEST",
    ):
        assert instant in text
    every = CliRunner().invoke(
        cli, ["next", "--every", "90m", "-n", "2", "--json", "--after", "2026-01-01T00:00:00Z"]
    )
    assert [f["utc"] for f in json.loads(every.stdout)["fires"]] == [
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:30:00Z",
    ]


BAD_INPUT = [
    (["schedule", "t", "--cron", "61 * * * *"], 2, "--cron"),
    (["schedule", "t", "--cron", "* * * *"], 2, "5 fields"),
    (["schedule", "t", "--cron", "0 3 * * *", "--tz", "Mars/Olympus"], 2, "--tz"),
    (["schedule", "t", "--at", "2030-01-01T09:00:00"], 2, "'--at'"),
    (["schedule", "t", "--at", "tomorrow"], 2, "'--at'"),
    (["schedule", "t", "--at", "2020-01-01T09:00:00Z"], 2, "--at: "),
    (["schedule", "t", "--every", "60", "--payload", "{bad"], 2, "'--payload'"),
    (["schedule", "t", "--every", "60", "--payload", "[1, 2]"], 2, "JSON object"),
    (["schedule", "t", "--every", "60", "--cron", "* * * * *"], 2, "exactly one"),
    (["schedule", "t"], 2, "give one trigger"),
    (["schedule", "t", "--every", "0.5"], 2, "--every"),
    (["schedule", "t", "--every", "soon"], 2, "'--every'"),
    (["schedule", "t", "--every", "60", "--max-attempts", "99"], 2, "--max-attempts"),
    (["schedule", "t", "--every", "60", "--timeout", "9999"], 2, "--timeout"),
    (["schedule", "t", "--every", "60", "--tz", "UTC"], 2, "--tz applies"),
    (["schedule", "bad type", "--every", "60"], 2, "TASK_TYPE"),
    (["schedule", "t", "--every", "60", "--misfire", "never"], 2, "--misfire"),
    (["schedule", "t", "--every", "60", "--bogus"], 2, "--bogus"),
    (["schedule", "t", "--every", "60", "--end-at", "2020-01-01T00:00:00Z"], 2, "--end-at"),
    (["show", "nope"], 3, "'nope' not found"),
    (["runs", "nope"], 3, "not found"),
    (["pause", "nope"], 3, "not found"),
    (["trigger", "nope"], 3, "not found"),
    (["dlq", "redrive", "nope", "0000000000000-s"], 3, "not found"),
    (["dlq", "redrive"], 2, "--all"),
]


def test_bad_input_is_one_line_and_writes_nothing(dc, env):
    dc("schedule", "keep", "--cron", "0 0 1 1 *", "--task-id", "keep")
    before = env.table_items()
    for args, code, needle in BAD_INPUT:  # one moto deployment for all: keeps the file fast
        assert needle in dc(*args, code=code).stderr, args
    assert env.table_items() == before


def test_configuration_and_aws_errors(dc, env, monkeypatch):
    assert "no table" in dc("list", code=5, config=False).stderr
    assert "ResourceNotFound" in dc("--table", "no-such-table", "show", "x", code=5).stderr
    monkeypatch.setenv("DYNACRON_TABLE", env.settings.table_name)
    assert dc.json("list") == []  # the environment is the default
    assert "no DLQ" in dc("dlq", "list", code=5, config=False).stderr


def test_help_documents_exit_codes(dc):
    for args in ([], ["schedule"], ["dlq"]):
        out = dc(*args, "--help", config=False).stdout
        assert "Exit codes:" in out and "3  not found" in out and "5  cannot reach AWS" in out
    assert "Commands:" in dc(config=False).stdout


def _receive(env, url: str, visibility: int = 30) -> list[dict]:
    """One short poll (``env.receive`` long-polls: the template sets 20 s on the queues)."""
    return env.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility, WaitTimeSeconds=0
    ).get("Messages", [])


def _dead_run(env):
    """A run the worker sent to the DLQ: its task_type has no handler."""
    s = env.scheduler()
    task = s.schedule(UNREGISTERED, {}, trigger=At(env.clock.now() + timedelta(seconds=5)))
    (msg,) = _receive(env, env.settings.queue_url)
    res = env.executor().execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)
    assert res.status == "dead", res
    (run,) = s.runs(task.task_id)
    return task.task_id, run.run_id


def test_dlq_list_and_redrive(dc, env):
    task_id, run_id = _dead_run(env)
    assert dc.json("runs", task_id)[0]["status"] == "dead"
    env.sqs.send_message(QueueUrl=env.settings.dlq_url, MessageBody="not json")

    for _ in range(2):  # listing does not consume
        listed = sorted(dc.json("dlq", "list"), key=lambda m: m["kind"])
        assert [m["kind"] for m in listed] == ["dead_run", "unknown"]
    dead = listed[0]
    assert (dead["task_id"], dead["run_id"], dead["attempts"]) == (task_id, run_id, 0)
    assert "unknown handler" in dead["reason"]
    assert UNREGISTERED in dc("dlq", "list").stdout

    # A second record of the same run (e.g. a worker crash between DLQ send and mark dead).
    (copy,) = [m for m in _receive(env, env.settings.dlq_url, 0) if '"dead_run"' in m["Body"]]
    env.sqs.send_message(QueueUrl=env.settings.dlq_url, MessageBody=copy["Body"])

    results = dc.json("dlq", "redrive", "--all")
    assert sorted(r["outcome"] for r in results) == ["deleted", "left", "redriven"]
    run = dc.json("runs", task_id)[0]
    assert run["status"] in ("pending", "queued") and run["max_attempts"] == 3
    assert [m["kind"] for m in dc.json("dlq", "list")] == ["unknown"]  # left on the queue

    # The run is no longer dead: a targeted redrive is refused as an invalid state.
    assert "only dead or expired" in dc("dlq", "redrive", task_id, run_id, code=4).stderr


def test_dlq_redrive_one_run(dc, env):
    task_id, run_id = _dead_run(env)
    out = dc("dlq", "redrive", task_id, run_id).stdout
    assert "redriven 1, left 0" in out
    assert dc.json("dlq", "list") == []
    assert dc.json("runs", task_id)[0]["status"] in ("pending", "queued")


def test_local_calls_the_runtime(monkeypatch):
    calls = []
    fake = types.ModuleType("dynacron.local.runtime")
    fake.main = lambda **kw: calls.append(kw) or 7
    monkeypatch.setitem(sys.modules, "dynacron.local.runtime", fake)
    result = CliRunner().invoke(
        cli,
        [
            "local",
            "--port",
            "9000",
            "--handlers",
            "a.b, c",
            "--demo",
            "--duration",
            "2.5",
            "--shards",
            "2",
            "--pollers",
            "2",
        ],
    )
    assert result.exit_code == 7
    assert calls == [
        {"port": 9000, "handlers": ["a.b", "c"], "demo": True, "duration": 2.5, "shards": 2,
         "state": None, "pollers": 2}
    ]
    assert CliRunner().invoke(cli, ["local"]).exit_code == 7
    assert calls[-1] == {
        "port": 8765,
        "handlers": [],
        "demo": False,
        "duration": None,
        "shards": None,
        "state": None,
        "pollers": 1,
    }
