"""CORS_ORIGINS: browser clients of the listed origins may call the API; off by default."""
from __future__ import annotations

ORIGIN = "https://chat.example.org"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"}


def test_cors_is_off_by_default(client):
    resp = client.get("/v1/models", headers={"Origin": ORIGIN})
    assert resp.status_code == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_listed_origin_may_read_responses_and_request_ids(make_app):
    client = make_app(CORS_ORIGINS=f"https://other.example, {ORIGIN}").test_client()
    resp = client.get("/v1/models", headers={"Origin": ORIGIN})
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in resp.headers.get_all("Vary")
    assert "X-Request-Id" in resp.headers["Access-Control-Expose-Headers"]


def test_unlisted_origin_gets_no_cors_headers(make_app):
    client = make_app(CORS_ORIGINS=ORIGIN).test_client()
    resp = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_wildcard_allows_every_origin(make_app):
    resp = make_app(CORS_ORIGINS="*").test_client().get("/healthz", headers={"Origin": ORIGIN})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_preflight_needs_no_api_key_but_the_call_does(make_app):
    client = make_app(CORS_ORIGINS=ORIGIN, GATEWAY_API_KEYS="sk-right").test_client()
    preflight = client.options("/v1/chat/completions", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "x-stainless-os" in preflight.headers["Access-Control-Allow-Headers"]
    refused = client.post("/v1/chat/completions", json={}, headers={"Origin": ORIGIN})
    assert refused.status_code == 401
    # The browser lets the page read the error only with the CORS header on it.
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
