"""Space-style Gradio apps, written the way Spaces of each Gradio generation write them.

Run INSIDE a Gradio venv (tests/generations/venvs.py), never imported by the test process:

    <venv>/bin/python tests/generations/space_apps.py --port-file F [--cancel-dir D]

serves every app this Gradio version has on its own 127.0.0.1 port and, once all are up, writes
``{"gradio": version, "apps": {name: url}}`` to F. It runs until SIGTERM/SIGINT.

The apps (each with .queue(): 3.x needs it for its websocket queue):
  chat_settings  the HF "chatbot" template: ChatInterface(respond, additional_inputs=[system message,
                 max tokens 1..2048, temperature 0.1..4.0]) answering with what it received
  chat_stream    a streaming ChatInterface ("echo: <message>" word by word); a message starting with
                 "slow <token>" streams for ~30 s and logs each step, and how it ended, to
                 <cancel-dir>/<token>.log (lines: "start T", "step N T", "stopped T" or "finished T")
  two_step       the Blocks pattern of Gradio's docs: msg.submit(user, [msg, chatbot], [msg, chatbot],
                 queue=False).then(bot, chatbot, chatbot), bot streaming "bot: <user text>"
  text_iface     gr.Interface(fn, "text", "text"): its endpoint is /predict
  multimodal     ChatInterface(multimodal=True), where the version has it (4.44+), answering with the
                 text and the number and sizes of the files it got
  raises         a ChatInterface raising gr.Error("The model is overloaded")
  zerogpu        a ChatInterface failing like a ZeroGPU quota (gr.Error with the quota message and,
                 where gr.Error takes one, title="ZeroGPU quota exceeded")
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import socket
import sys
import threading
import time

for _key, _value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                     "HF_HUB_DISABLE_TELEMETRY": "1", "NO_PROXY": "127.0.0.1,localhost"}.items():
    os.environ.setdefault(_key, _value)

import gradio as gr  # noqa: E402
import httpx  # noqa: E402  (a dependency of every Gradio since 3.x)
from gradio import networking  # noqa: E402

VERSION = tuple(int(p) for p in gr.__version__.split(".")[:2])
MESSAGES = VERSION >= (5, 0)          # history format of ChatInterface and Chatbot: messages from 5.x on
ZEROGPU_MESSAGE = "You have exceeded your GPU quota (60s requested vs. 56s left). Try again in 0:01:00"
CANCEL_DIR = os.environ.get("GEN_CANCEL_DIR", "")


def _takes(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def chat_interface(fn, **kwargs) -> gr.ChatInterface:
    """A ChatInterface in the history format Spaces of this version use (messages from 5.x)."""
    if MESSAGES and _takes(gr.ChatInterface.__init__, "type"):
        kwargs["type"] = "messages"
    return gr.ChatInterface(fn, **kwargs)


def chatbot() -> gr.Chatbot:
    return gr.Chatbot(type="messages") if MESSAGES and _takes(gr.Chatbot.__init__, "type") else gr.Chatbot()


def text_of(content) -> str:
    """The text of a history entry's content: a string, parts [{"type": "text", ...}], a file tuple."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    if isinstance(content, (list, tuple)):
        return " ".join(text_of(part) for part in content if isinstance(part, (str, dict)))
    return ""


def user_turns(history) -> int:
    """Prior user turns in either history format: [user, bot] pairs or role/content messages."""
    turns = 0
    for entry in history or []:
        if isinstance(entry, dict):
            turns += entry.get("role") == "user"
        elif isinstance(entry, (list, tuple)) and entry and entry[0] is not None:
            turns += 1
    return turns


# ---- chat_settings: the HF "chatbot" Space template --------------------------------------------

def respond(message, history, system_message, max_tokens, temperature):
    return (f"sys={system_message}|max={max_tokens!r}|temp={temperature!r}"
            f"|turns={user_turns(history)}|msg={message}")


def chat_settings():
    return chat_interface(respond, additional_inputs=[
        gr.Textbox(value="You are a friendly Chatbot.", label="System message"),
        gr.Slider(minimum=1, maximum=2048, value=512, step=1, label="Max new tokens"),
        gr.Slider(minimum=0.1, maximum=4.0, value=0.7, step=0.1, label="Temperature"),
    ])


# ---- chat_stream ---------------------------------------------------------------------------------

def _record(token: str, line: str) -> None:
    if CANCEL_DIR:
        with open(os.path.join(CANCEL_DIR, f"{token}.log"), "a") as fh:
            fh.write(f"{line} {time.time():.3f}\n")


def slow_reply(token: str):
    """~30 s of words; every step and how it ended go to <cancel-dir>/<token>.log."""
    _record(token, "start")
    out, ended = "", "stopped"
    try:
        for i in range(300):
            out += f"w{i} "
            _record(token, f"step {i}")
            yield out
            time.sleep(0.1)
        ended = "finished"
    finally:     # GeneratorExit (the job cancelled) or the generator dropped unfinished
        _record(token, ended)


