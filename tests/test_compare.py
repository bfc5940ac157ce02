"""The one comparison of alertd's figures with the exchange's own (drift check and snapshot),
on the recorded OKX and Gate answers of test_adapters_more.py (their sources are named there).
"""

from __future__ import annotations

import copy
import dataclasses
import io
from decimal import Decimal

from rich.console import Console

from alertd.engine.margin import compute
from alertd.engine.model import Side
from alertd.exchanges import binance
from alertd.exchanges.gate import GateAdapter
from alertd.exchanges.okx import OKXAdapter
from alertd.exchanges.spec import MarketFilter
from alertd.feeds.adapter import ExchangeAdapter
from alertd.feeds.state import AccountState, ReportedAccount, ReportedPosition
from alertd.snapshot.compare import Comparison, Figure, compare, row
from alertd.snapshot.live import LiveSnapshot
from alertd.views.report import NOT_REPORTED, render_comparison

from .support.aio import run
from .test_account_modes import PAPI_ACCOUNT_EXAMPLE
from .test_adapters_more import (
    AI16Z,
    BTC_INV,
    GATE_ACCOUNT,
    GATE_ACCOUNT_OLD,
    GATE_AI16Z,
    GATE_LTC,
    LTC,
    LTC_G,
    OKX_BTC_INV_ISOLATED,
    OKX_LTC,
    GateStandIn,
    OKXStandIn,
    load,
)

D = Decimal


@dataclasses.dataclass(frozen=True)
class Plain:
    """An exchange whose reported figures are defined as alertd's own."""

    reported_mm_excludes_fee: bool = False
    reported_account_mm_cross_only: bool = False


def compared(adapter: ExchangeAdapter, exchange: object) -> tuple[AccountState, Comparison]:
    state = run(load(adapter, exchange))
    comparison = compare(
        compute(state.to_account()), state.reported_account, state.reported_positions, adapter
    )
    return state, comparison


def by_key(comparison: Comparison) -> dict[str, tuple[Decimal | None, Decimal | None, object]]:
    return {r.key: (r.ours, r.theirs, r.matches) for r in comparison}


def shown(state: AccountState, comparison: Comparison) -> str:
    console = Console(file=io.StringIO(), record=True, width=200)
    render_comparison(LiveSnapshot(state.to_account(), state, comparison), console)
    return console.export_text()


# --- OKX: its maintenance margins leave out the liquidation fee -------------------------------

LTC_TIERS = [{"minSz": "0", "maxSz": "2000", "mmr": "0.0065", "maxLever": "50"}]
# derived: the single-currency balance answer of an account holding only the recorded LTC
# position (cash 100 USDT): OKX's currency mmr is the position's mmr, and its mgnRatio is
# eq / (mmr + notional * 0.05%) = 100.03731 / 0.00141862
OKX_BALANCE_LTC = {
    "data": [
        {"adjEq": "", "mgnRatio": "", "mmr": "", "details": [
            {"ccy": "USDT", "cashBal": "100", "eq": "100.03731", "isoEq": "0",
             "upl": "0.03731", "mmr": "0.00131729", "mgnRatio": "70517.34079598483"}]}
    ]
}  # fmt: skip


def okx_ltc() -> OKXStandIn:
    exchange = OKXStandIn()
    exchange.positions = [OKX_LTC]
    exchange.tiers["LTC-USDT"] = LTC_TIERS
    exchange.balance = copy.deepcopy(OKX_BALANCE_LTC)
    return exchange


def test_okx_cross_account_agrees_once_the_fee_is_left_out() -> None:
    state, comparison = compared(OKXAdapter(), okx_ltc())
    assert comparison.mismatches == ()
    rows = by_key(comparison)
    ltc = f"{LTC} long"
    # OKX's own mmr, and alertd's maintenance margin less notional * fee: exactly equal
    assert rows[f"{ltc} maintenance_margin"] == (D("0.00131729"), D("0.00131729"), True)
    assert rows["maintenance_margin"] == (D("0.00131729"), D("0.00131729"), True)
    assert rows["margin_balance"] == (D("100.03731"), D("100.03731"), True)
    assert rows["margin_ratio"][2] is True
    # OKX leaves liqPx empty for this position: the row says so, alertd's is not shown for it
    assert rows[f"{ltc} liquidation_price"][1:] == (None, None)
    assert all(d < D("1e-12") for d in comparison.drift.values()), comparison.drift
    assert comparison.adjustments and "liquidation fee" in comparison.adjustments[0]

    # the same figures compared without the adapter's convention: the false mismatch that
    # ``alertd snapshot`` used to show (alertd's MM is 7.7% above OKX's mmr)
    naive = compare(
        compute(state.to_account()), state.reported_account, state.reported_positions, Plain()
    )
    assert {r.key for r in naive.mismatches} == {"maintenance_margin", f"{ltc} maintenance_margin"}


def test_okx_inverse_isolated_position_agrees_within_a_tick() -> None:
    adapter = OKXAdapter()
    adapter.market_filter = MarketFilter(settle="BTC")
    exchange = OKXStandIn()
    exchange.positions = [OKX_BTC_INV_ISOLATED]
    exchange.tiers["BTC-USD"] = [{"minSz": "0", "maxSz": "5000", "mmr": "0.004", "maxLever": "100"}]
    exchange.balance = {"data": [{"details": [{"ccy": "BTC", "cashBal": "0.01", "eq": "0.01"}]}]}
    _, comparison = compared(adapter, exchange)
    rows = by_key(comparison)
    inv = f"{BTC_INV} long"
    ours, theirs, matches = rows[f"{inv} liquidation_price"]
    assert theirs == D("69536.6125000014") and matches is True
    assert ours is not None and ours != theirs  # OKX's liqPx is one tick from the exact root
    assert rows[f"{inv} maintenance_margin"][1:] == (D("0.0000043300962256"), True)
    # no account-level figures in this answer: nothing is compared, nothing is made up
    assert rows["maintenance_margin"][1:] == (None, None)
    assert comparison.mismatches == ()


def test_a_real_mismatch_is_reported() -> None:
    exchange = okx_ltc()
    # derived: OKX's answer after a 10 USDT transfer out that alertd has not seen
    detail = exchange.balance["data"][0]["details"][0]
    detail.update(cashBal="90", eq="90.03731", mgnRatio="63468.23673711071")
    adapter = OKXAdapter()
    state = run(load(adapter, exchange))
    state.wallet_balance = D(100)  # alertd's wallet before the transfer
    comparison = compare(
        compute(state.to_account()), state.reported_account, state.reported_positions, adapter
    )
    assert {r.key for r in comparison.mismatches} == {"margin_balance", "margin_ratio"}
    worst = comparison.worst()
    # alertd's balance is 10 USDT (11%) above OKX's, so its ratio is 10% below
    assert worst is not None and worst.figure is Figure.MARGIN_BALANCE
    assert worst.difference is not None and worst.difference > D("0.11")
    assert abs(comparison.drift["margin_ratio"] - D("0.1")) < D("0.0001")
    text = shown(state, comparison)
    assert "90.04 USDT" in text and "100.04 USDT" in text and "NO" in text


def test_alertd_without_a_figure_the_exchange_has_is_a_mismatch() -> None:
    r = row(Figure.LIQUIDATION_PRICE, (LTC, Side.LONG), None, D("60.07"))
    assert (r.matches, r.difference) == (False, None)
    assert row(Figure.MARGIN_RATIO, None, D("Infinity"), D("0.5")).matches is False
    assert row(Figure.MARGIN_RATIO, None, D("0.5"), None).matches is None
    # Bybit cuts accountMMRate to four decimals: a 0.00128 ratio shown as 0.0012 agrees
    assert row(Figure.MARGIN_RATIO, None, D("0.00128"), D("0.0012")).matches is True
    assert row(Figure.MARGIN_RATIO, None, D("0.00138"), D("0.0012")).matches is False


# --- Gate: its account maintenance margin covers cross positions only -------------------------


def test_gate_isolated_positions_agree_and_missing_figures_say_so() -> None:
    exchange = GateStandIn()
    exchange.positions = [GATE_AI16Z, GATE_LTC]
    exchange.account = GATE_ACCOUNT_OLD  # a real classic answer: no cross figures
    state, comparison = compared(GateAdapter(), exchange)
    assert comparison.mismatches == ()
    rows = by_key(comparison)
    assert rows[f"{AI16Z} long maintenance_margin"] == (D("0.063288"), D("0.063288"), True)
    # Gate rounds liquidation prices to the tick (0.0001, 0.01); alertd's are exact roots
    assert rows[f"{AI16Z} long liquidation_price"][1:] == (D("0.1136"), True)
    assert rows[f"{LTC_G} long liquidation_price"][1:] == (D("60.07"), True)
    # Gate's 2024 answer has "0" for the LTC position's maintenance margin: no figure
    assert rows[f"{LTC_G} long maintenance_margin"][1:] == (None, None)
    assert rows["maintenance_margin"] == (D(0), None, None)
    text = shown(state, comparison)
    assert text.count(NOT_REPORTED) == 2
    assert "0.1136" in text and "60.07" in text and "Gate" in text
    assert comparison.adjustments == ()  # nothing adjusted: Gate reports no account MM here


