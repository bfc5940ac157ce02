"""The local Hyperliquid server: ccxt's own REST and websocket code against it, and alertd's
feed for Hyperliquid (``AccountFeed``) bootstrapping and streaming from it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt
import pytest

from alertd.engine.margin import compute
from alertd.engine.model import MarginMode, Side
from alertd.feeds.feed import AccountFeed

from .fake_exchange.hyperliquid import FakeHyperliquid
from .support.aio import run
from .support.fakes import FAKES, ccxt_client, started
from .support.feeds import (
    FAST,
    FAST_OPTIONS,
    account_config,
    bootstrapped,
    running_manager,
)
from .support.poll import eventually

D = Decimal
BTC = "BTC/USDC:USDC"
ETH = "ETH/USDC:USDC"
USER = "0x" + "5e" * 20
OTHER = "0x" + "a1" * 20


def started_fake(mark_interval_s: float = 0.2) -> AbstractAsyncContextManager[FakeHyperliquid]:
    """The fake Hyperliquid, serving wallet ``USER`` with 10,000 USDC; marks and user states
    are pushed every ``mark_interval_s`` (the feed's stale limit is 0.8 s)."""
    return started(FakeHyperliquid(mark_interval_s=mark_interval_s), [(USER, "", "10000")])


def btc_long(fake: FakeHyperliquid) -> None:
    """``USER`` holds 0.5 BTC long (cross, 20x) at 62,000, the mark at 60,000."""
    fake.set_mark(BTC, "60000")
    fake.open_position(USER, BTC, "long", "0.5", "62000")


@contextlib.asynccontextmanager
async def holding_btc() -> AsyncIterator[FakeHyperliquid]:
    """``started_fake()`` with ``btc_long``."""
    async with started_fake() as fake:
        btc_long(fake)
        yield fake


def eth_isolated_short(fake: FakeHyperliquid) -> None:
    """``USER`` holds 2 ETH short at 3,100 on 600 USDC of isolated margin, the mark 3,000."""
    fake.set_mark(ETH, "3000")
    fake.open_position(
        USER, ETH, "short", "2", "3100", margin_mode="isolated", isolated_margin="600"
    )


async def mark_arrives(fake: FakeHyperliquid, feed: AccountFeed, price: str, what: str) -> None:
    """Move BTC's mark on the exchange and wait until the feed has it."""
    fake.set_mark(BTC, price)
    await eventually(lambda: feed.state.marks.get(BTC) == D(price), what=what)


def client(fake: FakeHyperliquid, address: str = USER) -> Any:
    return ccxt_client(fake, "hyperliquid", walletAddress=address)


def hl_feed(fake: FakeHyperliquid, address: str = USER, name: str = "h") -> AccountFeed:
    config = account_config(name, "hyperliquid", fake, wallet_address=address)
    return AccountFeed(config, {}, FAST, FAST_OPTIONS)


async def info(fake: FakeHyperliquid, body: Any) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.base_url}/info", data=json.dumps(body)) as response,
    ):
        return response.status, await response.text()


def test_registered_by_ccxt_id() -> None:
    assert FAKES["hyperliquid"] is FakeHyperliquid


# ---- ccxt's own calls --------------------------------------------------------------------------


