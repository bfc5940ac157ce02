"""The snapshot format (JSON, schema 2; schema 1 still read): read, validate, and build the
engine's account model.

The format is the contract between ``alertd snapshot`` (which writes it) and ``alertd calc``
(which reads it); ``docs/snapshot.md`` documents every field. Validation reports every problem
with its path (``positions[1].entry_price: missing``) rather than the first one only.

Schema 2 adds collateral coins to the cross pool, more cross pools (one per margin asset where
the account's mode keeps them apart) and an optional ``cross`` for isolated-only accounts; an
optional ``orders`` (open conditional orders: stops) was added later, within schema 2 (older
readers ignore it; a snapshot without it has its stops "not read").
A schema 1 file is read exactly as before (its unknown keys ignored).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from alertd.engine.collateral import (
    Collateral,
    CollateralRatio,
    ConversionRates,
    RatioBasis,
    RatioTier,
    SettleTerms,
)
from alertd.engine.fee_gap import FeeGap
from alertd.engine.model import Account, MarginAsset, MarginMode, Pool, Position, Side
from alertd.engine.orderbook import OrderBook
from alertd.engine.profiles import ExchangeProfile
from alertd.engine.stops import StopKind, StopOrder, Trigger
from alertd.engine.tiers import (
    Tier,
    TierBasis,
    TierTable,
    TierTableError,
    deduction_warnings,
    derive_deductions,
)
from alertd.errors import InputError, SnapshotError
from alertd.exchanges.registry import UnknownExchangeError, get_spec
from alertd.limits import MAX_SNAPSHOT_BYTES, load_json, read_input
from alertd.validation import decimal_value, short
from alertd.validation import problems as validation_problems
from alertd.views.format import decimal_str

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)


def _decimal(value: Any) -> Any:
    """Accept decimal strings and JSON numbers exactly; refuse bools, NaN, infinities and
    numbers beyond alertd's digit and exponent limits (so no figure can overflow)."""
    if isinstance(value, bool | int | str | Decimal | float):
        # floats are reached only when a caller parsed JSON without parse_float=Decimal
        return decimal_value(value)
    return value


Dec = Annotated[Decimal, BeforeValidator(_decimal)]
PositiveDec = Annotated[Decimal, BeforeValidator(_decimal), Field(gt=0)]
NonNegativeDec = Annotated[Decimal, BeforeValidator(_decimal), Field(ge=0)]


class _Model(BaseModel):
    # Unknown keys are ignored so that newer writers can add fields older readers skip.
    model_config = ConfigDict(extra="ignore", frozen=True)


class TierIn(_Model):
    max_notional: PositiveDec | None = None
    max_contracts: PositiveDec | None = None
    mmr: Annotated[Decimal, BeforeValidator(_decimal), Field(ge=0, lt=1)] | None = None
    deduction: NonNegativeDec | None = None
    max_leverage: PositiveDec | None = None


class PositionIn(_Model):
    symbol: Annotated[str, Field(min_length=1)]
    side: Literal["long", "short"]
    contracts: PositiveDec
    contract_size: PositiveDec = Decimal(1)
    inverse: bool = False
    entry_price: PositiveDec
    mark_price: PositiveDec
    margin_mode: Literal["cross", "isolated"]
    isolated_margin: NonNegativeDec | None = None
    fee_rate: NonNegativeDec | None = None
    leverage: PositiveDec | None = None
    tick_size: PositiveDec | None = None
    lot_size: PositiveDec | None = None  # the smallest order size step, in contracts
    # the exchange's ADL queue position on alertd's scale: 0 last in line, 1 first
    adl_rank: Annotated[NonNegativeDec, Field(le=1)] | None = None
    tiers: Annotated[list[TierIn], Field(min_length=1)]


class CrossIn(_Model):
    wallet_balance: Dec


class SnapshotIn(_Model):
    """Schema 1."""

    schema_: Literal[1] = Field(alias="schema")
    exchange: str
    account: str = "default"
    settle: Annotated[str, Field(min_length=1)]
    cross: CrossIn
    positions: list[PositionIn]


Ratio = Annotated[Decimal, BeforeValidator(_decimal), Field(ge=0, le=1)]


class RatioTierIn(_Model):
    max_amount: PositiveDec | None = None
    max_value: PositiveDec | None = None
    ratio: Ratio


class LiabilityTierIn(_Model):
    max_amount: PositiveDec | None = None  # the amount owed, in the coin; none: no cap
    max_value: PositiveDec | None = None  # or its value in the pool's currency
    mmr: Annotated[Decimal, BeforeValidator(_decimal), Field(ge=0, lt=1)]
    # taken off the tier's requirement, in the cap's unit: 0 (omitted) for steps (OKX's
    # borrowing tiers), the bracket recursion's for slices (Gate's loan margin tiers)
    deduction: NonNegativeDec = Decimal(0)


