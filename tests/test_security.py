"""Hostile callers: no SSRF, no model id that becomes a URL, tokens only where the contract sends them,
never in errors or metrics, gateway keys compared in constant time.

The stand-in (tests/standins/faulty.py) records every request that reaches it
with its headers, so "the gateway did not contact X" and "this header did not
arrive" are observed at the receiving end. (The suite-wide scan of captured
logs for tokens lives in tests/fixtures_upstream.py.)
"""
from __future__ import annotations

import base64
import hmac
import string
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.standins.faulty import PNG, Fault

USER_TOKEN = "hf_userSecretToken1234567890abcdef"
OPERATOR_TOKEN = "hf_operatorSecretToken0987654321fedcba"
GATEWAY_KEY = "sk-gateway-key-for-tests-0123456789"
TOKEN_HEADERS = ("x-hf-authorization", "authorization")


def ask(client, model: str, content=None, stream: bool = False, headers=None, **extra):
    body = {"model": model, "stream": stream,
            "messages": [{"role": "user", "content": content if content is not None else "hi"}], **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers or {})


def image_part(url: str) -> list[dict]:
    return [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]


def carried_tokens(seen) -> set[str]:
    """Every credential-looking header value that reached the stand-in."""
    return {s.headers[h] for s in seen for h in TOKEN_HEADERS if h in s.headers}


# ---------------------------------------------------------------- SSRF through image_url

def private_urls(port: int) -> list[str]:
    here = f"{port}/steady/image.png"
    return [
        f"http://127.0.0.1:{here}", f"http://localhost:{here}", f"http://127.1:{here}",
        f"http://2130706433:{here}", f"http://0x7f000001:{here}", f"http://0.0.0.0:{here}",
        f"http://[::1]:{here}", f"http://[::ffff:127.0.0.1]:{here}", f"HTTP://127.0.0.1:{here}",
        f"http://user:pw@127.0.0.1:{here}", "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.png", "http://172.16.0.1/x.png", "http://192.168.1.1/x.png",
        "http://100.64.0.1/x.png", "http://[fd00::1]/x.png", "http://[fe80::1]/x.png",
        "http://224.0.0.1/x.png",
    ]


def test_image_urls_to_private_addresses_are_refused_without_contacting_them(make_faulty_app, fresh_faulty):
    client = make_faulty_app().test_client()
    for url in private_urls(fresh_faulty.port):
        fresh_faulty.forget()
        resp = ask(client, "vision", image_part(url))
        assert resp.status_code == 400, (url, resp.json)
        assert resp.json["error"]["param"] == "messages"
        assert not [s for s in fresh_faulty.seen if s.path == "/image.png"], f"{url} was fetched"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://127.0.0.1:70/x",
                                 "http:///x.png", "//127.0.0.1/x.png", "javascript:alert(1)"])
def test_image_urls_of_other_schemes_are_refused(make_faulty_app, fresh_faulty, url):
    resp = ask(make_faulty_app().test_client(), "vision", image_part(url))
    assert resp.status_code == 400
    assert resp.json["error"]["type"] == "invalid_request_error"


def test_private_image_urls_are_fetched_only_when_the_operator_allows_it(make_faulty_app, fresh_faulty):
    """The positive control: the same URL that was refused above is fetched once allowed, without tokens."""
    url = f"http://127.0.0.1:{fresh_faulty.port}/steady/image.png"
    client = make_faulty_app(ALLOW_PRIVATE_IMAGE_URLS="true").test_client()
    resp = ask(client, "vision", image_part(url), headers={"X-HF-Token": USER_TOKEN})
    assert resp.status_code == 200, resp.json
    fetches = [s for s in fresh_faulty.seen if s.path == "/image.png"]
    assert len(fetches) == 1
    assert not carried_tokens(fetches), "the image host got the user's token"
    assert fresh_faulty.counts["uploads"] >= 1


def test_image_fetch_does_not_follow_redirects(make_faulty_app, fresh_faulty):
    fresh_faulty.apps["wanderer"].redirect_to = f"http://127.0.0.1:{fresh_faulty.port}/steady/image.png"
    client = make_faulty_app(ALLOW_PRIVATE_IMAGE_URLS="true").test_client()
    resp = ask(client, "vision", image_part(f"http://127.0.0.1:{fresh_faulty.port}/wanderer/image.png"))
    assert resp.status_code == 400
    assert not [s for s in fresh_faulty.seen if s.app == "steady"]


def test_data_url_images_never_touch_the_network_beyond_the_app(make_faulty_app, fresh_faulty):
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    resp = ask(make_faulty_app().test_client(), "vision", image_part(data_url))
    assert resp.status_code == 200, resp.json
    assert {s.app for s in fresh_faulty.seen} == {"vision"}


# ---------------------------------------------------------------- model ids are never URLs

