"""Property-based fuzzing of the HTTP API (hypothesis, through Flask's test client).

Every endpoint that /openapi.json lists is driven with generated requests;
whatever comes in, the gateway answers below 500, each answer matches the
schema /openapi.json documents for its status and content type, and every
4xx is OpenAI's error shape. The chat request schema is also fuzzed on its
own: it returns a request or raises a ValidationError, nothing else.

Models come from the stand-in of tests/standins/faulty.py ("steady" answers
"word0 word1 word2"), so a valid request gets a real 200 quickly.
Example counts are kept modest: this runs in every suite.
"""
from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from gateway.schemas import ChatRequest, ChatRequestSchema, first_error

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def sometimes_wrong(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a valid value, sometimes any JSON value at all."""
    return st.one_of(valid, valid, json_values)


def rarely_wrong(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Nearly always a valid value: whole requests come out valid often enough to reach the app."""
    return st.integers(0, 24).flatmap(lambda roll: json_values if roll == 0 else valid)


def chat_requests_with(maybe) -> st.SearchStrategy:
    parts = st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": maybe(st.text(max_size=30))}),
        st.fixed_dictionaries({"type": st.just("image_url"),
                               "image_url": maybe(st.fixed_dictionaries({"url": st.sampled_from(
                                   ["data:image/png;base64,iVBORw0KGgo=", "http://10.0.0.1/a.png", "", "x"])}))}),
        maybe(st.fixed_dictionaries({"type": st.text(max_size=12)})),
    )
    messages = st.fixed_dictionaries(
        {"role": maybe(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))},
        optional={"content": maybe(st.one_of(st.text(max_size=40), st.none(), st.lists(parts, max_size=3))),
                  "name": json_values, "tool_calls": json_values})
    return st.fixed_dictionaries(
        {"model": maybe(st.sampled_from(["steady", "steady", "unknown-model", "owner/space", ""])),
         "messages": maybe(st.lists(messages, min_size=1, max_size=4))},
        optional={
            "stream": maybe(st.booleans()),
            "stream_options": maybe(st.fixed_dictionaries({}, optional={"include_usage": maybe(st.booleans())})),
            "max_tokens": maybe(st.integers(-5, 5000)), "max_completion_tokens": maybe(st.integers(-5, 5000)),
            "temperature": maybe(st.floats(-1, 3)), "top_p": maybe(st.floats(-0.5, 1.5)),
            "top_k": maybe(st.integers(-5, 100)), "repetition_penalty": maybe(st.floats(-1, 3)),
            "presence_penalty": maybe(st.floats(-3, 3)), "frequency_penalty": maybe(st.floats(-3, 3)),
            "stop": maybe(st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=6))),
            "seed": maybe(st.integers()), "n": maybe(st.integers(0, 3)),
            "reasoning_effort": maybe(st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh",
                                                       "max"])),
            "user": maybe(st.text(max_size=10)), "tools": json_values, "logprobs": json_values,
        })


chat_requests = chat_requests_with(sometimes_wrong)
bodies = st.one_of(chat_requests_with(rarely_wrong), chat_requests, json_values)


# ---------------------------------------------------------------- the schema alone

@FUZZ
@given(body=st.one_of(chat_requests, json_values))
def test_chat_schema_returns_a_request_or_a_validation_error_naming_a_field(body):
    try:
        chat = ChatRequestSchema().load(body) if isinstance(body, dict) else None
    except ValidationError as exc:
        param, message = first_error(exc.messages)
        assert isinstance(param, str) and isinstance(message, str) and message
        return
    if chat is not None:
        assert isinstance(chat, ChatRequest) and chat.messages and isinstance(chat.model, str)
        assert all(isinstance(s, str) and s for s in chat.stop)


# ---------------------------------------------------------------- the HTTP API against /openapi.json

@pytest.fixture(scope="module")
def spec(make_module_app) -> dict[str, Any]:
    resp = make_module_app.test_client().get("/openapi.json")
    assert resp.status_code == 200
    return resp.get_json()


@pytest.fixture(scope="module")
def make_module_app(faulty, faulty_models_file):
    from gateway import create_app
    from tests.fixtures_faults import faulty_env

    return create_app({"TESTING": True}, env=faulty_env(faulty_models_file))


@pytest.fixture(scope="module")
def api(make_module_app):
    return make_module_app.test_client()


def response_schema(spec: dict[str, Any], path: str, method: str, status: int, mimetype: str) -> dict | None:
    """The schema /openapi.json gives this answer, or None when it documents none."""
    operation = spec["paths"][path][method]
    response = operation["responses"].get(str(status)) or operation["responses"].get("default")
    assert response is not None, f"{method.upper()} {path} answered {status}, which the spec does not list"
    while "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    content = response.get("content", {}).get(mimetype)
    return content


