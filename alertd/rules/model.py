"""What the rule engine works on: rules, subjects, observations, silences, quiet hours.

Pure data. Times are epoch seconds (UTC) passed in by the caller; nothing here reads a clock.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from alertd.engine.book import LiveAccount
from alertd.engine.fee_gap import FeeGap
from alertd.engine.margin import AccountMetrics, PositionMetrics
from alertd.engine.orderbook import OrderBook
from alertd.engine.reported import ExchangeRatioPosition


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


# How often a still-firing alert is sent again, unless a rule says otherwise.
DEFAULT_REPEAT_S = {
    Severity.INFO: 86_400.0,
    Severity.WARNING: 4 * 3600.0,
    Severity.CRITICAL: 1800.0,
}


class Scope(enum.Enum):
    ACCOUNT = "account"
    POSITION = "position"


@dataclass(frozen=True, slots=True)
class Subject:
    """What an alert is about: an account, or one position of it."""

    account: str
    exchange: str
    symbol: str | None = None
    side: str | None = None
    # built once: the rule engine reads it per rule and observation (1,000 accounts firing:
    # hundreds of thousands of times a minute)
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = self.account if self.symbol is None else f"{self.account}/{self.symbol}/{self.side}"
        object.__setattr__(self, "key", key)

    @property
    def scope(self) -> Scope:
        return Scope.ACCOUNT if self.symbol is None else Scope.POSITION

    @classmethod
    def from_key(cls, key: str, exchange: str = "") -> Subject:
        """The subject whose :attr:`key` is ``key`` (account names hold no "/"; symbols may)."""
        account, sep, rest = key.partition("/")
        if not sep:
            return cls(account, exchange)
        symbol, _, side = rest.rpartition("/")
        return cls(account, exchange, symbol, side)

    @property
    def matchers(self) -> dict[str, str]:
        """The labels that pick out this subject's alerts (not the exchange: it adds nothing)."""
        out = {"account": self.account}
        if self.symbol is not None:
            out["symbol"] = self.symbol
            out["side"] = self.side or ""
        return out

    @property
    def labels(self) -> dict[str, str]:
        out = {"account": self.account, "exchange": self.exchange}
        if self.symbol is not None:
            out["symbol"] = self.symbol
            out["side"] = self.side or ""
        return out

    def describe(self) -> str:
        if self.symbol is None:
            return self.account
        return f"{self.account} {self.symbol} {self.side}"


def series_key(metric: str, horizon_s: float | None, window_s: float | None) -> str:
    """What an observation calls a metric read with parameters: two rules on the same metric
    with different horizons read two values
    (``liquidation_probability[horizon=3600.0s,window=3600.0s]``)."""
    params = [
        f"{name}={value!r}s"
        for name, value in (("horizon", horizon_s), ("window", window_s))
        if value is not None
    ]
    return f"{metric}[{','.join(params)}]" if params else metric


def parse_series(key: str) -> tuple[str, float | None, float | None]:
    """:func:`series_key`'s inverse: (metric, horizon_s, window_s)."""
    metric, _, rest = key.partition("[")
    params = dict(p.split("=") for p in rest.rstrip("]").split(",") if p)
    horizon, window = params.get("horizon"), params.get("window")
    return (
        metric,
        None if horizon is None else float(horizon[:-1]),
        None if window is None else float(window[:-1]),
    )


