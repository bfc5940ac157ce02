"""Gate's unified account computed by alertd (issue 11): single-currency margin (``margin_mode``
3: the USDT cross pool inside the unified account) and multi-currency margin (1: one USD pool of
every collateral currency at its index price times its tiered discount by USD value, the USDT
shortfall a liability at its loan margin tier's rate). Checked on Gate's published worked
example, its documented answers, the local Gate (which reports Gate's own figures by the
documented rules: tests/fake_exchange/gate.py) and a property: at every liquidation price alertd
computes for a Gate pool with collateral and a USDT shortfall its ratio is exactly 1.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.engine.collateral import Collateral, CollateralRatio, RatioBasis, SettleTerms
from alertd.engine.margin import compute
from alertd.engine.model import Account, MarginMode, Position, Side
from alertd.engine.tiers import TierBasis
from alertd.exchanges import gate
from alertd.feeds.adapter import FrameError
from alertd.feeds.state import AccountMode, Coverage
from alertd.snapshot.format import account_to_json, parse_snapshot

from .fake_exchange.gate import _DEFAULT_MARKETS, LOAN_MARGIN_TIERS, FakeGate, _tier_rows
from .support.aio import run
from .support.feeds import BTC
from .support.poll import eventually
from .support.process import alertd
from .test_account_modes import KEY, long_btc

D = Decimal
M = AccountMode
C = Coverage


# Gate, "Gate.io to Launch Gradient Margin Adjustment Factors Algorithm on March 28" (2024):
# "suppose you hold 200 BTC ... the current BTC index price is 70,000 USD ... Total USD value of
# ... BTC as collateral = (5 million * 1) + (5 million * 0.97) + (4 million * 0.95) = 13.65
# million": the tiers slice the USD value, not the quantity. The rows in "List currency discount
# tiers"' shape.
ANNOUNCED_BTC_TIERS = [
    {
        "currency": "BTC",
        "discount_tiers": [
            {"tier": "1", "discount": "1", "lower_limit": "0", "upper_limit": "5000000"},
            {"tier": "2", "discount": "0.97", "lower_limit": "5000000", "upper_limit": "10000000"},
            {"tier": "3", "discount": "0.95", "lower_limit": "10000000", "upper_limit": "+"},
        ],
    }
]

# Gate API v4 docs, "List currency discount tiers" (GET /unified/currency_discount_tiers): the
# example answer (nested in one more list, as documented), trimmed to USDT and USDC
DOCS_DISCOUNT_ANSWER = [
    [
        {
            "currency": "USDT",
            "discount_tiers": [
                {"tier": "1", "discount": "1", "lower_limit": "0", "leverage": "10",
                 "upper_limit": "+"},
            ],
        },
        {
            "currency": "USDC",
            "discount_tiers": [
                {"tier": "1", "discount": "1", "lower_limit": "0", "leverage": "10",
                 "upper_limit": "10000000"},
                {"tier": "2", "discount": "0.98", "lower_limit": "10000000", "leverage": "10",
                 "upper_limit": "15000000"},
                {"tier": "6", "discount": "0", "lower_limit": "15000000", "leverage": "10",
                 "upper_limit": "+"},
            ],
        },
    ]
]  # fmt: skip

# ccxt gate.py, fetch_balance's "unified" answer (Gate's documented example of GET
# /unified/accounts), the balances as recorded
CCXT_UNIFIED = {
    "user_id": 10001,
    "locked": False,
    "balances": {
        "ETH": {"available": "0", "freeze": "0", "borrowed": "0.075393666654",
                "negative_liab": "0", "futures_pos_liab": "0", "equity": "1016.1",
                "total_freeze": "0", "total_liab": "0"},
        "POINT": {"available": "9999999999.017023138734", "freeze": "0", "borrowed": "0",
                  "negative_liab": "0", "futures_pos_liab": "0", "equity": "12016.1",
                  "total_freeze": "0", "total_liab": "0"},
        "USDT": {"available": "0.00000062023", "freeze": "0", "borrowed": "0",
                 "negative_liab": "0", "futures_pos_liab": "0", "equity": "16.1",
                 "total_freeze": "0", "total_liab": "0"},
    },
    "total": "230.94621713", "borrowed": "161.66395521",
    "total_initial_margin": "1025.0524665088", "total_margin_balance": "3382495.944473949183",
    "total_maintenance_margin": "205.01049330176",
    "total_initial_margin_rate": "3299.827135672679",
    "total_maintenance_margin_rate": "16499.135678363399",
    "total_available_margin": "3381470.892007440383",
    "unified_account_total": "3381470.892007440383", "unified_account_total_liab": "0",
    "unified_account_total_equity": "100016.1", "leverage": "2",
}  # fmt: skip
MARKETS = {BTC: {}, "ETH/USDT:USDT": {}}

# Gate API v4 docs, "Query unified account tiered loan margin" (GET /unified/loan_margin_tiers):
# the example answer, one USDT tier from 200,000 to 400,000
DOCS_LOAN_ANSWER = [
    {
        "currency": "USDT",
        "margin_tiers": [
            {"tier": "1", "margin_rate": "0.02", "lower_limit": "200000",
             "upper_limit": "400000", "leverage": "3"},
        ],
    }
]  # fmt: skip


def gate_loan_tiers() -> list[Any]:
    """The loan margin tiers the local Gate serves."""
    return FakeGate()._loan_margin_tiers(None, {})  # type: ignore[arg-type]


# gate.com, "Tiered Margin Calculation" (cross margin, the unified account's borrowing:
# https://www.gate.com/trade/introduction/margin-trading/tiered-margin/cross-margin): "Suppose
# that the maintenance margin level for a BTC loan at the tier of 0-2,000,000 USD is 2%, and 4%
# in the tier of 2,000,000 USD-5,000,000 USD. You have an outstanding loan amount of 30 BTC and
# the current BTC price is 100,000 USD. In this case, the maintenance margin required =
# 2,000,000 * 2% + 1,000,000 * 4% = 80,000 USD." As a loan margin tiers answer (the page's max
# leverage per tier is the answer's ``leverage``; the values here are illustrative)
GATE_SLICED_EXAMPLE = [
    {
        "currency": "BTC",
        "margin_tiers": [
            {"tier": "1", "margin_rate": "0.02", "lower_limit": "0",
             "upper_limit": "2000000", "leverage": "5"},
            {"tier": "2", "margin_rate": "0.04", "lower_limit": "2000000",
             "upper_limit": "5000000", "leverage": "3"},
        ],
    }
]  # fmt: skip


def test_loan_margin_tiers_slice_the_debt_s_usd_value_as_gate_s_worked_example() -> None:
    btc = gate.loan_margin_tiers(GATE_SLICED_EXAMPLE)["BTC"]
    assert btc.basis is TierBasis.NOTIONAL and btc.caps == (D(2_000_000), D(5_000_000))
    # 30 BTC owed at 100,000: the first 2,000,000 USD at 2%, the next 1,000,000 at 4%
    owed = Collateral("BTC", D(-30), D(100_000), CollateralRatio.flat(D(1)), liability_tiers=btc)
    assert owed.requirement == 2_000_000 * D("0.02") + 1_000_000 * D("0.04") == D(80_000)
    assert owed.liability_rate == D(80_000) / D(3_000_000)  # the slices' blend, shown in calc
    # the same table as the settle currency's (USD at par): 3,000,000 owed
    assert SettleTerms(btc).requirement(D(-3_000_000)) == D(80_000)
    # below the first cap the two readings agree: 1,500,000 owed at 2%
    assert owed.requirement_at(D(50_000)) == D(30_000)


def test_loan_margin_tiers_are_slices_by_the_debt_s_usd_value() -> None:
    tables = gate.loan_margin_tiers(gate_loan_tiers())
    assert sorted(tables) == sorted(LOAN_MARGIN_TIERS)
    usdt = tables["USDT"]
    assert usdt.caps == (D(200_000), D(400_000)) and usdt.tiers[-1].cap is None
    assert [t.mmr for t in usdt.tiers] == [D("0.015"), D("0.02"), D("0.03")]
    assert usdt.continuous and usdt.tiers[0].max_leverage == D(3)
    # each slice at its tier's rate: 250,000 owed requires 200,000 x 1.5% + 50,000 x 2%
    assert SettleTerms(usdt).requirement(D(-250_000)) == D(4000)
    assert SettleTerms(usdt).requirement(D(-200_000)) == D(3000)
    assert SettleTerms(usdt).requirement(D(-500_000)) == D(3000 + 4000 + 3000)
    assert SettleTerms(usdt).requirement(D(10)) == 0  # nothing owed
    # the local Gate computes it slice by slice, on its own
    assert FakeGate._loan_margin("USDT", D(250_000)) == D(4000)
    assert FakeGate._loan_margin("USDT", D(500_000)) == D(10_000)


def test_the_documented_loan_answer_leaves_a_debt_below_its_first_tier_without_a_rate() -> None:
    with pytest.raises(FrameError) as raised:
        gate.loan_margin_tiers(DOCS_LOAN_ANSWER)
    assert str(raised.value) == (
        "loan_margin_tiers USDT tier 1 lower_limit: 200000 leaves a gap (the tiers must start "
        "at 0 and join; expected 0)"
    )


def _loan_row(*tiers: tuple[str, str, str]) -> list[Any]:
    return [{"currency": "BTC", "margin_tiers": [
        {"margin_rate": rate, "lower_limit": low, "upper_limit": high} for low, high, rate in tiers
    ]}]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_loan_row(("0", "", "1.5")), "loan_margin_tiers BTC tier 1 margin_rate: must be"),
        (_loan_row(("0", "", "x")), "BTC margin_rate: not a number: 'x'"),
        (_loan_row(("0", "100", "0.05"), ("100", "100", "0.1"), ("100", "+", "0.2")),
         "loan_margin_tiers BTC tier 2 upper_limit: tiers out of order"),
        (_loan_row(("0", "100", "0.05"), ("150", "+", "0.1")),
         "loan_margin_tiers BTC tier 2 lower_limit: 150 leaves a gap"),
        # an open tier before a capped one, or two open tiers: the tiers are checked before
        # the slices' deductions are derived from them (a bare AssertionError before)
        (_loan_row(("0", "", "0.05"), ("0", "100", "0.07")),
         "loan_margin_tiers BTC tier 1 upper_limit: only the last tier may have no cap"),
        (_loan_row(("0", "+", "0.05"), ("0", "+", "0.07")),
         "loan_margin_tiers BTC tier 1 upper_limit: only the last tier may have no cap"),
        (_loan_row(("-", "+", "0.1")), "BTC lower_limit: not a number: '-'"),
        ([{"currency": "BTC", "margin_tiers": []}], "loan_margin_tiers: no tiers for BTC"),
    ],
)  # fmt: skip
def test_a_bad_loan_margin_tier_names_the_field(answer: Any, expected: str) -> None:
    with pytest.raises(FrameError) as raised:
        gate.loan_margin_tiers(answer)
    assert str(raised.value).startswith(expected), str(raised.value)


def test_discount_tiers_slice_the_usd_value_as_gate_s_worked_example() -> None:
    ratio = gate.discount_ratios(ANNOUNCED_BTC_TIERS)["BTC"]
    assert ratio.basis is RatioBasis.VALUE
    btc = Collateral("BTC", D(200), D(70000), ratio, BTC)
    assert btc.value == D("13650000")


def test_the_documented_discount_answer_is_read_with_its_open_last_tier() -> None:
    ratios = gate.discount_ratios(DOCS_DISCOUNT_ANSWER)
    assert ratios["USDT"].is_flat and ratios["USDT"].counted(D("1e9")) == D("1e9")
    usdc = ratios["USDC"]
    assert [t.cap for t in usdc.tiers] == [D(10_000_000), D(15_000_000), None]
    # 20M USDC: 10M x 1 + 5M x 0.98 + 5M x 0 (the docs' last tier)
    assert usdc.counted(D(20_000_000)) == D(14_900_000)


def test_a_bad_discount_tier_names_the_field() -> None:
    rows = [{"currency": "BTC", "discount_tiers": [{"discount": "1.2", "lower_limit": "0",
                                                    "upper_limit": "+"}]}]  # fmt: skip
    with pytest.raises(FrameError, match=r"^currency_discount_tiers BTC tier 1 discount: must be"):
        gate.discount_ratios(rows)


def test_the_recorded_unified_answer_names_what_alertd_does_not_reproduce() -> None:
    ratios = gate.discount_ratios([{"currency": c, "discount_tiers": [{"discount": "1",
              "lower_limit": "0", "upper_limit": "+"}]} for c in ("USDT", "ETH")])  # fmt: skip
    loans = gate.loan_margin_tiers(gate_loan_tiers())
    pool = gate.multi_currency_pool(CCXT_UNIFIED, ratios, {"ETH": D(3000)}, "USDT", MARKETS, loans)
    # POINT has no tiers and no perpetual; ETH (1016.1 held net of 0.0754 borrowed) is a
    # coin whose loan carries the rate of its tier by the debt's USD value
    assert pool.not_reproduced == ("POINT held with no discount tiers to value it",)
    (eth,) = pool.coins
    loan = D("0.075393666654")
    assert (eth.amount, eth.borrowed, eth.owed) == (D("1016.1"), loan, loan)
    assert eth.liability_by_value and eth.requirement == loan * 3000 * D("0.05")
    assert pool.settle_equity == D("16.1")
    assert pool.reported.margin_balance == D("3382495.944473949183")
    assert pool.reported.margin_ratio == D("205.01049330176") / D("3382495.944473949183")


def test_the_multi_currency_pool_values_each_coin_at_its_index_and_discount() -> None:
    info = {
        "balances": {
            "USDT": {"equity": "1000", "borrowed": "0"},
            "BTC": {"equity": "0.05", "borrowed": "0", "enabled_collateral": True},
            "ETH": {"equity": "2", "borrowed": "0", "enabled_collateral": False},
        },
        "total_margin_balance": "3880",
        "total_maintenance_margin": "38.8",
    }
    ratios = gate.discount_ratios(gate_docs_tiers())
    pool = gate.multi_currency_pool(info, ratios, {"BTC": D(60000)}, "USDT", MARKETS)
    (btc,) = pool.coins  # ETH is not enabled as collateral: it counts nothing
    assert (btc.asset, btc.amount, btc.price, btc.price_symbol) == ("BTC", D("0.05"), D(60000), BTC)
    # 3,000 USD of BTC: 1,000 x 0.98 + 2,000 x 0.95 (the docs' tiers by USD value)
    assert btc.value == D(2880)
    assert pool.reported.margin_ratio == D("0.01")
    # the USDT runs out before the account is liquidated: without its loan margin tiers the
    # shortfall's borrowing margin is unknown
    (reason,) = pool.not_reproduced
    assert reason.startswith("BTC as collateral with no USDT loan margin tiers (the account")
    loans = gate.loan_margin_tiers(gate_loan_tiers())
    pool = gate.multi_currency_pool(info, ratios, {"BTC": D(60000)}, "USDT", MARKETS, loans)
    assert pool.not_reproduced == () and pool.settle_terms == SettleTerms(loans["USDT"])
    # a shortfall already (USDT equity below zero) is computed too, and so is a USDT loan:
    # what is owed is the loan or the shortfall, the larger
    info["balances"]["USDT"] = {"equity": "-20", "borrowed": "0"}
    pool = gate.multi_currency_pool(info, ratios, {"BTC": D(60000)}, "USDT", MARKETS, loans)
    assert pool.not_reproduced == () and pool.settle_equity == D(-20)
    info["balances"]["USDT"] = {"equity": "100", "borrowed": "50"}
    pool = gate.multi_currency_pool(info, ratios, {"BTC": D(60000)}, "USDT", MARKETS, loans)
    assert pool.not_reproduced == () and pool.settle_terms == SettleTerms(loans["USDT"], D(50))
    assert pool.settle_terms.requirement(D(100)) == D(50) * D("0.015")
    assert pool.settle_terms.requirement(D(-80)) == D(80) * D("0.015")
    # without USDT's loan tiers the loan's requirement is unknown: Gate's ratio stands in
    pool = gate.multi_currency_pool(info, ratios, {"BTC": D(60000)}, "USDT", MARKETS, {})
    assert pool.not_reproduced[0] == "USDT borrowed with no loan margin tiers"


def gate_liabilities(balance: Decimal, borrowed: Decimal, pnl: Decimal) -> tuple[Decimal, ...]:
    """A coin's equity and liabilities by Gate's own words, with no Simple Earn funds as
    margin. Help centre, "Multi-Currency Margin Mode - About Margin and Terminology" (unified
    account, risk control mechanism, article 33018), "I. At the Dimension of Coin": "Coin
    Balance = Spot available of currency"; "Coin Liabilities = Borrowed + ABS(Min(Spot
    Available + Futures Unrealized PnL + Options Value, 0))"; "Coin Equity = Coin Balance -
    Borrowed + Coin Futures Unrealized PnL + Options Value" (no options here). And Gate's API
    spec for the unified account's predecessor (gateio/gateapi-go, model_cross_margin_balance.go
    from v6.45.0 to v6.97.0): "Total liabilities. Formula: Max[Abs[Min[equity - total_freeze,
    0], borrowed]] - futures_pos_liab" (nothing frozen, no futures position loan here)."""
    equity = balance - borrowed + pnl
    liabilities = borrowed + abs(min(balance + pnl, 0))
    total_liab = max(abs(min(equity, 0)), borrowed)
    return equity, liabilities, total_liab


