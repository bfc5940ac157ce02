"""The fake Binance USDⓈ-M server, driven by ccxt.pro.binanceusdm as shipped (only its URLs are
pointed at 127.0.0.1), plus a few raw-protocol checks with aiohttp.

Every test runs its own server and client inside one ``asyncio.run`` with an overall bound;
waits on ``watch_*`` calls go through ``asyncio.shield`` so that a timeout does not cancel the
future ccxt shares between watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt
import ccxt.pro as ccxtpro
import pytest

from tests.fake_exchange import FakeBinanceUSDM
from tests.support import aio
from tests.support.aio import settle, spawn
from tests.support.fakes import btcusdt_linear_perpetual, ccxt_client, server_in_thread, started
from tests.support.poll import eventually
from tests.support.process import ROOT

TEST_TIMEOUT_S = 10.0
WAIT_S = 2.0
BRACKETS = json.loads((ROOT / "tests/fake_exchange/data/binance_usdm_brackets.json").read_text())
KEY, SECRET = "key-a", "secret-a"


async_test = aio.async_test(TEST_TIMEOUT_S)


@contextlib.asynccontextmanager
async def harness(
    *, wallet: str = "10000", mark_interval_s: float | None = None, **config: Any
) -> AsyncIterator[tuple[FakeBinanceUSDM, Any]]:
    """A started fake with one account, and a ccxt.pro binanceusdm pointed at it."""
    fake = FakeBinanceUSDM(mark_interval_s=mark_interval_s)
    async with (
        started(fake, [(KEY, SECRET, wallet)]),
        ccxt_client(fake, "binanceusdm", KEY, SECRET, **config) as exchange,
    ):
        yield fake, exchange


async def watching(exchange: Any, message_hash: str) -> None:
    """Wait until a ccxt websocket client holds a future for ``message_hash`` (read-only look at
    ccxt's client registry), so that a frame pushed next cannot arrive before anyone waits."""
    await eventually(
        lambda: any(message_hash in c.futures for c in (exchange.clients or {}).values()),
        WAIT_S,
        f"a ccxt watch on {message_hash}",
        interval_s=0.001,
    )


def record_frames(exchange: Any) -> list[Any]:
    """Frames ccxt decoded, including those it has no handler for (it drops them silently).
    Wraps the instance's handle_message before any websocket client exists; ccxt is unchanged."""
    frames: list[Any] = []
    original = exchange.handle_message

    def spy(client: Any, message: Any) -> Any:
        frames.append(message)
        return original(client, message)

    exchange.handle_message = spy
    return frames


def d(value: Any) -> Decimal:
    return Decimal(str(value))


def tier_at(brackets: list[dict[str, Any]], notional: Decimal) -> dict[str, Any]:
    for bracket in brackets:
        if notional < d(bracket["notionalCap"]):
            return bracket
    return brackets[-1]


def maint(brackets: list[dict[str, Any]], qty: Decimal, price: Decimal) -> Decimal:
    notional = abs(qty) * price
    bracket = tier_at(brackets, notional)
    return notional * d(bracket["maintMarginRatio"]) - d(bracket["cum"])


# ---- REST through ccxt -----------------------------------------------------------------------


@async_test
async def test_load_markets_serves_linear_perpetuals_from_exchange_info() -> None:
    async with harness() as (fake, exchange):
        markets = await exchange.load_markets()
        assert {"BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"} <= set(markets)
        btc = btcusdt_linear_perpetual(markets)
        assert btc["precision"]["amount"] == 0.001
        # fetchCurrencies False: only the futures exchangeInfo is asked for, no spot endpoint
        assert fake.requests == [("GET", "/fapi/v1/exchangeInfo")]


@async_test
async def test_added_symbol_and_tiers_show_up() -> None:
    async with harness() as (fake, exchange):
        fake.add_symbol("ADA/USDT:USDT", "0.41", tick_size="0.0001", step_size="1")
        fake.set_tiers(
            "ADAUSDT",
            [
                {
                    "notionalFloor": 0,
                    "notionalCap": 10000,
                    "initialLeverage": 75,
                    "maintMarginRatio": 0.0065,
                },
                {
                    "notionalFloor": 10000,
                    "notionalCap": 50000,
                    "initialLeverage": 50,
                    "maintMarginRatio": 0.01,
                },
            ],
        )
        await exchange.load_markets()
        tiers = await exchange.fetch_leverage_tiers(["ADA/USDT:USDT"])
        # cum derived when absent: 10,000 * (1% - 0.65%) = 35
        assert [t["info"]["cum"] for t in tiers["ADA/USDT:USDT"]] == [0.0, 35.0]


@async_test
async def test_fetch_leverage_tiers_are_the_real_brackets_with_cum() -> None:
    async with harness() as (fake, exchange):
        await exchange.load_markets()
        tiers = await exchange.fetch_leverage_tiers(["BTC/USDT:USDT", "ETH/USDT:USDT"])
        for symbol, market_id in (("BTC/USDT:USDT", "BTCUSDT"), ("ETH/USDT:USDT", "ETHUSDT")):
            assert [t["info"] for t in tiers[symbol]] == BRACKETS[market_id]
            assert all("cum" in t["info"] for t in tiers[symbol])
        second = tiers["BTC/USDT:USDT"][1]
        assert (second["minNotional"], second["maintenanceMarginRate"]) == (300000.0, 0.005)
        assert second["info"]["cum"] == 300.0
        assert ("GET", "/fapi/v1/leverageBracket") in fake.requests


@async_test
async def test_fetch_positions_reports_binance_fields_and_formulas() -> None:
    async with harness(wallet="60000") as (fake, exchange):
        # 5 BTC at mark 97,000 = 485,000 notional: bracket 2 (0.5 %, cum 300), so cum matters
        fake.open_position(KEY, "BTC/USDT:USDT", "long", "5", "95000", leverage=20)
        fake.open_position(KEY, "ETHUSDT", "short", "10", "3300", leverage=10)
        fake.open_position(
            KEY, "SOLUSDT", "long", "100", "170", margin_mode="isolated", leverage=10
        )
        positions = {p["symbol"]: p for p in await exchange.fetch_positions()}
        assert set(positions) == {"BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"}
        for position in positions.values():
            for name in (
                "liquidationPrice",
                "maintMargin",
                "initialMargin",
                "isolatedWallet",
                "notional",
                "marginAsset",
                "positionSide",
                "markPrice",
                "breakEvenPrice",
                "adl",
            ):
                assert name in position["info"], name

        btc = positions["BTC/USDT:USDT"]["info"]
        assert (btc["positionAmt"], btc["entryPrice"], btc["markPrice"]) == (
            "5",
            "95000",
            "97000.00000000",
        )
        assert btc["notional"] == "485000.00000000"
        assert d(btc["maintMargin"]) == Decimal("485000") * Decimal("0.005") - 300
        assert d(btc["initialMargin"]) == Decimal("24250")
        assert positions["BTC/USDT:USDT"]["side"] == "long"
        assert positions["ETH/USDT:USDT"]["side"] == "short"
        assert positions["SOL/USDT:USDT"]["marginMode"] == "isolated"
        assert positions["SOL/USDT:USDT"]["info"]["isolatedWallet"] == "1700.00000000"

        # the cross liquidation price is where margin balance meets maintenance margin,
        # ETH held at its mark; the isolated one where SOL's own wallet meets its MM
        lp = d(btc["liquidationPrice"])
        eth_mark, sol_mark = Decimal("3400"), Decimal("180")
        cross_wallet = Decimal("60000") - 1700
        balance = cross_wallet + 5 * (lp - 95000) + -10 * (eth_mark - 3300)
        mm = maint(BRACKETS["BTCUSDT"], Decimal(5), lp) + maint(
            BRACKETS["ETHUSDT"], Decimal(10), eth_mark
        )
        assert abs(balance - mm) < Decimal("0.0001")
        sol_lp = d(positions["SOL/USDT:USDT"]["info"]["liquidationPrice"])
        sol_balance = 1700 + 100 * (sol_lp - 170)
        assert abs(sol_balance - maint(BRACKETS["SOLUSDT"], Decimal(100), sol_lp)) < Decimal(
            "0.0001"
        )
        assert sol_lp < sol_mark


@async_test
async def test_published_position_example_is_reproduced() -> None:
    # Binance's Position Information V3 doc sample (ADAUSDT): 30 contracts, entry 0.385, mark
    # 0.41047590 -> notional 12.31427700, unrealized PnL 0.76427700, maintMargin 0.08004280
    async with harness() as (fake, exchange):
        fake.add_symbol("ADAUSDT", "0.41047590", step_size="1")
        fake.set_tiers(
            "ADAUSDT",
            [
                {
                    "notionalFloor": 0,
                    "notionalCap": 5000,
                    "initialLeverage": 75,
                    "maintMarginRatio": 0.0065,
                }
            ],
        )
        fake.open_position(KEY, "ADAUSDT", "long", 30, "0.385", leverage=20)
        await exchange.load_markets()
        (ada,) = await exchange.fetch_positions(["ADA/USDT:USDT"])
        info = ada["info"]
        assert (info["notional"], info["unRealizedProfit"], info["maintMargin"]) == (
            "12.31427700",
            "0.76427700",
            "0.08004280",
        )


@async_test
async def test_fetch_balance_totals_are_consistent() -> None:
    async with harness(wallet="10000") as (fake, exchange):
        fake.open_position(KEY, "BTCUSDT", "long", "0.5", "95000", leverage=50)
        fake.open_position(KEY, "SOLUSDT", "short", "50", "190", margin_mode="isolated")
        balance = await exchange.fetch_balance()
        info = balance["info"]
        positions = await exchange.fetch_positions()
        upnl = sum(d(p["info"]["unRealizedProfit"]) for p in positions)
        isolated = sum(d(p["info"]["isolatedWallet"]) for p in positions)
        assert d(info["totalWalletBalance"]) == 10000
        assert d(info["totalCrossWalletBalance"]) == 10000 - isolated
        assert d(info["totalUnrealizedProfit"]) == upnl
        assert d(info["totalMarginBalance"]) == 10000 + upnl
        assert d(info["totalMaintMargin"]) == sum(d(p["info"]["maintMargin"]) for p in positions)
        assert len(info["positions"]) == 2
        assert balance["USDT"]["total"] == float(10000 + upnl)  # ccxt: marginBalance
        # other margin assets carry updateTime 0 and are skipped by ccxt, as with real accounts
        assert "USDC" not in balance["total"]
        assert any(a["asset"] == "USDC" and a["updateTime"] == 0 for a in info["assets"])


@async_test
async def test_fetch_mark_price_reads_premium_index() -> None:
    async with harness() as (fake, exchange):
        fake.set_mark("ETH/USDT:USDT", "3456.78")
        ticker = await exchange.fetch_mark_price("ETH/USDT:USDT")
        assert ticker["markPrice"] == 3456.78
        assert ticker["info"]["symbol"] == "ETHUSDT"
        assert ("GET", "/fapi/v1/premiumIndex") in fake.requests


# ---- websockets through ccxt -----------------------------------------------------------------


@async_test
async def test_watch_mark_price_receives_set_mark() -> None:
    async with harness() as (fake, exchange):
        pending = spawn(exchange.watch_mark_price("BTC/USDT:USDT"))
        await fake.wait_for_subscription("btcusdt@markPrice@1s", WAIT_S)
        fake.set_mark("BTC/USDT:USDT", "91234.5")
        ticker = await settle(pending)
        assert (ticker["symbol"], ticker["markPrice"]) == ("BTC/USDT:USDT", 91234.5)
        assert ticker["info"]["e"] == "markPriceUpdate"
        assert fake.ws_connections == 1


@async_test
async def test_watch_mark_prices_all_markets_and_periodic_push() -> None:
    async with harness(mark_interval_s=0.05) as (fake, exchange):
        tickers = await asyncio.wait_for(exchange.watch_mark_prices(), WAIT_S)
        assert set(tickers) == {"BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"}
        assert fake.subscriptions() == {"!markPrice@arr@1s"}
        fake.set_mark("SOLUSDT", "175.5", push=False)  # silent: a later periodic tick carries it
        async with asyncio.timeout(WAIT_S):
            while tickers["SOL/USDT:USDT"]["markPrice"] != 175.5:
                tickers = await exchange.watch_mark_prices()


@async_test
async def test_watch_positions_receives_open_and_close() -> None:
    async with harness() as (fake, exchange):
        snapshot = await asyncio.wait_for(exchange.watch_positions(), WAIT_S)
        assert snapshot == []
        pending = spawn(exchange.watch_positions())
        await fake.wait_for_user_stream(KEY, WAIT_S)
        fake.open_position(KEY, "ETH/USDT:USDT", "short", "2", "3500", leverage=10)
        (opened,) = await settle(pending)
        assert (opened["symbol"], opened["side"], opened["contracts"]) == (
            "ETH/USDT:USDT",
            "short",
            2,
        )
        assert opened["entryPrice"] == 3500
        assert opened["info"]["mt"] == "cross"
        assert opened["liquidationPrice"] is None  # ACCOUNT_UPDATE carries no liquidation price

        pending = spawn(exchange.watch_positions())
        await watching(exchange, "linear:positions")
        fake.close_position(KEY, "ETHUSDT")
        (closed,) = await settle(pending)
        assert (closed["symbol"], closed["contracts"], closed["info"]["pa"]) == (
            "ETH/USDT:USDT",
            0,
            "0",
        )
        # the close realized (3400 - 3500) * -2 = +200 into the wallet
        assert d(fake.account_v3(KEY)["totalWalletBalance"]) == 10200


@async_test
async def test_watch_balance_receives_set_balance() -> None:
    async with harness() as (fake, exchange):
        pending = spawn(exchange.watch_balance())
        await fake.wait_for_user_stream(KEY, WAIT_S)
        fake.set_balance(KEY, "12345.67")
        balance = await settle(pending)
        assert balance["USDT"]["total"] == 12345.67
        event = balance["info"]
        assert (event["e"], event["a"]["m"], event["a"]["P"]) == ("ACCOUNT_UPDATE", "DEPOSIT", [])
        assert event["a"]["B"] == [
            {"a": "USDT", "wb": "12345.67000000", "cw": "12345.67000000", "bc": "2345.67000000"}
        ]


@async_test
async def test_expire_listen_key_sends_the_event_and_invalidates_the_key() -> None:
    async with harness() as (fake, exchange):
        frames = record_frames(exchange)
        await asyncio.wait_for(exchange.watch_positions(), WAIT_S)
        pending = spawn(exchange.watch_positions())
        await fake.wait_for_user_stream(KEY, WAIT_S)
        old_key = exchange.options["linear"]["listenKey"]
        fake.expire_listen_key(KEY)
        await fake.wait_until(lambda: bool(frames), WAIT_S)
        (event,) = frames
        assert event["e"] == "listenKeyExpired"
        assert event["listenKey"] == old_key
        assert isinstance(event["E"], str)  # Binance sends this one's event time as a string
        assert not pending.done()  # ccxt has no handler for it

        # ccxt's keep-alive now gets -1125 and fails the watch; a POST issues a fresh key
        await exchange.keep_alive_listen_key()
        assert fake.listen_key_puts == 1
        with pytest.raises(ccxt.AuthenticationError, match="-1125"):
            await settle(pending)
        pending = spawn(exchange.watch_positions())
        await fake.wait_for_user_stream(KEY, WAIT_S)
        assert exchange.options["linear"]["listenKey"] != old_key
        fake.open_position(KEY, "BTCUSDT", "long", "0.01", "96000")
        assert (await settle(pending))[0]["contracts"] == 0.01


@async_test
async def test_margin_call_event_reaches_the_client() -> None:
    async with harness() as (fake, exchange):
        frames = record_frames(exchange)
        fake.open_position(KEY, "BTCUSDT", "long", "1", "99000", leverage=100)
        await asyncio.wait_for(exchange.watch_positions(), WAIT_S)
        pending = spawn(exchange.watch_positions())
        await fake.wait_for_user_stream(KEY, WAIT_S)
        fake.push_margin_call(KEY)
        await fake.wait_until(lambda: bool(frames), WAIT_S)
        (event,) = frames
        assert event["e"] == "MARGIN_CALL"
        assert event["cw"] == "10000.00000000"
        (row,) = event["p"]
        assert (row["s"], row["ps"], row["pa"], row["mt"], row["mp"]) == (
            "BTCUSDT",
            "BOTH",
            "1",
            "CROSSED",
            "97000.00000000",
        )
        assert d(row["mm"]) == 97000 * Decimal("0.004")
        assert not pending.done()  # dropped silently by ccxt


# ---- REST failures through ccxt --------------------------------------------------------------


@async_test
async def test_fail_rest_429_is_rate_limit_protection() -> None:
    async with harness() as (fake, exchange):
        await exchange.load_markets()
        fake.fail_rest(429, 2, path_prefix="/fapi/v3/", retry_after_s=7)
        with pytest.raises(ccxt.DDoSProtection, match="-1003"):
            await exchange.fetch_balance()
        await exchange.fetch_mark_price("BTC/USDT:USDT")  # outside the prefix: unaffected
        with pytest.raises(ccxt.DDoSProtection):
            await exchange.fetch_balance()
        assert (await exchange.fetch_balance())["USDT"]["total"] == 10000


@async_test
async def test_fail_rest_5xx_is_exchange_not_available() -> None:
    async with harness() as (fake, exchange):
        fake.fail_rest(503)
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await exchange.load_markets()
        await exchange.load_markets()


@async_test
async def test_bad_api_key_is_authentication_error() -> None:
    async with harness() as (_, exchange):
        await exchange.load_markets()
        exchange.apiKey = "not-a-key"
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await exchange.fetch_positions()
        exchange.apiKey, exchange.secret = KEY, "wrong-secret"
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await exchange.fetch_balance()


@async_test
async def test_banned_key_gets_418() -> None:
    async with harness() as (fake, exchange):
        await exchange.load_markets()
        fake.ban(KEY)
        with pytest.raises(ccxt.DDoSProtection, match="banned until"):
            await exchange.fetch_balance()
        fake.unban(KEY)
        fake.revoke_key(KEY)  # a key deleted on the exchange reads as an unknown one
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await exchange.fetch_balance()
        fake.revoke_key(KEY, revoked=False)
        fake.ban(KEY, duration_s=0.2)  # a ban ends by itself
        with pytest.raises(ccxt.DDoSProtection):
            await exchange.fetch_balance()
        await asyncio.sleep(0.3)
        assert (await exchange.fetch_balance())["USDT"]["total"] == 10000


# ---- raw wire protocol -----------------------------------------------------------------------


def signed_query(secret: str, **params: Any) -> str:
    query = "&".join(
        f"{k}={v}" for k, v in {"timestamp": int(time.time() * 1000), **params}.items()
    )
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"


@async_test
async def test_raw_rest_errors_have_binance_status_and_body() -> None:
    async with (
        started(FakeBinanceUSDM(), [(KEY, SECRET, "1000")]) as fake,
        aiohttp.ClientSession(base_url=fake.base_url) as http,
    ):
        url = "/fapi/v3/account?" + signed_query(SECRET)
        async with http.get(url, headers={"X-MBX-APIKEY": "nope"}) as response:
            assert response.status == 401
            assert await response.json() == {
                "code": -2015,
                "msg": "Invalid API-key, IP, or permissions for action.",
            }
        async with http.get(url, headers={"X-MBX-APIKEY": KEY}) as response:
            assert response.status == 200
        stale = "/fapi/v3/account?" + signed_query(SECRET, timestamp=1)
        async with http.get(stale, headers={"X-MBX-APIKEY": KEY}) as response:
            assert (response.status, (await response.json())["code"]) == (400, -1021)
        fake.fail_rest(429, retry_after_s=3)
        async with http.get("/fapi/v1/time") as response:
            assert (response.status, response.headers["Retry-After"]) == (429, "3")
            assert (await response.json())["code"] == -1003
        fake.ban(KEY)
        async with http.post("/fapi/v1/listenKey", headers={"X-MBX-APIKEY": KEY}) as response:
            assert response.status == 418
        fake.unban(KEY)
        headers = {"X-MBX-APIKEY": KEY}
        async with http.post("/fapi/v1/listenKey", headers=headers) as response:
            key = (await response.json())["listenKey"]
        async with http.post("/fapi/v1/listenKey", headers=headers) as response:
            assert (await response.json())["listenKey"] == key  # active key returned again
        fake.expire_listen_key(KEY)
        async with http.put("/fapi/v1/listenKey", headers=headers) as response:
            assert response.status == 400
            assert await response.json() == {
                "code": -1125,
                "msg": "This listenKey does not exist.",
            }
        assert fake.listen_key_puts == 1
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"/private/ws?listenKey={key}")
        assert refused.value.status == 400
    assert ("GET", "/fapi/v1/time") in fake.requests


