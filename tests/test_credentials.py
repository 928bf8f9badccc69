"""CONTRACT §5: which Hugging Face credential goes upstream, read from what a real app received."""
from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.config import load_settings
from gateway.credentials import check_api_key, resolve
from gateway.errors import InvalidApiKey
from tests.fixtures_upstream import (IP_TOKEN, OPERATOR_TOKEN, OTHER_TOKEN, USER_TOKEN, chat,
                                     find_leaks)


def received(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    """The credential headers the real `headers` app saw for one completion."""
    resp = client.post("/v1/chat/completions", json=chat(model="headers"), headers=headers)
    assert resp.status_code == 200, resp.get_json()
    shown = json.loads(resp.get_json()["choices"][0]["message"]["content"])
    return {name: value[::-1] if value else value for name, value in shown.items()}   # the app reverses them


@pytest.fixture
def open_gateway(gateway: Any, upstream_apps: dict[str, str]) -> Any:
    """No gateway keys, but an operator token the gateway must not spend."""
    return gateway({"headers": upstream_apps["headers"]}, HF_TOKEN=OPERATOR_TOKEN)


@pytest.fixture
def keyed_gateway(gateway: Any, upstream_apps: dict[str, str]) -> Any:
    return gateway({"headers": upstream_apps["headers"]}, HF_TOKEN=OPERATOR_TOKEN,
                   GATEWAY_API_KEYS="key-one, key-two")


def test_x_hf_token_travels_as_x_hf_authorization(open_gateway: Any) -> None:
    seen = received(open_gateway, {"X-HF-Token": USER_TOKEN})
    assert seen["x-hf-authorization"] == f"Bearer {USER_TOKEN}"
    assert seen["authorization"] is None


def test_open_gateway_forwards_a_bearer_hf_token(open_gateway: Any) -> None:
    seen = received(open_gateway, {"Authorization": f"Bearer {USER_TOKEN}"})
    assert seen["x-hf-authorization"] == f"Bearer {USER_TOKEN}"


def test_x_hf_token_wins_over_the_bearer(open_gateway: Any) -> None:
    seen = received(open_gateway, {"Authorization": f"Bearer {OTHER_TOKEN}", "X-HF-Token": USER_TOKEN})
    assert seen["x-hf-authorization"] == f"Bearer {USER_TOKEN}"


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Bearer sk-abc123", "Bearer EMPTY",
                                           "Bearer ollama", "Bearer hf_", "Basic dXNlcjpwYXNz",
                                           "Bearer hf_has space", "Bearer héllo"])