AMOUNTS = st.decimals(min_value=-(10**6), max_value=10**6, places=4)


@settings(max_examples=300, deadline=None)
@given(balance=AMOUNTS, borrowed=AMOUNTS.map(abs), pnl=AMOUNTS)
def test_what_alertd_owes_is_gate_s_coin_liabilities(
    balance: Decimal, borrowed: Decimal, pnl: Decimal
) -> None:
    equity, liabilities, total_liab = gate_liabilities(balance, borrowed, pnl)
    assert liabilities == total_liab  # Gate's two formulas agree
    # alertd reads ``equity`` (net of the loan) and ``borrowed``: a coin and the settle
    # currency owe the same as Gate's liabilities
    coin = Collateral("BTC", equity, D(60000), CollateralRatio.flat(D(1)), BTC, borrowed=borrowed)
    assert coin.owed == liabilities
    usdt = gate.loan_margin_tiers(gate_loan_tiers())["USDT"]
    assert SettleTerms(usdt, borrowed).owed(equity) == liabilities


@pytest.mark.parametrize(
    ("balance", "borrowed", "pnl", "owed"),
    [
        ("0", "1", "0", "1"),  # 1 BTC borrowed and sold: the loan
        ("100", "0", "-150", "50"),  # USDT below zero by the futures loss: the shortfall
        ("200", "100", "-150", "100"),  # 100 USDT borrowed, 50 of it lost: still the loan
        ("200", "100", "-250", "150"),  # the loan and 50 below zero: the negative equity
    ],
)  # fmt: skip
def test_gate_s_liability_examples(balance: str, borrowed: str, pnl: str, owed: str) -> None:
    equity, liabilities, _ = gate_liabilities(D(balance), D(borrowed), D(pnl))
    assert liabilities == D(owed)
    assert max(D(borrowed), -equity, D(0)) == D(owed)  # max(borrowed, -equity)