@async_test
async def test_bracket_answers_follow_scripted_changes_after_one_was_served() -> None:
    """Each account's GET /fapi/v1/leverageBracket, served once, then after a scripted change to
    a market's brackets, a withheld symbol and one account's adjusted brackets: every answer is
    what the scripted state says (each row as built for that account, compact JSON), the
    adjustment in its own account's answer only."""
    other, other_secret = "key-b", "secret-b"
    accounts = [(KEY, SECRET, "1000"), (other, other_secret, "1000")]
    async with (
        started(FakeBinanceUSDM(), accounts) as fake,
        aiohttp.ClientSession(base_url=fake.base_url) as http,
    ):

        async def answer(key: str, secret: str) -> tuple[str, dict[str, Any]]:
            url = "/fapi/v1/leverageBracket?" + signed_query(secret)
            async with http.get(url, headers={"X-MBX-APIKEY": key}) as response:
                assert response.status == 200
                text = await response.text()
            return text, {row["symbol"]: row for row in json.loads(text)}

        def built(key: str) -> str:  # every listed row as _bracket_row builds it, compact
            account = fake._account(key)
            listed = (m for m in fake._markets.values() if m.id not in fake._brackets_withheld)
            return json.dumps(
                [fake._bracket_row(account, m) for m in listed], separators=(",", ":")
            )

        first, rows = await answer(KEY, SECRET)
        assert first == built(KEY)
        assert rows["BTCUSDT"]["brackets"] == BRACKETS["BTCUSDT"] and "ETHUSDT" in rows
        assert (await answer(other, other_secret))[0] == first

        fake.set_tiers(
            "BTCUSDT",
            [
                {
                    "notionalFloor": 0,
                    "notionalCap": 1000,
                    "initialLeverage": 20,
                    "maintMarginRatio": 1,
                }
            ],
        )
        fake.withhold_brackets("ETHUSDT")
        fake.adjust_brackets(KEY, "SOLUSDT", "2")
        text, rows = await answer(KEY, SECRET)
        other_text, other_rows = await answer(other, other_secret)
        assert [b["notionalCap"] for b in rows["BTCUSDT"]["brackets"]] == [1000]
        assert other_rows["BTCUSDT"] == rows["BTCUSDT"]
        assert "ETHUSDT" not in rows and "ETHUSDT" not in other_rows
        assert rows["SOLUSDT"]["notionalCoef"] == 2.0
        assert other_rows["SOLUSDT"]["brackets"] == BRACKETS["SOLUSDT"]
        assert "notionalCoef" not in other_rows["SOLUSDT"]
        assert [b["notionalCap"] for b in rows["SOLUSDT"]["brackets"]] == [
            2 * b["notionalCap"] for b in BRACKETS["SOLUSDT"]
        ]
        assert (text, other_text) == (built(KEY), built(other))


