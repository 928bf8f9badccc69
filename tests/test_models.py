"""GET /v1/models, /v1/models/<id>, /healthz, /readyz."""
from __future__ import annotations

BUILTIN = {"gpt-oss-20b", "gpt-oss-20b-safe", "gemma-3-12b", "gemma-2-9b", "gemma-2-2b",
           "gemma-3-270m", "qwen2.5-3b", "llama-3.2-1b"}


def test_models_list_has_builtin_and_file_models(client):
    resp = client.get("/v1/models")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["object"] == "list"
    ids = {m["id"] for m in body["data"]}
    assert BUILTIN <= ids
    assert "echo-app" in ids
    for model in body["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model" and isinstance(model["created"], int)


def test_builtin_models_can_be_hidden(make_app):
    ids = {m["id"] for m in make_app(BUILTIN_MODELS="false").test_client().get("/v1/models").get_json()["data"]}
    assert ids.isdisjoint(BUILTIN)
    assert "echo-app" in ids


def test_one_model_by_id(client):
    resp = client.get("/v1/models/gemma-2-9b")
    assert resp.status_code == 200
    assert resp.get_json() == {"id": "gemma-2-9b", "object": "model", "created": resp.get_json()["created"],
                               "owned_by": "google"}


def test_unknown_model_is_404_model_not_found(client):
    resp = client.get("/v1/models/no-such-model")
    assert resp.status_code == 404
    assert resp.get_json() == {"error": {"message": "The model 'no-such-model' does not exist.",
                                         "type": "invalid_request_error", "param": "model",
                                         "code": "model_not_found"}}


def test_health_and_readiness(client):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["models"] >= len(BUILTIN)


def test_every_response_carries_a_request_id(client):
    assert client.get("/v1/models").headers["X-Request-Id"].startswith("req_")
    echoed = client.get("/v1/models", headers={"X-Request-Id": "client-id-42"})
    assert echoed.headers["X-Request-Id"] == "client-id-42"
    insane = client.get("/v1/models", headers={"X-Request-Id": "bad id\twith spaces"})
    assert insane.headers["X-Request-Id"] != "bad id\twith spaces"


def test_unknown_route_is_json_404(client):
    resp = client.get("/v1/nothing-here")
    assert resp.status_code == 404
    assert resp.get_json()["error"]["type"] == "invalid_request_error"
