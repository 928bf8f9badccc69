"""Pools (CONTRACT §7, §9): `spaces:` tried in order or spread, members put in cooldowns, and
ALLOW_ANY_SPACE; through Flask's test client, stand-in Spaces resolved by a stand-in Hub."""
from __future__ import annotations

import math
import os
import subprocess
import time
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml

from gateway import create_app
from tests.conftest import Gunicorn
from tests.fixtures_upstream import USER_TOKEN, chat
from tests.redis_server import RedisServer
from tests.standins.faulty import Fault, FaultyGradio
from tests.standins.hub import Space, StandInHub

MEMBERS = ("pool-one", "pool-two", "pool-three")
# Generous: nothing here waits on a timeout, and the machine may be busy.
TIMEOUTS = {"UPSTREAM_CONNECT_TIMEOUT": "5", "UPSTREAM_IDLE_TIMEOUT": "10", "UPSTREAM_TOTAL_TIMEOUT": "30",
            "SSE_KEEPALIVE": "5"}


@pytest.fixture
def pool_apps(fresh_faulty: FaultyGradio) -> Iterator[FaultyGradio]:
    """Three stand-in apps of the session's stand-in server, clean before and after."""
    for name in MEMBERS:
        if name not in fresh_faulty.apps:
            fresh_faulty.add(name)
        fresh_faulty.apps[name].faults.clear()
    try:
        yield fresh_faulty
    finally:
        for name in MEMBERS:
            fresh_faulty.apps[name].faults.clear()


@pytest.fixture
def hub() -> Iterator[StandInHub]:
    server = StandInHub()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pooled(pool_apps: FaultyGradio, hub: StandInHub, tmp_path: Path):
    """make(models, stages=..., **env) -> (the Flask app, its test client); team/<member> Spaces."""
    def make(models: dict[str, Any], stages: dict[str, list[str]] | None = None, **env: str) -> tuple[Any, Any]:
        for name in MEMBERS:
            hub.spaces[f"team/{name}"] = Space(pool_apps.apps[name].url, stages=(stages or {}).get(name, ["RUNNING"]))
        path = tmp_path / "models.yaml"
        path.write_text(yaml.safe_dump({"models": models}))
        app = create_app({"TESTING": True}, env={"MODELS_FILE": str(path), "BUILTIN_MODELS": "false",
                                                  "HF_ENDPOINT": hub.url, **TIMEOUTS, **env})
        return app, app.test_client()
    return make


def pool(*names: str, strategy: str = "failover") -> dict[str, Any]:
    return {"spaces": [f"team/{n}" for n in names], "strategy": strategy}


def calls(server: FaultyGradio, app: str) -> int:
    return sum(1 for s in server.requests_to(app) if s.method == "POST" and s.path.startswith("/gradio_api/call/"))


def cooldowns(app: Any, model: str) -> dict[str, Any]:
    state = app.extensions["gradio_chat_gateway"]
    return state.upstream.pools.cooldowns(state.registry.get(model))


