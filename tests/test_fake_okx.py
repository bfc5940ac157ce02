"""The local OKX v5 server through ccxt unmodified, and alertd's OKX feed against it."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

import aiohttp
import ccxt.async_support as ccxt_async
import pytest

from alertd.config import Secret
from alertd.engine.margin import compute
from alertd.feeds.feed import AccountFeed

from .fake_exchange.okx import FakeOKX
from .support.aio import run
from .support.fakes import ccxt_client, started
from .support.feeds import (
    BTC,
    FAST,
    FAST_OPTIONS,
    account_config,
    bootstrapped,
)

D = Decimal
ETH = "ETH/USDT:USDT"
PASS = FakeOKX.PASSPHRASE


def okx_secrets(api_key: str, secret: str) -> dict[str, Secret]:
    return {"api_key": Secret(api_key), "secret": Secret(secret), "password": Secret(PASS)}


def okx_feed(fake: FakeOKX, name: str = "o") -> AccountFeed:
    return AccountFeed(
        account_config(name, "okx", fake), okx_secrets("key-o", "secret-o"), FAST, FAST_OPTIONS
    )


def started_fake() -> contextlib.AbstractAsyncContextManager[FakeOKX]:
    return started(FakeOKX(), [("key-o", "secret-o", "8000")])


def test_ccxt_rest_and_watch_return_what_was_scripted() -> None:
    async def body() -> None:
        async with started_fake() as fake:
            fake.set_mark(BTC, "60000")
            fake.open_position("key-o", BTC, "long", "50", "62000")
            async with ccxt_client(fake, "okx", "key-o", "secret-o", password=PASS) as ex:
                await ex.load_markets()
                assert ex.market(BTC)["contractSize"] == 0.01
                positions = await ex.fetch_positions()
                assert [(p["symbol"], p["contracts"], p["side"]) for p in positions] == [
                    (BTC, 50.0, "long")
                ]
                assert positions[0]["info"]["mmr"] == "120"  # 50 * 0.01 * 60000 * 0.4%
                balance = await ex.fetch_balance()
                assert balance["info"]["data"][0]["details"][0]["cashBal"] == "8000"
                tiers = await ex.publicGetPublicPositionTiers(
                    {"instType": "SWAP", "tdMode": "cross", "instFamily": "BTC-USDT"}
                )
                assert [r["mmr"] for r in tiers["data"]] == ["0.004", "0.005", "0.01"]
                mark = await ex.publicGetPublicMarkPrice(
                    {"instType": "SWAP", "instId": "BTC-USDT-SWAP"}
                )
                assert mark["data"][0]["markPx"] == "60000"
                assert (await ex.watch_mark_price(BTC))["markPrice"] == 60000.0
                fake.set_mark(BTC, "61000.5")
                assert (await ex.watch_mark_price(BTC))["markPrice"] == 61000.5
                first = await ex.watch_positions()
                assert first[0]["contracts"] == 50.0
                fake.open_position("key-o", ETH, "short", "3", "3100")
                update = await ex.watch_positions()
                assert (update[-1]["symbol"], update[-1]["side"]) == (ETH, "short")
                await ex.watch_balance()
                fake.set_balance("key-o", "9000")
                pushed = await ex.watch_balance()
                assert pushed["info"]["data"][0]["details"][0]["cashBal"] == "9000"

    run(body())


def test_the_local_okx_lists_hundreds_of_swaps_sized_as_okx_lists_them() -> None:
    """``--markets 550`` (bench/feeds.py): the local OKX serves 550 markets in all, the seeded
    BTC and ETH swaps and BTC future plus generic USDT swaps whose contract value, tick and
    tiers are OKX's at their price (one contract 100-1,000 USDT, five significant digits, maxSz
    in contracts), and a generic swap holds a position, its tiers and its marks as a seeded one.
    """

    async def body() -> None:
        async with started_fake() as fake:
            fake.list_markets(550)
            fake.add_symbol("DOGE/USDT:USDT", "0.15")
            fake.add_symbol("SOL/USDT:USDT", "150", (("100", "0.02", "0.04", "25"),))
            with pytest.raises(ValueError, match="BASE/USDT:USDT"):
                fake.add_symbol("SOL/USD:SOL", "150")
            async with ccxt_client(fake, "okx", "key-o", "secret-o", password=PASS) as ex:
                await ex.load_markets()
                swaps = [m for m in ex.markets.values() if m["swap"]]
                assert len(swaps) == 551  # 549 listed swaps (with the future: 550) + DOGE, SOL
                assert len(ex.markets) == 552
                # as OKX lists DOGE-USDT-SWAP and SOL-USDT-SWAP
                doge, sol = ex.market("DOGE/USDT:USDT"), ex.market("SOL/USDT:USDT")
                assert (doge["contractSize"], doge["precision"]["price"]) == (1000.0, 0.00001)
                assert (sol["contractSize"], sol["precision"]["price"]) == (1.0, 0.01)
                assert ex.market(BTC)["contractSize"] == 0.01  # the seeded ones unchanged
                assert all(m["linear"] and m["settle"] == "USDT" for m in swaps)
                generic = ex.market("XAAB/USDT:USDT")
                tick = D(generic["info"]["tickSz"])
                assert generic["info"]["instId"] == "XAAB-USDT-SWAP"
                tiers = await ex.publicGetPublicPositionTiers(
                    {"instType": "SWAP", "tdMode": "cross", "instFamily": "XAAB-USDT"}
                )
                rows = tiers["data"]
                assert [r["mmr"] for r in rows] == ["0.01", "0.015", "0.025", "0.05"]
                price = D(
                    (
                        await ex.publicGetPublicMarkPrice(
                            {"instType": "SWAP", "instId": "XAAB-USDT-SWAP"}
                        )
                    )["data"][0]["markPx"]
                )
                contract = D(generic["info"]["ctVal"]) * price
                assert 100 <= contract < 1000
                assert len(price.normalize().as_tuple().digits) <= 5 and price % tick == 0
                # tier 1 holds 50,000 USDT of contracts at the listing mark
                assert D(rows[0]["maxSz"]) == (50_000 / contract).to_integral_value()
                sol_tiers = await ex.publicGetPublicPositionTiers(
                    {"instType": "SWAP", "tdMode": "cross", "instFamily": "SOL-USDT"}
                )
                assert [(r["maxSz"], r["mmr"]) for r in sol_tiers["data"]] == [("100", "0.02")]
                fake.open_position("key-o", "XAAB/USDT:USDT", "long", "10", str(price))
                (position,) = await ex.fetch_positions()
                assert position["symbol"] == "XAAB/USDT:USDT"
                # pos * ctVal * mark * the first tier's mmr
                assert D(position["info"]["mmr"]) == 10 * contract * D("0.01")
                assert (await ex.watch_mark_price("XAAB/USDT:USDT"))["markPrice"] == float(price)
                fake.set_mark("XAAB/USDT:USDT", price * 2)
                pushed = await ex.watch_mark_price("XAAB/USDT:USDT")
                assert D(str(pushed["markPrice"])) == price * 2

    run(body())


def test_bad_key_and_passphrase_are_authentication_errors() -> None:
    async def body() -> None:
        async with started_fake() as fake:
            async with ccxt_client(fake, "okx", "key-x", "nope", password=PASS) as ex:
                with pytest.raises(ccxt_async.AuthenticationError, match="50111"):
                    await ex.fetch_balance()
            async with ccxt_client(fake, "okx", "key-o", "secret-o", password="wrong") as ex:
                with pytest.raises(ccxt_async.AuthenticationError, match="50105"):
                    await ex.fetch_balance()
            async with ccxt_client(fake, "okx") as ex:
                await ex.load_markets()  # public (no keys: ccxt skips asset/currencies)
                ex.apiKey, ex.secret, ex.password = "key-x", "nope", PASS
                # the websocket login's own refusal
                with pytest.raises(ccxt_async.AuthenticationError, match="60005"):
                    await ex.watch_balance()

    run(body())


def test_scripted_rest_failures_bans_and_pings() -> None:
    async def body() -> None:
        async with started_fake() as fake:
            async with ccxt_client(fake, "okx", "key-o", "secret-o", password=PASS) as ex:
                fake.fail_rest(429, path_prefix="/api/v5/account")
                with pytest.raises(ccxt_async.RateLimitExceeded, match="50011"):
                    await ex.fetch_balance()
                fake.fail_rest(503, path_prefix="/api/v5/account")
                with pytest.raises(ccxt_async.ExchangeNotAvailable, match="50001"):
                    await ex.fetch_balance()
                fake.ban("key-o")
                with pytest.raises(ccxt_async.RateLimitExceeded):
                    await ex.fetch_balance()
                fake.unban("key-o")
                assert (await ex.fetch_balance())["info"]["code"] == "0"
            async with aiohttp.ClientSession() as session:
                url = fake.ccxt_urls()["ws"] + "/public"
                async with session.ws_connect(url, autoping=False) as ws:
                    await ws.send_str("ping")
                    assert await ws.receive_str(timeout=2) == "pong"
                    fake.stop_answering_pings()
                    await ws.send_str("ping")
                    with pytest.raises(asyncio.TimeoutError):
                        await ws.receive_str(timeout=0.3)

    run(body())


def test_bootstrap_figures_agree_with_okx() -> None:
    async def body() -> None:
        async with started_fake() as fake:
            fake.set_mark(BTC, "60150")
            fake.open_position(
                "key-o", BTC, "long", "100", "60000", margin_mode="isolated", leverage=50
            )
            fake.set_mark(ETH, "3250")
            fake.open_position("key-o", ETH, "short", "20", "3300")
            state = (await bootstrapped(okx_feed(fake))).state
            assert state.missing() == []
            metrics = compute(state.to_account())
            for pm in metrics.positions:
                figures = state.reported_positions[pm.position.key]
                assert figures.maintenance_margin is not None
                # alertd's MM is OKX's mmr plus the liquidation fee on the notional
                expected = figures.maintenance_margin + pm.notional * D("0.0005")
                assert abs(pm.maintenance_margin - expected) < D("0.01"), pm
            notionals = {pm.position.symbol: pm.notional for pm in metrics.positions}
            assert notionals == {BTC: D("60150"), ETH: D("6500")}  # pos * ctVal * mark

    run(body())
