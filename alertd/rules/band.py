"""How far an account's marks may move, and for how long, before any rule can change its
alerts: a band computed when the account is evaluated, checked at each tick.

An account with no alert state changes nothing when it is evaluated unless one of its rules'
values breaches (:meth:`~alertd.rules.lifecycle.AlertEngine.idle`: no state to advance,
repeat, resolve or release, nothing to send). So while it is provable that no value can
breach, evaluating it again is the same as not. :func:`band` proves it for a range of marks
(one open interval per held symbol) and a time (``until``): each rule's metric gives, from the
account's running figures and the rule's threshold, the relative move of the marks it stays
on its safe side for (every mark moving at once, each by up to that fraction, in either
direction), the prices at which its value jumps (a stop's trigger, a position's entry for
the ADL figure), the time at which it may breach (a disconnected feed's age grows one
second a second), or how old each mark may get (the feed's staleness: a tick resets it, so
it is checked against the marks' arrival times, and an account whose marks keep ticking
keeps its band). Where a metric has no such bound (the price dynamics, which move with time; the
exchange's own moved ratio; the insurance fund polled in between) there is no band: the
account is evaluated as before. An account with an alert state has none either: its alerts
advance with time (``for``, repeats, ``keep_firing_for``) and quote the current value.

What the band does not see is the caller's to watch: a new snapshot, stops, mode or a fatal
error (the daemon drops the band on any change but a mark; a read that left the account's
figures as they were sets it aside until :func:`reads_hold` checks what it brought), the
private stream's connection, the marks' arrival times and the order books an order-book rule
read (:meth:`Band.holds` compares them).

Everything here is a bound: ``None`` or a narrower band only costs an evaluation.
``tests/test_band.py`` checks that evaluating at every tick and only outside the band send the
same notifications at the same moments.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from alertd.engine.book import SAFETY, LiveAccount, LivePool, LivePosition
from alertd.engine.legs import from_u
from alertd.engine.orderbook import OrderBook
from alertd.rules.metrics import QUIET, Figures, GapProof, gap_proof, lookup
from alertd.rules.model import FeedStatus, Rule, Scope, Subject

ZERO = Decimal(0)
ONE = Decimal(1)
INFINITY = Decimal("Infinity")
# a feed's age is shown to the millisecond (rounded): a breach is judged on the rounded value
AGE_MARGIN_S = 0.002


@dataclass(slots=True)
class Band:
    """Marks (an open interval per symbol), a time and the inputs that must stay as they
    were for the account's evaluation to be provably idle."""

    prices: Mapping[str, tuple[Decimal, Decimal]]
    until: float  # monotonic seconds
    connected: bool
    # the order books' proofs (gap risk): checked again when a book is replaced
    gaps: tuple[GapProof, ...] = ()
    # every symbol's mark last seen less than this long ago (a feed-stale rule): a tick
    # keeps the band, where a time would end it every threshold's worth of seconds
    fresh_s: float = float("inf")
    # the book each proof (by its index) last held for (a book is replaced at every fetch)
    _held: dict[int, OrderBook | None] = field(default_factory=dict)
    # what a BandIndex watches it by (None: not indexed); the index's own state, never
    # copied (``dataclasses.replace`` makes a band no index watches)
    _watch: Watch | None = field(default=None, init=False)
    # the marks were within the band at its last check that read them
    _marks_held: bool = field(default=False, init=False)
    # the oldest of its symbols' arrival times at the last check that read them all: they
    # only move later (a tick), so while ``now`` is within ``fresh_s`` of it, so is every one
    _oldest_seen: float = field(default=float("-inf"), init=False)

    def holds(
        self,
        marks: Mapping[str, Decimal],
        now: float,
        connected: bool,
        books: Mapping[str, OrderBook] | None = None,
        seen: Callable[[str], float | None] | None = None,
        marks_known: bool = False,
    ) -> bool:
        """The marks (``seen``: when each symbol's last arrived, monotonic), the time, the
        private stream's connection and the books are within the band.

        ``marks_known``: every mark the account's state got since the band's last check came
        through the caller's :class:`BandIndex` (the daemon's ticked turns and its sweep);
        then, once a check has read the marks within it, they are not read again while the
        index watches it (:meth:`BandIndex.add`, none of its bounds passed or dropped since):
        the same answer, as no mark outside the band can have come without the index
        naming the account and ending its watch. Nor are their arrival times, while
        ``now`` is within ``fresh_s`` of the oldest read before (a tick only moves one
        later; a symbol no longer held changes the account, which drops its band)."""
        if now >= self.until or connected is not self.connected:
            return False
        watch = self._watch
        known = marks_known and self._marks_held and watch is not None and watch.live
        if not known:
            self._marks_held = False
            for symbol, (lo, hi) in self.prices.items():
                mark = marks.get(symbol)
                if mark is None or not lo < mark < hi:
                    return False
            self._marks_held = True
        if self.fresh_s < float("inf"):
            # every mark younger than fresh_s: while the marks are known (the daemon's
            # states, whose held symbols' arrival times only move later, at a tick), the
            # oldest one read before bounds them all as long as ``now`` is within it
            if seen is None:
                return False
            if not known or now - self._oldest_seen > self.fresh_s:
                oldest = float("inf")
                for symbol in self.prices:
                    at = seen(symbol)
                    if at is None:
                        return False
                    oldest = min(oldest, at)
                self._oldest_seen = oldest
                if now - oldest > self.fresh_s:
                    return False
        held = self._held
        for i, proof in enumerate(self.gaps):
            book = None if books is None else books.get(proof.symbol)
            if i in held and held[i] is book:
                continue
            if not proof.fits(book):
                return False
            held[i] = book
        return True


