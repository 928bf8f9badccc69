"""The OpenAPI 3.1 document of /openapi.json, generated with apispec from marshmallow schemas.

Requests are described by the schemas the gateway validates with (schemas.py).
Responses are built as dicts in payloads.py; the schemas below describe them
for the document only, and a test loads real responses through the document.
"""
from __future__ import annotations

from typing import Any, Callable

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields, validate

from . import responses_schema, schemas, tools
from .routes import completions, health, meta, models, page, responses

ERROR_STATUSES = {
    "400": "Invalid request: `param` names the field.",
    "401": "Missing or wrong gateway key, or the Space refused every credential.",
    "404": "Unknown model (`model_not_found`) or the model's Space does not exist.",
    "413": "The body is larger than 10 MiB.",
    "429": "Upstream quota exceeded (ZeroGPU); `Retry-After` when known.",
    "500": "A bug in the gateway, logged with the request id.",
    "502": "The Gradio app failed.",
    "503": "The Gradio app is unavailable (building, paused, queue full, unreachable).",
    "504": "The Gradio app did not answer within the timeouts.",
}


class ModelSchema(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("model"))
    created = fields.Integer(required=True)
    owned_by = fields.String(required=True)


class ModelListSchema(Schema):
    object = fields.String(required=True, validate=validate.Equal("list"))
    data = fields.List(fields.Nested(ModelSchema), required=True)


class UsageSchema(Schema):
    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)


class FunctionCallSchema(Schema):
    name = fields.String(required=True)
    arguments = fields.String(required=True, metadata={"description": "The arguments, a JSON object as text."})


class ToolCallSchema(Schema):
    index = fields.Integer(metadata={"description": "In streams only: the call's place in the list."})
    id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.Equal("function"))
    function = fields.Nested(FunctionCallSchema, required=True)


class AssistantMessageSchema(Schema):
    role = fields.String(required=True, validate=validate.Equal("assistant"))
    content = fields.String(required=True, allow_none=True)
    reasoning_content = fields.String(metadata={"description": "The model's reasoning, when it shows one."})
    tool_calls = fields.List(fields.Nested(ToolCallSchema), metadata={
        "description": "With `tools: emulate`: the calls the app's answer made (finish_reason tool_calls)."})


class ChoiceSchema(Schema):
    index = fields.Integer(required=True)
    message = fields.Nested(AssistantMessageSchema, required=True)
    logprobs = fields.Raw(allow_none=True, metadata={"description": "Always null."})
    finish_reason = fields.String(required=True, validate=validate.OneOf(["stop", "length", "tool_calls"]))


class ChatCompletionSchema(Schema):
    id = fields.String(required=True, metadata={"example": "chatcmpl-0123456789abcdef01234567"})
    object = fields.String(required=True, validate=validate.Equal("chat.completion"))
    created = fields.Integer(required=True)
    model = fields.String(required=True, metadata={"description": "The id the client asked for."})
    choices = fields.List(fields.Nested(ChoiceSchema), required=True)
    usage = fields.Nested(UsageSchema, required=True)


class DeltaSchema(Schema):
    role = fields.String(validate=validate.Equal("assistant"))
    content = fields.String()
    reasoning_content = fields.String()
    tool_calls = fields.List(fields.Nested(ToolCallSchema))


class ChunkChoiceSchema(Schema):
    index = fields.Integer(required=True)
    delta = fields.Nested(DeltaSchema, required=True)
    logprobs = fields.Raw(allow_none=True, metadata={"description": "Always null."})
    finish_reason = fields.String(required=True, allow_none=True)


class ChatCompletionChunkSchema(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("chat.completion.chunk"))
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Nested(ChunkChoiceSchema), required=True)
    usage = fields.Nested(UsageSchema, allow_none=True,
                          metadata={"description": "With stream_options.include_usage: null on every chunk "
                                                   "but the last, which has no choices."})


