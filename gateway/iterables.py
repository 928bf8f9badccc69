"""Closing the iterators a streamed response is built from."""
from __future__ import annotations

from typing import Any


def close(iterable: Any) -> None:
    """Close an iterator if it can be closed (a generator), so the close reaches the upstream job.

    Each streaming layer closes what it wraps in `finally`: when a client leaves, the
    WSGI server closes the outermost iterable and the close travels down to the run.
    """
    closer = getattr(iterable, "close", None)
    if closer is not None:
        closer()
