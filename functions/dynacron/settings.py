"""Configuration, read from the environment in one place and passed down.

Every knob has a default that works for a small deployment; ``template.yaml`` sets the same
variables on the Lambdas from its parameters.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ConfigurationError

DEFAULT_REGION = "us-east-1"


def _num(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None


def _lanes(raw: str | None) -> dict[str, str]:
    """``DYNACRON_LANE_QUEUES="fast=https://...,bulk=https://..."`` → {lane: queue_url}."""
    lanes: dict[str, str] = {}
    for part in (raw or "").split(","):
        if part.strip():
            name, sep, url = part.partition("=")
            if not sep or not name.strip() or not url.strip():
                raise ConfigurationError(f"DYNACRON_LANE_QUEUES entry {part!r} is not lane=url")
            lanes[name.strip()] = url.strip()
    return lanes


def _items(raw: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (raw or "").split(",") if p.strip())


def _target_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The target knobs: ``DYNACRON_ALLOWED_TARGETS`` (ARNs and bus names, comma list),
    ``DYNACRON_HTTP_ALLOW_LOOPBACK`` (1/true), ``DYNACRON_HTTP_ALLOW_NETWORKS`` (CIDRs) and
    ``DYNACRON_LOCAL_LAMBDAS`` (``name=module:function``, comma list; ``dynacron local`` only)."""
    import ipaddress

    from .targets import parse_local_lambdas

    networks = _items(env.get("DYNACRON_HTTP_ALLOW_NETWORKS"))
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            message = f"DYNACRON_HTTP_ALLOW_NETWORKS: {net!r} is not a CIDR"
            raise ConfigurationError(message) from None
    return {
        "allowed_targets": _items(env.get("DYNACRON_ALLOWED_TARGETS")),
        "http_allow_loopback": env.get("DYNACRON_HTTP_ALLOW_LOOPBACK", "").lower()
        in ("1", "true", "yes"),
        "http_allow_networks": networks,
        "local_lambdas": parse_local_lambdas(env.get("DYNACRON_LOCAL_LAMBDAS")),
    }


