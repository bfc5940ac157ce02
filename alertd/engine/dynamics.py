"""How a symbol's mark moves: a bounded window of its recent mark prices, the realized
volatility and the smoothed velocity it shows, and the barrier arithmetic the predictive rules
read (how likely, and how soon, the mark reaches a liquidation price).

Pure: every time is epoch seconds passed in by the caller (the daemon's wall clock for a live
mark, a candle's time for a seed or a replay); nothing here reads a clock. The statistics are
floats on log prices: they are estimates of a random process, not money; they become
``Decimal`` only as a metric's value.

The window keeps at most one sample per ``resolution_s`` (the last price seen in it) and none
older than ``span_s`` before the newest, so its memory is bounded by ``span_s / resolution_s``
samples per symbol whatever the tick rate; one window per symbol and exchange serves every
account holding it.

Estimators (``docs/rules.md`` states them with their limits):

- **volatility**: the time-scaled realized variance of log returns, ``sum(r_i^2) / sum(dt_i)``
  over the lookback, after removing isolated spikes; returns over a gap count with their full
  time, so a gap neither inflates nor deflates the rate. Its square root is the volatility per
  square-root second.
- **bad ticks**: one sample, or two in a row, to which the mark jumps by more than
  ``SPIKE_SIGMAS`` robust standard deviations (from the median absolute normalized return over
  the whole window) and from which it jumps back as far, to about where it was before: they
  are dropped, their returns merged. The newest samples cannot be judged yet: a jump that
  large is held out until the two samples after it confirm or refute it (a real move counts
  two samples, at most about 20 s, late).
- **velocity**: the least-squares slope of log price against time over the window, on the same
  cleaned samples: a smoothed relative rate of change per second.

The samples are kept with running sums, updated in constant time as a sample comes and the
oldest goes, so every lookback's volatility and velocity costs a bisection and a few
subtractions. The bad-tick test is judged over the whole window only while some return in it
is large enough to fail it (the sorted returns say so at once); otherwise the samples as they
came are the cleaned ones.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Sequence
from decimal import Decimal

# a normal variable's standard deviation is 1.4826 times its median absolute deviation
MAD_TO_SIGMA = 1.482602218505602
SPIKE_SIGMAS = 8.0  # how far past the typical move a reverting jump is taken for a bad tick
MIN_RETURNS = 8  # fewer returns in a lookback: no volatility
MIN_COVERAGE = 0.25  # of a lookback the samples must span before a figure is given
DEFAULT_RESOLUTION_S = 10.0
SQRT2 = math.sqrt(2.0)


class MarkWindow:
    """The recent marks of one symbol, and their statistics (cached until the next sample)."""

    __slots__ = ("_cleaned", "_figures", "_raw", "_spread", "resolution_s", "span_s", "version")

    def __init__(self, span_s: float, resolution_s: float = DEFAULT_RESOLUTION_S) -> None:
        if not (span_s > 0 and resolution_s > 0):
            raise ValueError("a window needs a positive span and resolution")
        self.resolution_s = resolution_s
        self.span_s = span_s
        self._raw = _Sums()  # the samples as they came, with their running sums
        # the absolute normalized returns between the samples held, sorted: their median
        # scales the bad-tick test, their largest says whether any return could fail it
        self._spread: list[float] = []
        self.version = 0  # bumped by every change: caches compare it
        self._cleaned: _Sums | None = None
        # figures already read since the last change: several rules read the same lookback
        self._figures: dict[tuple[str, float], float | None] = {}

    @property
    def capacity(self) -> int:
        """The most samples the window can hold: its memory bound."""
        return int(self.span_s // self.resolution_s) + 2

    def __len__(self) -> int:
        return len(self._raw)

    def samples(self) -> list[tuple[float, float]]:
        """(time, price) of every sample, oldest first."""
        raw = self._raw
        return [(raw.t[k], math.exp(raw.x[k])) for k in range(raw.lo, len(raw.t))]

    def resize(self, span_s: float) -> None:
        """A new span (a reload asked for a longer or shorter lookback)."""
        if not span_s > 0:
            raise ValueError("a window needs a positive span")
        self.span_s = span_s
        self._trim()
        self._changed()

    def add(self, t_s: float, price: Decimal | float) -> bool:
        """One mark at ``t_s``; a sample older than the newest is ignored (a seed candle behind
        a live mark), as is a price that is not positive and finite. True when it was kept."""
        p = float(price)
        if not (p > 0 and math.isfinite(p) and math.isfinite(t_s)):
            return False
        x = math.log(p)
        raw = self._raw
        held = len(raw.t) - raw.lo
        if held:
            last = raw.t[-1]
            if t_s < last:
                return False
            if t_s // self.resolution_s == last // self.resolution_s:
                # same bucket: its last price stands for it
                if t_s == last and x == raw.x[-1]:
                    return False  # the same sample again: nothing changes
                if held >= 2:
                    self._unspread(raw.z[-1])
                raw.pop()
                held -= 1
        raw.push(t_s, x)
        if held:
            bisect.insort(self._spread, raw.z[-1])
        if raw.t[raw.lo] < t_s - self.span_s or held >= self.capacity:
            self._trim()
        self._changed()
        return True

    def add_candle(
        self, t_ms: int, interval_ms: int, open_: Decimal, close: Decimal, now_s: float
    ) -> None:
        """A candle as what it tells with its times: the open at its start, the close at its
        end (the next candle's open takes the close's place when it comes: same time). Its
        high and low come with no time, and a path through them would overstate the
        variance, so they are left out. A candle still running at ``now_s`` gives its open
        only: its close is not known yet."""
        self.add(t_ms / 1000, open_)
        end = (t_ms + interval_ms) / 1000
        if end <= now_s:
            self.add(end, close)

    def _changed(self) -> None:
        self.version += 1
        self._cleaned = None
        if self._figures:
            self._figures = {}

    def _unspread(self, z: float) -> None:
        spread = self._spread
        del spread[bisect.bisect_left(spread, z)]

    def _trim(self) -> None:
        raw = self._raw
        if len(raw.t) == raw.lo:
            return
        oldest = raw.t[-1] - self.span_s
        capacity = self.capacity
        while True:
            t, lo = raw.t, raw.lo
            held = len(t) - lo
            if not (t[lo] < oldest or held > capacity):
                return
            if held >= 2:  # the return out of the oldest sample leaves with it
                self._unspread(raw.z[lo + 1])
            raw.drop_oldest()

    # --- statistics ---------------------------------------------------------------------

    def _clean(self) -> _Sums:
        """The samples without bad ticks and without an unconfirmed outlier at the end, with
        the running sums the statistics read; worked out once per change.

        Every judgment below starts from a return larger than ``limit``: while no return in
        the window is (the common case, read off the sorted returns), the samples as they
        came are the cleaned ones, with the running sums kept as they came."""
        cached = self._cleaned
        if cached is not None:
            return cached
        raw = self._raw
        n = len(raw.t) - raw.lo
        cleaned = raw
        if n >= 3:
            spread = self._spread
            m = len(spread)
            median = spread[m // 2] if m % 2 else (spread[m // 2 - 1] + spread[m // 2]) / 2
            limit = SPIKE_SIGMAS * MAD_TO_SIGMA * median
            if spread[-1] > limit:
                cleaned = _judged(raw, limit)
        self._cleaned = cleaned
        return cleaned

    def _since(self, lookback_s: float) -> tuple[_Sums, int]:
        """The cleaned samples, and the index of the first within ``lookback_s`` of the
        newest sample."""
        cleaned = self._clean()
        if len(cleaned.t) == cleaned.lo:
            return cleaned, 0
        t = cleaned.t
        return cleaned, bisect.bisect_left(t, self._raw.t[-1] - lookback_s, cleaned.lo, len(t))

    def volatility(self, lookback_s: float) -> float | None:
        """Realized volatility of log price per square-root second over the last
        ``lookback_s``; ``None`` until there are enough returns covering enough of it."""
        key = ("volatility", lookback_s)
        if key in self._figures:
            return self._figures[key]
        c, i = self._since(lookback_s)
        n = len(c.t)
        figure = None
        if n - i > MIN_RETURNS:
            span = c.t[-1] - c.t[i]
            if span >= MIN_COVERAGE * lookback_s:
                figure = math.sqrt(max(c.r2[n - 1] - c.r2[i], 0.0) / span)
        self._figures[key] = figure
        return figure

    def velocity(self, window_s: float) -> float | None:
        """The smoothed rate of change of log price per second over the last ``window_s``
        (least-squares slope); ``None`` until the samples cover enough of it."""
        key = ("velocity", window_s)
        if key in self._figures:
            return self._figures[key]
        c, i = self._since(window_s)
        n = len(c.t)
        figure = None
        if n - i >= 3 and c.t[-1] - c.t[i] >= MIN_COVERAGE * window_s:
            figure = c.slope(i)
        self._figures[key] = figure
        return figure


MAX_BAD_RUN = 2  # consecutive bad ticks rejected; a longer stay at a price is a real move


def _judged(raw: _Sums, limit: float) -> _Sums:
    """``raw`` without its bad ticks and its unconfirmed outliers (some return is larger than
    ``limit``): the whole window judged again, as ``limit`` moved with the window."""
    ts, xs = raw.t[raw.lo :], raw.x[raw.lo :]
    n = len(ts)
    r = [xs[k] - xs[k - 1] for k in range(1, n)]
    z = raw.z[raw.lo + 1 :]
    keep = [True] * n
    k = 1
    while k < n - 1:
        run = _bad_run(r, z, k, n, limit)
        if run:
            for j in range(k, k + run):
                keep[j] = False
            k += run + 1  # one run at a time: its neighbour is the reference
            continue
        k += 1
    # the newest samples cannot be judged yet: a jump is held back until the two samples
    # after it stay there (two bad ticks in a row would otherwise pass)
    if z[-1] > limit:
        keep[-1] = False
    elif n >= 4 and keep[-2] and z[-2] > limit:
        keep[-2] = keep[-1] = False
    if all(keep):
        return raw
    return _Sums(
        [v for v, ok in zip(ts, keep, strict=True) if ok],
        [v for v, ok in zip(xs, keep, strict=True) if ok],
    )


def _bad_run(r: list[float], z: list[float], k: int, n: int, limit: float) -> int:
    """How many samples from ``k`` on (1 or 2, 0 for none) are bad ticks: the mark jumps
    away by more than ``limit`` (normalized) into sample ``k`` and back by as much out of the
    run's last sample, in the opposite direction, to about where it was before the run."""
    if z[k - 1] <= limit:
        return 0
    into = r[k - 1]
    for run in range(1, MAX_BAD_RUN + 1):
        last = k + run - 1
        if last >= n - 1:
            return 0
        if z[last] > limit and into * r[last] < 0:
            net = sum(r[k - 1 : last + 1])  # from the sample before the run to the one after
            if abs(net) < 0.5 * min(abs(r[k - 1]), abs(r[last])):
                return run
    return 0


