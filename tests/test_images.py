"""image_url parts: uploaded to apps whose message takes files; refused with 400 otherwise."""
from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.fixtures_mapping import png_bytes

PNG = png_bytes()


def data_url(content: bytes = PNG) -> str:
    return "data:image/png;base64," + base64.b64encode(content).decode()


def with_image(url: str, text: str = "describe") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


def post(client: Any, model: str, messages: list[dict[str, Any]], **extra: Any) -> Any:
    return client.post("/v1/chat/completions", json={"model": model, "messages": messages, **extra})


def echoed(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.get_json()
    return json.loads(resp.get_json()["choices"][0]["message"]["content"])


def error_of(resp: Any, status: int = 400) -> str:
    assert resp.status_code == status, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["type"] == "invalid_request_error"
    return error["message"]


@pytest.mark.parametrize("model", ["vision", "look", "look-30", "vision-22"])
def test_a_data_url_image_is_uploaded_and_passed_as_a_file(mapping_client, model):
    seen = echoed(post(mapping_client, model, with_image(data_url())))
    assert (seen["text"], seen["file_sizes"]) == ("describe", [len(PNG)])


def test_an_http_image_is_fetched_and_uploaded_when_private_urls_are_allowed(make_mapping_app, image_server):
    client = make_mapping_app(ALLOW_PRIVATE_IMAGE_URLS="true").test_client()
    seen = echoed(post(client, "vision", with_image(f"{image_server}/red.png")))
    assert seen["file_sizes"] == [len(PNG)]


def test_images_of_earlier_turns_travel_with_the_message(mapping_client):
    messages = with_image(data_url(), "first") + [{"role": "assistant", "content": "A red dot."}] + \
        with_image(data_url(png_bytes(500)), "second")
    seen = echoed(post(mapping_client, "look", messages))
    assert seen["file_sizes"] == [len(PNG), 500]
    assert seen["text"] == "User: first\n\nAssistant: A red dot.\n\nUser: second"


def test_a_loopback_image_url_is_refused_by_default(mapping_client, image_server):
    message = error_of(post(mapping_client, "vision", with_image(f"{image_server}/red.png")))
    assert "loopback" in message


def test_a_host_name_resolving_to_loopback_is_refused_too(mapping_client, image_server):
    port = image_server.rsplit(":", 1)[1]
    assert "loopback" in error_of(post(mapping_client, "vision", with_image(f"http://localhost:{port}/red.png")))


@pytest.mark.parametrize("model", ["respond", "chat", "chat-40"])
def test_a_text_only_app_refuses_images_saying_so(mapping_client, model):
    assert "takes text only" in error_of(post(mapping_client, model, with_image(data_url())))


def test_a_streamed_request_with_an_image_for_a_text_only_app_gets_a_json_400(mapping_client):
    resp = post(mapping_client, "respond", with_image(data_url()), stream=True)
    assert resp.mimetype == "application/json"
    assert "takes text only" in error_of(resp)


def test_a_data_url_over_max_image_bytes_is_refused(make_mapping_app):
    client = make_mapping_app(MAX_IMAGE_BYTES="1000").test_client()
    assert "larger than the limit" in error_of(post(client, "vision", with_image(data_url(png_bytes(3000)))))


def test_a_fetched_image_over_max_image_bytes_is_refused(make_mapping_app, image_server):
    client = make_mapping_app(MAX_IMAGE_BYTES="1000", ALLOW_PRIVATE_IMAGE_URLS="true").test_client()
    assert "larger than the limit" in error_of(post(client, "vision", with_image(f"{image_server}/big.png")))


def test_an_image_url_that_fails_is_a_bad_request(make_mapping_app, image_server):
    client = make_mapping_app(ALLOW_PRIVATE_IMAGE_URLS="true").test_client()
    assert "HTTP 404" in error_of(post(client, "vision", with_image(f"{image_server}/missing.png")))


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "data:image/png;base64", "data:image/png;base64,@@@"])
def test_malformed_image_urls_are_bad_requests(mapping_client, url):
    error_of(post(mapping_client, "vision", with_image(url)))
