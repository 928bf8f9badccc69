"""An app's parsed config and API description, for every Gradio generation.

`/config` says which generation an app is (its `version` and `protocol`), which events it has
(`dependencies`: inputs and outputs as component ids, hidden `State`s among them, `.then()`
followers through `trigger_after`) and what its components hold (`props`: labels, defaults,
ranges). `/info` says which events are API endpoints and their parameters, fully on Gradio ≥ 4.44
and without names or defaults before. The two are read together: what /info lacks comes from
the component in /config, so the mapping sees one shape of parameter on every generation.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import UpstreamError
from .protocol import Gradio

STATE = "state"
# Protocol families, chosen from /config (UPSTREAM-NOTES.md, "Gradio generations").
WS, SSE_V0, SSE_QUEUE, CALL = "ws", "sse", "sse_queue", "call"
PROTOCOL_TEXT = {WS: "websocket queue (/queue/join)", SSE_V0: "SSE queue (sse: /queue/join, then /queue/data)",
                 SSE_QUEUE: "SSE queue (/queue/join + /queue/data)", CALL: "/call"}


def version_tuple(version: str) -> tuple[int, int]:
    """'4.19.2' -> (4, 19); anything unreadable -> (0, 0)."""
    m = re.match(r"\s*(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def family(config: dict[str, Any], version: tuple[int, int]) -> str:
    """Which protocol the gateway speaks to the app.

    6.x: /call. 4.20-5.x have /call too, but hide every app error there (`event: error` with
    `data: null`), so the gateway speaks their SSE queue, which carries the message and, on 5.x,
    the ZeroGPU title. 4.0-4.19 have the queue only; 3.x its websocket form.
    """
    protocol = config.get("protocol")
    if version >= (6, 0) or version == (0, 0) and isinstance(config.get("api_prefix"), str):
        return CALL                     # a Gradio of today (or a stand-in without a version)
    if protocol == "sse":
        return SSE_V0
    if isinstance(protocol, str) and protocol.startswith("sse_v"):
        return SSE_QUEUE
    return WS                           # 3.x: no protocol key, the websocket queue


@dataclass(frozen=True)
class Endpoint:
    api_name: str | None               # "/chat"; None for an unnamed event of 3.x (reached by fn_index)
    fn_index: int | None               # the dependency's index: for the queues and /cancel
    generator: bool                    # True when the endpoint streams snapshots
    parameters: tuple[dict[str, Any], ...]
    returns: tuple[dict[str, Any], ...]
    public: bool = True
    # What /config says of the event: the kind of each input and output ("state", "chatbot", …)
    # and their component ids; empty when the config does not say (stand-ins, odd apps).
    input_kinds: tuple[str, ...] = ()
    input_ids: tuple[int, ...] = ()
    output_kinds: tuple[str, ...] = ()
    output_ids: tuple[int, ...] = ()
    queued: bool = True                # False: called straight (/run/predict), not through the queue
    diffs: bool = False                # generating events carry diffs of the outputs (sse_v2)
    follower: "Endpoint | None" = None  # the `.then()` step whose output is the chat's answer
    # flags -> the roles found for them; filled by mapping.plan_roles, lives as long as the app's metadata
    roles_by_flags: dict[str | None, dict[str, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> str:
        return self.api_name or f"fn_index {self.fn_index}"

    def full_inputs(self, values: list[Any], defaults: dict[int, Any] | None = None) -> list[Any]:
        """The visible parameters' values with a null at each hidden State input, as the queues
        and /call before 6.18 need them. Unchanged when /config does not describe the inputs."""
        if STATE not in self.input_kinds or \
                len(values) != sum(kind != STATE for kind in self.input_kinds):
            return list(values)
        visible = iter(values)
        return [None if kind == STATE else next(visible) for kind in self.input_kinds]

    def visible_outputs(self, data: Any) -> Any:
        """An event's outputs with a None for each hidden State, as Gradio 5+ sends them: the older
        generations send the State's value (a ChatInterface's whole history), which is no answer."""
        if not isinstance(data, list) or STATE not in self.output_kinds or len(data) != len(self.output_kinds):
            return data
        return [None if kind == STATE else value for value, kind in zip(data, self.output_kinds)]


@dataclass(frozen=True)
class App:
    base_url: str
    api_prefix: str
    version: str
    endpoints: dict[str, Endpoint] = field(hash=False)
    signature: str = ""                # a hash of the API description: tells a redeploy
    protocol: str = CALL               # WS, SSE_V0, SSE_QUEUE or CALL
    wire_protocol: str = "sse_v3"      # what /config says ("sse_v2", …), or "ws" when it says nothing
    fills_state: bool = True           # the server fills hidden State inputs itself (6.18+)
    session_in_call: bool = True       # a session_hash in the /call body works (not on 4.20-6.17)
    defaults: dict[int, Any] = field(default_factory=dict, hash=False, compare=False, repr=False)

    def endpoint(self, api_name: str) -> Endpoint | None:
        return self.endpoints.get("/" + api_name.lstrip("/"))

    @property
    def speaks(self) -> str:
        """'Gradio 4.19.2, SSE queue (/queue/join + /queue/data)', for probes and logs."""
        return f"Gradio {self.version or 'unknown'}, {PROTOCOL_TEXT.get(self.protocol, self.protocol)}" + \
            (f" under {self.api_prefix}" if self.api_prefix else "")

    def inputs_for(self, endpoint: Endpoint, values: list[Any]) -> list[Any]:
        """What goes on the wire for the endpoint's visible values."""
        return list(values) if self.fills_state else endpoint.full_inputs(values)


