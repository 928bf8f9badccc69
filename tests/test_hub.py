"""CONTRACT §7: Space ids resolved through the Hub API at HF_ENDPOINT (a local stand-in Hub)."""
from __future__ import annotations

from typing import Any

from tests.fixtures_upstream import OPERATOR_TOKEN, PRIVATE_TOKEN, USER_TOKEN, chat
from tests.standins.hub import Space


def ask(client: Any, headers: dict[str, str] | None = None, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", json=chat(**extra), headers=headers or {})


def content(resp: Any) -> str:
    return resp.get_json()["choices"][0]["message"]["content"]


def test_running_space_is_served_from_the_host_the_hub_returns(gateway: Any, hub: Any, apps: dict[str, str]) -> None:
    hub.spaces["team/echo"] = Space(apps["echo"])
    client = gateway({"m": "team/echo"}, HF_ENDPOINT=hub.url)
    resp = ask(client, text="hi there")
    assert resp.status_code == 200, resp.get_json()
    assert content(resp).startswith("echo: hi there")


def test_space_lookups_are_cached(gateway: Any, hub: Any, apps: dict[str, str]) -> None:
    hub.spaces["team/echo"] = Space(apps["echo"])
    client = gateway({"m": "team/echo"}, HF_ENDPOINT=hub.url)
    assert [ask(client).status_code for _ in range(3)] == [200, 200, 200]
    assert hub.lookups_of("team/echo") == 1


def test_sleeping_space_is_woken_and_waited_for(gateway: Any, hub: Any, apps: dict[str, str]) -> None:
    hub.spaces["team/echo"] = Space(apps["echo"], stages=["SLEEPING", "APP_STARTING", "RUNNING"])
    client = gateway({"m": "team/echo"}, HF_ENDPOINT=hub.url)
    resp = ask(client)
    assert resp.status_code == 200, resp.get_json()
    assert hub.lookups_of("team/echo") == 3


def test_space_that_does_not_wake_within_the_total_timeout_is_504(gateway: Any, hub: Any,
                                                                   apps: dict[str, str]) -> None:
    hub.spaces["team/echo"] = Space(apps["echo"], stages=["SLEEPING"])
    client = gateway({"m": "team/echo"}, HF_ENDPOINT=hub.url, UPSTREAM_TOTAL_TIMEOUT="1")
    resp = ask(client)
    assert resp.status_code == 504
    assert resp.get_json()["error"]["code"] == "upstream_timeout"


def test_building_space_is_503_with_retry_after(gateway: Any, hub: Any, apps: dict[str, str]) -> None:
    hub.spaces["team/echo"] = Space(apps["echo"], stages=["BUILDING"])
    resp = ask(gateway({"m": "team/echo"}, HF_ENDPOINT=hub.url))
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) > 0
    assert "BUILDING" in resp.get_json()["error"]["message"]


def test_paused_or_failed_space_is_503_naming_the_stage(gateway: Any, hub: Any, apps: dict[str, str]) -> None:
    hub.spaces["team/paused"] = Space(apps["echo"], stages=["PAUSED"])
    hub.spaces["team/broken"] = Space(apps["echo"], stages=["RUNTIME_ERROR"])
    client = gateway({"paused": "team/paused", "broken": "team/broken"}, HF_ENDPOINT=hub.url)
    for model, stage in (("paused", "PAUSED"), ("broken", "RUNTIME_ERROR")):
        resp = ask(client, model=model)
        assert resp.status_code == 503
        assert stage in resp.get_json()["error"]["message"]


def test_missing_space_is_404_to_a_token_and_401_to_no_token(gateway: Any, hub: Any) -> None:
    client = gateway({"m": "team/nowhere"}, HF_ENDPOINT=hub.url)
    with_token = ask(client, {"X-HF-Token": USER_TOKEN})
    assert with_token.status_code == 404
    assert with_token.get_json()["error"]["code"] == "space_not_found"
    without = ask(client)
    assert without.status_code == 401
    assert without.get_json()["error"]["code"] == "upstream_unauthorized"


def test_private_space_is_served_with_its_token_on_hub_and_app(gateway: Any, hub: Any, fake_gradio: Any) -> None:
    app = fake_gradio(require_token=PRIVATE_TOKEN)
    hub.spaces["me/private"] = Space(app.url, token=PRIVATE_TOKEN)
    client = gateway({"m": "me/private"}, HF_ENDPOINT=hub.url)
    resp = ask(client, {"X-HF-Token": PRIVATE_TOKEN})
    assert resp.status_code == 200, resp.get_json()
    # Asked anonymously first (a public Space's metadata is shared by every caller); the Hub
    # refuses, so the Space is private: asked again with the token, as Authorization for the Hub.
    assert hub.lookups == [("me/private", None), ("me/private", f"Bearer {PRIVATE_TOKEN}")]
    assert {s.headers.get("x-hf-authorization") for s in app.seen} == {f"Bearer {PRIVATE_TOKEN}"}


def test_private_space_cached_for_one_token_is_not_served_to_another(gateway: Any, hub: Any,
                                                                      fake_gradio: Any) -> None:
    """The metadata cache is keyed by a hash of the credential."""
    app = fake_gradio(require_token=PRIVATE_TOKEN)
    hub.spaces["me/private"] = Space(app.url, token=PRIVATE_TOKEN)
    client = gateway({"m": "me/private"}, HF_ENDPOINT=hub.url)
    assert ask(client, {"X-HF-Token": PRIVATE_TOKEN}).status_code == 200
    anonymous = ask(client)
    assert anonymous.status_code == 401
    assert PRIVATE_TOKEN not in anonymous.get_data(as_text=True)
    keys = client.application.extensions["gradio_chat_gateway"].upstream.apps.keys()
    assert len(keys) == 1 and PRIVATE_TOKEN not in repr(keys)


def test_invalid_user_token_at_the_hub_falls_back_to_anonymous(gateway: Any, hub: Any, apps: dict[str, str]) -> None:
    hub.spaces["team/echo"] = Space(apps["echo"])
    hub.valid_tokens.discard(USER_TOKEN)              # the Hub answers 401 to it
    client = gateway({"m": "team/echo"}, HF_ENDPOINT=hub.url)
    resp = ask(client, {"X-HF-Token": USER_TOKEN})
    assert resp.status_code == 200, resp.get_json()
    assert [auth for _, auth in hub.lookups] == [None]     # a public Space: looked up anonymously


def test_operator_token_goes_to_the_hub_only_behind_gateway_keys(gateway: Any, hub: Any,
                                                                   apps: dict[str, str]) -> None:
    hub.spaces["team/private"] = Space(apps["echo"], token=OPERATOR_TOKEN)
    open_client = gateway({"m": "team/private"}, HF_ENDPOINT=hub.url, HF_TOKEN=OPERATOR_TOKEN)
    assert ask(open_client).status_code == 401
    keyed = gateway({"m": "team/private"}, HF_ENDPOINT=hub.url, HF_TOKEN=OPERATOR_TOKEN, GATEWAY_API_KEYS="k1")
    assert ask(keyed, {"Authorization": "Bearer k1"}).status_code == 200
    assert [auth for _, auth in hub.lookups] == [None, None, f"Bearer {OPERATOR_TOKEN}"]
