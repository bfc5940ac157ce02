"""Builds the daemon's :class:`~alertd.daemon.view.DaemonView` from the feeds, the evaluation
and the store, and replaces it whole.

Cost follows what changed: an account's part is rebuilt when its feed changed (or at the
once-a-second sweep, which ages every stream), and the firing alerts and the outbox are read
again only when a commit, a delivery or the sweep may have changed them. A scrape reads the
result and computes nothing.

An account's figures are read from the book the evaluation reads, and only when its marks or
its snapshot moved since the last rebuild (else the same figures, which are still exact). The
running sums are current; each liquidation price comes from the book's kept solution (re-solved
on its tier segment's line, or searched again only when it leaves it). The crash distance (the
costliest: every mark moved at once; only with ``crash``) is solved at most once per
``crash_every_s`` for a ticking account, and published with the time it was solved
(``AccountFigures.crash_at``): an older figure is never shown as the current one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TypeVar

from alertd.clock import Clock
from alertd.config import FeedSettings
from alertd.daemon.evaluation import Alerting, watched_exchange_ratio
from alertd.daemon.store import Store
from alertd.daemon.view import (
    AccountFigures,
    AccountView,
    Counters,
    DaemonView,
    FiringAlert,
    FundView,
    PoolFigures,
    PositionFigures,
    Source,
    StreamAge,
    Undelivered,
    health_reasons,
)
from alertd.delivery.deliverer import Deliverer
from alertd.engine.book import LiveAccount
from alertd.engine.dynamics import MarkWindow
from alertd.engine.orderbook import OrderBook
from alertd.engine.stops import stop_figures
from alertd.feeds.ccxt_exchange import HostBan, PublicPause
from alertd.feeds.feed import AccountFeed
from alertd.feeds.state import Coverage
from alertd.rules.metrics import QUIET, pool_values, published_values
from alertd.rules.model import FeedStatus
from alertd.views.format import fee_gap_line

# what holds an exchange host (a ban, a public pause), named by its host
Held = TypeVar("Held", HostBan, PublicPause)


class Publisher:
    def __init__(
        self,
        feeds: Mapping[str, AccountFeed],
        settings: FeedSettings,
        alerting: Alerting,
        store: Store,
        deliverer: Deliverer,
        *,
        clock: Clock,
        wall_clock: Clock,
        crash: bool = False,
        crash_every_s: float = 1.0,
    ) -> None:
        self.feeds = feeds
        self.settings = settings
        self.alerting = alerting
        self.store = store
        self.deliverer = deliverer
        self._clock = clock
        self._wall = wall_clock
        self._crash = crash  # the crash distance (it moves every position: the costliest)
        self._crash_every_s = crash_every_s
        self._kept: dict[str, _Kept] = {}  # each account's last figures, and what they are of
        # each account's last fee gap line (``_fee_gap``), and what it is of
        self._gap_lines: dict[str, tuple[tuple[object, ...], str]] = {}
        self._accounts: dict[str, AccountView] = {}
        self._firing: tuple[FiringAlert, ...] = ()
        self._undelivered: tuple[Undelivered, ...] = ()
        self._stamp: tuple[int, ...] | None = None
        self.published = 0
        # what changed since the view was last built (built when read: see note())
        self._pending: set[str] = set()
        self._pending_full = False
        self._engine_updates = 0
        self._view = self.publish(self.feeds, engine_updates=0, full=True)

    def note(self, changed: Collection[str], *, engine_updates: int, full: bool = False) -> None:
        """Record what changed; the view is rebuilt when it is next read, not now.

        The service notes every evaluation (each account whose marks ticked, and everything
        once a second for the streams' ages); the view is read far less often (a scrape, the
        status line every 5 s, a command): with a thousand accounts ticking every second,
        rebuilding each account's view at every evaluation cost more than the evaluation."""
        self._pending.update(changed)
        self._pending_full = self._pending_full or full
        self._engine_updates = engine_updates

    @property
    def view(self) -> DaemonView:
        """The current view: rebuilt first for what was noted since it was last built."""
        if self._pending or self._pending_full or self._stamp != self._current_stamp():
            changed, self._pending = self._pending, set()
            full, self._pending_full = self._pending_full, False
            self.publish(changed, engine_updates=self._engine_updates, full=full)
        return self._view

    def _current_stamp(self) -> tuple[int, ...]:
        return (
            self.alerting.commits,
            self.store.outbox_changes,
            self.deliverer.sent,
            self.deliverer.failed,
        )

    def publish(
        self, changed: Collection[str], *, engine_updates: int, full: bool = False
    ) -> DaemonView:
        """Rebuild the accounts in ``changed`` (``full``: everything) and replace the view.

        Returns the current view, the same object when nothing changed.
        """
        stamp = self._current_stamp()
        if not full and not changed and stamp == self._stamp and self.published:
            return self._view
        now = self._clock()
        wall = self._wall()
        for name in self.feeds if full else changed:
            feed = self.feeds.get(name)
            if feed is not None:
                self._accounts[name] = self._account(feed, now, wall)
        if full or stamp != self._stamp:
            self._firing = self._read_firing()
            self._undelivered = self._read_undelivered()
        self._stamp = stamp
        accounts = tuple(self._accounts[name] for name in self.feeds if name in self._accounts)
        bans = tuple(ban.said(wall) for ban in self._bans())
        pauses = tuple(pause.said(wall) for pause in self._public_pauses())
        self._view = DaemonView(
            source=Source.DAEMON,
            at=wall,
            accounts=accounts,
            firing=self._firing,
            undelivered=self._undelivered,
            counters=Counters(
                engine_updates=engine_updates,
                notifications=self.alerting.notifications,
                sent=self.deliverer.sent,
                failed=self.deliverer.failed,
            ),
            reasons=health_reasons(accounts, self._undelivered, wall, bans),
            funds=self._funds(),
            bans=bans,
            public_pauses=pauses,
        )
        self.published += 1
        return self._view

    def _account(self, feed: AccountFeed, now: float, wall: float) -> AccountView:
        state = feed.state
        name = feed.config.name
        # the exchange's own ratio, moved with the marks (read here: an account within its
        # band is not evaluated at every mark)
        exchange_ratio, moved = watched_exchange_ratio(state)
        return AccountView(
            name=name,
            exchange=feed.config.exchange,
            bootstrapped=state.bootstrapped,
            connected=state.connected,
            fatal=state.fatal,
            stale=stale_streams(feed, self.settings, now),
            missed=state.missed.describe() if state.missed is not None else None,
            open_positions=len(state.positions),
            figures=self._figures_of(feed, now, wall),
            reconnects=feed.reconnects,
            ages=tuple(
                StreamAge(stream.value, key, now - seen)
                for (stream, key), seen in state.last_seen.items()
            ),
            drift=tuple(feed.drift.items()),
            mode=state.mode.label if state.bootstrapped or state.fatal else "",
            coverage=state.mode.coverage.value,
            mode_limits=None if state.mode.coverage is Coverage.COMPUTED else state.mode.limits,
            exchange_ratio=exchange_ratio if state.bootstrapped else None,
            exchange_ratio_moved=moved and state.bootstrapped,
            missing=tuple(state.incomplete()) if state.bootstrapped else (),
            fee_gap=self._fee_gap(feed),
            held_alerts=self.alerting.held_positions(name),
            exchange_positions=state.exchange_ratio_positions()
            if state.bootstrapped and state.mode.coverage is not Coverage.COMPUTED
            else (),
        )

    def refigure(self, name: str) -> None:
        """The account's figures are figured again at the next publish though its book
        account and marks are the same (a snapshot that read what the state held)."""
        self._kept.pop(name, None)

    def _figures_of(self, feed: AccountFeed, now: float, wall: float) -> AccountFigures | None:
        """The account's figures in the book, once its data is complete (as the evaluation)."""
        state = feed.state
        name = feed.config.name
        live = self._live(feed)
        if live is None:
            self._kept.pop(name, None)
            return None
        books = feed.hub.books.books if feed.hub.books is not None else {}
        # the coins that move with a mark move the figures too, and the held symbols' order
        # books (each a new object when fetched again)
        marks = (
            *(lp.mark for lp in live.positions),
            *(fund.latest for fund in feed.hub.insurance.values()),
            *(coin.price for coin in live.coins),
            *(books.get(lp.symbol) for lp in live.positions),
            state.shown_fee_gap,  # the fee_gap gauge's: read at a reconcile
        )
        kept = self._kept.get(name)
        if kept is not None and kept.live is live and kept.marks == marks:
            return kept.figures  # nothing moved: the same figures, still exact
        crash: Decimal | None = None
        crash_at: float | None = None
        solved = now
        if self._crash:
            if kept is not None and kept.live is live and now - kept.solved < self._crash_every_s:
                # solved less than crash_every_s ago at other marks: shown with that time
                crash, crash_at, solved = (
                    kept.figures.crash_distance,
                    kept.figures.crash_at,
                    kept.solved,
                )
            else:
                crash, crash_at = live.crash_distance(), wall
        status = FeedStatus(
            Decimal(0),
            Decimal(0),
            state.fatal,
            insurance_drops=insurance_drops(feed, self.alerting.insurance_window_s),
            fee_gap=state.shown_fee_gap,
        )
        result = figures(live, False, books, feed.hub.dynamics or None, status)
        if crash is not None:
            values = {**result.values, "crash_distance": crash}
            result = replace(result, crash_distance=crash, crash_at=crash_at, values=values)
        self._kept[name] = _Kept(live, marks, result, solved)
        return result

    def _fee_gap(self, feed: AccountFeed) -> str | None:
        """The account's fee gap (``AccountState.fee_gap``) with the maintenance margin it
        leaves out at the current marks; computed for the few accounts that have one."""
        name = feed.config.name
        gap = feed.state.shown_fee_gap
        live = self._live(feed) if gap is not None else None
        if gap is None or live is None:
            self._gap_lines.pop(name, None)
            return None if gap is None else gap.describe()
        # two computes per pool: kept while the book's account and its marks stay (a publish
        # of an account whose marks did not move cost 6x one without a gap)
        of = (live, *(lp.mark for lp in live.positions), *(c.price for c in live.coins), gap)
        kept = self._gap_lines.get(name)
        if kept is not None and kept[0] == of:
            return kept[1]
        line = fee_gap_line(live.current().pool_accounts(), gap)
        self._gap_lines[name] = (of, line)
        return line

    def _live(self, feed: AccountFeed) -> LiveAccount | None:
        """The account's figures in the book, once its data is complete (as the evaluation
        reads them); None before."""
        live = self.alerting.book.get(feed.config.name)
        return live if live is not None and feed.state.computable else None

    def health(self) -> Health:
        """What the health line says, read from the feeds, the book, the alert engine and the
        outbox as they are now: no account's view is built for it."""
        now = self._clock()
        stale: list[str] = []
        missed: list[str] = []
        stopped: list[str] = []
        waiting: list[str] = []
        retrying: list[str] = []
        ratios: list[tuple[Decimal, str]] = []
        positions = 0
        for name, feed in self.feeds.items():
            positions += len(feed.state.positions)
            failed = feed.state.start_retrying()
            queued = feed.waiting_for_opening_turn()
            if feed.state.fatal:
                stopped.append(name)
            elif failed:  # its bootstrap, or then its private stream's first opening
                retrying.append(f"{name} {failed}")
            elif not feed.state.bootstrapped:
                if feed.waiting_for_first_slot():
                    waiting.append(f"{name} waiting for a REST slot")
                else:
                    waiting.append(name)
            elif queued and not feed.state.connected:
                # none of its connections open yet: its private streams are old by the wait
                waiting.append(f"{name} waiting for its turn to open a websocket")
            elif stale_streams(feed, self.settings, now):
                # streaming, a stale mark is not hidden by another connection queued for its
                # turn (OKX's business one)
                stale.append(name)
            elif queued:
                waiting.append(f"{name} waiting for its turn to open a websocket")
            live = self._live(feed)
            if live is not None:
                ratios.append((live.worst_ratio, name))
            if feed.state.missed is not None and not feed.state.fatal:
                missed.append(name)
        return Health(
            len(self.feeds),
            tuple(stale),
            tuple(stopped),
            (*retrying, *waiting),
            positions,
            max(ratios, default=None),
            len(self.alerting.engine.firing()),
            len(self.store.pending()),
            self._bans(),
            self._public_pauses(),
            tuple(missed),
        )

    def _public_pauses(self) -> tuple[PublicPause, ...]:
        """The pauses of the feeds' exchange hosts' public requests, each host once."""
        return self._per_host([feed.host_public_pause() for feed in self.feeds.values()])

    def _bans(self) -> tuple[HostBan, ...]:
        """The bans of the feeds' exchange hosts, each host once."""
        return self._per_host([feed.host_ban() for feed in self.feeds.values()])

    @staticmethod
    def _per_host(found: Sequence[Held | None]) -> tuple[Held, ...]:
        """What holds the feeds' exchange hosts, each host once (the last seen of one)."""
        held = {item.host: item for item in found if item is not None}
        return tuple(held.values())

    def _funds(self) -> tuple[FundView, ...]:
        found = {
            (feed.hub.adapter.exchange_id, symbol): balance
            for feed in self.feeds.values()
            for symbol, history in feed.hub.insurance.items()
            if (balance := history.latest) is not None
        }
        return tuple(FundView(e, s, balance) for (e, s), balance in sorted(found.items()))

    def _read_firing(self) -> tuple[FiringAlert, ...]:
        engine = self.alerting.engine
        return tuple(FiringAlert.of(s, engine.rules.get(s.rule)) for s in engine.firing())

    def _read_undelivered(self) -> tuple[Undelivered, ...]:
        return tuple(Undelivered.of(row) for row in self.store.pending())


