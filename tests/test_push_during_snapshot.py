"""Pushes that arrive while a REST snapshot is read (issue 11, found in session 13).

A snapshot's read takes time; a private push that arrives meanwhile is applied at once, and the
snapshot, whose content predates it, lands after it. The feed applies those pushes again on
top of the snapshot (``PushesDuringReads``), unless the exchange's own stamp says the push is
older than what the snapshot read. Each test holds the local exchange's REST answer (answered
as the account is when the request arrives, sent at ``release_rest``) while the push comes,
through ccxt's own REST and websocket code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal as D
from typing import Any

import pytest

from alertd.config import Secret
from alertd.engine.model import Side
from alertd.feeds.feed import AccountFeed
from alertd.feeds.state import Stream

from .fake_exchange.base import FakeExchangeServer
from .fake_exchange.binance import FakeBinanceUSDM
from .support.aio import run
from .support.fakes import KEY, SECRET, make_fake, with_one_account
from .support.feeds import BTC, FAST, FAST_OPTIONS, account_config, secrets, streaming
from .support.poll import eventually
from .test_account_modes import COIN_M_BTC, coin_m_300
from .test_account_modes import KEY as PM_KEY

# the request of each exchange's snapshot that answers the positions
POSITIONS_READ = {
    "binanceusdm": "/fapi/v3/positionRisk",
    "bybit": "/v5/position/list",
    "okx": "/api/v5/account/positions",
}
ETH = "ETH/USDT:USDT"


def contracts(feed: AccountFeed) -> D | None:
    held = feed.state.positions.get((BTC, Side.LONG))
    return None if held is None else held.contracts


def stop_symbols(feed: AccountFeed) -> set[str]:
    return {s.symbol for s in feed.state.stops or ()}


def reads(fake: FakeExchangeServer[Any, Any], path: str) -> int:
    return sum(p == path for _, p in fake.requests)


@asynccontextmanager
async def long_half_btc(
    exchange: str,
) -> AsyncIterator[tuple[FakeExchangeServer[Any, Any], AccountFeed]]:
    """``exchange``'s local server with one account long 0.5 BTC at 60,000, its feed streaming
    and the start's own snapshots (the bootstrap's and the settle resync's) landed."""
    async with with_one_account(make_fake(exchange)) as fake:
        fake.set_mark(BTC, "60000")
        fake.open_position(KEY, BTC, "long", "0.5", "60000")
        keys = secrets(KEY, SECRET)
        if exchange == "okx":
            keys["password"] = Secret(fake.PASSPHRASE)
        feed = AccountFeed(account_config("a", exchange, fake), keys, FAST, FAST_OPTIONS)
        feed.reconcile_interval_s = 3600.0  # no read of the fill's (COIN-M only) either
        async with streaming(feed):
            await eventually(
                lambda: (
                    reads(fake, POSITIONS_READ[exchange]) >= 2 and not feed._resync_lock.locked()
                ),
                what="the start's settle resync",
            )
            assert contracts(feed) == D("0.5")
            yield fake, feed


@pytest.mark.parametrize("exchange", sorted(POSITIONS_READ))
def test_a_position_pushed_during_the_snapshot_s_read_survives_it(exchange: str) -> None:
    """A reconcile's positions answer is held; the long is raised to 0.8 BTC and pushed
    meanwhile. Once the answer (0.5: as of its request) lands, the account holds 0.8, not the
    snapshot's 0.5 until the next push or reconcile (before: 0.5)."""

    async def body() -> None:
        async with long_half_btc(exchange) as (fake, feed):
            fake.hold_rest(POSITIONS_READ[exchange])
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the positions read held")
            fake.open_position(KEY, BTC, "long", "0.8", "60000")
            await eventually(lambda: contracts(feed) == D("0.8"), what="the push")
            fake.release_rest()
            await reconcile
            assert feed.state.fatal is None
            assert contracts(feed) == D("0.8")

    run(body())


def test_binance_wallet_pushed_during_the_snapshot_s_read_survives_it() -> None:
    """Binance USD-M: the account answer of a reconcile (Account Information V2, the wallet)
    is held; a deposit raises the wallet from 10,000 to 12,345 USDT and is pushed meanwhile
    (ACCOUNT_UPDATE, ``a.B[].cw``). The snapshot's 10,000 does not replace it (before: it
    did, until the next balance push or reconcile)."""

    async def body() -> None:
        async with long_half_btc("binanceusdm") as (fake, feed):
            fake.hold_rest("/fapi/v2/account")
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the account read held")
            fake.set_balance(KEY, "12345")
            await eventually(lambda: feed.state.wallet_balance == 12345, what="the push")
            fake.release_rest()
            await reconcile
            assert feed.state.fatal is None
            assert feed.state.wallet_balance == 12345

    run(body())