def test_simple_earn_funds_as_usdt_margin_leave_gate_s_ratio() -> None:
    """With Simple Earn funds as margin the coin's balance holds them ("Enabled: Coin Balance
    = Spot available of currency + Simple Earn subscriptions", article 33018) but its
    liabilities count "Spot Available" alone: 1,000 USDT in Simple Earn and a futures loss of
    100 owe 100 USDT at an equity of 900, where max(borrowed, -equity) owes nothing. alertd
    does not model that line: Gate's ratio stands in, the reason named."""
    loans = gate.loan_margin_tiers(gate_loan_tiers())
    ratios = gate.discount_ratios(gate_docs_tiers())
    info: dict[str, Any] = {
        "use_funding": True,
        "balances": {"USDT": {"equity": "900", "borrowed": "0", "funding": "1000"}},
        "total_margin_balance": "900",
        "total_maintenance_margin": "20",
    }
    pool = gate.multi_currency_pool(info, ratios, {}, "USDT", MARKETS, loans)
    (reason,) = pool.not_reproduced
    assert reason.startswith("USDT Simple Earn funds as margin (Gate counts a USDT liability")
    info["use_funding"] = False  # the switch off: the funds are not margin
    assert gate.multi_currency_pool(info, ratios, {}, "USDT", MARKETS, loans).not_reproduced == ()
    info["use_funding"] = True
    info["balances"]["USDT"]["funding"] = "0"
    assert gate.multi_currency_pool(info, ratios, {}, "USDT", MARKETS, loans).not_reproduced == ()
    info["balances"]["USDT"]["funding"] = "lots"
    with pytest.raises(FrameError, match=r"balances\.USDT\.funding"):
        gate.multi_currency_pool(info, ratios, {}, "USDT", MARKETS, loans)


