"""Polling until a condition holds, with a bound and a failure message that names it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.02
# generous: a condition that holds returns at once, and the suite runs four workers on two
# cores, where a daemon's start (ccxt's import alone takes seconds) can be slow
EVENTUALLY_S = 30.0
WAIT_FOR_S = 60.0


class _Deadline:
    def __init__(self, timeout_s: float, what: str) -> None:
        self.timeout_s, self.what = timeout_s, what
        self._end = time.monotonic() + timeout_s

    def check(self, last: Any) -> None:
        if time.monotonic() > self._end:
            raise AssertionError(
                f"timed out after {self.timeout_s}s waiting for {self.what} (last: {last!r})"
            )


async def eventually(
    check: Callable[[], T],
    timeout_s: float = EVENTUALLY_S,
    what: str = "condition",
    interval_s: float = POLL_INTERVAL_S,
) -> T:
    """Poll ``check()`` on the running loop until it is truthy and return its value; fail with
    ``what`` after ``timeout_s``."""
    deadline = _Deadline(timeout_s, what)
    while not (result := check()):
        deadline.check(result)
        await asyncio.sleep(interval_s)
    return result


def wait_for(
    check: Callable[[], T],
    timeout_s: float = WAIT_FOR_S,
    what: str = "condition",
    interval_s: float = 0.05,
) -> T:
    """``eventually`` for synchronous tests (a daemon in another process, a server in a thread):
    blocks this thread between polls."""
    deadline = _Deadline(timeout_s, what)
    while not (result := check()):
        deadline.check(result)
        time.sleep(interval_s)
    return result