class Watch:
    """A band's place in a :class:`BandIndex`: live while every bound of it is in the heaps
    (none passed, none dropped). The heaps' entries name it, never the band, so a band
    replaced or dropped is garbage at once, as without the index (its order books too)."""

    __slots__ = ("live", "sides")

    def __init__(self, sides: list[_Side]) -> None:
        self.live = True
        self.sides = sides  # the heaps holding one entry of it each


class _Side:
    """One (venue, symbol)'s heap of bounds on one side, with how many of its entries are
    of watches ended since (compacted when they are most of it)."""

    __slots__ = ("dead", "heap", "key")

    def __init__(self, key: tuple[object, str]) -> None:
        self.key = key
        self.heap: list[tuple[Decimal, int, str, Watch]] = []
        self.dead = 0


class BandIndex:
    """Every band's bounds by venue and symbol: the lowest upper bound and the highest
    lower bound first (heaps), so a tick of a symbol names only the accounts whose interval
    it leaves, not every holder's band read again.

    Each account has at most one band watched (:class:`Watch`, kept on the band): a band
    added for it ends the watch of the one before, a bound passed ends its band's watch.
    A band whose watch ended reads its marks at every check (:meth:`Band.holds`), whatever
    the caller does with it (kept aside, put back, copied), until it is added again. Entries
    of ended watches are dropped when they are most of their heap: the index holds
    O(accounts x symbols held) entries and no band."""

    def __init__(self) -> None:
        # (venue, symbol) -> heap of (bound, seq, account, watch); lower bounds negated
        self._upper: dict[tuple[object, str], _Side] = {}
        self._lower: dict[tuple[object, str], _Side] = {}
        self._watching: dict[str, Watch] = {}
        self._seq = 0

    def add(self, venue: object, name: str, held: Band) -> None:
        """Watch ``held``, the band of ``name`` whose marks come from ``venue`` (already
        watched: nothing). Call it right after a check of ``held`` (or its making) at the
        marks as they stand: its first check from here reads them."""
        watch = held._watch
        if watch is not None and watch.live and self._watching.get(name) is watch:
            return
        self._end(name)
        sides: list[_Side] = []
        watch = Watch(sides)
        for symbol, (lo, hi) in held.prices.items():
            key = (venue, symbol)
            self._seq += 1
            if hi.is_finite():
                sides.append(self._push(self._upper, key, (hi, self._seq, name, watch)))
            if lo > 0:  # a mark is positive: a lower bound of 0 is never passed
                sides.append(self._push(self._lower, key, (-lo, self._seq, name, watch)))
        held._watch = watch
        held._marks_held = False  # (read before it was watched: read again)
        self._watching[name] = watch

    @staticmethod
    def _push(
        sides: dict[tuple[object, str], _Side],
        key: tuple[object, str],
        entry: tuple[Decimal, int, str, Watch],
    ) -> _Side:
        side = sides.get(key)
        if side is None:
            side = sides[key] = _Side(key)
        heapq.heappush(side.heap, entry)
        return side

    def _end(self, name: str) -> None:
        """End the watch of ``name``'s band: its entries are dead."""
        watch = self._watching.pop(name, None)
        if watch is None:
            return
        watch.live = False
        for side in watch.sides:
            side.dead += 1
            if side.dead * 2 > len(side.heap) + 16 or side.dead == len(side.heap):
                self._compact(side)
        watch.sides = []

    def _compact(self, side: _Side) -> None:
        heap = side.heap
        heap[:] = [e for e in heap if e[3].live]
        side.dead = 0
        if heap:
            heapq.heapify(heap)
        else:  # nothing watched there: the key goes
            sides = self._upper if self._upper.get(side.key) is side else self._lower
            del sides[side.key]

    def left(self, venue: object, symbol: str, price: Decimal) -> list[str]:
        """The accounts whose watched band a mark ``price`` of ``symbol`` from ``venue`` is
        outside of (at or past a bound); their watches end."""
        out: list[str] = []
        key = (venue, symbol)
        side = self._upper.get(key)
        if side is not None:
            heap = side.heap
            while heap and heap[0][0] <= price:
                self._pass(self._upper, side, out)
        side = self._lower.get(key)
        if side is not None:
            heap = side.heap
            while heap and -heap[0][0] >= price:
                self._pass(self._lower, side, out)
        return out

    def _pass(self, sides: dict[tuple[object, str], _Side], side: _Side, out: list[str]) -> None:
        """The first entry of ``side`` is passed: its watch (if live) ends, it goes."""
        heap = side.heap
        _, _, name, watch = heap[0]
        if watch.live:
            self._end(name)  # (counts this entry dead with its others; may compact it away)
            out.append(name)
        if heap and heap[0][3] is watch:
            heapq.heappop(heap)
            side.dead -= 1
        if not heap and sides.get(side.key) is side:
            del sides[side.key]


