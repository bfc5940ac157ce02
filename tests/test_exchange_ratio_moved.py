"""The exchange's own ratio, where it stands in for alertd's, moves with the marks between two
REST reads (alertd/engine/reported.py): exact where the requirement is proportional to the
notional (one tier), as read where it cannot be moved."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.engine.margin import compute
from alertd.engine.model import MarginMode, Side
from alertd.engine.reported import (
    CoinLeg,
    Exposure,
    collateral_value,
    counted_change,
    exchange_ratio_position,
    moved_equity,
    moved_ratio,
)
from alertd.exchanges import binance
from alertd.exchanges.registry import get_spec
from alertd.feeds.state import AccountState, MarketInfo, PositionState, ReportedAccount

from .fake_exchange.binance import CM_LEVERAGE_BRACKET_EXAMPLE, COLLATERAL_RATE_EXAMPLE
from .support.snapshots import account, position, snapshot, tiers

D = Decimal
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
FLAT = tiers([(None, "0.005", "0")])  # one tier: the requirement is proportional to notional


@settings(max_examples=80, deadline=None)
@given(
    wallet=st.integers(min_value=2_000, max_value=50_000),
    btc=st.sampled_from(["0.5", "1", "-1", "2"]),
    eth=st.sampled_from(["0", "10", "-20"]),
    move=st.integers(min_value=-30, max_value=30),
)
def test_one_tier_moved_ratio_is_the_engines_own_at_the_new_marks(
    wallet: int, btc: str, eth: str, move: int
) -> None:
    """Read at the old marks, moved to the new ones: what the engine computes there."""

    def legs(btc_mark: Decimal, eth_mark: Decimal) -> list[dict[str, object]]:
        out = []
        for symbol, size, entry, mark in (
            (BTC, btc, "60000", btc_mark),
            (ETH, eth, "3000", eth_mark),
        ):
            if D(size):
                side = "long" if D(size) > 0 else "short"
                out.append(position(symbol, side, str(abs(D(size))), entry, str(mark), FLAT))
        return out

    then = {BTC: D(60_000), ETH: D(3_000)}
    now = {BTC: D(60_000) * (1 + D(move) / 100), ETH: D(3_000) * (1 - D(move) / 200)}
    before = compute(account(snapshot("binanceusdm", str(wallet), legs(then[BTC], then[ETH]))))
    after = compute(account(snapshot("binanceusdm", str(wallet), legs(now[BTC], now[ETH]))))
    exposures = [
        Exposure(p.position.symbol, p.position.side * p.position.quantity, False)
        for p in before.positions
    ]
    pool = before.pool
    if pool.margin_balance <= 0:
        return
    moved = moved_ratio(pool.margin_ratio, pool.margin_balance, exposures, then, now)
    assert moved is not None
    if not moved.is_finite():  # the balance gone: both say liquidated
        assert after.pool.margin_ratio == moved
    else:
        assert abs(moved - after.pool.margin_ratio) < D("1e-24")


def test_no_move_is_the_figure_as_read_and_a_missing_mark_is_no_figure() -> None:
    long = [Exposure(BTC, D("0.009"), False)]
    at = {BTC: D("67350")}
    assert moved_ratio(D("0.0975"), D("24.8669"), long, at, at) == D("0.0975")
    assert moved_ratio(D("0.0975"), D("24.8669"), long, at, {}) is None
    assert moved_ratio(D("0.0975"), D("24.8669"), [], at, at) is None  # nothing moves it


def test_the_real_multi_assets_account_moves_as_binance_computes_it() -> None:
    """accounts.md: 3.73 USDT + 22 USDC (at 1), long 0.009 BTC from 67,445.9; Binance's ratio
    9.75% at 67,350 (MM 2.4246 / equity 24.8669). At 65,000 Binance's own is MM 2.34 over
    25.73 - 22.0131 = 3.7169: 62.96% (tests/test_e2e_modes.py reads it from the exchange)."""
    ratio = D("2.4246") / D("24.8669")
    moved = moved_ratio(
        ratio,
        D("24.8669"),
        [Exposure(BTC, D("0.009"), False)],
        {BTC: D("67350")},
        {BTC: D("65000")},
    )
    assert moved is not None
    assert abs(moved - D("2.34") / D("3.7169")) < D("1e-24")  # 62.96%


def test_inverse_moves_in_the_coin() -> None:
    """A 10,000 USD inverse long at 50,000 -> 40,000 loses 10,000 x (1/40,000 - 1/50,000)
    = 0.05 BTC; its notional grows from 0.2 to 0.25 BTC."""
    moved = moved_ratio(
        D("0.01"),
        D("1"),
        [Exposure("BTC/USD:BTC", D(10_000), True)],
        {"BTC/USD:BTC": D(50_000)},
        {"BTC/USD:BTC": D(40_000)},
    )
    assert moved == D("0.01") * D("0.25") / D("0.2") / D("0.95")


def test_a_coin_m_gain_counts_at_most_at_binance_s_collateral_rate() -> None:
    """Binance FAQ "What Is the Unified Account Maintenance Margin Ratio (uniMMR)": each asset's
    equity counts as min(assetEquity x index x collateralRate, assetEquity x index), the
    COIN-M PnL inside the coin's asset equity. A hedge (UM long 1 BTC, COIN-M short 60,000
    USD, 2,000 USDT; BTC's collateral rate 0.95, illustrative: any rate below 1 shows it) at
    40,000: Binance's ratio, by hand, is never above the moved one (the gain's rate unread)."""
    um, cm, rate = BTC, "BTC/USD:BTC", D("0.95")
    then, mark = {um: D(60000), cm: D(60000)}, D(40000)
    leg = CoinLeg(cm, D(-60000), D(60000), requirement=D("1.05") * 240)
    ours = moved_ratio(
        D("1.05") * 480 / 2000,
        D(2000),
        [Exposure(um, D(1), False)],
        then,
        {um: mark, cm: mark},
        [leg],
    )
    btc_usd = D(-60000) * (1 / D(60000) - 1 / mark) * mark  # the short's gain, 1 BTC
    equity = 2000 + (mark - 60000) + min(btc_usd * rate, btc_usd)
    theirs = D("1.05") * (mark * D("0.004") + 240) / equity
    assert ours is not None and ours >= theirs, f"alertd {ours:.1%} < Binance {theirs:.1%}"
    # a loss counts in full, whatever the rate
    rises = {um: D(60600), cm: D(60600)}
    lost = moved_ratio(D("1.05") * 480 / 2000, D(2000), [], then, rises, [leg])
    assert lost == D("1.05") * 480 / (2000 - 600)  # the short loses 60,000 x 1% USD


def test_coin_legs_pushed_since_the_read_count_at_the_live_marks_the_read_s_at_its() -> None:
    """The COIN-M short of 60,000 USD at 60,000 and a wallet of 0.1 BTC read at 60,000 (BTC's
    rate 0.95, illustrative); since the read a push halved the short, filled at 50,000 (its
    PnL, 0.1 BTC, realized into the wallet: 0.2), the marks now at 50,000. The read's coin
    equity is the read's wallet and legs at 60,000 (6,000 USD), the pushed ones' at 50,000
    (0.2 x 50,000 + the 30,000 left's 5,000 = 15,000): the change counts 9,000 x 0.95 (review12
    finding 1: the pushed legs and wallet at both marks gave 3,000 x 0.95). The closed half's
    requirement leaves the figure; a coin whose legs all closed since stays as read."""
    cm, then, now = "BTC/USD:BTC", {"BTC/USD:BTC": D(60000)}, {"BTC/USD:BTC": D(50000)}
    rate = D("0.95")

    def leg(quantity: int, requirement: int) -> CoinLeg:
        return CoinLeg(cm, D(quantity), D(60000), D(requirement), rate, rate, "BTC")

    read, pushed = [leg(-60000, 240)], [leg(-30000, 120)]
    as_read = {"BTC": D("0.1")}
    wallet = {"BTC": D("0.2")}
    equity = moved_equity(D(2000), [], then, now, pushed, wallet, read, as_read)
    assert equity == 2000 + 9000 * rate
    ratio = moved_ratio(D("0.3"), D(2000), [], then, now, pushed, wallet, read, as_read)
    assert ratio == (D(600) - 240 + 120) / (2000 + 9000 * rate)
    closed = moved_equity(D(2000), [], then, now, [], {}, read, as_read)
    assert closed == 2000  # its mark no longer followed


def test_the_account_state_moves_cross_positions_and_keeps_an_unknown_market_as_read() -> None:
    state = AccountState("main", get_spec("bybit").profile, "USDT")
    state.markets[BTC] = MarketInfo(BTC, D(1), False, "USDT")
    state.positions[(BTC, Side.LONG)] = PositionState(
        BTC, Side.LONG, D(1), D(60_000), MarginMode.CROSS
    )
    state.positions[(ETH, Side.SHORT)] = PositionState(
        ETH, Side.SHORT, D(10), D(3_000), MarginMode.ISOLATED, isolated_margin=D(1_000)
    )
    state.reported_account = ReportedAccount(D(300), D(10_000), D("0.03"))
    state.reported_marks = {BTC: D(60_000), ETH: D(3_000)}
    state.marks = {BTC: D(57_000), ETH: D(3_300)}
    ratio, moved = state.exchange_ratio()
    # BTC alone (ETH is isolated): requirement 300 x 0.95 over 10,000 - 3,000
    assert moved and ratio == D(285) / D(7_000)
    state.markets.pop(BTC)  # a market alertd does not know: no half-moves
    assert state.exchange_ratio() == (D("0.03"), False)
    state.reported_account = ReportedAccount(margin_ratio=D("0.03"))  # no balance reported
    assert state.exchange_ratio() == (D("0.03"), False)


def test_positions_beside_the_exchange_s_ratio_keep_its_liquidation_price() -> None:
    """Where the exchange's ratio stands in, a position shows its notional and PnL at the live
    mark and the distance to the liquidation price the exchange reported; none of it is a
    margin figure of alertd's."""
    long = exchange_ratio_position(Exposure(BTC, D("0.5"), False), D("0.5"), D(60000), D(58000),
                                   D(54000))  # fmt: skip
    assert (long.side, long.notional, long.unrealized_pnl) == (Side.LONG, 29000, -1000)
    assert long.liquidation_distance == D(4000) / D(58000)
    # a short past its liquidation price: the distance is negative
    short = exchange_ratio_position(Exposure(ETH, D(-10), False), D(10), D(3000), D(3300),
                                    D(3250))  # fmt: skip
    assert (short.side, short.unrealized_pnl) == (Side.SHORT, -3000)
    assert short.liquidation_distance == D(-50) / D(3300)
    # inverse: 1,000 USD of contracts long, PnL and notional in the coin
    inverse = exchange_ratio_position(Exposure("BTC/USD:BTC", D(1000), True), D(10), D(50000),
                                      D(40000), None)  # fmt: skip
    assert inverse.notional == D(1000) / D(40000)
    assert inverse.unrealized_pnl == D(1000) * (1 / D(50000) - 1 / D(40000))
    assert inverse.liquidation_distance is None  # none reported
    # no mark yet: the size alone
    blind = exchange_ratio_position(Exposure(BTC, D(1), False), D(1), D(60000), None, D(5))
    assert (blind.notional, blind.unrealized_pnl, blind.liquidation_distance) == (None,) * 3
    assert blind.liquidation_price == 5


