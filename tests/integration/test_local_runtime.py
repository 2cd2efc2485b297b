"""``dynacron local`` end to end: real subprocesses, a real moto server over loopback HTTP.

Three runtimes start in parallel when the module starts (to keep the file well under a
minute): one serves the export-line and second-client tests, one is stopped with SIGINT, one
runs the demo. Every wait polls observable state (the export line, run status, process exit)
with a deadline; nothing sleeps for a fixed time to make an assertion true.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

EXPORT_KEYS = ["AWS_ENDPOINT_URL", "DYNACRON_TABLE", "DYNACRON_QUEUE_URL", "DYNACRON_DLQ_URL",
               "DYNACRON_LANE_QUEUES"]
STARTUP_TIMEOUT_S = 60.0

HANDLERS = textwrap.dedent(
    """
    import os
    import pathlib
    import time

    from dynacron import handler

    OUT = pathlib.Path(os.environ["LOCAL_TEST_OUT"])


    def note(line):
        with OUT.open("a") as fh:
            fh.write(line + "\\n")


    @handler("t-ok")
    def ok(payload, ctx):
        note(f"ok {ctx.run_id}")
        return {"ok": True, "n": payload.get("n")}


    @handler("t-sleep")
    def sleep(payload, ctx):
        note(f"start {ctx.run_id}")
        time.sleep(float(payload.get("seconds", 3)))
        note(f"done {ctx.run_id}")
        return {"slept": True}
    """
)


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


@dataclass
class LocalProcess:
    """One ``python -m dynacron.cli local`` (``dynacron local``) subprocess with its output in
    files."""

    workdir: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    new_session: bool = False  # its own process group, for signals sent to the whole group
    out: Path = field(init=False)
    err: Path = field(init=False)
    handler_log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "testjobs.py").write_text(HANDLERS)
        self.out = self.workdir / "stdout.txt"
        self.err = self.workdir / "stderr.txt"
        self.handler_log = self.workdir / "handlers.log"
        self.handler_log.touch()

    def start(self) -> LocalProcess:
        env = {**os.environ, "LOCAL_TEST_OUT": str(self.handler_log), "PYTHONUNBUFFERED": "1"}
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dynacron.cli", "local", "--port", "0", *self.args],
                cwd=self.workdir,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=self.new_session,
            )
        return self

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def export_line(self) -> str:
        def probe() -> str | None:
            assert self.proc is not None
            for line in self.stdout().splitlines():
                if line.startswith("export "):
                    return line
            if self.proc.poll() is not None:
                pytest.fail(f"runtime exited {self.proc.returncode}:\n{self.stderr()[-3000:]}")
            return None

        return wait_for("the export line", probe, STARTUP_TIMEOUT_S)

    def env(self) -> dict[str, str]:
        return parse_export(self.export_line())

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"runtime still running after {timeout:g}s:\n{self.stderr()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def parse_export(line: str) -> dict[str, str]:
    words = shlex.split(line)
    assert words[0] == "export", line
    pairs = dict(word.split("=", 1) for word in words[1:])
    return pairs


@dataclass
class Runtimes:
    serving: LocalProcess
    stopping: LocalProcess
    demo: LocalProcess


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtimes]:
    base = tmp_path_factory.mktemp("local")
    procs = Runtimes(
        serving=LocalProcess(base / "serving", ["--handlers", "testjobs"]).start(),
        stopping=LocalProcess(base / "stopping", ["--handlers", "testjobs"]).start(),
        demo=LocalProcess(base / "demo", ["--demo", "--duration", "10"]).start(),
    )
    try:
        yield procs
    finally:
        for p in (procs.serving, procs.stopping, procs.demo):
            p.kill()


def scheduler_for(env: dict[str, str]) -> Any:
    from dynacron import Scheduler
    from dynacron.settings import Settings

    return Scheduler(settings=Settings.from_env(env))


def run_status(sched: Any, task_id: str) -> list[Any]:
    return [r.status.value for r in sched.runs(task_id)]


# --- the tests ------------------------------------------------------------------------------


def test_export_line_names_the_local_system(runtimes: Runtimes) -> None:
    line = runtimes.serving.export_line()
    env = parse_export(line)
    assert list(env) == EXPORT_KEYS
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", env["AWS_ENDPOINT_URL"])
    assert env["DYNACRON_TABLE"]
    for key in ("DYNACRON_QUEUE_URL", "DYNACRON_DLQ_URL"):
        assert env[key].startswith(env["AWS_ENDPOINT_URL"] + "/"), env[key]
    lanes = dict(p.split("=", 1) for p in env["DYNACRON_LANE_QUEUES"].split(","))
    assert set(lanes) == {"critical", "bulk"}
    assert all(url.startswith(env["AWS_ENDPOINT_URL"] + "/") for url in lanes.values()), lanes
    # Exactly one export line, and it is what `eval` in a POSIX shell understands.
    assert [ln for ln in runtimes.serving.stdout().splitlines() if ln.startswith("export")] == [
        line
    ]
    shell = subprocess.run(
        ["sh", "-c", 'eval "$1"; echo "$DYNACRON_QUEUE_URL"', "sh", line],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.strip() == env["DYNACRON_QUEUE_URL"]


def test_second_client_without_credentials_schedules_a_task_that_succeeds(
    runtimes: Runtimes, tmp_path: Path
) -> None:
    env = runtimes.serving.env()
    # A fresh shell: the export line and nothing else AWS (no keys, no profile, no config).
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DYNACRON_"))}
    clean.update(
        env,
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    when = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    script = textwrap.dedent(
        f"""
        from datetime import datetime
        from dynacron import At, Scheduler
        s = Scheduler()
        t = s.schedule("t-ok", {{"n": 7}}, trigger=At(datetime.fromisoformat({when!r})),
                       task_id="second-client")
        print(t.task_id)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=clean, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "second-client"

    sched = scheduler_for(env)
    wait_for(
        "the run to succeed",
        lambda: run_status(sched, "second-client") == ["succeeded"],
        timeout=20,
    )
    (run,) = sched.runs("second-client")
    assert run.result == {"ok": True, "n": 7}
    assert run.attempt == 1
    assert f"ok {run.run_id}" in runtimes.serving.handler_log.read_text()


