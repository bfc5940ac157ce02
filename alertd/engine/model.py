"""The account model the engine computes on: plain frozen data, all money in ``Decimal``."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from alertd.engine.collateral import Collateral, SettleTerms
from alertd.engine.profiles import ExchangeProfile
from alertd.engine.tiers import TierTable

if TYPE_CHECKING:
    from alertd.engine.stops import StopOrder


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
    """One open position as the engine needs it: size, prices, margin mode and the
    symbol's tier table, all exact; what the engine computes from it lives in margin.py."""

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
    lot_size: Decimal | None = None  # the smallest step of an order's size, in contracts
    # the exchange's auto-deleveraging queue position, normalised: 0 = last in line, 1 = first
    # (docs/exchanges.md, "ADL rank": each exchange's scale); None: the exchange gives none
    adl_rank: Decimal | None = None
    # the margin asset of the pool it belongs to where that is one of the account's other
    # pools (``Account.pools``: a USDC-M position in Binance single-asset mode); None: the
    # pool of the account's settle currency
    pool: str | None = None
    # the margin asset it is margined in where that is not its pool's currency but shares
    # its pool (a USDC-M position in Binance's multi-assets USD pool over a USDT wallet): its
    # PnL is not that currency's equity, nor is its requirement converted at its rates; None:
    # its pool's currency
    margin_asset: str | None = None

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
class Pool:
    """A cross margin pool of another margin asset than the account's settle currency: where
    the exchange keeps each margin asset apart (Binance single-asset mode: USDC-M positions
    against the USDC wallet alone), its wallet, its coins, and the positions that name it."""

    asset: str
    wallet_balance: Decimal  # without unrealized PnL, in ``asset``
    collateral: tuple[Collateral, ...] = ()


@dataclass(frozen=True, slots=True)
class MarginAsset:
    """Another margin asset sharing the settle currency's pool with an equity line of its own
    (Binance multi-assets: USDC beside USDT in the one USD pool). Its equity is its wallet
    plus the PnL of the pool's cross positions margined in it (``Position.margin_asset``),
    counted by its ``terms`` (its bid rate while positive, its ask rate once negative: a kink
    that moves with the marks), its positions' maintenance margin at its ask rate: Binance
    FAQ "How to Calculate Margin in Multi-Assets Mode", "Account Equity =
    ∑min(assetEquity*bidRate, assetEquity*askRate)", the MM the sum of each asset's MM at its
    askRate. ``terms`` None: at par."""

    asset: str
    wallet_balance: Decimal  # in ``asset``, without unrealized PnL
    terms: SettleTerms | None = None


# One margin asset's equity as the pool counts it: the asset, its wallet, its terms
EquityLine = tuple[str, Decimal, SettleTerms | None]


