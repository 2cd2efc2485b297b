"""bench/simulate.py against figures worked out by hand from the AWS rules it models."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: bench/

from bench.simulate import Calibration, Config, claim_rate, simulate

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
