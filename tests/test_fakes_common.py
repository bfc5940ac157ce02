"""What every local exchange does the same way, through ccxt's own unmodified client: a
dropped connection fails the pending watch with ccxt's NetworkError and the next watch dials
again; unanswered pings time the stream out (ccxt's keepalive) and answered ones bring it back;
paused marks go quiet. Each exchange's mark is read the way alertd reads it (its adapter's
``watch_mark``), so every test runs the stream alertd depends on.

Every wait is bounded; a mark pushed while a subscription is still being set up could be
missed, so it is pushed again until the watch has it, as a live exchange's ticking marks are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from alertd.exchanges.registry import get_spec
from tests.fake_exchange.base import FakeExchangeServer
from tests.fake_exchange.okx import FakeOKX
from tests.support.aio import run, settle, spawn
from tests.support.fakes import FAKES, ccxt_client, make_fake, started
from tests.support.poll import eventually

KEY, SECRET = "key-c", "secret-c"
WALLET = "0x" + "7c" * 20
TEST_TIMEOUT_S = 40.0
WAIT_S = 10.0  # a bound for each wait; a loaded machine only makes it slower
KEEPALIVE_MS = 250  # ccxt pings this often and gives up after two missed pongs

Fake = FakeExchangeServer[Any, Any]
Watch = Callable[[], Awaitable[Decimal]]

# how ccxt is given each exchange's account: (API key or wallet address, client config)
CLIENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "binanceusdm": (KEY, {}),
    # ccxt's own throttle spaces bybit's load_markets requests; the fake has no limits
    "bybit": (KEY, {"enableRateLimit": False}),
    "gate": (KEY, {"options": {"defaultType": "swap"}}),
    "okx": (KEY, {"password": FakeOKX.PASSPHRASE}),
    "hyperliquid": (WALLET, {"walletAddress": WALLET}),
}


def every_exchange() -> list[Any]:
    return [pytest.param(exchange, id=exchange) for exchange in sorted(FAKES)]


def test_every_fake_is_covered() -> None:
    assert set(CLIENTS) == set(FAKES)


def btc(exchange: str) -> str:
    settle_coin = get_spec(exchange).markets.settle
    return f"BTC/{settle_coin}:{settle_coin}"


@contextlib.asynccontextmanager
async def connected(exchange: str, **fake_options: Any) -> AsyncIterator[tuple[Fake, Any, Watch]]:
    """A started fake with one account, a ccxt client on it (pinging every ``KEEPALIVE_MS``),
    and the watch of BTC's mark as alertd's adapter reads it."""
    key, config = CLIENTS[exchange]
    fake = make_fake(exchange, **fake_options)
    secret = None if exchange == "hyperliquid" else SECRET
    async with (
        started(fake, [(key, SECRET, "10000")]),
        ccxt_client(fake, exchange, None if secret is None else key, secret, **config) as client,
    ):
        client.streaming["keepAlive"] = KEEPALIVE_MS
        adapter = get_spec(exchange).adapter
        assert adapter is not None
        reader = adapter()
        symbol = btc(exchange)
        yield fake, client, lambda: reader.watch_mark(client, symbol)


async def mark_seen(fake: Fake, exchange: str, watch: Watch, price: str) -> None:
    """Move BTC's mark and push it until a watch returns it."""
    pending = spawn(watch())
    for _ in range(int(WAIT_S / 0.1)):
        fake.set_mark(btc(exchange), price)
        done, _ = await asyncio.wait({pending}, timeout=0.1)
        if done:
            break
    assert await settle(pending, WAIT_S) == Decimal(price)


@pytest.mark.parametrize("exchange", every_exchange())
def test_a_dropped_connection_fails_the_pending_watch_and_the_next_watch_dials_again(
    exchange: str,
) -> None:
    async def body() -> None:
        async with connected(exchange) as (fake, _client, watch):
            await mark_seen(fake, exchange, watch, "61000")
            dialled = fake.ws_connections
            pending = spawn(watch())
            await fake.drop_connections()
            with pytest.raises(ccxt.NetworkError):
                await settle(pending, WAIT_S)
            await eventually(lambda: not fake.subscriptions(), what="subscriptions gone")
            await mark_seen(fake, exchange, watch, "62000")  # a new dial, a new subscribe
            assert fake.ws_connections > dialled

    run(body, TEST_TIMEOUT_S)


@pytest.mark.parametrize("exchange", every_exchange())
def test_unanswered_pings_time_the_stream_out(exchange: str) -> None:
    async def body() -> None:
        async with connected(exchange) as (fake, _client, watch):
            await mark_seen(fake, exchange, watch, "61000")
            pending = spawn(watch())
            await asyncio.sleep(KEEPALIVE_MS * 3 / 1000)  # pings answered: the stream lives
            assert not pending.done()
            fake.stop_answering_pings()
            with pytest.raises(ccxt.RequestTimeout):
                await settle(pending, WAIT_S)
            fake.stop_answering_pings(False)
            await mark_seen(fake, exchange, watch, "62000")

    run(body, TEST_TIMEOUT_S)


@pytest.mark.parametrize("exchange", every_exchange())
def test_paused_marks_go_quiet(exchange: str) -> None:
    async def body() -> None:
        async with connected(exchange, mark_interval_s=0.05) as (fake, _client, watch):
            await mark_seen(fake, exchange, watch, "61000")
            fake.marks_paused = True
            await asyncio.sleep(0.2)  # a push already queued may still arrive
            pending = spawn(watch())
            await asyncio.sleep(0.3)
            assert not pending.done()
            fake.set_mark(btc(exchange), "61500", push=False)  # the next periodic push has it
            fake.marks_paused = False
            assert await settle(pending, WAIT_S) == Decimal("61500")

    run(body, TEST_TIMEOUT_S)
