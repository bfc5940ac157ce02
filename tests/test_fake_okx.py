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
