"""Gradio 3.x: the websocket queue at `/queue/join`.

The server says `send_hash`, the client answers {fn_index, session_hash}; `estimation` while
queued; `send_data` is answered with {data, event_data, fn_index, session_hash}; then
`process_starts`, `process_generating` (full outputs) and `process_completed`. Closing the
websocket stops the job: Gradio ends a generator at its next yield when the send fails, and
`/reset` with the session and fn_index resets its iterator.

The websocket is spoken with wsproto (python-hyper's sans-IO implementation, maintained, no
threads and no event loop of its own) over a plain socket: under gevent's monkey-patching that
socket is cooperative, so a job holds no OS thread; and since the gateway does the reading, it
bounds what it reads (MAX_UPSTREAM_BYTES) and times it out like every other upstream read.
websocket-client would read whole frames of any announced size; the `websockets` package
needs an asyncio loop per call, as gradio_client 0.x ran it.
"""
from __future__ import annotations

import contextlib
import json
import secrets
import socket
import ssl
from typing import Any, Iterator
from urllib.parse import urlsplit

import wsproto
import wsproto.events as ws

from ...concurrency import spawn
from ...errors import UpstreamError, UpstreamTimeout, UpstreamUnauthorized
from ..apps import App, Endpoint
from ..protocol import Event, Gradio, UpstreamUnreachable, mapped_errors
from .base import Job, QueueMessages

