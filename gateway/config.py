"""Settings from the environment, validated once at start-up."""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

MIB = 1024 * 1024
# Strict booleans: a typo ("ture", "on") stops start-up instead of silently meaning "off".
BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
STREAM_STATUS_MODES = ("off", "reasoning")
PROXY_SCHEMES = {"http", "https", "socks5", "socks5h"}


class ConfigError(Exception):
    """A bad setting; its message is the one line printed at start-up."""


@dataclass(frozen=True)
class Settings:
    listen: str = "0.0.0.0"
    port: int = 8000
    models_file: str | None = None
    builtin_models: bool = True
    api_keys: tuple[str, ...] = ()
    hf_token: str | None = field(default=None, repr=False)
    proxy_url: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    idle_timeout: float = 60.0
    total_timeout: float = 600.0
    sse_keepalive: float = 15.0
    max_image_bytes: int = 20 * MIB
    allow_private_image_urls: bool = False
    max_images_per_request: int = 16
    max_upstream_bytes: int = 32 * MIB
    hf_endpoint: str = "https://huggingface.co"
    log_level: str = "INFO"
    log_format: str = "text"
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 10 * MIB
    cache_size: int = 256
    cache_ttl: float = 300.0
    redis_url: str | None = field(default=None, repr=False)   # may carry a password
    keys_file: str | None = None
    allow_any_space: bool = False
    hub_timeout: float = 30.0
    stream_status: str = "off"
    server: "ServerSettings" = field(default_factory=lambda: ServerSettings())

    @property
    def proxies(self) -> dict[str, str]:
        """The `requests` proxies mapping: empty when the proxy is off."""
        return {"http": self.proxy_url, "https": self.proxy_url} if self.proxy_url else {}


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return BOOLEAN_WORDS[raw.strip().lower()]
    except KeyError:
        raise ConfigError(f"{name}: must be one of true/false/1/0/yes/no, got {raw!r}") from None


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool = False,
            minimum: float = 0.0, maximum: float = math.inf) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        seconds = name.endswith(("TIMEOUT", "KEEPALIVE"))
        kind = ("a whole number" if integer else "a number") + (" of seconds" if seconds else "")
        raise ConfigError(f"{name}: must be {kind}, got {raw!r}") from None
    if not math.isfinite(value) or value <= minimum or value > maximum:
        bound = f"greater than {minimum:g}" + (f" and at most {maximum:g}" if math.isfinite(maximum) else "")
        raise ConfigError(f"{name}: must be a finite number {bound}, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}: must be {' or '.join(choices)}, got {value!r}")
    return value


def _proxy(env: Mapping[str, str]) -> str | None:
    if not _flag(env, "USE_PROXY", False):
        return None
    url = (env.get("PROXY_URL") or "").strip()
    if not url:
        raise ConfigError("PROXY_URL: USE_PROXY is on but PROXY_URL is empty")
    parts = urlsplit(url)
    if parts.scheme.lower() not in PROXY_SCHEMES or not parts.hostname:
        # The URL may carry a password: name the scheme only.
        raise ConfigError(f"PROXY_URL: must be an http://, https://, socks5:// or socks5h:// "
                          f"URL with a host (scheme given: {parts.scheme or 'none'!r})")
    try:
        parts.port
    except ValueError:
        raise ConfigError("PROXY_URL: the port is not a valid number") from None
    return url


def _redis_url(env: Mapping[str, str]) -> str | None:
    url = (env.get("REDIS_URL") or "").strip()
    if not url:
        return None
    if urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
        # The URL may carry a password: name the scheme only.
        raise ConfigError(f"REDIS_URL: must be a redis://, rediss:// or unix:// URL "
                          f"(scheme given: {urlsplit(url).scheme or 'none'!r})")
    return url


def _words(raw: str | None) -> tuple[str, ...]:
    return tuple(w.strip() for w in (raw or "").split(",") if w.strip())


