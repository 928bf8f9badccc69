"""Detection on API descriptions of shapes the local apps do not have (older Gradio, odd labels)."""
from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import UpstreamError
from gateway.upstream.apps import App, Endpoint
from gateway.upstream.detect import cast, choose_endpoint, detect_roles, history_format


def param(name: str, label: str = "", component: str = "Textbox", kind: dict[str, Any] | None = None,
          default: Any = None) -> dict[str, Any]:
    return {"parameter_name": name, "label": label, "component": component,
            "type": kind or {"type": "string"}, "parameter_default": default}


def slider(name: str, label: str, low: float, high: float, default: float) -> dict[str, Any]:
    return param(name, label, "Slider", {"type": "number",
                                         "description": f"numeric value between {low} and {high}"}, default)


def endpoint(api_name: str, *params: dict[str, Any]) -> Endpoint:
    return Endpoint(api_name=api_name, fn_index=0, generator=False, parameters=params, returns=())


def app(*endpoints: Endpoint) -> App:
    return App(base_url="http://h/", api_prefix="/gradio_api", version="4.44.0",
               endpoints={e.api_name: e for e in endpoints})


def test_parameters_named_by_position_are_found_by_their_labels():
    roles = detect_roles((param("param_0", "Your message"), param("param_1", "System Prompt"),
                          slider("param_2", "Maximum number of new tokens", 1, 100, 50),
                          slider("param_3", "Top-p (nucleus sampling)", 0, 1, 0.9)))
    assert roles == {"system": 1, "top_p": 3, "max_tokens": 2, "message": 0}


def test_a_numeric_role_never_takes_a_text_input():
    assert "temperature" not in detect_roles((param("message"), param("temperature", "Temperature")))


@pytest.mark.parametrize(("kind", "expected"), [
    # Gradio 5: content a string or a file.
    ({"type": "array", "items": {"$ref": "#/$defs/Message"}, "$defs": {"Message": {"properties": {
        "role": {"type": "string"}, "content": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/File"}]}}}}},
     "messages-text"),
    # Gradio 3: a list of string pairs.
    ({"type": "array", "items": {"type": "array", "items": {"type": "string"}}}, "pairs"),
    # An untyped JSON input: OpenAI-style messages.
    ({"type": {}, "description": "any valid json"}, "messages-text"),
])
def test_history_format_is_read_from_the_schema(kind, expected):
    assert history_format(param("history", "History", "Json", kind)) == expected


def test_a_json_input_whose_schema_is_messages_is_the_history_whatever_its_name():
    kind = {"type": "array", "items": {"type": "object", "properties": {"role": {"type": "string"},
                                                                       "content": {"type": "string"}}}}
    assert detect_roles((param("msg"), param("turns", "Turns", "Json", kind))) == {"history": 1, "message": 0}


def test_casting_clamps_to_number_bounds_and_keeps_integers():
    seed = param("seed", "Seed", "Number", {"type": "integer", "minimum": 0, "maximum": 1000}, 0)
    assert (cast(seed, -5), cast(seed, 5000), cast(seed, 7.6)) == (0, 1000, 8)


def test_casting_a_float_slider_with_an_integer_default_keeps_fractions():
    temperature = slider("temperature", "Temperature", 0, 2, 1)
    assert (cast(temperature, 0.25), cast(temperature, 1.0)) == (0.25, 1)


def test_the_only_public_endpoint_is_chosen_when_its_first_input_is_text():
    only = endpoint("/ask_llm", param("param_0", "Type here"))
    assert choose_endpoint(app(only), None) is only


def test_an_app_without_a_chat_like_endpoint_asks_for_api_name():
    images = endpoint("/draw", param("steps", "Steps", "Slider", {"type": "number"}))
    with pytest.raises(UpstreamError, match="set api_name"):
        choose_endpoint(app(images, endpoint("/other", param("n", "N", "Number", {"type": "number"}))), None)


def test_chat_wins_over_other_message_endpoints():
    chat = endpoint("/chat", param("message"))
    assert choose_endpoint(app(endpoint("/predict", param("prompt")), chat), None) is chat