def validate(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(instance)


def check_answer(spec: dict[str, Any], path: str, method: str, resp) -> None:
    """No 5xx; OpenAI's error shape for every 4xx; the documented schema for everything."""
    assert resp.status_code < 500, resp.get_data()[:500]
    assert SANE_ID.match(resp.headers.get("X-Request-Id", "")), "every answer carries a sane X-Request-Id"
    if 400 <= resp.status_code < 500:
        body = resp.get_json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert isinstance(body["error"]["type"], str)
        assert body["error"]["param"] is None or isinstance(body["error"]["param"], str)
    content = response_schema(spec, path, method, resp.status_code, resp.mimetype)
    if content is None:
        assert resp.mimetype == "text/plain" and path == "/metrics" or resp.status_code == 405
        return
    if resp.mimetype == "application/json":
        validate(spec, content["schema"], resp.get_json())
    elif resp.mimetype == "text/event-stream" and path.endswith("/responses"):
        events = [json.loads(b.split("data: ", 1)[1]) for b in resp.get_data(as_text=True).split("\n\n")
                  if "data: " in b]
        for event in events:
            validate(spec, content["x-sse-data"], event)
        assert events[-1]["type"] in ("response.completed", "response.failed")
    elif resp.mimetype == "text/event-stream":
        items = [b[6:] for b in resp.get_data(as_text=True).split("\n\n") if b.startswith("data: ")]
        assert items and items[-1] == "[DONE]"
        chunks = [json.loads(i) for i in items[:-1]]
        for chunk in chunks:
            validate(spec, content["x-sse-data"] if "error" not in chunk else
                     {"$ref": "#/components/schemas/Error"}, chunk)
        assert len({c["id"] for c in chunks if "id" in c}) <= 1, "every chunk has the same id"


@FUZZ
@given(body=bodies, as_json=st.booleans())
def test_chat_completions_never_fails_and_answers_in_documented_shapes(api, spec, body, as_json):
    if as_json:
        resp = api.post("/v1/chat/completions", json=body)
    else:   # the same value, serialised oddly: as text, or with a wrong content type
        resp = api.post("/v1/chat/completions", data=json.dumps(body), content_type="text/plain")
        assert resp.status_code == 400
    check_answer(spec, "/v1/chat/completions", "post", resp)
    if resp.status_code == 200 and resp.mimetype == "application/json":
        answer = resp.get_json()
        assert answer["model"] == body["model"]
        assert answer["choices"][0]["message"]["content"] == "word0 word1 word2"


@FUZZ
@given(model_id=st.text(min_size=1, max_size=40).filter(
    lambda s: not s.startswith("/") and "//" not in s and "?" not in s and "#" not in s))
def test_model_lookup_by_any_id_is_a_model_or_a_404(api, spec, model_id):
    resp = api.get("/v1/models/" + model_id)
    if resp.status_code == 405 or not resp.request.path.startswith("/v1/models/"):
        return   # the id's slashes or dots made it another route (".." and the like): routing answered
    check_answer(spec, "/v1/models/{model_id}", "get", resp)
    assert resp.status_code in (200, 404)


def test_every_documented_endpoint_answers_its_documented_shape(api, spec):
    for path, operations in spec["paths"].items():
        for method in operations:
            concrete = path.replace("{model_id}", "steady")
            if path.endswith("/status/probe/{model_id}"):       # the status page's Check now: HTML
                answers = [api.post(concrete)]
                assert answers[0].mimetype == "text/html"
            elif method == "post":
                chat = {"model": "steady", "messages": [{"role": "user", "content": "hi"}]} \
                    if "/chat/" in path else {"model": "steady", "input": "hi"}
                answers = [api.post(concrete, json=chat),
                           api.post(concrete, json={**chat, "stream": True,
                                                    "stream_options": {"include_usage": True}})]
                assert answers[1].mimetype == "text/event-stream"
            else:
                answers = [api.open(concrete, method=method.upper())]
            for resp in answers:
                check_answer(spec, path, method, resp)
                assert resp.status_code == 200, (method, path, resp.status_code)


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
       path=st.one_of(st.sampled_from(["/v1/models", "/v1/chat/completions", "/v1/models/steady", "/healthz",
                                       "/readyz", "/metrics", "/openapi.json", "/v1", "/v1/", "/v2/models",
                                       "/v1/completions", "/v1/embeddings", "/static/x", "/"]),
                      st.text(alphabet=st.characters(codec="ascii", exclude_characters="?#"), max_size=20)
                      .map(lambda s: "/" + s.lstrip("/"))),
       body=st.one_of(st.none(), json_values), request_id=st.text(max_size=40))
@example(method="OPTIONS", path="/static/x", body=None, request_id="")   # Flask's default static route
def test_any_method_on_any_path_is_never_a_5xx_and_errors_are_openai_shaped(api, method, path, body,
                                                                             request_id):
    headers = {"X-Request-Id": request_id} if request_id.isprintable() and request_id.isascii() else {}
    resp = api.open(path, method=method, json=body, headers=headers)
    assert resp.status_code < 500, resp.get_data()[:300]
    if resp.status_code >= 400:
        error = resp.get_json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
    assert SANE_ID.match(resp.headers.get("X-Request-Id", "")), "every answer carries a sane X-Request-Id"
    if SANE_ID.match(request_id):
        assert resp.headers["X-Request-Id"] == request_id


@pytest.fixture(scope="module")
def keyed_api(faulty, faulty_models_file):
    from gateway import create_app
    from tests.fixtures_faults import faulty_env

    return create_app({"TESTING": True}, env=faulty_env(faulty_models_file,
                                                        GATEWAY_API_KEYS="sk-right-key")).test_client()


@FUZZ
@given(authorization=st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n\x00"),
                             max_size=60))
def test_any_authorization_header_on_a_keyed_gateway_is_a_401_unless_it_is_the_key(keyed_api, authorization):
    resp = keyed_api.get("/v1/models", headers={"Authorization": authorization})
    scheme, _, rest = authorization.strip().partition(" ")
    right = scheme.lower() == "bearer" and rest.strip() == "sk-right-key"
    assert resp.status_code == (200 if right else 401), authorization
    if not right:
        assert resp.get_json()["error"]["code"] == "invalid_api_key"
