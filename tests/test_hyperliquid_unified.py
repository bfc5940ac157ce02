"""Hyperliquid's unified account and portfolio margin in the adapter (issue 11).

"Trading / Account abstraction modes" (hyperliquid-docs): in a unified account one USDC balance,
held in the spot clearinghouse state, backs every cross position; "For API users, unified
account and portfolio margin shows all balances and holds in the spot clearinghouse state.
Individual perp dex user states are not meaningful." Its "Unified Account Ratio" is, per
collateral token, ``crossMaintenanceMarginUsed / (spot total - isolated marginUsed)``.

The same account in either mode has the same cross pool: the tests take real standard answers
(ccxt's recorded hyperliquid.json, as tests/test_adapters_more.py cites them), move their USDC to
the spot state as the docs describe (the perpetuals state keeps the positions and no USDC; the
spot ``total`` is the whole balance), and check that alertd's pool, maintenance margin and
liquidation prices are the standard account's, and that the reported figures are Hyperliquid's
documented ratio. The spot answers' shapes are ccxt's (``hyperliquid.fetch_balance``'s spot
example, ``pro.hyperliquid.handle_balance``'s ``spotState`` push)."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from alertd.engine.model import Side
from alertd.exchanges.hyperliquid import HyperliquidAdapter, spot_usdc, unified_usdc_balance
from alertd.feeds.adapter import FrameError
from alertd.feeds.state import AccountMode, Coverage, ReportedAccount
from alertd.snapshot.compare import Figure, compare

from .fake_exchange.hyperliquid import FakeHyperliquid
from .support.aio import run
from .test_account_checks import HL_SPOT_PUSH
from .test_adapters_more import (
    ADDRESS,
    ETH_H,
    HL_CROSS,
    HL_ISOLATED,
    HL_SHORT,
    HYPE_H,
    SOL_H,
    HLStandIn,
    hl_market,
    load,
    metrics,
)
from .test_properties import _check_liquidation_ratio as check_liquidation_ratio
from .test_properties import close, dec

D = Decimal

# ccxt hyperliquid.py, fetch_balance: the spot answer in its docstring (no token field)
CCXT_SPOT = {
    "balances": [
        {"coin": "USDC", "hold": "0.0", "total": "1481.844"},
        {"coin": "PURR", "hold": "0.0", "total": "999.65004"},
    ]
}


def unified(standard: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A standard account's answers as its unified twin's: the perpetuals state without its
    cross USDC (raw USD and account value less it: the positions alone), and the spot state
    holding the whole balance (``marginSummary.accountValue``: the USDC and every position's
    value, isolated equity included)."""
    state = copy.deepcopy(standard)
    cross = state["crossMarginSummary"]
    cash = D(cross["totalRawUsd"]) + sum(
        D(r["position"]["szi"]) * D(r["position"]["entryPx"])
        for r in state["assetPositions"]
        if r["position"]["leverage"]["type"] == "cross"
    )
    for summary in (cross, state["marginSummary"]):
        for field in ("totalRawUsd", "accountValue"):
            summary[field] = str(D(summary[field]) - cash)
    total = standard["marginSummary"]["accountValue"]
    spot = {"balances": [{"coin": "USDC", "token": 0, "total": total, "hold": "0.0"}]}
    return state, spot


class UnifiedStandIn(HLStandIn):
    """Answers ``spotClearinghouseState`` beside the perpetuals state."""

    def __init__(self, state: dict[str, Any], spot: dict[str, Any], abstraction: str) -> None:
        super().__init__(state)
        self.spot = spot
        self.abstraction = f'"{abstraction}"'

    async def publicPostInfo(self, params: Any) -> Any:
        if params.get("type") == "spotClearinghouseState":
            return self.answer("spot", params, self.spot)
        return await super().publicPostInfo(params)


async def unified_state(
    standard: dict[str, Any], abstraction: str = "unifiedAccount"
) -> tuple[Any, HyperliquidAdapter, UnifiedStandIn]:
    state, spot = unified(standard)
    exchange = UnifiedStandIn(state, spot, abstraction)
    adapter = HyperliquidAdapter()
    mode = await adapter.fetch_mode(exchange)
    assert mode.mode is AccountMode.UNIFIED_ACCOUNT or abstraction != "unifiedAccount"
    return await load(adapter, exchange), adapter, exchange