def gate_docs_tiers() -> list[Any]:
    """The docs' example discount answer as the local Gate serves it."""
    return FakeGate()._discount_tiers(None, {})  # type: ignore[arg-type]


# --- the feed against the local Gate ------------------------------------------------------------


async def gate_liquidations(fake: FakeGate) -> dict[str, Decimal]:
    rows = fake._positions(fake._account(KEY), {})
    return {f"{r['contract'].split('_')[0]}/USDT:USDT": D(r["liq_price"]) for r in rows}


def test_multi_currency_is_computed_and_reproduces_gate_s_figures() -> None:
    async def body() -> None:
        fake = FakeGate()
        async with long_btc(fake, "gate", "1000", "1000") as (feed, state):
            fake.set_coin(KEY, "ETH", "2", collateral=False)  # not collateral: counts nothing
            fake.set_margin_mode(KEY, 1)
            await feed.reconcile()  # the switch, picked up without a restart
            assert state.mode.mode is M.MULTI_ASSETS and state.mode.coverage is C.COMPUTED
            assert state.computable and state.collateral == ()
            served = fake._unified_account(fake._account(KEY))
            theirs = D(served["total_maintenance_margin"]) / D(served["total_margin_balance"])
            # 0.1 BTC at 60,000: MM 6,000 x (0.4% + 0.075%) = 28.5 over the 1,000 USDT
            assert theirs == D("28.5") / D(1000)
            assert feed.ratios == (theirs, theirs)
            (position,) = compute(state.to_account()).positions
            liq = (await gate_liquidations(fake))[BTC]
            assert position.liquidation_price is not None
            assert abs(position.liquidation_price - liq) <= D("0.1")  # Gate's tick

            # BTC collateral: computed, the USDT shortfall near the liquidation price at its
            # loan margin tier
            fake.set_coin(KEY, "BTC", "0.05")
            await feed.reconcile()
            assert state.mode.coverage is C.COMPUTED and state.computable
            assert [c.asset for c in state.collateral] == ["BTC"]
            assert state.settle_terms is not None and state.settle_terms.tiers is not None
            assert state.settle_terms.tiers.tiers[0].mmr == D("0.015")
            served = fake._unified_account(fake._account(KEY))
            # 0.05 BTC = 3,000 USD: 1,000 x 0.98 + 2,000 x 0.95 (the docs' tiers by USD value)
            assert D(served["total_margin_balance"]) == D(1000 + 2880)
            theirs = D("28.5") / D(3880)
            assert state.reported_account.margin_ratio == theirs
            assert feed.ratios == (theirs, theirs)
            (position,) = compute(state.to_account()).positions
            # USDT 0.1 m - 5,000, BTC 0.0475 m + 30; MM 0.000475 m + 1.5% of the shortfall
            # 5,000 - 0.1 m: 0.148525 m = 5,045 at 33,967.35 (without the shortfall's margin
            # 33,803.8)
            assert position.liquidation_price == D(5045) / D("0.148525")
            liq = (await gate_liquidations(fake))[BTC]
            assert position.liquidation_price <= liq < position.liquidation_price + D("0.1")
            # a USDC balance with no USDT perpetual to price it
            fake.set_coin(KEY, "BTC", "0")
            fake.set_coin(KEY, "USDC", "100", price="1")
            await feed.reconcile()
            assert state.mode.limits.startswith("USDC held with no USDT perpetual (USDC_USDT)")
            # a borrowed currency's borrowing maintenance margin, tiered by the debt's USD value
            fake.set_coin(KEY, "USDC", "0", borrowed="50", price="1")
            await feed.reconcile()
            assert state.mode.coverage is C.EXCHANGE_RATIO and not state.computable
            assert state.mode.limits.startswith("a USDC liability with no loan margin tiers")
            assert state.settle_terms is None
            fake.set_coin(KEY, "USDC", "0", price="1")
            await feed.reconcile()
            assert state.computable

    run(body())


