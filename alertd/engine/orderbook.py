"""Closing a position into an order book: average fill, slippage, and gap (negative-balance) risk.

Pure and exact (``Decimal``). A book is the exchange's visible depth, bounded (the feed asks for
a limited number of levels), with every level's size already in the position's own units:
contracts x contract size (base coin for a linear contract, quote for an inverse one).

Averages are taken where the margin formulas are linear (:mod:`alertd.engine.legs`): in the
price for a linear contract, in ``1 / price`` for an inverse one. So the PnL of a fill is
``sign * quantity * (u_fill - u_entry)`` level by level, exactly as the engine books it.

**Gap model** (docs/rules.md, "Gap risk", states it and its limits). At the liquidation price
the exchange takes the position over and closes it at market. Nobody knows the book at that
moment; alertd assumes the book keeps its current shape *relative to its mid*: every level's
price is scaled by ``liquidation / mid`` and keeps its size. Closing the whole position into
that shifted book gives an average fill; past the bankruptcy price (where the equity behind
the position is exactly zero) every unit loses ``|u_fill - u_bankruptcy|``: the **shortfall**,
in the settle currency, is what the account (or the exchange's insurance fund) is left owing.
The **size that fits** is the largest size whose close into the shifted book does not cross
the bankruptcy price on average.

A book too thin to fill the whole size is said so (:attr:`Fill.complete`): what lies beyond
the visible depth is unknown, so the remainder is valued at the deepest visible price (a lower
bound on the loss) and the size that fits is at most the visible depth.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from alertd.engine.legs import from_u, to_u

ZERO = Decimal(0)
ONE = Decimal(1)

Level = tuple[Decimal, Decimal]  # price, size (in the position's units)
MAX_WALKS = 1024  # walks remembered per book (one per position size held in the symbol)


@dataclass(frozen=True, slots=True)
class OrderBook:
    """The visible depth of one symbol: bids best (highest) first, asks best (lowest) first."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    # walks already done on this book, by (long, quantity, inverse): the daemon evaluates
    # every position at every mark, and the book changes only when it is fetched again
    _walks: dict[tuple[bool, Decimal, bool], Fill] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # each closing side's running sums, by (long, inverse) (:class:`_Sums`): a walk for
    # another size is then a search, not a pass over the levels (a thousand accounts' sizes in
    # one symbol walked every book again at each fetch: 8% of a calm daemon's samples)
    _sums: dict[tuple[bool, bool], _Sums] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    mid: Decimal | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, levels in (("bids", self.bids), ("asks", self.asks)):
            for price, size in levels:
                if not (price.is_finite() and price > 0 and size.is_finite() and size >= 0):
                    raise ValueError(f"{name}: a level needs a positive price and size")
        if any(b[0] < a[0] for b, a in zip(self.bids, self.bids[1:], strict=False)):
            raise ValueError("bids: not in descending price order")
        if any(b[0] > a[0] for b, a in zip(self.asks, self.asks[1:], strict=False)):
            raise ValueError("asks: not in ascending price order")
        # halfway between the best bid and ask; the one side's best price when the other is
        # empty; None for an empty book
        mid = None
        if self.bids and self.asks:
            mid = (self.bids[0][0] + self.asks[0][0]) / 2
        elif self.bids or self.asks:
            mid = (self.bids or self.asks)[0][0]
        object.__setattr__(self, "mid", mid)

    def closing(self, long: bool) -> tuple[Level, ...]:
        """The side a close takes: a long sells into the bids, a short buys the asks."""
        return self.bids if long else self.asks

    def close(self, long: bool, quantity: Decimal, inverse: bool = False) -> Fill:
        """:func:`walk` of the closing side, remembered for this book."""
        key = (long, quantity, inverse)
        found = self._walks.get(key)
        if found is None:
            if len(self._walks) >= MAX_WALKS:
                self._walks.clear()
            sums = self._sums.get((long, inverse))
            if sums is None:
                sums = self._sums[long, inverse] = _Sums.of(self.closing(long), inverse)
            found = self._walks[key] = sums.walk(quantity)
        return found

    def depth(self, long: bool) -> Decimal:
        return sum((size for _, size in self.closing(long)), ZERO)