class ErrorDetailSchema(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(required=True, allow_none=True)
    code = fields.String(required=True, allow_none=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)


class ReadySchema(Schema):
    status = fields.String(required=True)
    models = fields.Integer(required=True)


def _strict_fields(self: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
    """The request schema's own field classes, as JSON Schema."""
    if isinstance(field, tools.ToolsField):
        return _tools_field(field)
    if isinstance(field, schemas.StopField):
        return {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4},
                          {"type": "null"}],
                "description": "Up to four sequences; the output is cut at the first match."}
    if type(field) in FIELD_SCHEMAS:
        return FIELD_SCHEMAS[type(field)]
    if isinstance(field, schemas.ContentField):
        return {"oneOf": [{"type": "string"}, {"type": "null"},
                          {"type": "array", "items": {"$ref": "#/components/schemas/ContentPart"}}]}
    return {}


CONTENT_PART = {"oneOf": [
    {"type": "object", "required": ["type", "text"],
     "properties": {"type": {"const": "text"}, "text": {"type": "string"}}},
    {"type": "object", "required": ["type", "image_url"],
     "properties": {"type": {"const": "image_url"},
                    "image_url": {"type": "object", "required": ["url"],
                                  "properties": {"url": {"type": "string",
                                                         "description": "A data: URL or an http(s) URL."}}}}}]}


