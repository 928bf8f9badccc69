"""Telling "this is not a Gradio app" apart from "the Gradio app failed", for the operator.

`gradio_config(gradio)` reads an app's /config like `Gradio.get_json("config", ...)` does, and
when what answers is not a Gradio app (a 404, an HTML page, JSON that is not a Gradio
configuration, a Space's web page given as the app's URL) raises NotAGradioApp saying so.
"""
from __future__ import annotations

import json

import logging
from typing import Any

from ..errors import UpstreamError
from ..schemas import space_page_hint
from .protocol import RedirectRefused, Gradio, mapped_errors

log = logging.getLogger("gateway.upstream")
# Every generation's /config has these (3.x through 6.x); a stand-in may show one of them only.
GRADIO_CONFIG_KEYS = {"components", "dependencies"}


class NotAGradioApp(UpstreamError):
    """502: the URL answers, but not as a Gradio app (a wrong URL, a web page, another service)."""


def not_gradio(base_url: str, what_answered: str) -> NotAGradioApp:
    hint = space_page_hint(base_url.rstrip("/"))
    text = f"{base_url} is not a Gradio app: {what_answered}."
    if hint:
        text += f" {hint}."
    else:
        text += " Give the URL the app serves its UI at (where /config answers), or a Space id owner/name."
    log.warning("upstream failure (config): %s", text)
    return NotAGradioApp(text)


def looks_like_gradio_config(body: Any) -> bool:
    return isinstance(body, dict) and bool(GRADIO_CONFIG_KEYS & set(body))


def gradio_config(gradio: Gradio) -> dict[str, Any]:
    """The app's /config, or NotAGradioApp naming what answered instead. Read like every app
    answer: within MAX_UPSTREAM_BYTES, redirects followed on the app's own host only."""
    what = "config"
    with mapped_errors(what):
        try:
            resp = gradio._send("GET", gradio.base_url + "config", stream=True)   # noqa: SLF001
        except RedirectRefused:
            raise not_gradio(gradio.base_url, "/config redirects elsewhere") from None
        kind = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if resp.status_code in (404, 405, 410):
            resp.close()
            raise not_gradio(gradio.base_url, f"/config answered HTTP {resp.status_code}")
        gradio._check(resp, what)                                                  # noqa: SLF001
        raw = gradio._read(resp, what)                                             # noqa: SLF001
    if kind == "text/html":
        raise not_gradio(gradio.base_url, "/config answered with an HTML page")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise not_gradio(gradio.base_url, f"/config is not JSON ({kind or 'no content type'})") from None
    if not looks_like_gradio_config(body):
        raise not_gradio(gradio.base_url, "/config is JSON but not a Gradio configuration "
                                          "(no components or dependencies)")
    return body