def load_app(base_url: str, gradio: Gradio) -> App:
    """Read /config and /info of the app at base_url."""
    config = gradio.config()                        # NotAGradioApp (502) says what answered instead
    prefix = config.get("api_prefix", "")
    if not isinstance(prefix, str):
        prefix = ""
    # No api_prefix in /config (3.x, 4.x) means no prefix.
    gradio.api_prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    info = gradio.get_json("/info", "info")
    if not isinstance(info, dict) or not isinstance(info.get("named_endpoints"), dict):
        raise UpstreamError("The Gradio app's API description has no named endpoints.")
    try:
        version = str(config.get("version", "") or "")
        vt = version_tuple(version)
        protocol = family(config, vt)
        endpoints = _endpoints(config, info, vt, protocol)
        signature = hashlib.sha256(json.dumps([info.get("named_endpoints"), info.get("unnamed_endpoints")],
                                              sort_keys=True, default=str).encode()).hexdigest()
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError):
        # Shapes no Gradio sends (`dependencies: 5`, a list where an object belongs, …): a bad app
        # answer, 502, and nothing cached.
        raise UpstreamError("The Gradio app's API description is malformed.") from None
    modern = vt >= (6, 18) or vt == (0, 0)
    return App(base_url=gradio.base_url, api_prefix=gradio.api_prefix, version=version,
               endpoints=endpoints, signature=signature, protocol=protocol,
               wire_protocol=str(config.get("protocol") or "ws"),
               defaults={i: _props(c).get("value") for i, c in _components(config).items()
                         if _kind(c) != STATE},
               fills_state=modern and protocol == CALL,
               session_in_call=modern)


# ------------------------------------------------------------ reading /config with /info


def _components(config: dict[str, Any]) -> dict[int, dict[str, Any]]:
    found = {}
    for comp in config.get("components") or []:
        if isinstance(comp, dict) and isinstance(comp.get("id"), int):
            found[comp["id"]] = comp
    return found


def _kind(comp: dict[str, Any] | None) -> str:
    return str((comp or {}).get("type") or "").lower()


def _props(comp: dict[str, Any] | None) -> dict[str, Any]:
    props = (comp or {}).get("props")
    return props if isinstance(props, dict) else {}


def _ids(value: Any) -> tuple[int, ...]:
    return tuple(v for v in value if isinstance(v, int) and not isinstance(v, bool)) \
        if isinstance(value, list) else ()


