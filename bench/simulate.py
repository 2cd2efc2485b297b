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
- **workers**: the SQS event source in one of its two modes. *On demand*: starts with 5
  concurrent batches and adds up to 300 per minute, at most ``max_concurrency``
  (``MaximumConcurrency`` ≤ 1,000) or 1,250 without it. *Provisioned* (``min_pollers`` > 0):
  the pollers kept warm take up to 10 concurrent invocations each (AWS: up to 20,000 concurrency
  at the 2,000-poller maximum), add up to 1,000 concurrent executions per minute, at most
  ``max_pollers`` x 10. Then the function itself: Lambda adds at most 1,000 execution
  environments per 10 s to a function, beyond the ``provisioned_concurrency`` kept initialised;
  a new environment pays the worker's init (``init_s``, its measured import time) before its
  first batch; and the account's concurrency (``account_concurrency``, 1,000 by default, less
  the pollers) caps everything. ``queues`` work queues (each its own event source) multiply the
  event source's limits, not the function's. A batch holds 10 messages; its runs start when it
  starts; an invocation lasts ``batch_s``. On AWS that is 10 x the worker's CPU per run
  (*measured in the same run*, against a backend in another process: ``bench.workercpu``) / its
  vCPU share + the record's requests in sequence x ``request_s``. In-flight messages are capped
  at 120,000 per queue (never binding below 12,000 concurrency).
- **the table**: a run's start and finish write ``worker_wru_per_run`` write units (*measured*
  by the cost benchmark's worker phase), and batches start no faster than the table takes
  them: ``table_wru_per_s``, 4,000 for a new on-demand table, more once it has scaled or been
  pre-warmed (warm throughput), at most the per-table quota (40,000 by default, adjustable);
  and the index part of them (``worker_gsi_wru_per_run``) no faster than ``shards`` partitions
  of 1,000 write units a second take it.

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
ESM_START_CONCURRENCY = 5  # on-demand: first concurrent batches [4]
ESM_STEP_PER_MIN = 300  # on-demand: added per minute [4]
ESM_MAX = 1250  # on-demand, without MaximumConcurrency [4]
POLLER_INVOCATIONS = 10  # provisioned: 20,000 concurrency at 2,000 pollers [12]
PROVISIONED_STEP_PER_MIN = 1000  # provisioned: added per minute [12]
PROVISIONED_MAX = 20_000  # [12]
FUNCTION_STEP = 1000  # execution environments a function may add ... [F1]
FUNCTION_STEP_S = 10.0  # ... every 10 seconds [F1]
ACCOUNT_CONCURRENCY = 1000  # default quota [5]
NEW_TABLE_WRU_PER_S = 4000  # what a new on-demand table sustains before it has scaled [13]
WORKER_REQUESTS = 3  # a record's requests in sequence: BatchGetItem run+task, start, finish
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
    max_concurrency: int | None = 10  # MaximumConcurrency (None: unset, on-demand's 1,250)
    ramp: bool = True  # event source and function scaling (False: fixed local workers)
    min_pollers: int = 0  # provisioned mode's MinimumPollers (0: on-demand mode)
    max_pollers: int = 200
    provisioned_concurrency: int = 0  # worker environments kept initialised
    account_concurrency: int = ACCOUNT_CONCURRENCY
    queues: int = 1  # work queues the burst is spread over, one event source each
    # write units a second the table takes at once: a new on-demand table's 4,000, or its warm
    # throughput (raised ahead of a burst: pre-warming, under the per-table quota) [13]
    table_wru_per_s: float = NEW_TABLE_WRU_PER_S
    lead_s: float = 900.0  # the burst exists this long before it falls due
    gsi_wcu_per_claim: float = 2.0  # the claim moves the run in the due index: delete + put


@dataclass(frozen=True)
class Calibration:
    claim_cpu_s: float  # poller CPU per claim, on one local core
    request_s: float  # one DynamoDB/SQS round trip
    batch_s: float  # one worker invocation of 10 runs, on one local core
    init_s: float = 0.0  # a new worker environment's init (import), on one local core
    worker_wru_per_run: float = 0.0  # table + index write units of a run's start and finish
    worker_gsi_wru_per_run: float = 0.0  # of which the due index's (the finish removes the run)


