"""The fake Gate v4 futures server, driven by ccxt's own unmodified ``ccxt.pro.gate``, and
alertd's Gate feed against it.

Only ``exchange.urls['api']`` is pointed at the fake (loopback). Every wait is bounded; each test
runs in its own ``asyncio.run`` under an overall timeout and always closes the exchange.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from tests.fake_exchange.gate import FakeGate
from tests.support import aio
from tests.support.aio import settle
from tests.support.fakes import KEY, SECRET, ccxt_client, snapshot_then_opening, with_one_account
from tests.support.feeds import (
    BTC,
)
from tests.support.poll import eventually

ETH, SOL = "ETH/USDT:USDT", "SOL/USDT:USDT"
TEST_TIMEOUT_S = 15.0
async_test = aio.async_test(TEST_TIMEOUT_S)
D = Decimal


def fake_server(**kwargs: Any) -> AbstractAsyncContextManager[FakeGate]:
    return with_one_account(FakeGate(**kwargs))


def exchange(
    fake: FakeGate, key: str | None = KEY, secret: str | None = SECRET, **options: Any
) -> AbstractAsyncContextManager[Any]:
    """ccxt's gate on its swap markets; ``options``: ``uid=``, ``keep_alive_ms=``."""
    swap = {"defaultType": "swap"}
    return ccxt_client(fake, "gate", key, secret, enableRateLimit=False, options=swap, **options)


# ---- REST ------------------------------------------------------------------------------------


@async_test
async def test_load_markets_serves_usdt_perpetuals() -> None:
    async with fake_server() as fake, exchange(fake) as ex:
        markets = await ex.load_markets()
        assert {BTC, ETH, SOL} <= set(markets)
        btc = markets[BTC]
        assert (btc["id"], btc["type"], btc["linear"], btc["settle"]) == (
            "BTC_USDT",
            "swap",
            True,
            "USDT",
        )
        assert btc["contractSize"] == 0.0001
        assert btc["precision"]["price"] == 0.1
        assert btc["limits"]["leverage"]["max"] == 125
        # the signed unified-account probe answered: a classic account
        assert ("GET", "/api/v4/account/detail") in fake.requests
        assert ex.options["unifiedAccount"] is False


@async_test
async def test_account_detail_carries_the_user_id() -> None:
    async with fake_server() as fake, exchange(fake) as ex:
        detail = await ex.privateAccountGetDetail()
        assert detail["user_id"] == fake.user_id(KEY) == 10406147
        assert detail["key"] == {"mode": 1}


@async_test
async def test_positions_balance_tiers_and_mark() -> None:
    async with fake_server() as fake, exchange(fake) as ex:
        fake.set_mark(BTC, "60000")
        fake.open_position(KEY, BTC, "long", "5000", "62000")  # 0.5 BTC
        fake.open_position(KEY, ETH, "short", "100", "3500", margin_mode="isolated")
        positions = await ex.fetch_positions()
        by_symbol = {p["symbol"]: p for p in positions}
        btc, eth = by_symbol[BTC], by_symbol[ETH]
        assert (btc["side"], btc["contracts"], btc["marginMode"]) == ("long", 5000, "cross")
        assert btc["info"]["size"] == "5000" and btc["info"]["leverage"] == "0"
        # value 30,000 in tier 1: 30,000 * (0.004 + 0.00075)
        assert D(btc["info"]["maintenance_margin"]) == D("142.5")
        assert (eth["side"], eth["marginMode"], eth["info"]["leverage"]) == (
            "short",
            "isolated",
            "10",
        )
        balance = await ex.fetch_balance()
        assert balance["USDT"]["total"] == 10000
        account = balance["info"][0] if isinstance(balance["info"], list) else balance["info"]
        # wallet - isolated margin (350) + cross upl (-1,000)
        assert D(account["cross_margin_balance"]) == D(10000 - 350 - 1000)
        tiers = await ex.fetch_market_leverage_tiers(BTC)
        assert [t["maxNotional"] for t in tiers[:2]] == [1_000_000, 2_000_000]
        assert tiers[0]["maintenanceMarginRate"] == 0.004
        raw = await ex.publicFuturesGetSettleRiskLimitTiers(
            {"settle": "usdt", "contract": "BTC_USDT", "limit": 2, "offset": 2}
        )
        assert [r["tier"] for r in raw] == [3, 4]  # Gate pages with offset / limit
        tickers = await ex.publicFuturesGetSettleTickers({"settle": "usdt", "contract": "BTC_USDT"})
        assert tickers[0]["mark_price"] == "60000"


