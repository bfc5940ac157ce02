"""Mark prices are public: one stream per symbol per exchange, shared by every account.

Fifty accounts holding BTC need one BTC mark stream, not fifty: the hub subscribes to the
union of the symbols its accounts hold (and drops a symbol when the last holder closes it),
and hands each mark to every holder. A hub has its own unauthenticated ccxt exchange, so a bad
key on one account cannot take the marks of the others with it.

A tick goes to its holders one of two ways. Alone (a feed with its own hub, ``alertd
snapshot``, a manager without a daemon), each holder's :meth:`MarkSubscriber.on_mark`. With a
:attr:`MarkHub.on_tick` listener (the daemon: a thousand accounts may hold BTC), the mark is
checked once, recorded in every holder's state (:meth:`MarkSubscriber.record_mark`, no
listener called per holder), then handed to the listener once with all the holders: one book
update for all of them.

The hub also keeps each streamed symbol's price dynamics (:class:`~alertd.engine.dynamics.
MarkWindow`), when a rule reads them: seeded from the exchange's recent mark-price candles
when the symbol's stream starts, so the figures mean something from the first minute, then fed
every mark at the wall-clock time it arrived; dropped with the symbol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Set
from decimal import Decimal
from typing import Any, Protocol

import ccxt

from alertd.clock import Clock, Sleep
from alertd.engine.dynamics import MAX_SEED_CANDLES, MarkWindow, seed_timeframe, seeded
from alertd.engine.insurance import FundHistory
from alertd.feeds.adapter import ExchangeAdapter, FrameError
from alertd.feeds.backoff import Backoff
from alertd.feeds.books import OrderBooks
from alertd.feeds.ccxt_exchange import (
    IpBudget,
    SharedExchange,
    describe,
    drop_connections,
    load_markets,
    other_host_answer,
    retry_delay,
)
from alertd.feeds.rates import AssetIndexStream, IndexFollower

log = logging.getLogger(__name__)


class MarkSubscriber(Protocol):
    def on_mark(self, symbol: str, price: Decimal) -> None:
        """A mark, as the exchange sent it (checked by the holder)."""

    def record_mark(self, symbol: str, price: Decimal, now: float) -> None:
        """A mark the hub checked (positive and finite), to record only: the hub's
        :attr:`~MarkHub.on_tick` listener is told once for every holder."""

    def on_malformed(self, kind: str, detail: str) -> None: ...


# (hub, symbol, price, its holders): one call per tick once every holder recorded the mark
TickListener = Callable[["MarkHub", str, Decimal, Set[MarkSubscriber]], None]


class SharedRead:
    """One answer read for every account of the hub's exchange, at most once per
    ``every_s`` (monotonic ``clock``): data that is the exchange's, not an account's, though
    the endpoint wants a key (Binance portfolio margin's collateral rates), read with the key
    of whichever account asks first once the answer is due. A failed read (ccxt's errors, a
    malformed answer) keeps the answer as it was (None before any), is logged when it begins
    and when a read succeeds again, and is tried again ``retry_s`` later, not by every account
    at once. Where the read goes to another host than the accounts' (``budget``: that host's
    own, Binance's api.binance.com), a ban or 429 of it (:func:`other_host_answer`) is that
    host's: ``budget`` pauses until its end and the read is not tried before, while the
    accounts' host goes on."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        every_s: float,
        retry_s: float,
        budget: IpBudget | None = None,
    ) -> None:
        self.name = name
        self.budget = budget
        self._clock = clock
        self.every_s = every_s
        self._retry_s = retry_s
        self.value: Any = None
        self._due = -float("inf")
        self._failing: str | None = None
        self._lock = asyncio.Lock()
        self.reads = 0

    async def get(self, read: Callable[[], Awaitable[Any]]) -> Any:
        """The answer, read with ``read`` first where it is due."""
        async with self._lock:
            now = self._clock()
            if now < self._due:
                return self.value
            if self.budget is not None and self.budget.paused_until > now:
                # a ban restored after a restart: a request into it lengthens it (Binance:
                # "scale in duration for repeat offenders")
                self._due = self.budget.paused_until
                return self.value
            self.reads += 1
            try:
                self.value = await read()
            except (ccxt.BaseError, FrameError) as exc:
                wait = self._retry_s
                answer = other_host_answer(exc)
                if self.budget is not None and answer is not None:
                    self.budget.refused(*answer)
                    wait = max(wait, self.budget.paused_until - now)
                self._due = now + wait
                if self._failing is None:
                    log.warning(
                        "%s: cannot be read (%s): kept as last read; tried again in %.0f s",
                        self.name,
                        describe(exc),
                        wait,
                    )
                self._failing = describe(exc)
                return self.value
            self._due = now + self.every_s
            if self._failing is not None:
                log.info("%s: read again", self.name)
                self._failing = None
            return self.value


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
        *,
        wall_clock: Clock = time.time,
        dynamics_span_s: float = 0.0,
        shared: SharedExchange | None = None,
        stale_after_s: float | None = None,
        index_read_every_s: float = float("inf"),
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
        self._wall = wall_clock
        # per symbol, while some rule reads price dynamics (a span of 0: none does)
        self.dynamics: dict[str, MarkWindow] = {}
        self.dynamics_span_s = dynamics_span_s
        # per held symbol, where the exchange publishes it and the rules watch it: the
        # insurance fund's balance (builtin_rules.insurance_fund)
        self.insurance: dict[str, FundHistory] = {}
        # the order books of the held symbols an order-book rule covers (set by the manager)
        self.books: OrderBooks | None = None
        # each tick handed once to this with every holder (the daemon's book); None: to each
        # holder's on_mark
        self.on_tick: TickListener | None = None
        # the exchange's asset index stream, where it has one (Binance multi-assets): public
        # like the marks, one subscription on this hub's exchange for every account following it
        self.rates: AssetIndexStream | None = None
        # an answer of the exchange its accounts share though it wants a key (where the
        # adapter names one: ``shared_read_name``), set by whoever makes the hub
        self.shared_read: SharedRead | None = None
        # close the connection once no mark is streamed (a listed-marks hub: nothing else,
        # asset index nor order books, runs on its exchange)
        self.close_when_idle = False
        if adapter.streams_asset_index:
            self.rates = AssetIndexStream(
                f"{name} asset index".replace(" marks", ""),
                self.ready_exchange,
                adapter,
                backoff_factory,
                clock,
                sleep,
                # feeds.stale_after_s (the manager's reconnect interval by default)
                stale_after_s=stale_after_s or min_reconnect_interval_s,
                read_every_s=index_read_every_s,
            )

    def set_dynamics_span(self, span_s: float) -> None:
        """The longest lookback the rules read (a reload): windows resized; a longer span
        seeds the held symbols again, so it is covered at once."""
        grew = span_s > self.dynamics_span_s
        self.dynamics_span_s = span_s
        if span_s <= 0:
            self.dynamics.clear()
            return
        for window in self.dynamics.values():
            window.resize(span_s)
        if grew and self._group is not None:
            for symbol in sorted(self._tasks):
                self._group.create_task(self._seed(symbol), name=f"seed {symbol}")

    async def _seed(self, symbol: str) -> None:
        """The symbol's window from its recent mark-price candles; without them (an error,
        an exchange that has none) the window fills from the stream alone."""
        span = self.dynamics_span_s
        if span <= 0:
            return
        timeframe, interval_ms = seed_timeframe(span)
        now = self._wall()
        since = int((now - span) * 1000) - interval_ms
        try:
            candles = await self.adapter.fetch_mark_candles(
                self._exchange(), symbol, timeframe, since, MAX_SEED_CANDLES
            )
        except Exception as exc:
            log.warning(
                "%s: no recent mark candles for %s (%s): its price dynamics start from the "
                "stream, and have no value until they cover a quarter of a rule's window",
                self.name,
                symbol,
                describe(exc),
            )
            return
        if symbol in self.subscribers and self.dynamics_span_s > 0:
            live = self.dynamics.get(symbol)
            window = seeded(self.dynamics_span_s, candles, interval_ms, self._wall(), live)
            self.dynamics[symbol] = window
            log.debug("%s: %s seeded with %d candles", self.name, symbol, len(candles))

    async def refresh_insurance(self, span_s: float) -> None:
        """Read the insurance fund behind every held symbol (one public request each), kept
        ``span_s``; a failed read is logged and skipped (the next poll tries again)."""
        if not self.adapter.reads_insurance_fund:
            return
        for symbol in list(self.insurance.keys() - self.subscribers.keys()):
            del self.insurance[symbol]
        for symbol in sorted(self.subscribers):
            try:
                balance = await self.adapter.fetch_insurance_fund(self._exchange(), symbol)
            except Exception as exc:
                log.warning(
                    "%s: insurance fund of %s not read: %s", self.name, symbol, describe(exc)
                )
                continue
            history = self.insurance.get(symbol)
            if history is None or history.span_s != span_s:
                history = self.insurance[symbol] = FundHistory(span_s)
            history.add(self._wall(), balance)

    def _record(self, symbol: str, price: Decimal) -> None:
        if self.dynamics_span_s > 0:
            window = self.dynamics.get(symbol)
            if window is None:
                window = self.dynamics[symbol] = MarkWindow(self.dynamics_span_s)
            window.add(self._wall(), price)

    def _exchange(self) -> Any:
        if self.exchange is None:
            self.exchange = self._factory(self)
            pacer = self._shared.ip_budget.openings if self._shared is not None else None
            if pacer is not None:
                # every public socket its exchange dials takes a turn in the host's pace of
                # openings, ahead of the accounts' queued private ones (it carries every
                # account's marks): ccxt's Binance gives each subscription a connection of its
                # own until 50 are open (``streamLimits``), and the order books' and the asset
                # index's streams dial on it too; taken at the dial (no login to sign)
                self.exchange.alertd_public_openings = pacer
        return self.exchange

    async def ready_exchange(self) -> Any:
        """The hub's public exchange with the shared market catalogue loaded."""
        exchange = self._exchange()
        await load_markets(exchange, self._shared)
        return exchange

    async def run(self) -> None:
        """Stream every subscribed symbol until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._sync()
            if self.books is not None:
                group.create_task(self.books.run(), name=f"{self.name} order books")
            if self.rates is not None:
                group.create_task(self.rates.run(), name=self.rates.name)
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
            self.dynamics.pop(symbol, None)
            group.create_task(self._unwatch(symbol))

    async def _unwatch(self, symbol: str) -> None:
        try:
            await self.adapter.unwatch_mark(self._exchange(), symbol)
        except Exception as exc:  # the subscription dies with the next reconnect anyway
            log.debug("%s: unsubscribing %s failed: %s", self.name, symbol, describe(exc))
        if self.close_when_idle and not self._tasks and self.exchange is not None:
            # nothing streams on it any more (a portfolio margin account's last COIN-M
            # position closed): its connection closed too, not left open and idle; the next
            # subscription opens one again
            await drop_connections(self.exchange, "no mark streamed")

    async def _stream(self, symbol: str) -> None:
        backoff = self._backoff_factory()
        if self.dynamics_span_s > 0 and self._group is not None:
            # beside the stream, not before it: a slow candle request delays no mark
            self._group.create_task(self._seed(symbol), name=f"seed {symbol}")
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
                delay = retry_delay(backoff, exc)
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
            self._record(symbol, price)
            self.deliver(symbol, price)

    def deliver(self, symbol: str, price: Decimal) -> None:
        """Hand a mark of ``symbol`` to its holders (see the module's docstring)."""
        holders = self.subscribers.get(symbol)
        if not holders:
            return
        listener = self.on_tick
        if listener is None:
            for subscriber in list(holders):
                subscriber.on_mark(symbol, price)
            return
        if not price.is_finite() or price <= 0:
            for subscriber in list(holders):
                subscriber.on_malformed(*bad_mark(symbol, price))
            return
        now = self._clock()
        for subscriber in holders:
            subscriber.record_mark(symbol, price, now)
        listener(self, symbol, price, holders)

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

    def on_open(self, url: str) -> None:
        # a mark stream is alive when its marks arrive (the staleness watchdog); its opening
        # took its turn in the host's pace at the socket (``alertd_public_openings``)
        return None

    def on_login(self, url: str) -> None:
        return None  # public sockets log in to nothing

    def on_closed(self, url: str, opening_failed: bool) -> None:
        # every stream waiting on it fails; ccxt's next watch dials again, in a turn
        return None

    def on_malformed(self, kind: str, detail: str) -> None:
        # the asset index shares the connection's frames: its followers hear of them too
        holders: set[MarkSubscriber | IndexFollower] = {
            s for subs in self.subscribers.values() for s in subs
        }
        holders |= self.rates.followers if self.rates is not None else set()
        if not holders:
            log.warning("%s: skipped a malformed frame (%s): %s", self.name, kind, detail)
        for subscriber in holders:
            subscriber.on_malformed(kind, detail)


def bad_mark(symbol: str, price: Decimal) -> tuple[str, str]:
    """What a holder reports of a mark that is not a positive, finite price (kind, detail)."""
    return f"mark {symbol}: bad frame", f"mark price is not positive: {price}"