def test_quota_and_a_paused_space_are_passed_over_without_the_client_noticing(
        pooled: Any, pool_apps: FaultyGradio, hub: StandInHub) -> None:
    app, client = pooled({"m": pool(*MEMBERS)}, stages={"pool-two": ["PAUSED"]})
    pool_apps.apps["pool-one"].inject(Fault("status", status=429, retry_after="120"))
    resp = client.post("/v1/chat/completions", json=chat(model="m"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["choices"][0]["message"]["content"] == "word0 word1 word2"
    assert resp.get_json()["model"] == "m"
    cooling = cooldowns(app, "m")
    assert set(cooling) == {"team/pool-one", "team/pool-two"}
    assert cooling["team/pool-one"].reason == "quota" and 115 < cooling["team/pool-one"].remaining <= 120
    assert cooling["team/pool-two"].reason == "unavailable"
    # The next request goes straight to the third: the cooling Spaces are not even asked.
    before = (calls(pool_apps, "pool-one"), hub.lookups_of("team/pool-two"))
    assert client.post("/v1/chat/completions", json=chat(model="m")).status_code == 200
    assert (calls(pool_apps, "pool-one"), hub.lookups_of("team/pool-two")) == before
    assert calls(pool_apps, "pool-three") == 2
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gateway_pool_cooldown_seconds{model="m",space="team/pool-three"} 0.0' in text
    assert 'gateway_pool_cooldowns_total{model="m",reason="quota",space="team/pool-one"} 1.0' in text


def test_when_every_space_is_out_of_quota_the_answer_is_429_with_the_earliest_retry_after(
        pooled: Any, pool_apps: FaultyGradio) -> None:
    app, client = pooled({"m": pool("pool-one", "pool-two")})
    pool_apps.apps["pool-one"].inject(Fault("status", status=429, retry_after="120"))
    pool_apps.apps["pool-two"].inject(Fault("status", status=429, retry_after="45"))
    resp = client.post("/v1/chat/completions", json=chat(model="m"))
    assert resp.status_code == 429, resp.get_json()
    assert resp.get_json()["error"]["code"] == "upstream_quota_exceeded"
    assert 40 <= int(resp.headers["Retry-After"]) <= 45
    again = client.post("/v1/chat/completions", json=chat(model="m"))    # no upstream asked at all
    assert again.status_code == 429 and calls(pool_apps, "pool-two") == 1


def test_when_some_are_unavailable_it_is_503(pooled: Any, pool_apps: FaultyGradio) -> None:
    _, client = pooled({"m": pool("pool-one", "pool-two")}, stages={"pool-two": ["BUILDING"]})
    pool_apps.apps["pool-one"].inject(Fault("status", status=429, retry_after="120"))
    resp = client.post("/v1/chat/completions", json=chat(model="m"))
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "upstream_unavailable"
    assert 25 <= int(resp.headers["Retry-After"]) <= 30          # BUILDING: 30 s, sooner than the quota's
    assert "team/pool-one" in resp.get_json()["error"]["message"]


def test_a_job_the_app_accepted_is_never_run_again_elsewhere(pooled: Any, pool_apps: FaultyGradio) -> None:
    _, client = pooled({"m": pool("pool-one", "pool-two")})
    # The app takes the job (an event id), then its event stream answers 503.
    pool_apps.apps["pool-one"].inject(Fault("status", status=503, at="events"))
    resp = client.post("/v1/chat/completions", json=chat(model="m"))
    assert resp.status_code == 503
    assert calls(pool_apps, "pool-one") == 1 and calls(pool_apps, "pool-two") == 0


def test_an_unreachable_space_cools_down_longer_each_time(pooled: Any, pool_apps: FaultyGradio,
                                                          hub: StandInHub) -> None:
    app, client = pooled({"m": {"spaces": ["http://127.0.0.1:9/", "team/pool-two"]}})
    assert client.post("/v1/chat/completions", json=chat(model="m")).status_code == 200
    first = cooldowns(app, "m")["http://127.0.0.1:9/"]
    assert first.reason == "unavailable" and 3 < first.remaining <= 5            # no Retry-After: 5 s
    shared = app.extensions["gradio_chat_gateway"].shared
    second = shared.cool("http://127.0.0.1:9/", None, "unavailable", base=5, cap=300)
    assert math.isclose(second.remaining, 10, abs_tol=1)                          # then 10 s


def test_balance_spreads_requests_over_the_members(pooled: Any, pool_apps: FaultyGradio) -> None:
    _, client = pooled({"m": pool("pool-one", "pool-two", strategy="balance")})
    assert [client.post("/v1/chat/completions", json=chat(model="m")).status_code for _ in range(4)] == [200] * 4
    assert (calls(pool_apps, "pool-one"), calls(pool_apps, "pool-two")) == (2, 2)


def test_a_failover_pool_uses_the_first_member_while_it_answers(pooled: Any, pool_apps: FaultyGradio) -> None:
    _, client = pooled({"m": pool("pool-one", "pool-two")})
    for _ in range(3):
        assert client.post("/v1/chat/completions", json=chat(model="m")).status_code == 200
    assert (calls(pool_apps, "pool-one"), calls(pool_apps, "pool-two")) == (3, 0)


def test_models_check_shows_each_members_cooldown(pooled: Any, pool_apps: FaultyGradio) -> None:
    app, client = pooled({"m": pool("pool-one", "pool-two")})
    pool_apps.apps["pool-one"].inject(Fault("status", status=429, retry_after="120"))
    assert client.post("/v1/chat/completions", json=chat(model="m")).status_code == 200
    out = app.test_cli_runner().invoke(args=["models", "check"]).output
    assert "failover member team/pool-one: cooling down" in out and "(quota)" in out
    assert "failover member team/pool-two: available" in out


def test_models_check_fails_a_pool_whose_second_member_does_not_map(pooled: Any) -> None:
    app, _ = pooled({"m": {"spaces": ["team/pool-one", "http://127.0.0.1:9/"]}})
    result = app.test_cli_runner().invoke(args=["models", "check"])
    assert result.exit_code == 1, result.output
    assert "FAIL  m: 1 of 2 Spaces do not map" in result.output
    assert "failover member team/pool-one: available\n" in result.output
    assert "failover member http://127.0.0.1:9/: available; FAIL: The Gradio app is unreachable" in result.output


def test_models_check_shows_the_cooldowns_gunicorn_workers_set_only_through_redis(
        pool_apps: FaultyGradio, tmp_path: Path) -> None:
    """`models check` is a process of its own: a worker's cooldown reaches it through REDIS_URL."""
    one, two = pool_apps.apps["pool-one"].url, pool_apps.apps["pool-two"].url
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({"models": {"m": {"spaces": [one, two]}}}))
    redis = RedisServer()
    gateway = None
    try:
        redis.start()
        env = {"MODELS_FILE": str(tmp_path / "models.yaml"), "BUILTIN_MODELS": "false", "REDIS_URL": redis.url,
               **TIMEOUTS}
        gateway = Gunicorn(env, workers=2).wait_ready(60)
        pool_apps.apps["pool-one"].inject(Fault("status", status=429, retry_after="120"))
        resp = requests.post(gateway.url + "/v1/chat/completions", json=chat(model="m"), timeout=30)
        assert resp.status_code == 200, resp.text

        def check(**extra: str) -> str:
            result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "models", "check"],
                                    cwd=Path(__file__).resolve().parent.parent, env={**os.environ, **env, **extra},
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stdout + result.stderr
            return result.stdout
        shared = check()
        assert f"failover member {one}: cooling down 1" in shared and "s more (quota)" in shared
        assert f"failover member {two}: available" in shared
        alone = check(REDIS_URL="")
        assert "without REDIS_URL each worker keeps its own" in alone
        assert f"failover member {one}: available" in alone
    finally:
        if gateway is not None:
            gateway.stop()
        redis.stop()


