"""An app's outputs -> (content, reasoning) text (CONTRACT §6).

Reasoning is what an app shows as thinking: `<details>` (or `<think>`, `<thinking>`) blocks, the first
of two text outputs, message dicts whose metadata has a title (Gradio's "thoughts").
"""
from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import quote

# Tags are found by scanning: an opening tag ends at the first `>` before any other `<`, and a
# block ends at its closing tag or at the end of the text (a block still open at the end of a
# snapshot is reasoning in progress). Every search resumes where the last one ended, so a
# text costs time linear in its length, whatever it holds (`<details<details…`, say).
OPEN = re.compile(r"<(details|think|thinking)\b[^<>]*>", re.I)
CLOSE = {name: re.compile(f"</{name}>", re.I) for name in ("details", "think", "thinking")}
SUMMARY_OPEN = re.compile(r"<summary\b[^<>]*>", re.I)
SUMMARY_CLOSE = re.compile(r"</summary>", re.I)
SAFE_SCHEMES = ("http://", "https://")
MARKDOWN_SPECIAL = re.compile(r"([\\`\[\]()<>!])")     # what could end the label or start markup in it
# Only complete entities (with their `;`): HTML5 would also read `&#10` as a newline, so a
# stream whose snapshot ends inside `&#104;` would send the wrong characters before the
# snapshot that completes it (and a credential's redaction would miss it).
ENTITY = re.compile(r"&(?:#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,8}|[A-Za-z][A-Za-z0-9]{1,31});")
Text = tuple[str, str]


def unescape(text: str) -> str:
    """html.unescape of the complete entities of text only."""
    return ENTITY.sub(lambda m: html.unescape(m.group(0)), text) if "&" in text else text


def _join(parts: list[str], sep: str = "\n\n") -> str:
    return sep.join(p for p in parts if p)


def _blocks(text: str, opener: re.Pattern[str], closer: Any) -> tuple[list[str], list[str]]:
    """(the text outside the blocks, the insides of the blocks), in one pass."""
    outside, inside, pos = [], [], 0
    while (m := opener.search(text, pos)) is not None:
        close = closer(m).search(text, m.end())
        outside.append(text[pos:m.start()])
        inside.append(text[m.end():close.start() if close else len(text)])
        pos = close.end() if close else len(text)
    outside.append(text[pos:])
    return outside, inside


def _drop_summaries(text: str) -> str:
    return "".join(_blocks(text, SUMMARY_OPEN, lambda m: SUMMARY_CLOSE)[0])


def split_thinking(text: str) -> Text:
    """(content, reasoning) of a string with <details>/<think>/<thinking> blocks; entities unescaped."""
    outside, inside = _blocks(text, OPEN, lambda m: CLOSE[m.group(1).lower()])
    if not inside:
        return unescape(text), ""
    blocks = [_drop_summaries(b).strip() for b in inside]
    # Only leading space goes: stripping the tail too would take back what a stream already sent.
    content = "".join(outside).lstrip()
    return unescape(content), unescape(_join(blocks, "\n"))


def _markdown_text(text: str) -> str:
    """Text that cannot close a link label or open a link, image or HTML tag of its own."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _link_target(url: str) -> str:
    """A URL safe inside Markdown's (...): spaces, parentheses and angle brackets escaped."""
    return quote(url, safe=":/?#[]@!$&'*+,;=%~.-_")


def file_link(value: dict[str, Any], file_base: str = "") -> str:
    """A Markdown link to a FileData output: http(s) targets only, the name escaped.

    A URL of any other scheme (`javascript:`, `data:`, `file:`) is not linked: the name alone
    is shown, so a chat UI that renders the answer cannot be made to run or open it.
    """
    path = value.get("path")
    url = value.get("url") or (f"{file_base}{path}" if file_base and path else path) or ""
    url = url if isinstance(url, str) else ""
    name = value.get("orig_name") or str(path or url).rsplit("/", 1)[-1]
    label = _markdown_text(str(name)) or "file"
    if not url.strip().lower().startswith(SAFE_SCHEMES):
        return label if url else ""
    return f"[{label}]({_link_target(url.strip())})"


def _is_file(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("path") or value.get("url"), str) \
        and "role" not in value and "content" not in value


def _part_text(item: Any, file_base: str) -> str:
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        return ""
    if isinstance(item.get("text"), str):
        return item["text"]
    if isinstance(item.get("file"), dict):
        return file_link(item["file"], file_base)
    if _is_file(item):
        return file_link(item, file_base)
    if _is_file(item.get("value")):            # a component message: {"component": "image", "value": FileData}
        return file_link(item["value"], file_base)
    return ""


