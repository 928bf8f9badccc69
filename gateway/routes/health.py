"""Liveness and readiness probes."""
from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from ..http import gateway_state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 while the process serves."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """200 once configuration is loaded; never calls an upstream."""
    return {"status": "ready", "models": len(gateway_state().registry)}
