"""One chat completion's upstream work, run in the background and consumed as events."""
from __future__ import annotations

import contextlib
from http.cookiejar import DefaultCookiePolicy
import logging
import random
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from ..concurrency import EMPTY, gevent_active, make_queue, spawn
from ..config import Settings
from ..credentials import Credential
from ..errors import (GatewayError, UpstreamApiChanged, UpstreamError, UpstreamQuota, UpstreamTimeout,
                      UpstreamUnauthorized)
from ..registry import Model
from ..schemas import ChatRequest
from .apps import App, load_app
from .cache import BuildOnceCache
from .deltas import Delta, SnapshotDiffer, word_chunks
from .hub import SLEEPING, check_stage, space_info, wait_awake
from .images import fetch_image, file_name, guard_image_session
from .mapping import build_plan
from .protocol import Gradio, UpstreamUnreachable, abort, iter_events, release, retry_after_from

log = logging.getLogger("gateway.upstream")

KEEPALIVE = object()      # yielded by Run.events() when the stream has been idle SSE_KEEPALIVE seconds
_TICK = object()          # an upstream heartbeat: resets the idle timer, yields nothing
_CLIENT_GONE = object()
RETRIES = 2               # transient failures retried before the app accepted the job
BACKOFF_BASE = 0.25       # seconds; doubled per retry, times a jitter of 0.5-1
BACKOFF_CAP = 2.0


@dataclass(frozen=True)
class Finish:
    reason: str = "stop"


class ClientGone(GatewayError):
    """The client closed its connection; nobody will read this answer."""

    status_code = 499
    code = "client_closed_request"


def error_from_event(data: Any) -> GatewayError:
    """Classify a Gradio `error` event by its fields, not by substrings of free text."""
    if not isinstance(data, dict):
        return UpstreamError("The Gradio app failed without a message.")
    message = data.get("error")
    title = str(data.get("title") or "")
    if title.lower().startswith("zerogpu"):
        text = str(message or title)
        return UpstreamQuota(f"{title}: {text}" if message else title,
                             retry_after=retry_after_from(text))
    if not message:
        # Gradio hides the message of its own input validation too: when the cached API is
        # stale, this is what a call with the old inputs gets. The runner checks the API.
        return UpstreamApiChanged("The Gradio app raised an error and did not show its message.")
    return UpstreamError(f"The Gradio app failed: {message}")


