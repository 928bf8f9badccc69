"""gateway/status.py: the states a request's outcome shows, the time left, the errors counted,
the last error kept and a pool's members read from the shared cooldowns (REDIS_URL's too).

The outcomes are the errors the gateway's own code raises (hub.py's stage checks and wake-up,
pools.all_cooling); the board reads the process's real metrics. Model ids are unique per test:
the metrics are the process's own."""
from __future__ import annotations

import itertools
import time
from typing import Iterator

import pytest
import requests

from gateway import status
from gateway.errors import (InvalidRequest, SpaceNotFound, UpstreamError, UpstreamQuota, UpstreamUnauthorized,
                            UpstreamUnavailable)
from gateway.registry import Model
from gateway.shared_state import SharedState
from gateway.upstream.hub import SpaceInfo, check_stage, wait_awake
from tests.conftest import free_port
from tests.fixtures_upstream import chat
from tests.standins.faulty import Fault
from tests.redis_server import RedisServer

_ids = itertools.count()


def model(space: str = "team/one", spaces: tuple[str, ...] = ()) -> Model:
    return Model(id=f"status-test-{next(_ids)}", space=space, spaces=spaces)


def row(m: Model, cooling: dict | None = None) -> status.ModelStatus:
    return status.board([m], {}, cooling or {})[0]


def stage_error(stage: str) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        check_stage(SpaceInfo("team/one", "http://127.0.0.1:9/", stage))
    return caught.value


def wake_timeout() -> UpstreamError:
    """What a Space that stays asleep past the deadline answers (hub.wait_awake's own error)."""
    info = SpaceInfo("team/one", f"http://127.0.0.1:{free_port()}/", "SLEEPING")
    with pytest.raises(UpstreamError) as caught:
        wait_awake(requests.Session(), lambda: info, info, time.monotonic(), (1, 1), {})
    return caught.value


@pytest.mark.parametrize(("make", "state"), [
    (lambda: stage_error("BUILDING"), "building"),
    (lambda: stage_error("APP_STARTING"), "building"),
    (lambda: stage_error("PAUSED"), "paused"),
    (lambda: stage_error("RUNTIME_ERROR"), "error stage"),
    (lambda: stage_error("CONFIG_ERROR"), "error stage"),
    (wake_timeout, "sleeping"),
    (lambda: UpstreamUnavailable("The app at http://x/ is unavailable (HTTP 503)."), "unreachable"),
])
def test_a_spaces_stage_is_the_models_state(make, state: str) -> None:
    m = model()
    status.record(m.id, make())
    shown = row(m)
    assert shown.state == state and shown.meaning == status.MEANING[state]
    assert shown.errors == 1


def test_a_quota_shows_the_time_the_space_asked_for() -> None:
    m = model()
    status.record(m.id, UpstreamQuota("You have exceeded your GPU quota. Try again in 0:02:05.", retry_after=125))
    shown = row(m)
    assert shown.state == "quota" and 123 <= (shown.retry_in or 0) <= 125
    assert shown.last_error is not None and shown.last_error[1] == "upstream_quota_exceeded"
    assert "Try again in 0:02:05" in shown.last_error[2]


@pytest.mark.parametrize(("error", "state"), [
    (UpstreamUnauthorized("The Space 'team/one' is private or does not exist; send a token."), "unauthorized"),
    (SpaceNotFound("The Space 'team/one' does not exist."), "not found"),
])
def test_a_private_or_missing_space_has_a_state_and_counts_as_an_error(error: UpstreamError, state: str) -> None:
    m = model()
    status.record(m.id, error)
    shown = row(m)
    assert (shown.state, shown.errors) == (state, 1)
    assert state in status.MEANING and shown.last_error is not None and shown.last_error[1] == error.code


def test_a_callers_own_mistake_says_nothing_of_the_app() -> None:
    m = model()
    status.record(m.id, None)
    status.record(m.id, InvalidRequest("The model takes text only.", param="messages"))
    shown = row(m)
    assert (shown.state, shown.errors, shown.last_error) == ("ready", 0, None)


def test_an_error_after_a_success_is_the_state_and_a_success_keeps_the_last_error_shown() -> None:
    m = model()
    status.record(m.id, UpstreamError("The app failed: CUDA out of memory."))
    status.record(m.id, None)
    shown = row(m)
    assert shown.state == "ready" and shown.errors == 1
    assert shown.last_error is not None and shown.last_error[2] == "The app failed: CUDA out of memory."


def test_check_now_notes_a_state_without_counting_a_request_error() -> None:
    m = model()
    status.note(m.id, SpaceNotFound("The Space 'team/one' does not exist."))
    assert (row(m).state, row(m).errors) == ("not found", 0)


def test_pool_members_each_show_their_cooldown_and_a_pool_all_cooling_is_cooling_down() -> None:
    shared = SharedState()
    pool = model(space="team/a", spaces=("team/a", "team/b"))
    status.record(pool.id, None)
    shared.cool("team/a", 120, "quota", base=5, cap=300)
    shown = row(pool, status.cooldowns(shared, [pool]))
    assert [(m.space, m.state, m.reason) for m in shown.members] == [
        ("team/a", "cooling down", "quota"), ("team/b", "available", "")]
    assert 118 <= (shown.members[0].retry_in or 0) <= 120 and shown.state == "ready"
    shared.cool("team/b", 30, "unavailable", base=5, cap=300)
    shown = row(pool, status.cooldowns(shared, [pool]))
    assert shown.state == "cooling down" and 28 <= (shown.retry_in or 0) <= 30
    assert status.MEANING["cooling down"] == shown.meaning


def test_a_single_space_model_shows_its_space_without_a_member_state() -> None:
    m = model(space="team/solo")
    assert [(x.space, x.state) for x in row(m, status.cooldowns(SharedState(), [m])).members] == [("team/solo", "")]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_with_redis_a_cooldown_set_by_one_worker_shows_on_anothers_page(redis_server: RedisServer) -> None:
    pool = model(space="team/c", spaces=("team/c", "team/d"))
    SharedState(redis_server.url).cool("team/c", 90, "quota", base=5, cap=300)
    shown = row(pool, status.cooldowns(SharedState(redis_server.url), [pool]))
    assert [m.state for m in shown.members] == ["cooling down", "available"]
    assert 88 <= (shown.members[0].retry_in or 0) <= 90


def test_an_error_sent_mid_stream_counts_though_the_status_was_200(faulty_client, fresh_faulty) -> None:
    steady = faulty_client.application.extensions["gradio_chat_gateway"].registry.get("steady")
    before = row(steady)
    fresh_faulty.apps["steady"].inject(Fault("die"))
    resp = faulty_client.post("/v1/chat/completions", json=chat(model="steady", stream=True))
    body = resp.get_data(as_text=True)
    resp.close()                                   # the exchange is recorded when the response closes
    assert resp.status_code == 200 and 'data: {"error"' in body
    after = row(steady)
    assert (after.requests - before.requests, after.errors - before.errors) == (1, 1)
    assert after.state != "ready" and after.last_error is not None and after.last_error[0] > time.time() - 30