@dataclass(frozen=True, slots=True)
class Account:
    profile: ExchangeProfile
    name: str
    settle: str
    wallet_balance: Decimal  # the cross pool's wallet balance, without unrealized PnL
    positions: tuple[Position, ...]
    # coins in the cross pool besides the wallet balance (multi-collateral modes)
    collateral: tuple[Collateral, ...] = ()
    # open conditional orders (stops, take-profits, trailing stops; engine/stops.py); None:
    # not read (an exchange or a snapshot without them), which is not "no stop"
    stops: tuple[StopOrder, ...] | None = None
    # how the pool counts its settle currency's own equity (the wallet and the cross PnL)
    # where the exchange lends it below zero or discounts it (OKX multi-currency margin, Gate
    # unified multi-currency: engine/collateral.SettleTerms); None: at par, nothing lent
    settle_terms: SettleTerms | None = None
    # the other margin assets' pools, each settled on its own (``Position.pool`` names a
    # position's); every figure is computed per pool (``pool_accounts``), the account's worst
    # ratio is its worst pool's
    pools: tuple[Pool, ...] = ()
    # the other margin assets of the settle currency's pool with equity lines of their own
    # (Binance multi-assets: USDC); their wallets are in the pool's margin balance
    margin_assets: tuple[MarginAsset, ...] = ()

    def __post_init__(self) -> None:
        coins = [*self.collateral, *(c for pool in self.pools for c in pool.collateral)]
        if any(c.price_symbol for c in coins) and any(p.inverse for p in self.positions):
            # an inverse pool is solved in 1/price, where a coin's value is not piecewise linear
            raise ValueError("collateral that moves with a price needs linear positions")
        assets = [self.settle, *(pool.asset for pool in self.pools)]
        if len(set(assets)) < len(assets):
            raise ValueError(f"a margin asset is two pools: {', '.join(assets)}")
        shared = [m.asset for m in self.margin_assets]
        if len(set(shared)) < len(shared) or set(shared) & set(assets):
            raise ValueError(f"a margin asset is two lines: {', '.join([*assets, *shared])}")
        for p in self.positions:
            if p.pool is not None and p.pool not in assets:
                raise ValueError(f"{p.symbol}: no pool {p.pool} (pools: {', '.join(assets)})")

    def pool_asset(self, p: Position) -> str:
        """The margin asset of ``p``'s pool."""
        return self.settle if p.pool is None else p.pool

    def line_of(self, p: Position) -> str | None:
        """The margin asset whose equity line ``p``'s PnL joins (and at whose ask rate its
        requirement counts), for a cross position of the settle currency's pool: the settle
        currency's where it is margined in that currency (``settle_terms``), a
        :class:`MarginAsset`'s where it is margined in one; None otherwise (isolated, another
        pool, or an asset counted at par)."""
        if p.is_isolated or self.pool_asset(p) != self.settle:
            return None
        if p.margin_asset in (None, self.settle):
            return self.settle
        return next((m.asset for m in self.margin_assets if m.asset == p.margin_asset), None)

    def equity_lines(self) -> tuple[EquityLine, ...]:
        """The settle currency's equity line and each :class:`MarginAsset`'s."""
        return (
            (self.settle, self.wallet_balance, self.settle_terms),
            *((m.asset, m.wallet_balance, m.terms) for m in self.margin_assets),
        )

    @property
    def shared_wallets(self) -> Decimal:
        """The wallets of the :class:`MarginAsset` lines, at par (their terms count the rest)."""
        return sum((m.wallet_balance for m in self.margin_assets), Decimal(0))

    def credited(self, p: Position, amount: Decimal) -> Account:
        """The account with ``amount`` (PnL realized by ``p``) in the wallet of ``p``'s
        equity line: a margin asset's own, else the settle currency's."""
        line = self.line_of(p)
        if line is None or line == self.settle:
            return replace(self, wallet_balance=self.wallet_balance + amount)
        return replace(
            self,
            margin_assets=tuple(
                replace(m, wallet_balance=m.wallet_balance + amount) if m.asset == line else m
                for m in self.margin_assets
            ),
        )

    def pool_accounts(self) -> tuple[Account, ...]:
        """Each pool as an account of its own (the settle currency's first, then ``pools`` in
        order), holding the positions of that pool: what the engine computes each pool on."""
        if not self.pools:
            return (self,)
        own = replace(
            self, positions=tuple(p for p in self.positions if p.pool in (None, self.settle))
        )
        return (
            replace(own, pools=()),
            *(
                replace(
                    self,
                    settle=pool.asset,
                    wallet_balance=pool.wallet_balance,
                    collateral=pool.collateral,
                    positions=tuple(p for p in self.positions if p.pool == pool.asset),
                    pools=(),
                    settle_terms=None,  # lent only in the settle currency's pool
                    margin_assets=(),
                )
                for pool in self.pools
            ),
        )

    def mark_of(self, symbol: str) -> Decimal | None:
        """The mark of ``symbol``'s positions, None when none is held."""
        return next((p.mark_price for p in self.positions if p.symbol == symbol), None)

    def collateral_scale(self, c: Collateral) -> Decimal:
        """``c``'s price over the mark of its price symbol: a coin valued at an index keeps
        its basis to that mark as the mark moves. The mark of the same symbol's positions
        gives it (so that the coin's value now is its value on the solver's line); where none
        is held, the basis read with the coin (``price_over_mark``), else 1 (the coin's
        price is the symbol's)."""
        mark = self.mark_of(c.price_symbol) if c.price_symbol else None
        if mark:
            return c.price / mark
        return c.price_over_mark if c.price_over_mark is not None else Decimal(1)

    def with_marks(self, marks: Mapping[str, Decimal]) -> Account:
        """The same account with some symbols' mark prices replaced (collateral valued at
        those symbols moves with them)."""

        def coins(held: tuple[Collateral, ...]) -> tuple[Collateral, ...]:
            return tuple(
                replace(c, price=self.collateral_scale(c) * marks[c.price_symbol])
                if c.price_symbol is not None and c.price_symbol in marks
                else c
                for c in held
            )

        return replace(
            self,
            positions=tuple(
                replace(p, mark_price=marks[p.symbol]) if p.symbol in marks else p
                for p in self.positions
            ),
            collateral=coins(self.collateral),
            pools=tuple(replace(pool, collateral=coins(pool.collateral)) for pool in self.pools),
        )

    def moved(self, fraction: Decimal) -> Account:
        """The same account with every mark moved by ``fraction`` (-0.1 = down 10%), and
        every coin that moves with a price."""
        factor = 1 + fraction

        def coins(held: tuple[Collateral, ...]) -> tuple[Collateral, ...]:
            return tuple(replace(c, price=c.price * factor) if c.price_symbol else c for c in held)

        return replace(
            self,
            positions=tuple(replace(p, mark_price=p.mark_price * factor) for p in self.positions),
            collateral=coins(self.collateral),
            pools=tuple(replace(pool, collateral=coins(pool.collateral)) for pool in self.pools),
        )

    @property
    def collateral_value(self) -> Decimal:
        return sum((c.value for c in self.collateral), Decimal(0))

    @property
    def cross_positions(self) -> tuple[Position, ...]:
        return tuple(p for p in self.positions if not p.is_isolated)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.symbol for p in self.positions))

    @property
    def price_symbols(self) -> tuple[str, ...]:
        """Every symbol whose price moves the account: its positions' and its collateral's."""
        held = [*self.collateral, *(c for pool in self.pools for c in pool.collateral)]
        coins = (c.price_symbol for c in held if c.price_symbol)
        return tuple(dict.fromkeys((*self.symbols, *coins)))
