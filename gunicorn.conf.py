"""gunicorn -c gunicorn.conf.py wsgi:app — the settings live in gateway/gunicorn_conf.py.

That file is the one `gradio-chat-gateway serve` uses too; it is executed here rather than
imported, so that the gunicorn master never imports the gateway package (see its docstring).
"""
import os

__file__ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gateway", "gunicorn_conf.py")
with open(__file__, encoding="utf-8") as _fh:
    exec(compile(_fh.read(), __file__, "exec"))
