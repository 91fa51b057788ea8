"""Waiting for something to happen by polling it, instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

type Message = str | Callable[[], object]


def _timed_out(timeout: float, message: Message) -> AssertionError:
    said = message() if callable(message) else message
    return AssertionError(f"not within {timeout} s: {said}" if said else f"not within {timeout} s")


def wait_until[T](
    condition: Callable[[], T], timeout: float = 10, message: Message = "", interval: float = 0.05
) -> T:
    """Poll condition until it returns something true, and return that; fail after timeout
    seconds with message (a callable is asked only then, for what things look like)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, message)
        time.sleep(interval)
    return result


async def wait_until_async[T](
    condition: Callable[[], T], timeout: float = 10, message: Message = "", interval: float = 0.05
) -> T:
    """wait_until for a test on the event loop: it polls without blocking the loop."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, message)
        await asyncio.sleep(interval)
    return result
