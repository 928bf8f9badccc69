"""A hostile "Gradio app": every answer is raw bytes a test chose, compressed, oversized or malformed.

It speaks just enough of two of Gradio's protocols for the gateway to get to the part under attack:

- Gradio 6's /call (CONFIG): `/config`, `/gradio_api/info`, `POST /gradio_api/call/<api>` ("call")
  and `GET …/call/<api>/<event_id>` ("events"), and `POST /gradio_api/cancel` ("cancel").
- Gradio 5's SSE queue (QUEUE_CONFIG, a generator, so its outputs come as diffs): `POST
  /gradio_api/queue/join` ("join") and `GET /gradio_api/queue/data?session_hash=…` ("data"), whose
  sse_v3 messages are `data: {"msg": …}` lines (queue_events), and `POST …/reset` ("reset").

Any answer can be replaced by a test: `server.answers["info"] = response(...)`; "other" is what
every other path gets. It records the requests that reached it, and when the connection that
last carried each kind of answer was closed (`closed_at`): an answer the gateway closes unread
shows there at once, a connection it keeps for reuse does not.
"""
from __future__ import annotations

import gzip
import json
import socket
import socketserver
import struct
import threading
import time
import zlib
from typing import Any, Callable, Iterable

Answer = Callable[["Request"], Iterable[bytes]]


class Request:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body


def response(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None,
             chunks: Iterable[bytes] | None = None) -> Answer:
    """An answer: a status, headers and a body (or chunks sent with chunked framing)."""
    def send(_: Request) -> Iterable[bytes]:
        head = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        if chunks is None:
            head.append(f"Content-Length: {len(body)}")
            yield ("\r\n".join(head) + "\r\n\r\n").encode() + body
            return
        head.append("Transfer-Encoding: chunked")
        yield ("\r\n".join(head) + "\r\n\r\n").encode()
        for chunk in chunks:
            yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        yield b"0\r\n\r\n"
    return send


def json_answer(value: Any, status: int = 200) -> Answer:
    return response(status, json.dumps(value).encode(), {"Content-Type": "application/json"})


def gzip_bomb(size: int, layers: int = 2) -> bytes:
    """`size` zero bytes, gzipped `layers` times (two layers: a few KiB for gigabytes)."""
    data = _gzip_zeros(size)
    for _ in range(layers - 1):
        data = gzip.compress(data, 9)
    return data


def _gzip_zeros(size: int) -> bytes:
    """A gzip member of `size` zero bytes (whole MiBs), built without deflating them all: after a
    full flush deflate starts afresh, so every MiB compresses to the same bytes (1 s for 2 GiB)."""
    block = b"\0" * (1 << 20)
    obj = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = obj.compress(block) + obj.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(block, crc)
    return (b"\x1f\x8b\x08\x00\0\0\0\0\x02\xff" + piece * (size >> 20) + obj.flush()
            + struct.pack("<II", crc, size & 0xFFFFFFFF))


CONFIG = {"version": "6.31.0", "protocol": "sse_v3", "api_prefix": "/gradio_api",
          "components": [{"id": 1, "type": "textbox", "props": {"label": "Message"}},
                         {"id": 2, "type": "textbox", "props": {"label": "Answer"}}],
          "dependencies": [{"id": 0, "api_name": "chat", "inputs": [1], "outputs": [2],
                            "types": {"generator": False}}]}
INFO = {"named_endpoints": {"/chat": {"parameters": [
    {"parameter_name": "message", "label": "Message", "type": {"type": "string"}, "component": "Textbox",
     "parameter_has_default": False}], "returns": [{"label": "Answer", "type": {"type": "string"},
                                                   "component": "Textbox"}]}}, "unnamed_endpoints": {}}


def events(*frames: tuple[str, Any]) -> Answer:
    body = b"".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode() for kind, data in frames)
    return response(200, headers={"Content-Type": "text/event-stream"}, chunks=[body])


# Gradio 5.50's SSE queue, as the gateway speaks it to a 4.20-5.x app (apps.family): a generator
# event, so from the second `process_generating` on, its outputs are diffs.
QUEUE_CONFIG = {**CONFIG, "version": "5.50.0",
                "dependencies": [{**CONFIG["dependencies"][0], "types": {"generator": True}}]}


def queue_events(*messages: dict[str, Any]) -> Answer:
    """An sse_v3 stream of queue messages (`data:` lines only, as Gradio sends them)."""
    body = b"".join(b"data: " + json.dumps(m).encode() + b"\n\n" for m in messages)
    return response(200, headers={"Content-Type": "text/event-stream"}, chunks=[body])


def generating(data: Any) -> dict[str, Any]:
    """A process_generating message: the full outputs the first time, a diff per output after."""
    return {"msg": "process_generating", "event_id": "e1", "success": True,
            "output": {"data": data, "is_generating": True}}


def completed(data: Any) -> dict[str, Any]:
    return {"msg": "process_completed", "event_id": "e1", "success": True,
            "output": {"data": data, "is_generating": False}}


class HostileGradio:
    """The server; `answers` maps each kind of request (see the module's docstring) to its answer."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.reset()
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.answers = {"config": json_answer(CONFIG), "info": json_answer(INFO),
                        "call": json_answer({"event_id": "e1"}),
                        "events": events(("complete", ["an answer"])),
                        "join": json_answer({"event_id": "e1"}),
                        "data": queue_events(completed(["an answer"])),
                        "cancel": json_answer({"success": True}), "reset": json_answer(True)}
        self.seen: list[Request] = []
        self.closed_at: dict[str, float] = {}

    @property
    def stream_closed_at(self) -> float | None:
        return self.closed_at.get("events")

    def routes_seen(self) -> list[str]:
        return [self._route(r) for r in self.seen]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _route(self, req: Request) -> str:
        if req.path.split("?")[0].endswith("/config"):
            return "config"
        if req.path.endswith("/info"):
            return "info"
        if req.method == "POST" and "/call/" in req.path:
            return "call"
        if "/call/" in req.path:
            return "events"
        if "/queue/join" in req.path:
            return "join"
        if "/queue/data" in req.path:
            return "data"
        if req.method == "POST" and req.path.endswith(("/cancel", "/reset")):
            return req.path.rsplit("/", 1)[1]
        return "other"

    def _handle(self, sock: socket.socket) -> None:
        """Requests of one keep-alive connection; when it closes, say when, under its last route."""
        sock.settimeout(60)
        reader = sock.makefile("rb")
        route = ""
        try:
            while True:
                line = reader.readline()
                if not line:
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while (h := reader.readline().decode("latin-1").strip()):
                    k, _, v = h.partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = reader.read(int(headers.get("content-length", 0) or 0))
                req = Request(method, path, headers, body)
                self.seen.append(req)
                route = self._route(req)
                answer = self.answers.get(route) or response(404, b'{"detail":"Not Found"}')
                for piece in answer(req):
                    sock.sendall(piece)
        except OSError:
            pass
        if route:
            self.closed_at[route] = time.monotonic()
