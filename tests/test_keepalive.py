"""Upstream connections are kept (issue 16): after `complete` the gateway reads the end of the
event stream, which Gradio sends a moment later, so the next completion reuses the connection
instead of opening a new one (a TLS handshake, against a Space). An app that never ends its
stream costs at most RELEASE_WITHIN, after the answer has gone out.

New connections are counted at the app itself: uvicorn's protocol objects, one per accepted
connection, in this process, where the session's real Gradio 6.31 apps run.
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterator

import pytest
import requests

from bench import conncount
from gateway.upstream.wire.base import RELEASE_WITHIN
from tests.conftest import Gunicorn
from tests.standins.hostile import HostileGradio, response


@pytest.fixture
def accepted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A counter of the connections the in-process Gradio apps accept from now on."""
    count = [0]
    classes = conncount.protocol_classes()      # one instance per accepted connection
    assert classes, "no uvicorn protocol to count connections in"
    for cls in classes:
        original = cls.connection_made

        def connection_made(self: Any, transport: Any, _original: Any = original) -> None:
            count[0] += 1
            _original(self, transport)
        monkeypatch.setattr(cls, "connection_made", connection_made)
    return count


def complete(url: str, session: requests.Session, model: str, stream: bool) -> str:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "keep it"}]}
    resp = session.post(url + "/v1/chat/completions", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.text


def test_sequential_completions_reuse_their_connections_to_real_gradio(gunicorn, accepted):
    session = requests.Session()
    for i in range(6):                   # each worker fills its pool
        complete(gunicorn.url, session, "echo-app", stream=bool(i % 2))
    time.sleep(0.3)
    before = accepted[0]
    for i in range(30):
        complete(gunicorn.url, session, "echo-app", stream=bool(i % 2))
    time.sleep(0.3)
    new = accepted[0] - before
    # Before the end of the stream was read, 29-43 % of completions opened a new connection.
    assert new <= 1, f"{new} new upstream connections in 30 completions"


# ---------------------------------------------------------------- an app that never ends its stream

@pytest.fixture(scope="module")
def endless() -> Iterator[HostileGradio]:
    server = HostileGradio()
    yield server
    server.close()


@pytest.fixture(scope="module")
def endless_gateway(endless: HostileGradio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    models = tmp_path_factory.mktemp("endless") / "models.yaml"
    models.write_text(f"models:\n  endless:\n    space: {endless.url}\n")
    server = Gunicorn({"MODELS_FILE": str(models), "BUILTIN_MODELS": "false", "LOG_LEVEL": "warning"})
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def _complete_then_linger(seconds: float) -> Any:
    """`complete`, then no end of the stream: a comment line every 0.2 s for `seconds`."""
    def chunks() -> Iterator[bytes]:
        yield f"event: complete\ndata: {json.dumps(['an answer'])}\n\n".encode()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.2)
            yield b": still here\n"
    return response(200, headers={"Content-Type": "text/event-stream"}, chunks=chunks())


@pytest.mark.parametrize("stream", [False, True])
def test_a_stream_that_never_ends_costs_at_most_release_within(endless, endless_gateway, stream):
    endless.reset()
    endless.answers["events"] = _complete_then_linger(30)
    started = time.monotonic()
    text = complete(endless_gateway.url, requests.Session(), "endless", stream)
    answered = time.monotonic() - started
    assert "an answer" in text
    assert answered < RELEASE_WITHIN, f"the answer waited {answered:.2f}s for the stream's end"
    while endless.stream_closed_at is None and time.monotonic() < started + 10:
        time.sleep(0.05)
    assert endless.stream_closed_at is not None, "the gateway kept the endless stream open"
    assert endless.stream_closed_at - started < RELEASE_WITHIN + 1.5
    endless.reset()                          # and the next completion is served as usual
    assert "an answer" in complete(endless_gateway.url, requests.Session(), "endless", stream)