class _Sums:
    """Samples (time, log price) with running sums: any suffix's realized variance and
    least-squares slope in constant time, a sample added or the oldest dropped in constant
    time. The samples held are those from ``lo`` on; the lists keep the dropped ones until
    they are four fifths of the lists, then start again from the samples held (amortized constant
    time). Times and log prices are taken relative to the first sample they start from, so
    the sums keep their digits; starting again also drops the rounding a long run of
    additions gathered."""

    __slots__ = ("lo", "r2", "st", "stt", "stx", "sx", "t", "t0", "x", "x0", "z")

    def __init__(self, ts: Sequence[float] = (), xs: Sequence[float] = ()) -> None:
        self._start(ts, xs)

    def _start(self, ts: Sequence[float], xs: Sequence[float]) -> None:
        self.lo = 0
        self.t: list[float] = []
        self.x: list[float] = []
        # r2[k]: squared returns up to sample k; z[k]: sample k's return over the square
        # root of its time step, absolute; st, sx, stt, stx: sums over samples before k
        self.r2: list[float] = []
        self.z: list[float] = []
        self.st, self.sx, self.stt, self.stx = [0.0], [0.0], [0.0], [0.0]
        self.t0 = ts[0] if ts else 0.0
        self.x0 = xs[0] if xs else 0.0
        for t, x in zip(ts, xs, strict=True):
            self.push(t, x)

    def __len__(self) -> int:
        return len(self.t) - self.lo

    def push(self, t: float, x: float) -> None:
        ts, xs = self.t, self.x
        if ts:
            r = x - xs[-1]
            self.r2.append(self.r2[-1] + r * r)
            self.z.append(abs(r) / math.sqrt(t - ts[-1] or 1e-9))
        else:
            self.t0, self.x0 = t, x
            self.r2.append(0.0)
            self.z.append(0.0)
        dt, dx = t - self.t0, x - self.x0
        self.st.append(self.st[-1] + dt)
        self.sx.append(self.sx[-1] + dx)
        self.stt.append(self.stt[-1] + dt * dt)
        self.stx.append(self.stx[-1] + dt * dx)
        ts.append(t)
        xs.append(x)

    def pop(self) -> None:
        """Drops the newest sample."""
        for values in (self.t, self.x, self.r2, self.z, self.st, self.sx, self.stt, self.stx):
            values.pop()
        if self.lo >= len(self.t):  # none held: the next sample starts afresh
            self._start((), ())

    def drop_oldest(self) -> None:
        self.lo += 1
        if self.lo > 64 and self.lo > 4 * (len(self.t) - self.lo):
            self._start(self.t[self.lo :], self.x[self.lo :])

    def slope(self, i: int) -> float:
        """The least-squares slope of log price against time over samples ``i`` onwards."""
        n = len(self.t)
        m = n - i
        st, sx = self.st[n] - self.st[i], self.sx[n] - self.sx[i]
        stt, stx = self.stt[n] - self.stt[i], self.stx[n] - self.stx[i]
        den = m * stt - st * st
        return (m * stx - st * sx) / den if den > 0 else 0.0


