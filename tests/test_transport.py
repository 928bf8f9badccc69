"""The two calls of every completion, sent through the session's adapter (protocol.Gradio._send),
over pools whose connections are checked before reuse and read through a small buffer."""
from __future__ import annotations

import socket
import threading
from typing import Any, Callable, Iterator

import pytest

from gateway.config import Settings
from gateway.upstream.protocol import Gradio, iter_events, release
from gateway.upstream.session import make_session

Handler = Callable[[socket.socket, bytes], bool]   # answers one request; False closes the connection


class RawServer:
    """An HTTP/1.1 server written with sockets, to control exactly when connections close."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.connections = 0
        self.requests: list[bytes] = []
        self.hung_up = threading.Semaphore(0)      # released each time the server closed a connection
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            self._exchange(conn)
        finally:
            conn.close()
            self.hung_up.release()

    def _exchange(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + rest[:length])
            buffer = rest[length:]
            if not self.handler(conn, head):
                return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Handler], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def gradio_at(url: str, headers: dict[str, str] | None = None) -> Gradio:
    return Gradio(make_session(Settings()), url, headers or {}, connect_timeout=2, read_timeout=5)


def event_stream(events: list[bytes]) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + body


def test_a_post_on_a_pooled_connection_the_app_closed_meanwhile_opens_a_new_one(raw_server: Any) -> None:
    """A POST is never resent (it may have reached the app): the dead connection must be seen before."""
    def answer_then_hang_up(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n'
                     b'{"event_id": "e1"} ')
        return False              # closed without `Connection: close`: the client keeps it pooled
    server = raw_server(answer_then_hang_up)
    gradio = gradio_at(server.url)
    assert gradio.submit("/chat", ["hi"], "s1") == "e1"
    assert server.hung_up.acquire(timeout=5)      # the connection is closed before it is reused
    assert gradio.submit("/chat", ["hi"], "s2") == "e1"
    assert server.connections == 2


def test_the_call_carries_the_sessions_headers_the_credential_and_a_json_body(raw_server: Any) -> None:
    def answer(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n'
                     b'{"event_id": "e1"}')
        return True
    server = raw_server(answer)
    gradio_at(server.url, {"X-HF-Authorization": "Bearer hf_transport_test"}).submit("/chat", ["hé"], "s1")
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "POST /gradio_api/call/chat HTTP/1.1"
    fields = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert fields["user-agent"] == "gradio-chat-gateway"
    assert fields["x-hf-authorization"] == "Bearer hf_transport_test"
    assert fields["content-type"] == "application/json"
    assert int(fields["content-length"]) == len(body)
    assert body == b'{"data": ["h\\u00e9"], "session_hash": "s1"}'     # as requests' json= sends it


def test_events_larger_than_the_read_buffer_arrive_whole_and_the_connection_is_reused(raw_server: Any) -> None:
    big = "x" * 200_000
    events = [b'event: generating\ndata: ["' + big[:5000].encode() + b'"]\n\n',
              b'event: complete\ndata: ["' + big.encode() + b'"]\n\n']

    def answer(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(event_stream(events))
        return True
    server = raw_server(answer)
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


def test_a_redirect_is_followed_by_requests_and_drops_the_credential_on_the_way_to_another_host(
        raw_server: Any) -> None:
    def target(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n'
                     b'{"event_id": "e2"}')
        return True
    elsewhere = raw_server(target)
    other_host = elsewhere.url.replace("127.0.0.1", "localhost")

    def redirect(conn: socket.socket, head: bytes) -> bool:
        location = other_host.encode() + b"gradio_api/call/chat"
        conn.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n")
        return True
    origin = raw_server(redirect)
    gradio = gradio_at(origin.url, {"X-HF-Authorization": "Bearer hf_transport_test"})
    assert gradio.submit("/chat", ["hi"], "s1") == "e2"
    resent = elsewhere.requests[0].lower()
    assert resent.startswith(b"post /gradio_api/call/chat ")
    assert b"x-hf-authorization" not in resent
