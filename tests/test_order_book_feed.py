"""Order books for the gap-risk metrics: each exchange's order book endpoint, in its real wire
format, read through ccxt's own client (sizes in the position's units, depth bounded); the
shared poller fetches only the held symbols a rule covers, drops old books, and skips
malformed answers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from alertd.config import OrderBookSettings
from alertd.engine.orderbook import OrderBook
from alertd.exchanges.registry import get_spec
from alertd.feeds.adapter import FrameError, parse_order_book
from alertd.feeds.books import OrderBooks

from .support import inprocess
from .support.aio import run
from .support.fakes import FAKES, ccxt_client, make_fake, started
from .test_mark_dynamics import SYMBOLS, listed

D = Decimal
BASE = """version: 1
state_path: s.sqlite
accounts:
  - name: main
    exchange: hyperliquid
    wallet_address: "0xabc"
"""
ENDPOINTS = {
    "binanceusdm": "/fapi/v1/depth",
    "bybit": "/v5/market/orderbook",
    "okx": "/api/v5/market/books",
    "gate": "/api/v4/futures/usdt/order_book",
    "hyperliquid": "/info",
}
# a book of 30 levels a side around 50,000 (sizes in the exchange's unit; whole numbers, as
# Gate counts whole contracts)
BIDS = [(str(50_000 - 10 * k), str(k + 1)) for k in range(30)]
ASKS = [(str(50_010 + 10 * k), str(k + 1)) for k in range(30)]


@pytest.mark.parametrize("exchange", sorted(FAKES))
def test_each_exchange_s_order_book_through_ccxt(exchange: str) -> None:
    symbol = SYMBOLS.get(exchange, "BTC/USDT:USDT")
    depth = 10  # Hyperliquid serves 20 levels whatever is asked; the others the limit

    async def main() -> tuple[OrderBook, Decimal, set[str]]:
        async with started(make_fake(exchange)) as fake:
            if exchange == "gate":  # its own BTC_USDT: contracts of 0.0001 BTC
                fake.set_mark(symbol, "50000")
            else:
                listed(fake, symbol)
            fake.set_order_book(symbol, BIDS, ASKS)
            async with ccxt_client(fake, exchange) as client:
                await client.load_markets()
                size = D(str(client.markets[symbol].get("contractSize") or 1))
                adapter = get_spec(exchange).new_adapter()
                book = await adapter.fetch_order_book(client, symbol, depth)
            return book, size, {path for _, path in fake.requests}

    book, size, paths = run(main())
    assert ENDPOINTS[exchange] in paths
    if exchange in ("okx", "gate"):
        assert size < 1  # these count contracts of a fraction of a coin
    assert book.bids == tuple((D(p), D(s) * size) for p, s in BIDS[:depth])
    assert book.asks == tuple((D(p), D(s) * size) for p, s in ASKS[:depth])
    assert book.mid == D("50005")


def test_an_unset_book_is_empty_and_gives_no_figure() -> None:
    async def main() -> OrderBook:
        async with started(make_fake("bybit")) as fake:
            listed(fake, "BTC/USDT:USDT")
            async with ccxt_client(fake, "bybit") as client:
                adapter = get_spec("bybit").new_adapter()
                return await adapter.fetch_order_book(client, "BTC/USDT:USDT", 50)

    book = run(main())
    assert book.bids == book.asks == () and book.mid is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (None, "not an object"),
        ({"bids": "x", "asks": []}, "bids: not a list"),
        ({"bids": [["abc", "1"]], "asks": []}, "bids price: not a number"),
        ({"bids": [["1"]], "asks": []}, r"not \[price, amount\]"),
        ({"bids": [["-1", "1"]], "asks": []}, "a level of"),
        ({"bids": [["1", "NaN"]], "asks": []}, "not finite"),
        ({"bids": [["1", "1"], ["2", "1"]], "asks": []}, "descending"),
        ({"bids": [["2", "1"]], "asks": [["1", "1"]]}, "crossed"),
        ({"bids": [], "asks": None}, "asks: not a list"),
    ],
)
def test_a_malformed_book_is_a_frame_error(raw: Any, problem: str) -> None:
    with pytest.raises(FrameError, match=problem):
        parse_order_book(raw, D(1), 100)


def test_zero_levels_are_dropped_and_depth_is_bounded() -> None:
    raw = {"bids": [["3", "0"], ["2", "1"], ["1", "1"]], "asks": [["4", "2", "x"]]}
    book = parse_order_book(raw, D("0.01"), 1)
    assert book.bids == ()  # the first level is the only one read, and it is empty
    assert book.asks == ((D(4), D("0.02")),)


class Holder:
    """A mark subscriber as the hub sees an account's feed: its config names the account."""

    def __init__(self, name: str) -> None:
        self.config = SimpleNamespace(name=name)


