"""The metrics rules can name, and the one function that turns figures into observations.

Every metric is one :class:`Metric` entry in :data:`METRICS`: its name and scope, its unit
(which decides how a message shows it), the direction in which it gets riskier, its meaning,
what it needs computed, and how it is read from an account in the book
(:class:`~alertd.engine.book.LiveAccount`) and the feed's status. Config validation, the
messages, replay and ``docs/rules.md``'s metric tables all read this table; adding a metric is
one entry (then regenerate the doc:
``ALERTD_WRITE_DOCS=1 pytest tests/test_metric_registry.py``; the test fails while it is stale).

:func:`observe` is the one path from figures to rule observations, for the daemon and replay
alike. It reads only the metrics asked for, so a liquidation price is solved only when a rule
needs one; :func:`with_full_metrics` adds the full figures a message quotes, when one is sent.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from alertd.engine.book import LiveAccount, LivePool, LivePosition
from alertd.engine.dynamics import (
    MarkWindow,
    log_distance,
    max_or_none,
    sigmas,
    sigmas_for_probability,
    time_to_reach,
    to_decimal,
    touch_probability,
)
from alertd.engine.margin import AccountMetrics, compute
from alertd.engine.model import Side
from alertd.engine.orderbook import CloseCost, ForcedClose, OrderBook, close_cost, gap_shortfall
from alertd.engine.reported import ExchangeRatioPosition
from alertd.engine.stops import (
    StopFigures,
    StopOrder,
    beyond_liquidation,
    loss_at,
    protective,
    stop_coverage,
    stop_loss_price,
)
from alertd.rules.lifecycle import Notification
from alertd.rules.model import (
    Condition,
    Context,
    FeedStatus,
    Observation,
    Rule,
    Scope,
    Subject,
    parse_series,
)

__all__ = ["FeedStatus"]  # defined with the rules' data; imported from here by the daemon


class Unit(enum.Enum):
    """What a metric's number measures; messages format by unit. The value is the docs' label."""

    RATIO = "ratio (shown as %)"  # maintenance margin / margin balance: 1 = liquidation
    FRACTION = "fraction (shown as %)"  # of a price: 0.03 = 3%
    MONEY = "settle currency"
    LEVERAGE = "x"  # notional / margin balance
    SECONDS = "seconds"
    FLAG = "0 or 1"
    PROBABILITY = "probability (shown as %)"
    DURATION = "time (seconds; shown as 12m)"
    SIGMAS = "standard deviations (shown as 2.5σ)"
    PRICE = "price (settle currency per unit)"
    RANK = "queue position, 0 last to 1 first in line (shown as %)"


class Needs(enum.IntEnum):
    """What must be computed for a metric, cheapest first."""

    FEED = 0  # the feed's status alone
    POOL = 1  # the book's running pool and position figures (every tick, O(1))
    LIQUIDATION = 2  # liquidation prices (solved on demand, kept while valid)
    CRASH = 3  # the crash distance (every position moved at once: the costliest)

    @property
    def label(self) -> str:
        return ("feed status", "running pool figures", "liquidation prices", "crash solve")[self]


@dataclass(slots=True)  # not frozen: built for every evaluation, and frozen costs twice
class Figures:
    """What an extractor reads: the feed's status and, once the account's data is complete,
    the account in the book; for a position metric, which position."""

    feed: FeedStatus
    live: LiveAccount | None = None
    index: int = -1
    # the price dynamics of the symbols (of the account's exchange), and the parameters a
    # price-dynamics metric is read with
    dynamics: Mapping[str, MarkWindow] | None = None
    horizon_s: float = 0.0
    window_s: float = 0.0
    # the exchange's order books of the symbols (bounded depth), which the order-book metrics
    # read; fetched only for symbols a rule on them covers
    books: Mapping[str, OrderBook] | None = None
    # the cross pool a per-pool metric (:attr:`Metric.per_pool`) is read of, where the account
    # has several and each is published (``/metrics``); None: the account's riskiest
    pool: LivePool | None = None

    @property
    def account(self) -> LiveAccount:
        assert self.live is not None, "an account metric read without the account"
        return self.live

    @property
    def cross_pool(self) -> LivePool:
        """The cross pool an account's pool metric reads: :attr:`pool` where given, else the
        account's cross figures (its riskiest cross pool's)."""
        return self.pool if self.pool is not None else self.account.cross

    @property
    def position(self) -> LivePosition:
        return self.account.positions[self.index]


Reach = Callable[[MarkWindow, int], float]


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    scope: Scope
    unit: Unit
    risky: str  # "above" or "below": the direction in which it gets riskier
    description: str
    needs: Needs
    extract: Callable[[Figures], Decimal | None]
    # what a message's title says, in words: "{value}" is the figure as its unit shows it;
    # None: the metric's name in words, then the figure ("worst ratio 66.7%")
    title: str | None = None
    resolved_title: str | None = None  # when it resolves; None: as ``title``

    def headline(self, value: str, resolved: bool = False) -> str:
        template = (self.resolved_title if resolved else None) or self.title
        if template is None:
            return f"{self.name.replace('_', ' ')} {value}"
        return template.replace("{value}", value)

    # an account ratio for which the exchange's own stands in while alertd has no figures
    # of its own for the account (a mode it does not compute, incomplete data)
    exchange_stands_in: bool = False
    # a value the feed reads, unknown while the account is not watched (bootstrapping, or
    # stopped by a fatal error: :attr:`FeedStatus.watched`), with or without figures: its
    # alerts stay as they are, where its 0 would resolve them as if a read had told it
    unknown_unwatched: bool = False

    def known(self, feed: FeedStatus) -> bool:
        """Whether the feed's status gives it a value at all (see :attr:`unknown_unwatched`)."""
        return (feed.watched and feed.fatal is None) or not self.unknown_unwatched

    def observable(self, feed: FeedStatus) -> bool:
        """Whether it has a value while alertd has no figures of its own for the account."""
        if not self.known(feed):
            return False
        stands_in = self.exchange_stands_in and feed.exchange_ratio_stands_in
        return self.needs is Needs.FEED or stands_in

    # a price-dynamics metric's rule parameters, with their defaults (None: not taken)
    horizon_s: float | None = None
    window_s: float | None = None

    @property
    def dynamic(self) -> bool:
        """Reads the price dynamics (its value depends on the marks' history, not only the
        current mark)."""
        return self.window_s is not None

    @property
    def computed_from(self) -> str:
        return self.needs.label + (", price dynamics" if self.dynamic else "")

    # For a costly position metric: a cheap proof that its value cannot breach a rule (then
    # it need not be computed for a subject with no alert), of one position (``index``) or of
    # every position of the account (``index`` -1). ``False`` proves nothing.
    clear: Callable[[Figures, Condition], bool] | None = None

    # For a position price-dynamics metric: how near liquidation a rule pointing the metric's
    # risky way can breach. ``reach(rule, horizon_s, window_s)`` gives the rule's
    # ``(window, direction) -> log distance``: from the mark to the liquidation price
    # (``direction`` +1 when it is above), at or beyond which the rule's value cannot breach
    # with the window's dynamics (see :func:`dynamics_reach`)
    reach: Callable[[Condition, float, float], Reach] | None = None

    # reads the exchange's order book of the position's symbol (fetched only for these)
    reads_book: bool = False

    # its Prometheus name where it predates the rule below (dashboards read it)
    gauge: str | None = None

    # a position metric's reading of a position of an account whose requirement alertd does
    # not compute (the exchange's ratio stands in): from the exchange's own liquidation price
    # and the stops against it (:attr:`FeedStatus.positions`); None: no value there
    reported: Callable[[ExchangeRatioPosition], Decimal | None] | None = None

    # an account figure of one cross pool (read through :attr:`Figures.cross_pool`): an
    # account of several margin pools (Binance single-asset: USDT, USDC, FDUSD) publishes it
    # per pool, labelled with the pool's asset; rules read the riskiest pool's
    per_pool: bool = False

    @property
    def published(self) -> bool:
        """Whether the daemon publishes it with each account's figures (``/metrics``): every
        metric of the account's own figures, a price-dynamics one at its default parameters;
        not the feed's status (the endpoint shows the streams' ages itself) nor an account's
        price-dynamics metric (one more crash solve per window)."""
        return self.needs is not Needs.FEED and not (self.dynamic and self.scope is Scope.ACCOUNT)

    @property
    def gauge_name(self) -> str:
        """Its name on ``/metrics``: ``alertd_<name>``, ``alertd_position_<name>`` for a
        position's, ``_seconds`` after a time (Prometheus' base unit)."""
        if self.gauge is not None:
            return self.gauge
        scope = "position_" if self.scope is Scope.POSITION else ""
        seconds = "_seconds" if self.unit in (Unit.SECONDS, Unit.DURATION) else ""
        return f"alertd_{scope}{self.name}{seconds}"


