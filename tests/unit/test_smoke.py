from datetime import timedelta

from dynacron import At, Every, RunStatus, handler
from dynacron.execute import Outcome


@handler("smoke-ok")
def _ok(payload, ctx):
    return {"echo": payload, "attempt": ctx.attempt}


def test_one_time_task_runs_once_on_its_second(env):
    s = env.scheduler()
    t = s.schedule("smoke-ok", {"a": 1}, trigger=At(env.clock.now() + timedelta(seconds=30)))
    msgs = env.receive()
    assert len(msgs) == 1
    env.clock.advance(29.5)
    ex = env.executor()
    res = ex.execute(msgs[0]["Body"], msgs[0]["ReceiptHandle"], env.settings.queue_url)
    assert res.outcome is Outcome.ACK, res
    runs = s.runs(t.task_id)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED]
    assert runs[0].lateness == timedelta(0)
    assert runs[0].result == {"echo": {"a": 1}, "attempt": 1}


def test_every_chains_inside_window(env):
    s = env.scheduler()
    t = s.schedule("smoke-ok", {}, trigger=Every(2))
    msgs = env.receive()
    assert len(msgs) >= 40
    runs = s.runs(t.task_id)
    assert sum(r.status == RunStatus.QUEUED for r in runs) == len(msgs)


def test_entrypoints_do_not_import_the_sdk_at_cold_start():
    import subprocess
    import sys

    import dynacron

    # Every public name resolves, lazily or not.
    assert all(getattr(dynacron, name) is not None for name in dynacron.__all__)
    code = (
        "import sys, dynacron.handlers.worker, dynacron.handlers.poller; "
        "print(sorted(m for m in sys.modules if m in "
        "('dynacron.sdk', 'dynacron.triggers', 'croniter', 'click', 'moto')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
