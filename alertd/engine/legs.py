"""Positions as "legs" in a space where every margin formula is linear, and a root finder.

For a linear contract the price ``P`` itself is that space. For an inverse contract it is
``u = 1 / P``: unrealized PnL ``s * Q * (1/entry - 1/P)`` and notional ``Q / P`` (in the base
coin) are both linear in ``u``, with the side's sign flipped. So one set of formulas serves both:

    notional(u) = Q * u
    upnl(u)     = sign * Q * (u - entry_u)
    mm(u)       = Q * u * (mmr + fee) - deduction + Q * close_fee   (tier chosen by Q * u)

A pool's ``equity - requirement`` is then piecewise linear in ``u`` (the pieces are the tiers),
so the price where the margin ratio is exactly 1 is found segment by segment, exactly, with no
iteration: this also settles "the liquidation price falls in another tier, solve again".
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from alertd.engine.collateral import CollateralTerm, Owed
from alertd.engine.model import Position
from alertd.engine.profiles import ExchangeProfile, FeeTerm
from alertd.engine.tiers import Tier, TierBasis, TierTable

ZERO = Decimal(0)
ONE = Decimal(1)


def to_u(price: Decimal, inverse: bool) -> Decimal:
    return ONE / price if inverse else price


def from_u(u: Decimal, inverse: bool) -> Decimal:
    return ONE / u if inverse else u


@dataclass(frozen=True, slots=True)
class Leg:
    sign: int  # +1 when the leg gains as u rises
    quantity: Decimal  # contracts * contract size
    entry_u: Decimal
    tiers: TierTable
    fee_rate: Decimal
    # A requirement that does not move with price: Bybit values an isolated position's
    # maintenance margin at its entry price.
    fixed_mm: Decimal | None
    # Tiers sized in contracts (OKX) do not change with price.
    fixed_tier: int | None
    # The fee to close at the bankruptcy price, per unit of quantity (Bybit): part of the
    # requirement that does not move with price.
    close_fee: Decimal = ZERO
    # the margin asset whose equity line its PnL joins (``Account.line_of``: the pool's
    # currency's, or another margin asset's sharing the pool, a USDC-M perpetual's USDC in
    # Binance's multi-assets USD pool); None: its PnL counts at par on no line
    line: str | None = None

    @classmethod
    def of(
        cls,
        position: Position,
        profile: ExchangeProfile,
        mm_rate: Decimal = ONE,
        line: str | None = None,
    ) -> Leg:
        """``mm_rate``: what one unit of its requirement counts in the pool (the ask rate its
        margin asset converts at, Binance multi-assets); the requirement is then in the
        pool's unit, every tier and fee term scaled alike."""
        quantity = position.quantity
        entry_u = to_u(position.entry_price, position.inverse)
        tiers = position.tiers.scaled(mm_rate)
        fixed_tier = (
            tiers.index_for(position.contracts) if tiers.basis is TierBasis.CONTRACTS else None
        )
        fee_rate = position.fee_rate if profile.fee_term is FeeTerm.MAINTENANCE_RATE else ZERO
        fee_rate *= mm_rate
        close_fee = ZERO
        if profile.fee_term is FeeTerm.CLOSE_AT_BANKRUPTCY and not position.inverse:
            # bankruptcy price: where the position's initial margin is gone
            lev = position.leverage
            shift = ONE - int(position.side) / lev if lev else ONE
            close_fee = position.entry_price * shift * position.fee_rate * mm_rate
        fixed_mm = None
        if position.is_isolated and profile.isolated_mm_at_entry:
            entry_notional = quantity * entry_u
            tier = (
                tiers.tiers[fixed_tier]
                if fixed_tier is not None
                else tiers.tier_for(entry_notional)
            )
            fixed_mm = entry_notional * (tier.mmr + fee_rate) - tier.deduction
            fixed_mm += quantity * close_fee
        sign = -int(position.side) if position.inverse else int(position.side)
        return cls(sign, quantity, entry_u, tiers, fee_rate, fixed_mm, fixed_tier, close_fee, line)

    @property
    def moves_tier(self) -> bool:
        return self.fixed_mm is None and self.fixed_tier is None

    def tier_index(self, u: Decimal) -> int:
        if self.fixed_tier is not None:
            return self.fixed_tier
        return self.tiers.index_for(self.quantity * u)

    def tier(self, u: Decimal) -> Tier:
        return self.tiers.tiers[self.tier_index(u)]

    def upnl(self, u: Decimal) -> Decimal:
        return self.sign * self.quantity * (u - self.entry_u)

    def mm(self, u: Decimal) -> Decimal:
        if self.fixed_mm is not None:
            return self.fixed_mm
        # tier_index inlined: this runs for every position on every tick
        notional = self.quantity * u
        i = self.fixed_tier if self.fixed_tier is not None else self.tiers.index_for(notional)
        tier = self.tiers.tiers[i]
        return (
            notional * (tier.mmr + self.fee_rate) - tier.deduction + self.quantity * self.close_fee
        )


