"""Serve tests/gradio_apps.py's streaming echo ChatInterface in its own process, until SIGTERM."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import gradio_apps  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    demo, url = gradio_apps.serve(gradio_apps.echo_app, args.port)
    print(f"gradio ready {url}", flush=True)
    try:
        stop.wait()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