def holder(name: str) -> Holder:
    return Holder(name)


def with_books(fake: Any, *symbols: str) -> None:
    """``symbols`` listed on the local exchange, each with the 30-level book."""
    for symbol in symbols:
        listed(fake, symbol)
        fake.set_order_book(symbol, BIDS, ASKS)


def poller(
    client: Any,
    exchange: str,
    holders: Callable[[], Mapping[str, Iterable[Any]]],
    settings: OrderBookSettings | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> OrderBooks:
    """The poller of a hub whose public exchange is ``client`` (ccxt's own, on the fake)."""

    async def ready() -> Any:
        await client.load_markets()
        return client

    return OrderBooks(
        "test books",
        exchange,
        ready,
        get_spec(exchange).new_adapter(),
        holders,
        settings or OrderBookSettings(),
        clock,
        asyncio.sleep,
    )


def test_the_poller_fetches_only_covered_held_symbols_and_drops_old_books(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exchange = "binanceusdm"
    btc, eth = "BTC/USDT:USDT", "ETH/USDT:USDT"
    clock = [0.0]  # the poller's monotonic clock, moved by the test
    holders: dict[str, set[Any]] = {btc: {holder("a")}, eth: {holder("b")}}

    def covers(account: str, exchange_id: str, symbol: str) -> bool:
        assert exchange_id == exchange
        return account == "a"  # a rule with accounts: [a]

    async def main() -> None:
        async with started(make_fake(exchange)) as fake:
            with_books(fake, btc, eth)
            async with ccxt_client(fake, exchange) as client:
                books = poller(
                    client,
                    exchange,
                    lambda: holders,
                    # the REST path (Binance streams its books where streaming is on)
                    OrderBookSettings(depth=20, interval_s=5, max_age_s=30, stream=False),
                    lambda: clock[0],
                )
                await books.refresh()  # no rule reads a book: nothing fetched
                assert books.books == {} and fake.book_requests == []
                books.covers = covers
                await books.refresh()
                assert set(books.books) == {btc}  # eth is held by b only: no rule covers it
                assert fake.book_requests == ["BTCUSDT"]
                assert len(books.books[btc].bids) == 20
                # the exchange stops answering: the book is kept until max_age, then dropped
                fake.fail_rest(503, 10, path_prefix="/fapi/v1/depth")
                clock[0] = 20
                with caplog.at_level(logging.WARNING):
                    await books.refresh()
                    assert btc in books.books
                    clock[0] = 31
                    await books.refresh()
                assert btc not in books.books
                failed = [r for r in caplog.records if "order book fetch failed" in r.message]
                assert len(failed) == 1  # once per run of failures, not every round
                assert any(
                    "no order book of BTC/USDT:USDT for 31s" in r.message for r in caplog.records
                )
                # answering again; then the holder closes: the book goes with the symbol
                caplog.set_level(logging.INFO)
                for _ in range(10):  # past the scripted failures left
                    await books.refresh()
                    if btc in books.books:
                        break
                assert btc in books.books
                assert any(
                    "order book of BTC/USDT:USDT read again" in r.message for r in caplog.records
                )
                del holders[btc]
                await books.refresh()
                assert books.books == {}

    run(main())


async def _until(what: Callable[[], bool], why: str, limit_s: float = 15.0) -> None:
    deadline = time.monotonic() + limit_s
    while not what():
        assert time.monotonic() < deadline, why
        await asyncio.sleep(0.02)


def test_binance_books_are_streamed_throttled_and_fall_back_to_rest() -> None:
    """Binance's diff depth stream through ccxt pro's own watch_order_book on the local
    server: subscribed for the covered held symbol only, synced to one REST snapshot, every
    change applied; the metrics' book replaced at most every ``stream_every_s``; no REST poll
    while the stream delivers, REST for a stream quiet for ``interval_s``; a broken connection
    caught up; unsubscribed once the symbol is no longer held."""
    exchange, btc, eth = "binanceusdm", "BTC/USDT:USDT", "ETH/USDT:USDT"
    holders: dict[str, set[Any]] = {btc: {holder("a")}, eth: {holder("b")}}
    moved = [(str(49_990 - 10 * k), "2") for k in range(30)]

    async def main() -> None:
        async with started(make_fake(exchange)) as fake:
            with_books(fake, btc, eth)
            # alertd's own ccxt options for Binance: the 500 ms diff stream
            options = dict(get_spec(exchange).ccxt_options)
            async with ccxt_client(fake, exchange, options=options) as client:
                settings = OrderBookSettings(depth=20, interval_s=5, stream_every_s=0.5)
                offset = [0.0]  # moves the poller's clock past interval_s

                def clock() -> float:
                    return time.monotonic() + offset[0]

                books = poller(client, exchange, lambda: holders, settings, clock)
                books.covers = lambda account, _e, _s: account == "a"
                await books.refresh()  # the stream starts; REST until it delivers
                assert books.watched == {btc} and fake.book_requests == ["BTCUSDT"]
                await _until(lambda: books.stream_updates >= 1, "the stream's first book")
                await fake.wait_for_subscription("btcusdt@depth@500ms")
                assert not any(s.startswith("ethusdt@depth") for s in fake.subscriptions())
                # ccxt synced its copy to one REST snapshot (the diff stream's start)
                assert fake.book_requests == ["BTCUSDT", "BTCUSDT"]
                assert books.books[btc].bids == tuple((D(p), D(q)) for p, q in BIDS[:20])
                # twenty changes in a burst: the stream merges them into an event per 500 ms,
                # ccxt applies each, alertd takes the book at most every stream_every_s, and
                # the last change arrives
                taken, events = books.stream_updates, fake.depth_events
                for k in range(1, 21):
                    fake.set_order_book(btc, [(p, str(k)) for p, _ in moved], ASKS)
                last = tuple((D(p), D(20)) for p, _ in moved[:20])
                await _until(lambda: books.books[btc].bids == last, "the last change streamed")
                assert 1 <= fake.depth_events - events < 20
                assert books.stream_updates - taken <= 5
                await books.refresh()
                assert fake.book_requests == ["BTCUSDT", "BTCUSDT"]  # no REST: streamed
                # a quiet stream (nothing within interval_s): REST stands in at the round
                offset[0] += 6
                await books.refresh()
                assert fake.book_requests == ["BTCUSDT"] * 3
                # the connection breaks: ccxt reconnects and resyncs, or the stream is retried
                # with REST meanwhile; either way the next change arrives
                await fake.drop_connections()
                fake.set_order_book(btc, BIDS, ASKS)

                async def caught_up() -> bool:
                    await books.refresh()
                    return books.books[btc].bids == tuple((D(p), D(q)) for p, q in BIDS[:20])

                for _ in range(150):
                    if await caught_up():
                        break
                    await asyncio.sleep(0.1)
                assert await caught_up()
                await _until(lambda: fake.depth_subscribers(btc) == 1, "the stream back", 30)
                # no longer held: the stream is left on the exchange too
                del holders[btc]
                await books.refresh()
                assert books.watched == set() and books.books == {}
                await _until(lambda: fake.depth_subscribers(btc) == 0, "unsubscribed")
                assert fake.depth_events >= 1

    run(main())


def test_a_broken_book_stream_is_logged_read_over_rest_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stream's REST snapshot refused (ccxt's watch fails): one warning, the book read
    over REST at the next round, the stream retried after ``interval_s`` and delivering."""
    exchange, btc = "binanceusdm", "BTC/USDT:USDT"

    async def main() -> None:
        async with started(make_fake(exchange)) as fake:
            with_books(fake, btc)
            options = dict(get_spec(exchange).ccxt_options)
            async with ccxt_client(fake, exchange, options=options) as client:
                settings = OrderBookSettings(
                    depth=20, interval_s=0.5, max_age_s=30, stream_every_s=0.2
                )
                books = poller(client, exchange, lambda: {btc: {holder("a")}}, settings)
                books.covers = lambda *_: True
                # this round's REST read and the stream's snapshot refused (ccxt tries the
                # snapshot up to its watchOrderBook maxRetries, 3)
                fake.fail_rest(503, 5, path_prefix="/fapi/v1/depth")
                with caplog.at_level(logging.WARNING):
                    await books.refresh()
                    await _until(lambda: books.stream_errors >= 1, "the stream's failure")
                assert btc not in books.books
                assert any(
                    "order book stream of BTC/USDT:USDT broke" in r.message for r in caplog.records
                )
                for _ in range(5):  # REST stands in, past the refusals left
                    await books.refresh()
                    if btc in books.books:
                        break
                assert btc in books.books
                await _until(lambda: books.stream_updates >= 1, "the stream retried")
                assert books.watched == {btc}

    run(main())


def test_the_poller_skips_a_malformed_answer(caplog: pytest.LogCaptureFixture) -> None:
    """A book the adapter cannot read (crossed, here) is logged and skipped, the last good one
    kept."""
    exchange, symbol = "bybit", "BTC/USDT:USDT"

    async def main() -> None:
        async with started(make_fake(exchange)) as fake:
            listed(fake, symbol)
            fake.set_order_book(symbol, BIDS, ASKS)
            async with ccxt_client(fake, exchange) as client:
                books = poller(client, exchange, lambda: {symbol: {holder("a")}})
                books.covers = lambda *_: True
                await books.refresh()
                good = books.books[symbol]
                fake.set_order_book(symbol, [("50100", "1")], [("50000", "1")])
                with caplog.at_level(logging.WARNING):
                    await books.refresh()
                assert books.books[symbol] is good
                assert any("skipped a malformed order book" in r.message for r in caplog.records)

    run(main())


def test_check_names_each_bad_gap_setting_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        BASE
        + """feeds:
  order_books: {depth: 1000}
builtin_rules: {gap_risk_above: -1, gap_risk_for: soon}
rules:
  - {name: g, metric: gap_risk, scope: account, above: 0, severity: warning}
  - {name: s, metric: close_slippage, above: 0.01, severity: warning, horizon: 1h}
"""
    )
    run = inprocess.alertd("check", "-c", str(path))
    assert run.code == 2 and "Traceback" not in run.err
    assert run.problems == [
        "alertd: feeds.order_books.depth: input should be less than or equal to 400 (got 1000)",
        "alertd: rules[0]: gap_risk is a position metric",
        "alertd: rules[1].horizon: close_slippage takes no horizon",
        "alertd: builtin_rules.gap_risk_above: must be at least 0 (got -1)",
        "alertd: builtin_rules.gap_risk_for: not a duration: 'soon' (use seconds, or 30s, 5m, "
        "1h, 1d, 1w)",
    ], run.err
    path.write_text(BASE + "feeds:\n  order_books: {interval_s: 30, max_age_s: 10}\n")
    run = inprocess.alertd("check", "-c", str(path))
    assert run.code == 2
    assert run.problems == [
        "alertd: feeds.order_books: max_age_s 10 is below interval_s 30: every book would be "
        "dropped before the next one arrives"
    ], run.err
