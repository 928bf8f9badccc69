"""Tiny real Gradio apps the tests serve on 127.0.0.1."""
from __future__ import annotations

import os
import threading
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402


class Counter:
    """Steps a slow app ran, shared with the tests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.steps = 0
        self.started = threading.Event()

    def step(self) -> None:
        with self.lock:
            self.steps += 1
        self.started.set()


SLOW = Counter()


def echo_app() -> gr.Blocks:
    """A streaming ChatInterface whose reply shows the server-side history it saw."""
    def bot(message, history, system_message="You are a test bot.", max_tokens=64):
        out = ""
        for word in f"echo: {message} [system={system_message}] [max={max_tokens}] [turns={len(history)}]".split(" "):
            out = (out + " " + word).strip()
            yield out
    return gr.ChatInterface(bot, api_name="chat", additional_inputs=[
        gr.Textbox("You are a test bot.", label="System message"),
        gr.Slider(1, 512, value=64, step=1, label="Max tokens")])


def plain_app() -> gr.Blocks:
    """A non-streaming Gradio 6 ChatInterface: its endpoint is named after its function."""
    def respond(message, history):
        return f"You said: {message}. That is {len(message.split())} words long, thanks."
    return gr.ChatInterface(respond)


def failing_app() -> gr.Blocks:
    def explode(message, history):
        raise gr.Error("the model ran out of ideas")
    return gr.ChatInterface(explode, api_name="chat")


def slow_app() -> gr.Blocks:
    """Streams one word every 50 ms for up to 400 steps, counting them."""
    def crawl(message, history):
        out = ""
        for i in range(400):
            SLOW.step()
            out += f"w{i} "
            yield out
            time.sleep(0.05)
    return gr.ChatInterface(crawl, api_name="chat")


APPS = {"echo": echo_app, "plain": plain_app, "failing": failing_app, "slow": slow_app}


def serve(build, port: int) -> tuple[gr.Blocks, str]:
    demo = build()
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                            quiet=True)
    return demo, url
