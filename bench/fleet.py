"""Worker and poller processes for the benchmarks that run against a plain backend (ministack).

A worker process plays Lambda's SQS event source for one function: ``threads`` receive loops,
each turning up to 10 messages into the event Lambda would build and handing it to
``batch.process_event`` (the worker Lambda's own code), then deleting what succeeded. A poller
process calls ``Dispatcher.poll`` once after another, as the every-minute Lambda would with a
backlog. Both are separate processes so that a worker can be killed with SIGKILL (crash
recovery) and the poller's peak RSS is its own (the burst benchmark).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

CTX = multiprocessing.get_context("spawn")


def _worker_main(settings: Any, threads: int, ready: Any, idle_poll_s: float = 0.0) -> None:
    import bench.handlers  # noqa: F401  (registers bench-noop)
    from dynacron.aws import sqs_client
    from dynacron.batch import process_event, sqs_event
    from dynacron.execute import Executor
    from dynacron.local.runtime import LambdaContext
    from dynacron.store import Store

    sqs = sqs_client(settings)
    executor = Executor(Store(settings), sqs, settings)
    attrs = sqs.get_queue_attributes(QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])
    arn = attrs["Attributes"]["QueueArn"]
    pool = ThreadPoolExecutor(max_workers=10 * threads, thread_name_prefix="bench-record")

    flowing = threading.Event()  # idle_poll_s: the leader saw messages, the others join in

    def receive(lead: bool) -> list[dict[str, Any]]:
        if idle_poll_s and not lead:
            flowing.wait()
        got = sqs.receive_message(
            QueueUrl=settings.queue_url, MaxNumberOfMessages=10,
            WaitTimeSeconds=0 if idle_poll_s else 1, AttributeNames=["All"]).get("Messages", [])
        if idle_poll_s and lead:
            (flowing.set if got else flowing.clear)()
        if idle_poll_s and not got:
            time.sleep(idle_poll_s)
        return got

    def loop(lead: bool) -> None:
        while True:
            try:
                got = receive(lead)
            except Exception:  # the backend is going away at the end of a benchmark
                time.sleep(0.5)
                continue
            if not got:
                continue
            event = sqs_event(got, arn, settings.region)
            try:
                response = process_event(event, LambdaContext(), executor, pool=pool)
            except Exception:  # a function error: nothing is deleted, as on Lambda
                continue
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            done = [m for m in got if m["MessageId"] not in failed]
            if done:
                try:
                    sqs.delete_message_batch(QueueUrl=settings.queue_url, Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done)])
                except Exception:  # redelivered later; the fence makes it a no-op
                    pass

    for i in range(threads):
        threading.Thread(target=loop, args=(i == 0,), name=f"bench-receive-{i}",
                         daemon=True).start()
    ready.set()
    threading.Event().wait()  # until killed


class Workers:
    """``processes`` worker processes of ``threads`` receive loops each.

    ``idle_poll_s`` > 0: short polls instead of 1 s long polls, and while a process finds
    nothing only one of its loops polls, every ``idle_poll_s`` x ``processes`` (so the fleet
    polls an empty queue once per ``idle_poll_s``); the others join when it gets messages.
    For the burst benchmark: ministack answers every ReceiveMessage check (each 100 ms of a
    long poll) with four passes over every message in the queue
    (``ministack/services/sqs.py``: ``_expire_retained``, ``_dlq_sweep``, ``_collect_msgs``),
    29 ms at 20,000 delayed messages and 147 ms at 100,000 measured here, so eight idle long
    polls over a queue holding a burst that is not due yet took the emulator's whole core away
    from the poller's claims. SQS's cost does not grow so; the Lambda event source's pollers
    are not ours to slow down.
    """

    def __init__(self, settings: Any, processes: int = 2, threads: int = 4,
                 idle_poll_s: float = 0.0) -> None:
        self.settings = settings
        self.procs: list[Any] = []
        self.n, self.threads, self.idle_poll_s = processes, threads, idle_poll_s

    def start(self) -> Workers:
        for _ in range(self.n):
            self.spawn()
        return self

    def spawn(self) -> Any:
        ready = CTX.Event()
        proc = CTX.Process(target=_worker_main,
                           args=(self.settings, self.threads, ready,
                                 self.idle_poll_s * self.n),
                           daemon=True)
        proc.start()
        if not ready.wait(60):
            proc.kill()
            raise RuntimeError("a worker process did not start")
        self.procs.append(proc)
        return proc

    def kill(self, proc: Any) -> None:
        """SIGKILL: no handler, no finally, no ack runs; what it held is only in its leases."""
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        self.procs.remove(proc)

    def stop(self) -> None:
        for proc in list(self.procs):
            self.kill(proc)


def peak_rss_kb() -> int:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries it over fork and
    exec, so a spawned child would report its parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _poller_main(settings: Any, until_ts: float, expected: int, page_size: int, out: Any) -> None:
    """Poll one poll after another until ``expected`` runs were sent or ``until_ts``; report
    what was sent, when, the peak RSS and this process's CPU per claim."""
    from dynacron.aws import sqs_client
    from dynacron.dispatch import Dispatcher
    from dynacron.store import Store

    dispatcher = Dispatcher(Store(settings), sqs_client(settings), settings, page_size=page_size)
    base_kb = peak_rss_kb()
    sent = polls = 0
    polls_log = []
    cpu0, t0 = time.process_time(), time.time()
    while sent < expected and time.time() < until_ts:
        start = time.time()
        report = dispatcher.poll(time_left=lambda: max(0.0, until_ts - time.time()))
        polls += 1
        sent += report.sent
        polls_log.append({"start": round(start, 3), "end": round(time.time(), 3),
                          **report.as_dict()})
        if report.sent == 0:
            time.sleep(1.0)  # nothing to send yet (canaries still ahead): the next tick
    out.put({"sent": sent, "polls": polls, "peak_rss_kb": peak_rss_kb(),
             "rss_after_import_kb": base_kb, "cpu_s": round(time.process_time() - cpu0, 3),
             "wall_s": round(time.time() - t0, 3), "polls_log": polls_log[-50:],
             "last_send_ts": polls_log[-1]["end"] if polls_log else t0})


