"""Reading an app's API description: which endpoint, which parameter plays which role, and its types.

Roles are found by parameter name, then label, then component and JSON-schema type;
the seed gateway's two-digit flags, when a model has them, name the parameters instead.
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import UpstreamError
from .apps import App, Endpoint

Param = dict[str, Any]

ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "message": ("message", "input", "input_data", "prompt", "query", "text", "question",
                "user_message", "user_input", "inputs", "msg", "user_prompt"),
    "system": ("system_message", "system_prompt", "system", "policy", "instructions",
               "system_instruction", "system_instructions", "sys_prompt", "persona"),
    "history": ("history", "chat_history", "chatbot", "conversation", "messages"),
    "max_tokens": ("max_tokens", "max_new_tokens", "max_length", "max_output_tokens",
                   "max_completion_tokens", "maximum_tokens", "max_new_token", "max_gen_len"),
    "temperature": ("temperature", "temp"),
    "top_p": ("top_p",),
    "top_k": ("top_k",),
    "repetition_penalty": ("repetition_penalty", "repeat_penalty"),
    "seed": ("seed",),
    "reasoning_effort": ("reasoning_effort", "reasoning", "effort"),
}
SETTING_ROLES = ("max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed",
                 "reasoning_effort")
NUMERIC_ROLES = frozenset(SETTING_ROLES) - {"reasoning_effort"}

# The seed gateway's flags. First digit: (message name, system name or None, message is {text, files}).
FLAG_INPUTS: dict[str, tuple[str, str | None, bool]] = {
    "0": ("message", "system_message", False),
    "1": ("input_data", "system_prompt", False),
    "2": ("message", "system_prompt", True),
    "3": ("message", None, True),
    "4": ("message", None, False),
    "5": ("prompt", "policy", False),
}
# Second digit: role -> parameter name.
FLAG_SETTINGS: dict[str, dict[str, str]] = {
    "0": {},
    "1": {"max_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p",
          "top_k": "top_k", "repetition_penalty": "repetition_penalty"},
    "2": {"max_tokens": "max_new_tokens"},
}
CHAT_ENDPOINTS = ("/chat", "/respond", "/predict", "/generate", "/answer", "/bot")
RANGE = re.compile(r"between\s+(-?[\d.]+(?:e-?\d+)?)\s+and\s+(-?[\d.]+(?:e-?\d+)?)", re.I)


def norm(name: Any) -> str:
    """'Top-p (nucleus sampling)' -> 'top_p_nucleus_sampling'."""
    return re.sub(r"[^a-z0-9]+", "_", str(name or "").lower()).strip("_")


def component(param: Param) -> str:
    return str(param.get("component") or "").lower()


def schema_type(param: Param) -> str | None:
    kind = param.get("type")
    return kind.get("type") if isinstance(kind, dict) and isinstance(kind.get("type"), str) else None


def resolve(node: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """Follow one JSON-schema $ref into $defs."""
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        return defs.get(node["$ref"].rsplit("/", 1)[-1], {})
    return node if isinstance(node, dict) else {}


def takes_files(param: Param) -> bool:
    """The message input takes {text, files} (a MultimodalTextbox or the same schema)."""
    kind = param.get("type") if isinstance(param.get("type"), dict) else {}
    props = kind.get("properties") or {}
    return component(param) == "multimodaltextbox" or ("text" in props and "files" in props)


def _schema_history(param: Param) -> str | None:
    """The history format the JSON schema shows, if it shows one."""
    kind = param.get("type") if isinstance(param.get("type"), dict) else {}
    defs = kind.get("$defs") or {}
    items = resolve(kind.get("items"), defs)
    if items.get("type") == "array" or "prefixItems" in items:
        return "pairs"
    props = items.get("properties") or {}
    if "role" in props:
        content = resolve(props.get("content"), defs)
        return "messages" if content.get("type") == "array" else "messages-text"
    return None


def history_format(param: Param) -> str:
    """'messages' (content as a list of parts, Gradio 6), 'messages-text' (content a string) or 'pairs'."""
    # Without a schema to read: a Chatbot of Gradio 6 takes parts; an untyped JSON gets OpenAI-style messages.
    fallback = "messages" if component(param) == "chatbot" else "messages-text"
    told = param.get("history_format")         # what the app's /config says (apps.py), when it says it
    return told if isinstance(told, str) else _schema_history(param) or fallback


def _looks_like_history(param: Param) -> bool:
    return component(param) == "chatbot" or _schema_history(param) is not None


def _fits(role: str, param: Param) -> bool:
    """Whether the parameter's type can carry the role's value."""
    kind = schema_type(param)
    if role in NUMERIC_ROLES:
        return kind in ("number", "integer")
    if role == "history":
        return kind in ("array", None) or component(param) in ("chatbot", "json", "state")
    if role == "message":
        return kind == "string" or takes_files(param)
    return kind in ("string", None)


def score(role: str, param: Param) -> int:
    """How surely the parameter plays the role: 0 not at all, 5 beyond doubt."""
    if not _fits(role, param):
        return 0
    names = ROLE_NAMES[role]
    name, label = norm(param.get("parameter_name")), norm(param.get("label"))
    if role == "history" and _looks_like_history(param):
        return 5
    if role == "message" and takes_files(param):
        return 5
    if name in names:
        return 4
    if label in names:
        return 3
    if any(label.startswith(n + "_") for n in names):
        return 2
    if role == "max_tokens" and "token" in label:
        return 1
    return 0


def detect_roles(params: tuple[Param, ...]) -> dict[str, int]:
    """role -> parameter position: the surest matches first, each role and parameter used once."""
    ranked = sorted(((score(role, p), i, role) for i, p in enumerate(params) for role in ROLE_NAMES),
                    key=lambda t: (-t[0], t[1]))
    roles: dict[str, int] = {}
    for points, index, role in ranked:
        if points and role not in roles and index not in roles.values():
            roles[role] = index
    if "message" not in roles:
        free = [i for i, p in enumerate(params) if i not in roles.values() and _fits("message", p)]
        if free:
            roles["message"] = free[0]
    return roles


def flag_roles(params: tuple[Param, ...], flags: str) -> dict[str, int]:
    """role -> parameter position, as the seed's flags name them (no guessing beyond the names)."""
    message, system, _ = FLAG_INPUTS[flags[0]]
    wanted = {"message": message, **({"system": system} if system else {}), **FLAG_SETTINGS[flags[1]]}
    by_name = {norm(p.get("parameter_name")): i for i, p in enumerate(params)}
    roles = {role: by_name[name] for role, name in wanted.items() if name in by_name}
    if "message" not in roles and params:
        roles["message"] = 0
    return roles


