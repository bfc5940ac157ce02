"""What to do about a distance alert: the margin to add, or the size to cut, that puts the
liquidation back at a chosen distance from the mark.

A ratio alert's remedy comes with ``compute()`` (``margin_to_add`` and ``size_to_cut`` for a
target ratio). A distance alert's target is a price instead: the position is safe enough when,
with the marks moved to that price, its margin ratio is still at most 1 (the liquidation then
lies at or beyond it). Both remedies are solved on the engine's own figures at that price, so
they follow every convention the engine knows (tiers, fees in the requirement, isolated margin,
hedge mode) without a second formula.

Assumed, as for the ratio remedies: a cut closes at the current mark (its unrealized PnL becomes
wallet balance), without the closing fee; a smaller position is never riskier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal

from alertd.engine.margin import (
    AccountMetrics,
    PositionMetrics,
    compute,
    margin_to_add,
)
from alertd.engine.model import Account, Position, Side

ZERO = Decimal(0)
ONE = Decimal(1)
# bisection of a cut stops when the bracket is this fraction of the position's size
CUT_PRECISION = Decimal("1e-12")
MAX_STEPS = 200

Scenario = Callable[[Account], Account]


@dataclass(frozen=True, slots=True)
class Remedy:
    """Either action alone brings the liquidation to ``price`` (a position's) or the account's
    first liquidation to a uniform move of ``move`` (a crash distance)."""

    price: Decimal | None  # the mark at the target distance (liquidation-distance remedies)
    move: Decimal | None  # the uniform move at the target distance (crash-distance remedies)
    margin_to_add: Decimal  # settle currency, >= 0; isolated: to the position's own margin
    size_to_cut: Decimal | None  # contracts of ``cut``; None: closing it alone cannot get there
    cut: Position | None  # the position the cut applies to


def _shortfall(account: Account, isolated: tuple[str, Side] | None) -> Decimal:
    """How much equity is missing for a margin ratio of exactly 1 (negative: to spare)."""
    metrics = compute(account, crash=False)
    if isolated is None:
        pool = metrics.pool
        shortfall = pool.maintenance_margin - pool.margin_balance
        if shortfall > 0 and account.settle_terms is not None:
            # what is added repays the settle currency owed first, lowering its requirement
            # (and counts at its discount)
            return margin_to_add(
                pool.maintenance_margin,
                pool.margin_balance,
                ONE,
                account.settle_terms,
                pool.settle_line.equity,
            )
        return shortfall
    pm = next(pm for pm in metrics.positions if pm.position.key == isolated)
    return pm.maintenance_margin - pm.margin_balance


def _after_cut(
    account: Account, metrics: AccountMetrics, key: tuple[str, Side], c: Decimal
) -> Account:
    """``account`` after closing ``c`` contracts of the cross position ``key`` at its mark."""
    pm = next(pm for pm in metrics.positions if pm.position.key == key)
    p = pm.position
    realized = pm.unrealized_pnl * c / p.contracts
    kept = p.contracts - c
    positions = tuple(
        (replace(q, contracts=kept) if q.key == key else q)
        for q in account.positions
        if q.key != key or kept > 0
    )
    # the PnL realized joins the wallet of its margin asset's equity line (a USDC-M
    # position's USDC in Binance's multi-assets pool), where its rates count it
    return replace(account.credited(p, realized), positions=positions)


def _cross_cut(
    metrics: AccountMetrics, key: tuple[str, Side], scenario: Scenario
) -> Decimal | None:
    """The fewest contracts of ``key`` to close so that the pool survives ``scenario``."""
    return _fewest_cut(metrics, key, lambda a: _shortfall(scenario(a), None) <= 0)


def _fewest_cut(
    metrics: AccountMetrics, key: tuple[str, Side], good: Callable[[Account], bool]
) -> Decimal | None:
    """The fewest contracts of ``key`` to close (at its mark) for the account to be ``good``;
    None when closing all of it is not enough. ``good`` must hold for every larger cut."""
    account = metrics.account
    contracts = next(p.contracts for p in account.positions if p.key == key)

    def safe(c: Decimal) -> bool:
        return good(_after_cut(account, metrics, key, c))

    if safe(ZERO):
        return ZERO
    if not safe(contracts):
        return None
    low, high = ZERO, contracts
    for _ in range(MAX_STEPS):
        if high - low <= contracts * CUT_PRECISION:
            break
        middle = (low + high) / 2
        if safe(middle):
            high = middle
        else:
            low = middle
    # an exact answer on a lot boundary (a closed form would give it): the bracket's safe end
    # lies a hair above it, which a message rounding up to the lot would make one lot more
    lot = next(p.lot_size for p in account.positions if p.key == key)
    if lot:
        on_lot = (high / lot).to_integral_value(rounding=ROUND_FLOOR) * lot
        if low < on_lot < high and safe(on_lot):
            return on_lot
    return high  # the safe end of the bracket


def for_liquidation_distance(
    metrics: AccountMetrics, key: tuple[str, Side], distance: Decimal
) -> Remedy | None:
    """Margin to add, or contracts of ``key`` to close, so that the position's liquidation is at
    least ``distance`` (fraction of the mark) away. None when it has no liquidation price."""
    pm = next(pm for pm in metrics.positions if pm.position.key == key)
    p = pm.position
    if pm.liquidation_price is None:
        return None
    towards = -1 if pm.liquidation_price < p.mark_price else 1
    price = p.mark_price * (ONE + towards * distance)
    if price <= 0:
        return None

    def scenario(account: Account) -> Account:
        return account.with_marks({p.symbol: price})

    isolated = key if p.is_isolated else None
    to_add = max(ZERO, _shortfall(scenario(metrics.account), isolated))
    # an isolated position's margin shrinks with it: cutting does not move its liquidation
    cut = None if p.is_isolated else _cross_cut(metrics, key, scenario)
    return Remedy(price, None, to_add, cut, p)


def for_crash_distance(metrics: AccountMetrics, distance: Decimal) -> Remedy | None:
    """Margin to add to the cross pool, or contracts of its largest cross position to close,
    so that every mark can move ``distance`` (in the crash's direction) before the first
    liquidation. None when the account has no crash distance, or isolated positions set it."""
    move = metrics.crash_distance
    if move is None or move == 0:
        return None
    target = distance if move > 0 else -distance
    if any(pm.position.is_isolated for pm in metrics.positions):
        return None  # each isolated position has its own liquidation: its own alert says it

    def scenario(account: Account) -> Account:
        return account.moved(target)

    to_add = max(ZERO, _shortfall(scenario(metrics.account), None))
    biggest = max(metrics.positions, key=lambda pm: pm.notional, default=None)
    if biggest is None:
        return None
    cut = _cross_cut(metrics, biggest.position.key, scenario)
    return Remedy(None, target, to_add, cut, biggest.position)


def _biggest_cross(metrics: AccountMetrics) -> Position | None:
    cross = [pm for pm in metrics.positions if not pm.position.is_isolated]
    return max(cross, key=lambda pm: pm.notional).position if cross else None


def for_buffer(metrics: AccountMetrics, level: Decimal) -> Remedy | None:
    """Margin to add to the cross pool, or contracts of its largest cross position to close,
    so that the pool's buffer (margin balance minus maintenance margin) is at least ``level``.
    Added margin raises the buffer one for one; a cut lowers the requirement. None without a
    cross position."""
    biggest = _biggest_cross(metrics)
    if biggest is None:
        return None
    pool, account = metrics.pool, metrics.account
    # margin added raises the buffer one for one (at the settle currency's discount), and
    # by what it repays of the settle currency owed
    to_add = margin_to_add(
        pool.maintenance_margin,
        pool.margin_balance,
        ONE,
        account.settle_terms,
        pool.settle_line.equity,
        level,
    )

    def good(account: Account) -> bool:
        return compute(account, crash=False).pool.buffer >= level

    return Remedy(None, None, to_add, _fewest_cut(metrics, biggest.key, good), biggest)


def for_effective_leverage(
    metrics: AccountMetrics, level: Decimal, key: tuple[str, Side] | None = None
) -> Remedy | None:
    """Margin to add, or contracts to close, so that effective leverage (notional over the
    margin balance behind it) is at most ``level``: the cross pool's (``key`` None: the cut is
    of its largest cross position) or one position's. An isolated position's leverage does
    not change with a cut (its margin shrinks with it): only margin to add is given. None
    without such a position, or for ``level`` <= 0."""
    if level <= 0:
        return None
    if key is None:
        target = _biggest_cross(metrics)
        notional, equity = metrics.pool.notional, metrics.pool.margin_balance
    else:
        pm = next(pm for pm in metrics.positions if pm.position.key == key)
        target = pm.position
        notional, equity = pm.notional, pm.margin_balance
    if target is None:
        return None
    to_add = max(ZERO, notional / level - equity)
    if target.is_isolated:
        return Remedy(None, None, to_add, None, target)
    at = target.key if key is not None else None

    def good(account: Account) -> bool:
        after = compute(account, crash=False)
        if at is None:
            lev = after.pool.effective_leverage
        else:
            kept = (p.effective_leverage for p in after.positions if p.position.key == at)
            lev = next(kept, ZERO)  # closed entirely: no leverage left
        return lev is not None and lev <= level

    return Remedy(None, None, to_add, _fewest_cut(metrics, target.key, good), target)


def for_concentration(
    metrics: AccountMetrics, level: Decimal, by_margin: bool = False
) -> Remedy | None:
    """Contracts of the largest position (by notional, or by maintenance margin) to close so
    that the account's concentration is at most ``level``. None for a level outside (0, 1),
    fewer than two positions, or when no cut of it alone gets there (another position's share
    is above the level too: a cut only raises the others' shares)."""
    if not 0 < level < 1 or len(metrics.positions) < 2:
        return None

    def part(pm: PositionMetrics) -> Decimal:
        return pm.maintenance_margin if by_margin else pm.notional

    target = max(metrics.positions, key=part).position

    def shares(account: Account) -> tuple[Decimal, Decimal]:
        """(the target's share, the largest other share) after a cut."""
        parts = {pm.position.key: part(pm) for pm in compute(account, crash=False).positions}
        total = sum(parts.values(), ZERO)
        if total <= 0:
            return ZERO, ZERO
        own = parts.pop(target.key, ZERO)
        return own / total, max(parts.values(), default=ZERO) / total

    # the target's own share falls with every contract closed: its fewest cut is the
    # account's, if the others are below the level there
    cut = _fewest_cut(metrics, target.key, lambda a: shares(a)[0] <= level)
    if cut is None:
        return None
    # the others' shares checked at the bracket's other end (at or below the exact cut, where
    # they are no higher): a tie with the target at the level is a cut that clears it
    probe = max(ZERO, cut - target.contracts * CUT_PRECISION)
    if shares(_after_cut(metrics.account, metrics, target.key, probe))[1] > level:
        return None
    return Remedy(None, None, ZERO, cut, target)