TOOL = {"type": "object", "required": ["type", "function"],
        "properties": {"type": {"const": "function"},
                       "function": {"type": "object", "required": ["name"],
                                    "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                                                   "parameters": {"type": "object"}}}}}
FLAT_TOOL = {"type": "object", "required": ["type", "name"],
             "properties": {"type": {"const": "function"}, "name": {"type": "string"},
                            "description": {"type": "string"}, "parameters": {"type": "object"},
                            "strict": {"type": "boolean"}}}
FORMAT = {"type": "object", "required": ["type"], "description": "text, json_object, or json_schema with a "
          "schema: asked for in the system text, the answer checked (502 response_format_mismatch if not).",
          "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}}}
FIELD_SCHEMAS: dict[type, dict[str, Any]] = {
    tools.ToolChoiceField: {"description": "none, auto, required, or one function: "
                            "{\"type\": \"function\", \"function\": {\"name\"}} (flat `name` on /v1/responses). "
                            "Required or named on a model without `tools: emulate`: 400 tools_not_supported.",
                            "oneOf": [{"enum": ["none", "auto", "required"]}, {"type": "object"}, {"type": "null"}]},
    tools.ResponseFormatField: {**FORMAT, "type": ["object", "null"]},
    responses_schema.InputField: {"description": "A string (one user turn) or a list of items: messages "
                                  "(input_text, output_text, input_image parts), function_call, "
                                  "function_call_output; reasoning items are left out.",
                                  "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
    responses_schema.TextField: {"type": ["object", "null"], "properties": {"format": FORMAT}},
    responses_schema.ReasoningField: {"type": ["object", "null"],
                                      "properties": {"effort": {"enum": list(schemas.REASONING_EFFORTS)}}},
}


def _tools_field(field: fields.Field) -> dict[str, Any]:
    flat = getattr(field, "flat", False)
    return {"type": ["array", "null"], "items": FLAT_TOOL if flat else TOOL, "maxItems": 128,
            "description": "Function tools. Emulated on models with `tools: emulate`, dropped on others."}


def _new_spec(version: str) -> APISpec:
    plugin = MarshmallowPlugin()
    spec = APISpec(title="gradio-chat-gateway", version=version, openapi_version="3.1.0",
                   info={"description": "An OpenAI-compatible chat API in front of Gradio apps."},
                   plugins=[plugin])
    plugin.map_to_openapi_type(schemas.StrictNumber, "number", None)
    plugin.map_to_openapi_type(schemas.StrictInteger, "integer", None)
    plugin.map_to_openapi_type(schemas.StrictBoolean, "boolean", None)
    assert plugin.converter is not None
    plugin.converter.add_attribute_function(_strict_fields)
    return spec


def _components(spec: APISpec) -> None:
    spec.components.schema("ContentPart", CONTENT_PART)
    spec.components.schema("Response", RESPONSE)
    spec.components.schema("ResponseEvent", RESPONSE_EVENT)
    spec.components.schema("ResponsesRequest", schema=responses_schema.ResponsesRequestSchema)
    for name, schema in (("ChatRequest", schemas.ChatRequestSchema), ("ChatCompletion", ChatCompletionSchema),
                         ("ChatCompletionChunk", ChatCompletionChunkSchema), ("Model", ModelSchema),
                         ("ModelList", ModelListSchema), ("Error", ErrorSchema), ("Health", HealthSchema),
                         ("Ready", ReadySchema)):
        spec.components.schema(name, schema=schema)
    spec.components.security_scheme("gatewayKey", {
        "type": "http", "scheme": "bearer",
        "description": "One of GATEWAY_API_KEYS; not needed when the gateway is open. On an open "
                       "gateway an `hf_…` bearer token is used as the caller's Hugging Face token."})
    for status, description in ERROR_STATUSES.items():
        spec.components.response(f"Error{status}", {
            "description": description, "content": {"application/json": {"schema": "Error"}}})


def _summary(view: Callable[..., Any]) -> str:
    return (view.__doc__ or view.__name__).strip().splitlines()[0]


def _json(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: str) -> dict[str, Any]:
    return {status: {"$ref": f"#/components/responses/Error{status}"} for status in statuses}


API_ERRORS = ("401", "500")
SSE_DESCRIPTION = ("With `stream: true`: server-sent events. Each `data:` line holds a ChatCompletionChunk "
                   "(see components); `: keep-alive` comments while the upstream is idle; an error after the "
                   "first chunk is one `data: {\"error\": …}` event; the stream ends with `data: [DONE]`.")


OUTPUT_ITEM = {"oneOf": [
    {"type": "object", "required": ["type", "id", "role", "status", "content"],
     "properties": {"type": {"const": "message"}, "id": {"type": "string"}, "role": {"const": "assistant"},
                    "status": {"type": "string"},
                    "content": {"type": "array", "items": {"type": "object", "required": ["type", "text"],
                                                           "properties": {"type": {"const": "output_text"},
                                                                          "text": {"type": "string"}}}}}},
    {"type": "object", "required": ["type", "id", "call_id", "name", "arguments"],
     "properties": {"type": {"const": "function_call"}, "id": {"type": "string"}, "call_id": {"type": "string"},
                    "name": {"type": "string"}, "arguments": {"type": "string"}}},
    {"type": "object", "required": ["type", "id", "summary"],
     "properties": {"type": {"const": "reasoning"}, "id": {"type": "string"}, "summary": {"type": "array"},
                    "content": {"type": "array", "items": {"type": "object", "properties": {
                        "type": {"const": "reasoning_text"}, "text": {"type": "string"}}}}}}]}
RESPONSE = {"type": "object", "required": ["id", "object", "created_at", "status", "model", "output"],
            "properties": {"id": {"type": "string"}, "object": {"const": "response"},
                           "created_at": {"type": "integer"},
                           "status": {"enum": ["in_progress", "completed", "failed"]},
                           "model": {"type": "string"}, "output": {"type": "array", "items": OUTPUT_ITEM},
                           "error": {"type": ["object", "null"]},
                           "usage": {"type": ["object", "null"], "properties": {
                               "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                               "total_tokens": {"type": "integer"}}}}}
RESPONSE_EVENT = {"type": "object", "required": ["type", "sequence_number"],
                  "properties": {"type": {"type": "string", "pattern": "^response\\."},
                                 "sequence_number": {"type": "integer", "minimum": 0},
                                 "response": {"$ref": "#/components/schemas/Response"}}}
RESPONSES_SSE = ("With `stream: true`: server-sent events, each an `event: <type>` line and a `data:` line holding "
                 "a ResponseEvent: response.created, response.in_progress, then per output item "
                 "response.output_item.added, response.content_part.added, response.output_text.delta (or "
                 "response.reasoning_text.delta), .done events, response.output_item.done; for calls "
                 "response.function_call_arguments.delta/done; finally response.completed with the whole output, "
                 "or response.failed after an error. `: keep-alive` comments while the upstream is idle.")


def _responses_operation() -> dict[str, Any]:
    ok = _json("Response", "The response; with `stream: true`, an event stream.")
    ok["content"]["text/event-stream"] = {
        "schema": {"type": "string", "description": RESPONSES_SSE},
        "x-sse-data": {"$ref": "#/components/schemas/ResponseEvent"}}
    ok["headers"] = {"X-Request-Id": {"schema": {"type": "string"}}}
    return {"post": {
        "operationId": "createResponse", "summary": _summary(responses.create_response),
        "description": "Stateless: `previous_response_id`, `conversation`, `store: true` and `background: true` "
                       "are 400s. The same mapping, credentials, errors and limits as chat completions.",
        "tags": ["responses"], "security": [{"gatewayKey": []}, {}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": "ResponsesRequest"}}},
        "responses": {"200": ok, **_errors("400", "401", "404", "413", "429", "500", "502", "503", "504")}}}


def _chat_operation() -> dict[str, Any]:
    ok = _json("ChatCompletion", "The completion; with `stream: true`, an event stream of chunks.")
    ok["content"]["text/event-stream"] = {
        "schema": {"type": "string", "description": SSE_DESCRIPTION},
        "x-sse-data": {"$ref": "#/components/schemas/ChatCompletionChunk"}}
    ok["headers"] = {"X-Request-Id": {"schema": {"type": "string"}}}
    return {"post": {
        "operationId": "createChatCompletion", "summary": _summary(completions.create_chat_completion),
        "tags": ["chat"], "security": [{"gatewayKey": []}, {}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": "ChatRequest"}}},
        "responses": {"200": ok, **_errors("400", "401", "404", "413", "429", "500", "502", "503", "504")}}}


def build(prefix: str = "", version: str = "1") -> dict[str, Any]:
    """The whole document, with paths under the prefix the API is mounted at."""
    spec = _new_spec(version)
    _components(spec)
    key = [{"gatewayKey": []}, {}]
    spec.path(path=f"{prefix}/v1/models", operations={"get": {
        "operationId": "listModels", "summary": _summary(models.list_models), "tags": ["models"],
        "security": key, "responses": {"200": _json("ModelList"), **_errors(*API_ERRORS)}}})
    spec.path(path=f"{prefix}/v1/models/{{model_id}}", operations={"get": {
        "operationId": "getModel", "summary": _summary(models.get_model), "tags": ["models"], "security": key,
        "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "A model id; ids may contain '/', sent as is."}],
        "responses": {"200": _json("Model"), **_errors("401", "404", "500")}}})
    spec.path(path=f"{prefix}/v1/chat/completions", operations=_chat_operation())
    spec.path(path=f"{prefix}/v1/responses", operations=_responses_operation())
    spec.path(path=f"{prefix}/healthz", operations={"get": {
        "operationId": "healthz", "summary": _summary(health.healthz), "tags": ["operations"],
        "responses": {"200": _json("Health")}}})
    spec.path(path=f"{prefix}/readyz", operations={"get": {
        "operationId": "readyz", "summary": _summary(health.readyz), "tags": ["operations"],
        "responses": {"200": _json("Ready")}}})
    spec.path(path=f"{prefix}/metrics", operations={"get": {
        "operationId": "metrics", "summary": _summary(meta.get_metrics), "tags": ["operations"],
        "responses": {"200": {"description": "Prometheus text format.",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}}}})
    spec.path(path=f"{prefix}/openapi.json", operations={"get": {
        "operationId": "openapi", "summary": _summary(meta.get_openapi), "tags": ["operations"],
        "responses": {"200": {"description": "This document.",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}})
    html = {"content": {"text/html": {"schema": {"type": "string"}}}}
    spec.path(path=f"{prefix}/", operations={"get": {
        "operationId": "statusPage", "summary": _summary(page.page), "tags": ["operations"],
        "parameters": [{"name": "part", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["models"]},
                        "description": "`models`: the models table alone (needs the key when keys are on)."}],
        "responses": {"200": {"description": "The status page, or its models table.", **html},
                      **_errors("401")}}})
    spec.path(path=f"{prefix}/status/probe/{{model_id}}", operations={"post": {
        "operationId": "probeModel", "summary": _summary(page.probe), "tags": ["operations"], "security": key,
        "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The models table, the model read again.", **html},
                      **_errors("401", "404", "429")}}})
    return spec.to_dict()