@pytest.mark.parametrize(
    "standard", [HL_CROSS, HL_SHORT, HL_ISOLATED], ids=["cross", "short", "isolated"]
)
def test_a_unified_account_has_its_standard_twins_pool(standard: dict[str, Any]) -> None:
    async def body() -> None:
        twin = await load(HyperliquidAdapter(), HLStandIn(standard))
        state, _, exchange = await unified_state(standard)
        assert ("spot", {"type": "spotClearinghouseState", "user": ADDRESS}) in exchange.calls
        ours, theirs = metrics(state), metrics(twin)
        assert ours.pool.margin_balance == theirs.pool.margin_balance
        assert ours.pool.maintenance_margin == theirs.pool.maintenance_margin
        assert [p.liquidation_price for p in ours.positions] == [
            p.liquidation_price for p in theirs.positions
        ]
        # Hyperliquid's Unified Account Ratio from the answers, as its docs compute it
        spot_total = D(exchange.spot["balances"][0]["total"])
        isolated = sum(
            D(r["position"]["marginUsed"])
            for r in standard["assetPositions"]
            if r["position"]["leverage"]["type"] == "isolated"
        )
        mm = D(standard["crossMaintenanceMarginUsed"])
        balance = spot_total - isolated
        assert balance == D(standard["crossMarginSummary"]["accountValue"])
        ratio = mm / balance if mm else None
        assert state.reported_account == ReportedAccount(mm or None, balance, ratio)

    run(body())


def test_the_isolated_short_keeps_hyperliquid_s_liquidation_price() -> None:
    async def body() -> None:
        state, _, _ = await unified_state(HL_ISOLATED)
        (hype,) = metrics(state).positions
        assert hype.position.side is Side.SHORT
        assert state.reported_positions[(HYPE_H, Side.SHORT)].liquidation_price == D(
            "50.2724802381"
        )
        assert hype.liquidation_price is not None
        assert abs(hype.liquidation_price / D("50.2724802381") - 1) < D("1e-9")

    run(body())


def test_liquidation_prices_not_the_ratio_tell_the_spot_total_readings_apart() -> None:
    """alertd reads the spot ``total`` as the whole balance, the positions' PnL in it. Another
    reading (wayfinder-paths-sdk PRs 611 and 619) takes it as cash and adds the positions'
    ``unrealizedPnl``. Were that Hyperliquid's, the ratio comparison could not tell:
    Hyperliquid's documented ratio is taken from the same spot total as alertd's balance. The
    liquidation prices can: Hyperliquid's ``liquidationPx`` is of the true balance. ccxt's
    recorded answer with a cross SOL short (``liquidationPx`` 22,881.20) and an ETH long
    2,059.2 in profit, its unified twin in both readings."""

    def rows(state: Any, adapter: HyperliquidAdapter) -> dict[Figure, bool | None]:
        found = compare(metrics(state), state.reported_account, state.reported_positions, adapter)
        liquidations = [r for r in found if r.figure is Figure.LIQUIDATION_PRICE]
        sol = [r for r in liquidations if r.position == (SOL_H, Side.SHORT)]
        ratio = [r for r in found if r.figure is Figure.MARGIN_RATIO and r.position is None]
        assert len(sol) == len(ratio) == 1
        # the ETH long: Hyperliquid reports no liquidation price, nothing to compare
        assert [r.matches for r in liquidations if r not in sol] == [None]
        return {Figure.LIQUIDATION_PRICE: sol[0].matches, Figure.MARGIN_RATIO: ratio[0].matches}

    async def body() -> None:
        state, adapter, _ = await unified_state(HL_SHORT)
        assert rows(state, adapter) == {Figure.LIQUIDATION_PRICE: True, Figure.MARGIN_RATIO: True}
        perps, spot = unified(HL_SHORT)
        pnl = sum(D(r["position"]["unrealizedPnl"]) for r in HL_SHORT["assetPositions"])
        assert pnl == D("2059.6")
        spot["balances"][0]["total"] = str(D(spot["balances"][0]["total"]) - pnl)  # cash
        exchange = UnifiedStandIn(perps, spot, "unifiedAccount")
        adapter = HyperliquidAdapter()
        await adapter.fetch_mode(exchange)
        cash_read = await load(adapter, exchange)
        assert rows(cash_read, adapter) == {
            Figure.LIQUIDATION_PRICE: False,
            Figure.MARGIN_RATIO: True,
        }

    run(body())


