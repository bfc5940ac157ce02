"""alertd's Bybit v5 feed against the local fake exchange, through ccxt unmodified."""

from __future__ import annotations

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
    btc_long,
    good_and_bad_accounts,
    make_feed,
    mark_arrives,
    streaming,
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


def test_streams_drop_and_resync() -> None:
    async def body() -> None:
        async with started_fake() as fake:
            btc_long(fake, "key-b")
            feed = make_feed(account_config("b", "bybit", fake), "key-b", "secret-b")
            async with streaming(feed):
                await eventually(
                    lambda: "tickers.BTCUSDT" in fake.subscriptions(), what="ticker subscription"
                )
                await mark_arrives(fake, feed, "59000", "mark")
                fake.set_mark(ETH, "3000")
                fake.open_position("key-b", ETH, "short", "2", "3100")
                await eventually(lambda: (ETH, Side.SHORT) in feed.state.positions, what="ETH")
                fake.close_position("key-b", ETH)
                await eventually(
                    lambda: (ETH, Side.SHORT) not in feed.state.positions, what="close"
                )
                fake.set_balance("key-b", "9000")
                await eventually(lambda: feed.state.wallet_balance == D(9000), what="balance")
                await fake.drop_connections()
                fake.open_position("key-b", ETH, "long", "1", "3000")  # pushed to nobody
                await eventually(lambda: (ETH, Side.LONG) in feed.state.positions, what="resync")
                await eventually(lambda: feed.reconnects >= 1, what="a resync after the drop")
                fake.send_malformed("json")
                fake.send_malformed("shape")
                await eventually(lambda: len(feed.malformed) >= 1, what="malformed counted")
                await mark_arrives(fake, feed, "58000", "mark after")

    run(body(), timeout_s=60)


def test_bad_key_is_fatal_for_that_account_only() -> None:
    async def body() -> None:
        async with (
            started_fake() as fake,
            good_and_bad_accounts(fake, "bybit", "key-b", "secret-b") as manager,
        ):
            good = manager.feeds["good"]
            await mark_arrives(fake, good, "59999", "good account still streaming")

    run(body())
