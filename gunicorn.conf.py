"""gunicorn settings: gevent workers, bind from LISTEN/PORT, workers from WEB_CONCURRENCY.

Many long streams: each open stream holds one connection of a gevent worker
(no OS thread), so the limit is `worker_connections` per worker and the
process's open-files limit (one descriptor for the client, one for the
upstream): raise `ulimit -n` (docker-compose: `ulimits.nofile`) to at least
twice WORKER_CONNECTIONS plus some.
"""
import contextlib
import multiprocessing
import os
import shutil
import sys
import tempfile

bind = f"{os.environ.get('LISTEN', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
worker_class = "gevent"
# A gateway of long streams: each open stream is one connection of a worker.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
# gevent workers notify the arbiter from their own loop; a long stream is no reason to kill one.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# On SIGTERM a worker stops accepting and open streams get this long to finish.
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
keepalive = 5
preload_app = False          # gevent must patch before the app imports: locks become greenlet locks
control_socket_disable = True  # the default control socket is shared by every gunicorn on the machine
accesslog = os.environ.get("ACCESS_LOG") or None   # the gateway writes its own access line per request
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# gevent records, for each greenlet, which greenlet spawned it (for its debugging output): a
# few frames' worth per request, about 1.3 KiB per open stream (measured by bench/). Off here;
# GEVENT_TRACK_GREENLET_TREE=1 turns it back on.
os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "0")

# Metrics across workers: prometheus_client's multiprocess mode keeps each worker's values in
# files of this directory. It must be set before any process imports prometheus_client.
_OWNED_DIR = "GATEWAY_METRICS_DIR_OWNED"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_OWNED_DIR] = tempfile.mkdtemp(prefix="gateway-metrics-")


def _clean_metrics_dir() -> None:
    """Values of an earlier run would be added to this one's: start empty."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def on_starting(server):
    """Validate configuration in the master: a bad value stops start-up with one line.

    A worker that fails to load the app would be restarted forever instead. The
    check runs in a forked child so that the master never imports the gateway
    (and requests, ssl): workers must import those after gevent patched them.
    """
    _clean_metrics_dir()
    pid = os.fork()
    if pid == 0:
        os._exit(_check_configuration())
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(2)


def _check_configuration() -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        from gateway.config import ConfigError, load_settings
        from gateway.registry import load_registry

        load_registry(load_settings())
    except ConfigError as exc:
        print(f"gradio-chat-gateway: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    except BaseException as exc:  # anything else: say it in one line too, and stop
        print(f"gradio-chat-gateway: cannot start: {exc!r}", file=sys.stderr, flush=True)
        return 2
    return 0


def child_exit(server, worker):
    """A dead worker's open-streams gauge must stop counting; its counters stay in the sums.

    What prometheus_client.multiprocess.mark_process_dead does, without importing
    prometheus_client (and ssl) into the master.
    """
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(path):
        if name.startswith("gauge_live") and name.endswith(f"_{worker.pid}.db"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(path, name))


def on_exit(server):
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and os.environ.get(_OWNED_DIR) == path:
        shutil.rmtree(path, ignore_errors=True)