@async_test
async def test_v2_account_rows_follow_leverage_and_brackets_after_one_was_served() -> None:
    """GET /fapi/v2/account lists every symbol (the flat ones too): served, then after a
    position's close left its symbol flat at another leverage than before and a market's
    brackets changed, the rows say so; the answer stays compact JSON."""
    async with (
        started(FakeBinanceUSDM(), [(KEY, SECRET, "100000")]) as fake,
        aiohttp.ClientSession(base_url=fake.base_url) as http,
    ):

        async def positions() -> dict[str, dict[str, Any]]:
            url = "/fapi/v2/account?" + signed_query(SECRET)
            async with http.get(url, headers={"X-MBX-APIKEY": KEY}) as response:
                text = await response.text()
            body = json.loads(text)
            assert text == json.dumps(body, separators=(",", ":"))
            assert list(body)[-1] == "positions"
            return {row["symbol"]: row for row in body["positions"]}

        assert (await positions())["SOLUSDT"]["leverage"] == "20"  # flat at the default
        fake.open_position(KEY, "SOLUSDT", "long", "10", "150", leverage=10)
        rows = await positions()
        assert next(iter(rows)) == "SOLUSDT" and rows["SOLUSDT"]["positionAmt"] != "0"
        assert (rows["ETHUSDT"]["leverage"], rows["ETHUSDT"]["maxNotional"]) == ("20", "65000000")
        fake.close_position(KEY, "SOLUSDT")
        fake.set_tiers(
            "ETHUSDT",
            [
                {
                    "notionalFloor": 0,
                    "notionalCap": 1000,
                    "initialLeverage": 20,
                    "maintMarginRatio": 1,
                }
            ],
        )
        rows = await positions()
        assert (rows["SOLUSDT"]["leverage"], rows["SOLUSDT"]["positionAmt"]) == ("10", "0")
        assert rows["SOLUSDT"]["initialMargin"] == "0"
        assert rows["ETHUSDT"]["maxNotional"] == "1000"