@dataclass(frozen=True)
class Settings:
    """Everything dynacron reads from its environment.

    ``window_s`` must stay ≤ 900 s (the SQS DelaySeconds maximum) and be longer than
    ``period_s`` so a run is claimed before it falls due.
    """

    table_name: str | None = None
    queue_url: str | None = None
    dlq_url: str | None = None
    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    shards: int = 8
    period_s: float = 60.0
    window_s: float = 90.0
    lease_s: float = 300.0
    misfire_grace_s: float = 60.0
    max_timeout_s: float = 870.0
    retention_days: float = 30.0
    max_dispatches: int = 10
    max_retries: int = 8
    # Client timeouts and the retry count of the SDK's own clients (Scheduler, CLI): a person or
    # a program is waiting, so an unreachable endpoint fails within a few seconds. The Lambdas
    # keep ``max_retries`` (throttling in a burst is worth riding out there).
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 10.0
    sdk_max_retries: int = 2
    # Adaptive look-ahead (dispatch.py): a poll that finished its window probes up to
    # max_lookahead_s ahead and claims that far too when at least lookahead_backlog runs wait.
    lookahead_backlog: int = 5000
    max_lookahead_s: float = 900.0
    # A running attempt's lease, renewed by the worker's heartbeat (heartbeat.py); 0: no
    # heartbeat, the attempt holds its run for timeout + lease as before.
    heartbeat_s: float = 30.0
    # Fan-out (fanout.py): a poller tick spreads the shards over this many parallel invocations
    # (at most one per shard); 1: the tick polls every shard itself.
    poller_fanout: int = 1
    handlers: tuple[str, ...] = ()
    lane_queues: Mapping[str, str] = field(default_factory=dict)
    # More work queues for the default lane (WorkQueueCount > 1): each has its own event
    # source, so a burst spread over them gets each one's concurrency (README "Bursts").
    work_queue_urls: tuple[str, ...] = ()
    # Targets (targets.py, safehttp.py): what the worker may call, and how HTTP is fenced.
    allowed_targets: tuple[str, ...] = ()
    http_allow_loopback: bool = False
    http_allow_networks: tuple[str, ...] = ()
    local_lambdas: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= 1000:
            raise ConfigurationError(f"shards must be 1..1000, got {self.shards}")
        if not 0 < self.window_s <= 900:
            raise ConfigurationError(
                f"window must be 0..900 s (SQS DelaySeconds), got {self.window_s}"
            )
        if self.lease_s <= 0:
            raise ConfigurationError("lease must be positive")
        if not (self.connect_timeout_s > 0 and self.read_timeout_s > 0):
            raise ConfigurationError("connect and read timeouts must be positive")
        if self.max_retries < 0 or self.sdk_max_retries < 0:
            raise ConfigurationError("retry counts must be ≥ 0")

        if not self.window_s <= self.max_lookahead_s <= 900:
            raise ConfigurationError(
                "max look-ahead must be window..900 s (SQS DelaySeconds), "
                f"got {self.max_lookahead_s}"
            )
        if self.heartbeat_s != 0 and not 3 <= self.heartbeat_s <= 3600:
            raise ConfigurationError(
                f"heartbeat must be 0 (off) or 3..3600 s, got {self.heartbeat_s}"
            )
        if not 1 <= self.poller_fanout <= 1000:
            raise ConfigurationError(f"poller fan-out must be 1..1000, got {self.poller_fanout}")
        if self.lookahead_backlog < 0:
            raise ConfigurationError("lookahead backlog must be >= 0 (0: never look further)")

    def for_sdk(self) -> Settings:
        """These settings with the SDK's retry count in ``max_retries`` (what the clients use)."""
        return replace(self, max_retries=min(self.max_retries, self.sdk_max_retries))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``env`` (the process environment), then ``overrides`` (None: unset).

        An override of ``table_name`` or ``queue_url`` that differs from the environment's
        ``DYNACRON_TABLE``/``DYNACRON_QUEUE_URL`` names another deployment than the
        environment's, and that deployment's queues are not taken from the environment: a
        different table drops ``DYNACRON_QUEUE_URL``, and without the environment's work queue
        ``DYNACRON_DLQ_URL``, ``DYNACRON_LANE_QUEUES`` and ``DYNACRON_WORK_QUEUE_URLS`` go too
        (pass them in ``overrides``). So no run of the named stack is routed to the other's."""
        env = os.environ if env is None else env
        base = cls(
            table_name=env.get("DYNACRON_TABLE") or None,
            queue_url=env.get("DYNACRON_QUEUE_URL") or None,
            dlq_url=env.get("DYNACRON_DLQ_URL") or None,
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            shards=int(_num(env, "DYNACRON_SHARDS", 8)),
            period_s=_num(env, "DYNACRON_POLL_PERIOD_SECONDS", 60.0),
            window_s=_num(env, "DYNACRON_WINDOW_SECONDS", 90.0),
            lease_s=_num(env, "DYNACRON_LEASE_SECONDS", 300.0),
            misfire_grace_s=_num(env, "DYNACRON_MISFIRE_GRACE_SECONDS", 60.0),
            max_timeout_s=_num(env, "DYNACRON_MAX_TIMEOUT_SECONDS", 870.0),
            retention_days=_num(env, "DYNACRON_RETENTION_DAYS", 30.0),
            max_dispatches=int(_num(env, "DYNACRON_MAX_DISPATCHES", 10)),
            max_retries=int(_num(env, "DYNACRON_MAX_RETRIES", 8)),
            connect_timeout_s=_num(env, "DYNACRON_CONNECT_TIMEOUT_SECONDS", 2.0),
            read_timeout_s=_num(env, "DYNACRON_READ_TIMEOUT_SECONDS", 10.0),
            sdk_max_retries=int(_num(env, "DYNACRON_SDK_MAX_RETRIES", 2)),
            lookahead_backlog=int(_num(env, "DYNACRON_LOOKAHEAD_BACKLOG", 5000)),
            max_lookahead_s=_num(env, "DYNACRON_MAX_LOOKAHEAD_SECONDS", 900.0),
            heartbeat_s=_num(env, "DYNACRON_HEARTBEAT_SECONDS", 30.0),
            poller_fanout=int(_num(env, "DYNACRON_POLLER_FANOUT", 1)),
            handlers=tuple(
                m.strip() for m in env.get("DYNACRON_HANDLERS", "").split(",") if m.strip()
            ),
            lane_queues=_lanes(env.get("DYNACRON_LANE_QUEUES")),
            work_queue_urls=_items(env.get("DYNACRON_WORK_QUEUE_URLS")),
            **_target_settings(env),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        other_table = _differs(env, given, "table_name", "DYNACRON_TABLE")
        if other_table or _differs(env, given, "queue_url", "DYNACRON_QUEUE_URL"):
            # The environment's queues belong to its own stack: mixed in, runs of a stack
            # named by argument would go to the other stack's queues and lanes.
            queue_url = None if other_table else base.queue_url
            base = replace(base, queue_url=queue_url, dlq_url=None, lane_queues={},
                           work_queue_urls=())
        return replace(base, **given)

    def require_table(self) -> str:
        if not self.table_name:
            raise ConfigurationError("no table: set DYNACRON_TABLE or pass table_name=")
        return self.table_name

    @property
    def lanes(self) -> tuple[str, ...]:
        """Every lane a run may use: ``default`` (the work queue) and the lane queues."""
        return tuple(sorted({"default", *self.lane_queues}))

    @property
    def work_queues(self) -> tuple[str, ...]:
        """The default lane's queues: the work queue, then ``work_queue_urls``."""
        return tuple(u for u in dict.fromkeys((self.queue_url, *self.work_queue_urls)) if u)

    @property
    def all_queues(self) -> tuple[str, ...]:
        """Every queue the worker consumes: the default lane's and the lane queues."""
        return tuple(dict.fromkeys((*self.work_queues, *self.lane_queues.values())))

    def queue_for(self, lane: str, task_id: str = "") -> str:
        """The queue URL a run of ``lane`` is sent to (runs carry their lane; see DESIGN). A
        default-lane run with several work queues goes to the one its task id hashes to, so a
        task's runs always take the same queue and a burst of many tasks spreads evenly."""
        if lane in self.lane_queues:
            return self.lane_queues[lane]
        queues = self.work_queues
        if not queues:
            raise ConfigurationError("no queue: set DYNACRON_QUEUE_URL or pass queue_url=")
        return queues[zlib.crc32(task_id.encode()) % len(queues)]


def _differs(env: Mapping[str, str], given: Mapping[str, Any], key: str, var: str) -> bool:
    return key in given and bool(env.get(var)) and given[key] != env.get(var)
