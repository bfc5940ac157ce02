"""A one-way (net) position flipped by one fill (review of race15, finding 2).

In one-way mode an exchange holds one position a symbol: a fill that turns a long of 0.5 BTC
into a short of 0.3 is pushed as one row, of the signed size -0.3 (Gate's ``size``, Binance's
``pa`` with ``ps`` BOTH, OKX's ``pos`` with ``posSide`` net). alertd keys positions by
(symbol, side): the row is the short, and it also ends the long. Before, the long stayed held
beside the short until the next reconcile (margin computed on both legs). Each test runs
through the exchange's local server and ccxt's own websocket code; hedge mode, where both
sides are held on purpose, keeps both.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from alertd.engine.model import MarginMode, Side
from alertd.exchanges.registry import get_spec
from alertd.feeds.feed import AccountFeed
from alertd.feeds.state import AccountState, LifeSequence, PositionState, Stream

from .fake_exchange.binance import FakeBinanceUSDM
from .support.aio import run
from .support.fakes import KEY, started
from .support.feeds import BTC, streaming
from .support.poll import eventually
from .test_account_modes import KEY as PM_KEY
from .test_account_modes import SECRET as PM_SECRET
from .test_account_modes import portfolio_long_btc
from .test_push_during_snapshot import (
    btc_of,
    frames_of_one_fill,
    key_of,
    long_half_btc,
    next_wall_second,
)

# Gate, Binance and OKX push a one-way position with a signed size, Bybit with a side and its
# one-way slot (positionIdx 0). Hyperliquid pushes the whole clearinghouse state, every
# position held in it, so a side it no longer lists is closed (HyperliquidAdapter.
# watch_positions); it has no hedge mode.
EXCHANGES = ["binanceusdm", "bybit", "gate", "okx"]


def held(feed: AccountFeed) -> dict[Side, D]:
    return {
        side: p.contracts for (symbol, side), p in feed.state.positions.items() if symbol == BTC
    }


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_a_one_way_long_flipped_to_a_short_by_one_fill_is_held_short_only(exchange: str) -> None:
    """The long of 0.5 BTC flipped to a short of 0.3 by one fill, then back to a long of 0.2:
    the account holds the short alone, then the long alone (before: the long of 0.5 stayed
    beside the short until the next reconcile)."""

    async def body() -> None:
        async with long_half_btc(exchange) as (fake, feed):
            fake.open_position(KEY, BTC, "short", "0.3", "60000")  # one-way: replaces the long
            await eventually(lambda: Side.SHORT in held(feed), what="the flip's push")
            assert held(feed) == {Side.SHORT: D("0.3")}
            fake.open_position(KEY, BTC, "long", "0.2", "60000")
            await eventually(lambda: Side.LONG in held(feed), what="the flip back's push")
            assert held(feed) == {Side.LONG: D("0.2")}
            assert feed.state.fatal is None

    run(body())


def test_a_binance_portfolio_margin_um_long_flipped_by_one_fill_is_held_short_only() -> None:
    """Binance portfolio margin: the UM long of 1 BTC flipped to a short of 0.3 by one fill,
    pushed on the portfolio margin stream (``ACCOUNT_UPDATE`` with ``fs`` UM, ``pa`` -0.3,
    ``ps`` BOTH): the account holds the short alone (before: the long beside it)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(PM_KEY, PM_SECRET, "2000")]) as fake:
            feed = portfolio_long_btc(fake)
            async with streaming(feed):
                await fake.wait_for_user_stream(PM_KEY, 10)
                fake.open_position(PM_KEY, BTC, "short", "0.3", "60000")
                await eventually(lambda: Side.SHORT in held(feed), what="the flip's push")
                assert held(feed) == {Side.SHORT: D("0.3")}
                assert feed.state.fatal is None

    run(body())


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_hedge_mode_legs_on_both_sides_are_both_held(exchange: str) -> None:
    """Hedge mode: a long leg of 0.5 BTC, then a short leg of 0.3 opened beside it. Both are
    held: a hedge-mode row names its own side and ends nothing."""

    async def body() -> None:
        async with long_half_btc(exchange, hedge=True) as (fake, feed):
            fake.open_position(KEY, BTC, "short", "0.3", "60000", hedge=True)
            await eventually(lambda: Side.SHORT in held(feed), what="the short leg's push")
            assert held(feed) == {Side.LONG: D("0.5"), Side.SHORT: D("0.3")}
            fake.open_position(KEY, BTC, "long", "0.6", "60000", hedge=True)
            await eventually(lambda: held(feed).get(Side.LONG) == D("0.6"), what="the long leg")
            assert held(feed) == {Side.LONG: D("0.6"), Side.SHORT: D("0.3")}

    run(body())


