"""Fixtures for the mapping tests: the apps of tests/mapping_apps.py, a models file, an image server."""
from __future__ import annotations

import http.server
import io
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests import mapping_apps
from tests.conftest import gateway_env

# Models with flags: id -> (app, flags[, api_name]). Every other app is also listed by its URL alone.
FLAGGED = {
    "chat-00": ("chat", "00"), "chat-01": ("chat", "01"), "chat-02": ("chat", "02"),
    "input-data-10": ("input-data", "10"), "input-data-11": ("input-data", "11"),
    "input-data-12": ("input-data", "12"),
    "vision-20": ("vision", "20"), "vision-22": ("vision", "22"),
    "look-30": ("look", "30"), "respond-40": ("respond", "40"), "chat-40": ("chat", "40"),
    "policy-50": ("policy", "50"), "policy-52": ("policy", "52"),
    # Flags naming parameters the app lacks: the message goes first, the system text leads it.
    "query-00": ("query", "00"),
}


def png_bytes(size: int = 0) -> bytes:
    """A real 2x2 PNG, padded with a trailing chunk to about `size` bytes when asked."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 30, 30)).save(buf, format="PNG")
    data = buf.getvalue()
    return data + b"\0" * max(0, size - len(data))


@pytest.fixture(scope="session")
def mapping_apps_urls() -> Iterator[dict[str, str]]:
    """Every app of tests/mapping_apps.py, served once for the session: name -> URL."""
    from tests.conftest import serve_apps

    yield from serve_apps(mapping_apps.APPS)


def mapping_models(urls: dict[str, str]) -> dict[str, Any]:
    models: dict[str, Any] = {name: {"space": url} for name, url in urls.items()}
    for model_id, (app, flags) in FLAGGED.items():
        models[model_id] = {"space": urls[app], "flags": flags}
    models["chat-by-name"] = {"space": urls["thoughts"], "api_name": "/reflect"}
    return {"models": models}


@pytest.fixture(scope="session")
def mapping_models_file(mapping_apps_urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mapping") / "models.yaml"
    path.write_text(yaml.safe_dump(mapping_models(mapping_apps_urls)))
    return path


def mapping_env(models_file: Path, **extra: str) -> dict[str, str]:
    """The suite's gateway environment, with only the mapping apps as models."""
    return gateway_env(models_file, **{"BUILTIN_MODELS": "false", **extra})


@pytest.fixture
def make_mapping_app(mapping_models_file: Path):
    from gateway import create_app

    def make(**extra: str):
        return create_app({"TESTING": True}, env=mapping_env(mapping_models_file, **extra))
    return make


@pytest.fixture
def mapping_client(make_mapping_app):
    return make_mapping_app().test_client()


class _ImageHandler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        status, mime, body = self.routes.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def image_server() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving /red.png (a PNG), /big.png (3 KB) and a 404."""
    _ImageHandler.routes = {"/red.png": (200, "image/png", png_bytes()),
                            "/big.png": (200, "image/png", png_bytes(3000)),
                            "/missing.png": (404, "text/plain", b"gone")}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