def _abs(value: Decimal | None) -> Decimal | None:
    return None if value is None else abs(value)


def _flag(on: bool) -> Decimal:
    return Decimal(1 if on else 0)


def _fee_gap(f: Figures) -> Decimal:
    """:func:`~alertd.engine.fee_gap.most_left_out` of the account's fee gap at its current
    marks, from the book's running figures: a position's requirement is linear in its fee
    rate, so raising the rate by the gap's share adds that share of its fee terms (the fee
    to close, fixed per position; a fee in the maintenance rate, at the mark or, where the
    requirement is valued at entry, at the entry). O(positions): two full computes per pool
    cost 100x an evaluation without it (1 ms against 10 us CPU, 5 positions)."""
    gap = f.feed.fee_gap
    if gap is None:
        return Decimal(0)
    live = f.account
    pools: dict[str, tuple[Decimal, Decimal]] = {}  # per pool (Account.pool_accounts): fees, MM
    settle = live.account.settle
    for lp in live.positions:
        leg = lp.leg
        u = leg.entry_u if leg.fixed_mm is not None else lp.u
        pool = "" if lp.position.pool in (None, settle) else str(lp.position.pool)
        fees, mm = pools.get(pool, (Decimal(0), Decimal(0)))
        pools[pool] = (
            fees + leg.quantity * (leg.close_fee + u * leg.fee_rate),
            mm + lp.mm,
        )
    return max((gap.share * fees / mm for fees, mm in pools.values() if mm), default=Decimal(0))


def _ratio(of_account: Callable[[LiveAccount], Decimal]) -> Callable[[Figures], Decimal | None]:
    """An account ratio: alertd's, or the exchange's own where alertd has none of its own."""

    def extract(f: Figures) -> Decimal | None:
        if f.live is not None:
            return of_account(f.live)
        return f.feed.exchange_ratio if f.feed.exchange_ratio_stands_in else None

    return extract


# --- price-dynamics metrics (docs/rules.md, "Predictive metrics", states the model) ----------


def _window(f: Figures, symbol: str) -> MarkWindow | None:
    return None if f.dynamics is None else f.dynamics.get(symbol)


def _position_barrier(f: Figures) -> tuple[float, int] | None:
    """The log distance from the position's mark to its liquidation price (0 once at or past
    it) and the direction of the move that reaches it (+1 up, -1 down)."""
    liq = f.account.liquidation_price(f.index)
    if liq is None:
        return None
    lp = f.position
    direction = 1 if liq > lp.mark else -1
    return (0.0 if lp.pool.ratio >= 1 else log_distance(lp.mark, liq)), direction


def _account_barrier(f: Figures) -> tuple[float, int] | None:
    """The same for the account: its crash distance, the uniform move of every mark that
    liquidates something first (a cross pool's with every leg moving at once)."""
    crash = f.account.crash_distance()
    if crash is None:
        return None
    direction = 1 if crash > 0 else -1
    if crash <= -1:
        return math.inf, direction  # only a price of zero would do it
    return abs(math.log1p(float(crash))), direction


def _symbols(f: Figures) -> Iterable[str]:
    return [f.position.symbol] if f.index >= 0 else {lp.symbol for lp in f.account.positions}


def _volatility(f: Figures) -> float | None:
    """The symbol's realized volatility; the account's highest among its symbols (every mark
    taken to move as fast as the fastest)."""
    return max_or_none(
        w.volatility(f.window_s) for s in _symbols(f) if (w := _window(f, s)) is not None
    )


def _adverse_speed(f: Figures, direction: int) -> float | None:
    """The smoothed velocity of the mark towards liquidation (log per second); the account's
    fastest among its symbols."""
    return max_or_none(
        None if (v := w.velocity(f.window_s)) is None else v * direction
        for s in _symbols(f)
        if (w := _window(f, s)) is not None
    )


def _barrier(f: Figures) -> tuple[float, int] | None:
    return _position_barrier(f) if f.index >= 0 else _account_barrier(f)


def _predictive(
    at_liquidation: int, figure: Callable[[Figures, float, int], float | None]
) -> Callable[[Figures], Decimal | None]:
    """An extractor: ``figure(f, log distance, direction)``, or ``at_liquidation`` once the
    mark is at or past the liquidation price (no dynamics needed to know that)."""

    def extract(f: Figures) -> Decimal | None:
        barrier = _barrier(f)
        if barrier is None:
            return None
        if barrier[0] == 0:
            return Decimal(at_liquidation)
        value = figure(f, *barrier)
        return None if value is None else to_decimal(value)

    return extract


def _probability(f: Figures, distance: float, direction: int) -> float | None:
    sigma = _volatility(f)
    return None if sigma is None else touch_probability(distance, sigma, f.horizon_s)


def _sigmas(f: Figures, distance: float, direction: int) -> float | None:
    sigma = _volatility(f)
    return None if sigma is None else sigmas(distance, sigma, f.horizon_s)


def _seconds(f: Figures, distance: float, direction: int) -> float | None:
    return time_to_reach(distance, _adverse_speed(f, direction))


# How near liquidation each breaches (its ``reach``): each figure is monotonic in the log
# distance d, so a rule breaches exactly below one distance, read off the dynamics once.


def _probability_reach(rule: Condition, horizon_s: float, window_s: float) -> Reach:
    # erfc(d / (sigma sqrt(2T))) > p  <=>  d < z_p sigma sqrt(T), z_p the distance in sigmas
    # whose touch probability is p
    p = float(rule.threshold)
    z = sigmas_for_probability(p)
    if z is None:  # at or above 1: never breaches; at or near 0: anywhere
        return _nowhere if p >= 1 else _anywhere
    scale = z * math.sqrt(horizon_s)

    def reach(window: MarkWindow, direction: int) -> float:
        sigma = window.volatility(window_s)
        return 0.0 if sigma is None else scale * sigma

    return reach


def _sigmas_reach(rule: Condition, horizon_s: float, window_s: float) -> Reach:
    # d / (sigma sqrt(T)) < s  <=>  d < s sigma sqrt(T)
    scale = max(float(rule.threshold), 0.0) * math.sqrt(horizon_s)

    def reach(window: MarkWindow, direction: int) -> float:
        sigma = window.volatility(window_s)
        return 0.0 if sigma is None else scale * sigma

    return reach


