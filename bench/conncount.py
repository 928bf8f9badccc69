"""Count the TCP connections a Gradio app's server accepts, exactly, inside the app's process.

    python bench/conncount.py --count-file F SCRIPT [ARG ...]    run SCRIPT as __main__, counting

Every Gradio generation serves through uvicorn, whose HTTP protocol object gets one
`connection_made` per accepted connection (after the TLS handshake on HTTPS; a websocket
upgrade hands the same connection to another protocol, so it is not counted twice). The
count goes to F (rewritten whole, atomically, on each connection), where the bench reads
it before and after a run. Standard library only: it also runs in each generation's own
venv (bench/generations.py), where this repository is not importable.
"""
from __future__ import annotations

import importlib
import os
import runpy
import sys
import threading
from pathlib import Path

PROTOCOLS = (("uvicorn.protocols.http.h11_impl", "H11Protocol"),
             ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol"))


def protocol_classes() -> list:
    """uvicorn's HTTP protocol classes there are here (httptools is optional: then h11 only)."""
    found = []
    for module, name in PROTOCOLS:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except ImportError:
            continue
    return found


def install(count_file: str) -> None:
    """Patch uvicorn's HTTP protocols (before the app launches) to count into count_file."""
    lock = threading.Lock()
    count = 0

    def counted(original):
        def connection_made(self, transport, *args, **kwargs):
            nonlocal count
            with lock:
                count += 1
                tmp = f"{count_file}.tmp"
                Path(tmp).write_text(str(count))
                os.replace(tmp, count_file)
            return original(self, transport, *args, **kwargs)
        return connection_made

    Path(count_file).write_text("0")
    classes = protocol_classes()
    for cls in classes:
        cls.connection_made = counted(cls.connection_made)
    if not classes:
        raise RuntimeError("no uvicorn HTTP protocol to count connections in")


def read(count_file: str | Path) -> int:
    return int(Path(count_file).read_text())


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "--count-file":
        raise SystemExit(__doc__.splitlines()[2])
    install(argv[1])
    script = argv[2]
    sys.argv = [script, *argv[3:]]
    sys.path[0] = str(Path(script).resolve().parent)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
