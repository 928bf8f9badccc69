"""gunicorn settings: gevent workers, bind from LISTEN/PORT, workers from WEB_CONCURRENCY."""
import multiprocessing
import os
import sys

bind = f"{os.environ.get('LISTEN', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
worker_class = "gevent"
# A gateway of long streams: each open stream is one connection of a worker.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
# gevent workers notify the arbiter from their own loop; a long stream is no reason to kill one.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# Open streams get this long to finish on SIGTERM.
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
keepalive = 5
preload_app = False          # gevent must patch before the app imports: locks become greenlet locks
control_socket_disable = True  # the default control socket is shared by every gunicorn on the machine
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def on_starting(server):
    """Validate configuration in the master: a bad value stops start-up with one line.

    A worker that fails to load the app would be restarted forever instead.
    """
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gateway.config import ConfigError, load_settings
    from gateway.registry import load_registry

    try:
        load_registry(load_settings())
    except ConfigError as exc:
        print(f"gradio-chat-gateway: configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