def test_a_gate_flip_back_in_the_read_s_second_is_ordered_against_the_flip() -> None:
    """Gate, update_id numbered afresh in each life: the REST row is the long of 0.5 (update
    50 in second S, its life opened ten seconds before); the long flips to a short of 0.3
    (update 1 of a new life, pushed at S + 300 ms), then back to a long of 0.2 (update 1 of
    another life, S + 600 ms). The flip back is applied: the flip's push stamped the long's
    key, so the flip back is ordered against it, not against the read's update 50 (before:
    dropped as older, the long of 0.5 held beside the short until the next reconcile)."""
    s = 1_765_000_000_000

    def pos(side: Side, size: str, version: LifeSequence) -> PositionState:
        return PositionState(
            BTC, side, D(size), D(60000), MarginMode.CROSS, version=version, one_way=True
        )

    state = AccountState("g", get_spec("gate").profile, "USDT")
    read = LifeSequence(50, s, s + 999, s - 10_000 + 999)
    state.replace_positions([pos(Side.LONG, "0.5", read)], 0.0)
    state.update_positions([pos(Side.SHORT, "0.3", LifeSequence(1, s + 300, s + 300))], 1.0)
    assert {k[1]: p.contracts for k, p in state.positions.items()} == {Side.SHORT: D("0.3")}
    assert state.update_positions([pos(Side.LONG, "0.2", LifeSequence(1, s + 600, s + 600))], 2.0)
    assert {k[1]: p.contracts for k, p in state.positions.items()} == {Side.LONG: D("0.2")}


@pytest.mark.parametrize("exchange", ["gate", "binanceusdm", "bybit", "okx"])
def test_a_flip_pushed_after_a_newer_read_holds_no_wrong_side(exchange: str) -> None:
    """One-way: the long of 0.5 BTC flipped to a short of 0.3 (one fill), then, in a later
    second, back to a long of 0.2, both pushes delivered late (held by the local exchange,
    each stamped as made: Gate's ``time_ms``, ``update_id``; Binance's event time ``E``;
    Bybit's ``updatedTime``). A reconcile reads the long of 0.2 (its row's time the flip
    back's second: Gate's ``update_time``, Binance's Position Information V3 ``updateTime``
    with ``positionSide`` BOTH, Bybit's ``updatedTime`` with ``positionIdx`` 0); then the
    flip's push arrives: the exchange's own stamps say it is older than the row read (made
    in an earlier second), so it is dropped and the account holds the long of 0.2 alone.
    Before, the read stamped only the long's key, the flip's push (the short's key) was
    ordered against nothing and applied: the short of 0.3 held, the long ended, until the
    next push or read (a wrong side held); on Binance until fixpm16 (its REST rows were not
    marked one-way: review of pm16, 6)."""
    key, btc = key_of(exchange), btc_of(exchange)

    def held(feed: AccountFeed) -> dict[Side, D]:
        return {s: p.contracts for (sym, s), p in feed.state.positions.items() if sym == btc}

    async def body() -> None:
        async with long_half_btc(exchange) as (fake, feed):
            await next_wall_second()
            fake.delay_pushes(key)
            fake.open_position(key, btc, "short", "0.3", "60000")  # the flip
            await next_wall_second()
            fake.open_position(key, btc, "long", "0.2", "60000")  # the flip back
            await feed.reconcile()
            assert held(feed) == {Side.LONG: D("0.2")}

            def delivered() -> float | None:
                return feed.state.last_seen.get((Stream.POSITIONS, ""))

            seen = delivered()
            fake.release_pushes(key, frames_of_one_fill(exchange))  # the flip's, after the read
            await eventually(lambda: delivered() != seen, what="the flip's push")
            assert held(feed) == {Side.LONG: D("0.2")}
            seen = delivered()
            fake.release_pushes(key)  # the flip back's: the read's own fill
            await eventually(lambda: delivered() != seen, what="the flip back's push")
            assert held(feed) == {Side.LONG: D("0.2")}
            assert feed.state.fatal is None

    run(body())
