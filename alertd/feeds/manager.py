"""All accounts' feeds, and their periodic jobs on one apscheduler scheduler.

One account's fatal error stops that account only; the others keep streaming.
"""

from __future__ import annotations

import asyncio
import functools
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
        dynamics_span_s: float = 0.0,
    ) -> None:
        self.config = config
        self.options = options
        self.dynamics_span_s = dynamics_span_s  # the rules' longest price-dynamics window
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
        self._stopping = False  # close() began: jobs cancelled now are stopped, not crashed

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
                wall_clock=self.options.wall_clock,
                dynamics_span_s=self.dynamics_span_s,
            )
        return self.hubs[key]

    def _job(self, step: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """A periodic job that ends quietly when the feeds stop under it.

        apscheduler cancels a job still running at shutdown and logs the cancellation as the
        job's crash, with a traceback: a reconcile in flight when the daemon stops is not one.
        """

        @functools.wraps(step)
        async def job() -> None:
            try:
                await step()
            except asyncio.CancelledError:
                if not self._stopping:
                    raise  # cancelled for another reason than the shutdown
                log.debug("%s: stopped with the feeds", getattr(step, "__qualname__", step))

        return job

    def set_dynamics_span(self, span_s: float) -> None:
        """The rules changed (a reload): every hub keeps price windows this long."""
        self.dynamics_span_s = span_s
        for hub in self.hubs.values():
            hub.set_dynamics_span(span_s)

    def _schedule(self) -> AsyncIOScheduler:
        settings = self.config.feeds
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        jobs = dict(max_instances=1, coalesce=True, misfire_grace_time=None)
        for name, feed in self.feeds.items():
            scheduler.add_job(
                self._job(feed.reconcile),
                "interval",
                seconds=settings.reconcile_interval_s,
                id=f"reconcile:{name}",
                **jobs,
            )
            scheduler.add_job(
                self._job(feed.refresh_tiers),
                "interval",
                seconds=settings.tier_refresh_interval_s,
                id=f"tiers:{name}",
                **jobs,
            )
            if feed.spec.capabilities.renews_listen_key:
                scheduler.add_job(
                    self._job(feed.renew),
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
            await self.options.sleep(period)
            for feed in list(self.feeds.values()):
                await feed.check_stale()

    async def _run_one(self, name: str, feed: AccountFeed) -> None:
        await feed.run(watchdog=False)
        if feed.state.fatal is not None:
            log.error("%s: feed stopped for good: %s", name, feed.state.fatal)

    async def close(self) -> None:
        self._stopping = True
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        await asyncio.gather(*(feed.close() for feed in self.feeds.values()))
        await asyncio.gather(*(hub.close() for hub in self.hubs.values()))
