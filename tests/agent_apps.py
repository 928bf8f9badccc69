"""A real Gradio app that answers like a small tool-using model: in the gateway's tool format,
with JSON when asked for it, with reasoning when asked to think (tests of issue 15)."""
from __future__ import annotations

import json
import os
import re
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402


def _text(value) -> str:
    if isinstance(value, dict):
        return str(value.get("text") or value.get("content") or "")
    return value if isinstance(value, str) else str(value)


def reply_to(message: str, history: list, system: str) -> str:
    """What the app answers, decided from what the gateway sent it: the tool format is the contract."""
    seen = message + " " + " ".join(_text(h) for h in history)
    tools = re.findall(r"^- ([\w.-]+): ", system, re.M)
    if "explode" in message:
        return "EXPLODE"
    if "Tool result:" in message:
        return "The tool said: " + message.split("returned:", 1)[-1].strip()
    if "think" in message:
        return "<think>The user wants 6 times 7.</think>The answer is 42."
    if tools and "no tool" not in seen:
        city = "Paris" if "Paris" in message else "Oslo"
        calls = [{"name": name, "arguments": {"city": city}} for name in tools[:2 if "both" in message else 1]]
        return json.dumps({"tool_calls": calls})
    if "Reply with only one JSON object" in system:
        if "wrong" in message:
            return '{"town": "Paris"}'
        return '```json\n{"city": "Paris", "temperature": 21}\n```'
    return f"echo: {message} [system={system}] [turns={len(history)}]"


def agent_app() -> gr.Blocks:
    """Streams its answer in pieces of five characters, as cumulative snapshots."""
    def bot(message, history, system_message=""):
        reply = reply_to(_text(message), history, system_message or "")
        out = ""
        for i in range(0, len(reply), 5):
            out = reply[:i + 5]
            if out.startswith("EXPLODE") and len(out) > 5:
                raise gr.Error("the agent app exploded mid-answer")
            yield out
            time.sleep(0.005)
    return gr.ChatInterface(bot, api_name="chat", additional_inputs=[gr.Textbox("", label="System message")])


APPS = {"agent": agent_app}