@pytest.mark.parametrize(
    ("before", "after", "counted"),
    [
        ("100", "300", "190"),  # a rise above zero at the lowest rate
        ("300", "100", "-200"),  # a fall above zero at the highest rate
        ("-100", "-40", "60"),  # below zero in full, both ways
        ("-40", "-100", "-60"),
        ("-100", "100", "195"),  # 100 in full to zero, then 100 at 0.95
        ("100", "-100", "-200"),  # 100 at 1 to zero, then 100 in full
    ],
)
def test_a_coin_s_equity_counts_in_full_below_zero_and_at_its_rates_above(
    before: str, after: str, counted: str
) -> None:
    """Binance FAQ "What Is the Unified Account Maintenance Margin Ratio (uniMMR)": an asset's
    equity counts as min(equity x index x collateralRate, equity x index). Tiers 0.95 to 1,
    the tier not known: a rise above zero at 0.95, a fall at 1 (never more than Binance)."""
    assert counted_change(D(before), D(after), D("0.95"), D(1)) == D(counted)


def test_coin_m_brackets_read_the_docs_example_and_move_a_coin_leg_s_requirement() -> None:
    """ "Query CM Notional and Leverage Brackets" (GET /papi/v1/cm/leverageBracket), the docs'
    example: BTCUSD_PERP's one bracket, 0.4% of the notional in the coin; a malformed symbol
    is named and left out. A coin leg with brackets requires ``(notional x rate - cum) x
    mark`` (in the ratio's terms) at each mark, its bracket re-found (a second one from 50
    BTC at 1%, ``cum`` 0.3); without, its requirement as read."""
    found, problems = binance.cm_brackets(CM_LEVERAGE_BRACKET_EXAMPLE, str)
    assert problems == []
    (table,) = found.values()
    assert list(found) == ["BTCUSD_PERP"] and table.tier_for(D(50)).mmr == D("0.004")
    bad = [{"symbol": "ETHUSD_PERP", "brackets": [{"qtyFloor": 0, "cum": 0}]}, {"x": 1}]
    found, problems = binance.cm_brackets([*CM_LEVERAGE_BRACKET_EXAMPLE, *bad], str)
    assert list(found) == ["BTCUSD_PERP"]
    assert [p.split(":")[0] for p in problems] == [
        "cm/leverageBracket ETHUSD_PERP maintMarginRatio",
        "cm/leverageBracket",
    ]
    two = [
        *CM_LEVERAGE_BRACKET_EXAMPLE[0]["brackets"],
        {"qtyFloor": 50, "qtyCap": 100, "maintMarginRatio": "0.01", "cum": "0.3"},
    ]
    found, _ = binance.cm_brackets([{"symbol": "BTCUSD_PERP", "brackets": two}], str)
    leg = CoinLeg("BTC/USD:BTC", D(-3_000_000), D(60000), D(1), brackets=found["BTCUSD_PERP"],
                  terms=D("1.05"))  # fmt: skip
    assert leg.requirement_at(D(60000)) == D("0.004") * 3_000_000 * D("1.05")  # 50 BTC
    # 60 BTC at 50,000: the second bracket, 60 x 1% - 0.3 = 0.3 BTC
    assert leg.requirement_at(D(50000)) == D("0.3") * 50000 * D("1.05")
    assert CoinLeg("X", D(1), D(1), D(7)).requirement_at(D(2)) == 7


def test_coin_m_brackets_are_ordered_by_either_spelling_of_the_lower_edge_or_their_level() -> None:
    """The COIN-M docs spell a bracket's lower edge ``qtylFloor`` ("Notional Bracket for
    Symbol", GET /dapi/v2/leverageBracket; the /papi example ``qtyFloor``): BTCUSD_PERP's two
    brackets, listed highest first, are read in order by it, or by ``bracket`` (their level)
    where a row has no edge; with none of the three, the symbol is named and left out."""
    rows = [
        {"bracket": 2, "qtyCap": 10, "qtylFloor": 5, "maintMarginRatio": 0.005, "cum": 0.005},
        {"bracket": 1, "qtyCap": 5, "qtylFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0},
    ]
    levels = [{k: v for k, v in row.items() if k != "qtylFloor"} for row in rows]
    for brackets in (rows, levels):
        found, problems = binance.cm_brackets(
            [{"symbol": "BTCUSD_PERP", "brackets": brackets}], str
        )
        assert problems == []
        table = found["BTCUSD_PERP"]
        assert (table.tier_for(D(4)).mmr, table.tier_for(D(7)).mmr) == (D("0.004"), D("0.005"))
    bare = [{k: v for k, v in row.items() if k != "bracket"} for row in levels]
    found, problems = binance.cm_brackets([{"symbol": "BTCUSD_PERP", "brackets": bare}], str)
    assert found == {} and [p.split(":")[0] for p in problems] == [
        "cm/leverageBracket BTCUSD_PERP qtyFloor"
    ]


def _bnb_tiers(first: dict[str, str], second: dict[str, str]) -> list[dict[str, object]]:
    """BNB's rows of the docs' example (:data:`COLLATERAL_RATE_EXAMPLE`), each tier updated
    with ``first`` and ``second`` (a value None: the field left out)."""
    rows = []
    for tier, change in zip(
        COLLATERAL_RATE_EXAMPLE[0]["collateralInfo"], (first, second), strict=True
    ):
        merged = tier | change
        rows.append({k: v for k, v in merged.items() if v is not None})
    return [{"asset": "BNB", "collateralInfo": rows}]


@pytest.mark.parametrize(
    ("first", "second", "named"),
    [
        ({"tierFloor": None}, {}, "collateralInfo[0] tierFloor: missing"),
        ({"tierCap": "abc"}, {}, "collateralInfo[0] tierCap: not a number"),
        ({"tierCap": None}, {}, "collateralInfo[0] tierCap: missing"),
        ({"tierCap": "0"}, {}, "collateralInfo[0] tierCap: 0 is not above its tierFloor"),
        ({}, {"tierFloor": "500"}, "collateralInfo[1] tierFloor: 500 is not the previous cap"),
        ({}, {"tierFloor": "1500"}, "collateralInfo[1] tierFloor: 1500 is not the previous cap"),
        ({"tierFloor": "10"}, {}, "collateralInfo[0] tierFloor: 10 is the first tier's floor"),
    ],
)
def test_malformed_collateral_tiers_are_named_and_left_out(
    first: dict[str, str], second: dict[str, str], named: str
) -> None:
    """BNB's tiers of the docs' example with a floor missing, a cap missing, not a number or
    not above its floor, an overlap, a gap, or a first floor that is not 0: the asset is left
    out (its gains then count 0) and the row and field named. Before, a missing floor was read
    as 0 and such a cap as none, and the overlapping tiers counted 1,500 USD of BNB as 2,350
    or 1,950; ``collateral_value`` now never counts more than the value, whatever tiers it is
    given."""
    tiers, problems = binance.pm_collateral_tiers(_bnb_tiers(first, second))
    assert tiers == {}
    (problem,) = problems
    assert problem.removeprefix("portfolio/collateralRate BNB ").startswith(named)
    overlapping = ((D(0), D(1000), D(1), None), (D(0), None, D("0.9"), None))
    assert collateral_value(D(1500), overlapping) == 1500


def test_portfolio_margin_collateral_tiers_count_the_lower_of_the_slices_and_cum() -> None:
    """ "Portfolio Margin Pro Tiered Collateral Rate", the docs' example: BNB at 100% of its
    value to 1,000 USD and 90% from 1,000 (to 2,000, and past the last cap read), each tier's
    ``cum`` ("account equity quick addition number") 0. 1,500 USD of BNB counts 1,350, the
    lower of ``value x rate + cum`` (1,350) and the slices (1,450); below zero in full; a
    change between two values counts the difference of the two. Where ``cum`` is the slices'
    sum below its tier (BTC's tiers of the local Binance) the two agree; with no ``cum`` the
    slices count. Before, ``cum`` was not read and 1,500 USD of BNB counted 1,450: more than
    the docs' own figure."""
    tiers, problems = binance.pm_collateral_tiers(COLLATERAL_RATE_EXAMPLE)
    assert problems == []
    bnb = tiers["BNB"]
    assert collateral_value(D(1500), bnb) == 1350
    assert collateral_value(D(1000), bnb) == 1000
    assert collateral_value(D(2500), bnb) == D("0.9") * 2500
    assert collateral_value(D(-300), bnb) == -300
    assert counted_change(D(900), D(1500), D("0.9"), D(1), bnb) == 1350 - 900
    # 95% to 100,000 USD, 90% to 200,000, 80% above; cum 5,000 and 25,000: the slices below
    btc_rows = [
        {"tierFloor": floor, "tierCap": cap, "collateralRate": rate, "cum": cum}
        for floor, cap, rate, cum in (
            ("0", "100000", "0.95", "0"),
            ("100000", "200000", "0.9", "5000"),
            ("200000", "999999999", "0.8", "25000"),
        )
    ]
    (btc,) = binance.pm_collateral_tiers([{"asset": "BTC", "collateralInfo": btc_rows}])[0].values()
    for usd, slices in ((50_000, 47_500), (150_000, 140_000), (300_000, 265_000)):
        assert collateral_value(D(usd), btc) == slices
    no_cum = tuple((floor, cap, rate, None) for floor, cap, rate, _ in bnb)
    assert collateral_value(D(1500), no_cum) == 1450


def test_a_change_across_a_tier_counts_the_lower_reading_s_change_and_a_hostile_cum_is_named() -> (
    None
):
    """The change is applied to Binance's own figure as read, so the safe side is the lower
    of the two readings' *changes*, not the change of the lower level: BNB of the docs'
    example (cum 0) falling from 1,500 to 900 USD counts -550 (the slices': 1,450 to 900;
    ``value x rate + cum`` gives -450), where the lower level at each end (1,350 to 900)
    counted -450, 100 USD of equity Binance does not count if it takes the slices (review
    of fixpm13b). A ``cum`` below 0 or above ``floor x (1 - rate)`` (the quick reading above
    the value at the tier's floor) is named and the asset left out: a cum of -1,000,000 let
    a 20 USD rise count as a 1,000,081 USD fall."""
    tiers, _ = binance.pm_collateral_tiers(COLLATERAL_RATE_EXAMPLE)
    bnb = tiers["BNB"]
    assert counted_change(D(1500), D(900), D("0.9"), D(1), bnb) == -550
    assert counted_change(D(900), D(1500), D("0.9"), D(1), bnb) == 450  # the quick one's rise
    assert counted_change(D(1500), D(-100), D("0.9"), D(1), bnb) == -1450 - 100
    for cum in ("-1000000", "-0.01", "100.01"):
        found, problems = binance.pm_collateral_tiers(_bnb_tiers({}, {"cum": cum}))
        assert found == {}
        (problem,) = problems
        assert problem.endswith(f"collateralInfo[1] cum: {cum} is not within 0 and 100"), cum
    found, problems = binance.pm_collateral_tiers(_bnb_tiers({}, {"cum": "100"}))
    assert problems == [] and collateral_value(D(1500), found["BNB"]) == 1450
    # a cum given for some tiers only: an end without one reads its slices under either
    # reading, so the other end's lower reading still counts (the first tier's cum left out
    # counted a fall from 1,500 to 900 as a rise of 350; review of the lead's commits)
    halved = [
        {"tierFloor": "0", "tierCap": "1000", "collateralRate": "1"},
        {"tierFloor": "1000", "tierCap": "2000", "collateralRate": "0.5", "cum": "0"},
    ]
    (partial,) = binance.pm_collateral_tiers([{"asset": "X", "collateralInfo": halved}])[0].values()
    halved[0]["cum"] = "0"
    (whole,) = binance.pm_collateral_tiers([{"asset": "X", "collateralInfo": halved}])[0].values()
    for before, after in ((D(900), D(1500)), (D(1500), D(900)), (D(900), D("1000.01"))):
        change = counted_change(before, after, D("0.5"), D(1), partial)
        assert change == counted_change(before, after, D("0.5"), D(1), whole), (before, after)
    assert counted_change(D(900), D(1500), D("0.5"), D(1), partial) == -150


def test_portfolio_margin_collateral_rates_read_the_docs_example() -> None:
    """ "Portfolio Margin Pro Tiered Collateral Rate" (GET /sapi/v2/portfolio/collateralRate),
    the docs' response example: each asset's lowest and highest tier rate; a malformed row
    is named and left out, the others kept."""
    rates, problems = binance.pm_collateral_rates(COLLATERAL_RATE_EXAMPLE)
    assert rates == {"BNB": (D("0.9"), D(1)), "USDT": (D("0.9999"), D(1))}
    assert problems == []
    bad = [{"asset": "BTC", "collateralInfo": [{"collateralRate": "1.5"}]}, {"asset": "ETH"}]
    rates, problems = binance.pm_collateral_rates([*COLLATERAL_RATE_EXAMPLE, *bad])
    assert set(rates) == {"BNB", "USDT"}
    assert [p.split(":")[0] for p in problems] == [
        "portfolio/collateralRate BTC collateralInfo[0] collateralRate",
        "portfolio/collateralRate",
    ]
