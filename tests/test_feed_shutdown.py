"""Stopping the feeds while a periodic job is in flight is a stop, not a failure.

Seen in a full CI run under load: the daemon got SIGTERM while its REST reconcile was
waiting for the exchange; apscheduler cancelled the job and logged the CancelledError at
ERROR with its traceback ("Job ... raised an exception"), so a clean stop left a traceback in
the log. Here the reconcile is held in flight (a feed subclass, passed as the manager's
feed factory) and the manager stopped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from alertd.config import Config
from alertd.feeds.feed import AccountFeed
from alertd.feeds.manager import FeedManager
from tests.fake_exchange.binance import FakeBinanceUSDM
from tests.support.aio import run
from tests.support.fakes import started
from tests.support.feeds import FAST, FAST_OPTIONS, account_config, btc_long, secrets
from tests.support.poll import eventually


class HeldReconcile(AccountFeed):
    """A feed whose periodic reconcile waits, as one waiting on a slow exchange does."""

    reconciling = False

    async def reconcile(self) -> None:
        self.reconciling = True
        await asyncio.Event().wait()


def test_stopping_with_a_job_in_flight_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async with started(FakeBinanceUSDM(), [("key-a", "secret-a", "10000")]) as fake:
            btc_long(fake, "key-a")
            config = Config(
                version=1,
                accounts=[account_config("a", "binanceusdm", fake)],
                feeds=FAST.model_copy(update={"reconcile_interval_s": 0.2}),
            )
            manager = FeedManager(
                config,
                {"a": secrets("key-a", "secret-a")},
                FAST_OPTIONS,
                feed_factory=HeldReconcile,
            )
            task = asyncio.create_task(manager.run())
            feed: Any = manager.feeds["a"]
            await eventually(lambda: feed.reconciling, timeout_s=15, what="reconcile in flight")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.2)  # the cancelled job's outcome is handled on the loop

    with caplog.at_level(logging.INFO):
        run(body())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [(r.name, r.getMessage()) for r in errors]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