def test_gate_account_mm_leaves_out_isolated_positions() -> None:
    exchange = GateStandIn()
    # derived: the recorded AI16Z position held cross (leverage 0) beside the recorded
    # isolated LTC one; Gate's position MM does not depend on the margin mode, its
    # cross_maintenance_margin is then that one cross position's, and a 9.4 USDT long
    # backed by a 9,700 USDT cross pool has no liquidation price ("0")
    cross = dict(GATE_AI16Z, leverage="0", cross_leverage_limit="50", liq_price="0")
    exchange.positions = [cross, GATE_LTC]
    exchange.account = dict(GATE_ACCOUNT, cross_maintenance_margin="0.063288")
    state, comparison = compared(GateAdapter(), exchange)
    assert state.positions[(AI16Z, Side.LONG)].margin_mode.value == "cross"
    assert comparison.mismatches == ()
    assert by_key(comparison)["maintenance_margin"] == (D("0.063288"), D("0.063288"), True)
    assert "cross positions only" in comparison.adjustments[0]
    naive = compare(
        compute(state.to_account()), state.reported_account, state.reported_positions, Plain()
    )
    assert [r.key for r in naive.mismatches] == ["maintenance_margin"]  # the isolated LTC


def test_the_exchange_column_is_the_exchanges_own_number() -> None:
    state = run(load(OKXAdapter(), okx_ltc()))
    # derived: OKX reports a liquidation price alertd does not reproduce
    state.reported_positions[(LTC, Side.LONG)] = ReportedPosition(D("12.34"), D("0.00131729"))
    state.reported_account = ReportedAccount(D("0.00131729"), None, None)
    comparison = compare(
        compute(state.to_account()), state.reported_account, state.reported_positions, OKXAdapter()
    )
    text = shown(state, comparison)
    line = next(x for x in text.splitlines() if "liq. price" in x)
    assert "12.34" in line and "NO" in line
    balance = next(x for x in text.splitlines() if "Margin balance" in x)
    assert NOT_REPORTED in balance and balance.count("100.04") == 1  # alertd's only


def test_figures_of_another_scope_say_what_each_side_is_and_compare_nothing() -> None:
    """Binance portfolio margin: its account figures are the whole account's in USD (UM, CM,
    margin) and its liquidation price the whole account's, alertd's the UM positions against
    the UM wallet: each row names both sides and has no difference or verdict (no drift)."""
    state = run(load(OKXAdapter(), okx_ltc()))
    state.reported_positions[(LTC, Side.LONG)] = ReportedPosition(D("12.34"), None)
    read = binance.portfolio_account(PAPI_ACCOUNT_EXAMPLE)
    assert read.scope is binance.PORTFOLIO_FIGURES
    comparison = compare(compute(state.to_account()), read, state.reported_positions, OKXAdapter())
    scoped = {r.key: r for r in comparison if r.scope is not None}
    assert sorted(scoped) == [
        f"{LTC} long liquidation_price",
        "maintenance_margin",
        "margin_balance",
        "margin_ratio",
    ]
    assert all(r.difference is None and r.matches is None for r in scoped.values())
    assert comparison.drift == {} and comparison.mismatches == ()
    lines = shown(state, comparison).splitlines()

    def line(start: str) -> str:
        return next(x for x in lines if x.lstrip("│ ").startswith(start))

    mm = line("Maintenance margin: alertd (UM positions and wallet only) vs OKX")
    assert "accountMaintMargin (the whole account: UM, CM, margin)" in mm
    assert f"{D(PAPI_ACCOUNT_EXAMPLE['accountMaintMargin']):,.2f} USD" in mm
    assert "1.05 / uniMMR" in line("Margin ratio: alertd (UM positions and wallet only)")
    assert "uniMMR x accountMaintMargin" in line("Margin balance: alertd")
    assert "liquidationPrice (the whole account's" in line(f"{LTC} long liq. price: alertd")


def test_the_drifts_compute_leaves_out_only_the_bankruptcy_prices() -> None:
    """What the drift's comparison is computed with (``compute(..., crash=False,
    bankruptcy=False)``, ``AccountFeed._measure_drift``): every figure as the full compute's
    but the bankruptcy prices, which ``compare`` does not read (nor the crash distance), on
    every shipped example (cross and isolated, linear and inverse, several pools)."""
    from pathlib import Path

    from alertd.snapshot.format import load_snapshot

    examples = sorted((Path(__file__).parent.parent / "examples").glob("*.json"))
    assert len(examples) >= 7
    bankrupt = 0
    for example in examples:
        account = load_snapshot(example).account
        full = compute(account, crash=False)
        lean = compute(account, crash=False, bankruptcy=False)
        assert all(pm.bankruptcy_price is None for pm in lean.positions), example
        bankrupt += sum(pm.bankruptcy_price is not None for pm in full.positions)
        without = [dataclasses.replace(pm, bankruptcy_price=None) for pm in full.positions]
        assert list(lean.positions) == without, example
        assert dataclasses.replace(lean, positions=(), pools=()) == dataclasses.replace(
            full, positions=(), pools=()
        ), example
    assert bankrupt  # (the examples have some)
