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
        in_debt = bucket(2)  # the idle time paid the debt off, no more: 0 - 2 leaves it in debt
        assert not in_debt.done()
        await asyncio.wait_for(in_debt, 5)
        assert bucket.debt_waits >= 1
        assert bucket.at_once == 2

    run(body())


class SteppedClock:
    """Monotonic seconds, stepped by ``step`` (a system clock set back, as a wall clock can be)."""

    def __init__(self) -> None:
        self.step = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.step


def test_a_clock_stepped_back_does_not_hold_the_next_request_for_the_step() -> None:
    """The bucket keeps its last refill across an account's idle minute: a clock that went
    back since earns nothing (not a debt of the whole step, which held every account's next
    request for it: 60 s back, a Bybit bucket 3,000 units in debt; review of calmreq17). The
    next request waits at most its own debt."""

    async def body() -> None:
        clock = SteppedClock()
        bucket = DebtBucket(bucket_config(), asyncio.get_running_loop(), clock)
        await bucket(5)  # 5 units in debt: 100 ms to refill
        await asyncio.sleep(0.15)  # idle past the refill
        clock.step = -60.0
        after_step = bucket(5)
        assert bucket.config["tokens"] >= -5  # the old debt at most, not the step's
        await asyncio.wait_for(after_step, 5)

    run(body())


class ManualClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_idle_account_s_burst_is_no_faster_than_ccxt_s_loop_allows() -> None:
    """The idle time pays the debt off and credits nothing beyond: the first request of an
    idle account's burst leaves the bucket its full cost in debt, as ccxt's loop did (it
    forgot the idle time and admitted at the debt just paid), so the next of the burst waits
    that whole cost (credited up to the capacity, 11 of Bybit's cost-5 reads went in 984 ms
    where its limit is 10 a second per UID; review of calmreq17)."""

    async def body() -> None:
        clock = ManualClock(100.0)
        bucket = DebtBucket(bucket_config(), asyncio.get_running_loop(), clock)
        assert bucket(5).done()
        clock.now += 60.0  # a calm minute: the debt long refilled
        first = bucket(5)
        assert first.done()  # at its call
        assert bucket.config["tokens"] == -5  # no credit beyond the debt paid off
        second = bucket(5)
        assert not second.done()
        clock.now += 0.1  # the first's 5 units refilled
        await asyncio.wait_for(second, 5)

    run(body())