@dataclass(frozen=True, slots=True)
class Condition:
    """A metric on one side of a threshold: what a rule tests (its own metric, and each of
    its ``while`` conditions), with the hysteresis that ends it and the price-dynamics
    parameters the metric is read with."""

    metric: str
    scope: Scope
    above: Decimal | None = None
    below: Decimal | None = None
    clear_above: Decimal | None = None  # hysteresis for a "below" condition
    clear_below: Decimal | None = None  # hysteresis for an "above" condition
    horizon_s: float | None = None  # how far ahead a probability looks
    window_s: float | None = None  # how far back volatility or velocity is measured
    # the observation key this condition reads: the metric, with its parameters when it has any
    series: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.above is None) == (self.below is None):
            raise ValueError(f"{self.metric}: give exactly one of above/below")
        object.__setattr__(self, "series", series_key(self.metric, self.horizon_s, self.window_s))

    @property
    def threshold(self) -> Decimal:
        value = self.above if self.above is not None else self.below
        assert value is not None
        return value

    @property
    def direction(self) -> str:
        return "above" if self.above is not None else "below"

    def breached(self, value: Decimal) -> bool:
        if self.above is not None:
            return value > self.above
        assert self.below is not None
        return value < self.below

    def cleared(self, value: Decimal) -> bool:
        """Back on the safe side of the clear threshold (the hysteresis band is not)."""
        if self.above is not None:
            limit = self.clear_below if self.clear_below is not None else self.above
            return value <= limit
        assert self.below is not None
        limit = self.clear_above if self.clear_above is not None else self.below
        return value >= limit


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule: its ``condition`` (its own metric past its threshold) and every ``also``
    condition at the same time, on a subject it applies to, for ``for_s``, fires; it resolves
    once any of them clears."""

    name: str
    condition: Condition
    severity: Severity
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    repeat_s: float | None = None  # None: the severity's default; 0: never repeat
    accounts: frozenset[str] | None = None
    exchanges: frozenset[str] | None = None
    symbols: frozenset[str] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None
    # conditions on the same subject that must hold too (config ``while:``), each on its own
    # metric: the rule fires only while all of them and its own metric are past their
    # thresholds, and resolves when any of them clears
    also: tuple[Condition, ...] = ()
    # its own condition, then the ``also`` ones: everything the rule reads
    conditions: tuple[Condition, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if any(c.scope is not self.scope for c in self.also):
            raise ValueError(f"rule {self.name!r}: its conditions read its own subject's scope")
        object.__setattr__(self, "conditions", (self.condition, *self.also))

    @property
    def metric(self) -> str:
        return self.condition.metric

    @property
    def scope(self) -> Scope:
        return self.condition.scope

    @property
    def series(self) -> str:
        """The observation key its own metric is read at (with its parameters)."""
        return self.condition.series

    @property
    def repeat_every_s(self) -> float:
        return DEFAULT_REPEAT_S[self.severity] if self.repeat_s is None else self.repeat_s

    def applies_to(self, subject: Subject) -> bool:
        if subject.scope is not self.scope:
            return False
        if self.accounts is not None and subject.account not in self.accounts:
            return False
        if self.exchanges is not None and subject.exchange not in self.exchanges:
            return False
        return self.symbols is None or subject.symbol in self.symbols

    def observed_in(self, metrics: Mapping[str, Decimal | None]) -> bool:
        """Every series the rule reads is in ``metrics`` (a missing one: no data, which
        leaves the rule's alert as it is)."""
        if self.series not in metrics:
            return False
        return all(c.series in metrics for c in self.also)

    def breached(self, value: Decimal) -> bool:
        """Its own metric's ``value`` is past the threshold (:meth:`holds` adds ``also``)."""
        return self.condition.breached(value)

    def cleared(self, value: Decimal) -> bool:
        """Its own metric's ``value`` is back on the safe side of the clear threshold."""
        return self.condition.cleared(value)

    def holds(self, value: Decimal, metrics: Mapping[str, Decimal | None]) -> bool:
        """``value`` (its own metric's) and every ``also`` condition in ``metrics`` are past
        their thresholds: the rule is breached. A condition with no value does not hold."""
        if not self.condition.breached(value):
            return False
        for c in self.also:
            other = metrics.get(c.series)
            if other is None or not c.breached(other):
                return False
        return True

    def released(self, value: Decimal, metrics: Mapping[str, Decimal | None]) -> bool:
        """``value`` (its own metric's) or some ``also`` condition in ``metrics`` is back on
        its safe side (a condition with no value is): a firing alert resolves."""
        if self.condition.cleared(value):
            return True
        for c in self.also:
            other = metrics.get(c.series)
            if other is None or c.cleared(other):
                return True
        return False


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """What the rules need to know about an account's feed and what the exchange itself
    reported, at one moment (the feed-status metrics read it; messages quote it)."""

    stale_s: Decimal  # age of the oldest held mark; 0 with nothing held
    down_s: Decimal  # disconnected for this long; 0 when connected
    fatal: str | None
    exchange_name: str = ""  # the exchange's name as messages show it ("Binance USDⓈ-M")
    mode: str = ""  # the account's mode as read from the exchange ("multi-assets (...)")
    # what alertd cannot compute in this mode, and why; None: alertd computes the account
    mode_limits: str | None = None
    # the exchange's own account margin ratio (requirement / equity) at the last reconcile,
    # moved with the marks since when ``exchange_ratio_moved`` (alertd/engine/reported.py)
    exchange_ratio: Decimal | None = None
    exchange_ratio_moved: bool = False
    # True: alertd has no figures of its own for the account (a mode it does not compute, or
    # incomplete data), so the exchange's ratio stands in as the account's ratio
    exchange_ratio_stands_in: bool = False
    # (alertd's, the exchange's) margin ratio compared at the last reconcile; of an account
    # of several margin pools, the pool's that differ the most, ``ratio_pool`` its asset
    ratios: tuple[Decimal, Decimal] | None = None
    ratio_pool: str | None = None
    # the exchange's rounding of its ratio (Bybit shows four decimals): a difference within
    # it is no drift
    ratio_rounding: Decimal = Decimal(0)
    missing: tuple[str, ...] = ()  # what keeps the account's data incomplete
    # a part of the account's fee rates no read could tell (Bybit: the GST an India-KYC
    # account pays on the fee to close), where alertd computes the account: its figures leave
    # out the maintenance margin it adds (``fee_gap`` metric, the fee-gap warning)
    fee_gap: FeeGap | None = None
    # per held symbol, the fall of the insurance fund behind it from its high over the
    # configured window (builtin_rules.insurance_fund; none where it is not watched)
    insurance_drops: Mapping[str, Decimal] = field(default_factory=dict)
    # while the exchange's ratio stands in: the positions as its own figures describe them
    # (the exchange's liquidation price, the stops against it), which the position metrics
    # with a reading of them (``Metric.reported``) observe
    positions: tuple[ExchangeRatioPosition, ...] = ()
    # while the exchange's ratio stands in: the held positions (symbol, side) whose alerts
    # stay as they are where the exchange gives no value (a market alertd does not know,
    # observed with none; for builtin_rules.incomplete_data_for after alertd's own figures
    # went, those it alerted on from them, read on the exchange's figures it gives)
    kept_positions: tuple[tuple[str, str], ...] = ()
    # why the account is not live yet, where its bootstrap failed and retries
    not_live: str | None = None
    # what its private stream missed, as a reconcile found it (the stream looked open; it is
    # reopened): "private stream missed BTC/USDT:USDT long 0.5 -> 0.8 contracts (...)"
    missed: str | None = None
    # what ended its last miss ("a position push since it was reopened")
    miss_ended: str | None = None
    # alertd reads the account: bootstrapped and not stopped by a fatal error. False while it
    # bootstraps (at every start: a firing alert loaded from the store meanwhile) or once
    # stopped: what only a read tells (``Metric.unknown_unwatched``) is then unknown, not 0
    watched: bool = True

    @property
    def ratio_drift(self) -> Decimal | None:
        """|alertd's - the exchange's| / the exchange's margin ratio, 0 within the exchange's
        rounding; None: nothing to compare."""
        if self.ratios is None:
            return None
        ours, theirs = self.ratios
        if not ours.is_finite() or not theirs.is_finite() or theirs <= 0:
            return None
        if abs(ours - theirs) <= self.ratio_rounding:
            return Decimal(0)
        return abs(ours - theirs) / theirs


@dataclass(frozen=True, slots=True)
class Context:
    """What a message may quote about an observation, besides its metric values."""

    metrics: AccountMetrics | None = None  # the account's figures (None: incomplete data)
    position: PositionMetrics | None = None  # the position a position alert is about
    fatal: str | None = None  # why the account's feed stopped for good
    feed: FeedStatus | None = None  # the account's feed status (account observations)
    # the book's account the values came from (and the position's index in it), until
    # rules.metrics.with_full_metrics puts the full figures above in their place
    live: LiveAccount | None = None
    index: int | None = None
    # the position's symbol's order book, where an order-book metric read one (gap risk)
    book: OrderBook | None = None
    # the position as the exchange reports it, where its ratio stands in for alertd's: the
    # liquidation price a message quotes is then the exchange's, never alertd's
    reported: ExchangeRatioPosition | None = None


NO_CONTEXT = Context()


@dataclass(frozen=True, slots=True)
class Observation:
    """One subject's metric values at one moment, and what a message may quote."""

    subject: Subject
    metrics: Mapping[str, Decimal | None]
    context: Context = NO_CONTEXT


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes notifications of alerts whose labels match all ``matchers`` until ``ends_at``."""

    id: str
    matchers: Mapping[str, str]
    ends_at: float
    created_at: float = 0.0
    comment: str = ""
    # an acknowledgement: it ends when this alert resolves (its key: "rule|subject"), or at
    # ``ends_at``, whichever comes first
    until_resolved: str | None = None

    def active(self, now: float) -> bool:
        return self.created_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.matchers.items())


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Daily window in a time zone; ``start > end`` spans midnight (23:00 to 07:00)."""

    start: dt.time
    end: dt.time
    timezone: str = "UTC"

    def active(self, now: float) -> bool:
        local = dt.datetime.fromtimestamp(now, ZoneInfo(self.timezone)).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end
