"""Order books are public: one per symbol per exchange, shared by every account, and read
only for the symbols a rule on them covers.

The gap-risk metrics (``close_slippage``, ``gap_risk``) read the exchange's order book of a
position's symbol. A mark hub's :class:`OrderBooks` keeps the book of each symbol that some
account of the hub holds *and* that an order-book rule applies to (its ``accounts``,
``exchanges`` and ``symbols`` filters): nothing else is read.

Where alertd streams the exchange's books (``ExchangeAdapter.streams_order_book``, and
``feeds.order_books.stream`` on) each such symbol's book is watched over the websocket (ccxt
pro's ``watch_order_book``, ``depth`` levels a side): subscribed when the symbol becomes
wanted, unsubscribed when it no longer is. ccxt applies every update to its copy; the metrics'
book is replaced from it at an update at most every ``stream_every_s`` (a new book means every
position in the symbol walked again; alertd wakes no more often than that). Elsewhere,
and for a symbol whose stream has not delivered within ``interval_s`` (not yet synced, broken,
or quiet), the book is read over REST (``fetch_order_book``) every ``interval_s``; a broken
stream is retried after ``interval_s``. docs/exchanges.md, "Order books", has the costs.

A book older than ``max_age_s`` (the exchange not answering) is dropped, so the metrics have no
value rather than an old one; a malformed answer is logged once per symbol and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from alertd.clock import Clock, Sleep
from alertd.config import OrderBookSettings
from alertd.engine.orderbook import OrderBook
from alertd.feeds.adapter import ExchangeAdapter, FrameError
from alertd.feeds.ccxt_exchange import describe

log = logging.getLogger(__name__)


# whether an order-book rule covers (account, exchange, symbol): the daemon's rules decide
Covers = Callable[[str, str, str], bool]


def account_of(subscriber: Any) -> str | None:
    """The account name of a mark subscriber (an account's feed); None for anything else."""
    config = getattr(subscriber, "config", None)
    name = getattr(config, "name", None)
    return name if isinstance(name, str) else None


def wanted_symbols(exchange: str, holders: Mapping[str, Iterable[Any]], covers: Covers) -> set[str]:
    """The held symbols some order-book rule covers, for some account that holds them."""
    return {
        symbol
        for symbol, subscribers in holders.items()
        if any(
            (account := account_of(s)) is not None and covers(account, exchange, symbol)
            for s in subscribers
        )
    }


class OrderBooks:
    """The order books one mark hub's accounts need, kept current by one polling loop."""

    def __init__(
        self,
        name: str,
        exchange_id: str,
        exchange: Callable[[], Awaitable[Any]],
        adapter: ExchangeAdapter,
        holders: Callable[[], Mapping[str, Iterable[Any]]],
        settings: OrderBookSettings,
        clock: Clock,
        sleep: Sleep,
        covers: Covers | None = None,
    ) -> None:
        self.name = name
        self.exchange_id = exchange_id
        self._exchange = exchange  # the hub's public ccxt exchange, markets loaded
        self.adapter = adapter
        self._holders = holders  # the hub's subscribers: symbol -> accounts' feeds
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self.covers = covers  # None: no rule reads an order book
        self.books: dict[str, OrderBook] = {}  # what the metrics read: fresh books only
        self._at: dict[str, float] = {}  # when each book arrived (monotonic)
        self._failing: set[str] = set()  # symbols whose last fetch failed (logged once)
        self.fetches = 0
        self.errors = 0
        # streamed books: each wanted symbol's watch task, and when its stream last delivered
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._streamed_at: dict[str, float] = {}
        self.stream_updates = 0  # streamed books taken
        self.stream_errors = 0

    @property
    def streaming(self) -> bool:
        return self.settings.stream and self.adapter.streams_order_book

    @property
    def watched(self) -> set[str]:
        """The symbols whose book is streamed now."""
        return set(self._streams)

    def wanted(self) -> set[str]:
        if self.covers is None:
            return set()
        return wanted_symbols(self.exchange_id, self._holders(), self.covers)

    async def run(self) -> None:
        """Keep every wanted symbol's book, a round each ``interval``, until cancelled."""
        try:
            while True:
                await self.refresh()
                await self._sleep(self.settings.interval_s)
        finally:
            for task in self._streams.values():
                task.cancel()
            self._streams.clear()

    async def refresh(self) -> None:
        """One round: the wanted symbols' streams started (unwanted ones left), and the books
        no stream delivered lately fetched, concurrently; unwanted and old ones dropped."""
        wanted = self.wanted()
        for symbol in set(self.books) - wanted:
            self._drop(symbol)
        for symbol in set(self._streams) - wanted:
            await self._unwatch(symbol)
        now = self._clock()
        if self.streaming:
            for symbol in sorted(wanted - set(self._streams)):
                self._streams[symbol] = asyncio.get_running_loop().create_task(
                    self._watch(symbol), name=f"{self.name} {symbol} book stream"
                )
        lately = now - self.settings.interval_s
        polled = sorted(s for s in wanted if self._streamed_at.get(s, -float("inf")) < lately)
        if polled:
            await asyncio.gather(*(self._fetch(symbol) for symbol in polled))
        now = self._clock()
        for symbol, at in list(self._at.items()):
            if now - at > self.settings.max_age_s:
                log.warning(
                    "%s: no order book of %s for %.0fs: gap-risk figures of its positions have "
                    "no value until one arrives",
                    self.name,
                    symbol,
                    now - at,
                )
                self._drop(symbol)

    def _drop(self, symbol: str) -> None:
        self.books.pop(symbol, None)
        self._at.pop(symbol, None)

    async def _watch(self, symbol: str) -> None:
        """Follow ``symbol``'s book stream until cancelled; a broken one is retried after
        ``interval_s`` (REST stands in meanwhile).

        ccxt applies every event to its copy of the book whether or not a watch is pending;
        alertd takes the book, waits ``stream_every_s``, then takes ccxt's copy at once if it
        changed meanwhile, else waits for the next change: one wake-up per symbol per
        ``stream_every_s`` at most, however busy the book, and no change left untaken."""
        while True:
            try:
                exchange = await self._exchange()
                raw = await self.adapter.watch_order_book(exchange, symbol, self.settings.depth)
                while True:
                    self._streamed_at[symbol] = self._clock()
                    await self._take(symbol, raw)
                    taken = self.adapter.book_version(raw)
                    await self._sleep(self.settings.stream_every_s)
                    current = self.adapter.streamed_order_book(exchange, symbol)
                    if current is not None and self.adapter.book_version(current) != taken:
                        raw = current  # changed while alertd slept: ccxt's copy is current
                    else:
                        raw = await self.adapter.watch_order_book(
                            exchange, symbol, self.settings.depth
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stream_errors += 1
                self._streamed_at.pop(symbol, None)
                log.warning(
                    "%s: order book stream of %s broke (%s): read over REST, the stream "
                    "retried in %gs",
                    self.name,
                    symbol,
                    describe(exc),
                    self.settings.interval_s,
                )
            await self._sleep(self.settings.interval_s)

    async def _take(self, symbol: str, raw: Any) -> None:
        """A streamed book as the one the metrics read (ccxt's copy: bounded and parsed)."""
        self.stream_updates += 1
        try:
            exchange = await self._exchange()
            book = self.adapter.order_book(exchange, symbol, raw, self.settings.depth)
        except Exception as exc:
            self.errors += 1
            if symbol not in self._failing:
                self._failing.add(symbol)
                log.warning(
                    "%s: skipped a malformed streamed order book of %s: %s",
                    self.name,
                    symbol,
                    describe(exc),
                )
            return
        self._failing.discard(symbol)
        self.books[symbol] = book
        self._at[symbol] = self._clock()

    async def _unwatch(self, symbol: str) -> None:
        """``symbol`` no longer wanted: its stream left, on the exchange too where ccxt can."""
        task = self._streams.pop(symbol)
        task.cancel()
        self._streamed_at.pop(symbol, None)
        try:
            await self.adapter.unwatch_order_book(await self._exchange(), symbol)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection may be gone already: nothing to leave
            log.debug("%s: order book stream of %s not left: %s", self.name, symbol, describe(exc))

    async def _fetch(self, symbol: str) -> None:
        self.fetches += 1
        try:
            exchange = await self._exchange()
            book = await self.adapter.fetch_order_book(exchange, symbol, self.settings.depth)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.errors += 1
            if symbol not in self._failing:  # once per run of failures, not every round
                self._failing.add(symbol)
                what = (
                    "skipped a malformed order book"
                    if isinstance(exc, FrameError)
                    else ("order book fetch failed")
                )
                log.warning("%s: %s of %s: %s", self.name, what, symbol, describe(exc))
            return
        if symbol in self._failing:
            self._failing.discard(symbol)
            log.info("%s: order book of %s read again", self.name, symbol)
        self.books[symbol] = book
        self._at[symbol] = self._clock()
