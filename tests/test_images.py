"""image_url parts: uploaded to apps whose message takes files; refused with 400 otherwise; shared by a\nrequest's runs within the worker's budget of image bytes."""
from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pytest

from gateway.upstream.image_store import ByteBudget, ImagesBusy, RequestImages
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


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "data:image/png;base64", "data:image/png;base64,@@@",
                                 "data:image/png;base64,QUJD=QUJD"])
def test_malformed_image_urls_are_bad_requests(mapping_client, url):
    error_of(post(mapping_client, "vision", with_image(url)))


# ---------------------------------------------------------------- the request's images, the worker's budget

class FakeRun:
    """What the store reads of a Run: its deadline, and tick() while it waits."""

    def __init__(self, seconds: float = 30) -> None:
        self.deadline = time.monotonic() + seconds
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1


class App:
    def __init__(self, base_url: str) -> None:
        self.base_url, self.signature = base_url, "sig"


def counting_fetch(size: int) -> tuple[Any, list[str]]:
    fetched: list[str] = []

    def fetch(url: str, deadline: float, reserve: Any) -> tuple[bytes, str]:
        reserve(size)
        fetched.append(url)
        return b"x" * size, "image/png"
    return fetch, fetched


def test_a_full_image_budget_is_waited_for_then_a_503_with_retry_after():
    budget, run = ByteBudget(100), FakeRun()
    budget.acquire(80, time.monotonic() + 1, run.tick)
    started = time.monotonic()
    with pytest.raises(ImagesBusy) as caught:
        budget.acquire(50, time.monotonic() + 0.3, run.tick)
    assert 0.3 <= time.monotonic() - started < 2 and run.ticks >= 1     # it waited, keeping its run alive
    assert caught.value.status_code == 503 and caught.value.retry_after and budget.used == 80


def test_a_request_waiting_for_the_budget_gets_it_when_another_gives_it_back():
    budget, run = ByteBudget(100), FakeRun()
    budget.acquire(80, time.monotonic() + 1, run.tick)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(budget.acquire(50, time.monotonic() + 10, run.tick)))
    waiter.start()
    budget.release(80)
    waiter.join(5)
    assert got == [50] and budget.used == 50


def test_one_image_larger_than_the_budget_still_fits_alone():
    budget = ByteBudget(100)
    assert budget.acquire(500, time.monotonic() + 1, lambda: None) == 100


def test_the_runs_of_a_request_fetch_once_upload_once_per_app_and_give_the_bytes_back():
    budget = ByteBudget(1 << 20)
    fetch, fetched = counting_fetch(1000)
    sent: list[str] = []
    store = RequestImages(fetch, budget, runs=2)
    first, second = store.view(FakeRun()), store.view(FakeRun())

    def send(name: str, content: bytes, mime: str) -> str:
        sent.append(name)
        return f"/tmp/{name}"
    one = first.upload(App("http://a/"), "https://img/1.png", send)
    assert budget.used == 2 * 1000                      # the bytes and their upload body, held for the second run
    assert second.upload(App("http://a/"), "https://img/1.png", send) == one
    assert (fetched, sent, budget.used) == (["https://img/1.png"], ["image1.png"], 0)   # both have it: dropped
    second.upload(App("http://b/"), "https://img/1.png", send)      # another Space of a pool, later
    assert len(fetched) == 2 and budget.used == 0
    first.end()
    second.end()
    assert budget.used == 0


def test_a_run_that_ends_without_uploading_does_not_keep_the_bytes():
    budget = ByteBudget(1 << 20)
    fetch, _ = counting_fetch(1000)
    store = RequestImages(fetch, budget, runs=3)
    first, second, third = (store.view(FakeRun()) for _ in range(3))
    first.upload(App("http://a/"), "https://img/1.png", lambda *args: "/tmp/f")
    second.end()                         # e.g. its app was unreachable
    assert budget.used == 2000
    third.end()
    assert budget.used == 0