def stale_streams(feed: AccountFeed, settings: FeedSettings, now: float) -> tuple[str, ...]:
    """The account's stale streams at monotonic ``now`` ("mark BTC/USDT:USDT", "balance"),
    or "not bootstrapped" (with why its last try failed, while it retries), or, bootstrapped,
    "private stream not open" while its first opening retries after a failure; empty while
    every stream is fresh."""
    state = feed.state
    failed = state.start_retrying()
    if not state.bootstrapped:
        return ("not bootstrapped" + (f" ({failed})" if failed else ""),)
    if failed:
        return (f"private stream not open ({failed})",)
    # two of the account's own reconciles missed: stretched with many accounts on one IP
    # (1,000 Binance accounts: every 556 s), where the setting's 60 s would call every quiet
    # account stale (the health check failing, the dead-man's heartbeat withheld)
    private_after = 2 * feed.reconcile_interval_s + settings.stale_after_s
    # nor while the reconciles give way to other accounts' bootstraps (a start of 1,000 OKX
    # accounts: up to 861 live ones "stale" in a health line, benchmarks.md tenth pass)
    held = feed.reconciles_held_until(now)
    # a change its private stream missed (``state.missed``) is no staleness: the reconcile
    # that found it applied its snapshot and the stream is reopened; the warning alert and
    # the status's ``private_stream_missed`` say it, without failing /healthz nor withholding
    # the dead-man's heartbeat
    return tuple(
        f"{f.stream.value} {f.key}".strip()
        for f in state.freshness(now, settings.stale_after_s, private_after, held)
        if f.stale
    )