def read_config_file(path: str, source: str) -> str:
    """A file the settings name (MODELS_FILE, KEYS_FILE) as text; ConfigError naming `source`
    (e.g. "KEYS_FILE /etc/keys.yaml") and why when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{source}: cannot be read: {reason}") from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the variable."""
    env = os.environ if env is None else env
    level = (env.get("LOG_LEVEL") or "INFO").strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"LOG_LEVEL: must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}")
    log_format = (env.get("LOG_FORMAT") or "text").strip().lower()
    if log_format not in {"text", "json"}:
        raise ConfigError(f"LOG_FORMAT: must be text or json, got {log_format!r}")
    endpoint = (env.get("HF_ENDPOINT") or "https://huggingface.co").strip().rstrip("/")
    if urlsplit(endpoint).scheme not in {"http", "https"}:
        raise ConfigError(f"HF_ENDPOINT: must be an http(s) URL, got {endpoint!r}")
    return Settings(
        listen=_listen(env),
        port=int(_number(env, "PORT", 8000, integer=True, maximum=65535)),
        models_file=(env.get("MODELS_FILE") or "").strip() or None,
        builtin_models=_flag(env, "BUILTIN_MODELS", True),
        api_keys=_words(env.get("GATEWAY_API_KEYS")),
        hf_token=(env.get("HF_TOKEN") or "").strip() or None,
        proxy_url=_proxy(env),
        connect_timeout=_number(env, "UPSTREAM_CONNECT_TIMEOUT", 10.0),
        idle_timeout=_number(env, "UPSTREAM_IDLE_TIMEOUT", 60.0),
        total_timeout=_number(env, "UPSTREAM_TOTAL_TIMEOUT", 600.0),
        sse_keepalive=_number(env, "SSE_KEEPALIVE", 15.0),
        max_image_bytes=int(_number(env, "MAX_IMAGE_BYTES", 20 * MIB, integer=True)),
        allow_private_image_urls=_flag(env, "ALLOW_PRIVATE_IMAGE_URLS", False),
        max_images_per_request=int(_number(env, "MAX_IMAGES_PER_REQUEST", 16, integer=True)),
        max_upstream_bytes=int(_number(env, "MAX_UPSTREAM_BYTES", 32 * MIB, integer=True)),
        hf_endpoint=endpoint,
        log_level=level,
        log_format=log_format,
        cors_origins=_words(env.get("CORS_ORIGINS")),
        redis_url=_redis_url(env),
        keys_file=(env.get("KEYS_FILE") or "").strip() or None,
        allow_any_space=_flag(env, "ALLOW_ANY_SPACE", False),
        hub_timeout=_number(env, "HUB_TIMEOUT", 30.0),
        stream_status=_choice(env, "STREAM_STATUS", STREAM_STATUS_MODES),
        server=load_server_settings(env),
    )


# ---------------------------------------------------------------- gunicorn's own settings
#
# gunicorn.conf.py reads these in the master before any worker starts, and load_settings()
# checks them too, so `gradio-chat-gateway models check` refuses what the server would refuse.
# This part of the module imports nothing but the standard library: the gunicorn master loads it
# without importing the gateway (workers must import requests and ssl after gevent patched them).

CGROUP = "/sys/fs/cgroup"
HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")


@dataclass(frozen=True)
class ServerSettings:
    """How gunicorn serves: bind, workers, connections per worker, timeouts, access log."""

    bind: str = "0.0.0.0:8000"
    workers: int = 1
    workers_source: str = "CPU cores"
    worker_connections: int = 10000
    graceful_timeout: int = 30
    timeout: int = 120
    access_log: str | None = None


def cpu_limit(cgroup_root: str = CGROUP) -> tuple[int, str]:
    """CPUs this process may use: the container's CPU limit (cgroup v2 cpu.max, v1 CFS quota),
    the CPU affinity, or the machine's cores, whichever is smallest; and where that came from."""
    try:
        cores, source = len(os.sched_getaffinity(0)), "CPU cores"
    except (AttributeError, OSError):
        cores, source = os.cpu_count() or 1, "CPU cores"
    quota = _cgroup_quota(cgroup_root)
    if quota is not None and math.ceil(quota) < cores:
        return max(1, math.ceil(quota)), "container CPU limit"
    return max(1, cores), source


def _cgroup_quota(root: str) -> float | None:
    """CPUs allowed by the cgroup, or None when unlimited or unknown."""
    try:
        with open(os.path.join(root, "cpu.max"), encoding="ascii") as fh:      # v2: "max 100000" or "200000 100000"
            quota, _, period = fh.read().strip().partition(" ")
        if quota != "max" and int(period) > 0:
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us"), encoding="ascii") as fh:   # v1: -1 is unlimited
            quota_us = int(fh.read().strip())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us"), encoding="ascii") as fh:
            period_us = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _listen(env: Mapping[str, str]) -> str:
    listen = (env.get("LISTEN") or "0.0.0.0").strip()
    if ":" in listen:
        try:
            ipaddress.IPv6Address(listen.strip("[]"))
            return listen.strip("[]")
        except ValueError:
            raise ConfigError(f"LISTEN: must be an address or host name without a port (the port is PORT), "
                              f"got {listen!r}") from None
    if not HOST_NAME.match(listen):
        raise ConfigError(f"LISTEN: must be an address or host name, got {listen!r}")
    return listen


def load_server_settings(env: Mapping[str, str] | None = None, cgroup_root: str = CGROUP) -> ServerSettings:
    """gunicorn's settings from the environment; raise ConfigError naming the variable."""
    env = os.environ if env is None else env
    listen = _listen(env)
    port = int(_number(env, "PORT", 8000, integer=True, maximum=65535))
    if (env.get("WEB_CONCURRENCY") or "").strip():
        workers, source = int(_number(env, "WEB_CONCURRENCY", 1, integer=True, maximum=1024)), "WEB_CONCURRENCY"
    else:
        workers, source = cpu_limit(cgroup_root)
    return ServerSettings(
        bind=f"[{listen}]:{port}" if ":" in listen else f"{listen}:{port}",
        workers=workers, workers_source=source,
        worker_connections=int(_number(env, "WORKER_CONNECTIONS", 10000, integer=True)),
        graceful_timeout=int(_number(env, "GRACEFUL_TIMEOUT", 30, integer=True)),
        timeout=int(_number(env, "GUNICORN_TIMEOUT", 120, integer=True)),
        access_log=(env.get("ACCESS_LOG") or "").strip() or None,
    )
