"""See the gateway work with no Hugging Face account and no internet: `gradio-chat-gateway demo`.

Serves a small local Gradio chat app on 127.0.0.1:APP_PORT and the gateway (gunicorn, gevent
workers) on 127.0.0.1:PORT with that app as its only model, `demo`. Ctrl-C stops both.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

GUNICORN_CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gunicorn_conf.py")


def respond(message: str, history: list, system_message: str = "You are a friendly demo bot.",
            max_tokens: int = 128) -> Iterator[str]:
    """Streams a reply word by word, like a language model would."""
    words = (f"Hello! You said: “{message}”. Backwards that is “{message[::-1]}”. "
             f"This reply was streamed by a local Gradio app through gradio-chat-gateway.").split(" ")
    out = ""
    for word in words[: int(max_tokens)]:
        out = f"{out} {word}".strip()
        time.sleep(0.03)
        yield out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def build_app() -> gr.ChatInterface:
    demo = gr.ChatInterface(respond, api_name="chat", title="gateway demo", additional_inputs=[
        gr.Textbox("You are a friendly demo bot.", label="System message"),
        gr.Slider(1, 512, value=128, step=1, label="Max tokens")])
    demo.queue(default_concurrency_limit=None)
    return demo


def run_demo(port: int = 8000, app_port: int = 7860) -> int:
    """Serve the app and the gateway until Ctrl-C (or SIGTERM); 0 when stopped that way."""
    signal.signal(signal.SIGTERM, _interrupt)   # stop gunicorn and the app on SIGTERM too
    demo = build_app()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=app_port, prevent_thread_lock=True, quiet=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(f"models:\n  demo:\n    space: {url}\n    owned_by: local\n")
    # Only the demo's own model: a client (Open WebUI) must not preselect a Hub model it cannot reach.
    env = {**os.environ, "MODELS_FILE": fh.name, "BUILTIN_MODELS": "false", "LISTEN": "127.0.0.1",
           "PORT": str(port), "WEB_CONCURRENCY": "1"}
    print(f"Gradio app: {url}\nGateway:    http://127.0.0.1:{port}/v1  (model id: demo)\n\nTry:\n"
          f"  curl -N http://127.0.0.1:{port}/v1/chat/completions -H 'Content-Type: application/json' \\\n"
          f"    -d '{{\"model\": \"demo\", \"stream\": true, \"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}]}}'\n"
          f"\nCtrl-C stops both.\n", flush=True)
    gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, "gateway:create_app()"],
                                env=env)
    try:
        code = gunicorn.wait()
    except KeyboardInterrupt:
        gunicorn.send_signal(signal.SIGINT)     # from a terminal it has its own already; harmless
        code = 0 if gunicorn.wait() in (0, -signal.SIGINT) else 1
    finally:
        demo.close()
        os.unlink(fh.name)
    return code
