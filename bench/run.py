"""``python -m bench.run [--quick]``: every figure of issue 6, as one JSON object.

Progress goes to stderr; the last line of stdout is the JSON object, also written to
``bench/results/latest.json``; the lateness histogram goes to ``bench/results/lateness.png``.
``--quick`` is a smaller smoke run (same code paths, smaller numbers); it and ``--only`` write
``partial.json`` / ``partial.png`` instead, so they never replace the full figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from .common import RESULTS, backend, log

FULL = {
    "import_repeats": 10,
    "cost_fires": 120, "cost_ticks": 4, "cost_sparse_fires": 20, "cost_short_fires": 20,
    "dispatch_runs": 5000, "dispatch_repeats": 2,
    "scale_shards": 16,
    "lateness_runs": 2000, "lateness_span_s": 60.0, "lateness_drain_s": 20, "light_runs": 100,
    "half_runs": 1000,
    "light_span_s": 20.0,
    "lanes_bulk": 2000, "lanes_critical": 50, "lanes_span_s": 60.0,
    "burst_sizes": [20000, 50000, 100000], "burst_drain_s": 60.0,
    "crash_trials": 4, "crash_runs": 5, "scaling_runs": 3000, "worker_cpu_runs": 2000,
}
QUICK = {
    "import_repeats": 3,
    "cost_fires": 30, "cost_ticks": 3, "cost_sparse_fires": 10, "cost_short_fires": 10,
    "dispatch_runs": 300, "dispatch_repeats": 2,
    "scale_shards": 16,
    "lateness_runs": 150, "lateness_span_s": 10.0, "lateness_drain_s": 20, "light_runs": 0,
    "light_span_s": 0.0,
    "lanes_bulk": 200, "lanes_critical": 10, "lanes_span_s": 10.0,
    "burst_sizes": [500, 2000], "burst_drain_s": 15.0,
    "crash_trials": 1, "crash_runs": 3, "scaling_runs": 500, "worker_cpu_runs": 300,
}
TARGETS = {
    "lateness_p50_ms": ("<=", 100),
    "lateness_p99_ms": ("<=", 1000),
    "dispatch_vs_floor": (">=", 0.8),
    "ddb_writes_per_fire": ("<=", 6),
    "sqs_requests_per_fire": ("<=", 0.3),
    "worker_invocations_per_fire": ("<=", 0.1),
    "import_ratio_poller": ("<=", 1.5),
    "import_ratio_worker": ("<=", 1.5),
    "lane_critical_p99_ms": ("<=", 1000),
    "burst_sent_before_due": (">=", 1.0),
    "burst_poller_rss_growth": ("<=", 0.10),
    "burst_canary_p99_ms": ("<=", 1000),
    "burst_lost": ("<=", 0),
    "crash_recovery_p99_s": ("<=", 60),
    "sim_vs_measured_error": ("<=", 0.25),
}
# AWS DynamoDB: one partition takes at most 1,000 WCU/s (and 3,000 RCU/s).
PARTITION_WCU_PER_S = 1000
POLL_USABLE_S = 55  # the poller stops taking new work with 5 s of its 60 s left


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _figure(name: str, out: dict[str, Any], errors: dict[str, str], fn: Any) -> None:
    t = time.monotonic()
    log(f"{name} ...")
    try:
        out.update(fn())
    except Exception as exc:  # one failed figure must not hide the others
        errors[name] = f"{type(exc).__name__}: {exc}"
        log(f"{name} FAILED:\n{traceback.format_exc()}")
    log(f"{name}: {time.monotonic() - t:.0f}s")


def coldstart(cfg: dict[str, Any]) -> dict[str, Any]:
    from . import coldstart as cs

    # The headline (import_ratio_*) is measured in the source tree, as the issue defines it;
    # beside it, the packages `make build` deploys, with and without their bytecode.
    return {**cs.run(cfg["import_repeats"]), **cs.run_package(cfg["import_repeats"])}


def cost(cfg: dict[str, Any]) -> dict[str, Any]:
    from . import cost as c

    with backend("moto") as url:
        one = c.scenario(url, "one_time", cfg["cost_fires"])
        log(f"  one-time: {one['requests']}")
        rec = c.scenario(url, "recurring", cfg["cost_fires"], ticks=cfg["cost_ticks"])
        log(f"  recurring: {rec['requests']}")
        sparse = c.scenario(url, "one_time", cfg["cost_sparse_fires"], receive_max=1)
        short = c.scenario(url, "short_notice", cfg["cost_short_fires"])
        wru = c.wru_figures(url, cfg["cost_fires"])
        timing = c.scenario(url, "one_time", cfg["cost_fires"] // 2, meter=False)
        timing_sparse = c.scenario(url, "one_time", cfg["cost_sparse_fires"], receive_max=1,
                                   meter=False)
        idle_ms = c.idle_poll_ms(url)
    both = _combine(one, rec)
    both["worker_invocation_ms_local"] = timing["worker_invocation_ms_local"]
    sparse["worker_invocation_ms_local"] = timing_sparse["worker_invocation_ms_local"]
    per_m = c.dollars_per_million(both)
    per_m_sparse = c.dollars_per_million(sparse)
    fixed = c.fixed_monthly(idle_ms)
    return {
        "ddb_writes_per_fire": both["ddb_writes_per_fire"],
        "sqs_requests_per_fire": both["sqs_requests_per_fire"],
        "worker_invocations_per_fire": both["worker_invocations_per_fire"],
        "wcu_per_fire": both["wcu_per_fire"],
        "wcu_gsi_per_fire": both["wru_gsi_per_fire"],
        "rru_per_fire": both["rru_per_fire"],
        "ddb_reads_per_fire": both["ddb_reads_per_fire"],
        "ddb_writes_per_fire_one_time": one["ddb_writes_per_fire"],
        "ddb_writes_per_fire_recurring": rec["ddb_writes_per_fire"],
        "wcu_per_fire_one_time": one["wcu_per_fire"],
        "wcu_per_fire_recurring": rec["wcu_per_fire"],
        **wru,
        "sqs_requests_per_fire_sparse": sparse["sqs_requests_per_fire"],
        "worker_invocations_per_fire_sparse": sparse["worker_invocations_per_fire"],
        "sqs_requests_per_fire_short_notice": short["sqs_requests_per_fire"],
        "worker_invocation_ms_local": both["worker_invocation_ms_local"],
        "poller_idle_ms_local": round(idle_ms, 1),
        "cost_per_million_usd": per_m["total"],
        "cost_per_million_usd_sparse": per_m_sparse["total"],
        "cost_per_million_breakdown": per_m,
        "cost_fixed_per_month_usd": fixed["total"],
        "cost_fixed_breakdown": fixed,
        "eventbridge_scheduler_per_million_usd": c.PRICES["eventbridge_scheduler_per_million"],
        "cost_verdict": c.verdict(per_m["total"], per_m_sparse["total"], fixed["total"],
                                  both["wcu_per_fire"]),
        "prices": c.PRICES,
        "cost_scenarios": {"one_time": one, "recurring": rec, "sparse": sparse,
                           "short_notice": short},
    }


def _combine(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per-fire figures over the fires of both scenarios together."""
    fa, fb = a["fires"], b["fires"]
    keys = ("ddb_writes_per_fire", "ddb_reads_per_fire", "sqs_requests_per_fire",
            "worker_invocations_per_fire", "wru_table_per_fire", "wru_gsi_per_fire",
            "rru_per_fire", "wcu_per_fire", "stored_bytes_per_fire")
    out = {k: round((a[k] * fa + b[k] * fb) / (fa + fb), 3) for k in keys}
    out["fires"] = fa + fb
    return out