def test_the_local_gate_s_simple_earn_margin_shows_gate_s_own_ratio() -> None:
    """500 USDT in Simple Earn as margin beside a 1,000 USDT wallet and a 0.1 BTC long: the
    local Gate counts the funds in USDT's equity and its liability on the spot balance alone
    (article 33018). Once the long's loss passes the wallet the USDT owed carries a borrowing
    margin although the equity is still positive, which alertd's ``max(borrowed, -equity)``
    would leave out: the feed shows Gate's ratio, naming why, and is computed again once the
    funds leave the margin."""

    async def body() -> None:
        fake = FakeGate()
        async with long_btc(fake, "gate", "1000", "1000") as (feed, state):
            fake.set_margin_mode(KEY, 1)
            await feed.reconcile()
            assert state.mode.coverage is C.COMPUTED
            fake.set_usdt_earn(KEY, "500")
            await feed.reconcile()
            assert state.mode.coverage is C.EXCHANGE_RATIO and not state.computable
            assert state.mode.limits.startswith("USDT Simple Earn funds as margin")
            account = fake._account(KEY)
            served = fake._unified_account(account)
            assert served["use_funding"] is True and served["balances"]["USDT"]["funding"] == "500"
            theirs = D(served["total_maintenance_margin"]) / D(served["total_margin_balance"])
            assert state.reported_account.margin_ratio == theirs
            # at 48,000 the long has lost 1,200: the spot balance is 200 below zero, the
            # equity 300 above it; Gate's MM holds 200 x 1.5% that alertd's owed would not
            contract = BTC.split("/")[0] + "_USDT"
            _, mm, equity = fake._multi_currency(account, {contract: D(48000)})
            positions_mm = fake._markets[contract].mm(D("0.1") * 48000, account.taker_fee)[0]
            assert equity == D(300) and mm - positions_mm == D(200) * D("0.015")
            usdt = gate.loan_margin_tiers(gate_loan_tiers())["USDT"]
            assert SettleTerms(usdt).requirement(equity) == 0
            fake.set_usdt_earn(KEY, "0")
            await feed.reconcile()
            assert state.mode.coverage is C.COMPUTED and state.computable

    run(body())


