"""GET /openapi.json: a valid OpenAPI document that describes every endpoint and what it really sends."""
from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from gateway.schemas import ChatRequestSchema


@pytest.fixture
def document(client) -> dict[str, Any]:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200 and resp.is_json
    return resp.get_json()


def conforms(document: dict[str, Any], component: str, instance: Any) -> None:
    """Validate a real response against a schema of the document, its $refs resolved in it."""
    Draft202012Validator({**document, "$ref": f"#/components/schemas/{component}"}).validate(instance)


def test_document_is_valid_openapi(document):
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_endpoint_of_the_gateway_is_described(client, document):
    routes = set()
    for rule in client.application.url_map.iter_rules():
        if rule.endpoint.startswith("gateway_"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            routes |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes == described


def test_request_schema_is_generated_from_the_marshmallow_schema(document):
    properties = document["components"]["schemas"]["ChatRequest"]["properties"]
    assert set(properties) == set(ChatRequestSchema().fields)
    assert properties["temperature"]["maximum"] == 2
    assert (properties["n"]["minimum"], properties["n"]["maximum"]) == (1, 8)
    body = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/ChatRequest"}


def test_every_operation_documents_its_errors(document):
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "429", "502", "503", "504"} <= set(chat)
    assert {"application/json", "text/event-stream"} <= set(chat["200"]["content"])


def test_real_responses_conform_to_the_document(client, document):
    conforms(document, "ModelList", client.get("/v1/models").get_json())
    conforms(document, "Model", client.get("/v1/models/echo-app").get_json())
    conforms(document, "Error", client.get("/v1/models/no-such-model").get_json())
    conforms(document, "Health", client.get("/healthz").get_json())
    conforms(document, "Ready", client.get("/readyz").get_json())
    messages = [{"role": "user", "content": "hi"}]
    done = client.post("/v1/chat/completions", json={"model": "echo-app", "messages": messages})
    conforms(document, "ChatCompletion", done.get_json())
    stream = client.post("/v1/chat/completions", json={"model": "echo-app", "messages": messages, "stream": True,
                                                       "stream_options": {"include_usage": True}})
    chunks = [line[6:] for line in stream.get_data(as_text=True).splitlines() if line.startswith("data: {")]
    assert len(chunks) > 2
    for chunk in chunks:
        conforms(document, "ChatCompletionChunk", json.loads(chunk))


def test_paths_follow_the_mount_prefix():
    from gateway.openapi import build

    assert all(path.startswith("/llm/") for path in build("/llm")["paths"])