def log_distance(mark: Decimal, target: Decimal) -> float:
    """``|ln(target / mark)|``: how far, in log terms, the mark is from ``target``."""
    if target <= 0:
        return math.inf  # a price cannot fall to zero or below
    return abs(math.log(float(target) / float(mark)))


def touch_probability(distance: float, sigma: float, horizon_s: float) -> float:
    """The probability that a driftless Brownian log price with volatility ``sigma`` (per
    square-root second) touches a level ``distance`` away (in log terms) within
    ``horizon_s``: by the reflection principle ``2 * (1 - Phi(d / (sigma * sqrt(T))))``,
    which is ``erfc(d / (sigma * sqrt(2 T)))``. 1 at the level; 0 with no volatility."""
    if distance <= 0:
        return 1.0
    scale = sigma * math.sqrt(horizon_s)
    if scale <= 0 or math.isinf(distance):
        return 0.0
    return math.erfc(distance / (scale * SQRT2))


def sigmas(distance: float, sigma: float, horizon_s: float) -> float:
    """``distance`` in units of the horizon's volatility, ``sigma * sqrt(horizon_s)``;
    infinite with no volatility (and a positive distance)."""
    if distance <= 0:
        return 0.0
    scale = sigma * math.sqrt(horizon_s)
    return math.inf if scale <= 0 else distance / scale