def test_single_currency_and_portfolio_follow_the_account() -> None:
    async def body() -> None:
        fake = FakeGate()
        async with long_btc(fake, "gate", "1000", "1000") as (feed, state):
            fake.set_coin(KEY, "BTC", "0.05")  # outside the USDT pool in single-currency mode
            fake.set_margin_mode(KEY, 3)
            await feed.reconcile()
            assert state.mode.mode is M.UNIFIED_SINGLE_CURRENCY and state.computable
            assert state.collateral == ()
            usdt = fake._unified_account(fake._account(KEY))["balances"]["USDT"]
            theirs = D(usdt["mm"]) / D(usdt["margin_balance"])
            assert theirs == D("28.5") / D(1000)
            assert feed.ratios == (theirs, theirs)
            (position,) = compute(state.to_account()).positions
            liq = position.liquidation_price
            assert liq is not None
            # Gate rounds a long's up to its tick (0.1)
            assert liq <= (await gate_liquidations(fake))[BTC] < liq + D("0.1")

            fake.set_margin_mode(KEY, 2)
            await feed.reconcile()
            assert state.mode.mode is M.PORTFOLIO and state.mode.coverage is C.EXCHANGE_RATIO
            assert state.reported_account.margin_ratio is not None

            fake.set_margin_mode(KEY, 0, tiered_mm=False)
            await feed.reconcile()
            assert state.mode.mode is M.LEGACY and state.mode.coverage is C.NOT_COMPUTED

    run(body())


# --- the property, with Gate's tiers ------------------------------------------------------------

_BTC_ROW = _DEFAULT_MARKETS[0]
BTC_TIERS = gate.risk_limit_tiers_to_table(_tier_rows("BTC_USDT", *_BTC_ROW[4:]))
DOCS_RATIOS = gate.discount_ratios(gate_docs_tiers())
LOANS = gate.loan_margin_tiers(gate_loan_tiers())
USDT_LOANS = LOANS["USDT"]