class _NoBand(Exception):
    """Some rule gives no bound: evaluate every time."""


class _Limits:
    """What the rules allow, gathered rule by rule."""

    def __init__(self, now: float, connected: bool, books: Mapping[str, OrderBook] | None) -> None:
        self.connected = connected
        self.books = books
        self.move_u = INFINITY  # relative move of every u (price or 1/price)
        self.move_price = INFINITY  # relative move of every price (linear pools' bounds)
        self.prices: dict[str, list[Decimal]] = {}  # where a value jumps
        self.until = float("inf")
        self.fresh_s = float("inf")
        self.now = now
        self.gaps: list[GapProof] = []

    def gap(self, proof: GapProof) -> None:
        book = None if self.books is None else self.books.get(proof.symbol)
        if not proof.fits(book):
            raise _NoBand
        self.gaps.append(proof)

    def u(self, room: Decimal | None) -> None:
        if room is None or room <= 0:
            raise _NoBand
        self.move_u = min(self.move_u, room)

    def price(self, room: Decimal | None) -> None:
        if room is None or room <= 0:
            raise _NoBand
        self.move_price = min(self.move_price, room)

    def at(self, symbol: str, price: Decimal) -> None:
        self.prices.setdefault(symbol, []).append(price)

    def fresh(self, rule: Rule, age: Decimal) -> None:
        """The feed's staleness: the oldest held mark's age (``age`` now). It grows a second a
        second and falls to 0 at a tick, so the band asks that every mark be younger than
        the threshold at each check (:attr:`Band.fresh_s`) rather than end at a time: an
        account whose marks keep ticking keeps its band."""
        if rule.condition.above is None:
            raise _NoBand  # it falls at any tick
        limit = float(rule.condition.above) - AGE_MARGIN_S
        if float(age) >= limit:
            raise _NoBand
        self.fresh_s = min(self.fresh_s, limit)

    def age(self, rule: Rule, age: Decimal) -> None:
        """A feed's age (``age`` now) grows at most a second a second."""
        if rule.condition.above is None:
            raise _NoBand  # it falls at any tick
        left = float(rule.condition.above - age) - AGE_MARGIN_S
        if left <= 0:
            raise _NoBand
        self.until = min(self.until, self.now + left)


