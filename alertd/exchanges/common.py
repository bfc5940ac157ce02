"""What several exchanges' payloads share, parsed once: the side of a one-way or hedge-mode
position, a position reported with a signed size, a closed one-way position (both keys),
risk-limit tier rows, and an auto-deleveraging rank on the exchange's own scale. Each exchange
module names its own fields."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation, Subnormal, Underflow, localcontext
from typing import Any, Protocol

from alertd.engine.collateral import Collateral, CollateralRatio, SettleTerms
from alertd.engine.model import MarginMode, Side
from alertd.engine.tiers import Tier, TierTable, derive_deductions
from alertd.feeds.adapter import FrameError, dec
from alertd.feeds.state import Coverage, LifeSequence, ModeReading, PositionState


def side_of(declared: Side | None, size: Decimal) -> Side | None:
    """A position's side: the one its hedge-mode field declares, else (one-way mode) the sign
    of its signed size; None for a closed one-way position."""
    if declared is not None:
        return declared
    if size == 0:
        return None
    return Side.LONG if size > 0 else Side.SHORT


def closed_both_sides(
    symbol: str, version: int | LifeSequence | None = None
) -> list[PositionState]:
    """Both possible keys of a symbol, closed (zero contracts): a one-way close does not say
    which side it closed. ``version``: the close's own order (``PositionState.version``)."""
    return [
        PositionState(symbol, s, Decimal(0), Decimal(1), MarginMode.CROSS, version=version)
        for s in Side
    ]


def signed_position(
    raw: dict[str, Any],
    symbol: str,
    side: Side,
    size: Decimal,
    *,
    entry: str,
    isolated: bool,
    leverage: Decimal | None,
) -> PositionState:
    """A position from an exchange that reports a signed ``size`` with its ``entry`` price
    field and an isolated position's ``margin`` (Gate, OKX). A closed one keeps its key with
    zero contracts (and a placeholder entry price: nothing is computed from it)."""
    contracts = abs(size)
    return PositionState(
        symbol=symbol,
        side=side,
        contracts=contracts,
        entry_price=dec(raw.get(entry), entry) if contracts else Decimal(1),
        margin_mode=MarginMode.ISOLATED if isolated else MarginMode.CROSS,
        isolated_margin=dec(raw.get("margin"), "margin") if isolated and size else None,
        leverage=leverage,
    )


def risk_tiers(
    rows: list[dict[str, Any]],
    *,
    cap: str,
    mmr: str,
    deduction: str,
    leverage: Callable[[dict[str, Any]], Decimal | None],
) -> TierTable:
    """A notional tier table from an exchange's risk-limit rows, named by its own fields:
    ``cap`` (the tier's upper notional; the last tier is open), ``mmr``, ``deduction`` (derived
    from the caps and rates where a row has none) and the row's max ``leverage``."""
    ordered = sorted(rows, key=lambda r: dec(r.get(cap), cap))
    caps: list[Decimal | None] = []
    mmrs = []
    for i, row in enumerate(ordered):
        caps.append(None if i == len(ordered) - 1 else dec(row[cap], cap))
        mmrs.append(dec(row.get(mmr), mmr))
    derived = derive_deductions(caps, mmrs)
    tiers = []
    for i, row in enumerate(ordered):
        given = row.get(deduction)
        ded = dec(given, deduction) if given not in (None, "") else derived[i]
        tiers.append(Tier(caps[i], mmrs[i], ded, leverage(row)))
    return TierTable.build(tiers)


def coin_price_symbol(coin: str, settle: str, markets: Mapping[str, Any]) -> str | None:
    """The perpetual whose mark moves a collateral coin between reads (``BTC/USDT:USDT`` for
    BTC in a USDT pool), None where the exchange lists none (the coin keeps its price)."""
    perpetual = f"{coin}/{settle}:{settle}"
    return perpetual if perpetual in markets else None


@dataclass(frozen=True, slots=True)
class AdlScale:
    """An exchange's auto-deleveraging indicator: the level it gives a position last in the
    queue (``lowest``) and first in line (``highest``; below ``lowest`` where the exchange
    counts down, as Gate does), and the levels that mean "no rank" (``none``: no position, in
    liquidation). docs/exchanges.md, "ADL rank", gives each exchange's scale and source."""

    lowest: int
    highest: int
    none: frozenset[int] = frozenset()

    def normalise(self, raw: Any) -> Decimal | None:
        """``raw`` (an int or a numeric string, as the exchanges send it) on alertd's scale:
        0 = last in the queue, 1 = first in line, in equal steps. None for a level that means
        no rank, and for anything not on the scale (missing, empty, a fraction, out of range):
        an unknown rank is shown as unknown, never guessed."""
        if raw is None or isinstance(raw, bool) or raw == "":
            return None
        try:
            level = Decimal(raw if isinstance(raw, str | int) else repr(raw))
        except InvalidOperation:
            return None
        if not level.is_finite() or level != level.to_integral_value():
            return None
        if int(level) in self.none:
            return None
        low, high = sorted((self.lowest, self.highest))
        if not low <= level <= high:
            return None
        # abs: a scale that counts down gives -0 at its bottom, which would print as "-0"
        return abs((level - self.lowest) / (self.highest - self.lowest))


def with_adl(p: PositionState, raw: dict[str, Any], field: str, scale: AdlScale) -> PositionState:
    """``p`` with the ADL rank ``raw[field]`` gives on ``scale``; a frame without the field
    leaves the rank to the last one given (:meth:`AccountState.update_positions`)."""
    if field not in raw:
        return p
    return replace(p, adl_rank=scale.normalise(raw[field]), adl_given=True)


