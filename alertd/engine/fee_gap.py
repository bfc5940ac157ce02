"""A part of an account's taker fee rate that no read could tell, and the maintenance margin
alertd's figures leave out without it (Bybit: the GST an India-KYC account pays on the fee to
close, when neither its fills nor its key's KYC region say whether it pays it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from alertd.engine.margin import compute
from alertd.engine.model import Account


@dataclass(frozen=True, slots=True)
class FeeGap:
    """``what`` is left out of the fee rates in the requirement, in words; ``share``: the most
    it adds to each rate, as a share of it (India's GST: 0.18)."""

    what: str
    share: Decimal

    def describe(self) -> str:
        return f"fee to close without {self.what} ({(self.share * 100).normalize():f}% on the fee)"

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError(f"a fee gap's share is above 0 and at most 1, not {self.share}")


@dataclass(frozen=True, slots=True)
class MarginLeftOut:
    """The maintenance margin alertd's figures leave out for a :class:`FeeGap`, at most:
    ``amount`` in the account's settle currency, ``share`` of alertd's maintenance margin."""

    amount: Decimal
    share: Decimal | None  # None: alertd's maintenance margin is zero


def margin_left_out(account: Account, gap: FeeGap) -> MarginLeftOut:
    """Every position's maintenance margin with its fee rate raised by ``gap.share``, less
    alertd's: how low alertd's requirement is where the account pays the part left out."""
    raised = replace(
        account,
        positions=tuple(
            replace(p, fee_rate=p.fee_rate * (1 + gap.share)) for p in account.positions
        ),
    )
    ours, theirs = (
        sum((pm.maintenance_margin for pm in compute(a, crash=False).positions), Decimal(0))
        for a in (account, raised)
    )
    return MarginLeftOut(theirs - ours, (theirs - ours) / ours if ours else None)


def pools_left_out(pools: Iterable[Account], gap: FeeGap) -> list[tuple[str, MarginLeftOut]]:
    """:func:`margin_left_out` of each pool that holds a position (each an account:
    ``Account.pool_accounts``), with the pool's settle currency."""
    return [(pool.settle, margin_left_out(pool, gap)) for pool in pools if pool.positions]
