"""All accounts' feeds, and their periodic jobs on one apscheduler scheduler.

One account's fatal error stops that account only; the others keep streaming.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ..config import Config, Secret
from .feed import AccountFeed

log = logging.getLogger(__name__)


class FeedManager:
    def __init__(
        self,
        config: Config,
        secrets: Mapping[str, Mapping[str, Secret]],
        *,
        feed_factory: Callable[..., AccountFeed] = AccountFeed,
        **feed_options: Any,
    ) -> None:
        self.config = config
        self.feeds: dict[str, AccountFeed] = {
            account.name: feed_factory(
                account, secrets.get(account.name, {}), config.feeds, **feed_options
            )
            for account in config.accounts
            if account.enabled
        }
        self._scheduler: AsyncIOScheduler | None = None

    def _schedule(self) -> AsyncIOScheduler:
        settings = self.config.feeds
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        jobs = dict(max_instances=1, coalesce=True, misfire_grace_time=None)
        for name, feed in self.feeds.items():
            scheduler.add_job(
                feed.reconcile,
                "interval",
                seconds=settings.reconcile_interval_s,
                id=f"reconcile:{name}",
                **jobs,
            )
            scheduler.add_job(
                feed.refresh_tiers,
                "interval",
                seconds=settings.tier_refresh_interval_s,
                id=f"tiers:{name}",
                **jobs,
            )
            if feed.adapter.renews_listen_key:
                scheduler.add_job(
                    feed.renew,
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
        finally:
            await self.close()

    async def _run_one(self, name: str, feed: AccountFeed) -> None:
        await feed.run()
        if feed.state.fatal is not None:
            log.error("%s: feed stopped for good: %s", name, feed.state.fatal)

    async def close(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None
        await asyncio.gather(*(feed.close() for feed in self.feeds.values()))
