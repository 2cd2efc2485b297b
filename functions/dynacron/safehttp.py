"""The HTTP client of ``Http`` targets: https only, no private addresses, bounded, signed.

Safety rules (each one a refusal the run records as ``dead`` with the reason):

* ``https`` only; plain ``http`` only to a loopback address when loopback is allowed (``dynacron
  local`` allows it; ``DYNACRON_HTTP_ALLOW_LOOPBACK=1`` elsewhere).
* The host is resolved once per request and **every** address it resolves to is checked: private
  (RFC 1918, ULA), loopback, link-local (``169.254.0.0/16``, the cloud metadata service),
  shared, multicast, reserved and unspecified addresses are refused unless a network in
  ``DYNACRON_HTTP_ALLOW_NETWORKS`` (CIDRs) contains them. The connection then goes to the
  checked address (no second lookup for DNS rebinding to exploit); TLS still verifies the name.
* Redirects (301, 302, 303, 307, 308) are followed at most ``MAX_REDIRECTS`` times, each one
  checked by the same rules; a redirect to another host drops the task's own headers.
* The whole attempt (all redirects) ends at the task's timeout; at most ``MAX_RESPONSE_BYTES`` of
  a response are read, and ``MAX_ANSWER_CHARS`` of it kept on the run.

Outcomes: 2xx succeeds; 408, 429, 5xx, a timeout or a connection error is a failed attempt
(``Retry-After`` in seconds or as an HTTP date is honoured as the least backoff); any other 4xx,
a refused address or too many redirects is dead.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlparse

from .errors import ValidationError

MAX_REDIRECTS = 5
MAX_RESPONSE_BYTES = 64 * 1024
MAX_ANSWER_CHARS = 1024
#: A Retry-After beyond this is capped (SQS visibility cannot hide a message longer).
MAX_RETRY_AFTER_S = 12 * 3600.0
USER_AGENT = "dynacron"
_REDIRECTS = (301, 302, 303, 307, 308)
_RETRY_STATUS = (408, 429)
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The request may not be sent (scheme, address, redirect): the run is dead."""


def check_url_syntax(field_name: str, url: object) -> str:
    """What can be checked without the network: an absolute http(s) URL without credentials."""
    if not isinstance(url, str) or len(url) > 2048:
        raise ValidationError(field_name, "must be a URL string of at most 2048 characters")
    parts = urlparse(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationError(field_name, f"must be an https:// URL, got {url!r}")
    if parts.username or parts.password:
        raise ValidationError(field_name, "must not carry credentials (use secret= to sign)")
    if any(c in url for c in "\r\n\0 "):
        raise ValidationError(field_name, "must not contain spaces or control characters")
    return url


@dataclass(frozen=True)
class HttpPolicy:
    """Which destinations are allowed beyond public https ones."""

    allow_loopback: bool = False
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> HttpPolicy:
        nets = tuple(
            ipaddress.ip_network(n, strict=False)
            for n in getattr(settings, "http_allow_networks", ()) or ()
        )
        return cls(bool(getattr(settings, "http_allow_loopback", False)), nets)

    def check_address(self, host: str, ip: IPAddress) -> None:
        if any(ip in net for net in self.allow_networks):
            return
        if ip.is_loopback and self.allow_loopback:
            return
        kind = _forbidden_kind(ip)
        if kind:
            raise Refused(f"{host} resolves to {ip} ({kind}): refused (not an allowed network)")

    def check_scheme(self, url: str, addresses: list[IPAddress]) -> None:
        scheme = urlparse(url).scheme
        if scheme == "https":
            return
        if (
            scheme == "http"
            and self.allow_loopback
            and addresses
            and all(ip.is_loopback for ip in addresses)
        ):
            return
        raise Refused(f"{scheme}:// refused: https only (plain http only to loopback, locally)")


def _forbidden_kind(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _forbidden_kind(ip.ipv4_mapped)
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local / metadata", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("shared address space", ip in ipaddress.ip_network("100.64.0.0/10")),
    )
    return next((name for name, hit in checks if hit), None)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal IP resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if ip not in seen:
            seen.append(ip)
    return seen


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), capped; None if absent/bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(MAX_RETRY_AFTER_S, seconds))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 over ``"<timestamp>.<body>"`` (the receiver recomputes it)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


# --- one request ---------------------------------------------------------------------------


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an address checked beforehand while TLS verifies the URL's host name."""

    def __init__(self, host: str, ip: str, port: int, timeout: float, context: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=context)
        self._ip = ip
        self._tls = context  # http.client keeps it too, but under a private name

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, ip: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


@dataclass
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool


