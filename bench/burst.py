"""Burst benchmark (issue 12), small scale: B runs due at the same second, 5 minutes ahead.

For each B the burst is seeded on a fresh deployment, then polled by a poller in a child process
(so that its peak RSS is its own) until everything is sent or the burst falls due. The burst lies
beyond the 90 s window, so it is found by the adaptive look-ahead's probe and claimed up to 900 s
ahead. Prints one JSON object:

- ``burst_sent_before_due``: the lowest fraction, over the B values, of the burst sent by polls
  that ended before its due time;
- ``burst_poller_rss_growth``: the poller's peak RSS at the largest B / at the smallest, minus 1;
- ``burst_lost``: runs neither queued in the table nor in the queue after the polls (must be 0).

    .venv/bin/python -m bench.burst --sizes 1000,4000 [--page-size 50] [--backend moto|ministack]

Do not run large B here: this machine has 2 shared cores (the issue's 20k-100k runs are for
``make bench`` on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import backend, boto_client, deploy, log
from .throughput import rows_like_sdk, write_items

LEAD_S = 300.0  # the burst falls due 5 minutes after seeding: beyond the window, within 900 s


def _poll_until_sent(
    settings: Any, due_ts: float, expected: int, page_size: int, out: Any
) -> None:
    """Child process: poll like the Lambda would (one poll after another) until the burst is
    sent or due; report the runs each poll sent before the due time and the peak RSS."""
    from dynacron.aws import sqs_client
    from dynacron.dispatch import Dispatcher
    from dynacron.store import Store

    dispatcher = Dispatcher(Store(settings), sqs_client(settings), settings, page_size=page_size)
    sent = before = polls = 0
    while sent < expected and time.time() < due_ts:
        report = dispatcher.poll(time_left=lambda: max(0.0, due_ts - time.time()))
        polls += 1
        sent += report.sent
        if time.time() <= due_ts:
            before += report.sent
        if report.found == 0 and report.probed == 0:
            break
    peak = _peak_rss_kb()
    out.put({"sent": sent, "sent_before_due": before, "polls": polls, "peak_rss_kb": peak})


def _peak_rss_kb() -> int:
    """This process's own peak RSS. Not ``ru_maxrss``: Linux carries it over fork and exec, so a
    spawned child would report its parent's peak (the parent built B rows to seed the table)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _count(settings: Any, endpoint: str) -> dict[str, int]:
    ddb, sqs = boto_client("dynamodb", endpoint), boto_client("sqs", endpoint)
    queued = 0
    for page in ddb.get_paginator("scan").paginate(
        TableName=settings.table_name, ProjectionExpression="sk, #s",
        ExpressionAttributeNames={"#s": "status"},
    ):
        queued += sum(1 for i in page["Items"] if i.get("status", {}).get("S") == "queued")
    attrs = sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["All"])
    a = attrs["Attributes"]
    in_queue = sum(int(a.get(k, 0)) for k in (
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible"))
    return {"queued": queued, "in_queue": in_queue}


def one_burst(endpoint: str, b: int, page_size: int = 500) -> dict[str, Any]:
    settings = deploy(endpoint, shards=8, lookahead_backlog=min(100, b))
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD_S)
    log(f"burst B={b}: seeding {b} runs due at {due.isoformat()}")
    write_items(boto_client("dynamodb", endpoint), settings.table_name,
                rows_like_sdk(settings, [due] * b))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    args = (settings, due.timestamp(), b, page_size, out)
    child = ctx.Process(target=_poll_until_sent, args=args)
    t0 = time.perf_counter()
    child.start()
    result = out.get()
    child.join()
    result["poll_s"] = round(time.perf_counter() - t0, 2)
    counts = _count(settings, endpoint)
    result.update(counts, b=b, lost=b - min(counts["queued"], counts["in_queue"]))
    log(f"burst B={b}: {result}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000")
    parser.add_argument("--backend", default="moto", choices=["moto", "ministack"])
    # The poller holds at most ~shards x 2 pages: B must exceed that for the bound to show
    # (8 x 2 x 500 = 8,000 rows at the defaults); a smaller page shows it at a small B.
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args(argv)
    sizes = sorted(int(x) for x in args.sizes.split(","))
    with backend(args.backend) as endpoint:
        runs = [one_burst(endpoint, b, args.page_size) for b in sizes]
    small, large = runs[0], runs[-1]
    figures = {
        "backend": args.backend,
        "sizes": sizes,
        "page_size": args.page_size,
        "burst_sent_before_due": min(r["sent_before_due"] / r["b"] for r in runs),
        "burst_poller_rss_growth": round(large["peak_rss_kb"] / small["peak_rss_kb"] - 1, 4),
        "burst_lost": sum(r["lost"] for r in runs),
        "runs": runs,
    }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
