"""dispatch_scaling: runs/s with 1, 2 and 4 poller processes polling the same table at once.

N runs due within the window are seeded on a fresh deployment on ministack; k poller processes
start together (a barrier) and each makes one poll; the rate is N / (last poll's end - first
poll's start). Without fan-out every poller reads every shard, so concurrent pollers race for
the same rows (a lost race is a conditional claim that fails; it costs a request and sends
nothing): ``lost_races`` counts them. On 2 shared cores the pollers also share the CPU with the
backend and each other, so this shows contention more than scaling: reported as measured.

    .venv/bin/python -m bench.scaling --runs 3000 --pollers 1,2,4
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .common import backend, boto_client, deploy, log
from .fleet import CTX
from .throughput import seed


def _one_poll(settings: Any, barrier: Any, out: Any) -> None:
    from dynacron.aws import sqs_client
    from dynacron.dispatch import Dispatcher
    from dynacron.store import Store

    d = Dispatcher(Store(settings), sqs_client(settings), settings)
    _ = d.store.client
    barrier.wait()
    t0 = time.time()
    report = d.poll()
    out.put({"start": t0, "end": time.time(), **report.as_dict()})


def one(endpoint: str, runs: int, k: int) -> dict[str, Any]:
    settings = deploy(endpoint, shards=8)
    seed(boto_client("dynamodb", endpoint), settings, runs, spread_s=30.0, lead_s=5.0)
    barrier, out = CTX.Barrier(k), CTX.Queue()
    procs = [CTX.Process(target=_one_poll, args=(settings, barrier, out)) for _ in range(k)]
    for p in procs:
        p.start()
    reports = [out.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    sent = sum(r["sent"] for r in reports)
    found = sum(r["found"] for r in reports)
    res = {"pollers": k, "runs": runs, "sent": sent, "wall_s": round(wall, 2),
           "runs_per_s": round(sent / wall, 1), "lost_races": found - sent,
           "sent_by_poller": [r["sent"] for r in reports]}
    log(f"dispatch_scaling k={k}: {res}")
    return res


def run(runs: int = 3000, pollers: tuple[int, ...] = (1, 2, 4)) -> dict[str, Any]:
    with backend("ministack") as endpoint:
        rows = [one(endpoint, runs, k) for k in pollers]
    return {
        "dispatch_scaling": {r["pollers"]: r["runs_per_s"] for r in rows},
        "dispatch_scaling_detail": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--pollers", default="1,2,4")
    args = parser.parse_args(argv)
    ks = tuple(int(x) for x in args.pollers.split(","))
    print(json.dumps(run(args.runs, ks), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
