"""``alertd fetch-history``: download a symbol's candles through ccxt into alertd's CSV format.

Mark-price candles where the exchange has them (liquidation runs on the mark), else trade
candles. Pages through the range; the CSV (``open_time,open,high,low,close``) is what
``alertd replay`` reads.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alertd.errors import InputError
from alertd.replay.history import iso


async def fetch_history(
    exchange: Any,
    symbol: str,
    since_ms: int,
    until_ms: int,
    out: Path,
    *,
    timeframe: str = "1m",
    prefer_mark: bool = True,
    page: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, str]:
    """Write the candles of [since, until] to ``out``; returns (rows, "mark" | "trades")."""
    await exchange.load_markets()
    if symbol not in exchange.markets:
        raise InputError(f"{exchange.id} has no market {symbol!r}")
    mark = prefer_mark and bool(exchange.has.get("fetchMarkOHLCV"))
    step_ms = exchange.parse_timeframe(timeframe) * 1000
    rows = 0
    cursor = since_ms
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["open_time", "open", "high", "low", "close"])
        while cursor <= until_ms:
            if mark:
                batch = await exchange.fetch_mark_ohlcv(
                    symbol, timeframe, cursor, page, {"until": until_ms}
                )
            else:
                batch = await exchange.fetch_ohlcv(
                    symbol, timeframe, cursor, page, {"until": until_ms}
                )
            batch = [c for c in batch if cursor <= c[0] <= until_ms]
            if not batch:
                break
            for t, o, h, low, c, *_ in batch:
                writer.writerow([int(t), repr(o), repr(h), repr(low), repr(c)])
            rows += len(batch)
            cursor = int(batch[-1][0]) + step_ms
            if progress is not None:
                progress(cursor)
    if rows == 0:
        raise InputError(f"no candles for {symbol} between {iso(since_ms)} and {iso(until_ms)}")
    return rows, "mark" if mark else "trades"