def test_the_balance_stream_adds_the_spot_part_to_each_perpetuals_push() -> None:
    async def body() -> None:
        state, adapter, exchange = await unified_state(HL_CROSS)
        pushed = copy.deepcopy(exchange.state)

        async def watch_balance() -> Any:
            return {"info": pushed}

        exchange.watch_balance = watch_balance  # type: ignore[method-assign]
        assert await adapter.watch_balance(exchange) == state.wallet_balance
        # a standard account again: the spot part is gone at the next read
        exchange.abstraction = '"disabled"'
        exchange.state = copy.deepcopy(HL_CROSS)
        before = len(exchange.calls)
        await adapter.fetch_mode(exchange)
        wallet, _ = await adapter.fetch_balance(exchange)
        pushed = copy.deepcopy(HL_CROSS)
        assert await adapter.watch_balance(exchange) == wallet == state.wallet_balance
        assert [name for name, _ in exchange.calls[before:]] == ["abstraction", "info"]

    run(body())


@pytest.mark.parametrize(
    ("read", "ratio"),
    [("0.19", D("0.2")), ("0.0", D(0)), ("0.95", D(1)), (None, None)],
)
def test_portfolio_margin_shows_hyperliquid_s_ratio_over_its_liquidation_level(
    read: str | None, ratio: Decimal | None
) -> None:
    async def body() -> None:
        state, spot = unified(HL_CROSS)
        if read is not None:
            spot.update(portfolioMarginEnabled=True, portfolioMarginRatio=read)
        exchange = UnifiedStandIn(state, spot, "portfolioMargin")
        adapter = HyperliquidAdapter()
        mode = await adapter.fetch_mode(exchange)
        assert (mode.mode, mode.coverage) == (AccountMode.PORTFOLIO, Coverage.EXCHANGE_RATIO)
        assert "portfolioMarginRatio" in mode.limits and "not moved" in mode.limits
        _, figures = await adapter.fetch_balance(exchange)
        # no equity is reported beside it: the ratio stands as read
        assert figures == ReportedAccount(None, None, ratio)

    run(body())


@pytest.mark.parametrize("bad", ["abc", "-0.1", "NaN", True])
def test_a_malformed_portfolio_margin_ratio_is_a_frame_error_naming_it(bad: Any) -> None:
    async def body() -> None:
        state, spot = unified(HL_CROSS)
        spot["portfolioMarginRatio"] = bad
        exchange = UnifiedStandIn(state, spot, "portfolioMargin")
        adapter = HyperliquidAdapter()
        await adapter.fetch_mode(exchange)
        with pytest.raises(FrameError, match="portfolioMarginRatio"):
            await adapter.fetch_balance(exchange)

    run(body())


def test_spot_usdc_reads_the_usdc_row() -> None:
    assert spot_usdc(CCXT_SPOT) == D("1481.844")
    # ccxt pro's spotState push holds USDH (token 360) alone: no USDC
    assert spot_usdc(HL_SPOT_PUSH["data"]["spotState"]) == 0
    # a token named USDC that is not token 0 is not the collateral
    assert spot_usdc({"balances": [{"coin": "USDC", "token": 7, "total": "5"}]}) == 0
    for bad, field in (
        ({"balances": "x"}, "balances"),
        ([], "balances"),
        ({"balances": [{"coin": "USDC", "token": 0, "total": "abc"}]}, "total"),
        ({"balances": [{"coin": "USDC", "token": 0}]}, "total"),
    ):
        with pytest.raises(FrameError, match=field):
            spot_usdc(bad)


def test_a_unified_account_without_spot_usdc_has_only_its_positions_value() -> None:
    """Every USDC spent: the pool is the positions' value alone (an SOL long's PnL here)."""

    async def body() -> None:
        state, spot = unified(HL_CROSS)
        spot["balances"] = []
        exchange = UnifiedStandIn(state, spot, "unifiedAccount")
        adapter = HyperliquidAdapter()
        await adapter.fetch_mode(exchange)
        loaded = await load(adapter, exchange)
        assert loaded.reported_account.margin_balance == 0
        assert loaded.reported_account.margin_ratio is None
        assert metrics(loaded).pool.margin_balance == 0
        assert SOL_H in loaded.marks

    run(body())


