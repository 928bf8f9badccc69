"""One chat completion's upstream work, run in the background and consumed as events."""
from __future__ import annotations

import json
import logging
import random
import re
import socket
import time
from typing import Any

from ..config import Settings
from ..credentials import Credential, resolve as resolve_credential
from ..errors import (GatewayError, ModelNotFound, SpaceNotFound, UpstreamApiChanged, UpstreamError,
                      UpstreamQuota, UpstreamTimeout, UpstreamUnauthorized, ZeroGpuRefused)
from ..registry import ANY_SPACE, Model
from ..schemas import ChatRequest
from ..shared_state import SharedState
from .apps import App, load_app
from .cache import PUBLIC, AppCache
from .deltas import Delta, SnapshotDiffer, word_chunks
from .hub import SLEEPING, check_stage, space_info, wait_awake
from .image_store import IMAGE_BYTES_IN_FLIGHT, NO_IMAGES, ByteBudget, RequestImages, RunImages
from .images import Reserve, fetch_image, guard_image_session
from . import wire
from .mapping import Plan, build_plan
from .protocol import Gradio, UpstreamUnreachable, retry_after_from
from .pools import Pools
from .run import Run
from .session import make_session

log = logging.getLogger("gateway.upstream")
RETRIES = 2               # transient failures retried before the app accepted the job
BACKOFF_BASE = 0.25       # seconds; doubled per retry, times a jitter of 0.5-1
BACKOFF_CAP = 2.0


QUOTA_TEXT = re.compile(r"exceeded your (?:free )?(?:zero)?gpu quota|no gpu is currently available", re.I)


def error_from_event(data: Any) -> GatewayError:
    """Classify a Gradio `error` event by its fields, not by substrings of free text.

    The data is {"error", "title", …} on 5.x+, a plain string on some 4.x-5.x paths ("404:
    Session not found."), None when the app hides its errors. A ZeroGPU quota error has a
    title starting "ZeroGPU" where the version has titles; before that only its text tells.
    """
    if isinstance(data, str):
        data = {"error": data}
    if not isinstance(data, dict):
        data = {}
    message = data.get("error")
    if message is not None and not isinstance(message, str):
        message = json.dumps(message)[:2000]
    if message and len(message) >= 2 and message[0] == message[-1] and message[0] in "'\"":
        message = message[1:-1]       # 3.x-4.x send the exception's repr: 'The model is overloaded'
    title = str(data.get("title") or "")
    if not title and message and QUOTA_TEXT.search(message):
        title = "ZeroGPU quota exceeded"
    if title.lower().startswith("zerogpu"):
        text = str(message or title)
        return ZeroGpuRefused(f"{title}: {text}" if message else title,
                              retry_after=retry_after_from(text))
    if not message:
        # Gradio hides the message of its own input validation too: when the cached API is
        # stale, this is what a call with the old inputs gets. The runner checks the API.
        return UpstreamApiChanged("The Gradio app raised an error and did not show its message.")
    return UpstreamError(f"The Gradio app failed: {message}")


def _signs_of_life(run: Run, event: wire.Event) -> None:
    """A heartbeat keeps the job alive; a queue's status is also made visible (run.status)."""
    data = event.data if isinstance(event.data, dict) else {}
    if event.kind == "status" and data.get("stage") == "queue":
        rank, eta = data.get("rank"), data.get("eta")
        where = f"position {rank + 1}" if isinstance(rank, int) else "waiting"
        est = f", about {eta:.0f} s" if isinstance(eta, (int, float)) else ""
        run.status(f"In the app's queue: {where}{est}.", kind="queue", position=rank, eta=eta,
                   queue_size=data.get("queue_size"))
    elif event.kind == "status":
        run.status("The app is working on it.", kind="processing")
    else:
        run.tick()


