"""The two hot calls of every completion (the job's submit and its event stream) on a lean client.

Why not urllib3 there: bench/'s profile put 47 % of a non-stream request's CPU in requests and
urllib3 for these two calls (the adapter, URL parsing, Retry objects, CaseInsensitiveDict, and
http.client parsing every answer's headers through the `email` package). Here the request is
one header block built once per app, and geventhttpclient's C parser (llhttp, Node's) reads the
status line, the headers and the chunked framing. Only its parser is used: its client's pool
blocks once `size` sockets are in use, takes timeouts per pool, never checks an idle
connection before reusing it, and its read() waits for a whole block, which an event stream
must not.

Only direct connections come here (`LeanClient.route`): no proxy for the URL, an ASCII host,
header values that cannot smuggle a line. Proxies, IDNA hosts, redirects (protocol.py resends a
3xx through requests, on the app's own host only) and every cold call stay on requests. The
sockets are the `socket` module's, so gevent-native in the workers (which patch before the app
is imported) and plain blocking ones in tests and the CLI.
"""
from __future__ import annotations

import os
import select
import socket
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_environ_proxies, select_proxy

from .lean_answer import (NO_HEADERS, BrokenAnswer, ConnectTimedOut, Dropped, LeanError, NoAnswer, NotConnected,
                          ReadTimedOut, Response, TLSFailed, close_quietly)

__all__ = ["NO_HEADERS", "BrokenAnswer", "ConnectTimedOut", "Dropped", "HostPool", "LeanClient", "LeanError", "NotConnected",
           "ReadTimedOut", "Response", "Route", "TLSFailed", "header_lines", "is_idle_and_open", "request_head"]
UNSAFE_IN_HEADERS = ("\r", "\n", "\0")
MAX_ROUTES = 4096             # app URLs whose route is remembered
_UNKNOWN: Any = object()

try:                          # the OS's poll(), not gevent's, which would build watchers
    from gevent.monkey import get_original

    _poll = get_original("select", "poll")
except ImportError:  # pragma: no cover - gevent is a runtime dependency
    _poll = select.poll


def is_idle_and_open(sock: Any) -> bool:
    """Whether a pooled idle connection can be reused: readable while idle means the peer
    closed it (or sent what it should not). One non-blocking poll() of the OS."""
    poller = _poll()
    poller.register(sock.fileno(), select.POLLIN)
    return not poller.poll(0)


@dataclass(frozen=True)
class Route:
    """Where a direct request goes: the pool's key and the request's fixed parts."""

    scheme: str
    host: str
    port: int
    origin: str                       # scheme://netloc, what a URL of this route starts with
    host_header: str

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


class HostPool:
    """The idle connections to one (scheme, host, port): last in, first out, at most `size`.

    Never blocks: a request that finds no idle connection opens one, as urllib3's pool does
    with block=False. Lists' pop and append need no lock under the GIL or gevent.
    """

    __slots__ = ("size", "idle")

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: list[Any] = []

    def take(self) -> Any | None:
        while self.idle:
            sock = self.idle.pop()
            try:
                if is_idle_and_open(sock):
                    return sock
            except (OSError, ValueError):
                pass
            close_quietly(sock)              # the app closed it meanwhile: never send on it
        return None

    def give(self, sock: Any) -> None:
        if len(self.idle) < self.size:
            self.idle.append(sock)
        else:
            close_quietly(sock)

    def clear(self) -> None:
        """Close the idle connections; one given back later is closed too (an evicted pool)."""
        self.size = 0
        while self.idle:
            close_quietly(self.idle.pop())


def _send_all(sock: Any, request: bytes, url: str) -> None:
    try:
        sock.sendall(request)
    except (BrokenPipeError, ConnectionResetError):
        raise NoAnswer() from None           # the app had closed it: nothing of this request was read
    except (socket.timeout, TimeoutError):
        close_quietly(sock)
        raise ReadTimedOut(url) from None
    except OSError as exc:
        close_quietly(sock)
        raise Dropped(url, str(exc)) from exc