def _room(rule: Rule, value: Decimal, rate: Decimal, extra: Decimal = ZERO) -> Decimal | None:
    """The relative move ``e`` for which ``value``, moving by at most ``rate * e + extra``,
    stays on ``rule``'s safe side (``None``: it may not move at all)."""
    if rule.condition.above is not None:
        gap = rule.condition.above - value - extra
    else:
        assert rule.condition.below is not None
        gap = value - rule.condition.below - extra
    if gap <= 0:
        return None
    return INFINITY if rate <= 0 else gap / rate


def _ratio_room(rule: Rule, pool: LivePool) -> Decimal | None:
    """A ratio ``mm / equity`` stays at or below an "above" rule's ``T`` while ``T x equity
    - mm`` stays positive (which also keeps the equity positive while mm >= 0): the equity
    moves by at most the legs' notional x e, mm by at most ``sensitivity x e + leeway``."""
    if rule.condition.above is None or rule.condition.above <= 0:
        return None
    t = rule.condition.above
    room = t * pool.margin_balance - pool.mm - pool.leeway
    if room <= 0:
        return None
    rate = (t + 1) * pool.sensitivity
    return INFINITY if rate <= 0 else room / rate


def _leverage_room(
    rule: Rule, notional: Decimal, equity: Decimal, pool_notional: Decimal
) -> Decimal | None:
    """``notional / equity`` stays at or below an "above" rule's ``T``: ``T x equity -
    notional`` stays positive; the equity moves by at most ``pool_notional`` x e (the pool's
    :func:`_pool_reach`)."""
    if rule.condition.above is None or rule.condition.above < 0:
        return None
    if notional == 0:
        return INFINITY  # 0 while no leg: a quantity does not move with the marks
    t = rule.condition.above
    room = t * equity - notional
    if room <= 0:
        return None
    return room / (notional + t * pool_notional)


def _concentration_room(rule: Rule, parts: list[Decimal]) -> Decimal | None:
    """The largest part's share of the sum stays at or below an "above" rule's ``T`` while
    every part moves by a factor within ``1 +- e``."""
    if rule.condition.above is None:
        return None
    if len(parts) < 2 or rule.condition.above >= 1:
        return INFINITY  # no value, or a share that cannot exceed 1
    t = rule.condition.above
    largest = max(parts)
    rest = sum(parts, ZERO) - largest
    room = t * rest - (1 - t) * largest
    if room <= 0:
        return None
    return room / (t * rest + (1 - t) * largest)


def _pool_notional(live: LiveAccount, pool: LivePool) -> Decimal:
    return sum((lp.notional for lp in live.positions if lp.pool is pool), ZERO)


def _reach(positions: Iterable[LivePosition]) -> Decimal:
    """The most an equity moves per unit of a relative move of every mark: the legs'
    notional, each at the rate its PnL counts at (above 1 for an asset's ask above 1)."""
    return sum((lp.notional * lp.pnl_rate for lp in positions), ZERO)