def test_ccxt_rest_markets_positions_balance_and_mark() -> None:
    async def body() -> None:
        async with started_fake() as fake, client(fake) as ex:
            btc_long(fake)
            eth_isolated_short(fake)
            await ex.load_markets()
            market = ex.market(BTC)
            assert market["swap"] and market["settle"] == "USDC"
            assert market["limits"]["leverage"]["max"] == 40  # meta's maxLeverage
            positions = {p["symbol"]: p for p in await ex.fetch_positions()}
            btc, eth = positions[BTC], positions[ETH]
            assert (btc["side"], btc["contracts"], btc["entryPrice"]) == ("long", 0.5, 62000)
            assert btc["marginMode"] == "cross" and btc["unrealizedPnl"] == -1000
            assert btc["markPrice"] == 60000
            assert eth["marginMode"] == "isolated" and eth["side"] == "short"
            assert eth["initialMargin"] == 600  # marginUsed less the PnL: the own margin
            # cross liquidation: 60000 - (9000 - 375) / 0.5 / (1 - 1/80)
            expected = D(60000) - D(8625) / D("0.5") / (1 - D(1) / 80)
            assert abs(D(str(btc["liquidationPrice"])) - expected) < D("1e-6")
            balance = await ex.fetch_balance()
            assert balance["USDC"]["total"] == 9000 + 600 + 200  # cross + isolated equity
            ticker = await ex.fetch_ticker(BTC)
            assert ticker["info"]["markPx"] == "60000"
            assert ("POST", "/info") in fake.requests

    run(body())


def test_ccxt_watch_ticker_positions_and_balance() -> None:
    async def body() -> None:
        # the user state streams on (every 0.1 s here), as Hyperliquid's does
        async with started_fake(0.1) as fake, client(fake) as ex:
            btc_long(fake)
            ticker = await ex.watch_ticker(BTC)  # the snapshot after the ack
            assert ticker["info"]["markPx"] == "60000"
            fake.set_mark(BTC, "59000")
            ticker = await ex.watch_ticker(BTC)
            assert ticker["info"]["markPx"] == "59000"
            positions = await ex.watch_positions()
            assert [(p["symbol"], p["contracts"]) for p in positions] == [(BTC, 0.5)]
            fake.set_balance(USER, "12000")
            balance = await ex.watch_balance()
            assert balance["USDC"]["total"] == 12000 - 1500  # accountValue, PnL -1500
            fake.open_position(USER, BTC, "long", "1", "61000")
            positions = await ex.watch_positions()
            assert [(p["symbol"], p["contracts"]) for p in positions] == [(BTC, 1)]

    run(body())


def test_ping_pong_errors_and_unanswered_pings() -> None:
    async def body() -> None:
        async with (
            started_fake() as fake,
            aiohttp.ClientSession() as session,
            session.ws_connect(fake.ccxt_urls()["ws"]["public"]) as ws,
        ):
            await ws.send_str('{"method":"ping"}')
            assert json.loads(await ws.receive_str()) == {"channel": "pong"}
            sub = {"type": "activeAssetCtx", "coin": "BTC"}
            await ws.send_json({"method": "subscribe", "subscription": sub})
            ack = json.loads(await ws.receive_str())
            assert ack == {
                "channel": "subscriptionResponse",
                "data": {"method": "subscribe", "subscription": sub},
            }
            assert json.loads(await ws.receive_str())["channel"] == "activeAssetCtx"
            await ws.send_json({"method": "subscribe", "subscription": sub})
            error = json.loads(await ws.receive_str())
            assert error["channel"] == "error" and error["data"].startswith("Already subscribed")
            await ws.send_json({"method": "subscribe", "subscription": {"type": "nope"}})
            error = json.loads(await ws.receive_str())
            assert "Error parsing JSON into valid websocket request" in error["data"]
            fake.stop_answering_pings()
            await ws.send_str('{"method":"ping"}')
            fake.set_mark(BTC, "61000")  # the next frame is the push, not a pong
            assert json.loads(await ws.receive_str())["channel"] == "activeAssetCtx"

    run(body())


def test_rest_errors_as_hyperliquid_answers_them() -> None:
    async def body() -> None:
        async with started_fake() as fake:
            status, text = await info(fake, {"type": "clearinghouseState", "user": "0x12"})
            assert status == 422 and text.startswith("Failed to deserialize")
            status, _ = await info(fake, {"type": "noSuchType"})
            assert status == 422
            status, text = await info(fake, {"type": "clearinghouseState", "user": OTHER})
            state = json.loads(text)  # an address without state: an empty account
            assert status == 200 and state["assetPositions"] == []
            assert state["marginSummary"]["accountValue"] == "0.0"
            async with client(fake) as ex:
                await ex.load_markets()
                fake.fail_rest(429)
                with pytest.raises(ccxt.RateLimitExceeded):
                    await ex.fetch_positions()
                fake.fail_rest(502)
                with pytest.raises(ccxt.ExchangeNotAvailable):
                    await ex.fetch_positions()
                fake.ban(USER)
                with pytest.raises(ccxt.RateLimitExceeded):
                    await ex.fetch_positions()
                fake.unban(USER)
                assert await ex.fetch_positions() == []

    run(body())


