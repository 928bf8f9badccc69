"""Gateway keys with per-key limits: KEYS_FILE (CONTRACT §10), read and validated at start-up.

Keys are found by the sha256 of what the caller presents, so the file never needs the clear
key (`key_sha256:`), and a plain `key:` is hashed on load and not kept. Keys of
GATEWAY_API_KEYS join the ring without limits.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Mapping

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .config import ConfigError, Settings, read_config_file
from .errors import InvalidApiKey
from .schemas import first_error

SHA256 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][\w.@:-]{0,63}$")
ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class Key:
    """One gateway key: its name (shown in logs and metrics), hash, limits and HF token."""

    name: str
    sha256: str = field(repr=False)
    requests_per_minute: int | None = None
    concurrent_streams: int | None = None
    tokens_per_day: int | None = None
    models: tuple[str, ...] | None = None
    hf_token: str | None = field(default=None, repr=False)

    @property
    def limited(self) -> bool:
        return bool(self.requests_per_minute or self.concurrent_streams or self.tokens_per_day)

    def may_use(self, model_id: str) -> bool:
        """The allow-list takes exact ids or shell patterns (`hf:*`, `gemma-*`)."""
        return self.models is None or any(fnmatchcase(model_id, p) for p in self.models)


def digest(presented: str) -> str:
    return hashlib.sha256(presented.encode("utf-8", "surrogatepass")).hexdigest()


class KeyRing:
    """sha256 -> Key; empty when KEYS_FILE is not set."""

    def __init__(self, keys: list[Key]) -> None:
        self._by_hash = {k.sha256: k for k in keys}

    def __bool__(self) -> bool:
        return bool(self._by_hash)

    def __iter__(self) -> Any:
        return iter(self._by_hash.values())

    def find(self, presented: str) -> Key:
        """The key whose hash matches, or 401. A dict look-up of a hash leaks no timing about the key."""
        key = self._by_hash.get(digest(presented)) if presented else None
        if key is None:
            raise InvalidApiKey()
        return key


class _Positive(fields.Integer):
    def __init__(self) -> None:
        super().__init__(strict=True, load_default=None, allow_none=True, validate=validate.Range(min=1))


class KeyEntrySchema(Schema):
    class Meta:
        unknown = RAISE

    key_sha256 = fields.String(load_default=None, validate=validate.Regexp(SHA256, error="must be 64 lower-case hex digits"))
    key = fields.String(load_default=None, validate=validate.Length(min=8, error="must be at least 8 characters"))
    name = fields.String(required=True, validate=validate.Regexp(
        NAME, error="letters, digits and . _ - @ : (at most 64), starting with a letter or digit"))
    requests_per_minute = _Positive()
    concurrent_streams = _Positive()
    tokens_per_day = _Positive()
    models = fields.List(fields.String(validate=validate.Length(min=1)), load_default=None)
    hf_token = fields.String(load_default=None, validate=validate.Regexp(
        ENV_REF, error="must be env:VARIABLE (the token itself never goes in the file)"))

    @validates_schema
    def one_key(self, data: dict[str, Any], **kwargs: Any) -> None:
        if (data.get("key_sha256") is None) == (data.get("key") is None):
            raise ValidationError("give exactly one of key_sha256 and key", "key_sha256")


class KeysFileSchema(Schema):
    class Meta:
        unknown = RAISE

    keys = fields.List(fields.Nested(KeyEntrySchema), required=True)


def parse_keys(text: str, source: str, env: Mapping[str, str]) -> list[Key]:
    """Keys of a KEYS_FILE's text; ConfigError naming the field of the first problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: invalid YAML{where}: {getattr(exc, 'problem', None) or 'not valid YAML'}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a mapping with a top-level 'keys' list")
    try:
        entries = KeysFileSchema().load(raw)["keys"]
    except ValidationError as exc:
        path, message = first_error(exc.messages)
        raise ConfigError(f"{source}: {path}: {message}") from None
    keys, names = [], set()
    for i, e in enumerate(entries):
        where = f"{source}: keys[{i}]"
        if e["name"] in names:
            raise ConfigError(f"{where}.name: the name {e['name']!r} is used twice")
        names.add(e["name"])
        token = None
        if e["hf_token"]:
            variable = ENV_REF.match(e["hf_token"]).group(1)  # type: ignore[union-attr]
            token = (env.get(variable) or "").strip()
            if not token:
                raise ConfigError(f"{where}.hf_token: the environment variable {variable} is not set")
        keys.append(Key(e["name"], e["key_sha256"] or digest(e["key"]), e["requests_per_minute"],
                        e["concurrent_streams"], e["tokens_per_day"],
                        tuple(e["models"]) if e["models"] is not None else None, token))
    if len({k.sha256 for k in keys}) != len(keys):
        raise ConfigError(f"{source}: two entries have the same key")
    return keys


def load_keys(settings: Settings, env: Mapping[str, str] | None = None) -> KeyRing:
    """KEYS_FILE's keys, plus GATEWAY_API_KEYS as keys without limits; empty without KEYS_FILE."""
    if not settings.keys_file:
        return KeyRing([])
    source = f"KEYS_FILE {settings.keys_file}"
    text = read_config_file(settings.keys_file, source)
    keys = parse_keys(text, source, os.environ if env is None else env)
    known = {k.sha256 for k in keys}
    keys += [Key(f"GATEWAY_API_KEYS[{i}]", digest(k)) for i, k in enumerate(settings.api_keys)
             if digest(k) not in known]
    return KeyRing(keys)
