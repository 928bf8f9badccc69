"""A stand-in Hugging Face Hub: GET /api/spaces/{owner}/{name} -> host and runtime stage.

Answers like the real Hub: an invalid token gets 401; a Space that does not
exist, or that the caller may not see, gets 404. Stages can be scripted as a
sequence (one per look-up, the last one sticks) to play a Space waking up.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .server import QuietHandler, Served


@dataclass
class Space:
    host: str
    stages: list[str] = field(default_factory=lambda: ["RUNNING"])
    token: str | None = None            # a private Space: only this token sees it

    def next_stage(self) -> str:
        return self.stages.pop(0) if len(self.stages) > 1 else self.stages[0]


class StandInHub:
    def __init__(self, valid_tokens: set[str] | None = None, host: str = "127.0.0.1") -> None:
        self.spaces: dict[str, Space] = {}
        self.valid_tokens = set(valid_tokens or ())
        self.lookups: list[tuple[str, str | None]] = []   # (space id, the Authorization header)
        self._lock = threading.Lock()
        self.served = Served(self._handler(), host)
        self.url = self.served.url.rstrip("/")

    def stop(self) -> None:
        self.served.stop()

    def lookups_of(self, space_id: str) -> int:
        return sum(1 for sid, _ in self.lookups if sid == space_id)

    def _answer(self, handler: QuietHandler) -> None:
        path = handler.path.split("?")[0]
        if not path.startswith("/api/spaces/"):
            handler.send_json(404, {"error": "Not Found"})
            return
        space_id = path[len("/api/spaces/"):].strip("/")
        auth = handler.headers.get("Authorization")
        with self._lock:
            self.lookups.append((space_id, auth))
        token = auth[len("Bearer "):] if auth and auth.startswith("Bearer ") else None
        if auth is not None and token not in self.valid_tokens:
            handler.send_json(401, {"error": "Invalid credentials in Authorization header"})
            return
        space = self.spaces.get(space_id)
        if space is None or (space.token is not None and token != space.token):
            handler.send_json(404, {"error": "Repository not found"})
            return
        with self._lock:
            stage = space.next_stage()
        handler.send_json(200, {"id": space_id, "host": space.host.rstrip("/"),
                                "subdomain": space_id.replace("/", "-"),
                                "runtime": {"stage": stage, "hardware": {"current": "cpu-basic"}},
                                "private": space.token is not None})

    def _handler(self) -> type[QuietHandler]:
        hub = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                hub._answer(self)

        return Handler
