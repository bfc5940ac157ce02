"""Bybit's fee to close for a GST-paying account (kyc=IND), through ``alertd snapshot`` and
``alertd calc`` on the local Bybit: the fee term holds the GST the account's fills pay on the
trading fee, as a live position's MM does (tests/test_adapters_more.py,
``test_bybit_s_fee_to_close_holds_the_gst_its_fills_pay``: ``positionMMByMp`` 0.26025039 =
MM + the fee to close x 1.18). The local Bybit lists the tax beside each fill's ``feeRate`` in
``extraFees`` and computes its IM, MM and liquidation prices with the fee x (1 + GST).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alertd.engine.model import Side
from tests.fake_exchange.base import FakeExchangeServer
from tests.fake_exchange.bybit import FakeBybit
from tests.support.aio import async_test
from tests.support.process import alertd
from tests.test_feed_matrix import VENUES, World, world
from tests.test_snapshot_exchanges import (
    Holding,
    Leg,
    _comparison_tables,
    _config,
    _key,
    _open_book,
    _reported_liquidations,
)

# India's 18% GST on the fee ("Indian GST tax. Only for kyc=Indian users", Bybit v5 enums,
# extraFees.feeType): a live fill's GST feeRate 0.000099 on its feeRate 0.00055
GST = "0.18"
BOOK = {
    "india": Holding(
        "400000",
        (
            Leg("BTC", "long", "40", entry_move="0.01"),  # 2.6M: tier 2
            Leg("ETH", "short", "20", entry_move="-0.01"),
            Leg("SOL", "long", "300", "isolated", "0.02"),
        ),
    )
}


def test_a_gst_paying_account_s_figures_match_bybit_s(
    tmp_path: Path, fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]]
) -> None:
    fake = fake_in_thread("bybit")
    _open_book(fake, "bybit", BOOK)
    fake.set_gst(_key("bybit", "india"), GST)  # type: ignore[attr-defined]
    config, env = _config(tmp_path, fake, "bybit", BOOK)

    table = alertd("snapshot", "-c", str(config), env=env)
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
    # every figure Bybit reports (each position's MM and liquidation price, the pool's MM and
    # ratio) agrees with alertd's: without the GST the MM rows differ by about 1.5%
    rows = _comparison_tables(table.stdout)["india"]
    assert rows and not [r for r in rows if r[-1] == "NO"], table.stdout

    written = alertd("snapshot", "-c", str(config), "--json", "--account", "india", env=env)
    assert written.returncode == 0, written.stderr
    snapshot = json.loads(written.stdout)
    # the account's taker rate with the GST on it: 0.055% x 1.18
    assert {p["fee_rate"] for p in snapshot["positions"]} == {"0.000649"}
    path = tmp_path / "india.json"
    path.write_text(written.stdout)
    calc = alertd("calc", str(path), "--json", env=env)
    assert calc.returncode == 0, calc.stderr
    ours = {
        (p["symbol"], p["side"]): Decimal(p["liquidation_price"])
        for p in json.loads(calc.stdout, parse_float=Decimal)["positions"]
    }
    theirs = asyncio.run(_reported_liquidations(fake, "bybit", "india"))
    assert sorted(ours) == sorted(theirs)
    for key, reported in theirs.items():
        assert abs(ours[key] - reported) <= fake.tick(key[0]), (key, ours[key], reported)


# Ways GET /v5/execution/list can fail an account's read of its GST: a key without the
# permission (retCode 10005, "Permission denied", bybit v5 "Error Codes"), a request Bybit
# refuses (10001), and fills whose ``extraFees`` alertd cannot read (not JSON, a GST row with no
# rate, an object where a list belongs, a GST rate 9,090 times the fee: no tax is, one whose
# share of the fee overflows Decimal's context: decimal.Overflow failed every bootstrap)
UNREADABLE_FILLS = {
    "permission denied": {"refuse": 10005},
    "params error": {"refuse": 10001},
    "extraFees not JSON": {"extra_fees": "{GST:0.000099}"},
    "GST row without feeRate": {"extra_fees": [{"feeType": "GST", "feeCoin": "USDT"}]},
    "extraFees an object": {"extra_fees": {}},
    "GST above the fee": {"extra_fees": [{"feeType": "GST", "feeRate": "5"}]},
    "GST overflowing": {"extra_fees": [{"feeType": "GST", "feeRate": "1e999999"}]},
}


def _bybit(w: World) -> FakeBybit:
    assert isinstance(w.fake, FakeBybit)
    return w.fake


@pytest.mark.parametrize("fills", list(UNREADABLE_FILLS.values()), ids=list(UNREADABLE_FILLS))
@async_test(120)
async def test_unreadable_fills_leave_the_gst_unknown_not_the_account_stopped(
    fills: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The GST is a part of the fee term (15% of it for India's 18%); fills alertd cannot read
    leave it unknown, logged once, and the account computed at its fee rate without it, as one
    with no recent fill is: not stopped (the old code stopped it on a refusal) nor kept from
    bootstrapping (a malformed answer failed every try)."""
    venue = VENUES["bybit"]
    caplog.set_level(logging.WARNING)

    def setup(w: World) -> None:
        _bybit(w).set_gst(venue.key, GST)
        _bybit(w).script_fills(venue.key, **fills)

    async with world(venue, setup=setup) as w:
        state = w.feed.state
        await w.until(lambda: state.fatal is not None or state.connected, "bootstrap")
        assert state.fatal is None
        # Bybit's own taker rate, without the GST it could not read
        assert state.fee_rates == {venue.btc: Decimal("0.00055")}
        await w.feed.reconcile()
        await w.feed.reconcile()
        assert state.fatal is None and state.fee_rates == {venue.btc: Decimal("0.00055")}
        # asked at the bootstrap, not again while the account holds the same symbols
        assert _bybit(w).fills_asked(venue.key) == 1
    told = [r.getMessage() for r in caplog.records if "GST" in r.getMessage()]
    assert len(told) == 1, told


@async_test(120)
async def test_fills_refused_at_a_later_reconcile_do_not_stop_a_live_account() -> None:
    """No fill in Bybit's 7-day window at the bootstrap leaves the GST unknown; once the account
    trades another symbol the fills are asked again at the reconcile, and a key refused them
    then (10005) leaves the live account running (it stopped it)."""
    venue = VENUES["bybit"]

    def setup(w: World) -> None:
        _bybit(w).set_gst(venue.key, GST)
        _bybit(w).script_fills(venue.key, listed=False)

    async with world(venue, setup=setup) as w:
        state = w.feed.state
        await w.until(lambda: state.connected, "bootstrap")
        assert _bybit(w).fills_asked(venue.key) == 1
        _bybit(w).script_fills(venue.key, refuse=10005)
        w.fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "short", "1", "3000")
        await w.until(lambda: (venue.eth, Side.SHORT) in state.positions, "ETH opened")
        await w.feed.reconcile()
        await w.feed.reconcile()
        assert state.fatal is None and state.connected
        assert _bybit(w).fills_asked(venue.key) == 2
        assert set(state.fee_rates.values()) == {Decimal("0.00055")}
