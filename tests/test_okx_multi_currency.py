"""OKX multi-currency margin (acctLv 3) computed by alertd, and USDT expiry futures in the
USDT pool (issue 11).

The readers are checked on OKX's documented and recorded answers (cited); the feed on the
local OKX, which serves an acctLv 3 account with USDT, BTC and USDC and reports OKX's own
adjEq, mmr, mgnRatio and liquidation prices by OKX's documented rules
(tests/fake_exchange/okx.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from alertd.config import Secret
from alertd.engine.margin import compute
from alertd.engine.model import Side
from alertd.exchanges import okx
from alertd.feeds.adapter import FrameError
from alertd.feeds.feed import AccountFeed
from alertd.feeds.state import AccountMode, Coverage

from .fake_exchange.okx import FakeOKX
from .support.aio import run
from .support.fakes import started
from .support.feeds import BTC, FAST, FAST_OPTIONS, account_config, bootstrapped, streaming
from .support.poll import eventually

D = Decimal
BTC_FUTURE = "BTC/USDT:USDT-261225"

# OKX docs, "Get discount rate and interest-free quota", response example (BTC)
DOCS_BTC_DISCOUNT = {
    "amt": "0",
    "ccy": "BTC",
    "collateralRestrict": False,
    "details": [
        {"discountRate": "0.98", "liqPenaltyRate": "0.02", "maxAmt": "20", "minAmt": "0",
         "tier": "1", "disCcyEq": "1000"},
        {"discountRate": "0.9775", "liqPenaltyRate": "0.0225", "maxAmt": "25", "minAmt": "20",
         "tier": "2", "disCcyEq": "2000"},
    ],
    "discountLv": "1",
    "minDiscountRate": "0",
}  # fmt: skip

# ccxt ts/src/test/static/response/okx.json, fetchBalance "spot balance": a real multi-currency
# account's answer, trimmed to the account's figures and three currencies' rows (BTC and the
# settle currency as recorded; TUSD is not collateral there: collateralEnabled false, disEq 0)
RECORDED_MULTI = {
    "adjEq": "152550.80919105993",
    "mgnRatio": "15986.632239614408",
    "mmr": "9.073149592403611",
    "details": [
        {"cashBal": "0.000258796", "ccy": "USDT", "eq": "0.000258796", "isoEq": "0",
         "upl": "0", "mgnRatio": "", "mmr": ""},
        {"cashBal": "1.06126645222", "ccy": "BTC", "collateralEnabled": True,
         "disEq": "122590.9992421681", "eq": "1.06126645222", "eqUsd": "125092.85636955927",
         "isoEq": "0", "liab": "0", "upl": "0"},
        {"cashBal": "3000", "ccy": "TUSD", "collateralEnabled": False, "disEq": "0",
         "eq": "3000", "eqUsd": "43505220", "isoEq": "0", "liab": "0", "upl": "0"},
    ],
}  # fmt: skip


def test_discount_tiers_count_the_amount_held_in_the_currency() -> None:
    ratio = okx.discount_ratio(DOCS_BTC_DISCOUNT)
    # 20 BTC at 0.98, the next 5 at 0.9775, past 25 minDiscountRate 0
    assert ratio.counted(D(10)) == D("9.8")
    assert ratio.counted(D(22)) == D("19.6") + 2 * D("0.9775")
    assert ratio.counted(D(30)) == D("19.6") + 5 * D("0.9775")


def test_a_recorded_multi_currency_answer_gives_okx_s_discounted_equity() -> None:
    ratios = {"BTC": okx.discount_ratio(DOCS_BTC_DISCOUNT), "USDT": _flat_usdt()}
    pool = okx.multi_currency_pool(RECORDED_MULTI, ratios, "USDT", {})
    (btc,) = pool.coins  # TUSD is not collateral: OKX's disEq 0
    assert btc.asset == "BTC" and btc.amount == D("1.06126645222")
    # OKX's disEq for BTC: eqUsd x 0.98, the docs' first tier; the USDT row has no eqUsd here,
    # so the pool is counted in USD
    assert abs(btc.value / D("122590.9992421681") - 1) < D("1e-15")
    assert pool.wallet == D("0.000258796") and pool.not_reproduced == ()
    # OKX's ratio as alertd shows it: the reciprocal of mgnRatio
    assert pool.reported.margin_ratio == 1 / D("15986.632239614408")
    assert pool.reported.margin_balance == D("152550.80919105993")


def _flat_usdt() -> Any:
    return okx.discount_ratio(
        {"ccy": "USDT", "details": [{"minAmt": "0", "maxAmt": "", "discountRate": "1"}]}
    )


def test_a_liability_keeps_okx_s_own_ratio_and_says_why() -> None:
    answer = {
        **RECORDED_MULTI,
        "details": [
            *RECORDED_MULTI["details"][:2],
            {"ccy": "USDC", "eq": "-500", "eqUsd": "-499.95", "isoEq": "0", "liab": "500"},
        ],
    }
    ratios = {"BTC": okx.discount_ratio(DOCS_BTC_DISCOUNT), "USDT": _flat_usdt()}
    pool = okx.multi_currency_pool(answer, ratios, "USDT", {})
    assert pool.not_reproduced == ("a USDC liability (borrowing maintenance margin)",)


def okx_feed(fake: FakeOKX, key: str = "key-o") -> AccountFeed:
    secrets = {
        "api_key": Secret(key),
        "secret": Secret("secret-o"),
        "password": Secret(FakeOKX.PASSPHRASE),
    }
    return AccountFeed(account_config("o", "okx", fake), secrets, FAST, FAST_OPTIONS)


def multi_currency_account(fake: FakeOKX, key: str = "key-o") -> None:
    """1,000 USDT (USD 0.9998), 0.05 BTC following the BTC swap's mark, 2,000 USDC, a
    1 BTC swap long at 60,000 and a 0.1 BTC expiry future long at 60,300, in acctLv 3."""
    fake.set_usdt_usd("0.9998")
    fake.set_mark(BTC, "60000")
    fake.set_mark(BTC_FUTURE, "60300")
    fake.set_account_level(key, "3")
    fake.set_currency(key, "BTC", "0.05", "60006", follows=BTC)
    fake.set_currency(key, "USDC", "2000", "0.9999")
    fake.open_position(key, BTC, "long", "100", "60000")
    fake.open_position(key, BTC_FUTURE, "long", "10", "60300")


def test_the_local_okx_multi_currency_account_is_computed_as_okx_reports_it() -> None:
    async def body() -> None:
        async with started(FakeOKX(), [("key-o", "secret-o", "1000")]) as fake:
            multi_currency_account(fake)
            feed = okx_feed(fake)
            state = (await bootstrapped(feed)).state
            assert state.mode.mode is AccountMode.MULTI_ASSETS
            assert state.mode.coverage is Coverage.COMPUTED and state.computable
            assert {c.asset for c in state.collateral} == {"BTC", "USDC"}
            assert {p for p, _ in state.positions} == {BTC, BTC_FUTURE}
            assert BTC_FUTURE in state.tiers  # the future's own tiers (instType FUTURES)
            metrics = compute(state.to_account())
            reported = state.reported_account
            assert reported.margin_ratio is not None
            # adjEq = 1,000 x 0.9998 + 0.05 x 60,006 x 0.98 + 2,000 x 0.9999 x 0.98 = 5,899.898
            # USD; MM + fee = (60,000 x 0.45% + 6,030 x 0.55%) x 0.9998 USD: in USDT, 303.165
            # / (5,899.898 / 0.9998)
            assert abs(metrics.pool.margin_ratio / reported.margin_ratio - 1) < D("1e-4")
            expected = D("303.165") / (D("5899.898") / D("0.9998"))
            assert abs(metrics.pool.margin_ratio / expected - 1) < D("1e-20")
            comparison = feed.comparison
            assert comparison is not None and comparison.mismatches == (), comparison
            liquidation = {p.position.symbol: p.liquidation_price for p in metrics.positions}
            for symbol in (BTC, BTC_FUTURE):
                theirs = state.reported_positions[(symbol, Side.LONG)].liquidation_price
                ours = liquidation[symbol]
                assert theirs is not None and ours is not None
                assert abs(ours / theirs - 1) < D("1e-4"), (symbol, ours, theirs)

    run(body())


def test_a_mode_switch_and_a_liability_are_picked_up_at_reconcile() -> None:
    async def body() -> None:
        async with started(FakeOKX(), [("key-o", "secret-o", "1000")]) as fake:
            fake.set_mark(BTC, "60000")
            fake.open_position("key-o", BTC, "long", "100", "60000")
            feed = okx_feed(fake)
            try:
                await feed.bootstrap()
                state = feed.state
                assert state.mode.mode is AccountMode.SINGLE_ASSET and state.collateral == ()
                fake.set_currency("key-o", "BTC", "0.05", "60000", follows=BTC)
                fake.set_account_level("key-o", "3")
                await feed.reconcile()
                assert state.mode.mode is AccountMode.MULTI_ASSETS and state.computable
                assert [c.asset for c in state.collateral] == ["BTC"]
                assert feed.comparison is not None and feed.comparison.mismatches == ()
                fake.set_currency("key-o", "USDC", "-500", "1")
                await feed.reconcile()
                assert state.mode.coverage is Coverage.EXCHANGE_RATIO
                assert "a USDC liability" in state.mode.limits and "OKX's own" in state.mode.limits
                assert state.reported_account.margin_ratio is not None
                fake.set_account_level("key-o", "2")
                await feed.reconcile()
                assert state.mode.mode is AccountMode.SINGLE_ASSET and state.computable
                assert state.collateral == ()
            finally:
                await feed.close()

    run(body())


def test_the_expiry_future_and_the_coin_move_with_their_mark_streams() -> None:
    async def body() -> None:
        async with started(FakeOKX(), [("key-o", "secret-o", "1000")]) as fake:
            multi_currency_account(fake)
            feed = okx_feed(fake)
            async with streaming(feed):
                state = feed.state
                fake.set_mark(BTC_FUTURE, "59000")
                await eventually(lambda: state.marks.get(BTC_FUTURE) == D(59000), what="future")
                fake.set_mark(BTC, "59500")
                await eventually(lambda: state.marks.get(BTC) == D(59500), what="swap")
                (btc,) = [c for c in state.to_account().collateral if c.asset == "BTC"]
                # 60,006 / 0.9998 USDT at a mark of 60,000, moved with the mark to 59,500
                assert btc.price == D(60006) / D("0.9998") * D(59500) / D(60000)

    run(body())


def test_bad_discount_tiers_name_the_field_and_missing_ones_keep_okx_s_ratio() -> None:
    bad_rate = {**DOCS_BTC_DISCOUNT, "details": [
        {"discountRate": "1.5", "maxAmt": "", "minAmt": "0"}]}  # fmt: skip
    with pytest.raises(FrameError, match="BTC tier 1 discountRate: must be in"):
        okx.discount_ratio(bad_rate)
    not_a_number = {**DOCS_BTC_DISCOUNT, "details": [
        {"discountRate": "abc", "maxAmt": "", "minAmt": "0"}]}  # fmt: skip
    with pytest.raises(FrameError, match="BTC discountRate"):
        okx.discount_ratio(not_a_number)
    with pytest.raises(FrameError, match="no tiers for BTC"):
        okx.discount_ratio({"ccy": "BTC", "details": []})
    # a held currency OKX gave no tiers for: not a silent zero, OKX's ratio stands in
    pool = okx.multi_currency_pool(RECORDED_MULTI, {"USDT": _flat_usdt()}, "USDT", {})
    assert pool.not_reproduced == ("BTC held with no discount tiers",) and pool.coins == ()


def test_single_currency_holds_the_expiry_future_in_the_usdt_pool() -> None:
    async def body() -> None:
        async with started(FakeOKX(), [("key-o", "secret-o", "3000")]) as fake:
            fake.set_mark(BTC, "60000")
            fake.set_mark(BTC_FUTURE, "60300")
            fake.open_position("key-o", BTC, "long", "100", "60000")
            fake.open_position("key-o", BTC_FUTURE, "short", "50", "60300")
            feed = okx_feed(fake)
            state = (await bootstrapped(feed)).state
            assert state.mode.mode is AccountMode.SINGLE_ASSET and state.computable
            assert {p for p, _ in state.positions} == {BTC, BTC_FUTURE}
            metrics = compute(state.to_account())
            # (60,000 x 0.45% + 30,150 x 0.55%) / 3,000 against OKX's USDT mgnRatio
            assert metrics.pool.margin_ratio == (D(270) + D("165.825")) / D(3000)
            assert state.reported_account.margin_ratio is not None
            assert abs(metrics.pool.margin_ratio / state.reported_account.margin_ratio - 1) < D(
                "1e-4"
            )
            assert feed.comparison is not None and feed.comparison.mismatches == ()

    run(body())