# --- HIP-3 dexes in a unified account ----------------------------------------------------------

# clearinghouseState of a dex without positions, in the shape Hyperliquid answers it
FLAT = {
    "marginSummary": {"accountValue": "0.0", "totalNtlPos": "0.0", "totalRawUsd": "0.0",
                      "totalMarginUsed": "0.0"},
    "crossMarginSummary": {"accountValue": "0.0", "totalNtlPos": "0.0", "totalRawUsd": "0.0",
                           "totalMarginUsed": "0.0"},
    "crossMaintenanceMarginUsed": "0.0", "withdrawable": "0.0", "assetPositions": [],
    "time": 1790332213000,
}  # fmt: skip
# the xyz dex of a unified account: a cross short of xyz:GOLD (25x: MM 2% of 172,112), no USDC
# of its own (raw USD minus the entry value; the account value its PnL, -52)
XYZ_GOLD_SHORT = {
    "marginSummary": {"accountValue": "-52.0", "totalNtlPos": "172112.0",
                      "totalRawUsd": "172060.0", "totalMarginUsed": "6884.48"},
    "crossMarginSummary": {"accountValue": "-52.0", "totalNtlPos": "172112.0",
                           "totalRawUsd": "172060.0", "totalMarginUsed": "6884.48"},
    "crossMaintenanceMarginUsed": "3442.24", "withdrawable": "0.0",
    "assetPositions": [{"type": "oneWay", "position": {
        "coin": "xyz:GOLD", "szi": "-40.0", "leverage": {"type": "cross", "value": 25},
        "entryPx": "4301.5", "positionValue": "172112.0", "unrealizedPnl": "-52.0",
        "returnOnEquity": "-0.0075", "liquidationPx": None, "marginUsed": "6884.48",
        "maxLeverage": 25}}],
    "time": 1790332213000,
}  # fmt: skip


def hip3_market(name: str, dex: str, token: str, settle: str) -> dict[str, Any]:
    """A HIP-3 market as ccxt's fetch_hip3_markets keeps it (``info``: dex, collateral)."""
    base = name.replace(":", "-").upper()
    info = {"name": name, "dex": dex, "collateralToken": token, "hip3": True}
    return {"symbol": f"{base}/{settle}:{settle}", "id": name, "info": info}


class Hip3StandIn(UnifiedStandIn):
    def __init__(self, dex_states: dict[str, dict[str, Any]]) -> None:
        state, spot = unified(HL_CROSS)
        # the xyz short's PnL is in the one USDC balance
        total = D(spot["balances"][0]["total"]) + sum(
            D(s["marginSummary"]["accountValue"]) for s in dex_states.values()
        )
        spot["balances"][0]["total"] = str(total)
        super().__init__(state, spot, "unifiedAccount")
        self.dex_states = dex_states
        for market in (
            hip3_market("xyz:GOLD", "xyz", "0", "USDC"),
            hip3_market("abcd:ONE", "abcd", "0", "USDC"),
            hip3_market("flx:CRCL", "flx", "360", "USDH"),  # USDH collateral: its own pool
        ):
            self.markets[market["symbol"]] = market

    async def publicPostInfo(self, params: Any) -> Any:
        if params.get("type") == "clearinghouseState" and params.get("dex"):
            return self.answer("dex", params, self.dex_states.get(params["dex"], FLAT))
        return await super().publicPostInfo(params)


def test_hip3_positions_in_a_unified_account_show_hyperliquid_s_ratio_over_every_dex() -> None:
    async def body() -> None:
        exchange = Hip3StandIn({"xyz": XYZ_GOLD_SHORT})
        adapter = HyperliquidAdapter()
        mode = await adapter.fetch_mode(exchange)
        # the USDC dexes are read, the USDH one is not
        assert [p["dex"] for name, p in exchange.calls if name == "dex"] == ["abcd", "xyz"]
        assert (mode.mode, mode.coverage) == (AccountMode.UNIFIED_ACCOUNT, Coverage.EXCHANGE_RATIO)
        assert "xyz" in mode.limits and "abcd" not in mode.limits
        _, figures = await adapter.fetch_balance(exchange)
        mm = D("141.579994") + D("3442.24")
        balance = D(HL_CROSS["crossMarginSummary"]["accountValue"]) - 52
        assert figures == ReportedAccount(mm, None, mm / balance)

    run(body())


