"""The embedded moto server of ``dynacron local``.

``moto.server.ThreadedMotoServer`` answers each HTTP request on its own thread. moto's DynamoDB
backend is not safe under that concurrency: ``TransactWriteItems`` deep-copies every table it
touches before applying and, when a condition fails, restores that copy, which silently reverts
whatever another thread wrote in between (a run marked ``succeeded`` by a worker would become
``running`` again after a poller lost a claim race), and a deep copy taken while another thread
inserts an item can fail outright. So this server serializes DynamoDB requests with one lock,
which is what a single real table partition looks like from the outside anyway. SQS requests
are not serialized: a long-polling ReceiveMessage must not hold up everything else.

The server runs in a child process of ``dynacron local`` (``ServerProcess``, running
``python -m dynacron.local.server``), not on a thread beside the poller and the workers: moto
answering a request is pure-Python work, and in one process it competes for the GIL with the
poller and workers it serves (py-spy: two thirds of the busy core was moto). In its own
interpreter it has a core to itself. It runs with ``local.motofix`` applied (moto's cost at
thousands of items, not its behaviour), and it exits when its parent does: it watches its stdin,
a pipe from the parent, and stops at end of file, so a ``kill -9`` of ``dynacron local`` leaves
no server behind.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.server import ThreadedMotoServer


class PortInUse(OSError):
    """The requested port is taken (another ``dynacron local`` running?)."""


def check_port(host: str, port: int) -> None:
    """Raise ``PortInUse`` if ``host:port`` cannot be bound (ThreadedMotoServer would hang)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(exc.errno, f"port {port} on {host} is not available") from None
            raise


class _Serialize:
    """WSGI middleware: DynamoDB requests one at a time, straight to moto's handler; other
    services through moto's app, one at a time too if ``serialize_all``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], serialize_all: bool = False) -> None:
        self.app = app
        self.serialize_all = serialize_all
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        dynamodb = environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_")
        if not dynamodb and not self.serialize_all:
            return self.app(environ, start_response)
        with self.lock:
            # moto builds the whole body inside the call; materialize it under the lock.
            return list((_dynamodb if dynamodb else self.app)(environ, start_response))


def _dynamodb(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A DynamoDB request straight to moto's handler, as moto's Flask view would pass it.

    moto routes every request through a Flask app per service (URL map, request context, CORS
    headers) only to reach ``DynamoHandler.dispatch`` with the request, its URL and headers: a
    third of a GetItem's time in the server (cProfile). This calls it directly, with the same
    request class and the same handling of a ``ClientError``.
    """
    from botocore.exceptions import ClientError
    from moto.dynamodb.responses import DynamoHandler
    from moto.moto_server.werkzeug_app import BackendRequest
    from werkzeug.wrappers import Response

    request = BackendRequest(environ)
    try:
        status, headers, body = DynamoHandler.dispatch(
            request, request.raw_url, dict(request.headers)
        )
    except ClientError as exc:
        status, headers, body = 400, {}, exc.response["Error"]["Message"]
    return Response(response=body, status=status, headers=headers)(environ, start_response)


class LocalMotoServer(ThreadedMotoServer):
    """``ThreadedMotoServer`` with requests serialized, quiet logs, port 0 = any free port.

    ``serialize_all`` also serializes SQS (the tests' servers, which never long-poll).
    """

    def __init__(
        self, ip_address: str = "127.0.0.1", port: int = 0, serialize_all: bool = False
    ) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self._startup_error: BaseException | None = None
        self._serialize_all = serialize_all

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            # (werkzeug closes every connection after its response, HTTP/1.1 or not: each
            # request costs a TCP handshake and a server thread. Keeping connections open
            # would mean draining bodies the app left unread; not worth it at ~10%.)

            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # one formatted line per request otherwise, even when not shown

        app = _Serialize(DomainDispatcherApplication(create_backend_app), self._serialize_all)
        try:
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=QuietHandler
            )
        except BaseException as exc:  # reported by start()
            self._startup_error = exc
            self._server_ready_event.set()
            return
        self._server_ready_event.set()
        self._server.serve_forever()

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        check_port(self._ip_address, self._port)
        super().start()
        if self._startup_error is not None:
            raise PortInUse(errno.EADDRINUSE, str(self._startup_error))

    @property
    def port(self) -> int:
        return int(self.get_host_and_port()[1])

    @property
    def endpoint_url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"


