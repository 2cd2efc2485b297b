"""The worker's own CPU per run, against a backend in another process (calibrates the model).

``bench.simulate`` needs what one worker invocation of 10 runs costs on Lambda. The cost
benchmark's invocation time (``worker_invocation_ms_local``) runs moto in the worker's own
process, so the backend's CPU is inside it; on AWS the backend is DynamoDB's servers, not the
worker's vCPU. Here the backend is ministack in its own process: N one-time runs are seeded due
a few seconds ahead, one in-process poll claims and sends them, and one worker process
(``bench.fleet.Workers``: receive loops + ``batch.process_event``, the worker Lambda's code)
runs them. Figures:

- ``worker_cpu_s_per_run``: the worker process's CPU over the drain, less its idle polling
  rate measured before the runs fall due, / runs finished; the median of ``ROUNDS`` rounds,
  each on a fresh table (``worker_cpu_s_per_run_rounds`` lists them). It includes the receive
  and delete calls that the event source makes on Lambda, so it is an upper bound of the
  function's CPU;
- ``worker_requests_per_run``: the requests the record handler makes in sequence (from the
  cost benchmark's per-fire counts when given; else not reported);
- ``worker_drain_s``: seconds from the due time until every run finished (report only).

    .venv/bin/python -m bench.workercpu [--runs 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .burst import read_runs, seed
from .common import backend, cpu_s, deploy, log
from .fleet import Workers

IDLE_SAMPLE_S = 5.0
LEAD_S = 20.0  # seeding and the poll happen before the runs fall due
ROUNDS = 3


def _finished(endpoint: str, table: str) -> int:
    return sum(1 for r in read_runs(endpoint, table) if r["status"] == "succeeded")


def _one_round(endpoint: str, runs: int, threads: int) -> dict[str, Any]:
    """One fresh deployment on ``endpoint``: seed, poll once, drain; the worker's CPU per run."""
    from dynacron.aws import sqs_client
    from dynacron.dispatch import Dispatcher
    from dynacron.store import Store

    settings = deploy(endpoint)
    due = (datetime.now(UTC) + timedelta(seconds=LEAD_S)).replace(microsecond=0)
    # spread over 10 s so the batches look like a steady flow, not one instant
    whens = [due + timedelta(milliseconds=10_000 * i // runs) for i in range(runs)]
    seed(endpoint, settings, [(whens, "default")])
    report = Dispatcher(Store(settings), sqs_client(settings), settings).poll()
    log(f"workercpu: sent {report.sent} of {runs}")
    fleet = Workers(settings, processes=1, threads=threads, idle_poll_s=0.5).start()
    try:
        pid = fleet.procs[0].pid
        c0, t0 = cpu_s(pid), time.monotonic()
        time.sleep(IDLE_SAMPLE_S)
        idle_rate = (cpu_s(pid) - c0) / (time.monotonic() - t0)
        while datetime.now(UTC) < due:
            time.sleep(0.2)
        c1, t1 = cpu_s(pid), time.monotonic()
        deadline = t1 + 60 + runs / 10  # bounded: far beyond what the runs need
        done = 0
        while time.monotonic() < deadline:
            done = _finished(endpoint, settings.table_name)
            if done >= report.sent:
                break
            time.sleep(1.0)
        busy_s = time.monotonic() - t1
        used = cpu_s(pid) - c1 - idle_rate * busy_s
    finally:
        fleet.stop()
    if done < report.sent:
        raise RuntimeError(f"only {done} of {report.sent} runs finished")
    return {"cpu_s_per_run": round(max(0.0, used) / max(1, done), 5), "runs": done,
            "idle_cpu_per_s": round(idle_rate, 4), "drain_s": round(busy_s, 1)}


def run(runs: int = 2000, backend_kind: str = "ministack", threads: int = 4,
        rounds: int = ROUNDS) -> dict[str, Any]:
    """``rounds`` measurements on one backend, each on a fresh table; the figure is their
    median, because one round on this shared machine has read from 10 ms to 24 ms per run."""
    with backend(backend_kind) as endpoint:
        each = [_one_round(endpoint, runs, threads) for _ in range(rounds)]
    per_run = sorted(r["cpu_s_per_run"] for r in each)
    return {"worker_cpu_s_per_run": per_run[len(per_run) // 2],
            "worker_cpu_s_per_run_rounds": [r["cpu_s_per_run"] for r in each],
            "worker_cpu_runs": sum(r["runs"] for r in each),
            "worker_idle_cpu_per_s": max(r["idle_cpu_per_s"] for r in each),
            "worker_drain_s": max(r["drain_s"] for r in each),
            "worker_cpu_backend": backend_kind}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.runs, rounds=args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
