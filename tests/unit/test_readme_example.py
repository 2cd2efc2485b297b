# test_reports.py: in your own suite. Installing dynacron gives pytest the `dynacron_env` fixture.
from datetime import timedelta

from dynacron import Every, RetryPolicy, handler

sent = []


@handler("daily-report")
def daily_report(payload: dict, ctx) -> dict:
    if ctx.attempt == 1:
        raise ConnectionError("smtp down")  # the first attempt fails, the retry succeeds
    sent.append((payload["to"], ctx.idempotency_key))
    return {"rows": 3}


def test_report_is_retried_and_then_sent(dynacron_env):
    s = dynacron_env.scheduler
    t = s.schedule("daily-report", {"to": "ops@example.com"}, trigger=Every(timedelta(days=1)),
                   retry=RetryPolicy(max_attempts=3, backoff_base=30, jitter=0))
    [run] = dynacron_env.advance(timedelta(hours=1))  # poller and worker run, retries included
    assert (run.status, run.attempt, run.result) == ("succeeded", 2, {"rows": 3})
    assert run.started_at == run.scheduled_for + timedelta(seconds=30)  # the backoff, exactly
    assert len(sent) == 1
    assert s.get(t.task_id).next_fire_at == run.scheduled_for + timedelta(days=1)


def test_handler_alone(dynacron_env):
    assert dynacron_env.run_handler("daily-report", {"to": "x@y.z"}, attempt=2) == {"rows": 3}