def _seconds_reach(rule: Condition, horizon_s: float, window_s: float) -> Reach:
    # d / speed < X  <=>  d < X speed, moving towards liquidation only
    seconds = max(float(rule.threshold), 0.0)

    def reach(window: MarkWindow, direction: int) -> float:
        velocity = window.velocity(window_s)
        return 0.0 if velocity is None else max(seconds * velocity * direction, 0.0)

    return reach


def _nowhere(window: MarkWindow, direction: int) -> float:
    return 0.0


def _anywhere(window: MarkWindow, direction: int) -> float:
    return math.inf


# how much farther than its reach a distance must be to be called clear, relative and in
# log terms: far above the float rounding of either side (they agree to about 1e-15)
REACH_MARGIN = 1e-7
REACH_FLOOR = 1e-12


def dynamics_reach(rules: Iterable[Rule]) -> Callable[[MarkWindow, int], float] | None:
    """For rules of which some read the price dynamics: ``reach(window, direction)``, the log
    distance from a position's mark to its liquidation price (``direction`` +1 when above)
    past which none of them can breach with ``window``'s dynamics, whatever the mark (the
    distance alone moves with it). ``None`` when some of them give no such bound: an account
    rule, or one pointing its metric's safe way.

    A rule of several conditions breaches only where all of them do: the nearest reach of its
    conditions that have one bounds it (those that read no dynamics are left to the caller).

    A replay uses it to skip the points that provably change nothing (the one-position
    shortcut in ``alertd/replay/run.py``); a distance within :data:`REACH_MARGIN` of the
    reach is evaluated in full."""
    per_rule: list[list[Reach]] = []
    for r in rules:
        parts, unbounded = [], False
        for c in r.conditions:
            m = lookup(c.metric, c.scope)
            if m is None or not m.dynamic:
                continue
            if m.reach is None or m.risky != c.direction:
                unbounded = True
                continue
            assert m.window_s is not None
            parts.append(m.reach(c, c.horizon_s or m.horizon_s or 0.0, c.window_s or m.window_s))
        if not parts:
            if unbounded:
                return None
            continue
        per_rule.append(parts)

    def reach(window: MarkWindow, direction: int) -> float:
        found = 0.0
        for parts in per_rule:
            found = max(found, min(part(window, direction) for part in parts))
        return found * (1 + REACH_MARGIN) + REACH_FLOOR

    return reach


_liquidation_probability = _predictive(1, _probability)
_distance_sigma = _predictive(0, _sigmas)
_time_to_liquidation = _predictive(0, _seconds)


HOUR = 3600.0
VELOCITY_WINDOW_S = 900.0
_PROBABILITY = (
    "probability that the mark touches the liquidation price within `horizon` (default 1h) "
    "at the realized volatility of the last `window` (default 1h); 1 at or past it"
)
_TIME = (
    "seconds until the mark reaches the liquidation price at its smoothed velocity over the "
    "last `window` (default 15m); 0 at or past it; no value while it moves away"
)
_SIGMA = (
    "distance to the liquidation price (in log terms) in standard deviations of the mark's "
    "move over `horizon` (default 1h), at the realized volatility of the last `window` "
    "(default 1h)"
)
_ACCOUNT = (
    " (account: to its crash distance, every mark moving together, at the pace of its "
    "fastest symbol)"
)


def _predictive_metrics(scope: Scope) -> tuple[Metric, ...]:
    """The price-dynamics metrics, the same in both scopes but for what they are measured to:
    a position's liquidation price, or the account's crash distance."""
    account = scope is Scope.ACCOUNT
    needs = Needs.CRASH if account else Needs.LIQUIDATION
    tail = _ACCOUNT if account else ""
    return (
        Metric(
            "liquidation_probability",
            scope,
            Unit.PROBABILITY,
            "above",
            _PROBABILITY + tail,
            needs,
            _liquidation_probability,
            horizon_s=HOUR,
            window_s=HOUR,
            reach=None if account else _probability_reach,
        ),
        Metric(
            "time_to_liquidation",
            scope,
            Unit.DURATION,
            "below",
            _TIME + tail,
            needs,
            _time_to_liquidation,
            window_s=VELOCITY_WINDOW_S,
            reach=None if account else _seconds_reach,
        ),
        Metric(
            "liquidation_distance_sigma",
            scope,
            Unit.SIGMAS,
            "below",
            _SIGMA + tail,
            needs,
            _distance_sigma,
            horizon_s=HOUR,
            window_s=HOUR,
            reach=None if account else _sigmas_reach,
        ),
    )


# --- stop-loss coverage (engine/stops.py; docs/rules.md, "Stop-loss coverage") ---------------


def _stops(f: Figures) -> list[StopOrder] | None:
    """The position's protective stops; None where the account's stops are not read."""
    stops = f.account.account.stops
    if stops is None:
        return None
    lp = f.position
    return protective(stops, lp.position.symbol, lp.position.side, lp.mark)


def _stop_coverage(f: Figures) -> Decimal | None:
    stops = _stops(f)
    return None if stops is None else stop_coverage(stops, f.position.position.contracts)


def _stop_missing(f: Figures) -> Decimal | None:
    stops = _stops(f)
    return None if stops is None else _flag(not stops)


def _stop_price(f: Figures) -> Decimal | None:
    stops = _stops(f)
    return None if not stops else stop_loss_price(stops, f.position.position.side)


def _stop_beyond_liquidation(f: Figures) -> Decimal | None:
    stop = _stop_price(f)
    if stop is None:
        return None
    liq = f.account.liquidation_price(f.index)
    if liq is None:
        return None
    lp = f.position
    return beyond_liquidation(stop, liq, lp.position.side, lp.mark)


def _stop_beyond_clear(f: Figures, rule: Condition) -> bool:
    """The closest stop provably fires before the liquidation by more than an "above" rule's
    threshold allows: with the stop a fraction ``S`` of the mark away, the value is ``S - D``
    (``D`` the liquidation's distance on the adverse side), so a liquidation provably
    farther than ``S - threshold`` (either way: the book's bound) cannot breach it."""
    if rule.above is None or f.index < 0:
        return False
    stop = _stop_price(f)
    if stop is None:
        return True  # no stop with a price: no value, nothing to breach
    lp = f.position
    away = (lp.mark - stop) * lp.position.side / lp.mark
    return f.account.liquidation_beyond(f.index, away - rule.above)


def _stop_loss(f: Figures) -> Decimal | None:
    stop = _stop_price(f)
    if stop is None:
        return None
    p = f.position.position
    return loss_at(stop, p.side, p.quantity, p.entry_price, p.inverse)


def _stop_loss_share(f: Figures) -> Decimal | None:
    loss = _stop_loss(f)
    if loss is None:
        return None
    equity = sum((pool.margin_balance for pool in f.account.pools), Decimal(0))
    return None if equity <= 0 else loss / equity


def _reported_stop(
    figure: Callable[[StopFigures], Decimal | None],
) -> Callable[[ExchangeRatioPosition], Decimal | None]:
    """A stop figure of a position the exchange's figures describe; None where its stops are
    not read (never a "no stop" from orders alertd could not see)."""

    def read(p: ExchangeRatioPosition) -> Decimal | None:
        return None if p.stop is None else figure(p.stop)

    return read


