"""Reconnect delays: exponential, jittered, capped, and reset after a healthy period.

A policy object rather than sleeps scattered in loops, so tests pass one in with tiny delays
and a seeded random source instead of patching time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alertd.config import BackoffSettings


@dataclass
class Backoff:
    initial_s: float = 1.0
    max_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.2
    reset_after_s: float = 60.0
    rng: Callable[[], float] = random.random
    _attempt: int = field(default=0, init=False)
    _healthy_since: float | None = field(default=None, init=False)

    @classmethod
    def configured(cls, settings: BackoffSettings) -> Backoff:
        """The policy the config's ``feeds.backoff`` describes."""
        return cls(
            settings.initial_s,
            settings.max_s,
            settings.multiplier,
            settings.jitter,
            settings.reset_after_s,
        )

    @property
    def attempt(self) -> int:
        return self._attempt

    def next_delay(self) -> float:
        """The delay before the next attempt; each call backs off further."""
        base = min(self.max_s, self.initial_s * self.multiplier**self._attempt)
        self._attempt += 1
        self._healthy_since = None
        # full range [base * (1 - jitter), base * (1 + jitter)], never above the cap
        spread = base * self.jitter * (2 * self.rng() - 1)
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
