"""A clock the test sets by hand: passed in wherever the code under test reads the time."""

from __future__ import annotations


class ManualClock:
    """Reads ``t`` (seconds); the test moves it by assigning ``t``."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