STOP_METRICS: tuple[Metric, ...] = (
    Metric(
        "stop_coverage",
        Scope.POSITION,
        Unit.FRACTION,
        "below",
        "fraction of the position's size its protective stops close (a stop triggering on an "
        "adverse move that reduces or closes it; a close-position stop: 1; laddered stops add "
        "up, at most 1); 0 = no protective stop; no value where the stops are not read",
        Needs.POOL,
        _stop_coverage,
        reported=_reported_stop(lambda s: s.coverage),
    ),
    Metric(
        "stop_missing",
        Scope.POSITION,
        Unit.FLAG,
        "above",
        "1 while the position has no protective stop, else 0; no value where the stops are "
        "not read",
        Needs.POOL,
        _stop_missing,
        title="no stop-loss",
        resolved_title="stop-loss set",
        reported=_reported_stop(lambda s: _flag(not s.orders)),
    ),
    Metric(
        "stop_loss_price",
        Scope.POSITION,
        Unit.PRICE,
        "below",
        "trigger price of the protective stop closest to the mark (a long's highest, a "
        "short's lowest; riskier below for a long, above for a short); no value without one "
        "or for a trailing stop whose current trigger the exchange does not report",
        Needs.POOL,
        _stop_price,
        reported=_reported_stop(lambda s: s.price),
    ),
    Metric(
        "stop_beyond_liquidation",
        Scope.POSITION,
        Unit.FRACTION,
        "above",
        "how far the closest protective stop lies beyond the liquidation price, as a fraction "
        "of the mark: positive = the position is liquidated before the stop can trigger; "
        "negative = the stop fires first; no value unless the liquidation price is on the "
        "adverse side of the mark",
        Needs.LIQUIDATION,
        _stop_beyond_liquidation,
        clear=_stop_beyond_clear,
        reported=_reported_stop(lambda s: s.beyond_liquidation),
    ),
    Metric(
        "stop_loss",
        Scope.POSITION,
        Unit.MONEY,
        "above",
        "the position's loss from its entry if the mark reaches the closest protective stop "
        "(the whole position at the trigger price; fees and slippage not counted); negative "
        "= a stop that locks in profit",
        Needs.POOL,
        _stop_loss,
        reported=lambda p: p.stop_loss,
    ),
    Metric(
        "stop_loss_share",
        Scope.POSITION,
        Unit.FRACTION,
        "above",
        "`stop_loss` as a share of the account's equity (the margin balance of all its "
        "pools: cross and isolated; where the exchange's ratio stands in, the exchange's own "
        "equity of the account, moved with the marks)",
        Needs.POOL,
        _stop_loss_share,
        reported=lambda p: p.stop_loss_share,
    ),
)


# --- concentration and auto-deleveraging (docs/rules.md, "Concentration, leverage, ADL") ----

# "Fast" for the ADL metric: the mark's realized volatility over the rule's `window`, scaled
# to an hour, at least this. 1% an hour is about three times BTC's usual (0.3-0.5%/h on calm
# days; the crashes docs/lead-time.md replays ran at 2-6%/h): the markets in which others'
# liquidations outrun the insurance fund.
FAST_HOURLY_VOLATILITY = 0.01
ADL_WINDOW_S = 900.0


def _adl_risk(f: Figures) -> Decimal | None:
    """The position's ADL rank while it is in profit in a fast market, 0 otherwise; no value
    while the exchange gives no rank or the window cannot tell how fast the market is."""
    lp = f.position
    rank = lp.position.adl_rank
    if rank is None:
        return None
    if lp.upnl <= 0:
        return Decimal(0)  # a losing position is never chosen to be deleveraged
    window = _window(f, lp.symbol)
    sigma = None if window is None else window.volatility(f.window_s)
    if sigma is None:
        return None
    return rank if sigma * math.sqrt(HOUR) >= FAST_HOURLY_VOLATILITY else Decimal(0)


_GUARD_ACCOUNT_METRICS = (
    Metric(
        "concentration",
        Scope.ACCOUNT,
        Unit.FRACTION,
        "above",
        "the largest position's share of the notional of all the account's positions (cross "
        "and isolated; a long and a short of one symbol are two positions); no value with "
        "fewer than two positions",
        Needs.POOL,
        lambda f: f.account.concentration,
        title="largest position {value} of notional",
    ),
    Metric(
        "margin_concentration",
        Scope.ACCOUNT,
        Unit.FRACTION,
        "above",
        "the largest position's share of the maintenance margin of all the account's "
        "positions (the one whose loss hurts most); no value with fewer than two positions",
        Needs.POOL,
        lambda f: f.account.margin_concentration,
        title="largest position {value} of margin",
    ),
)
_GUARD_POSITION_METRICS = (
    Metric(
        "adl_rank",
        Scope.POSITION,
        Unit.RANK,
        "above",
        "the exchange's auto-deleveraging queue position, normalised: 0 = last in the queue, "
        "1 = first in line (docs/exchanges.md gives each exchange's scale); no value where "
        "the exchange gives none (Hyperliquid)",
        Needs.POOL,
        lambda f: f.position.position.adl_rank,
        title="ADL queue {value}",
    ),
    Metric(
        "adl_risk",
        Scope.POSITION,
        Unit.RANK,
        "above",
        "`adl_rank` while the position is in profit and the market is fast (the mark's "
        "realized volatility over `window`, default 15m, at least 1% an hour), else 0: the "
        "moments the exchange may close it at a liquidated trader's bankruptcy price",
        Needs.POOL,
        _adl_risk,
        window_s=ADL_WINDOW_S,
        title="first in the ADL queue ({value}) in a fast market",
        resolved_title="out of the ADL danger zone",
    ),
    Metric(
        "insurance_fund_drop",
        Scope.POSITION,
        Unit.FRACTION,
        "above",
        "how far the exchange's insurance fund behind the position's symbol fell from its "
        "high over `builtin_rules.insurance_fund_window` (0.2 = a fifth of it gone); no value "
        "unless `builtin_rules.insurance_fund` is on and the exchange publishes it (Binance)",
        Needs.POOL,
        lambda f: f.feed.insurance_drops.get(f.position.symbol),
        title="insurance fund down {value}",
        resolved_title="insurance fund recovered",
    ),
)
# --- order-book metrics: gap (negative-balance) risk (docs/rules.md, "Gap risk", states the
# model and its limits; the walk itself is alertd/engine/orderbook.py) ----------------------


def position_close(live: LiveAccount, index: int, book: OrderBook) -> CloseCost:
    """Closing position ``index`` whole at market into ``book`` now."""
    lp = live.positions[index]
    p = lp.position
    return close_cost(book, p.side is Side.LONG, lp.leg.quantity, lp.mark, p.inverse)


def _book(f: Figures) -> OrderBook | None:
    return None if f.books is None else f.books.get(f.position.symbol)


def _close_slippage(f: Figures) -> Decimal | None:
    book = _book(f)
    return None if book is None else position_close(f.account, f.index, book).slippage


def position_shortfall(live: LiveAccount, index: int, book: OrderBook) -> Decimal | None:
    """What closing position ``index`` whole at its liquidation price into ``book`` moved
    there loses past its bankruptcy price (:func:`~alertd.engine.orderbook.gap_shortfall`);
    ``None`` without a liquidation or bankruptcy price, or an empty book side."""
    liq = live.liquidation_price(index)
    bankrupt = live.bankruptcy_price(index)
    if liq is None or bankrupt is None:
        return None
    lp = live.positions[index]
    p = lp.position
    close = ForcedClose(p.side is Side.LONG, lp.leg.quantity, liq, bankrupt, p.inverse)
    return gap_shortfall(book, close)


def _gap_risk(f: Figures) -> Decimal | None:
    book = _book(f)
    return None if book is None else position_shortfall(f.account, f.index, book)


# the gap-risk proof compares a ratio of two solved prices: far above the solver's rounding
GAP_MARGIN = Decimal("1e-9")


