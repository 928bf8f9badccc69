"""Serve tests/gradio_apps.py's streaming echo ChatInterface in its own process, until SIGTERM.

    --count-file F                       count the TCP connections the app accepts (bench/conncount.py)
    --ssl-certfile C --ssl-keyfile K     serve HTTPS with that certificate (bench/tlsca.py makes one)
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import conncount  # noqa: E402
from tests import gradio_apps  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count-file")
    parser.add_argument("--ssl-certfile")
    parser.add_argument("--ssl-keyfile")
    args = parser.parse_args()
    if args.count_file:
        conncount.install(args.count_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    demo = gradio_apps.echo_app()
    demo.queue(default_concurrency_limit=None)
    # ssl_verify=False only spares launch()'s own check of its URL, made with certifi's roots,
    # which do not hold the bench's throwaway CA. Every client the bench measures verifies.
    tls = dict(ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, ssl_verify=False) \
        if args.ssl_certfile else {}
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=args.port, prevent_thread_lock=True,
                            quiet=True, **tls)
    print(f"gradio ready {url}", flush=True)
    try:
        stop.wait()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