READ_SIZE = 64 * 1024
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class WsJob(Job):
    def __init__(self, gradio: Gradio, app: App, endpoint: Endpoint, data: list[Any]) -> None:
        self.gradio = gradio
        self.fn_index = endpoint.fn_index
        self.data = data
        self.what = f"call {endpoint.key}"
        self.session_hash = secrets.token_hex(8)
        self.messages = QueueMessages(diffs=False)
        self.limit = getattr(gradio, "max_bytes", MAX_MESSAGE_BYTES)
        self.sent_data = False
        self.sock: socket.socket | None = None
        self.conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self._pending: list[ws.Event] = []
        with mapped_errors(self.what):
            self._connect()

    # ------------------------------------------------------------ the connection

    def _connect(self) -> None:
        url = urlsplit(self.gradio.url("/queue/join"))
        tls = url.scheme == "https"
        host = url.hostname or ""
        port = url.port or (443 if tls else 80)
        connect, read = self.gradio.timeout
        try:
            sock = _open(host, port, self.gradio.session.proxies.get("https" if tls else "http"), connect)
        except (socket.timeout, TimeoutError):
            raise UpstreamTimeout(f"Timed out connecting to the Gradio app ({self.what}).") from None
        except OSError:
            raise UpstreamUnreachable(f"The Gradio app is unreachable ({self.what}).") from None
        if tls:
            context = ssl.create_default_context()
            if self.gradio.session.verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif isinstance(self.gradio.session.verify, str):
                context.load_verify_locations(self.gradio.session.verify)
            sock = context.wrap_socket(sock, server_hostname=host)
        sock.settimeout(read)
        self.sock = sock
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        netloc = host if url.port is None else f"{host}:{url.port}"
        headers = [(k.encode(), v.encode()) for k, v in self.gradio.headers.items()]
        self._send(ws.Request(host=netloc, target=target, extra_headers=headers))
        for event in self._receive():
            if isinstance(event, ws.AcceptConnection):
                return
            if isinstance(event, ws.RejectConnection):
                status = event.status_code
                if status in (401, 403):
                    raise UpstreamUnauthorized(f"The Gradio app refused the credentials ({self.what}: HTTP {status}).")
                if status in (502, 503, 504):
                    raise UpstreamUnreachable(f"The Gradio app is unavailable ({self.what}: HTTP {status}).",
                                              retry_after=10)
                raise UpstreamError(f"The Gradio app refused the websocket ({self.what}: HTTP {status}).")
        raise UpstreamError(f"The Gradio app closed the websocket ({self.what}).")

    def _send(self, event: ws.Event) -> None:
        assert self.sock is not None
        self.sock.sendall(self.conn.send(event))

    def _send_json(self, body: dict[str, Any]) -> None:
        self._send(ws.TextMessage(data=json.dumps(body, allow_nan=False)))

    def _receive(self) -> Iterator[ws.Event]:
        """wsproto's events as bytes arrive; the connection's end ends them."""
        assert self.sock is not None
        while True:
            while self._pending:
                yield self._pending.pop(0)
            try:
                chunk = self.sock.recv(READ_SIZE)
            except (socket.timeout, TimeoutError):
                raise UpstreamTimeout(f"The Gradio app stopped answering ({self.what}).") from None
            if not chunk:
                return
            self.conn.receive_data(chunk)
            try:
                self._pending.extend(self.conn.events())
            except wsproto.utilities.LocalProtocolError:
                raise UpstreamError(f"The Gradio app broke the websocket protocol ({self.what}).") from None

    def _messages(self) -> Iterator[Any]:
        """Whole text messages, parsed, each at most MAX_UPSTREAM_BYTES."""
        parts: list[str] = []
        size = 0
        for event in self._receive():
            if isinstance(event, ws.TextMessage):
                parts.append(event.data)
                size += len(event.data)
                if size > self.limit:
                    raise UpstreamError(f"The Gradio app sent an oversized message ({self.what}).")
                if event.message_finished:
                    text, parts, size = "".join(parts), [], 0
                    yield json.loads(text)
            elif isinstance(event, ws.Ping):
                self._send(event.response())
            elif isinstance(event, ws.CloseConnection):
                with contextlib.suppress(Exception):
                    self._send(event.response())
                return

    # ------------------------------------------------------------ the job

    def events(self) -> Iterator[Event]:
        with mapped_errors(self.what):
            for msg in self._messages():
                kind = msg.get("msg") if isinstance(msg, dict) else None
                if kind == "send_hash":
                    self._send_json({"fn_index": self.fn_index, "session_hash": self.session_hash})
                    continue
                if kind == "send_data":
                    self._send_json({"data": self.data, "event_data": None, "fn_index": self.fn_index,
                                     "session_hash": self.session_hash})
                    self.sent_data = True
                    continue
                event = self.messages.read(msg)
                if event is None:
                    continue
                if event.kind == "complete":
                    self.ended = True
                yield event
                if event.kind in ("complete", "error"):
                    return
        raise UpstreamError(f"The Gradio app closed the websocket before the answer was complete ({self.what}).")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.ended and self.sent_data:
            spawn(self.gradio.cancel, "", self.session_hash, self.fn_index, "/reset")
        if self.sock is not None:
            with contextlib.suppress(Exception):
                self.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                self.sock.close()


def _open(host: str, port: int, proxy: str | None, timeout: float) -> socket.socket:
    """A TCP connection to host:port, through the configured proxy when there is one."""
    if not proxy:
        return socket.create_connection((host, port), timeout=timeout)
    import socks  # PySocks, from requests[socks]: SOCKS5 and HTTP CONNECT   # noqa: PLC0415
    p = urlsplit(proxy)
    kinds = {"socks5": (socks.SOCKS5, False), "socks5h": (socks.SOCKS5, True), "http": (socks.HTTP, True)}
    if p.scheme not in kinds:
        raise UpstreamError("A websocket cannot go through an https:// proxy; use http:// or socks5://.")
    kind, remote_dns = kinds[p.scheme]
    return socks.create_connection((host, port), timeout=timeout, proxy_type=kind, proxy_addr=p.hostname,
                                   proxy_port=p.port or (1080 if kind == socks.SOCKS5 else 8080),
                                   proxy_rdns=remote_dns, proxy_username=p.username,
                                   proxy_password=p.password)
