"""The daemon's side of the price dynamics: each exchange's recent mark-price candles through
ccxt's own client against the local exchanges, and the mark hub that seeds a window from them
and feeds it every streamed mark."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from alertd.engine.dynamics import MarkWindow
from alertd.exchanges.registry import get_spec
from alertd.feeds.backoff import Backoff
from alertd.feeds.marks import MarkHub

from .support.aio import background, run
from .support.fakes import FAKES, ccxt_client, make_fake, started
from .support.poll import eventually

D = Decimal
SYMBOLS = {"hyperliquid": "BTC/USDC:USDC"}
# the path of each exchange's mark-price candle endpoint (Hyperliquid: candleSnapshot, the
# trade candles it has instead)
ENDPOINTS = {
    "binanceusdm": "/fapi/v1/markPriceKlines",
    "bybit": "/v5/market/mark-price-kline",
    "okx": "/api/v5/market/mark-price-candles",
    "gate": "/api/v4/futures/usdt/candlesticks",
    "hyperliquid": "/info",
}
MIN = 60_000


def minute_candles(now_s: float, count: int) -> list[tuple[int, str, str, str, str]]:
    """``count`` one-minute candles up to the running one, a gentle zigzag around 50,000."""
    last = int(now_s * 1000) // MIN * MIN
    out = []
    for k in range(count):
        t = last - (count - 1 - k) * MIN
        o = 50_000 + (k % 5) * 10
        c = 50_000 + ((k + 1) % 5) * 10
        out.append((t, str(o), str(max(o, c) + 5), str(min(o, c) - 5), str(c)))
    return out


def listed(fake: Any, symbol: str) -> None:
    """``symbol`` served at 50,000 (OKX's fake lists its markets from the start)."""
    try:
        fake.add_symbol(symbol, "50000")
    except NotImplementedError:  # a fake whose market list is fixed: only the mark is set
        fake.set_mark(symbol, "50000")


class Holder:
    def __init__(self) -> None:
        self.marks: list[Decimal] = []

    def on_mark(self, symbol: str, price: Decimal) -> None:
        self.marks.append(price)

    def record_mark(self, symbol: str, price: Decimal, now: float) -> None:
        self.marks.append(price)  # a hub with a tick listener (none here)

    def on_malformed(self, kind: str, detail: str) -> None:
        raise AssertionError(f"{kind}: {detail}")


@contextlib.asynccontextmanager
async def streaming(
    fake: Any, exchange: str, symbol: str, holder: Holder, **dynamics: Any
) -> AsyncIterator[MarkHub]:
    """A running mark hub streaming ``symbol`` from ``fake`` to ``holder`` through ccxt.pro's
    own client, for the block; stopped and closed afterwards."""

    def factory(sink: Any) -> Any:
        import ccxt.pro as ccxtpro

        client = getattr(ccxtpro, exchange)({})
        fake.apply_to(client)
        return client

    hub = MarkHub(
        "test marks",
        factory,
        get_spec(exchange).new_adapter(),
        lambda: Backoff(0.01, 0.05, 2, 0, 1),
        time.monotonic,
        asyncio.sleep,
        **dynamics,
    )
    hub.subscribe(symbol, holder)
    try:
        async with background(hub.run()):
            yield hub
    finally:
        await hub.close()


@pytest.mark.parametrize("exchange", sorted(FAKES))
def test_recent_mark_candles_through_ccxt(exchange: str) -> None:
    symbol = SYMBOLS.get(exchange, "BTC/USDT:USDT")

    async def main() -> None:
        async with started(make_fake(exchange)) as fake:
            listed(fake, symbol)
            now = time.time()
            candles = minute_candles(now, 90)
            fake.set_mark_candles(symbol, candles)
            async with ccxt_client(fake, exchange) as client:
                adapter = get_spec(exchange).new_adapter()
                since = int((now - 3600) * 1000) - MIN
                rows = await adapter.fetch_mark_candles(client, symbol, "1m", since, 100)
                # 5-minute candles merge five scripted minutes each
                fives = await adapter.fetch_mark_candles(client, symbol, "5m", since, 100)
            assert ENDPOINTS[exchange] in {path for _, path in fake.requests}
        expected = [(t, D(o), D(c)) for t, o, _, _, c in candles if t >= since]
        assert rows == expected
        assert all(t % (5 * MIN) == 0 for t, _, _ in fives) and len(fives) in (12, 13)
        by_time = {t: (o, c) for t, o, c in expected}
        for t, o, c in fives:
            if t + 5 * MIN <= candles[-1][0]:  # a whole five minutes
                assert (o, c) == (by_time[t][0], by_time[t + 4 * MIN][1])

    run(main())


def test_the_hub_seeds_from_candles_then_feeds_every_mark() -> None:
    exchange, symbol = "bybit", "BTC/USDT:USDT"
    walls = [time.time()]

    def wall() -> float:
        return walls[0]

    async def main() -> None:
        async with started(make_fake(exchange, mark_interval_s=0.05)) as fake:
            listed(fake, symbol)
            fake.set_mark_candles(symbol, minute_candles(walls[0], 120))
            holder = Holder()
            async with streaming(
                fake, exchange, symbol, holder, wall_clock=wall, dynamics_span_s=3600
            ) as hub:
                # an hour of minute candles: 60 samples, or 61 when the hour's both ends
                # fall on a candle (the window keeps exactly its span, also as marks stream)
                await eventually(
                    lambda: symbol in hub.dynamics and len(hub.dynamics[symbol]) >= 60,
                    what="the window seeded",
                )
                window: MarkWindow = hub.dynamics[symbol]
                # meaningful at once: an hour of candles, not the first minute of marks
                assert window.volatility(3600) is not None
                assert window.capacity <= 3600 // 10 + 2
                walls[0] += 30
                fake.set_mark(symbol, "49000")
                await eventually(
                    lambda: hub.dynamics[symbol].samples()[-1] == (walls[0], pytest.approx(49000)),
                    what="the streamed mark in the window",
                )
                assert holder.marks and holder.marks[-1] == D(49000)
                hub.unsubscribe(symbol, holder)  # the last holder: the window goes too
                assert symbol not in hub.dynamics

    run(main())


def test_no_rule_on_dynamics_keeps_no_window_and_asks_for_no_candles() -> None:
    exchange, symbol = "okx", "BTC/USDT:USDT"

    async def main() -> None:
        async with started(make_fake(exchange, mark_interval_s=0.05)) as fake:
            listed(fake, symbol)
            holder = Holder()
            async with streaming(fake, exchange, symbol, holder) as hub:
                await eventually(lambda: len(holder.marks) >= 3, what="marks streamed")
                assert hub.dynamics == {}
                assert not any("candles" in path for _, path in fake.requests)

    run(main())


def test_a_reload_resizes_or_drops_the_windows() -> None:
    walls = [1_700_000_000.0]
    hub = MarkHub(
        "reload",
        lambda sink: None,
        get_spec("bybit").new_adapter(),
        lambda: Backoff(0.01, 0.05, 2, 0, 1),
        time.monotonic,
        asyncio.sleep,
        wall_clock=lambda: walls[0],
        dynamics_span_s=3600,
    )
    for k in range(400):  # 400 marks, one every 10 s
        walls[0] += 10
        hub._record("BTC/USDT:USDT", D(50_000 + k % 3))
    window = hub.dynamics["BTC/USDT:USDT"]
    assert len(window) == 361  # an hour at one sample per 10 s, both ends
    hub.set_dynamics_span(600)  # a rule's window shortened
    assert len(window) == 61 and window.capacity == 62
    hub.set_dynamics_span(0)  # no rule reads the dynamics any more
    assert hub.dynamics == {}
    hub._record("BTC/USDT:USDT", D(50_000))
    assert hub.dynamics == {}