# A term is a leg and the factor that maps the solved variable x to the leg's u: u = c * x.
# Solving for one symbol's price, c = 1 for that symbol's legs; for a uniform move of all
# prices, x is the move factor and c is each leg's current u.
Term = tuple[Leg, Decimal]


def _breakpoints(terms: Sequence[Term], collateral: Sequence[CollateralTerm] = ()) -> list[Decimal]:
    points: set[Decimal] = set()
    for leg, c in terms:
        if not leg.moves_tier:
            continue
        for cap in leg.tiers.caps:
            points.add(cap / (leg.quantity * c))
    for coin, c in collateral:
        points.update(coin.breakpoints(c))
    return sorted(points)


def _crossings(terms: Sequence[Term]) -> dict[Decimal, list[Term]]:
    """Each tier boundary (in x) and the terms whose tier changes there."""
    found: dict[Decimal, list[Term]] = {}
    for leg, c in terms:
        if not leg.moves_tier:
            continue
        for cap in leg.tiers.caps:
            found.setdefault(cap / (leg.quantity * c), []).append((leg, c))
    return found


def _line(
    const: Decimal,
    terms: Sequence[Term],
    probe: Decimal,
    with_mm: bool,
    collateral: Sequence[CollateralTerm] = (),
    owed: Sequence[Owed] = (),
) -> tuple[Decimal, Decimal]:
    """``(a, b)`` with ``f(x) = a + b * x`` on the segment holding ``probe``."""
    a = const
    b = ZERO
    for line in owed:
        oa, ob = line.line(probe, with_mm)
        a += oa
        b += ob
    for coin, c in collateral:
        ca, cb = coin.line(c, probe, with_mm)
        a += ca
        b += cb
    for leg, c in terms:
        sq = leg.sign * leg.quantity
        a -= sq * leg.entry_u
        b += sq * c
        if not with_mm:
            continue
        if leg.fixed_mm is not None:
            a -= leg.fixed_mm
            continue
        tier = leg.tier(c * probe)
        a += tier.deduction - leg.quantity * leg.close_fee
        b -= leg.quantity * c * (tier.mmr + leg.fee_rate)
    return a, b


def _sign(v: Decimal) -> int:
    return (v > 0) - (v < 0)


def monotone(terms: Sequence[Term]) -> bool:
    """One leg with a continuous requirement: ``f`` is monotone, so it has at most one root."""
    if len(terms) != 1:
        return False
    leg = terms[0][0]
    return not leg.moves_tier or leg.tiers.continuous


@dataclass(frozen=True, slots=True)
class Segment:
    """The piece of ``f`` (between two tier boundaries) that holds a root."""

    lo: Decimal
    hi: Decimal | None  # None: no upper boundary
    probe: Decimal  # a point inside, which picks the piece's tiers

    @classmethod
    def around(cls, terms: Sequence[Term], x: Decimal) -> Segment:
        points = _breakpoints(terms)
        k = bisect_left(points, x)  # x <= the segment's upper edge, as in nearest_root
        lo = points[k - 1] if k > 0 else ZERO
        hi = points[k] if k < len(points) else None
        return cls(lo, hi, lo * 2 + 1 if hi is None else (lo + hi) / 2)


class MonotoneRoot:
    """The root of a :func:`monotone` ``f`` as its ``const`` changes (the rest of a cross pool
    moving), without a full search each time: ``f`` is ``const`` plus a part that does not
    change, so while the root stays on the segment it was found on, that segment's line gives
    it, and while ``f`` keeps one sign over every price there is none."""

    __slots__ = ("_at_zero", "_end", "_end_at_zero", "_line", "_segment", "inverse", "terms")

    def __init__(self, terms: Sequence[Term], inverse: bool) -> None:
        assert monotone(terms)
        self.terms = terms
        self.inverse = inverse
        points = _breakpoints(terms)
        first = Segment.around(terms, points[0] / 2 if points else ONE)
        last = Segment.around(terms, points[-1] * 2 + 1 if points else ONE)
        # f(0+) - const, and where f heads at infinity (the slope's sign, or the level's)
        self._at_zero = _line(ZERO, terms, first.probe, True)[0]
        self._end_at_zero, slope = _line(ZERO, terms, last.probe, True)
        self._end = _sign(slope)
        self._segment: Segment | None = None
        self._line = (ZERO, ZERO)  # the segment's line, without const

    def root(self, const: Decimal, x0: Decimal) -> Decimal | None:
        """What :func:`nearest_root` gives for ``const`` (``x0`` only starts its search)."""
        segment = self._segment
        if segment is not None:
            a, b = self._line
            x = -(const + a) / b
            if segment.lo < x and (segment.hi is None or x <= segment.hi):
                return x
        end = self._end or _sign(const + self._end_at_zero)
        if _sign(const + self._at_zero) in (0, end):
            self._segment = None  # one sign over every price: no root
            return None
        found = nearest_root(const, self.terms, x0, self.inverse)
        self._segment = None
        if found is not None:
            segment = Segment.around(self.terms, found)
            self._line = _line(ZERO, self.terms, segment.probe, True)
            if self._line[1] != 0:
                self._segment = segment
        return found


