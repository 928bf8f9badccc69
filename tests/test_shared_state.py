"""gateway/shared_state.py against a real redis-server: limits, leases and cooldowns shared by
separate SharedState objects (as separate workers hold them), and Redis going away and back."""
from __future__ import annotations

import logging
from typing import Iterator

import pytest
from limits import RateLimitItemPerDay, RateLimitItemPerMinute

from gateway import shared_state
from gateway.shared_state import SharedState
from tests.redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_a_request_limit_holds_across_processes_sharing_redis(redis_server: RedisServer) -> None:
    workers = [SharedState(redis_server.url) for _ in range(3)]
    item = RateLimitItemPerMinute(10)
    allowed = [workers[i % 3].hit(item, "requests", "team-a").allowed for i in range(25)]
    assert allowed == [True] * 10 + [False] * 15
    window = workers[0].peek(item, "requests", "team-a")
    assert (window.limit, window.remaining) == (10, 0)


def test_without_redis_each_process_keeps_its_own_limits() -> None:
    one, two = SharedState(), SharedState()
    item = RateLimitItemPerMinute(2)
    assert [one.hit(item, "r", "k").allowed for _ in range(3)] == [True, True, False]
    assert two.hit(item, "r", "k").allowed


def test_token_usage_is_counted_after_the_fact_in_a_fixed_day_window(redis_server: RedisServer) -> None:
    a, b = SharedState(redis_server.url), SharedState(redis_server.url)
    day = RateLimitItemPerDay(100)
    a.hit(day, "tokens", "k", moving=False, cost=70)
    b.hit(day, "tokens", "k", moving=False, cost=50)      # over the limit: still counted
    assert a.peek(day, "tokens", "k", moving=False).remaining == 0


def test_concurrency_leases_are_shared_and_released(redis_server: RedisServer) -> None:
    a, b = SharedState(redis_server.url), SharedState(redis_server.url)
    first = a.acquire("streams:k", 2, ttl=60)
    second = b.acquire("streams:k", 2, ttl=60)
    assert first and second
    assert a.acquire("streams:k", 2, ttl=60) is None
    b.release(first)
    assert b.acquire("streams:k", 2, ttl=60) is not None


def test_a_lease_of_a_crashed_worker_expires_by_itself(redis_server: RedisServer) -> None:
    state = SharedState(redis_server.url)
    assert state.acquire("streams:k", 1, ttl=-1)        # taken, never released, its time is up
    assert state.acquire("streams:k", 1, ttl=60) is not None
    assert state.acquire("streams:k", 1, ttl=60) is None


def test_a_cooldown_set_by_one_process_is_seen_by_another(redis_server: RedisServer) -> None:
    a, b = SharedState(redis_server.url), SharedState(redis_server.url)
    a.cool("team/one", 120, "quota", base=5, cap=300)
    cooling, struck = b.cooling(["team/one", "team/two"])
    assert set(cooling) == {"team/one"} and cooling["team/one"].reason == "quota"
    assert 118 < cooling["team/one"].remaining <= 120
    assert struck == {"team/one"}
    b.forgive("team/one")
    assert a.cooling(["team/one"]) == ({}, set())


def test_a_cooldown_for_one_holder_is_that_holders_only(redis_server: RedisServer) -> None:
    a, b = SharedState(redis_server.url), SharedState(redis_server.url)
    a.cool("team/one", 120, "quota", base=5, cap=300, holder="0123456789abcdef")
    assert set(b.cooling(["team/one"], "0123456789abcdef")[0]) == {"team/one"}
    assert b.cooling(["team/one"], "anonymous") == ({}, set())
    a.cool("team/one", 30, "unavailable", base=5, cap=300)                 # for everyone
    cooling, _ = b.cooling(["team/one"], "0123456789abcdef")
    assert cooling["team/one"].reason == "quota"                          # the later of the two ends
    assert b.cooling(["team/one"], "anonymous")[0]["team/one"].reason == "unavailable"
    b.forgive("team/one", "0123456789abcdef")
    assert a.cooling(["team/one"], "0123456789abcdef") == ({}, set())


def test_local_cooldowns_are_bounded_however_many_holders_run_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_state, "LOCAL_CELLS", 50)
    state = SharedState()
    for i in range(500):
        state.cool("team/one", 120, "quota", base=5, cap=300, holder=f"{i:016x}")
    assert len(state._local.cooldowns) == 50 and len(state._local.strikes) == 50
    assert set(state.cooling(["team/one"], f"{499:016x}")[0]) == {"team/one"}      # the newest are kept
    assert state.cooling(["team/one"], f"{0:016x}") == ({}, set())


def test_cooldowns_without_a_retry_after_grow_with_each_strike(redis_server: RedisServer) -> None:
    state = SharedState(redis_server.url)
    lengths = [round(state.cool("team/one", None, "unavailable", base=5, cap=30).remaining) for _ in range(5)]
    assert lengths == [5, 10, 20, 30, 30]


def test_redis_going_away_costs_nothing_and_it_reconnects_by_itself(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_state, "RETRY_EVERY", 0.0)     # try Redis again on every operation
    state = SharedState(redis_server.url)
    item = RateLimitItemPerMinute(1000)
    assert state.hit(item, "r", "k").allowed and state.up
    redis_server.kill()
    with caplog.at_level(logging.WARNING, logger="gateway.state"):
        for _ in range(5):
            assert state.hit(item, "r", "k").allowed           # served on local state
        assert state.acquire("streams:k", 1, ttl=60) is not None
        assert state.cool("team/one", 30, "quota", base=5, cap=300).remaining > 0
        assert set(state.cooling(["team/one"])[0]) == {"team/one"}
    assert not state.up
    assert shared_state.STATE_DOWN._value.get() == 1
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(down) == 1, [r.getMessage() for r in caplog.records]      # one line, not one per request
    caplog.clear()
    redis_server.start()
    with caplog.at_level(logging.WARNING, logger="gateway.state"):
        assert state.hit(item, "r", "k").allowed
    assert state.up and shared_state.STATE_DOWN._value.get() == 0
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert redis_server.client().dbsize() > 0                  # the state is in Redis again


def test_a_gateway_starts_and_serves_when_redis_is_down_from_the_start(caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import free_port
    state = SharedState(f"redis://127.0.0.1:{free_port()}/0")        # nothing listens there
    with caplog.at_level(logging.WARNING, logger="gateway.state"):
        assert state.hit(RateLimitItemPerMinute(5), "r", "k").allowed
    assert not state.up
    assert any("unreachable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis//x"])
def test_a_redis_url_that_is_not_one_stops_start_up_naming_the_variable(url: str) -> None:
    from gateway.config import ConfigError, load_settings
    with pytest.raises(ConfigError, match=r"^REDIS_URL: must be a redis://, rediss:// or unix:// URL"):
        load_settings({"REDIS_URL": url})
