"""End to end, OKX multi-currency margin (acctLv 3, issue 11): the real ``alertd snapshot``,
``alertd calc`` and ``alertd run`` processes against the local OKX, which reports OKX's own
adjEq, mmr, mgnRatio and liquidation prices by OKX's documented rules, borrowing maintenance
margin included (tests/fake_exchange/okx.py). alertd reproduces them with USDT, BTC and USDC
in the pool and a swap and an expiry future in it, and with BTC owed; a BTC balance and a BTC
long falling together (USDT owed once the losses pass the USDT held), and BTC owed rising
against a small BTC long, cross the thresholds at the right marks; no false alert at
bootstrap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tests.support.fakes import ccxt_client
from tests.support.fixtures import (
    BTC,
    exchange_ratio,
    liquidations_agree,
    ratio_alerts_at,
    reconciling_every,
    snapshot_then_calc,
    started_computed,
    status_world_fixture,
    stopped_cleanly,
)
from tests.support.poll import wait_for

from .support.endpoint import computed_account, status_account
from .test_okx_multi_currency import BTC_FUTURE, borrowing_account, multi_currency_account

D = Decimal
KEY, SECRET = "key-main", "secret-main"


# The local OKX with one account (``main``), a config with the ``RULES``, the status
# endpoint and a slow reconcile (alertd moves the coins with the marks itself), and a
# ``Daemon`` for it (not started).
okx_world = status_world_fixture("okx", (KEY, SECRET), "1000")


async def _okx_figures(fake: Any) -> tuple[dict[str, Decimal], Decimal]:
    """OKX's own liquidation price of each position and its account mgnRatio."""
    async with ccxt_client(fake, "okx", KEY, SECRET, password=fake.PASSPHRASE) as client:
        positions = await client.fetch_positions()
        balance = await client.privateGetAccountBalance()
    liquidations = {p["symbol"]: D(p["info"]["liqPx"]) for p in positions}
    return liquidations, D(balance["data"][0]["mgnRatio"])


def _owing_btc(fake: Any, key: str) -> None:
    fake.set_balance(key, "25000")
    borrowing_account(fake, key)


def _usdt_discounted(fake: Any, key: str) -> None:
    """:func:`multi_currency_account` (1,000 USDT) in a USDT discount table of 1 up to 500
    and 0.9 above: the USDT equity's discount follows the positions' PnL (the swap's
    liquidation price lies past the cap, where its slope changes, and past zero)."""
    multi_currency_account(fake, key)
    fake.set_discount_tiers("USDT", [("0", "500", "1"), ("500", "", "0.9")])


@pytest.mark.parametrize(
    ("account", "symbols"),
    [(multi_currency_account, [BTC, BTC_FUTURE]), (_owing_btc, [BTC]),
     (_usdt_discounted, [BTC, BTC_FUTURE])],
    ids=["held", "owed", "usdt-discounted"],
)  # fmt: skip
def test_snapshot_and_calc_reproduce_okx_s_ratio_and_liquidation_prices(
    okx_world: dict[str, Any], account: Callable[[Any, str], None], symbols: list[str]
) -> None:
    fake = okx_world["fake"]
    account(fake, KEY)
    snapshot, result = snapshot_then_calc(okx_world, "multi-assets (acctLv 3)")
    assert {c["asset"] for c in snapshot["cross"]["collateral"]} == {"BTC", "USDC"}
    # USDT's own discount tiers (the local OKX's: 1 to 5,000,000 by default) go with the
    # snapshot
    caps = [t["max_amount"] for t in snapshot["cross"]["discount_tiers"]]
    assert caps == (["500", None] if account is _usdt_discounted else ["5000000", None])
    liquidations, mgn_ratio = asyncio.run(_okx_figures(fake))
    liquidations_agree(result["positions"], liquidations, symbols, D("1e-4"))
    # alertd's ratio is MM over equity: OKX's mgnRatio the other way up
    ratio = D(result["account"]["margin_ratio"])
    assert abs(ratio * mgn_ratio - 1) < D("1e-4")


