"""Chat request -> an app's inputs; an app's outputs -> text and reasoning (CONTRACT §6)."""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import InvalidRequest, UpstreamError
from ..schemas import ChatRequest, Message
from .apps import App, Endpoint

MESSAGE = ("message", "input", "input_data", "prompt", "query", "text", "question",
           "user_message", "user_input", "inputs", "msg")
SYSTEM = ("system_message", "system_prompt", "system", "policy", "instructions",
          "system_instruction", "system_instructions", "sys_prompt")
HISTORY = ("history", "chat_history", "chatbot", "conversation", "messages")
SETTINGS = {
    "max_tokens": ("max_tokens", "max_new_tokens", "max_length", "max_output_tokens",
                   "max_completion_tokens", "maximum_tokens", "max_new_token"),
    "temperature": ("temperature", "temp"),
    "top_p": ("top_p", "top-p"),
    "top_k": ("top_k", "top-k"),
    "repetition_penalty": ("repetition_penalty", "repeat_penalty"),
    "seed": ("seed",),
    "reasoning_effort": ("reasoning_effort", "reasoning"),
}
# The seed gateway's flags: first digit -> (message name, system name or None, message is a dict)
FLAG_INPUTS = {
    "0": ("message", "system_message", False),
    "1": ("input_data", "system_prompt", False),
    "2": ("message", "system_prompt", True),
    "3": ("message", None, True),
    "4": ("message", None, False),
    "5": ("prompt", "policy", False),
}
FLAG_SETTINGS = {
    "0": {},
    "1": {"max_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p",
          "top_k": "top_k", "repetition_penalty": "repetition_penalty"},
    "2": {"max_tokens": "max_new_tokens"},
}
RANGE = re.compile(r"between\s+(-?[\d.]+(?:e-?\d+)?)\s+and\s+(-?[\d.]+(?:e-?\d+)?)", re.I)
DETAILS = re.compile(r"<details\b[^>]*>(.*?)(?:</details>|$)", re.S | re.I)
SUMMARY = re.compile(r"<summary\b[^>]*>.*?</summary>", re.S | re.I)


def norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name or "").lower()).strip("_")


@dataclass
class Plan:
    """What to send: the endpoint and every input value in order."""

    endpoint: Endpoint
    data: list[Any]
    roles: dict[str, str] = field(default_factory=dict)   # role -> parameter name, for probes


def choose_endpoint(app: App, api_name: str | None) -> Endpoint:
    """The model's api_name; else /chat; else the one public endpoint taking a message first."""
    if api_name:
        endpoint = app.endpoint(api_name)
        if endpoint is None:
            raise UpstreamError(f"The Gradio app has no endpoint {api_name}.")
        return endpoint
    if (chat := app.endpoint("/chat")) is not None:
        return chat
    candidates = [e for e in app.endpoints.values() if e.public and e.parameters
                  and _role_of(e.parameters[0], MESSAGE)]
    if not candidates:
        raise UpstreamError("The Gradio app has no chat-like endpoint; set api_name for this model.")
    return candidates[0]


def _names(param: dict[str, Any]) -> set[str]:
    return {norm(param.get("parameter_name")), norm(param.get("label"))} - {""}


def _role_of(param: dict[str, Any], names: tuple[str, ...]) -> bool:
    return bool(_names(param) & {norm(n) for n in names})


def _is_history(param: dict[str, Any]) -> bool:
    return str(param.get("component", "")).lower() == "chatbot" or _role_of(param, HISTORY)


def takes_files(param: dict[str, Any]) -> bool:
    kind = json.dumps(param.get("type", {}))
    return (str(param.get("component", "")).lower() == "multimodaltextbox"
            or ('"files"' in kind and '"text"' in kind))


def assign_roles(endpoint: Endpoint, flags: str | None) -> dict[str, int]:
    """role ("message", "system", "history", "max_tokens", ...) -> parameter position."""
    params = endpoint.parameters
    roles: dict[str, int] = {}
    if flags:
        message, system, _ = FLAG_INPUTS[flags[0]]
        wanted = {"message": (message,), **({"system": (system,)} if system else {})}
        wanted.update({role: (name,) for role, name in FLAG_SETTINGS[flags[1]].items()})
        for role, names in wanted.items():
            for i, p in enumerate(params):
                if norm(p.get("parameter_name")) in names:
                    roles[role] = i
        if "message" not in roles and params:
            roles["message"] = 0
        return roles
    table = {"message": MESSAGE, "system": SYSTEM, **SETTINGS}
    for i, p in enumerate(params):
        if "history" not in roles and _is_history(p):
            roles["history"] = i
            continue
        for role, names in table.items():
            if role not in roles and _role_of(p, names):
                roles[role] = i
                break
    if "message" not in roles:
        free = [i for i in range(len(params)) if i not in roles.values()]
        if free:
            roles["message"] = free[0]
    return roles


