"""Real Gradio apps that only the upstream tests need (served like tests/gradio_apps.py)."""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Callable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402


class StepLog:
    """When each job of a slow app ran each step, keyed by its message; waitable."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.steps: dict[str, list[float]] = {}

    def step(self, key: str) -> None:
        with self.cond:
            self.steps.setdefault(key, []).append(time.monotonic())
            self.cond.notify_all()

    def wait_steps(self, key: str, count: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.steps.get(key, [])) >= count, timeout)

    def last(self, key: str) -> float:
        with self.cond:
            return self.steps[key][-1]

    def wait_step_after(self, key: str, moment: float, timeout: float) -> bool:
        """True when the job ran a step later than moment (within timeout)."""
        with self.cond:
            return self.cond.wait_for(lambda: self.steps[key][-1] > moment, timeout)


CRAWL = StepLog()
RELEASE = threading.Event()        # lets the blocking app's jobs finish
BLOCKED = threading.Event()        # set when the blocking app runs a job


def headers_app() -> gr.Blocks:
    """Answers with the credential headers its /call request carried (a gr.Request), each value
    reversed: the gateway redacts a credential an app echoes plainly (CONTRACT §5)."""
    def show(message, history, request: gr.Request):
        seen = {k.lower(): v for k, v in request.headers.items()}
        return json.dumps({name: seen[name][::-1] if seen.get(name) else seen.get(name)
                           for name in ("x-hf-authorization", "x-ip-token", "authorization")})
    return gr.ChatInterface(show, api_name="chat")


def crawl_app() -> gr.Blocks:
    """Streams a word every 50 ms for 20 s, logging each step under its message."""
    def crawl(message, history):
        out = ""
        for i in range(400):
            CRAWL.step(message)
            out += f"w{i} "
            yield out
            time.sleep(0.05)
    return gr.ChatInterface(crawl, api_name="chat")


def blocking_app() -> gr.Blocks:
    """One job at a time, a queue of one: the next submissions find the queue full."""
    def hold(message, history):
        BLOCKED.set()
        RELEASE.wait(30)
        return "released"
    return gr.ChatInterface(hold, api_name="chat")


def version_one() -> gr.Blocks:
    def chat(message, history):
        return f"v1: {message}"
    return gr.ChatInterface(chat, api_name="chat")


def version_two() -> gr.Blocks:
    """The same app redeployed: its endpoint is now /respond and takes a system prompt."""
    def respond(message, history, system_prompt="be brief"):
        return f"v2: {message}"
    return gr.ChatInterface(respond, additional_inputs=[gr.Textbox("be brief", label="System prompt")])


def serve(build: Callable[[], gr.Blocks], port: int, **queue: object) -> gr.Blocks:
    demo = build()
    demo.queue(**({"default_concurrency_limit": None} | queue))
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo
