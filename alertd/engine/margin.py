"""Margin metrics of an account: per position, per cross pool, and account-wide.

Pure: takes an :class:`~alertd.engine.model.Account` and returns frozen results. One direction
for every exchange: ``margin_ratio = maintenance margin / margin balance``; higher is riskier,
1 is liquidation, and a margin balance at or below zero is reported as ``Infinity``
(liquidated), so a rule comparing "above" can never miss it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from itertools import pairwise

from alertd.engine.collateral import Collateral, CollateralTerm, Owed, SettleTerms
from alertd.engine.legs import Leg, Term, from_u, nearest_root, to_u
from alertd.engine.model import Account, EquityLine, Position, Side
from alertd.engine.profiles import DisplayedRatio, ExchangeProfile
from alertd.engine.tiers import TierBasis

ZERO = Decimal(0)
ONE = Decimal(1)
INFINITY = Decimal("Infinity")


def margin_ratio(requirement: Decimal, equity: Decimal) -> Decimal:
    if equity <= 0:
        return INFINITY
    return requirement / equity


def displayed_ratio(
    profile: ExchangeProfile, requirement: Decimal, equity: Decimal
) -> Decimal | None:
    """The figure the exchange's own screen shows for the same pool or position."""
    if profile.displayed_ratio is DisplayedRatio.REQUIREMENT_OVER_EQUITY:
        return margin_ratio(requirement, equity)
    if profile.displayed_ratio is DisplayedRatio.EQUITY_OVER_REQUIREMENT:
        return equity / requirement if requirement > 0 else None
    return None


@dataclass(frozen=True, slots=True)
class PositionMetrics:
    position: Position
    notional: Decimal  # settle currency (base coin for inverse)
    unrealized_pnl: Decimal
    tier: int  # 0-based index into the position's tier table
    mmr: Decimal
    maintenance_margin: Decimal
    initial_margin: Decimal | None  # None when the snapshot gives no leverage
    margin_balance: Decimal  # the equity behind the position: its own if isolated, else the pool's
    margin_ratio: Decimal
    displayed_ratio: Decimal | None
    liquidation_price: Decimal | None
    bankruptcy_price: Decimal | None
    liquidation_distance: Decimal | None  # fraction of mark; negative once past it
    effective_leverage: Decimal | None
    margin_to_add: Decimal | None  # isolated only: margin that restores the target ratio
    size_to_cut: Decimal | None  # contracts to close to restore the target ratio

    @property
    def bankruptcy_buffer(self) -> Decimal | None:
        """Liquidation to bankruptcy price as a fraction of the mark (as
        :meth:`~alertd.engine.book.LiveAccount.bankruptcy_buffer`); ``None`` without both."""
        liq, bankrupt = self.liquidation_price, self.bankruptcy_price
        if liq is None or bankrupt is None:
            return None
        return abs(liq - bankrupt) / self.position.mark_price


@dataclass(frozen=True, slots=True)
class CollateralMetrics:
    collateral: Collateral
    market_value: Decimal  # amount x price
    value: Decimal  # what it adds to the pool's equity: after its ratio (liabilities in full)
    requirement: Decimal = ZERO  # what it adds to the pool's maintenance margin (a liability)


@dataclass(frozen=True, slots=True)
class MarginAssetMetrics:
    """One margin asset's equity line in the cross pool (``Account.equity_lines``): the settle
    currency's (its terms ``Account.settle_terms``), or another margin asset's sharing the
    pool (``Account.margin_assets``, Binance multi-assets: USDC beside USDT)."""

    asset: str
    wallet_balance: Decimal  # in ``asset``
    # its wallet and the PnL of the cross positions margined in it, in ``asset`` (Binance's
    # assetEquity): what its terms count, and what margin added to its wallet raises
    equity: Decimal
    # what its terms take from its equity (0 or less: OKX's discount tiers) or, converting
    # it at its bid or ask rate (Binance multi-assets), take or add; in margin_balance
    adjustment: Decimal = ZERO
    # what the asset owed requires (the equity below zero, or borrowed, where the exchange
    # lends it: OKX's and Gate's borrowing tiers), in the pool's maintenance margin
    requirement: Decimal = ZERO

    @property
    def value(self) -> Decimal:
        """The equity as the pool counts it, in the pool's unit: after its terms."""
        return self.equity + self.adjustment


@dataclass(frozen=True, slots=True)
class PoolMetrics:
    """The cross margin pool: wallet balance (and collateral) shared by every cross position."""

    asset: str  # the pool's margin asset: every money figure of it is in this currency
    wallet_balance: Decimal
    unrealized_pnl: Decimal
    margin_balance: Decimal
    maintenance_margin: Decimal
    margin_ratio: Decimal
    displayed_ratio: Decimal | None
    buffer: Decimal
    notional: Decimal
    effective_leverage: Decimal | None
    margin_to_add: Decimal | None
    # coins besides the wallet balance, and their sum after ratios (in margin_balance)
    collateral: tuple[CollateralMetrics, ...] = ()
    collateral_value: Decimal = ZERO
    # every margin asset's equity line, the settle currency's first (:attr:`settle_line`),
    # then those of the other margin assets sharing the pool (:attr:`margin_assets`); each
    # line's value is in margin_balance, its requirement in maintenance_margin
    equity_lines: tuple[MarginAssetMetrics, ...] = ()

    @property
    def settle_line(self) -> MarginAssetMetrics:
        """The settle currency's equity line (``compute`` gives every pool one)."""
        return self.equity_lines[0]

    @property
    def margin_assets(self) -> tuple[MarginAssetMetrics, ...]:
        """The lines of the other margin assets sharing the pool."""
        return self.equity_lines[1:]


@dataclass(frozen=True, slots=True)
class AccountMetrics:
    account: Account
    pool: PoolMetrics
    positions: tuple[PositionMetrics, ...]
    worst_ratio: Decimal
    # The uniform relative move of every mark (-0.15 = all fall 15%) at which the account's
    # first liquidation happens: the cross pool's, or an isolated position's.
    crash_distance: Decimal | None
    target_ratio: Decimal | None
    # the largest position's share of the account's notional, and of its maintenance margin
    # (every position, cross and isolated; None with fewer than two positions)
    concentration: Decimal | None = None
    margin_concentration: Decimal | None = None
    # an account of several margin pools (``Account.pools``): each pool's own figures, the
    # settle currency's first; ``pool`` is then the riskiest cross pool's (the highest ratio)
    # and everything else the account's whole. Empty for an account of one pool.
    pools: tuple[AccountMetrics, ...] = ()

    @property
    def by_pool(self) -> tuple[AccountMetrics, ...]:
        """Each pool's own figures (this account's alone when it has one pool)."""
        return self.pools or (self,)

    def pool_of(self, key: tuple[str, Side]) -> AccountMetrics:
        """The figures of the pool holding position ``key``: what its remedies are solved on."""
        return next(
            (m for m in self.pools if any(pm.position.key == key for pm in m.positions)), self
        )

    def riskiest_pool(self) -> AccountMetrics:
        """The pool whose cross ratio is the highest (the first on a tie): the pool the
        account's cross figures (``pool``) describe."""
        return riskiest(self.pools) if self.pools else self

    def crash_pool(self) -> AccountMetrics:
        """The pool whose first liquidation sets the account's crash distance."""
        return next(
            (m for m in self.pools if m.crash_distance == self.crash_distance),
            self.riskiest_pool(),
        )


def riskiest(pools: Sequence[AccountMetrics]) -> AccountMetrics:
    """The pool with the highest cross margin ratio among those holding cross positions (the
    first of them on a tie; the first pool when none holds one)."""
    held = [m for m in pools if any(not pm.position.is_isolated for pm in m.positions)]
    return max(held, key=lambda m: m.pool.margin_ratio) if held else pools[0]


def round_to_tick(price: Decimal, side: Side, tick: Decimal) -> Decimal:
    # Bybit rounds towards the mark: a long's liquidation price up, a short's down.
    rounding = ROUND_CEILING if side is Side.LONG else ROUND_FLOOR
    return (price / tick).to_integral_value(rounding=rounding) * tick


def isolated_margin_liquidating_at(
    p: Position, profile: ExchangeProfile, price: Decimal
) -> Decimal | None:
    """The isolated margin with which ``p`` liquidates at ``price``: the root ``compute``
    solves for an isolated position (margin + PnL = the requirement, MM and the fee to close
    where the profile counts it) read backwards for the margin. An exchange that sends its
    liquidation price but not the margin it holds (Bybit since ``positionBalance`` is
    deprecated: margin added by hand) so gives alertd that margin, and alertd's own price
    from it is the exchange's. None where ``price`` cannot be ``p``'s liquidation price: not
    positive, not on the losing side of its entry, or a margin of nothing."""
    if not price.is_finite() or price <= 0 or int(p.side) * (price - p.entry_price) >= 0:
        return None
    leg = Leg.of(p, profile)
    u = to_u(price, p.inverse)
    margin = leg.mm(u) - leg.upnl(u)
    return margin if margin > 0 else None


def price_from_root(x: Decimal | None, inverse: bool) -> Decimal | None:
    if x is None or x <= 0:
        return None
    return from_u(x, inverse)


def liquidation_distance(mark: Decimal, liq: Decimal | None, ratio: Decimal) -> Decimal | None:
    """abs(mark - liq) / mark, negative once the position is past it; None without a price."""
    if liq is None:
        return None
    d = abs(mark - liq) / mark
    return -d if ratio >= 1 else d


def largest_share(parts: Sequence[Decimal]) -> Decimal | None:
    """The largest of ``parts`` (each >= 0) over their sum: how much of the whole one part
    holds. None with fewer than two parts (one position is the whole account: concentration
    says nothing its leverage does not) or a zero sum."""
    if len(parts) < 2:
        return None
    total = sum(parts, ZERO)
    return max(parts) / total if total > 0 else None


def leverage(notional: Decimal, equity: Decimal) -> Decimal | None:
    """Notional over the equity behind it; Infinity once the equity is gone."""
    if notional == 0:
        return ZERO
    return notional / equity if equity > 0 else INFINITY


def _quantity_within(
    leg: Leg, u: Decimal, contract_size: Decimal, quantity: Decimal, budget: Decimal
) -> Decimal:
    """The largest quantity <= ``quantity`` whose maintenance margin fits ``budget`` (>= 0).

    Walks the tiers upwards: maintenance margin grows with size, continuously for bracket
    tiers and in steps for OKX-style ones (where the answer may be a tier's upper edge).
    """
    price_u = leg.entry_u if leg.fixed_mm is not None else u
    table = leg.tiers
    per_unit = contract_size if table.basis is TierBasis.CONTRACTS else ONE / price_u
    best = ZERO
    for i, tier in enumerate(table.tiers):
        lo = table.floor(i) * per_unit
        if lo >= quantity:
            break
        hi = quantity if tier.cap is None else min(tier.cap * per_unit, quantity)
        rate = price_u * (tier.mmr + leg.fee_rate) + leg.close_fee
        fits = hi if rate == 0 else (budget + tier.deduction) / rate
        if fits >= hi:
            best = hi
            continue
        return fits if fits > lo else best
    return best


def _isolated_quantity_within(
    leg: Leg,
    u: Decimal,
    contract_size: Decimal,
    quantity: Decimal,
    equity: Decimal,
    target: Decimal,
) -> Decimal | None:
    """Largest quantity at which an isolated position meets ``target`` if cut at the mark.

    Cutting an isolated position releases its margin pro rata, so equity scales with size;
    only the deduction makes a smaller position safer. ``None`` when no cut helps.
    """
    price_u = leg.entry_u if leg.fixed_mm is not None else u
    table = leg.tiers
    per_unit = contract_size if table.basis is TierBasis.CONTRACTS else ONE / price_u
    equity_per_unit = equity / quantity
    for i in range(len(table.tiers) - 1, -1, -1):
        tier = table.tiers[i]
        lo = table.floor(i) * per_unit
        if lo >= quantity:
            continue
        hi = quantity if tier.cap is None else min(tier.cap * per_unit, quantity)
        # need q * (price_u * rate - target * equity_per_unit) <= deduction
        slope = price_u * (tier.mmr + leg.fee_rate) + leg.close_fee - target * equity_per_unit
        if slope <= 0:
            return hi
        fits = tier.deduction / slope
        if fits > lo:
            return min(fits, hi)
    return None


def crash_distance(worst_ratio: Decimal, moves: Iterable[Decimal | None]) -> Decimal | None:
    """The uniform relative move of every mark that liquidates something first: the nearest
    of ``moves`` (each isolated position's ``liquidation / mark - 1`` and each cross pool's
    :func:`pool_crash_move`; None for one that has none); 0 when something is already at or
    past liquidation (``worst_ratio`` at 1 or above).

    Where a stepped requirement jumps the ratio across 1 (the settle currency owed passing a
    borrowing tier's cap, say), it is the move to that step: a tier holds its cap, so the
    ratio there may still be below 1, and is at or above 1 just past it.
    """
    if worst_ratio >= 1:
        return ZERO
    found = [move for move in moves if move is not None]
    return min(found, key=abs) if found else None


def pool_crash_move(
    wallet_balance: Decimal,
    cross_terms: Sequence[Term],
    inverse: bool,
    collateral_terms: Sequence[CollateralTerm] = (),
    owed: Sequence[Owed] = (),
) -> Decimal | None:
    """The uniform relative move of every mark at which one cross pool's ratio reaches 1;
    None without legs or a root.

    ``cross_terms`` are the pool's legs with their current ``u`` (the move factor is solved);
    ``collateral_terms`` the coins that move with a price, with their current prices
    (``wallet_balance`` holds the value of those that do not, and every margin asset's wallet
    at par); ``owed`` each margin asset's equity line (what its terms take or add, what it
    owed requires).
    """
    if not cross_terms:
        return None
    x = nearest_root(
        wallet_balance, cross_terms, ONE, inverse, collateral=collateral_terms, owed=owed
    )
    return None if x is None else from_u(x, inverse) - 1


def linked_collateral(
    account: Account, symbol: str
) -> tuple[list[CollateralTerm], Decimal, Decimal]:
    """The coins valued at ``symbol`` (as terms in its price), the wallet balance plus the
    value of every other coin, and those other coins' requirement (liabilities')."""
    linked: list[CollateralTerm] = []
    held = account.wallet_balance
    held_requirement = ZERO
    for c in account.collateral:
        if c.price_symbol == symbol:
            linked.append((c, account.collateral_scale(c)))
        else:
            held += c.value
            held_requirement += c.requirement
    return linked, held, held_requirement


def moving_collateral(coins: Sequence[Collateral]) -> tuple[list[CollateralTerm], Decimal]:
    """The coins that move in a uniform move of every price (as terms in the move factor),
    and the value less the requirement of those that do not."""
    moving: list[CollateralTerm] = []
    fixed = ZERO
    for c in coins:
        if c.price_symbol:
            moving.append((c, c.price))
        else:
            fixed += c.value - c.requirement
    return moving, fixed


def account_leg(account: Account, p: Position) -> Leg:
    """``p`` as a leg of ``account``: on the equity line of its margin asset
    (:meth:`Account.line_of`), its requirement converted at that asset's ask rate."""
    line = account.line_of(p)
    terms = next((t for asset, _, t in account.equity_lines() if asset == line), None)
    rate = terms.mm_rate if terms is not None else ONE
    return Leg.of(p, account.profile, rate, line)


def owed_line(
    terms: SettleTerms | None, level: Decimal, legs: Sequence[Term], line: str
) -> Owed | None:
    """Margin asset ``line``'s equity as the solver sees it when ``legs`` move: ``level``
    (its wallet and what does not move) plus the PnL of each leg on its line, ``sign q (c x -
    entry_u)``; None where the pool counts it at par and nothing is lent."""
    if terms is None:
        return None
    mine = [(leg, c) for leg, c in legs if leg.line == line]
    slope = sum((leg.sign * leg.quantity * c for leg, c in mine), ZERO)
    at_entry = sum((leg.sign * leg.quantity * leg.entry_u for leg, _ in mine), ZERO)
    return Owed(terms, level - at_entry, slope)


def owed_lines(
    lines: Sequence[EquityLine], levels: Mapping[str, Decimal], legs: Sequence[Term]
) -> list[Owed]:
    """Every equity line with terms (:meth:`Account.equity_lines`) as the solver sees it when
    ``legs`` move; ``levels`` what moves no line's equity besides its wallet (the PnL of its
    legs that do not move, by asset)."""
    found = []
    for asset, wallet, terms in lines:
        line = owed_line(terms, wallet + levels.get(asset, ZERO), legs, asset)
        if line is not None:
            found.append(line)
    return found


