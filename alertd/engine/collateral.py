"""Collateral assets of a margin pool: coins valued at a price and discounted by a ratio.

In multi-collateral modes (Binance multi-assets, Bybit unified cross, OKX multi-currency) a
pool's equity is the sum over its coins of ``amount x price x collateral ratio`` plus the
positions' unrealized PnL. The ratio (the "haircut" complement) may be tiered: Bybit's tiered
collateral value ratio slices the amount held by coin quantity, OKX's discount tiers by
value; each slice counts at its own ratio. A negative amount is a liability and counts in full
(times ``liability_ratio``, which Binance sets above 1 through its ask buffer). What is owed
(the negative amount, or more where the exchange counts the amount borrowed: Gate's "Coin
Liabilities = Borrowed + ABS(Min(Spot Available + ..., 0))") may carry a maintenance
requirement of its own (``liability_tiers``): ``owed x price x rate - deduction``, part of the
pool's maintenance margin and moving with the coin's price like its value. The tier is the one
holding the amount owed (OKX's borrowing tiers, ``TierBasis.CONTRACTS``, steps with no
deduction: the whole amount at its tier's rate, and no price moves the tier) or the debt's value
(Gate's loan margin tiers, ``TierBasis.NOTIONAL``, sliced: each slice of the debt's value at its
own tier's rate, which the bracket deduction gives; a price move carries the debt across a cap,
where the requirement's slope changes). The pool's own currency has terms of
its own (:class:`SettleTerms`): owed once the wallet and the cross PnL fall below zero (or
borrowed), and discounted by tier above a cap (OKX's USDT discount rate); :class:`Owed` is
that as the solver sees it.

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

from alertd.engine.tiers import Tier, TierBasis, TierTable, TierTableError

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
    # a liability's maintenance requirement: the amount owed at the rate of the tier holding
    # it less that tier's deduction, the tier picked by the amount owed
    # (``TierBasis.CONTRACTS``: caps and deduction in the coin) or by its value in the pool's
    # currency (``TierBasis.NOTIONAL``: owed x price, deduction in the pool's currency); a
    # deduction of 0 throughout makes steps, the bracket recursion's makes slices.
    # None: no requirement
    liability_tiers: TierTable | None = None
    # the amount borrowed (Gate's ``borrowed``), already out of ``amount`` (an equity net of
    # it): what is owed is the larger of it and the negative amount
    borrowed: Decimal = ZERO

    @property
    def market_value(self) -> Decimal:
        return self.amount * self.price

    @property
    def owed(self) -> Decimal:
        """The amount owed that carries the liability's requirement (0: none)."""
        return max(self.borrowed, -self.amount, ZERO)

    @property
    def requirement(self) -> Decimal:
        return self.requirement_at(self.price)

    @property
    def liability_rate(self) -> Decimal:
        """What is owed requires per unit of its value at the coin's price (0 for a holding
        or without tiers): the tier's rate for steps, the slices' blend for sliced tiers."""
        tier = self._liability_tier(self.price)
        if tier is None:
            return ZERO
        if not tier.deduction:
            return tier.mmr
        return self.requirement / (self.owed * self.price)

    @property
    def liability_by_value(self) -> bool:
        """Whether the liability's tier follows its value (and so the coin's price)."""
        tiers = self.liability_tiers
        return tiers is not None and tiers.basis is TierBasis.NOTIONAL and self.owed > 0

    def _liability_tier(self, price: Decimal) -> Tier | None:
        """The tier holding what is owed at ``price``: by the amount owed, or by its value at
        ``price`` where the tiers are by value (None: nothing owed or no tiers)."""
        owed, tiers = self.owed, self.liability_tiers
        if owed <= 0 or tiers is None:
            return None
        return tiers.tier_for(owed * price if self.liability_by_value else owed)

    def requirement_at(self, price: Decimal) -> Decimal:
        """What the coin adds to the pool's maintenance margin at ``price``."""
        tier = self._liability_tier(price)
        if tier is None:
            return ZERO
        if self.liability_by_value:
            return self.owed * price * tier.mmr - tier.deduction
        return (self.owed * tier.mmr - tier.deduction) * price

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
        """Where the value's slope (or the requirement's rate) changes, for a price
        ``c * x``: value tiers of a holding, value tiers of a liability."""
        points = []
        if self.amount > 0 and self.ratio.basis is RatioBasis.VALUE:
            scale = self.amount * c
            points += [tier.cap / scale for tier in self.ratio.tiers if tier.cap is not None]
        if self.liability_by_value:
            assert self.liability_tiers is not None
            scale = self.owed * c
            points += [cap / scale for cap in self.liability_tiers.caps]
        return points

    def line(self, c: Decimal, probe: Decimal, with_mm: bool = True) -> tuple[Decimal, Decimal]:
        """``(a, b)``: the value less the requirement (``with_mm``; the value alone without)
        is ``a + b * x`` at a price ``c * x`` on the piece holding ``probe``."""
        a, b = self._value_line(c, probe)
        tier = self._liability_tier(c * probe) if with_mm else None
        if tier is not None:
            if self.liability_by_value:  # owed x c x mmr x - deduction
                a += tier.deduction
                b -= self.owed * c * tier.mmr
            else:  # (owed x mmr - deduction) x c x
                b -= (self.owed * tier.mmr - tier.deduction) * c
        return a, b

    def _value_line(self, c: Decimal, probe: Decimal) -> tuple[Decimal, Decimal]:
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


