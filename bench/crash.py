"""Crash recovery: a worker holding runs is killed (SIGKILL); how long until they start again.

Each trial seeds ``runs`` one-time runs of a handler that sleeps (it holds its run), due a few
seconds ahead, on a fresh deployment on ministack. One worker process takes them; once every
run has started, the process is killed with SIGKILL (no handler code, no ``finally``, no ack
runs) and a fresh worker process takes its place at once, as Lambda's event source would keep
invoking. A poller polls every ``tick_s`` (60 s, the template's rate) throughout. Recovery of a
run = its next attempt's ``started_at`` - the kill. The figure ``crash_recovery_p99_s`` is the
p99 over every run of every trial, at the defaults: heartbeat 30 s (renewed every 10 s, message
visibility 35 s), lease 300 s, window 90 s.

    .venv/bin/python -m bench.crash --trials 4 --runs 5
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import backend, boto_client, deploy, log, percentile
from .fleet import Workers
from .throughput import write_items


def _items(settings: Any, n: int, when: datetime, hold_s: float) -> list[dict[str, Any]]:
    """Raw items as ``Scheduler.schedule("bench-sleep", At(when))`` writes them."""
    from dynacron import At, Scheduler

    sched = Scheduler(settings=replace(settings, queue_url=None))
    out: list[dict[str, Any]] = []
    for i in range(n):
        out += sched.items_for("bench-sleep", {"s": hold_s, "i": i}, At(when), timeout=600)
    return out


def _runs(ddb: Any, table: str) -> list[dict[str, Any]]:
    out, kwargs = [], {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        out += [it for it in page["Items"] if it["sk"]["S"].startswith("RUN#")]
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _started(items: list[dict[str, Any]], min_attempt: int) -> list[float]:
    return [int(it["started_at"]["N"]) / 1000 for it in items
            if "started_at" in it and int(it.get("attempt", {}).get("N", 0)) >= min_attempt]


def _ticking_poller(settings: Any, stop: threading.Event, tick_s: float) -> None:
    from dynacron.aws import sqs_client
    from dynacron.dispatch import Dispatcher
    from dynacron.store import Store

    d = Dispatcher(Store(settings), sqs_client(settings), settings)
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            d.poll(time_left=lambda t0=t0: tick_s - (time.monotonic() - t0))
        except Exception as exc:  # one failed tick must not end the benchmark
            log(f"  poll failed: {exc}")
        stop.wait(max(0.0, tick_s - (time.monotonic() - t0)))


def trial(endpoint: str, runs: int, tick_s: float, timeout_s: float = 150.0) -> list[float]:
    """Seconds from the kill to each run's next start."""
    settings = deploy(endpoint, shards=8)
    ddb = boto_client("dynamodb", endpoint)
    due = datetime.now(UTC) + timedelta(seconds=8)
    write_items(ddb, settings.table_name, _items(settings, runs, due, hold_s=timeout_s + 60))
    stop = threading.Event()
    poller = threading.Thread(target=_ticking_poller, args=(settings, stop, tick_s), daemon=True)
    poller.start()
    # One receive loop per run: each loop is one concurrent "invocation", held by its batch for
    # the handler's whole sleep, and Lambda's event source adds invocations as messages wait;
    # with fewer loops a redelivered run would wait for a busy loop, which no deployment does.
    fleet = Workers(settings, processes=1, threads=runs).start()
    try:
        deadline = time.time() + 60
        while len(_started(_runs(ddb, settings.table_name), 1)) < runs:
            if time.time() > deadline:
                raise RuntimeError("the runs never started")
            time.sleep(0.5)
        time.sleep(2.0)  # killed mid-run, a moment after the attempts' first heartbeat
        killed_at = time.time()
        fleet.kill(fleet.procs[0])
        fleet.spawn()  # the event source keeps invoking: a fresh worker takes over
        deadline = killed_at + timeout_s
        while time.time() < deadline:
            again = _started(_runs(ddb, settings.table_name), 2)
            if len(again) >= runs:
                return [t - killed_at for t in again]
            time.sleep(0.5)
        again = _started(_runs(ddb, settings.table_name), 2)
        # not restarted in time: counted at the timeout, so the p99 is never flattered
        return [t - killed_at for t in again] + [timeout_s] * (runs - len(again))
    finally:
        stop.set()
        fleet.stop()
        poller.join(tick_s + 5)


def run(trials: int = 4, runs: int = 5, tick_s: float = 60.0) -> dict[str, Any]:
    times: list[float] = []
    with backend("ministack") as endpoint:
        for i in range(trials):
            got = trial(endpoint, runs, tick_s)
            log(f"crash trial {i + 1}/{trials}: restarted after "
                f"{sorted(round(t, 1) for t in got)} s")
            times += got
    return {
        "crash_recovery_p99_s": round(percentile(times, 99), 1),
        "crash_recovery_p50_s": round(percentile(times, 50), 1),
        "crash_recovery_max_s": round(max(times), 1),
        "crash_recovery_samples": len(times),
        "crash_recovery_target_s": 60,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.trials, args.runs), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