def margin_to_add(
    requirement: Decimal,
    equity: Decimal,
    target: Decimal,
    terms: SettleTerms | None = None,
    settle_equity: Decimal = ZERO,
    level: Decimal = ZERO,
) -> Decimal:
    """The least margin ``x`` (>= 0) to add to the wallet for ``target x equity -
    requirement >= level`` (a ratio of ``target`` with ``level`` 0; a buffer of ``level``
    with ``target`` 1). ``requirement`` and ``equity`` are the pool's now; with ``terms``,
    ``settle_equity`` is the settle currency's own: what is added raises it, repays what is
    owed (its requirement steps down at each borrowing cap, so the answer may be a cap, past
    the target) and counts at its discount rate. ``Infinity`` where no amount gets there (a
    discount of 0 past the last cap)."""
    if terms is None:
        return max(ZERO, (requirement + level - target * equity) / target)
    e0 = settle_equity
    # the pool without what the terms count of the settle currency now
    rest_equity = equity - terms.counted(e0)
    rest_requirement = requirement - terms.requirement(e0)
    if target * equity - requirement - level >= 0:
        return ZERO
    edges = [e - e0 for e in terms.edges() if e > e0]
    bounds: list[Decimal | None] = [ZERO, *edges, None]
    for lo, hi in pairwise(bounds):
        assert lo is not None
        probe = lo * 2 + 1 if hi is None else (lo + hi) / 2
        ca, cb, ra, rb = terms.lines(e0 + probe)
        # h(x) = a + b x on this piece
        a = target * (rest_equity + ca + cb * e0) - (rest_requirement + ra + rb * e0) - level
        b = target * cb - rb
        if a + b * lo >= 0:
            return lo  # the requirement steps down at the edge
        if b > 0:
            root = -a / b
            if hi is None or root <= hi:
                return root
    return INFINITY


def compute(
    account: Account,
    target_ratio: Decimal | None = None,
    *,
    crash: bool = True,
    bankruptcy: bool = True,
) -> AccountMetrics:
    """All metrics of ``account`` at its current marks.

    ``crash=False`` leaves out the crash distance (``None``): solving it moves every position
    at once and costs the most; the daemon asks for it only when a rule uses it.
    ``bankruptcy=False`` leaves out the positions' bankruptcy prices (``None``): a root
    solved per symbol that the comparison with the exchange's figures does not read.

    An account of several pools (``Account.pools``) is computed pool by pool, each on its own
    wallet, coins and positions (:meth:`~alertd.engine.model.Account.pool_accounts`); the
    account's worst ratio is the worst pool's, its crash distance the first pool to go.
    """
    if not account.pools:
        return _compute_pool(account, target_ratio, crash, bankruptcy)
    parts = tuple(
        _compute_pool(a, target_ratio, crash, bankruptcy) for a in account.pool_accounts()
    )
    figures = {id(pm.position): pm for part in parts for pm in part.positions}
    results = tuple(figures[id(p)] for p in account.positions)
    crashes = [m.crash_distance for m in parts if m.crash_distance is not None]
    return AccountMetrics(
        account=account,
        pool=riskiest(parts).pool,
        positions=results,
        worst_ratio=max(m.worst_ratio for m in parts),
        crash_distance=min(crashes, key=abs) if crashes else None,
        target_ratio=target_ratio,
        concentration=largest_share([pm.notional for pm in results]),
        margin_concentration=largest_share([pm.maintenance_margin for pm in results]),
        pools=parts,
    )