def _pool_reach(live: LiveAccount, pool: LivePool) -> Decimal:
    """How far the pool's equity moves (:func:`_reach` of its legs)."""
    return _reach(lp for lp in live.positions if lp.pool is pool)


# The account metrics whose values only a read sets (a snapshot, a reconcile, a fatal error),
# never the marks or the time: no band bounds them (the daemon sets the band aside at a read,
# and :func:`reads_hold` checks them at the values it brought)
READ_VALUES = frozenset(
    {
        "account_error",
        "mode_not_computed",
        "incomplete_data",
        "ratio_drift",
        "fee_rate_unread",
        "private_stream_missed",
    }
)


def reads_hold(
    rules: BandRules, subject: Subject, live: LiveAccount | None, feed: FeedStatus
) -> bool:
    """No value of :data:`READ_VALUES` at ``feed`` breaches a rule of ``rules`` on the
    account ``subject``: what a read brought beside the figures (its drift, flags, incomplete
    data, mode) leaves every such rule on its safe side, as an evaluation would read them
    (a metric the feed gives no value, :meth:`~alertd.rules.metrics.Metric.known`, has none).
    With a band that still holds over the figures, evaluating the account would change
    nothing (``AlertEngine.idle``: a breach is what would)."""
    figures = Figures(feed, live)
    for rule, every in rules.account:
        if rule.metric in READ_VALUES and (every or rule.applies_to(subject)):
            metric = lookup(rule.metric, Scope.ACCOUNT)
            assert metric is not None
            value = metric.extract(figures) if metric.known(feed) else None
            if value is not None and rule.breached(value):
                return False
    return True


def _account_rule(rule: Rule, live: LiveAccount, feed: FeedStatus, limits: _Limits) -> None:
    metric = rule.metric
    cross = live.cross
    if metric == "worst_ratio":  # the cross pool's while it holds a leg, and each isolated one
        held = any(lp.pool is cross for lp in live.positions)
        for pool in live.pools if held else live.pools[1:]:
            limits.u(_ratio_room(rule, pool))
    elif metric == "margin_ratio":
        limits.u(_ratio_room(rule, cross))
    elif metric == "buffer":
        limits.u(_room(rule, cross.buffer, cross.sensitivity, cross.leeway))
    elif metric == "margin_balance":
        limits.u(_room(rule, cross.margin_balance, cross.sensitivity))
    elif metric == "maintenance_margin":
        limits.u(_room(rule, cross.mm, cross.sensitivity, cross.leeway))
    elif metric == "effective_leverage":
        notional = _pool_notional(live, cross)
        limits.u(_leverage_room(rule, notional, cross.margin_balance, _pool_reach(live, cross)))
    elif metric == "concentration":
        limits.u(_concentration_room(rule, [lp.notional for lp in live.positions]))
    elif metric == "feed_stale_s":
        limits.fresh(rule, feed.stale_s)
    elif metric == "feed_down_s":
        if not limits.connected and feed.fatal is None:
            limits.age(rule, feed.down_s)  # disconnected: grows (Band.holds sees a reconnection)
    elif metric in READ_VALUES:
        pass  # read at a snapshot, a reconcile or a fatal error: changes the band does not cover
    elif metric == "fee_gap":
        # 0 while no fee rate stands unread, until a read; one unread, the marks move the
        # share it leaves out (the fee to close is fixed, the requirement moves), which a
        # rule's level above 0 may cross: no bound here (the built-in above 0 fires then)
        if feed.fee_gap is not None:
            raise _NoBand
    else:
        raise _NoBand