def poll_in_child(settings: Any, until_ts: float, expected: int, page_size: int = 500) -> Any:
    """Start the poller process; returns (process, result queue)."""
    out = CTX.Queue()
    proc = CTX.Process(target=_poller_main, args=(settings, until_ts, expected, page_size, out))
    proc.start()
    return proc, out


def backend_pid() -> int | None:
    """The pid of this process's ministack child (bench.common.backend starts it), if any."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = fh.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if ppid == me and b"ministack" in cmd:
            return int(entry)
    return None


class LatencyProbe:
    """Times one small DynamoDB request (a GetItem of a key that does not exist) every
    ``every_s`` seconds while running: the round trip the poller's claims see, under the same
    load, measured in the same run."""

    def __init__(self, endpoint: str, table: str, every_s: float = 0.5) -> None:
        from .common import boto_client

        self.ddb = boto_client("dynamodb", endpoint)
        self.table, self.every_s = table, every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    _KEY = {"pk": {"S": "T#latency-probe"}, "sk": {"S": "PROBE"}}

    def _sample(self) -> float | None:
        t0 = time.perf_counter()
        try:
            self.ddb.get_item(TableName=self.table, Key=self._KEY)
        except Exception:
            return None
        return time.perf_counter() - t0

    def idle_s(self, samples: int = 21) -> float:
        """The median round trip before the load starts: what a request costs by itself.
        (Under load the probe waits behind the poller's own requests: a model fed that
        latency counts the backend's saturation twice, once as CPU and once as latency.)"""
        from .common import percentile

        got = [x for x in (self._sample() for _ in range(samples)) if x is not None]
        return percentile(got, 50)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            sample = self._sample()
            if sample is not None:
                self.samples.append(sample)

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def median_s(self) -> float | None:
        if not self.samples:
            return None
        return sorted(self.samples)[len(self.samples) // 2]