class Run:
    """A queue between the greenlet that talks to the app and the response that reads it."""

    def __init__(self, settings: Settings, client_socket: socket.socket | None = None) -> None:
        self._queue = make_queue()
        self._closers: list[Callable[[], None]] = []
        self._closed = False
        self._watcher: Any = None
        self.keepalive = settings.sse_keepalive
        self.idle = settings.idle_timeout
        self.deadline = time.monotonic() + settings.total_timeout
        self.emitted = False
        self.accepted = False              # the app took the job: no transient retry any more
        self.first_event_at: float | None = None
        self._client_socket = client_socket

    # ------------------------------------------------------------ producer side

    def start(self, job: Callable[["Run"], None]) -> "Run":
        spawn(self._work, job)
        if self._client_socket is not None and gevent_active():
            self._watcher = self._watch_client(self._client_socket)
        return self

    def _work(self, job: Callable[["Run"], None]) -> None:
        try:
            job(self)
        except BaseException as exc:  # handed to the consumer, who raises or drops it
            self._queue.put(exc if not self._closed else _CLIENT_GONE)

    def emit(self, delta: Delta) -> None:
        if self.first_event_at is None:
            self.first_event_at = time.monotonic()
        if delta:
            self.emitted = True
        self._queue.put(delta)

    def tick(self) -> None:
        self._queue.put(_TICK)

    def finish(self, reason: str = "stop") -> None:
        self._queue.put(Finish(reason))

    def on_close(self, closer: Callable[[], None]) -> None:
        """Register what stops the upstream work; runs at once if the run is already closed."""
        if self._closed:
            closer()
        else:
            self._closers.append(closer)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------ consumer side

    def events(self) -> Iterator[Any]:
        """Deltas, then a Finish; KEEPALIVE while idle; raises the run's error."""
        last_event = last_yield = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                wait = min(self.keepalive - (now - last_yield), self.idle - (now - last_event),
                           self.deadline - now)
                try:
                    item = self._queue.get(timeout=max(wait, 0.0))
                except EMPTY:
                    now = time.monotonic()
                    if now >= self.deadline:
                        raise UpstreamTimeout("The Gradio app did not finish within UPSTREAM_TOTAL_TIMEOUT.")
                    if now - last_event >= self.idle:
                        raise UpstreamTimeout("The Gradio app sent nothing for UPSTREAM_IDLE_TIMEOUT seconds.")
                    if now - last_yield >= self.keepalive:
                        last_yield = now
                        yield KEEPALIVE
                    continue
                last_event = time.monotonic()
                if item is _TICK:
                    continue
                if item is _CLIENT_GONE:
                    raise ClientGone("The client closed the connection.")
                if isinstance(item, BaseException):
                    raise item
                last_yield = last_event
                yield item
                if isinstance(item, Finish):
                    return
        finally:
            self.close()

    def result(self) -> tuple[str, str, str]:
        """(content, reasoning, finish_reason) of the whole run."""
        content, reasoning, reason = [], [], "stop"
        for item in self.events():
            if isinstance(item, Delta):
                content.append(item.content)
                reasoning.append(item.reasoning)
            elif isinstance(item, Finish):
                reason = item.reason
        return "".join(content), "".join(reasoning), reason

    def close(self) -> None:
        """Stop the upstream job (idempotent): close its event stream and cancel it."""
        if self._closed:
            return
        self._closed = True
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            with contextlib.suppress(Exception):
                closer()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()

    def _watch_client(self, sock: socket.socket) -> Any:
        """Under gevent: notice a client that hung up while nothing is being written to it.

        A read watcher on the event loop with a callback, not a greenlet polling each second:
        an open stream then costs no wake-ups and about 10 KiB less (measured by bench/).
        """
        from gevent import get_hub

        raw = getattr(sock, "_sock", sock)     # the non-blocking OS socket under gevent's
        watcher = get_hub().loop.io(sock.fileno(), 1)

        def readable() -> None:               # runs in the hub: must not block
            try:
                data = raw.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            watcher.stop()
            if data:
                return  # the client sent more bytes (pipelining): hang-ups cannot be told apart
            self._queue.put(_CLIENT_GONE)
            spawn(self.close)

        watcher.start(readable)
        return watcher


CREDENTIAL_HEADERS = ("X-HF-Authorization", "X-IP-Token")
# A pooled keep-alive connection the app closed meanwhile (a restart, a 500 with
# `Connection: close`) fails the next request on it. A GET is resent once; a POST never
# (it may have reached the app); connection failures are left to the runner's backoff.


class StaleConnectionRetry(Retry):
    """Resend a GET whose pooled connection turned out dead; never after a read timeout."""

    def increment(self, *args: Any, **kwargs: Any) -> Retry:
        error = kwargs.get("error")
        if isinstance(error, ReadTimeoutError):
            raise error                 # an app too slow to answer is not a dead connection
        return super().increment(*args, **kwargs)


STALE_CONNECTION_RETRY = StaleConnectionRetry(total=1, connect=0, read=1, redirect=0, status=0, other=0,
                                              allowed_methods=frozenset({"GET"}), raise_on_status=False)


class UpstreamSession(requests.Session):
    """A Session that drops the credential headers on a redirect to another host.

    requests strips only `Authorization` there; a Gradio host redirecting elsewhere must
    not receive a user's X-HF-Authorization either.
    """

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
    adapter = HTTPAdapter(pool_connections=64, pool_maxsize=512, max_retries=STALE_CONNECTION_RETRY)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "gradio-chat-gateway"
    # One session serves every user: a cookie one app set for one request must not ride along on another's.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