def test_hip3_dexes_without_positions_leave_the_unified_account_computed() -> None:
    async def body() -> None:
        exchange = Hip3StandIn({})
        adapter = HyperliquidAdapter()
        mode = await adapter.fetch_mode(exchange)
        assert (mode.mode, mode.coverage) == (AccountMode.UNIFIED_ACCOUNT, Coverage.COMPUTED)
        _, figures = await adapter.fetch_balance(exchange)
        assert figures.margin_balance == D(HL_CROSS["crossMarginSummary"]["accountValue"])
        # a standard account's dexes are its own pools: not read
        exchange.abstraction = '"disabled"'
        before = len(exchange.calls)
        await adapter.fetch_mode(exchange)
        assert [name for name, _ in exchange.calls[before:]] == ["abstraction"]

    run(body())


def test_a_malformed_hip3_dex_state_is_a_frame_error_naming_the_dex() -> None:
    async def body() -> None:
        exchange = Hip3StandIn({})
        exchange.dex_states = {"xyz": {"assetPositions": "x"}}
        with pytest.raises(FrameError, match="dex xyz"):
            await HyperliquidAdapter().fetch_mode(exchange)

    run(body())


# --- a recorded unified account ---------------------------------------------------------------

# Live answers of one unifiedAccount (userAbstraction "unifiedAccount"), read 4 s apart on
# 2026-09-13 (13:11:16Z and 13:11:20Z) from api.hyperliquid.xyz/info by a public probe script,
# kept as answered: l3sh42h2/funddd_bot, tests/data/hl/public_20260913.json ("user_1",
# 0xff76877a31de6ee91583595c358a49241ac7815c; the script: tests/data/hl/probe_hl_stream.py),
# commit 519a95e48b93c74d4e906c49af44086a9a86e0d6. An isolated para:ANSEM short (HIP-3 dex
# "para", collateral USDC; ANSEM is isolated-only) 35.16 at a loss, nothing cross.
RECORDED_PARA = {
    "marginSummary": {"accountValue": "1613.426835", "totalNtlPos": "1683.52714",
                      "totalRawUsd": "3296.953975", "totalMarginUsed": "1613.426835"},
    "crossMarginSummary": {"accountValue": "0.0", "totalNtlPos": "0.0", "totalRawUsd": "0.0",
                           "totalMarginUsed": "0.0"},
    "crossMaintenanceMarginUsed": "0.0", "withdrawable": "0.0",
    "assetPositions": [{"type": "oneWay", "position": {
        "coin": "para:ANSEM", "szi": "-10121.0",
        "leverage": {"type": "isolated", "value": 1, "rawUsd": "3296.953975"},
        "entryPx": "0.162866", "positionValue": "1683.52714", "unrealizedPnl": "-35.159951",
        "returnOnEquity": "-0.0213301692", "liquidationPx": "0.279217523",
        "marginUsed": "1613.426835", "maxLeverage": 3,
        "cumFunding": {"allTime": "-4.992646", "sinceOpen": "-0.563846", "sinceChange": "0.0"}}}],
    "time": 1789305076005,
}  # fmt: skip
RECORDED_SPOT = {
    "balances": [
        {"coin": "USDC", "token": 0, "total": "21401.03695889", "hold": "1613.426835",
         "entryNtl": "0.0"},
        {"coin": "USDT0", "token": 268, "total": "0.0", "hold": "0.0", "entryNtl": "0.0"},
        {"coin": "USDH", "token": 360, "total": "0.0", "hold": "0.0", "entryNtl": "0.0"},
    ],
    "tokenToAvailableAfterMaintenance": [[0, "19787.61012389"]],
}  # fmt: skip