def _endpoints(config: dict[str, Any], info: dict[str, Any], version: tuple[int, int],
               protocol: str) -> dict[str, Endpoint]:
    raw_deps = config.get("dependencies")
    deps = [d if isinstance(d, dict) else {} for d in raw_deps] if isinstance(raw_deps, list) else []
    comps = _components(config)
    named = {k: v for k, v in (info.get("named_endpoints") or {}).items() if isinstance(k, str)}
    unnamed = info.get("unnamed_endpoints") if isinstance(info.get("unnamed_endpoints"), dict) else {}
    queue_on = config.get("enable_queue", True) is not False
    by_index: dict[int, dict[str, Any]] = {}           # fn_index -> the fields of its Endpoint
    for position, dep in enumerate(deps):
        fn_index = dep.get("id") if isinstance(dep.get("id"), int) else position
        api_name = dep.get("api_name")
        api_name = "/" + api_name.lstrip("/") if isinstance(api_name, str) and api_name else None
        spec = named.get(api_name) if api_name else unnamed.get(str(fn_index))
        if api_name and not isinstance(spec, dict):
            spec = None
        by_index[fn_index] = _fields(dep, fn_index, api_name, spec, comps, version, protocol, queue_on)
    # Named endpoints that /config does not list (stand-ins, odd apps) are still endpoints.
    known = {f["api_name"] for f in by_index.values() if f["api_name"]}
    extra = {}
    for name, spec in named.items():
        if isinstance(spec, dict) and name not in known:
            extra[name] = _fields({}, None, name, spec, comps, version, protocol, queue_on)
    endpoints: dict[str, Endpoint] = {}
    built: dict[int, Endpoint] = {}
    followers = _followers(deps)
    for fn_index, fields in by_index.items():
        if fields["spec"] is None and not fields["api_name"]:
            continue                    # neither an API endpoint nor a reachable event
        endpoint = _build(fields, followers.get(fn_index), by_index, built)
        if fields["spec"] is not None:
            endpoints[endpoint.key] = endpoint
    for name, fields in extra.items():
        endpoints[name] = _build(fields, None, by_index, built)
    return endpoints


def _followers(deps: list[dict[str, Any]]) -> dict[int, int]:
    """fn_index of a step -> fn_index of the `.then()` step that follows it."""
    ids = [d.get("id") if isinstance(d.get("id"), int) else i for i, d in enumerate(deps)]
    found: dict[int, int] = {}
    for fn_index, dep in zip(ids, deps):
        after = dep.get("trigger_after")
        if isinstance(after, int) and not isinstance(after, bool) and after not in found \
                and dep.get("backend_fn", True) is not False:
            found[after] = fn_index
    return found


def _build(fields: dict[str, Any], follower_index: int | None, by_index: dict[int, dict[str, Any]],
           built: dict[int, Endpoint]) -> Endpoint:
    follower = None
    if follower_index is not None and follower_index in by_index:
        follower = _chat_follower(fields, by_index[follower_index])
    endpoint = Endpoint(api_name=fields["api_name"], fn_index=fields["fn_index"],
                        generator=fields["generator"], parameters=fields["parameters"],
                        returns=fields["returns"], public=fields["public"],
                        input_kinds=fields["input_kinds"], input_ids=fields["input_ids"],
                        output_kinds=fields["output_kinds"], output_ids=fields["output_ids"],
                        queued=fields["queued"], diffs=fields["diffs"], follower=follower)
    if fields["fn_index"] is not None:
        built[fields["fn_index"]] = endpoint
    return endpoint


def _chat_follower(first: dict[str, Any], then: dict[str, Any]) -> Endpoint | None:
    """The step after `first` when the pair is a two-step chat: the first step puts the user's
    turn into a Chatbot, the follower takes that Chatbot and writes the answer into it."""
    chatbots = {i for i, k in zip(first["output_ids"], first["output_kinds"]) if k == "chatbot"}
    takes = chatbots & set(then["input_ids"])
    gives = {i for i, k in zip(then["output_ids"], then["output_kinds"]) if k == "chatbot"}
    if not takes or not (takes & gives):
        return None
    return Endpoint(api_name=then["api_name"], fn_index=then["fn_index"], generator=then["generator"],
                    parameters=then["parameters"], returns=then["returns"], public=then["public"],
                    input_kinds=then["input_kinds"], input_ids=then["input_ids"],
                    output_kinds=then["output_kinds"], output_ids=then["output_ids"],
                    queued=then["queued"], diffs=then["diffs"])


