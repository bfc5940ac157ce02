"""A clock the test sets by hand: passed in wherever the code under test reads the time."""

from __future__ import annotations

import asyncio


class ManualClock:
    """Reads ``t`` (seconds); the test moves it by assigning ``t``."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class VirtualTime:
    """A monotonic clock and the sleep that goes with it, both passed in: a sleeper wakes when
    the test moves the clock to or past its wake-up time (:meth:`advance_to`), however many
    tasks sleep at once (one account's streams each back off on their own)."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t
        self._moved = asyncio.Condition()

    def __call__(self) -> float:
        return self.t

    async def sleep(self, delay: float) -> None:
        until = self.t + delay
        async with self._moved:
            await self._moved.wait_for(lambda: self.t >= until)

    async def advance_to(self, t: float) -> None:
        self.t = t
        async with self._moved:
            self._moved.notify_all()