def sigmas_for_probability(probability: float) -> float | None:
    """The inverse of :func:`touch_probability` in units of the horizon's volatility: the
    distance (over ``sigma * sqrt(T)``) whose touch probability is ``probability``; None
    outside (0, 1), where no finite positive distance has it."""
    # Phi^-1(1 - p/2) = -Phi^-1(p/2): the latter keeps its digits for a small p
    tail = probability / 2
    if not 0 < tail < 0.5:
        return None
    return -_STANDARD_NORMAL.inv_cdf(tail)


_STANDARD_NORMAL = statistics.NormalDist()


def time_to_reach(distance: float, speed: float | None) -> float | None:
    """Seconds to cover ``distance`` (log terms) at ``speed`` towards it (log per second);
    ``None`` when not moving towards it."""
    if speed is None or speed <= 0:
        return None
    return distance / speed


def to_decimal(value: float) -> Decimal:
    """A statistic as a metric's value: the float's shortest exact text (``inf`` as
    ``Infinity``)."""
    return Decimal(repr(value)) if math.isfinite(value) else Decimal("Infinity")


def max_or_none(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return max(found) if found else None


# Seeding a window from an exchange's candles: one request per symbol. OKX serves at most 100
# mark-price candles a request (Bybit 1,000, Binance 1,500): the finest timeframe whose candles
# over the span fit in that.
SEED_TIMEFRAMES = (("1m", 60_000), ("5m", 300_000), ("15m", 900_000), ("1h", 3_600_000))
MAX_SEED_CANDLES = 100


def seed_timeframe(span_s: float) -> tuple[str, int]:
    """The candle timeframe (ccxt's name, and in ms) to seed a window of ``span_s`` with."""
    for name, ms in SEED_TIMEFRAMES:
        if span_s * 1000 / ms <= MAX_SEED_CANDLES - 2:
            return name, ms
    return SEED_TIMEFRAMES[-1]


def seeded(
    span_s: float,
    candles: Iterable[tuple[int, Decimal, Decimal]],
    interval_ms: int,
    now_s: float,
    live: MarkWindow | None = None,
) -> MarkWindow:
    """A window of ``span_s`` from recent candles ``(open time ms, open, close)``, then the
    samples ``live`` already holds (which are newer)."""
    window = MarkWindow(span_s)
    for t_ms, open_, close in sorted(candles, key=lambda c: c[0]):
        window.add_candle(t_ms, interval_ms, open_, close, now_s)
    for t, price in live.samples() if live is not None else ():
        window.add(t, price)
    return window
