"""Two independent DynamoDB+SQS emulators on loopback: moto's threaded server and ministack.

Both run as child processes of the test session on a free 127.0.0.1 port and are stopped at its
end. ``start_moto()`` runs the server of ``dynacron local`` (``dynacron.local.server``: moto's
``ThreadedMotoServer`` with requests applied one at a time, as a DynamoDB item's writes are,
and ``dynacron.local.motofix``'s fixes to moto's cost) with SQS serialized too;
``start_ministack()`` runs ``python -m ministack`` limited to DynamoDB and SQS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    name: str
    url: str
    stop: Callable[[], None]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen, url: str, probe: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url + probe, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"no server on {url} after {timeout_s}s; see {log}")
        time.sleep(0.05)


def _spawn(name: str, argv: list[str], env: dict[str, str], probe: str, port: int) -> Server:
    logdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    log = (logdir / "server.log").open("wb")
    proc = subprocess.Popen(
        argv,
        env={**env, "TMPDIR": str(logdir)},
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=TESTS_DIR,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(proc, url, probe, logdir / "server.log", 60.0)

    def stop() -> None:
        try:
            proc.stdin.close()  # type: ignore[union-attr] - moto's child ends on EOF
            proc.wait(3)
        except (OSError, subprocess.TimeoutExpired):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()

    return Server(name, url, stop)


def start_moto() -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "dynacron.local.server", "--port", str(port), "--serialize-all"]
    return _spawn("moto", argv, dict(os.environ), "/moto-api/", port)


def start_ministack(services: str = "dynamodb,sqs") -> Server:
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "SERVICES": services,
        "LOG_LEVEL": "WARNING",
        "IOT_MTLS_ENABLED": "0",
        "SFTP_ENABLED": "0",
    }
    return _spawn("ministack", [sys.executable, "-m", "ministack"], env, "/_ministack/health", port)


STARTERS = {"moto": start_moto, "ministack": start_ministack}