def _fields(dep: dict[str, Any], fn_index: int | None, api_name: str | None, spec: dict[str, Any] | None,
            comps: dict[int, dict[str, Any]], version: tuple[int, int], protocol: str,
            queue_on: bool) -> dict[str, Any]:
    input_ids, output_ids = _ids(dep.get("inputs")), _ids(dep.get("outputs"))
    input_kinds = tuple(_kind(comps.get(i)) for i in input_ids)
    output_kinds = tuple(_kind(comps.get(i)) for i in output_ids)
    types = dep.get("types") if isinstance(dep.get("types"), dict) else {}
    raw_params = (spec or {}).get("parameters")
    info_params = [p for p in raw_params if isinstance(p, dict)] if isinstance(raw_params, list) else []
    visible = [i for i, k in zip(input_ids, input_kinds) if k != STATE]
    if spec is None:                          # a follower step /info does not list: /config alone
        params = [_from_component({}, comps.get(i), version) for i in visible]
    elif comps and len(visible) == len(info_params):
        params = [_from_component(p, comps.get(i), version) for p, i in zip(info_params, visible)]
    else:
        params = [dict(p) for p in info_params]
    spec = spec or {}
    visibility = spec.get("api_visibility") or dep.get("api_visibility") or "public"
    show_api = spec.get("show_api", dep.get("show_api", True)) is not False
    queue = dep.get("queue")
    return {
        "spec": spec if spec or api_name else None, "api_name": api_name, "fn_index": fn_index,
        "generator": bool(types.get("generator")), "parameters": tuple(params),
        "returns": tuple(r for r in (spec.get("returns") if isinstance(spec.get("returns"), list) else [])
                         if isinstance(r, dict))
        or tuple({"component": k} for k in output_kinds if k != STATE),
        "public": bool(api_name) and visibility == "public" and show_api,
        "input_kinds": input_kinds, "input_ids": input_ids,
        "output_kinds": output_kinds, "output_ids": output_ids,
        "queued": queue_on and queue is not False if protocol != CALL else True,
        "diffs": protocol == SSE_QUEUE and bool(types.get("generator")),
    }


def _from_component(param: dict[str, Any], comp: dict[str, Any] | None, version: tuple[int, int]) -> dict[str, Any]:
    """An /info parameter completed from its component in /config: name, default, range, format."""
    param = dict(param)
    props = _props(comp)
    kind = _kind(comp)
    label = props.get("label") if isinstance(props.get("label"), str) else None
    if not param.get("label") or re.fullmatch(r"parameter_\d+", str(param.get("label"))):
        if label:
            param["label"] = label
    if not param.get("parameter_name") and label:
        param["parameter_name"] = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or None
    if "parameter_default" not in param and "value" in props:
        param["parameter_has_default"] = True
        param["parameter_default"] = props["value"]
    if not param.get("component") and kind:
        param["component"] = kind
    schema = dict(param["type"]) if isinstance(param.get("type"), dict) else {}
    if kind in ("slider", "number"):
        schema.setdefault("type", "number")
        for key, prop in (("minimum", "minimum"), ("maximum", "maximum")):
            if isinstance(props.get(prop), (int, float)) and not isinstance(props.get(prop), bool):
                schema.setdefault(key, props[prop])
    elif kind in ("textbox", "dropdown", "radio") and not schema:
        schema["type"] = "string"
        if isinstance(props.get("choices"), list):
            schema["enum"] = [c[-1] if isinstance(c, list) and c else c for c in props["choices"]]
    elif kind == "chatbot":
        schema.setdefault("type", "array")
        fmt = props.get("type")
        if version < (5, 0) or fmt == "tuples":
            param["history_format"] = "pairs"
        elif version < (6, 0) and fmt == "messages":
            param["history_format"] = "messages-text"
    elif kind == "multimodaltextbox":
        schema.setdefault("type", "object")
        schema.setdefault("properties", {"text": {"type": "string"}, "files": {"type": "array"}})
    if schema:
        param["type"] = schema
    return param