def stream_echo(message, history):
    if message.startswith("slow "):
        yield from slow_reply(message.split()[1])
        return
    out = ""
    for word in f"echo: {message}".split(" "):
        out = (out + " " + word).strip()
        time.sleep(0.02)
        yield out


def chat_stream():
    return chat_interface(stream_echo)


# ---- two_step: Gradio's docs, "creating a custom chatbot with Blocks" ---------------------------

def two_step():
    with gr.Blocks() as demo:
        bot_box = chatbot()
        msg = gr.Textbox()

        def user(user_message, history):
            if MESSAGES:
                return "", (history or []) + [{"role": "user", "content": user_message}]
            return "", (history or []) + [[user_message, None]]

        def bot(history):
            if MESSAGES:
                reply = "bot: " + text_of(history[-1]["content"])
                history.append({"role": "assistant", "content": ""})
            else:
                reply = "bot: " + text_of(history[-1][0])
                history[-1][1] = ""
            for word in reply.split(" "):
                if MESSAGES:
                    history[-1]["content"] = (history[-1]["content"] + " " + word).strip()
                else:
                    history[-1][1] = (history[-1][1] + " " + word).strip()
                time.sleep(0.02)
                yield history

        msg.submit(user, [msg, bot_box], [msg, bot_box], queue=False).then(bot, bot_box, bot_box)
    return demo


# ---- text_iface ----------------------------------------------------------------------------------

def text_iface():
    def shout(text):
        return f"text: {text.upper()}"
    return gr.Interface(shout, "text", "text")


# ---- multimodal (4.44+ here: ChatInterface(multimodal=True)) ------------------------------------

def _path_of(f) -> str:
    if isinstance(f, str):
        return f
    if isinstance(f, dict):
        return f.get("path") or f.get("name") or ""
    return getattr(f, "path", None) or getattr(f, "name", "")


def look(message, history):
    files = [_path_of(f) for f in message.get("files") or []]
    sizes = [os.path.getsize(p) if p and os.path.exists(p) else -1 for p in files]
    return f"text={message.get('text', '')}|files={len(files)}|sizes={','.join(map(str, sizes))}"


def multimodal():
    return chat_interface(look, multimodal=True)


# ---- errors --------------------------------------------------------------------------------------

def raises():
    def overloaded(message, history):
        raise gr.Error("The model is overloaded")
    return chat_interface(overloaded)


def zerogpu():
    def quota(message, history):
        if _takes(gr.Error.__init__, "title"):
            raise gr.Error(ZEROGPU_MESSAGE, title="ZeroGPU quota exceeded")
        raise gr.Error(ZEROGPU_MESSAGE)
    return chat_interface(quota)


def apps() -> dict:
    built = {"chat_settings": chat_settings, "chat_stream": chat_stream, "two_step": two_step,
             "text_iface": text_iface, "raises": raises, "zerogpu": zerogpu}
    if _takes(gr.ChatInterface.__init__, "multimodal"):
        built["multimodal"] = multimodal
    return built


# ---- serving -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queue(demo) -> None:
    """Queue every event, with room for the tests' concurrent jobs."""
    if _takes(gr.Blocks.queue, "default_concurrency_limit"):
        demo.queue(default_concurrency_limit=None)
    else:
        demo.queue(concurrency_count=32)


def patient_url_ok(url: str) -> bool:
    """launch() checks that its own server answers a HEAD within 3 s, else refuses to start ("When
    localhost is not accessible, a shareable link must be created"): on 2 cores shared by seven Gradio
    versions at start-up that check fails. Same check, with the patience a loaded machine needs."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.head(url, timeout=30, trust_env=False).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


networking.url_ok = patient_url_ok


def launch(demo) -> str:
    for attempt in range(5):
        port = free_port()
        try:
            _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                    quiet=True, show_error=True)
            return url or f"http://127.0.0.1:{port}/"
        except OSError:     # the port was taken between free_port() and the bind
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    global CANCEL_DIR
    parser = argparse.ArgumentParser(description="serve the Space-style apps of this Gradio version")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--cancel-dir", default=CANCEL_DIR)
    parser.add_argument("--only", nargs="*", help="serve only these apps")
    args = parser.parse_args(argv)
    CANCEL_DIR = args.cancel_dir
    demos, urls = [], {}
    for name, build in apps().items():
        if args.only and name not in args.only:
            continue
        demo = build()
        queue(demo)
        urls[name] = launch(demo)
        demos.append(demo)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"gradio": gr.__version__, "apps": urls}, fh)
    os.replace(tmp, args.port_file)
    print(json.dumps({"gradio": gr.__version__, "apps": urls}), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1):
        pass

    def close_all() -> None:
        for demo in demos:
            try:
                demo.close()
            except Exception:   # closing is best effort: the process exits next
                pass
    closer = threading.Thread(target=close_all, daemon=True)
    closer.start()
    closer.join(5)          # 3.x's close() can hang on its websocket queue: never outlive SIGTERM by more
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
