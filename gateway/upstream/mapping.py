"""Chat request -> an app's inputs (CONTRACT §6); outputs are read by outputs.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import InvalidRequest, UpstreamError
from ..schemas import ChatRequest, Message
from .apps import STATE, App, Endpoint
from .detect import FLAG_INPUTS, cast, choose_endpoint, detect_roles, flag_roles, history_format, takes_files
from .outputs import outputs_text, read_outputs

__all__ = ["Plan", "build_plan", "outputs_text", "plan_roles"]

LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool result"}
Upload = Callable[[str], dict[str, Any]]


@dataclass
class Plan:
    """What to send: the endpoint and every input value in order; and how to read its outputs."""

    endpoint: Endpoint
    data: list[Any]
    roles: dict[str, str] = field(default_factory=dict)   # role -> parameter name, for probes
    file_base: str = ""                                    # prefix that turns a server path into a URL

    @property
    def answer(self) -> Endpoint:
        """The endpoint whose outputs are the answer: the follower of a two-step chat, else itself."""
        return self.endpoint.follower or self.endpoint

    def outputs(self, data: Any) -> tuple[str, str]:
        """(content, reasoning) of a generating/complete event's outputs."""
        answer = self.answer
        try:
            return read_outputs(answer.visible_outputs(data), answer.returns, self.file_base)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError):
            raise UpstreamError("The Gradio app sent outputs the gateway cannot read.") from None

    def follower_inputs(self, app: App, first_outputs: Any) -> list[Any]:
        """The follower's inputs, as the browser would send them: each component's value from the
        first step's outputs, else from what the first step was sent, else the app's default."""
        first, then = self.endpoint, self.endpoint.follower
        assert then is not None
        known: dict[int, Any] = dict(app.defaults)
        sent = first.full_inputs(self.data)
        if len(sent) == len(first.input_ids):
            known.update(zip(first.input_ids, sent))
        if isinstance(first_outputs, list) and len(first_outputs) == len(first.output_ids):
            known.update(zip(first.output_ids, first_outputs))
        full = [None if kind == STATE else known.get(i) for i, kind in zip(then.input_ids, then.input_kinds)]
        if app.fills_state:
            return [v for v, kind in zip(full, then.input_kinds) if kind != STATE]
        return full


@dataclass
class Conversation:
    """A chat split the way an app takes it."""

    system: str
    earlier: list[Message]
    last: Message | None
    images: list[str]


def split_conversation(messages: list[Message]) -> Conversation:
    """System text apart; the final user (or tool) turn apart from the turns before it."""
    system = "\n\n".join(m.text for m in messages if m.role in ("system", "developer") and m.text)
    turns = [m for m in messages if m.role not in ("system", "developer") and (m.text or m.image_urls)]
    last = turns[-1] if turns and turns[-1].role in ("user", "tool") else None
    earlier = turns[:-1] if last else turns
    images = [url for m in turns if m.role == "user" for url in m.image_urls]
    return Conversation(system, earlier, last, images)


def turn_text(message: Message) -> str:
    return f"Tool result: {message.text}" if message.role == "tool" else message.text


def transcript(turns: list[Message]) -> str:
    """A readable transcript: 'User: …', 'Assistant: …', 'Tool result: …', blank lines between turns."""
    return "\n\n".join(f"{LABELS.get(m.role, 'User')}: {m.text}" for m in turns)


def _pairs(turns: list[Message]) -> list[list[str | None]]:
    pairs: list[list[str | None]] = []
    for m in turns:
        if m.role == "assistant":
            if pairs and pairs[-1][1] is None:
                pairs[-1][1] = m.text
            else:
                pairs.append([None, m.text])
        else:
            pairs.append([turn_text(m), None])
    return pairs


