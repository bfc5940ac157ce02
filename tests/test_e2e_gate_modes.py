"""End to end, Gate's unified account (issue 11): the real ``alertd snapshot``, ``alertd calc``
and ``alertd run`` processes against the local Gate, which reports Gate's own unified-account
figures and liquidation prices by Gate's documented rules (tests/fake_exchange/gate.py).

Single-currency margin (``margin_mode`` 3) and multi-currency margin with USDT as the only
collateral (1) are computed by alertd and reproduce Gate's ratio and liquidation prices; with
BTC collateral in a multi-currency pool Gate's own ratio stands in, named, and no false alert
fires at bootstrap (the USDT-only math of before counted none of the BTC)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from tests.support.fakes import ccxt_client
from tests.support.fixtures import (
    BTC,
    ratio_alerts_at,
    snapshot_then_calc,
    started,
    status_world_fixture,
)
from tests.support.poll import wait_for

from .support.endpoint import computed_account, status_account

D = Decimal
KEY, SECRET = "key-main", "secret-main"
ETH = "ETH/USDT:USDT"


# The local Gate with one account (``main``), a config with the ``RULES``, the status
# endpoint and a slow reconcile (alertd moves the figures with the marks itself), and a
# ``Daemon`` for it (not started).
gate_world = status_world_fixture("gate", (KEY, SECRET), "1000")


async def _gate_figures(fake: Any, single: bool) -> tuple[dict[str, Decimal], Decimal]:
    """Gate's own liquidation price of each position and its unified account ratio (alertd's
    direction: maintenance margin over margin balance)."""
    async with ccxt_client(fake, "gate", KEY, SECRET) as client:
        await client.load_markets()
        rows = await client.privateFuturesGetSettlePositions({"settle": "usdt"})
        info = await client.privateUnifiedGetAccounts()
    liquidations = {client.safe_market(r["contract"])["symbol"]: D(r["liq_price"]) for r in rows}
    if single:
        usdt = info["balances"]["USDT"]
        return liquidations, D(usdt["mm"]) / D(usdt["margin_balance"])
    return liquidations, D(info["total_maintenance_margin"]) / D(info["total_margin_balance"])


@pytest.mark.parametrize(
    ("margin_mode", "label"),
    [(3, "unified single-currency (margin_mode 3 (single_currency))"),
     (1, "multi-assets (margin_mode 1 (multi_currency))")],
)  # fmt: skip
def test_snapshot_and_calc_reproduce_gate_s_ratio_and_liquidation_prices(
    gate_world: dict[str, Any], margin_mode: int, label: str
) -> None:
    fake = gate_world["fake"]
    # 2,000 USDT, a cross BTC long of 0.3 (18,000 at 60,000), a cross ETH short of 2 ETH and
    # an isolated ETH long; ETH held in the unified account but not enabled as collateral
    fake.set_balance(KEY, "2000")
    fake.set_mark(BTC, "60000")
    fake.set_mark(ETH, "3500")
    fake.open_position(KEY, BTC, "long", "3000", "60000")
    fake.open_position(KEY, ETH, "short", "200", "3400")
    fake.set_coin(KEY, "ETH", "2", collateral=False)
    fake.set_margin_mode(KEY, margin_mode)
    _, result = snapshot_then_calc(gate_world, f"{label}")
    liquidations, theirs = asyncio.run(_gate_figures(fake, single=margin_mode == 3))
    ours = {p["symbol"]: D(p["liquidation_price"]) for p in result["positions"]}
    assert sorted(ours) == sorted(liquidations) == sorted([BTC, ETH])
    for symbol, price in liquidations.items():
        # Gate rounds to its tick (longs up, shorts down)
        assert abs(ours[symbol] / price - 1) < D("1e-5"), (symbol, ours[symbol], price)
    assert abs(D(result["account"]["margin_ratio"]) / theirs - 1) < D("1e-9")


def test_a_btc_long_crosses_the_thresholds_at_the_right_marks_in_single_currency_mode(
    gate_world: dict[str, Any],
) -> None:
    fake, http, daemon, base = (gate_world[k] for k in ("fake", "http", "daemon", "base"))
    # 1,000 USDT, 0.5 BTC outside the USDT pool (single-currency mode keeps it out) and a
    # 0.1 BTC long at 60,000: MM = 0.1 m x (0.4% + 0.075%) over 1,000 + 0.1 (m - 60,000)
    #   = 0.000475 m / (0.1 m - 5,000): 2.85% at 60,000
    fake.set_mark(BTC, "60000")
    fake.set_coin(KEY, "BTC", "0.5")
    fake.set_margin_mode(KEY, 3)
    fake.open_position(KEY, BTC, "long", "1000", "60000")
    started(daemon)
    account = wait_for(lambda: computed_account(base), what="alertd's own figures")
    assert account["mode"] == "unified single-currency (margin_mode 3 (single_currency))"
    assert D(account["margin_ratio"]) == D("28.5") / D(1000)
    (position,) = account["positions"]
    # the ratio is 1 at 5,000 / 0.099525 = 50,238.63; Gate's, up to its tick: 50,238.7
    liquidations, _ = asyncio.run(_gate_figures(fake, single=True))
    assert D(position["liquidation_price"]) == D(5000) / D("0.099525")
    assert liquidations[BTC] == D("50238.7")
    assert http.posts == []

    # at 50,450: 23.96375 / 45 = 53.3%
    # at 50,290: 23.88775 / 29 = 82.4%
    ratio_alerts_at(fake, http, daemon, BTC, ("50450", "53.3%"), ("50290", "82.4%"))


def test_btc_collateral_shows_gate_s_own_ratio_with_no_false_alert_at_bootstrap(
    gate_world: dict[str, Any],
) -> None:
    fake, http, daemon, base = (gate_world[k] for k in ("fake", "http", "daemon", "base"))
    # 150 USDT, 0.05 BTC (3,000 USD: 1,000 x 0.98 + 2,000 x 0.95 = 2,880 after the docs'
    # discount tiers) and a 0.1 BTC long at 60,000 in a multi-currency pool: Gate's ratio is
    # 28.5 / 3,030 = 0.94%; the USDT alone would read 28.5 / 150 = 19% (and 57% after a 1%
    # fall, a false warning)
    fake.set_balance(KEY, "150")
    fake.set_mark(BTC, "60000")
    fake.set_coin(KEY, "BTC", "0.05")
    fake.set_margin_mode(KEY, 1)
    fake.open_position(KEY, BTC, "long", "1000", "60000")
    started(daemon)
    account = wait_for(
        lambda: (a := status_account(base))["exchange_margin_ratio"] is not None and a,
        what="Gate's ratio",
    )
    assert account["mode"] == "multi-assets (margin_mode 1 (multi_currency))"
    assert account["coverage"] == "exchange's own ratio"
    assert account["margin_ratio_source"] == "exchange"
    assert D(account["exchange_margin_ratio"]) == D("28.5") / D(3030)
    assert "BTC as collateral" in account["mode_limits"]
    fake.set_mark(BTC, "59400")
    wait_for(lambda: status_account(base)["exchange_margin_ratio_moved"], what="moved ratio")
    assert not [t for t in http.titles() if "worst ratio" in t], http.titles()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.text()
