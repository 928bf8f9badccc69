"""A keyed request's admission: its key, its limits, its x-ratelimit-* headers (CONTRACT §10).

The view asks `admit()` before any upstream work; the ticket it gets frees the key's stream
slot and counts the answer's estimated tokens when the run ends. `add_ratelimit_headers`
(an after_request hook) puts the key's windows on every answer to a keyed request.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Iterator, Mapping

from flask import g
from limits import RateLimitItemPerDay, RateLimitItemPerMinute
from prometheus_client import Counter

from . import credentials
from .config import Settings
from .errors import GatewayError, ModelNotFound
from .http import current_exchange
from .keys import Key, KeyRing
from .payloads import usage
from .shared_state import SharedState, Window
from .upstream.deltas import Delta
from .upstream.run import Run

KEY_REQUESTS = Counter("gateway_key_requests", "Completions asked for with a gateway key, by the key's name "
                       "and outcome (admitted, or the limit that refused it).", ["key", "outcome"])
KEY_TOKENS = Counter("gateway_key_tokens", "Estimated tokens spent, by the key's name.", ["key"])


class RateLimited(GatewayError):
    """429 for a gateway key's own limit (not an upstream's quota)."""

    status_code = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


def authenticate(headers: Mapping[str, str], settings: Settings, ring: KeyRing) -> Key | None:
    """The caller's key (401 when keys are required and it has none); None on an open gateway."""
    if not ring:
        credentials.check_api_key(headers, settings)
        return None
    key = ring.find(credentials.bearer(headers))
    g.gateway_key = key
    exchange = current_exchange()
    if exchange is not None:
        exchange.key = key.name              # the access line names the key
    return key


def hf_token(key: Key | None) -> str | None:
    return key.hf_token if key is not None else None


def current_key() -> Key | None:
    return g.get("gateway_key")


class Ticket:
    """What a keyed completion holds while it runs: a stream slot and its windows."""

    def __init__(self, state: SharedState, key: Key | None, ttl: float) -> None:
        self.state, self.key, self.ttl = state, key, ttl
        self.requests: Window | None = None
        self.tokens: Window | None = None
        self._lease: Any = None
        self._done = False
        self._lock = threading.Lock()

    @property
    def hf_token(self) -> str | None:
        return hf_token(self.key)

    def take(self, model_id: str) -> "Ticket":
        """Check the allow-list and take from each limit; 404/429 when one refuses."""
        key = self.key
        if key is None:
            return self
        if not key.may_use(model_id):
            shown = model_id if len(model_id) <= 200 else model_id[:200] + "..."
            raise ModelNotFound(f"The model '{shown}' does not exist or you do not have access to it.",
                                param="model")
        if key.tokens_per_day:
            self.tokens = self.state.peek(RateLimitItemPerDay(key.tokens_per_day), "tokens", key.name, moving=False)
            if self.tokens.remaining <= 0:
                self._refuse("tokens", "tokens per day", self.tokens)
        if key.concurrent_streams:
            self._lease = self.state.acquire(f"streams:{key.name}", key.concurrent_streams, self.ttl)
            if self._lease is None:
                self._refuse("streams", f"{key.concurrent_streams} concurrent streams", None, retry_after=1)
        if key.requests_per_minute:
            self.requests = self.state.hit(RateLimitItemPerMinute(key.requests_per_minute), "requests", key.name)
            assert self.requests is not None
            if not self.requests.allowed:
                self.release()
                self._refuse("requests", "requests per minute", self.requests)
        KEY_REQUESTS.labels(key.name, "admitted").inc()
        return self

    def _refuse(self, limit: str, what: str, window: Window | None, retry_after: int | None = None) -> None:
        assert self.key is not None
        KEY_REQUESTS.labels(self.key.name, f"limited_{limit}").inc()
        wait = retry_after if window is None else max(1, math.ceil(window.reset_at - time.time()))
        raise RateLimited(f"The key '{self.key.name}' is over its limit of {what}; retry after {wait}s.",
                          retry_after=wait)

    def release(self) -> None:
        with self._lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            self.state.release(lease)

    def spend(self, tokens: int) -> None:
        """Count the answer's tokens against the key's day (once), and free its stream slot."""
        with self._lock:
            done, self._done = self._done, True
        self.release()
        if done or self.key is None:
            return
        KEY_TOKENS.labels(self.key.name).inc(tokens)
        if self.key.tokens_per_day and tokens > 0:
            self.state.hit(RateLimitItemPerDay(self.key.tokens_per_day), "tokens", self.key.name,
                           moving=False, cost=tokens, stats=False)     # the headers went out already

    def follow(self, chat: Any, run: Any) -> Any:
        """The run, metered: when its events end, the estimated usage is spent."""
        if self.key is None:
            return run
        run.on_close(self.release)
        return MeteredRun(run, self, chat)


class MeteredRun:
    """A Run whose events are counted; everything else is the Run's."""

    def __init__(self, run: Any, ticket: Ticket, chat: Any) -> None:
        self._run, self._ticket, self._chat = run, ticket, chat

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def events(self) -> Iterator[Any]:
        text: list[str] = []
        try:
            for item in self._run.events():
                delta = item[1] if isinstance(item, tuple) else item     # a Fanout's (index, event)
                if isinstance(delta, Delta):
                    text.append(delta.content)
                    text.append(delta.reasoning)
                yield item
        finally:
            self._ticket.spend(usage(self._chat, "".join(text))["total_tokens"])

    def result(self) -> tuple[str, str, str]:
        return Run.result(self)  # type: ignore[arg-type]   # the Run's own loop, over the metered events


def admit(state: Any, model_id: str) -> Ticket:
    """Admit a completion for the request's key (a no-op ticket on an open gateway)."""
    ticket = Ticket(state.shared, current_key(), state.settings.total_timeout + 60)
    g.gateway_ticket = ticket
    return ticket.take(model_id)


def duration(seconds: float) -> str:
    """OpenAI's format for x-ratelimit-reset-*: 1m30s, 12s, 250ms."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    minutes, secs = divmod(math.ceil(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"


def add_ratelimit_headers(response: Any, state: Any) -> Any:
    """after_request: the key's request and token windows on every answer to a keyed request."""
    key = current_key()
    if key is None or not (key.requests_per_minute or key.tokens_per_day):
        return response
    ticket = g.get("gateway_ticket")
    shared: SharedState = state.shared
    requests = ticket.requests if ticket is not None else None
    tokens = ticket.tokens if ticket is not None else None
    if key.requests_per_minute:
        requests = requests or shared.peek(RateLimitItemPerMinute(key.requests_per_minute), "requests", key.name)
        _set(response, "requests", requests)
    if key.tokens_per_day:
        tokens = tokens or shared.peek(RateLimitItemPerDay(key.tokens_per_day), "tokens", key.name, moving=False)
        _set(response, "tokens", tokens)
    return response


def _set(response: Any, what: str, window: Window) -> None:
    response.headers[f"x-ratelimit-limit-{what}"] = str(window.limit)
    response.headers[f"x-ratelimit-remaining-{what}"] = str(max(0, window.remaining))
    response.headers[f"x-ratelimit-reset-{what}"] = duration(max(0.0, window.reset_at - time.time()))
