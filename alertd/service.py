"""The daemon: one object owns startup, the main loop and an ordered, bounded shutdown.

    startup:   read secrets, build the feeds and the engine's book
    main loop: feeds stream into the book; one health line per interval
    shutdown:  stop intake (cancel feeds), close exchanges within a bound, one summary line

Signal handlers only set flags (``should_exit``; a second SIGINT sets ``force_exit``). Tests
drive :meth:`serve` directly with ``install_signals=False`` and set ``should_exit`` themselves.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .config import Config, ConfigError, Secret, read_secrets
from .engine.book import Book
from .feeds.feed import AccountFeed, Change
from .feeds.manager import FeedManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountHealth:
    name: str
    bootstrapped: bool
    connected: bool
    fatal: str | None
    positions: int
    stale: tuple[str, ...]  # "mark BTC/USDT:USDT", "balance", ...
    worst_ratio: Decimal | None


class Service:
    def __init__(
        self,
        config: Config,
        *,
        secrets: dict[str, dict[str, Secret]] | None = None,
        health_interval_s: float = 60.0,
        shutdown_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        **feed_options: Any,
    ) -> None:
        self.config = config
        self.health_interval_s = health_interval_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._clock = clock
        self._secrets = secrets
        self._feed_options = feed_options
        self.book = Book()
        self.manager: FeedManager | None = None
        self.should_exit = False
        self.force_exit = False
        self.started = asyncio.Event()
        self.ticks = 0  # engine updates applied, for health and metrics

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

    async def serve(self, install_signals: bool = True) -> int:
        secrets = self._read_secrets()
        self.manager = FeedManager(self.config, secrets, **self._feed_options)
        for feed in self.manager.feeds.values():
            feed.listeners.append(self._on_change)
        if install_signals:
            self._install_signals()
        log.info("starting: %d accounts", len(self.manager.feeds))
        feeds = asyncio.create_task(self.manager.run(), name="feeds")
        self.started.set()
        next_health = self._clock() + self.health_interval_s
        try:
            while not self.should_exit and not feeds.done():
                await asyncio.sleep(0.1)
                if self._clock() >= next_health:
                    self.log_health()
                    next_health = self._clock() + self.health_interval_s
        finally:
            await self._shutdown(feeds)
        return 0

    async def _shutdown(self, feeds: asyncio.Task[None]) -> None:
        started = self._clock()
        bound = 0.5 if self.force_exit else self.shutdown_timeout_s
        feeds.cancel()
        try:
            await asyncio.wait_for(asyncio.gather(feeds, return_exceptions=True), bound)
        except TimeoutError:
            log.warning("shutdown: feeds did not stop within %.1fs", bound)
        if self.manager is not None:
            try:
                await asyncio.wait_for(self.manager.close(), bound)
            except TimeoutError:
                log.warning("shutdown: exchanges did not close within %.1fs", bound)
        log.info(
            "stopped in %.1fs: %d accounts, %d engine updates",
            self._clock() - started,
            len(self.manager.feeds) if self.manager else 0,
            self.ticks,
        )

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()

        def on_term() -> None:
            self.should_exit = True

        def on_int() -> None:
            # a second Ctrl+C skips the graceful waits
            self.force_exit = self.should_exit
            self.should_exit = True

        loop.add_signal_handler(signal.SIGTERM, on_term)
        loop.add_signal_handler(signal.SIGINT, on_int)

    # --- engine -------------------------------------------------------------------------

    def _on_change(self, feed: AccountFeed, change: Change, symbol: str | None) -> None:
        name = feed.config.name
        if change is Change.MARK and symbol is not None and name in self.book:
            price = feed.state.marks.get(symbol)
            if price is not None:
                self.book.apply_account_mark(name, symbol, price)
                self.ticks += 1
            return
        if change in (Change.ACCOUNT, Change.MARK):
            if not feed.state.missing():
                self.book.set_account(name, feed.state.to_account())
                self.ticks += 1
            else:
                self.book.remove_account(name)
        elif change is Change.FATAL:
            self.book.remove_account(name)

    # --- health -------------------------------------------------------------------------

    def health(self) -> list[AccountHealth]:
        out: list[AccountHealth] = []
        if self.manager is None:
            return out
        settings = self.config.feeds
        now = self._clock()
        private_after = 2 * settings.reconcile_interval_s + settings.stale_after_s
        for name, feed in self.manager.feeds.items():
            state = feed.state
            stale = tuple(
                f"{f.stream.value} {f.key}".strip()
                for f in state.freshness(now, settings.stale_after_s, private_after)
                if f.stale
            )
            out.append(
                AccountHealth(
                    name=name,
                    bootstrapped=state.bootstrapped,
                    connected=state.connected,
                    fatal=state.fatal,
                    positions=len(state.positions),
                    stale=stale if state.bootstrapped else ("not bootstrapped",),
                    worst_ratio=self.book.worst_ratio(name) if name in self.book else None,
                )
            )
        return out

    def log_health(self) -> None:
        report = self.health()
        fatal = [h.name for h in report if h.fatal]
        stale = [h.name for h in report if h.stale and not h.fatal]
        ratios = [(h.worst_ratio, h.name) for h in report if h.worst_ratio is not None]
        worst = max(ratios, default=None)
        log.info(
            "health: %d accounts, %d fresh, %d stale%s, %d stopped%s, %d positions, "
            "%d engine updates, worst ratio %s",
            len(report),
            len(report) - len(stale) - len(fatal),
            len(stale),
            f" ({', '.join(stale[:5])})" if stale else "",
            len(fatal),
            f" ({', '.join(fatal[:5])})" if fatal else "",
            sum(h.positions for h in report),
            self.ticks,
            f"{worst[0]:.4f} ({worst[1]})" if worst else "-",
        )