def dispatch_moto(cfg: dict[str, Any]) -> dict[str, Any]:
    from . import throughput as tp

    with backend("moto") as url:
        res = tp.compare(url, cfg["dispatch_runs"], shards=8, repeats=1, check_calls=True)
    return {
        "dispatch_per_s_moto": res["dispatch_per_s"],
        "floor_per_s_moto": res["floor_per_s"],
        "dispatch_vs_floor_moto": res["vs_floor"],
        "dispatch_client_cpu_ms_per_run_moto": res["client_cpu_ms_per_run"],
        "floor_client_cpu_ms_per_run_moto": res["floor_client_cpu_ms_per_run"],
        "dispatch_detail_moto": res,
    }


def dispatch_ministack(cfg: dict[str, Any]) -> dict[str, Any]:
    """The headline dispatch figures (alternating pairs, medians) and the 16-shard scale poll."""
    from . import throughput as tp
    from .common import boto_client, deploy

    with backend("ministack") as url:
        res = tp.compare(url, cfg["dispatch_runs"], shards=8, repeats=cfg["dispatch_repeats"],
                         check_calls=True)
        shards = cfg["scale_shards"]
        settings = deploy(url, shards=shards)
        tp.seed(boto_client("dynamodb", url), settings, cfg["dispatch_runs"])
        scale = tp.run_dynacron(settings)
    rate = scale["sent"] / scale["elapsed_s"]
    log(f"  scale: {scale['sent']} runs / {shards} shards in {scale['elapsed_s']:.2f}s "
        f"= {rate:.0f}/s")
    return {
        "dispatch_per_s": res["dispatch_per_s"],
        "floor_per_s": res["floor_per_s"],
        "dispatch_vs_floor": res["vs_floor"],
        "dispatch_client_cpu_ms_per_run": res["client_cpu_ms_per_run"],
        "floor_client_cpu_ms_per_run": res["floor_client_cpu_ms_per_run"],
        "dispatch_cpu_vs_floor": round(res["floor_client_cpu_ms_per_run"]
                                       / res["client_cpu_ms_per_run"], 3),
        "dispatch_backend": f"ministack, 8 shards, {cfg['dispatch_runs']} runs, median of "
                            f"{cfg['dispatch_repeats']} alternating dynacron/floor pairs",
        "dispatch_detail": res,
        "scale_shards": shards,
        "scale_dispatch_per_s_16_shards": round(rate, 1),
        "scale_runs_per_min_16_shards": round(rate * POLL_USABLE_S),
    }


