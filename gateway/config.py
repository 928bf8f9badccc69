"""Settings from the environment, validated once at start-up."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

MIB = 1024 * 1024
TRUE_WORDS = {"true", "1", "yes"}
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

    @property
    def proxies(self) -> dict[str, str]:
        """The `requests` proxies mapping: empty when the proxy is off."""
        return {"http": self.proxy_url, "https": self.proxy_url} if self.proxy_url else {}


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in TRUE_WORDS


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool = False,
            minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name}: must be {kind}, got {raw!r}") from None
    if not math.isfinite(value) or value <= minimum:
        raise ConfigError(f"{name}: must be a finite number greater than {minimum:g}, got {raw!r}")
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
        listen=(env.get("LISTEN") or "0.0.0.0").strip(),
        port=int(_number(env, "PORT", 8000, integer=True)),
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
        hf_endpoint=endpoint,
        log_level=level,
        log_format=log_format,
        cors_origins=_words(env.get("CORS_ORIGINS")),
        redis_url=_redis_url(env),
        keys_file=(env.get("KEYS_FILE") or "").strip() or None,
        allow_any_space=_flag(env, "ALLOW_ANY_SPACE", False),
    )
