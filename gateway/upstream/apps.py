"""An app's parsed config and API description."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import UpstreamError
from .protocol import Gradio


@dataclass(frozen=True)
class Endpoint:
    api_name: str                      # "/chat"
    fn_index: int | None               # the dependency id, for /cancel
    generator: bool                    # True when the endpoint streams snapshots
    parameters: tuple[dict[str, Any], ...]
    returns: tuple[dict[str, Any], ...]
    public: bool = True
    # flags -> the roles found for them; filled by mapping.plan_roles, lives as long as the app's metadata
    roles_by_flags: dict[str | None, dict[str, int]] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class App:
    base_url: str
    api_prefix: str
    version: str
    endpoints: dict[str, Endpoint] = field(hash=False)
    signature: str = ""                # a hash of the API description: tells a redeploy

    def endpoint(self, api_name: str) -> Endpoint | None:
        return self.endpoints.get("/" + api_name.lstrip("/"))


def load_app(base_url: str, gradio: Gradio) -> App:
    """Read /config and /info of the app at base_url."""
    config = gradio.get_json("config", "config", prefixed=False)
    if not isinstance(config, dict):
        raise UpstreamError("The Gradio app's /config is not an object.")
    prefix = config.get("api_prefix", "/gradio_api")
    if not isinstance(prefix, str):
        prefix = "/gradio_api"
    gradio.api_prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    info = gradio.get_json("/info", "info")
    named = info.get("named_endpoints") if isinstance(info, dict) else None
    if not isinstance(named, dict):
        raise UpstreamError("The Gradio app's API description has no named endpoints.")
    deps = {}
    for dep in config.get("dependencies") or []:
        if isinstance(dep, dict) and isinstance(dep.get("api_name"), str):
            deps["/" + dep["api_name"].lstrip("/")] = dep
    endpoints = {}
    for name, spec in named.items():
        if not isinstance(spec, dict):
            continue
        dep = deps.get(name, {})
        types = dep.get("types") if isinstance(dep.get("types"), dict) else {}
        visibility = spec.get("api_visibility") or dep.get("api_visibility") or "public"
        endpoints[name] = Endpoint(
            api_name=name,
            fn_index=dep.get("id") if isinstance(dep.get("id"), int) else None,
            generator=bool(types.get("generator")),
            parameters=tuple(p for p in spec.get("parameters") or [] if isinstance(p, dict)),
            returns=tuple(r for r in spec.get("returns") or [] if isinstance(r, dict)),
            public=visibility == "public" and spec.get("show_api", True) is not False,
        )
    signature = hashlib.sha256(json.dumps(named, sort_keys=True, default=str).encode()).hexdigest()
    return App(base_url=gradio.base_url, api_prefix=gradio.api_prefix,
               version=str(config.get("version", "")), endpoints=endpoints, signature=signature)
