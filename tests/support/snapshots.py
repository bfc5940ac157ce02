"""Builders for snapshots in tests: the JSON form, so tests exercise validation too."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from alertd.engine.margin import AccountMetrics, PositionMetrics, compute
from alertd.engine.model import Account
from alertd.snapshot.format import parse_snapshot

Tiers = list[tuple[str | None, str, str | None]]


def tiers(rows: Tiers, basis: str = "max_notional") -> list[dict[str, Any]]:
    return [{basis: cap, "mmr": mmr, "deduction": ded} for cap, mmr, ded in rows]


def position(
    symbol: str,
    side: str,
    contracts: str,
    entry: str,
    mark: str,
    tier_rows: list[dict[str, Any]],
    *,
    mode: str = "cross",
    isolated_margin: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "side": side,
        "contracts": contracts,
        "entry_price": entry,
        "mark_price": mark,
        "margin_mode": mode,
        "isolated_margin": isolated_margin,
        "tiers": tier_rows,
        **extra,
    }


def snapshot(
    exchange: str, wallet: str, positions: list[dict[str, Any]], settle: str = "USDT"
) -> dict[str, Any]:
    return {
        "schema": 1,
        "exchange": exchange,
        "account": "test",
        "settle": settle,
        "cross": {"wallet_balance": wallet},
        "positions": positions,
    }


def account(snap: dict[str, Any]) -> Account:
    return parse_snapshot(json.dumps(snap, default=str)).account


def btc_long_on_2000(mark: str, **extra: Any) -> Account:
    """1 BTC long at 60,000 on 2,000 USDT cross at Binance, 0.4% maintenance margin (liq.
    58,232.93, bankruptcy 58,000), at ``mark``; ``extra`` position fields (``lot_size``)."""
    btc = position(
        "BTC/USDT:USDT", "long", "1", "60000", mark, tiers([(None, "0.004", "0")]), **extra
    )
    return account(snapshot("binanceusdm", "2000", [btc]))


def margin_pools(fdusd: bool = False) -> Account:
    """Binance single-asset mode, each margin asset its own pool, every mark at its entry:
    1,000 USDT with 1 BTCUSDT long at 50,000 (MM 0.4%), 100 USDC with 1 ETHUSDC long at
    3,000 (MM 1%) and, with ``fdusd``, 200 FDUSD with 0.1 BTCFDUSD long at 50,000 (MM 0.5%)."""
    btc = position("BTC/USDT:USDT", "long", "1", "50000", "50000", tiers([(None, "0.004", "0")]))
    eth = position("ETH/USDC:USDC", "long", "1", "3000", "3000", tiers([(None, "0.01", "0")]))
    held = [btc, dict(eth, pool="USDC")]
    pools = [{"asset": "USDC", "wallet_balance": "100"}]
    if fdusd:
        rows = tiers([(None, "0.005", "0")])
        held.append(position("BTC/FDUSD:FDUSD", "long", "0.1", "50000", "50000", rows))
        held[-1]["pool"] = "FDUSD"
        pools.append({"asset": "FDUSD", "wallet_balance": "200"})
    snap = snapshot("binanceusdm", "1000", held)
    snap.update(schema=2, pools=pools)
    return account(snap)


def metrics(snap: dict[str, Any], target: str | None = None) -> AccountMetrics:
    return compute(account(snap), Decimal(target) if target is not None else None)


def q(value: Decimal | None, places: str) -> Decimal | None:
    """Round half-even to the given exponent, as exchanges display."""
    return None if value is None else value.quantize(Decimal(places))


def one_position(
    exchange: str, wallet: str, *args: Any, settle: str = "USDT", **kwargs: Any
) -> PositionMetrics:
    """The figures of the only position of a snapshot: ``position(*args, **kwargs)`` in an
    account on ``exchange`` holding ``wallet``."""
    return metrics(snapshot(exchange, wallet, [position(*args, **kwargs)], settle)).positions[0]