class CollateralIn(_Model):
    asset: Annotated[str, Field(min_length=1)]
    amount: Dec
    price: PositiveDec
    price_symbol: Annotated[str, Field(min_length=1)] | None = None
    ratio: Ratio | None = None
    ratio_tiers: Annotated[list[RatioTierIn], Field(min_length=1)] | None = None
    liability_ratio: PositiveDec = Decimal(1)
    # the coin's price over its price symbol's mark when read (an index beside the mark)
    price_over_mark: PositiveDec | None = None
    # a liability's maintenance rate stepped by the amount owed (OKX's borrowing tiers) or
    # by its value (Gate's loan margin tiers)
    liability_tiers: Annotated[list[LiabilityTierIn], Field(min_length=1)] | None = None
    # the amount borrowed, already out of ``amount`` (Gate): owed is the larger of it and
    # the negative amount
    borrowed: NonNegativeDec = Decimal(0)


class RatesIn(_Model):
    # the rates a margin asset converts at into the pool's unit (Binance multi-assets: its
    # assetIndex bidRate and askRate): its equity at the bid rate while positive, the ask
    # rate once negative, its positions' maintenance margin at the ask rate
    bid_rate: PositiveDec | None = None
    ask_rate: PositiveDec | None = None


class MarginAssetIn(RatesIn):
    """Another margin asset sharing the pool on an equity line of its own (Binance
    multi-assets: USDC beside USDT; Bybit's unified account: USDC at its USD value): its
    wallet and the PnL of the positions that name it (``positions[].margin_asset``) at its
    own rates, after its own discount tiers while positive (Bybit's tiered collateral value
    ratio, by its amount)."""

    asset: Annotated[str, Field(min_length=1)]
    wallet_balance: Dec = Decimal(0)
    discount_tiers: Annotated[list[RatioTierIn], Field(min_length=1)] | None = None


class PoolIn(RatesIn):
    wallet_balance: Dec = Decimal(0)
    collateral: list[CollateralIn] = []
    # the pool currency's borrowing tiers where the exchange lends it below zero (OKX
    # multi-currency margin, Gate unified): what is owed then requires a maintenance margin
    liability_tiers: Annotated[list[LiabilityTierIn], Field(min_length=1)] | None = None
    # the pool currency borrowed (Gate), already out of the wallet: owed is the larger of it
    # and the shortfall of the wallet and the cross PnL below zero
    borrowed: NonNegativeDec = Decimal(0)
    # the pool currency's own discount tiers (OKX's USDT discount rate), by its amount
    discount_tiers: Annotated[list[RatioTierIn], Field(min_length=1)] | None = None
    margin_assets: list[MarginAssetIn] = []


class MorePoolIn(PoolIn):
    asset: Annotated[str, Field(min_length=1)]


class PositionInV2(PositionIn):
    pool: Annotated[str, Field(min_length=1)] | None = None
    # the margin asset it settles in where that is not its pool's currency (a USDC-M
    # position in Binance's multi-assets pool over a USDT wallet)
    margin_asset: Annotated[str, Field(min_length=1)] | None = None


class StopOrderIn(_Model):
    """An open conditional order (``docs/snapshot.md``, "orders")."""

    symbol: Annotated[str, Field(min_length=1)]
    side: Literal["long", "short"]  # the position it closes: a sell closes a long
    kind: Literal["stop", "take-profit", "trailing stop"] = "stop"
    trigger: Literal["falls", "rises", "crosses"]
    trigger_price: PositiveDec | None = None
    contracts: PositiveDec | None = None  # None: closes the whole position
    order_id: str = ""
    reduce_only: bool = True


# [price, amount] (ccxt may add a third figure, the order count, which is not read)
BookLevelIn = list[Dec]


