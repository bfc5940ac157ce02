"""alertd's Bybit v5 feed against the local fake exchange, through ccxt unmodified."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from decimal import Decimal

from alertd.engine.margin import compute
from alertd.engine.model import MarginMode, Side

from .fake_exchange.bybit import FakeBybit
from .support.aio import run
from .support.fakes import started
from .support.feeds import (
    BTC,
    account_config,
    bootstrapped,
    kept_open,
    make_feed,
)
from .support.poll import eventually

D = Decimal
ETH = "ETH/USDT:USDT"


def started_fake() -> AbstractAsyncContextManager[FakeBybit]:
    """The fake Bybit, serving account "key-b" with 8,000 USDT."""
    return started(FakeBybit(), [("key-b", "secret-b", "8000")])


def test_bootstrap_and_figures_agree_with_bybit() -> None:
    async def body() -> None:
        async with started_fake() as fake:
            fake.set_mark(BTC, "20150")
            fake.open_position(
                "key-b",
                BTC,
                "long",
                "1",
                "20000",
                margin_mode="isolated",
                isolated_margin="400",
                leverage=50,
            )
            fake.set_mark(ETH, "3250")
            fake.open_position("key-b", ETH, "long", "10", "3300")
            feed = await bootstrapped(
                make_feed(account_config("b", "bybit", fake), "key-b", "secret-b")
            )
            state = feed.state
            assert state.missing() == []
            btc = state.positions[(BTC, Side.LONG)]
            assert btc.margin_mode is MarginMode.ISOLATED and btc.isolated_margin == D(400)
            metrics = compute(state.to_account())
            for pm in metrics.positions:
                figures = state.reported_positions[pm.position.key]
                assert figures.maintenance_margin is not None
                assert abs(pm.maintenance_margin - figures.maintenance_margin) < D("0.01")
                if figures.liquidation_price is not None and pm.liquidation_price is not None:
                    # Bybit rounds liquidation prices to the tick; alertd does too
                    assert abs(pm.liquidation_price - figures.liquidation_price) <= D("0.1")

    run(body())


def test_an_isolated_position_whose_position_balance_is_deprecated_reads_its_im() -> None:
    """Bybit deprecates ``positionBalance`` ("can refer to positionIM"), and the field still
    arrives as ``"0"`` on open positions: alertd read that as an isolated margin of nothing,
    a false liquidation. Here the local Bybit sends ``"0"`` on an isolated 50x BTC long with
    no margin added, whose margin is then its Position IM (at the entry, with the fee to close
    at the bankruptcy price, as a recorded 50x FTMUSDT row has it: positionBalance 0.1220222 =
    10 x 0.5941 / 50 + 10 x 0.5941 x 0.98 x 0.055%, thibaultyou/trading-toolbox,
    back/src/modules/exchange/types/position-data.interface.ts), and alertd's liquidation
    price and maintenance margin are Bybit's."""

    async def body() -> None:
        async with started_fake() as fake:
            fake.deprecate_position_balance()
            fake.set_mark(BTC, "20150")
            fake.open_position(
                "key-b", BTC, "long", "1", "20000", margin_mode="isolated", leverage=50
            )
            im = D(400) + 20000 * D("0.98") * D("0.00055")  # 20,000 / 50 + the fee to close
            feed = await bootstrapped(
                make_feed(account_config("b", "bybit", fake), "key-b", "secret-b")
            )
            state = feed.state
            btc = state.positions[(BTC, Side.LONG)]
            assert btc.isolated_margin == im  # positionIM, not the "0" sent
            (pm,) = compute(state.to_account()).positions
            bybit = state.reported_positions[(BTC, Side.LONG)]
            assert bybit.liquidation_price is not None and pm.liquidation_price is not None
            assert abs(pm.liquidation_price - bybit.liquidation_price) <= D("0.1")
            assert bybit.maintenance_margin is not None
            assert abs(pm.maintenance_margin - bybit.maintenance_margin) < D("0.01")
            assert pm.margin_ratio < 1

    run(body())


