"""A stand-in Gradio server speaking the /call protocol of UPSTREAM-NOTES.md, scripted per test.

For the cases a real local app cannot produce on demand: a host answering
502/503/429, a ZeroGPU quota event, a private app, a stream that goes silent
or breaks after the job was accepted, an API that changes under the gateway.
It records every request it gets (method, path, lower-cased headers).
"""
from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .server import QuietHandler, Served

Events = list[tuple[str, Any]]


def message_param(name: str = "message") -> dict[str, Any]:
    return {"label": "Message", "parameter_name": name, "parameter_has_default": False,
            "parameter_default": None, "type": {"type": "string"},
            "python_type": {"type": "str", "description": ""}, "component": "Textbox"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Script:
    """What the stand-in answers. Mutable: a test may redeploy it by changing api_name."""

    api_name: str = "chat"
    generator: bool = True
    # Replies to the first POST /call/... requests, consumed in order: (status, headers, json body).
    call_replies: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    # The event stream of an accepted job; may depend on the request headers of the POST.
    events: Events | Callable[[dict[str, str]], Events] = field(
        default_factory=lambda: [("generating", ["hello"]), ("complete", ["hello there"])])
    require_token: str | None = None      # a private app: every request needs this token
    reject_any_token: bool = False        # a public app that refuses an invalid token (401)
    config_status: int = 200
    config_pause: float = 0.0             # seconds the app takes to describe itself
    chunked: bool = True                  # False: the event stream as an HTTP/1.0 proxy passes it on


class FakeGradio:
    """Serve a Script on 127.0.0.1; stop() ends any stream still hanging."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.seen: list[Seen] = []
        self.accepted: list[str] = []       # event ids of jobs the app accepted
        self.cancelled: list[str] = []
        self.stopping = threading.Event()
        self._jobs: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self.served = Served(self._handler())
        self.url = self.served.url

    def stop(self) -> None:
        self.stopping.set()
        self.served.stop()

    def calls(self) -> list[Seen]:
        """The POST /call/... requests (submitted prompts)."""
        return [s for s in self.seen if s.method == "POST" and "/call/" in s.path]

    # ------------------------------------------------------------ protocol

    def _config(self) -> dict[str, Any]:
        s = self.script
        return {"version": "6.31.0", "protocol": "sse_v3", "api_prefix": "/gradio_api",
                "dependencies": [{"id": 0, "api_name": s.api_name, "api_visibility": "public",
                                  "types": {"generator": s.generator, "cancel": False}}]}

    def _info(self) -> dict[str, Any]:
        return {"named_endpoints": {"/" + self.script.api_name: {
            "parameters": [message_param()],
            "returns": [{"label": "Response", "component": "Textbox", "type": {"type": "string"}}],
            "api_visibility": "public"}}, "unnamed_endpoints": {}}

    def _handler(self) -> type[QuietHandler]:
        stand_in = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                stand_in._record(self)
                if stand_in._refuse(self):
                    return
                path = self.path.split("?")[0]
                if path in ("/config", "/config/"):
                    stand_in.stopping.wait(stand_in.script.config_pause)
                    if stand_in.script.config_status != 200:
                        self.send_json(stand_in.script.config_status, {"detail": "host unavailable"})
                        return
                    self.send_json(200, stand_in._config())
                elif path == "/gradio_api/info":
                    self.send_json(200, stand_in._info())
                elif path.startswith("/gradio_api/call/"):
                    stand_in._stream(self, path.rsplit("/", 1)[-1])
                else:
                    self.send_json(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                stand_in._record(self)
                body = self.read_body()
                if stand_in._refuse(self):
                    return
                path = self.path.split("?")[0]
                if path == "/gradio_api/cancel":
                    stand_in.cancelled.append(json.loads(body or b"{}").get("event_id", ""))
                    self.send_json(200, {"success": True})
                elif path == "/gradio_api/call/" + stand_in.script.api_name:
                    stand_in._submit(self)
                elif path.startswith("/gradio_api/call/"):
                    # What Gradio 6 does for an unknown api_name (FnIndexInferError).
                    self.send_json(500, {"detail": "Internal Server Error"})
                else:
                    self.send_json(404, {"detail": "Not Found"})

        return Handler

    def _record(self, handler: QuietHandler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.seen.append(Seen(handler.command, handler.path, headers))

    def _refuse(self, handler: QuietHandler) -> bool:
        given = handler.headers.get("X-HF-Authorization")
        s = self.script
        refused = (s.require_token is not None and given != f"Bearer {s.require_token}") or \
            (s.reject_any_token and given is not None)
        if refused:
            handler.send_json(401, {"detail": "Invalid credentials"})
        return refused

    def _submit(self, handler: QuietHandler) -> None:
        with self._lock:
            reply = self.script.call_replies.pop(0) if self.script.call_replies else None
        if reply is not None:
            status, headers, body = reply
            handler.send_json(status, body, headers)
            return
        event_id = uuid.uuid4().hex
        with self._lock:
            self._jobs[event_id] = {k.lower(): v for k, v in handler.headers.items()}
            self.accepted.append(event_id)
        handler.send_json(200, {"event_id": event_id})

    def _stream(self, handler: QuietHandler, event_id: str) -> None:
        headers = self._jobs.get(event_id)
        if headers is None:
            handler.send_json(404, {"detail": "Event not found"})
            return
        events = self.script.events
        events = events(headers) if callable(events) else events
        chunked = self.script.chunked
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        if chunked:                     # what Gradio (uvicorn) sends
            handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True

        def send(raw: bytes) -> None:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw) if chunked else raw)
            handler.wfile.flush()
        try:
            for kind, data in events:
                if kind == "hang":              # silent until the gateway gives up (or the test ends)
                    self.stopping.wait(data or 30)
                    return
                if kind == "pause":             # the app's own pace: data seconds without a word
                    self.stopping.wait(data)
                    continue
                if kind == "wait":              # data is a threading.Event the test sets
                    data.wait(30)
                    continue
                if kind == "close":             # the host drops the stream mid-answer
                    return
                send(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
            if chunked:
                handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