def hostile_model_ids(port: int) -> st.SearchStrategy[str]:
    here = f"127.0.0.1:{port}"
    return st.one_of(
        st.sampled_from([f"http://{here}/steady/", f"http://{here}/canary", f"https://{here}/",
                         "owner/space", "../../etc/passwd", f"//{here}/canary", "steady/../faulty",
                         "STEADY", " steady", "steady ", "steady\x00", "http://169.254.169.254/",
                         "huggingface-projects/gemma-2-9b-it", "gemma-2-9b-it"]),
        st.builds(lambda a, b: f"http://{here}/{a}/{b}", st.text(string.ascii_letters, max_size=8),
                  st.text(string.ascii_letters, max_size=8)),
        st.text(min_size=1, max_size=40),
    )


@pytest.fixture
def hub_watching_client(make_faulty_app, fresh_faulty):
    """Built-in Space models on, with HF_ENDPOINT at the stand-in, so a Hub lookup would be seen."""
    return make_faulty_app(BUILTIN_MODELS="true", HF_ENDPOINT=f"{fresh_faulty.url}/hub").test_client()


def test_unknown_model_ids_never_reach_any_host(hub_watching_client, fresh_faulty):
    known = {m["id"] for m in hub_watching_client.get("/v1/models").json["data"]}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(model=hostile_model_ids(fresh_faulty.port), stream=st.booleans())
    def check(model: str, stream: bool) -> None:
        if model in known:
            return
        resp = ask(hub_watching_client, model, stream=stream)
        assert resp.status_code == 404, (model, resp.json)
        assert resp.json["error"]["code"] == "model_not_found"
        assert hub_watching_client.get("/v1/models/" + model.lstrip("/")).status_code in (404, 405)

    check()
    # (A cancel of an earlier test's job may still arrive late: it is no request this test caused.)
    caused = [(s.app, s.path) for s in fresh_faulty.seen if s.path != "/gradio_api/cancel"]
    assert caused == []


# ---------------------------------------------------------------- which tokens go where

def test_user_token_goes_to_the_configured_app_the_way_gradio_client_sends_it(make_faulty_app, fresh_faulty):
    resp = ask(make_faulty_app().test_client(), "steady", headers={"X-HF-Token": USER_TOKEN})
    assert resp.status_code == 200
    seen = fresh_faulty.requests_to("steady")
    calls = [s for s in seen if "/call/" in s.path]
    assert calls and all(s.headers.get("x-hf-authorization") == f"Bearer {USER_TOKEN}" for s in calls)
    # A public app's metadata is the same for everyone: it is read anonymously, once for all callers.
    assert carried_tokens([s for s in seen if s not in calls]) == set()
    assert not any("authorization" in s.headers for s in seen)


@pytest.mark.parametrize("bearer", ["sk-not-a-hf-token", "EMPTY", "ollama", "", "hf_", "Bearer"])
def test_bearer_values_that_are_not_hf_tokens_go_nowhere(make_faulty_app, fresh_faulty, bearer):
    resp = ask(make_faulty_app().test_client(), "steady", headers={"Authorization": f"Bearer {bearer}"})
    assert resp.status_code == 200
    assert carried_tokens(fresh_faulty.requests_to("steady")) == set()


