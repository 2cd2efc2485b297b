"""What every benchmark needs: a backend server, a fresh deployment on it, request counting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DynacronBench")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "dynacron-bench")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def log(*parts: Any) -> None:
    """Progress goes to stderr; stdout carries only the final JSON."""
    print("[bench]", *parts, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen | None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


@contextmanager
def backend(kind: str) -> Iterator[str]:
    """Start a server and yield its endpoint URL.

    ``moto``: the server of ``dynacron local`` (``dynacron.local.server.ServerProcess``: moto in
    a child process with ``dynacron.local.motofix`` applied, DynamoDB requests serialized);
    ``ministack``: ministack (hypercorn) in a subprocess.
    """
    if kind == "moto":
        from dynacron.local.server import ServerProcess

        with ServerProcess() as server:
            yield server.endpoint_url
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    if kind == "ministack":
        env.update(GATEWAY_PORT=str(port), BIND_HOST="127.0.0.1", LOG_LEVEL="WARNING",
                   TMPDIR=env.get("TMPDIR", "/tmp"))
        cmd = [sys.executable, "-c", "import sys; from ministack.app import main; "
               "sys.argv=['ministack']; sys.exit(main())"]
    else:
        raise ValueError(kind)
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_port(port, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def boto_client(service: str, endpoint: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service, region_name=REGION, endpoint_url=endpoint,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(max_pool_connections=64, retries={"mode": "standard", "max_attempts": 6},
                      **config),
    )


def deploy(endpoint: str, shards: int = 8, **overrides: Any) -> Any:
    """A fresh table + queues (unique names) from template.yaml; returns dynacron Settings."""
    from dynacron.local.provision import find_template, load_template, provision
    from dynacron.settings import Settings

    ddb, sqs = boto_client("dynamodb", endpoint), boto_client("sqs", endpoint)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    res = provision(ddb, sqs, load_template(find_template()), prefix=prefix)
    return Settings(table_name=res.table_name, queue_url=res.queue_url, dlq_url=res.dlq_url,
                    lane_queues=dict(res.lane_queues), endpoint_url=endpoint, region=REGION,
                    shards=shards, **overrides)


def store_clients(store: Any) -> list[Any]:
    """The botocore DynamoDB clients of a Store (PynamoDB keeps one per model class)."""
    out = []
    for model in (store.models.Run, store.models.Task):
        client = model._get_connection().connection.client
        if all(client is not c for c in out):
            out.append(client)
    return out


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]


class RequestCounter:
    """Counts API calls by (service, operation) through botocore's ``before-call`` event."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        self.enabled = True
        self.observers: list[Any] = []
        self.http_attempts = 0  # HTTP requests sent, retries included

    def attach(self, client: Any) -> Any:
        service = client.meta.service_model.service_name
        client.meta.events.register(f"before-call.{service}", self._count)
        client.meta.events.register(f"before-parameter-build.{service}", self._before)
        client.meta.events.register(f"after-call.{service}", self._after)
        client.meta.events.register(f"before-send.{service}", self._sent)
        return client

    def _sent(self, **_: Any) -> None:
        with self.lock:
            self.http_attempts += 1

    def _count(self, model: Any, **_: Any) -> None:
        if self.enabled:
            with self.lock:
                self.counts[(model.service_model.service_name, model.name)] += 1

    def _before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if not self.enabled:
            return
        for obs in self.observers:
            obs.before(model.service_model.service_name, model.name, params)

    def _after(self, model: Any, parsed: dict[str, Any], **kwargs: Any) -> None:
        if not self.enabled:
            return
        for obs in self.observers:
            obs.after(model.service_model.service_name, model.name, parsed)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {f"{s}.{o}": n for (s, o), n in sorted(self.counts.items())}

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.http_attempts = 0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` (0.0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
