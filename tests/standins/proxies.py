"""A real HTTP proxy (absolute-form requests and CONNECT) and a real SOCKS5 proxy.

Each counts the client connections it carried and records where they went,
so a test can prove the gateway's traffic went through it.
"""
from __future__ import annotations

import select
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Carried:
    host: str
    port: int
    how: str          # "http", "connect", "socks-ip" or "socks-domain"


def relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], 30)
            if not readable:
                return
            for src in readable:
                data = src.recv(65536)
                if not data:
                    return
                (b if src is a else a).sendall(data)
    except OSError:
        return


class _Proxy:
    """A threaded TCP server on 127.0.0.1 whose handler calls self.serve(sock)."""

    def __init__(self) -> None:
        self.carried: list[Carried] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    proxy.serve(self.request)
                except OSError:
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def record(self, host: str, port: int, how: str) -> None:
        with self._lock:
            self.carried.append(Carried(host, port, how))

    def to(self, port: int) -> int:
        """How many connections this proxy carried to 127.0.0.1/localhost:port."""
        return sum(1 for c in self.carried if c.port == port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def serve(self, client: socket.socket) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class HttpProxy(_Proxy):
    """Forwards `GET http://host/...` requests and tunnels `CONNECT host:port`."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(65536)
            if not data:
                return
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=10)
            self.record(host, int(port), "connect")
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            parts = urlsplit(target)
            host, port = parts.hostname or "", parts.port or 80
            upstream = socket.create_connection((host, port), timeout=10)
            self.record(host, port, "http")
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            kept = [h for h in header_lines
                    if h.split(":", 1)[0].strip().lower() not in {"connection", "proxy-connection"}]
            # One request per connection keeps the relay simple; the client opens a new one.
            rest = self._whole_body(client, header_lines, rest)
            head_out = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close"])
            upstream.sendall(head_out.encode("latin-1") + b"\r\n\r\n" + rest)
            if not self._answer_head(upstream, client):
                upstream.close()
                return
        with upstream:
            upstream.settimeout(None)
            relay(client, upstream)


    @staticmethod
    def _whole_body(client: socket.socket, header_lines: list[str], rest: bytes) -> bytes:
        """Read the request body (Content-Length) before asking the origin."""
        length = next((int(h.split(":", 1)[1]) for h in header_lines
                       if h.split(":", 1)[0].strip().lower() == "content-length"), 0)
        while len(rest) < length:
            more = client.recv(65536)
            if not more:
                break
            rest += more
        return rest

    @staticmethod
    def _answer_head(upstream: socket.socket, client: socket.socket) -> bool:
        """Pass the origin's response head on, saying this connection closes after it."""
        data = b""
        while b"\r\n\r\n" not in data:
            more = upstream.recv(65536)
            if not more:
                return False
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        lines = [h for h in head.split(b"\r\n") if not h.lower().startswith(b"connection:")]
        client.sendall(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body)
        return True


class Socks5Proxy(_Proxy):
    """RFC 1928 without authentication: CONNECT to an IPv4 address or a domain name."""

    def __init__(self, scheme: str = "socks5") -> None:
        super().__init__()
        self.scheme = scheme

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @staticmethod
    def _exactly(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = sock.recv(n - len(data))
            if not more:
                raise OSError("client went away")
            data += more
        return data

    def serve(self, client: socket.socket) -> None:
        version, count = self._exactly(client, 2)
        self._exactly(client, count)
        if version != 5:
            return
        client.sendall(b"\x05\x00")                        # no authentication
        _, command, _, atyp = self._exactly(client, 4)
        if atyp == 1:
            host, how = socket.inet_ntoa(self._exactly(client, 4)), "socks-ip"
        elif atyp == 3:
            host, how = self._exactly(client, self._exactly(client, 1)[0]).decode(), "socks-domain"
        else:
            client.sendall(b"\x05\x08\x00\x01" + b"\x00" * 6)   # address type not supported
            return
        (port,) = struct.unpack("!H", self._exactly(client, 2))
        if command != 1:
            client.sendall(b"\x05\x07\x00\x01" + b"\x00" * 6)   # command not supported
            return
        try:
            upstream = socket.create_connection((host, port), timeout=10)
        except OSError:
            client.sendall(b"\x05\x05\x00\x01" + b"\x00" * 6)   # connection refused
            return
        self.record(host, port, how)
        client.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
        with upstream:
            upstream.settimeout(None)
            relay(client, upstream)
