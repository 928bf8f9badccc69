"""Closing the iterators a streamed response is built from."""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Iterator


def close(iterable: Any) -> None:
    """Close an iterator if it can be closed (a generator), so the close reaches the upstream job.

    Each streaming layer closes what it wraps in `finally`: when a client leaves, the
    WSGI server closes the outermost iterable and the close travels down to the run.
    """
    closer = getattr(iterable, "close", None)
    if closer is not None:
        closer()


class Chained(itertools.chain):  # type: ignore[type-arg]
    """itertools.chain with a close() that closes `source`, the iterator it reads from.

    The stream layers between the WSGI server and the run are built of these where they can
    be, not of generators: a chain or a map is iterated in C, so a stream waiting on its run
    keeps no Python frame of the layer on its greenlet's stack, and that stack is copied to
    the heap for every open stream (each generator level cost about 1.3 KiB a stream,
    measured by bench/).
    """

    __slots__ = ("source",)

    def close(self) -> None:
        close(self.source)


def chained(source: Iterator[Any], *iterables: Iterable[Any]) -> Chained:
    """The iterables one after the other; closing the result closes source."""
    joined = Chained(*iterables)
    joined.source = source
    return joined


def flat_map(fn: Callable[[Any], Iterable[Any]], source: Iterator[Any]) -> Chained:
    """What fn makes of each item of source (a tuple, often of one item), one after the other."""
    flat = Chained.from_iterable(map(fn, source))
    flat.source = source
    return flat
