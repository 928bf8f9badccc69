"""gunicorn settings: gevent workers, bind from LISTEN/PORT, workers from WEB_CONCURRENCY or the CPU limit.

gunicorn executes this file by its path (`gradio-chat-gateway serve`, and the repository's
gunicorn.conf.py, which runs this file): the master must not import the gateway package (Flask,
requests, ssl), since workers import those after gevent patched them. So the settings module,
which uses only the standard library, is loaded from its file, and everything that needs the
gateway itself runs in a forked child that exits.

Many long streams: each open stream holds one connection of a gevent worker (no OS thread), so
the limit is `worker_connections` per worker and the process's open-files limit (one descriptor
for the client, one for the upstream): raise `ulimit -n` (docker-compose: `ulimits.nofile`) to at
least twice WORKER_CONNECTIONS plus some.
"""
import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile


def _package_dir() -> str:
    """The gateway package's directory, whether this file runs from it or from the repository's shim."""
    here = os.path.dirname(os.path.abspath(globals().get("__file__") or "."))
    for candidate in (here, os.path.join(here, "gateway")):
        if os.path.isfile(os.path.join(candidate, "config.py")) and \
                os.path.isfile(os.path.join(candidate, "gunicorn_conf.py")):
            return candidate
    raise RuntimeError(f"the gateway package is not next to {here}")


def _load_config_module(package: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_gateway_settings", os.path.join(package, "config.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module         # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _fail(line: str) -> None:
    """One line and no traceback: gunicorn lets SystemExit through its config loader."""
    print(f"gradio-chat-gateway: {line}", file=sys.stderr, flush=True)
    raise SystemExit(2)


_PACKAGE = _package_dir()
_config = _load_config_module(_PACKAGE)
try:
    _server = _config.load_server_settings()
except _config.ConfigError as _exc:
    _fail(f"configuration error: {_exc}")

bind = _server.bind
workers = _server.workers
worker_class = "gevent"
# A gateway of long streams: each open stream is one connection of a worker.
worker_connections = _server.worker_connections
# gevent workers notify the arbiter from their own loop; a long stream is no reason to kill one.
timeout = _server.timeout
# On SIGTERM (and on a reload, for the old workers) a worker stops accepting and open streams
# get this long to finish.
graceful_timeout = _server.graceful_timeout
keepalive = 5
preload_app = False          # gevent must patch before the app imports: locks become greenlet locks
control_socket_disable = True  # the default control socket is shared by every gunicorn on the machine
accesslog = _server.access_log    # gunicorn's own access log (off): the gateway writes its own line
errorlog = "-"               # stderr, like the gateway's own log lines
loglevel = os.environ.get("LOG_LEVEL", "info").strip().lower() or "info"

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


def _in_child(job: str) -> int:
    """Run a check of the gateway package in a forked child, so the master never imports it."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            code = _child_check(job)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _child_check(job: str) -> int:
    sys.path.insert(0, os.path.dirname(_PACKAGE))
    try:
        from gateway.banner import check_and_announce

        return check_and_announce(job, _server)
    except BaseException as exc:  # anything unforeseen: one line too, and stop
        print(f"gradio-chat-gateway: cannot start: {exc!r}", file=sys.stderr, flush=True)
        return 2


def on_starting(server):
    """Validate the whole configuration in the master: a bad value stops start-up with one line.

    A worker that fails to load the app would be restarted forever instead. Also wraps the
    arbiter's reload so that SIGHUP checks the new configuration before any new worker starts.
    """
    _clean_metrics_dir()
    if _in_child("start") != 0:
        sys.exit(2)
    reload = server.reload

    def checked_reload() -> None:
        """SIGHUP: a bad new configuration is refused with one line; the old workers keep serving."""
        if _in_child("reload") != 0:
            server.log.error("reload refused: the configuration above is invalid; the running workers "
                             "keep serving the previous one")
            return
        reload()

    server.reload = checked_reload
    # Ctrl-C: stop like SIGTERM does (workers finish open streams within GRACEFUL_TIMEOUT). gunicorn's
    # own SIGINT sends the workers SIGQUIT, whose sys.exit inside a greenlet printed gevent's traceback.
    server.handle_int = server.handle_term


def post_fork(server, worker):
    """Ctrl-C in a terminal signals the whole process group: let the master alone stop the workers.

    A worker that took the SIGINT itself quit inside gevent's hub and printed a traceback; the
    master's SIGINT stops every worker anyway. Set here, before the worker installs its signal
    handlers (it takes SIGINT as SIGQUIT), so that a worker still loading the app when Ctrl-C
    comes ignores it too (post_worker_init runs only once the app is loaded).
    """
    quit_now = worker.handle_quit

    def handle_quit(sig, frame):
        if sig != signal.SIGINT:
            quit_now(sig, frame)

    worker.handle_quit = handle_quit


def post_worker_init(worker):
    """The app is loaded: the worker serves from now on (gunicorn logs only "Booting worker")."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker.log.info("Worker ready (pid: %s)", worker.pid)


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
