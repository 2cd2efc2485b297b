"""Burst benchmark: B runs due at the same second, plus canaries due while the burst is sent.

For each B, on a fresh deployment on the backend (ministack by default, a plain DynamoDB + SQS
server): B one-time runs due at one instant ``lead`` seconds ahead (beyond the 90 s window, so
the adaptive look-ahead finds and claims them up to 900 s ahead) and ``canaries`` runs due at
instants spread over the time the burst is being dispatched are written with BatchWriteItem
(items exactly as the SDK writes them). The burst is in the default lane, whose queues and
event sources the burst configuration scales (README); the canaries, other tasks' runs that
must not wait for it, are in the ``critical`` lane: its own queue and worker event source.
``--canary-lane default`` puts both in one queue.
A poller process polls one poll after another (each poll's time budget ends at the burst's due
time) and worker processes, one fleet per queue, run what arrives, as the worker Lambda's event
sources would. After the burst falls due the workers run for ``drain``
seconds; then the table is read back. Figures per B:

- ``sent_before_due``: burst runs sent by polls that ended before the due time, / B;
- ``peak_rss_kb``: the poller process's peak RSS (VmHWM);
- ``canary_lateness_ms``: started_at - scheduled_for of the canaries (p50/p99);
- ``start_lateness_ms``: the same for the burst's runs, as far as this machine's workers get
  in ``drain`` s (runs not started by then count at their lower bound, now - due);
- ``lost``: burst or canary runs neither started, nor still queued in SQS, nor sent (must be 0);
- ``duplicated``: runs started more than once (attempt > 1 of a handler that never fails;
  must be 0);
- the poller's CPU seconds per 1,000 claims and its dispatch rate, which calibrate
  ``bench.simulate`` in the same run.

    .venv/bin/python -m bench.burst --sizes 20000,50000,100000 [--backend ministack|moto]
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import backend, boto_client, cpu_s, deploy, log, percentile
from .fleet import LatencyProbe, Workers, backend_pid, poll_in_child
from .throughput import rows_like_sdk, write_items

CANARIES = 50
SEED_CHUNK = 5000  # rows built and written at a time: the seeding process stays small
# For the lead time only (a slower machine shows up as sent < 1): 257/s was measured on the
# 2 cores at B = 2,000 with the workers' idle polling of fleet.Workers(idle_poll_s); 24/s at
# B = 20,000 before it, when idle long polls took ministack's core (see fleet.Workers).
DISPATCH_GUESS_PER_S = 100
# How often the idle fleet polls the queue: a canary visible at its due time (DelaySeconds
# rounds down, so up to 1 s before it) is received within this.
IDLE_POLL_S = 0.5
CANARY_POLL_S = 0.1  # the same for a queue that holds the canaries alone (their own lane)


def lead_for(b: int) -> float:
    """Seconds from the end of seeding to the burst's due time: long enough for the poller to
    send it at a cautious rate, never beyond what DelaySeconds (900 s) can hold back."""
    return min(840.0, 60.0 + b / DISPATCH_GUESS_PER_S)


def seed(endpoint: str, settings: Any, groups: list[tuple[list[datetime], str]]) -> float:
    """Write one run per instant of each (instants, lane) group; returns the seconds it took."""
    ddb = boto_client("dynamodb", endpoint)
    t0 = time.monotonic()
    chunks = [(whens[i : i + SEED_CHUNK], lane) for whens, lane in groups
              for i in range(0, len(whens), SEED_CHUNK)]
    with ThreadPoolExecutor(2) as pool:  # build the next chunk while the last one is written
        for items in pool.map(lambda c: rows_like_sdk(settings, *c), chunks):
            write_items(ddb, settings.table_name, items, threads=16)
    return time.monotonic() - t0


def read_runs(endpoint: str, table: str) -> list[dict[str, Any]]:
    """Every run item (parallel Scan, 4 segments): status, scheduled_for, started_at."""
    ddb = boto_client("dynamodb", endpoint)

    def segment(i: int) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"TableName": table, "Segment": i, "TotalSegments": 4}
        out = []
        while True:
            page = ddb.scan(**kwargs)
            for it in page["Items"]:
                if it["sk"]["S"].startswith("RUN#"):
                    out.append({
                        "status": it.get("status", {}).get("S", "?"),
                        "attempt": int(it.get("attempt", {}).get("N", "0")),
                        "scheduled_for": int(it["scheduled_for"]["N"]),
                        "started_at": int(it["started_at"]["N"]) if "started_at" in it else None,
                    })
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    with ThreadPoolExecutor(4) as pool:
        return [r for part in pool.map(segment, range(4)) for r in part]


def _queue_depth(endpoint: str, url: str) -> int:
    a = boto_client("sqs", endpoint).get_queue_attributes(
        QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(int(a.get(k, 0)) for k in ("ApproximateNumberOfMessages",
                                          "ApproximateNumberOfMessagesDelayed",
                                          "ApproximateNumberOfMessagesNotVisible"))


def _lateness(rows: list[dict[str, Any]], now_ms: int) -> dict[str, Any]:
    started = [r["started_at"] - r["scheduled_for"] for r in rows if r["started_at"]]
    censored = [now_ms - r["scheduled_for"] for r in rows if not r["started_at"]]
    every = started + censored
    if not every:
        return {"n": 0}
    return {"n": len(rows), "started": len(started), "not_started": len(censored),
            "p50_ms": percentile(every, 50), "p99_ms": percentile(every, 99),
            "max_ms": max(every)}


def one_burst(endpoint: str, b: int, drain_s: float, page_size: int = 500,
              shards: int = 8, workers: int = 2, threads: int = 4,
              lead: float | None = None, canary_lane: str = "critical") -> dict[str, Any]:
    settings = deploy(endpoint, shards=shards, lookahead_backlog=min(5000, b))
    # the burst's queue first, the canaries' (when it is another) second
    queues = list(dict.fromkeys([settings.queue_url, settings.queue_for(canary_lane)]))
    lead = lead or lead_for(b)
    # The due time is fixed before seeding; the seeding time is added so the lead stays whole.
    seed_guess = b / 1500
    due = (datetime.now(UTC) + timedelta(seconds=seed_guess + lead)).replace(microsecond=0)
    span = lead - 20  # canaries fall due while the burst is dispatched, none after it
    first = due - timedelta(seconds=lead - 30)
    canary_at = [first + timedelta(seconds=(span - 20) * i / CANARIES) for i in range(CANARIES)]
    log(f"burst B={b}: seeding; due at {due.isoformat()} (lead {lead:.0f} s)")
    seed_s = seed(endpoint, settings, [([due] * b, "default"), (canary_at, canary_lane)])
    log(f"burst B={b}: seeded {b} + {CANARIES} canaries in {seed_s:.1f} s; "
        f"{(due - datetime.now(UTC)).total_seconds():.0f} s to due")
    idle_request_s = LatencyProbe(endpoint, settings.table_name).idle_s()
    # One fleet per queue, as each lane has its own worker event source. Only the queue that
    # holds the burst is polled slowly (fleet.Workers: ministack's receive scans every message
    # of the queue); the canaries' queue holds at most 50, so its fleet polls it as often as
    # a long poll would see a message arrive.
    fleets = [Workers(replace(settings, queue_url=url), workers, threads,
                      idle_poll_s=IDLE_POLL_S if url == queues[0] else CANARY_POLL_S).start()
              for url in queues]
    log(f"burst B={b}: {len(fleets)} worker fleets ready; first canary due in "
        f"{(canary_at[0] - datetime.now(UTC)).total_seconds():.1f} s")
    try:
        server = backend_pid()
        with LatencyProbe(endpoint, settings.table_name) as probe:
            server_cpu0 = cpu_s(server)
            poller, out = poll_in_child(settings, due.timestamp(), b + CANARIES, page_size)
            result = out.get()
            server_cpu = cpu_s(server) - server_cpu0
            poller.join()
        log(f"burst B={b}: poller sent {result['sent']} in {result['polls']} polls, "
            f"peak RSS {result['peak_rss_kb'] / 1024:.1f} MiB")
        wait = due.timestamp() + drain_s - time.time()
        if wait > 0:
            time.sleep(wait)  # the workers run the burst; real time is what is measured
        now_ms = int(time.time() * 1000)
    finally:
        for fleet in fleets:
            fleet.stop()
    rows = read_runs(endpoint, settings.table_name)
    due_ms = int(due.timestamp() * 1000)
    burst = [r for r in rows if r["scheduled_for"] == due_ms]
    canary = [r for r in rows if r["scheduled_for"] != due_ms]
    depth = sum(_queue_depth(endpoint, url) for url in queues)
    unsent = sum(1 for r in rows if r["status"] == "pending")
    not_started = sum(1 for r in rows if not r["started_at"])
    polls = result.pop("polls_log")
    before = sum(p["sent"] for p in polls if p["end"] <= due.timestamp())
    burst_before = max(0, before - len(canary))  # canaries fall due first and are sent first
    first_start = min(p["start"] for p in polls) if polls else due.timestamp()
    claims = result["sent"]
    return {
        "b": b, "canary_lane": canary_lane, "canaries": len(canary),
        "seed_s": round(seed_s, 1), "lead_s": lead,
        "sent_before_due": round(burst_before / b, 4),
        "peak_rss_kb": result["peak_rss_kb"], "rss_after_import_kb": result["rss_after_import_kb"],
        "poller_cpu_s_per_1000_claims": round(1000 * result["cpu_s"] / max(1, claims), 3),
        "poller_wall_s_per_1000_claims": round(
            1000 * (result["last_send_ts"] - first_start) / max(1, claims), 3),
        "dispatch_makespan_s": round(result["last_send_ts"] - first_start, 2),
        "dispatch_per_s": round(claims / max(1e-9, result["last_send_ts"] - first_start), 1),
        "polls": result["polls"], "sent": claims,
        "request_s": idle_request_s,  # the model's input: measured before the load
        "request_s_under_load": probe.median_s(),
        "server_cpu_s_per_1000_claims": round(1000 * server_cpu / max(1, claims), 3),
        "canary_lateness": _lateness(canary, now_ms),
        "start_lateness": _lateness(burst, now_ms),
        "drain_s": drain_s,
        # a run is lost if it has not started, is not pending (unsent) and is not in SQS
        "lost": max(0, not_started - unsent - depth),
        # bench-noop never fails, so a second attempt is a second start (each start is one
        # attempt: the fence admits one start per attempt)
        "duplicated": sum(1 for r in rows if r["attempt"] > 1),
        "unsent": unsent, "in_queue_after": depth,
        "rows_read": len(rows), "rows_expected": b + CANARIES,
    }


def figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    small, large = runs[0], runs[-1]
    canary_p99 = max(r["canary_lateness"].get("p99_ms", 0) for r in runs)
    return {
        "burst_sizes": [r["b"] for r in runs],
        "burst_sent_before_due": min(r["sent_before_due"] for r in runs),
        "burst_poller_rss_growth": round(large["peak_rss_kb"] / small["peak_rss_kb"] - 1, 4),
        "burst_poller_peak_rss_mib": {r["b"]: round(r["peak_rss_kb"] / 1024, 1) for r in runs},
        "burst_canary_p99_ms": canary_p99,
        "burst_start_lateness_ms": {r["b"]: {k: r["start_lateness"].get(k) for k in
                                             ("p50_ms", "p99_ms", "started", "not_started")}
                                    for r in runs},
        "burst_lost": sum(r["lost"] + (r["rows_expected"] - r["rows_read"]) for r in runs),
        "burst_duplicated": sum(r["duplicated"] for r in runs),
        "burst_runs": runs,
    }


def run(sizes: list[int], backend_kind: str = "ministack", drain_s: float = 60.0,
        page_size: int = 500, lead: float | None = None,
        canary_lane: str = "critical") -> dict[str, Any]:
    with backend(backend_kind) as endpoint:
        runs = [one_burst(endpoint, b, drain_s, page_size, lead=lead, canary_lane=canary_lane)
                for b in sorted(sizes)]
    out = figures(runs)
    out["burst_backend"] = backend_kind
    out["burst_canary_lane"] = canary_lane
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,50000,100000")
    parser.add_argument("--backend", default="ministack", choices=["moto", "ministack"])
    parser.add_argument("--drain", type=float, default=60.0,
                        help="seconds the workers run after the burst falls due")
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--lead", type=float, help="seconds to the due time (default: by B)")
    parser.add_argument("--canary-lane", default="critical", choices=["critical", "default"],
                        help="the canaries' lane (the burst is in the default lane)")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    out = run(sizes, args.backend, args.drain, args.page_size, args.lead, args.canary_lane)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
