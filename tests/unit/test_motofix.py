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


# --- which fixes apply: each checks the installed moto against the range it was tested on ----


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``patch_moto`` over recording stand-ins for the fixes, with nothing applied yet."""
    applied: list[str] = []

    def fix(name: str) -> motofix.Patch:
        return motofix.Patch(name, lambda: applied.append(name))

    def broken() -> None:
        raise AttributeError("type object 'Table' has no attribute 'all_items'")

    monkeypatch.setattr(motofix, "_active", set())
    monkeypatch.setattr(motofix, "PATCHES", (
        fix("one"), motofix.Patch("moved", broken), fix("two"),
        motofix.Patch("narrow", lambda: applied.append("narrow"), ((5, 2, 5), (5, 2, 6))),
    ))
    return applied


def test_the_pinned_range_is_the_tested_range() -> None:
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    (pin,) = meta["project"]["optional-dependencies"]["local"]
    assert pin == "moto[server]>=5.2.5,<5.3"
    assert motofix.TESTED_MOTO == ((5, 2, 5), (5, 3))


def test_fixes_apply_on_a_tested_moto_and_a_broken_one_is_skipped_with_a_warning(
    fresh: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(motofix, "moto_version", lambda: (5, 2, 9))
    with pytest.warns(motofix.MotoPatchWarning, match=r"moved \(AttributeError") as caught:
        active = motofix.patch_moto()
    assert active == {"one", "two"} and fresh == ["one", "two"]
    assert "narrow (tested on moto >=5.2.5,<5.2.6)" in str(caught[0].message)
    assert motofix.active_patches() == active


def test_an_untested_moto_gets_no_fix_and_a_warning(
    fresh: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(motofix, "moto_version", lambda: (5, 1, 0))
    with pytest.warns(motofix.MotoPatchWarning, match=r"moto 5\.1\.0: fixes not applied"):
        assert motofix.patch_moto() == frozenset()
    assert fresh == []


def test_patching_twice_applies_each_fix_once(
    fresh: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(motofix, "moto_version", lambda: (5, 2, 5))
    with pytest.warns(motofix.MotoPatchWarning):
        first = motofix.patch_moto()
    with pytest.warns(motofix.MotoPatchWarning):  # the broken one is tried, and said, again
        assert motofix.patch_moto() == first
    assert fresh == ["one", "two", "narrow"]


def test_moto_version_reads_the_installed_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(motofix.metadata, "version", lambda name: "5.2.6.dev3")
    assert motofix.moto_version() == (5, 2, 6)
