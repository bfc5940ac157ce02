"""Starting the fake exchanges, by ccxt id, and pointing ccxt clients at them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

import ccxt.pro as ccxtpro

from tests.fake_exchange.base import FakeExchangeServer, Num
from tests.fake_exchange.binance import FakeBinanceUSDM
from tests.fake_exchange.bybit import FakeBybit
from tests.fake_exchange.gate import FakeGate
from tests.fake_exchange.hyperliquid import FakeHyperliquid
from tests.fake_exchange.okx import FakeOKX
from tests.support.aio import settle
from tests.support.poll import eventually

# the fake exchange server of each ccxt exchange id
FAKES: dict[str, type[FakeExchangeServer[Any, Any]]] = {
    "binanceusdm": FakeBinanceUSDM,
    "bybit": FakeBybit,
    "gate": FakeGate,
    "hyperliquid": FakeHyperliquid,
    "okx": FakeOKX,
}

F = TypeVar("F", bound=FakeExchangeServer[Any, Any])
Accounts = Iterable[tuple[str, str, Num]]  # (api key, secret, wallet balance)
# the credentials of the one account a fake exchange test starts with
KEY, SECRET = "test-key", "test-secret"


def make_fake(exchange: str, **kwargs: Any) -> FakeExchangeServer[Any, Any]:
    try:
        return FAKES[exchange](**kwargs)
    except KeyError:
        raise ValueError(f"no fake exchange for {exchange!r}; known: {sorted(FAKES)}") from None


def _add_accounts(fake: FakeExchangeServer[Any, Any], accounts: Accounts) -> None:
    for api_key, secret, wallet in accounts:
        fake.add_account(api_key, secret, wallet_balance=wallet)


@contextlib.asynccontextmanager
async def started(fake: F, accounts: Accounts = ()) -> AsyncIterator[F]:
    """Serve ``fake`` on this loop with ``accounts`` until the block ends."""
    await fake.start()
    try:
        _add_accounts(fake, accounts)
        yield fake
    finally:
        await fake.stop()


def with_one_account(fake: F, wallet: Num = "10000") -> contextlib.AbstractAsyncContextManager[F]:
    """``started`` with one account (``KEY``, ``SECRET``) holding ``wallet``."""
    return started(fake, [(KEY, SECRET, wallet)])


@contextlib.contextmanager
def server_in_thread(fake: F, accounts: Accounts = ()) -> Iterator[F]:
    """Serve ``fake`` on its own loop in a thread, for tests that start alertd processes or
    block; scripting it from the test's thread is handed to that loop."""
    loop = asyncio.new_event_loop()
    started_event = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        started_event.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not started_event.wait(10):
        raise RuntimeError("fake exchange did not start")
    try:
        _add_accounts(fake, accounts)
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()


@contextlib.asynccontextmanager
async def ccxt_client(
    fake: FakeExchangeServer[Any, Any],
    exchange: str,
    api_key: str | None = None,
    secret: str | None = None,
    *,
    keep_alive_ms: int | None = None,
    **config: Any,
) -> AsyncIterator[Any]:
    """ccxt.pro's own ``exchange`` client, unmodified, with only its URLs and the fake's
    options pointed at the fake; always closed. ``keep_alive_ms``: ccxt's websocket ping
    period (two missed pongs time a connection out)."""
    if api_key is not None:
        config.update(apiKey=api_key, secret=secret)
    if keep_alive_ms is not None:
        options = dict(config.get("options", {}))
        options["ws"] = {**options.get("ws", {}), "keepAlive": keep_alive_ms}
        config["options"] = options
    client = getattr(ccxtpro, exchange)(config)
    fake.apply_to(client)
    try:
        yield client
    finally:
        await client.close()


def btcusdt_linear_perpetual(markets: dict[str, Any]) -> dict[str, Any]:
    """The BTC/USDT:USDT market ccxt loaded from a fake that names it BTCUSDT (Binance, Bybit),
    checked to be the linear USDT-settled swap with a 0.1 price tick."""
    btc = markets["BTC/USDT:USDT"]
    assert (btc["id"], btc["type"], btc["linear"], btc["settle"]) == (
        "BTCUSDT",
        "swap",
        True,
        "USDT",
    )
    assert btc["precision"]["price"] == 0.1
    return btc


async def snapshot_then_opening(fake: Any, exchange: Any, btc_contracts: str, channel: str) -> Any:
    """ccxt's ``watch_positions`` on a fake: first its REST snapshot of a long of
    ``btc_contracts`` BTC, then the push (on the fake's ``channel``) of a 10 SOL isolated short
    opened while subscribed; returns that pushed position."""
    btc, sol = "BTC/USDT:USDT", "SOL/USDT:USDT"
    fake.open_position(KEY, btc, "long", btc_contracts, "64000")
    snapshot = await settle(exchange.watch_positions())  # ccxt's REST snapshot
    held = [(p["symbol"], p["side"], p["contracts"]) for p in snapshot]
    assert held == [(btc, "long", float(btc_contracts))]
    pending = asyncio.ensure_future(exchange.watch_positions())
    await eventually(lambda: channel in fake.subscriptions())
    fake.open_position(KEY, sol, "short", "10", "150", margin_mode="isolated")
    (opened,) = await settle(pending)
    assert (opened["symbol"], opened["side"], opened["contracts"]) == (sol, "short", 10)
    return opened