@pytest.mark.parametrize("models, message", [
    ({"m": {"space": "a/b", "spaces": ["a/b"]}}, "m.space: give exactly one of space and spaces"),
    ({"m": {"spaces": []}}, "m.spaces: must name at least one Space"),
    ({"m": {"spaces": ["a/b", "not a space"]}}, "m.spaces.1: must be a Space id"),
    ({"m": {"spaces": ["a/b"], "strategy": "random"}}, "m.strategy: Must be one of: failover, balance."),
])
def test_a_bad_pool_in_the_models_file_names_the_field(models: dict[str, Any], message: str, tmp_path: Path) -> None:
    from gateway.config import ConfigError
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    with pytest.raises(ConfigError) as err:
        create_app(env={"MODELS_FILE": str(path), "BUILTIN_MODELS": "false"})
    assert message in str(err.value)


def test_any_space_is_mapped_on_demand_only_when_allowed(pooled: Any, pool_apps: FaultyGradio,
                                                         hub: StandInHub) -> None:
    _, closed = pooled({"m": pool("pool-one")})
    resp = closed.post("/v1/chat/completions", json=chat(model="hf:team/pool-three"))
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "model_not_found"
    _, client = pooled({"m": pool("pool-one")}, ALLOW_ANY_SPACE="true")
    resp = client.post("/v1/chat/completions", json=chat(model="hf:team/pool-three"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["model"] == "hf:team/pool-three"
    assert hub.lookups_of("team/pool-three") == 1                 # through the Hub, then the cache
    assert client.post("/v1/chat/completions", json=chat(model="hf:team/pool-three")).status_code == 200
    assert hub.lookups_of("team/pool-three") == 1
    for bad in ("hf:team", "hf:../etc/passwd", "hf:http://127.0.0.1:1/"):
        assert client.post("/v1/chat/completions", json=chat(model=bad)).status_code == 404
    assert client.post("/v1/chat/completions", json=chat(model="hf:team/missing")).status_code == 401
    assert "hf:team/pool-three" not in client.get("/v1/models").get_data(as_text=True)


def test_a_zerogpu_quota_error_before_any_output_moves_on_though_the_job_was_accepted(
        pooled: Any, pool_apps: FaultyGradio) -> None:
    """ZeroGPU refuses to run the prompt: an `error` event on an accepted job, nothing generated."""
    from tests.standins.fake_gradio import FakeGradio, Script
    out_of_quota = FakeGradio(Script(events=[("error", {
        "error": "You have exceeded your GPU quota (60s requested vs. 12s left). Try again in 0:03:00",
        "title": "ZeroGPU quota exceeded"})]))
    try:
        app, client = pooled({"m": {"spaces": [out_of_quota.url, "team/pool-two"]}})
        resp = client.post("/v1/chat/completions", json=chat(model="m"))
        assert resp.status_code == 200, resp.get_json()
        assert len(out_of_quota.calls()) == 1 and calls(pool_apps, "pool-two") == 1
        cooling = cooldowns(app, "m")[out_of_quota.url]
        assert cooling.reason == "quota" and 175 < cooling.remaining <= 180        # its own "Try again in"
    finally:
        out_of_quota.stop()


def test_a_429_on_the_event_stream_of_an_accepted_job_is_not_run_again_elsewhere(
        pooled: Any, pool_apps: FaultyGradio) -> None:
    """The app gave the job an event id: a 429 on its event stream may come from a running job."""
    _, client = pooled({"m": pool("pool-one", "pool-two")})
    pool_apps.apps["pool-one"].inject(Fault("status", status=429, retry_after="60", at="events"))
    resp = client.post("/v1/chat/completions", json=chat(model="m"))
    assert resp.status_code == 429, resp.get_json()
    assert resp.get_json()["error"]["code"] == "upstream_quota_exceeded"
    assert calls(pool_apps, "pool-one") == 1 and calls(pool_apps, "pool-two") == 0


def test_a_user_tokens_429_after_the_app_accepted_the_job_is_not_retried_anonymously(
        pooled: Any, pool_apps: FaultyGradio) -> None:
    """The anonymous retry of a user token's quota error would run the prompt a second time on the
    same Space when the 429 came after the app took the job (only ZeroGPU's refusal may be retried)."""
    _, client = pooled({"m": {"space": pool_apps.apps["pool-one"].url}})
    pool_apps.apps["pool-one"].inject(Fault("status", status=429, retry_after="60", at="events"))
    resp = client.post("/v1/chat/completions", json=chat(model="m"), headers={"X-HF-Token": USER_TOKEN})
    assert resp.status_code == 429, resp.get_json()
    assert calls(pool_apps, "pool-one") == 1


def test_any_space_behind_keys_never_opens_a_private_space_with_the_operators_token(
        pooled: Any, pool_apps: FaultyGradio, hub: StandInHub) -> None:
    """ALLOW_ANY_SPACE maps public Spaces: the operator's HF_TOKEN (what keyed callers spend) is
    not shown to the Hub for `hf:`; a caller's own X-HF-Token opens what it may see."""
    hub.valid_tokens |= {"hf_operator_secret", "hf_callers_own"}
    _, client = pooled({"m": pool("pool-one")}, ALLOW_ANY_SPACE="true", GATEWAY_API_KEYS="sk-gateway-key-1",
                       HF_TOKEN="hf_operator_secret")
    hub.spaces["ops/internal"] = Space(pool_apps.apps["pool-three"].url, token="hf_operator_secret")
    hub.spaces["me/mine"] = Space(pool_apps.apps["pool-three"].url, token="hf_callers_own")
    keyed = {"Authorization": "Bearer sk-gateway-key-1"}
    for _ in range(2):                      # the second time past the cache's note that it is private
        resp = client.post("/v1/chat/completions", json=chat(model="hf:ops/internal"), headers=keyed)
        assert resp.status_code == 404, resp.get_json()
        assert resp.get_json()["error"]["code"] == "model_not_found"
        assert resp.get_json()["error"]["param"] == "model"
    assert hub.lookups_of("ops/internal") >= 2
    assert {auth for sid, auth in hub.lookups if sid == "ops/internal"} == {None}
    assert calls(pool_apps, "pool-three") == 0
    # The caller's own token is theirs to spend: their private Space is reached with it.
    resp = client.post("/v1/chat/completions", json=chat(model="hf:me/mine"),
                       headers={**keyed, "X-HF-Token": "hf_callers_own"})
    assert resp.status_code == 200, resp.get_json()
    # A public Space is served to the keyed caller as before.
    assert client.post("/v1/chat/completions", json=chat(model="hf:team/pool-two"), headers=keyed).status_code == 200


def test_a_quota_cooldown_is_the_credentials_own_and_does_not_divert_other_keys(
        pooled: Any, pool_apps: FaultyGradio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ZeroGPU counts quota per account: key A's token running out leaves pool-one to key B."""
    monkeypatch.setenv("A_HF", "hf_token_of_key_a")
    monkeypatch.setenv("B_HF", "hf_token_of_key_b")
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"name": "a", "key": "sk-key-a-0123456789", "hf_token": "env:A_HF"},
                                             {"name": "b", "key": "sk-key-b-0123456789", "hf_token": "env:B_HF"}]}))
    app, client = pooled({"m": pool("pool-one", "pool-two")}, KEYS_FILE=str(keys))

    def ask(key: str) -> int:
        return client.post("/v1/chat/completions", json=chat(model="m"),
                           headers={"Authorization": f"Bearer sk-key-{key}-0123456789"}).status_code
    pool_apps.apps["pool-one"].inject(Fault("status", status=429, retry_after="120"))
    assert ask("a") == 200                                               # moved on to pool-two
    assert (calls(pool_apps, "pool-one"), calls(pool_apps, "pool-two")) == (1, 1)
    assert ask("b") == 200 and ask("b") == 200                           # pool-one serves b
    assert (calls(pool_apps, "pool-one"), calls(pool_apps, "pool-two")) == (3, 1)
    assert ask("a") == 200                                               # a still skips it
    assert (calls(pool_apps, "pool-one"), calls(pool_apps, "pool-two")) == (3, 2)
    assert cooldowns(app, "m") == {}            # nor is it cooling for a request without a token
    shared = app.extensions["gradio_chat_gateway"].shared
    assert not any("hf_token_of_key" in name for name in shared._local.cooldowns)     # a hash, never the token


