"""Tier tables: maintenance margin rate and deduction by position size.

Most exchanges use the "tax bracket" form, ``MM = notional * mmr - deduction``, in which the
deduction of tier n is ``d[n] = d[n-1] + floor[n] * (mmr[n] - mmr[n-1])`` so that MM is continuous
in notional. OKX publishes step tiers sized in contracts, with no deduction: its MM jumps at tier
boundaries. Both forms are one :class:`TierTable`; the ``basis`` says what a cap measures.
"""

from __future__ import annotations

import enum
import functools
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import cast

ZERO = Decimal(0)

# A published deduction may be rounded; anything further off than this from the recursion is
# reported. Relative to the tier's floor notional, so it scales with the table.
DEDUCTION_TOLERANCE = Decimal("1e-9")


class TierBasis(enum.Enum):
    """What a tier cap measures."""

    NOTIONAL = "notional"  # settle currency (base coin for inverse contracts)
    CONTRACTS = "contracts"  # position size in contracts (OKX)


class TierTableError(ValueError):
    """A tier table that cannot be used: ``index`` names the offending tier."""

    def __init__(self, index: int, field: str, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Tier:
    """One bracket: covers sizes above the previous cap up to and including ``cap``."""

    cap: Decimal | None  # None = no cap (only the last tier)
    mmr: Decimal
    deduction: Decimal
    max_leverage: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TierTable:
    tiers: tuple[Tier, ...]
    basis: TierBasis
    caps: tuple[Decimal, ...]  # the finite caps, ascending, for bisection
    # MM is continuous in size (bracket deductions that satisfy the recursion exactly)
    continuous: bool = False
    # what is derived from the table alone, made once (its hash; the figures of
    # alertd.engine.book's bounds, by their inputs): a table is shared by every position in
    # its symbol and, scaled at a rate (:meth:`scaled`), by every account converting at that
    # rate, so an asset index frame re-rating a thousand accounts derives them once a symbol
    memo: dict[object, object] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        # the generated hash hashed every tier's Decimals on each call (``scaled``'s cache
        # is keyed by the table): kept, as the table is frozen
        found = self.memo.get("hash")
        if found is None:
            found = self.memo["hash"] = hash((self.tiers, self.basis, self.caps, self.continuous))
        return cast(int, found)

    @classmethod
    def build(cls, tiers: Sequence[Tier], basis: TierBasis = TierBasis.NOTIONAL) -> TierTable:
        """Check order and build; raises :class:`TierTableError` naming the bad tier."""
        if not tiers:
            raise TierTableError(0, "tiers", "at least one tier is required")
        caps: list[Decimal] = []
        for i, tier in enumerate(tiers):
            if tier.mmr < 0 or tier.mmr >= 1:
                raise TierTableError(i, "mmr", f"must be in [0, 1) (got {tier.mmr})")
            if tier.cap is None:
                if i != len(tiers) - 1:
                    raise TierTableError(
                        i, "cap", "only the last tier may have no cap (tiers out of order)"
                    )
                continue
            if tier.cap <= 0:
                raise TierTableError(i, "cap", f"must be positive (got {tier.cap})")
            if caps and tier.cap <= caps[-1]:
                raise TierTableError(
                    i,
                    "cap",
                    f"tiers out of order: cap {tier.cap} is not above the previous cap {caps[-1]}",
                )
            caps.append(tier.cap)
        continuous = all(
            tiers[i].cap is not None
            and tiers[i].cap * (tiers[i + 1].mmr - tiers[i].mmr)  # type: ignore[operator]
            == tiers[i + 1].deduction - tiers[i].deduction
            for i in range(len(tiers) - 1)
        )
        return cls(tuple(tiers), basis, tuple(caps), continuous)

    def index_for(self, size: Decimal) -> int:
        """Index of the tier covering ``size`` (notional or contracts, per ``basis``).

        Past the last finite cap of a fully capped table the last tier applies: the exchange
        would not let the position grow there, but a price move can still carry it there.
        """
        i = bisect_left(self.caps, size)
        last = len(self.tiers) - 1
        return i if i < last else last

    def tier_for(self, size: Decimal) -> Tier:
        return self.tiers[self.index_for(size)]

    def floor(self, index: int) -> Decimal:
        """The size above which tier ``index`` applies."""
        if index == 0:
            return ZERO
        cap = self.tiers[index - 1].cap
        assert cap is not None  # only the last tier is uncapped
        return cap

    @property
    def max_cap(self) -> Decimal | None:
        return self.tiers[-1].cap

    def scaled(self, rate: Decimal) -> TierTable:
        """The same caps with every requirement times ``rate``: a requirement counted in
        another unit (Binance multi-assets converts a margin asset's maintenance margin at its
        ask rate). The caps still measure the position in its own currency."""
        if rate == 1:
            return self
        return _scaled(self, rate)


# every computation of an account converts its positions' tables at the same rate until the
# next reconcile reads another: made once
@functools.lru_cache(maxsize=4096)
def _scaled(table: TierTable, rate: Decimal) -> TierTable:
    tiers = tuple(replace(t, mmr=t.mmr * rate, deduction=t.deduction * rate) for t in table.tiers)
    return TierTable(tiers, table.basis, table.caps, table.continuous)


def derive_deductions(caps: Sequence[Decimal | None], mmrs: Sequence[Decimal]) -> list[Decimal]:
    """Deductions that make ``notional * mmr - deduction`` continuous (the bracket recursion)."""
    out: list[Decimal] = []
    for i, mmr in enumerate(mmrs):
        if i == 0:
            out.append(ZERO)
            continue
        floor = caps[i - 1]
        assert floor is not None  # only the last tier is uncapped
        out.append(out[-1] + floor * (mmr - mmrs[i - 1]))
    return out


def deduction_warnings(table: TierTable) -> list[tuple[int, str]]:
    """Tiers whose deduction breaks the bracket recursion, as ``(index, message)``.

    Such a table makes maintenance margin jump at that tier's floor, which is almost always a
    transcription error; alertd still uses the published numbers, but says so.
    """
    found: list[tuple[int, str]] = []
    tiers = table.tiers
    if tiers[0].deduction != 0:
        found.append((0, f"tier 1 deduction is {tiers[0].deduction}, expected 0"))
    for i in range(1, len(tiers)):
        floor = table.floor(i)
        expected = tiers[i - 1].deduction + floor * (tiers[i].mmr - tiers[i - 1].mmr)
        if abs(tiers[i].deduction - expected) > DEDUCTION_TOLERANCE * max(floor, Decimal(1)):
            found.append(
                (
                    i,
                    f"tier {i + 1} deduction is {tiers[i].deduction}, the recursion gives "
                    f"{expected} (maintenance margin jumps at notional {floor})",
                )
            )
    return found