class BookIn(_Model):
    """A symbol's order book (``docs/snapshot.md``, "order_books"): ccxt's unified order book,
    bids best (highest) first, asks best (lowest) first, each ``[price, amount]`` with the
    amount in the exchange's unit (contracts where it counts contracts, as ccxt leaves it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    bids: list[BookLevelIn] = []
    asks: list[BookLevelIn] = []


class BookFileIn(BookIn):
    """``alertd calc --book FILE``: a saved ``fetch_order_book`` answer, which names its
    symbol."""

    symbol: Annotated[str, Field(min_length=1)]


class FeeGapIn(_Model):
    """A part of the fee rates no read could tell (Bybit's GST where neither the fills nor the
    KYC region told): ``what`` in words, ``share`` the most it adds to each ``fee_rate``."""

    what: Annotated[str, Field(min_length=1, max_length=200)]
    share: Annotated[Decimal, BeforeValidator(_decimal), Field(gt=0, le=1)]


class SnapshotInV2(_Model):
    """A snapshot file (schema 2): what ``alertd calc`` reads and ``alertd snapshot`` writes."""

    model_config = ConfigDict(extra="ignore", frozen=True, title="Snapshot")
    schema_: Literal[2] = Field(alias="schema")
    exchange: str
    account: str = "default"
    settle: Annotated[str, Field(min_length=1)]
    cross: PoolIn | None = None
    pools: list[MorePoolIn] = []
    positions: list[PositionInV2]
    # open conditional orders; absent (older snapshots, exchanges alertd reads none of):
    # not read, which is not "no stop"
    orders: list[StopOrderIn] | None = None
    # the order books of held symbols (optional): calc shows the close slippage and gap risk
    order_books: dict[str, BookIn] = {}
    # absent: every fee rate is as the exchange charges it; present: calc says how low the
    # maintenance margin is at most without what it names
    fee_gap: FeeGapIn | None = None


@dataclass(frozen=True, slots=True)
class LoadedSnapshot:
    account: Account  # every pool (``Account.pools``: one per other margin asset)
    warnings: tuple[str, ...]
    # every cross pool as its own account: one per margin asset where the mode keeps them
    # apart (Binance single-asset: USDT-M against USDT, USDC-M against USDC), the settle
    # currency's first
    pools: tuple[Account, ...] = ()
    # the order books the snapshot carries, by symbol, sizes in the positions' units
    books: Mapping[str, OrderBook] = field(default_factory=dict)
    fee_gap: FeeGap | None = None  # what the fee rates leave out (``SnapshotInV2.fee_gap``)


def _build_ratio(c: CollateralIn, where: str, problems: list[str]) -> CollateralRatio | None:
    if c.ratio is not None and c.ratio_tiers is not None:
        problems.append(f"{where}: give ratio or ratio_tiers, not both")
        return None
    if c.ratio_tiers is None:
        if c.ratio is None and c.amount > 0:
            problems.append(f"{where}.ratio: missing (or ratio_tiers)")
            return None
        # a liability counts in full whatever its ratio
        return CollateralRatio.flat(c.ratio if c.ratio is not None else Decimal(1))
    raw = c.ratio_tiers
    if any(t.max_amount is not None and t.max_value is not None for t in raw):
        problems.append(f"{where}.ratio_tiers: give max_amount or max_value, not both")
        return None
    by_value = any(t.max_value is not None for t in raw)
    if by_value and any(t.max_amount is not None for t in raw):
        problems.append(f"{where}.ratio_tiers: tiers mix max_amount and max_value; use one basis")
        return None
    basis = RatioBasis.VALUE if by_value else RatioBasis.AMOUNT
    tiers = [RatioTier(t.max_value if by_value else t.max_amount, t.ratio) for t in raw]
    try:
        return CollateralRatio.build(tiers, basis)
    except TierTableError as exc:
        field = ("max_value" if by_value else "max_amount") if exc.field == "cap" else exc.field
        problems.append(f"{where}.ratio_tiers[{exc.index}].{field}: {exc.reason}")
        return None


def _build_collateral(
    raw: list[CollateralIn], where: str, inverse: bool, problems: list[str], warnings: list[str]
) -> tuple[Collateral, ...]:
    out: list[Collateral] = []
    seen: dict[str, int] = {}
    for k, c in enumerate(raw):
        here = f"{where}[{k}]"
        if c.asset in seen:
            problems.append(f"{here}.asset: {c.asset} twice (also {where}[{seen[c.asset]}])")
        seen[c.asset] = k
        if c.price_symbol is not None and inverse:
            problems.append(
                f"{here}.price_symbol: collateral that moves with a price needs linear "
                "positions (an inverse pool is solved in 1/price)"
            )
        ratio = _build_ratio(c, here, problems)
        borrowing = _build_liability_tiers(
            c.liability_tiers, f"{here}.liability_tiers", problems, warnings
        )
        if ratio is None or borrowing is False:
            continue
        out.append(
            Collateral(
                asset=c.asset,
                amount=c.amount,
                price=c.price,
                ratio=ratio,
                price_symbol=c.price_symbol,
                liability_ratio=c.liability_ratio,
                price_over_mark=c.price_over_mark if c.price_symbol is not None else None,
                liability_tiers=borrowing or None,
                borrowed=c.borrowed,
            )
        )
    return tuple(out)


def _build_liability_tiers(
    raw: list[LiabilityTierIn] | None, where: str, problems: list[str], warnings: list[str]
) -> TierTable | Literal[False] | None:
    """Borrowing tiers by the amount owed or by its value (None: none given; False: a
    problem was listed). Their deductions are 0 (steps: OKX's borrowing tiers) or the
    bracket recursion's (slices: Gate's loan margin tiers); a first tier's deduction (nothing
    below it to take off) or one above its tier's requirement at the tier's floor (a negative
    requirement: a debt that frees margin) is refused, any other off the recursion named in a
    warning, as position tiers' are."""
    if raw is None:
        return None
    by_value = any(t.max_value is not None for t in raw)
    if by_value and any(t.max_amount is not None for t in raw):
        problems.append(f"{where}: tiers mix max_amount and max_value; use one basis")
        return False
    tiers = [Tier(t.max_value if by_value else t.max_amount, t.mmr, t.deduction) for t in raw]
    try:
        table = TierTable.build(tiers, TierBasis.NOTIONAL if by_value else TierBasis.CONTRACTS)
    except TierTableError as exc:
        field = ("max_value" if by_value else "max_amount") if exc.field == "cap" else exc.field
        problems.append(f"{where}[{exc.index}].{field}: {exc.reason}")
        return False
    refused = []
    if tiers[0].deduction:
        refused.append(f"{where}[0].deduction: must be 0 (got {tiers[0].deduction})")
    for i in range(1, len(tiers)):
        floor_requirement = table.floor(i) * tiers[i].mmr
        if tiers[i].deduction > floor_requirement:
            refused.append(
                f"{where}[{i}].deduction: {tiers[i].deduction} makes the tier's requirement "
                f"negative (above {floor_requirement}, its floor x its mmr)"
            )
    if refused:
        problems.extend(refused)
        return False
    if any(t.deduction for t in tiers):
        warnings.extend(f"{where}: {message}" for _, message in deduction_warnings(table))
    return table