def _compute_pool(
    account: Account, target_ratio: Decimal | None, crash: bool, bankruptcy: bool = True
) -> AccountMetrics:
    """:func:`compute` of one pool: every position of ``account`` margined against its one
    cross wallet (and coins), or its own isolated margin."""
    profile = account.profile
    legs = [account_leg(account, p) for p in account.positions]
    us = [to_u(p.mark_price, p.inverse) for p in account.positions]
    upnls = [leg.upnl(u) for leg, u in zip(legs, us, strict=True)]
    mms = [leg.mm(u) for leg, u in zip(legs, us, strict=True)]
    cross = [i for i, p in enumerate(account.positions) if not p.is_isolated]

    pool_upnl = sum((upnls[i] for i in cross), ZERO)
    coins = [
        CollateralMetrics(c, c.market_value, c.value, c.requirement) for c in account.collateral
    ]
    collateral_value = sum((c.value for c in coins), ZERO)
    # a liability's requirement (OKX's borrowing tiers) is the pool's as the positions' is,
    # and so is that of the settle currency owed; its discount is the pool's equity's
    lending = account.settle_terms
    lines = account.equity_lines()
    line_upnl = {asset: ZERO for asset, _, _ in lines}
    for i in cross:
        if (line := legs[i].line) is not None:
            line_upnl[line] += upnls[i]
    # each margin asset's equity as its terms count it: what they take or add (in the
    # equity), what it owed requires (in the requirement)
    equity_lines: list[MarginAssetMetrics] = []
    for asset, wallet, counting in lines:
        equity = wallet + line_upnl[asset]
        required = counting.requirement(equity) if counting is not None else ZERO
        adjustment = counting.adjustment(equity) if counting is not None else ZERO
        equity_lines.append(MarginAssetMetrics(asset, wallet, equity, adjustment, required))
    settle_equity = equity_lines[0].equity
    coins_mm = sum((c.requirement for c in coins), ZERO)
    lines_mm = sum((line.requirement for line in equity_lines), ZERO)
    pool_mm = sum((mms[i] for i in cross), ZERO) + coins_mm + lines_mm
    pool_equity = account.wallet_balance + collateral_value + pool_upnl
    pool_equity += account.shared_wallets + sum((line.adjustment for line in equity_lines), ZERO)
    pool_ratio = margin_ratio(pool_mm, pool_equity)
    pool_notional = sum((legs[i].quantity * us[i] for i in cross), ZERO)
    pool = PoolMetrics(
        asset=account.settle,
        wallet_balance=account.wallet_balance,
        unrealized_pnl=pool_upnl,
        margin_balance=pool_equity,
        maintenance_margin=pool_mm,
        margin_ratio=pool_ratio,
        displayed_ratio=displayed_ratio(profile, pool_mm, pool_equity) if cross else None,
        buffer=pool_equity - pool_mm,
        notional=pool_notional,
        effective_leverage=leverage(pool_notional, pool_equity),
        margin_to_add=(
            _finite(margin_to_add(pool_mm, pool_equity, target_ratio, lending, settle_equity))
            if target_ratio is not None and cross
            else None
        ),
        collateral=tuple(coins),
        collateral_value=collateral_value,
        equity_lines=tuple(equity_lines),
    )

    # Cross liquidation prices: per symbol, every cross leg of that symbol moves together
    # (both legs in hedge mode) while the other symbols stay at their marks.
    # One pass groups the legs and sums the pool; each symbol's "rest of the pool" is the
    # total less its own legs (linear in positions, where a sum per symbol was quadratic).
    by_symbol: dict[str, list[int]] = {}
    for i in cross:
        by_symbol.setdefault(account.positions[i].symbol, []).append(i)
    pool_net = sum((upnls[i] - mms[i] for i in cross), ZERO)
    cross_liq: dict[str, tuple[Decimal | None, Decimal | None]] = {}
    for symbol, mine in by_symbol.items():
        others = dict(line_upnl)  # each line's PnL of the legs that do not move
        if len(by_symbol) == 1:
            rest = others_upnl = ZERO  # nothing else moves the pool
            others = {}
        else:
            rest = pool_net - sum((upnls[i] - mms[i] for i in mine), ZERO)
            others_upnl = pool_upnl - sum((upnls[i] for i in mine), ZERO)
            for i in mine:
                if (line := legs[i].line) is not None:
                    others[line] -= upnls[i]
        terms: list[Term] = [(legs[i], ONE) for i in mine]
        inverse = account.positions[mine[0]].inverse
        u0 = us[mine[0]]
        # coins valued at this symbol move with it; the others hold their value
        linked, held, held_requirement = linked_collateral(account, symbol)
        held += account.shared_wallets
        const = held - held_requirement + rest
        owed = owed_lines(lines, others, terms)
        cross_liq[symbol] = (
            price_from_root(nearest_root(const, terms, u0, inverse, True, linked, owed), inverse),
            price_from_root(
                nearest_root(held + others_upnl, terms, u0, inverse, False, linked, owed),
                inverse,
            )
            if bankruptcy
            else None,
        )

    moves: list[Decimal] = []
    results: list[PositionMetrics] = []
    for i, p in enumerate(account.positions):
        leg, u = legs[i], us[i]
        notional = leg.quantity * u
        tier_index = leg.tier_index(u)
        tier = p.tiers.tiers[tier_index]
        if p.is_isolated:
            assert p.isolated_margin is not None
            equity = p.isolated_margin + upnls[i]
            ratio = margin_ratio(mms[i], equity)
            own: list[Term] = [(leg, ONE)]
            liq = price_from_root(nearest_root(p.isolated_margin, own, u, p.inverse), p.inverse)
            bankrupt = (
                price_from_root(
                    nearest_root(p.isolated_margin, own, u, p.inverse, False), p.inverse
                )
                if bankruptcy
                else None
            )
            shown = displayed_ratio(profile, mms[i], equity)
            to_add = max(ZERO, mms[i] / target_ratio - equity) if target_ratio is not None else None
            if liq is not None:
                moves.append(liq / p.mark_price - 1)
        else:
            equity = pool_equity
            ratio = pool_ratio
            liq, bankrupt = cross_liq[p.symbol]
            shown = pool.displayed_ratio
            to_add = None
        if liq is not None and profile.rounds_liquidation_to_tick and p.tick_size:
            liq = round_to_tick(liq, p.side, p.tick_size)

        cut: Decimal | None = None
        if target_ratio is not None:
            cut = _size_to_cut(
                p,
                leg,
                u,
                mms[i],
                equity,
                ratio,
                target_ratio,
                pool_mm if not p.is_isolated else None,
            )

        entry_basis = profile.isolated_mm_at_entry and p.is_isolated
        im_notional = leg.quantity * leg.entry_u if entry_basis else notional
        results.append(
            PositionMetrics(
                position=p,
                notional=notional,
                unrealized_pnl=upnls[i],
                tier=tier_index,
                mmr=tier.mmr,
                maintenance_margin=mms[i],
                initial_margin=im_notional / p.leverage if p.leverage else None,
                margin_balance=equity,
                margin_ratio=ratio,
                displayed_ratio=shown,
                liquidation_price=liq,
                bankruptcy_price=bankrupt,
                liquidation_distance=liquidation_distance(p.mark_price, liq, ratio),
                effective_leverage=leverage(notional, equity),
                margin_to_add=to_add,
                size_to_cut=cut,
            )
        )

    ratios = [r.margin_ratio for r in results if r.position.is_isolated]
    if cross:
        ratios.append(pool_ratio)
    worst = max(ratios, default=ZERO)
    cross_terms: list[Term] = [(legs[i], us[i]) for i in cross]
    inverse = bool(cross) and account.positions[cross[0]].inverse
    moving, fixed = moving_collateral(account.collateral)
    return AccountMetrics(
        account=account,
        pool=pool,
        positions=tuple(results),
        worst_ratio=worst,
        crash_distance=(
            crash_distance(
                worst,
                [
                    *moves,
                    pool_crash_move(
                        account.wallet_balance + account.shared_wallets + fixed,
                        cross_terms,
                        inverse,
                        moving,
                        owed_lines(lines, {}, cross_terms),
                    ),
                ],
            )
            if crash
            else None
        ),
        target_ratio=target_ratio,
        concentration=largest_share([pm.notional for pm in results]),
        margin_concentration=largest_share([pm.maintenance_margin for pm in results]),
    )


def _finite(value: Decimal) -> Decimal | None:
    return value if value.is_finite() else None


def _size_to_cut(
    p: Position,
    leg: Leg,
    u: Decimal,
    mm: Decimal,
    equity: Decimal,
    ratio: Decimal,
    target: Decimal,
    pool_mm: Decimal | None,
) -> Decimal | None:
    """Contracts of ``p`` to close at the mark to bring its ratio to ``target``.

    Closing at the mark turns unrealized PnL into wallet balance, so cross equity is unchanged
    and only the requirement falls. ``None`` when cutting this position cannot get there.
    """
    if ratio <= target:
        return ZERO
    if equity <= 0:
        return None
    quantity = leg.quantity
    if pool_mm is None:
        keep = _isolated_quantity_within(leg, u, p.contract_size, quantity, equity, target)
    else:
        budget = target * equity - (pool_mm - mm)
        if budget < 0:
            return None
        keep = _quantity_within(leg, u, p.contract_size, quantity, budget)
    if keep is None:
        return None
    return (quantity - keep) / p.contract_size