READY_PREFIX = "dynacron-local-server ready "
EXIT_PORT_IN_USE = 3  # the child's exit status when its port is taken
START_TIMEOUT_S = 60.0


class ServerProcess:
    """``LocalMotoServer`` in a child interpreter: ``start()``, ``endpoint_url``, ``stop()``,
    or ``with ServerProcess() as server:``."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0, stock: bool = False) -> None:
        self.host = ip_address
        self._port = port
        self._stock = stock  # no motofix: the reference the patched server is compared with
        self._proc: subprocess.Popen[str] | None = None
        self.patches: frozenset[str] = frozenset()  # the motofix fixes active in the child

    def start(self) -> None:
        check_port(self.host, self._port)  # a clear error before spending a second on imports
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "dynacron.local.server", "--host", self.host,
             "--port", str(self._port), *(["--stock"] if self._stock else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self._proc.stdout is not None
        ready = _read_line(self._proc.stdout, START_TIMEOUT_S)
        if not ready.startswith(READY_PREFIX):
            code = _exit_code(self._proc)
            self.stop()
            message = ready.strip() or "exited before it was ready"
            if code == EXIT_PORT_IN_USE:  # taken between check_port and the child's bind
                raise PortInUse(errno.EADDRINUSE, message)
            raise RuntimeError(f"the local moto server did not start: {message}")
        port, _, patches = ready[len(READY_PREFIX):].strip().partition(" patches=")
        self._port = int(port)
        self.patches = frozenset(filter(None, patches.split(",")))

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (for CPU accounting and tests)."""
        return None if self._proc is None else self._proc.pid

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()  # end of file: the server's cue to exit
            proc.wait(timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


def _exit_code(proc: subprocess.Popen[str], timeout_s: float = 5.0) -> int | None:
    """The child's exit status once it has exited (None if it is still running)."""
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return None


def _read_line(stream: Any, timeout_s: float) -> str:
    """One line from ``stream``, or "" after ``timeout_s`` (readline alone could block forever)."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return box[0] if box else ""


def serve(host: str, port: int, serialize_all: bool = False, stock: bool = False) -> None:
    """The child: patched moto (stock moto with ``stock``), serialized DynamoDB, until stdin
    closes."""
    import signal

    from .motofix import patch_moto

    # Ctrl-C, and a SIGTERM sent to the process group (`timeout 15 dynacron local`, systemd,
    # docker stop), reach this child too; the parent's graceful stop still needs the server,
    # and without it the parent's clients retried a dead endpoint for ~100 s. The child exits
    # when its stdin closes, i.e. when the parent stops it or dies, even by kill -9.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    patches = frozenset() if stock else patch_moto()
    server = LocalMotoServer(host, port, serialize_all=serialize_all)
    try:
        server.start()
    except PortInUse as exc:
        print(f"port {port} on {host} is not available: {exc.strerror or exc}", flush=True)
        sys.exit(EXIT_PORT_IN_USE)
    print(f"{READY_PREFIX}{server.port} patches={','.join(sorted(patches))}", flush=True)
    sys.stdin.read()  # returns at end of file: the parent stopped or died
    os._exit(0)  # request threads may be mid-response to a parent that is gone


def _main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dynacron.local.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--serialize-all", action="store_true",
                        help="one request at a time for SQS too (no long polls expected)")
    parser.add_argument("--stock", action="store_true", help="without local.motofix")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.serialize_all, args.stock)


if __name__ == "__main__":
    _main()