# ---- alertd's feed -----------------------------------------------------------------------------


def test_feed_bootstrap_agrees_with_hyperliquid() -> None:
    async def body() -> None:
        async with holding_btc() as fake:
            eth_isolated_short(fake)
            feed = await bootstrapped(hl_feed(fake))
            state = feed.state
            assert state.missing() == []
            assert state.wallet_balance == D(10000)
            eth = state.positions[(ETH, Side.SHORT)]
            assert eth.margin_mode is MarginMode.ISOLATED and eth.isolated_margin == D(600)
            metrics = compute(state.to_account())
            for pm in metrics.positions:
                reported = state.reported_positions[pm.position.key].liquidation_price
                assert reported is not None and pm.liquidation_price is not None
                assert abs(pm.liquidation_price - reported) / reported < D("1e-6")

    run(body())


def test_unified_account_served_from_the_spot_state() -> None:
    async def body() -> None:
        async with holding_btc() as fake:
            fake.set_abstraction(USER, "unifiedAccount")
            status, text = await info(fake, {"type": "userAbstraction", "user": USER})
            assert (status, json.loads(text)) == (200, "unifiedAccount")
            async with client(fake) as ex:
                balance = await ex.fetch_balance()  # ccxt reads the spot state
                # the one USDC balance: 10,000 and the long's -1,000 of PnL; 1,500 in use
                assert balance["USDC"]["total"] == 9000
                assert balance["USDC"]["used"] == 1500
                watched = await ex.watch_balance()
                assert watched["USDC"]["total"] == 9000
                assert isinstance(watched["info"], list)  # spotState's balances
                # the perpetuals state holds no USDC: its account value is the PnL, and its
                # liquidation price is figured on the spot balance (9,000 less MM 375)
                state = await ex.publicPostInfo({"type": "clearinghouseState", "user": USER})
                assert D(state["crossMarginSummary"]["accountValue"]) == -1000
                liq = D(state["assetPositions"][0]["position"]["liquidationPx"])
                assert abs(liq - (60000 - D(8625) / D("0.5") / (1 - D("0.0125")))) < D("1e-6")

    run(body())


def test_a_unified_account_streams_beside_a_standard_one() -> None:
    """Issue 10 refused the unified modes (ccxt's ``watch_balance`` moved to the spot state
    and alertd's adapter got None from every push); issue 11 computes them: the balance
    stream stays on the perpetuals state, the spot USDC is read over REST."""

    async def body() -> None:
        async with holding_btc() as fake:
            fake.add_account(OTHER, "", "5000")
            fake.set_abstraction(OTHER, "unifiedAccount")
            fake.open_position(OTHER, BTC, "long", "0.1", "60000")
            accounts = [
                account_config("std", "hyperliquid", fake, wallet_address=USER),
                account_config("uni", "hyperliquid", fake, wallet_address=OTHER),
            ]
            async with running_manager(accounts, {}) as manager:
                uni, std = manager.feeds["uni"], manager.feeds["std"]
                await eventually(lambda: uni.state.computable, what="unified account computed")
                assert uni.state.fatal is None
                await eventually(lambda: std.state.connected, what="standard account up")
                await mark_arrives(fake, uni, "59100", "unified account streaming")
                # 5,000 and the long's PnL at the streamed mark, as the spot total has it
                metrics = compute(uni.state.to_account())
                assert metrics.pool.margin_balance == 5000 + D("0.1") * (59100 - 60000)

    run(body(), timeout_s=60)
