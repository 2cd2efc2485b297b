"""Saturation: 2,000 ``bulk`` runs and 50 ``critical`` runs due in the same minute, locally.

``LocalRuntime`` (as ``dynacron local`` runs it: the template's lanes, one receive loop per unit
of a lane's concurrency) takes a herd of bulk runs and a few critical ones due at random instants
of the same minute. The critical lane has its own queue and its own loops, so the bulk backlog
must not make it late: the figure is ``lane_critical_p99_ms`` (target ≤ 1,000 ms), beside the
bulk lane's own lateness and when each lane finished. Nothing may be lost.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import ROOT, log, percentile


def run(bulk: int, critical: int, span_s: float, drain_s: float = 90.0) -> dict[str, Any]:
    """The figures, measured in a fresh interpreter (moto keeps its state per process)."""
    code = f"from bench.lanes import _child; _child({bulk}, {critical}, {span_s!r}, {drain_s!r})"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(bulk: int, critical: int, span_s: float, drain_s: float) -> None:
    sys.stdout.write(json.dumps(measure(bulk, critical, span_s, drain_s)) + "\n")
    sys.stdout.flush()
    os._exit(0)  # do not wait for threads of a runtime stopped under load


def measure(bulk: int, critical: int, span_s: float, drain_s: float = 90.0,
            lead_s: float = 30.0, seed: int = 11) -> dict[str, Any]:
    from dynacron.local.runtime import LocalRuntime

    from .throughput import rows_like_sdk, write_items

    rt = LocalRuntime(port=0, handlers=["bench.handlers"])
    rt.start()
    try:
        rng = random.Random(seed)
        t0 = datetime.now(UTC) + timedelta(seconds=lead_s)

        def whens(n: int) -> list[datetime]:
            return [t0 + timedelta(seconds=rng.uniform(0, span_s)) for _ in range(n)]
        bulk_items = rows_like_sdk(rt.settings, whens(bulk), lane="bulk")
        critical_items = rows_like_sdk(rt.settings, whens(critical), lane="critical")
        # Written in an order that favours neither lane (each task with its run, pairs shuffled):
        # with the critical rows last, the earliest of them reached the table only as they fell due.
        pairs = [bulk_items[i:i + 2] for i in range(0, len(bulk_items), 2)]
        pairs += [critical_items[i:i + 2] for i in range(0, len(critical_items), 2)]
        rng.shuffle(pairs)
        items = [item for pair in pairs for item in pair]
        wrote = time.monotonic()
        write_items(rt.dynamodb, rt.settings.table_name, items, threads=4)
        # longer than lead_s (a loaded machine): the last runs written, the critical ones, were
        # not in the table when they fell due; the figure says so rather than hiding it
        write_s = round(time.monotonic() - wrote, 1)
        log(f"  wrote {bulk} bulk + {critical} critical runs in {write_s}s, due over {span_s:g}s")
        deadline = time.monotonic() + lead_s + span_s + drain_s
        total = bulk + critical
        while time.monotonic() < deadline:
            time.sleep(1.0)
            counts = rt.stats.counts
            if sum(counts[k] for k in ("succeeded", "dead", "expired", "skipped")) >= total:
                break
        measured_at = int(time.time() * 1000)
        rows = _runs(rt)
    finally:
        rt.stop(grace_s=3)
    return {**_figures(rows, measured_at, bulk, critical), "lane_write_s": write_s,
            "lane_lead_s": lead_s}


def _figures(rows: list[dict[str, Any]], measured_at: int, bulk: int, critical: int
             ) -> dict[str, Any]:
    out: dict[str, Any] = {"lane_bulk_runs": bulk, "lane_critical_runs": critical}
    for lane in ("critical", "bulk"):
        mine = [r for r in rows if r["lane"] == lane]
        # Not started by the end: late by at least (end - scheduled_for), never left out.
        late = [(r["started_at"] or measured_at) - r["scheduled_for"] for r in mine]
        out[f"lane_{lane}_found"] = len(mine)
        out[f"lane_{lane}_succeeded"] = sum(1 for r in mine if r["status"] == "succeeded")
        if late:
            out[f"lane_{lane}_p50_ms"] = percentile(late, 50)
            out[f"lane_{lane}_p99_ms"] = percentile(late, 99)
            out[f"lane_{lane}_max_ms"] = max(late)
        done = [r["finished_at"] for r in mine if r["finished_at"]]
        out[f"lane_{lane}_last_finished_ms"] = max(done) if done else None
    out["lane_lost"] = (bulk + critical) - out["lane_bulk_succeeded"] - out[
        "lane_critical_succeeded"]
    return out


def _runs(rt: Any) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"TableName": rt.settings.table_name}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    while True:
        page = rt.dynamodb.scan(**kwargs)
        for item in page.get("Items", []):
            if item["sk"]["S"].startswith("RUN#"):
                out[(item["pk"]["S"], item["sk"]["S"])] = {
                    "lane": item.get("lane", {}).get("S", "default"),
                    "status": item.get("status", {}).get("S", "?"),
                    "scheduled_for": int(item["scheduled_for"]["N"]),
                    "started_at": int(item["started_at"]["N"]) if "started_at" in item else None,
                    "finished_at": int(item["finished_at"]["N"]) if "finished_at" in item
                    else None,
                }
        if not page.get("LastEvaluatedKey"):
            return list(out.values())
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bulk", type=int, default=2000)
    parser.add_argument("--critical", type=int, default=50)
    parser.add_argument("--span", type=float, default=60.0)
    args = parser.parse_args()
    print(json.dumps(run(args.bulk, args.critical, args.span)))