def _build_tiers(
    raw: list[TierIn], profile: ExchangeProfile, where: str, problems: list[str]
) -> TierTable | None:
    by_contracts = [t.max_contracts is not None for t in raw]
    by_notional = [t.max_notional is not None for t in raw]
    for k, t in enumerate(raw):
        if t.max_contracts is not None and t.max_notional is not None:
            problems.append(f"{where}[{k}]: give max_notional or max_contracts, not both")
            return None
    if any(by_contracts) and any(by_notional):
        problems.append(f"{where}: tiers mix max_notional and max_contracts; use one basis")
        return None
    basis = TierBasis.CONTRACTS if any(by_contracts) else TierBasis.NOTIONAL
    cap_field = "max_contracts" if basis is TierBasis.CONTRACTS else "max_notional"

    mmrs: list[Decimal] = []
    for k, t in enumerate(raw):
        if t.mmr is not None:
            mmrs.append(t.mmr)
        elif profile.mmr_from_max_leverage and t.max_leverage is not None:
            # Hyperliquid: maintenance rate is half the initial rate at max leverage.
            mmrs.append(1 / (2 * t.max_leverage))
        else:
            need = " (or max_leverage)" if profile.mmr_from_max_leverage else ""
            problems.append(f"{where}[{k}].mmr: missing{need}")
            return None
    caps = [t.max_contracts if basis is TierBasis.CONTRACTS else t.max_notional for t in raw]
    derived = derive_deductions([c if c is not None else Decimal(0) for c in caps], mmrs)
    tiers = []
    for k, t in enumerate(raw):
        if t.deduction is not None:
            deduction = t.deduction
        elif profile.deduction_tiers:
            deduction = derived[k]
        else:
            deduction = Decimal(0)
        tiers.append(Tier(caps[k], mmrs[k], deduction, t.max_leverage))
    try:
        return TierTable.build(tiers, basis)
    except TierTableError as exc:
        field = cap_field if exc.field == "cap" else exc.field
        problems.append(f"{where}[{exc.index}].{field}: {exc.reason}")
        return None


