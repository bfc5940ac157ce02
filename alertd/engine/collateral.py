"""Collateral assets of a margin pool: coins valued at a price and discounted by a ratio.

In multi-collateral modes (Binance multi-assets, Bybit unified cross, OKX multi-currency) a
pool's equity is the sum over its coins of ``amount x price x collateral ratio`` plus the
positions' unrealized PnL. The ratio (the "haircut" complement) may be tiered: Bybit's tiered
collateral value ratio slices the amount held by coin quantity, OKX's discount tiers by
value; each slice counts at its own ratio. A negative amount is a liability and counts in full
(times ``liability_ratio``, which Binance sets above 1 through its ask buffer). A liability may
also carry a maintenance requirement of its own (``liability_tiers``: OKX's borrowing tiers in
multi-currency margin, a rate stepped by the amount owed): ``owed x price x rate``, part of the
pool's maintenance margin and moving with the coin's price like its value. The pool's own
currency can be owed too (its wallet and cross PnL below zero): :class:`Owed` is that
requirement as the solver sees it.

A coin whose ``price_symbol`` is set moves with that symbol's price like a position: a BTC long
on BTC collateral is doubly exposed, a BTC short on BTC collateral nearly neutral. For the
solver a collateral's value is piecewise linear in its price (one piece per ratio tier), so the
exact segment walk of :mod:`alertd.engine.legs` solves pools with collateral too.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from alertd.engine.tiers import TierTable, TierTableError

ZERO = Decimal(0)
ONE = Decimal(1)


class RatioBasis(enum.Enum):
    """What a collateral ratio tier's cap measures."""

    AMOUNT = "amount"  # coin quantity (Bybit collateralRatioList maxQty)
    VALUE = "value"  # value in the pool's currency (discount tiers by USD value)


@dataclass(frozen=True, slots=True)
class RatioTier:
    """Covers the part of the holding above the previous cap up to ``cap`` (None: no cap)."""

    cap: Decimal | None
    ratio: Decimal


@dataclass(frozen=True, slots=True)
class CollateralRatio:
    """A flat ratio (one uncapped tier) or a tiered table. Past the last finite cap of a
    fully capped table nothing more counts."""

    tiers: tuple[RatioTier, ...]
    basis: RatioBasis = RatioBasis.AMOUNT

    @classmethod
    def flat(cls, ratio: Decimal) -> CollateralRatio:
        return cls.build([RatioTier(None, ratio)])

    @classmethod
    def build(
        cls, tiers: Sequence[RatioTier], basis: RatioBasis = RatioBasis.AMOUNT
    ) -> CollateralRatio:
        """Check order and range; raises :class:`TierTableError` naming the bad tier."""
        if not tiers:
            raise TierTableError(0, "tiers", "at least one tier is required")
        previous = ZERO
        for i, tier in enumerate(tiers):
            if tier.ratio < 0 or tier.ratio > 1:
                raise TierTableError(i, "ratio", f"must be in [0, 1] (got {tier.ratio})")
            if tier.cap is None:
                if i != len(tiers) - 1:
                    raise TierTableError(i, "cap", "only the last tier may have no cap")
                continue
            if tier.cap <= previous:
                raise TierTableError(
                    i, "cap", f"must be above the previous cap {previous} (got {tier.cap})"
                )
            previous = tier.cap
        return cls(tuple(tiers), basis)

    @property
    def is_flat(self) -> bool:
        return len(self.tiers) == 1 and self.tiers[0].cap is None

    def slices(self, size: Decimal) -> tuple[Decimal, int | None]:
        """``(sum of full slices below the tier holding size, times their ratios; that tier)``.

        The tier is None when ``size`` is past the last finite cap (nothing more counts)."""
        counted = ZERO
        floor = ZERO
        for i, tier in enumerate(self.tiers):
            if tier.cap is None or size <= tier.cap:
                return counted, i
            counted += (tier.cap - floor) * tier.ratio
            floor = tier.cap
        return counted, None

    def floor(self, index: int) -> Decimal:
        cap = self.tiers[index - 1].cap if index > 0 else ZERO
        assert cap is not None
        return cap

    def counted(self, size: Decimal) -> Decimal:
        """``size`` (a quantity or a value, per ``basis``) after the tiered ratios."""
        full, i = self.slices(size)
        if i is None:
            return full
        return full + (size - self.floor(i)) * self.tiers[i].ratio


