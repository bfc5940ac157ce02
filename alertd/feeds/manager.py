"""All accounts' feeds, and their periodic jobs on one apscheduler scheduler.

One account's fatal error stops that account only; the others keep streaming.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from alertd.config import AccountConfig, Config, FeedSettings, Secret
from alertd.exchanges.registry import get_spec
from alertd.feeds.feed import AccountFeed
from alertd.feeds.marks import MarkHub
from alertd.feeds.options import PRODUCTION, FeedOptions

log = logging.getLogger(__name__)


def _job(step: Callable[[], Awaitable[None]], what: str) -> Callable[[], Awaitable[None]]:
    """A periodic job that ends quietly when the daemon stops with it in flight: the
    scheduler would otherwise log the cancellation as a failure, with a traceback."""

    async def run() -> None:
        try:
            await step()
        except asyncio.CancelledError:
            log.debug("%s: stopped in flight (shutting down)", what)

    return run


class FeedFactory(Protocol):
    """Builds one account's feed: :class:`AccountFeed`, or a test's subclass of it."""

    def __call__(
        self,
        config: AccountConfig,
        secrets: Mapping[str, Secret],
        settings: FeedSettings,
        options: FeedOptions = ...,
        *,
        hub: MarkHub | None = ...,
    ) -> AccountFeed: ...


class FeedManager:
    def __init__(
        self,
        config: Config,
        secrets: Mapping[str, Mapping[str, Secret]],
        options: FeedOptions = PRODUCTION,
        *,
        feed_factory: FeedFactory = AccountFeed,
    ) -> None:
        self.config = config
        self.options = options
        self.hubs: dict[str, MarkHub] = {}
        self.feeds: dict[str, AccountFeed] = {}
        for account in config.accounts:
            if not account.enabled:
                continue
            feed = feed_factory(
                account,
                secrets.get(account.name, {}),
                config.feeds,
                options,
                hub=self._hub_for(account),
            )
            self.feeds[account.name] = feed
        self._scheduler: AsyncIOScheduler | None = None

    def _hub_for(self, account: AccountConfig) -> MarkHub:
        """Accounts that reach the same exchange the same way share one mark hub."""
        key = json.dumps(
            [account.exchange, account.sandbox, account.urls, account.options],
            sort_keys=True,
            default=str,
        )
        if key not in self.hubs:
            settings = self.config.feeds
            factory = self.options.exchange_factory

            def public_exchange(sink: Any, account: AccountConfig = account) -> Any:
                return factory(account, {}, settings, sink)  # no secrets: marks are public

            self.hubs[key] = MarkHub(
                f"{account.exchange} marks" + (f" #{len(self.hubs)}" if self.hubs else ""),
                public_exchange,
                get_spec(account.exchange).new_adapter(),
                self.options.backoff_factory(settings.backoff),
                self.options.clock,
                self.options.sleep,
                min_reconnect_interval_s=settings.stale_after_s,
            )
        return self.hubs[key]

    def _schedule(self) -> AsyncIOScheduler:
        settings = self.config.feeds
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        jobs = dict(max_instances=1, coalesce=True, misfire_grace_time=None)
        for name, feed in self.feeds.items():
            scheduler.add_job(
                _job(feed.reconcile, f"reconcile:{name}"),
                "interval",
                seconds=settings.reconcile_interval_s,
                id=f"reconcile:{name}",
                **jobs,
            )
            scheduler.add_job(
                _job(feed.refresh_tiers, f"tiers:{name}"),
                "interval",
                seconds=settings.tier_refresh_interval_s,
                id=f"tiers:{name}",
                **jobs,
            )
            if feed.spec.capabilities.renews_listen_key:
                scheduler.add_job(
                    _job(feed.renew, f"listen-key:{name}"),
                    "interval",
                    seconds=settings.listen_key_renew_interval_s,
                    id=f"listen-key:{name}",
                    **jobs,
                )
        return scheduler

    async def run(self) -> None:
        """Run every feed until cancelled; then stop the jobs and close the exchanges."""
        self._scheduler = self._schedule()
        self._scheduler.start()
        try:
            async with asyncio.TaskGroup() as group:
                for name, feed in self.feeds.items():
                    group.create_task(self._run_one(name, feed), name=f"feed:{name}")
                group.create_task(self._watchdog(), name="staleness watchdog")
                for hub in self.hubs.values():
                    group.create_task(hub.run(), name=hub.name)
        finally:
            await self.close()

    async def _watchdog(self) -> None:
        # one loop for every feed: a wake-up a second, not one per account
        period = min(1.0, self.config.feeds.stale_after_s / 4)
        while True:
            await asyncio.sleep(period)
            for feed in list(self.feeds.values()):
                await feed.check_stale()

    async def _run_one(self, name: str, feed: AccountFeed) -> None:
        await feed.run(watchdog=False)
        if feed.state.fatal is not None:
            log.error("%s: feed stopped for good: %s", name, feed.state.fatal)

    async def close(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None
        await asyncio.gather(*(feed.close() for feed in self.feeds.values()))
        await asyncio.gather(*(hub.close() for hub in self.hubs.values()))