@dataclass(frozen=True, slots=True)
class Health:
    """What the daemon's health line says: the accounts, those stale (not stopped) and those
    stopped, the open positions, the worst ratio and its account, the alerts firing and the
    messages still to deliver."""

    accounts: int
    stale: tuple[str, ...]  # bootstrapped, a stream stale
    stopped: tuple[str, ...]
    # not bootstrapped yet, not stopped: those retrying after a failed bootstrap first, with
    # why ("acct7 retrying after RequestTimeout: ..."), then those waiting for their turn
    # ("acct8 waiting for a REST slot" while its first bootstrap is queued for one)
    not_live: tuple[str, ...]
    positions: int
    worst: tuple[Decimal, str] | None
    firing: int
    queued: int
    bans: tuple[HostBan, ...] = ()  # the exchange hosts whose IP is banned, each once
    # the exchange hosts whose public requests wait after a 429 (OKX, Gate), each once
    public_pauses: tuple[PublicPause, ...] = ()
    # the accounts whose private stream missed a change a reconcile found (said, not stale)
    missed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Kept:
    """An account's last published figures and what they were computed from."""

    live: LiveAccount  # the book's account (a snapshot rebuilds it, or refigure() drops this)
    marks: tuple[object, ...]  # the marks, then the order books, of its positions
    figures: AccountFigures
    solved: float  # monotonic time the crash distance in ``figures`` was solved


