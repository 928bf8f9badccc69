"""Which Hugging Face credential goes upstream, and why (CONTRACT §5).

Decided explicitly here, never by a library default: huggingface_hub's
`token=None` means "the machine's saved token", which is not anonymous.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Mapping

from .config import Settings
from .errors import InvalidApiKey


@dataclass(frozen=True)
class Credential:
    """The token (or none) sent upstream, where it came from, and the caller's X-IP-Token."""

    token: str | None = field(default=None, repr=False)
    source: str = "anonymous"          # "header", "bearer", "operator" or "anonymous"
    ip_token: str | None = field(default=None, repr=False)

    @property
    def is_user_token(self) -> bool:
        return self.source in {"header", "bearer"}

    @property
    def fingerprint(self) -> str:
        """A short hash for cache keys; never the token itself."""
        if not self.token:
            return "anonymous"
        return hashlib.sha256(self.token.encode()).hexdigest()[:16]

    @property
    def secrets(self) -> tuple[str | None, ...]:
        """What an app could echo back and the caller must not see (redaction.py)."""
        return (self.token, self.ip_token)

    def anonymous(self) -> "Credential":
        return Credential(None, "anonymous", self.ip_token)

    def app_headers(self) -> dict[str, str]:
        """Headers for a Gradio app, the way gradio_client sends them."""
        headers = {}
        if self.token:
            headers["X-HF-Authorization"] = f"Bearer {self.token}"
        if self.ip_token:
            headers["X-IP-Token"] = self.ip_token
        return headers

    def hub_headers(self) -> dict[str, str]:
        """Headers for the Hub API itself."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def _bearer(headers: Mapping[str, str]) -> str:
    value = headers.get("Authorization", "") or ""
    scheme, _, rest = value.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else ""


def _looks_like_hf_token(value: str) -> bool:
    return value.startswith("hf_") and len(value) > 3 and value.isprintable() and " " not in value


def check_api_key(headers: Mapping[str, str], settings: Settings) -> None:
    """When gateway keys are set, require one, compared in constant time."""
    if not settings.api_keys:
        return
    given = _bearer(headers).encode()
    # Compare against every key, so timing does not tell which one nearly matched.
    matched = False
    for key in settings.api_keys:
        matched |= hmac.compare_digest(given, key.encode())
    if not matched:
        raise InvalidApiKey()


def resolve(headers: Mapping[str, str], settings: Settings) -> Credential:
    """The credential of CONTRACT §5, in its order of precedence."""
    ip_token = (headers.get("X-IP-Token") or "").strip() or None
    header_token = (headers.get("X-HF-Token") or "").strip()
    if _looks_like_hf_token(header_token):
        return Credential(header_token, "header", ip_token)
    if not settings.api_keys:
        bearer = _bearer(headers)
        if _looks_like_hf_token(bearer):
            return Credential(bearer, "bearer", ip_token)
        return Credential(None, "anonymous", ip_token)
    if settings.hf_token:
        return Credential(settings.hf_token, "operator", ip_token)
    return Credential(None, "anonymous", ip_token)
