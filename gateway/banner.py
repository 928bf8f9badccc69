"""What the server says when it starts or reloads: the banner, the warnings, or one configuration error.

Runs in a child of the gunicorn master (gunicorn_conf.py), once per start and once per SIGHUP.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import sys
from typing import Any
from urllib.parse import urlsplit

from .config import ConfigError, Settings, load_settings
from .keys import load_keys
from .registry import Registry, load_registry

log = logging.getLogger("gateway")
LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def version() -> str:
    from . import __version__
    return __version__


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def proxy_text(settings: Settings) -> str:
    """The proxy without its credentials."""
    if not settings.proxy_url:
        return "off"
    parts = urlsplit(settings.proxy_url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def models_text(settings: Settings, registry: Registry) -> str:
    """'9 (8 built-in, 1 from MODELS_FILE /etc/models.yaml)': how many, and from where."""
    sources = []
    if settings.builtin_models:
        builtin = len(load_registry(dataclasses.replace(settings, models_file=None)))
        sources.append(f"{builtin} built-in")
    else:
        sources.append("built-in ones hidden by BUILTIN_MODELS=false")
    if settings.models_file:
        from_file = len(load_registry(dataclasses.replace(settings, builtin_models=False)))
        sources.append(f"{from_file} from MODELS_FILE {settings.models_file}")
    return f"{len(registry)} ({', '.join(sources)})"


def banner(settings: Settings, registry: Registry) -> list[str]:
    """The start-up lines: version, URL, models and their source, mode, proxy."""
    server = settings.server
    host = settings.listen if ":" not in settings.listen else f"[{settings.listen}]"
    shown = "127.0.0.1" if settings.listen in {"0.0.0.0", "::"} else host
    keys = f"{len(settings.api_keys)} gateway key{'s' if len(settings.api_keys) != 1 else ''}"
    if settings.keys_file:
        keys = f"KEYS_FILE {settings.keys_file}" + (f" and {keys}" if settings.api_keys else "")
    mode = (f"keyed ({keys}; HF_TOKEN {'spent for keyed callers' if settings.hf_token else 'not set'})"
            if settings.api_keys or settings.keys_file else "open (no GATEWAY_API_KEYS: anyone who reaches the port may call /v1)")
    return [
        f"gradio-chat-gateway {version()} listening on http://{host}:{settings.port} "
        f"(API base http://{shown}:{settings.port}/v1); {server.workers} gevent worker"
        f"{'s' if server.workers != 1 else ''} ({server.workers_source}), "
        f"{server.worker_connections} connections each",
        f"models: {models_text(settings, registry)}",
        f"mode: {mode}",
        f"proxy: {proxy_text(settings)}; Hub: {settings.hf_endpoint}; stream status: {settings.stream_status}",
    ]


def warnings(settings: Settings) -> list[str]:
    """The traps an operator falls into first."""
    found = []
    if settings.hf_token and not settings.api_keys and not settings.keys_file:
        found.append("HF_TOKEN is set but GATEWAY_API_KEYS is not: an open gateway never spends the "
                     "operator's token (callers use their own hf_ token or none), so private Spaces "
                     "answer 401; set GATEWAY_API_KEYS to let known callers use HF_TOKEN")
    if not settings.api_keys and not settings.keys_file and not is_loopback(settings.listen):
        found.append(f"open gateway bound to {settings.listen}: anyone who can reach port {settings.port} "
                     "can use it (and any hf_ token they send); set GATEWAY_API_KEYS, or LISTEN=127.0.0.1")
    return found


def load_configuration() -> tuple[Settings, Registry]:
    """Everything a worker reads as it starts: the settings, MODELS_FILE and KEYS_FILE. Checked
    here first (start, SIGHUP, the commands), since a worker that cannot load them fails to boot
    and takes the service down with it. Raises ConfigError."""
    settings = load_settings()
    registry = load_registry(settings)
    load_keys(settings)
    return settings, registry


def check_and_announce(job: str, server: Any = None) -> int:
    """Load and check everything; log the banner (start) or the reload line. 0 when all is well."""
    try:
        settings, registry = load_configuration()
    except ConfigError as exc:
        what = "reload refused: configuration error" if job == "reload" else "configuration error"
        print(f"gradio-chat-gateway: {what}: {exc}", file=sys.stderr, flush=True)
        return 2
    from .logs import configure_logging

    configure_logging(settings)
    if job == "reload":
        log.info("reload: the new configuration is valid (models: %s); starting new workers, the old ones "
                 "finish their open streams within GRACEFUL_TIMEOUT", models_text(settings, registry))
    else:
        for line in banner(settings, registry):
            log.info("%s", line)
    for line in warnings(settings):
        log.warning("%s", line)
    return 0
