"""The model table: the built-in data file plus the operator's MODELS_FILE."""
from __future__ import annotations


import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterator

import yaml
from marshmallow import ValidationError

from .config import ConfigError, Settings, read_config_file
from .errors import ModelNotFound
from .schemas import SPACE_ID, ModelsFileSchema, first_error

# One fixed timestamp for every model: /v1/models stays stable between restarts.
CREATED = 1735689600  # 2025-01-01T00:00:00Z
ANY_SPACE = "hf:"     # with ALLOW_ANY_SPACE, `hf:owner/name` names any public Space


@dataclass(frozen=True)
class Model:
    id: str
    space: str
    api_name: str | None = None
    flags: str | None = None
    owned_by: str = "gradio"
    description: str | None = None
    created: int = CREATED
    spaces: tuple[str, ...] = ()        # a pool (CONTRACT §9); `space` is then its first member
    strategy: str = "failover"
    tools: str = "ignore"          # emulate: tools through the system text (emulation.py); ignore

    @property
    def is_url(self) -> bool:
        return self.space.startswith(("http://", "https://"))

    @property
    def members(self) -> tuple[str, ...]:
        return self.spaces or (self.space,)


class Registry:
    """An immutable id -> Model table."""

    def __init__(self, models: dict[str, Model], allow_any_space: bool = False) -> None:
        self._models = dict(models)
        self.allow_any_space = allow_any_space

    def get(self, model_id: str) -> Model:
        try:
            return self._models[model_id]
        except KeyError:
            if self.allow_any_space and model_id.startswith(ANY_SPACE) and SPACE_ID.match(model_id[3:]):
                # ALLOW_ANY_SPACE: a public Space mapped on the fly; its host comes from the Hub.
                # Its space keeps the prefix: the Hub lookup then shows it public Spaces only
                # (Upstream._space_host), and its metadata has cache entries of its own, apart
                # from those of a configured model of the same (perhaps private) Space.
                return Model(id=model_id, space=model_id, owned_by="huggingface")
            shown = model_id if len(model_id) <= 200 else model_id[:200] + "..."   # never echo a huge id
            raise ModelNotFound(f"The model '{shown}' does not exist.", param="model") from None

    def __iter__(self) -> Iterator[Model]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)


class ScalarInt(int):
    """An integer that remembers how the file wrote it (`flags: 012` is YAML 1.1's octal 10)."""

    text: str = ""


class ModelsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, minus two silent traps: a duplicated key (the last one won) and an
    integer's spelling (lost, so `flags: 012` became '10')."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicated key {key!r} (the later entry would silently replace the first)",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value = ScalarInt(super().construct_yaml_int(node))
        value.text = str(node.value)
        return value


ModelsLoader.add_constructor("tag:yaml.org,2002:int", ModelsLoader.construct_yaml_int)
ModelsLoader.add_constructor("tag:yaml.org,2002:map", ModelsLoader.construct_yaml_map)
ENTRY_KEY_GLUED = re.compile(r"^(space|spaces|api_name|flags|owned_by|description):\S")


def _check_entries(raw: dict[str, Any], source: str) -> None:
    """`space:http://…` (no blank after the colon) is one string to YAML, not a key and a value."""
    models = raw.get("models")
    if not isinstance(models, dict):
        return
    for model_id, entry in models.items():
        if isinstance(entry, str) and ENTRY_KEY_GLUED.match(entry):
            key = entry.split(":", 1)[0]
            raise ConfigError(f"{source}: models.{model_id}: {entry[:60]!r} is one piece of text to YAML: "
                              f"put a blank after the colon ({key}: ...)")


def _parse(text: str, source: str) -> dict[str, Model]:
    try:
        raw = yaml.load(text, Loader=ModelsLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a mapping with a top-level 'models' key")
    _check_entries(raw, source)
    try:
        data: dict[str, Any] = ModelsFileSchema().load(raw)
    except ValidationError as exc:
        path, message = first_error(exc.messages)
        path = re.sub(r"\.(value|key)$|\.value(?=\.)", "", path)   # marshmallow's Dict nesting
        raise ConfigError(f"{source}: {path}: {message}") from None
    return {mid: _model(mid, e) for mid, e in data["models"].items()}


def _model(mid: str, e: dict[str, Any]) -> Model:
    space = e["space"] or e["spaces"][0]
    return Model(id=mid, space=space, api_name=e["api_name"], flags=e["flags"],
                 owned_by=e["owned_by"] or ("huggingface" if "/" in space and not space.startswith("http")
                                            else "gradio"),
                 description=e["description"], spaces=tuple(e["spaces"] or ()), strategy=e["strategy"],
                 tools=e["tools"])


def load_registry(settings: Settings) -> Registry:
    """Built-in models (unless BUILTIN_MODELS=false), then MODELS_FILE entries over them."""
    models: dict[str, Model] = {}
    if settings.builtin_models:
        text = resources.files("gateway").joinpath("data/models.yaml").read_text("utf-8")
        models.update(_parse(text, "built-in models"))
    if settings.models_file:
        source = f"MODELS_FILE {settings.models_file}"
        models.update(_parse(read_config_file(settings.models_file, source), source))
    return Registry(models, getattr(settings, "allow_any_space", False))