class LeanClient:
    """The process's direct connections: one HostPool per (scheme, host, port), at most
    `pools` of them (the least recently used is dropped), TLS as requests would verify it."""

    def __init__(self, session: Any, *, pools: int, size: int) -> None:
        self.session = session        # its proxies, trust_env, verify and cert decide as for requests
        self.max_pools = pools
        self.size = size
        self.pools: OrderedDict[tuple[str, str, int], HostPool] = OrderedDict()
        self._tls: tuple[Any, ssl.SSLContext] | None = None
        self._routes: dict[str, Route | None] = {}

    def route(self, url: str) -> Route | None:
        """The route of a URL this client may take; None for one that must go through requests.

        Remembered per app URL while only the session decides (about 50 us a completion
        otherwise); with trust_env on, the environment is read again each time, as requests does.
        """
        if self.session.trust_env:
            return self._route(url)
        known = self._routes.get(url, _UNKNOWN)
        if known is _UNKNOWN:
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            known = self._routes[url] = self._route(url)
        return known

    def _route(self, url: str) -> Route | None:
        if not url.isascii() or not url.startswith(("http://", "https://")):
            return None                   # IDNA hosts: requests prepares them
        parts = urlsplit(url)
        if not parts.hostname or "@" in parts.netloc or self._proxy_for(url):
            return None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        return Route(parts.scheme, parts.hostname, port, f"{parts.scheme}://{parts.netloc}", parts.netloc)

    def _proxy_for(self, url: str) -> str | None:
        """The proxy requests would use for url: Session.merge_environment_settings, then
        HTTPAdapter's select_proxy. The environment counts only where the session trusts it."""
        session = self.session
        proxies: dict[str, str] = {}
        if session.trust_env:
            proxies.update(get_environ_proxies(url, no_proxy=None))
        proxies.update({k: v for k, v in session.proxies.items() if v is not None})
        return select_proxy(url, proxies)

    def send(self, route: Route, request: bytes, method: str, timeouts: tuple[float, float],
             url: str) -> Response:
        """Send one request and read its answer's head. A pooled connection that turns out dead
        before any byte of the answer (the app closed it as the request went out) is replaced
        once, for a POST too: urllib3 checked a pooled connection before reuse and opened a new
        one when it was dead, and a keep-alive server closes an idle connection only between
        requests, so the one sent on it was not read. Never after a timeout."""
        pool = self._pool(route)
        for attempt in (0, 1):
            sock = pool.take()
            reused = sock is not None
            if sock is None:
                sock = self._connect(route, timeouts[0], url)
            sock.settimeout(timeouts[1])
            try:
                _send_all(sock, request, url)
                return Response(sock, pool, method, url)
            except NoAnswer:
                close_quietly(sock)
                if reused and attempt == 0:
                    continue
                raise Dropped(url, "the connection closed before an answer") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _pool(self, route: Route) -> HostPool:
        key = route.key
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = HostPool(self.size)
            while len(self.pools) > self.max_pools:
                self.pools.popitem(last=False)[1].clear()
        elif len(self.pools) > 1:
            self.pools.move_to_end(key)
        return pool

    def _connect(self, route: Route, timeout: float, url: str) -> Any:
        try:
            sock = socket.create_connection((route.host, route.port), timeout=timeout)
        except (socket.timeout, TimeoutError) as exc:
            raise ConnectTimedOut(url, "timed out connecting") from exc
        except OSError as exc:
            raise NotConnected(url, str(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as urllib3 does
            if route.scheme == "https":
                sock = self._context().wrap_socket(sock, server_hostname=route.host)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            close_quietly(sock)
            raise TLSFailed(url, str(exc)) from exc
        except (socket.timeout, TimeoutError) as exc:
            close_quietly(sock)
            raise ConnectTimedOut(url, "timed out in the TLS handshake") from exc
        except OSError as exc:
            close_quietly(sock)
            raise Dropped(url, str(exc)) from exc
        return sock

    def _context(self) -> ssl.SSLContext:
        """The CA bundle requests would use: session.verify (a path, or False), else
        DEFAULT_CA_BUNDLE_PATH (certifi's); hostname checks on, SNI set by wrap_socket."""
        settings = (self.session.verify, self.session.cert)
        if self._tls is not None and self._tls[0] == settings:
            return self._tls[1]
        verify, cert = settings
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)     # the ssl module's: gevent's once patched
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_COMPRESSION
        context.set_alpn_protocols(["http/1.1"])
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            where = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
            if os.path.isdir(where):
                context.load_verify_locations(capath=where)
            else:
                context.load_verify_locations(cafile=where)
        if cert:
            certfile, keyfile = cert if isinstance(cert, tuple) else (cert, None)
            context.load_cert_chain(certfile, keyfile)
        self._tls = (settings, context)
        return context

    def close(self) -> None:
        for pool in self.pools.values():
            pool.clear()
        self.pools.clear()


def request_head(method: str, target: str, route: Route, fields: str, length: int | None) -> bytes:
    """The request's bytes up to its body; `fields` are the app's header lines, built once."""
    sized = f"Content-Type: application/json\r\nContent-Length: {length}\r\n" if length is not None else ""
    return f"{method} {target} HTTP/1.1\r\nHost: {route.host_header}\r\n{fields}{sized}\r\n".encode("latin-1")


def header_lines(headers: dict[str, Any]) -> str | None:
    """The header block of an app's requests; None when a name or value could break a line
    (requests would refuse such a header: it goes that way and fails there)."""
    lines = []
    for name, value in headers.items():
        if value is None:
            continue
        value = value if isinstance(value, str) else str(value)
        if not name or ":" in name or " " in name or any(c in name or c in value for c in UNSAFE_IN_HEADERS):
            return None
        if not (name.isascii() and value.isascii()):
            return None
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)