def scale_arithmetic(fig: dict[str, Any]) -> str:
    rate = fig.get("scale_dispatch_per_s_16_shards")
    gsi = fig.get("wcu_gsi_per_fire")
    table = fig.get("wcu_per_fire")
    if rate is None or gsi is None or table is None:
        return "not computed (a figure it needs failed)"
    shards = fig.get("scale_shards", 16)
    per_min = rate * POLL_USABLE_S
    per_shard_local = per_min / shards
    cap_fires_s = PARTITION_WCU_PER_S / gsi
    cap_min = cap_fires_s * 60
    return (
        f"Measured: one poll on ministack dispatched {rate:.0f} runs/s over {shards} shards; a "
        f"60 s poller stops taking work with 5 s left, so {rate:.0f} x {POLL_USABLE_S} s = "
        f"{per_min:,.0f} runs due per minute ({per_shard_local:,.0f} per shard). AWS: the due "
        f"index is keyed by shard, so each shard is one GSI partition with at most "
        f"{PARTITION_WCU_PER_S:,} WCU/s; a fire writes {gsi:g} WRU to its shard's index "
        f"(enter at create, move at claim, move at start, leave at finish; items < 1 KB), so a "
        f"shard takes at most {PARTITION_WCU_PER_S:,} / {gsi:g} = {cap_fires_s:,.0f} fires/s = "
        f"{cap_min:,.0f} per minute, and {shards} shards {cap_min * shards:,.0f} per minute. "
        f"Base-table writes ({table - gsi:g} WRU/fire) are keyed by task and spread over all "
        f"partitions. So one poller (~{per_min:,.0f}/min here) is the limit long before the "
        f"index partitions ({per_min / (cap_min * shards):.1%} of their write ceiling)."
    )