@dataclass(frozen=True, slots=True)
class Collateral:
    """A coin in a margin pool."""

    asset: str
    amount: Decimal  # negative: a liability (borrowed), counted in full
    price: Decimal  # in the pool's currency (index or mark)
    ratio: CollateralRatio
    # the symbol whose price moves this coin's; None: it keeps its price (the pool's own
    # currency, a pegged coin valued at its index between snapshots)
    price_symbol: str | None = None
    liability_ratio: Decimal = ONE  # a liability's value is amount x price x this
    # ``price`` over the mark of ``price_symbol`` when both were read: the coin keeps that
    # basis as the mark moves (an index beside a perpetual's mark). None: the mark of the
    # account's position in that symbol gives it (1 when none is held)
    price_over_mark: Decimal | None = None
    # a liability's maintenance rate, stepped by the amount owed (tier caps in the coin, no
    # deduction: the whole amount at the rate of the tier holding it); None: no requirement
    liability_tiers: TierTable | None = None

    @property
    def market_value(self) -> Decimal:
        return self.amount * self.price

    @property
    def requirement(self) -> Decimal:
        return self.requirement_at(self.price)

    @property
    def liability_rate(self) -> Decimal:
        """The maintenance rate of what is owed (0 for a holding or without tiers). The tier
        is picked by the amount owed, which no price move changes."""
        if self.amount >= 0 or self.liability_tiers is None:
            return ZERO
        return self.liability_tiers.tier_for(-self.amount).mmr

    def requirement_at(self, price: Decimal) -> Decimal:
        """What the coin adds to the pool's maintenance margin at ``price``."""
        return -self.amount * price * self.liability_rate

    @property
    def value(self) -> Decimal:
        return self.value_at(self.price)

    def value_at(self, price: Decimal) -> Decimal:
        """What the coin adds to the pool's equity at ``price``."""
        amount = self.amount
        if amount <= 0:
            return amount * price * self.liability_ratio
        ratio = self.ratio
        if ratio.basis is RatioBasis.AMOUNT:
            return ratio.counted(amount) * price
        return ratio.counted(amount * price)

    def breakpoints(self, c: Decimal) -> list[Decimal]:
        """Where the value's slope changes, for a price ``c * x``: value tiers only."""
        if self.amount <= 0 or self.ratio.basis is RatioBasis.AMOUNT:
            return []
        scale = self.amount * c
        return [tier.cap / scale for tier in self.ratio.tiers if tier.cap is not None]

    def line(self, c: Decimal, probe: Decimal, with_mm: bool = True) -> tuple[Decimal, Decimal]:
        """``(a, b)``: the value less the requirement (``with_mm``; the value alone without)
        is ``a + b * x`` at a price ``c * x`` on the piece holding ``probe``."""
        amount = self.amount
        if amount <= 0:
            rate = self.liability_rate if with_mm else ZERO
            return ZERO, amount * c * (self.liability_ratio + rate)
        ratio = self.ratio
        if ratio.basis is RatioBasis.AMOUNT:
            return ZERO, ratio.counted(amount) * c
        full, i = ratio.slices(amount * c * probe)
        if i is None:
            return full, ZERO
        rate = ratio.tiers[i].ratio
        return full - ratio.floor(i) * rate, amount * c * rate


# A collateral that moves with the solved variable x, and the factor c with price = c * x.
CollateralTerm = tuple[Collateral, Decimal]


def owed_requirement(tiers: TierTable | None, equity: Decimal) -> Decimal:
    """The maintenance requirement of the pool's own currency owed when its ``equity`` (the
    wallet and the cross positions' PnL) is below zero: what is owed at the rate of the
    borrowing tier holding it (OKX multi-currency margin borrows the settle currency
    automatically). None or a non-negative equity: nothing."""
    if tiers is None or equity >= 0:
        return ZERO
    return -equity * tiers.tier_for(-equity).mmr


@dataclass(frozen=True, slots=True)
class Owed:
    """The pool currency's equity as a line in the solved variable x, ``level + slope * x``
    (the wallet and the cross PnL: the moving legs' ``sign x quantity x (c x - entry)``), and
    its borrowing tiers: below zero, :func:`owed_requirement` joins the requirement. Piecewise
    linear in x, with edges where the equity crosses zero and each tier's cap."""

    tiers: TierTable
    level: Decimal
    slope: Decimal

    def breakpoints(self) -> list[Decimal]:
        if self.slope == 0:
            return []
        edges = (ZERO, *self.tiers.caps)
        return [x for cap in edges if (x := (-cap - self.level) / self.slope) > 0]

    def line(self, probe: Decimal) -> tuple[Decimal, Decimal]:
        """``(a, b)``: minus the requirement is ``a + b * x`` on the piece holding ``probe``
        (a rate times the negative equity)."""
        equity = self.level + self.slope * probe
        if equity >= 0:
            return ZERO, ZERO
        rate = self.tiers.tier_for(-equity).mmr
        return rate * self.level, rate * self.slope