def test_rrule_and_when_tasks_fire_where_next_said(runtimes: Runtimes) -> None:
    """The calendar triggers through the CLI and the running local system, not only in-process."""
    import json

    env = {**os.environ, **runtimes.serving.env(), "COLUMNS": "80"}
    cli = [str(Path(sys.executable).with_name("dynacron"))]
    # Three CLI processes (about 1 s each, more on a loaded machine) run before the first fire:
    # with 3 s of lead the `when` task was scheduled after its start and lost that occurrence.
    start = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)
    rule = ["--rrule", "FREQ=SECONDLY;INTERVAL=2;COUNT=3", "--start-at", start.isoformat()]

    def run(*args: str) -> str:
        done = subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    preview = json.loads(run("next", *rule, "-n", "5", "--after", start.isoformat(), "--json"))
    said = [f["utc"] for f in preview["fires"]]
    run("schedule", "t-ok", *rule, "--task-id", "rrule-local")
    run("schedule", "t-ok", "--when", "every 2 seconds", "--start-at", start.isoformat(),
        "--end-at", (start + timedelta(seconds=4)).isoformat(), "--task-id", "when-local")
    assert datetime.now(UTC) < start, "scheduling took longer than the lead: raise it"

    sched = scheduler_for(env)
    for task_id in ("rrule-local", "when-local"):
        wait_for(
            f"three runs of {task_id} to succeed",
            lambda t=task_id: run_status(sched, t) == ["succeeded"] * 3,
            timeout=30,
        )
    iso = "%Y-%m-%dT%H:%M:%SZ"
    fired = sorted(r.scheduled_for.strftime(iso) for r in sched.runs("rrule-local"))
    assert fired == said == [(start + timedelta(seconds=k)).strftime(iso) for k in (0, 2, 4)]
    assert sorted(r.scheduled_for for r in sched.runs("when-local")) == [
        start + timedelta(seconds=k) for k in (0, 2, 4)
    ]
    assert sched.get("rrule-local").status.value == "completed"


def test_sigint_lets_the_inflight_run_finish_and_deletes_nothing_unprocessed(
    runtimes: Runtimes,
) -> None:
    rt = runtimes.stopping
    sched = scheduler_for(rt.env())
    now = datetime.now(UTC)
    from dynacron import At

    sched.schedule("t-sleep", {"seconds": 3}, trigger=At(now), task_id="inflight", timeout=30)
    # Due a few seconds later: dispatched to SQS with a delay, still there at SIGINT.
    sched.schedule("t-ok", {"n": 1}, trigger=At(now + timedelta(seconds=6)), task_id="later")
    wait_for(
        "the in-flight run to start",
        lambda: run_status(sched, "inflight") == ["running"],
        timeout=20,
        every=0.1,
    )
    assert run_status(sched, "later") == ["queued"]

    assert rt.proc is not None
    rt.proc.send_signal(signal.SIGINT)
    assert rt.wait(timeout=30) == 0, rt.stderr()

    log = rt.handler_log.read_text().splitlines()
    (run_id,) = {line.split()[1] for line in log if line.startswith("start ")}
    assert f"done {run_id}" in log, "the in-flight handler was cut off"
    assert not any(line.startswith("ok ") for line in log), "a run started after Ctrl-C"
    err = rt.stderr()
    assert "1 in-flight batch finished" in err, err[-2000:]
    # The queued run's message was neither processed nor deleted.
    assert "1 message on the work queues not processed" in err, err[-2000:]
    assert "lived in memory and is gone" in err, err[-2000:]


def test_demo_runs_its_sample_and_exits_zero(runtimes: Runtimes) -> None:
    demo = runtimes.demo
    code = demo.wait(timeout=90)
    out = demo.stdout()
    assert code == 0, out[-4000:] + demo.stderr()[-2000:]
    assert "demo passed" in out
    for task in ("email-welcome", "cleanup", "report", "flaky", "always-fails", "slow"):
        assert task in out
    assert re.search(r"dead-letter queue: 2 message", out), out[-2000:]


def test_port_in_use_is_one_clear_error(runtimes: Runtimes, capsys: pytest.CaptureFixture) -> None:
    from dynacron.local.runtime import main

    port = int(runtimes.serving.env()["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])
    assert main(port=port) == 1
    err = capsys.readouterr().err
    assert f"port {port}" in err and "--port" in err
    assert "Traceback" not in err
