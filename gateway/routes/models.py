"""GET /v1/models and /v1/models/<id>."""
from __future__ import annotations

from flask import Blueprint
from flask.typing import ResponseReturnValue

from .. import payloads
from ..http import gateway_state

bp = Blueprint("models", __name__)


@bp.get("/models")
def list_models() -> ResponseReturnValue:
    """List the models clients may ask for."""
    return payloads.model_list(gateway_state().registry)


@bp.get("/models/<path:model_id>")
def get_model(model_id: str) -> ResponseReturnValue:
    """One model, or 404 model_not_found."""
    return payloads.model_object(gateway_state().registry.get(model_id))