def test_a_recorded_unified_account_s_available_after_maintenance_is_alertd_s_pool() -> None:
    """Hyperliquid's own ``tokenToAvailableAfterMaintenance`` for USDC is alertd's unified pool
    (the spot total less the isolated positions' equity) less the cross MM, to the last digit.
    The isolated short's equity taken off holds its loss (``marginUsed`` is ``rawUsd`` less
    the position's value at the mark): Hyperliquid's figure counts the spot total as holding
    that position's PnL. Were the total cash, the loss outside it, the margin to take off
    would be the cash alone and Hyperliquid's available would overstate the account by the
    loss. The position is isolated: this says nothing of a cross position's PnL, which the
    documented ratio reads from the same total (docs/exchanges.md, "Still alertd's reading").
    The main dex's state was not recorded; the spot ``hold`` is the ANSEM short's margin to
    the last digit, nothing else held USDC."""
    (row,) = (r["position"] for r in RECORDED_PARA["assetPositions"])
    equity = D(row["leverage"]["rawUsd"]) - D(row["positionValue"])  # a short: raw USD - value
    assert equity == D(row["marginUsed"]) == D(RECORDED_SPOT["balances"][0]["hold"])
    pnl = D(row["unrealizedPnl"])
    assert pnl < 0
    ((token, available),) = RECORDED_SPOT["tokenToAvailableAfterMaintenance"]
    assert token == 0
    pool = unified_usdc_balance(RECORDED_SPOT, [RECORDED_PARA])
    assert pool - D(RECORDED_PARA["crossMaintenanceMarginUsed"]) == D(available)
    # the spot total read as cash: the isolated margin without its loss taken off
    assert spot_usdc(RECORDED_SPOT) - (equity - pnl) == D(available) + pnl


# --- the local Hyperliquid's unified accounts, any of them ----------------------------------------


class FakeAnswers(UnifiedStandIn):
    """The local Hyperliquid's answers for ``address`` (its own figures, through JSON as on
    the wire), with markets as its ``meta`` lists them (BTC 40x, ETH 25x)."""

    def __init__(self, fake: FakeHyperliquid, address: str) -> None:
        account = fake._accounts[address.lower()]
        state, spot = (
            json.loads(json.dumps(answer))
            for answer in (fake._clearinghouse(account), fake._spot(account))
        )
        super().__init__(state, spot, "unifiedAccount")
        self.markets = {m["symbol"]: m for m in (hl_market("BTC", "0", 40, "1"),
                                                  hl_market("ETH", "1", 25, "0.1"))}  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    cash=dec(50, 200000, 2),
    size=dec(1, 5000, 3),
    long=st.booleans(),
    entry=st.integers(40000, 90000),
    mark=st.integers(40000, 90000),
    isolated=st.booleans(),
)
def test_any_unified_account_reproduces_the_local_hyperliquid_s_figures(
    cash: Decimal, size: Decimal, long: bool, entry: int, mark: int, isolated: bool
) -> None:
    """alertd's ratio is Hyperliquid's Unified Account Ratio from the local exchange's own
    answers, its liquidation prices are the exchange's, and at each the pool's ratio is 1."""
    fake = FakeHyperliquid()
    fake.add_account(ADDRESS, "", str(cash))
    fake.set_abstraction(ADDRESS, "unifiedAccount")
    fake.set_mark("BTC/USDC:USDC", mark)
    fake.open_position(ADDRESS, "BTC/USDC:USDC", "long" if long else "short", size / 1000, entry)
    if isolated:  # an ETH short on its own margin: in the spot total, not in the cross pool
        fake.set_mark(ETH_H, "3000")
        fake.open_position(ADDRESS, ETH_H, "short", "1", "3100", margin_mode="isolated",
                           isolated_margin="300")  # fmt: skip
    exchange = FakeAnswers(fake, ADDRESS)

    async def body() -> Any:
        adapter = HyperliquidAdapter()
        await adapter.fetch_mode(exchange)
        return await load(adapter, exchange)

    state = run(body())
    reported = state.reported_account
    assume(reported.margin_ratio is not None and reported.margin_ratio < D("0.9"))
    assert reported.margin_ratio is not None and reported.margin_balance is not None
    spot_total = D(exchange.spot["balances"][0]["total"])
    rows = [r["position"] for r in exchange.state["assetPositions"]]
    iso = sum(D(p["marginUsed"]) for p in rows if p["leverage"]["type"] == "isolated")
    assert reported.margin_balance == spot_total - iso
    result = metrics(state)
    assert close(result.pool.margin_ratio, reported.margin_ratio, D("1e-6"))
    for pm in result.positions:
        theirs = state.reported_positions[pm.position.key].liquidation_price
        if theirs is None or pm.liquidation_price is None:
            assert theirs == pm.liquidation_price
            continue
        assert close(pm.liquidation_price, theirs, D("1e-6")), (pm.position, theirs)
    check_liquidation_ratio(state.to_account())