@dataclass(frozen=True, slots=True)
class ConversionRates:
    """The rates a margin asset converts at into its pool's unit: ``bid`` for what it holds,
    ``ask`` for what it owes and for its positions' requirement (Binance's ``assetIndex``
    ``bidRate = index x (1 - bidBuffer)``, ``askRate = index x (1 + askBuffer)``, "Multi-Assets
    Mode Asset Index")."""

    bid: Decimal
    ask: Decimal

    def __post_init__(self) -> None:
        if self.bid <= 0 or self.ask < self.bid:
            raise ValueError(f"conversion rates: bid {self.bid} must be > 0 and <= ask {self.ask}")

    @property
    def at_par(self) -> bool:
        return self.bid == ONE and self.ask == ONE


@dataclass(frozen=True, slots=True)
class SettleTerms:
    """How a pool counts its own currency's equity ``E`` (the wallet and the cross PnL)
    beyond ``E`` itself, where the exchange says so:

    - lent: what is owed, ``max(borrowed, -E)``, requires its amount at the rate of the
      borrowing tier (``tiers``) holding it less that tier's deduction (OKX's steps have none,
      Gate's sliced loan tiers the bracket recursion's; OKX multi-currency margin lends the
      settle currency below zero;
      Gate's unified account counts "Borrowed + ABS(Min(Spot Available + Futures Unrealized
      PnL, 0))", which with ``E`` net of the loan is ``max(borrowed, -E)``);
    - discounted: a positive ``E`` counts at its tiered ``discount`` (OKX's discount rate of
      USDT, by amount: the pool's currency is its own unit);
    - converted (``rates``): the pool is in another unit (Binance multi-assets: USD) and the
      currency converts at its bid rate while ``E`` is positive, at its ask rate once it is
      negative ("Account Equity = ∑min(assetEquity*bidRate, assetEquity*askRate)", Binance
      FAQ "How to Calculate Margin in Multi-Assets Mode"); the maintenance margin of the
      positions margined in it converts at its ask rate (the FAQ's example 2: "80 x 0.99495").

    All are piecewise linear in ``E``, with edges at 0, ``-borrowed``, each borrowing cap
    (negated) and each discount cap."""

    tiers: TierTable | None = None
    borrowed: Decimal = ZERO
    discount: CollateralRatio | None = None
    rates: ConversionRates | None = None

    @classmethod
    def of(
        cls,
        tiers: TierTable | None,
        borrowed: Decimal,
        discount: CollateralRatio | None,
        rates: ConversionRates | None = None,
    ) -> SettleTerms | None:
        """The terms, or None where they change nothing (no tiers to lend at, no discount
        below 1, rates of 1): the pool then counts its currency at par."""
        if discount is not None and discount.is_flat and discount.tiers[0].ratio == ONE:
            discount = None
        if rates is not None and rates.at_par:
            rates = None
        if tiers is None and discount is None and rates is None:
            return None
        return cls(tiers, borrowed, discount, rates)

    @property
    def moves_at_most_fastest_rate(self) -> bool:
        """Whether the counted equity moves by at most :attr:`fastest_rate` times what the
        equity does, with no step and nothing required: the terms convert at rates and/or
        discount, no lending tier (that steps and requires). A discount's ratios are in [0, 1]
        (:meth:`CollateralRatio.build`) and it is continuous, so a positive equity counts at a
        slope of at most the bid (at most the ask), a negative one at the ask: bounds that
        hold at par hold with that factor."""
        return self.tiers is None and (self.discount is not None or self.rates is not None)

    @property
    def fastest_rate(self) -> Decimal:
        """The most one unit of a change in the equity moves the counted equity, at least 1:
        the ask rate where it is above 1 (the bid is never above it), else 1."""
        return ONE if self.rates is None else max(ONE, self.rates.ask)

    @property
    def mm_rate(self) -> Decimal:
        """What one unit of the maintenance margin of the positions margined in the
        currency counts in the pool (its ask rate; 1 without rates)."""
        return ONE if self.rates is None else self.rates.ask

    def owed(self, equity: Decimal) -> Decimal:
        return max(self.borrowed, -equity, ZERO) if self.tiers is not None else ZERO

    def requirement(self, equity: Decimal) -> Decimal:
        """What is owed requires at the settle currency's equity ``equity``."""
        owed = self.owed(equity)
        if owed <= 0:
            return ZERO
        assert self.tiers is not None
        tier = self.tiers.tier_for(owed)
        return owed * tier.mmr - tier.deduction

    def counted(self, equity: Decimal) -> Decimal:
        """``equity`` as the pool counts it (a negative one in full, at the ask rate)."""
        rates = self.rates
        if equity <= 0:
            return equity if rates is None else equity * rates.ask
        kept = equity if self.discount is None else self.discount.counted(equity)
        return kept if rates is None else kept * rates.bid

    def adjustment(self, equity: Decimal) -> Decimal:
        """What the discount takes from ``equity`` (0 or less)."""
        return self.counted(equity) - equity

    def edges(self) -> list[Decimal]:
        """The equities where a line of :meth:`lines` ends."""
        found = {ZERO}
        if self.tiers is not None:
            found.add(-self.borrowed)
            found.update(-cap for cap in self.tiers.caps if cap > self.borrowed)
        if self.discount is not None:
            found.update(t.cap for t in self.discount.tiers if t.cap is not None)
        return sorted(found)

    def lines(self, probe: Decimal) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """``(ca, cb, ra, rb)``: the counted equity is ``ca + cb E`` and the requirement
        ``ra + rb E`` on the piece holding the equity ``probe``."""
        ca, cb = ZERO, ONE
        if probe > 0 and self.discount is not None:
            full, i = self.discount.slices(probe)
            if i is None:
                ca, cb = full, ZERO
            else:
                rate = self.discount.tiers[i].ratio
                ca, cb = full - self.discount.floor(i) * rate, rate
        if self.rates is not None:
            rate = self.rates.bid if probe > 0 else self.rates.ask
            ca, cb = ca * rate, cb * rate
        ra = rb = ZERO
        owed = self.owed(probe)
        if owed > 0:
            assert self.tiers is not None
            tier = self.tiers.tier_for(owed)
            if -probe > self.borrowed:  # owed = -E
                ra, rb = -tier.deduction, -tier.mmr
            else:
                ra = self.borrowed * tier.mmr - tier.deduction
        return ca, cb, ra, rb


@dataclass(frozen=True, slots=True)
class Owed:
    """The pool currency's equity as a line in the solved variable x, ``level + slope * x``
    (the wallet and the cross PnL: the moving legs' ``sign x quantity x (c x - entry)``), and
    its :class:`SettleTerms`: what the discount takes from it and what is owed requires.
    Piecewise linear in x, with edges where the equity crosses an edge of the terms."""

    terms: SettleTerms
    level: Decimal
    slope: Decimal

    def breakpoints(self) -> list[Decimal]:
        if self.slope == 0:
            return []
        return [x for e in self.terms.edges() if (x := (e - self.level) / self.slope) > 0]

    def line(self, probe: Decimal, with_mm: bool = True) -> tuple[Decimal, Decimal]:
        """``(a, b)``: the discount's adjustment less the requirement (``with_mm``; the
        adjustment alone without) is ``a + b * x`` on the piece holding ``probe``."""
        ca, cb, ra, rb = self.terms.lines(self.level + self.slope * probe)
        if not with_mm:
            ra = rb = ZERO
        a, b = ca - ra, cb - ONE - rb  # in the equity E = level + slope x
        return a + b * self.level, b * self.slope