@dataclass(frozen=True, slots=True)
class Fill:
    """Closing ``wanted`` into a book's levels."""

    wanted: Decimal
    filled: Decimal  # what the visible depth takes (== wanted unless the book is too thin)
    u_total: Decimal  # sum of size x u over what filled
    last: Decimal | None  # the deepest price reached; None: nothing filled
    inverse: bool

    @property
    def complete(self) -> bool:
        return self.filled >= self.wanted

    @property
    def average(self) -> Decimal | None:
        """The average fill price of what filled (an inverse contract's harmonic mean)."""
        if self.filled <= 0:
            return None
        return from_u(self.u_total / self.filled, self.inverse)

    @property
    def bounded_u_total(self) -> Decimal | None:
        """``u_total`` with the unfilled remainder at the deepest visible price: for a too
        thin book, the best the whole close can do (``None`` for an empty book)."""
        if self.last is None:
            return None
        rest = self.wanted - self.filled
        return self.u_total + rest * to_u(self.last, self.inverse)

    @property
    def bounded_average(self) -> Decimal | None:
        """The average price of the whole close, the rest at the deepest visible price."""
        total = self.bounded_u_total
        if total is None or self.wanted <= 0:
            return None
        return from_u(total / self.wanted, self.inverse)


def walk(levels: Iterable[Level], quantity: Decimal, inverse: bool = False) -> Fill:
    """Take ``quantity`` from ``levels``, best first."""
    if quantity < 0:
        raise ValueError("quantity must not be negative")
    left = quantity
    u_total = ZERO
    last: Decimal | None = None
    for price, size in levels:
        if left <= 0:
            break
        if size <= 0:
            continue
        take = size if size < left else left
        u_total += take * to_u(price, inverse)
        left -= take
        last = price
    return Fill(quantity, quantity - left, u_total, last, inverse)


@dataclass(frozen=True, slots=True)
class _Sums:
    """A side's levels of a positive size with the running sums :func:`walk` adds up over
    them: after level ``i``, the sizes taken (``sizes[i]``, rising) and ``size x u``
    (``u_totals[i]``), each added in the walk's own order, so that a walk read from them
    is the walk's own figures."""

    prices: tuple[Decimal, ...]
    us: tuple[Decimal, ...]
    sizes: tuple[Decimal, ...]
    u_totals: tuple[Decimal, ...]
    inverse: bool

    @classmethod
    def of(cls, levels: Iterable[Level], inverse: bool) -> _Sums:
        prices, us, sizes, u_totals = [], [], [], []
        size_sum, u_total = ZERO, ZERO
        for price, size in levels:
            if size <= 0:
                continue
            u = to_u(price, inverse)
            size_sum += size
            u_total += size * u
            prices.append(price)
            us.append(u)
            sizes.append(size_sum)
            u_totals.append(u_total)
        return cls(tuple(prices), tuple(us), tuple(sizes), tuple(u_totals), inverse)

    def walk(self, quantity: Decimal) -> Fill:
        """:func:`walk` of these levels: the levels whose running size stays below
        ``quantity`` are taken whole (the walk takes a level whole while its size is below
        what is left), the next one takes what is left."""
        if quantity < 0:
            raise ValueError("quantity must not be negative")
        whole = bisect_left(self.sizes, quantity)
        left = quantity - self.sizes[whole - 1] if whole else quantity
        u_total = self.u_totals[whole - 1] if whole else ZERO
        if whole == len(self.sizes) or left <= 0:  # too thin a book, or nothing asked for
            last = self.prices[whole - 1] if whole else None
            return Fill(quantity, quantity - left, u_total, last, self.inverse)
        u_total += left * self.us[whole]
        # what is left once the last level took it: ``left - left``, as the walk has it
        return Fill(quantity, quantity - (left - left), u_total, self.prices[whole], self.inverse)


def _sign(long: bool, inverse: bool) -> int:
    """+1 when the position gains as u rises (legs.Leg.sign)."""
    return (1 if long else -1) * (-1 if inverse else 1)


@dataclass(frozen=True, slots=True)
class CloseCost:
    """Closing the whole position at market into the current book."""

    fill: Fill
    mark: Decimal
    # adverse distance of the average fill from the mark, as a fraction of the mark (0.002 =
    # the close fills 0.2% worse than the mark; negative: better); for a too thin book, with
    # the remainder at the deepest visible price (a lower bound). None: an empty book side.
    slippage: Decimal | None


def close_cost(
    book: OrderBook, long: bool, quantity: Decimal, mark: Decimal, inverse: bool = False
) -> CloseCost:
    fill = book.close(long, quantity, inverse)
    average = fill.bounded_average
    if average is None:
        return CloseCost(fill, mark, None)
    adverse = (mark - average) if long else (average - mark)
    return CloseCost(fill, mark, adverse / mark)


