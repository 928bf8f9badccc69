"""The images of one request, shared by its runs, within a budget of image bytes per worker.

A request's n choices are n runs, and a run may try again (anonymously, with fresh metadata,
on another Space of a pool): each used to fetch and upload every image anew, so 16 URLs with
n: 8 were 128 fetches and uploads (issue 12: 9). Here each distinct URL is fetched (or a data
URL decoded) once per request and uploaded once per app; its bytes are kept while a run of
the request may still have to upload them (at most MAX_IMAGE_BYTES x MAX_IMAGES_PER_REQUEST),
and dropped when every run has uploaded it or ended.

What one worker holds of images at once is bounded by IMAGE_BYTES_IN_FLIGHT: an image reserves
twice its size (its bytes, and the multipart body that uploads them) before it is read, and
gives it back when its bytes are dropped. A request that finds the budget full waits for it,
as a caller would expect of a burst, for IMAGE_WAIT seconds at most; a worker that stays full
answers 503 with Retry-After.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import GatewayError
from .cache import BuildOnceCache
from .images import Reserve, file_name

IMAGE_BYTES_IN_FLIGHT = 128 * 1024 * 1024
IMAGE_WAIT = 10.0          # seconds a request waits for the budget before its 503
COPIES = 2                 # an image's bytes and the multipart body requests builds to upload them
ALWAYS = float("inf")      # entries of a request's caches live as long as the request

Fetch = Callable[[str, float, Reserve], "tuple[bytes, str]"]     # (url, deadline, reserve)
Send = Callable[[str, bytes, str], str]                           # (name, content, mime) -> path


class ImagesBusy(GatewayError):
    """503: the worker already holds IMAGE_BYTES_IN_FLIGHT of other requests' images."""

    status_code = 503
    code = "images_busy"


class ByteBudget:
    """A counting semaphore of bytes. Its locks are threading's, greenlet locks under gevent."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed = threading.Condition()

    def acquire(self, amount: int, deadline: float, waiting: Callable[[], None]) -> int:
        """Take amount bytes (the whole budget at most, so one image always fits alone), waiting
        until deadline; waiting() is called about every second meanwhile. Returns what it took."""
        amount = min(amount, self.capacity)
        with self._changed:
            while self.used + amount > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ImagesBusy("The gateway holds too many images of other requests at the moment; "
                                     "retry shortly.", retry_after=2)
                waiting()
                self._changed.wait(min(left, 1.0))
            self.used += amount
        return amount

    def release(self, amount: int) -> None:
        if amount:
            with self._changed:
                self.used -= amount
                self._changed.notify_all()


@dataclass(frozen=True)
class _Held:
    content: bytes
    mime: str
    reserved: int            # bytes of the budget it holds


class RequestImages:
    """What the `runs` runs of one request share of its images; each run uses its own view."""

    def __init__(self, fetch: Fetch, budget: ByteBudget, runs: int) -> None:
        self._fetch = fetch
        self._budget = budget
        self._runs = runs
        self._lock = threading.Lock()
        self._views = 0
        self._numbers: dict[str, int] = {}            # url -> its file's number, in order of first use
        self._uploaded: dict[str, set[int]] = {}      # url -> the views that have it uploaded
        self._ended: set[int] = set()
        self._bytes: BuildOnceCache[_Held] = BuildOnceCache(maxsize=1 << 20, ttl=ALWAYS)
        self._files: BuildOnceCache[dict[str, Any]] = BuildOnceCache(maxsize=1 << 20, ttl=ALWAYS)

    def view(self, run: Any) -> "RunImages":
        with self._lock:
            self._views += 1
            return RunImages(self, self._views - 1, run)

    def upload(self, who: int, run: Any, app: tuple[str, str], url: str, send: Send) -> dict[str, Any]:
        """The FileData of url on app (base URL, API signature: a redeployed app gets it anew)."""
        with self._lock:
            number = self._numbers.setdefault(url, len(self._numbers) + 1)

        def build() -> dict[str, Any]:
            held = self._bytes.get(url, lambda: self._load(url, run))
            name = file_name(held.mime, number)
            return {"path": send(name, held.content, held.mime), "orig_name": name, "mime_type": held.mime,
                    "size": len(held.content), "meta": {"_type": "gradio.FileData"}}
        filedata = self._files.get((app, url), build)
        with self._lock:
            self._uploaded.setdefault(url, set()).add(who)
            self._drop_settled([url])
        return filedata

    def end(self, who: int) -> None:
        """View who's run is over: it will upload nothing more."""
        with self._lock:
            self._ended.add(who)
            self._drop_settled(self._bytes.keys())

    def _load(self, url: str, run: Any) -> _Held:
        reserved = 0

        def reserve(size: int) -> None:
            nonlocal reserved
            deadline = min(run.deadline, time.monotonic() + IMAGE_WAIT)
            reserved += self._budget.acquire(COPIES * size, deadline, run.tick)
        try:
            content, mime = self._fetch(url, run.deadline, reserve)
        except BaseException:
            self._budget.release(reserved)
            raise
        keep = min(reserved, COPIES * len(content))
        self._budget.release(reserved - keep)
        return _Held(content, mime, keep)

    def _drop_settled(self, urls: Any) -> None:
        """Drop the bytes of each url every run has uploaded (or ended without); under _lock."""
        for url in list(urls):
            if len(self._uploaded.get(url, set()) | self._ended) < self._runs:
                continue
            held = self._bytes.peek(url)
            if held is not None:
                self._bytes.invalidate(url)
                self._budget.release(held.reserved)


class RunImages:
    """One run's use of its request's images: upload(app, url, send), then end()."""

    def __init__(self, store: RequestImages, who: int, run: Any) -> None:
        self._store = store
        self._who = who
        self._run = run

    def upload(self, app: Any, url: str, send: Send) -> dict[str, Any]:
        return self._store.upload(self._who, self._run, (app.base_url, app.signature), url, send)

    def end(self) -> None:
        self._store.end(self._who)


class _NoImages:
    """The view of a request without images: nothing to upload, nothing to drop. A store per
    request (its locks, caches and views) kept for as long as a text chat streams cost about
    6 KiB an open stream (bench/)."""

    def upload(self, app: Any, url: str, send: Send) -> dict[str, Any]:
        raise AssertionError("a request without images has nothing to upload")

    def end(self) -> None:
        pass


NO_IMAGES: Any = _NoImages()
