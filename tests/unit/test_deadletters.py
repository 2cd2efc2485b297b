"""Scheduler.dead_letters, redrive and redrive_all (the logic the CLI and the UI share)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import dynacron.testing
from dynacron import At, RetryPolicy, handler
from dynacron.errors import ConfigurationError, InvalidStateError

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
fail = {"on": True}


@handler("dl-maybe")
def _maybe(payload: dict, ctx) -> str:
    if fail["on"]:
        raise RuntimeError("down")
    return "up"


@pytest.fixture
def env():
    fail["on"] = True
    with dynacron.testing.local(start=T0) as e:
        yield e


def _dead(env, task_id: str):
    env.scheduler.schedule(
        "dl-maybe", {}, trigger=At(T0), task_id=task_id, retry=RetryPolicy(max_attempts=1)
    )
    [run] = env.advance(1)
    assert run.status == "dead"
    return run


def test_dead_letters_list_without_consuming(env):
    run = _dead(env, "a")
    for _ in range(2):
        [letter] = env.scheduler.dead_letters()
    assert (letter.kind, letter.task_id, letter.run_id, letter.attempts) == ("dead_run", "a",
                                                                           run.run_id, 1)
    assert letter.redrivable and "RuntimeError: down" in letter.error
    assert letter.sent_at is not None


def test_redrive_revives_the_run_then_deletes_its_record(env):
    run = _dead(env, "a")
    fail["on"] = False
    revived = env.scheduler.redrive("a", run.run_id)
    assert revived.status in ("pending", "queued") and revived.max_attempts == 2
    assert env.scheduler.dead_letters() == []
    [done] = env.advance(1)
    assert (done.run_id, done.status, done.attempt, done.result) == (run.run_id, "succeeded",
                                                                     2, "up")
    with pytest.raises(InvalidStateError):
        env.scheduler.redrive("a", run.run_id)  # no longer dead


def test_redrive_all_leaves_what_it_cannot_revive(env):
    _dead(env, "a")
    env.sqs.send_message(QueueUrl=env.settings.dlq_url, MessageBody="not json")
    fail["on"] = False
    results = env.scheduler.redrive_all()
    assert sorted((r.outcome, r.kind) for r in results) == [("left", "unknown"),
                                                           ("redriven", "dead_run")]
    assert [m.kind for m in env.scheduler.dead_letters()] == ["unknown"]


def test_no_dlq_configured_is_a_configuration_error(env):
    from dataclasses import replace

    from dynacron import Scheduler

    s = Scheduler(settings=replace(env.settings, dlq_url=None), sqs=env.sqs)
    with pytest.raises(ConfigurationError):
        s.dead_letters()


class _DiesAgainOnNextDlqCall:
    """The scheduler's SQS client: at the first DLQ receive or delete after the run was revived,
    the run is played forward until it dies again (a fresh record lands on the DLQ), i.e. the
    re-death falls between the redrive's read of the queue and its delete."""

    def __init__(self, env, task_id: str, run_id: str) -> None:
        self._env, self._ids, self.fired = env, (task_id, run_id), False

    def __getattr__(self, name: str):
        real = getattr(self._env.sqs, name)
        if name not in ("receive_message", "delete_message"):
            return real

        def call(**kwargs):
            ours = kwargs["QueueUrl"] == self._env.settings.dlq_url and not self.fired
            if ours and self._env.scheduler.get_run(*self._ids).status != "dead":
                self.fired = True
                [again] = self._env.advance(1)
                assert again.status == "dead"
            return real(**kwargs)

        return call


def _hooked_scheduler(env, run):
    from dynacron import Scheduler

    hook = _DiesAgainOnNextDlqCall(env, run.task_id, run.run_id)
    return Scheduler(settings=env.settings, clock=env.scheduler.clock, sqs=hook), hook


@pytest.mark.parametrize("how", ["redrive", "redrive_all"])
def test_a_run_that_dies_again_during_the_redrive_keeps_its_new_record(env, how):
    run = _dead(env, "a")
    s, hook = _hooked_scheduler(env, run)
    if how == "redrive":
        s.redrive("a", run.run_id)
    else:
        outcomes = sorted(r.outcome for r in s.redrive_all())
        assert outcomes == ["redriven"]
    assert hook.fired, "the re-death did not happen inside the redrive"
    assert env.scheduler.get_run("a", run.run_id).status == "dead"
    letters = env.scheduler.dead_letters()
    assert [(m.run_id, m.attempts, m.redrives) for m in letters] == [(run.run_id, 2, 1)]
    # and that record can be redriven in its turn
    fail["on"] = False
    env.scheduler.redrive("a", run.run_id)
    assert env.scheduler.dead_letters() == []
    [done] = env.advance(1)
    assert (done.status, done.attempt) == ("succeeded", 3)


def test_redrive_deletes_every_older_record_of_the_run(env):
    _dead(env, "a")
    [first] = env.sqs.receive_message(QueueUrl=env.settings.dlq_url, VisibilityTimeout=0)[
        "Messages"
    ]
    env.sqs.send_message(QueueUrl=env.settings.dlq_url, MessageBody=first["Body"])  # a repeat
    fail["on"] = False
    results = env.scheduler.redrive_all()
    assert sorted(r.outcome for r in results) == ["deleted", "redriven"]
    assert env.scheduler.dead_letters() == []