@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from(Side),
    quantity=st.integers(1, 400).map(lambda n: D(n) / 10),
    mark=st.integers(20_000, 120_000).map(D),
    btc=st.integers(0, 300).map(lambda n: D(n) / 100),
    eth=st.integers(0, 50).map(D),
    wallet_pct=st.integers(-50, 100).map(D),
    basis=st.integers(-30, 30).map(lambda n: 1 + D(n) / 10000),
)
def test_the_pool_ratio_is_one_at_each_liquidation_price_with_gate_s_collateral(
    side: Side, quantity: D, mark: D, btc: D, eth: D, wallet_pct: D, basis: D
) -> None:
    """A BTC perpetual on BTC (at an index a basis off the mark) and ETH collateral, Gate's
    risk limit tiers, the docs' discount tiers by USD value and the USDT shortfall at its loan
    margin tiers (the wallet may start below zero): at the liquidation price alertd computes
    the pool's ratio is exactly 1."""
    position = Position(
        symbol=BTC,
        side=side,
        contracts=quantity,
        contract_size=D(1),
        inverse=False,
        entry_price=mark,
        mark_price=mark,
        margin_mode=MarginMode.CROSS,
        tiers=BTC_TIERS,
        fee_rate=gate.PROFILE.default_fee_rate,
    )
    coins = (
        Collateral("BTC", btc, mark * basis, DOCS_RATIOS["BTC"], BTC, price_over_mark=basis),
        Collateral("ETH", eth, D(3000), DOCS_RATIOS["ETH"], "ETH/USDT:USDT"),
    )
    wallet = quantity * mark * wallet_pct / 1000
    account = Account(
        gate.PROFILE, "p", "USDT", wallet, (position,), coins, settle_terms=SettleTerms(USDT_LOANS)
    )
    (pm,) = compute(account).positions
    if pm.liquidation_price is None:
        return
    # Gate's loan tiers are slices (the requirement continuous in the debt: no step for the
    # ratio to jump across 1 at a cap), so the ratio is 1 there, whichever tier the USDT owed
    # is in at the liquidation price
    ratio = compute(account.with_marks({BTC: pm.liquidation_price})).pool.margin_ratio
    assert abs(ratio - 1) < D("1e-18"), (pm.liquidation_price, ratio)


@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from(Side),
    quantity=st.integers(1, 400).map(lambda n: D(n) / 10),
    mark=st.integers(20_000, 120_000).map(D),
    btc_owed=st.integers(0, 4000).map(lambda n: D(n) / 100),
    wallet_pct=st.integers(-50, 2000).map(D),
    basis=st.integers(-30, 30).map(lambda n: 1 + D(n) / 10000),
)
def test_the_pool_ratio_is_one_at_each_liquidation_price_with_a_borrowed_btc_debt(
    side: Side, quantity: D, mark: D, btc_owed: D, wallet_pct: D, basis: D
) -> None:
    """BTC borrowed (up to 40 BTC: across the local Gate's BTC loan caps of 500,000, 1,000,000
    and 2,000,000 USD as the mark moves) beside the USDT shortfall, both at their sliced loan
    margin tiers: the pool's ratio is exactly 1 at alertd's liquidation price."""
    position = Position(
        symbol=BTC, side=side, contracts=quantity, contract_size=D(1), inverse=False,
        entry_price=mark, mark_price=mark, margin_mode=MarginMode.CROSS, tiers=BTC_TIERS,
        fee_rate=gate.PROFILE.default_fee_rate,
    )  # fmt: skip
    btc_loans = LOANS["BTC"] if btc_owed else None
    owed = Collateral(
        "BTC", -btc_owed, mark * basis, CollateralRatio.flat(D(0)), BTC,
        price_over_mark=basis, liability_tiers=btc_loans,
    )  # fmt: skip
    wallet = quantity * mark * wallet_pct / 1000 + btc_owed * mark
    terms = SettleTerms(USDT_LOANS)
    account = Account(gate.PROFILE, "p", "USDT", wallet, (position,), (owed,), settle_terms=terms)
    (pm,) = compute(account).positions
    if pm.liquidation_price is None:
        return
    ratio = compute(account.with_marks({BTC: pm.liquidation_price})).pool.margin_ratio
    assert abs(ratio - 1) < D("1e-18"), (pm.liquidation_price, ratio)


@pytest.mark.parametrize(
    ("balances", "expected"),
    [
        ({"BTC": {"equity": "lots"}}, "balances.BTC.equity: not a number: 'lots'"),
        ({"USDT": {"available": "1"}}, "balances.USDT.equity: missing"),
        ({"BTC": {"equity": "1", "borrowed": "x"}}, "balances.BTC.borrowed: not a number: 'x'"),
        (["USDT"], "unified accounts: balances not an object"),
    ],
)
def test_a_malformed_unified_answer_names_the_field(balances: Any, expected: str) -> None:
    with pytest.raises(FrameError) as raised:
        gate.multi_currency_pool({"balances": balances}, {}, {}, "USDT", MARKETS)
    assert str(raised.value) == expected


def test_a_single_currency_pool_without_its_margin_balance_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match=r"^balances\.USDT\.margin_balance: missing$"):
        gate.single_currency_pool({"balances": {"USDT": {"mm": "1"}}}, "USDT")


