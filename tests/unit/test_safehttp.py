"""Http targets (safehttp.py) against a real http.server on 127.0.0.1, through the executor."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from dynacron import At, RetryPolicy, RunStatus
from dynacron.execute import Outcome, idempotency_key
from dynacron.safehttp import MAX_RESPONSE_BYTES, HttpPolicy, Refused, parse_retry_after
from dynacron.targets import Http, TargetInvoker

POLICY = RetryPolicy(max_attempts=4, backoff_base=2, backoff_max=300, jitter=0)
SECRET = "whsec-test-value"


class Hook:
    """A scripted receiver: what each path answers, and every request it got."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first = 2
        self.release = threading.Event()
        self.redirect_to = "http://169.254.169.254/latest/meta-data/"
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hook.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                getattr(hook, "answer_" + self.path.strip("/").replace("-", "_"))(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    @staticmethod
    def reply(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k.replace("_", "-"), v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def answer_flaky(self, h: BaseHTTPRequestHandler) -> None:
        if len(self.requests) <= self.fail_first:
            self.reply(h, 503, b"try later")
        else:
            self.reply(h, 200, b'{"accepted": true}', Content_Type="application/json")

    def answer_busy(self, h: BaseHTTPRequestHandler) -> None:
        self.reply(h, 429, b"slow down", Retry_After="30")

    def answer_bad(self, h: BaseHTTPRequestHandler) -> None:
        self.reply(h, 400, b"missing field")

    def answer_redirect(self, h: BaseHTTPRequestHandler) -> None:
        self.reply(h, 302, Location=self.redirect_to)

    def answer_gopher(self, h: BaseHTTPRequestHandler) -> None:
        self.reply(h, 301, Location="gopher://127.0.0.1:70/x")

    def answer_moved(self, h: BaseHTTPRequestHandler) -> None:
        self.reply(h, 307, Location="/flaky")

    def answer_loop(self, h: BaseHTTPRequestHandler) -> None:
        self.reply(h, 302, Location="/loop")

    def answer_slow(self, h: BaseHTTPRequestHandler) -> None:
        self.release.wait(10)
        self.reply(h, 200, b"late")

    def answer_big(self, h: BaseHTTPRequestHandler) -> None:
        self.reply(h, 200, b"x" * (4 * MAX_RESPONSE_BYTES))


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    h.thread.start()
    yield h
    h.release.set()
    h.server.shutdown()
    h.server.server_close()
    h.thread.join(5)


@pytest.fixture
def local(env):
    """The env's settings as ``dynacron local`` has them: plain http to loopback allowed."""
    return replace(env, settings=replace(env.settings, http_allow_loopback=True))


def schedule(env, target, payload=None, **kw):
    s = env.scheduler()
    t = s.schedule(
        target,
        payload or {"order": 42},
        trigger=At(env.clock.now() + timedelta(seconds=5)),
        retry=kw.pop("retry", POLICY),
        **kw,
    )
    (msg,) = [m for m in env.receive() if json.loads(m["Body"])["task_id"] == t.task_id]
    env.clock.advance(5)
    return s, t, msg


def attempt(env, msg, invoker=None, logger=None):
    executor = env.executor(targets=invoker or TargetInvoker(env.settings), logger=logger)
    return executor.execute(msg["Body"], msg["ReceiptHandle"], env.settings.queue_url)


def the_run(s, t):
    (run,) = s.runs(t.task_id)
    return run


# --- outcomes ------------------------------------------------------------------------------------


def test_fails_first_n_times_then_succeeds_with_the_same_key_and_a_valid_signature(local, hook):
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/hooks/secret", Value=SECRET, Type="SecureString"
    )
    target = Http(hook.url("flaky"), secret="ssm:/hooks/secret", headers={"X-Team": "ops"})
    s, t, msg = schedule(local, target)
    invoker = TargetInvoker(local.settings)
    outcomes = []
    for _ in range(3):
        outcomes.append(attempt(local, msg, invoker).outcome)
        local.clock.advance(1000)
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.ACK]
    run = the_run(s, t)
    assert run.status is RunStatus.SUCCEEDED and run.attempt == 3
    assert run.result == {"status_code": 200, "body": {"accepted": True}}
    key = idempotency_key(t.task_id, run.run_id)
    assert [r["headers"]["Idempotency-Key"] for r in hook.requests] == [key] * 3
    assert [r["headers"]["X-Dynacron-Attempt"] for r in hook.requests] == ["1", "2", "3"]
    for r in hook.requests:
        assert json.loads(r["body"]) == {"order": 42}
        assert r["headers"]["X-Team"] == "ops"
        stamp = r["headers"]["X-Dynacron-Timestamp"]
        mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + r["body"], hashlib.sha256)
        assert r["headers"]["X-Dynacron-Signature"] == "v1=" + mac.hexdigest()
        assert SECRET not in json.dumps(r["headers"])
    assert SECRET not in json.dumps([i for i in local.table_items()], default=str)


