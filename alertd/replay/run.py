"""Replaying a price history through the daemon's engine and rules, with the replay's clock.

The same parts as ``alertd run``: the engine's incremental book prices every point, the same
function (:func:`~alertd.rules.metrics.observe`) turns its figures into observations (solving
liquidation prices only for the rules that read them), and the rule engine
(:class:`~alertd.rules.lifecycle.AlertEngine`) decides what fires and when. Only the clock and the
source of marks differ.

Rules on price dynamics (``liquidation_probability`` and the like) read the same
:class:`~alertd.engine.dynamics.MarkWindow` the daemon keeps per symbol, rebuilt as the history
is replayed and never ahead of it: a candle's open enters it at the candle's first point, its
close once the candle is over (the daemon seeds the same way from the exchange's candles).
``warmup``, the candles just before the replay's start, seed it as the daemon's startup does.

Inside a candle only open, high, low and close are known; the path walks
open -> adverse extreme -> favourable extreme -> close, adverse being the side that hurts the
account (low first for a net long). Alerts and liquidation are stamped with the candle's open
time: at one-minute resolution a lead time is known to within a minute.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from alertd.engine.book import Book
from alertd.engine.dynamics import MarkWindow
from alertd.engine.margin import compute
from alertd.engine.model import Account, MarginMode, Position, Side
from alertd.engine.tiers import Tier, TierTable
from alertd.errors import InputError
from alertd.exchanges.registry import get_spec
from alertd.replay.history import Candle, History
from alertd.rules.lifecycle import AlertEngine, Kind
from alertd.rules.metrics import (
    FeedStatus,
    Needs,
    dynamics_reach,
    dynamics_span_s,
    lookup,
    needs_of,
    observe,
    wanted_of,
)
from alertd.rules.model import Observation, Rule
from alertd.validation import decimal_value, short

KEY = "replay"
ZERO = Decimal(0)

_SPEC = re.compile(
    r"^\s*(?P<symbol>\S+)\s+(?P<side>long|short)\s+(?P<size>[\d.]+)\s*@\s*(?P<entry>[\d.]+)"
    r"(?:\s+x(?P<lev>[\d.]+))?(?:\s+(?P<mode>cross|isolated))?\s*$",
    re.IGNORECASE,
)


def position_from_spec(spec: str, exchange: str = "binanceusdm") -> Account:
    """``"BTC/USDT:USDT long 0.5 @ 62000 x20 isolated"`` as a one-position account.

    The margin is the position's initial margin at entry (entry notional / leverage), held in
    the position (isolated) or as the whole cross wallet (cross). Without a snapshot the tier
    table is one bracket at 0.4% (Binance's first BTC bracket); ``--snapshot`` gives exact tiers.
    """
    m = _SPEC.match(spec)
    if m is None:
        raise InputError(
            f"--position {spec!r}: expected 'SYMBOL long|short SIZE @ ENTRY [xLEVERAGE] "
            "[cross|isolated]', e.g. 'BTC/USDT:USDT long 0.5 @ 62000 x20 isolated'"
        )
    symbol = m["symbol"]
    inverse = symbol.endswith(":" + symbol.split("/")[0])  # BTC/USD:BTC settles in the base
    contract_size = Decimal(100) if inverse else Decimal(1)
    try:
        size, entry = decimal_value(m["size"]), decimal_value(m["entry"])
        leverage = decimal_value(m["lev"] or "10")
    except ValueError as exc:
        raise InputError(f"--position {short(spec)}: {exc}") from None
    if size <= 0 or entry <= 0 or leverage <= 0:
        raise InputError(f"--position {spec!r}: size, entry and leverage must be positive")
    venue = get_spec(exchange)  # UnknownExchangeError is an InputError: one line, exit 2
    if inverse and venue.inverse_spec is not None:
        venue = get_spec(venue.inverse_spec)  # binanceusdm: BTC/USD:BTC is a COIN-M market
    profile = venue.profile
    notional = size * contract_size / entry if inverse else size * entry
    margin = notional / leverage
    isolated = (m["mode"] or "cross").lower() == "isolated"
    position = Position(
        symbol=symbol,
        side=Side.LONG if m["side"].lower() == "long" else Side.SHORT,
        contracts=size,
        contract_size=contract_size,
        inverse=inverse,
        entry_price=entry,
        mark_price=entry,
        margin_mode=MarginMode.ISOLATED if isolated else MarginMode.CROSS,
        tiers=TierTable.build([Tier(None, Decimal("0.004"), ZERO)]),
        fee_rate=profile.default_fee_rate,
        isolated_margin=margin if isolated else None,
        leverage=leverage,
    )
    settle = symbol.split(":")[-1] if ":" in symbol else "USDT"
    return Account(profile, "replay", settle, ZERO if isolated else margin, (position,))


BEFORE, AT_ENTRY, TOO_LATE = "before", "at entry", "too late"


@dataclass(frozen=True, slots=True)
class ReplayAlert:
    at_ms: int
    rule: str
    severity: str
    kind: str  # firing | resolved
    value: Decimal | None
    subject: str
    point: int = 0  # the price point it fired at (1 = the replay's first)


@dataclass
class ReplayResult:
    symbol: str
    start_ms: int
    end_ms: int
    points: int
    alerts: list[ReplayAlert] = field(default_factory=list)
    liquidated_at_ms: int | None = None
    liquidation_mark: Decimal | None = None
    liquidation_point: int = 0  # the price point that liquidated (see ReplayAlert.point)
    adverse_first: str = "low"
    liquidation_prices: dict[str, Decimal | None] = field(default_factory=dict)

    def lead_time_s(self, alert: ReplayAlert) -> float | None:
        if self.liquidated_at_ms is None or alert.kind != "firing":
            return None
        return (self.liquidated_at_ms - alert.at_ms) / 1000

    def timing(self, alert: ReplayAlert) -> str | None:
        """What a firing was worth before the liquidation: ``before`` (at least a candle
        ahead: a lead time), ``at entry`` (in the entry's candle: the position was opened at
        risk), ``too late`` (in the liquidation's own candle, or at its price: 0 minutes is
        not a warning); ``None`` without a liquidation or for a resolution."""
        if self.liquidated_at_ms is None or alert.kind != "firing":
            return None
        if alert.point >= self.liquidation_point:
            return TOO_LATE
        if alert.at_ms == self.start_ms:
            return AT_ENTRY
        return TOO_LATE if alert.at_ms == self.liquidated_at_ms else BEFORE


def _path(c: object, adverse_low: bool) -> tuple[Decimal, ...]:
    o, h, low, close = c.open, c.high, c.low, c.close  # type: ignore[attr-defined]
    return (o, low, h, close) if adverse_low else (o, h, low, close)


def replay(
    account: Account,
    history: History,
    rules: Sequence[Rule],
    symbol: str | None = None,
    progress: Callable[[int], None] | None = None,
    shortcut: bool = True,
    warmup: Sequence[Candle] = (),
    watch: Callable[[int, Sequence[Observation]], None] | None = None,
) -> ReplayResult:
    """``watch``: called with (candle time, observations) at every point evaluated (with
    ``shortcut`` off, every point): what the rules saw, for a study of the figures themselves."""
    if not account.positions:
        raise InputError("nothing to replay: the account holds no positions")
    symbol = symbol or account.positions[0].symbol
    held = [p for p in account.positions if p.symbol == symbol]
    if not held:
        raise InputError(f"no position in {symbol} to replay (held: {', '.join(account.symbols)})")
    exchange = account.profile.id
    # the net direction decides which extreme of a candle hurts first
    net = sum((int(p.side) * p.quantity for p in held), ZERO)
    # (an inverse long loses as the price falls too: its liquidation price is below entry)
    adverse_low = net >= 0
    first = history.candles[0]
    start = account.with_marks({symbol: first.open})
    # for the report, and to bound the idle shortcut's search
    base = compute(start)
    liq = {pm.position.key: pm.liquidation_price for pm in base.positions}
    book = Book()
    book.set_account(KEY, start)
    interval_ms = history.interval_ms
    span = dynamics_span_s(rules)
    marks = MarkWindow(span) if span > 0 else None  # kept only when a rule reads it
    dynamics = None if marks is None else {symbol: marks}
    if marks is not None:
        end_s = first.t_ms / 1000
        for c in warmup:
            if c.t_ms < first.t_ms:
                marks.add_candle(c.t_ms, interval_ms, c.open, c.close, end_s)
    engine = AlertEngine(rules)
    quiet = FeedStatus(ZERO, ZERO, None)
    result = ReplayResult(
        symbol,
        first.t_ms,
        history.candles[-1].t_ms,
        0,
        adverse_first="low" if adverse_low else "high",
    )
    result.liquidation_prices = {
        f"{p.symbol} {p.side.label}": liq[p.key] for p in start.positions if p.symbol == symbol
    }
    used = wanted_of(rules)

    def at(price: Decimal) -> tuple[Decimal, list[Observation]]:
        """The daemon's path: the book at ``price``, then the rules' observations."""
        book.apply_account_mark(KEY, symbol, price)
        live = book.live(KEY)
        observed = observe(KEY, exchange, live, quiet, used, dynamics)
        worst = observed[0].metrics.get("worst_ratio")  # read once when a rule reads it
        return live.worst_ratio if worst is None else worst, observed

    # The shortcut: a price past which no rule breaches. The rules on price alone give one
    # price for the whole replay, found by search (a few hundred prices: not with a crash
    # solve in each); those on price dynamics give one per candle, from their reach (how
    # near liquidation they can breach with the window's dynamics, as the candle starts).
    dynamic = [r for r in rules if _reads_dynamics(r)]
    static = [r for r in rules if r not in dynamic]
    reach = dynamics_reach(dynamic) if dynamic else None
    static_engine = AlertEngine(static)
    static_used = wanted_of(static)

    def troubled(price: Decimal) -> bool:
        book.apply_account_mark(KEY, symbol, price)
        live = book.live(KEY)
        observed = observe(KEY, exchange, live, quiet, static_used)
        worst = observed[0].metrics.get("worst_ratio")
        return (live.worst_ratio if worst is None else worst) >= 1 or not static_engine.idle(
            observed
        )

    fast = needs_of(static) < Needs.CRASH and (reach is not None or not dynamic)
    safe = _safe_side(start, fast, held, troubled, liq, adverse_low) if shortcut else None
    book.set_account(KEY, start)  # fresh sums after the search
    # a one-position account's liquidation price does not move with its mark: the distance
    # the rules on price dynamics read at a price is the distance from it to this one
    barrier = liq[held[0].key] if len(start.positions) == 1 else None
    barrier_f = 0.0 if barrier is None else float(barrier)  # none or <= 0: never reached
    direction = -1 if adverse_low else 1
    reached: list[float] = [0.0, -1.0]  # [reach, the window's version it was read at]

    def beyond(price: Decimal) -> bool:
        """No rule breaches at ``price``, nor is anything liquidated there, provably."""
        if safe is None or not (price > safe if adverse_low else price < safe):
            return False
        if reach is None or marks is None or barrier_f <= 0:
            return True  # no dynamics read, or no liquidation price: no figure to breach
        if reached[1] != marks.version:
            reached[:] = reach(marks, direction), marks.version
        return abs(math.log(barrier_f / float(price))) > reached[0]  # as log_distance

    # one position, every rule pointing its metric's risky way: within a candle (the price
    # dynamics fixed) the candle's adverse extreme is its riskiest point for every rule, so
    # when nothing is active and nothing breaches there, nothing does at its other points
    by_candle = shortcut and len(start.positions) == 1 and all(_risk_directed(r) for r in rules)
    opens = {c.t_ms for c in history.candles} if marks is not None else set()
    for i, candle in enumerate(history.candles):
        if progress is not None and i % 1000 == 0:
            progress(i)
        if marks is not None:  # what the daemon's window holds by the candle's first point
            marks.add(candle.t_ms / 1000, candle.open)
        path = _path(candle, adverse_low)
        if by_candle and not engine.states:
            extreme = path[1]
            if beyond(extreme):
                calm = True  # even the riskiest point is past the last one that could breach
            else:
                worst, observed = at(extreme)
                calm = worst < 1 and engine.idle(observed)
            if calm:
                result.points += _distinct(path)
                if marks is not None and candle.t_ms + interval_ms not in opens:
                    marks.add((candle.t_ms + interval_ms) / 1000, candle.close)
                continue
        previous = None
        for price in path:
            if price == previous:
                continue
            previous = price
            result.points += 1
            if not engine.states and beyond(price):
                continue  # beyond the last price at which any rule could breach: idle
            worst, observed = at(price)
            if watch is not None:
                watch(candle.t_ms, observed)
            # nothing firing, nothing breached: evaluate would change nothing
            notes = (
                []
                if engine.idle(observed)
                else engine.evaluate(observed, candle.t_ms / 1000, accounts=[KEY])
            )
            for n in notes:
                if n.kind in (Kind.FIRING, Kind.RESOLVED):
                    result.alerts.append(
                        ReplayAlert(
                            candle.t_ms,
                            n.rule.name,
                            n.severity.label,
                            n.kind.value,
                            n.value,
                            n.subject.key,
                            result.points,
                        )
                    )
            if worst >= 1:
                result.liquidated_at_ms = candle.t_ms
                result.liquidation_mark = price
                result.liquidation_point = result.points
                result.end_ms = candle.t_ms
                return result
        # the close, known once the candle ends, for the next points: unless the next candle
        # opens then, its open taking the close's place before any point is evaluated
        if marks is not None and candle.t_ms + interval_ms not in opens:
            marks.add((candle.t_ms + interval_ms) / 1000, candle.close)
    return result


def _distinct(path: tuple[Decimal, ...]) -> int:
    """The price points a candle's path gives (a repeated price is one point)."""
    o, a, b, c = path
    return 1 + (a != o) + (b != a) + (c != b)


def _risk_directed(rule: Rule) -> bool:
    """Each of the rule's conditions fires on its metric's risky side (``above`` a figure
    that is riskier higher): then it breaches at a candle's riskiest point if it breaches
    anywhere in it (every condition at once there, if all at once anywhere)."""
    return all(
        (metric := lookup(c.metric, c.scope)) is not None and metric.risky == c.direction
        for c in rule.conditions
    )


def _reads_dynamics(rule: Rule) -> bool:
    """Some condition of the rule reads the price dynamics."""
    return any((m := lookup(c.metric, c.scope)) is not None and m.dynamic for c in rule.conditions)


def warmup_before(history: History, start_ms: int, rules: Sequence[Rule]) -> tuple[Candle, ...]:
    """The candles of ``history`` in the price-dynamics span before ``start_ms``: what the
    daemon would have seeded its windows with had it started then (none when no rule reads
    price dynamics)."""
    span_ms = dynamics_span_s(rules) * 1000
    if span_ms <= 0:
        return ()
    candles = history.candles
    first = bisect.bisect_left(candles, start_ms - span_ms, key=_time)
    return candles[first : bisect.bisect_left(candles, start_ms, lo=first, key=_time)]


def _time(candle: Candle) -> int:
    return candle.t_ms


def _safe_side(
    start: Account,
    fast: bool,
    held: list[Position],
    troubled: Callable[[Decimal], bool],
    liq: dict[tuple[str, Side], Decimal | None],
    adverse_low: bool,
) -> Decimal | None:
    """For a one-position account: the price past which no rule breaches and nothing is
    liquidated, so points beyond it can skip the engine. ``None`` when that cannot be shown.

    Found by bisection on the same observations the replay evaluates, then checked on a grid:
    the shortcut is used only where the breach region is one side of one price.
    """
    if not fast or len(start.positions) != 1:
        return None
    p = held[0]
    entry = p.entry_price
    lp = liq[p.key]
    near = lp if lp is not None else entry / 1000
    far = entry * 1000 if adverse_low else entry / 1000
    if adverse_low and lp is None:
        near = entry / 10**6
    if troubled(far) or not troubled(near):
        return None
    lo, hi = near, far
    for _ in range(90):  # the boundary to about 1e-25 of the price
        mid = (lo + hi) / 2
        if troubled(mid):
            lo = mid
        else:
            hi = mid
    bound = hi
    # the shortcut holds only if every price on the safe side is calm
    # geometric steps: dense next to the boundary, where a second breach region would hide
    steps = 400
    ratio = far / bound
    for k in range(1, steps + 1):
        probe = bound * ratio ** (Decimal(k) / steps)
        if troubled(probe):
            return None
    return bound
