"""KEYS_FILE (CONTRACT §10): named keys by hash, their limits, headers, allow-lists, HF tokens and
metrics, through Flask's test client in front of the misbehaving stand-in (local state)."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import metrics
from gateway.config import ConfigError
from gateway.keys import parse_keys
from tests.fixtures_upstream import chat
from tests.standins.faulty import FaultyGradio

TEAM_A = "sk-team-a-0123456789"
TEAM_B = "sk-team-b-0123456789"
KEY_HF = "hf_keytoken_for_team_b"
OPERATOR_HF = "hf_operator_token_xyz"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def keyed(make_faulty_app: Any, fresh_faulty: FaultyGradio, tmp_path: Path):
    """make(entries, **env) -> a test client of a gateway with those KEYS_FILE entries."""
    def make(entries: list[dict[str, Any]], **env: str) -> Any:
        path = tmp_path / "keys.yaml"
        path.write_text(yaml.safe_dump({"keys": entries}))
        return make_faulty_app(KEYS_FILE=str(path), **env).test_client()
    return make


def ask(client: Any, key: str | None, model: str = "steady", **extra: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/v1/chat/completions", json=chat(model=model, **extra), headers=headers)


@pytest.mark.parametrize("entry, message", [
    ({"name": "a"}, "keys[0].key_sha256: give exactly one of key_sha256 and key"),
    ({"name": "a", "key_sha256": "abc"}, "keys[0].key_sha256: must be 64 lower-case hex digits"),
    ({"name": "a", "key": TEAM_A, "requests_per_minute": 0}, "keys[0].requests_per_minute:"),
    ({"name": "a", "key": TEAM_A, "hf_token": "hf_plain"}, "keys[0].hf_token: must be env:VARIABLE"),
    ({"name": "a", "key": TEAM_A, "hf_token": "env:NOT_SET_HERE"},
     "keys[0].hf_token: the environment variable NOT_SET_HERE is not set"),
    ({"name": "a", "key": TEAM_A, "limit": 3}, "keys[0].limit: Unknown field."),
])
def test_a_bad_keys_file_names_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_keys(yaml.safe_dump({"keys": [entry]}), "KEYS_FILE k.yaml", {})
    assert str(err.value).startswith("KEYS_FILE k.yaml: " + message)


def test_the_same_name_twice_is_refused() -> None:
    text = yaml.safe_dump({"keys": [{"name": "a", "key": TEAM_A}, {"name": "a", "key": TEAM_B}]})
    with pytest.raises(ConfigError, match=r"keys\[1\]\.name: the name 'a' is used twice"):
        parse_keys(text, "KEYS_FILE k.yaml", {})


def test_keys_are_found_by_hash_or_plain_and_others_get_401(keyed: Any) -> None:
    client = keyed([{"name": "team-a", "key_sha256": sha(TEAM_A)}, {"name": "team-b", "key": TEAM_B}],
                   GATEWAY_API_KEYS="sk-from-env-123")
    assert ask(client, TEAM_A).status_code == 200
    assert ask(client, TEAM_B).status_code == 200
    assert ask(client, "sk-from-env-123").status_code == 200          # GATEWAY_API_KEYS still count
    for wrong in (None, "sk-nope", sha(TEAM_A)):
        resp = ask(client, wrong)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_api_key"


def test_requests_per_minute_are_limited_with_retry_after_and_headers(keyed: Any) -> None:
    client = keyed([{"name": "team-a", "key": TEAM_A, "requests_per_minute": 3}])
    answers = [ask(client, TEAM_A) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["2", "1", "0", "0"]
    assert all(r.headers["x-ratelimit-limit-requests"] == "3" for r in answers)
    refused = answers[-1]
    assert refused.get_json()["error"] == {
        "message": refused.get_json()["error"]["message"], "type": "rate_limit_exceeded",
        "param": None, "code": "rate_limit_exceeded"}
    assert "team-a" in refused.get_json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")


def test_every_keyed_answer_carries_the_headers(keyed: Any) -> None:
    client = keyed([{"name": "team-a", "key": TEAM_A, "requests_per_minute": 5, "tokens_per_day": 1000}])
    auth = {"Authorization": f"Bearer {TEAM_A}"}
    for resp in (client.get("/v1/models", headers=auth),
                 client.post("/v1/chat/completions", json={"model": "steady"}, headers=auth),   # a 400
                 ask(client, TEAM_A, model="no-such-model")):                                 # a 404
        for what in ("requests", "tokens"):
            assert f"x-ratelimit-limit-{what}" in resp.headers, (resp.status_code, dict(resp.headers))
            assert f"x-ratelimit-remaining-{what}" in resp.headers
            assert f"x-ratelimit-reset-{what}" in resp.headers
    assert client.get("/v1/models", headers=auth).headers["x-ratelimit-remaining-requests"] == "5"


def test_a_model_outside_the_allow_list_does_not_exist_for_the_key(keyed: Any) -> None:
    client = keyed([{"name": "team-a", "key": TEAM_A, "models": ["steady", "bur*"]},
                    {"name": "team-b", "key": TEAM_B}])
    assert ask(client, TEAM_A, model="steady").status_code == 200
    assert ask(client, TEAM_A, model="burst").status_code == 200
    resp = ask(client, TEAM_A, model="faulty")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "model_not_found"
    assert ask(client, TEAM_B, model="faulty").status_code == 200


def test_a_keys_hf_token_is_what_goes_upstream_for_it(keyed: Any, fresh_faulty: FaultyGradio,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_B_HF", KEY_HF)
    client = keyed([{"name": "team-a", "key": TEAM_A}, {"name": "team-b", "key": TEAM_B, "hf_token": "env:TEAM_B_HF"}],
                   HF_TOKEN=OPERATOR_HF)
    assert ask(client, TEAM_B, text="from b").status_code == 200
    assert ask(client, TEAM_A, text="from a").status_code == 200
    calls = [s for s in fresh_faulty.requests_to("steady") if s.path.startswith("/gradio_api/call/")
             and s.method == "POST"]
    sent = [s.headers.get("x-hf-authorization") for s in calls]
    assert sent == [f"Bearer {KEY_HF}", f"Bearer {OPERATOR_HF}"]      # §5 rule 3, per key


def test_tokens_per_day_count_the_usage_estimate(keyed: Any) -> None:
    client = keyed([{"name": "team-a", "key": TEAM_A, "tokens_per_day": 60}])
    first = ask(client, TEAM_A, text="x" * 200)                        # about 54 tokens in, 3 out
    assert first.status_code == 200
    used = first.get_json()["usage"]["total_tokens"]
    assert used > 50
    second = ask(client, TEAM_A)
    assert second.status_code == 200                                   # 60 - used left: admitted
    third = ask(client, TEAM_A)
    assert third.status_code == 429 and third.get_json()["error"]["code"] == "rate_limit_exceeded"
    assert third.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(third.headers["Retry-After"]) > 0


def test_concurrent_streams_are_limited_and_freed_when_a_stream_ends(keyed: Any) -> None:
    client = keyed([{"name": "team-a", "key": TEAM_A, "concurrent_streams": 1}])
    auth = {"Authorization": f"Bearer {TEAM_A}"}
    held = client.post("/v1/chat/completions", json=chat(model="crawl", stream=True), headers=auth,
                       buffered=False)
    assert held.status_code == 200
    next(iter(held.response))                                          # the stream is open
    refused = ask(client, TEAM_A)
    assert refused.status_code == 429 and "concurrent streams" in refused.get_json()["error"]["message"]
    held.close()                                                       # the client leaves
    assert ask(client, TEAM_A).status_code == 200


def test_per_key_metrics_name_the_key_never_the_key_itself(keyed: Any) -> None:
    client = keyed([{"name": "team-a", "key": TEAM_A, "requests_per_minute": 1}])
    ask(client, TEAM_A)
    ask(client, TEAM_A)
    text = metrics.exposition().decode()
    assert 'gateway_key_requests_total{key="team-a",outcome="admitted"}' in text
    assert 'gateway_key_requests_total{key="team-a",outcome="limited_requests"}' in text
    assert 'gateway_key_tokens_total{key="team-a"}' in text
    assert TEAM_A not in text and sha(TEAM_A) not in text


def test_an_unreadable_keys_file_stops_start_up_naming_it(tmp_path: Path) -> None:
    from gateway import create_app
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=rf"^KEYS_FILE {missing}: cannot be read: No such file or directory"):
        create_app(env={"KEYS_FILE": str(missing), "BUILTIN_MODELS": "false"})


def test_the_status_page_takes_keys_of_the_keys_file(keyed: Any) -> None:
    client = keyed([{"name": "team-a", "key": TEAM_A}])
    assert client.get("/?part=models").status_code == 401
    assert client.get("/?part=models", headers={"Authorization": "Bearer sk-wrong-key-123"}).status_code == 401
    resp = client.get("/?part=models", headers={"Authorization": f"Bearer {TEAM_A}"})
    assert resp.status_code == 200 and "steady" in resp.get_data(as_text=True)
    assert "steady" not in client.get("/").get_data(as_text=True)      # nothing private without a key


def test_the_access_line_names_the_key_never_the_key_itself(keyed: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = keyed([{"name": "team-a", "key": TEAM_A, "requests_per_minute": 2}])
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        for rid, stream, status in (("key-line-1", True, 200), ("key-line-2", False, 200),
                                    ("key-line-3", False, 429)):
            resp = client.post("/v1/chat/completions", json=chat(model="steady", stream=stream),
                               headers={"Authorization": f"Bearer {TEAM_A}", "X-Request-Id": rid})
            assert resp.status_code == status
            resp.get_data()
            resp.close()
        client.post("/v1/chat/completions", json=chat(model="steady"), headers={"X-Request-Id": "no-key"}).close()
    lines = {r.access["request_id"]: r for r in caplog.records if r.name == "gateway.access"}
    assert sorted(lines) == ["key-line-1", "key-line-2", "key-line-3", "no-key"]
    assert all(lines[rid].access["key"] == "team-a" and " key=team-a " in lines[rid].getMessage()
               for rid in ("key-line-1", "key-line-2", "key-line-3"))
    assert lines["no-key"].access["status"] == 401 and lines["no-key"].access["key"] is None
    assert TEAM_A not in caplog.text and sha(TEAM_A) not in caplog.text


def test_a_browser_page_may_read_the_ratelimit_headers(keyed: Any) -> None:
    origin = "https://chat.example.org"
    client = keyed([{"name": "team-a", "key": TEAM_A, "requests_per_minute": 5, "tokens_per_day": 1000}],
                   CORS_ORIGINS=origin)
    resp = client.post("/v1/chat/completions", json=chat(model="steady"),
                       headers={"Authorization": f"Bearer {TEAM_A}", "Origin": origin})
    assert resp.status_code == 200 and resp.headers["Access-Control-Allow-Origin"] == origin
    exposed = {h.strip().lower() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
    sent = {h.lower() for h in resp.headers.keys() if h.lower().startswith("x-ratelimit-")}
    assert len(sent) == 6 and sent <= exposed
    assert {"x-request-id", "retry-after"} <= exposed