def build_account(snap: SnapshotIn | SnapshotInV2) -> LoadedSnapshot:
    """Semantic checks and the engine model; raises :class:`SnapshotError` listing all."""
    problems: list[str] = []
    warnings: list[str] = []
    try:
        profile = get_spec(snap.exchange).profile
    except UnknownExchangeError as exc:
        raise SnapshotError(f"exchange: {exc}") from None

    seen: dict[tuple[str, str], int] = {}
    positions: list[Position] = []
    more_pools = snap.pools if isinstance(snap, SnapshotInV2) else []
    pool_assets: set[str] = set()
    for k, pool in enumerate(more_pools):
        if pool.asset == snap.settle or pool.asset in pool_assets:
            problems.append(f"pools[{k}].asset: {pool.asset} is already a pool")
        pool_assets.add(pool.asset)
    warned_symbols: set[str] = set()
    inverse_kinds = {p.inverse for p in snap.positions}
    if len(inverse_kinds) > 1:
        problems.append(
            "positions: linear and inverse positions cannot share one snapshot "
            "(they settle in different currencies)"
        )
    for i, p in enumerate(snap.positions):
        where = f"positions[{i}]"
        if (p.symbol, p.side) in seen:
            problems.append(
                f"{where}: duplicate {p.side} position in {p.symbol} "
                f"(also positions[{seen[(p.symbol, p.side)]}])"
            )
        seen[(p.symbol, p.side)] = i
        if p.margin_mode == "isolated" and p.isolated_margin is None:
            problems.append(f"{where}.isolated_margin: required for an isolated position")
        table = _build_tiers(p.tiers, profile, f"{where}.tiers", problems)
        if table is None:
            continue
        explicit = all(t.deduction is not None for t in p.tiers)
        if profile.deduction_tiers and explicit and p.symbol not in warned_symbols:
            warned_symbols.add(p.symbol)
            for _, message in deduction_warnings(table):
                warnings.append(f"{where}.tiers ({p.symbol}): {message}")
        pool_asset: str | None = None
        margin_asset = p.margin_asset if isinstance(p, PositionInV2) else None
        if isinstance(p, PositionInV2) and p.pool is not None and p.pool != snap.settle:
            if p.pool not in pool_assets:
                known = ", ".join([snap.settle, *(pool.asset for pool in more_pools)])
                problems.append(f"{where}.pool: no pool {p.pool!r} (pools: {known})")
                continue
            pool_asset = p.pool
        positions.append(
            Position(
                symbol=p.symbol,
                side=Side.LONG if p.side == "long" else Side.SHORT,
                contracts=p.contracts,
                contract_size=p.contract_size,
                inverse=p.inverse,
                entry_price=p.entry_price,
                mark_price=p.mark_price,
                margin_mode=MarginMode(p.margin_mode),
                tiers=table,
                fee_rate=p.fee_rate if p.fee_rate is not None else profile.default_fee_rate,
                isolated_margin=p.isolated_margin,
                leverage=p.leverage,
                tick_size=p.tick_size,
                lot_size=p.lot_size,
                adl_rank=p.adl_rank,
                pool=pool_asset,
                margin_asset=margin_asset if margin_asset != snap.settle else None,
            )
        )
    inverse = any(inverse_kinds)
    if isinstance(snap, SnapshotIn):
        cross: PoolIn | None = PoolIn(wallet_balance=snap.cross.wallet_balance)
    else:
        cross = snap.cross
    if cross is None:
        cross = PoolIn()
        if any(p.margin_mode == "cross" for p in snap.positions):
            problems.append("cross: required when a position is in cross margin")
    coins = _build_collateral(cross.collateral, "cross.collateral", inverse, problems, warnings)
    more = [
        (
            pool,
            _build_collateral(
                pool.collateral, f"pools[{k}].collateral", inverse, problems, warnings
            ),
        )
        for k, pool in enumerate(more_pools)
    ]
    terms = _build_settle_terms(cross, problems, warnings)
    shared = _build_margin_assets(cross, snap.settle, pool_assets, problems)
    lined = {m.asset for m in shared}
    for i, p in enumerate(snap.positions):
        asset = p.margin_asset if isinstance(p, PositionInV2) else None
        if asset is None or asset in (snap.settle, *lined) or asset in pool_assets:
            continue
        # named once per asset: its positions' PnL and margin count at par with the settle
        # currency, right where the pool does (Bybit's unified account) but not where it
        # converts each asset at its own rates (Binance multi-assets: its USDCUSD row)
        lined.add(asset)
        warnings.append(
            f"positions[{i}].margin_asset: {asset} has no cross.margin_assets line: "
            f"its positions' PnL and margin count at par with {snap.settle}"
        )
    for k, pool in enumerate(more_pools):
        keys = ("liability_tiers", "borrowed", "discount_tiers", "bid_rate", "ask_rate")
        for key in (*keys, "margin_assets"):
            if getattr(pool, key):
                # alertd knows of lending in the settle currency's pool only
                problems.append(f"pools[{k}].{key}: only the settle currency's pool lends")
    stops = _build_stops(snap.orders if isinstance(snap, SnapshotInV2) else None, problems)
    held = positions
    books = {
        symbol: book
        for symbol, raw in (snap.order_books if isinstance(snap, SnapshotInV2) else {}).items()
        if (book := build_book(raw, symbol, held, f"order_books.{symbol}", problems)) is not None
    }
    if problems:
        raise SnapshotError(problems)
    account = Account(
        profile,
        snap.account,
        snap.settle,
        cross.wallet_balance,
        tuple(positions),
        coins,
        stops,
        terms,
        tuple(Pool(pool.asset, pool.wallet_balance, pool_coins) for pool, pool_coins in more),
        shared,
    )
    raw_gap = snap.fee_gap if isinstance(snap, SnapshotInV2) else None
    gap = None if raw_gap is None else FeeGap(raw_gap.what, raw_gap.share)
    return LoadedSnapshot(account, tuple(warnings), account.pool_accounts(), books, gap)


