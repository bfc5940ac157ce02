"""What several exchanges' payloads share, parsed once: the side of a one-way or hedge-mode
position, a position reported with a signed size, a closed one-way position (both keys), and
risk-limit tier rows. Each exchange module names its own fields."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from alertd.engine.model import MarginMode, Side
from alertd.engine.tiers import Tier, TierTable, derive_deductions
from alertd.feeds.adapter import dec
from alertd.feeds.state import PositionState


def side_of(declared: Side | None, size: Decimal) -> Side | None:
    """A position's side: the one its hedge-mode field declares, else (one-way mode) the sign
    of its signed size; None for a closed one-way position."""
    if declared is not None:
        return declared
    if size == 0:
        return None
    return Side.LONG if size > 0 else Side.SHORT


def closed_both_sides(symbol: str) -> list[PositionState]:
    """Both possible keys of a symbol, closed (zero contracts): a one-way close does not say
    which side it closed."""
    return [PositionState(symbol, s, Decimal(0), Decimal(1), MarginMode.CROSS) for s in Side]


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
