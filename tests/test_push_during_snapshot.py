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
import time
from collections.abc import AsyncIterator, Mapping
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
from .support.fakes import KEY, SECRET, make_fake, started
from .support.feeds import BTC, FAST, FAST_OPTIONS, account_config, secrets, streaming
from .support.poll import eventually
from .test_account_modes import COIN_M_BTC, coin_m_300
from .test_account_modes import KEY as PM_KEY

# the request of each exchange's snapshot that answers the positions: its path, and what its
# body holds where requests share one path (Hyperliquid's info endpoint)
POSITIONS_READ: dict[str, tuple[str, str | None]] = {
    "binanceusdm": ("/fapi/v3/positionRisk", None),
    "bybit": ("/v5/position/list", None),
    "gate": ("/futures/usdt/positions", None),
    "hyperliquid": ("/info", '"clearinghouseState"'),
    "okx": ("/api/v5/account/positions", None),
}
ETH = "ETH/USDT:USDT"
# Hyperliquid's account is its wallet address; its perpetuals settle in USDC
ADDRESS = "0x" + "5c" * 20
HL_BTC = "BTC/USDC:USDC"


def key_of(exchange: str) -> str:
    return ADDRESS if exchange == "hyperliquid" else KEY


def btc_of(exchange: str) -> str:
    return HL_BTC if exchange == "hyperliquid" else BTC


def hold_positions(fake: FakeExchangeServer[Any, Any], exchange: str) -> None:
    """Hold the answer of the next positions read of ``exchange``'s snapshot."""
    fake.hold_rest(*POSITIONS_READ[exchange])


def contracts(feed: AccountFeed) -> D | None:
    held = feed.state.positions.get((btc_of(feed.config.exchange), Side.LONG))
    return None if held is None else held.contracts


def stop_symbols(feed: AccountFeed) -> set[str]:
    return {s.symbol for s in feed.state.stops or ()}


def reads(fake: FakeExchangeServer[Any, Any], path: str) -> int:
    return sum(p.endswith(path) for _, p in fake.requests)


