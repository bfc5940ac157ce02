"""An account's own ccxt limiter (``DebtBucket``): ccxt's leaky bucket, waking once while in
debt rather than once a millisecond (docs/benchmarks.md, calm13)."""

from __future__ import annotations

import asyncio
import time

import pytest
from ccxt.async_support.base.throttler import Throttler

from alertd.config import AccountConfig
from alertd.feeds.ccxt_exchange import BothLimits, DebtBucket, make_exchange

from .support.aio import run
from .support.feeds import FAST

RATE_LIMIT_MS = 20.0
# OKX's reconcile: account config 4, positions 2, balance 2, trade fee 4 (ccxt's costs)
COSTS = [4, 2, 2, 4]


def bucket_config() -> dict[str, float]:
    """ccxt's own bucket for an exchange of ``rateLimit`` 20 ms (its init_rest_rate_limiter)."""
    return {
        "delay": 0.001,
        "capacity": 1.0,
        "cost": 1.0,
        "maxCapacity": 1000,
        "refillRate": 1 / RATE_LIMIT_MS,
    }


async def admit(throttler: Throttler) -> tuple[list[int], float]:
    """The order the requests of COSTS, queued together, are admitted in, and how long the
    last waited."""
    admitted: list[int] = []

    async def request(i: int, cost: float) -> None:
        await throttler(cost)
        admitted.append(i)

    started = time.monotonic()
    await asyncio.gather(*(request(i, c) for i, c in enumerate(COSTS)))
    return admitted, time.monotonic() - started


def test_the_bucket_admits_as_ccxt_s_no_sooner_and_wakes_once_a_request_in_debt() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        ccxt_order, _ = await admit(Throttler(bucket_config(), loop))
        bucket = DebtBucket(bucket_config(), loop)
        order, waited_s = await admit(bucket)
        assert order == ccxt_order == [0, 1, 2, 3]
        # the first is admitted at once and leaves the bucket 4 in debt; each next waits for
        # the debt before it to be refilled: no sooner than 4 + 2 + 2 units of 20 ms
        assert waited_s >= sum(COSTS[:-1]) * RATE_LIMIT_MS / 1000
        # ccxt's loop wakes every 1 ms of those 160 ms; this one once a request in debt
        # (another 1 ms step where its sleep ends a hair before ccxt's clock shows the refill)
        assert 3 <= bucket.debt_waits <= 6

    run(body())


@pytest.mark.parametrize("exchange", ["okx", "bybit", "binanceusdm"])
def test_every_account_s_own_limiter_is_the_debt_bucket(exchange: str) -> None:
    account = AccountConfig(name="a", exchange=exchange, api_key_env="K", secret_env="S")

    async def body() -> None:
        client = make_exchange(account, {}, FAST)
        try:
            own = client.throttler
            own = own.own if isinstance(own, BothLimits) else own
            assert isinstance(own, DebtBucket)
            assert own.config["refillRate"] == pytest.approx(1 / client.rateLimit)
        finally:
            await client.close()

    run(body())


def test_an_idle_account_s_request_goes_at_once_its_debt_refilled_while_it_was_idle() -> None:
    """A calm account sends a reconcile's requests once a minute: the bucket's debt from the
    last one was refilled long before. Its next request is admitted at once, without the
    loop's task (ccxt's loop, started afresh, forgot the idle time and slept the old debt
    again: a wait and a wake-up a request, the refill unchanged); one asked while in debt
    still waits for the refill, in its turn."""

    async def body() -> None:
        bucket = DebtBucket(bucket_config(), asyncio.get_running_loop())
        await bucket(4)  # 4 units in debt: 80 ms to refill
        await asyncio.sleep(0.1)  # idle past the refill
        idle = bucket(2)
        assert idle.done()  # admitted at its call: no loop, no turn of the event loop
        assert not bucket.running
        assert bucket.debt_waits == 0
        in_debt = bucket(2)  # the refill capped at capacity (1): 1 - 2 leaves it in debt
        assert not in_debt.done()
        await asyncio.wait_for(in_debt, 5)
        assert bucket.debt_waits >= 1
        assert bucket.at_once == 2

    run(body())