def message_text(msg: dict[str, Any], file_base: str = "") -> Text:
    """(content, reasoning) of one Gradio message dict; a titled message is a thought."""
    content = msg.get("content")
    items = content if isinstance(content, list) else [content]
    text = _join([_part_text(i, file_base) for i in items], "\n")
    content_text, reasoning = split_thinking(text)
    meta = msg.get("metadata")
    if isinstance(meta, dict) and meta.get("title"):
        return "", _join([reasoning, content_text], "\n")
    return content_text, reasoning


def _chat_answer(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answer in a list of messages: all of them, or the trailing assistant run of a whole history."""
    if not any(m.get("role") == "user" for m in messages):
        return [m for m in messages if m.get("role", "assistant") == "assistant"]
    start = len(messages)
    while start and messages[start - 1].get("role") == "assistant":
        start -= 1
    return messages[start:]          # one slice: linear however long the run (CONTRACT §11)


def _merge(texts: list[Text], sep: str = "\n\n") -> Text:
    return _join([c for c, _ in texts], sep), _join([r for _, r in texts], "\n")


def _from_list(value: list[Any], file_base: str) -> Text:
    if len(value) == 2 and all(isinstance(v, str) for v in value):
        return _pair(value[0], value[1])
    if value and all(isinstance(v, dict) and ("role" in v or "content" in v) for v in value):
        return _merge([message_text(m, file_base) for m in _chat_answer(value)], "\n")
    if value and all(isinstance(v, (list, tuple)) for v in value):       # [user, bot] pairs
        last = value[-1]
        return extract_output(last[1] if len(last) > 1 else None, file_base)
    return _merge([extract_output(v, file_base) for v in value], "\n")


def _pair(reasoning: str, answer: str) -> Text:
    content, more = split_thinking(answer)
    return content, _join([unescape(reasoning), more], "\n")


def extract_output(value: Any, file_base: str = "") -> Text:
    """(content, reasoning) of one output value."""
    if value is None:
        return "", ""
    if isinstance(value, str):
        return split_thinking(value)
    if isinstance(value, (list, tuple)):
        return _from_list(list(value), file_base)
    if isinstance(value, dict):
        if "role" in value or "content" in value:
            return message_text(value, file_base)
        if _is_file(value):
            return file_link(value, file_base), ""
        if isinstance(value.get("text"), str):          # a multimodal answer: {text, files}
            files = [_part_text(f if isinstance(f, dict) else {"path": f}, file_base)
                     for f in value.get("files") or []]
            text, reasoning = split_thinking(value["text"])
            return _join([text, *files], "\n"), reasoning
        if "value" in value and value.get("__type__") == "update":
            return extract_output(value["value"], file_base)
        return json.dumps(value), ""
    return str(value), ""


def _is_chat(value: Any, chatbot_returned: bool) -> bool:
    """A list of message dicts, or of [user, bot] pairs when the endpoint returns a Chatbot."""
    if not isinstance(value, list) or not value:
        return False
    return all(isinstance(m, dict) for m in value) or (
        chatbot_returned and all(isinstance(m, (list, tuple)) for m in value))


def read_outputs(data: Any, returns: tuple[dict[str, Any], ...] = (), file_base: str = "") -> Text:
    """(content, reasoning) from an event's outputs list.

    A ChatInterface answers [response, null, additional outputs…]: the response alone.
    Otherwise a chat output (a Chatbot, a list of messages) is the answer by itself; exactly
    two text outputs are a (reasoning, answer) pair; else every output's text, in order.
    """
    if not isinstance(data, list):
        return extract_output(data, file_base)
    if len(data) >= 2 and data[0] is not None and data[1] is None:
        return extract_output(data[0], file_base)
    chatbot_returned = any(str(r.get("component", "")).lower() == "chatbot" for r in returns)
    for value in data:
        if _is_chat(value, chatbot_returned):
            return extract_output(value, file_base)
    if len(data) == 2 and all(isinstance(v, str) for v in data):
        return _pair(data[0], data[1])
    return _merge([extract_output(v, file_base) for v in data if v is not None])


def outputs_text(data: Any) -> Text:
    """(content, reasoning) from an event's outputs list, without the endpoint's description."""
    return read_outputs(data)