def _request_once(
    url: str,
    method: str,
    headers: dict[str, str],
    body: bytes | None,
    policy: HttpPolicy,
    deadline: float,
    context: ssl.SSLContext | None,
) -> _Response:
    parts = urlparse(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise Refused(f"{url[:200]!r} refused: not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if host.lower() in _LOOPBACK_NAMES:
        addresses: list[IPAddress] = [ipaddress.ip_address("127.0.0.1")]
    else:
        addresses = resolve(host, port)
    if not addresses:
        raise Refused(f"{host} does not resolve")
    for ip in addresses:  # all of them: a name with one private address is refused
        policy.check_address(host, ip)
    policy.check_scheme(url, addresses)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    pinned = str(addresses[0])
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = _PinnedHTTPSConnection(
            host, pinned, port, remaining, context or ssl.create_default_context()
        )
    else:
        conn = _PinnedHTTPConnection(host, pinned, port, remaining)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data, truncated = _read_bounded(resp, conn, deadline)
        return _Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, truncated)
    finally:
        conn.close()


def _read_bounded(
    resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, deadline: float
) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_RESPONSE_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out reading the response")
        if conn.sock is not None:
            conn.sock.settimeout(remaining)
        chunk = resp.read1(min(16384, MAX_RESPONSE_BYTES - size)) if hasattr(resp, "read1") else b""
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), True  # the rest is never read


def send(
    target: Any,
    payload: dict[str, Any],
    attempt: Any,
    secret: str | None,
    policy: HttpPolicy,
    budget_s: float,
    context: ssl.SSLContext | None = None,
) -> Any:
    """One attempt at an ``Http`` target → a ``TargetOutcome``."""
    from .targets import dead, failed, succeeded

    deadline = time.monotonic() + max(0.001, budget_s)
    method = target.method
    body = None if method in ("GET", "DELETE") else _json_body(payload)
    try:
        resp, final_url = _follow(target, method, body, attempt, secret, policy, deadline, context)
    except Refused as exc:
        return dead(str(exc))
    except TimeoutError:
        return failed(f"timed out after {budget_s:g}s")
    except (OSError, http.client.HTTPException) as exc:
        return failed(f"{type(exc).__name__}: {exc}"[:300])
    answer = _answer(resp)
    where = "" if final_url == target.url else f" (redirected to {final_url})"
    if 200 <= resp.status < 300:
        return succeeded(status_code=resp.status, body=answer, url=final_url if where else None)
    text = f"HTTP {resp.status}{where}: {str(answer)[:300]}"
    if resp.status in _RETRY_STATUS or resp.status >= 500:
        return failed(text, parse_retry_after(resp.headers.get("retry-after")))
    if resp.status in _REDIRECTS:
        return dead(f"HTTP {resp.status}: more than {MAX_REDIRECTS} redirects")
    return dead(text)


def _follow(
    target: Any,
    method: str,
    body: bytes | None,
    attempt: Any,
    secret: str | None,
    policy: HttpPolicy,
    deadline: float,
    context: ssl.SSLContext | None,
) -> tuple[_Response, str]:
    url = target.url
    origin = _origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        headers = _headers(target, attempt, secret, body, same_origin=_origin(url) == origin)
        resp = _request_once(url, method, headers, body, policy, deadline, context)
        location = resp.headers.get("location")
        if resp.status not in _REDIRECTS or not location:
            return resp, url
        url = urljoin(url, location)
        if resp.status in (301, 302, 303) and method not in ("GET", "DELETE"):
            method, body = "GET", None  # as browsers do; 307/308 keep the method and body
    return resp, url


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlparse(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _headers(
    target: Any, attempt: Any, secret: str | None, body: bytes | None, same_origin: bool
) -> dict[str, str]:
    timestamp = str(int(time.time()))
    headers = dict(target.headers or {}) if same_origin else {}
    headers.update(
        {
            "User-Agent": USER_AGENT,
            "Idempotency-Key": attempt.idempotency_key,
            "X-Dynacron-Task-Id": attempt.task_id,
            "X-Dynacron-Run-Id": attempt.run_id,
            "X-Dynacron-Attempt": str(attempt.attempt),
            "X-Dynacron-Timestamp": timestamp,
        }
    )
    if body is not None:
        headers["Content-Type"] = "application/json"
    if secret is not None:
        headers["X-Dynacron-Signature"] = signature(secret, timestamp, body or b"")
    return headers


def _json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _answer(resp: _Response) -> Any:
    text = resp.body.decode(errors="replace")
    if len(text) > MAX_ANSWER_CHARS or resp.truncated:
        return text[:MAX_ANSWER_CHARS] + "…"
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text
