"""The fake Bybit v5 server, driven by ccxt's own unmodified ``ccxt.pro.bybit``.

Only ``exchange.urls['api']`` is pointed at the fake (loopback). Every wait is bounded; each test
runs in its own ``asyncio.run`` under an overall timeout and always closes the exchange.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from contextlib import AbstractAsyncContextManager
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Any

import ccxt
import ccxt.pro as ccxtpro
import pytest

from tests.fake_exchange.bybit import FakeBybit
from tests.support import aio
from tests.support.aio import settle
from tests.support.fakes import (
    KEY,
    SECRET,
    btcusdt_linear_perpetual,
    ccxt_client,
    snapshot_then_opening,
    with_one_account,
)
from tests.support.poll import eventually
from tests.support.process import ROOT

BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"
TEST_TIMEOUT_S = 15.0
async_test = aio.async_test(TEST_TIMEOUT_S)


def fake_server(**kwargs: Any) -> AbstractAsyncContextManager[FakeBybit]:
    return with_one_account(FakeBybit(**kwargs))


def exchange(
    fake: FakeBybit, key: str | None = KEY, secret: str | None = SECRET, **options: Any
) -> AbstractAsyncContextManager[Any]:
    # enableRateLimit off: ccxt's client-side throttle spaces load_markets' 11 requests ~0.1 s
    # apart (instruments-info costs 5 x rateLimit); the fake itself has no limits to respect
    return ccxt_client(fake, "bybit", key, secret, enableRateLimit=False, **options)


def floor_to(value: Decimal, tick: str) -> Decimal:
    return (value / Decimal(tick)).to_integral_value(ROUND_FLOOR) * Decimal(tick)


def ceil_to(value: Decimal, tick: str) -> Decimal:
    return (value / Decimal(tick)).to_integral_value(ROUND_CEILING) * Decimal(tick)


# ---- REST ------------------------------------------------------------------------------------


def close_fee(size: Decimal, entry: Decimal, side: str, leverage: int) -> Decimal:
    """Bybit's estimated fee to close at the bankruptcy price (0.055% taker), in IM and MM
    since 2025-09-02 ("The New Margin Calculation: Adjustments and Implications")."""
    shift = -1 if side == "long" else 1
    return size * entry * (1 + Decimal(shift) / leverage) * Decimal("0.00055")


@async_test
async def test_load_markets_serves_linear_perps_without_account_probes() -> None:
    async with fake_server() as fake:
        fake.add_symbol("XRP/USDT:USDT", "0.5123")
        async with exchange(fake) as ex:
            markets = await ex.load_markets()
            assert set(markets) == {BTC, ETH, SOL, "XRP/USDT:USDT"}
            btc = btcusdt_linear_perpetual(markets)
            assert btc["limits"]["leverage"]["max"] == 100
            assert markets["XRP/USDT:USDT"]["precision"]["price"] == 0.00001
            paths = {path for _, path in fake.requests}
            # ccxt's fetch_currencies (signed) plus one instruments-info per category
            assert paths == {"/v5/market/instruments-info", "/v5/asset/coin/query-info"}
            await ex.fetch_balance()
            assert "/v5/user/query-api" not in {p for _, p in fake.requests}
            assert "/v5/account/info" not in {p for _, p in fake.requests}


@async_test
async def test_risk_limit_rows_as_bybit_publishes_them() -> None:
    async with fake_server() as fake:
        fake.add_symbol(
            "DOGE/USDT:USDT",
            "0.15",
            risk_limits=[
                {"riskLimitValue": "800000", "maintenanceMargin": "0.02"},
                {"riskLimitValue": "400000", "maintenanceMargin": "0.01"},
            ],
        )
        async with exchange(fake) as ex:
            await ex.load_markets()
            raw = await ex.publicGetV5MarketRiskLimit({"category": "linear", "symbol": "BTCUSDT"})
            assert raw["retCode"] == 0
            rows = raw["result"]["list"]
            assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
            assert set(rows[0]) >= {
                "id",
                "symbol",
                "riskLimitValue",
                "maintenanceMargin",
                "initialMargin",
                "isLowestRisk",
                "maxLeverage",
                "mmDeduction",
            }
            assert rows[0]["maintenanceMargin"] == "0.005"
            assert (rows[0]["isLowestRisk"], rows[1]["isLowestRisk"]) == (1, 0)
            assert rows[0]["mmDeduction"] == ""  # Bybit leaves the lowest tier's empty
            # continuous deductions: d2 = 2M * (0.01 - 0.005), d3 = d2 + 4M * 0.005
            assert [r["mmDeduction"] for r in rows[1:3]] == ["10000", "30000"]
            doge = await ex.publicGetV5MarketRiskLimit({"category": "linear", "symbol": "DOGEUSDT"})
            dl = doge["result"]["list"]
            assert [(r["riskLimitValue"], r["mmDeduction"]) for r in dl] == [
                ("400000", ""),
                ("800000", "4000"),
            ]
            everything = await ex.publicGetV5MarketRiskLimit({"category": "linear"})
            assert len(everything["result"]["list"]) == 17
            tiers = await ex.fetch_leverage_tiers([ETH])
            assert tiers[ETH][0]["maxNotional"] == 1_000_000
            assert tiers[ETH][1]["maintenanceMarginRate"] == 0.01


@async_test
async def test_fetch_positions_reports_figures_from_published_formulas() -> None:
    async with fake_server() as fake:
        fake.add_account("cross-long", "s1", "1000")
        fake.open_position("cross-long", BTC, "long", "1", "65000")
        fake.add_account("cross-short", "s2", "1000")
        fake.open_position("cross-short", ETH, "short", "10", "3500")
        fake.add_account("tier2", "s3", "200000")
        fake.open_position("tier2", BTC, "long", "40", "65000")
        fake.add_account("iso", "s4", "5000")
        fake.open_position("iso", ETH, "short", "2", "3600", margin_mode="isolated", leverage=5)

        # Bybit's formulas restated (2025-09-02): cross LP where W + upl(P) = value(P) *
        # mmr - ded + fee, the fee to close at the bankruptcy price (10x by default)
        w, s, e, mmr = Decimal(1000), Decimal(1), Decimal(65000), Decimal("0.005")
        fee_long = close_fee(s, e, "long", 10)
        expected_long = ceil_to((s * e - w + fee_long) / (s * (1 - mmr)), "0.1")
        w, s, e = Decimal(1000), Decimal(10), Decimal(3500)
        fee_short = close_fee(s, e, "short", 10)
        expected_short = floor_to((w + s * e - fee_short) / (s * (1 + mmr)), "0.01")
        w, s, e = Decimal(200000), Decimal(40), Decimal(65000)
        ded, mmr2 = Decimal(10000), Decimal("0.01")
        fee_tier2 = close_fee(s, e, "long", 10)
        expected_tier2 = ceil_to((s * e - ded - w + fee_tier2) / (s * (1 - mmr2)), "0.1")
        # isolated short, margin = Position IM = 7200/5 + fee: where it and 2 (3600 - P) meet
        # 2 P 0.005 + fee, the fee cancelling out
        fee_iso = close_fee(Decimal(2), Decimal(3600), "short", 5)
        expected_iso = floor_to((1440 + 7200) / (2 * (1 + mmr)), "0.01")
        assert (expected_long, expected_short) == (Decimal("64354"), Decimal("3579.98"))
        assert expected_iso == Decimal("4298.50")
        btc_mark, eth_mark = fake.mark(BTC), fake.mark(ETH)
        mm_long = btc_mark * mmr + fee_long
        mm_short = 10 * eth_mark * mmr + fee_short
        mm_tier2 = 40 * btc_mark * mmr2 - ded + fee_tier2
        mm_iso = 2 * eth_mark * mmr + fee_iso

        cases = [
            ("cross-long", "s1", BTC, expected_long, mm_long, 0),
            ("cross-short", "s2", ETH, expected_short, mm_short, 0),
            ("tier2", "s3", BTC, expected_tier2, mm_tier2, 0),
            ("iso", "s4", ETH, expected_iso, mm_iso, 1),
        ]
        for key, secret, symbol, liq, mm, trade_mode in cases:
            async with exchange(fake, key, secret) as ex:
                raw = await ex.privateGetV5PositionList(
                    {"category": "linear", "settleCoin": "USDT", "limit": 200}
                )
                (row,) = raw["result"]["list"]
                assert Decimal(row["liqPrice"]) == liq, key
                assert (Decimal(row["positionMM"]), row["tradeMode"]) == (mm, trade_mode), key
                (position,) = await ex.fetch_positions()
                assert position["symbol"] == symbol
                assert position["liquidationPrice"] == float(liq)
                assert position["maintenanceMargin"] == float(mm)
        async with exchange(fake, "tier2", "s3") as ex:
            raw = await ex.privateGetV5PositionList({"category": "linear", "symbol": "BTCUSDT"})
            row = raw["result"]["list"][0]
            assert (row["riskId"], row["riskLimitValue"], row["avgPrice"]) == (
                2,
                "4000000",
                "65000",
            )
            flat = await ex.privateGetV5PositionList({"category": "linear", "symbol": "SOLUSDT"})
            assert [(r["side"], r["size"]) for r in flat["result"]["list"]] == [("", "0")]


@async_test
async def test_position_balance_as_bybit_sends_it_now() -> None:
    # "Get Position Info" (bybit-exchange/docs, 2025-11): positionBalance "**Deprecated**, can
    # refer to positionIM or positionIMByMp"; live frames of open cross positions (2025-01 to
    # 2026-03) carry "0" and, since 2025-07, positionIMByMp / positionMMByMp on the stream too
    async with fake_server() as fake:
        fake.add_account("cross", "s1", "1000")
        fake.open_position("cross", BTC, "long", "1", "65000")
        fake.add_account("iso", "s2", "5000")
        fake.open_position("iso", ETH, "short", "2", "3600", margin_mode="isolated", leverage=5)
        # no margin added: its margin is its Position IM, 7,200 / 5 and the fee to close
        im_iso = Decimal(1440) + close_fee(Decimal(2), Decimal(3600), "short", 5)

        async def row(key: str, secret: str) -> dict[str, Any]:
            async with exchange(fake, key, secret) as ex:
                raw = await ex.privateGetV5PositionList(
                    {"category": "linear", "settleCoin": "USDT", "limit": 200}
                )
                (one,) = raw["result"]["list"]
                return dict(one)

        cross, iso = await row("cross", "s1"), await row("iso", "s2")
        assert cross["positionBalance"] == "0" and "positionIMByMp" in cross
        assert Decimal(iso["positionBalance"]) == Decimal(iso["positionIM"]) == im_iso
        fake.deprecate_position_balance()
        iso = await row("iso", "s2")
        assert iso["positionBalance"] == "0" and Decimal(iso["positionIM"]) == im_iso
        # the isolated liquidation price is unchanged: only what is sent changed
        fee = close_fee(Decimal(2), Decimal(3600), "short", 5)
        assert Decimal(iso["liqPrice"]) == floor_to((im_iso + 7200 - fee) / Decimal("2.01"), "0.01")


@async_test
async def test_fetch_balance_reports_account_totals() -> None:
    async with fake_server() as fake:
        fake.open_position(KEY, BTC, "long", "0.1", "64000")  # mark 65000: upl +100
        fake.open_position(KEY, ETH, "short", "2", "3600", margin_mode="isolated", leverage=5)
        async with exchange(fake) as ex:
            positions = await ex.privateGetV5PositionList(
                {"category": "linear", "settleCoin": "USDT"}
            )
            mm = sum(Decimal(r["positionMM"]) for r in positions["result"]["list"])
            upl = sum(Decimal(r["unrealisedPnl"]) for r in positions["result"]["list"])
            balance = await ex.fetch_balance()
            (info,) = balance["info"]["result"]["list"]
            assert info["accountType"] == "UNIFIED"
            # 0.1 x 65,000 x 0.5% and 2 x 3,500 x 0.5% at the marks, plus the fees to close
            fees = close_fee(Decimal("0.1"), Decimal(64000), "long", 10) + close_fee(
                Decimal(2), Decimal(3600), "short", 5
            )
            assert fake.mark(ETH) == 3500
            assert Decimal(info["totalMaintenanceMargin"]) == mm == Decimal("67.5") + fees
            margin = Decimal(info["totalMarginBalance"])
            assert margin == Decimal(10000) + upl == Decimal(10300)
            assert info["accountMMRate"] == str(
                (mm / margin).quantize(Decimal("0.0001"), ROUND_DOWN)
            )
            (usdt,) = info["coin"]
            assert (usdt["coin"], usdt["walletBalance"], usdt["equity"]) == (
                "USDT",
                "10000",
                "10300",
            )
            assert balance["USDT"]["total"] == 10000  # ccxt's REST total is walletBalance
            wallet_only = await ex.privateGetV5AccountWalletBalance(
                {"accountType": "UNIFIED", "coin": "BTC"}
            )
            assert wallet_only["result"]["list"][0]["coin"] == []


@async_test
async def test_fail_rest_rate_limit_and_server_errors() -> None:
    async with fake_server() as fake, exchange(fake) as ex:
        await ex.load_markets()
        fake.fail_rest(429, count=2, path_prefix="/v5/market/tickers", retry_after_s=2)
        await ex.fetch_balance()  # outside the prefix: unaffected
        for _ in range(2):
            before = int(time.time() * 1000)
            with pytest.raises(ccxt.RateLimitExceeded, match="10006"):
                await ex.fetch_ticker(BTC)
            reset = int(ex.last_response_headers["X-Bapi-Limit-Reset-Timestamp"])
            assert before + 1500 <= reset <= before + 3000
        ticker = await ex.fetch_ticker(BTC)
        assert ticker["markPrice"] == 65000
        fake.fail_rest(502)
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.fetch_ticker(BTC)
        fake.fail_rest(403)  # Bybit's IP limit; ccxt's bybit maps 403 to a rate limit
        with pytest.raises(ccxt.RateLimitExceeded):
            await ex.fetch_positions()
        assert (await ex.fetch_ticker(BTC))["markPrice"] == 65000


@async_test
async def test_bad_credentials() -> None:
    async with fake_server() as fake:
        async with exchange(fake, "no-such-key", "x") as ex:
            with pytest.raises(ccxt.AuthenticationError, match=r"10003.*API key is invalid"):
                await ex.load_markets()  # fetch_currencies is signed
        async with exchange(fake, KEY, "wrong-secret") as ex:
            with pytest.raises(ccxt.AuthenticationError, match="10004"):
                await ex.load_markets()
        async with exchange(fake) as ex:
            ex.options["timeDifference"] = 60_000  # our timestamps fall outside recvWindow
            with pytest.raises(ccxt.InvalidNonce, match="10002"):
                await ex.load_markets()
        async with exchange(fake, key=None) as ex:
            await ex.load_markets()  # without keys ccxt skips the signed currency call
            ex.apiKey, ex.secret = "no-such-key", "x"
            # Bybit's failed-auth frame carries no request echo, so ccxt raises a plain
            # ExchangeError ("Params Error") here, not an AuthenticationError
            with pytest.raises(ccxt.ExchangeError, match="Params Error"):
                await settle(ex.watch_balance())


@async_test
async def test_banned_and_revoked_keys() -> None:
    async with fake_server() as fake, exchange(fake) as ex:
        await ex.load_markets()
        fake.ban(KEY)  # Bybit's IP ban: HTTP 403 "access too frequent"
        with pytest.raises(ccxt.RateLimitExceeded):
            await ex.fetch_balance()
        with pytest.raises(ccxt.ExchangeError, match="Params Error"):
            await settle(ex.watch_balance())  # the websocket login is refused too
        fake.unban(KEY)
        assert (await ex.fetch_balance())["USDT"]["total"] == 10000
        fake.revoke_key(KEY)
        with pytest.raises(ccxt.AuthenticationError, match="10003"):
            await ex.fetch_positions()


# ---- websockets ------------------------------------------------------------------------------


@async_test
async def test_watch_ticker_receives_marks() -> None:
    async with fake_server() as fake, exchange(fake) as ex:
        first = await settle(ex.watch_ticker(BTC))  # the snapshot after the subscribe ack
        assert first["markPrice"] == 65000
        assert first["info"]["markPrice"] == "65000.00"
        assert fake.subscriptions() == {"tickers.BTCUSDT"}
        pending = asyncio.ensure_future(ex.watch_ticker(BTC))
        await asyncio.sleep(0.05)
        fake.set_mark(BTC, "66000.126")  # rounded to the priceScale, as Bybit shows it
        update = await settle(pending)
        assert update["markPrice"] == 66000.13
        assert update["info"]["markPrice"] == "66000.13"
        pending = asyncio.ensure_future(ex.watch_ticker(BTC))
        await asyncio.sleep(0.05)
        # scripting from another thread is handed to the server's loop
        await asyncio.to_thread(fake.set_mark, BTC, 64000)
        assert (await settle(pending))["markPrice"] == 64000


@async_test
async def test_mark_interval_pushes_subscribed_tickers() -> None:
    async with fake_server(mark_interval_s=0.05) as fake, exchange(fake) as ex:
        await settle(ex.watch_ticker(ETH))
        started = time.monotonic()
        for _ in range(3):
            ticker = await settle(ex.watch_ticker(ETH), 1.0)
            assert ticker["markPrice"] == 3500
        assert time.monotonic() - started < 1.0


@async_test
async def test_watch_positions_receives_open_and_close() -> None:
    async with fake_server() as fake, exchange(fake) as ex:
        opened = await snapshot_then_opening(fake, ex, "0.5", "position")
        raw = opened["info"]
        assert (raw["category"], raw["side"], raw["tradeMode"], raw["positionIdx"]) == (
            "linear",
            "Sell",
            1,
            0,
        )
        # no margin given: the Position IM, 150 and the fee to close
        fee = close_fee(Decimal(10), Decimal(150), "short", 10)
        assert (raw["entryPrice"], Decimal(raw["positionBalance"]), raw["leverage"]) == (
            "150",
            150 + fee,
            "10",
        )
        # where 150 + fee + 10 (150 - P) = 10 P 1% + fee: 163.3663..., down to the tick
        assert Decimal(raw["liqPrice"]) == floor_to((150 + 1500) / Decimal("10.1"), "0.01")

        pending = asyncio.ensure_future(ex.watch_positions())
        await asyncio.sleep(0.05)
        fake.close_position(KEY, SOL)
        (closed,) = await settle(pending)
        assert (closed["symbol"], closed["side"], closed["contracts"]) == (SOL, None, 0)
        assert (closed["info"]["side"], closed["info"]["size"]) == ("", "0")

        pending = asyncio.ensure_future(ex.watch_positions())
        await asyncio.sleep(0.05)
        fake.open_position(KEY, ETH, "short", "1", "3500", hedge=True)
        (hedged,) = await settle(pending)
        assert (hedged["side"], hedged["info"]["positionIdx"]) == ("short", 2)


@async_test
async def test_watch_balance_receives_set_balance() -> None:
    async with fake_server() as fake, exchange(fake) as ex:
        fake.open_position(KEY, BTC, "long", "0.1", "64000")
        pending = asyncio.ensure_future(ex.watch_balance())
        await eventually(lambda: "wallet" in fake.subscriptions())
        fake.set_balance(KEY, "12345.6")
        balance = await settle(pending)
        (account,) = balance["info"]
        (usdt,) = account["coin"]
        assert (usdt["walletBalance"], usdt["equity"]) == ("12345.6", "12445.6")
        fee = close_fee(Decimal("0.1"), Decimal(64000), "long", 10)
        assert Decimal(account["totalMaintenanceMargin"]) == Decimal("32.5") + fee
        assert balance["USDT"]["total"] == 12445.6  # ccxt's websocket total is the equity


@async_test
async def test_malformed_frames() -> None:
    async with fake_server() as fake, exchange(fake, keep_alive_ms=250) as ex:
        await settle(ex.watch_ticker(BTC))
        pending = asyncio.ensure_future(ex.watch_ticker(BTC))
        await asyncio.sleep(0.05)
        fake.send_malformed("shape")
        garbled = await settle(pending)
        assert garbled["markPrice"] is None  # ccxt swallows "abc" silently
        assert garbled["info"]["markPrice"] == "abc"
        pending = asyncio.ensure_future(ex.watch_ticker(BTC))
        await asyncio.sleep(0.05)
        fake.send_malformed("json")
        await asyncio.sleep(0.05)
        fake.set_mark(BTC, 64000)
        # ccxt's receive loop dies on the parse error: nothing more is read, not even
        # pongs, so the only way out is the keepalive timeout
        with pytest.raises(ccxt.RequestTimeout):
            await settle(pending, 2.0)


# ---- command line ------------------------------------------------------------------------------


@async_test
async def test_command_line_server() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fake_exchange.bybit",
        "--port",
        "0",
        "--accounts",
        "2",
        "--interval",
        "0.1",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        urls = json.loads(line)
        assert urls["ws"]["public"]["linear"].startswith("ws://127.0.0.1:")
        ex = ccxtpro.bybit(
            {
                "apiKey": "key1",
                "secret": "secret1",
                "enableRateLimit": False,
                "options": {"enableUnifiedAccount": True, "enableUnifiedMargin": False},
            }
        )
        ex.urls["api"] = ex.deep_extend(ex.urls["api"], urls)
        try:
            positions = await ex.fetch_positions()
            assert {p["symbol"] for p in positions} == {BTC, ETH, SOL}
            await settle(ex.watch_ticker(BTC))
            await settle(ex.watch_ticker(BTC), 2.0)  # the random walk pushes marks
        finally:
            await ex.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@async_test
async def test_stop_is_bounded_with_clients_connected() -> None:
    fake = FakeBybit()
    await fake.start()
    fake.add_account(KEY, SECRET)
    async with exchange(fake) as ex:
        await settle(ex.watch_ticker(BTC))
        started = time.monotonic()
        await fake.stop()
        assert time.monotonic() - started < 3
