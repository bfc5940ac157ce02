"""The feed manager's periodic jobs across a shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from alertd.config import Config
from alertd.feeds.feed import AccountFeed
from alertd.feeds.manager import FeedManager
from tests.support.aio import async_test
from tests.support.poll import eventually

IN_FLIGHT: list[AccountFeed] = []


class SlowReconcileFeed(AccountFeed):
    """A feed that never streams, whose REST reconcile is still waiting when the daemon stops
    (a slow exchange, a loaded machine)."""

    async def run(self, watchdog: bool = True) -> None:
        await asyncio.Event().wait()

    async def reconcile(self) -> None:
        IN_FLIGHT.append(self)
        await asyncio.Event().wait()


@async_test()
async def test_a_job_running_at_shutdown_ends_without_a_crash_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    account: dict[str, Any] = {"name": "main", "exchange": "binanceusdm"}
    config = Config.model_validate(
        {"version": 1, "accounts": [account], "feeds": {"reconcile_interval_s": 0.05}}
    )
    manager = FeedManager(config, {}, feed_factory=SlowReconcileFeed)
    IN_FLIGHT.clear()
    caplog.set_level(logging.INFO, logger="apscheduler")
    task = asyncio.create_task(manager.run())
    await eventually(lambda: IN_FLIGHT, what="a reconcile in flight")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)  # the cancelled job's callbacks run
    crashes = [r for r in caplog.records if r.exc_info or "raised an exception" in r.message]
    assert crashes == [], [r.getMessage() for r in crashes]
