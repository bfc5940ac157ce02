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
    make_feed,
)

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