def figures(
    live: LiveAccount,
    crash: bool,
    books: Mapping[str, OrderBook] | None = None,
    dynamics: Mapping[str, MarkWindow] | None = None,
    feed: FeedStatus = QUIET,
) -> AccountFigures:
    """An immutable copy of a book account's figures at this moment, with every published
    metric (:func:`~alertd.rules.metrics.published_values`: the order-book ones for the
    positions whose symbol has a book in ``books``, the price-dynamics ones with the symbols'
    ``dynamics``, the insurance fund's fall from ``feed``)."""
    distance = live.crash_distance() if crash else None
    account, positions = published_values(live, feed, dynamics, books, distance)
    uses_fee = live.account.profile.uses_fee
    return AccountFigures(
        worst_ratio=live.worst_ratio,
        pool_ratio=live.cross.ratio,
        buffer=live.cross.buffer,
        crash_distance=distance,
        settle=live.cross.asset,  # the (riskiest) cross pool's margin asset
        positions=tuple(
            PositionFigures(
                symbol=lp.symbol,
                side=lp.position.side.label,
                contracts=lp.position.contracts,
                mark_price=lp.mark,
                liquidation_price=live.liquidation_price(i),
                liquidation_distance=live.liquidation_distance(i),
                margin_ratio=lp.pool.ratio,
                stop=stop_figures(
                    live.account.stops, lp.position, lp.mark, live.liquidation_price(i)
                ),
                adl_rank=lp.position.adl_rank,
                fee_rate=lp.position.fee_rate if uses_fee else None,
                bankruptcy_buffer=values.get("bankruptcy_buffer"),
                gap_risk=values.get("gap_risk"),
                liquidation_probability=values.get("liquidation_probability"),
                time_to_liquidation=values.get("time_to_liquidation"),
                values=values,
            )
            for (i, lp), values in zip(enumerate(live.positions), positions, strict=True)
        ),
        effective_leverage=live.effective_leverage,
        concentration=live.concentration,
        margin_concentration=live.margin_concentration,
        values=account,
        pools=tuple(
            PoolFigures(pool.asset, pool.ratio, pool.buffer, pool_values(live, feed, pool))
            for pool in live.cross_pools.values()
        )
        if len(live.cross_pools) > 1
        else (),
    )


def insurance_drops(feed: AccountFeed, window_s: float) -> dict[str, Decimal]:
    """Per held symbol, the insurance fund's fall from its high over ``window_s`` (where the
    rules watch it and the exchange publishes it)."""
    funds = feed.hub.insurance
    found = ((s, funds.get(s)) for s in feed.state.held_symbols) if funds else ()
    return {s: d for s, h in found if h is not None and (d := h.drop(window_s)) is not None}
