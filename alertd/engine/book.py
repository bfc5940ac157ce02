"""Incremental margin state for many accounts, fed one mark price at a time.

The daemon sees every mark tick of every held symbol. Recomputing a whole account per tick
would cost O(positions); instead each margin pool keeps running sums of unrealized PnL,
maintenance margin and notional, and a tick on a symbol updates only the positions in that
symbol and the pools that hold them: O(positions in the symbol), with :class:`Leg`'s own
formulas. These running figures are what most rules read. A collateral coin valued at a symbol
(:class:`LiveCollateral`) moves with that symbol's ticks the same way: its value is part of its
pool's balance.

Liquidation prices and the crash distance are solved only when asked for (a rule or a message
needs them), with the engine's exact solver (:func:`~alertd.engine.legs.nearest_root`), and a
liquidation price is kept while it stays valid: an isolated position's depends on nothing that
moves; a cross symbol's moves with the rest of its pool and, while it stays on the tier segment
it was found on, is re-solved on that one line. Everything else (bankruptcy prices, what to add
or cut) is :func:`~alertd.engine.margin.compute` of :meth:`LiveAccount.current`.

Most of the time no liquidation price is anywhere near its mark, and a rule on the distance
need not know where it is, only that it is not within the rule's threshold:
:meth:`LiveAccount.liquidations_beyond` proves that from running figures, in O(1) per pool.
A leg's ``upnl - mm`` changes by at most ``slope`` per unit of ``u`` (its PnL's quantity plus
the steepest tier's requirement), plus the tier table's steps where its requirement is not
continuous. So while a pool's buffer (equity minus requirement) exceeds the most a move of
``d`` in every mark can take from it, no price within ``d`` of its mark liquidates anything.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import replace
from decimal import Decimal
from itertools import pairwise
from typing import cast

from alertd.engine.collateral import Collateral, CollateralTerm, Owed, SettleTerms
from alertd.engine.legs import Leg, MonotoneRoot, Term, monotone, nearest_root, to_u
from alertd.engine.margin import (
    AccountMetrics,
    account_leg,
    compute,
    crash_distance,
    largest_share,
    leverage,
    liquidation_distance,
    margin_ratio,
    owed_line,
    owed_lines,
    pool_crash_move,
    price_from_root,
    round_to_tick,
)
from alertd.engine.model import Account, Position
from alertd.engine.tiers import Tier

ZERO = Decimal(0)
ONE = Decimal(1)
INFINITY = Decimal("Infinity")


# Head room over the bounds below: far above Decimal's rounding in the running sums and the
# solver, far below anything a threshold could tell apart.
SAFETY = Decimal("1.000000001")
# the most figures kept with one tier table (TierTable.memo): its few fee terms
MEMO_KEYS = 64


def slope_bound(leg: Leg, pnl_rate: Decimal = ONE) -> Decimal:
    """The most the leg's ``upnl - mm`` changes per unit of ``u``, between tier steps, where
    its pool counts one unit of its PnL as at most ``pnl_rate`` (its margin asset's
    ``SettleTerms.fastest_rate``)."""
    if leg.fixed_mm is not None:
        return leg.quantity * pnl_rate
    memo = leg.tiers.memo
    steepest = memo.get("steepest")
    if steepest is None:
        steepest = memo["steepest"] = max(t.mmr for t in leg.tiers.tiers)
    return leg.quantity * (pnl_rate + cast(Decimal, steepest) + leg.fee_rate)


def step_bound(leg: Leg) -> Decimal:
    """The most the leg's requirement jumps in all, crossing every tier boundary (0 where the
    deductions make it continuous)."""
    table = leg.tiers
    if not leg.moves_tier or table.continuous:
        return ZERO
    total = table.memo.get("steps")
    if total is None:  # the table's alone: made once (TierTable.memo)
        total = ZERO
        for lower, upper in pairwise(table.tiers):
            assert lower.cap is not None  # only the last tier is uncapped
            total += abs(lower.cap * (upper.mmr - lower.mmr) - (upper.deduction - lower.deduction))
        table.memo["steps"] = total
    return cast(Decimal, total)


def requirement_rate(leg: Leg) -> Decimal | None:
    """The least the leg's requirement can be per unit of notional, at any price: ``mm(u) >=
    rate * quantity * u`` for every ``u > 0``; ``None`` when no such bound is at least 0
    (a deduction larger than the requirement near a tier's lower edge, say)."""
    q = leg.quantity
    if q <= 0:
        return None
    if leg.fixed_mm is not None:
        return ZERO if leg.fixed_mm >= 0 else None  # a constant: its share falls towards 0
    # the rest reads the quantity only in ``q x close_fee``: the same for every position in
    # the table with the same fee terms (every account holding the symbol, at one rate: an
    # asset index frame re-rating them all derives it once), kept with the table
    close = q * leg.close_fee
    key = ("requirement_rate", leg.fee_rate, close, leg.fixed_tier)
    memo = leg.tiers.memo
    if key in memo:
        return cast(Decimal | None, memo[key])
    found = _requirement_rate(leg, close)
    if len(memo) < MEMO_KEYS:  # a fee to close differs by quantity: not kept for each
        memo[key] = found
    return found


def _requirement_rate(leg: Leg, close: Decimal) -> Decimal | None:
    """:func:`requirement_rate` of a leg with a tier table, ``close`` its ``q x close_fee``."""
    fee, tiers = leg.fee_rate, leg.tiers.tiers
    if leg.fixed_tier is not None:
        spans: list[tuple[Tier, Decimal, Decimal | None]] = [(tiers[leg.fixed_tier], ZERO, None)]
    else:
        last = len(tiers) - 1
        spans = []
        lower = ZERO
        for i, tier in enumerate(tiers):
            upper = None if i == last else tier.cap
            spans.append((tier, lower, upper))
            if upper is None:
                break
            lower = upper
    least: Decimal | None = None
    for tier, lower, upper in spans:
        # mm / notional = mmr + fee + c / notional: monotonic in the notional, so its least
        # value on the span is at one of its ends
        c = close - tier.deduction
        if c >= 0:
            rate = tier.mmr + fee + (ZERO if upper is None else c / upper)
        elif lower > 0:
            rate = tier.mmr + fee + c / lower
        else:
            return None  # falls without bound towards a zero notional
        least = rate if least is None else min(least, rate)
    return least if least is not None and least >= 0 else None


class LiveLine:
    """A margin asset's equity line in a cross pool where its terms count it otherwise than
    at par (``Account.equity_lines``: the settle currency lent, discounted or converted; a
    margin asset sharing the pool at its rates): its wallet, the PnL of the legs on its line
    (``Leg.line``), what it owed requires now (in the pool's ``mm``) and what its terms take
    or add now (in the pool's ``balance``)."""

    __slots__ = ("asset", "discount", "owed_mm", "pool", "terms", "upnl", "wallet")

    def __init__(self, asset: str, wallet: Decimal, terms: SettleTerms, pool: LivePool) -> None:
        self.asset = asset
        self.wallet = wallet
        self.terms = terms
        self.pool = pool
        self.upnl = ZERO
        self.owed_mm = ZERO
        self.discount = ZERO

    def refresh(self) -> None:
        """What it owed requires and its terms take, after the PnL moved."""
        terms, pool = self.terms, self.pool
        equity = self.wallet + self.upnl
        owed = terms.requirement(equity)
        pool.mm += owed - self.owed_mm
        pool.owed_mm += owed - self.owed_mm
        self.owed_mm = owed
        discount = terms.adjustment(equity)
        pool.balance += discount - self.discount
        pool.discount += discount - self.discount
        self.discount = discount

    def owed(self, moving: Iterable[LivePosition], terms: list[Term]) -> Owed | None:
        """The line as the solver sees it when ``terms`` (the legs of ``moving``) move."""
        others = self.upnl - sum((lp.upnl for lp in moving if lp.line is self), ZERO)
        return owed_line(self.terms, self.wallet + others, terms, self.asset)


class LivePool:
    """One margin pool's running sums: the cross pool, or one isolated position."""

    __slots__ = (
        "asset",
        "balance",
        "discount",
        "leeway",
        "linear",
        "lines",
        "mm",
        "owed_mm",
        "sensitivity",
        "upnl",
    )

    def __init__(self, balance: Decimal, asset: str = "") -> None:
        self.asset = asset  # a cross pool's margin asset ("" for an isolated position's)
        self.balance = balance  # cross wallet balance (and coins), or the isolated margin
        self.upnl = ZERO
        self.mm = ZERO
        # the margin assets whose terms count their equity otherwise than at par; what they
        # owed requires now (in mm) and what their terms take or add now (in balance)
        self.lines: dict[str, LiveLine] = {}
        self.owed_mm = ZERO
        self.discount = ZERO
        # sum of the legs' slope_bound * u: the most the buffer falls per unit of relative move
        self.sensitivity = ZERO
        # sum of the legs' tier steps and tick rounding (slope_bound * tick): what a move of
        # any size may cost on top of ``sensitivity``
        self.leeway = ZERO
        self.linear = True  # no inverse leg (their u is not proportional to the price)

    @property
    def margin_balance(self) -> Decimal:
        return self.balance + self.upnl

    @property
    def ratio(self) -> Decimal:
        return margin_ratio(self.mm, self.balance + self.upnl)

    @property
    def buffer(self) -> Decimal:
        return self.balance + self.upnl - self.mm

    @property
    def bounded(self) -> bool:
        """Whether the bounds on the running figures cover how its margin assets count: at
        par, converted at rates or discounted by tiered ratios
        (``SettleTerms.moves_at_most_fastest_rate``: each leg's slope bound takes its asset's
        fastest rate); not what may be owed."""
        return all(line.terms.moves_at_most_fastest_rate for line in self.lines.values())

    def beyond(self, d: Decimal) -> bool:
        """True when no mark of this pool's linear legs moving by up to a fraction ``d``
        (each, in any direction) can bring its ratio to 1: a bound, ``False`` proves nothing.
        """
        if not self.bounded:
            return False  # what may be owed is not in the bound
        equity = self.balance + self.upnl
        buffer = equity - self.mm
        if equity <= 0 or buffer <= 0:
            return False  # at or past liquidation
        if d <= 0:
            return True  # the ratio is below 1: no distance is negative
        return self.linear and buffer > (d * self.sensitivity + self.leeway) * SAFETY

    def reach(self) -> Decimal | None:
        """The move :meth:`beyond` proves safe: ``beyond(d)`` holds for every ``d`` below it
        (``Infinity`` with no leg). ``None`` where it proves nothing: an inverse leg, a pool
        at or past liquidation, or one whose currency may be owed."""
        if not self.bounded:
            return None  # what may be owed is not in the bound
        equity = self.balance + self.upnl
        buffer = equity - self.mm
        if equity <= 0 or buffer <= 0 or not self.linear:
            return None
        room = buffer / SAFETY - self.leeway
        if room <= 0:
            return ZERO
        return room / self.sensitivity if self.sensitivity > 0 else INFINITY


class LiveCollateral:
    """A coin of the cross pool that moves with a symbol's price: its value is in the pool's
    ``balance`` and follows the marks of ``price_symbol``."""

    __slots__ = ("account", "coin", "pool", "price", "requirement", "scale", "value")

    def __init__(self, account: Hashable, coin: Collateral, scale: Decimal, pool: LivePool) -> None:
        self.account = account
        self.coin = coin  # as of the last snapshot: its price is not kept current
        self.scale = scale  # price / the symbol's mark (see Account.collateral_scale)
        self.pool = pool
        self.price = coin.price
        self.value = coin.value
        self.requirement = coin.requirement  # a liability's, in the pool's ``mm``

    @property
    def symbol(self) -> str:
        assert self.coin.price_symbol is not None
        return self.coin.price_symbol

    def reprice(self, mark: Decimal) -> None:
        price = self.scale * mark
        value = self.coin.value_at(price)
        self.pool.balance += value - self.value
        self.price, self.value = price, value
        if self.coin.owed:
            requirement = self.coin.requirement_at(price)
            self.pool.mm += requirement - self.requirement
            self.requirement = requirement

    def term(self, per_mark: bool) -> CollateralTerm:
        """As a solver term: in the symbol's mark, or (``per_mark=False``) in a uniform move
        factor of every price."""
        return (self.coin, self.scale if per_mark else self.price)


class LivePosition:
    __slots__ = (
        "_rate",
        "account",
        "leg",
        "line",
        "mark",
        "memo",
        "mm",
        "pnl_rate",
        "pool",
        "position",
        "slope",
        "u",
        "upnl",
    )

    def __init__(
        self,
        account: Hashable,
        position: Position,
        leg: Leg,
        pool: LivePool,
        tick: Decimal = ZERO,
    ) -> None:
        self.account = account
        self.position = position  # as of the last snapshot: its mark is not kept current
        self.leg = leg
        self.pool = pool
        # the equity line its PnL joins where its asset's terms count it (None: at par)
        self.line = pool.lines.get(leg.line) if leg.line is not None else None
        # the most one unit of its PnL moves its pool's equity (its asset's rate above 1)
        self.pnl_rate = ONE if self.line is None else self.line.terms.fastest_rate
        self.upnl = self.mm = ZERO
        self.mark = self.u = position.mark_price
        self.slope = slope_bound(leg, self.pnl_rate)
        self._rate: tuple[Decimal | None] | None = None  # requirement_rate, once asked
        # what readers derive once from figures that do not move with the marks (the leg,
        # its pool, the account's other legs: fixed for this object's life, a snapshot
        # making new ones), by the reader's key
        self.memo: dict[Hashable, object] = {}
        pool.leeway += self.slope * tick + step_bound(leg)
        if position.inverse:
            pool.linear = False
        self.u = to_u(position.mark_price, position.inverse)
        pool.sensitivity += self.slope * self.u
        self.reprice(position.mark_price)

    @property
    def symbol(self) -> str:
        return self.position.symbol

    @property
    def notional(self) -> Decimal:
        return self.leg.quantity * self.u

    def requirement_rate(self) -> Decimal | None:
        """:func:`requirement_rate` of the leg (its tier table is long: kept once read)."""
        if self._rate is None:
            self._rate = (requirement_rate(self.leg),)
        return self._rate[0]

    @property
    def effective_leverage(self) -> Decimal | None:
        return leverage(self.notional, self.pool.margin_balance)

    def reprice(self, mark: Decimal) -> None:
        """Move to a new mark, updating the pool's sums by the difference."""
        leg = self.leg
        u = to_u(mark, self.position.inverse)
        upnl = leg.upnl(u)
        mm = leg.mm(u)
        pool = self.pool
        pool.upnl += upnl - self.upnl
        line = self.line
        if line is not None:
            line.upnl += upnl - self.upnl
        pool.mm += mm - self.mm
        pool.sensitivity += self.slope * (u - self.u)
        self.mark, self.u = mark, u
        self.upnl, self.mm = upnl, mm
        if line is not None:
            line.refresh()


class _Liquidation:
    """The legs that liquidate together (an isolated position, or one symbol's cross legs)
    and their last solved root."""

    __slots__ = (
        "_equity_line",
        "coins",
        "const",
        "inverse",
        "isolated_margin",
        "liq",
        "members",
        "slope",
        "solver",
        "steps",
        "terms",
        "tick",
        "u0",
        "x",
    )

    def __init__(
        self,
        members: list[LivePosition],
        isolated_margin: Decimal | None,
        tick: Decimal,
        coins: list[LiveCollateral] | None = None,
    ) -> None:
        self.members = members
        self.isolated_margin = isolated_margin
        self.coins = coins or []  # cross coins valued at these legs' symbol: they move too
        self.inverse = members[0].position.inverse
        self.tick = tick  # how far rounding may move the price towards the mark (0: none)
        self.slope = sum((lp.slope for lp in members), ZERO)
        self.steps = sum((step_bound(lp.leg) for lp in members), ZERO)
        # equity without the requirement, sum(sign q (u - entry_u)): (slope, slope x entry)
        self._equity_line = (
            sum((lp.leg.sign * lp.leg.quantity for lp in members), ZERO),
            sum((lp.leg.sign * lp.leg.quantity * lp.leg.entry_u for lp in members), ZERO),
        )
        self.terms: list[Term] = [(lp.leg, ONE) for lp in members]
        # one root at most, whatever the mark: kept while it stays valid
        self.solver = (
            MonotoneRoot(self.terms, self.inverse)
            if monotone(self.terms) and not self.coins and not members[0].pool.lines
            else None
        )
        self.const: Decimal | None = None
        self.u0: Decimal | None = None
        self.x: Decimal | None = None
        self.liq: Decimal | None = None  # the price at x

    def price(self, cross: LivePool) -> Decimal | None:
        """The mark (of these legs' symbol) at which their pool's ratio reaches 1."""
        members = self.members
        if self.isolated_margin is not None:
            const = self.isolated_margin
        else:
            # the wallet and every other cross leg, at their marks
            if len(members) == 1:
                mine = members[0].upnl - members[0].mm
            else:
                mine = sum((lp.upnl - lp.mm for lp in members), ZERO)
            # what each margin asset owed requires, and what its terms take, are solved
            # below with its moves
            const = cross.balance - cross.discount
            const += cross.upnl - (cross.mm - cross.owed_mm) - mine
            for coin in self.coins:
                # solved as moving with the price below: its value and its requirement
                const -= coin.value - coin.requirement
        u0 = members[0].u
        owed = self._owed(cross)
        if owed or const != self.const or (self.solver is None and u0 != self.u0):
            if self.solver is not None:
                x = self.solver.root(const, u0)
            else:
                linked = [coin.term(per_mark=True) for coin in self.coins]
                x = nearest_root(const, self.terms, u0, self.inverse, True, linked, owed)
            self.const, self.u0 = const, u0
            if x != self.x:
                self.x, self.liq = x, price_from_root(x, self.inverse)
        return self.liq

    def bankruptcy(self, cross: LivePool) -> Decimal | None:
        """The mark (of these legs' symbol) at which the equity behind them is exactly zero
        (:func:`~alertd.engine.margin.compute`'s bankruptcy price): solved on each call."""
        members = self.members
        if self.isolated_margin is not None:
            const = self.isolated_margin
        else:
            # the wallet and every other cross leg's PnL at its mark; no requirement counts
            const = cross.balance - cross.discount + cross.upnl
            const -= sum((lp.upnl for lp in members), ZERO)
            for coin in self.coins:
                const -= coin.value  # solved as moving with the price below
        u0 = members[0].u
        owed = self._owed(cross)
        if self.coins or owed:
            linked = [coin.term(per_mark=True) for coin in self.coins]
            x = nearest_root(const, self.terms, u0, self.inverse, False, linked, owed)
            return price_from_root(x, self.inverse)
        # without the requirement nothing is tiered: equity is one line in u,
        # const + sum(sign q (u - entry_u)), and its root is nearest_root's (every evaluation
        # of a gap-risk rule asks for it: no search)
        slope, at_entry = self._equity_line
        level = const - at_entry
        if slope == 0:
            return price_from_root(u0, self.inverse) if level == 0 else None
        x = -level / slope
        return price_from_root(x if x > 0 else None, self.inverse)

    def _owed(self, cross: LivePool) -> list[Owed]:
        """Each margin asset's equity line as these legs move (none: isolated, or the pool
        counts every asset at par and lends nothing)."""
        if self.isolated_margin is not None:
            return []
        found = (line.owed(self.members, self.terms) for line in cross.lines.values())
        return [owed for owed in found if owed is not None]

    def beyond(self, pool: LivePool, d: Decimal) -> bool:
        """True when no price of these legs' symbol within a fraction ``d`` of the mark (after
        rounding to the tick) brings their pool's ratio to 1: a bound, as :meth:`LivePool.beyond`
        but for this one symbol, inverse or not."""
        equity = pool.balance + pool.upnl
        buffer = equity - pool.mm
        if equity <= 0 or buffer <= 0:
            return False
        if d <= 0:
            return True
        if not pool.bounded:
            return False  # what may be owed is not in the bound
        u = self.members[0].u
        if self.inverse:
            # prices mark * (1 +- reach) are u / (1 +- reach): the wider side is below the mark
            reach = d + self.tick * u  # tick / price
            if reach >= 1:
                return False
            move = u * reach / (1 - reach)
        else:
            move = d * u + self.tick
        return buffer > (self.slope * move + self.steps) * SAFETY


class LiveAccount:
    """One account in the book: its last snapshot, its pools and positions at current marks.

    An account of several margin pools (``Account.pools``) has a cross pool per margin asset,
    each position counting in its own (:attr:`cross_pools`); :attr:`cross` is the riskiest."""

    __slots__ = (
        "_groups",
        "_held",
        "_held_requirement",
        "_isolated",
        "account",
        "coins",
        "cross_pools",
        "pools",
        "positions",
    )

    def __init__(self, key: Hashable, account: Account) -> None:
        self.account = account
        # one cross pool per margin asset, the settle currency's first
        held_coins = {
            account.settle: (account.wallet_balance, account.collateral),
            **{pool.asset: (pool.wallet_balance, pool.collateral) for pool in account.pools},
        }
        self.cross_pools = {}
        for asset, (wallet, coins) in held_coins.items():
            pool = LivePool(wallet + sum((c.value for c in coins), ZERO), asset)
            self.cross_pools[asset] = pool
        self.pools = list(self.cross_pools.values())
        settle = self.cross_pools[account.settle]
        # the other margin assets sharing the settle currency's pool: their wallets at par,
        # their terms on lines of their own
        settle.balance += account.shared_wallets
        for asset, wallet, terms in account.equity_lines():
            if terms is not None:
                settle.lines[asset] = LiveLine(asset, wallet, terms, settle)
        # coins that move with a price; the others' value stays in the balance as it is
        self.coins = [
            LiveCollateral(key, c, account.collateral_scale(c), self.cross_pools[asset])
            for asset, held in (
                (account.settle, account.collateral),
                *((pool.asset, pool.collateral) for pool in account.pools),
            )
            for c in held
            if c.price_symbol
        ]
        # liabilities' requirement is their pool's (the moving coins' kept by each coin)
        self._held_requirement = {
            asset: sum((c.requirement for c in coins if not c.price_symbol), ZERO)
            for asset, (_, coins) in held_coins.items()
        }
        for asset, pool in self.cross_pools.items():
            moving = (c.requirement for c in self.coins if c.pool is pool)
            pool.mm = self._held_requirement[asset] + sum(moving, ZERO)
        for line in settle.lines.values():
            line.refresh()  # the positions' PnL refreshes it as they join
        self.positions: list[LivePosition] = []
        by_symbol: dict[str, list[LivePosition]] = {}
        ticks: list[Decimal] = []
        cross_ticks: dict[str, list[Decimal]] = {}
        for p in account.positions:
            pool = self.cross_pools[account.pool_asset(p)]
            if p.is_isolated:
                assert p.isolated_margin is not None
                pool = LivePool(p.isolated_margin)
                self.pools.append(pool)
            rounds = account.profile.rounds_liquidation_to_tick and p.tick_size
            tick = p.tick_size if rounds and p.tick_size is not None else ZERO
            ticks.append(tick)
            lp = LivePosition(key, p, account_leg(account, p), pool, tick)
            self.positions.append(lp)
            if not p.is_isolated:
                by_symbol.setdefault(p.symbol, []).append(lp)
                cross_ticks.setdefault(p.symbol, []).append(tick)
        # the cross pools holding positions, in the pools' order; each isolated position's
        held = {id(legs[0].pool) for legs in by_symbol.values()}
        self._held = [pool for pool in self.cross_pools.values() if id(pool) in held]
        self._isolated = self.pools[len(self.cross_pools) :]
        # every cross leg of a symbol moves together (both legs in hedge mode), and so do
        # the coins valued at that symbol in the same pool
        shared = {
            symbol: _Liquidation(
                legs,
                None,
                max(cross_ticks[symbol]),
                [c for c in self.coins if c.symbol == symbol and c.pool is legs[0].pool],
            )
            for symbol, legs in by_symbol.items()
        }
        self._groups = [
            _Liquidation([lp], lp.position.isolated_margin, ticks[i])
            if lp.position.is_isolated
            else shared[lp.symbol]
            for i, lp in enumerate(self.positions)
        ]

    @property
    def bounded(self) -> bool:
        """Whether bounds from the running figures cover the whole account: no coin moving
        with a mark, no currency lent below zero, and at most one cross pool holding
        positions (so the account's cross figures stay that pool's whatever the marks do)."""
        return not self.coins and len(self._held) <= 1 and all(pool.bounded for pool in self.pools)

    @property
    def cross(self) -> LivePool:
        """The cross pool with the highest ratio among those holding positions (the first on
        a tie; the settle currency's when none holds one): the account's cross figures."""
        held = self._held
        if not held:
            return self.pools[0]
        if len(held) == 1:
            return held[0]
        return max(held, key=lambda pool: pool.ratio)

    @property
    def worst_ratio(self) -> Decimal:
        """The highest ratio among the account's pools (the cross pools holding positions,
        each isolated position's)."""
        held = self._held
        if not self._isolated and len(held) == 1:
            return held[0].ratio  # the common case, on every tick: one cross pool
        return max((pool.ratio for pool in (*self._isolated, *held)), default=ZERO)

    @property
    def cross_notional(self) -> Decimal:
        cross = self.cross
        return sum((lp.notional for lp in self.positions if lp.pool is cross), ZERO)

    @property
    def effective_leverage(self) -> Decimal | None:
        """The cross pool's notional / margin balance."""
        return leverage(self.cross_notional, self.cross.margin_balance)

    @property
    def concentration(self) -> Decimal | None:
        """The largest position's share of the account's notional (as :func:`compute`)."""
        return largest_share([lp.notional for lp in self.positions])

    @property
    def margin_concentration(self) -> Decimal | None:
        """The largest position's share of the account's maintenance margin."""
        return largest_share([lp.mm for lp in self.positions])

    def liquidation_price(self, index: int) -> Decimal | None:
        """Position ``index``'s liquidation price, as :func:`compute` gives it."""
        lp = self.positions[index]
        liq = self._groups[index].price(lp.pool)
        p = lp.position
        if liq is not None and self.account.profile.rounds_liquidation_to_tick and p.tick_size:
            liq = round_to_tick(liq, p.side, p.tick_size)
        return liq

    def bankruptcy_price(self, index: int) -> Decimal | None:
        """Position ``index``'s bankruptcy price, as :func:`compute` gives it."""
        return self._groups[index].bankruptcy(self.positions[index].pool)

    def bankruptcy_buffer(self, index: int) -> Decimal | None:
        """The distance between position ``index``'s liquidation and bankruptcy prices, as a
        fraction of its mark: how far past its liquidation price the close may fill before the
        account owes more than it holds. ``None`` without both prices."""
        liq = self.liquidation_price(index)
        bankrupt = self.bankruptcy_price(index)
        if liq is None or bankrupt is None:
            return None
        return abs(liq - bankrupt) / self.positions[index].mark

    def liquidation_distance(self, index: int) -> Decimal | None:
        lp = self.positions[index]
        return liquidation_distance(lp.mark, self.liquidation_price(index), lp.pool.ratio)

    def _moves_with_coins(self, pool: LivePool) -> bool:
        return any(coin.pool is pool for coin in self.coins)

    def alone(self, index: int) -> bool:
        """Position ``index`` is the only leg liquidated at its price (isolated, or the one
        cross leg of its symbol: no hedged twin, no coin moving with it)."""
        group = self._groups[index]
        return len(group.members) == 1 and not group.coins

    def others_require_no_less_than_zero(self, index: int) -> bool:
        """Every other term of position ``index``'s pool's requirement is at least 0 at every
        price, so that the pool's requirement is at least the leg's own: only where
        :attr:`bounded` holds (no coin moving with a mark, no currency lent on tiers, one
        cross pool holding positions), each other leg of its pool with a least requirement
        rate (:func:`requirement_rate`), and what its held liabilities require (fixed) at
        least 0. ``False`` proves nothing."""
        if not self.bounded:
            return False
        lp = self.positions[index]
        pool = lp.pool
        if not lp.position.is_isolated and self._held_requirement[pool.asset] < 0:
            return False
        return all(o.requirement_rate() is not None for o in self.positions if o.pool is pool)

    def liquidation_beyond(self, index: int, d: Decimal) -> bool:
        """True when position ``index``'s :meth:`liquidation_distance` is provably above ``d``
        (or it has no liquidation price), from running figures, with no solve. ``False``
        proves nothing: solve it."""
        pool = self.positions[index].pool
        if self.coins and self._moves_with_coins(pool):
            return False  # coins that move with marks: the bound does not cover them
        return self._groups[index].beyond(pool, d)

    def liquidations_beyond(self, d: Decimal) -> bool:
        """:meth:`liquidation_beyond` of every position at once, in O(1) per pool. ``False``
        proves nothing: ask per position."""
        for pool in self._held:
            if (self.coins and self._moves_with_coins(pool)) or not pool.beyond(d):
                return False
        return all(pool.beyond(d) for pool in self._isolated)

    def crash_distance(self) -> Decimal | None:
        """The uniform relative move of every mark that liquidates something (signed): the
        first of the isolated positions and each cross pool (solved on its own)."""
        moves: list[Decimal | None] = []
        cross_terms: dict[int, list[Term]] = {id(pool): [] for pool in self._held}
        for lp, group in zip(self.positions, self._groups, strict=True):
            if lp.position.is_isolated:
                if (liq := group.price(lp.pool)) is not None:
                    moves.append(liq / lp.mark - 1)
            else:
                cross_terms[id(lp.pool)].append((lp.leg, lp.u))
        main, *more = self._held or [self.pools[0]]
        # the main pool's move last, as compute() puts its pool's after the isolated moves:
        # of two equally near moves, the same one is reported
        for pool in (*more, main):
            moves.append(pool_crash_move(*self._crash_inputs(pool, cross_terms.get(id(pool), []))))
        return crash_distance(self.worst_ratio, moves)

    def _crash_inputs(
        self, pool: LivePool, terms: list[Term]
    ) -> tuple[Decimal, list[Term], bool, list[CollateralTerm], list[Owed]]:
        """A cross pool's crash solve: its balance without the coins that move less the
        others' requirement (the positions' is in the terms), its legs, whether they are
        inverse, those coins, and each margin asset's equity line."""
        inverse = next((lp.position.inverse for lp in self.positions if lp.pool is pool), False)
        mine = [coin for coin in self.coins if coin.pool is pool]
        fixed = pool.balance - pool.discount - sum((coin.value for coin in mine), ZERO)
        fixed -= self._held_requirement[pool.asset]
        # every leg moves: each line's equity is its wallet and its legs' PnL
        lines = [(line.asset, line.wallet, line.terms) for line in pool.lines.values()]
        owed = owed_lines(lines, {}, terms)
        return fixed, terms, inverse, [coin.term(per_mark=False) for coin in mine], owed

    def current(self) -> Account:
        """The account at its current marks, for full metrics."""
        moving = iter(self.coins)  # in the snapshot's order, pool by pool

        def coins(held: tuple[Collateral, ...]) -> tuple[Collateral, ...]:
            return tuple(
                replace(c, price=next(moving).price) if c.price_symbol else c for c in held
            )

        account = self.account
        return replace(
            account,
            positions=tuple(replace(lp.position, mark_price=lp.mark) for lp in self.positions),
            collateral=coins(account.collateral),
            pools=tuple(replace(pool, collateral=coins(pool.collateral)) for pool in account.pools),
        )


class Book:
    """Many accounts' margin, updated incrementally by mark ticks.

    Each account takes its marks from a ``venue`` (the daemon's: the exchange's mark hub it
    streams from; accounts on two exchanges may hold the same symbol at different marks): a
    tick is kept once per (venue, symbol), and an account's positions and coins in the
    symbol are repriced at the latest of them when the account is next read (:meth:`live`,
    :meth:`get` and the other readers). Most accounts are not read between two ticks (the
    daemon skips an account within its band, rules/band.py, on its marks alone), so a tick
    costs one store, not a reprice of every holder. A :class:`LiveAccount` is current as of
    the read that returned it: read it again after applying marks."""

    def __init__(self) -> None:
        self._accounts: dict[Hashable, LiveAccount] = {}
        self._venues: dict[Hashable, Hashable] = {}
        # per (venue, symbol), per account: what the symbol's mark moves (positions, then
        # coins, in the account's order)
        self._moving: dict[
            tuple[Hashable, str], dict[Hashable, list[LivePosition | LiveCollateral]]
        ] = {}
        # per (venue, symbol) held: the latest tick (its number, the mark); per account and
        # symbol: the number of the tick it was last priced at (0: its snapshot's marks)
        self._ticks: dict[tuple[Hashable, str], tuple[int, Decimal]] = {}
        self._priced: dict[Hashable, dict[str, int]] = {}
        self._tick_count = 0

    def __len__(self) -> int:
        return len(self._accounts)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._accounts

    @property
    def symbols(self) -> Iterable[str]:
        """Every symbol whose mark moves something: held positions and collateral."""
        return {symbol for _, symbol in self._moving}

    def set_account(self, key: Hashable, account: Account, venue: Hashable = None) -> None:
        """Add or replace an account (a fresh snapshot after a reconcile, say), its marks
        coming from ``venue``: at its snapshot's marks until the venue's next tick."""
        self.remove_account(key)
        live = LiveAccount(key, account)
        self._accounts[key] = live
        self._venues[key] = venue
        moving: dict[str, list[LivePosition | LiveCollateral]] = {}
        for lp in live.positions:
            moving.setdefault(lp.symbol, []).append(lp)
        for coin in live.coins:
            moving.setdefault(coin.symbol, []).append(coin)
        for symbol, moved in moving.items():
            self._moving.setdefault((venue, symbol), {})[key] = moved
        self._priced[key] = {symbol: self._tick_number(venue, symbol) for symbol in moving}

    def remove_account(self, key: Hashable) -> None:
        live = self._accounts.pop(key, None)
        if live is None:
            return
        venue = self._venues.pop(key)
        for symbol in self._priced.pop(key):
            holders = self._moving[(venue, symbol)]
            del holders[key]
            if not holders:
                del self._moving[(venue, symbol)]
                self._ticks.pop((venue, symbol), None)

    def apply_mark(self, symbol: str, mark: Decimal, venue: Hashable = None) -> set[Hashable]:
        """A mark of ``symbol`` at ``venue`` for every position and coin in it (repriced
        when their account is next read); returns the accounts it touched."""
        holders = self._moving.get((venue, symbol))
        if holders is None:
            return set()
        self._tick_count += 1
        self._ticks[(venue, symbol)] = (self._tick_count, mark)
        return set(holders)

    def holders(self, symbol: str, venue: Hashable = None) -> int:
        """How many positions (of all accounts) are in ``symbol`` at ``venue``."""
        holders = self._moving.get((venue, symbol), {})
        return sum(isinstance(one, LivePosition) for m in holders.values() for one in m)

    def apply_account_mark(self, key: Hashable, symbol: str, mark: Decimal) -> None:
        """Reprice one account's positions in ``symbol`` (replay; the daemon for a holder its
        snapshot does not cover yet): its newest mark, until the venue's next tick (the
        venue's ticks so far are applied first, so that none of them overrides it later)."""
        holders = self._moving.get((self._venues[key], symbol), {})
        self._catch_up(key)
        for moved in holders.get(key, ()):
            moved.reprice(mark)

    def _tick_number(self, venue: Hashable, symbol: str) -> int:
        tick = self._ticks.get((venue, symbol))
        return 0 if tick is None else tick[0]

    def _catch_up(self, key: Hashable) -> LiveAccount:
        """The account, its positions and coins repriced at the marks ticked since it was
        last read."""
        live = self._accounts[key]
        venue = self._venues[key]
        ticks = self._ticks
        priced = self._priced[key]
        for symbol, number in priced.items():
            tick = ticks.get((venue, symbol))
            if tick is not None and tick[0] > number:
                mark = tick[1]
                for one in self._moving[(venue, symbol)][key]:
                    one.reprice(mark)
                priced[symbol] = tick[0]
        return live

    def live(self, key: Hashable) -> LiveAccount:
        return self._catch_up(key)

    def get(self, key: Hashable) -> LiveAccount | None:
        return self._catch_up(key) if key in self._accounts else None

    def worst_ratio(self, key: Hashable) -> Decimal:
        return self._catch_up(key).worst_ratio

    def cross_pool(self, key: Hashable) -> LivePool:
        return self._catch_up(key).cross

    def account(self, key: Hashable) -> Account:
        """The account at its current marks, for full metrics."""
        return self._catch_up(key).current()

    def metrics(self, key: Hashable, target_ratio: Decimal | None = None) -> AccountMetrics:
        return compute(self.account(key), target_ratio)