def missing_flag_names(params: tuple[Param, ...], flags: str) -> list[str]:
    """The parameter names the flags promise but the endpoint lacks (for `models check`)."""
    message, system, _ = FLAG_INPUTS[flags[0]]
    names = {norm(p.get("parameter_name")) for p in params}
    wanted = [message, *([system] if system else []), *FLAG_SETTINGS[flags[1]].values()]
    return [n for n in wanted if n not in names]


def choose_endpoint(app: App, api_name: str | None) -> Endpoint:
    """The model's api_name; else /chat; else the one public endpoint whose first input is a message."""
    if api_name:
        endpoint = app.endpoint(api_name)
        if endpoint is None:
            raise UpstreamError(f"The Gradio app has no endpoint {api_name}; it has "
                                f"{', '.join(sorted(app.endpoints)) or 'none'}.")
        return endpoint
    chat = app.endpoint("/chat")
    if chat is not None:
        return chat
    candidates = [e for e in app.endpoints.values()
                  if e.public and e.parameters and score("message", e.parameters[0]) >= 2]
    if not candidates:
        # A two-step chat whose first step's message input has no telling name (3.x, 4.20).
        candidates = [e for e in app.endpoints.values()
                      if e.follower is not None and e.parameters and _fits("message", e.parameters[0])]
    if not candidates:
        # 3.x names no event unless the app does: an unnamed one that takes a message, or a
        # message and a Chatbot (the one-step Blocks chat), reached by its fn_index.
        candidates = [e for e in app.endpoints.values()
                      if e.api_name is None and e.parameters and _fits("message", e.parameters[0])
                      and (score("message", e.parameters[0]) >= 2
                           or any(_looks_like_history(p) for p in e.parameters[1:]))]
    if not candidates:
        public = [e for e in app.endpoints.values() if e.public and e.parameters]
        if len(public) == 1 and _fits("message", public[0].parameters[0]):
            return public[0]
        raise UpstreamError("The Gradio app has no chat-like endpoint; set api_name for this model.")
    # Several: prefer a conventional chat name, then the order the app declares them in.
    return min(candidates, key=lambda e: (e.api_name not in CHAT_ENDPOINTS, candidates.index(e)))


def _range(param: Param) -> tuple[float, float] | None:
    kind = param.get("type") if isinstance(param.get("type"), dict) else {}
    if isinstance(kind.get("minimum"), (int, float)) and isinstance(kind.get("maximum"), (int, float)):
        return float(kind["minimum"]), float(kind["maximum"])
    match = RANGE.search(str(kind.get("description", "")))
    try:
        return (float(match.group(1)), float(match.group(2))) if match else None
    except ValueError:             # "between . and 2": no range worth clamping to
        return None


def _wants_int(param: Param, value: float) -> bool:
    default = param.get("parameter_default")
    python_type = param.get("python_type")
    python = str(python_type.get("type", "")) if isinstance(python_type, dict) else ""
    int_default = isinstance(default, int) and not isinstance(default, bool)
    return schema_type(param) == "integer" or python == "int" or (int_default and float(value).is_integer())


def _choice(param: Param, value: Any) -> Any:
    """A value among a dropdown's choices (case-insensitive), else the app's default."""
    kind = param.get("type") if isinstance(param.get("type"), dict) else {}
    choices = kind.get("enum")
    if not isinstance(choices, list):
        return str(value)
    for choice in choices:
        if str(choice).lower() == str(value).lower():
            return choice
    return param.get("parameter_default")


def cast(param: Param, value: Any) -> Any:
    """A setting cast to the parameter's type and clamped to its declared range."""
    kind = schema_type(param)
    if kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return param.get("parameter_default")
        bounds = _range(param)
        if bounds:
            value = min(max(value, bounds[0]), bounds[1])
        return int(round(value)) if _wants_int(param, value) else float(value)
    if kind == "string":
        return _choice(param, value)
    return value


def describe(param: Param) -> str:
    """'max_new_tokens (Slider, number 1..2048)' for probes."""
    bounds = _range(param)
    kind = schema_type(param) or "any"
    span = f" {bounds[0]:g}..{bounds[1]:g}" if bounds else ""
    return f"{param.get('parameter_name') or param.get('label')} ({param.get('component')}, {kind}{span})"