def _build_settle_terms(
    cross: PoolIn, problems: list[str], warnings: list[str]
) -> SettleTerms | None:
    """The settle currency's own terms (``cross.liability_tiers``, ``borrowed``,
    ``discount_tiers``); None where they change nothing or a problem was listed."""
    owed = _build_liability_tiers(
        cross.liability_tiers, "cross.liability_tiers", problems, warnings
    )
    discount = _build_discount(cross.discount_tiers, "cross.discount_tiers", problems)
    if cross.borrowed and not owed:
        problems.append("cross.borrowed: needs cross.liability_tiers (what the loan requires)")
    rates = _build_rates(cross, "cross", problems)
    if owed is False:
        return None
    return SettleTerms.of(owed, cross.borrowed, discount, rates)


def _build_discount(
    raw: list[RatioTierIn] | None, where: str, problems: list[str]
) -> CollateralRatio | None:
    """A currency's own discount tiers by its amount (None: none given, or a problem
    listed)."""
    if raw is None:
        return None
    try:
        return CollateralRatio.build([RatioTier(t.max_amount or t.max_value, t.ratio) for t in raw])
    except TierTableError as exc:
        field = "max_amount" if exc.field == "cap" else exc.field
        problems.append(f"{where}[{exc.index}].{field}: {exc.reason}")
        return None


def _build_rates(raw: RatesIn, where: str, problems: list[str]) -> ConversionRates | None:
    """``raw``'s bid and ask rates (None: neither given, or a problem listed)."""
    bid, ask = raw.bid_rate, raw.ask_rate
    if (bid is None) != (ask is None):
        given, missing = ("bid_rate", "ask_rate") if ask is None else ("ask_rate", "bid_rate")
        problems.append(f"{where}.{missing}: required with {where}.{given}")
    elif bid is not None and ask is not None:
        if ask < bid:
            problems.append(
                f"{where}.ask_rate: must be at or above {where}.bid_rate {bid} (got {ask})"
            )
        else:
            return ConversionRates(bid, ask)
    return None


def _build_margin_assets(
    cross: PoolIn, settle: str, pool_assets: Collection[str], problems: list[str]
) -> tuple[MarginAsset, ...]:
    """``cross.margin_assets``: each a margin asset sharing the pool at its own rates and
    discount tiers; one the pool also holds as a collateral coin would count twice (its wallet
    at its rates, and its amount at its ratio)."""
    out: list[MarginAsset] = []
    seen = {settle, *pool_assets}
    coins = {c.asset: k for k, c in reversed(list(enumerate(cross.collateral)))}
    for k, m in enumerate(cross.margin_assets):
        where = f"cross.margin_assets[{k}]"
        if m.asset in seen:
            problems.append(f"{where}.asset: {m.asset} is already a pool or a margin asset")
            continue
        if m.asset in coins:
            problems.append(
                f"{where}.asset: {m.asset} is also a collateral coin "
                f"(cross.collateral[{coins[m.asset]}]): one or the other"
            )
            continue
        seen.add(m.asset)
        rates = _build_rates(m, where, problems)
        discount = _build_discount(m.discount_tiers, f"{where}.discount_tiers", problems)
        out.append(
            MarginAsset(
                m.asset, m.wallet_balance, SettleTerms.of(None, Decimal(0), discount, rates)
            )
        )
    return tuple(out)


def build_book(
    raw: BookIn, symbol: str, held: Sequence[Position], where: str, problems: list[str]
) -> OrderBook | None:
    """``raw`` as alertd's order book of ``symbol``, sizes in the held position's units (the
    amounts times its contract size); one problem per bad level, each named."""
    sizes = {p.contract_size for p in held if p.symbol == symbol}
    if not sizes:
        held_symbols = ", ".join(sorted({p.symbol for p in held})) or "none"
        problems.append(f"{where}: no position at {symbol} (held: {held_symbols})")
        return None
    (size,) = sizes
    sides = []
    for name, levels in (("bids", raw.bids), ("asks", raw.asks)):
        kept: list[tuple[Decimal, Decimal]] = []
        for i, level in enumerate(levels):
            if len(level) < 2:
                problems.append(f"{where}.{name}[{i}]: a level is [price, amount]")
                return None
            price, amount = level[0], level[1]
            problem = None
            if price <= 0 or amount < 0:
                problem = "a level needs a positive price and a size of 0 or more"
            elif kept and (price >= kept[-1][0] if name == "bids" else price <= kept[-1][0]):
                problem = f"prices must go {'down' if name == 'bids' else 'up'} level by level"
            if problem:
                problems.append(f"{where}.{name}[{i}]: {problem} (got {price}, {amount})")
                return None
            kept.append((price, amount))
        sides.append(tuple((p, a * size) for p, a in kept if a > 0))
    bids, asks = sides
    if bids and asks and bids[0][0] >= asks[0][0]:
        problems.append(f"{where}: crossed (best bid {bids[0][0]} >= best ask {asks[0][0]})")
        return None
    return OrderBook(bids, asks)