class Upstream:
    """The gateway's way to Gradio apps: shared pools, the metadata cache, and runs."""

    def __init__(self, settings: Settings, shared: SharedState | None = None) -> None:
        self.settings = settings
        # A pooled model's members and their cooldowns, shown as a request without a token sees them.
        self.pools = Pools(shared or SharedState(), resolve_credential({}, settings))
        self.session = make_session(settings)
        # Images come from hosts users name: their own pools, which connect to public addresses only.
        self.image_session = (make_session(settings) if settings.allow_private_image_urls
                              else guard_image_session(make_session(settings)))
        self.apps: AppCache[App] = AppCache(settings.cache_size, settings.cache_ttl)
        self.image_budget = ByteBudget(IMAGE_BYTES_IN_FLIGHT)     # image bytes this worker holds at once

    @property
    def timeouts(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.idle_timeout + 1.0)

    def start(self, model: Model, chat: ChatRequest, credential: Credential,
              client_socket: socket.socket | None = None, images: RequestImages | None = None) -> Run:
        """Begin the upstream work for one request (or one of its n runs, sharing `images`, the
        request's image store, None when it has no image); errors come out of the Run."""
        run = Run(self.settings, client_socket)
        view = images.view(run) if images is not None else NO_IMAGES
        return run.start(lambda r: self._execute_redacted(r, model, chat, credential, view))

    def images(self, runs: int) -> RequestImages:
        """The images of one request of `runs` runs: fetched once, uploaded once per app."""
        return RequestImages(self._fetch_image, self.image_budget, runs)

    def _execute_redacted(self, run: Run, model: Model, chat: ChatRequest, credential: Credential,
                          images: RunImages) -> None:
        """An app that echoes the credential it got (in an error event or body) must not put it in ours."""
        try:
            self.pools.execute(run, model, credential,
                               lambda member: self._execute(run, member, chat, credential, images))
        except GatewayError as exc:
            raise exc.redact(credential.token, credential.ip_token)
        finally:
            images.end()

    # ------------------------------------------------------------ the job

    def _execute(self, run: Run, model: Model, chat: ChatRequest, credential: Credential,
                 images: RunImages) -> None:
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
                self._attempt(run, app, model, chat, credential, images)
                return
            except UpstreamUnreachable as exc:
                if run.accepted or run.emitted or run.closed or transient >= RETRIES or \
                        (exc.asked_wait or 0) > BACKOFF_CAP:     # the host asked for a longer pause
                    raise
                transient += 1
                self._backoff(run, transient)
            except (UpstreamUnauthorized, UpstreamQuota) as exc:
                # Once the app took the job, only ZeroGPU's refusal says the prompt ran nowhere;
                # a 401 or 429 on the event stream may come from a job that is running.
                if not credential.is_user_token or run.emitted or run.closed or \
                        run.accepted and not isinstance(exc, ZeroGpuRefused):
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
        key = self._app_key(model, credential)
        # A public app's shared entry is read anonymously, as it was built (cache.AppCache).
        reader = credential if key[1] != PUBLIC else credential.anonymous()

        def build() -> App:
            return load_app(stale.base_url, self._gradio(stale.base_url, reader))
        try:
            fresh = self.apps.refresh(key, stale, build)
        except GatewayError:
            return False
        return fresh.signature != stale.signature

    def _app_key(self, model: Model, credential: Credential) -> tuple[str, str]:
        # By the credential's hash only where it changes what the app shows (cache.AppCache).
        return self.apps.key(model.space, credential)

    def _gradio(self, base_url: str, credential: Credential, api_prefix: str = "/gradio_api") -> Gradio:
        connect, read = self.timeouts
        return Gradio(self.session, base_url, credential.app_headers(),
                      connect_timeout=connect, read_timeout=read, api_prefix=api_prefix,
                      max_bytes=getattr(self.settings, "max_upstream_bytes", 32 * 1024 * 1024))

    def known_apps(self) -> dict[str, App]:
        """The apps this worker has read, by their model's `space`: what the status page shows
        without calling anything."""
        found: dict[str, App] = {}
        for key in self.apps.keys():
            app = self.apps.peek(key)
            space = key[0] if isinstance(key, tuple) and key else key
            if app is not None and isinstance(space, str):
                found.setdefault(space, app)
        return found

    def app_for(self, model: Model, credential: Credential, deadline: float | None = None) -> App:
        """The app's metadata, from the cache or built once."""
        def build(credential: Credential) -> App:
            base = model.space if model.is_url else self._space_host(model.space, credential, deadline)
            return load_app(base, self._gradio(base, credential))
        return self.apps.get_for(model.space, credential, build)

    def reload(self, model: Model, credential: Credential) -> App:
        """Read the model's app again now (the status page's Check now): its cached metadata is
        dropped and built afresh, once for all callers."""
        self.apps.invalidate(self._app_key(model, credential))
        return self.app_for(model, credential)

    def _space_host(self, space_id: str, credential: Credential, deadline: float | None) -> str:
        # ALLOW_ANY_SPACE maps public Spaces (registry.ANY_SPACE): the Hub is asked anonymously
        # unless the token is the caller's own, so a key's or the operator's token opens no
        # private Space to whoever sends `hf:owner/name`.
        withheld = space_id.startswith(ANY_SPACE) and bool(credential.token) and not credential.is_user_token
        space_id = space_id.removeprefix(ANY_SPACE)
        shown_to = credential.anonymous() if withheld else credential

        def lookup() -> Any:
            return space_info(self.session, self.settings.hf_endpoint, space_id, shown_to,
                              (self.settings.connect_timeout, self.settings.hub_timeout))
        try:
            info = lookup()
        except (UpstreamUnauthorized, SpaceNotFound):
            if withheld:
                raise ModelNotFound(f"The model '{ANY_SPACE}{space_id}' does not exist: ALLOW_ANY_SPACE maps "
                                    "public Spaces only.", param="model") from None
            raise
        check_stage(info)
        if info.stage in SLEEPING:
            info = wait_awake(self.session, lookup, info,
                              deadline or time.monotonic() + self.settings.total_timeout, self.timeouts,
                              credential.app_headers())
        return info.host

    def _fetch_image(self, url: str, deadline: float, reserve: Reserve) -> tuple[bytes, str]:
        return fetch_image(self.image_session, url, limit=self.settings.max_image_bytes,
                           allow_private=self.settings.allow_private_image_urls, timeout=self.timeouts,
                           deadline=deadline, reserve=reserve)

    def _attempt(self, run: Run, app: App, model: Model, chat: ChatRequest, credential: Credential,
                 images: RunImages) -> None:
        gradio = self._gradio(app.base_url, credential, app.api_prefix)
        plan = build_plan(app, model.api_name, model.flags, chat,
                          upload=lambda url: images.upload(app, url, gradio.upload))
        first = plan.endpoint
        if first.follower is None:
            self._answer(run, wire.start(gradio, app, first, app.inputs_for(first, plan.data)), plan,
                         chat.stop, credential.secrets)
            return
        # A two-step chat: the first step only puts the user's turn into the Chatbot; its
        # follower, called with the first step's outputs, writes the answer.
        outputs = self._silently(run, wire.start(gradio, app, first, app.inputs_for(first, plan.data)))
        if outputs is not None:
            self._answer(run, wire.start(gradio, app, first.follower, plan.follower_inputs(app, outputs)), plan,
                         chat.stop, credential.secrets)

    @staticmethod
    def _silently(run: Run, job: wire.Job) -> Any:
        """Run a job whose outputs are not the answer; its final outputs (None if the client left)."""
        run.accepted = True
        run.on_close(job.close)
        try:
            for event in job.events():
                if run.closed:
                    return None
                if event.kind == "complete":
                    job.release()            # its end follows at once: the follower reuses the connection
                    return event.data
                if event.kind == "error":
                    raise error_from_event(event.data)
                _signs_of_life(run, event)
            raise UpstreamError("The Gradio app closed the stream before the answer was complete.")
        finally:
            job.close()

    def _answer(self, run: Run, job: wire.Job, plan: Plan, stop: Any, secrets: Any = ()) -> None:
        """Stream the answer's job into the run: snapshots become deltas, stop sequences cut it."""
        run.accepted = True                    # from here on, a retry would run the prompt twice
        run.on_close(job.close)
        generator = plan.answer.generator
        differ = SnapshotDiffer(stop, secrets)
        ended = False
        try:
            for event in job.events():
                if run.closed:
                    return
                if event.kind == "generating":
                    run.emit(differ.feed(*plan.outputs(event.data)))
                    if differ.stopped:
                        break
                elif event.kind == "complete":
                    delta = differ.feed(*plan.outputs(event.data), final=True)
                    if generator or run.emitted:
                        run.emit(delta)
                    else:
                        self._pseudo_stream(run, delta)
                    ended = True
                    break
                elif event.kind == "error":
                    raise error_from_event(event.data)
                else:                            # heartbeat, queue status: the job is alive
                    _signs_of_life(run, event)
            else:
                raise UpstreamError("The Gradio app closed the stream before the answer was complete.")
        finally:
            if not ended:
                job.close()
        run.finish("stop")
        job.release()      # after the answer went out; run.close() cuts a stall short

    @staticmethod
    def _pseudo_stream(run: Run, delta: Delta) -> None:
        if delta.reasoning:
            run.emit(Delta(reasoning=delta.reasoning))
        pieces = word_chunks(delta.content) or [""]
        for piece in pieces:
            run.emit(Delta(content=piece))