def _cast(param: dict[str, Any], value: Any) -> Any:
    """Cast a setting to the parameter's type, clamped to its declared range."""
    kind = param.get("type") or {}
    type_name = kind.get("type") if isinstance(kind, dict) else None
    default = param.get("parameter_default")
    if type_name in ("number", "integer") or isinstance(default, (int, float)) and not isinstance(default, bool):
        if not isinstance(value, (int, float)):
            return default
        match = RANGE.search(str(kind.get("description", ""))) if isinstance(kind, dict) else None
        if match:
            low, high = float(match.group(1)), float(match.group(2))
            value = min(max(value, low), high)
        python = str((param.get("python_type") or {}).get("type", ""))
        if type_name == "integer" or python == "int" or (isinstance(default, int) and not isinstance(default, bool)
                                                          and float(value).is_integer()):
            return int(round(value))
        return float(value)
    if type_name == "string":
        return str(value)
    return value


def _turn_text(message: Message) -> str:
    text = message.text
    if message.role == "tool":
        return f"[tool result] {text}"
    return text


def _transcript(turns: list[Message]) -> str:
    label = {"user": "User", "assistant": "Assistant", "tool": "Tool"}
    return "\n\n".join(f"{label.get(m.role, 'User')}: {_turn_text(m)}" for m in turns)


def _history_value(param: dict[str, Any], turns: list[Message]) -> list[Any]:
    """Earlier turns in the app's history format: messages (Gradio 5+) or [user, bot] pairs."""
    schema = json.dumps(param.get("type", {}))
    if '"role"' in schema or "ChatMessage" in schema or "MessageDict" in schema:
        parts_content = "ComponentMessage" in schema or '"text"' in schema
        history = []
        for m in turns:
            role = "assistant" if m.role == "assistant" else "user"
            text = _turn_text(m)
            history.append({"role": role, "content": [{"type": "text", "text": text}]
                            if parts_content else text})
        return history
    pairs: list[list[str | None]] = []
    for m in turns:
        if m.role == "assistant":
            if pairs and pairs[-1][1] is None:
                pairs[-1][1] = m.text
            else:
                pairs.append([None, m.text])
        else:
            pairs.append([_turn_text(m), None])
    return pairs


def build_plan(app: App, api_name: str | None, flags: str | None, chat: ChatRequest,
               upload: Callable[[str], dict[str, Any]]) -> Plan:
    """Map a chat request onto the app's endpoint. upload(url) returns a FileData dict."""
    endpoint = choose_endpoint(app, api_name)
    params = endpoint.parameters
    roles = assign_roles(endpoint, flags)
    data = [p.get("parameter_default") for p in params]

    system_text = "\n\n".join(m.text for m in chat.messages if m.role in ("system", "developer") and m.text)
    turns = [m for m in chat.messages if m.role not in ("system", "developer")]
    last = turns[-1] if turns and turns[-1].role in ("user", "tool") else None
    earlier = turns[:-1] if last else turns
    if "history" in roles and earlier:
        data[roles["history"]] = _history_value(params[roles["history"]], earlier)
        message_text = _turn_text(last) if last else ""
    elif earlier:
        message_text = _transcript(earlier + ([last] if last else []))
    else:
        message_text = _turn_text(last) if last else ""
    if system_text:
        if "system" in roles:
            data[roles["system"]] = system_text
        else:
            message_text = f"{system_text}\n\n{message_text}" if message_text else system_text

    images = [url for m in chat.messages for url in m.image_urls]
    if "message" not in roles:
        raise UpstreamError("The Gradio app's endpoint has no message input; set api_name for this model.")
    message_param = params[roles["message"]]
    as_dict = (FLAG_INPUTS[flags[0]][2] if flags else False) or takes_files(message_param)
    if images and not as_dict:
        raise InvalidRequest(f"The model '{chat.model}' takes text only; remove the image_url parts.",
                             param="messages")
    data[roles["message"]] = ({"text": message_text, "files": [upload(u) for u in images]}
                              if as_dict else message_text)

    values = {"max_tokens": chat.max_tokens, "temperature": chat.temperature, "top_p": chat.top_p,
              "top_k": chat.top_k, "repetition_penalty": chat.repetition_penalty, "seed": chat.seed,
              "reasoning_effort": chat.reasoning_effort}
    for role, value in values.items():
        if role in roles and value is not None:
            data[roles[role]] = _cast(params[roles[role]], value)
    names = {role: str(params[i].get("parameter_name") or params[i].get("label") or i)
             for role, i in roles.items()}
    return Plan(endpoint=endpoint, data=data, roles=names)


