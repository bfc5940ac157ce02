"""The test support itself: bounded polls that name what they waited for, the async runner,
the CLI runner and the fakes by exchange id."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fake_exchange.binance import FakeBinanceUSDM
from tests.fake_exchange.bybit import FakeBybit
from tests.support.aio import background, run
from tests.support.fakes import FAKES, make_fake
from tests.support.poll import eventually, wait_for
from tests.support.process import alertd


def test_eventually_returns_the_value_and_names_what_it_missed() -> None:
    ticks = iter(range(10))
    assert run(eventually(lambda: next(ticks) >= 3 and "three", 1.0)) == "three"
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the moon"):
        run(eventually(lambda: False, 0.05, what="the moon"))


def test_wait_for_blocks_with_a_bound() -> None:
    start = time.monotonic()
    with pytest.raises(AssertionError, match="waiting for nothing"):
        wait_for(lambda: None, 0.1, what="nothing", interval_s=0.02)
    assert time.monotonic() - start < 1


def test_run_bounds_the_body_and_background_cancels() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        run(forever, timeout_s=0.05)

    async def body() -> bool:
        async with background(forever()) as task:
            await asyncio.sleep(0)
        return task.cancelled()

    assert run(body())


def test_alertd_returns_code_and_output() -> None:
    result = alertd("schema")
    assert result.returncode == 0 and result.stdout.startswith("{") and result.stderr == ""
    assert alertd("no-such-command").returncode == 2


def test_fakes_by_exchange_id() -> None:
    assert {"binanceusdm": FakeBinanceUSDM, "bybit": FakeBybit}.items() <= FAKES.items()
    assert isinstance(make_fake("bybit", mark_interval_s=1), FakeBybit)
    with pytest.raises(ValueError, match="no fake exchange for 'kraken'"):
        make_fake("kraken")