def test_429_retries_no_sooner_than_retry_after(local, hook):
    local.settings = replace(local.settings, heartbeat_s=0)  # backoff only (test_heartbeat.py)
    s, t, msg = schedule(local, Http(hook.url("busy")))
    res = attempt(local, msg)
    assert res.outcome is Outcome.RETRY
    assert local.sqs.visibility == [30]  # the backoff alone would be 2 s
    assert "HTTP 429" in the_run(s, t).error


def test_400_is_dead_at_once(local, hook):
    s, t, msg = schedule(local, Http(hook.url("bad")))
    assert attempt(local, msg).status == "dead"
    run = the_run(s, t)
    assert run.attempt == 1 and "HTTP 400" in run.error and "missing field" in run.error
    (dlq,) = local.receive("dlq")
    assert "http target refused the run" in json.loads(dlq["Body"])["reason"]


def test_redirect_to_the_metadata_address_is_refused(local, hook):
    s, t, msg = schedule(local, Http(hook.url("redirect")))
    assert attempt(local, msg).status == "dead"
    assert "169.254.169.254" in the_run(s, t).error and "refused" in the_run(s, t).error
    assert hook.paths() == ["/redirect"]


def test_redirect_to_a_name_resolving_to_a_private_address_is_refused(local, hook, monkeypatch):
    hook.redirect_to = "https://internal.example/steal"
    real = socket.getaddrinfo

    def fake(host, *args, **kw):
        if host == "internal.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 443))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    s, t, msg = schedule(local, Http(hook.url("redirect")))
    assert attempt(local, msg).status == "dead"
    assert "internal.example resolves to 10.0.0.5 (private)" in the_run(s, t).error


def test_redirect_to_another_scheme_is_refused(local, hook):
    s, t, msg = schedule(local, Http(hook.url("gopher")))
    assert attempt(local, msg).status == "dead"
    assert "not an http(s) URL" in the_run(s, t).error and hook.paths() == ["/gopher"]


def test_a_same_host_redirect_is_followed_and_rechecked(local, hook):
    hook.fail_first = 0
    s, t, msg = schedule(local, Http(hook.url("moved")))
    assert attempt(local, msg).status == "succeeded"
    assert hook.paths() == ["/moved", "/flaky"]
    assert hook.requests[1]["body"] == b'{"order":42}'  # 307 keeps method and body
    assert the_run(s, t).result["url"] == hook.url("flaky")


def test_endless_redirects_are_dead(local, hook):
    s, t, msg = schedule(local, Http(hook.url("loop")))
    assert attempt(local, msg).status == "dead"
    assert "redirects" in the_run(s, t).error and len(hook.requests) == 6


def test_slow_response_is_a_failed_attempt_within_the_timeout(local, hook):
    s, t, msg = schedule(local, Http(hook.url("slow")), timeout=0.5)
    res = attempt(local, msg)
    assert res.outcome is Outcome.RETRY
    assert "timed out" in the_run(s, t).error