def test_gateway_key_never_goes_upstream_and_operator_token_does(make_faulty_app, fresh_faulty):
    client = make_faulty_app(GATEWAY_API_KEYS=GATEWAY_KEY, HF_TOKEN=OPERATOR_TOKEN).test_client()
    resp = ask(client, "steady", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
    assert resp.status_code == 200
    seen = fresh_faulty.requests_to("steady")
    assert carried_tokens(seen) == {f"Bearer {OPERATOR_TOKEN}"}
    assert not any(GATEWAY_KEY in value for s in seen for value in s.headers.values())


@pytest.mark.parametrize("stream", [False, True])
def test_user_token_does_not_follow_a_redirect_to_another_host(make_faulty_app, fresh_faulty, stream):
    """A configured app that redirects elsewhere must not hand the user's token to that other host."""
    fresh_faulty.apps["wanderer"].redirect_to = f"http://localhost:{fresh_faulty.port}/canary/config"
    client = make_faulty_app().test_client()
    resp = ask(client, "wanderer", stream=stream, headers={"X-HF-Token": USER_TOKEN})
    assert resp.status_code >= 400
    elsewhere = [s for s in fresh_faulty.seen if s.app == "canary"]
    assert carried_tokens(elsewhere) == set(), "the token travelled to a host that was not configured"


# ---------------------------------------------------------------- tokens never in errors or metrics

@pytest.mark.parametrize("who", ["user", "operator"])
def test_an_upstream_echoing_the_token_does_not_put_it_in_the_error(make_faulty_app, fresh_faulty, who):
    if who == "user":
        client, headers, token = make_faulty_app().test_client(), {"X-HF-Token": USER_TOKEN}, USER_TOKEN
    else:
        client = make_faulty_app(GATEWAY_API_KEYS=GATEWAY_KEY, HF_TOKEN=OPERATOR_TOKEN).test_client()
        headers, token = {"Authorization": f"Bearer {GATEWAY_KEY}"}, OPERATOR_TOKEN
    for stream in (False, True):
        fresh_faulty.apps["faulty"].inject(Fault("app_error", message=f"invalid credential {token}"))
        resp = ask(client, "faulty", stream=stream, headers=headers)
        assert resp.status_code == 502
        assert token not in resp.get_data(as_text=True)
        assert "invalid credential" in resp.json["error"]["message"]


def test_no_error_or_metric_ever_contains_a_token(make_faulty_app, fresh_faulty):
    client = make_faulty_app().test_client()
    bodies = []
    headers = {"X-HF-Token": USER_TOKEN, "Authorization": f"Bearer {USER_TOKEN}"}
    bodies.append(client.post("/v1/chat/completions", data="{", headers={**headers,
                              "Content-Type": "application/json"}).get_data(as_text=True))
    bodies.append(ask(client, "no-such-model", headers=headers).get_data(as_text=True))
    bodies.append(ask(client, USER_TOKEN, headers=headers).get_data(as_text=True).replace(
        f"'{USER_TOKEN}'", ""))   # a model id the caller typed may be named back to them
    for fault in (Fault("status", status=500), Fault("status", status=401), Fault("die"),
                  Fault("hang", at="events")):
        fresh_faulty.apps["faulty"].inject(fault)
        bodies.append(ask(client, "faulty", headers=headers).get_data(as_text=True))
    keyed = make_faulty_app(GATEWAY_API_KEYS=GATEWAY_KEY, HF_TOKEN=OPERATOR_TOKEN).test_client()
    bodies.append(ask(keyed, "steady", headers={"Authorization": f"Bearer {USER_TOKEN}"}).get_data(as_text=True))
    for fault in (Fault("status", status=500), Fault("status", status=403)):
        fresh_faulty.apps["faulty"].inject(fault)
        bodies.append(ask(keyed, "faulty", headers={"Authorization": f"Bearer {GATEWAY_KEY}"}).get_data(
            as_text=True))
    for c in (client, keyed):
        bodies.append(c.get("/metrics").get_data(as_text=True))
    for body in bodies:
        for secret in (USER_TOKEN, OPERATOR_TOKEN, GATEWAY_KEY):
            assert secret not in body, body[:500]


# ---------------------------------------------------------------- gateway keys

KEYS = ("key-one", "a-much-longer-second-key-0123456789")


def wrong_keys() -> list[str]:
    """Wrong keys of every length up to past the longest real one: prefixes, extensions, near misses."""
    longest = max(KEYS, key=len)
    keys = {longest[:n] for n in range(len(longest))} | {"x" * n for n in range(len(longest) + 3)}
    keys |= {k + "x" for k in KEYS} | {k.upper() for k in KEYS} | {k[:-1] + "?" for k in KEYS}
    keys |= {KEYS[0] + " x", "key-one,a-much-longer-second-key-0123456789", "é" * 7, "\t"}
    return sorted(keys - set(KEYS))


def test_wrong_gateway_keys_of_every_length_are_refused(make_faulty_app, fresh_faulty):
    client = make_faulty_app(GATEWAY_API_KEYS=",".join(KEYS)).test_client()
    for key in wrong_keys():
        for headers in ({"Authorization": f"Bearer {key}"}, {"Authorization": key}):
            resp = client.get("/v1/models", headers=headers)
            assert resp.status_code == 401, key
            assert resp.json["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models").status_code == 401
    for key in KEYS:
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_gateway_keys_are_compared_with_compare_digest_against_every_key(make_faulty_app, monkeypatch):
    """The code path: each request compares the given key with every configured key, in constant time.

    hmac.compare_digest is wrapped (not replaced) to record its calls; a plain `==`, an early
    exit at the first match, or a comparison of only some keys would show here.
    """
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    client = make_faulty_app(GATEWAY_API_KEYS=",".join(KEYS)).test_client()
    for given_key, status in ((KEYS[0], 200), (KEYS[1], 200), ("wrong", 401), ("", 401)):
        calls.clear()
        resp = client.get("/v1/models", headers={"Authorization": f"Bearer {given_key}"})
        assert resp.status_code == status
        compared = sorted(b if isinstance(b, bytes) else b.encode() for _, b in calls)
        assert compared == sorted(k.encode() for k in KEYS), "every key, every time"


def test_image_fetches_connect_only_to_public_addresses_even_if_dns_changes_its_answer():
    """The check at connect time: a name that resolved to a public address the first time
    (DNS rebinding) still cannot lead the fetch to a private one."""
    import requests as _requests

    from gateway.config import load_settings
    from gateway.errors import InvalidRequest
    from gateway.upstream.images import guard_image_session
    from gateway.upstream.session import make_session

    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/img.png"
        assert _requests.get(url, timeout=5).status_code == 200          # the control: the server answers
        guarded = guard_image_session(make_session(load_settings({})))
        with pytest.raises(InvalidRequest):
            guarded.get(url, timeout=5)
        assert hits == ["/img.png"]
    finally:
        server.shutdown()
        server.server_close()
