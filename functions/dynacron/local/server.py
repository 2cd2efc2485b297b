"""The embedded moto server of ``dynacron local``.

``moto.server.ThreadedMotoServer`` answers each HTTP request on its own thread. moto's DynamoDB
backend is not safe under that concurrency: ``TransactWriteItems`` deep-copies every table it
touches before applying and, when a condition fails, restores that copy, which silently reverts
whatever another thread wrote in between (a run marked ``succeeded`` by a worker would become
``running`` again after a poller lost a claim race), and a deep copy taken while another thread
inserts an item can fail outright. So this server serializes DynamoDB requests with one lock,
which is what a single real table partition looks like from the outside anyway. SQS requests
are not serialized: a long-polling ReceiveMessage must not hold up everything else.
"""

from __future__ import annotations

import errno
import logging
import socket
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


class _SerializeDynamoDB:
    """WSGI middleware: one DynamoDB request at a time (see the module docstring)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            # moto builds the whole body inside the call; materialize it under the lock.
            return list(self.app(environ, start_response))


class LocalMotoServer(ThreadedMotoServer):
    """``ThreadedMotoServer`` with DynamoDB serialized, quiet logs and port 0 (any free port)."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self._startup_error: BaseException | None = None

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = _SerializeDynamoDB(DomainDispatcherApplication(create_backend_app))
        try:
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
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
