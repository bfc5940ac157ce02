"""The asset index a pooled mode counts its margin assets and coins at, streamed: one
subscription per exchange, shared by every account that follows it.

Binance's multi-assets mode values each margin asset (USDT, USDC) at its ``<asset>USD`` row's
bid and ask rates and each collateral coin at its index less a buffer. The REST read
(``GET /fapi/v1/assetIndex``) is the truth, at a bootstrap and once per reconcile interval;
between reads the exchange's "Multi-Assets Mode Asset Index" stream (``!assetIndex@arr``,
every second) moves them: a depeg counts within a second, not a reconcile interval later.
The rows are public and the same for every account, so like the marks
(:class:`~alertd.feeds.marks.MarkHub`, which owns this stream and its exchange) one stream
serves all of them: each frame's rows are kept
(the latest per symbol, for ``stale_after_s`` after it last came) and handed to every
follower with the symbols whose row changed.
While no frame came for ``stale_after_s`` (a stream down, or never up), the index is read
over REST instead, once per ``stale_after_s`` for every follower (weight 10 at Binance, in
the IP's budget with the marks): the rates never stay at the stream's last word nor fall to
par, and the followers' freshness says the stream is stale (the health line, status). The
log says it once for the stream (not once per follower), and once when it is back;
meanwhile its subscription alone is renewed, at most once per ``stale_after_s``
(:meth:`~alertd.feeds.adapter.ExchangeAdapter.renew_asset_index`): the marks on the same
hub keep streaming, where a reconnect of the hub would gap every one of them.
While it is fresh, REST is read once per configured reconcile interval for all of them
(the truth the rows are corrected by: this stream's own read, or a follower's reconcile's,
:meth:`AssetIndexStream.read`), and their reconciles take the rows from here
(:meth:`AssetIndexStream.fresh_rows`) instead of each reading the same public rows again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Set
from typing import Any, Protocol

import ccxt

from alertd.clock import Clock, Sleep
from alertd.feeds.adapter import ExchangeAdapter, FrameError
from alertd.feeds.backoff import Backoff
from alertd.feeds.ccxt_exchange import SubscriptionRenewed, describe

log = logging.getLogger(__name__)

# what a follower reports of a row the stream sent malformed (skipped, the others applied)
BAD_ROW = "asset index: bad row"


class IndexFollower(Protocol):
    def on_asset_index(
        self,
        rows: Mapping[str, Mapping[str, Any]],
        changed: Set[str],
        now: float,
        streamed: bool = True,
    ) -> None:
        """Every row so far (by symbol, checked), ``changed`` the symbols this frame changed,
        at monotonic ``now``; not ``streamed``: read over REST while the stream is stale."""

    def on_malformed(self, kind: str, detail: str) -> None: ...


class AssetIndexStream:
    def __init__(
        self,
        name: str,
        ready_exchange: Callable[[], Awaitable[Any]],
        adapter: ExchangeAdapter,
        backoff_factory: Callable[[], Backoff],
        clock: Clock,
        sleep: Sleep,
        stale_after_s: float,
        read_every_s: float = float("inf"),
    ) -> None:
        self.name = name
        self.stale_after_s = stale_after_s
        self.read_every_s = read_every_s
        self._ready_exchange = ready_exchange
        self.adapter = adapter
        self._backoff_factory = backoff_factory
        self._clock = clock
        self._sleep = sleep
        self.followers: set[IndexFollower] = set()
        self.rows: dict[str, Mapping[str, Any]] = {}  # the latest row per symbol
        # monotonic time each symbol's row last came (a frame or a REST read): a row that
        # stops coming (a delisted coin, or malformed in every frame) expires on its own,
        # however fresh the frames around it
        self.row_at: dict[str, float] = {}
        self.frames = 0
        self.reconnects = 0
        self.polls = 0  # REST reads (stale stream, or the periodic one)
        self.renewals = 0  # the subscription renewed while the stream was stale
        self._renewed_at = -float("inf")
        self._stale_said = False  # the staleness logged, until a frame comes
        self.frame_at = -float("inf")  # monotonic time of the last frame
        self.read_at = -float("inf")  # and of the last REST read
        # subscribed on the first follower only: an exchange without a multi-assets account
        # never opens it
        self._wanted = asyncio.Event()

    def fresh_rows(self) -> Mapping[str, Mapping[str, Any]] | None:
        """The rows that came within ``stale_after_s`` while a frame did too and REST was
        read within ``read_every_s``; None otherwise (the stream stale or never up, no REST
        read yet): a reconcile then reads REST itself, as it does for a row it needs that is
        missing here."""
        now = self._clock()
        fresh = now - self.frame_at <= self.stale_after_s
        return self._rows_seen(now) if fresh and now - self.read_at < self.read_every_s else None

    def _rows_seen(self, now: float) -> dict[str, Mapping[str, Any]]:
        """The rows that came within ``stale_after_s`` of ``now``."""
        since = now - self.stale_after_s
        return {s: row for s, row in self.rows.items() if self.row_at[s] >= since}

    def follow(self, follower: IndexFollower) -> None:
        self.followers.add(follower)
        self._wanted.set()

    def unfollow(self, follower: IndexFollower) -> None:
        self.followers.discard(follower)

    async def run(self) -> None:
        """Stream from the first follower on, and read over REST while the stream is
        stale, until cancelled."""
        await self._wanted.wait()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._stream(), name=self.name)
            group.create_task(self._read_over_rest(), name=f"{self.name} REST")

    async def _read_over_rest(self) -> None:
        """The REST read, for every follower at once: while the stream is stale, once per
        ``stale_after_s``; otherwise once per ``read_every_s`` (the configured reconcile
        interval), the truth the stream is checked against, which the followers' own
        reconciles then read from :meth:`fresh_rows` rather than each asking REST again."""
        while True:
            await self._sleep(min(self.stale_after_s, self.read_every_s))
            now = self._clock()
            stale = now - self.frame_at > self.stale_after_s
            if self.followers and stale:
                await self._renew(now)
            if not self.followers or not (stale or now - self.read_at >= self.read_every_s):
                continue
            try:
                rows, problems = await self.adapter.fetch_asset_index(await self._ready_exchange())
            except Exception as exc:
                if not isinstance(exc, ccxt.BaseError | FrameError):
                    log.exception("%s: reading the asset index failed unexpectedly", self.name)
                log.warning("%s: asset index not read: %s", self.name, describe(exc))
                continue
            self.polls += 1
            for problem in problems:
                self.on_malformed(BAD_ROW, problem)
            self.read(rows)

    async def _renew(self, now: float) -> None:
        """No frame within ``stale_after_s``: said once, and the subscription renewed, once
        per ``stale_after_s`` while it lasts (the REST read covers the rates meanwhile)."""
        if not self._stale_said:
            self._stale_said = True
            log.warning(
                "%s: no frame in %.0fs: the rates and coin indices of its %d accounts are read "
                "over REST (GET assetIndex) until it is back; renewing its subscription",
                self.name,
                self.stale_after_s,
                len(self.followers),
            )
        if now - self._renewed_at < self.stale_after_s:
            return
        self._renewed_at = now
        try:
            exchange = await self._ready_exchange()
            renewed = await self.adapter.renew_asset_index(exchange, "stale asset index stream")
        except Exception as exc:
            log.warning("%s: subscription not renewed: %s", self.name, describe(exc))
            return
        if renewed:  # not where there was no socket, or one still dialling
            self.renewals += 1

    def read(self, rows: list[dict[str, Any]]) -> None:
        """A REST read's checked rows (this stream's own, or a follower's reconcile's: the
        index is public, one read serves all): kept and handed to every follower; the next
        periodic read is due ``read_every_s`` from now."""
        self.read_at = self._clock()
        self.deliver(rows, streamed=False)

    async def _stream(self) -> None:
        backoff = self._backoff_factory()
        while True:
            try:
                exchange = await self._ready_exchange()
                rows, problems = await self.adapter.watch_asset_index(exchange)
                backoff.healthy(self._clock())
            except FrameError as exc:
                self.on_malformed(BAD_ROW, str(exc))
                continue
            except SubscriptionRenewed:
                continue  # failed on purpose (_renew): subscribed again at once
            except Exception as exc:
                if not isinstance(exc, ccxt.BaseError):
                    log.exception("%s: asset index stream failed unexpectedly", self.name)
                delay = backoff.next_delay()
                log.warning(
                    "%s: asset index stream lost (%s); reconnecting in %.1fs",
                    self.name,
                    describe(exc),
                    delay,
                )
                self.reconnects += 1
                await self._sleep(delay)
                continue
            for problem in problems:
                self.on_malformed(BAD_ROW, problem)
            self.deliver(rows)

    def deliver(self, rows: list[dict[str, Any]], streamed: bool = True) -> None:
        """One frame's checked rows (or a REST read's: not ``streamed``): kept, and handed to
        every follower."""
        if streamed:
            self.frames += 1
            self.frame_at = self._clock()
            if self._stale_said:  # said whether or not this frame moves a rate
                self._stale_said = False
                log.info("%s: stream back: the rates follow it again", self.name)
        now = self._clock()
        changed = set()
        for row in rows:
            symbol = str(row["symbol"])
            self.row_at[symbol] = now
            if self.rows.get(symbol) != row:
                changed.add(symbol)
                self.rows[symbol] = row
        seen = self._rows_seen(now)  # an expired row is handed to none (it keeps the read)
        for follower in list(self.followers):
            try:
                follower.on_asset_index(seen, changed, now, streamed)
            except Exception:
                self._follower_failed(follower, "the asset index")

    def on_malformed(self, kind: str, detail: str) -> None:
        if not self.followers:
            log.warning("%s: skipped a malformed frame (%s): %s", self.name, kind, detail)
        for follower in list(self.followers):
            try:
                follower.on_malformed(kind, detail)
            except Exception:
                self._follower_failed(follower, "a malformed frame")

    def _follower_failed(self, follower: IndexFollower, what: str) -> None:
        # one follower's bug is its account's, not the stream's: the task that runs this
        # stream runs every account's rates (and the hub with it)
        log.exception("%s: a follower (%r) failed on %s", self.name, follower, what)
