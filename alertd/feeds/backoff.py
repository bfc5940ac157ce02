"""Reconnect delays: exponential, jittered, capped, and reset after a healthy period.

A policy object rather than sleeps scattered in loops, so tests pass one in with tiny delays
and a seeded random source instead of patching time.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        initial_s: float = 1.0,
        max_s: float = 60.0,
        multiplier: float = 2.0,
        jitter: float = 0.2,
        reset_after_s: float = 60.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.multiplier = multiplier
        self.jitter = jitter
        self.reset_after_s = reset_after_s
        self._rng = rng
        self._attempt = 0
        self._healthy_since: float | None = None

    @property
    def attempt(self) -> int:
        return self._attempt

    def next_delay(self) -> float:
        """The delay before the next attempt; each call backs off further."""
        base = min(self.max_s, self.initial_s * self.multiplier**self._attempt)
        self._attempt += 1
        self._healthy_since = None
        # full range [base * (1 - jitter), base * (1 + jitter)], never above the cap
        spread = base * self.jitter * (2 * self._rng() - 1)
        return max(0.0, min(self.max_s, base + spread))

    def healthy(self, now: float) -> None:
        """Call on every good message; after ``reset_after_s`` of health the backoff resets."""
        if self._attempt == 0:
            return
        if self._healthy_since is None:
            self._healthy_since = now
        elif now - self._healthy_since >= self.reset_after_s:
            self._attempt = 0
            self._healthy_since = None