@dataclass(frozen=True, slots=True)
class GapRisk:
    """Closing the whole position at its liquidation price into the book shifted there."""

    fill: Fill  # into the shifted book
    liquidation: Decimal
    bankruptcy: Decimal
    # what the close loses past the bankruptcy price (settle currency, >= 0; a lower bound
    # when the book is too thin); None: an empty book side
    shortfall: Decimal | None
    # the closing side as the exchange shows it, the factor that moves it to the
    # liquidation price, and the position's sign in u (for :attr:`fits`, read only by
    # messages: the metric needs the fill alone)
    levels: tuple[Level, ...]
    scale: Decimal
    sign: int

    @property
    def fits(self) -> Decimal | None:
        """The largest size whose close does not cross the bankruptcy price on average, at
        most the visible depth (position units); None: an empty book side."""
        if self.shortfall is None:
            return None
        u_b = to_u(self.bankruptcy, self.fill.inverse)
        return _fits(_shift(self.levels, self.scale), self.sign, u_b, self.fill.inverse)

    @property
    def excess(self) -> Decimal | None:
        """How much of the position is more than the book takes: size minus what fits."""
        fits = self.fits
        return None if fits is None else max(ZERO, self.fill.wanted - fits)


def _shift(levels: Iterable[Level], scale: Decimal) -> Iterator[Level]:
    """``levels`` with every price x ``scale``, sizes kept: the side moved so that the book's
    mid is at the liquidation price (lazily: a walk reads only the levels it needs)."""
    return ((price * scale, size) for price, size in levels)


@dataclass(frozen=True, slots=True)
class ForcedClose:
    """A position as the exchange closes it: whole, at market, at its liquidation price."""

    long: bool
    quantity: Decimal  # in the position's units, as the book's sizes
    liquidation: Decimal
    bankruptcy: Decimal
    inverse: bool = False

    @property
    def sign(self) -> int:
        return _sign(self.long, self.inverse)


def _moved_walk(book: OrderBook, close: ForcedClose) -> tuple[Fill, Decimal, Decimal]:
    """The walk of the book as it is, the factor that moves its prices to the liquidation
    price and the one that moves its sums in u: every price x scale is every u x scale, or
    x (1 / scale) for an inverse contract, so a moved walk is the walk, scaled."""
    mid = book.mid
    scale = ONE if mid is None else close.liquidation / mid
    k = ONE / scale if close.inverse else scale
    return book.close(close.long, close.quantity, close.inverse), scale, k


def gap_risk(book: OrderBook, close: ForcedClose) -> GapRisk:
    """The gap model of the module's docstring for one position, with what a message says
    (the fill, the size that fits); the metric needs :func:`gap_shortfall` alone."""
    here, scale, k = _moved_walk(book, close)
    last = None if here.last is None else here.last * scale
    fill = Fill(here.wanted, here.filled, here.u_total * k, last, close.inverse)
    shortfall = _shortfall(book, close, here, scale, k)
    levels = book.closing(close.long)
    return GapRisk(fill, close.liquidation, close.bankruptcy, shortfall, levels, scale, close.sign)


def gap_shortfall(book: OrderBook, close: ForcedClose) -> Decimal | None:
    """:attr:`GapRisk.shortfall` (the daemon reads it for every position at every mark, so
    with no more than the remembered walk and a few products). ``None``: an empty side."""
    return _shortfall(book, close, *_moved_walk(book, close))


def _shortfall(
    book: OrderBook, close: ForcedClose, here: Fill, scale: Decimal, k: Decimal
) -> Decimal | None:
    """:func:`gap_shortfall` from the walk :func:`_moved_walk` gave (one walk for a
    :func:`gap_risk`, which needs it for the fill too)."""
    last = here.last
    if last is None or book.mid is None:
        if close.quantity > 0 or not any(size > 0 for _, size in book.closing(close.long)):
            return None
        return ZERO  # nothing asked for
    # the rest of a too thin book at the deepest level, moved
    rest = (close.quantity - here.filled) * to_u(last * scale, close.inverse)
    total = here.u_total * k + rest
    # PnL against the bankruptcy price: negative is owed
    owed = -close.sign * (total - close.quantity * to_u(close.bankruptcy, close.inverse))
    return max(ZERO, owed)


def _fits(levels: Iterable[Level], sign: int, u_b: Decimal, inverse: bool) -> Decimal:
    """The largest size whose PnL against the bankruptcy price, walking ``levels``, stays at
    or above zero. Each deeper level is worse, so the running sum rises, then falls: its one
    crossing of zero is the answer (or the whole visible depth)."""
    total = ZERO  # running PnL against the bankruptcy price
    taken = ZERO
    for price, size in levels:
        per_unit = sign * (to_u(price, inverse) - u_b)
        after = total + size * per_unit
        if after < 0:
            return taken + total / -per_unit  # per_unit < 0 here: the partial level
        total = after
        taken += size
    return taken