def ticker_mark(ticker: Mapping[str, Any], field: str) -> Decimal:
    """The mark price of a ccxt ticker (or mark-price update): the exchange's own ``field`` in
    ``info``, else the ``markPrice`` ccxt parsed from it."""
    info = ticker.get("info") or {}
    return dec(info.get(field, ticker.get("markPrice")), field)


def first_row_mark(rows: list[Any], field: str, endpoint: str, symbol: str) -> Decimal:
    """The mark price in the first row of a REST answer that lists one row per contract."""
    if not rows:
        raise FrameError(f"{endpoint}: no answer for {symbol}")
    return dec(rows[0].get(field), field)


def taker_fee_rates(
    rows: Mapping[str, Any],
    field: str,
    wanted: Mapping[str, str],
) -> dict[str, Decimal]:
    """The account's taker fee rates of the ``wanted`` markets (exchange id -> unified
    symbol) from ``rows`` keyed by exchange id, each row's rate in ``field``. A market the
    answer leaves out keeps the profile's base rate; a rate that is not a number, is
    negative (a taker pays) or above 1 (a fee above the trade's value) is a
    :class:`~alertd.feeds.adapter.FrameError` naming it."""
    out = {}
    for market_id, symbol in wanted.items():
        row = rows.get(market_id)
        if not isinstance(row, Mapping) or row.get(field) in (None, ""):
            continue
        rate = dec(row.get(field), f"{market_id} {field}")
        if not 0 <= rate <= 1:
            raise FrameError(f"{market_id} {field}: no taker fee rate: {rate}")
        out[symbol] = rate
    return out


def price_quotient(numerator: Decimal, denominator: Decimal, what: str) -> Decimal:
    """``numerator / denominator``, a price read from an exchange's row (a USD value over an
    amount, or over the settle coin's USD price). A quotient out of range is a
    :class:`FrameError` naming ``what`` (the row and its fields), never ``decimal.Overflow``
    out of every snapshot of the account: one the division itself cannot hold (a hostile row's
    exponents: ``eqUsd`` 1e-999999 at ``eq`` 1), and one whose square leaves Decimal's normal
    range (``eq`` 1e-999999 gives a price of 1E+999999, which the engine, multiplying prices
    by amounts and rates of like size, would overflow on later)."""
    try:
        with localcontext() as ctx:
            ctx.traps[Underflow] = ctx.traps[Subnormal] = True
            price = numerator / denominator
            if price:
                price * price
                1 / (price * price)
    except ArithmeticError:
        raise FrameError(f"{what} is out of range ({numerator} / {denominator})") from None
    return price


def over_settle(
    usd: Decimal,
    over: Decimal,
    coin: str,
    settle: str,
    source: str = "wallet-balance",
    field: str = "usdValue",
) -> Decimal:
    """``coin``'s USD value per coin ``usd`` over the settle coin's ``over``: every price of a
    pool the exchange values in USD is one. Out of range (a hostile settle row: its USD value
    1e-999999 at equity 1): a :class:`FrameError` naming both coins' rows in ``source``."""
    return price_quotient(usd, over, f"{source}: the {coin} {field} over the {settle} one's")


def usd_pool_coin(
    coin: str,
    amount: Decimal,
    usd_price: Decimal,
    settle_usd: Decimal,
    ratio: CollateralRatio,
    settle: str,
    markets: Mapping[str, Any],
    source: str = "wallet-balance",
    field: str = "usdValue",
) -> Collateral:
    """A coin of a pool the exchange values in USD (Bybit's unified account, OKX's
    multi-currency margin), priced in the pool's settle coin (its USD price over the settle
    coin's: the ratio is the same), moving with its perpetual's mark where one is listed.
    A price out of range is a :class:`FrameError` naming the rows (:func:`over_settle`)."""
    return Collateral(
        asset=coin,
        amount=amount,
        price=over_settle(usd_price, settle_usd, coin, settle, source, field),
        ratio=ratio,
        price_symbol=coin_price_symbol(coin, settle, markets),
    )


class ComputedPool(Protocol):
    """A USD pool an adapter reads with the account's mode (OKX multi-currency, Gate
    unified): its coins, how it counts the settle currency's own equity (lent below zero or
    borrowed, discounted), and what alertd does not reproduce of it (empty when the pool is
    exact)."""

    @property
    def coins(self) -> tuple[Collateral, ...]: ...

    @property
    def settle_terms(self) -> SettleTerms | None: ...

    @property
    def not_reproduced(self) -> tuple[str, ...]: ...


class ComputedPoolReads:
    """What an adapter with a :class:`ComputedPool` (``_pool``, read once per snapshot, at
    the latest with the balance) hands the feed: the pool's coins and the settle currency's
    terms, none while the exchange's own ratio stands in; and the mode's reading once the
    pool is read, which says so (``exchange_ratio``: which ratio stands in)."""

    _pool: ComputedPool | None = None
    exchange_ratio = ""

    def _computed(self) -> ComputedPool | None:
        pool = self._pool
        return None if pool is None or pool.not_reproduced else pool

    async def fetch_collateral(self, exchange: Any) -> tuple[Collateral, ...]:
        pool = self._computed()
        return () if pool is None else pool.coins  # the settle currency alone, or not ours

    def settle_terms(self) -> SettleTerms | None:
        pool = self._computed()
        return None if pool is None else pool.settle_terms

    def settled_mode(self, reading: ModeReading) -> ModeReading:
        """``reading``, or, where alertd does not reproduce the pool, the exchange's own ratio
        naming what it does not reproduce."""
        pool = self._pool
        if pool is None or not pool.not_reproduced:
            return reading
        return replace(
            reading,
            coverage=Coverage.EXCHANGE_RATIO,
            limits=f"{'; '.join(pool.not_reproduced)}, which alertd does not reproduce: "
            f"{self.exchange_ratio}",
        )
