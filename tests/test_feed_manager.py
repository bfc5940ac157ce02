"""Stopping the feeds while a periodic job is in flight is a stop, not a failure.

Seen in a full CI run under load: the daemon got SIGTERM while its REST reconcile was waiting
for the exchange; apscheduler cancelled the job and logged the CancelledError at ERROR with its
traceback ("Job ... raised an exception"), so a clean stop left a traceback in the log. Here the
reconcile is held in flight (a feed subclass, passed as the manager's feed factory) and the
manager stopped."""

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
async def test_stopping_with_a_job_in_flight_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    account: dict[str, Any] = {"name": "main", "exchange": "binanceusdm"}
    config = Config.model_validate(
        {"version": 1, "accounts": [account], "feeds": {"reconcile_interval_s": 0.05}}
    )
    manager = FeedManager(config, {}, feed_factory=SlowReconcileFeed)
    IN_FLIGHT.clear()
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(manager.run())
    await eventually(lambda: IN_FLIGHT, what="a reconcile in flight")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)  # the cancelled job's callbacks run
    crashes = [
        r
        for r in caplog.records
        if r.exc_info or r.levelno >= logging.ERROR or "raised an exception" in r.getMessage()
    ]
    assert crashes == [], [(r.name, r.getMessage()) for r in crashes]
