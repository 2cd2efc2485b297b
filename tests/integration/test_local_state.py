"""``dynacron local``: SIGTERM to the process group stops it promptly; --state keeps tasks.

Each test starts real subprocesses (the runtime and its moto server child) in a process group
of their own and signals the whole group, as `timeout`, systemd or `docker stop` do.
"""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from test_local_runtime import LocalProcess, run_status, scheduler_for, wait_for

from dynacron import At, Every, RetryPolicy

pytestmark = pytest.mark.integration
PROMPT_S = 10.0  # was 105-115 s before the server child ignored the group's SIGTERM


def _terminate_group(rt: LocalProcess) -> float:
    assert rt.proc is not None
    start = time.monotonic()
    os.killpg(rt.proc.pid, signal.SIGTERM)
    assert rt.wait(timeout=60) == 0, rt.stderr()[-3000:]
    return time.monotonic() - start


def test_sigterm_to_the_group_stops_promptly_with_the_summary(tmp_path):
    rt = LocalProcess(tmp_path / "rt", ["--handlers", "testjobs"], new_session=True).start()
    try:
        sched = scheduler_for(rt.env())
        t = sched.schedule("t-ok", {"n": 1}, trigger=At(datetime.now(UTC)))
        wait_for("the run to succeed", lambda: run_status(sched, t.task_id) == ["succeeded"], 20)
        took = _terminate_group(rt)
    finally:
        rt.kill()
    err = rt.stderr()
    assert took < PROMPT_S, (took, err[-2000:])
    assert "state lives in memory only" in err  # said at start
    assert re.search(r"dynacron local: stopped: \d+ in-flight batch(es)? finished", err), err
    assert "lived in memory and is gone" in err  # and at stop


def test_state_file_keeps_tasks_runs_and_dead_letters_across_restarts(tmp_path):
    state = tmp_path / "state.json"
    args = ["--handlers", "testjobs", "--state", str(state)]
    first = LocalProcess(tmp_path / "one", args, new_session=True).start()
    try:
        sched = scheduler_for(first.env())
        done = sched.schedule("t-ok", {"n": 2}, trigger=At(datetime.now(UTC)), task_id="done")
        sched.schedule("t-ok", {}, trigger=Every(timedelta(hours=1),
                       start_at=datetime.now(UTC) + timedelta(hours=1)), task_id="hourly")
        sched.schedule("t-unknown", {}, trigger=At(datetime.now(UTC)), task_id="dead",
                       retry=RetryPolicy(max_attempts=1))
        wait_for("both runs to end", lambda: run_status(sched, "done") == ["succeeded"]
                 and run_status(sched, "dead") == ["dead"], 20)
        _terminate_group(first)
    finally:
        first.kill()
    assert "does not exist yet" in first.stderr()
    assert "state saved to" in first.stderr() and "3 tasks" in first.stderr()

    second = LocalProcess(tmp_path / "two", args, new_session=True).start()
    try:
        sched = scheduler_for(second.env())
        wait_for("the state line", lambda: "restored 3 tasks" in second.stderr(), 10)
        [run] = sched.runs(done.task_id)
        assert run.status == "succeeded" and run.result == {"ok": True, "n": 2}
        assert sched.get("hourly").status == "active"
        [record] = [m for m in sched.sqs.receive_message(
            QueueUrl=second.env()["DYNACRON_DLQ_URL"], MaxNumberOfMessages=10
        ).get("Messages", [])]
        assert '"dead"' in record["Body"]
        # The restored deployment goes on working: a new run of a restored task succeeds.
        extra = sched.trigger_now(done.task_id)
        wait_for("the new run", lambda: sched.get_run(done.task_id, extra.run_id).status
                 == "succeeded", 20)
    finally:
        second.kill()


def test_a_state_file_that_is_not_one_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    rt = LocalProcess(tmp_path / "rt", ["--state", str(bad)]).start()
    assert rt.wait(timeout=60) == 2
    assert "not a dynacron state file" in rt.stderr()