# USDT at USD 1 throughout; BTC's USD price follows the swap's mark.
@pytest.mark.parametrize(
    ("usdt", "currencies", "contracts", "ratio", "exact", "liquidation", "steps"),
    [
        # 500 USDT, 0.02 BTC (discount 0.98), 300 USDC (0.98) and a 1 BTC swap long at
        # 60,000. alertd's ratio (MM + fee over adjEq):
        #   0.0045 m / (500 + (m - 60,000) + 0.02 x 0.98 m + 294) = 0.0045 m / (1.0196 m -
        #   59,206)
        # 0.137 at 60,000: no alert (USDT-only math: 270 / 500 = 0.54, a false warning).
        # Below 59,500 the losses pass the 500 USDT: 59,500 - m USDT is owed, with OKX's
        # borrowing MM of 3% on it: (1,785 - 0.0255 m) / (1.0196 m - 59,206). At the
        # liquidation price the ratio is 1: 60,991 / 1.0451 = 58,359.01 (OKX's liqPx; the
        # USDT owed left out, 59,206 / 1.0151 = 58,325.29, 34 lower).
        # at 58,600: 290.70 / 542.56 = 53.6% (without the USDT owed's MM 48.6%: no warning)
        # at 58,410: 295.545 / 348.836 = 84.7% (without the USDT owed's MM 75.3%: not critical)
        ("500", {"BTC": "0.02", "USDC": "300"}, "100", D(270) / D(1970), False,
         D(60991) / D("1.0451"), (("58600", "53.6%"), ("58410", "84.7%"))),
        # 30,000 USDT (the 0.4 BTC borrowed, sold), 0.4 BTC owed and a 0.1 BTC swap long at
        # 60,000. At a mark m: adjEq = 30,000 + 0.1 (m - 60,000) - 0.4 m = 24,000 - 0.3 m;
        # MM + fee = 0.1 m x (0.4% + 0.05%) + 0.4 m x 3% (the BTC owed, OKX's first BTC
        # borrowing tier) = 0.01245 m. 747 / 6,000 = 12.45% at 60,000. The long is
        # liquidated as BTC rises: 24,000 / 0.31245 = 76,812.29 (OKX's liqPx).
        # at 74,000: 921.30 / 1,800 = 51.2% (without the borrowing MM 1.9%: no alert at all)
        # at 76,100: 947.445 / 1,170 = 81.0%
        ("30000", {"BTC": "-0.4"}, "10", D("0.1245"), True,
         D(24000) / D("0.31245"), (("74000", "51.2%"), ("76100", "81.0%"))),
    ],
    ids=["btc-held-falling-with-a-long", "btc-owed-rising-against-a-long"],
)  # fmt: skip
def test_btc_held_or_owed_beside_a_btc_long_crosses_at_the_right_marks(
    okx_world: dict[str, Any],
    usdt: str,
    currencies: dict[str, str],
    contracts: str,
    ratio: Decimal,
    exact: bool,
    liquidation: Decimal,
    steps: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    fake, http, daemon = (okx_world[k] for k in ("fake", "http", "daemon"))
    fake.set_mark(BTC, "60000")
    fake.set_account_level(KEY, "3")
    fake.set_balance(KEY, usdt)
    for ccy, amount in currencies.items():
        btc = ccy == "BTC"
        fake.set_currency(KEY, ccy, amount, "60000" if btc else "1", follows=BTC if btc else None)
    fake.open_position(KEY, BTC, "long", contracts, "60000")
    account = started_computed(okx_world, "multi-assets (acctLv 3)")
    ours = D(account["margin_ratio"])
    assert (ours == ratio) if exact else (abs(ours - ratio) < D("1e-12")), (ours, ratio)
    # OKX's own ratio, as the daemon read it and straight from the local OKX (mgnRatio:
    # equity over MM, alertd's the other way up)
    assert abs(ours / exchange_ratio(okx_world["base"]) - 1) < D("1e-6")
    liquidations, mgn_ratio = asyncio.run(_okx_figures(fake))
    assert abs(ours * mgn_ratio - 1) < D("1e-6")
    at = liquidations_agree(account["positions"], liquidations, [BTC], D("1e-4"))
    assert abs(at[BTC] - liquidation) < D("0.01")
    ratio_alerts_at(fake, http, daemon, BTC, *steps)


def test_a_switch_to_multi_currency_and_a_liability_are_picked_up_without_a_restart(
    okx_world: dict[str, Any],
) -> None:
    fake, http, daemon, base = (okx_world[k] for k in ("fake", "http", "daemon", "base"))
    reconciling_every(okx_world, 1)
    # single-currency: 2,000 USDT and a 1 BTC long at 60,000: MM + fee 270 over 2,000
    fake.set_balance(KEY, "2000")
    fake.set_mark(BTC, "60000")
    fake.open_position(KEY, BTC, "long", "100", "60000")
    account = started_computed(okx_world, "single-asset (acctLv 2)")
    assert D(account["margin_ratio"]) == D("0.135")

    # 0.1 BTC joins the pool at 0.98: 270 / (2,000 + 0.1 x 60,000 x 0.98)
    fake.set_currency(KEY, "BTC", "0.1", "60000", follows=BTC)
    fake.set_account_level(KEY, "3")
    wait_for(lambda: status_account(base)["mode"] == "multi-assets (acctLv 3)", what="the switch")
    account = wait_for(lambda: computed_account(base), what="computed after the switch")
    assert D(account["margin_ratio"]) == D(270) / D(7880)

    # 100 USDC owed: counted in full, with 3% of it (OKX's first USDC borrowing tier) in the
    # requirement: 273 / 7,780
    fake.set_currency(KEY, "USDC", "-100", "1")
    account = wait_for(
        lambda: (a := computed_account(base)) and D(a["margin_ratio"]) == D(273) / D(7780) and a,
        what="the USDC owed computed",
    )
    # ETH owed, a currency OKX lists no borrowing tiers for: OKX's ratio stands in, labelled,
    # with the reason
    fake.unlist_borrowing_tiers("ETH")
    fake.set_currency(KEY, "ETH", "-1", "3000")
    account = wait_for(
        lambda: (a := status_account(base))["coverage"] == "exchange's own ratio" and a,
        what="OKX's ratio for a liability alertd cannot value",
    )
    assert account["margin_ratio_source"] == "exchange"
    assert "a ETH liability with no borrowing tiers" in account["mode_limits"]
    fake.set_currency(KEY, "ETH", "0", "3000")
    wait_for(lambda: computed_account(base), what="computed again once repaid")
    assert not [t for t in http.titles() if "ratio" in t and "worst" in t]
    stopped_cleanly(daemon)
