"""``motofix.wait_for_messages``: a long poll ends when a delayed message comes due, not a
second later (moto's own wait only wakes on a send). A stub condition and a fake clock drive it:
each wait advances the clock by its timeout, as a wait nobody notifies would."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dynacron.local import motofix

T0 = 1_800_000_000.0  # seconds


@dataclass
class Msg:
    visible_at: float = 0.0  # ms, as moto keeps them
    delayed_until: float = 0.0


@dataclass
class FakeClock:
    now: float = T0

    def time(self) -> float:
        return self.now


@dataclass
class StubQueue:
    clock: FakeClock
    _messages: list[Msg]
    waits: list[float] = field(default_factory=list)

    @property
    def messages(self) -> list[Msg]:  # moto's rule: visible and not delayed
        now_ms = self.clock.now * 1000.0
        return [m for m in self._messages if now_ms > m.visible_at and now_ms >= m.delayed_until]

    @property
    def _messages_lock(self) -> StubQueue:
        return self

    def __enter__(self) -> StubQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        self.clock.now += timeout
        return False


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(motofix, "time", fake)
    return fake


def _ms(seconds_from_t0: float) -> float:
    return (T0 + seconds_from_t0) * 1000.0


def test_wait_ends_when_the_earliest_delayed_message_comes_due(clock: FakeClock) -> None:
    soon, later = Msg(delayed_until=_ms(0.3)), Msg(delayed_until=_ms(0.8))
    held = Msg(visible_at=_ms(5.0))  # received by another consumer: back after its timeout
    queue = StubQueue(clock, [later, held, soon])
    motofix.wait_for_messages(queue, timeout=1)
    assert queue.messages == [soon]
    assert clock.now - T0 == pytest.approx(0.3, abs=0.002)  # stock moto: 1.0


def test_wait_ends_when_a_received_message_becomes_visible_again(clock: FakeClock) -> None:
    held = Msg(visible_at=_ms(0.5))  # moto shows it strictly after visible_at
    queue = StubQueue(clock, [held, Msg(delayed_until=_ms(3.0))])
    motofix.wait_for_messages(queue, timeout=2)
    assert queue.messages == [held]
    assert clock.now - T0 == pytest.approx(0.5, abs=0.002)


def test_wait_ends_at_the_poll_timeout_when_nothing_comes_due(clock: FakeClock) -> None:
    queue = StubQueue(clock, [Msg(delayed_until=_ms(5.0))])
    motofix.wait_for_messages(queue, timeout=1)
    assert queue.messages == []
    assert clock.now - T0 == pytest.approx(1.0)
    assert len(queue.waits) == 1


def test_a_visible_message_returns_without_waiting(clock: FakeClock) -> None:
    queue = StubQueue(clock, [Msg()])
    motofix.wait_for_messages(queue, timeout=1)
    assert queue.waits == []