def _position_rule(rule: Rule, live: LiveAccount, index: int, limits: _Limits) -> None:
    metric = rule.metric
    lp = live.positions[index]
    pool = lp.pool
    if metric in ("stop_coverage", "stop_missing", "stop_loss_price", "stop_loss"):
        _stop_prices(live, index, limits)  # which stops protect moves only at a trigger
    elif metric == "margin_ratio":
        limits.u(_ratio_room(rule, pool))
    elif metric == "liquidation_distance":
        # no liquidation within T of the mark after a move of d: none within d + T + dT of
        # the mark now (every other mark within d too): the pool's reach
        reach = pool.reach()
        if rule.condition.below is None or reach is None:
            raise _NoBand
        t = max(rule.condition.below, ZERO)
        limits.price((reach - t) / (1 + t))
    elif metric == "effective_leverage":
        equity = pool.margin_balance
        limits.u(_leverage_room(rule, lp.notional, equity, _pool_reach(live, pool)))
    elif metric == "unrealized_pnl":
        limits.u(_room(rule, lp.upnl, lp.notional))
    elif metric == "notional":
        limits.u(_room(rule, lp.notional, lp.notional))
    elif metric == "stop_loss_share":
        _stop_prices(live, index, limits)
        _stop_loss_share(rule, live, index, limits)
    elif metric == "stop_beyond_liquidation":
        _stop_prices(live, index, limits)
        _stop_beyond(rule, live, index, limits)
    elif metric == "adl_rank":
        pass  # the exchange's, read with the positions
    elif metric == "adl_risk":
        rank = lp.position.adl_rank
        if rule.condition.above is None:
            raise _NoBand
        if rank is None or rank <= rule.condition.above:
            return  # its value is 0, the rank or none: never above
        if lp.upnl >= 0:
            raise _NoBand  # in profit (or about to be): the market's pace decides, with time
        limits.at(lp.symbol, from_u(lp.leg.entry_u, lp.position.inverse))  # 0 while losing
    elif metric == "gap_risk":
        _gap_risk(rule, live, index, limits)
    else:
        raise _NoBand


def _stop_prices(live: LiveAccount, index: int, limits: _Limits) -> None:
    stops = live.account.stops
    symbol = live.positions[index].symbol
    for stop in stops or ():
        if stop.symbol == symbol and stop.trigger_price is not None:
            limits.at(symbol, stop.trigger_price)


def _position_value(metric: str, live: LiveAccount, index: int) -> Decimal | None:
    """A position metric's value now, read as a rule reads it (one that needs no feed)."""
    found = lookup(metric, Scope.POSITION)
    assert found is not None
    return found.extract(Figures(QUIET, live, index))


def _stop_loss_share(rule: Rule, live: LiveAccount, index: int, limits: _Limits) -> None:
    """``loss / equity`` (every pool's margin balance) stays at or below an "above" rule's
    ``T > 0`` while ``equity - loss / T`` stays positive; the equity moves by at most every
    leg's notional x e at the rate its PnL counts at (:func:`_reach`). The loss at the stop
    does not move with the mark."""
    loss = _position_value("stop_loss", live, index)
    if loss is None:
        return  # no stop with a price: no value until the stops change
    if rule.condition.above is None or rule.condition.above <= 0:
        raise _NoBand
    if loss <= 0:
        return  # a share of at most 0 (or none, without equity)
    equity = sum((pool.margin_balance for pool in live.pools), ZERO)
    room = equity - loss / rule.condition.above
    if room <= 0:
        raise _NoBand
    total = _reach(live.positions)
    limits.u(INFINITY if total <= 0 else room / total)


def _stop_beyond(rule: Rule, live: LiveAccount, index: int, limits: _Limits) -> None:
    """The value exceeds an "above" rule's ``T`` only with a liquidation price on the
    adverse side within ``away - T`` of the mark (``away``: the stop's distance). After a
    move of ``d`` (every mark), those prices all lie within ``max(away - T + |T| d, d)`` of
    the mark now: within the pool's reach while ``d`` is small enough."""
    stop = _position_value("stop_loss_price", live, index)
    if stop is None:
        return  # no stop with a price: no value
    if rule.condition.above is None:
        raise _NoBand
    lp = live.positions[index]
    reach = lp.pool.reach()
    if reach is None:
        raise _NoBand
    away = (lp.mark - stop) * lp.position.side / lp.mark
    t = rule.condition.above
    if reach <= away - t:
        raise _NoBand
    limits.price(reach)
    if t != 0:
        limits.price((reach - (away - t)) / abs(t))