def aws_batch_s(worker_cpu_s: float, request_s: float, handler_s: float = 0.0) -> float:
    """One invocation of 10 runs on one vCPU: the worker's CPU for each run (records run on
    threads of one interpreter, so their CPU adds up) + one record's requests in sequence (the
    records' round trips overlap) + the handler."""
    return CHUNK * worker_cpu_s + WORKER_REQUESTS * request_s + handler_s


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
    if cfg.ramp:  # a claim writes the run (1 unit) and moves its index item: the table's share
        rate = min(rate, cfg.table_wru_per_s / (1 + cfg.gsi_wcu_per_claim))
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


def event_source_limit(cfg: Config, since_s: float) -> int:
    """Concurrent invocations the event sources allow ``since_s`` after messages appeared."""
    if not cfg.ramp:
        return cfg.max_concurrency or ESM_MAX
    if cfg.min_pollers:
        cap = min(cfg.max_pollers * POLLER_INVOCATIONS, PROVISIONED_MAX)
        now = cfg.min_pollers * POLLER_INVOCATIONS + PROVISIONED_STEP_PER_MIN * since_s / 60
    else:
        cap = min(cfg.max_concurrency or ESM_MAX, ESM_MAX)
        now = ESM_START_CONCURRENCY + ESM_STEP_PER_MIN * since_s / 60
    return cfg.queues * int(min(cap, now))


def function_limit(cfg: Config, since_s: float) -> int:
    """Concurrent executions of the worker function: its initialised environments + Lambda's
    scaling rate, under the account's concurrency less the pollers."""
    account = cfg.account_concurrency - cfg.fanout
    if not cfg.ramp:
        return account
    grown = FUNCTION_STEP * (1 + math.floor(since_s / FUNCTION_STEP_S))
    return min(account, cfg.provisioned_concurrency + grown)


def _next_change(cfg: Config, since_s: float) -> float:
    """The next moment (since messages appeared) either limit may rise."""
    step = PROVISIONED_STEP_PER_MIN if cfg.min_pollers else ESM_STEP_PER_MIN
    esm = since_s + 60.0 / step
    fn = FUNCTION_STEP_S * (math.floor(since_s / FUNCTION_STEP_S) + 1)
    return min(esm, fn)


def simulate(cfg: Config, cal: Calibration, runs: int) -> dict[str, Any]:
    """Start lateness of ``runs`` runs due at t = 0 under ``cfg``."""
    sends = _send_times(cfg, cal, runs)
    visible = [max(0.0, s) for s in sends]  # DelaySeconds holds early ones until due
    vcpu_w = min(1.0, cfg.worker_mb / LAMBDA_MB_PER_VCPU) if cfg.ramp else 1.0
    batch_s, init_s = cal.batch_s / vcpu_w, cal.init_s / vcpu_w
    in_flight = cfg.queues * IN_FLIGHT_MAX // CHUNK
    busy: list[float] = []  # end times of running invocations (a heap)
    starts: list[float] = []
    environments = cfg.provisioned_concurrency if cfg.ramp else 10**9
    peak = 0
    # a batch's start and finish writes: batches start no faster than the table takes them
    # and the due index: each shard is one partition, 1,000 write units a second [7]
    write_gap = 0.0
    if cfg.ramp:
        write_gap = CHUNK * max(cal.worker_wru_per_run / cfg.table_wru_per_s,
                                cal.worker_gsi_wru_per_run / (cfg.shards * PARTITION_WCU_PER_S))
    writes_free = -math.inf
    i, t = 0, visible[0]
    t0 = visible[0]  # the event source starts scaling when messages appear
    while i < len(visible):
        while busy and busy[0] <= t:
            heapq.heappop(busy)
        allowed = min(event_source_limit(cfg, t - t0), function_limit(cfg, t - t0), in_flight)
        if visible[i] <= t and len(busy) < allowed and writes_free <= t:
            writes_free = max(writes_free, t - 1.0) + write_gap  # up to 1 s of writes at once
            cold = len(busy) >= environments  # no idle environment: a new one, with its init
            environments += cold
            begin = t + (init_s if cold else 0.0)
            starts.append(begin)
            heapq.heappush(busy, begin + batch_s)
            peak = max(peak, len(busy))
            i += 1
            continue
        # advance to the next moment something can change
        nxt = [visible[i]] if visible[i] > t else []
        if writes_free > t:
            nxt.append(writes_free)
        if busy:
            nxt.append(busy[0])
        if cfg.ramp:
            nxt.append(t0 + _next_change(cfg, t - t0))
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
        "peak_concurrency": peak,
        "worker_batch_s": round(batch_s, 3),
    }


