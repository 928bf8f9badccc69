"""Limits, cooldowns and usage shared by every worker and instance: Redis when REDIS_URL is set.

Without REDIS_URL the state lives in this process (each gunicorn worker keeps its own).
With it, every operation goes to Redis, atomically (a Lua script or a MULTI), so that
limits and cooldowns hold across workers and instances. When Redis cannot be reached the
operation is done on this process's own state instead: the request is served, one log
line says so (and one more when Redis is back), and `gateway_redis_unreachable` is 1.
Redis is tried again every RETRY_EVERY seconds; redis-py reconnects by itself.

Request and token limits are the `limits` package (the one behind flask-limiter) over
redis-py, or over its MemoryStorage locally. Two things it has no primitive for are
written here: concurrent-stream leases (a sorted set of leases that expire on their own,
so a crashed instance's streams do not hold a key's slots forever) and Space cooldowns
(a value with a TTL plus a strike counter that makes cooldowns grow).

A cooldown is a Space's own when the Space cannot serve anyone (paused, building, down), and
a Space's for one credential when that credential ran out of quota there (ZeroGPU counts
per account): `holder` names the credential by its hash (Credential.fingerprint), never the
token itself.
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import limits
import redis
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from prometheus_client import Counter, Gauge

log = logging.getLogger("gateway.state")
T = TypeVar("T")

PREFIX = "gcg"
RETRY_EVERY = 1.0           # seconds between attempts to reach Redis again after a failure
REDIS_TIMEOUT = 0.5         # seconds: a hung Redis costs a request at most this, once per RETRY_EVERY
STRIKES_TTL = 3600          # a Space's strikes (for growing cooldowns) are forgotten after an hour
LOCAL_CELLS = 4096          # cooldowns and strikes one process keeps (one per Space, or Space and holder)

# "Down" rather than "up": a process that imports this module and never uses it (gunicorn's
# configuration check) leaves a 0 behind, which a max ignores and a min would not.
STATE_DOWN = Gauge("gateway_redis_unreachable", "1 while a worker cannot reach REDIS_URL's Redis and serves "
                   "on its own local state; 0 otherwise.", multiprocess_mode="livemax")
STATE_FALLBACKS = Counter("gateway_shared_state_fallbacks", "Operations done on local state because Redis "
                          "could not be reached.")

# The lease script: drop expired leases, then take one if fewer than the limit are held.
ACQUIRE_LEASE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[2])))
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Cooldown:
    """A Space that is not to be tried before `until` (epoch seconds), and why."""

    space: str
    until: float
    reason: str             # "quota" (for the caller's credential) or "unavailable" (for everyone)

    @property
    def remaining(self) -> float:
        return max(0.0, self.until - time.time())


@dataclass(frozen=True)
class Lease:
    """One held concurrency slot, released where it was taken."""

    key: str
    member: str
    remote: bool


@dataclass(frozen=True)
class Window:
    """What a limit allows now: the limit, what is left, and when the window resets (epoch)."""

    limit: int
    remaining: int
    reset_at: float
    allowed: bool = True


def cell(space: str, holder: str | None = None) -> str:
    """What a cooldown and its strikes are kept under: the Space, or the Space for one holder
    (Space ids and URLs have no blank in them)."""
    return space if holder is None else f"{space} {holder}"


class _Local:
    """The in-process half: leases and cooldowns for one worker, at most LOCAL_CELLS of each."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.leases: dict[str, dict[str, float]] = {}
        self.cooldowns: dict[str, tuple[float, str]] = {}
        self.strikes: dict[str, tuple[int, float]] = {}

    def acquire(self, key: str, member: str, limit: int, expires_at: float) -> bool:
        now = time.time()
        with self.lock:
            held = {m: t for m, t in self.leases.get(key, {}).items() if t > now}
            if len(held) >= limit:
                self.leases[key] = held
                return False
            held[member] = expires_at
            self.leases[key] = held
            return True

    def release(self, key: str, member: str) -> None:
        with self.lock:
            self.leases.get(key, {}).pop(member, None)

    def strike(self, name: str) -> int:
        now = time.time()
        with self.lock:
            count, at = self.strikes.pop(name, (0, now))
            count = 1 if now - at > STRIKES_TTL else count + 1
            self.strikes[name] = (count, now)             # the latest last: the oldest go first
            _bound(self.strikes, lambda v: now - v[1] > STRIKES_TTL)
            return count

    def cool(self, name: str, until: float, reason: str) -> None:
        now = time.time()
        with self.lock:
            self.cooldowns.pop(name, None)
            self.cooldowns[name] = (until, reason)
            _bound(self.cooldowns, lambda v: v[0] <= now)

    def forgive(self, names: list[str]) -> None:
        with self.lock:
            for name in names:
                self.strikes.pop(name, None)
                self.cooldowns.pop(name, None)

    def cooling(self, names: list[str]) -> tuple[list[tuple[float, str] | None], list[bool]]:
        now = time.time()
        with self.lock:
            return ([c if (c := self.cooldowns.get(n)) is not None and c[0] > now else None for n in names],
                    [n in self.strikes for n in names])