def _gap_risk(rule: Rule, live: LiveAccount, index: int, limits: _Limits) -> None:
    """The position's gap risk stays 0 (or without a value) wherever the marks go while its
    book fits :func:`~alertd.rules.metrics.gap_proof`; a book fetched again is checked again
    (:meth:`Band.holds`)."""
    limits.gap(gap_proof(live, index, rule.condition.above))


@dataclass(frozen=True, slots=True)
class BandRules:
    """Rules as :func:`band` reads them, sorted once (the daemon's, at each reload): each
    with whether it applies to every subject of its scope (no accounts, exchanges or
    symbols named: no ``applies_to`` per subject), and whether any reads a metric no band
    bounds (then no account has one)."""

    account: tuple[tuple[Rule, bool], ...]
    position: tuple[tuple[Rule, bool], ...]
    unbounded: bool

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> BandRules:
        account: list[tuple[Rule, bool]] = []
        position: list[tuple[Rule, bool]] = []
        unbounded = False
        for rule in rules:
            m = lookup(rule.metric, rule.scope)
            if m is None or (m.dynamic and rule.metric != "adl_risk"):
                unbounded = True
            every = rule.accounts is None and rule.exchanges is None and rule.symbols is None
            (account if rule.scope is Scope.ACCOUNT else position).append((rule, every))
        return cls(tuple(account), tuple(position), unbounded)


def band(
    rules: Iterable[Rule] | BandRules,
    subject: Subject,
    live: LiveAccount,
    feed: FeedStatus,
    now: float,
    *,
    connected: bool,
    books: Mapping[str, OrderBook] | None = None,
) -> Band | None:
    """The band of the account ``subject`` (its figures ``live``, its feed's status, at
    monotonic ``now``) for ``rules`` (or :meth:`BandRules.of` them); ``None`` when some
    rule gives no bound or the band is empty. Call it only for an account with no alert
    state whose values breach no rule."""
    if not live.bounded:
        return None  # coins moving with a mark, a currency owed, two cross pools: no bound here
    plan = rules if isinstance(rules, BandRules) else BandRules.of(rules)
    if plan.unbounded:
        return None
    limits = _Limits(now, connected, books)
    count = len(live.positions)
    positions: list[Subject] | None = None  # made for the first rule naming its subjects
    try:
        for rule, every in plan.account:
            if every or rule.applies_to(subject):
                _account_rule(rule, live, feed, limits)
        for rule, every in plan.position:
            if every:
                for i in range(count):
                    _position_rule(rule, live, i, limits)
                continue
            if positions is None:
                positions = [
                    Subject(subject.account, subject.exchange, lp.symbol, lp.position.side.label)
                    for lp in live.positions
                ]
            for i, position in enumerate(positions):
                if rule.applies_to(position):
                    _position_rule(rule, live, i, limits)
    except _NoBand:
        return None
    e = limits.move_u
    d = min(limits.move_price, e / (1 + e) if e.is_finite() else INFINITY) / SAFETY
    prices: dict[str, tuple[Decimal, Decimal]] = {}
    for lp in live.positions:
        mark = lp.mark
        lo, hi = (ZERO, INFINITY) if not d.is_finite() else (mark * (1 - d), mark * (1 + d))
        for p in limits.prices.get(lp.symbol, ()):
            if p < mark:
                lo = max(lo, p)
            elif p > mark:
                hi = min(hi, p)
            else:
                return None  # at a price where a value jumps
        held = prices.get(lp.symbol)
        if held is not None:
            lo, hi = max(lo, held[0]), min(hi, held[1])
        if not lo < mark < hi:
            return None
        prices[lp.symbol] = (lo, hi)
    return Band(prices, limits.until, connected, tuple(limits.gaps), limits.fresh_s)
