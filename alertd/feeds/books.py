"""Order books are public: one per symbol per exchange, shared by every account, and fetched
only for the symbols a rule on them covers.

The gap-risk metrics (``close_slippage``, ``gap_risk``) read the exchange's order book of a
position's symbol. A mark hub's :class:`OrderBooks` keeps the book of each symbol that some
account of the hub holds *and* that an order-book rule applies to (its ``accounts``,
``exchanges`` and ``symbols`` filters): nothing else is fetched. Each symbol is read over REST
(ccxt's ``fetch_order_book``, ``depth`` levels a side) every ``interval_s``: the figures need the
book's shape near the liquidation price, not every change of it (docs/exchanges.md, "Order
books", says why no diff stream is kept).

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

    def wanted(self) -> set[str]:
        if self.covers is None:
            return set()
        return wanted_symbols(self.exchange_id, self._holders(), self.covers)

    async def run(self) -> None:
        """Fetch every wanted symbol's book each ``interval`` until cancelled."""
        while True:
            await self.refresh()
            await self._sleep(self.settings.interval_s)

    async def refresh(self) -> None:
        """One round: the wanted symbols' books, concurrently; unwanted and old ones dropped."""
        wanted = self.wanted()
        for symbol in set(self.books) - wanted:
            self._drop(symbol)
        if wanted:
            await asyncio.gather(*(self._fetch(symbol) for symbol in sorted(wanted)))
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