def nearest_root(
    const: Decimal,
    terms: Sequence[Term],
    x0: Decimal,
    inverse: bool,
    with_mm: bool = True,
    collateral: Sequence[CollateralTerm] = (),
    owed: Sequence[Owed] = (),
) -> Decimal | None:
    """The positive x nearest to ``x0`` (in price terms) where ``f`` reaches zero.

    ``f(x) = const + sum(upnl - mm)`` over the terms, plus the value of the ``collateral``
    that moves with x, plus what each margin asset's terms take or add and less what it owes
    requires (``owed``: the pool currency's line, and each other margin asset's sharing the
    pool, each with its own kink): equity minus requirement, or with ``with_mm=False`` equity alone
    (for bankruptcy). Where step tiers
    make ``f`` jump across zero at a boundary, that boundary is the root. ``None`` when no
    positive root exists (a long that cannot be liquidated above a zero price, say).
    """
    # without the requirement, position tiers do not matter (collateral tiers and the pool
    # currency's discount still do; what it owed requires does not)
    crossings = _crossings(terms) if with_mm else {}
    # collateral tiers and the pool currency's edges change the line at edges of their own
    fresh = bool(collateral)
    owed_points = [x for line in owed for x in line.breakpoints()]
    owed_edges = set(owed_points)
    if fresh:
        points = sorted({*_breakpoints(terms if with_mm else (), collateral), *owed_points})
    else:
        points = sorted({*crossings, *owed_points})
    # segment k is (edges[k], edges[k + 1]]; edges[0] = 0, the last upper edge is None = infinity
    edges: list[Decimal | None] = [ZERO, *points, None]
    lines: dict[int, tuple[Decimal, Decimal]] = {}

    def probe(k: int) -> Decimal:
        lo, hi = edges[k], edges[k + 1]
        assert lo is not None
        return lo * 2 + 1 if hi is None else (lo + hi) / 2

    def line(k: int) -> tuple[Decimal, Decimal]:
        if k in lines:
            return lines[k]
        # A scan walks from segment to segment: the next line is this one with the terms
        # that change tier at the edge between them (a fresh line each time, over every
        # term, made a scan over many legs quadratic); the pool currency's part of it is
        # swapped for its part on this segment. Collateral tiers change the line at edges of
        # their own: with collateral, each line is made afresh.
        near = k - 1 if k - 1 in lines else k + 1 if k + 1 in lines else None
        if near is None or fresh:
            lines[k] = _line(const, terms, probe(k), with_mm, collateral, owed)
            return lines[k]
        a, b = lines[near]
        edge = edges[max(k, near)]
        assert edge is not None
        here, there = probe(k), probe(near)
        for leg, c in crossings.get(edge, ()):
            new, old = leg.tier(c * here), leg.tier(c * there)
            a += new.deduction - old.deduction
            b -= leg.quantity * c * (new.mmr - old.mmr)
        if edge in owed_edges:
            for one in owed:
                (new_a, new_b), (old_a, old_b) = one.line(here, with_mm), one.line(there, with_mm)
                a += new_a - old_a
                b += new_b - old_b
        lines[k] = (a, b)
        return lines[k]

    def value(k: int, x: Decimal) -> Decimal:
        a, b = line(k)
        return a + b * x

    def distance(x: Decimal) -> Decimal:
        return abs(from_u(x, inverse) / from_u(x0, inverse) - 1)

    k0 = bisect_left(points, x0)  # the segment holding x0: x0 <= its upper edge
    s0 = _sign(value(k0, x0))
    if s0 == 0:
        return x0

    def scan_down(limit: Decimal | None) -> Decimal | None:
        for k in range(k0, -1, -1):
            lo, hi = edges[k], edges[k + 1]
            assert lo is not None
            upper = x0 if k == k0 else hi
            assert upper is not None
            if limit is not None and distance(upper) > limit:
                return None
            a, b = line(k)
            if b != 0:
                root = -a / b
                if lo < root <= upper:
                    return root
            if k > 0 and _sign(value(k - 1, lo)) != s0:
                return lo  # a step in the requirement crosses zero at the boundary
        return None

    def scan_up(limit: Decimal | None) -> Decimal | None:
        for k in range(k0, len(edges) - 1):
            lo, hi = edges[k], edges[k + 1]
            assert lo is not None
            lower = x0 if k == k0 else lo
            if limit is not None and distance(lower) > limit:
                return None
            a, b = line(k)
            if b != 0:
                root = -a / b
                if lower < root and (hi is None or root <= hi):
                    return root
            if hi is not None and _sign(value(k + 1, hi)) != s0:
                return hi
        return None

    # Look first where f heads towards zero, then the other way only as far as that root.
    _, slope = line(k0)
    downhill_first = s0 * slope > 0
    first = scan_down(None) if downhill_first else scan_up(None)
    if monotone(terms) and not fresh and not owed:
        return first
    limit = distance(first) if first is not None else None
    second = scan_up(limit) if downhill_first else scan_down(limit)
    if first is None or second is None:
        return first if second is None else second
    return first if distance(first) <= distance(second) else second