def history_value(fmt: str, turns: list[Message]) -> list[Any]:
    """Earlier turns in the app's history format."""
    if fmt == "pairs":
        return _pairs(turns)
    history = []
    for m in turns:
        role = "assistant" if m.role == "assistant" else "user"
        text = turn_text(m)
        history.append({"role": role, "content": [{"type": "text", "text": text}] if fmt == "messages" else text})
    return history


def plan_roles(endpoint: Endpoint, flags: str | None) -> dict[str, int]:
    """Explicit flags win over detection. Found once per endpoint and flags (about 5% of a
    worker's CPU when found per request), and rebuilt with the app's metadata."""
    roles = endpoint.roles_by_flags.get(flags)
    if roles is None:
        roles = flag_roles(endpoint.parameters, flags) if flags else detect_roles(endpoint.parameters)
        endpoint.roles_by_flags[flags] = roles
    return dict(roles)


def _message_text(chat: Conversation, has_history: bool, has_system: bool) -> str:
    if chat.earlier and not has_history or chat.last is None:
        text = transcript(chat.earlier + ([chat.last] if chat.last else []))
    else:
        text = turn_text(chat.last)
    if chat.system and not has_system:
        text = f"{chat.system}\n\n{text}" if text else chat.system
    return text


def _settings(chat: ChatRequest) -> dict[str, Any]:
    return {"max_tokens": chat.max_tokens, "temperature": chat.temperature, "top_p": chat.top_p,
            "top_k": chat.top_k, "repetition_penalty": chat.repetition_penalty, "seed": chat.seed,
            "reasoning_effort": chat.reasoning_effort}


def build_plan(app: App, api_name: str | None, flags: str | None, chat: ChatRequest,
               upload: Upload) -> Plan:
    """Map a chat request onto the app's endpoint. upload(url) returns a FileData dict."""
    try:
        return _plan(app, api_name, flags, chat, upload)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError):
        # The app's API description had a shape no Gradio sends: a bad app answer, not our bug.
        raise UpstreamError("The Gradio app's API description is malformed.") from None


def _plan(app: App, api_name: str | None, flags: str | None, chat: ChatRequest, upload: Upload) -> Plan:
    endpoint = choose_endpoint(app, api_name)
    params = endpoint.parameters
    roles = plan_roles(endpoint, flags)
    if "message" not in roles:
        raise UpstreamError("The Gradio app's endpoint has no message input; set api_name for this model.")
    data = [p.get("parameter_default") for p in params]
    conversation = split_conversation(chat.messages)
    if "history" in roles:
        i = roles["history"]
        data[i] = _history_input(params[i], conversation)
    if "system" in roles and conversation.system:
        data[roles["system"]] = conversation.system
    text = _message_text(conversation, "history" in roles, "system" in roles)
    data[roles["message"]] = _message_value(params[roles["message"]], flags, text, conversation.images,
                                            chat.model, upload)
    for role, value in _settings(chat).items():
        if role in roles and value is not None:
            data[roles[role]] = cast(params[roles[role]], value)
    names = {role: str(params[i].get("parameter_name") or params[i].get("label") or i)
             for role, i in sorted(roles.items(), key=lambda item: item[1])}
    return Plan(endpoint, data, names, file_base=app.base_url + f"{app.api_prefix}/file=".lstrip("/"))


def _history_input(param: dict[str, Any], chat: Conversation) -> Any:
    """Earlier turns in the app's format; an empty history (not the app's default) for one turn."""
    turns = chat.earlier if chat.last is not None else []    # no final user turn: all in the transcript
    return history_value(history_format(param), turns)


def _message_value(param: dict[str, Any], flags: str | None, text: str, images: list[str],
                   model: str, upload: Upload) -> Any:
    """The plain text, or {text, files} when the input takes files."""
    as_dict = FLAG_INPUTS[flags[0]][2] if flags else takes_files(param)
    if images and not as_dict:
        raise InvalidRequest(f"The model '{model}' takes text only; remove the image_url parts.",
                             param="messages")
    if not as_dict:
        return text
    return {"text": text, "files": [upload(url) for url in images]}