@async_test
async def test_rest_errors_are_gates() -> None:
    async with fake_server() as fake:
        async with exchange(fake, "nope", "nope") as ex:
            with pytest.raises(ccxt.AuthenticationError, match="INVALID_KEY"):
                await ex.privateFuturesGetSettleAccounts({"settle": "usdt"})
        async with exchange(fake, KEY, "wrong-secret") as ex:
            with pytest.raises(ccxt.AuthenticationError, match="INVALID_SIGNATURE"):
                await ex.privateFuturesGetSettleAccounts({"settle": "usdt"})
        async with exchange(fake) as ex:
            fake.fail_rest(429, path_prefix="/api/v4/futures/usdt/accounts")
            with pytest.raises(ccxt.RateLimitExceeded, match="TOO_MANY_REQUESTS"):
                await ex.privateFuturesGetSettleAccounts({"settle": "usdt"})
            fake.fail_rest(503)
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await ex.privateFuturesGetSettleAccounts({"settle": "usdt"})
            fake.ban(KEY)
            with pytest.raises(ccxt.RateLimitExceeded):
                await ex.privateFuturesGetSettleAccounts({"settle": "usdt"})
            fake.unban(KEY)
            account = await ex.privateFuturesGetSettleAccounts({"settle": "usdt"})
            assert account["total"] == "10000"
            fake.revoke_key(KEY)
            with pytest.raises(ccxt.AuthenticationError, match="INVALID_KEY"):
                await ex.privateFuturesGetSettlePositions({"settle": "usdt"})


# ---- websockets ------------------------------------------------------------------------------


@async_test
async def test_watch_ticker_receives_marks() -> None:
    async with fake_server() as fake, exchange(fake) as ex:
        first = await settle(ex.watch_ticker(BTC))
        assert first["markPrice"] == 65000
        assert fake.subscriptions() == {"futures.tickers:BTC_USDT"}
        pending = asyncio.ensure_future(ex.watch_ticker(BTC))
        await asyncio.sleep(0.05)
        fake.set_mark(BTC, "66000.5")
        update = await settle(pending)
        assert update["markPrice"] == 66000.5
        assert update["info"]["mark_price"] == "66000.5"


@async_test
async def test_private_channels_need_the_uid() -> None:
    """ccxt refuses to subscribe without ``uid``; with the wrong one Gate refuses."""
    async with fake_server() as fake:
        async with exchange(fake) as ex:
            with pytest.raises(ccxt.ArgumentsRequired, match="uid"):
                await settle(ex.watch_balance())
        async with exchange(fake, uid="1") as ex:
            with pytest.raises(ccxt.BadRequest, match="user_id"):
                await settle(ex.watch_balance())


@async_test
async def test_watch_positions_and_balance_with_the_uid() -> None:
    async with fake_server() as fake:
        uid = str(fake.user_id(KEY))
        async with exchange(fake, uid=uid) as ex:
            opened = await snapshot_then_opening(fake, ex, "5000", "futures.positions")
            assert opened["info"]["user"] == uid
            pending = asyncio.ensure_future(ex.watch_positions())
            await asyncio.sleep(0.05)
            fake.close_position(KEY, SOL)
            (closed,) = await settle(pending)
            assert (closed["symbol"], closed["contracts"]) == (SOL, 0)

            pending = asyncio.ensure_future(ex.watch_balance())
            await eventually(lambda: "futures.balances" in fake.subscriptions())
            fake.set_balance(KEY, "12345.5")
            balance = await settle(pending)
            assert balance["USDT"]["total"] == 12345.5
            assert balance["info"][0]["change"] == 2345.5


@async_test
async def test_bad_key_on_the_websocket() -> None:
    async with fake_server() as fake, exchange(fake, "nope", "nope", uid="1") as ex:
        with pytest.raises(ccxt.AuthenticationError, match="INVALID_KEY"):
            await settle(ex.watch_balance())


@async_test
async def test_malformed_frames() -> None:
    # dropped connections, pings and paused marks: tests/test_fakes_common.py
    async with fake_server() as fake, exchange(fake) as ex:
        await settle(ex.watch_ticker(BTC))
        pending = asyncio.ensure_future(ex.watch_ticker(BTC))
        await asyncio.sleep(0.05)
        fake.send_malformed("shape")
        garbled = await settle(pending)
        assert garbled["info"]["mark_price"] == "abc"