def test_binance_a_position_pushed_during_the_snapshot_s_read_has_its_stop_read() -> None:
    """Binance USD-M reads the open stop orders per held symbol. A stop is placed on ETH
    before any ETH position; a reconcile that reads the stops has its positions answer (BTC
    only) held while an ETH long is opened and pushed. Once the reconcile landed, the ETH
    long is held (applied again over the snapshot) and its stop known (before: the
    snapshot's stop read, of BTC only, overtook the one the push made: "no stop-loss" on
    ETH until the next reconcile read them)."""

    async def body() -> None:
        async with long_half_btc("binanceusdm") as (fake, feed):
            fake.set_mark(ETH, "3400")
            fake.add_stop(KEY, ETH, "long", "3000")  # placed before the position
            # every reconcile reads the stops (with the order stream up, every n-th)
            feed.settings = feed.settings.model_copy(update={"stops_reconcile_every": 1})
            fake.hold_rest(POSITIONS_READ["binanceusdm"])
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the positions read held")
            fake.open_position(KEY, ETH, "long", "1", "3400")
            await eventually(
                lambda: ETH in stop_symbols(feed), what="the push and its own stop read"
            )
            fake.release_rest()
            await reconcile
            assert feed.state.fatal is None
            assert (ETH, Side.LONG) in feed.state.positions
            assert stop_symbols(feed) == {ETH}

    run(body())


def test_binance_a_snapshot_failing_after_its_read_keeps_the_pushes_of_its_read() -> None:
    """Binance USD-M in multi-assets mode with an ETH coin, whose mark (no ETH position held)
    the snapshot reads over REST (``GET /fapi/v1/premiumIndex``), and that read fails (503).
    Its positions answer (0.5 BTC) held while the long is raised to 0.8 BTC and pushed: the
    failed reconcile leaves 0.8 (before: the snapshot's 0.5 was written before that read
    failed, and the push was never applied again: 0.5 until the next snapshot)."""

    async def body() -> None:
        async with long_half_btc("binanceusdm") as (fake, feed):
            fake.set_mark(ETH, "3400")
            fake.set_asset_index("ETH", "3400", "0.06", "0.06", follows=ETH)
            fake.set_multi_assets_coins(KEY, {"ETH": "0.5"})  # a transfer in: a new coin
            fake.fail_rest(503, path_prefix="/fapi/v1/premiumIndex")
            fake.hold_rest(POSITIONS_READ["binanceusdm"])
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the positions read held")
            fake.open_position(KEY, BTC, "long", "0.8", "60000")
            await eventually(lambda: contracts(feed) == D("0.8"), what="the push")
            fake.release_rest()
            await reconcile  # logged: "reconcile failed"
            assert reads(fake, "/fapi/v1/premiumIndex") == 1  # the read that failed
            assert feed.state.fatal is None
            assert contracts(feed) == D("0.8")

    run(body())


# what stamps a position's push and its REST row alike
STAMPED_BY = {"binanceusdm": "E / updateTime", "bybit": "updatedTime"}


@pytest.mark.parametrize("exchange", sorted(STAMPED_BY))
def test_a_push_older_than_the_snapshot_does_not_roll_it_back(exchange: str) -> None:
    """The account's pushes are delivered late (held by the local exchange, stamped as made:
    :data:`STAMPED_BY`): the long goes to 0.6, 0.7 and 0.8 BTC, one push each. A reconcile
    reads 0.8 (its row stamped by the 0.8 fill). The 0.6 push arrives during that read and the
    0.7 push after it landed: neither rolls the account back from 0.8 (before, the 0.7 push
    set it back to 0.7 until the next push; a replay blind to the stamps, the 0.6 push)."""

    async def body() -> None:
        async with long_half_btc(exchange) as (fake, feed):
            fake.delay_pushes(KEY)
            for size in ("0.6", "0.7", "0.8"):
                fake.open_position(KEY, BTC, "long", size, "60000")
                await asyncio.sleep(0.01)  # each fill its own millisecond
            fake.hold_rest(POSITIONS_READ[exchange])
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the positions read held")

            def delivered() -> float | None:
                return feed.state.last_seen.get((Stream.POSITIONS, ""))

            seen = delivered()
            fake.release_pushes(KEY, 1)  # the 0.6 push, during the read
            await eventually(lambda: delivered() != seen, what="the 0.6 push")
            assert contracts(feed) == D("0.6")  # nothing newer known yet: applied
            fake.release_rest()
            await reconcile
            assert contracts(feed) == D("0.8")
            seen = delivered()
            fake.release_pushes(KEY, 1)  # the 0.7 push, after the read landed
            await eventually(lambda: delivered() != seen, what="the 0.7 push")
            assert contracts(feed) == D("0.8")
            seen = delivered()
            fake.release_pushes(KEY)  # the 0.8 push: the same fill as the snapshot's
            await eventually(lambda: delivered() != seen, what="the 0.8 push")
            assert contracts(feed) == D("0.8")
            assert feed.state.fatal is None

    run(body())


