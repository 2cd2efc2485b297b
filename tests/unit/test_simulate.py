"""bench/simulate.py against figures worked out by hand from the AWS rules it models."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: bench/

from bench.simulate import Calibration, Config, aws_batch_s, claim_rate, simulate

CAL = Calibration(claim_cpu_s=0.004, request_s=0.008, batch_s=1.0)


def test_the_poller_is_cpu_bound_by_its_memory_share():
    # 1,769 MB is one vCPU: 1 / 4 ms = 250 claims/s; 884.5 MB is half: 125/s
    assert round(claim_rate(Config("a", poller_mb=1769), CAL)) == 250
    assert round(claim_rate(Config("b", poller_mb=884), CAL), 0) == 125
    # more memory than one vCPU buys nothing for one interpreter
    one_vcpu = claim_rate(Config("a", poller_mb=1769), CAL)
    assert claim_rate(Config("c", poller_mb=3538), CAL) == one_vcpu


def test_the_partition_write_limit_caps_a_shard():
    fast = Calibration(claim_cpu_s=1e-6, request_s=1e-6, batch_s=1.0)
    # one shard per poller: 1,000 WCU/s / 2 WCU per claim = 500 claims/s
    assert claim_rate(Config("p", shards=4, fanout=4, poller_mb=1769), fast) == 500


def test_fixed_workers_start_batches_at_their_rate_after_the_due_time():
    # a burst sent long before it is due; 10 fixed slots of 1 s per batch of 10: 100 runs/s
    cfg = Config("w", poller_mb=1769, ramp=False, max_concurrency=10)  # local: 1 s a batch
    res = simulate(cfg, CAL, 10_000)
    assert res["sent_before_due"] == 1.0
    assert 98 <= res["last_start_s"] <= 100  # 1,000 batches / 10 slots x 1 s, the first at 0


def test_the_event_source_ramp_adds_300_per_minute_from_5():
    # unlimited runs due at once, batches of 1 s: in the first minute the concurrency climbs from
    # 5 to 305, so ~ the integral: 60 s x (5 + 305) / 2 = 9,300 batches start within 60 s
    cfg = Config("r", poller_mb=1769, worker_mb=1769, max_concurrency=1000, shards=256, fanout=64)
    res = simulate(cfg, CAL, 93_000)
    assert 57 <= res["last_start_s"] <= 63, res


FAST_SEND = {"poller_mb": 1769, "worker_mb": 1769, "shards": 256, "fanout": 64}


def _provisioned(**kw):
    base = {**FAST_SEND, "max_concurrency": None, "min_pollers": 200, "max_pollers": 2000,
            "account_concurrency": 100_000}
    return Config("p", **{**base, **kw})


def test_without_warm_environments_the_function_adds_1000_every_10_s():
    # provisioned pollers allow 3 x 2,000 at once, but a function grows by 1,000 environments
    # per 10 s: batches of 100 s each start 1,000 at 0, 1,000 at 10 s, 1,000 at 20 s
    slow = Calibration(claim_cpu_s=0.004, request_s=0.008, batch_s=100.0)
    res = simulate(_provisioned(queues=3), slow, 30_000)
    assert res["sent_before_due"] == 1.0
    assert res["last_start_s"] == 20.0 and res["peak_concurrency"] == 3000


def test_provisioned_pollers_take_10_invocations_each_from_the_first_second():
    # 200 pollers x 10 = 2,000 concurrent invocations at once; 2,000 initialised environments
    # + 1,000 the function may add: the event source is the bound. 3,000 batches of 1 s:
    # 2,000 start at 0 and the other 1,000 at 1 s (the pollers add ~17 a second, not 1,000)
    res = simulate(_provisioned(provisioned_concurrency=2000), CAL, 30_000)
    assert res["p50_s"] == 0.0 and res["last_start_s"] == 1.0
    # ... and before the first ones end at 1 s, the pollers' +1,000/min added 16 more
    assert res["peak_concurrency"] == 2000 + int(1000 * 0.96 / 60)


def test_a_new_environment_starts_its_batch_after_the_worker_init():
    cal = Calibration(claim_cpu_s=0.004, request_s=0.008, batch_s=1.0, init_s=0.5)
    # 1,769 MB worker: one vCPU, so the init is not scaled
    assert simulate(_provisioned(), cal, 10)["p50_s"] == 0.5
    assert simulate(_provisioned(provisioned_concurrency=1), cal, 10)["p50_s"] == 0.0


def test_the_account_concurrency_less_the_pollers_caps_the_workers():
    res = simulate(_provisioned(account_concurrency=1000, fanout=16, provisioned_concurrency=5000),
                   CAL, 50_000)
    assert res["peak_concurrency"] == 1000 - 16


def test_the_aws_batch_adds_the_records_cpu_and_one_records_requests():
    # 10 records x 20 ms on one interpreter + 3 requests in sequence x 8 ms
    assert round(aws_batch_s(0.020, 0.008), 3) == round(10 * 0.020 + 3 * 0.008, 3)


def test_batches_start_no_faster_than_the_table_takes_their_writes():
    # 1,000 WRU/s, 1 WRU per run: 100 batches of 10 a second, after the first second's 100;
    # 1,000 batches: the last starts 9 s after the first
    cal = Calibration(claim_cpu_s=0.004, request_s=0.008, batch_s=1.0, worker_wru_per_run=1.0)
    res = simulate(_provisioned(provisioned_concurrency=5000, table_wru_per_s=1000), cal, 10_000)
    assert 8.9 <= res["last_start_s"] <= 9.0, res
    fast = simulate(_provisioned(provisioned_concurrency=5000, table_wru_per_s=1e9), cal, 10_000)
    assert fast["last_start_s"] == 0.0  # 2,000 invocations at once hold all 1,000 batches