@async_test
async def test_raw_websocket_subscription_protocol_and_malformed_frames() -> None:
    async with (
        started(FakeBinanceUSDM()) as fake,
        aiohttp.ClientSession(base_url=fake.base_url) as http,
        http.ws_connect("/market/ws/0") as ws,
        http.ws_connect("/stream?streams=ethusdt@markPrice") as combined,
    ):
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@markPrice"], "id": 7})
        assert await ws.receive_json(timeout=WAIT_S) == {"result": None, "id": 7}
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 8})
        assert await ws.receive_json(timeout=WAIT_S) == {
            "result": ["btcusdt@markPrice"],
            "id": 8,
        }
        assert fake.subscriptions() == {"btcusdt@markPrice", "ethusdt@markPrice"}

        fake.set_mark("BTCUSDT", "95000.1")
        frame = await ws.receive_json(timeout=WAIT_S)
        assert (frame["e"], frame["s"], frame["p"]) == (
            "markPriceUpdate",
            "BTCUSDT",
            "95000.10000000",
        )
        fake.set_mark("ETHUSDT", "3000")
        wrapped = await combined.receive_json(timeout=WAIT_S)
        assert wrapped["stream"] == "ethusdt@markPrice"
        assert wrapped["data"]["p"] == "3000.00000000"

        fake.send_malformed("shape")
        assert (await ws.receive_json(timeout=WAIT_S))["p"] == "abc"
        fake.send_malformed("json")
        text = await ws.receive_str(timeout=WAIT_S)
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)

        await ws.send_json({"method": "UNSUBSCRIBE", "params": ["btcusdt@markPrice"], "id": 9})
        while (reply := await ws.receive_json(timeout=WAIT_S)).get("id") != 9:
            pass
        assert reply == {"result": None, "id": 9}
        assert fake.subscriptions() == {"ethusdt@markPrice"}


