"""OKX multi-currency margin (acctLv 3) computed by alertd, and USDT expiry futures in the
USDT pool (issue 11).

The readers are checked on OKX's documented and recorded answers (cited); the feed on the
local OKX, which serves an acctLv 3 account with USDT, BTC and USDC and reports OKX's own
adjEq, mmr, mgnRatio and liquidation prices by OKX's documented rules
(tests/fake_exchange/okx.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.config import Config, FeedSettings, Secret
from alertd.engine.collateral import CollateralRatio
from alertd.engine.margin import compute
from alertd.engine.model import Side
from alertd.errors import SnapshotError
from alertd.exchanges import okx
from alertd.feeds.adapter import FrameError
from alertd.feeds.feed import AccountFeed
from alertd.feeds.manager import FeedManager
from alertd.feeds.options import FeedOptions
from alertd.feeds.state import AccountMode, Coverage
from alertd.snapshot.format import account_to_json, parse_snapshot

from .fake_exchange.okx import FakeOKX
from .support.aio import background, run
from .support.clock import ManualClock
from .support.fakes import started
from .support.feeds import (
    BTC,
    FAST,
    FAST_OPTIONS,
    account_config,
    bootstrapped,
    counted_reconciles,
    fast_backoff,
    streaming,
)
from .support.hostile import HOSTILE_NUMBERS
from .support.poll import eventually

D = Decimal
ETH = "ETH/USDT:USDT"
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


# OKX docs, "Get position tiers" with instType MARGIN, tdMode cross and ccy (multi-currency
# margin: "It will return borrowing amount ... when ccy takes effect"): rows in the shape of the
# recorded one ccxt's okx.py fetch_market_leverage_tiers quotes (maxSz "500", mmr "0.03",
# imr "0.1", maxLever "10"); a second tier added to check the steps
DOCS_USDC_BORROWING = [
    {"baseMaxLoan": "", "imr": "0.1", "instFamily": "", "instId": "", "maxLever": "10",
     "maxSz": "500", "minSz": "0", "mmr": "0.03", "optMgnFactor": "0", "quoteMaxLoan": "",
     "tier": "1", "uly": ""},
    {"baseMaxLoan": "", "imr": "0.2", "instFamily": "", "instId": "", "maxLever": "5",
     "maxSz": "2000", "minSz": "500", "mmr": "0.05", "optMgnFactor": "0", "quoteMaxLoan": "",
     "tier": "2", "uly": ""},
]  # fmt: skip


def _with_usdc(eq: str, eq_usd: str, **more: str) -> dict[str, Any]:
    """The recorded answer with a USDC row of equity ``eq`` (negative: owed)."""
    usdc = {"ccy": "USDC", "eq": eq, "eqUsd": eq_usd, "isoEq": "0", **more}
    return {**RECORDED_MULTI, "details": [*RECORDED_MULTI["details"][:2], usdc]}


def test_borrowing_tiers_step_by_the_amount_owed() -> None:
    table = okx.borrowing_tiers(DOCS_USDC_BORROWING, "USDC")
    assert table is not None
    assert [table.tier_for(D(owed)).mmr for owed in ("1", "500", "500.01", "5000")] == [
        D("0.03"),
        D("0.03"),
        D("0.05"),
        D("0.05"),  # past the last cap its rate holds
    ]
    assert okx.borrowing_tiers([], "USDC") is None
    bad = [{**DOCS_USDC_BORROWING[0], "mmr": "1.2"}]
    with pytest.raises(FrameError, match="position-tiers MARGIN USDC tier 1 mmr: must be in"):
        okx.borrowing_tiers(bad, "USDC")


def test_a_liability_counts_in_full_with_its_borrowing_maintenance_margin() -> None:
    # 500 USDC owed (interest accrued in it: eq is the cash less the interest) at USD 0.9999
    answer = _with_usdc("-500", "-499.95", cashBal="-499.9", interest="0.1", liab="500")
    ratios = {"BTC": okx.discount_ratio(DOCS_BTC_DISCOUNT), "USDT": _flat_usdt()}
    borrowing = {"USDC": okx.borrowing_tiers(DOCS_USDC_BORROWING, "USDC")}
    pool = okx.multi_currency_pool(answer, ratios, "USDT", {}, borrowing)  # type: ignore[arg-type]
    assert pool.not_reproduced == ()
    usdc = next(c for c in pool.coins if c.asset == "USDC")
    assert usdc.amount == D(-500) and usdc.price == D("0.9999")
    # adjEq counts the liability in full; the MM holds 500 x 0.9999 x 3% (tier 1: up to 500)
    assert usdc.value == D("-499.95") and usdc.requirement == D("14.9985")
    # more owed, the next tier's rate on the whole amount (step tiers, as OKX's positions')
    more = okx.multi_currency_pool(
        _with_usdc("-600", "-599.94"),
        ratios,
        "USDT",
        {},
        borrowing,  # type: ignore[arg-type]
    )
    assert next(c for c in more.coins if c.asset == "USDC").requirement == D("29.997")


def test_what_alertd_does_not_reproduce_keeps_okx_s_own_ratio_and_says_why() -> None:
    ratios = {"BTC": okx.discount_ratio(DOCS_BTC_DISCOUNT), "USDT": _flat_usdt()}
    # a liability OKX lists no borrowing tiers for
    pool = okx.multi_currency_pool(_with_usdc("-500", "-499.95"), ratios, "USDT", {})
    assert pool.not_reproduced == ("a USDC liability with no borrowing tiers",)
    # USDT owed: the pool's own currency, lent by its borrowing tiers as the PnL moves
    owed = {**RECORDED_MULTI, "details": [
        {"cashBal": "-100", "ccy": "USDT", "eq": "-100", "isoEq": "0", "upl": "0"},
        RECORDED_MULTI["details"][1]]}  # fmt: skip
    usdt_tiers = okx.borrowing_tiers(DOCS_USDC_BORROWING, "USDT")
    lent = okx.multi_currency_pool(owed, ratios, "USDT", {}, {"USDT": usdt_tiers})  # type: ignore[dict-item]
    assert lent.not_reproduced == () and lent.wallet == D(-100)
    assert lent.settle_terms is not None and lent.settle_terms.tiers is usdt_tiers
    (why,) = okx.multi_currency_pool(owed, ratios, "USDT", {}).not_reproduced
    assert why == "a USDT liability with no borrowing tiers"
    rich = {
        **RECORDED_MULTI,
        "details": [
            {"cashBal": "6000000", "ccy": "USDT", "eq": "6000000", "isoEq": "0", "upl": "0"}
        ],
    }
    tiered = okx.discount_ratio({"ccy": "USDT", "details": [
        {"minAmt": "0", "maxAmt": "5000000", "discountRate": "1"},
        {"minAmt": "5000000", "maxAmt": "", "discountRate": "0.95"}]})  # fmt: skip
    # USDT equity in a tier discounted below 1 is computed: the pool holds USDT's tiers
    # (the engine discounts the equity as the PnL moves it)
    discounted = okx.multi_currency_pool(rich, {"USDT": tiered}, "USDT", {})
    assert discounted.not_reproduced == ()
    assert discounted.settle_terms is not None and discounted.settle_terms.discount is tiered
    assert discounted.settle_terms.counted(D(6_000_000)) == D(5_950_000)


def okx_feed(fake: FakeOKX, key: str = "key-o", settings: FeedSettings = FAST) -> AccountFeed:
    secrets = {
        "api_key": Secret(key),
        "secret": Secret("secret-o"),
        "password": Secret(FakeOKX.PASSPHRASE),
    }
    return AccountFeed(account_config("o", "okx", fake), secrets, settings, FAST_OPTIONS)


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


def borrowing_account(fake: FakeOKX, key: str = "key-o") -> None:
    """acctLv 3 with 25,000 USDT (USD 0.9998; the BTC borrowed was sold for it), 2,000 USDC,
    0.3 BTC owed with 0.0006 BTC of interest accrued (its USD price 60,006 following the BTC
    swap's mark) and a 1 BTC swap long at 60,000: a long hedged in part by the BTC owed."""
    fake.set_usdt_usd("0.9998")
    fake.set_mark(BTC, "60000")
    fake.set_account_level(key, "3")
    fake.set_currency(key, "BTC", "-0.3", "60006", follows=BTC, interest="0.0006")
    fake.set_currency(key, "USDC", "2000", "0.9999")
    fake.open_position(key, BTC, "long", "100", "60000")


def test_a_liability_is_computed_as_the_local_okx_reports_it() -> None:
    async def body() -> None:
        async with started(FakeOKX(), [("key-o", "secret-o", "25000")]) as fake:
            borrowing_account(fake)
            feed = okx_feed(fake)
            state = (await bootstrapped(feed)).state
            assert state.mode.coverage is Coverage.COMPUTED and state.computable, state.mode
            (btc,) = [c for c in state.collateral if c.asset == "BTC"]
            # owed: the cash and the interest on it, at the rate of its borrowing tier (3%)
            assert btc.amount == D("-0.3006") and btc.liability_rate == D("0.03")
            metrics = compute(state.to_account())
            reported = state.reported_account
            assert reported.margin_ratio is not None and reported.maintenance_margin is not None
            # OKX's mmr holds the borrowing MM: 60,000 x 0.4% + 0.3006 x 60,006 x 3% (USD)
            borrowed = D("0.3006") * D(60006) * D("0.03")
            okx_mmr = reported.maintenance_margin * D("0.9998")  # alertd keeps it in USDT
            assert abs(okx_mmr - (D(240) * D("0.9998") + borrowed)) < D("1e-9")
            assert abs(metrics.pool.margin_ratio / reported.margin_ratio - 1) < D("1e-4")
            assert feed.comparison is not None and feed.comparison.mismatches == ()
            (position,) = metrics.positions
            theirs = state.reported_positions[(BTC, Side.LONG)].liquidation_price
            assert theirs is not None and position.liquidation_price is not None
            assert abs(position.liquidation_price / theirs - 1) < D("1e-4")
            # without the borrowing MM the ratio would be off by more than the tolerance
            account = state.to_account()
            coins = tuple(dataclasses.replace(c, liability_tiers=None) for c in account.collateral)
            bare = compute(dataclasses.replace(account, collateral=coins))
            assert abs(bare.pool.margin_ratio / reported.margin_ratio - 1) > D("1e-2")

    run(body())


async def switched_to_multi_currency_with_btc(fake: FakeOKX, feed: AccountFeed) -> None:
    """The account switched to multi-currency margin holding 0.05 BTC: the next reconcile
    computes it, BTC its collateral, with no mismatch against OKX's figures."""
    fake.set_currency("key-o", "BTC", "0.05", "60000", follows=BTC)
    fake.set_account_level("key-o", "3")
    await feed.reconcile()
    state = feed.state
    assert state.mode.mode is AccountMode.MULTI_ASSETS and state.computable
    assert [c.asset for c in state.collateral] == ["BTC"]
    assert feed.comparison is not None and feed.comparison.mismatches == ()


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
                await switched_to_multi_currency_with_btc(fake, feed)
                # a USDC liability: computed with its borrowing MM
                fake.set_currency("key-o", "USDC", "-500", "1")
                await feed.reconcile()
                assert state.mode.coverage is Coverage.COMPUTED and state.computable
                assert feed.comparison is not None and feed.comparison.mismatches == ()
                # USDT owed (the settle currency's equity below zero): computed too
                fake.set_balance("key-o", "-100")
                await feed.reconcile()
                assert state.mode.coverage is Coverage.COMPUTED and state.computable
                assert state.to_account().settle_terms is not None
                assert feed.comparison is not None and feed.comparison.mismatches == ()
                # USDT equity discounted below 1 (a new table, read after the tables'
                # refresh): computed, the discount following the equity, as OKX reports it
                fake.set_balance("key-o", "1000")
                fake.set_discount_tiers("USDT", [("0", "500", "1"), ("500", "", "0.95")])
                await feed.reconcile()
                assert state.mode.coverage is Coverage.COMPUTED  # the table as first read
                await feed.refresh_tiers()
                await feed.reconcile()
                assert state.mode.coverage is Coverage.COMPUTED and state.computable
                terms = state.to_account().settle_terms
                assert terms is not None and terms.discount is not None
                assert feed.comparison is not None and feed.comparison.mismatches == ()
                assert state.reported_account.margin_ratio is not None
                fake.set_account_level("key-o", "2")
                await feed.reconcile()
                assert state.mode.mode is AccountMode.SINGLE_ASSET and state.computable
                assert state.collateral == ()
            finally:
                await feed.close()

    run(body())


def test_streaming_the_config_is_read_at_every_reconcile_and_a_switch_picked_up_at_once() -> None:
    """An OKX account streaming: "Get account configuration" is read at every reconcile
    (issue 11: the mode at every reconcile), so each switch is picked up at the very next
    one without a restart: to multi-currency margin, from it to portfolio margin (which the
    balance answer does not tell apart: calm14 read the configuration at every 5th reconcile
    only, computing a portfolio margin account as multi-currency meanwhile), and back to
    single-currency margin."""

    async def body() -> None:
        async with started(FakeOKX(), [("key-o", "secret-o", "1000")]) as fake:
            fake.set_mark(BTC, "60000")
            fake.open_position("key-o", BTC, "long", "100", "60000")
            feed = okx_feed(fake, settings=FAST.model_copy(update={"stops_reconcile_every": 3}))

            def config_reads() -> int:
                return sum(path == "/api/v5/account/config" for _, path in fake.requests)

            async with streaming(feed):
                state = feed.state
                first, seen = await counted_reconciles(feed, config_reads, 3)
                assert seen == [1, 2, 3]
                assert state.mode.mode is AccountMode.SINGLE_ASSET
                await switched_to_multi_currency_with_btc(fake, feed)
                fake.set_account_level("key-o", "4")
                await feed.reconcile()  # adjEq in both modes: the configuration tells it
                assert state.mode.mode is AccountMode.PORTFOLIO
                fake.set_account_level("key-o", "2")
                await feed.reconcile()
                assert state.mode.mode is AccountMode.SINGLE_ASSET and state.computable
                assert state.collateral == ()
                assert config_reads() - first == 6

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


DISCOUNT_PATH = "/api/v5/public/discount-rate-interest-free-quota"
TIERS_PATH = "/api/v5/public/position-tiers"


def test_public_tiers_are_read_once_per_exchange_and_again_after_the_market_refresh() -> None:
    """OKX's discount and borrowing tiers are public and slow to change: every account on the
    exchange shares one read (was: one per held currency per account per reconcile), until the
    feeds' market refresh drops them (every ``feeds.tier_refresh_interval_s``)."""

    async def body() -> None:
        fake = FakeOKX()
        async with started(fake):
            keys = {}
            for i in range(3):
                fake.add_account(f"key{i}", f"secret{i}", "25000")
                borrowing_account(fake, f"key{i}")
                keys[f"a{i}"] = {
                    "api_key": Secret(f"key{i}"),
                    "secret": Secret(f"secret{i}"),
                    "password": Secret(FakeOKX.PASSPHRASE),
                }
            accounts = [account_config(name, "okx", fake) for name in keys]
            config = Config(version=1, accounts=accounts, feeds=FAST)
            manager = FeedManager(config, keys, FeedOptions(backoff=fast_backoff))

            def reads(path: str) -> int:
                return sum(1 for _, p in fake.requests if p == path)

            async with background(manager.run()):
                feeds = list(manager.feeds.values())
                await eventually(
                    lambda: all(f.state.bootstrapped for f in feeds), what="all up", timeout_s=60
                )
                assert all(f.state.mode.coverage is Coverage.COMPUTED for f in feeds)
                # USDT and USDC held (BTC owed): one discount read each for the three accounts
                assert reads(DISCOUNT_PATH) == 2
                tiers = reads(TIERS_PATH)
                for feed in feeds:
                    await feed.reconcile()
                assert reads(DISCOUNT_PATH) == 2 and reads(TIERS_PATH) == tiers
                (shared,) = manager.shared.values()
                await shared.refresh_markets()
                for feed in feeds:
                    await feed.reconcile()
                # read again once: the discount tiers of USDT and USDC, the borrowing tiers of
                # BTC and USDT (the swap's own tiers are not re-read by a reconcile)
                assert reads(DISCOUNT_PATH) == 4 and reads(TIERS_PATH) == tiers + 2

    run(body(), timeout_s=120)


def test_a_snapshot_keeps_what_is_owed_and_its_tiers() -> None:
    """``alertd snapshot`` writes the liabilities' borrowing tiers and the settle currency's,
    and ``alertd calc`` reads them back to the same figures; a bad tier names its field."""

    async def body() -> Any:
        async with started(FakeOKX(), [("key-o", "secret-o", "25000")]) as fake:
            borrowing_account(fake)
            return (await bootstrapped(okx_feed(fake))).state.to_account()

    account = run(body())
    assert account.settle_terms is not None
    text = json.dumps(account_to_json(account))
    again = parse_snapshot(text).account
    ours, theirs = compute(again), compute(account)
    assert ours.pool == dataclasses.replace(theirs.pool, collateral=ours.pool.collateral)
    assert [c.requirement for c in ours.pool.collateral] == [
        c.requirement for c in theirs.pool.collateral
    ]
    assert [p.liquidation_price for p in ours.positions] == [
        p.liquidation_price for p in theirs.positions
    ]
    assert ours.crash_distance == theirs.crash_distance
    data = json.loads(text)
    data["cross"]["collateral"][0]["liability_tiers"] = [{"max_amount": "1", "mmr": "1.5"}]
    data["cross"]["liability_tiers"] = [
        {"max_amount": "10", "mmr": "0.03"},
        {"max_amount": "5", "mmr": "0.05"},
        {"mmr": "0.1"},
    ]
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(json.dumps(data))
    assert info.value.problems == [
        "cross.collateral[0].liability_tiers[0].mmr: must be less than 1 (got 1.5)"
    ]
    del data["cross"]["collateral"][0]["liability_tiers"]
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(json.dumps(data))
    (problem,) = info.value.problems
    assert problem.startswith("cross.liability_tiers[1].max_amount: tiers out of order")


def test_a_snapshot_names_each_bad_loan_or_discount_field() -> None:
    """What a Gate or OKX snapshot adds for loans (a coin's ``borrowed`` and tiers by value,
    the settle currency's ``borrowed`` and ``discount_tiers``) is read back to the same
    figures; each bad one is one problem naming its field."""

    async def body() -> Any:
        async with started(FakeOKX(), [("key-o", "secret-o", "25000")]) as fake:
            borrowing_account(fake)
            return (await bootstrapped(okx_feed(fake))).state.to_account()

    data = json.loads(json.dumps(account_to_json(run(body()))))
    coin = data["cross"]["collateral"][0]
    coin["borrowed"] = "0.5"
    coin["liability_tiers"] = [{"max_value": "20000", "mmr": "0.05"}, {"mmr": "0.07"}]
    data["cross"]["borrowed"] = "100"
    data["cross"]["discount_tiers"] = [{"max_amount": "1000", "ratio": "1"}, {"ratio": "0.9"}]
    account = parse_snapshot(json.dumps(data)).account
    owed = account.collateral[0]
    assert owed.borrowed == D("0.5") and owed.liability_by_value
    assert account.settle_terms is not None and account.settle_terms.borrowed == D(100)
    assert parse_snapshot(json.dumps(account_to_json(account))).account == account
    coin["liability_tiers"] = [{"max_value": "20000", "mmr": "0.05"}, {"max_amount": "9"}]
    coin["borrowed"] = "-1"
    data["cross"]["discount_tiers"] = [{"max_amount": "1000", "ratio": "1.2"}]
    del data["cross"]["liability_tiers"]
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(json.dumps(data))
    assert sorted(info.value.problems) == [
        "cross.collateral[0].borrowed: must be at least 0 (got -1)",
        "cross.collateral[0].liability_tiers[1].mmr: missing",
        "cross.discount_tiers[0].ratio: input should be less than or equal to 1 (got '1.2')",
    ], info.value.problems
    coin["borrowed"] = "0.5"
    coin["liability_tiers"] = [
        {"max_value": "20000", "mmr": "0.05"},
        {"max_amount": "9", "mmr": "0.1"},
    ]
    del data["cross"]["discount_tiers"]
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(json.dumps(data))
    assert info.value.problems == [
        "cross.collateral[0].liability_tiers: tiers mix max_amount and max_value; use one basis",
        "cross.borrowed: needs cross.liability_tiers (what the loan requires)",
    ]


MARK_PATH = "/api/v5/public/mark-price"


def test_a_coin_s_mark_is_read_once_for_every_account_holding_it() -> None:
    """A multi-currency account holding a coin without a position reads that coin's mark over
    REST at its bootstrap; OKX allows "10 requests per 2 seconds", per "IP + Instrument ID"
    (www.okx.com/docs-v5/en/#public-data-rest-api-get-mark-price): many accounts holding ETH
    bootstrapping together share one read (was: one per account, 64 in 2 s at 80 accounts),
    and a read older than the sharing time is not reused. The clock is the test's: it stands
    still while they bootstrap, so every account asks within the sharing time."""

    async def body() -> None:
        fake = FakeOKX()
        async with started(fake):
            fake.set_mark(ETH, "3000")
            fake.set_discount_tiers("ETH", [("0", "", "0.95")])
            keys = {}
            for i in range(6):
                fake.add_account(f"key{i}", f"secret{i}", "25000")
                fake.set_account_level(f"key{i}", "3")
                fake.set_currency(f"key{i}", "ETH", "1", "3000", follows=ETH)
                keys[f"a{i}"] = {
                    "api_key": Secret(f"key{i}"),
                    "secret": Secret(f"secret{i}"),
                    "password": Secret(FakeOKX.PASSPHRASE),
                }
            accounts = [account_config(name, "okx", fake) for name in keys]
            clock = ManualClock()
            options = FeedOptions(backoff=fast_backoff, clock=clock)
            manager = FeedManager(Config(version=1, accounts=accounts, feeds=FAST), keys, options)

            def reads() -> int:
                return sum(1 for _, p in fake.requests if p == MARK_PATH)

            async with background(manager.run()):
                feeds = list(manager.feeds.values())
                await eventually(
                    lambda: all(f.state.bootstrapped for f in feeds), what="all up", timeout_s=60
                )
                assert all(f.state.marks.get(ETH) == D(3000) for f in feeds)
                assert reads() == 1
                # later (a reconcile past the sharing time) the mark is read again, once
                clock.t += 60
                for feed in feeds:
                    feed.state.marks.pop(ETH, None)
                    await feed.reconcile()
                assert reads() == 2

    run(body(), timeout_s=120)


# a hostile "Get balance" answer (rv fixrev probe): a settle row valued at 1e-999999 USD, a
# row whose eq is 1e-999999 (a price of 1E+999999 per coin), and two prices each in range whose
# quotient (the coin's price in the settle currency) is not
HOSTILE_ROWS = [
    ([{"ccy": "USDT", "eq": "1", "eqUsd": "1e-999999"}, {"ccy": "BTC", "eq": "1", "eqUsd": "6e4"}],
     "USDT eqUsd over its eq"),
    ([{"ccy": "USDT", "eq": "1", "eqUsd": "1e-400000"},
      {"ccy": "BTC", "eq": "1", "eqUsd": "1e400000"}], "BTC eqUsd over the USDT one's"),
    ([{"ccy": "USDT", "eq": "1", "eqUsd": "1"}, {"ccy": "BTC", "eq": "1e-999999", "eqUsd": "1"}],
     "BTC eqUsd over its eq"),
    ([{"ccy": "USDT", "eq": "1e-999999", "eqUsd": "1"}], "USDT eqUsd over its eq"),
]  # fmt: skip


@pytest.mark.parametrize(("rows", "named"), HOSTILE_ROWS)
def test_a_pool_price_out_of_range_is_a_frame_error_naming_the_row(
    rows: list[dict[str, Any]], named: str
) -> None:
    """A USD value over an equity, or over the settle currency's USD price, out of Decimal's
    range is refused naming the row, never decimal.Overflow nor a price of 1E+999999."""
    ratios = {c: CollateralRatio.flat(D("0.98")) for c in ("BTC", "USDT")}
    with pytest.raises(FrameError, match=f"account/balance: the {named}"):
        okx.multi_currency_pool({"details": rows}, ratios, "USDT", {})


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.tuples(HOSTILE_NUMBERS, HOSTILE_NUMBERS), min_size=3, max_size=3),
    present=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_an_okx_pool_s_values_give_coins_or_a_frame_error_never_a_crash(
    values: list[tuple[str | None, str | None]], present: list[bool]
) -> None:
    """Whatever eq and eqUsd the USDT, BTC and ETH rows give, the pool is read or refused with
    a FrameError (the snapshot's error, named), never another exception; every price it keeps
    can be multiplied by an amount of its size."""
    rows = [
        {"ccy": ccy, "eq": eq, "eqUsd": usd}
        for ccy, (eq, usd), kept in zip(("USDT", "BTC", "ETH"), values, present, strict=True)
        if kept
    ]
    ratios = {c: CollateralRatio.flat(D("0.9")) for c in ("USDT", "BTC", "ETH")}
    tiers = okx.borrowing_tiers(DOCS_USDC_BORROWING, "USDC")
    borrowing = {c: tiers for c in ("USDT", "BTC", "ETH") if tiers is not None}
    with contextlib.suppress(FrameError):
        pool = okx.multi_currency_pool({"details": rows}, ratios, "USDT", {}, borrowing)
        for coin in pool.coins:
            assert coin.price * coin.price is not None