def _build_stops(
    orders: list[StopOrderIn] | None, problems: list[str]
) -> tuple[StopOrder, ...] | None:
    if orders is None:
        return None
    out = []
    for i, o in enumerate(orders):
        kind, trigger = StopKind(o.kind), Trigger(o.trigger)
        if o.trigger_price is None and kind is not StopKind.TRAILING:
            problems.append(f"orders[{i}].trigger_price: required for a {o.kind} order")
            continue
        if o.trigger_price is None and trigger is Trigger.CROSS:
            problems.append(f"orders[{i}].trigger_price: required when the trigger crosses")
            continue
        side = Side.LONG if o.side == "long" else Side.SHORT
        out.append(
            StopOrder(
                o.symbol,
                side,
                kind,
                trigger,
                o.trigger_price,
                o.contracts,
                o.order_id,
                o.reduce_only,
            )
        )
    return tuple(out)


def _stop_json(s: StopOrder) -> dict[str, Any]:
    return {
        "symbol": s.symbol,
        "side": s.side.label,
        "kind": s.kind.value,
        "trigger": s.trigger.value,
        "trigger_price": decimal_str(s.trigger_price),
        "contracts": decimal_str(s.contracts),
        "order_id": s.order_id,
        "reduce_only": s.reduce_only,
    }