def test_a_large_response_is_read_only_up_to_the_bound(local, hook):
    s, t, msg = schedule(local, Http(hook.url("big")))
    assert attempt(local, msg).status == "succeeded"
    body = the_run(s, t).result["body"]
    assert body.endswith("…") and len(body) <= 1025


def test_loopback_is_refused_outside_local_mode(env, hook):
    s, t, msg = schedule(env, Http(hook.url("flaky")))
    assert attempt(env, msg).status == "dead"
    assert "refused" in the_run(s, t).error and not hook.requests


def test_get_sends_no_body(local, hook):
    hook.fail_first = 0
    _, _, msg = schedule(local, Http(hook.url("flaky"), method="GET"))
    assert attempt(local, msg).status == "succeeded"
    assert hook.requests[0]["body"] == b"" and "Content-Type" not in hook.requests[0]["headers"]


# --- address policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "169.254.169.254",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.0.1",
        "127.0.0.1",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:169.254.169.254",
        "224.0.0.1",
    ],
)
def test_private_link_local_and_metadata_addresses_are_refused(ip):
    with pytest.raises(Refused):
        HttpPolicy().check_address("h", ipaddress.ip_address(ip))


def test_public_addresses_and_explicitly_allowed_networks_pass():
    HttpPolicy().check_address("h", ipaddress.ip_address("93.184.216.34"))
    allowed = HttpPolicy(allow_networks=(ipaddress.ip_network("10.0.0.0/8"),))
    allowed.check_address("h", ipaddress.ip_address("10.1.2.3"))
    with pytest.raises(Refused):
        allowed.check_address("h", ipaddress.ip_address("169.254.169.254"))


def test_a_name_with_any_private_address_is_refused_before_connecting(monkeypatch):
    from dynacron.safehttp import send
    from dynacron.targets import Attempt

    answers = [("93.184.216.34", 443), ("10.0.0.9", 443)]
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", sa) for sa in answers],
    )
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connected"))
    at = Attempt("t", "r", 1, "2026-01-01T00:00:00+00:00", "k")
    out = send(Http("https://mixed.example/x"), {}, at, None, HttpPolicy(), 5)
    assert out.dead and "10.0.0.9" in out.error


def test_plain_http_is_refused_except_to_allowed_loopback():
    lo = [ipaddress.ip_address("127.0.0.1")]
    HttpPolicy(allow_loopback=True).check_scheme("http://127.0.0.1/", lo)
    with pytest.raises(Refused):
        HttpPolicy().check_scheme("http://127.0.0.1/", lo)
    with pytest.raises(Refused):
        HttpPolicy(allow_loopback=True).check_scheme(
            "http://x/", [ipaddress.ip_address("93.184.216.34")]
        )


def test_retry_after_forms():
    from datetime import UTC, datetime

    assert parse_retry_after("120") == 120
    when = datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=when.timestamp() - 60) == 60
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("999999") == 12 * 3600


def test_nothing_of_the_payload_reaches_the_logs(local, hook, caplog):
    import logging

    caplog.set_level(logging.INFO)
    lines: list[str] = []

    class Logger:
        def __getattr__(self, level):
            return lambda message, extra=None: lines.append(f"{level} {message} {extra!r}")

    marker = {"card": "4111-PAYLOAD-MARKER"}
    hook.fail_first = 1
    _, _, msg = schedule(local, Http(hook.url("flaky")), payload=marker)
    assert attempt(local, msg, logger=Logger()).outcome is Outcome.RETRY
    local.clock.advance(10)
    assert attempt(local, msg, logger=Logger()).status == "succeeded"
    _, _, msg = schedule(local, Http(hook.url("bad")), payload=marker)
    assert attempt(local, msg, logger=Logger()).status == "dead"
    assert len(lines) >= 4
    assert "PAYLOAD-MARKER" not in "\n".join(lines) + caplog.text
