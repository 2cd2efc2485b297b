"""The poller is down for an hour, then comes back: each misfire policy does what
``types.MisfirePolicy`` documents, and nothing runs twice.

* ``run_once``: run the most overdue occurrence once, then continue at the next future fire.
* ``skip``: record the overdue occurrence as ``skipped`` and continue at the next future fire.
* ``catch_up``: run every missed occurrence, oldest first, at most ``CATCH_UP_LIMIT`` of them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dynacron import At, Cron, Every
from dynacron.clock import to_ms
from dynacron.types import CATCH_UP_LIMIT
from helpers.harness import VirtualSQS, deliver, run_keys, statuses

pytestmark = pytest.mark.reliability

DOWN_S = 3600 + 30  # an hour and a bit: "now" falls between two minutely fires


def test_poller_down_for_an_hour(dep, clock, ledger, figures):
    sdk = dep.scheduler(short_notice=False)
    t0 = clock.now()
    grace_ms = int(dep.settings.misfire_grace_s * 1000)
    specs = {
        "every60-run_once": (Every(60, start_at=t0), "run_once"),
        "every60-skip": (Every(60, start_at=t0), "skip"),
        "every60-catch_up": (Every(60, start_at=t0), "catch_up"),
        "every10-catch_up": (Every(10, start_at=t0), "catch_up"),  # 364 missed > the cap
        "cron-run_once": (Cron("*/5 * * * *"), "run_once"),
        "at-run_once": (At(t0 + timedelta(seconds=30)), "run_once"),
        "at-skip": (At(t0 + timedelta(seconds=30)), "skip"),
        "at-catch_up": (At(t0 + timedelta(seconds=30)), "catch_up"),
    }
    tasks = {
        name: sdk.schedule("rel-ok", {}, trigger=trig, task_id=name, misfire=policy, timeout=10)
        for name, (trig, policy) in specs.items()
    }
    clock.advance(DOWN_S)
    now_ms = to_ms(clock.now())
    horizon_ms = now_ms + int(dep.settings.window_s * 1000)
    vsqs = VirtualSQS(dep.new_sqs(), clock)
    poller = dep.dispatcher(vsqs)
    first = poller.poll()
    again = poller.poll()  # a second poller tick at the same instant finds nothing new
    deliver(dep, vsqs, dep.executor(vsqs), clock)
    rows = statuses(dep)
    sent = vsqs.sent_runs()
    problems: list[str] = []
    missing = 0  # occurrences the policy says must run that did not

    def occurrences(name: str, lo: int, hi: int) -> list[int]:
        """Fire times t of the task's trigger with lo < t <= hi (epoch ms)."""
        trig = sdk.get(name).trigger
        out, t = [], trig.first(t0)
        while t is not None and to_ms(t) <= hi:
            if to_ms(t) > lo:
                out.append(to_ms(t))
            t = trig.next(t)
        return out

    for name, (_trig, policy) in specs.items():
        mine = sorted(
            (r for (t, _r), r in rows.items() if t == name), key=lambda r: r.scheduled_for
        )
        ran = [int(r.scheduled_for) for r in mine if r.status == "succeeded"]
        skipped = [r for r in mine if r.status == "skipped"]
        pending = [r for r in mine if r.status == "pending"]
        head = (
            to_ms(sdk.get(name).trigger.first(t0))
            if name.startswith("at")
            else to_ms(tasks[name].next_fire_at)
        )
        future = occurrences(name, now_ms, horizon_ms)
        missed = occurrences(name, head - 1, now_ms)
        if name.startswith("at"):
            want_ran = [] if policy == "skip" else [head]
            want_skipped = [head] if policy == "skip" else []
        elif policy == "run_once":
            want_ran, want_skipped = [head, *future], []
        elif policy == "skip":
            want_ran, want_skipped = future, [head]
        else:  # catch_up
            kept = missed[-CATCH_UP_LIMIT:]
            want_ran = kept + future
            want_skipped = [head] if len(missed) > CATCH_UP_LIMIT else []
        missing += len(set(want_ran) - set(ran))
        if ran != want_ran:
            problems.append(
                f"{name}: ran {len(ran)} {ran[:3]}..., want {len(want_ran)} {want_ran[:3]}..."
            )
        if [int(r.scheduled_for) for r in skipped] != want_skipped:
            problems.append(f"{name}: skipped {[int(r.scheduled_for) for r in skipped]}")
        if skipped and not all("miss" in (r.error or "") for r in skipped):
            problems.append(f"{name}: skip without a reason {[r.error for r in skipped]}")
        if not name.startswith("at") and len(pending) != 1:
            problems.append(f"{name}: {len(pending)} pending heads")
        if len(mine) != len(ran) + len(skipped) + len(pending):
            problems.append(f"{name}: other states {[r.status for r in mine]}")
        order = [
            int(e["MessageBody"].split('"scheduled_for":')[1].split(",")[0])
            for e in vsqs.sent
            if f'"task_id":"{name}"' in e["MessageBody"]
        ]
        if order != sorted(order):
            problems.append(f"{name}: not sent oldest first")
    at_skip = sdk.get("at-skip")
    if at_skip.status != "completed":
        problems.append(f"at-skip task is {at_skip.status}")
    duplicates = sum(n - 1 for n in sent.values() if n > 1) + ledger.duplicates()
    received_twice = sum(n - 1 for n in run_keys(dep.drain()).values() if n > 1)
    catch_up_ran = sum(
        1
        for (t, _r), r in rows.items()
        if t == "every10-catch_up" and r.status == "succeeded" and r.scheduled_for <= now_ms
    )
    figures(
        "misfire_down_1h",
        dep.backend,
        runs=len(rows),
        duplicates=duplicates,
        lost=missing,
        faults=1,
        problems=len(problems),
        claimed=first.claimed,
        skipped=first.skipped,
        second_poll_claimed=again.claimed,
        catch_up_replayed=catch_up_ran,
        catch_up_limit=CATCH_UP_LIMIT,
        grace_s=grace_ms // 1000,
    )
    assert not problems, problems
    assert duplicates == 0 and received_twice == 0 and again.claimed == 0
    assert catch_up_ran == CATCH_UP_LIMIT
