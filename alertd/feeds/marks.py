"""Mark prices are public: one stream per symbol per exchange, shared by every account.

Fifty accounts holding BTC need one BTC mark stream, not fifty: the hub subscribes to the
union of the symbols its accounts hold (and drops a symbol when the last holder closes it),
and hands each mark to every holder. A hub has its own unauthenticated ccxt exchange, so a bad
key on one account cannot take the marks of the others with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

import ccxt

from alertd.clock import Clock, Sleep
from alertd.feeds.adapter import ExchangeAdapter, FrameError
from alertd.feeds.backoff import Backoff
from alertd.feeds.ccxt_exchange import SharedExchange, describe, load_markets

log = logging.getLogger(__name__)


class MarkSubscriber(Protocol):
    def on_mark(self, symbol: str, price: Decimal) -> None: ...

    def on_malformed(self, kind: str, detail: str) -> None: ...


class MarkHub:
    def __init__(
        self,
        name: str,
        exchange_factory: Callable[[MarkHub], Any],
        adapter: ExchangeAdapter,
        backoff_factory: Callable[[], Backoff],
        clock: Clock,
        sleep: Sleep,
        min_reconnect_interval_s: float = 1.0,
        shared: SharedExchange | None = None,
    ) -> None:
        self.name = name
        self._shared = shared  # the exchange's market catalogue, given to this hub's exchange
        self._factory = exchange_factory
        self.adapter = adapter
        self._backoff_factory = backoff_factory
        self._clock = clock
        self._sleep = sleep
        self._min_reconnect_s = min_reconnect_interval_s
        self.exchange: Any = None
        self.subscribers: dict[str, set[MarkSubscriber]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._forced_at = -float("inf")
        self.reconnects = 0

    def _exchange(self) -> Any:
        if self.exchange is None:
            self.exchange = self._factory(self)
        return self.exchange

    async def run(self) -> None:
        """Stream every subscribed symbol until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._sync()
            try:
                await asyncio.Event().wait()
            finally:
                self._group = None
                self._tasks.clear()

    async def close(self) -> None:
        if self.exchange is not None:
            exchange, self.exchange = self.exchange, None
            await exchange.close()

    def subscribe(self, symbol: str, subscriber: MarkSubscriber) -> None:
        self.subscribers.setdefault(symbol, set()).add(subscriber)
        self._sync()

    def unsubscribe(self, symbol: str, subscriber: MarkSubscriber) -> None:
        holders = self.subscribers.get(symbol)
        if holders is not None:
            holders.discard(subscriber)
            if not holders:
                del self.subscribers[symbol]
        self._sync()

    def _sync(self) -> None:
        group = self._group
        if group is None:
            return
        for symbol in sorted(self.subscribers.keys() - self._tasks.keys()):
            self._tasks[symbol] = group.create_task(self._stream(symbol), name=f"mark {symbol}")
        for symbol in sorted(self._tasks.keys() - self.subscribers.keys()):
            self._tasks.pop(symbol).cancel()
            group.create_task(self._unwatch(symbol))

    async def _unwatch(self, symbol: str) -> None:
        try:
            await self.adapter.unwatch_mark(self._exchange(), symbol)
        except Exception as exc:  # the subscription dies with the next reconnect anyway
            log.debug("%s: unsubscribing %s failed: %s", self.name, symbol, describe(exc))

    async def _stream(self, symbol: str) -> None:
        backoff = self._backoff_factory()
        while True:
            try:
                exchange = self._exchange()
                await load_markets(exchange, self._shared)
                price = await self.adapter.watch_mark(exchange, symbol)
                backoff.healthy(self._clock())
            except FrameError as exc:
                self.on_malformed(f"mark {symbol}: bad frame", str(exc))
                continue
            except Exception as exc:
                if not isinstance(exc, ccxt.BaseError):
                    log.exception("%s: mark stream %s failed unexpectedly", self.name, symbol)
                delay = backoff.next_delay()
                log.warning(
                    "%s: mark stream %s lost (%s); reconnecting in %.1fs",
                    self.name,
                    symbol,
                    describe(exc),
                    delay,
                )
                self.reconnects += 1
                await self._sleep(delay)
                continue
            for subscriber in list(self.subscribers.get(symbol, ())):
                subscriber.on_mark(symbol, price)

    async def force_reconnect(self, reason: str) -> None:
        """Fail every pending mark watch with a NetworkError and drop the connections.

        Many accounts may report the same stale stream: one reconnect per interval serves all.
        """
        now = self._clock()
        if now - self._forced_at < self._min_reconnect_s or self.exchange is None:
            return
        self._forced_at = now
        await drop_connections(self.exchange, reason)

    # FrameSink: public frames need nothing captured; bad ones are reported to the holders
    def on_frame(self, message: Any) -> None:
        return None

    def on_malformed(self, kind: str, detail: str) -> None:
        holders = {s for subs in self.subscribers.values() for s in subs}
        if not holders:
            log.warning("%s: skipped a malformed frame (%s): %s", self.name, kind, detail)
        for subscriber in holders:
            subscriber.on_malformed(kind, detail)


async def drop_connections(exchange: Any, reason: str) -> None:
    """Reject every pending watch on ``exchange`` with a NetworkError and close its sockets.

    ccxt's own ``client.close()`` cancels the futures instead, which a caller cannot tell from
    its own cancellation; a NetworkError sends every stream down the reconnect path.
    """
    for url, client in list((exchange.clients or {}).items()):
        client.reject(ccxt.NetworkError(f"alertd: {reason}"))
        exchange.clients.pop(url, None)
        try:
            await client.close()
        except Exception as exc:
            log.debug("closing %s: %s", url, exc)