class Upstream:
    """The gateway's way to Gradio apps: shared pools, the metadata cache, and runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = make_session(settings)
        # Images come from hosts users name: their own pools, which connect to public addresses only.
        self.image_session = (make_session(settings) if settings.allow_private_image_urls
                              else guard_image_session(make_session(settings)))
        self.apps: BuildOnceCache[App] = BuildOnceCache(settings.cache_size, settings.cache_ttl)

    @property
    def timeouts(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.idle_timeout + 1.0)

    def start(self, model: Model, chat: ChatRequest, credential: Credential,
              client_socket: socket.socket | None = None) -> Run:
        """Begin the upstream work for one request; errors come out of the Run."""
        run = Run(self.settings, client_socket)
        return run.start(lambda r: self._execute_redacted(r, model, chat, credential))

    def _execute_redacted(self, run: Run, model: Model, chat: ChatRequest, credential: Credential) -> None:
        """An app that echoes the credential it got (in an error event or body) must not put it in ours."""
        try:
            self._execute(run, model, chat, credential)
        except GatewayError as exc:
            raise exc.redact(credential.token, credential.ip_token)

    # ------------------------------------------------------------ the job

    def _execute(self, run: Run, model: Model, chat: ChatRequest, credential: Credential) -> None:
        """Attempt the job; retry only where no prompt ran twice and nothing reached the client.

        - a transient failure before the app accepted the job: up to RETRIES times, with backoff;
        - a user token refused (401/403) or out of ZeroGPU quota: once, anonymously;
        - a call rejected because the app's API changed under the cache: once, with fresh metadata.
        """
        refreshed, transient = False, 0
        while True:
            app: App | None = None
            run.accepted = False
            try:
                app = self.app_for(model, credential, run.deadline)
                self._attempt(run, app, model, chat, credential)
                return
            except UpstreamUnreachable as exc:
                if run.accepted or run.emitted or run.closed or transient >= RETRIES or \
                        (exc.asked_wait or 0) > BACKOFF_CAP:     # the host asked for a longer pause
                    raise
                transient += 1
                self._backoff(run, transient)
            except (UpstreamUnauthorized, UpstreamQuota) as exc:
                if not credential.is_user_token or run.emitted or run.closed:
                    raise
                log.info("retrying %s anonymously after %s", model.id, type(exc).__name__)
                credential = credential.anonymous()
            except UpstreamApiChanged:
                if refreshed or app is None or run.emitted or run.closed or \
                        not self._api_changed(model, credential, app):
                    raise
                log.info("the API of %s changed; retrying with its new description", model.id)
                refreshed = True

    @staticmethod
    def _backoff(run: Run, attempt: int) -> None:
        """Exponential backoff with jitter, never past the run's deadline."""
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        if time.monotonic() + delay >= run.deadline:
            raise UpstreamTimeout("The Gradio app did not become available within UPSTREAM_TOTAL_TIMEOUT.")
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0 and not run.closed:
            run.tick()      # the gateway is waiting to retry: no upstream job is idle
            time.sleep(min(left, run.idle / 2))   # cooperative under gevent

    def _api_changed(self, model: Model, credential: Credential, stale: App) -> bool:
        """Rebuild the app's metadata (once for all callers) and tell whether its API changed."""
        def build() -> App:
            return load_app(stale.base_url, self._gradio(stale.base_url, credential))
        try:
            fresh = self.apps.refresh(self._app_key(model, credential), stale, build)
        except GatewayError:
            return False
        return fresh.signature != stale.signature

    def _app_key(self, model: Model, credential: Credential) -> tuple[str, str]:
        # What an app shows may depend on the credential (a private Space): key by its hash.
        return (model.space, credential.fingerprint)

    def _gradio(self, base_url: str, credential: Credential, api_prefix: str = "/gradio_api") -> Gradio:
        return Gradio(self.session, base_url, credential.app_headers(),
                      connect_timeout=self.settings.connect_timeout,
                      read_timeout=self.settings.idle_timeout + 1.0, api_prefix=api_prefix)

    def app_for(self, model: Model, credential: Credential, deadline: float | None = None) -> App:
        """The app's metadata, from the cache or built once."""
        def build() -> App:
            base = model.space if model.is_url else self._space_host(model.space, credential, deadline)
            return load_app(base, self._gradio(base, credential))
        return self.apps.get(self._app_key(model, credential), build)

    def _space_host(self, space_id: str, credential: Credential, deadline: float | None) -> str:
        def lookup() -> Any:
            return space_info(self.session, self.settings.hf_endpoint, space_id, credential,
                              (self.settings.connect_timeout, self.settings.connect_timeout + 20))
        info = lookup()
        check_stage(info)
        if info.stage in SLEEPING:
            info = wait_awake(self.session, lookup, info,
                              deadline or time.monotonic() + self.settings.total_timeout, self.timeouts,
                              credential.app_headers())
        return info.host

    def _upload(self, gradio: Gradio, url: str, index: int) -> dict[str, Any]:
        content, mime = fetch_image(self.image_session, url, limit=self.settings.max_image_bytes,
                                    allow_private=self.settings.allow_private_image_urls,
                                    timeout=self.timeouts)
        name = file_name(mime, index)
        path = gradio.upload(name, content, mime)
        return {"path": path, "orig_name": name, "mime_type": mime, "size": len(content),
                "meta": {"_type": "gradio.FileData"}}

    def _attempt(self, run: Run, app: App, model: Model, chat: ChatRequest, credential: Credential) -> None:
        gradio = self._gradio(app.base_url, credential, app.api_prefix)
        counter = iter(range(1, 1000))
        plan = build_plan(app, model.api_name, model.flags, chat,
                          upload=lambda url: self._upload(gradio, url, next(counter)))
        endpoint = plan.endpoint
        session_hash = secrets.token_hex(8)    # a fresh session per request: no shared chat state
        event_id = gradio.submit(endpoint.api_name, plan.data, session_hash)
        run.accepted = True                    # from here on, a retry would run the prompt twice
        ended = released = False               # a finished job needs no cancel; its connection is reused
        if endpoint.fn_index is not None:
            fn_index = endpoint.fn_index
            run.on_close(lambda: None if ended else spawn(gradio.cancel, event_id, session_hash, fn_index))
        resp = gradio.open_events(endpoint.api_name, event_id)
        run.on_close(lambda: None if released else abort(resp))
        differ = SnapshotDiffer(chat.stop)
        events = iter_events(resp, f"call {endpoint.api_name}")
        try:
            for event in events:
                if run.closed:
                    return
                if event.kind == "heartbeat":
                    run.tick()
                elif event.kind == "generating":
                    run.emit(differ.feed(*plan.outputs(event.data)))
                    if differ.stopped:
                        break
                elif event.kind == "complete":
                    delta = differ.feed(*plan.outputs(event.data), final=True)
                    if endpoint.generator:
                        run.emit(delta)
                    else:
                        self._pseudo_stream(run, delta)
                    ended = True
                    break
                elif event.kind == "error":
                    raise error_from_event(event.data)
            else:
                raise UpstreamError("The Gradio app closed the stream before the answer was complete.")
        finally:
            if not ended:
                abort(resp)
        run.finish("stop")
        released = ended and release(resp, events)   # after the answer; run.close() cuts a stall short

    @staticmethod
    def _pseudo_stream(run: Run, delta: Delta) -> None:
        if delta.reasoning:
            run.emit(Delta(reasoning=delta.reasoning))
        pieces = word_chunks(delta.content) or [""]
        for piece in pieces:
            run.emit(Delta(content=piece))
