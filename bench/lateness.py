"""Figure 1: lateness (``started_at - scheduled_for``) of runs on the local runtime.

``dynacron.local.runtime.LocalRuntime`` (embedded moto server, poller loop, worker loops calling
``batch.process_event``) runs as ``dynacron local`` does. N one-time tasks due at instants
drawn uniformly at random over a span of S seconds are written straight into the table with
BatchWriteItem, a few seconds before the span starts: the items are exactly those that
``Scheduler.schedule(..., trigger=At(t))`` writes, built by the SDK's own code, and the poller
finds them in the due index as it would find SDK-created ones. Then the table is read back and
``started_at - scheduled_for`` of every run is its lateness.

The runtime's moto server runs with ``dynacron.local.motofix``, as ``dynacron local`` always
does (stock moto copies the whole table on every claim, so 2,000 runs could not even be claimed
in a minute).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .common import ROOT, cpu_s, log, percentile


def run(n: int, span_s: float, drain_s: float = 60.0,
        shards: int | None = None) -> tuple[dict[str, Any], list[int]]:
    """The figures (``lateness_*`` keys) and every run's lateness in ms.

    Each measurement runs in a fresh interpreter: moto keeps its state per process and a
    runtime stopped under load leaves threads retrying against its stopped server.
    """
    code = f"from bench.lateness import _child; _child({n}, {span_s!r}, {drain_s!r}, {shards!r})"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                          text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["figures"], result["lateness"]


def _child(n: int, span_s: float, drain_s: float, shards: int | None) -> None:
    figures, lateness = measure(n, span_s, drain_s=drain_s, shards=shards)
    sys.stdout.write(json.dumps({"figures": figures, "lateness": lateness}) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # do not wait for threads of a runtime stopped under load


def measure(n: int, span_s: float, seed: int = 7, lead_s: float = 10.0, drain_s: float = 60.0,
            shards: int | None = None) -> tuple[dict[str, Any], list[int]]:
    """In this process: run the local runtime, schedule, wait, read the table back."""
    from dynacron.local.runtime import LocalRuntime

    from .throughput import rows_like_sdk, write_items

    rt = LocalRuntime(port=0, handlers=["bench.handlers"], shards=shards)
    rt.start()
    try:
        settings = rt.settings
        rng = random.Random(seed)
        offsets = sorted(rng.uniform(0, span_s) for _ in range(n))
        t0 = datetime.now(UTC) + timedelta(seconds=lead_s)
        items = rows_like_sdk(settings, [t0 + timedelta(seconds=o) for o in offsets])
        server_pid = rt.server.pid
        cpu0 = (cpu_s(server_pid), time.process_time())
        c0 = time.monotonic()
        write_items(rt.dynamodb, settings.table_name, items, threads=4)
        log(f"  wrote {n} tasks in {time.monotonic() - c0:.1f}s; due over {span_s:g}s from "
            f"{(t0 - datetime.now(UTC)).total_seconds():.1f}s from now")
        end = t0 + timedelta(seconds=span_s)
        # Progress from the runtime's own event counts: a Scan would load the server we measure.
        deadline = time.monotonic() + (end - datetime.now(UTC)).total_seconds() + drain_s
        while time.monotonic() < deadline:
            time.sleep(1.0)
            counts = rt.stats.counts
            done = sum(counts[k] for k in ("succeeded", "dead", "expired", "skipped"))
            if datetime.now(UTC) > end and int(time.monotonic()) % 5 == 0:
                log(f"  {counts['started']}/{n} started, {done} finished")
            if done >= n:
                break
        measured_at = int(time.time() * 1000)
        server_cpu, own_cpu = cpu_s(server_pid) - cpu0[0], time.process_time() - cpu0[1]
        rows = _runs(rt)
        pairs = {(it["pk"]["S"], it["sk"]["S"]) for it in items}
        extra = [r for r in rows if (r["pk"], r["sk"]) not in pairs]
        if extra:
            seeded_sk = {pk: sk for pk, sk in pairs if sk.startswith("RUN#")}
            log(f"  {len(extra)} run item(s) that were not seeded: "
                f"{[(r, seeded_sk.get(r['pk'])) for r in extra[:5]]}")
        rows = [r for r in rows if (r["pk"], r["sk"]) in pairs]
        # moto's Scan of a table that is being written can return an item twice: keep one.
        unique = {(r["pk"], r["sk"]): r for r in rows}
        duplicates = len(rows) - len(unique)
        if duplicates:
            log(f"  the Scan returned {duplicates} item(s) twice (moto): counted once")
        rows = list(unique.values())
    finally:
        rt.stop(grace_s=3)
    lateness = [r["started_at"] - r["scheduled_for"] for r in rows if r.get("started_at")]
    # Runs that had not started when the wait ended are late by at least (now - scheduled_for):
    # they count with that lower bound, so the percentiles are never flattered by leaving them out.
    censored = [measured_at - r["scheduled_for"] for r in rows if not r.get("started_at")]
    lateness += censored
    first = [r["started_at"] - r["scheduled_for"] for r in rows
             if r.get("started_at") and r.get("attempt") == 1]
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    out: dict[str, Any] = {
        # CPU per run (seeding and the final Scan included): where the time goes.
        "lateness_server_cpu_ms_per_run": round(server_cpu * 1000 / n, 1),
        "lateness_dynacron_cpu_ms_per_run": round(own_cpu * 1000 / n, 1),
        "lateness_runs": n,
        "lateness_span_s": span_s,
        "lateness_started": len(lateness) - len(censored),
        "lateness_not_started_in_time": len(censored),
        "lateness_statuses": statuses,
        "lateness_unexpected_items": extra[:5],
    }
    if lateness:
        out.update(
            lateness_p50_ms=percentile(lateness, 50),
            lateness_p95_ms=percentile(lateness, 95),
            lateness_p99_ms=percentile(lateness, 99),
            lateness_max_ms=max(lateness),
            lateness_min_ms=min(lateness),
            lateness_mean_ms=round(sum(lateness) / len(lateness), 1),
            lateness_first_attempt_only=len(first) == len(lateness) - len(censored),
        )
    return out, lateness


def _runs(rt: Any) -> list[dict[str, Any]]:
    """Every run item of the table (a Scan; numbers as int)."""
    kwargs: dict[str, Any] = {"TableName": rt.settings.table_name}
    out: list[dict[str, Any]] = []
    while True:
        page = rt.dynamodb.scan(**kwargs)
        for item in page.get("Items", []):
            if not item["sk"]["S"].startswith("RUN#"):
                continue
            out.append({
                "pk": item["pk"]["S"],
                "sk": item["sk"]["S"],
                "status": item.get("status", {}).get("S", "?"),
                "scheduled_for": int(item.get("scheduled_for", {}).get("N", 0)),
                "started_at": int(item["started_at"]["N"]) if "started_at" in item else None,
                "attempt": int(item.get("attempt", {}).get("N", 0)),
            })
        if not page.get("LastEvaluatedKey"):
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def plot(series: list[tuple[str, list[int], dict[str, Any]]], png: Path) -> None:
    """One histogram per (title, lateness, figures) with its p50/p99 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png.parent.mkdir(parents=True, exist_ok=True)
    f, axes = plt.subplots(len(series), 1, figsize=(8, 3.6 * len(series)), dpi=110,
                           squeeze=False)
    for ax, (title, lateness, fig) in zip(axes[:, 0], series, strict=True):
        lo, hi = min(0, min(lateness)), max(lateness)
        width = max(5, (hi - lo) // 60)
        ax.hist(lateness, bins=list(range(lo, hi + 2 * width, width)), color="#4C72B0")
        for key, color in (("lateness_p50_ms", "#2ca02c"), ("lateness_p99_ms", "#d62728")):
            ax.axvline(fig[key], color=color, linestyle="--",
                       label=f"{key.split('_')[1]} = {fig[key]:,} ms")
        ax.set_xlabel("started_at - scheduled_for (ms)")
        ax.set_ylabel("runs")
        ax.set_title(title, fontsize=10)
        ax.legend()
    f.tight_layout()
    f.savefig(png)
    plt.close(f)
