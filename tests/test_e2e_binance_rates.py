"""End to end, Binance multi-assets mode with the margin assets at their own rates (issue 11):
the real ``alertd snapshot``, ``alertd calc`` and ``alertd run`` processes against the local
Binance, which values the USDT equity (its wallet and the USDT-M positions' PnL) at USDT's
``assetIndex`` bid rate while positive and its ask rate once negative, and the USDT-M
positions' maintenance margin at the ask rate (Binance FAQ "How to Calculate Margin in
Multi-Assets Mode": "Account Equity = ∑min(assetEquity*bidRate, assetEquity*askRate)",
example 2's "80 x 0.99495 + 120 x 1 = 199.596"). USDT at 0.99 (a depeg, the FAQ's own rates:
bid buffer 0.01, ask buffer 0.005, so bid rate 0.9801 and ask rate 0.99495)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.support.endpoint import status_account
from tests.support.fixtures import (
    BTC,
    liquidations_agree,
    ratio_alerts_at,
    snapshot_then_calc,
    started_computed,
    status_world_fixture,
)
from tests.support.poll import wait_for

D = Decimal
KEY, SECRET = "key-main", "secret-main"
ETH_USDC = "ETH/USDC:USDC"
MODE = "multi-assets (multiAssetsMargin true)"


def _one_bracket(mmr: str) -> list[dict[str, Any]]:
    return [
        {
            "notionalFloor": 0,
            "notionalCap": 1_000_000_000,
            "initialLeverage": 125,
            "maintMarginRatio": mmr,
        }
    ]


def _usdt_depegged(fake: Any) -> None:
    # the FAQ's USDTUSD row: index 0.99, bid buffer 0.01, ask buffer 0.005
    fake.set_asset_index("USDT", "0.99", "0.01", "0.005")


def _faq_example_2(fake: Any) -> None:
    """The FAQ's example 2: 200 USDT and 220 USDC (USDCUSD 1, no buffers), long 0.5 BTCUSDT at
    20,000 (MMR 0.8%) and 20 ETHUSDC at 600 (MMR 1%), marks at entry."""
    fake.set_balance(KEY, "200")
    _usdt_depegged(fake)
    fake.set_asset_index("USDC", "1", "0", "0")
    fake.set_multi_assets_coins(KEY, {"USDC": "220"})
    fake.set_tiers("BTCUSDT", _one_bracket("0.008"))
    fake.add_symbol(ETH_USDC, "600", _one_bracket("0.01"))
    fake.set_mark(BTC, "20000")
    fake.open_position(KEY, BTC, "long", "0.5", "20000")
    fake.open_position(KEY, ETH_USDC, "long", "20", "600")


def _real_account_depegged(fake: Any) -> None:
    """The real multi-assets account of accounts.md (3.73 USDT, 22 USDC at 0.99977, long
    0.009 BTCUSDT at 67,445.9, Binance's BTCUSDT brackets) with USDT at 0.99: the USDT
    equity is positive at the mark (4.24) and negative at the liquidation price (the long
    loses about 23 USDT first), where it converts at the ask rate."""
    fake.set_balance(KEY, "3.73")
    _usdt_depegged(fake)
    fake.set_asset_index("USDC", "0.99977", "0", "0")
    fake.set_multi_assets_coins(KEY, {"USDC": "22"})
    fake.set_mark(BTC, "67502.68")
    fake.open_position(KEY, BTC, "long", "0.009", "67445.9")


world = status_world_fixture("binanceusdm", (KEY, SECRET), "1000")


@pytest.mark.parametrize(
    ("account", "symbols"),
    [(_faq_example_2, [BTC, ETH_USDC]), (_real_account_depegged, [BTC])],
    ids=["faq-example-2", "real-account-usdt-at-0.99"],
)
def test_snapshot_and_calc_reproduce_binance_with_usdt_at_its_rates(
    world: dict[str, Any], account: Any, symbols: list[str]
) -> None:
    fake = world["fake"]
    account(fake)
    served = fake.account_v3(KEY)
    theirs_ratio = D(served["totalMaintMargin"]) / D(served["totalMarginBalance"])
    if account is _faq_example_2:
        # the local Binance gives the FAQ's figures exactly: 199.596 / 416.02 = 47.98%
        assert (D(served["totalMaintMargin"]), D(served["totalMarginBalance"])) == (
            D("199.596"),
            D("416.02"),
        )
    snapshot, result = snapshot_then_calc(world, MODE)
    # USDT's rates go with the snapshot, and the USDC-M position is margined in USDC
    assert (snapshot["cross"]["bid_rate"], snapshot["cross"]["ask_rate"]) == ("0.9801", "0.99495")
    margin_assets = {p["symbol"]: p.get("margin_asset") for p in snapshot["positions"]}
    assert margin_assets == {s: ("USDC" if s == ETH_USDC else None) for s in symbols}
    ratio = D(result["account"]["margin_ratio"])
    if account is _faq_example_2:
        assert ratio == D("199.596") / D("416.02")
    assert abs(ratio / theirs_ratio - 1) < D("1e-6")
    rows = fake.position_risk_v3(KEY)
    liquidations = {
        next(s for s in symbols if s.replace("/", "").split(":")[0] == r["symbol"]): D(
            r["liquidationPrice"]
        )
        for r in rows
        if D(r["positionAmt"])
    }
    liquidations_agree(result["positions"], liquidations, symbols, D("1e-6"))


def _usdc_depegged(eth_mark: str) -> Any:
    """The FAQ's example 2 with 400 USDT at par and USDC, not USDT, at 0.99 (the FAQ's
    buffers: bid rate 0.9801, ask rate 0.99495): USDC's equity (its 220 wallet plus
    ETHUSDC's PnL, Binance's "assetEquity") and ETHUSDC's MM at USDC's own rates. ETHUSDC's
    liquidation (about 578.71) lies past USDC's own kink at 589, where that equity turns
    negative: 400 + (20 P - 11,780) x 0.99495 = 80 + 0.2 P x 0.99495."""

    def script(fake: Any) -> None:
        fake.set_balance(KEY, "400")
        fake.set_asset_index("USDC", "0.99", "0.01", "0.005")
        fake.set_multi_assets_coins(KEY, {"USDC": "220"})
        fake.set_tiers("BTCUSDT", _one_bracket("0.008"))
        fake.add_symbol(ETH_USDC, eth_mark, _one_bracket("0.01"))
        fake.set_mark(BTC, "20000")
        fake.open_position(KEY, BTC, "long", "0.5", "20000")
        fake.open_position(KEY, ETH_USDC, "long", "20", "600")

    return script


@pytest.mark.parametrize("eth_mark", ["600", "585"])
def test_snapshot_and_calc_reproduce_binance_with_usdc_at_its_own_rates(
    world: dict[str, Any], eth_mark: str
) -> None:
    """USDT-M and USDC-M positions, USDC at 0.99: the local Binance counts each asset's equity
    at its rates (its own implementation, tests/fake_exchange/binance.py); ``alertd snapshot``
    writes USDC's line and ``alertd calc`` reproduces the ratio and both liquidation prices
    to 1e-6, with ETH at entry (USDC's equity 220) and at 585 (-80: past its kink)."""
    fake = world["fake"]
    _usdc_depegged(eth_mark)(fake)
    served = fake.account_v3(KEY)
    usdc_equity = 220 + 20 * (D(eth_mark) - 600)
    usdc = min(usdc_equity * D("0.9801"), usdc_equity * D("0.99495"))
    assert D(served["totalMarginBalance"]) == 400 + usdc
    eth_mm = 20 * D(eth_mark) * D("0.01") * D("0.99495")
    assert D(served["totalMaintMargin"]) == 80 + eth_mm
    theirs_ratio = D(served["totalMaintMargin"]) / D(served["totalMarginBalance"])
    snapshot, result = snapshot_then_calc(world, MODE)
    assert snapshot["cross"]["margin_assets"] == [
        {"asset": "USDC", "wallet_balance": "220", "bid_rate": "0.9801", "ask_rate": "0.99495"}
    ]
    assert abs(D(result["account"]["margin_ratio"]) / theirs_ratio - 1) < D("1e-6")
    liquidations = {
        (BTC if r["symbol"] == "BTCUSDT" else ETH_USDC): D(r["liquidationPrice"])
        for r in fake.position_risk_v3(KEY)
        if D(r["positionAmt"])
    }
    ask = D("0.99495")
    by_hand = (11780 * ask - 320) / (D("19.8") * ask)
    assert abs(liquidations[ETH_USDC] / by_hand - 1) < D("1e-6")
    liquidations_agree(result["positions"], liquidations, [BTC, ETH_USDC], D("1e-6"))


def _depegged_long(fake: Any) -> None:
    # 3,000 USDT, long 1 BTCUSDT at 60,000 (one bracket, MMR 0.5%), multi-assets, USDT at 0.99
    fake.set_balance(KEY, "3000")
    _usdt_depegged(fake)
    fake.set_multi_assets_coins(KEY, {})
    fake.set_tiers("BTCUSDT", _one_bracket("0.005"))
    fake.set_mark(BTC, "60000")
    fake.open_position(KEY, BTC, "long", "1", "60000")


def test_a_usdt_depeg_brings_the_alerts_at_binance_s_marks(world: dict[str, Any]) -> None:
    """At a mark m the USDT equity is 3,000 + (m - 60,000) > 0, at the bid rate; the MM at the
    ask rate: ratio = 0.005 m x 0.99495 / ((m - 57,000) x 0.9801). USDT at par would give
    0.005 m / (m - 57,000): at 57,580 49.6% (no warning), at 57,362 79.2% (no critical)."""
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    _depegged_long(fake)
    account = started_computed(world, MODE)
    # at 60,000: 298.485 / 2,940.3 = 10.15%
    assert round(D(account["margin_ratio"]) * 100, 2) == D("10.15")
    # at 57,580: 286.44611 / 568.458 = 50.4%; at 57,362: 285.36141 / 354.7962 = 80.4%
    ratio_alerts_at(fake, http, daemon, BTC, ("57580", "50.4%"), ("57362", "80.4%"))
    # Binance's own figures agree with alertd's at the snapshot: the position's 300 USDT of
    # maintenance margin beside alertd's 298.485 USD is no drift
    assert "differs from the exchange" not in daemon.text()


def _usdc_backed_long(fake: Any) -> None:
    # no USDT, 3,000 USDC (a margin asset: ETHUSDC listed), long 1 BTCUSDT at 60,000 (one
    # bracket, MMR 0.5%), multi-assets, every rate at par
    fake.set_balance(KEY, "0")
    fake.add_symbol(ETH_USDC, "600", _one_bracket("0.01"))
    fake.set_multi_assets_coins(KEY, {"USDC": "3000"})
    fake.set_tiers("BTCUSDT", _one_bracket("0.005"))
    fake.set_mark(BTC, "60000")
    fake.open_position(KEY, BTC, "long", "1", "60000")


def _reads(fake: Any, path: str) -> int:
    return sum(1 for _, sent in fake.requests if sent == path)


def test_a_usdc_depeg_streamed_between_reconciles_brings_the_alerts_at_its_marks(
    world: dict[str, Any],
) -> None:
    """USDC depegs to 0.99 (the FAQ's buffers: bid rate 0.9801) an hour before the next
    reconcile: the asset index stream (``!assetIndex@arr``) brings it. The pool's equity is
    3,000 USDC at the bid rate plus the long's USDT PnL, so at a mark m the ratio is
    0.005 m / (m - 57,059.7); USDC at par (the rate the last reconcile read) gives 0.005 m /
    (m - 57,000): at 57,600 48.0% (no warning) where Binance counts 53.3%, at 57,400 71.8%
    (no critical) where it counts 84.3%."""
    fake, http, daemon = world["fake"], world["http"], world["daemon"]
    _usdc_backed_long(fake)
    account = started_computed(world, MODE)
    assert round(D(account["margin_ratio"]) * 100, 2) == D("10.00")  # 300 / 3,000 at par
    # the bootstrap's snapshot, and the resync's once the streams are subscribed: the last
    # before the next reconcile, an hour on
    wait_for(lambda: _reads(fake, "/fapi/v3/positionRisk") == 2, what="the resync")
    reads = _reads(fake, "/fapi/v1/assetIndex")
    fake.set_asset_index("USDC", "0.99", "0.01", "0.005")
    # at 60,000: 300 / 2,940.3 = 10.20%
    wait_for(
        lambda: round(D(status_account(world["base"])["margin_ratio"]) * 100, 2) == D("10.20"),
        what="USDC's streamed rates in the ratio",
    )
    assert fake.asset_index_subscriptions() == 1
    # at 57,600: 288 / 540.3 = 53.3%; at 57,400: 287 / 340.3 = 84.3%
    ratio_alerts_at(fake, http, daemon, BTC, ("57600", "53.3%"), ("57400", "84.3%"))
    assert _reads(fake, "/fapi/v1/assetIndex") == reads  # none read the index meanwhile
