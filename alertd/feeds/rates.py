"""The asset index a pooled mode counts its margin assets and coins at, streamed: one
subscription per exchange, shared by every account that follows it.

Binance's multi-assets mode values each margin asset (USDT, USDC) at its ``<asset>USD`` row's
bid and ask rates and each collateral coin at its index less a buffer. The REST read
(``GET /fapi/v1/assetIndex``) is the truth, at a bootstrap and once per reconcile interval
(the longest its accounts' plan gives, see below);
between reads the exchange's "Multi-Assets Mode Asset Index" stream (``!assetIndex@arr``,
every second) moves them: a depeg counts within a second, not a reconcile interval later.
The rows are public and the same for every account, so like the marks
(:class:`~alertd.feeds.marks.MarkHub`, which owns this stream and its exchange) one stream
serves all of them: each frame's rows are kept (the latest good one per symbol) and handed
to every follower with the symbols whose row changed. The docs promise no row in every frame
(the stream "updates" every second; where Binance sends only the changed ones, as its ticker
streams, it says so), so a row that does not come stands while the stream is fresh. A row
the exchange sends malformed (or a REST read lacks) expires ``stale_after_s`` after its last
good one: it is handed to none, the followers keep the rates it last gave (never the
snapshot's, never par) and name it stale (the health line, status: "asset index USDCUSD")
until a good one comes, and its expiry asks one REST read of the index at once (not the next
reconcile's, up to its interval later; a reconcile meanwhile reads REST for it too); the log
says it once for the stream, and once when it is good again.
While no frame came for ``stale_after_s`` (a stream down, or never up), the index is read
over REST instead, once per ``stale_after_s`` for every follower (weight 10 at Binance, in
the IP's budget with the marks): the rates never stay at the stream's last word nor fall to
par, and the followers' freshness says the stream is stale (the health line, status). The
log says it once for the stream (not once per follower), and once when it is back;
meanwhile its subscription alone is renewed, at most once per ``stale_after_s``
(:meth:`~alertd.feeds.adapter.ExchangeAdapter.renew_asset_index`): the marks on the same
hub keep streaming, where a reconnect of the hub would gap every one of them. The renewal
runs in a task of its own beside the REST read, never in front of it (dropping a half-dead
socket waits up to a second for its CLOSE reply).
While it is fresh, REST is read once per ``read_every_s`` for all of them: the longest
planned reconcile interval of its accounts (``feeds.reconcile_interval_s``, or longer where
the plan stretches it within the IP's budget; set at every plan and replan,
:meth:`~alertd.feeds.manager.FeedManager._pace_index_reads`), the truth the rows are
corrected by (this stream's own read, or a follower's reconcile's,
:meth:`AssetIndexStream.read`); their reconciles take the rows from here
(:meth:`AssetIndexStream.fresh_rows`) instead of each reading the same public rows again,
but for a row that expired, which a reconcile reads over REST.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Set
from typing import Any, Protocol

import ccxt

from alertd.clock import Clock, Sleep
from alertd.feeds.adapter import ExchangeAdapter, FrameError, RejectedRow
from alertd.feeds.backoff import Backoff
from alertd.feeds.ccxt_exchange import SubscriptionRenewed, describe

log = logging.getLogger(__name__)

# what a follower reports of a row the stream sent malformed (skipped, the others applied)
BAD_ROW = "asset index: bad row"
# what a follower holds that follows every row (handed every delivery)
EVERY_ROW = "*"
# what a follower failed on: each call's failures logged apart
_INDEX = "the asset index"
_MALFORMED = "a malformed frame"


class IndexFollower(Protocol):
    def on_index_frame(self, now: float) -> None:
        """A frame came at monotonic ``now`` that changed none of its rows: the stream is
        fresh (the one thing a follower is told of a frame that moves nothing of its)."""

    def on_asset_index(
        self,
        rows: Mapping[str, Mapping[str, Any]],
        changed: Set[str],
        now: float,
        streamed: bool = True,
        expired: Mapping[str, float] | None = None,
    ) -> None:
        """Every standing row (by symbol, checked), ``changed`` the symbols this frame changed,
        at monotonic ``now``; not ``streamed``: read over REST while the stream is stale;
        ``expired``: the rows rejected since their last good one (by symbol: when it came)
        for ``stale_after_s``, not among ``rows``."""

    def on_malformed(self, kind: str, detail: str) -> None: ...


def rejected_symbols(problems: list[str]) -> set[str]:
    """The symbols of the rows an asset index frame or read rejected (its problems that name
    one: :class:`~alertd.feeds.adapter.RejectedRow`)."""
    return {problem.symbol for problem in problems if isinstance(problem, RejectedRow)}


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
        # the followers by the symbol of each row they count at (``follow``): a frame is
        # handed to the holders of the rows it changed, not to every follower (one frame a
        # second, 1,000 accounts: most hold no row a calm frame moves)
        self._holders: dict[str, set[IndexFollower]] = {}
        self._holding: dict[IndexFollower, frozenset[str]] = {}
        # the followers to hand the next delivery whatever it changed (new, or their rates
        # read again by a snapshot: they re-rate from every standing row once)
        self._unserved: set[IndexFollower] = set()
        self.handed = 0  # frames and reads handed to a follower (its rows re-rated)
        # the followers whose last call of a kind failed (by follower and what it was
        # handed): its traceback logged at the first failure, the later ones at debug until
        # that call succeeds again (not once a frame, every second)
        self._failing: set[tuple[IndexFollower, str]] = set()
        self.rows: dict[str, Mapping[str, Any]] = {}  # the latest row per symbol
        # monotonic time each symbol's good row last came (a frame or a REST read)
        self.row_at: dict[str, float] = {}
        # and when it was last rejected since (malformed in a frame, or lacking from a REST
        # read: a delisted coin): the evidence a row expires on, ``stale_after_s`` after its
        # last good one, however fresh the frames around it
        self.rejected_at: dict[str, float] = {}
        self._expired_said: set[str] = set()  # the expired rows logged, until good again
        self.frames = 0
        self.reconnects = 0
        self.polls = 0  # REST reads (stale stream, or the periodic one)
        self.renewals = 0  # the subscription renewed while the stream was stale
        self._renewed_at = -float("inf")
        self._stale_said = False  # the staleness logged, until a frame comes
        self.frame_at = -float("inf")  # monotonic time of the last frame
        self.read_at = -float("inf")  # and of the last REST read
        self.expiry_reads = 0  # REST reads asked by a row's expiry (``_read_expired``)
        self._read_soon = asyncio.Event()  # a row expired: read REST now
        self._renewal: asyncio.Task[None] | None = None  # the renewal under way
        self._group: asyncio.TaskGroup | None = None  # ``run``'s, while it runs
        # subscribed on the first follower only: an exchange without a multi-assets account
        # never opens it
        self._wanted = asyncio.Event()

    def fresh_rows(self) -> Mapping[str, Mapping[str, Any]] | None:
        """The standing rows (none expired) while a frame came within ``stale_after_s`` and
        REST was read within ``read_every_s``; None otherwise (the stream stale or never up,
        no REST read yet): a reconcile then reads REST itself, as it does for a row it needs
        that is missing here (an expired one)."""
        now = self._clock()
        fresh = now - self.frame_at <= self.stale_after_s
        if not fresh or now - self.read_at >= self.read_every_s:
            return None
        expired = self._expired(now)
        return {s: row for s, row in self.rows.items() if s not in expired}

    def _expired(self, now: float) -> dict[str, float]:
        """The rows rejected since their last good one, that one more than ``stale_after_s``
        before ``now``: by symbol, when it came."""
        since = now - self.stale_after_s
        return {
            s: self.row_at[s] for s in self.rejected_at if s in self.rows and self.row_at[s] < since
        }

    def follow(
        self, follower: IndexFollower, symbols: Set[str] | None = None, unserved: bool = True
    ) -> None:
        """``follower`` counts at the rows of ``symbols`` (``USDTUSD``...): handed each frame
        or read that changes one of them (or their expiry); None: every delivery;
        ``unserved``: the next one whatever it changes (its rates are a snapshot's, not yet
        the stream's)."""
        held = frozenset((EVERY_ROW,) if symbols is None else symbols)
        before = self._holding.get(follower)
        if before != held:
            for symbol in before or ():
                self._drop_holder(symbol, follower)
            for symbol in held:
                self._holders.setdefault(symbol, set()).add(follower)
            self._holding[follower] = held
        if unserved or before is None:
            self._unserved.add(follower)
        self.followers.add(follower)
        self._wanted.set()

    def unfollow(self, follower: IndexFollower) -> None:
        self.followers.discard(follower)
        for symbol in self._holding.pop(follower, ()):
            self._drop_holder(symbol, follower)
        self._unserved.discard(follower)
        self._failing -= {(follower, _INDEX), (follower, _MALFORMED)}

    def _drop_holder(self, symbol: str, follower: IndexFollower) -> None:
        holders = self._holders.get(symbol)
        if holders is not None:
            holders.discard(follower)
            if not holders:
                del self._holders[symbol]

    async def run(self) -> None:
        """Stream from the first follower on, and read over REST while the stream is
        stale, until cancelled."""
        await self._wanted.wait()
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self._stream(), name=self.name)
            group.create_task(self._read_over_rest(), name=f"{self.name} REST")
            group.create_task(self._read_expired(), name=f"{self.name} REST for expired rows")

    async def _read_over_rest(self) -> None:
        """The REST read, for every follower at once: while the stream is stale, once per
        ``stale_after_s``; otherwise once per ``read_every_s`` (the longest planned
        reconcile interval of its accounts), the truth the stream is checked against, which
        the followers' own reconciles then read from :meth:`fresh_rows` rather than each
        asking REST again."""
        while True:
            await self._sleep(min(self.stale_after_s, self.read_every_s))
            now = self._clock()
            stale = now - self.frame_at > self.stale_after_s
            if self.followers and stale:
                self._renew_beside(now)
            if not self.followers or not (stale or now - self.read_at >= self.read_every_s):
                continue
            await self._poll()

    async def _poll(self) -> None:
        """One REST read of the index for every follower (through the hub's exchange: paced
        by the host's per-IP budget with the marks, weight 10 at Binance); a failure is
        logged, the next read due as before."""
        try:
            rows, problems = await self.adapter.fetch_asset_index(await self._ready_exchange())
        except Exception as exc:
            if not isinstance(exc, ccxt.BaseError | FrameError):
                log.exception("%s: reading the asset index failed unexpectedly", self.name)
            log.warning("%s: asset index not read: %s", self.name, describe(exc))
            return
        self.polls += 1
        for problem in problems:
            self.on_malformed(BAD_ROW, problem)
        self.read(rows)

    async def _read_expired(self) -> None:
        """A row that expires (rejected in the frames, or lacking from a read, for
        ``stale_after_s`` since its last good one) asks one REST read at once, for every row
        that expired with it: its followers name it stale until a good one comes, which would
        otherwise wait for the next reconcile's read (up to its interval, 60 s and more).
        Once per expiry: a read that lacks the row too (delisted), or fails, leaves it expired
        to the reconciles' and periodic reads, as before."""
        while True:
            await self._read_soon.wait()
            self._read_soon.clear()
            if self.followers:
                self.expiry_reads += 1
                await self._poll()

    @property
    def renewing(self) -> bool:
        """A renewal of the subscription is under way (:meth:`_renew_beside`)."""
        return self._renewal is not None and not self._renewal.done()

    def _renew_beside(self, now: float) -> None:
        """:meth:`_renew` in a task of its own, one at a time, beside the REST read rather
        than in front of it: a renewal that drops a half-dead socket waits up to
        ``CLOSE_REPLY_WAIT_S`` for its CLOSE reply, the rates on REST meanwhile. The task is
        the stream's (its task group): cancelled with it, where aiohttp closes the transport
        all the same (no socket left open)."""
        if self.renewing or self._group is None:
            return
        self._renewal = self._group.create_task(self._renew(now), name=f"{self.name} renewal")

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
        periodic read is due ``read_every_s`` from now. A row it lacks (rejected as malformed,
        or no longer listed) counts as rejected: the read is every row there is."""
        self.read_at = self._clock()
        lacking = self.rows.keys() - {str(row["symbol"]) for row in rows}
        self.deliver(rows, streamed=False, rejected=lacking)

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
            self.deliver(rows, rejected=rejected_symbols(problems))

    def deliver(
        self, rows: list[dict[str, Any]], streamed: bool = True, rejected: Set[str] = frozenset()
    ) -> None:
        """One frame's checked rows (or a REST read's: not ``streamed``) and the symbols whose
        rows it ``rejected``: kept, and handed to every follower."""
        if streamed:
            self.frames += 1
            self.frame_at = self._clock()
            if self._stale_said:  # said whether or not this frame moves a rate
                self._stale_said = False
                log.info("%s: stream back: the rates follow it again", self.name)
        now = self._clock()
        changed = set()
        for symbol in rejected:
            self.rejected_at[symbol] = now
        for row in rows:
            symbol = str(row["symbol"])
            self.row_at[symbol] = now
            self.rejected_at.pop(symbol, None)
            if self.rows.get(symbol) != row:
                changed.add(symbol)
                self.rows[symbol] = row
        expired = self._expired(now)
        # the rows that expired with this delivery, or came back: their holders told
        moved = changed | (expired.keys() ^ self._expired_said)
        # a REST read at once, not at the next reconcile, for a row a frame let expire that an
        # account counts at: a read's own expiry (a row it lacks) a second read would lack
        # again, and an unheld row's read would only bring it back to expire again
        reading = streamed and any(self._held(s) for s in expired.keys() - self._expired_said)
        if reading:
            self._read_soon.set()
        self._say_expired(expired, reading)
        # an expired row is handed to none: each follower keeps the rates it last gave
        standing = {s: row for s, row in self.rows.items() if s not in expired}
        # the holders of a row it moved (and those not served yet), not every follower: the
        # others' rates are what they were (cost proportional to what changed)
        handed = set(self._unserved)
        self._unserved.clear()
        for symbol in (*moved, EVERY_ROW):
            handed |= self._holders.get(symbol, set())
        self.handed += len(handed)
        for follower in list(self.followers):
            try:
                if follower in handed:
                    follower.on_asset_index(standing, changed, now, streamed, expired)
                elif streamed:
                    follower.on_index_frame(now)
            except Exception:
                self._follower_failed(follower, _INDEX)
            else:
                self._failing.discard((follower, _INDEX))

    def _held(self, symbol: str) -> bool:
        """Whether an account counts at ``symbol``'s row (or at every row)."""
        return bool(self._holders.get(symbol) or self._holders.get(EVERY_ROW))

    def _say_expired(self, expired: Mapping[str, float], reading: bool) -> None:
        """Each row's expiry logged once for the stream (``reading``: with a REST read asked
        now), and its return."""
        for symbol in sorted(expired.keys() - self._expired_said):
            log.warning(
                "%s: no good %s row in %.0fs (rejected since): its accounts keep its last good "
                "rates, named stale, until one comes%s",
                self.name,
                symbol,
                self.stale_after_s,
                "; reading the index over REST now" if reading and self._held(symbol) else "",
            )
        for symbol in sorted(self._expired_said - expired.keys()):
            log.info("%s: %s row good again: the rates follow it", self.name, symbol)
        self._expired_said = set(expired)

    def on_malformed(self, kind: str, detail: str) -> None:
        if not self.followers:
            log.warning("%s: skipped a malformed frame (%s): %s", self.name, kind, detail)
        for follower in list(self.followers):
            try:
                follower.on_malformed(kind, detail)
            except Exception:
                self._follower_failed(follower, _MALFORMED)
            else:
                self._failing.discard((follower, _MALFORMED))

    def _follower_failed(self, follower: IndexFollower, what: str) -> None:
        # one follower's bug is its account's, not the stream's: the task that runs this
        # stream runs every account's rates (and the hub with it); its traceback once per run
        # of failures, the bug being the same each frame
        if (follower, what) in self._failing:
            log.debug(
                "%s: a follower (%r) failed again on %s", self.name, follower, what, exc_info=True
            )
            return
        self._failing.add((follower, what))
        log.exception(
            "%s: a follower (%r) failed on %s (its next failures at debug, until it succeeds)",
            self.name,
            follower,
            what,
        )
