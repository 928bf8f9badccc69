"""Everything that speaks Gradio, and nothing else does."""
from __future__ import annotations

from .runner import Upstream

__all__ = ["Upstream"]
