"""Per-request error isolation inside a dynamic batch: one result (or exception) per request, in
order; a shared step that raises fails only the requests that were in it."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


def guarded(fn: Callable[..., Any], *args) -> Any:
    """``fn(*args)``, or the exception it raised (for one request's step)."""
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def per_request(requests: Sequence, handle: Callable[[Any], Any]) -> list:
    """Run ``handle`` on each request; its exceptions become that request's error only."""
    return [guarded(handle, request) for request in requests]  # one bad request never takes the batch down


def run_valid(items: Sequence, fn: Callable[[list], Sequence]) -> list:
    """One result per item, in order. Exceptions (a request already refused) pass through; the other
    items go to ``fn`` together, which returns one result (or exception) each; if ``fn`` raises, each
    of them gets that error (e.g. the encoder refused)."""
    valid = [x for x in items if not isinstance(x, Exception)]
    try:
        out = iter(fn(valid)) if valid else iter(())
    except Exception as exc:  # the shared step failed: every request in it gets the error
        out = itertools.repeat(exc)
    return [x if isinstance(x, Exception) else next(out) for x in items]


async def run_valid_async(items: Sequence, fn: Callable[[list], Awaitable[Sequence]]) -> list:
    """:func:`run_valid` for a coroutine ``fn`` (BLS calls)."""
    valid = [x for x in items if not isinstance(x, Exception)]
    try:
        out = iter(await fn(valid)) if valid else iter(())
    except Exception as exc:
        out = itertools.repeat(exc)
    return [x if isinstance(x, Exception) else next(out) for x in items]