def test_server_on_its_own_thread_is_scriptable_from_another_loop() -> None:
    with server_in_thread(FakeBinanceUSDM()) as fake:
        fake.add_account(KEY, SECRET)  # from this thread: run on the server's loop
        fake.open_position(KEY, "BTCUSDT", "long", "0.2", "95000")

        async def body() -> None:
            async with ccxt_client(fake, "binanceusdm", KEY, SECRET) as exchange:
                (position,) = await exchange.fetch_positions()
                assert position["contracts"] == 0.2
                pending = spawn(exchange.watch_mark_price("BTC/USDT:USDT"))
                await fake.wait_for_subscription("btcusdt@markPrice@1s", WAIT_S)
                fake.set_mark("BTCUSDT", "94000")
                assert (await settle(pending))["markPrice"] == 94000
                pending = spawn(exchange.watch_mark_price("BTC/USDT:USDT"))
                await watching(exchange, "markPrice:markPrice@BTC/USDT:USDT")
                await fake.drop_connections()  # awaited on this loop, done on the server's
                with pytest.raises(ccxt.NetworkError):
                    await settle(pending)

        aio.run(body(), TEST_TIMEOUT_S)


def test_command_line_server_prints_urls_and_stops_on_sigint() -> None:
    command = [sys.executable, "-m", "tests.fake_exchange.binance", "--accounts", "3"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            urls = json.loads(process.stdout.readline())
            assert urls["fapiPrivateV3"].startswith("http://127.0.0.1:")
            assert urls["ws"]["linear"].startswith("ws://127.0.0.1:")

            async def check() -> None:
                exchange = ccxtpro.binanceusdm({"apiKey": "key2", "secret": "secret2"})
                exchange.urls["api"] = exchange.deep_extend(exchange.urls["api"], urls)
                exchange.options["fetchCurrencies"] = False
                try:
                    positions = await exchange.fetch_positions()
                    assert len(positions) == 3
                    ticker = await exchange.watch_mark_price("BTC/USDT:USDT")
                    assert ticker["markPrice"] > 0
                finally:
                    await exchange.close()

            aio.run(check(), TEST_TIMEOUT_S)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=5) == 0
        finally:
            if process.poll() is None:
                process.kill()
