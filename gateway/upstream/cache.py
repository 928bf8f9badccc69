"""A bounded, expiring cache that builds each key once, however many ask at once.

Written by hand because the libraries at hand (functools.lru_cache, cachetools)
either never expire entries or let concurrent misses all run the builder; a
Space's metadata costs several HTTP calls, so one build per key matters.
Locks are threading locks: under gevent's monkey-patching they are greenlet locks.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Generic, Hashable, TypeVar

from ..errors import UpstreamUnauthorized

V = TypeVar("V")


class _Flight:
    """One build in progress; later askers for the same key wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None
        self.waiters = 0


class BuildOnceCache(Generic[V]):
    def __init__(self, maxsize: int = 256, ttl: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        """The cached value for key, building it (once) when absent or expired."""
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[0] > self._clock():
                self._items.move_to_end(key)
                self.hits += 1
                return item[1]
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
                self.misses += 1
            else:
                flight.waiters += 1
        assert flight is not None
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value  # type: ignore[return-value]
        try:
            value = build()
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.value = value
            with self._lock:
                self._items[key] = (self._clock() + self.ttl, value)
                self._items.move_to_end(key)
                while len(self._items) > self.maxsize:
                    self._items.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def refresh(self, key: Hashable, stale: V, build: Callable[[], V]) -> V:
        """Replace `stale` with a fresh build, once however many callers found it stale."""
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[1] is not stale:
                return item[1]          # another caller already rebuilt it
            self._items.pop(key, None)
        return self.get(key, build)

    def invalidate(self, key: Hashable) -> None:
        with self._lock:
            self._items.pop(key, None)

    def waiting(self, key: Hashable) -> int:
        """How many callers wait for the build of key in progress (0 when none runs)."""
        with self._lock:
            flight = self._flights.get(key)
            return flight.waiters if flight is not None else 0

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def peek(self, key: Hashable) -> V | None:
        """The cached value, if there is a live one: never builds, never counts (the status page)."""
        with self._lock:
            item = self._items.get(key)
            return item[1] if item is not None and item[0] > self._clock() else None

    def __len__(self) -> int:
        return len(self._items)


PUBLIC = "public"


class AppCache(BuildOnceCache[V]):
    """The per-app metadata cache (CONTRACT §7), keyed so that callers cannot multiply entries.

    What a public app shows (its config, its API) is the same for every caller, so it has one
    entry, (space, "public"), built anonymously: a made-up `hf_…` bearer shares it and costs
    nothing. Only a space that refused the anonymous build (a private Space) is keyed by the
    hash of the caller's credential; that is remembered (bounded, for the cache's ttl) so the
    anonymous attempt is not repeated per request. A credential the app refuses builds no
    entry (failures are not cached), so invented tokens cannot flush other apps out either.
    """

    def __init__(self, maxsize: int = 256, ttl: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(maxsize, ttl, clock)
        self._private: OrderedDict[str, float] = OrderedDict()

    def key(self, space: str, credential: Any) -> tuple[str, str]:
        if credential.token and self._is_private(space):
            return (space, credential.fingerprint)
        return (space, PUBLIC)

    def get_for(self, space: str, credential: Any, build: Callable[[Any], V]) -> V:
        """The metadata of space as credential sees it; build(credential) makes it."""
        key = self.key(space, credential)
        if key[1] != PUBLIC:
            return self.get(key, lambda: build(credential))
        try:
            return self.get(key, lambda: build(credential.anonymous()))
        except UpstreamUnauthorized:
            if not credential.token:
                raise
        self._mark_private(space)
        return self.get((space, credential.fingerprint), lambda: build(credential))

    def _is_private(self, space: str) -> bool:
        with self._lock:
            until = self._private.get(space)
            return until is not None and until > self._clock()

    def _mark_private(self, space: str) -> None:
        with self._lock:
            self._private[space] = self._clock() + self.ttl
            self._private.move_to_end(space)
            while len(self._private) > self.maxsize:
                self._private.popitem(last=False)