def test_placeholder_bearers_go_nowhere_and_never_become_the_operator_token(
        open_gateway: Any, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    seen = received(open_gateway, headers)
    assert seen["x-hf-authorization"] is None


def test_junk_x_hf_token_is_not_forwarded(open_gateway: Any) -> None:
    seen = received(open_gateway, {"X-HF-Token": "EMPTY"})
    assert seen["x-hf-authorization"] is None


def test_operator_token_is_spent_only_behind_gateway_keys(keyed_gateway: Any) -> None:
    seen = received(keyed_gateway, {"Authorization": "Bearer key-two"})
    assert seen["x-hf-authorization"] == f"Bearer {OPERATOR_TOKEN}"


def test_user_token_wins_over_the_operator_token_behind_gateway_keys(keyed_gateway: Any) -> None:
    seen = received(keyed_gateway, {"Authorization": "Bearer key-one", "X-HF-Token": USER_TOKEN})
    assert seen["x-hf-authorization"] == f"Bearer {USER_TOKEN}"


@pytest.mark.parametrize("authorization", [None, "Bearer key-three", "Bearer key-one2", "Bearer ",
                                           "Bearer ké", f"Bearer {USER_TOKEN}"])
def test_missing_or_wrong_gateway_key_is_401_invalid_api_key(keyed_gateway: Any, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = keyed_gateway.post("/v1/chat/completions", json=chat(model="headers"), headers=headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "invalid_api_key"
    assert USER_TOKEN not in resp.get_data(as_text=True)


def test_gateway_keys_are_compared_in_constant_time() -> None:
    """hmac.compare_digest over bytes: keys of other lengths or non-ASCII never raise."""
    settings = load_settings({"GATEWAY_API_KEYS": "key-one"})
    check_api_key({"Authorization": "Bearer key-one"}, settings)
    for given in ("Bearer k", "Bearer key-one-and-more", "Bearer ключ", "Bearer \u00e9"):
        with pytest.raises(InvalidApiKey):
            check_api_key({"Authorization": given}, settings)
    import inspect
    from gateway import credentials
    assert "compare_digest" in inspect.getsource(credentials.check_api_key)


def test_x_ip_token_is_forwarded(open_gateway: Any) -> None:
    seen = received(open_gateway, {"X-IP-Token": IP_TOKEN})
    assert seen["x-ip-token"] == IP_TOKEN
    assert seen["x-hf-authorization"] is None


def test_credential_repr_never_shows_the_token() -> None:
    credential = resolve({"X-HF-Token": USER_TOKEN, "X-IP-Token": IP_TOKEN}, load_settings({}))
    assert credential.token == USER_TOKEN
    assert USER_TOKEN not in repr(credential) and IP_TOKEN not in repr(credential)
    assert USER_TOKEN not in credential.fingerprint


def test_user_token_refused_by_a_public_app_is_retried_once_anonymously(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(reject_any_token=True)
    client = gateway({"m": app.url})
    resp = client.post("/v1/chat/completions", json=chat(), headers={"X-HF-Token": USER_TOKEN})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["choices"][0]["message"]["content"] == "hello there"
    # The app's metadata is read anonymously (it is public); the refused call ran nothing.
    assert [c.headers.get("x-hf-authorization") for c in app.calls()] == [f"Bearer {USER_TOKEN}", None]


def test_zerogpu_quota_on_a_user_token_is_retried_once_anonymously(gateway: Any, fake_gradio: Any) -> None:
    quota = [("error", {"error": "You have exceeded your free ZeroGPU quota (60s requested vs. 10s left). "
                                 "Try again in 0:01:00.", "title": "ZeroGPU quota exceeded"})]
    answer = [("complete", ["anonymous answer"])]
    app = fake_gradio(events=lambda headers: quota if "x-hf-authorization" in headers else answer)
    client = gateway({"m": app.url})
    resp = client.post("/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {USER_TOKEN}"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["choices"][0]["message"]["content"] == "anonymous answer"
    assert [c.headers.get("x-hf-authorization") for c in app.calls()] == [f"Bearer {USER_TOKEN}", None]


def test_operator_token_refused_is_not_retried_anonymously_or_leaked(gateway: Any, fake_gradio: Any) -> None:
    app = fake_gradio(reject_any_token=True)
    client = gateway({"m": app.url}, HF_TOKEN=OPERATOR_TOKEN, GATEWAY_API_KEYS="key-one")
    resp = client.post("/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer key-one"})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "upstream_unauthorized"
    assert OPERATOR_TOKEN not in resp.get_data(as_text=True)
    calls = app.calls()
    assert calls and all(c.headers.get("x-hf-authorization") == f"Bearer {OPERATOR_TOKEN}" for c in calls)


def test_anonymous_call_never_falls_back_to_the_operator_token(gateway: Any, fake_gradio: Any) -> None:
    from tests.fixtures_upstream import PRIVATE_TOKEN
    app = fake_gradio(require_token=PRIVATE_TOKEN)
    client = gateway({"m": app.url}, HF_TOKEN=PRIVATE_TOKEN)
    resp = client.post("/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer sk-nothing"})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "upstream_unauthorized"
    assert all("x-hf-authorization" not in s.headers for s in app.seen)


def test_refused_user_token_never_appears_in_the_error(gateway: Any, fake_gradio: Any) -> None:
    from tests.fixtures_upstream import PRIVATE_TOKEN
    app = fake_gradio(require_token=PRIVATE_TOKEN)
    client = gateway({"m": app.url})
    resp = client.post("/v1/chat/completions", json=chat(stream=True), headers={"X-HF-Token": USER_TOKEN})
    assert resp.status_code == 401
    assert USER_TOKEN not in resp.get_data(as_text=True)


def test_leak_check_finds_and_masks_test_tokens() -> None:
    lines = ["GET /config 200", f"headers {{'X-HF-Authorization': 'Bearer {USER_TOKEN}'}}"]
    assert find_leaks(lines) == ["headers {'X-HF-Authorization': 'Bearer hf_<TOKEN>'}"]


def test_token_is_not_carried_across_a_redirect_to_another_host(gateway: Any, fake_gradio: Any) -> None:
    """A user's token travels only to the configured host: a redirect elsewhere is not followed at all
    (CONTRACT §11), so neither the token nor the prompt reaches the other host."""
    from tests.standins.server import QuietHandler, Served
    elsewhere = fake_gradio()

    class Redirect(QuietHandler):
        def answer(self) -> None:
            self.read_body()
            self.send_response(307)
            self.send_header("Location", elsewhere.url.rstrip("/") + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        do_GET = do_POST = answer

    redirector = Served(Redirect)
    try:
        resp = gateway({"m": redirector.url}).post("/v1/chat/completions", json=chat(),
                                                   headers={"X-HF-Token": USER_TOKEN, "X-IP-Token": IP_TOKEN})
        assert resp.status_code == 502, resp.get_json()
        assert "redirected to another host" in resp.get_json()["error"]["message"]
        assert not elsewhere.seen
    finally:
        redirector.stop()
