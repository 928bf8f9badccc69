"""An answer read by geventhttpclient's C parser for lean.py's client, and the client's errors.

    LeanError
    ├── NotConnected      no connection was made: refused, no such name, no route  -> 503
    │   └── ConnectTimedOut                                                        -> 504
    ├── TLSFailed         the handshake failed: untrusted, wrong host, not TLS     -> 503
    ├── Dropped           the connection ended before the answer's head was whole  -> 503
    ├── ReadTimedOut      no byte for the idle timeout                              -> 504
    └── BrokenAnswer      a malformed head, or the body broke off                  -> 502

protocol.mapped_errors turns them into GatewayErrors.
"""
from __future__ import annotations

import socket
from typing import Any, Iterator

from geventhttpclient._parser import HTTPParseError, HTTPResponseParser

from .bounded import READ_SIZE

MAX_HEAD = 64 * 1024          # status line and headers; Gradio sends under 1 KiB
REDIRECTS = (301, 302, 303, 307, 308)


class LeanError(Exception):
    def __init__(self, url: str, why: str = "") -> None:
        super().__init__(why or type(self).__name__)
        self.url = url                # failure_reason names the host from it


class NotConnected(LeanError):
    pass


class ConnectTimedOut(NotConnected):
    pass


class TLSFailed(LeanError):
    pass


class Dropped(LeanError):
    pass


class ReadTimedOut(LeanError):
    pass


class BrokenAnswer(LeanError):
    pass


class NoAnswer(Exception):
    """The connection ended before any byte of the answer: on a pooled one, a stale connection."""


def close_quietly(sock: Any) -> None:
    try:
        sock.close()
    except OSError:
        pass


class Headers(dict):
    """An answer's headers, by lowercase name; repeated fields joined with ", " as urllib3 does."""

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> Any:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


NO_HEADERS = Headers()            # an open stream's, once its head was checked (read only)


class Response(HTTPResponseParser):
    """One answer on one connection: the head read at once, the body piece by piece.

    Small on purpose, as an open event stream keeps it for as long as it lasts: no read buffer
    (each recv is parsed at once; what it held of the body waits in `_body` until read), the
    headers in one dict. A recv asks for at most READ_SIZE bytes, so no piece is larger.
    """

    __slots__ = ("sock", "pool", "url", "method", "status_code", "headers", "complete", "_body",
                 "_field", "_value", "_head_bytes", "_head_done", "_extra",
                 "gateway_encoding", "gateway_limit")

    def __init__(self, sock: Any, pool: Any, method: str, url: str) -> None:
        super().__init__()
        self.sock, self.pool, self.method, self.url = sock, pool, method, url
        self.status_code = 0
        self.headers = Headers()
        self.complete = self._head_done = self._extra = False
        self._body: list[bytes] = []
        self._field, self._value = "", None
        self._head_bytes = 0
        self.gateway_encoding: str | None = None
        self.gateway_limit: int | None = None
        self._read_head()

    # ------------------------------------------------------------ the parser's callbacks

    def _on_message_begin(self) -> None:
        if self._head_done:
            self._extra = True        # a second answer on one request: never reuse this connection

    def _on_status(self, _: str) -> None:
        pass

    def _on_header_field(self, text: str) -> None:
        if self._value is not None:   # a new field: the last one is whole
            self._flush()
        self._field += text

    def _on_header_value(self, text: str) -> None:
        self._value = text if self._value is None else self._value + text

    def _flush(self) -> None:
        name, value = self._field.lower(), (self._value or "").strip()
        self._field, self._value = "", None
        if self._head_done:           # a second answer's (or trailers'): never this one's headers
            return
        seen = dict.get(self.headers, name)
        self.headers[name] = value if seen is None else f"{seen}, {value}"

    def _on_headers_complete(self) -> bool:
        if self._field:
            self._flush()
        self._head_done = True
        return self.method == "HEAD"

    def _on_body(self, data: bytearray) -> None:
        if data:                      # an empty piece would read as the body's end (read_piece)
            self._body.append(data)

    def _on_message_complete(self) -> None:
        self.complete = True

    # ------------------------------------------------------------ reading

    def _read_head(self) -> None:
        first = True
        while not self._head_done:
            data = self._recv(before_head=first)
            if not data:
                if first:
                    raise NoAnswer()
                self._broken("the connection closed in the middle of the answer's head", Dropped)
            first = False
            self._head_bytes += len(data)
            self._feed(data)
            if not self._head_done and self._head_bytes > MAX_HEAD:
                self._broken("the answer's head is oversized", BrokenAnswer)
        self.status_code = self.get_code()

    def _recv(self, before_head: bool = False) -> bytes:
        sock = self.sock
        if sock is None:
            raise BrokenAnswer(self.url, "the connection was closed")
        try:
            return sock.recv(READ_SIZE)
        except (socket.timeout, TimeoutError):
            self.close()
            raise ReadTimedOut(self.url) from None
        except (ConnectionResetError, BrokenPipeError):
            if before_head:
                raise NoAnswer() from None
            self.close()
            raise Dropped(self.url, "the app reset the connection") from None
        except OSError as exc:
            self.close()
            raise (Dropped if not self._head_done else BrokenAnswer)(self.url, str(exc)) from None

    def _feed(self, data: bytes) -> None:
        try:
            self.feed(data)
        except HTTPParseError as exc:
            self._broken(f"malformed HTTP ({exc})", BrokenAnswer)

    def _broken(self, why: str, kind: type[LeanError]) -> None:
        self.close()
        raise kind(self.url, why)

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECTS and "location" in self.headers

    def read_piece(self) -> bytes:
        """The body's next bytes (chunked framing removed, content encoding kept) as they
        arrive, whatever one read gets and never more than READ_SIZE; b"" at its end, when the
        connection has gone back to the pool. A function, not a generator: a stream waiting
        here keeps one Python frame level fewer on its greenlet's stack."""
        body = self._body
        while not body:
            if self.complete:
                self.release_conn()
                return b""
            data = self._recv()
            self._feed(data)          # b"": the end of the connection, which ends an unsized body
            if not data and not self.complete:
                self._broken("the connection closed in the middle of the answer", BrokenAnswer)
        return body.pop(0)

    def pieces(self) -> Iterator[bytes]:
        """The body's pieces (read_piece) one after the other, until its end."""
        return iter(self.read_piece, b"")

    def release_conn(self) -> None:
        """The answer read to its end goes back to its pool (when the app keeps it alive);
        anything else is closed."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        self._body.clear()
        if self.complete and not self._extra and self.pool is not None and self.should_keep_alive():
            self.pool.give(sock)
        else:
            close_quietly(sock)

    close = release_conn

    def shutdown(self) -> None:
        """Wake a reader blocked on this connection, from any greenlet, and close it."""
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            close_quietly(sock)
