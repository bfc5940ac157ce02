"""Collateral assets of a margin pool: coins valued at a price and discounted by a ratio.

In multi-collateral modes (Binance multi-assets, Bybit unified cross, OKX multi-currency) a
pool's equity is the sum over its coins of ``amount x price x collateral ratio`` plus the
positions' unrealized PnL. The ratio (the "haircut" complement) may be tiered: Bybit's tiered
collateral value ratio slices the amount held by coin quantity, OKX's discount tiers by
value; each slice counts at its own ratio. A negative amount is a liability and counts in full
(times ``liability_ratio``, which Binance sets above 1 through its ask buffer).

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

from alertd.engine.tiers import TierTableError

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

    @property
    def market_value(self) -> Decimal:
        return self.amount * self.price

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

    def line(self, c: Decimal, probe: Decimal) -> tuple[Decimal, Decimal]:
        """``(a, b)``: the value is ``a + b * x`` at a price ``c * x`` on the piece holding
        ``probe``."""
        amount = self.amount
        if amount <= 0:
            return ZERO, amount * c * self.liability_ratio
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