@dataclass(frozen=True, slots=True)
class GapProof:
    """Closing a position at its liquidation price loses nothing past its bankruptcy price
    with a book whose walk for the position's size averages ``phi`` of the mid at or above
    ``floor`` (a long) or at or below ``ceiling`` (a short): see :func:`gap_proof`. Without
    both (``None``), only while there is no book."""

    symbol: str
    long: bool
    quantity: Decimal
    floor: Decimal | None = None
    ceiling: Decimal | None = None

    def fits(self, book: OrderBook | None) -> bool:
        """The position's ``gap_risk`` is 0 or has no value with ``book``, wherever the
        marks are."""
        if book is None:
            return True  # no book: no value
        fill = book.close(self.long, self.quantity, False)
        mid = book.mid
        if fill.last is None or mid is None or self.quantity <= 0:
            return True  # no value (an empty side), or nothing asked for
        if self.floor is None and self.ceiling is None:
            return False
        q = self.quantity
        phi = (fill.u_total + (q - fill.filled) * fill.last) / (q * mid)
        if self.floor is not None:
            return phi >= self.floor
        assert self.ceiling is not None
        return phi <= self.ceiling


def gap_proof(live: LiveAccount, index: int, above: Decimal | None) -> GapProof:
    """What proves position ``index``'s ``gap_risk`` at most an "above" rule's ``above``
    (0 or no value), whatever the marks, from the book's walk alone.

    Closing at the liquidation price into the book moved there fills at ``phi x liq`` on
    average (``phi`` from the book's walk for the position's size alone); nothing is lost past
    the bankruptcy price ``b`` while ``b <= phi x liq`` (a long; ``>=`` a short). For one
    linear leg liquidated alone, the equity is a line of slope ``quantity`` in its price,
    zero at ``b`` and equal to the pool's requirement at ``liq``, which is at least the leg's
    own, at least ``rate x quantity x liq`` (:func:`~alertd.engine.book.requirement_rate`;
    every other term of the pool's requirement at least 0: its other legs', its liabilities',
    no coin, no lending tier, one cross pool holding positions, the band's own precondition,
    :meth:`~alertd.engine.book.LiveAccount.others_require_no_less_than_zero`; fire15's
    review found a second cross pool's legs unchecked): ``|liq - b| >= rate x liq`` wherever
    the marks go. So
    ``phi >= 1 - rate`` (a long; ``phi <= 1 + rate`` a short) proves the value 0, whatever
    the marks. Rounding the liquidation price towards the mark only widens the gap. Where
    that does not apply (an inverse leg, a hedged twin, a rule that fires at 0 or below), the
    proof holds only without a book (no value)."""
    lp = live.positions[index]
    p = lp.position
    long = p.side is Side.LONG
    rate = lp.requirement_rate()
    if rate is not None:
        # the equity's slope is at most quantity x pnl_rate: the gap at least rate / pnl_rate
        rate /= lp.pnl_rate
    if (
        above is not None
        and above >= 0
        and not p.inverse
        and live.alone(index)
        and rate is not None
        and live.others_require_no_less_than_zero(index)
    ):
        if long:
            return GapProof(lp.symbol, long, lp.leg.quantity, floor=1 - rate + GAP_MARGIN)
        return GapProof(lp.symbol, long, lp.leg.quantity, ceiling=1 + rate - GAP_MARGIN)
    return GapProof(lp.symbol, long, lp.leg.quantity)


def _gap_clear(f: Figures, rule: Condition) -> bool:
    """The position's gap risk is provably 0 or has no value, at or below an "above" rule's
    threshold of 0 or more (:func:`gap_proof`): the shortfall's solves (the bankruptcy
    price, the moved walk) were a tenth of a firing daemon's evaluation at 1,000 accounts
    (fire15), where the book takes every position at its liquidation price."""
    if f.index < 0 or rule.above is None or rule.above < 0:
        return False
    live, index = f.account, f.index
    lp = live.positions[index]
    book = _book(f)
    # the proof reads no mark and nothing the marks move (the account's shape, fixed for the
    # position's life), and a book is replaced whole at each fetch: its verdict is kept with
    # the position for the book it was found for (derived at every evaluation, it cost what
    # it spared)
    key = "gap_clear"
    kept = lp.memo.get(key)
    if isinstance(kept, tuple) and kept[0] is book:
        return bool(kept[1])
    fits = gap_proof(live, index, rule.above).fits(book)
    lp.memo[key] = (book, fits)
    return fits


_BOOK_LIMITS = (
    '; no value without a fresh order book (docs/rules.md, "Gap risk": the model and its limits)'
)


def _gap_metrics() -> tuple[Metric, ...]:
    return (
        Metric(
            "bankruptcy_buffer",
            Scope.POSITION,
            Unit.FRACTION,
            "below",
            "distance between the liquidation price and the bankruptcy price (where the equity "
            "behind the position is zero), as a fraction of the mark: how far past its "
            "liquidation price a close may fill before the account owes more than it holds",
            Needs.LIQUIDATION,
            lambda f: f.account.bankruptcy_buffer(f.index),
        ),
        Metric(
            "close_slippage",
            Scope.POSITION,
            Unit.FRACTION,
            "above",
            "how much worse than the mark closing the whole position at market fills now, on "
            "average, as a fraction of the mark (0.002 = 0.2%), from the exchange's order book "
            "(bounded depth); with a book too thin for the size, the rest is valued at its "
            "deepest price (a lower bound)" + _BOOK_LIMITS,
            Needs.POOL,
            _close_slippage,
            reads_book=True,
        ),
        Metric(
            "gap_risk",
            Scope.POSITION,
            Unit.MONEY,
            "above",
            "what closing the whole position at its liquidation price would lose past the "
            "bankruptcy price (settle currency; 0: the book takes it without a negative "
            "balance), with the current order book's shape moved to the liquidation price; "
            "with a book too thin for the size, a lower bound" + _BOOK_LIMITS,
            Needs.LIQUIDATION,
            _gap_risk,
            clear=_gap_clear,
            title="gap risk: {value} past bankruptcy at liq.",
            resolved_title="gap risk gone: the book takes the position at liq.",
            reads_book=True,
        ),
    )


def book_rules(rules: Iterable[Rule]) -> list[Rule]:
    """The rules that read an order book (in any condition): their symbols' books are
    fetched, no others."""
    return [
        r
        for r in rules
        if any((m := lookup(c.metric, c.scope)) is not None and m.reads_book for c in r.conditions)
    ]


def book_covers(rules: Iterable[Rule]) -> Callable[[str, str, str], bool] | None:
    """Whether an order-book rule applies to (account, exchange, symbol); ``None`` when no
    rule reads an order book (then none is fetched)."""
    reading = book_rules(rules)
    if not reading:
        return None

    def covers(account: str, exchange: str, symbol: str) -> bool:
        subject = _subject(account, exchange, symbol, "")
        return any(r.applies_to(subject) for r in reading)

    return covers


def _liquidation_clear(f: Figures, rule: Condition) -> bool:
    """Every distance (or this position's) provably above a "below" rule's threshold."""
    if rule.below is None:
        return False
    if f.index < 0:
        return f.account.liquidations_beyond(rule.below)
    return f.account.liquidation_beyond(f.index, rule.below)