# --- the configurations ------------------------------------------------------------------

# ShardCount 8, PollerMemorySize 1,769, WorkerMemorySize 512, MaximumConcurrency 10, 1 poller
DEFAULT = Config("template defaults", poller_mb=1769)
# What the template offers for a known burst: poller fan-out, one-vCPU workers, three work
# queues (WorkQueueCount) whose event sources are in provisioned mode at their largest floor,
# worker environments kept initialised (WorkerProvisionedConcurrency), the account's
# concurrency quota raised (a Service Quotas request) to hold them, and the table pre-warmed
# (warm throughput) for the runs' start and finish writes, under a raised per-table quota.
_FAST = {"shards": 512, "fanout": 64, "poller_mb": 1769, "worker_mb": 1769}
_PROVISIONED = {"max_concurrency": None, "min_pollers": 200, "max_pollers": 2000}
BURST = Config("burst: 512 shards x 64 pollers, workers 1,769 MB, WorkQueueCount 3 with "
               "MinimumPollers 200 / MaximumPollers 2,000, WorkerProvisionedConcurrency 6,000, "
               "account concurrency 7,000, table pre-warmed to 1,500,000 WRU/s", **_FAST,
               **_PROVISIONED, queues=3, provisioned_concurrency=6000, account_concurrency=7000,
               table_wru_per_s=1_500_000)
OTHERS = (
    Config("as burst, but 64 shards x 16 pollers: the due index's 64 partitions take the "
           "finishes", **{**_FAST, "shards": 64, "fanout": 16}, **_PROVISIONED, queues=3,
           provisioned_concurrency=6000, account_concurrency=7000, table_wru_per_s=1_500_000),
    Config("as burst, table pre-warmed to the default per-table quota, 40,000 WRU/s", **_FAST,
           **_PROVISIONED, queues=3, provisioned_concurrency=6000, account_concurrency=7000,
           table_wru_per_s=40_000),
    Config("as burst, table not pre-warmed (a new on-demand table: 4,000 WRU/s)", **_FAST,
           **_PROVISIONED, queues=3, provisioned_concurrency=6000, account_concurrency=7000),
    Config("as burst, without provisioned concurrency", **_FAST, **_PROVISIONED, queues=3,
           account_concurrency=7000,
           table_wru_per_s=1_500_000),
    Config("as burst, one work queue, 2,000 provisioned concurrency, account 5,000", **_FAST,
           **_PROVISIONED, provisioned_concurrency=2000, account_concurrency=5000,
           table_wru_per_s=1_500_000),
    Config("as burst, one work queue, no provisioned concurrency, account 5,000", **_FAST,
           **_PROVISIONED, account_concurrency=5000,
           table_wru_per_s=1_500_000),
    Config("on-demand: 512 x 64 pollers, workers 1,769 MB, MaximumConcurrency 1,000, account "
           "1,000", **_FAST, max_concurrency=1000),
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
    cores, worker_cpu_s (the worker's CPU per run, bench.workercpu), init_s (the worker's
    import); ``measured``: B -> (runs the local
    burst's poller sent, seconds it took): the prediction is for the same count, so a poll cut
    short by the due time is compared for what it did send."""
    fig = fig or {}
    aws = Calibration(claim_cpu_s=calibration["claim_cpu_s"], request_s=AWS_REQUEST_S,
                      batch_s=aws_batch_s(calibration["worker_cpu_s"], AWS_REQUEST_S),
                      init_s=calibration.get("init_s", 0.0),
                      worker_wru_per_run=calibration.get("worker_wru_per_run", 0.0),
                      worker_gsi_wru_per_run=calibration.get("worker_gsi_wru_per_run", 0.0))
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
        "sim_calibration": {**calibration, "aws_request_s": AWS_REQUEST_S,
                            "aws_batch_s": round(aws.batch_s, 4)},
        # EventBridge Scheduler: 1M invocations at its default 1,000/s take 1,000 s
        "sim_eventbridge_scheduler_1m_s": 1_000_000 / 1000,
    }


AWS_REQUEST_S = 0.008  # an assumption: DynamoDB's "single-digit millisecond" in-Region