@asynccontextmanager
async def coin_m_300_settled() -> AsyncIterator[tuple[FakeBinanceUSDM, AccountFeed]]:
    """:func:`coin_m_300` (a portfolio margin account's COIN-M long of 300 BTCUSD_PERP,
    streaming) once the start's own snapshots landed; no reconcile but the test's."""
    async with coin_m_300() as (fake, feed):
        feed.reconcile_interval_s = 3600.0
        await eventually(
            lambda: reads(fake, "/papi/v1/cm/positionRisk") >= 2 and not feed._resync_lock.locked(),
            what="the start's settle resync",
        )
        yield fake, feed


def push_cm_long(fake: FakeBinanceUSDM, size: str) -> None:
    """The COIN-M long of BTCUSD_PERP set to ``size`` contracts at 60,000 and pushed."""
    fake.open_cm_position(PM_KEY, "BTCUSD_PERP", size, "60000", "45000")
    row = {"s": "BTCUSD_PERP", "pa": size, "ep": "60000", "cr": "0", "up": "0",
           "mt": "cross", "iw": "0", "ps": "BOTH"}  # fmt: skip
    fake.push_cm_position_update(PM_KEY, row)


def test_binance_portfolio_coin_m_add_pushed_during_the_snapshot_s_read_survives_it() -> None:
    """Binance portfolio margin, the case of session 13: the COIN-M long of 300 BTCUSD_PERP,
    a reconcile's COIN-M positions answer held (300) while an add to 301 is pushed
    (ACCOUNT_UPDATE ``fs`` CM). An add triggers no read: before, the snapshot's 300 stood
    until the next reconcile (minutes), with the moved PnL and requirement of 300."""

    async def body() -> None:
        async with coin_m_300_settled() as (fake, feed):
            state = feed.state
            assert [p.contracts for p in state.listed_positions] == [300]
            fake.hold_rest("/papi/v1/cm/positionRisk")
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the COIN-M read held")
            push_cm_long(fake, "301")
            await eventually(
                lambda: [p.contracts for p in state.listed_positions] == [301], what="the push"
            )
            fake.release_rest()
            await reconcile
            assert feed.state.fatal is None
            (listed,) = state.listed_positions
            assert (listed.symbol, listed.contracts) == (COIN_M_BTC, 301)
            # the snapshot's own reading of it stays what it read: the push moves from there
            assert [p.contracts for p in state.listed_as_read] == [300]

    run(body())


def test_binance_portfolio_coin_m_push_older_than_the_snapshot_does_not_roll_it_back() -> None:
    """The portfolio margin account's pushes delivered late: the COIN-M long goes to 301 and
    302 contracts, one push each (ACCOUNT_UPDATE ``fs`` CM, stamped ``E`` as made). A
    reconcile reads 302 (its row's ``updateTime`` the 302 fill's); the 301 push, arriving
    after it, does not roll the listed position back (before: 301 until the next push)."""

    async def body() -> None:
        async with coin_m_300_settled() as (fake, feed):
            state = feed.state
            fake.delay_pushes(PM_KEY)
            for size in ("301", "302"):
                push_cm_long(fake, size)
                await asyncio.sleep(0.01)  # each fill its own millisecond
            await feed.reconcile()
            assert [p.contracts for p in state.listed_positions] == [302]
            seen: list[list[D]] = []  # the listed sizes at every change told from here
            feed.listeners.append(
                lambda f, change, symbol: seen.append([p.contracts for p in state.listed_positions])
            )
            fake.push_margin_call(PM_KEY)  # held behind them: its arrival says they came
            fake.release_pushes(PM_KEY)  # the 301 push, late, then the 302 one
            await eventually(lambda: state.events, what="the pushes after the snapshot")
            assert [301] not in seen, seen
            assert [p.contracts for p in state.listed_positions] == [302]
            assert feed.state.fatal is None

    run(body())