A, P = Scope.ACCOUNT, Scope.POSITION
METRICS: tuple[Metric, ...] = (
    Metric(
        "worst_ratio",
        A,
        Unit.RATIO,
        "above",
        "highest margin ratio in the account: the cross pool's, or any isolated position's; "
        "1 = liquidation. Where alertd cannot compute the account (a mode it does not model, "
        "incomplete data) the exchange's own account ratio stands in, labelled as such",
        Needs.POOL,
        _ratio(lambda live: live.worst_ratio),
        exchange_stands_in=True,
        gauge="alertd_margin_ratio",
    ),
    Metric(
        "margin_ratio",
        A,
        Unit.RATIO,
        "above",
        "the cross pool's maintenance margin / margin balance; 1 = liquidation (the exchange's "
        "own account ratio stands in as for `worst_ratio`)",
        Needs.POOL,
        _ratio(lambda live: live.cross.ratio),
        exchange_stands_in=True,
        gauge="alertd_cross_margin_ratio",
    ),
    Metric(
        "buffer",
        A,
        Unit.MONEY,
        "below",
        "cross margin balance minus maintenance margin",
        Needs.POOL,
        lambda f: f.cross_pool.buffer,
        per_pool=True,
    ),
    Metric(
        "crash_distance",
        A,
        Unit.FRACTION,
        "below",
        "the uniform relative move of all marks that liquidates something (0.15 = 15%); "
        "0 once something is at or past liquidation",
        Needs.CRASH,
        lambda f: _abs(f.account.crash_distance()),
    ),
    Metric(
        "effective_leverage",
        A,
        Unit.LEVERAGE,
        "above",
        "cross notional / cross margin balance",
        Needs.POOL,
        lambda f: f.account.effective_leverage,
    ),
    Metric(
        "margin_balance",
        A,
        Unit.MONEY,
        "below",
        "cross wallet balance + unrealized PnL",
        Needs.POOL,
        lambda f: f.cross_pool.margin_balance,
        per_pool=True,
    ),
    Metric(
        "maintenance_margin",
        A,
        Unit.MONEY,
        "above",
        "cross maintenance margin",
        Needs.POOL,
        lambda f: f.cross_pool.mm,
        per_pool=True,
    ),
    Metric(
        "feed_stale_s",
        A,
        Unit.SECONDS,
        "above",
        "seconds since the oldest held symbol's last mark price",
        Needs.FEED,
        lambda f: f.feed.stale_s,
        title="feed stale for {value}",
        resolved_title="feed fresh again",
    ),
    Metric(
        "feed_down_s",
        A,
        Unit.SECONDS,
        "above",
        "seconds the account's streams have been disconnected",
        Needs.FEED,
        lambda f: f.feed.down_s,
        title="feed down for {value}",
        resolved_title="feed connected again",
    ),
    Metric(
        "private_stream_missed",
        A,
        Unit.FLAG,
        "above",
        "1 while a change of a position that a reconcile found was never pushed on the "
        "account's private stream, which looked open (a dead stream the reconciles alone "
        "would keep fresh), else 0; the stream is reopened, and it ends at the next position "
        "push or at a reconcile since that misses nothing",
        Needs.FEED,
        lambda f: _flag(f.feed.missed is not None),
        title="private stream missed a change",
        resolved_title="private stream delivering again",
    ),
    Metric(
        "account_error",
        A,
        Unit.FLAG,
        "above",
        "1 when the account's feed stopped for good (bad key, an account mode alertd refuses), "
        "else 0; an IP ban stops no account (one `ip-banned` message for the host, below)",
        Needs.FEED,
        lambda f: Decimal(1 if f.feed.fatal else 0),
        title="feed stopped",
        resolved_title="feed running again",
    ),
    Metric(
        "exchange_margin_ratio",
        A,
        Unit.RATIO,
        "above",
        "the exchange's own account margin ratio, as alertd's (requirement / equity), read at "
        "every reconcile and moved with the marks in between; no value where the exchange "
        "reports none",
        Needs.FEED,
        lambda f: f.feed.exchange_ratio,
    ),
    Metric(
        "ratio_drift",
        A,
        Unit.FRACTION,
        "above",
        "relative difference between alertd's margin ratio and the exchange's own at the last "
        "reconcile, |alertd - exchange| / exchange; no value where alertd does not compute "
        "the account or the exchange reports no ratio",
        Needs.FEED,
        lambda f: f.feed.ratio_drift,
    ),
    Metric(
        "mode_not_computed",
        A,
        Unit.FLAG,
        "above",
        "1 while the account is in a mode alertd does not compute (portfolio margin, "
        "multi-collateral pools, legacy accounts): its figures are withheld and the exchange's "
        "own ratio shown where it reports one; else 0",
        Needs.FEED,
        lambda f: _flag(f.feed.mode_limits is not None),
    ),
    Metric(
        "incomplete_data",
        A,
        Unit.FLAG,
        "above",
        "1 while the account holds something alertd cannot compute (an unknown market, a "
        "margin pool it does not compute, a missing tier table or price), else 0",
        Needs.FEED,
        lambda f: _flag(bool(f.feed.missing)),
    ),
    Metric(
        "fee_gap",
        A,
        Unit.FRACTION,
        "above",
        "the largest share of a pool's maintenance margin that alertd's figures leave out for "
        "a part of the fee rates no read could tell (Bybit: the GST an India-KYC account pays "
        "on the fee to close, where neither its fills nor its key's KYC region tell it), at "
        "the current marks; 0 where nothing is left out",
        Needs.POOL,
        _fee_gap,
        title="maintenance margin up to {value} low: a fee rate unread",
        resolved_title="fee rates read: maintenance margin complete",
    ),
    Metric(
        "fee_rate_unread",
        A,
        Unit.FLAG,
        "above",
        "1 while a part of the account's fee rates stands unread (`fee_gap` says how much "
        "maintenance margin it leaves out: 0 without a position, though still unread), also "
        "while its data is incomplete; 0 once a read tells it",
        Needs.FEED,
        lambda f: _flag(f.feed.fee_gap is not None),
        title="a fee rate unread",
        resolved_title="fee rates read: maintenance margin complete",
        # a stopped account's rate is as unread as before: kept firing beside its
        # account-error, resolved by the read after its restart (idx13); unknown too while
        # the account bootstraps, at every start (a warning loaded from the store resolved
        # "fee rates read" with nothing read, then fired again: review of idx13)
        unknown_unwatched=True,
    ),
    *_predictive_metrics(A),
    *_GUARD_ACCOUNT_METRICS,
    Metric(
        "margin_ratio",
        P,
        Unit.RATIO,
        "above",
        "the position's own ratio (isolated) or its pool's (cross); 1 = liquidation",
        Needs.POOL,
        lambda f: f.position.pool.ratio,
    ),
    Metric(
        "liquidation_distance",
        P,
        Unit.FRACTION,
        "below",
        "distance from mark to liquidation price, as a fraction of the mark; negative once "
        "past it; no value when no price liquidates it",
        Needs.LIQUIDATION,
        lambda f: f.account.liquidation_distance(f.index),
        clear=_liquidation_clear,
        reported=lambda p: p.liquidation_distance,
    ),
    Metric(
        "effective_leverage",
        P,
        Unit.LEVERAGE,
        "above",
        "notional / the margin balance behind the position",
        Needs.POOL,
        lambda f: f.position.effective_leverage,
    ),
    Metric(
        "unrealized_pnl",
        P,
        Unit.MONEY,
        "below",
        "unrealized PnL",
        Needs.POOL,
        lambda f: f.position.upnl,
    ),
    Metric(
        "notional",
        P,
        Unit.MONEY,
        "above",
        "position value at the mark",
        Needs.POOL,
        lambda f: f.position.notional,
    ),
    *_predictive_metrics(P),
    *STOP_METRICS,
    *_GUARD_POSITION_METRICS,
    *_gap_metrics(),
)
del A, P

ACCOUNT_METRICS: dict[str, Metric] = {m.name: m for m in METRICS if m.scope is Scope.ACCOUNT}
POSITION_METRICS: dict[str, Metric] = {m.name: m for m in METRICS if m.scope is Scope.POSITION}
_BY_SCOPE = {Scope.ACCOUNT: ACCOUNT_METRICS, Scope.POSITION: POSITION_METRICS}


