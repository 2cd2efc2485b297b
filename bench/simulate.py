"""A discrete-event model of dynacron's AWS deployment under a burst (pure Python, no AWS).

What it models, and from where each number comes (AWS figures are cited in README "Bursts"):

- **pollers**: EventBridge invokes the poller every ``tick_s`` (60 s); ``fanout`` invocations
  each own ``shards / fanout`` shards. An invocation takes work for ``timeout - 5`` s (the
  dispatcher's time reserve). It claims in chunks of 10 (one conditional UpdateItem per run,
  then one SendMessageBatch) on ``concurrency`` threads; a claim costs ``claim_cpu_s`` of CPU
  (*measured in the same run*, the poller process's CPU per claim) scaled by the invocation's
  vCPU share (Lambda: memory / 1,769 MB, at most the threads' use of one interpreter lock: 1)
  and ``request_s`` of round trip (*measured in the same run* locally; on AWS an assumption of
  DynamoDB's single-digit milliseconds). Throughput per invocation is the smaller of the CPU
  bound and the latency bound; each shard's due-index partition caps claims at
  1,000 WCU/s / ``gsi_wcu_per_claim``.
- **look-ahead**: a burst beyond the window is claimed up to 900 s ahead (SQS DelaySeconds
  maximum): sent before its due time, it becomes visible when due; sent late, at once.
- **workers** (SQS event source, on-demand mode): starts at 5 concurrent batches and adds up to
  300 per minute, up to ``max_concurrency`` (≤ 1,000 per event source) and the account's
  concurrency (1,000 by default, less the pollers). A batch holds 10 messages; an invocation
  takes ``batch_s`` (the worker's local invocation time, scaled by vCPU share); its runs start
  when it starts. In-flight messages are capped at 120,000 (never binding below 12,000
  concurrency).

It predicts start lateness (start - due) p50/p99 for ``runs`` runs due at one second. The same
model with the local configuration (one poller process polling back to back, 8 threads, one
interpreter) predicts how long the local burst benchmark takes to send its burst
(``dispatch_makespan_s``), which is the validation against the measurement. Locally the
backend shares the two cores: its CPU per claim (measured) is part of the local model, not of
the AWS one (DynamoDB's servers are not the poller's).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

LAMBDA_MB_PER_VCPU = 1769
ESM_START_CONCURRENCY = 5
ESM_STEP_PER_MIN = 300
ESM_MAX = 1000
ACCOUNT_CONCURRENCY = 1000
PARTITION_WCU_PER_S = 1000
MAX_DELAY_S = 900
IN_FLIGHT_MAX = 120_000
TIME_RESERVE_S = 5.0
CHUNK = 10  # runs per SendMessageBatch and per SQS batch


@dataclass(frozen=True)
class Config:
    name: str
    shards: int = 8
    fanout: int = 1
    poller_mb: int = 512
    poller_timeout_s: float = 60.0
    tick_s: float = 60.0  # 0: polls back to back (the local benchmark)
    concurrency: int = 8  # claim threads per invocation
    vcpu: float | None = None  # None: Lambda's memory / 1,769 MB (capped at 1 interpreter)
    worker_mb: int = 512
    max_concurrency: int = 10  # the event source's MaximumConcurrency
    ramp: bool = True  # on-demand event source scaling (False: fixed local workers)
    lead_s: float = 900.0  # the burst exists this long before it falls due
    gsi_wcu_per_claim: float = 2.0  # the claim moves the run in the due index: delete + put


@dataclass(frozen=True)
class Calibration:
    claim_cpu_s: float  # poller CPU per claim, on one local core
    request_s: float  # one DynamoDB/SQS round trip
    batch_s: float  # one worker invocation of 10 runs, on one local core


def vcpu_of(cfg: Config) -> float:
    if cfg.vcpu is not None:
        return cfg.vcpu
    return min(1.0, cfg.poller_mb / LAMBDA_MB_PER_VCPU)  # one interpreter uses one core


def claim_rate(cfg: Config, cal: Calibration) -> float:
    """Claims per second of one poller invocation: CPU bound or round-trip bound."""
    cpu = cal.claim_cpu_s / vcpu_of(cfg)
    per_chunk = CHUNK * (cal.request_s + cpu) + cal.request_s  # 10 UpdateItem + 1 send
    latency_bound = cfg.concurrency * CHUNK / per_chunk
    shards_each = max(1, cfg.shards // cfg.fanout)
    partition_bound = shards_each * PARTITION_WCU_PER_S / cfg.gsi_wcu_per_claim
    return min(1.0 / cpu, latency_bound, partition_bound)


def _send_times(cfg: Config, cal: Calibration, runs: int) -> list[float]:
    """When each chunk of 10 is sent (seconds relative to the due time, 0)."""
    rate = claim_rate(cfg, cal) * cfg.fanout
    usable = cfg.poller_timeout_s - TIME_RESERVE_S
    start = -min(cfg.lead_s, MAX_DELAY_S)
    out: list[float] = []
    t = start
    chunks = math.ceil(runs / CHUNK)
    while len(out) < chunks:
        if cfg.tick_s:  # tick boundaries: a poll works for `usable` s then waits for the next
            tick0 = start + math.floor((t - start) / cfg.tick_s) * cfg.tick_s
            if t > tick0 + usable:
                t = tick0 + cfg.tick_s
                continue
        out.append(t)
        t += CHUNK / rate
    return out


def simulate(cfg: Config, cal: Calibration, runs: int) -> dict[str, Any]:
    """Start lateness of ``runs`` runs due at t = 0 under ``cfg``."""
    sends = _send_times(cfg, cal, runs)
    visible = [max(0.0, s) for s in sends]  # DelaySeconds holds early ones until due
    vcpu_w = min(1.0, cfg.worker_mb / LAMBDA_MB_PER_VCPU) if cfg.ramp else 1.0
    batch_s = cal.batch_s / vcpu_w
    limit = min(cfg.max_concurrency, ESM_MAX, ACCOUNT_CONCURRENCY - cfg.fanout,
                IN_FLIGHT_MAX // CHUNK)
    # events: (time, kind, payload); a free slot takes the next visible chunk
    busy: list[float] = []  # end times of running invocations (a heap)
    starts: list[float] = []
    i, t = 0, visible[0]
    ramp_t0 = visible[0]  # the event source starts scaling when messages appear
    while i < len(visible):
        while busy and busy[0] <= t:
            heapq.heappop(busy)
        allowed = limit
        if cfg.ramp:
            allowed = min(limit, ESM_START_CONCURRENCY
                          + int(ESM_STEP_PER_MIN * (t - ramp_t0) / 60.0))
        if visible[i] <= t and len(busy) < allowed:
            starts.append(t)
            heapq.heappush(busy, t + batch_s)
            i += 1
            continue
        # advance to the next moment something can change
        nxt = [visible[i]] if visible[i] > t else []
        if busy:
            nxt.append(busy[0])
        if cfg.ramp and allowed < limit:
            nxt.append(ramp_t0 + 60.0 * (allowed - ESM_START_CONCURRENCY + 1) / ESM_STEP_PER_MIN)
        t = max(t + 1e-6, min(nxt))
    lateness = sorted(starts)
    per_run = [s for s in lateness for _ in range(CHUNK)][:runs]
    sent_before = sum(CHUNK for s in sends if s <= 0)
    return {
        "config": cfg.name,
        "runs": runs,
        "claims_per_s_per_poller": round(claim_rate(cfg, cal), 1),
        "sent_before_due": round(min(runs, sent_before) / runs, 4),
        "dispatch_makespan_s": round(sends[-1] - sends[0], 1),
        "p50_s": round(per_run[len(per_run) // 2], 1),
        "p99_s": round(per_run[min(len(per_run) - 1, int(0.99 * len(per_run)))], 1),
        "last_start_s": round(per_run[-1], 1),
        "peak_concurrency": limit,
    }


# --- the configurations ------------------------------------------------------------------

# ShardCount 8, PollerMemorySize 1,769, WorkerMemorySize 512, MaximumConcurrency 10, 1 poller
DEFAULT = Config("template defaults", poller_mb=1769)
BURST = Config("burst: 64 shards x 16 pollers (fan-out), 1,769 MB, MaximumConcurrency 1,000",
               shards=64, fanout=16, poller_mb=1769, worker_mb=1769, max_concurrency=1000)
OTHERS = (
    Config("before: poller 512 MB, otherwise defaults", poller_mb=512),
    Config("no fan-out: 1 poller 1,769 MB, MaximumConcurrency 1,000", poller_mb=1769,
           worker_mb=1769, max_concurrency=1000),
)


def local_claim_rate(claim_cpu_s: float, server_cpu_s: float, request_s: float,
                     cores: float, concurrency: int = 8) -> float:
    """Claims per second of the local benchmark's poller: one interpreter (one core at most), a
    single-process backend (one core at most), both on ``cores`` shared cores, and the round
    trip of 8 claim threads."""
    cfg = Config("local benchmark", tick_s=0.0, vcpu=1.0, ramp=False, concurrency=concurrency)
    cal = Calibration(claim_cpu_s=claim_cpu_s, request_s=request_s, batch_s=1.0)
    return min(claim_rate(cfg, cal), 1.0 / server_cpu_s, cores / (claim_cpu_s + server_cpu_s))


def predict_local_makespan(sent: int, cal: dict[str, float]) -> float:
    """Seconds the local benchmark's poller takes to claim and send ``sent`` runs."""
    rate = local_claim_rate(cal["claim_cpu_s"], cal["server_cpu_s"], cal["request_s"],
                            cal["cores"])
    return sent / rate


