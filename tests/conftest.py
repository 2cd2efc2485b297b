"""Shared fixtures: in-process moto with the template's resources, a frozen clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DynacronTest")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "dynacron-test")
# Unit tests run stock moto (motofix is checked against it): dynacron.testing must not patch it.
os.environ.setdefault("DYNACRON_TESTING_STOCK_MOTO", "1")

from helpers import awscalls

awscalls.install()  # before any client exists: tests/unit/test_permissions.py reads what it saw

from dynacron.clock import FrozenClock  # noqa: E402
from dynacron.local.provision import find_template, load_template, provision  # noqa: E402
from dynacron.settings import Settings  # noqa: E402
from dynacron.testing import VirtualQueue  # noqa: E402

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
TEMPLATE = load_template(find_template())


class RecordingSQS(VirtualQueue):
    """dynacron.testing's virtual-time SQS wrapper, recording what dynacron sends.

    moto applies DelaySeconds on the wall clock, which a frozen-clock test cannot advance:
    messages are forwarded without it (and visibility changes made 0), and the recorded delays
    are asserted instead.
    """

    def __init__(self, client: Any, clock: FrozenClock) -> None:
        super().__init__(client, clock)
        self.sent: list[dict[str, Any]] = []
        self.visibility: list[int] = []
        self.visibility_batches: list[list[int]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        self.sent.extend({**e, "QueueUrl": QueueUrl} for e in Entries)
        return super().send_message_batch(QueueUrl=QueueUrl, Entries=Entries)

    def change_message_visibility(self, **kwargs: Any) -> Any:
        self.visibility.append(kwargs["VisibilityTimeout"])
        return super().change_message_visibility(**kwargs)

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        self.visibility_batches.append([e["VisibilityTimeout"] for e in Entries])
        return super().change_message_visibility_batch(QueueUrl=QueueUrl, Entries=Entries)


@dataclass
class Env:
    """One isolated dynacron deployment on in-process moto."""

    settings: Settings
    dynamodb: Any
    sqs: Any
    clock: FrozenClock

    def scheduler(self, **kwargs: Any) -> Any:
        from dynacron import Scheduler

        return Scheduler(settings=self.settings, clock=self.clock, sqs=self.sqs, **kwargs)

    def dispatcher(self, **kwargs: Any) -> Any:
        from dynacron.dispatch import Dispatcher
        from dynacron.store import Store

        # In-process moto is not thread-safe for transactions (it deep-copies tables to roll
        # back), so unit tests claim on one thread; the reliability suite uses real servers.
        kwargs.setdefault("concurrency", 1)
        return Dispatcher(Store(self.settings), self.sqs, self.settings, clock=self.clock, **kwargs)

    def executor(self, **kwargs: Any) -> Any:
        from dynacron.execute import Executor
        from dynacron.store import Store

        kwargs.setdefault("rand", lambda: 0.0)
        return Executor(Store(self.settings), self.sqs, self.settings, clock=self.clock, **kwargs)

    def receive(self, queue: str = "work", max_messages: int = 10, visibility: int = 30) -> list:
        url = self.settings.queue_url if queue == "work" else self.settings.dlq_url
        out: dict[str, dict] = {}
        while True:
            got = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=max_messages,
                VisibilityTimeout=max(1, visibility),
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            ).get("Messages", [])
            fresh = [m for m in got if m["MessageId"] not in out]
            if not fresh:
                return list(out.values())
            out.update((m["MessageId"], m) for m in fresh)

    def table_items(self) -> list[dict]:
        return self.dynamodb.scan(TableName=self.settings.table_name)["Items"]


@pytest.fixture(scope="session", autouse=True)
def _one_botocore_loader() -> Iterator[None]:
    """Speed only: every Store builds a botocore session that would parse the service and
    endpoint JSON again (~0.15 s each); tests build hundreds, so they share one loader."""
    import botocore.loaders
    import botocore.session

    loader = botocore.loaders.create_loader()

    def register(session: Any) -> None:
        session._components.lazy_register_component("data_loader", lambda: loader)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(botocore.session.Session, "_register_data_loader", register)
        yield


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@contextmanager
def make_env(clock: FrozenClock, prefix: str = "test", shards: int = 4) -> Iterator[Env]:
    """An isolated deployment on in-process moto (usable outside pytest too)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        res = provision(dynamodb, sqs, TEMPLATE, prefix=prefix)
        settings = Settings(
            table_name=res.table_name,
            queue_url=res.queue_url,
            dlq_url=res.dlq_url,
            lane_queues=res.lane_queues,
            region="us-east-1",
            shards=shards,
        )
        yield Env(settings, dynamodb, RecordingSQS(sqs, clock), clock)


@pytest.fixture
def env(clock: FrozenClock) -> Iterator[Env]:
    with make_env(clock) as e:
        yield e


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The permission check reads the calls every other test made: it runs last."""
    last = [i for i in items if i.module.__name__.endswith("test_permissions")]
    items[:] = [i for i in items if i not in last] + last
