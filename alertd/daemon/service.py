"""The daemon: one object owns startup, the main loop and an ordered, bounded shutdown.

    startup:   read secrets and receiver URLs, open the state file (alert states and the
               outbox resume from it), build feeds, rules and delivery
    main loop: feeds stream into the engine (a mark tick: one book update for every
               holder of the symbol on its exchange's hub, a holder within its band not
               queued); changed accounts are evaluated within
               ``eval_interval_s``, and every account at least once a second (one not
               evaluated for a second is: so time-based rules such as "for", repeat and
               staleness advance without ticks, and an account whose marks tick every second
               is not evaluated twice for it); the outbox is delivered;
               one health line per interval (the snapshots whose holdings changed saved
               with it, and a share of the others for their marks);
               while every feed is fresh, a heartbeat to the dead-man's switch every
               ``deadman_interval`` (through the outbox)
    shutdown:  stop intake (cancel feeds), drain the outbox within a bound, close exchanges
               within a bound, close the state file, one summary line

Signal handlers only set flags: SIGTERM/SIGINT ``should_exit`` (a second SIGINT
``force_exit``), SIGHUP ``should_reload`` (rules, receivers, routes, quiet hours; a bad file
keeps the old config and says why). Tests drive :meth:`serve` directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import signal
import time
from collections.abc import Mapping, Set
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from aiohttp import web

import alertd.views.format as fmt
from alertd.clock import Clock
from alertd.config import (
    DEADMAN,
    Config,
    ConfigError,
    Secret,
    expand_env,
    load_config,
    read_secrets,
)
from alertd.daemon.evaluation import Alerting
from alertd.daemon.http import bound_port, serve_http
from alertd.daemon.publisher import Publisher
from alertd.daemon.sdnotify import Notifier, status_line
from alertd.daemon.store import SavedMode, Store
from alertd.daemon.view import EMPTY, AccountView, DaemonView
from alertd.delivery.deliverer import Deliverer
from alertd.delivery.routing import build_receivers
from alertd.delivery.senders import Senders, production_senders
from alertd.delivery.system import SystemMessage, digest, heartbeat
from alertd.engine.book import Book
from alertd.engine.model import Account
from alertd.errors import StartupError
from alertd.feeds.feed import AccountFeed, Change
from alertd.feeds.manager import FeedFactory, FeedManager
from alertd.feeds.marks import MarkHub, MarkSubscriber
from alertd.feeds.options import PRODUCTION, FeedOptions
from alertd.feeds.state import Coverage
from alertd.rules.band import BandIndex
from alertd.rules.metrics import book_covers, dynamics_span_s
from alertd.snapshot.format import account_to_json

log = logging.getLogger(__name__)

# an account's mode as the state file keeps it (SavedMode but its time)
ModeRow = tuple[str, str, str | None, Decimal | None]

# An account whose holdings did not change (positions, wallet, stops, tiers: what its snapshot
# holds but the marks) is saved again at least this often, for its marks: what `alertd status`
# shows after a crash (a stop saves every account). Spread over the health intervals: every
# account saved each minute as its marks moved was 2-11% of a firing daemon's samples
# (benchmarks.md, tenth pass), for marks nobody read.
SNAPSHOT_MARKS_SAVED_EVERY_S = 600.0

# The longest an account goes unevaluated: time-based rules ("for", repeat, staleness) advance
# at least this often without a tick.
SWEEP_S = 1.0

EXIT_OK = 0
# A long task (feeds, delivery) or the endpoint died: a bug. Not 2,
# which the systemd unit does not restart after (a bad config).
EXIT_TASK_DIED = 1


class Service:
    """The daemon. Its seams are typed constructor arguments: ``feeds`` (how feeds reach an
    exchange, back off, and the monotonic clock and sleep they and the service run on),
    ``feed_factory`` (a test's own feed class), ``senders`` (one per transport) and
    ``wall_clock`` (epoch seconds for what is stored and shown)."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        secrets: dict[str, dict[str, Secret]] | None = None,
        senders: Senders | None = None,
        feeds: FeedOptions = PRODUCTION,
        feed_factory: FeedFactory = AccountFeed,
        wall_clock: Clock = time.time,
        health_interval_s: float = 60.0,
        eval_interval_s: float = 0.05,
        shutdown_timeout_s: float = 10.0,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path else None
        self.health_interval_s = health_interval_s
        self.eval_interval_s = eval_interval_s
        self.shutdown_timeout_s = shutdown_timeout_s
        # one monotonic clock for the feeds and the service: staleness compares the two
        self._clock = feeds.clock
        self._wall = wall_clock
        self._secrets = secrets
        self._senders = senders
        self._feed_options = feeds
        self._feed_factory = feed_factory
        self.book = Book()
        self.manager: FeedManager | None = None
        self.store: Store | None = None
        self.deliverer: Deliverer | None = None
        self.alerting: Alerting | None = None
        self.publisher: Publisher | None = None
        self.should_exit = False
        self.force_exit = False
        self.should_reload = False
        self.started = asyncio.Event()
        self.ticks = 0  # engine updates applied, for health and metrics
        self._dirty: set[str] = set()  # to evaluate this cycle
        self._changed: set[str] = set()  # ... of which the figures changed
        self._ticked: set[str] = set()  # whose marks ticked: their bands checked at the turn
        # the last mark of each (hub, symbol) that ticked since the last turn, and the bands'
        # bounds by hub and symbol: a tick wakes only the accounts whose band it leaves
        self._tick_prices: dict[tuple[MarkHub, str], Decimal] = {}
        self._band_index = BandIndex()
        # when each account was last evaluated, oldest first (the sweep takes those a second
        # old from the front)
        self._evaluated_at: dict[str, float] = {}
        self._events: list[tuple[AccountFeed, Any]] = []
        self.notifier = Notifier()
        # what the state file holds of each account (its snapshot's holdings, its mode):
        # saved again only when changed; the snapshots' wall times, oldest first (their marks
        # saved again from the front)
        self._saved_holdings: dict[str, tuple[object, ...]] = {}
        # what each account in the book was built from but its marks (:meth:`_built_from`)
        self._built: dict[str, tuple[object, ...]] = {}
        self._snapshots_saved_at: dict[str, float] = {}
        self._saved_modes: dict[str, ModeRow] = {}
        self.http_port: int | None = None
        self._ready_sent = False

    # --- lifecycle ----------------------------------------------------------------------

    def run(self) -> int:
        return asyncio.run(self.serve())

    def _read_secrets(self) -> dict[str, dict[str, Secret]]:
        if self._secrets is not None:
            return self._secrets
        found: dict[str, dict[str, Secret]] = {}
        problems: list[str] = []
        for i, account in enumerate(self.config.accounts):
            if not account.enabled:
                continue
            try:
                found[account.name] = read_secrets(account, where=f"accounts[{i}]")
            except ConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
        return found

    def _startup(self) -> None:
        secrets = self._read_secrets()
        receivers = build_receivers(self.config)
        try:
            self.store = Store(self.config.state_path)
        except Exception as exc:
            raise StartupError(
                f"cannot open the state file {self.config.state_path}: {exc}"
            ) from exc
        self.deliverer = Deliverer(
            self.store,
            receivers,
            self.config.routes,
            self.config.delivery,
            self._senders if self._senders is not None else production_senders(self.config),
            clock=self._wall,
        )
        self.alerting = Alerting(
            self.config, self.store, self.deliverer, book=self.book, wall_clock=self._wall
        )
        self.manager = FeedManager(
            self.config,
            secrets,
            self._feed_options,
            feed_factory=self._feed_factory,
            dynamics_span_s=dynamics_span_s(self.alerting.rules),
            book_covers=book_covers(self.alerting.rules),
        )
        # a ban met before the restart still holds the hosts' requests until its real end
        # (told: Alerting)
        bans = self.store.ip_bans()
        self.manager.restore_ip_bans({h: (b.status, b.until_wall) for h, b in bans.items()})
        for feed in self.manager.feeds.values():
            feed.listeners.append(self._on_change)  # what changed but the marks
        for hub in self.manager.hubs.values():
            hub.on_tick = self._on_tick  # a mark: once for all of its holders
        # never evaluated: first in line for the sweep
        self._evaluated_at = dict.fromkeys(self.manager.feeds, -float("inf"))
        self.publisher = Publisher(
            self.manager.feeds,
            self.config.feeds,
            self.alerting,
            self.store,
            self.deliverer,
            clock=self._clock,
            wall_clock=self._wall,
            crash=self.config.http.enabled,  # the endpoint shows it
        )
        self.deliverer.on_attempt = lambda: self._publish(set(), full=False)
        pending = len(self.store.pending())
        log.info(
            "starting: %s, %s, %s, %s firing, %s to deliver from before",
            fmt.count(len(self.manager.feeds), "account"),
            fmt.count(len(self.alerting.rules), "rule"),
            fmt.count(len(receivers), "receiver"),
            fmt.count(len(self.alerting.engine.firing()), "alert"),
            fmt.count(pending, "message"),
        )
        if not receivers:
            log.warning("no receivers configured: alerts are evaluated and stored, not sent")

    async def serve(self, install_signals: bool = True) -> int:
        """Run until told to stop (0), or until a long task dies (:data:`EXIT_TASK_DIED`).

        Everything after the tasks are spawned is inside the guarded region, so whatever
        fails there (the endpoint's port taken, a bug in the loop) still gets the ordered
        shutdown before it propagates.
        """
        self._startup()
        assert self.manager is not None and self.deliverer is not None
        if install_signals:
            self._install_signals()
        feeds = asyncio.create_task(self.manager.run(), name="feeds")
        delivery = asyncio.create_task(self.deliverer.run(), name="delivery")
        # the Telegram bot's commands: a task like the others (its death stops the daemon)
        others = [asyncio.create_task(self._command_bot(), name="telegram")]
        runner = None
        died: str | None = None
        try:
            runner = await self._start_http()
            self.started.set()
            start = self._clock()
            next_health = start + self.health_interval_s
            next_full = start
            next_status = start
            next_watchdog = start
            next_digest = self._next_digest()
            next_heartbeat = start
            while not self.should_exit:
                died = _log_death(feeds, delivery, *others, runner=runner)
                if died is not None:
                    break
                await asyncio.sleep(self.eval_interval_s)
                now = self._clock()
                if self.should_reload:
                    self.should_reload = False
                    self.reload()
                full = now >= next_full
                if full:
                    next_full = now + 1.0
                self.step(now, full)
                # the view is built when read (each account's figures: with a thousand
                # accounts, reading it every turn cost more than the evaluation), so it is
                # read here only when something is sent from it
                # systemd: READY once every feed has bootstrapped (or stopped for good), or after
                # a bound so one unreachable exchange cannot hold the whole service in "starting"
                if not self._ready_sent and (self._all_started() or now - start > 60):
                    self._ready_sent = True
                    self.notifier.ready(status_line(self.view()))
                if now >= next_status:
                    if self.notifier.enabled:
                        self.notifier.status(status_line(self.view()))
                    next_status = now + 5.0
                # the watchdog is fed from this loop only: if evaluation stalls, pings stop
                interval = self.notifier.watchdog_interval_s
                if interval and now >= next_watchdog:
                    self.notifier.watchdog()
                    next_watchdog = now + interval / 3
                if now >= next_health:
                    self.log_health()
                    next_health = now + self.health_interval_s
                if next_digest is not None and self._wall() >= next_digest:
                    self._send_digest()
                    next_digest = self._next_digest()
                if now >= next_heartbeat:
                    if DEADMAN in self.deliverer.receivers:
                        self._send_heartbeat(self.view())
                    next_heartbeat = now + self.config.heartbeat.deadman_interval
            else:  # told to stop: a task that died in the same moment still counts
                died = _log_death(feeds, delivery, *others, runner=runner)
        finally:
            self.notifier.stopping()
            try:
                if runner is not None:
                    await runner.cleanup()
            finally:
                for task in others:  # nothing to drain: they only answer questions
                    task.cancel()
                await asyncio.gather(*others, return_exceptions=True)
                await self._shutdown(feeds, delivery)
        return EXIT_OK if died is None else EXIT_TASK_DIED

    async def _command_bot(self) -> None:
        """The Telegram bot's command loop, when a ``telegram:`` section is configured; with
        none, this task waits until the daemon stops."""
        settings = self.config.telegram
        if settings is None or self.store is None:
            await asyncio.Event().wait()
            return
        from alertd.daemon.bot import CommandBot

        bot = CommandBot(
            settings.read_token(),
            settings.api_url,
            settings.chats,
            self.view,
            self.store,
            self._wall,
            self._live_accounts,
        )
        await bot.run()

    def _live_accounts(self) -> dict[str, Account | None]:
        """Every account as its feed holds it now (None while its data is incomplete)."""
        feeds = self.manager.feeds if self.manager is not None else {}
        return {
            name: None if feed.state.missing() else feed.state.to_account()
            for name, feed in feeds.items()
        }

    async def _start_http(self) -> web.AppRunner | None:
        settings = self.config.http
        if not settings.enabled:
            return None
        token = None
        if settings.token_env is not None:
            token = expand_env("${" + settings.token_env + "}", "http.token_env").reveal()
        if not settings.loopback and not token:
            raise StartupError(f"http: refusing to serve {settings.host} without a token")
        try:
            runner = await serve_http(self.view, settings.host, settings.port, token)
        except OSError as exc:
            raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from exc
        self.http_port = bound_port(runner)
        return runner

    def _all_started(self) -> bool:
        feeds = self.manager.feeds.values() if self.manager is not None else ()
        return all(f.state.bootstrapped or f.state.fatal for f in feeds)

    # --- the published view -------------------------------------------------------------

    def view(self) -> DaemonView:
        """The latest published view: what every reader of the daemon's state renders."""
        return self.publisher.view if self.publisher is not None else EMPTY

    def _publish(self, changed: set[str], full: bool) -> None:
        if self.publisher is not None:
            self.publisher.note(changed, engine_updates=self.ticks, full=full)

    async def _shutdown(self, *tasks: asyncio.Task[None]) -> None:
        started = self._clock()
        bound = 0.5 if self.force_exit else self.shutdown_timeout_s
        feeds, delivery = tasks
        # 1. stop intake
        feeds.cancel()
        try:
            await asyncio.wait_for(asyncio.gather(feeds, return_exceptions=True), bound)
        except TimeoutError:
            log.warning("shutdown: feeds did not stop within %.1fs", bound)
        # 2. drain the outbox within its bound
        delivery.cancel()
        await asyncio.gather(delivery, return_exceptions=True)
        left = 0
        if self.deliverer is not None and self.store is not None:
            drain = 0.5 if self.force_exit else self.config.delivery.drain_on_shutdown
            left = await self.deliverer.drain(drain)
            if left:
                log.warning("shutdown: %d messages left in the outbox; sent at next start", left)
        # 3. close exchanges
        if self.manager is not None:
            try:
                await asyncio.wait_for(self.manager.close(), bound)
            except TimeoutError:
                log.warning("shutdown: exchanges did not close within %.1fs", bound)
        if self.store is not None:
            # the accounts as last seen, for `alertd status` while the daemon is down
            try:
                self.save_snapshots(every=True)
            except Exception as exc:  # a broken account must not block the stop
                log.warning("shutdown: accounts not saved to the state file: %s", exc)
            self.store.close()
        log.info(
            "stopped in %.1fs: %s, %s, %s (%d skipped within bands), %s, %d delivered, "
            "%d undelivered",
            self._clock() - started,
            fmt.count(len(self.manager.feeds) if self.manager else 0, "account"),
            fmt.count(self.ticks, "engine update"),
            fmt.count(self.alerting.evaluations if self.alerting else 0, "evaluation"),
            self.alerting.skipped if self.alerting else 0,
            fmt.count(self.alerting.notifications if self.alerting else 0, "notification"),
            self.deliverer.sent if self.deliverer else 0,
            left,
        )

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()

        def on_term() -> None:
            self.should_exit = True

        def on_int() -> None:
            # a second Ctrl+C skips the graceful waits
            self.force_exit = self.should_exit
            self.should_exit = True

        def on_hup() -> None:
            self.should_reload = True

        loop.add_signal_handler(signal.SIGTERM, on_term)
        loop.add_signal_handler(signal.SIGINT, on_int)
        loop.add_signal_handler(signal.SIGHUP, on_hup)

    def reload(self) -> bool:
        """SIGHUP: new rules, receivers, routes and quiet hours; alert states are kept."""
        if self.config_path is None:
            log.warning("reload: no config file to read")
            return False
        assert self.manager is not None
        try:
            config = load_config(self.config_path)
            receivers = build_receivers(config)
        except ConfigError as exc:
            log.error("reload: keeping the running config: %s", "; ".join(exc.problems))
            return False
        if [a.model_dump() for a in config.accounts] != [
            a.model_dump() for a in self.config.accounts
        ]:
            log.warning("reload: account changes take effect at the next restart")
        assert self.alerting is not None and self.deliverer is not None
        self.alerting.reload(config)
        self.manager.set_dynamics_span(dynamics_span_s(self.alerting.rules))
        self.manager.set_book_covers(book_covers(self.alerting.rules))
        self._dirty.update(self.manager.feeds)  # the figures of every account, at once
        self.deliverer.receivers = dict(receivers)
        self.deliverer.routes = list(config.routes)
        self.config = config.model_copy(update={"accounts": self.config.accounts})
        log.info(
            "reloaded %s: %d rules, %d receivers",
            self.config_path,
            len(self.alerting.rules),
            len(receivers),
        )
        return True

    # --- engine and alerts --------------------------------------------------------------

    def _on_tick(
        self, hub: MarkHub, symbol: str, price: Decimal, holders: Set[MarkSubscriber]
    ) -> None:
        """A mark of ``symbol`` for every holder on ``hub`` (their states hold it already):
        one book update for all of them; each is checked against its band at the next turn
        (:meth:`step`), as an evaluation of it would be first."""
        # the service's book is keyed by account name
        touched = cast(set[str], self.book.apply_mark(symbol, price, venue=hub))
        self.ticks += len(touched)
        self._ticked |= touched
        self._tick_prices[(hub, symbol)] = price  # every touched holder's state holds it
        if len(touched) < len(holders):
            # a holder whose book account does not hold the symbol (a position opened since
            # its snapshot, one not complete yet): as a holder alone
            for feed in cast(Set[AccountFeed], holders):  # the manager's hubs hold its feeds
                if feed.config.name not in touched:
                    self._on_change(feed, Change.MARK, symbol)

    def _on_change(self, feed: AccountFeed, change: Change, symbol: str | None) -> None:
        name = feed.config.name
        if change is Change.MARK and symbol is not None and name in self.book:
            price = feed.state.marks.get(symbol)
            if price is not None:
                self.book.apply_account_mark(name, symbol, price)
                self.ticks += 1
            self._dirty.add(name)
            self._changed.add(name)
            return
        assert self.alerting is not None
        kept = False  # the book's account kept: built from what the state holds
        if change is Change.EVENT:
            if feed.state.events:
                self._events.append((feed, feed.state.events[-1]))
        elif change in (Change.ACCOUNT, Change.RATES, Change.MARK):
            if not feed.state.missing():
                built = self._built_from(feed)
                if name not in self.book or self._built.get(name) != built:
                    self.book.set_account(name, feed.state.to_account(), venue=feed.hub)
                    self._built[name] = built
                    self.ticks += 1  # an engine update (none where the account is kept)
                else:
                    # a reconcile that read what the state held: the book's account is what
                    # set_account would build (its marks are the state's, every tick applied
                    # to both), and a calm account's reconciles mostly read that
                    kept = True
                    if self.publisher is not None:
                        # its shown figures are still figured again, as at a rebuild (an
                        # insurance fund's drop, the price history's values move with time,
                        # not with the marks)
                        self.publisher.refigure(name)
            else:
                self.book.remove_account(name)
        elif change is Change.FATAL:
            self.book.remove_account(name)
        if change is Change.RATES and not feed.state.missing():
            # its rates alone moved (an asset index frame, once a second): its band is
            # proven again at them when it is evaluated, the rest of what it assumed as it was
            self.alerting.rerated(name)
        elif change is Change.ACCOUNT and kept:
            # a read of what it held: its figures are as its band assumed; what the read
            # brought beside them (drift, flags, mode) is checked when it is evaluated
            self.alerting.reread(name)
        else:
            self.alerting.forget(name)  # what its band assumed may have changed
        if name not in self.book:
            self._built.pop(name, None)
        self._dirty.add(name)
        self._changed.add(name)

    @staticmethod
    def _built_from(feed: AccountFeed) -> tuple[object, ...]:
        """What the book's account of ``feed`` is built from but the marks' values
        (``AccountState.holdings``), which symbols have a mark (a coin's price follows its
        symbol's mark only once it has one: ``to_account``) and the venue its marks come from."""
        return (feed.hub, feed.state.holdings(), frozenset(feed.state.marks))

    def step(self, now: float, full: bool) -> None:
        """One turn of the main loop's evaluation at monotonic ``now``: the accounts that
        changed and those due at the sweep are evaluated, and what moved is noted for the
        view (``full``: every account, once a second, with the silences read again)."""
        assert self.alerting is not None
        if full:
            self.alerting.refresh_silences()
        self._dirty.update(self._due(now))
        ticked, self._ticked = self._ticked, set()
        prices, self._tick_prices = self._tick_prices, {}
        self._check_bands(ticked, prices, now)
        self._publish(self._evaluate_dirty(now) | ticked, full)

    def _check_bands(
        self, ticked: set[str], prices: Mapping[tuple[MarkHub, str], Decimal], now: float
    ) -> None:
        """The accounts whose marks ticked since the last turn: those within their bands
        are not evaluated (the band proves it would change nothing: counted as skipped, and
        their sweep second starts again now, as for an evaluation), the others are queued.
        What :meth:`Alerting.evaluate` checks first, without the call per account.

        The marks are read only for the accounts whose band a tick's last price left (the
        index of the bands' bounds names them, ``prices``: each hub's symbols' last ticks);
        the others' marks all stand within their bands, the ticked ones by the index, the
        rest as at their last check. Their time, connection, marks' ages and books are
        checked as before."""
        assert self.manager is not None and self.alerting is not None
        dirty, changed, evaluated_at = self._dirty, self._changed, self._evaluated_at
        feeds, within_band = self.manager.feeds, self.alerting.within_band
        index = self._band_index
        left: set[str] = set()
        for (hub, symbol), price in prices.items():
            left.update(index.left(hub, symbol, price))
        for name in ticked:
            if name in dirty:
                changed.add(name)
                continue
            state = feeds[name].state
            hub = feeds[name].hub
            books = hub.books.books if hub.books is not None else None
            known = name not in left
            if within_band(name, state.marks, now, state.connected, books, state.mark_seen, known):
                evaluated_at.pop(name, None)
                evaluated_at[name] = now  # to the back of the line
            else:
                dirty.add(name)
                changed.add(name)

    def _due(self, now: float) -> list[str]:
        """The accounts last evaluated ``SWEEP_S`` or more ago (or never): the sweep."""
        due = []
        for name, at in self._evaluated_at.items():  # oldest first
            if at > now - SWEEP_S:
                break
            due.append(name)
        return due

    def _evaluate_dirty(self, now: float) -> set[str]:
        """Evaluate the accounts that changed and those due at the sweep; returns their
        names."""
        assert self.manager is not None and self.alerting is not None
        events, self._events = self._events, []
        for source, event in events:
            self.alerting.event(source, event)
        self.alerting.host_bans(self.manager.ip_bans())
        dirty, self._dirty = self._dirty, set()
        changed, self._changed = self._changed, set()
        bands, index = self.alerting.bands, self._band_index
        for name in sorted(dirty):
            feed = self.manager.feeds.get(name)
            if feed is not None:
                # not changed: due at the sweep, no tick since its last check but through
                # the index (:meth:`_check_bands`), no other change notified
                self.alerting.evaluate(
                    feed, now, changed=name in changed, marks_known=name not in changed
                )
                held = bands.get(name)
                if held is not None:
                    index.add(feed.hub, name, held)
            self._evaluated_at.pop(name, None)
            self._evaluated_at[name] = now  # to the back of the line
        return dirty

    def save_snapshots(self, every: bool = False) -> None:
        """Each account's snapshot and mode to the state file, for ``alertd status`` while
        the daemon is down, in one commit: the snapshots whose holdings changed since they
        were last saved, and of the others, for their marks, every one that would otherwise
        pass ``SNAPSHOT_MARKS_SAVED_EVERY_S`` before the next interval and up to a share of
        them each interval those saved longest ago; the
        modes that changed (``every``: all of them, at shutdown, so that each is saved with
        the time the daemon last held it)."""
        if self.manager is None or self.store is None:
            return
        wall = self._wall()
        feeds = self.manager.feeds
        holdings: dict[str, tuple[object, ...]] = {}
        modes: dict[str, ModeRow] = {}
        for name, feed in feeds.items():
            # an account in a mode alertd does not compute keeps no figures of alertd's
            if feed.state.computable:
                held = feed.state.holdings()
                if every or held != self._saved_holdings.get(name):
                    holdings[name] = held
        # Every one whose marks would pass the age by the next interval, however many: those
        # saved together (all at a start, every wallet at a funding payment) fall due together,
        # and a share of them an interval left the last 19 minutes old. Then the interval's
        # share, topped up with the oldest not yet due, so such a group spreads out again: the
        # share saves every account within the window before it falls due, so once spread
        # none falls due and the saves stay even.
        due_window = SNAPSHOT_MARKS_SAVED_EVERY_S - self.health_interval_s
        due_by = wall - due_window
        share = math.ceil(
            len(feeds) * self.health_interval_s / max(due_window, self.health_interval_s)
        )
        refreshed = 0
        for name, at in self._snapshots_saved_at.items():  # oldest first
            if at > due_by and refreshed >= share:
                break
            if name not in holdings and feeds[name].state.computable:
                holdings[name] = feeds[name].state.holdings()
                refreshed += 1
        with self.store.batch():
            for name in holdings:
                state = feeds[name].state
                snapshot = account_to_json(state.to_account(), state.fee_gap)
                self.store.save_snapshot(name, snapshot, wall)
            for name, feed in feeds.items():
                state = feed.state
                if state.bootstrapped:  # its mode, for `alertd status` without the daemon
                    mode = state.mode
                    limits = None if mode.coverage is Coverage.COMPUTED else mode.limits
                    ratio = state.reported_account.margin_ratio  # as read at the last reconcile
                    reading: ModeRow = (mode.label, mode.coverage.value, limits, ratio)
                    if every or reading != self._saved_modes.get(name):
                        self.store.save_mode(name, SavedMode(wall, *reading))
                        modes[name] = reading
        # once committed: a failed batch saves them again next time
        self._saved_holdings.update(holdings)
        for name in holdings:
            self._snapshots_saved_at.pop(name, None)
            self._snapshots_saved_at[name] = wall  # to the back of the line
        self._saved_modes.update(modes)

    # --- heartbeat ----------------------------------------------------------------------

    def healthy(self) -> bool:
        return self.view().feeds_fresh

    def _send_heartbeat(self, view: DaemonView) -> SystemMessage | None:
        """The dead-man's switch: a heartbeat to its receiver while every feed is fresh (its
        monitor raises the alarm when they stop)."""
        assert self.deliverer is not None
        if DEADMAN not in self.deliverer.receivers or not view.feeds_fresh:
            return None
        wall = self._wall()
        return self._send_system(heartbeat(DEADMAN, wall, self.config.heartbeat.deadman_interval))

    def _send_system(self, m: SystemMessage) -> SystemMessage | None:
        """alertd's own messages (heartbeat, digest) to the outbox, unless a silence matches
        them (``alertname=heartbeat``: the monitor will notice). Quiet hours do not hold them:
        each is due at its time (the monitor expects heartbeats at night too), and a system
        message held back would never be sent."""
        assert self.deliverer is not None and self.alerting is not None
        if self.alerting.engine.muted(m.labels, m.at):
            log.info("%s silenced", m.name)
            return None
        self.deliverer.enqueue(m)
        return m

    def _next_digest(self) -> float | None:
        at = self.config.heartbeat.digest_at
        if not at:
            return None
        zone = ZoneInfo(self.config.quiet_hours.timezone if self.config.quiet_hours else "UTC")
        now = dt.datetime.fromtimestamp(self._wall(), zone)
        target = dt.datetime.combine(now.date(), dt.time.fromisoformat(at), zone)
        if target <= now:
            target += dt.timedelta(days=1)
        return target.timestamp()

    def _send_digest(self) -> None:
        assert self.deliverer is not None
        view = self.view()
        lines = [f"{h.name}: {_digest_line(h)}" for h in view.accounts]
        lines.append(f"{fmt.count(len(view.firing), 'alert')} firing")
        self._send_system(digest(len(view.accounts), len(view.firing), lines, self._wall()))

    # --- health -------------------------------------------------------------------------

    def health(self) -> list[AccountView]:
        return list(self.view().accounts)

    def log_health(self) -> None:
        self.save_snapshots()
        if self.publisher is None:
            return
        # read from what the daemon keeps: building every account's view for one line cost
        # more than the minute's evaluations with a thousand accounts
        h = self.publisher.health()
        stale, stopped, not_live = h.stale, h.stopped, h.not_live
        wall = self._wall()
        bans = "".join(f", {ban.said(wall)}" for ban in h.bans)
        bans += "".join(f", {pause.said(wall)}" for pause in h.public_pauses)
        log.info(
            "health: %s, %d fresh, %d stale%s, %d not live%s, %d stopped%s%s%s, %s, %s, %s, "
            "worst ratio %s, %s firing, %s queued",
            fmt.count(h.accounts, "account"),
            h.accounts - len(stale) - len(stopped) - len(not_live),
            len(stale),
            f" ({', '.join(stale[:5])})" if stale else "",
            len(not_live),
            f" ({', '.join(not_live[:5])})" if not_live else "",
            len(stopped),
            f" ({', '.join(stopped[:5])})" if stopped else "",
            # fresh all the same: the reconcile that found the miss read the account
            f", {len(h.missed)} private stream missed ({', '.join(h.missed[:5])})"
            if h.missed
            else "",
            bans,
            fmt.count(h.positions, "position"),
            fmt.count(self.ticks, "engine update"),
            fmt.count(self.alerting.evaluations if self.alerting else 0, "evaluation"),
            f"{fmt.ratio(h.worst[0])} ({h.worst[1]})" if h.worst else "-",
            fmt.count(h.firing, "alert"),
            fmt.count(h.queued, "message"),
        )


def _log_death(*tasks: asyncio.Task[None], runner: Any) -> str | None:
    """Why the daemon must stop with an error, logged (once: the shutdown reads the tasks'
    results without logging them), or None while every task runs."""
    death = _died(*tasks) or _http_died(runner)
    if death is None:
        return None
    reason, exc = death
    log.error("stopping: %s", reason, exc_info=exc)
    return reason


def _died(*tasks: asyncio.Task[None]) -> tuple[str, BaseException | None] | None:
    """Why one of the tasks that run until cancelled is no longer running (and what it
    raised), if one is not."""
    for task in tasks:
        if not task.done():
            continue
        if task.cancelled():
            return f"the {task.get_name()} task was cancelled", None
        exc = task.exception()
        if exc is None:
            return f"the {task.get_name()} task returned", None
        return f"the {task.get_name()} task died: {_reasons(exc)}", exc
    return None


def _reasons(exc: BaseException) -> str:
    """``Type: message`` for an exception, or for each one a task group gathered."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_reasons(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _http_died(runner: Any) -> tuple[str, None] | None:
    for site in runner.sites if runner is not None else ():
        server = getattr(site, "_server", None)
        if server is not None and not server.is_serving():
            return f"the HTTP endpoint {site.name} stopped serving", None
    return None


def _digest_line(h: AccountView) -> str:
    if h.fatal:
        return f"STOPPED ({h.fatal})"
    if not h.bootstrapped:
        return "not connected"
    if h.worst_ratio is not None:
        text = f"worst ratio {h.worst_ratio * 100:.1f}%"
    else:
        text = "no positions" if h.open_positions == 0 else "incomplete data"
    return text + (f", stale: {', '.join(h.stale)}" if h.stale else "")