def lateness(cfg: dict[str, Any], png: str) -> dict[str, Any]:
    """The issue's load (lateness_*), and for comparison a light load (lateness_light_*) and
    half the issue's rate over the same minute (lateness_half_*)."""
    from . import lateness as lt

    series = []
    out: dict[str, Any] = {}
    comparisons = (("half", "half the rate", cfg.get("half_runs"), cfg["lateness_span_s"]),
                   ("light", "light load", cfg["light_runs"], cfg["light_span_s"]))
    for key, label, runs, span_s in comparisons:
        if not runs:
            continue
        figures, ms = lt.run(runs, span_s, drain_s=10)
        out.update({k.replace("lateness_", f"lateness_{key}_", 1): v for k, v in figures.items()})
        series.append((f"dynacron local, {label}: {runs} runs due over {span_s:g} s", ms,
                       figures))
        log(f"  {key}: p50 {figures.get('lateness_p50_ms')} ms, p99 "
            f"{figures.get('lateness_p99_ms')} ms")
    heavy, heavy_ms = lt.run(cfg["lateness_runs"], cfg["lateness_span_s"],
                             drain_s=cfg["lateness_drain_s"])
    out.update(heavy)
    late = heavy["lateness_not_started_in_time"]
    series.insert(0, (f"dynacron local: {cfg['lateness_runs']} runs due over "
                      f"{cfg['lateness_span_s']:g} s" + (f"\n({late} not started "
                      f"{cfg['lateness_drain_s']:g} s after the last was due: counted at "
                      "their lower bound)" if late else ""), heavy_ms, heavy))
    lt.plot(series, RESULTS / png)
    return out


def burst_and_model(cfg: dict[str, Any], fig: dict[str, Any]) -> dict[str, Any]:
    """The burst benchmark (issue 12), then the model calibrated by what it measured."""
    from . import burst

    sizes = [int(b) for b in os.environ.get("BURST_SIZES", "").split(",") if b] \
        or cfg["burst_sizes"]
    out = burst.run(sizes, "ministack", drain_s=cfg["burst_drain_s"])
    # in the log at once: half an hour of measurement survives a failure of the steps after
    log("burst figures: " + json.dumps(out))
    out.update(worker_cpu(cfg))
    out.update(simulate_from(out, {**fig, **out}))
    return out


def worker_cpu(cfg: dict[str, Any]) -> dict[str, Any]:
    """The worker's own CPU per run (bench.workercpu), the model's worker calibration."""
    from . import workercpu

    return workercpu.run(cfg["worker_cpu_runs"])


def model_only(cfg: dict[str, Any]) -> dict[str, Any]:
    """``--only simulate``: the model again, calibrated by the burst runs stored in
    latest.json (the poller side) and a worker CPU measurement taken now."""
    stored = _latest()
    if not stored.get("burst_runs"):
        raise RuntimeError("no burst runs in latest.json: run --only burst first")
    cpu = worker_cpu(cfg)
    return {**cpu, **simulate_from(stored, {**stored, **cpu})}


