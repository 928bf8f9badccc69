"""See the gateway work with no Hugging Face account and no internet.

    make demo        # or: .venv/bin/python demo.py

Serves a small local Gradio chat app on 127.0.0.1:7860 and the gateway (gunicorn,
gevent workers) on 127.0.0.1:8000 with that app as the model `demo`. Ctrl-C stops both.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

APP_PORT = int(os.environ.get("DEMO_APP_PORT", "7860"))
PORT = os.environ.get("PORT", "8000")


def respond(message: str, history: list, system_message: str = "You are a friendly demo bot.",
            max_tokens: int = 128):
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


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)   # stop gunicorn and the app on SIGTERM too
    demo = gr.ChatInterface(respond, api_name="chat", title="gateway demo", additional_inputs=[
        gr.Textbox("You are a friendly demo bot.", label="System message"),
        gr.Slider(1, 512, value=128, step=1, label="Max tokens")])
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=APP_PORT, prevent_thread_lock=True, quiet=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(f"models:\n  demo:\n    space: {url}\n    owned_by: local\n")
    env = {**os.environ, "MODELS_FILE": fh.name, "LISTEN": os.environ.get("LISTEN", "127.0.0.1"),
           "PORT": PORT, "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "1")}
    print(f"Gradio app: {url}\nGateway:    http://127.0.0.1:{PORT}/v1  (model id: demo)\n\nTry:\n"
          f"  curl -N http://127.0.0.1:{PORT}/v1/chat/completions -H 'Content-Type: application/json' \\\n"
          f"    -d '{{\"model\": \"demo\", \"stream\": true, \"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}]}}'\n",
          flush=True)
    gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                cwd=os.path.dirname(os.path.abspath(__file__)), env=env)
    try:
        return gunicorn.wait()
    except KeyboardInterrupt:
        gunicorn.terminate()
        return gunicorn.wait()
    finally:
        demo.close()
        os.unlink(fh.name)


if __name__ == "__main__":
    sys.exit(main())
