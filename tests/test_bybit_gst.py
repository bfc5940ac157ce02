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
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.fake_exchange.base import FakeExchangeServer
from tests.support.process import alertd
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
