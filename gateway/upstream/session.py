"""The process's upstream HTTP session: pools, proxy, no cookies, no credentials across hosts."""
from __future__ import annotations

import http.client
import os
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from ..config import Settings
from .lean import LeanClient, is_idle_and_open

CREDENTIAL_HEADERS = ("X-HF-Authorization", "X-IP-Token")
POOLS = 64            # hosts with pooled connections; the least recently used host's are dropped
POOL_SIZE = 512       # idle connections kept per (scheme, host, port)
# A pooled keep-alive connection the app closed meanwhile (a restart, a 500 with
# `Connection: close`) fails the next request on it. Through requests a GET is resent once, a
# POST never (it may have reached the app); connection failures are left to the runner's
# backoff. The hot calls on the lean client: see lean.LeanClient.send.


class StaleConnectionRetry(Retry):
    """Resend a GET whose pooled connection turned out dead; never after a read timeout."""

    def increment(self, *args: Any, **kwargs: Any) -> Retry:
        error = kwargs.get("error")
        if isinstance(error, ReadTimeoutError):
            raise error                 # an app too slow to answer is not a dead connection
        return super().increment(*args, **kwargs)


STALE_CONNECTION_RETRY = StaleConnectionRetry(total=1, connect=0, read=1, redirect=0, status=0, other=0,
                                              allowed_methods=frozenset({"GET"}), raise_on_status=False)


class _LivenessCheck:
    """Whether a pooled idle connection is still usable: urllib3 asks before each reuse.

    The same answer as urllib3's own check (readable while idle means closed or broken), from
    one non-blocking poll() of the OS: urllib3's goes through gevent's poll, which arms and
    tears down event-loop watchers for a zero timeout (5% of a worker's CPU, measured by bench/).
    """

    sock: Any

    @property
    def is_connected(self) -> bool:
        return self.sock is not None and is_idle_and_open(self.sock)


READ_BUFFER = 1024      # bytes; http.client's default is 8 KiB


class _SmallBuffer:
    """A socket whose makefile() buffers READ_BUFFER bytes, for http.client's response."""

    __slots__ = ("_sock",)

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def makefile(self, mode: str) -> Any:
        return self._sock.makefile(mode, buffering=READ_BUFFER)


class _Response(http.client.HTTPResponse):
    """An upstream response that reads through a 1 KiB buffer instead of 8 KiB.

    An open event stream keeps its buffer for as long as it lasts: the smaller one saves
    about 3.4 KiB of memory per open stream (measured by bench/). Gradio's events are short
    lines and chunks; a read larger than the buffer bypasses it.
    """

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(_SmallBuffer(sock), *args, **kwargs)


class _Connection(_LivenessCheck, HTTPConnection):
    response_class = _Response


class _TLSConnection(_LivenessCheck, HTTPSConnection):
    response_class = _Response


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class UpstreamSession(requests.Session):
    """A Session that drops the credential headers on a redirect to another host.

    requests strips only `Authorization` there; a Gradio host redirecting elsewhere must
    not receive a user's X-HF-Authorization either. `lean` carries the hot calls on direct
    connections (lean.py), with this session's proxies and TLS settings.
    """

    lean: LeanClient | None = None

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            for name in CREDENTIAL_HEADERS:
                prepared_request.headers.pop(name, None)


def make_session(settings: Settings) -> requests.Session:
    """The process's connection pools: one Session, pools per host, bounded (LRU) by urllib3."""
    session = UpstreamSession()
    session.trust_env = False          # only USE_PROXY/PROXY_URL choose a proxy; no .netrc credentials
    session.proxies.update(settings.proxies)
    # The CA bundle is the one requests takes from the environment when it trusts it (a private
    # CA in front of the apps): both clients verify against the same one.
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    adapter = HTTPAdapter(pool_connections=POOLS, pool_maxsize=POOL_SIZE, max_retries=STALE_CONNECTION_RETRY)
    adapter.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}   # direct connections
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "gradio-chat-gateway"
    # What bounded.py can inflate within MAX_UPSTREAM_BYTES; requests would also invite br and zstd.
    session.headers["Accept-Encoding"] = "gzip, deflate"
    # One session serves every user: a cookie one app set for one request must not ride along on another's.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    session.lean = LeanClient(session, pools=POOLS, size=POOL_SIZE)
    return session
