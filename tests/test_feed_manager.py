"""Stopping the feeds while a periodic job is in flight is a stop, not a failure.

Seen in a full CI run under load: the daemon got SIGTERM while its REST reconcile was waiting
for the exchange; apscheduler cancelled the job and logged the CancelledError at ERROR with its
traceback ("Job ... raised an exception"), so a clean stop left a traceback in the log. Here the
reconcile is held in flight (a feed subclass, passed as the manager's feed factory) and the
manager stopped."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from alertd.config import Config
from alertd.feeds.feed import AccountFeed
from alertd.feeds.manager import FeedManager
from tests.support.aio import async_test
from tests.support.poll import eventually

IN_FLIGHT: list[AccountFeed] = []


def one_account_manager(
    feed_factory: type[AccountFeed], reconcile_interval_s: float
) -> FeedManager:
    account: dict[str, Any] = {"name": "main", "exchange": "binanceusdm"}
    feeds = {"reconcile_interval_s": reconcile_interval_s}
    config = Config.model_validate({"version": 1, "accounts": [account], "feeds": feeds})
    return FeedManager(config, {}, feed_factory=feed_factory)


def assert_no_crash(caplog: pytest.LogCaptureFixture) -> None:
    crashes = [
        r
        for r in caplog.records
        if r.exc_info or r.levelno >= logging.ERROR or "raised an exception" in r.getMessage()
    ]
    assert crashes == [], [(r.name, r.getMessage()) for r in crashes]


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
    manager = one_account_manager(SlowReconcileFeed, reconcile_interval_s=0.05)
    IN_FLIGHT.clear()
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(manager.run())
    await eventually(lambda: IN_FLIGHT, what="a reconcile in flight")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)  # the cancelled job's callbacks run
    assert_no_crash(caplog)


RECONCILED: list[AccountFeed] = []


class QuickReconcileFeed(AccountFeed):
    """A feed that never streams, whose reconcile returns at once (and says it ran)."""

    async def run(self, watchdog: bool = True) -> None:
        await asyncio.Event().wait()

    async def reconcile(self) -> None:
        RECONCILED.append(self)


@pytest.mark.parametrize("turns", [0, 1], ids=["as-it-is-due", "submitted-not-started"])
@async_test()
async def test_stopping_as_a_run_is_submitted_logs_no_error(
    caplog: pytest.LogCaptureFixture, turns: int
) -> None:
    """The race left from before: apscheduler's shutdown takes effect a loop turn after it
    is asked for, so a run it submitted in between (a task created, not yet started) was
    cancelled unstarted, and its executor logged "Error running job" with the
    CancelledError. Here a run is made due, and the manager closes either in the same turn
    (the scheduler's wake-up queued) or one turn later (the run submitted, its first step
    queued): no error either way, and a run that starts once the feeds stop does nothing."""
    manager = one_account_manager(QuickReconcileFeed, reconcile_interval_s=3600)
    RECONCILED.clear()
    caplog.set_level(logging.DEBUG)
    task = asyncio.create_task(manager.run())
    await eventually(lambda: manager._scheduler is not None, what="the scheduler started")
    scheduler = manager._scheduler
    assert scheduler is not None
    # due now: the scheduler wakes in the next turn and submits the run
    scheduler.modify_job("reconcile:main", next_run_time=datetime.now(UTC))
    for _ in range(turns):
        await asyncio.sleep(0)  # the wake-up ran; the run's first step is queued after this
    assert RECONCILED == []
    assert not [r for r in caplog.records if "Running job" in r.getMessage()]
    await manager.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)  # any callbacks of the run's task, the deferred shutdown
    assert RECONCILED == []  # the feeds were stopping: the run did nothing
    assert_no_crash(caplog)
