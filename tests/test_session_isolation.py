"""The shared upstream session keeps no state between users."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gateway.config import load_settings
from gateway.upstream.session import make_session


class CookieSetter(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self) -> None:
        CookieSetter.seen.append(self.headers.get("Cookie"))
        self.send_response(200)
        self.send_header("Set-Cookie", "session=user-a-secret; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_cookies_set_by_an_app_are_not_sent_on_later_requests():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CookieSetter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        session = make_session(load_settings({}))
        url = f"http://127.0.0.1:{server.server_port}/"
        for _ in range(2):
            assert session.get(url, timeout=5).status_code == 200
        assert CookieSetter.seen == [None, None]
        assert len(session.cookies) == 0
    finally:
        server.shutdown()
        server.server_close()
