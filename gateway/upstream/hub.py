"""Space id -> host and stage, through the Hub API at HF_ENDPOINT."""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Callable

import requests

from ..credentials import Credential
from ..errors import SpaceNotFound, UpstreamUnauthorized, UpstreamUnavailable, UpstreamTimeout
from .protocol import check_status, mapped_errors
from .run import STATUS_LOG_EVERY, current_run

log = logging.getLogger("gateway.upstream")

# RUNNING_BUILDING / RUNNING_APP_STARTING: the old version serves while a new one starts.
RUNNING = {"RUNNING", "RUNNING_BUILDING", "RUNNING_APP_STARTING"}
STARTING = {"BUILDING", "APP_STARTING", "STARTING"}
SLEEPING = {"SLEEPING"}
POLL_FIRST, POLL_MAX = 0.25, 2.0     # seconds between Hub look-ups while a Space wakes


@dataclass(frozen=True)
class SpaceInfo:
    space_id: str
    host: str
    stage: str


def space_info(session: requests.Session, endpoint: str, space_id: str, credential: Credential,
               timeout: tuple[float, float]) -> SpaceInfo:
    """Ask the Hub about a Space: its host and runtime stage."""
    what = f"Hub lookup of {space_id}"
    with mapped_errors(what):
        resp = session.get(f"{endpoint}/api/spaces/{space_id}", headers=credential.hub_headers(),
                           timeout=timeout)
        if resp.status_code == 404:
            if credential.token:
                raise SpaceNotFound(f"The Space '{space_id}' does not exist.")
            # Without a token the Hub cannot tell missing from private.
            raise UpstreamUnauthorized(f"The Space '{space_id}' is private or does not exist; "
                                       "send a Hugging Face token that can read it.")
        if resp.status_code in (401, 403):
            raise UpstreamUnauthorized(f"The Hub refused access to the Space '{space_id}'.")
        check_status(resp, what)
        body = resp.json()
    runtime = body.get("runtime") if isinstance(body, dict) else None
    stage = (runtime or {}).get("stage") or "RUNNING"
    host = body.get("host") if isinstance(body, dict) else None
    if not isinstance(host, str) or not host.startswith(("http://", "https://")):
        raise UpstreamUnavailable(f"The Hub gave no host for the Space '{space_id}' (stage {stage}).")
    return SpaceInfo(space_id, host.rstrip("/") + "/", str(stage).upper())


def check_stage(info: SpaceInfo) -> None:
    """Raise the contract's answer for a Space that cannot serve now (SLEEPING is handled apart)."""
    if info.stage in RUNNING or info.stage in SLEEPING:
        return
    if info.stage in STARTING:
        raise UpstreamUnavailable(f"The Space '{info.space_id}' is starting ({info.stage}); try again shortly.",
                                  retry_after=30)
    raise UpstreamUnavailable(f"The Space '{info.space_id}' cannot serve: its stage is {info.stage}.",
                              retry_after=60 if info.stage == "PAUSED" else None)


def _say_waking(info: SpaceInfo, waited: float) -> None:
    text = f"The Space '{info.space_id}' is waking up (stage {info.stage}, {waited:.0f} s so far)."
    run = current_run()
    if run is not None:
        run.status(text, kind="space_waking", space=info.space_id, stage=info.stage, waited_s=round(waited))
    else:
        log.info("waiting (space_waking): %s", text)


def wait_awake(session: requests.Session, lookup: Callable[[], SpaceInfo], info: SpaceInfo,
               deadline: float, timeout: tuple[float, float], headers: dict[str, str]) -> SpaceInfo:
    """Wake a SLEEPING Space (any request to its host does) and wait, within deadline, until it runs."""
    with contextlib.suppress(requests.exceptions.RequestException):
        # A sleeping host may not answer this first request; the stage tells. A private
        # Space needs the credential to be woken. Its page is not read (stream, then close):
        # what the host sends there, of any size or encoding, is not the gateway's to hold.
        session.get(info.host, headers=headers, timeout=timeout, allow_redirects=False, stream=True).close()
    poll = POLL_FIRST
    started, last_said = time.monotonic(), float("-inf")
    while info.stage in SLEEPING or info.stage in STARTING:
        now = time.monotonic()
        # A request's run keeps its log lines sparse itself; a command (no run) is kept sparse here.
        if current_run() is not None or now - last_said >= STATUS_LOG_EVERY:
            last_said = now
            _say_waking(info, now - started)
        if time.monotonic() + poll > deadline:
            raise UpstreamTimeout(f"The Space '{info.space_id}' did not wake up in time "
                                  f"(stage {info.stage}).")
        time.sleep(poll)        # cooperative under gevent
        poll = min(poll * 2, POLL_MAX)
        info = lookup()
    check_stage(info)
    return info
