"""Binance portfolio margin between reads (issue 11, session 15): what the portfolio margin user
data stream pushes moves Binance's uniMMR as alertd moves it, matched against the local
Binance's next uniMMR: a COIN-M leg's close, the cross margin account's balances and loans
(``outboundAccountPosition``, ``liabilityChange``), a COIN-M position opened by a push in a
coin the last read held none of.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from alertd.feeds.feed import AccountFeed

from .fake_exchange.binance import FakeBinanceUSDM
from .support.aio import run
from .support.fakes import started
from .support.feeds import streaming
from .support.poll import eventually
from .test_account_modes import (
    COIN_M_BTC,
    KEY,
    SECRET,
    both_marks_at,
    hedged_600_short,
    moved_as_binance_s_next,
)

D = Decimal


def cm_row(size: str, entry: str = "60000", market_id: str = "BTCUSD_PERP") -> dict[str, Any]:
    """A COIN-M position row of "Event: Futures Balance and Position Update" (``a.P[]``)."""
    return {"s": market_id, "pa": size, "ep": entry, "cr": "0", "up": "0", "mt": "cross",
            "iw": "0", "ps": "BOTH"}  # fmt: skip


async def hedge_streaming(fake: FakeBinanceUSDM, feed: AccountFeed) -> None:
    """The hedge's feed streaming (its user stream and both marks subscribed), read at
    50,000 and past the start's settle resync; its fills' reads held by a 60 s interval
    after the first."""
    feed.reconcile_interval_s = 60.0
    await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
    await fake.wait_for_subscription("btcusdt@markPrice@1s", 10)
    await fake.wait_for_user_stream(KEY, 10)
    await both_marks_at(fake, feed.state, "50000", "50000")
    await feed.reconcile()
    await asyncio.sleep(1.5)  # past the start's settle resync


def test_binance_portfolio_last_coin_m_close_keeps_the_coin_s_equity_until_its_read() -> None:
    """The hedge (:func:`hedged_600_short`, a COIN-M wallet of 0.01 BTC) read at 50,000; a
    reduce to 300 contracts and its own read; then, at 55,000, the last 300 closed and pushed
    (``pa`` 0, ``a.B`` the wallet with the PnL the close realized), its read held by the
    reconcile interval. Binance's equity keeps the coin's wallet, the realized PnL in it,
    moving with BTC's mark. Before, the close dropped the coin from the moved equity: it
    snapped back to the coin's equity as read at 50,000 until the fill's read (a firing ratio
    alert could resolve, then fire again at the read). Now the moved ratio is the local
    Binance's next uniMMR to 1e-7 at the close and as BTC falls to 45,000 after it, with no
    read, the COIN-M mark still followed until the read."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            feed = hedged_600_short(fake, "0.01")
            async with streaming(feed):
                state = feed.state
                await hedge_streaming(fake, feed)
                fake.reduce_cm_position(KEY, "BTCUSD_PERP", "-300")
                fake.push_cm_position_update(KEY, cm_row("-300"))
                await eventually(
                    lambda: [p.contracts for p in state.listed_as_read] == [300],
                    timeout_s=10,
                    what="the first reduce's read",
                )
                await both_marks_at(fake, state, "55000", "55000")
                fake.reduce_cm_position(KEY, "BTCUSD_PERP", "0")  # realized at 55,000
                fake.push_cm_position_update(KEY, cm_row("0", "0"))
                await eventually(
                    lambda: not any(p.inverse for p in state.exchange_ratio_positions()),
                    what="the close's push",
                )
                moved_as_binance_s_next(fake, state, "at the close")
                await both_marks_at(fake, state, "45000", "45000")
                moved_as_binance_s_next(fake, state, "at 45,000 after the close")
                assert [p.contracts for p in state.listed_as_read] == [300]  # no read since
                assert COIN_M_BTC in state.listed_symbols

    run(body(), timeout_s=60)