@contextlib.asynccontextmanager
async def btc_collateral_account() -> AsyncIterator[FakeBybit]:
    """The fake Bybit serving account "key-c": 2,000 USDT borrowed, 0.5 BTC of collateral
    at 59,940 (tiered: 95% of the first 0.2 BTC, 90% above) following the BTC mark at
    60,000, and a 0.3 BTC long."""
    async with started(FakeBybit(), [("key-c", "secret-c", "-2000")]) as fake:
        fake.set_mark(BTC, "60000")
        fake.open_position("key-c", BTC, "long", "0.3", "60000")
        fake.set_collateral_tiers("BTC", [("0.2", "0.95"), (None, "0.9")])
        fake.set_collateral("key-c", "BTC", "0.5", "59940", None, follows=BTC)
        yield fake


def test_btc_collateral_and_a_btc_long_in_the_unified_cross_pool() -> None:
    """A UTA cross account whose USDT is borrowed (-2,000) and whose collateral is 0.5 BTC
    (tiered: 95% of the first 0.2 BTC, 90% above) holding a 0.3 BTC long: the pool counts
    the BTC at its tiered value, the coin falls with the long, and alertd's ratio and
    liquidation price are Bybit's (no false "liquidated" from the negative USDT wallet)."""

    async def body() -> None:
        async with btc_collateral_account() as fake:
            feed = await bootstrapped(
                make_feed(account_config("c", "bybit", fake), "key-c", "secret-c")
            )
            state = feed.state
            assert state.computable and state.wallet_balance == D(-2000)
            (btc,) = state.collateral
            assert (btc.asset, btc.amount, btc.price, btc.price_symbol) == (
                "BTC",
                D("0.5"),
                D("59940"),
                BTC,
            )
            # 0.2 x 0.95 + 0.3 x 0.9 = 0.46 BTC counted at 59,940
            assert btc.value == D("0.46") * D("59940")
            metrics = compute(state.to_account())
            assert metrics.pool.margin_balance == -2000 + D("0.46") * D("59940")
            assert metrics.pool.margin_ratio < 1  # far from liquidated
            assert feed.comparison is not None and feed.comparison.mismatches == ()
            # liquidation: -2000 + 0.46 x 0.999 P + 0.3 (P - 60000) = 0.3 P x 0.005 (tier 1)
            # + the fee to close at the bankruptcy price (10x: 0.3 x 54,000 x 0.055%)
            liq = metrics.positions[0].liquidation_price
            fee = D("0.3") * 54000 * D("0.00055")
            expected = (2000 + D("0.3") * 60000 + fee) / (
                D("0.46") * D("0.999") + D("0.3") * D("0.995")
            )
            tick = D("0.1")
            assert liq is not None and liq - tick < expected <= liq
            # the USDT wallet alone (alertd before) is past liquidation: a false critical
            usdt_only = compute(dataclasses.replace(state.to_account(), collateral=()))
            assert usdt_only.pool.margin_balance < 0
            reported = state.reported_positions[(BTC, Side.LONG)].liquidation_price
            assert reported == liq  # Bybit's (the fake's) estimate moves the coin too

    run(body())


def test_a_tick_during_the_coins_read_keeps_the_coin_s_basis_to_its_mark() -> None:
    """A reconcile's wallet answer (the coins' prices) is slow; the BTC mark falls 5% on the
    stream meanwhile. The answer priced BTC at the older mark: the coin keeps its basis to
    that one (59,940 / 60,000) and falls with the mark from there, not valued at its old
    price against the new mark (5% too high in a fall, until the next read)."""

    async def body() -> None:
        async with btc_collateral_account() as fake:
            feed = make_feed(account_config("c", "bybit", fake), "key-c", "secret-c")
            async with kept_open(feed):
                feed.record_mark(BTC, D(60000), 0.0)
                fake.hold_rest("/v5/account/wallet-balance")
                resync = asyncio.create_task(feed.resync())
                await eventually(lambda: fake.held_answers() == 1, what="the slow answer")
                feed.record_mark(BTC, D(57000), 1.0)  # the stream's tick, while it waits
                fake.release_rest()
                await resync
                (btc,) = feed.state.collateral
                assert btc.price_over_mark == D(59940) / D(60000)
                (moved,) = feed.state.to_account().collateral
                assert moved.price == D(57000) * D(59940) / D(60000)

    run(body())