def test_a_move_between_the_unified_and_the_positions_reads_leaves_the_wallet_right() -> None:
    """The unified account's answer (the USDT equity, with the cross PnL in it) is slow and
    BTC falls 16% before the positions are read: the PnL of the later answer is not the one
    in the equity. alertd reads the pool again between two positions answers that agree, so
    its wallet stays Gate's 1,000 USDT (taken apart, 1,000 + 955 = 1,955: a 53% ratio would
    read 2.4% and resolve its own warning)."""

    async def body() -> None:
        fake = FakeGate()
        async with long_btc(fake, "gate", "1000", "1000") as (feed, state):
            fake.set_margin_mode(KEY, 3)
            await feed.reconcile()
            assert state.wallet_balance == D(1000)
            fake.hold_rest("/unified/accounts")
            reconcile = asyncio.create_task(feed.reconcile())
            await eventually(lambda: fake.held_answers() == 1, what="the slow answer")
            fake.set_mark(BTC, "50450")
            fake.release_rest()
            await reconcile
            assert state.wallet_balance == D(1000)

    run(body())


def test_a_calm_reconcile_reads_the_unified_account_once() -> None:
    """One read of the pool per snapshot (issue 11): the mode from the futures account, the
    positions, the pool with the balance and one positions answer after it that agrees
    (before: the pool read with the mode and again between the positions answers, 7 requests
    a reconcile where 6 do, 9 where 7 do with a BTC collateral priced at its index)."""

    async def body() -> None:
        fake = FakeGate()
        async with long_btc(fake, "gate", "1000", "1000") as (feed, state):
            for mode, btc, tickers in ((3, "0", 0), (1, "0", 0), (1, "0.05", 1)):
                fake.set_margin_mode(KEY, mode)
                fake.set_coin(KEY, "BTC", btc)
                await feed.reconcile()
                fake.requests.clear()
                await feed.reconcile()
                paths = [path.removeprefix("/api/v4") for _, path in fake.requests]
                assert paths.count("/unified/accounts") == 1
                assert paths.count("/futures/usdt/positions") == 2
                assert paths.count("/futures/usdt/tickers") == tickers  # BTC's index price
                assert paths.count("/futures/usdt/accounts") == 1
                assert state.mode.coverage is C.COMPUTED and state.wallet_balance == D(1000)

    run(body())


def _sliced_loan_snapshot() -> dict[str, Any]:
    """A Gate multi-currency account owing BTC and USDT at the local Gate's sliced loan tiers,
    as ``alertd snapshot`` writes it (each tier past the first with its deduction)."""
    loans = gate.loan_margin_tiers(gate_loan_tiers())
    mark = D(60000)
    short = Position(
        symbol=BTC, side=Side.SHORT, contracts=D("0.1"), contract_size=D(1), inverse=False,
        entry_price=mark, mark_price=mark, margin_mode=MarginMode.CROSS, tiers=BTC_TIERS,
        fee_rate=gate.PROFILE.default_fee_rate,
    )  # fmt: skip
    btc = Collateral(
        "BTC", D(-8), mark, CollateralRatio.flat(D(0)), BTC, liability_tiers=loans["BTC"]
    )
    terms = SettleTerms(loans["USDT"])
    account = Account(gate.PROFILE, "p", "USDT", D(540000), (short,), (btc,), settle_terms=terms)
    data: dict[str, Any] = json.loads(json.dumps(account_to_json(account)))
    return data


@pytest.mark.parametrize(
    ("tier", "deduction", "expected"),
    [
        # nothing lies below the first tier to take off: its requirement went to -975,971.5
        (0, "1000000", "cross.collateral[0].liability_tiers[0].deduction: must be 0"),
        # a deduction above the tier's requirement at its floor (500,000 x 7%)
        (1, "1e15", "cross.collateral[0].liability_tiers[1].deduction: 1E+15 makes"),
    ],
)
def test_a_liability_deduction_that_makes_the_requirement_negative_is_refused(
    tmp_path: Path, tier: int, deduction: str, expected: str
) -> None:
    data = _sliced_loan_snapshot()
    data["cross"]["collateral"][0]["liability_tiers"][tier]["deduction"] = deduction
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(data))
    result = alertd("calc", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert expected in result.stderr, result.stderr


def test_a_liability_deduction_off_the_bracket_recursion_is_a_warning() -> None:
    data = _sliced_loan_snapshot()
    assert parse_snapshot(json.dumps(data)).warnings == ()  # Gate's slices, as written
    data["cross"]["liability_tiers"][1]["deduction"] = "500"  # the recursion gives 1,000
    warnings = parse_snapshot(json.dumps(data)).warnings
    # the tier named, and the next one, whose deduction the recursion gives from it
    assert [w.split(",")[0] for w in warnings] == [
        "cross.liability_tiers: tier 2 deduction is 500",
        "cross.liability_tiers: tier 3 deduction is 5000",
    ], warnings