SHORT = {"UPSTREAM_CONNECT_TIMEOUT": "1", "UPSTREAM_IDLE_TIMEOUT": "1", "UPSTREAM_TOTAL_TIMEOUT": "20"}


def test_a_space_that_hangs_before_it_accepted_the_job_is_passed_over(pooled: Any, pool_apps: FaultyGradio) -> None:
    app, client = pooled({"m": pool("pool-one", "pool-two")}, **SHORT)
    pool_apps.apps["pool-one"].inject(Fault("hang", at="call"))          # the POST /call never answers
    resp = client.post("/v1/chat/completions", json=chat(model="m"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["choices"][0]["message"]["content"] == "word0 word1 word2"
    assert (calls(pool_apps, "pool-one"), calls(pool_apps, "pool-two")) == (1, 1)
    assert cooldowns(app, "m")["team/pool-one"].reason == "unavailable"


def test_a_space_that_hangs_before_it_accepted_the_job_is_passed_over_by_gevent_workers(
        pool_apps: FaultyGradio, tmp_path: Path) -> None:
    """The same through gunicorn, where the run is kept alive by a timer of gevent's loop."""
    one, two = pool_apps.apps["pool-one"].url, pool_apps.apps["pool-two"].url
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({"models": {"m": {"spaces": [one, two]}}}))
    gateway = Gunicorn({"MODELS_FILE": str(tmp_path / "models.yaml"), "BUILTIN_MODELS": "false", **TIMEOUTS,
                        **SHORT})
    try:
        gateway.wait_ready(60)
        pool_apps.apps["pool-one"].inject(Fault("hang", at="call"))
        resp = requests.post(gateway.url + "/v1/chat/completions", json=chat(model="m", stream=True), timeout=30)
        assert resp.status_code == 200 and "word0" in resp.text and '"error"' not in resp.text, resp.text
        assert (calls(pool_apps, "pool-one"), calls(pool_apps, "pool-two")) == (1, 1)
    finally:
        gateway.stop()


def test_a_space_that_hangs_after_it_accepted_the_job_is_not_run_again_elsewhere(
        pooled: Any, pool_apps: FaultyGradio) -> None:
    _, client = pooled({"m": pool("pool-one", "pool-two")}, **SHORT)
    pool_apps.apps["pool-one"].inject(Fault("hang", at="events"))        # an event id, then silence
    resp = client.post("/v1/chat/completions", json=chat(model="m"))
    assert resp.status_code == 504, resp.get_json()
    assert resp.get_json()["error"]["code"] == "upstream_timeout"
    assert (calls(pool_apps, "pool-one"), calls(pool_apps, "pool-two")) == (1, 0)


def test_a_space_in_a_runtime_error_is_passed_over_for_longer_each_time(
        pooled: Any, pool_apps: FaultyGradio, hub: StandInHub) -> None:
    app, client = pooled({"m": pool("pool-one", "pool-two")}, stages={"pool-one": ["RUNTIME_ERROR"]})
    assert client.post("/v1/chat/completions", json=chat(model="m")).status_code == 200
    first = cooldowns(app, "m")["team/pool-one"]
    assert first.reason == "unavailable" and 4 < first.remaining <= 5         # no Retry-After: 5 s
    deadline = time.monotonic() + 30
    while "team/pool-one" in cooldowns(app, "m"):                              # its first cooldown ends
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.post("/v1/chat/completions", json=chat(model="m")).status_code == 200
    assert hub.lookups_of("team/pool-one") == 2 and calls(pool_apps, "pool-one") == 0
    second = cooldowns(app, "m")["team/pool-one"]
    assert 9 < second.remaining <= 10                                          # then 10 s
    assert calls(pool_apps, "pool-two") == 2
