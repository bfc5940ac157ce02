"""End to end, Gate's unified account (issue 11): the real ``alertd snapshot``, ``alertd calc``
and ``alertd run`` processes against the local Gate, which reports Gate's own unified-account
figures and liquidation prices by Gate's documented rules (tests/fake_exchange/gate.py).

Single-currency margin (``margin_mode`` 3) and multi-currency margin (1), with USDT alone or
BTC beside it as collateral (the USDT shortfall then a liability at its loan margin tier), with
BTC or USDT borrowed (the loan at the rate of its tier by the debt's USD value, which the coin's
price moves), are computed by alertd and reproduce Gate's ratio and liquidation prices; with a
coin borrowed that Gate lists no loan tiers for, Gate's own ratio stands in, named, and no
false alert fires at bootstrap (the USDT-only math of before counted none of the BTC)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from tests.support.fakes import ccxt_client
from tests.support.fixtures import (
    BTC,
    exchange_ratio,
    liquidations_agree,
    ratio_alerts_at,
    snapshot_then_calc,
    started,
    started_computed,
    status_world_fixture,
    stopped_cleanly,
)
from tests.support.poll import wait_for

from .support.endpoint import status_account

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


SINGLE = "unified single-currency (margin_mode 3 (single_currency))"
MULTI = "multi-assets (margin_mode 1 (multi_currency))"


@pytest.mark.parametrize(
    ("margin_mode", "label", "usdt", "btc", "loans"),
    [(3, SINGLE, "2000", None, {}),
     (1, MULTI, "2000", None, {}),
     # 300 USDT and 0.2 BTC (12,000 USD: 11,330 after the discount tiers): both liquidation
     # prices lie past the USDT, whose shortfall then carries its loan margin tier's rate
     (1, MULTI, "300", "0.2", {}),
     # 0.5 BTC held of which 0.3 borrowed: an equity of 0.2 BTC, and a debt of 0.3 BTC at
     # the rate of its tier by USD value (5% to 500,000) moving with BTC's price
     (1, MULTI, "300", "0.5", {"BTC": "0.3"}),
     # 2,300 USDT of which 2,000 borrowed: the USDT owed is the loan until the shortfall
     # passes it
     (1, MULTI, "2300", "0.2", {"USDT": "2000"})],
    ids=["single-currency", "multi-currency", "btc-collateral", "btc-borrowed", "usdt-borrowed"],
)  # fmt: skip
def test_snapshot_and_calc_reproduce_gate_s_ratio_and_liquidation_prices(
    gate_world: dict[str, Any],
    margin_mode: int,
    label: str,
    usdt: str,
    btc: str | None,
    loans: dict[str, str],
) -> None:
    fake = gate_world["fake"]
    # a cross BTC long of 0.3 (18,000 at 60,000) and a cross ETH short of 2 ETH; ETH held in
    # the unified account but not enabled as collateral
    fake.set_balance(KEY, usdt)
    fake.set_mark(BTC, "60000")
    fake.set_mark(ETH, "3500")
    fake.open_position(KEY, BTC, "long", "3000", "60000")
    fake.open_position(KEY, ETH, "short", "200", "3400")
    fake.set_coin(KEY, "ETH", "2", collateral=False)
    if btc is not None:
        fake.set_coin(KEY, "BTC", btc, borrowed=loans.get("BTC", "0"))
    fake.set_usdt_borrowed(KEY, loans.get("USDT", "0"))
    fake.set_margin_mode(KEY, margin_mode)
    snapshot, result = snapshot_then_calc(gate_world, label)
    if btc is not None:
        cross = snapshot["cross"]
        (coin,) = cross["collateral"]
        assert coin["asset"] == "BTC"
        assert cross["liability_tiers"], cross
        # sliced: each tier's deduction the bracket recursion's (the local Gate's USDT tiers,
        # 1.5% to 200,000, 2% to 400,000, 3% above)
        deductions = [D(t.get("deduction", "0")) for t in cross["liability_tiers"]]
        assert deductions == [0, 200_000 * D("0.005"), 1000 + 400_000 * D("0.01")], cross
        # the loans as the snapshot carries them: BTC's tiers by the debt's value
        assert D(coin.get("borrowed", "0")) == D(loans.get("BTC", "0"))
        assert ("liability_tiers" in coin) is ("BTC" in loans), coin
        assert all("max_value" in tier for tier in coin.get("liability_tiers", ()))
        assert D(cross.get("borrowed", "0")) == D(loans.get("USDT", "0"))
    liquidations, theirs = asyncio.run(_gate_figures(fake, single=margin_mode == 3))
    # Gate rounds to its tick (longs up, shorts down)
    ours = liquidations_agree(result["positions"], liquidations, [BTC, ETH], D("1e-5"))
    if btc is not None:  # past the USDT: the BTC long's at about 36,000, the ETH short's 8,800
        assert ours[BTC] < 40000 and ours[ETH] > 8000, ours
    assert abs(D(result["account"]["margin_ratio"]) / theirs - 1) < D("1e-9")


@pytest.mark.parametrize(
    ("margin_mode", "label", "usdt", "btc", "ratio", "liquidation", "gate_s", "steps"),
    [
        # 1,000 USDT, 0.5 BTC outside the USDT pool (single-currency mode keeps it out) and a
        # 0.1 BTC long at 60,000: MM = 0.1 m x (0.4% + 0.075%) over 1,000 + 0.1 (m - 60,000)
        #   = 0.000475 m / (0.1 m - 5,000): 2.85% at 60,000
        # the ratio is 1 at 5,000 / 0.099525 = 50,238.63; Gate's, up to its tick: 50,238.7
        # at 50,450: 23.96375 / 45 = 53.3%
        # at 50,290: 23.88775 / 29 = 82.4%
        (3, SINGLE, "1000", "0.5", D("28.5") / D(1000), D(5000) / D("0.099525"),
         (D("50238.7"), D("1e-5")), (("50450", "53.3%"), ("50290", "82.4%"))),
        # 40 USDT, 0.05 BTC and a 0.1 BTC long at 60,000 in a multi-currency pool. At a mark
        # m: USDT equity 40 + 0.1 (m - 60,000) = 0.1 m - 5,960; BTC 0.05 m USD after the
        # docs' discount tiers (1,000 x 0.98 + the rest x 0.95) = 0.0475 m + 30; MM 0.1 m x
        # (0.4% + 0.075%) plus, below 59,600, 1.5% (the local Gate's first USDT loan tier) of
        # the USDT shortfall 5,960 - 0.1 m. 28.5 / 2,920 = 0.98% at 60,000: no alert (the
        # USDT-only math of before read 28.5 / 40 = 71%, a false warning)
        # the ratio is 1 where 89.4 - 0.001025 m = 0.1475 m - 5,930: 6,019.4 / 0.148525 =
        # 40,527.86 (the shortfall's margin left out, 5,930 / 0.147025 = 40,333.28, 195 lower)
        # at 40,800: 47.58 / 88 = 54.1% (the shortfall's margin left out: 19.38 / 88 = 22%)
        # at 40,590: 47.79525 / 57.025 = 83.8% (left out: 19.28 / 57.025 = 33.8%)
        (1, MULTI, "40", "0.05", D("28.5") / D(2920), D("6019.4") / D("0.148525"),
         (None, D("1e-4")), (("40800", "54.1%"), ("40590", "83.8%"))),
    ],
    ids=["single-currency", "btc-collateral-falling-with-the-long"],
)  # fmt: skip
def test_a_btc_long_crosses_the_thresholds_at_the_right_marks(
    gate_world: dict[str, Any],
    margin_mode: int,
    label: str,
    usdt: str,
    btc: str,
    ratio: Decimal,
    liquidation: Decimal,
    gate_s: tuple[Decimal | None, Decimal],
    steps: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    """``gate_s``: Gate's own liquidation price where the test knows it (to Gate's tick),
    and how near alertd's lies to Gate's (relative)."""
    fake, http, daemon = (gate_world[k] for k in ("fake", "http", "daemon"))
    fake.set_balance(KEY, usdt)
    fake.set_mark(BTC, "60000")
    fake.set_coin(KEY, "BTC", btc)
    fake.set_margin_mode(KEY, margin_mode)
    fake.open_position(KEY, BTC, "long", "1000", "60000")
    account = started_computed(gate_world, label)
    assert D(account["margin_ratio"]) == ratio
    assert exchange_ratio(gate_world["base"]) == ratio
    liquidations, _ = asyncio.run(_gate_figures(fake, single=margin_mode == 3))
    known, tolerance = gate_s
    ours = liquidations_agree(account["positions"], liquidations, [BTC], tolerance)
    assert ours[BTC] == liquidation
    assert known is None or liquidations[BTC] == known
    ratio_alerts_at(fake, http, daemon, BTC, *steps)


def test_a_borrowed_coin_shows_gate_s_own_ratio_with_no_false_alert_at_bootstrap(
    gate_world: dict[str, Any],
) -> None:
    fake, http, daemon, base = (gate_world[k] for k in ("fake", "http", "daemon", "base"))
    # 150 USDT, 0.05 BTC (2,880 USD after the docs' discount tiers), 5 USDC borrowed (the
    # local Gate lists no USDC loan tiers: 10%, the announcements' single-tier rate) and a
    # 0.1 BTC long at 60,000: Gate's ratio is (28.5 + 0.5) / (150 + 2,880 - 5) = 0.96%; the
    # USDT alone would read 28.5 / 150 = 19% (and 31% after a 1% fall)
    fake.set_balance(KEY, "150")
    fake.set_mark(BTC, "60000")
    fake.set_coin(KEY, "BTC", "0.05")
    fake.set_coin(KEY, "USDC", "0", borrowed="5", price="1")
    fake.set_margin_mode(KEY, 1)
    fake.open_position(KEY, BTC, "long", "1000", "60000")
    started(daemon)
    account = wait_for(
        lambda: (a := status_account(base))["exchange_margin_ratio"] is not None and a,
        what="Gate's ratio",
    )
    assert account["mode"] == MULTI
    assert account["coverage"] == "exchange's own ratio"
    assert account["margin_ratio_source"] == "exchange"
    assert D(account["exchange_margin_ratio"]) == D(29) / D(3025)
    assert "a USDC liability with no loan margin tiers" in account["mode_limits"]
    fake.set_mark(BTC, "59400")
    wait_for(lambda: status_account(base)["exchange_margin_ratio_moved"], what="moved ratio")
    assert not [t for t in http.titles() if "worst ratio" in t], http.titles()
    stopped_cleanly(daemon)


def test_a_borrowed_btc_debt_crossing_its_loan_tier_crosses_the_thresholds_at_the_right_marks(
    gate_world: dict[str, Any],
) -> None:
    fake, http, daemon = (gate_world[k] for k in ("fake", "http", "daemon"))
    # 8 BTC borrowed and sold (its proceeds in the 540,000 USDT) and a 0.1 BTC short at
    # 60,000 in a multi-currency pool. At a mark m: USDT equity 540,000 + 0.1 (60,000 - m);
    # BTC equity -8 BTC, counted in full: -8 m; margin balance 546,000 - 8.1 m. MM: the short's
    # 0.1 m x (0.4% + 0.075%) plus the debt's 8 m sliced by its loan tiers by USD value (the
    # local Gate's BTC tiers: 5% up to 500,000, 7% to 1,000,000; gate.com "Tiered Margin
    # Calculation": each slice at its tier's rate): 0.400475 m up to 62,500, 0.560475 m -
    # 10,000 above. 24,028.5 / 60,000 = 40% at 60,000: computed, no alert
    fake.set_balance(KEY, "540000")
    fake.set_mark(BTC, "60000")
    fake.set_coin(KEY, "BTC", "0", borrowed="8")
    fake.set_margin_mode(KEY, 1)
    fake.open_position(KEY, BTC, "short", "1000", "60000")
    account = started_computed(gate_world, MULTI)
    assert D(account["margin_ratio"]) == D("24028.5") / D(60000)
    (position,) = account["positions"]
    # the ratio is 1 where 0.560475 m - 10,000 = 546,000 - 8.1 m: 556,000 / 8.660475 = 64,199.7
    # (the whole debt at 7%, steps: 546,000 / 8.660475 = 63,045.0; at 5%: 64,231.7)
    liquidations, theirs = asyncio.run(_gate_figures(fake, single=False))
    assert D(position["liquidation_price"]) == D(556000) / D("8.660475")
    assert abs(D(position["liquidation_price"]) / liquidations[BTC] - 1) < D("1e-4")
    assert theirs == D("24028.5") / D(60000)

    # at 62,510 the debt (500,080) is past its first tier by 80 USD: 25,035.3 / 39,669 =
    # 63.1%, a warning (as steps, the whole debt at 7%: 35,035.3, 88.3%, the critical); at
    # 63,470 (debt 507,760) 25,573.4 / 31,893 = 80.2%, the critical (at 5% throughout:
    # 25,418.1, 79.7%, none)
    ratio_alerts_at(fake, http, daemon, BTC, ("62510", "63.1%"), ("63470", "80.2%"))