# a feed with nothing to report: for figures read outside an evaluation (status, /metrics)
QUIET = FeedStatus(Decimal(0), Decimal(0), None)


PUBLISHED: dict[Scope, tuple[Metric, ...]] = {
    scope: tuple(m for m in metrics.values() if m.published) for scope, metrics in _BY_SCOPE.items()
}
Values = dict[str, Decimal]  # metric name -> value, only the metrics with one


def published_values(
    live: LiveAccount,
    feed: FeedStatus,
    dynamics: Mapping[str, MarkWindow] | None = None,
    books: Mapping[str, OrderBook] | None = None,
    crash: Decimal | None = None,
) -> tuple[Values, tuple[Values, ...]]:
    """The account's published metrics (:attr:`Metric.published`), then each position's,
    read as a rule reads them (a price-dynamics metric at its default parameters); ``crash``:
    the crash distance where the caller solved it (its own pace), else none is solved."""
    at = Figures(feed, live)
    account: Values = {}
    for m in PUBLISHED[Scope.ACCOUNT]:
        value = crash if m.needs is Needs.CRASH else m.extract(at)
        if value is not None:
            account[m.name] = value
    positions = []
    for i in range(len(live.positions)):
        at = Figures(feed, live, i, dynamics, books=books)
        values: Values = {}
        for m in PUBLISHED[Scope.POSITION]:
            at.horizon_s, at.window_s = m.horizon_s or 0.0, m.window_s or 0.0
            value = m.extract(at)
            if value is not None:
                values[m.name] = value
        positions.append(values)
    return account, tuple(positions)


def pool_values(live: LiveAccount, feed: FeedStatus, pool: LivePool) -> Values:
    """The published per-pool metrics (:attr:`Metric.per_pool`) of ``pool``, one of
    ``live``'s cross pools, read as a rule reads the account's riskiest pool."""
    at = Figures(feed, live, pool=pool)
    return {
        m.name: value
        for m in PUBLISHED[Scope.ACCOUNT]
        if m.per_pool and (value := m.extract(at)) is not None
    }


def metric_scope(metric: str) -> Scope | None:
    """The scope a metric lives in when a rule does not say (account wins a tie)."""
    if metric in ACCOUNT_METRICS:
        return Scope.ACCOUNT
    if metric in POSITION_METRICS:
        return Scope.POSITION
    return None


def lookup(metric: str, scope: Scope | None = None) -> Metric | None:
    """The registry entry for ``metric`` in ``scope`` (default: the metric's own scope)."""
    scope = scope or metric_scope(metric)
    return None if scope is None else _BY_SCOPE[scope].get(metric)


def unit_of(metric: str) -> Unit | None:
    """A metric's unit (the same in both scopes where a name is in both)."""
    found = lookup(metric)
    return None if found is None else found.unit


def needs_of(rules: Iterable[Rule]) -> Needs:
    """The most any of ``rules`` needs computed (for any of its conditions)."""
    found = [lookup(c.metric, c.scope) for r in rules for c in r.conditions]
    return max((m.needs for m in found if m is not None), default=Needs.FEED)


# --- observations ---------------------------------------------------------------------------


def wanted_of(rules: Iterable[Rule]) -> frozenset[str]:
    """What :func:`observe` must read for ``rules``: each rule's series (its metric, with its
    parameters for a price-dynamics metric). A price-dynamics series is asked for in the
    rule's scope only (``position:...``): the account's figure needs a crash solve. A rule's
    ``also`` conditions are read like its own metric."""
    out = set()
    for r in rules:
        for c in r.conditions:
            m = lookup(c.metric, c.scope)
            out.add(f"{c.scope.value}:{c.series}" if m is not None and m.dynamic else c.series)
    return frozenset(out)


def dynamics_span_s(rules: Iterable[Rule]) -> float:
    """The longest lookback any of ``rules`` reads the price dynamics over (0 for none)."""
    spans = [
        c.window_s if c.window_s is not None else m.window_s or 0.0
        for r in rules
        for c in r.conditions
        if (m := lookup(c.metric, c.scope)) is not None and m.dynamic
    ]
    return max(spans, default=0.0)


# a price-dynamics metric read with its parameters: (observation key, metric, horizon, window)
_Series = tuple[str, Metric, float, float]


# immutable, and the same few per account at every evaluation: built once each (1,000
# accounts of three positions hold 4,000)
@functools.lru_cache(maxsize=65_536)
def _subject(
    account: str, exchange: str, symbol: str | None = None, side: str | None = None
) -> Subject:
    return Subject(account, exchange, symbol, side)


@functools.lru_cache(maxsize=64)  # one entry per rule set in use
def _selection(
    wanted: frozenset[str] | None,
) -> tuple[tuple[Metric, ...], tuple[Metric, ...], tuple[_Series, ...], tuple[_Series, ...]]:
    """The account and position metrics among ``wanted`` (all of them for ``None``, the
    price-dynamics ones at their defaults), then the price-dynamics series of each scope."""

    def pick(metrics: dict[str, Metric]) -> tuple[Metric, ...]:
        return tuple(
            m for m in metrics.values() if not m.dynamic and (wanted is None or m.name in wanted)
        )

    def series(scope: Scope) -> tuple[_Series, ...]:
        metrics = _BY_SCOPE[scope]
        if wanted is None:
            keys = [m.name for m in metrics.values() if m.dynamic]
        else:  # this scope's, and those asked for in no scope
            prefix = scope.value + ":"
            keys = sorted(
                k.removeprefix(prefix) for k in wanted if k.startswith(prefix) or ":" not in k
            )
        out = []
        for key in keys:
            name, horizon, window = parse_series(key)
            m = metrics.get(name)
            if m is None or not m.dynamic:
                continue
            assert m.window_s is not None
            out.append((key, m, horizon or m.horizon_s or 0.0, window or m.window_s))
        return tuple(out)

    return (
        pick(ACCOUNT_METRICS),
        pick(POSITION_METRICS),
        series(Scope.ACCOUNT),
        series(Scope.POSITION),
    )


Shortcuts = Sequence[tuple[Metric, Sequence[Condition]]]


def shortcuts(rules: Iterable[Rule]) -> Shortcuts:
    """The position metrics with a :attr:`Metric.clear` proof, each with the conditions on it
    (rules' own metrics and their ``also`` conditions: a metric is spared only when none of
    them can breach)."""
    conditions = [c for r in rules for c in r.conditions]
    found = []
    for m in POSITION_METRICS.values():
        on = [c for c in conditions if c.scope is Scope.POSITION and c.metric == m.name]
        if m.clear is not None and on:
            found.append((m, tuple(on)))
    return tuple(found)


def _cleared(figures: Figures, proofs: Shortcuts) -> set[str]:
    """The metrics among ``proofs`` that provably breach none of their rules."""
    found = set()
    for m, on in proofs:
        clear = m.clear
        if clear is not None and all(clear(figures, r) for r in on):
            found.add(m.name)
    return found


