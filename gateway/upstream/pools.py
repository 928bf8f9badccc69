"""A model served by several Spaces (CONTRACT §7, §9): failover or balance, with cooldowns.

A member that answers with a quota error, is unavailable (building, paused, in an error
stage, a 503 from its host) or cannot be reached or times out before it accepted the job is
put in a cooldown: as long as it asked (Retry-After, "Try again in H:MM:SS"), else
growing with each strike (COOL_BASE doubled up to COOL_CAP). The request moves on to the
next member; the client sees nothing of it. Nothing is re-run once the app accepted the
job, with one exception the runner makes too (§5's anonymous retry): ZeroGPU's quota error
event before any output (errors.ZeroGpuRefused) means the app refused to run the prompt at all.
Any other quota error after acceptance (an HTTP 429 on the event stream) goes to the client.

A quota cooldown is the caller's: ZeroGPU counts quota per account, so when one key's token
runs out the Space still serves the others. It is kept by the hash of the credential
(anonymous callers share one, as do all who spend the operator's HF_TOKEN). A Space that
cannot serve anyone (unavailable, unreachable, timing out) cools down for everyone.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import replace
from typing import Any, Callable

from prometheus_client import Counter, Gauge

from ..concurrency import call_later
from ..credentials import Credential
from ..errors import UpstreamError, UpstreamQuota, UpstreamTimeout, UpstreamUnavailable, ZeroGpuRefused
from ..registry import Model
from ..shared_state import Cooldown, SharedState
from .protocol import UpstreamUnreachable

log = logging.getLogger("gateway.upstream")
COOL_BASE = 5.0        # seconds of a first cooldown without a Retry-After; doubled per strike
COOL_CAP = 300.0

COOLDOWNS = Counter("gateway_pool_cooldowns", "Cooldowns a pool put its Spaces in, by model, Space and reason.",
                    ["model", "space", "reason"])
COOLING = Gauge("gateway_pool_cooldown_seconds", "Seconds left of each pool member's cooldown (0: available).",
                ["model", "space"], multiprocess_mode="livemostrecent")


class Pools:
    """Runs a pooled model's job on its members in turn; the cooldowns live in SharedState.

    `default` is the credential of a request without a token of its own: whose quota
    cooldowns /metrics and `models check` show.
    """

    def __init__(self, shared: SharedState, default: Credential | None = None) -> None:
        self.shared = shared
        self.default = default or Credential()
        self._turns: dict[str, itertools.count[int]] = {}     # balance: round robin per model, per process

    def order(self, model: Model) -> list[str]:
        members = list(model.members)
        if model.strategy == "balance" and len(members) > 1:
            start = next(self._turns.setdefault(model.id, itertools.count())) % len(members)
            members = members[start:] + members[:start]
        return members

    def execute(self, run: Any, model: Model, credential: Credential, attempt: Callable[[Model], None]) -> None:
        """attempt(member model) on each member available to the credential until one answers."""
        if not model.spaces:
            attempt(model)
            return
        members = self.order(model)
        holder = credential.fingerprint
        cooling, struck = self.shared.cooling(members, holder)
        for i, member in enumerate(members):
            if member in cooling:
                continue
            last = all(m in cooling for m in members[i + 1:])
            stop = (lambda: None) if last else keep_waiting(run)
            try:
                attempt(replace(model, space=member, spaces=()))
            except (UpstreamQuota, UpstreamUnavailable, UpstreamTimeout) as exc:
                if not self._may_move_on(run, exc):
                    raise
                cooling[member] = self._cool(model, member, exc, holder)
                run.tick()                  # the next member has UPSTREAM_IDLE_TIMEOUT of its own
                continue
            finally:
                stop()
            if member in struck:
                self.shared.forgive(member, holder)
            return
        raise all_cooling(model, cooling)

    @staticmethod
    def _may_move_on(run: Any, exc: UpstreamError) -> bool:
        if run.closed or run.emitted or time.monotonic() >= run.deadline:
            return False
        return not run.accepted or isinstance(exc, ZeroGpuRefused)

    def _cool(self, model: Model, member: str, exc: UpstreamError, holder: str) -> Cooldown:
        quota = isinstance(exc, UpstreamQuota)
        reason = "quota" if quota else "unavailable"
        asked = exc.asked_wait if isinstance(exc, UpstreamUnreachable) else exc.retry_after
        cooldown = self.shared.cool(member, asked, reason, base=COOL_BASE, cap=COOL_CAP,
                                    holder=holder if quota else None)
        COOLDOWNS.labels(model.id, member, reason).inc()
        log.warning("pool %s: %s cools down for %.0fs (%s: %s); trying the next Space", model.id, member,
                    cooldown.remaining, reason, exc.message[:200])
        return cooldown

    def cooldowns(self, model: Model, credential: Credential | None = None) -> dict[str, Cooldown]:
        """The members cooling down for the credential (the default one unless given)."""
        if not model.spaces:
            return {}
        return self.shared.cooling(list(model.members), (credential or self.default).fingerprint)[0]

    def publish(self, models: Any) -> None:
        """Set the cooldown gauge of every pool member (called when /metrics is scraped)."""
        for model in models:
            if model.spaces:
                cooling = self.cooldowns(model)
                for member in model.members:
                    COOLING.labels(model.id, member).set(round(cooling[member].remaining, 1)
                                                         if member in cooling else 0)


def keep_waiting(run: Any) -> Callable[[], None]:
    """Keep the run's idle timer from firing until the member accepts the job; returns the stop.

    The consumer ends a run after UPSTREAM_IDLE_TIMEOUT without a sign of life, a second before
    the member's own read timeout: a Space that hangs before it accepted the job would end the
    whole request in a 504. While another member is left, the pool waits for the member's
    timeout instead and then moves on; the total deadline still bounds it all.
    """
    stopped = False
    cancel: Callable[[], None] = lambda: None

    def tick() -> None:                 # in the event loop under gevent: must not block
        nonlocal cancel
        if stopped or run.accepted or run.closed:
            return
        run.tick()
        cancel = call_later(run.idle / 2, tick)

    def stop() -> None:
        nonlocal stopped
        stopped = True
        cancel()
    tick()
    return stop


def all_cooling(model: Model, cooling: dict[str, Cooldown]) -> UpstreamError:
    """429 when every member is out of quota, else 503; Retry-After the earliest end."""
    soonest = min(cooling.values(), key=lambda c: c.until)
    wait = max(1, math.ceil(soonest.remaining))
    listed = ", ".join(f"{c.space} ({c.reason}, {math.ceil(c.remaining)}s)" for c in cooling.values())
    message = f"Every Space of the model '{model.id}' is cooling down: {listed}."
    if all(c.reason == "quota" for c in cooling.values()):
        return UpstreamQuota(message, retry_after=wait)
    return UpstreamUnavailable(message, retry_after=wait)


def member_models(model: Model) -> list[Model]:
    """A model as each of its Spaces serves it: one per member of a pool, else the model itself."""
    return [replace(model, space=member, spaces=()) for member in model.spaces] or [model]


def pool_lines(pools: Pools, model: Model, problems: dict[str, list[str]]) -> list[str]:
    """For `models check`: each member of a pool, whether it is cooling down, and what keeps a
    member from mapping (`problems`, by member)."""
    if not model.spaces:
        return []
    cooling = pools.cooldowns(model)
    lines = []
    for member in model.members:
        c = cooling.get(member)
        state = f"cooling down {math.ceil(c.remaining)}s more ({c.reason})" if c else "available"
        if problems.get(member):
            state += f"; FAIL: {'; '.join(problems[member])}"
        lines.append(f"      {model.strategy} member {member}: {state}")
    return lines