def parse_snapshot(text: str, source: str = "snapshot") -> LoadedSnapshot:
    try:
        data = load_json(text, source)
    except InputError as exc:
        raise SnapshotError(exc.problems) from None
    if not isinstance(data, dict):
        raise SnapshotError(f"{source}: a snapshot is a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if "schema" in data and (isinstance(schema, bool) or schema not in READABLE_SCHEMAS):
        readable = " and ".join(str(v) for v in READABLE_SCHEMAS)
        raise SnapshotError(
            f"schema: this alertd reads snapshot schemas {readable} (got {short(schema)})"
        )
    model: type[SnapshotIn] | type[SnapshotInV2] = SnapshotIn if schema == 1 else SnapshotInV2
    try:
        snap = model.model_validate(data)
    except ValidationError as exc:
        raise SnapshotError(validation_problems(exc, {"schema_": "schema"})) from None
    return build_account(snap)


def load_book(path: str | Path, held: Sequence[Position]) -> tuple[str, OrderBook]:
    """``alertd calc --book FILE``: a saved ccxt ``fetch_order_book`` answer (it names its
    symbol), as the order book of a held position's symbol; problems name the file."""
    where = f"--book {path}"
    data = load_json(read_input(Path(path), MAX_SNAPSHOT_BYTES, InputError), where)
    try:
        raw = BookFileIn.model_validate(data)
    except ValidationError as exc:
        raise InputError([f"{where}: {p}" for p in validation_problems(exc, {})]) from None
    problems: list[str] = []
    book = build_book(raw, raw.symbol, held, where, problems)
    if book is None:
        raise InputError(problems)
    return raw.symbol, book


def load_snapshot(path: str | Path) -> LoadedSnapshot:
    path = Path(path)
    return parse_snapshot(read_input(path, MAX_SNAPSHOT_BYTES, SnapshotError), str(path))


@functools.lru_cache(maxsize=1024)
def _tiers_json(table: TierTable) -> tuple[dict[str, str | None], ...]:
    """A position's tier table as its snapshot writes it. Kept for the tables seen last (by
    value: most accounts on an exchange hold the same brackets): the daemon saves every
    account's snapshot each health interval, and writing the tiers out was most of it. The
    rows are shared: read them, never change them."""
    rows = []
    for tier in table.tiers:
        cap = decimal_str(tier.cap)
        out: dict[str, str | None] = (
            {"max_contracts": cap} if table.basis is TierBasis.CONTRACTS else {"max_notional": cap}
        )
        out["mmr"] = decimal_str(tier.mmr)
        out["deduction"] = decimal_str(tier.deduction)
        out["max_leverage"] = decimal_str(tier.max_leverage)
        rows.append(out)
    return tuple(rows)


def _collateral_json(c: Collateral) -> dict[str, Any]:
    out: dict[str, Any] = {
        "asset": c.asset,
        "amount": decimal_str(c.amount),
        "price": decimal_str(c.price),
        "price_symbol": c.price_symbol,
    }
    if c.ratio.is_flat:
        out["ratio"] = decimal_str(c.ratio.tiers[0].ratio)
    else:
        cap = "max_value" if c.ratio.basis is RatioBasis.VALUE else "max_amount"
        out["ratio_tiers"] = [
            {cap: decimal_str(t.cap), "ratio": decimal_str(t.ratio)} for t in c.ratio.tiers
        ]
    out["liability_ratio"] = decimal_str(c.liability_ratio)
    if c.price_over_mark is not None:
        out["price_over_mark"] = decimal_str(c.price_over_mark)
    if c.liability_tiers is not None:
        out["liability_tiers"] = _liability_tiers_json(c.liability_tiers)
    if c.borrowed:
        out["borrowed"] = decimal_str(c.borrowed)
    return out


def _liability_tiers_json(table: TierTable) -> list[dict[str, str | None]]:
    cap = "max_value" if table.basis is TierBasis.NOTIONAL else "max_amount"
    out: list[dict[str, str | None]] = []
    for t in table.tiers:
        row = {cap: decimal_str(t.cap), "mmr": decimal_str(t.mmr)}
        if t.deduction:
            row["deduction"] = decimal_str(t.deduction)
        out.append(row)
    return out


def _settle_terms_json(terms: SettleTerms | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if terms is None:
        return out
    if terms.tiers is not None:
        out["liability_tiers"] = _liability_tiers_json(terms.tiers)
    if terms.borrowed:
        out["borrowed"] = decimal_str(terms.borrowed)
    if terms.discount is not None:
        out["discount_tiers"] = [
            {"max_amount": decimal_str(t.cap), "ratio": decimal_str(t.ratio)}
            for t in terms.discount.tiers
        ]
    if terms.rates is not None:
        out["bid_rate"] = decimal_str(terms.rates.bid)
        out["ask_rate"] = decimal_str(terms.rates.ask)
    return out


def account_to_json(account: Account, fee_gap: FeeGap | None = None) -> dict[str, Any]:
    """The snapshot object for ``account`` (its fee rates lacking ``fee_gap`` where given):
    what :func:`parse_snapshot` reads back."""
    out = _account_json(account)
    if account.stops is not None:
        out["orders"] = [_stop_json(s) for s in account.stops]
    if fee_gap is not None:
        out["fee_gap"] = {"what": fee_gap.what, "share": decimal_str(fee_gap.share)}
    return out


def _account_json(account: Account) -> dict[str, Any]:
    more: dict[str, Any] = {}
    if account.pools:
        more["pools"] = [
            {
                "asset": pool.asset,
                "wallet_balance": decimal_str(pool.wallet_balance),
                "collateral": [_collateral_json(c) for c in pool.collateral],
            }
            for pool in account.pools
        ]
    head = {
        "schema": SCHEMA_VERSION,
        "exchange": account.profile.id,
        "account": account.name,
        "settle": account.settle,
        "cross": {
            "wallet_balance": decimal_str(account.wallet_balance),
            "collateral": [_collateral_json(c) for c in account.collateral],
            **_settle_terms_json(account.settle_terms),
            **(
                {
                    "margin_assets": [
                        {
                            "asset": m.asset,
                            "wallet_balance": decimal_str(m.wallet_balance),
                            **_settle_terms_json(m.terms),
                        }
                        for m in account.margin_assets
                    ]
                }
                if account.margin_assets
                else {}
            ),
        },
    }
    return (
        head
        | more
        | {
            "positions": [
                {
                    "symbol": p.symbol,
                    "side": p.side.label,
                    "contracts": decimal_str(p.contracts),
                    "contract_size": decimal_str(p.contract_size),
                    "inverse": p.inverse,
                    "entry_price": decimal_str(p.entry_price),
                    "mark_price": decimal_str(p.mark_price),
                    "margin_mode": p.margin_mode.value,
                    "isolated_margin": decimal_str(p.isolated_margin),
                    "fee_rate": decimal_str(p.fee_rate),
                    "leverage": decimal_str(p.leverage),
                    "tick_size": decimal_str(p.tick_size),
                    "lot_size": decimal_str(p.lot_size),
                    "adl_rank": decimal_str(p.adl_rank),
                    "tiers": list(_tiers_json(p.tiers)),
                }
                | ({"pool": p.pool} if p.pool is not None else {})
                | ({"margin_asset": p.margin_asset} if p.margin_asset is not None else {})
                for p in account.positions
            ],
        }
    )