def observe(
    account: str,
    exchange: str,
    live: LiveAccount | None,
    feed: FeedStatus,
    wanted: Collection[str] | None = None,
    dynamics: Mapping[str, MarkWindow] | None = None,
    *,
    proofs: Shortcuts = (),
    alerted: Mapping[str, Collection[str]] | None = None,
    books: Mapping[str, OrderBook] | None = None,
) -> list[Observation]:
    """One observation for the account and one per position, with the ``wanted`` metrics
    (rules' series, see :func:`wanted_of`; default: all). ``live`` is ``None`` while the
    account's data is incomplete: then only the feed's metrics are observed (the exchange's
    ratio where it stands in, and its positions with the metrics that read the exchange's
    figures of them, :attr:`Metric.reported`), and alerts on the others stay as they are.
    ``dynamics`` are the price windows of the exchange's symbols, which the price-dynamics
    metrics read (without them those have no value); ``books`` the order books the order-book
    metrics read (likewise), kept in the positions' contexts for the messages.

    With ``proofs`` (from :func:`shortcuts`), a position metric that provably breaches none
    of its rules is left out unless a rule with an alert state on that position reads it
    (``alerted``: per subject key with an alert state, the metrics its rules with a state
    read), and a position with no alert state left with no metric is not observed at all:
    for the rule engine that is the same as computing it (a rule with no state and a value
    that cannot breach it: nothing to start, nothing to advance).

    The contexts hold the live account (``live``, and ``index`` for a position): a message
    that quotes full figures gets them from :func:`with_full_metrics`.
    """

    account_metrics, position_metrics, account_series, position_series = _selection(
        None if wanted is None else frozenset(wanted)
    )
    alerted = {} if alerted is None else alerted
    subject = _subject(account, exchange)
    if live is None:
        idle = Figures(feed)
        values = {m.name: m.extract(idle) for m in account_metrics if m.observable(feed)}
        observed = [Observation(subject, values, Context(fatal=feed.fatal, feed=feed))]
        return observed + _reported(account, exchange, feed, position_metrics)
    figures = Figures(feed, live)
    # figures while not watched: the book's, as last read (an evaluation after a fatal error)
    values = {m.name: m.extract(figures) for m in account_metrics if m.known(feed)}
    for key, m, horizon, window in account_series:
        values[key] = m.extract(Figures(feed, live, -1, dynamics, horizon, window))
    out = [Observation(subject, values, Context(fatal=feed.fatal, live=live, feed=feed))]
    if not position_metrics and not position_series:
        return out  # no position rule: no position alert to advance or resolve
    everywhere = _cleared(figures, proofs) if proofs else set()
    if (
        everywhere
        and not position_series  # the price-dynamics series have no proof: always read
        and all(m.name in everywhere for m in position_metrics)
        and not any(k != account for k in alerted)
    ):
        return out  # nothing can breach, and no position alert to advance or resolve
    proofs = [(m, on) for m, on in proofs if m.name not in everywhere]
    for i, lp in enumerate(live.positions):
        figures = Figures(feed, live, i, books=books)
        p = lp.position
        subject = _subject(account, exchange, p.symbol, p.side.label)
        held = alerted.get(subject.key)
        if not (everywhere or proofs):
            values = {m.name: m.extract(figures) for m in position_metrics}
        else:
            # a crash day: every position has an alert (on its distance to liquidation, say),
            # and the other metrics it is observed with (gap risk, stops) need no reading
            # while they provably breach nothing and no rule with a state reads them
            if held:
                # a metric a rule with a state here reads is read whatever its proof says:
                # not proven (on a crash day every position's distance is alerted, and its
                # proof, a bound on the liquidation, was a tenth of a firing evaluation)
                unheld = [(m, on) for m, on in proofs if m.name not in held]
                spared = everywhere | _cleared(figures, unheld) if unheld else everywhere
                spared = spared.difference(held)
            else:
                spared = everywhere | _cleared(figures, proofs) if proofs else everywhere
            values = {m.name: m.extract(figures) for m in position_metrics if m.name not in spared}
            if held is None and not values and not position_series:
                continue
        for key, m, horizon, window in position_series:
            values[key] = m.extract(Figures(feed, live, i, dynamics, horizon, window))
        book = None if books is None else books.get(p.symbol)
        out.append(Observation(subject, values, Context(live=live, index=i, book=book)))
    return out


def _reported(
    account: str, exchange: str, feed: FeedStatus, metrics: Sequence[Metric]
) -> list[Observation]:
    """The positions of an account whose exchange's ratio stands in, each observed with the
    ``metrics`` that read the exchange's figures of it (:attr:`Metric.reported`): its
    liquidation price and the stops against it are the exchange's, and the context carries
    the position so that a message says so. None while the ratio does not stand in (then a
    position's alerts stay as they are). A position is observed even with none of them: its
    alerts on other metrics stay as they are, where no observation would resolve them as
    closed. On the positions whose alerts are kept (:attr:`FeedStatus.kept_positions`) a
    figure the exchange's answer lacks is left out, so that their alerts stay as they are
    (not resolved for "no value"), and one it gives is read as ever; one the exchange's list
    cannot describe (a market alertd does not know) is observed with no value at all."""
    readable = [m for m in metrics if m.reported is not None]
    if not feed.exchange_ratio_stands_in or not metrics:
        return []  # (no position rule: no position alert to advance or resolve)
    kept = set(feed.kept_positions)
    out = []
    for p in feed.positions:
        held = (p.symbol, p.side.label)
        values = {m.name: m.reported(p) for m in readable if m.reported is not None}
        if held in kept:
            kept.discard(held)
            values = {name: value for name, value in values.items() if value is not None}
        subject = _subject(account, exchange, p.symbol, p.side.label)
        out.append(Observation(subject, values, Context(feed=feed, reported=p)))
    out += [
        Observation(_subject(account, exchange, symbol, side), {}, Context(feed=feed))
        for symbol, side in sorted(kept)
    ]
    return out


def with_full_metrics(
    notes: Sequence[Notification], target_ratio: Decimal | None = None, crash: bool = True
) -> list[Notification]:
    """``notes`` with the full figures a message quotes (``metrics``: liquidation prices,
    what to add or cut; ``position`` for a position's alert) in place of the live account.

    Call it right after the evaluation that produced ``notes``, while the book is at the same
    marks; the full computation runs once per account, and only when something is sent.
    """
    full: dict[int, AccountMetrics] = {}
    out = []
    for n in notes:
        live = n.context.live
        if live is None:
            out.append(n)
            continue
        if id(live) not in full:
            full[id(live)] = compute(live.current(), target_ratio, crash=crash)
        metrics = full[id(live)]
        index = n.context.index
        position = None if index is None else metrics.positions[index]
        context = replace(n.context, live=None, index=None, metrics=metrics, position=position)
        out.append(replace(n, context=context))
    return out


# --- docs/rules.md ---------------------------------------------------------------------------

DOC_BEGIN = (
    "<!-- metric tables: generated from alertd/rules/metrics.py "
    "(ALERTD_WRITE_DOCS=1 pytest tests/test_metric_registry.py); edit the registry -->"
)
DOC_END = "<!-- end of generated metric tables -->"


def metric_tables() -> str:
    """The metric tables of ``docs/rules.md``, from the registry."""
    lines: list[str] = []
    for scope, metrics in _BY_SCOPE.items():
        if lines:
            lines.append("")
        lines += [
            f"## {scope.value.capitalize()} metrics (`scope: {scope.value}`)",
            "",
            "| metric | meaning | unit | risky direction | computed from | `/metrics` |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| `{m.name}` | {m.description} | {m.unit.value} | {m.risky} | {m.computed_from} "
            f"| {f'`{m.gauge_name}`' if m.published else '-'} |"
            for m in metrics.values()
        ]
    return "\n".join(lines)


def with_tables(doc: str) -> str:
    """``doc`` with the text between the markers replaced by :func:`metric_tables`."""
    head, begin, rest = doc.partition(DOC_BEGIN)
    _, end, tail = rest.partition(DOC_END)
    if not begin or not end:
        raise ValueError(f"the markers {DOC_BEGIN!r} and {DOC_END!r} are missing")
    return f"{head}{DOC_BEGIN}\n\n{metric_tables()}\n\n{DOC_END}{tail}"