@asynccontextmanager
async def long_half_btc(
    exchange: str, listed: Mapping[str, str] | None = None, *, hedge: bool = False
) -> AsyncIterator[tuple[FakeExchangeServer[Any, Any], AccountFeed]]:
    """``exchange``'s local server with one account long 0.5 BTC at 60,000 (a hedge-mode leg
    where ``hedge``), its feed streaming and the start's own snapshots (the bootstrap's and
    the settle resync's) landed; the markets ``listed`` (symbol: mark) listed beside its
    default ones before it starts."""
    key, btc = key_of(exchange), btc_of(exchange)
    # marks ticking on their own, as live ones do (the feeds' staleness is a second)
    async with started(make_fake(exchange, mark_interval_s=0.2), [(key, SECRET, "10000")]) as fake:
        for symbol, mark in (listed or {}).items():
            fake.add_symbol(symbol, mark)
        fake.set_mark(btc, "60000")
        fake.open_position(key, btc, "long", "0.5", "60000", hedge=hedge)
        keys = secrets(KEY, SECRET)
        extra: dict[str, Any] = {}
        if exchange == "okx":
            keys["password"] = Secret(fake.PASSPHRASE)
        if exchange == "hyperliquid":  # read by its address, no keys
            keys, extra = {}, {"wallet_address": key}
        config = account_config("a", exchange, fake, **extra)
        feed = AccountFeed(config, keys, FAST, FAST_OPTIONS)
        feed.reconcile_interval_s = 3600.0  # no read of the fill's (COIN-M only) either
        path, _ = POSITIONS_READ[exchange]
        # Hyperliquid's snapshot reads the perpetuals state twice (positions, then balance)
        start_reads = 4 if exchange == "hyperliquid" else 2
        async with streaming(feed):
            await eventually(
                lambda: reads(fake, path) >= start_reads and not feed._resync_lock.locked(),
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
            hold_positions(fake, exchange)
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the positions read held")
            fake.open_position(key_of(exchange), btc_of(exchange), "long", "0.8", "60000")
            await eventually(lambda: contracts(feed) == D("0.8"), what="the push")
            fake.release_rest()
            await reconcile
            assert feed.state.fatal is None
            assert contracts(feed) == D("0.8")

    run(body())


# the request of each exchange's snapshot that answers the wallet, as POSITIONS_READ, and how
# many such requests of the snapshot come before it (the account mode's read; Hyperliquid's
# positions, read from the same perpetuals state)
WALLET_READ: dict[str, tuple[str, str | None, int]] = {
    "binanceusdm": ("/fapi/v2/account", None, 0),
    "bybit": ("/v5/account/wallet-balance", None, 0),
    "gate": ("/futures/usdt/accounts", None, 1),
    "hyperliquid": ("/info", '"clearinghouseState"', 1),
    "okx": ("/api/v5/account/balance", None, 0),
}


@pytest.mark.parametrize("exchange", sorted(WALLET_READ))
def test_a_wallet_pushed_during_the_snapshot_s_read_survives_it(exchange: str) -> None:
    """The wallet answer of a reconcile is held (:data:`WALLET_READ`); a deposit raises the
    wallet from 10,000 to 12,345 and is pushed meanwhile (Binance ``ACCOUNT_UPDATE``
    ``a.B[].cw``, Bybit ``wallet``, OKX ``account``, Gate ``futures.balances``, Hyperliquid
    ``clearinghouseState``). The snapshot's 10,000 does not replace it (Binance before race14:
    it did, until the next balance push or reconcile)."""

    async def body() -> None:
        async with long_half_btc(exchange) as (fake, feed):
            fake.hold_rest(*WALLET_READ[exchange])
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the wallet read held")
            fake.set_balance(key_of(exchange), "12345")
            await eventually(lambda: feed.state.wallet_balance == 12345, what="the push")
            fake.release_rest()
            await reconcile
            assert feed.state.fatal is None
            assert feed.state.wallet_balance == 12345

    run(body())


# a symbol whose stops the snapshot's own read leaves out until a position is held in it:
# Binance reads them per held symbol, Bybit per settle coin held (a USDC perpetual beside the
# USDT ones: "Get Open & Closed Orders" by ``settleCoin``); and the read of the snapshot held
# while the position is opened: one after the positions' (Bybit lists a settle coin pushed
# before its positions read is done: calm14), before the stops'
STOPS_READ_APART = {
    "binanceusdm": (ETH, "3400", POSITIONS_READ["binanceusdm"]),
    "bybit": ("BTC/USDC:USDC", "60000", ("/v5/account/wallet-balance", None)),
}


@pytest.mark.parametrize("exchange", sorted(STOPS_READ_APART))
def test_a_position_pushed_during_the_snapshot_s_read_has_its_stop_read(exchange: str) -> None:
    """A stop is placed on a symbol the account holds nothing of and whose stops its snapshot
    does not read (:data:`STOPS_READ_APART`); a reconcile that reads the stops has a read
    after its positions answer (the BTC/USDT long only) held while a long in that symbol is
    opened and pushed. Once the reconcile landed, the long is held (applied again over the
    snapshot) and its stop known (before fixrace14: the snapshot's stop read, of its own
    symbols or settle coins, overtook the one the push made: "no stop-loss" until the next
    reconcile read them). Bybit: proven since race15."""
    symbol, mark, held_read = STOPS_READ_APART[exchange]

    async def body() -> None:
        async with long_half_btc(exchange, {symbol: mark}) as (fake, feed):
            fake.add_stop(KEY, symbol, "long", str(int(D(mark) * D("0.9"))))  # before it
            # every reconcile reads the stops (with the order stream up, every n-th)
            feed.settings = feed.settings.model_copy(update={"stops_reconcile_every": 1})
            fake.hold_rest(*held_read)
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the read held")
            fake.open_position(KEY, symbol, "long", "1", mark)
            await eventually(
                lambda: symbol in stop_symbols(feed), what="the push and its own stop read"
            )
            fake.release_rest()
            await reconcile
            assert feed.state.fatal is None
            assert (symbol, Side.LONG) in feed.state.positions
            assert stop_symbols(feed) == {symbol}

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
            hold_positions(fake, "binanceusdm")
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
STAMPED_BY = {
    "binanceusdm": "E / updateTime",
    "bybit": "updatedTime",
    # within one life of the position: the push's time_ms, the row's update_time and open_time
    "gate": "update_id",
    # "uTime", "Latest time position was adjusted" (the fill's), on both sides
    "okx": "uTime",
}

# the private frames the local exchange pushes for one fill, in order: OKX's ``positions``
# channel, then its ``account`` channel (two channels, two frames); one elsewhere
FRAMES_PER_FILL = {"okx": 2}


def frames_of_one_fill(exchange: str) -> int:
    return FRAMES_PER_FILL.get(exchange, 1)


async def next_wall_second() -> None:
    """Wait until the wall clock's second turns (Gate stamps a REST row's update and its
    position's opening in seconds: an update in a later second than the opening is surely of
    the life it opened, and its ``update_id`` orders it; bounded)."""
    second = int(time.time())
    for _ in range(100):
        if int(time.time()) > second:
            return
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("exchange", sorted(STAMPED_BY))
def test_a_push_older_than_the_snapshot_does_not_roll_it_back(exchange: str) -> None:
    """The account's pushes are delivered late (held by the local exchange, stamped as made:
    :data:`STAMPED_BY`): the long goes to 0.6, 0.7 and 0.8 BTC, one push each. A reconcile
    reads 0.8 (its row stamped by the 0.8 fill). The 0.6 push arrives during that read and the
    0.7 push after it landed: neither rolls the account back from 0.8 (before, the 0.7 push
    set it back to 0.7 until the next push; a replay blind to the stamps, the 0.6 push)."""

    async def body() -> None:
        async with long_half_btc(exchange) as (fake, feed):
            await next_wall_second()  # the fills in a later second than the opening (Gate)
            fake.delay_pushes(KEY)
            for size in ("0.6", "0.7", "0.8"):
                fake.open_position(KEY, BTC, "long", size, "60000")
                await asyncio.sleep(0.01)  # each fill its own millisecond
            hold_positions(fake, exchange)
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the positions read held")

            def delivered() -> float | None:
                return feed.state.last_seen.get((Stream.POSITIONS, ""))

            seen = delivered()
            fake.release_pushes(KEY, frames_of_one_fill(exchange))  # the 0.6 push, during the read
            await eventually(lambda: delivered() != seen, what="the 0.6 push")
            assert contracts(feed) == D("0.6")  # nothing newer known yet: applied
            fake.release_rest()
            await reconcile
            assert contracts(feed) == D("0.8")
            seen = delivered()
            fake.release_pushes(KEY, frames_of_one_fill(exchange))  # the 0.7 push, after it landed
            await eventually(lambda: delivered() != seen, what="the 0.7 push")
            assert contracts(feed) == D("0.8")
            seen = delivered()
            fake.release_pushes(KEY)  # the 0.8 push: the same fill as the snapshot's
            await eventually(lambda: delivered() != seen, what="the 0.8 push")
            assert contracts(feed) == D("0.8")
            assert feed.state.fatal is None

    run(body())


def test_okx_a_late_push_of_a_position_the_read_does_not_list_does_not_reopen_it() -> None:
    """OKX, the account's pushes delivered late: a 5 ETH long is opened and closed, then a
    reconcile reads no ETH position (its positions answer lists open positions only: no row,
    no stamp of ETH to hold the late push against). The open's push arrives after the read
    landed: made before the balance answer read first was taken (the account's ``uTime``,
    read before the positions), it is older than the read, and dropped; no ETH long held
    (before okx17: applied, the closed 5 ETH long held until its close's push or the next
    read). The close's push, older too, changes nothing."""

    async def body() -> None:
        async with long_half_btc("okx", {ETH: "3400"}) as (fake, feed):
            fake.delay_pushes(KEY)
            fake.open_position(KEY, ETH, "long", "5", "3000")
            await asyncio.sleep(0.01)  # each its own millisecond
            fake.close_position(KEY, ETH)
            await asyncio.sleep(0.01)
            await feed.reconcile()
            assert (ETH, Side.LONG) not in feed.state.positions

            def delivered() -> float | None:
                return feed.state.last_seen.get((Stream.POSITIONS, ""))

            seen, read = delivered(), reads(fake, POSITIONS_READ["okx"][0])
            fake.release_pushes(KEY, frames_of_one_fill("okx"))  # the open's, late
            await eventually(lambda: delivered() != seen, what="the open's push")
            assert (ETH, Side.LONG) not in feed.state.positions
            seen = delivered()
            fake.release_pushes(KEY)  # the close's
            await eventually(lambda: delivered() != seen, what="the close's push")
            assert (ETH, Side.LONG) not in feed.state.positions
            # the dropped open asks a read (it might be of a position a lagging positions
            # answer missed: the next test), which lists no ETH either
            await eventually(
                lambda: (
                    reads(fake, POSITIONS_READ["okx"][0]) > read and not feed._resync_lock.locked()
                ),
                what="the read the dropped push asks",
            )
            assert (ETH, Side.LONG) not in feed.state.positions
            assert contracts(feed) == D("0.5")
            assert feed.state.fatal is None

    run(body())


def test_okx_a_push_of_a_position_a_lagging_positions_answer_missed_is_read_at_once() -> None:
    """OKX documents no ordering between its balance and positions answers: a positions
    answer served a little behind (a replica) can miss a 5 ETH long opened just before the
    balance answer was taken. Its push, delivered after the read, is older than the balance's
    ``uTime`` and dropped as the late push of a closed position is; a read is then asked at
    once (the settle delay), which lists the long: held. Before: hidden until the next
    reconcile (an hour here, 60 s by default) or the long's next adjustment (OKX's regular
    pushes of it carry the same ``uTime``): a lost alert (review of okx17, 1; its probe)."""

    async def body() -> None:
        async with long_half_btc("okx", {ETH: "3400"}) as (fake, feed):
            path, _ = POSITIONS_READ["okx"]
            fake.delay_pushes(KEY)
            fake.open_position(KEY, ETH, "long", "5", "3000")
            await asyncio.sleep(0.01)  # the balance answer's uTime a later millisecond
            fake.lag_positions(KEY, ETH)  # the next positions answer has not seen it yet
            await feed.reconcile()
            assert (ETH, Side.LONG) not in feed.state.positions
            read = reads(fake, path)
            fake.release_pushes(KEY)  # the open's push, late
            # the feed's own bound: one read after the settle delay (a fifth of a second here)
            await eventually(lambda: reads(fake, path) > read, what="a read for the push")
            await eventually(lambda: (ETH, Side.LONG) in feed.state.positions, what="the long held")
            assert feed.state.positions[(ETH, Side.LONG)].contracts == D(5)
            assert contracts(feed) == D("0.5")
            assert feed.state.fatal is None

    run(body())


@pytest.mark.parametrize("during_read", [False, True], ids=["streaming", "during-a-read"])
def test_gate_a_position_closed_and_reopened_is_held_reopened(during_read: bool) -> None:
    """Gate's position ``update_id`` may be numbered afresh in each life of the position (no
    source says it runs on; the local Gate counts each life from 1). The long of 0.5 BTC is
    raised to 0.7 (update 3 of its life, in a later second than its opening), closed (4) and
    opened again at 0.3 (1 of the new life), each pushed; ``during_read``: while a reconcile's
    positions answer (0.7, update 3) is held, then lands with the pushes applied again over it.
    The account holds 0.3 (before: the reopening's push, 1 against the close's 4, was dropped
    as older: no position until the next reconcile)."""

    async def body() -> None:
        async with long_half_btc("gate") as (fake, feed):
            await next_wall_second()
            for size in ("0.6", "0.7"):
                fake.open_position(KEY, BTC, "long", size, "60000")
            await eventually(lambda: contracts(feed) == D("0.7"), what="the 0.7 push")
            if during_read:
                hold_positions(fake, "gate")
                reconcile = asyncio.create_task(feed.reconcile())
                await eventually(lambda: fake.held_answers() == 1, what="the positions read held")
            fake.close_position(KEY, BTC)
            await eventually(lambda: contracts(feed) is None, what="the close")
            fake.open_position(KEY, BTC, "long", "0.3", "60000")
            await eventually(lambda: contracts(feed) == D("0.3"), what="the reopening's push")
            if during_read:
                fake.release_rest()
                await reconcile
            assert feed.state.fatal is None
            assert contracts(feed) == D("0.3")

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
