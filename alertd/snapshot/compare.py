"""alertd's figures beside the exchange's own: the one comparison behind the daemon's drift
check and ``alertd snapshot``.

Pure: it takes alertd's computed figures and what the exchange reported (the adapter's
:class:`~alertd.feeds.state.ReportedAccount` and
:class:`~alertd.feeds.state.ReportedPosition`), and returns typed rows.

Exchanges define their reported figures in their own ways; the adapter declares how
(:class:`Conventions`) and alertd's side is adjusted so that like is compared with like:

- ``reported_mm_excludes_fee`` (OKX): the exchange's maintenance margins leave out the
  liquidation fee that alertd's include, so alertd's are compared less ``notional * fee``.
- ``reported_account_mm_cross_only`` (OKX, Gate, Hyperliquid): the account's maintenance margin
  covers the cross positions only, so isolated ones are left out of alertd's sum.

The exchange's side of a row is only ever the exchange's own number: where it reports no such
figure, ``theirs`` is None and the row says so instead of showing alertd's. Where the exchange's
account figures are of more than alertd's pool (``ReportedAccount.scope``: Binance portfolio
margin), its rows say what each side is and compare nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from alertd.engine.margin import AccountMetrics, PositionMetrics
from alertd.engine.model import Side
from alertd.feeds.state import FigureScope, ReportedAccount, ReportedPosition

# Relative difference accepted as agreement: alertd prices at its latest marks while the
# exchange's REST answer carries the marks of a moment earlier.
TOLERANCE = Decimal("0.005")
_TINY = Decimal("1e-12")  # the denominator of a relative difference to a zero figure

PositionKey = tuple[str, Side]


class Conventions(Protocol):
    """How an exchange defines the figures it reports (declared by its feed adapter)."""

    @property
    def reported_mm_excludes_fee(self) -> bool: ...

    @property
    def reported_account_mm_cross_only(self) -> bool: ...


class Figure(enum.Enum):
    MAINTENANCE_MARGIN = "maintenance_margin"
    MARGIN_BALANCE = "margin_balance"
    MARGIN_RATIO = "margin_ratio"
    LIQUIDATION_PRICE = "liquidation_price"


@dataclass(frozen=True, slots=True)
class Row:
    """One figure compared: alertd's, the exchange's, and whether they agree."""

    figure: Figure
    position: PositionKey | None  # None: the account (or, with ``pool``, one of its pools)
    ours: Decimal | None  # alertd's figure, adjusted to the exchange's definition
    theirs: Decimal | None  # the exchange's own number; None: it reports no such figure
    difference: Decimal | None  # relative: (ours - theirs) / |theirs|; None: not computable
    matches: bool | None  # within tolerance or the exchange's rounding; None: nothing to compare
    # the margin asset of the pool an account figure is of, where the account has several
    # (Binance single-asset: USDT and USDC); None: the account's one pool
    pool: str | None = None
    # what each side is where the two are of different scopes (then not compared: no
    # difference, no verdict); None: like with like, as the figure's name says
    scope: FigureScope | None = None

    @property
    def defined_as(self) -> str | None:
        """What the exchange's figure is, where it is of another scope than alertd's."""
        if self.scope is None:
            return None
        return {
            Figure.MAINTENANCE_MARGIN: self.scope.maintenance_margin,
            Figure.MARGIN_BALANCE: self.scope.margin_balance,
            Figure.MARGIN_RATIO: self.scope.margin_ratio,
            Figure.LIQUIDATION_PRICE: self.scope.liquidation_price,
        }.get(self.figure)

    @property
    def key(self) -> str:
        """The figure's name in the drift metric: ``BTC/USDT:USDT long liquidation_price``,
        ``margin_ratio``, ``USDC margin_ratio`` (a pool's, where the account has several)."""
        if self.position is None:
            return self.figure.value if self.pool is None else f"{self.pool} {self.figure.value}"
        symbol, side = self.position
        return f"{symbol} {side.label} {self.figure.value}"


@dataclass(frozen=True, slots=True)
class Comparison:
    rows: tuple[Row, ...]
    adjustments: tuple[str, ...]  # what was adjusted on alertd's side, in words

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    @property
    def drift(self) -> dict[str, Decimal]:
        """Per figure, the absolute relative difference (the daemon's drift metric)."""
        return {r.key: abs(r.difference) for r in self.rows if r.difference is not None}

    @property
    def margin_ratio(self) -> tuple[Decimal, Decimal] | None:
        """(alertd's, the exchange's) account margin ratio, where both are known; of an
        account of several pools, the pool's whose two differ the most
        (:attr:`margin_ratio_pool` names it)."""
        found = self._ratio_row()
        if found is None or found.ours is None or found.theirs is None:
            return None
        return found.ours, found.theirs

    @property
    def margin_ratio_pool(self) -> str | None:
        """The margin asset of the pool :attr:`margin_ratio` is of, where the account has
        several (None: the account's one pool, or no ratio to compare)."""
        found = self._ratio_row()
        return None if found is None else found.pool

    def _ratio_row(self) -> Row | None:
        pairs = [
            r
            for r in self.rows
            if r.figure is Figure.MARGIN_RATIO
            and r.position is None
            and r.ours is not None
            and r.theirs is not None
        ]
        return max(pairs, key=_apart, default=None)

    @property
    def mismatches(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.matches is False)

    def worst(self) -> Row | None:
        """The mismatch with the largest difference (one without a difference first)."""
        return max(
            self.mismatches,
            key=lambda r: Decimal("Infinity") if r.difference is None else abs(r.difference),
            default=None,
        )


def _apart(r: Row) -> Decimal:
    """How far apart a row's two figures are, relative to the exchange's."""
    assert r.ours is not None and r.theirs is not None
    return abs(r.ours - r.theirs) / max(abs(r.theirs), _TINY)


def rounding(theirs: Decimal, tick: Decimal | None = None) -> Decimal:
    """The exchange's rounding of ``theirs``: the price tick, or its number's last digit."""
    exponent = theirs.as_tuple().exponent
    last_digit = Decimal(1).scaleb(exponent) if isinstance(exponent, int) else Decimal(0)
    return max(tick or Decimal(0), last_digit)


def row(
    figure: Figure,
    position: PositionKey | None,
    ours: Decimal | None,
    theirs: Decimal | None,
    *,
    tick: Decimal | None = None,
    tolerance: Decimal = TOLERANCE,
    pool: str | None = None,
    scope: FigureScope | None = None,
) -> Row:
    """One figure compared: within ``tolerance`` (relative) or within the exchange's rounding;
    a figure of another ``scope`` than alertd's shown beside it, named, uncompared."""
    if scope is not None and theirs is not None:
        return Row(figure, position, ours, theirs, None, None, pool, scope)
    if theirs is None:
        return Row(figure, position, ours, None, None, None, pool)
    if ours is None or not ours.is_finite() or not theirs.is_finite():
        # alertd has no such figure (or the pool is gone) where the exchange shows one
        return Row(figure, position, ours, theirs, None, ours == theirs, pool)
    difference = (ours - theirs) / max(abs(theirs), _TINY)
    matches = abs(difference) <= tolerance or abs(ours - theirs) <= rounding(theirs, tick)
    return Row(figure, position, ours, theirs, difference, matches, pool)


def compare(
    metrics: AccountMetrics,
    reported: ReportedAccount,
    reported_positions: Mapping[PositionKey, ReportedPosition],
    conventions: Conventions,
    *,
    tolerance: Decimal = TOLERANCE,
    reported_pools: Mapping[str, ReportedAccount] | None = None,
) -> Comparison:
    """alertd's ``metrics`` beside the exchange's reported figures, like for like.

    An account of several pools is compared pool by pool: the settle currency's with
    ``reported``, each other with its margin asset's figures in ``reported_pools``."""
    excludes_fee = conventions.reported_mm_excludes_fee
    cross_only = conventions.reported_account_mm_cross_only

    def comparable_mm(pm: PositionMetrics) -> Decimal:
        mm = pm.maintenance_margin
        if excludes_fee:
            mm -= pm.notional * pm.position.fee_rate
        return mm

    account = metrics.account
    mm_rates = {asset: t.mm_rate for asset, _, t in account.equity_lines() if t is not None}

    def own_mm(pm: PositionMetrics) -> Decimal:
        """The position's requirement in its own margin asset, as the exchange reports a
        position's: alertd's is in the pool's unit (converted at its margin asset's ask
        rate, Binance multi-assets), the pool's total as the exchange's total is."""
        mm = comparable_mm(pm)
        line = account.line_of(pm.position)
        if line is not None and line in mm_rates:
            mm /= mm_rates[line]
        return mm

    def add(
        figure: Figure,
        key: PositionKey | None,
        ours: Decimal | None,
        theirs: Decimal | None,
        tick: Decimal | None = None,
        pool: str | None = None,
        scope: FigureScope | None = None,
    ) -> None:
        rows.append(
            row(figure, key, ours, theirs, tick=tick, tolerance=tolerance, pool=pool, scope=scope)
        )

    rows: list[Row] = []
    counted: list[PositionMetrics] = []
    for part in metrics.by_pool:
        asset = part.account.settle if metrics.pools else None
        theirs = reported
        if part is not metrics.by_pool[0]:
            theirs = (reported_pools or {}).get(part.account.settle, ReportedAccount())
        mine = [pm for pm in part.positions if not (cross_only and pm.position.is_isolated)]
        counted += mine
        total_mm = sum((comparable_mm(pm) for pm in mine), Decimal(0))
        # what the pool's liabilities require (OKX's borrowing tiers), and what each margin
        # asset owed requires, is the account's too
        total_mm += sum((cm.requirement for cm in part.pool.collateral), Decimal(0))
        total_mm += sum((line.requirement for line in part.pool.equity_lines), Decimal(0))
        scope = theirs.scope
        add(
            Figure.MAINTENANCE_MARGIN,
            None,
            total_mm,
            theirs.maintenance_margin,
            pool=asset,
            scope=scope,
        )
        if all(not pm.position.is_isolated for pm in part.positions):
            # the exchange's account balance and ratio count isolated positions' margin in
            # ways the cross pool does not reproduce: compared when every position is cross
            balance = part.pool.margin_balance
            add(
                Figure.MARGIN_BALANCE, None, balance, theirs.margin_balance, pool=asset, scope=scope
            )
            ratio = part.pool.margin_ratio
            add(Figure.MARGIN_RATIO, None, ratio, theirs.margin_ratio, pool=asset, scope=scope)
    for pm in metrics.positions:
        figures = reported_positions.get(pm.position.key)
        if figures is None:
            continue
        key = pm.position.key
        add(Figure.MAINTENANCE_MARGIN, key, own_mm(pm), figures.maintenance_margin)
        add(
            Figure.LIQUIDATION_PRICE,
            key,
            pm.liquidation_price,
            figures.liquidation_price,
            pm.position.tick_size,
            scope=reported.scope,
        )
    reported_mm = [
        r for r in rows if r.figure is Figure.MAINTENANCE_MARGIN and r.theirs is not None
    ]
    adjustments = []
    if excludes_fee and reported_mm:
        adjustments.append(
            "the exchange's maintenance margins leave out the liquidation fee: "
            "alertd's are shown without it"
        )
    if (
        cross_only
        and len(counted) < len(metrics.positions)
        and any(r.position is None for r in reported_mm)
    ):
        adjustments.append(
            "the exchange's account maintenance margin covers cross positions only: "
            "alertd's leaves out the isolated ones"
        )
    return Comparison(tuple(rows), tuple(adjustments))


def closest(comparisons: Sequence[Comparison]) -> Comparison:
    """Each figure's row from the comparison where alertd's figure is closest to the
    exchange's: the drift of a snapshot whose answers may each be of another moment of its
    read (drift16). ``comparisons`` are of alertd's figures computed on the state as read and
    on each step of the pushes kept during the read applied again in order, against the same
    reported figures; each of the exchange's answers is of one moment, so each figure it
    carries matches one of these states where alertd's model is right. A model error shows in
    every step; a figure read at another moment than alertd's state, in some steps at most.

    A row that matches (within tolerance or the exchange's rounding) comes first, then the
    smallest relative difference; a row without a difference only where no step has one.
    Rows keep the order they are first seen in (the state as read first)."""
    if len(comparisons) == 1:
        return comparisons[0]
    best: dict[str, Row] = {}
    for comparison in comparisons:
        for r in comparison.rows:
            held = best.get(r.key)
            if held is None or _nearness(r) < _nearness(held):
                best[r.key] = r
    adjustments = dict.fromkeys(a for c in comparisons for a in c.adjustments)
    return Comparison(tuple(best.values()), tuple(adjustments))


def _nearness(r: Row) -> tuple[bool, Decimal]:
    """How near a row's two figures are: a match first, then the smaller difference."""
    apart = Decimal("Infinity") if r.difference is None else abs(r.difference)
    return r.matches is not True, apart