# ---------------------------------------------------------------- outputs


def _file_link(value: dict[str, Any]) -> str:
    url = value.get("url") or value.get("path") or ""
    name = value.get("orig_name") or str(url).rsplit("/", 1)[-1]
    return f"[{name}]({url})" if url else ""


def _message_parts(msg: dict[str, Any]) -> tuple[str, str]:
    """(content, reasoning) of one Gradio message dict."""
    content = msg.get("content")
    texts: list[str] = []
    items = content if isinstance(content, list) else [content]
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict):
            if item.get("type") == "text" or "text" in item and isinstance(item.get("text"), str):
                texts.append(item.get("text") or "")
            elif "file" in item and isinstance(item["file"], dict):
                texts.append(_file_link(item["file"]))
            elif "path" in item or "url" in item:
                texts.append(_file_link(item))
    text = "\n".join(t for t in texts if t)
    meta = msg.get("metadata")
    if isinstance(meta, dict) and meta.get("title"):
        return "", text          # a "thought" bubble
    return text, ""


def _split_details(text: str) -> tuple[str, str]:
    reasoning = [SUMMARY.sub("", m).strip() for m in DETAILS.findall(text)]
    content = DETAILS.sub("", text).strip() if reasoning else text
    return content, "\n".join(r for r in reasoning if r)


def extract_output(value: Any) -> tuple[str, str]:
    """(content, reasoning) of the endpoint's first output."""
    if value is None:
        return "", ""
    if isinstance(value, str):
        content, reasoning = _split_details(value)
        return html.unescape(content), html.unescape(reasoning)
    if isinstance(value, dict):
        if "role" in value or "content" in value:
            content, reasoning = _message_parts(value)
            c2, r2 = _split_details(content)
            return html.unescape(c2), html.unescape("\n".join(x for x in (reasoning, r2) if x))
        if "path" in value or "url" in value:
            return _file_link(value), ""
        if "text" in value and isinstance(value["text"], str):
            return extract_output(value["text"])
        return json.dumps(value), ""
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(isinstance(v, str) for v in value):
            return html.unescape(value[1]), html.unescape(value[0])   # (reasoning, answer)
        if value and all(isinstance(v, dict) for v in value):
            assistant = [v for v in value if v.get("role", "assistant") == "assistant"]
            # A whole chat history: the answer is the trailing run of assistant messages.
            if any(v.get("role") == "user" for v in value):
                tail: list[dict[str, Any]] = []
                for v in reversed(value):
                    if v.get("role") != "assistant":
                        break
                    tail.insert(0, v)
                assistant = tail
            contents, reasons = zip(*(extract_output(v) for v in assistant)) if assistant else ((), ())
            return "\n".join(c for c in contents if c), "\n".join(r for r in reasons if r)
        if value and all(isinstance(v, (list, tuple)) for v in value):
            last = value[-1]
            return extract_output(last[1] if len(last) > 1 else "")
        return "\n".join(extract_output(v)[0] for v in value), ""
    return str(value), ""


def outputs_text(data: Any) -> tuple[str, str]:
    """(content, reasoning) from a generating/complete event's outputs list."""
    if not isinstance(data, list) or not data:
        return extract_output(data)
    first = data[0]
    if isinstance(first, str) and len(data) >= 2 and isinstance(data[1], str):
        # Two text outputs: a (reasoning, answer) pair.
        return html.unescape(data[1]), html.unescape(first)
    return extract_output(first)
