"""The two calls of every completion, sent through the session's adapter (protocol.Gradio._send),
over pools whose connections are checked before reuse and read through a small buffer."""
from __future__ import annotations

import socket
import threading
from typing import Any, Callable, Iterator

import pytest

from gateway.errors import UpstreamError

from gateway.config import Settings
from gateway.upstream.protocol import Gradio, iter_events, release
from gateway.upstream.session import make_session
from tests.standins.server import QuietHandler, Served

Answer = Callable[[QuietHandler], bool]   # answers one request; False hangs up the connection


class Recorder:
    """A Served app that records every request and connection, answering each with answer()."""

    def __init__(self, answer: Answer) -> None:
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []   # request line, headers, body
        self.hung_up = threading.Semaphore(0)      # released each time the server closed a connection
        recorder = self

        class Handler(QuietHandler):
            def setup(self) -> None:
                super().setup()
                recorder.connections += 1

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                recorder.requests.append((self.requestline, {k.lower(): v for k, v in self.headers.items()},
                                          self.read_body()))
                if not answer(self):
                    # Closed without `Connection: close`: the client keeps the connection pooled.
                    self.connection.shutdown(socket.SHUT_WR)
                    self.close_connection = True
                    recorder.hung_up.release()

            do_POST = do_GET  # noqa: N815

        self.served = Served(Handler)
        self.url = self.served.url


@pytest.fixture
def recorder() -> Iterator[Callable[[Answer], Recorder]]:
    started: list[Recorder] = []

    def start(answer: Answer) -> Recorder:
        started.append(Recorder(answer))
        return started[-1]
    yield start
    for server in started:
        server.served.stop()


def gradio_at(url: str, headers: dict[str, str] | None = None) -> Gradio:
    return Gradio(make_session(Settings()), url, headers or {}, connect_timeout=2, read_timeout=5)


def send_event_stream(handler: QuietHandler, events: list[bytes]) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n")


def answer_event_id(event_id: str) -> Answer:
    def answer(handler: QuietHandler) -> bool:
        handler.send_json(200, {"event_id": event_id})
        return True
    return answer


def test_a_post_on_a_pooled_connection_the_app_closed_meanwhile_opens_a_new_one(recorder: Any) -> None:
    """A POST is never resent (it may have reached the app): the dead connection must be seen before."""
    def answer_then_hang_up(handler: QuietHandler) -> bool:
        handler.send_json(200, {"event_id": "e1"})
        return False
    server = recorder(answer_then_hang_up)
    gradio = gradio_at(server.url)
    assert gradio.submit("/chat", ["hi"], "s1") == "e1"
    assert server.hung_up.acquire(timeout=5)      # the connection is closed before it is reused
    assert gradio.submit("/chat", ["hi"], "s2") == "e1"
    assert server.connections == 2


def test_the_call_carries_the_sessions_headers_the_credential_and_a_json_body(recorder: Any) -> None:
    server = recorder(answer_event_id("e1"))
    gradio_at(server.url, {"X-HF-Authorization": "Bearer hf_transport_test"}).submit("/chat", ["hé"], "s1")
    request_line, fields, body = server.requests[0]
    assert request_line == "POST /gradio_api/call/chat HTTP/1.1"
    assert fields["user-agent"] == "gradio-chat-gateway"
    assert fields["x-hf-authorization"] == "Bearer hf_transport_test"
    assert fields["content-type"] == "application/json"
    assert int(fields["content-length"]) == len(body)
    assert body == b'{"data": ["h\\u00e9"], "session_hash": "s1"}'     # as requests' json= sends it


def test_events_larger_than_the_read_buffer_arrive_whole_and_the_connection_is_reused(recorder: Any) -> None:
    big = "x" * 200_000
    events = [b'event: generating\ndata: ["' + big[:5000].encode() + b'"]\n\n',
              b'event: complete\ndata: ["' + big.encode() + b'"]\n\n']

    def answer(handler: QuietHandler) -> bool:
        send_event_stream(handler, events)
        return True
    server = recorder(answer)
    gradio = gradio_at(server.url)
    for _ in range(3):
        resp = gradio.open_events("/chat", "e1")
        stream = iter_events(resp, "call /chat")
        kinds = []
        for event in stream:
            kinds.append((event.kind, len(event.data[0])))
            if event.kind == "complete":
                break
        assert kinds == [("generating", 5000), ("complete", 200_000)]
        assert release(resp, stream)
    assert server.connections == 1


def test_a_redirect_to_another_host_is_not_followed(recorder: Any) -> None:
    """CONTRACT §11: a 307 elsewhere would re-post the prompt (and the credential) there."""
    elsewhere = recorder(answer_event_id("e2"))
    other_host = elsewhere.url.replace("127.0.0.1", "localhost")

    def redirect(handler: QuietHandler) -> bool:
        handler.send_response(307)
        handler.send_header("Location", other_host + "gradio_api/call/chat")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True
    origin = recorder(redirect)
    gradio = gradio_at(origin.url, {"X-HF-Authorization": "Bearer hf_transport_test"})
    with pytest.raises(UpstreamError, match="another host"):
        gradio.submit("/chat", ["hi"], "s1")
    assert not elsewhere.requests


def test_a_redirect_on_the_same_host_is_followed_with_the_credential(recorder: Any) -> None:
    def redirect(handler: QuietHandler) -> bool:
        if "moved" in handler.path:
            return answer_event_id("e3")(handler)
        handler.send_response(307)
        handler.send_header("Location", "/moved/gradio_api/call/chat")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True
    origin = recorder(redirect)
    gradio = gradio_at(origin.url, {"X-HF-Authorization": "Bearer hf_transport_test"})
    assert gradio.submit("/chat", ["hi"], "s1") == "e3"
    request_line, fields, _ = origin.requests[-1]
    assert request_line.lower().startswith("post /moved/gradio_api/call/chat ")
    assert fields.get("x-hf-authorization") == "Bearer hf_transport_test"