def simulate_from(burst_fig: dict[str, Any], fig: dict[str, Any]) -> dict[str, Any]:
    """bench.simulate calibrated by the burst runs: CPU per claim (poller and backend) and the
    request latency, medians over the B values; the worker's CPU per run (bench.workercpu)
    and its import time (the cold start figure)."""
    from . import simulate

    fig = {**_latest(), **fig}  # figures this run did not measure: the last full run's
    runs = burst_fig["burst_runs"]

    def median(key: str) -> float:
        values = sorted(r[key] for r in runs if r.get(key) is not None)
        return values[len(values) // 2]

    cal = {"claim_cpu_s": median("poller_cpu_s_per_1000_claims") / 1000,
           "server_cpu_s": median("server_cpu_s_per_1000_claims") / 1000,
           "request_s": median("request_s"), "cores": float(os.cpu_count() or 1),
           "worker_cpu_s": fig["worker_cpu_s_per_run"],
           "init_s": fig.get("import_ms_worker", 0) / 1000,
           "worker_wru_per_run": _worker_wru(fig),
           "worker_gsi_wru_per_run": _worker_wru(fig, "wru_worker_gsi_per_fire")}
    # validation at the smallest and the largest B measured (the issue: 20k and 100k)
    points = {r["b"]: (r["sent"], r["dispatch_makespan_s"]) for r in (runs[0], runs[-1])}
    return simulate.run(cal, points, fig)


def _worker_wru(fig: dict[str, Any], key: str = "wru_worker_per_fire") -> float:
    """Write units of a run's start and finish (``key``: all, or the due index's): the cost
    benchmark's worker phase (one-time)."""
    scenarios = fig.get("cost_scenarios") or {}
    value = (scenarios.get("one_time") or {}).get(key)
    if value is None:
        raise RuntimeError(f"no {key}: run --only cost first")
    return float(value)


def _latest() -> dict[str, Any]:
    try:
        return json.loads((RESULTS / "latest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def crash(cfg: dict[str, Any]) -> dict[str, Any]:
    from . import crash as cr

    return cr.run(cfg["crash_trials"], cfg["crash_runs"])


def scaling(cfg: dict[str, Any]) -> dict[str, Any]:
    from . import scaling as sc

    return sc.run(cfg["scaling_runs"])


def verdicts(fig: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, (op, target) in TARGETS.items():
        value = fig.get(key)
        if value is None:
            out[key] = f"not measured (target {op} {target})"
            continue
        ok = value <= target if op == "<=" else value >= target
        if ok:
            out[key] = f"met: {value} {op} {target}"
        else:
            off = value / target if op == "<=" else target / value if value else float("inf")
            out[key] = f"MISSED: {value} vs {op} {target} ({off:.2f}x)"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--only", help="comma-separated: coldstart,cost,dispatch,ministack,"
                        "lateness,lanes,burst,crash,scaling,simulate (default: all but "
                        "simulate, which burst includes)")
    parser.add_argument("--merge", action="store_true", help="with --only: merge the figures "
                        "into latest.json (keeping the others) instead of writing partial.json")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    wanted = set((args.only or "coldstart,cost,dispatch,ministack,lateness,lanes,burst,crash,"
                  "scaling").split(","))
    started = time.monotonic()
    fig: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
    }
    errors: dict[str, str] = {}
    if "coldstart" in wanted:
        _figure("cold start (4)", fig, errors, lambda: coldstart(cfg))
    if "cost" in wanted:
        _figure("cost per fire (3)", fig, errors, lambda: cost(cfg))
    if "dispatch" in wanted:
        _figure("dispatch on moto (2)", fig, errors, lambda: dispatch_moto(cfg))
    if "ministack" in wanted:
        _figure("dispatch + scale on ministack (2, 5)", fig, errors,
                lambda: dispatch_ministack(cfg))
        fig["scale_arithmetic"] = scale_arithmetic(fig)
    if "lateness" in wanted:
        png = "lateness.png" if not args.quick and not args.only else "partial.png"
        _figure("lateness on dynacron local (1)", fig, errors, lambda: lateness(cfg, png))
    if "lanes" in wanted:
        from . import lanes

        _figure("lane saturation on dynacron local (issue 13)", fig, errors,
                lambda: lanes.run(cfg["lanes_bulk"], cfg["lanes_critical"], cfg["lanes_span_s"]))
    if "burst" in wanted:
        _figure("burst on ministack + simulate (issue 12)", fig, errors,
                lambda: burst_and_model(cfg, fig))
    if "simulate" in wanted and "burst" not in wanted:
        _figure("simulate from the stored burst runs (issue 12)", fig, errors,
                lambda: model_only(cfg))
    if "crash" in wanted:
        _figure("crash recovery on ministack (issue 12)", fig, errors, lambda: crash(cfg))
    if "scaling" in wanted:
        _figure("dispatch_scaling on ministack (issue 12)", fig, errors, lambda: scaling(cfg))
    merge = args.merge and args.only and not args.quick
    if merge:  # today's figures over the last full run's: one file the README quotes
        fig = {**_latest(), **{k: v for k, v in fig.items() if k != "machine"},
               f"machine_{'_'.join(sorted(wanted))}": fig["machine"]}
    fig["targets"] = verdicts(fig)
    fig["errors"] = {**(fig.get("errors") or {}), **errors} if merge else errors
    fig["elapsed_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    # A quick or partial run must not replace the full figures the README quotes.
    name = "latest.json" if merge or (not args.quick and not args.only) else "partial.json"
    (RESULTS / name).write_text(json.dumps(fig, indent=2) + "\n", encoding="utf-8")
    log(f"done in {fig['elapsed_s']}s; wrote {RESULTS / name}")
    for key, verdict in fig["targets"].items():
        log(f"  {key}: {verdict}")
    sys.stdout.write(json.dumps(fig, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 1 if errors else 0


if __name__ == "__main__":
    code = main()
    # Worker threads of a runtime stopped under load may still be retrying requests against its
    # stopped server (PynamoDB retries for minutes): do not wait for them at exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
