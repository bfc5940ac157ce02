"""The account model the engine computes on: plain frozen data, all money in ``Decimal``."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from alertd.engine.profiles import ExchangeProfile
from alertd.engine.tiers import TierTable


class Side(enum.IntEnum):
    """The sign of a position: +1 gains when the price rises."""

    LONG = 1
    SHORT = -1

    @property
    def label(self) -> str:
        return self.name.lower()


class MarginMode(enum.Enum):
    CROSS = "cross"
    ISOLATED = "isolated"


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    side: Side
    contracts: Decimal
    contract_size: Decimal  # base units per contract (linear) or quote units (inverse)
    inverse: bool
    entry_price: Decimal
    mark_price: Decimal
    margin_mode: MarginMode
    tiers: TierTable
    fee_rate: Decimal  # already resolved from the profile's default when the snapshot gave none
    isolated_margin: Decimal | None = None  # isolated only: margin held, without unrealized PnL
    leverage: Decimal | None = None  # the position's set leverage, for initial margin
    tick_size: Decimal | None = None

    @property
    def quantity(self) -> Decimal:
        """Size in base units (linear) or in quote units (inverse)."""
        return self.contracts * self.contract_size

    @property
    def is_isolated(self) -> bool:
        return self.margin_mode is MarginMode.ISOLATED

    @property
    def key(self) -> tuple[str, Side]:
        return (self.symbol, self.side)


@dataclass(frozen=True, slots=True)
class Account:
    profile: ExchangeProfile
    name: str
    settle: str
    wallet_balance: Decimal  # the cross pool's wallet balance, without unrealized PnL
    positions: tuple[Position, ...]

    def with_marks(self, marks: Mapping[str, Decimal]) -> Account:
        """The same account with some symbols' mark prices replaced."""
        return replace(
            self,
            positions=tuple(
                replace(p, mark_price=marks[p.symbol]) if p.symbol in marks else p
                for p in self.positions
            ),
        )

    def moved(self, fraction: Decimal) -> Account:
        """The same account with every mark moved by ``fraction`` (-0.1 = down 10%)."""
        factor = 1 + fraction
        return replace(
            self,
            positions=tuple(replace(p, mark_price=p.mark_price * factor) for p in self.positions),
        )

    @property
    def cross_positions(self) -> tuple[Position, ...]:
        return tuple(p for p in self.positions if not p.is_isolated)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.symbol for p in self.positions))
