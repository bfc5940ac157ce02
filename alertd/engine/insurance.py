"""An exchange's insurance fund balance over time, and how sharply it fell.

Pure: times are epoch seconds passed in. The fund is what pays for liquidations that close
past the bankruptcy price; when it runs short the exchange auto-deleverages profitable
traders (docs/rules.md, "Concentration, leverage and ADL"). A sharp drop of the fund behind a
symbol is the early sign. The history keeps only what the longest window needs: one reading
per poll, none older than ``span_s`` before the newest.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal


class FundHistory:
    """One insurance fund's balance readings, oldest first, bounded by ``span_s``."""

    __slots__ = ("_readings", "span_s")

    def __init__(self, span_s: float) -> None:
        if span_s <= 0:
            raise ValueError("a fund history needs a positive span")
        self.span_s = span_s
        self._readings: deque[tuple[float, Decimal]] = deque()

    def __len__(self) -> int:
        return len(self._readings)

    def add(self, t_s: float, balance: Decimal) -> bool:
        """Record a reading; one older than the newest, negative or not finite is refused."""
        if not balance.is_finite() or balance < 0:
            return False
        if self._readings and t_s < self._readings[-1][0]:
            return False
        self._readings.append((t_s, balance))
        while self._readings[0][0] < t_s - self.span_s:
            self._readings.popleft()
        return True

    @property
    def latest(self) -> Decimal | None:
        return self._readings[-1][1] if self._readings else None

    def drop(self, window_s: float) -> Decimal | None:
        """How far the newest reading is below the highest of the last ``window_s``, as a
        fraction of that high (0.25: a quarter of the fund gone); 0 when it did not fall;
        None before two readings or when the high is 0."""
        if len(self._readings) < 2:
            return None
        newest_t, newest = self._readings[-1]
        high = max(b for t, b in self._readings if t >= newest_t - window_s)
        if high <= 0:
            return None
        return (high - newest) / high