def cost_of_burst(cfg: Config, cal: Calibration, runs: int, fig: dict[str, Any]) -> float:
    """Dollars for ``runs`` one-time runs: the per-run requests of a fire (the cost benchmark's
    figures) + the poller and worker Lambda duration this configuration uses."""
    from .cost import PRICES

    per_fire = fig.get("cost_per_million_breakdown") or {}
    requests = sum(v for k, v in per_fire.items() if k not in ("lambda_duration", "total"))
    rate = claim_rate(cfg, cal) * cfg.fanout
    poller_gb_s = runs / rate * cfg.poller_mb / 1024
    worker_gb_s = runs / CHUNK * cal.batch_s / min(1.0, cfg.worker_mb / LAMBDA_MB_PER_VCPU) \
        * cfg.worker_mb / 1024
    duration = (poller_gb_s + worker_gb_s) * PRICES["lambda_per_gb_second"]
    return round(requests * runs / 1e6 + duration, 2)


def run(calibration: dict[str, float], measured: dict[int, tuple[int, float]],
        fig: dict[str, Any] | None = None, runs: int = 1_000_000) -> dict[str, Any]:
    """The sim_* figures. ``calibration`` (measured locally in the same run): claim_cpu_s,
    server_cpu_s (the backend's CPU per claim), request_s (a round trip before the load),
    cores, batch_s (a worker invocation of 10 runs); ``measured``: B -> (runs the local
    burst's poller sent, seconds it took): the prediction is for the same count, so a poll cut
    short by the due time is compared for what it did send."""
    fig = fig or {}
    aws = Calibration(claim_cpu_s=calibration["claim_cpu_s"], request_s=AWS_REQUEST_S,
                      batch_s=calibration["batch_s"])
    validation = {}
    for b, (sent, seen) in sorted(measured.items()):
        predicted = predict_local_makespan(sent, calibration)
        validation[b] = {"sent": sent, "predicted_s": round(predicted, 1), "measured_s": seen,
                         "error": round(abs(predicted - seen) / seen, 3)}
    table = {}
    for cfg in (DEFAULT, BURST, *OTHERS):
        res = simulate(cfg, aws, runs)
        res["cost_usd"] = cost_of_burst(cfg, aws, runs, fig)
        table[cfg.name] = res
    default, burst = table[DEFAULT.name], table[BURST.name]
    return {
        "sim_1m_p50_s_default": default["p50_s"],
        "sim_1m_p99_s_default": default["p99_s"],
        "sim_1m_p50_s_burst": burst["p50_s"],
        "sim_1m_p99_s_burst": burst["p99_s"],
        "sim_vs_measured_error": max((v["error"] for v in validation.values()), default=None),
        "sim_validation": validation,
        "sim_table": table,
        "sim_calibration": {**calibration, "aws_request_s": AWS_REQUEST_S},
        # EventBridge Scheduler: 1M invocations at its default 1,000/s take 1,000 s
        "sim_eventbridge_scheduler_1m_s": 1_000_000 / 1000,
    }


AWS_REQUEST_S = 0.008  # an assumption: DynamoDB's "single-digit millisecond" in-Region