def _bound(table: dict[str, Any], stale: Callable[[Any], bool]) -> None:
    """Keep a table within LOCAL_CELLS: the stale entries go first, then the oldest. Each
    credential that ran out of quota somewhere adds one, so callers must not grow it forever."""
    if len(table) <= LOCAL_CELLS:
        return
    for name in [n for n, v in table.items() if stale(v)]:
        del table[name]
    while len(table) > LOCAL_CELLS:
        del table[next(iter(table))]


class SharedState:
    """The gateway's shared state; `remote` says whether REDIS_URL is in use."""

    def __init__(self, redis_url: str | None = None) -> None:
        self.redis_url = redis_url
        self._local = _Local()
        self._local_storage = MemoryStorage()
        self._local_limiters = (limits.strategies.MovingWindowRateLimiter(self._local_storage),
                                limits.strategies.FixedWindowRateLimiter(self._local_storage))
        self._redis: redis.Redis | None = None
        self._down_until = 0.0          # monotonic: until then, go straight to local state
        self._down = False
        self._lock = threading.Lock()
        STATE_DOWN.set(0)
        if redis_url:
            options: dict[str, Any] = {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
            self._redis = redis.Redis.from_url(redis_url, **options)
            storage = RedisStorage(redis_url, key_prefix=f"{PREFIX}:limits", wrap_exceptions=True,
                                   connection_pool=self._redis.connection_pool)
            self._remote_limiters = (limits.strategies.MovingWindowRateLimiter(storage),
                                     limits.strategies.FixedWindowRateLimiter(storage))
            self._acquire_script = self._redis.register_script(ACQUIRE_LEASE)

    @property
    def remote(self) -> bool:
        return self._redis is not None

    @property
    def up(self) -> bool:
        """False while Redis is configured but could not be reached at the last attempt."""
        return not self._down

    # ------------------------------------------------------------ the fallback seam

    def _either(self, remote: Callable[[], T], local: Callable[[], T]) -> tuple[T, bool]:
        """Run remote() on Redis, or local() when there is no Redis or it is unreachable."""
        if self._redis is None or time.monotonic() < self._down_until:
            if self._redis is not None:
                STATE_FALLBACKS.inc()
            return local(), False
        try:
            value = remote()
        except (redis.RedisError, StorageError, OSError) as exc:
            self._went_down(exc)
            STATE_FALLBACKS.inc()
            return local(), False
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                STATE_DOWN.set(0)
                log.warning("Redis at REDIS_URL is reachable again: limits, cooldowns and usage are shared again")
        return value, True

    def _went_down(self, exc: BaseException) -> None:
        with self._lock:
            self._down_until = time.monotonic() + RETRY_EVERY
            was_down, self._down = self._down, True
        if not was_down:
            STATE_DOWN.set(1)
            reason = type(getattr(exc, "__cause__", None) or exc).__name__
            log.warning("Redis at REDIS_URL is unreachable (%s): serving on this process's local state "
                        "until it is back", reason)

    # ------------------------------------------------------------ request and token limits

    def hit(self, item: limits.RateLimitItem, *ids: str, moving: bool = True, cost: int = 1,
            stats: bool = True) -> Window | None:
        """Take `cost` from a limit (moving window for requests, fixed for tokens); the window after
        (unless stats=False: one round trip less where nobody reads it)."""
        index = 0 if moving else 1

        def run(limiter: Any) -> Window | None:
            allowed = limiter.hit(item, *ids, cost=cost)
            if not stats:
                return None
            stats_ = limiter.get_window_stats(item, *ids)
            return Window(item.amount, stats_.remaining, stats_.reset_time, allowed)
        return self._either(lambda: run(self._remote_limiters[index]),
                            lambda: run(self._local_limiters[index]))[0]

    def peek(self, item: limits.RateLimitItem, *ids: str, moving: bool = True) -> Window:
        """A limit's window without taking anything from it."""
        index = 0 if moving else 1

        def run(limiter: Any) -> Window:
            stats = limiter.get_window_stats(item, *ids)
            return Window(item.amount, stats.remaining, stats.reset_time, stats.remaining > 0)
        return self._either(lambda: run(self._remote_limiters[index]),
                            lambda: run(self._local_limiters[index]))[0]

    # ------------------------------------------------------------ concurrency leases

    def acquire(self, name: str, limit: int, ttl: float) -> Lease | None:
        """A concurrency slot of `name` (at most `limit` held), or None when all are taken.

        A lease expires after ttl seconds even if never released (a crashed worker).
        """
        key = f"{PREFIX}:leases:{name}"
        member = secrets.token_hex(8)
        expires_at = time.time() + ttl

        def remote() -> bool:
            return bool(self._acquire_script(keys=[key], args=[time.time(), expires_at, limit, member]))
        taken, on_redis = self._either(remote, lambda: self._local.acquire(key, member, limit, expires_at))
        return Lease(key, member, on_redis) if taken else None

    def release(self, lease: Lease) -> None:
        if not lease.remote:
            self._local.release(lease.key, lease.member)
            return
        try:
            assert self._redis is not None
            self._redis.zrem(lease.key, lease.member)
        except (redis.RedisError, OSError) as exc:
            self._went_down(exc)     # the lease expires by itself

    # ------------------------------------------------------------ Space cooldowns

    def cool(self, space: str, seconds: float | None, reason: str, *, base: float, cap: float,
             holder: str | None = None) -> Cooldown:
        """Put a Space in a cooldown (for one holder only, when given): `seconds` when it said,
        else growing with each strike."""
        name = cell(space, holder)

        def duration(strikes: int) -> float:
            return float(seconds) if seconds else min(cap, base * 2 ** (strikes - 1))

        def remote() -> Cooldown:
            assert self._redis is not None
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(f"{PREFIX}:strikes:{name}")
                pipe.expire(f"{PREFIX}:strikes:{name}", STRIKES_TTL)
                strikes = int(pipe.execute()[0])
            cooldown = Cooldown(space, time.time() + duration(strikes), reason)
            self._redis.set(f"{PREFIX}:cool:{name}", json.dumps([cooldown.until, reason]),
                            px=max(1, int(duration(strikes) * 1000)))
            return cooldown

        def local() -> Cooldown:
            cooldown = Cooldown(space, time.time() + duration(self._local.strike(name)), reason)
            self._local.cool(name, cooldown.until, reason)
            return cooldown
        return self._either(remote, local)[0]

    def forgive(self, space: str, holder: str | None = None) -> None:
        """A Space answered (the holder): its strikes start again from nothing."""
        names = [cell(space)] + ([cell(space, holder)] if holder is not None else [])

        def remote() -> None:
            assert self._redis is not None
            self._redis.delete(*(f"{PREFIX}:{kind}:{n}" for n in names for kind in ("strikes", "cool")))
        self._either(remote, lambda: self._local.forgive(names))

    def cooling(self, spaces: list[str], holder: str | None = None) -> tuple[dict[str, Cooldown], set[str]]:
        """The Spaces among `spaces` cooling down now (for everyone, or for the holder), and
        those with strikes; one round trip."""
        if not spaces:
            return {}, set()
        names = [cell(s) for s in spaces] + ([cell(s, holder) for s in spaces] if holder is not None else [])

        def remote() -> tuple[list[tuple[float, str] | None], list[bool]]:
            assert self._redis is not None
            values = self._redis.mget([f"{PREFIX}:cool:{n}" for n in names] +
                                      [f"{PREFIX}:strikes:{n}" for n in names])
            now = time.time()
            found: list[tuple[float, str] | None] = []
            for raw in values[:len(names)]:
                until, reason = json.loads(raw) if raw else (0.0, "")
                found.append((float(until), str(reason)) if until > now else None)
            return found, [bool(raw) for raw in values[len(names):]]
        found, struck = self._either(remote, lambda: self._local.cooling(names))[0]
        cooling: dict[str, Cooldown] = {}
        for i, value in enumerate(found):
            space = spaces[i % len(spaces)]
            if value is not None and (space not in cooling or value[0] > cooling[space].until):
                cooling[space] = Cooldown(space, *value)       # the later end where both are set
        return cooling, {spaces[i % len(spaces)] for i, hit in enumerate(struck) if hit}
