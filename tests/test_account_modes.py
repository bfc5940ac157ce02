"""Account modes (issue 11): each exchange's mode read from its real answer at bootstrap and at
every reconcile, what alertd does with it (computed, the exchange's own ratio, not computed,
refused), and a change of mode picked up without a restart.

The pure readers are checked on the exchanges' documented answers (cited); the feeds on the
local exchanges, which serve the modes in the exchanges' own formats.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from alertd.config import AccountConfig, BuiltinRules, Config, RuleConfig, Secret
from alertd.daemon.evaluation import Alerting, builtin_rules
from alertd.daemon.publisher import stale_streams
from alertd.daemon.store import Store
from alertd.delivery.deliverer import Deliverer
from alertd.engine.book import Book
from alertd.engine.margin import compute
from alertd.engine.model import Side
from alertd.engine.stops import StopKind, Trigger
from alertd.exchanges import binance, bybit, gate, hyperliquid, okx
from alertd.feeds.adapter import FrameError
from alertd.feeds.feed import AccountFeed, Change
from alertd.feeds.manager import FeedManager
from alertd.feeds.state import AccountMode, AccountState, Coverage, ModeReading
from alertd.rules.model import Context, Subject

from .fake_exchange.binance import (
    CM_ACCOUNT_EXAMPLE,
    CM_CONDITIONAL_EXAMPLE,
    CM_POSITION_EXAMPLE,
    FakeBinanceUSDM,
)
from .fake_exchange.bybit import ACCOUNT_INFO_EXAMPLE, FakeBybit
from .fake_exchange.hyperliquid import FakeHyperliquid
from .fake_exchange.okx import FakeOKX
from .support.aio import background, run
from .support.fakes import ccxt_client, started
from .support.feeds import (
    BTC,
    FAST,
    FAST_OPTIONS,
    account_config,
    kept_open,
    make_feed,
    secrets,
    streaming,
)
from .support.poll import eventually

D = Decimal
USDC_BTC = "BTC/USDC:USDC"
FDUSD_BTC = "BTC/FDUSD:FDUSD"
HL_USER = "0x" + "5e" * 20
M = AccountMode
C = Coverage


# --- the readers, on the exchanges' documented answers -----------------------------------------


# ccxt okx.py, fetch_accounts: a real "Get account configuration" row (acctLv "2")
OKX_CONFIG_ROW = {
    "acctLv": "2", "acctStpMode": "cancel_maker", "autoLoan": False, "ctIsoMode": "automatic",
    "enableSpotBorrow": False, "greeksType": "PA", "feeType": "0", "ip": "", "type": "0",
    "kycLv": "3", "label": "v5 test", "level": "Lv1", "levelTmp": "", "liquidationGear": "-1",
    "mainUid": "44705892343619584", "mgnIsoMode": "automatic", "opAuth": "1",
    "perm": "read_only,withdraw,trade", "posMode": "long_short_mode", "roleType": "0",
    "spotBorrowAutoRepay": False, "spotOffsetType": "", "spotRoleType": "0",
    "spotTraderInsts": [], "traderInsts": [], "uid": "44705892343619584", "settleCcy": "USDT",
    "settleCcyList": ["USD", "USDC", "USDG"],
}  # fmt: skip

# Gate API v4 docs, "List sub-accounts' futures account balances": the usdt futures account of
# the documented example (a unified multi-currency account), trimmed to the mode's fields
GATE_UNIFIED_USDT = {
    "available": "500.7", "cross_available": "500.7", "cross_initial_margin": "0",
    "cross_maintenance_margin": "0", "cross_order_margin": "0", "cross_unrealised_pnl": "0",
    "currency": "USDT", "enable_credit": True, "enable_evolved_classic": True,
    "enable_new_dual_mode": True, "in_dual_mode": True, "isolated_position_margin": "0",
    "maintenance_margin": "0", "margin_mode": 1, "margin_mode_name": "multi_currency",
    "order_margin": "0", "point": "0", "position_initial_margin": "0", "position_margin": "0",
    "total": "0.000000005", "unrealised_pnl": "0", "update_id": 37, "update_time": 1741766400,
    "user": 10003,
}  # fmt: skip


def bybit_info(margin_mode: str) -> dict[str, Any]:
    """ccxt's recorded "Get Account Info" answer in ``margin_mode`` (the values Bybit's "Set
    Margin Mode" documents)."""
    return dict(ACCOUNT_INFO_EXAMPLE, marginMode=margin_mode)


def okx_config(level: str) -> dict[str, Any]:
    return {"code": "0", "data": [dict(OKX_CONFIG_ROW, acctLv=level)]}


def hl_mode(answer: str) -> ModeReading:
    return hyperliquid.abstraction_mode(HL_USER, answer)


CLASSIC = {"margin_mode": 0, "margin_mode_name": "classic"}


# (reader, the exchange's answer, mode, coverage, the reading's detail)
MODE_ANSWERS = {
    # developers.binance.com, USDⓈ-M "Get Current Multi-Assets Mode": the documented answer
    "binance-multi": (binance.usdm_mode, {"multiAssetsMargin": True}, M.MULTI_ASSETS, C.COMPUTED,
                      "multiAssetsMargin true"),
    "binance-single": (binance.usdm_mode, {"multiAssetsMargin": False}, M.SINGLE_ASSET,
                       C.COMPUTED, "multiAssetsMargin false"),
    # ccxt's options.portfolioMargin: Binance's own uniMMR (GET /papi/v1/account)
    "binance-portfolio": (functools.partial(binance.usdm_mode, portfolio_margin=True), None,
                          M.PORTFOLIO, C.EXCHANGE_RATIO, "options.portfolioMargin"),
    "bybit-regular": (bybit.account_mode, bybit_info("REGULAR_MARGIN"), M.UNIFIED_CROSS,
                      C.COMPUTED, "unifiedMarginStatus 4, marginMode REGULAR_MARGIN"),
    "bybit-isolated": (bybit.account_mode, bybit_info("ISOLATED_MARGIN"), M.UNIFIED_ISOLATED,
                       C.COMPUTED, "unifiedMarginStatus 4, marginMode ISOLATED_MARGIN"),
    "bybit-portfolio": (bybit.account_mode, bybit_info("PORTFOLIO_MARGIN"), M.PORTFOLIO,
                        C.EXCHANGE_RATIO, "unifiedMarginStatus 4, marginMode PORTFOLIO_MARGIN"),
    "bybit-new": (bybit.account_mode, bybit_info("SOMETHING_NEW"), M.UNKNOWN, C.EXCHANGE_RATIO,
                  "unifiedMarginStatus 4, marginMode SOMETHING_NEW"),
    # the recorded answer; OKX docs: acctLv 3 multi-currency margin, 4 portfolio margin, 1 spot
    # mode (no derivatives)
    "okx-2": (okx.account_mode, okx_config("2"), M.SINGLE_ASSET, C.COMPUTED, "acctLv 2"),
    "okx-3": (okx.account_mode, okx_config("3"), M.MULTI_ASSETS, C.COMPUTED, "acctLv 3"),
    "okx-4": (okx.account_mode, okx_config("4"), M.PORTFOLIO, C.EXCHANGE_RATIO, "acctLv 4"),
    "okx-1": (okx.account_mode, okx_config("1"), M.SIMPLE, C.REFUSED, "acctLv 1"),
    # the documented answer, then its other margin modes
    "gate-multi": (gate.futures_mode, GATE_UNIFIED_USDT, M.MULTI_ASSETS, C.COMPUTED,
                   "margin_mode 1 (multi_currency)"),
    "gate-portfolio": (gate.futures_mode,
                       GATE_UNIFIED_USDT | {"margin_mode": 2, "margin_mode_name": "portfolio"},
                       M.PORTFOLIO, C.EXCHANGE_RATIO, "margin_mode 2 (portfolio)"),
    "gate-single": (gate.futures_mode,
                    GATE_UNIFIED_USDT | {"margin_mode": 3, "margin_mode_name": "single_currency"},
                    M.UNIFIED_SINGLE_CURRENCY, C.COMPUTED,
                    "margin_mode 3 (single_currency)"),
    "gate-classic": (gate.futures_mode, GATE_UNIFIED_USDT | CLASSIC | {"enable_tiered_mm": True},
                     M.SINGLE_ASSET, C.COMPUTED, "margin_mode 0 (classic)"),
    # derived: the classic account without tiered MM
    "gate-old-classic": (gate.futures_mode,
                         GATE_UNIFIED_USDT | CLASSIC | {"enable_tiered_mm": False}, M.LEGACY,
                         C.NOT_COMPUTED, "margin_mode 0 (classic), old classic"),
    # an account from before these fields: no cross pool, no tiers said -> old classic
    "gate-no-fields": (gate.futures_mode, {"total": "10", "maintenance_margin": "1"}, M.LEGACY,
                       C.NOT_COMPUTED, "margin_mode not given, old classic"),
    "hyperliquid-default": (hl_mode, '"default"', M.SINGLE_ASSET, C.COMPUTED,
                            "userAbstraction default"),
    "hyperliquid-disabled": (hl_mode, '"disabled"', M.SINGLE_ASSET, C.COMPUTED,
                             "userAbstraction disabled"),
    # hyperliquid-docs "Account abstraction modes"; the unified account is one USDC pool
    "hyperliquid-unified": (hl_mode, '"unifiedAccount"', M.UNIFIED_ACCOUNT, C.COMPUTED,
                            "userAbstraction unifiedAccount"),
    "hyperliquid-portfolio": (hl_mode, '"portfolioMargin"', M.PORTFOLIO, C.EXCHANGE_RATIO,
                              "userAbstraction portfolioMargin"),
    "hyperliquid-dex": (hl_mode, '"dexAbstraction"', M.SINGLE_ASSET, C.COMPUTED,
                        "userAbstraction dexAbstraction"),
    "hyperliquid-new": (hl_mode, '"newThing"', M.UNKNOWN, C.REFUSED, "userAbstraction unknown"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("read", "answer", "mode", "coverage", "detail"),
    list(MODE_ANSWERS.values()),
    ids=list(MODE_ANSWERS),
)
def test_mode_read_from_the_exchanges_answer(
    read: Callable[[Any], ModeReading],
    answer: Any,
    mode: AccountMode,
    coverage: Coverage,
    detail: str,
) -> None:
    reading = read(answer)
    assert (reading.mode, reading.coverage, reading.detail) == (mode, coverage, detail)


# Binance FAQ "How to Use the Binance Portfolio Margin Pro Program APIs": the documented answer
# of the account's uniMMR and status (GET /papi/v1/account carries the same fields)
PAPI_ACCOUNT_EXAMPLE = {
    "uniMMR": "1.87987800", "accountEquity": "122607.35137903", "actualEquity": "142607.35137903",
    "accountMaintMargin": "23.72469206", "accountStatus": "NORMAL",
}  # fmt: skip


def test_binance_portfolio_account_is_binance_s_uni_mmr_over_its_liquidation_level() -> None:
    read = binance.portfolio_account(PAPI_ACCOUNT_EXAMPLE)
    assert read.margin_ratio == D("1.05") / D("1.87987800")  # 55.85%: 100% at uniMMR 1.05
    # the equity the ratio moves by is uniMMR's numerator, not accountEquity (the docs'
    # example figures are not of one account: 122,607 / 23.72 would be a uniMMR of 5,168)
    assert read.margin_balance == D("1.87987800") * D("23.72469206")
    assert read.maintenance_margin == D("23.72469206")
    # nothing required: no ratio to move, nothing at risk
    nothing = binance.portfolio_account(PAPI_ACCOUNT_EXAMPLE | {"accountMaintMargin": "0"})
    assert (nothing.margin_ratio, nothing.margin_balance) == (0, None)
    # an equity gone below zero: past liquidation, whatever the requirement
    gone = binance.portfolio_account(PAPI_ACCOUNT_EXAMPLE | {"uniMMR": "-0.5"})
    assert gone.margin_ratio is not None and gone.margin_ratio.is_infinite()
    for bad in ({"uniMMR": None}, {"accountMaintMargin": "-1"}, {"uniMMR": "x"}):
        with pytest.raises(FrameError):
            binance.portfolio_account(PAPI_ACCOUNT_EXAMPLE | bad)
    with pytest.raises(FrameError):
        binance.portfolio_account([])


def test_binance_portfolio_mode_limits_say_what_moves_with_the_marks() -> None:
    """The portfolio margin mode's limits (status, snapshot, the mode's message) say what
    moves between reads as the code moves it: the COIN-M positions' requirement across their
    brackets and their coins' whole equity (cross margin less loans beside the COIN-M and UM
    wallets) at the coin's collateral tiers; only the other coins and their loans stay as
    read. Before, they said "loans and other coins stay as read" (review of pm13)."""
    limits = binance.PORTFOLIO_MODE.limits
    for said in ("brackets", "cross margin less loans", "collateral tiers"):
        assert said in limits, said
    assert "other coins and their loans stay as read" in limits
    assert "loans and other coins" not in limits


def test_binance_risk_level_change_push_is_a_margin_call_naming_uni_mmr() -> None:
    # developers.binance.com, Portfolio Margin user data streams, "Event: riskLevelChange":
    # the documented example
    push = {
        "e": "riskLevelChange", "E": 1587727187525, "u": "1.99999999", "s": "MARGIN_CALL",
        "eq": "30.23416728", "ae": "30.23416728", "m": "15.11708371",
    }  # fmt: skip
    event = binance.BinanceUSDMAdapter().event(push, 12.5)
    assert event is not None and (event.kind, event.at) == (binance.MARGIN_CALL, 12.5)
    assert event.detail == (
        "MARGIN_CALL: Binance's uniMMR 1.99999999, equity 30.23416728 USD, maintenance margin "
        "15.11708371 USD"
    )


def test_unreadable_mode_answers() -> None:
    with pytest.raises(FrameError):
        binance.usdm_mode({"multiAssetsMargin": None})
    with pytest.raises(FrameError):
        okx.account_mode({"code": "0", "data": []})


def test_reading_labels() -> None:
    assert ModeReading(M.MULTI_ASSETS, "acctLv 3").label == "multi-assets (acctLv 3)"
    assert ModeReading(M.UNKNOWN, "").label == "not read yet"


# --- the feeds against the local exchanges -----------------------------------------------------


def watched(feed: AccountFeed) -> list[Change]:
    changes: list[Change] = []
    feed.listeners.append(lambda _feed, change, _symbol: changes.append(change))
    return changes


KEY, SECRET = "key-a", "secret-a"


def feed_on(fake: Any, exchange: str) -> AccountFeed:
    """The feed of account ``KEY`` on ``fake`` (with OKX's passphrase there)."""
    keys = {"api_key": Secret(KEY), "secret": Secret(SECRET)}
    if exchange == "okx":
        keys["password"] = Secret(FakeOKX.PASSPHRASE)
    return AccountFeed(account_config("a", exchange, fake), keys, FAST, FAST_OPTIONS)


@contextlib.asynccontextmanager
async def long_btc(
    fake: Any, exchange: str, wallet: str, contracts: str
) -> AsyncIterator[tuple[AccountFeed, AccountState]]:
    """``fake`` serving one account (``KEY``) with ``wallet``, long ``contracts`` of BTC at
    60,000, and that account's feed after its bootstrap, open for reconciles."""
    async with started(fake, [(KEY, SECRET, wallet)]):
        fake.set_mark(BTC, "60000")
        fake.open_position(KEY, BTC, "long", contracts, "60000")
        async with kept_open(feed_on(fake, exchange)) as feed:
            yield feed, feed.state


def test_binance_switch_to_multi_assets_and_back_without_a_restart() -> None:
    async def body() -> None:
        fake = FakeBinanceUSDM()
        async with long_btc(fake, "binanceusdm", "2000", "1") as (feed, state):
            assert state.mode.mode is M.SINGLE_ASSET and state.mode.coverage is C.COMPUTED
            assert state.computable and feed.ratios is not None
            ours, theirs = feed.ratios
            assert abs(ours - theirs) / theirs < D("0.001")  # alertd reproduces Binance

            fake.set_multi_assets(KEY, True, {"USDC": ("22", "0.9999")})
            await feed.reconcile()  # the next reconcile, same feed, no restart
            assert state.fatal is None
            assert state.mode.mode is M.MULTI_ASSETS
            # the USD pool: the USDT wallet and the USDC at its index, computed by alertd
            assert state.mode.coverage is C.COMPUTED and state.computable
            assert [(c.asset, c.amount) for c in state.collateral] == [("USDC", D(22))]
            served = fake.account_v3(KEY)
            expected = D(served["totalMaintMargin"]) / D(served["totalMarginBalance"])
            assert state.reported_account.margin_ratio == expected
            assert feed.ratios is not None and feed.ratios[1] == expected
            assert abs(feed.ratios[0] / expected - 1) < D("1e-9")

            fake.set_multi_assets(KEY, False)
            await feed.reconcile()
            assert state.mode.mode is M.SINGLE_ASSET and state.computable

    run(body())


def spent_weight(fake: FakeBinanceUSDM) -> float:
    """The request weight the local Binance counted since its reset, at Binance's documented
    weights, in USDⓈ-M weight: a /papi weight counts its share of papi's own budget (6,000 a
    minute against USDⓈ-M's 2,400)."""
    assert fake.unweighed == []
    return fake.used_weight["fapi"] + fake.used_weight["papi"] * 2400 / 6000


def test_binance_snapshot_weight_is_what_the_account_s_mode_reads() -> None:
    """A reconcile's snapshot weighs what the local Binance counts of it, and the feed plans
    its reconciles with that: single-asset 10 (positionRisk 5, account 5); multi-assets 20
    (every coin's assetIndex, 10, was left out: the per-IP pacing planned half of it)."""

    async def body() -> None:
        fake = FakeBinanceUSDM()
        async with long_btc(fake, "binanceusdm", "2000", "1") as (feed, state):
            every = feed.settings.stops_reconcile_every
            for multi_assets, weight in ((False, 10), (True, 20)):
                fake.set_multi_assets(KEY, multi_assets, {"USDC": ("22", "0.9999")})
                await feed.reconcile()  # the mode as read, and any mark it seeds
                fake.reset_weight()
                await feed.resync(stops=False)
                assert state.mode.mode is (M.MULTI_ASSETS if multi_assets else M.SINGLE_ASSET)
                assert spent_weight(fake) == weight
                assert feed.reconcile_weight() == weight + binance.usdm_stops_weight(1) / every

    run(body())


def portfolio_margin_config(fake: FakeBinanceUSDM) -> AccountConfig:
    """Account ``KEY`` on the local Binance with ccxt's ``options.portfolioMargin``."""
    config = account_config("p", "binanceusdm", fake)
    return config.model_copy(update={"options": {**config.options, "portfolioMargin": True}})


def test_binance_portfolio_margin_shows_binance_s_uni_mmr_moved_with_the_marks() -> None:
    """A portfolio margin account: positions from /papi/v1/um/positionRisk, the UM wallet from
    /papi/v1/um/account, the ratio Binance's uniMMR from /papi/v1/account (1.05 / uniMMR: 1
    where Binance liquidates), moved with the marks until the next reconcile reads it again.
    An open-order loss makes ``accountEquity`` differ from uniMMR's numerator: the ratio moves
    from the numerator (uniMMR x accountMaintMargin), so that the moved figure is Binance's
    next read."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            fake.set_portfolio_margin(KEY, open_loss="300")
            fake.set_mark(BTC, "60000")
            fake.open_position(KEY, BTC, "long", "1", "60000")
            feed = make_feed(portfolio_margin_config(fake), KEY, SECRET)
            async with kept_open(feed):
                state = feed.state
                assert (state.mode.mode, state.mode.coverage) == (M.PORTFOLIO, C.EXCHANGE_RATIO)
                assert "Binance's own uniMMR" in state.mode.limits
                assert state.fatal is None and not state.computable
                held = [(p.symbol, p.contracts) for p in state.positions.values()]
                assert held == [(BTC, 1)]
                assert state.wallet_balance == 2000  # the UM wallet of /papi/v1/um/account
                read = fake.portfolio_account(KEY)
                uni = D(read["uniMMR"])
                assert uni > binance.PORTFOLIO_LIQUIDATION_UNI_MMR  # a healthy account
                assert D(read["accountEquity"]) != uni * D(read["accountMaintMargin"])
                ratio, _ = state.exchange_ratio()  # at the marks it was read at
                assert ratio is not None
                assert abs(ratio * uni / binance.PORTFOLIO_LIQUIDATION_UNI_MMR - 1) < D("1e-20")
                # Binance's liquidation price of the position, for the drift comparison
                reported = state.reported_positions[(BTC, Side.LONG)]
                assert reported.liquidation_price is not None

                fake.set_mark(BTC, "59000")
                state.set_mark(BTC, D("59000"), 1.0)  # as the mark stream sets it
                moved_ratio, moved = state.exchange_ratio()
                assert moved and moved_ratio is not None and moved_ratio > ratio
                now_read = fake.portfolio_account(KEY)
                then = D(now_read["uniMMR"])
                theirs = binance.PORTFOLIO_LIQUIDATION_UNI_MMR / then
                assert abs(moved_ratio / theirs - 1) < D("1e-7")  # uniMMR's 8 decimals
                # Binance's equity (uniMMR's numerator) moves with it: what a stop's loss is a
                # share of (stop-max-loss-share), Binance's own at the new mark
                equity = state.exchange_equity()
                assert equity is not None
                assert abs(equity / (then * D(now_read["accountMaintMargin"])) - 1) < D("1e-7")
                assert [p.equity for p in state.exchange_ratio_positions()] == [equity]

                await feed.reconcile()  # Binance's figure read again
                assert state.reported_account.margin_ratio is not None
                assert abs(state.reported_account.margin_ratio / theirs - 1) < D("1e-20")

    run(body())


def portfolio_long_btc(fake: FakeBinanceUSDM) -> AccountFeed:
    """Account ``KEY`` on ``fake`` in portfolio margin, long 1 BTC at 60,000, and its feed."""
    fake.set_portfolio_margin(KEY)
    fake.set_mark(BTC, "60000")
    fake.open_position(KEY, BTC, "long", "1", "60000")
    return make_feed(portfolio_margin_config(fake), KEY, SECRET)


def test_binance_portfolio_snapshot_weight_is_its_papi_reads() -> None:
    """A portfolio margin account's snapshot is /papi reads, counted by Binance against the
    Portfolio Margin API's own 6,000 a minute: Account Information 20, the UM positions and
    account 5 each, the COIN-M positions 1 (31 papi weight, 12.4 in the pacing window, not
    the single-asset 10 the plan counted); with a COIN-M position held, its conditional orders
    (1), the COIN-M account (5), its brackets (1) and the account's balances (20) too. Going
    live it adds the UM brackets and the listen key, known from its config before anything
    is read."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = portfolio_long_btc(fake)
            assert feed.live_weight() == pytest.approx((31 + 2) * 0.4)
            fake.reset_weight()
            async with kept_open(feed):
                # the bootstrap: the snapshot, its UM stops (2, per held symbol) and brackets;
                # the listen key comes with the streams
                assert fake.used_weight["papi"] == 31 + 2 + 1
                for cm_rows, papi in (([], 31), ([CM_POSITION_EXAMPLE], 31 + 1 + 5 + 1 + 20)):
                    fake.set_cm_positions(KEY, cm_rows)
                    await feed.reconcile()
                    fake.reset_weight()
                    await feed.resync(stops=False)
                    # the COIN-M catalogue (dapi) was loaded once, at the first COIN-M position,
                    # and the collateral rates (sapi) read once for the exchange with it
                    assert fake.used_weight == {"fapi": 0, "papi": papi, "dapi": 0, "sapi": 0}
                    assert feed.adapter.snapshot_weight() == pytest.approx(spent_weight(fake))
                # its UM stops are read at every reconcile (no push says one was cancelled),
                # per held symbol under /papi: the reconcile's weight is all it sends
                fake.reset_weight()
                await feed.resync()
                papi = 31 + 1 + 5 + 1 + 20 + 2
                assert fake.used_weight == {"fapi": 0, "papi": papi, "dapi": 0, "sapi": 0}
                assert fake.collateral_rate_reads == 1
                assert feed.reconcile_weight() == pytest.approx(spent_weight(fake))

    run(body())


def test_binance_portfolio_margin_reads_its_um_conditional_orders() -> None:
    """A portfolio margin account's stops: UM algo orders (GET /papi/v1/um/algo/openAlgoOrders,
    where ccxt places them) and those placed before the Algo Service (GET
    /papi/v1/um/conditional/openOrders, ``strategyType``/``stopPrice``/``origQty``), read per
    held symbol; none open reads as no stop (not as unread)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = portfolio_long_btc(fake)
            async with kept_open(feed):
                state = feed.state
                assert state.stops == ()  # read: nothing open
                # no push of its conditional orders reaches alertd (ccxt does not deliver the
                # PM stream's CONDITIONAL_ORDER_TRADE_UPDATE): read at every reconcile
                assert feed.adapter.watches_stops is False
                algo = fake.add_stop(KEY, BTC, "long", "55000")  # the whole position
                legacy = fake.add_stop(KEY, BTC, "long", "66000", "0.4", kind="take_profit")
                fake.as_strategy_order(legacy)
                fake.requests.clear()
                await feed.resync()
                assert state.stops is not None
                got = {s.order_id: s for s in state.stops}
                assert sorted(got) == sorted([algo, legacy])
                stop, take = got[algo], got[legacy]
                assert (stop.kind, stop.trigger, stop.trigger_price) == (
                    StopKind.STOP,
                    Trigger.FALL,
                    D(55000),
                )
                assert stop.contracts is None and stop.side is Side.LONG  # closePosition
                assert (take.kind, take.trigger, take.trigger_price, take.contracts) == (
                    StopKind.TAKE_PROFIT,
                    Trigger.RISE,
                    D(66000),
                    D("0.4"),
                )
                assert take.side is Side.LONG and take.reduce_only
                paths = [path for _, path in fake.requests if "rders" in path]
                assert sorted(paths) == [
                    "/papi/v1/um/algo/openAlgoOrders",
                    "/papi/v1/um/conditional/openOrders",
                ]
                # shown beside Binance's ratio: the closest stop, all of the position covered,
                # against Binance's liquidation price
                (position,) = state.exchange_ratio_positions()
                liq = position.liquidation_price
                assert position.stop is not None and liq is not None
                assert (position.stop.price, position.stop.coverage) == (D(55000), 1)
                assert position.stop.beyond_liquidation == (liq - 55000) / 60000

    run(body())


def test_binance_portfolio_coin_m_positions_are_listed_as_binance_reads_them() -> None:
    """ "Query CM Position Information" (GET /papi/v1/cm/positionRisk): the docs' example
    (hedge mode, LONG) and a one-way short, each with Binance's figures and the distance to
    its liquidation price at Binance's mark of the read; empty one-way rows left out."""
    short = CM_POSITION_EXAMPLE | {
        "symbol": "ETHUSD_PERP", "positionAmt": "-3", "positionSide": "BOTH",
        "entryPrice": "3000", "markPrice": "2500", "liquidationPrice": "4000",
        "unRealizedProfit": "0.02", "notionalValue": "-0.12",
    }  # fmt: skip
    empty = CM_POSITION_EXAMPLE | {
        "symbol": "BNBUSD_PERP",
        "positionAmt": "0",
        "positionSide": "BOTH",
    }
    listed = binance.cm_positions([CM_POSITION_EXAMPLE, short, empty], lambda i: i)
    long, eth = listed
    mark = D("11788.66626667")
    assert (long.symbol, long.side, long.contracts, long.mark_price) == (
        "BTCUSD_201225",
        Side.LONG,
        1,
        mark,
    )
    assert long.liquidation_distance == (mark - D("6170.20509059")) / mark
    assert (long.notional, long.unrealized_pnl, long.as_read) == (
        D("0.00084827"),
        D("0.00005866"),
        True,
    )
    assert (eth.side, eth.contracts, eth.notional) == (Side.SHORT, 3, D("0.12"))
    assert eth.liquidation_distance == (D(4000) - D(2500)) / D(2500)
    none = binance.cm_positions([CM_POSITION_EXAMPLE | {"liquidationPrice": "0"}], str)
    assert none[0].liquidation_price is None and none[0].liquidation_distance is None
    with pytest.raises(FrameError, match=r"^cm/positionRisk ETHUSD_PERP markPrice: missing$"):
        binance.cm_positions([{**short, "markPrice": None}], str)
    with pytest.raises(FrameError, match=r"^cm/positionRisk: expected a list"):
        binance.cm_positions({"code": -1}, str)


def test_binance_coin_m_position_s_coin_is_its_market_s_settle_or_the_row_s_margin_asset() -> None:
    """A COIN-M position's coin: its market's settle in the COIN-M catalogue (``marginAsset``
    of GET /dapi/v1/exchangeInfo), BTC for the quarterly BTCUSD_201225 whose ccxt symbol is
    BTC/USD:BTC-201225 (before, cut from the symbol: "BTC-201225", no rate, no wallet); where
    the catalogue does not know the market, the row's own ``marginAsset`` where Binance sends
    one (the /dapi rows do; the /papi docs' example has none: then None, not a guess)."""
    quarterly = "BTC/USD:BTC-201225"

    def symbol_of(market_id: str) -> str:
        return quarterly if market_id == "BTCUSD_201225" else market_id

    def coin_of(market_id: str) -> str | None:
        return "BTC" if market_id == "BTCUSD_201225" else None

    unknown = CM_POSITION_EXAMPLE | {"symbol": "ETHUSD_PERP", "marginAsset": "ETH"}
    bare = CM_POSITION_EXAMPLE | {"symbol": "BNBUSD_PERP"}
    rows = [CM_POSITION_EXAMPLE, unknown, bare]
    listed = binance.cm_positions(rows, symbol_of, lambda i: None, coin_of)
    assert [(p.symbol, p.coin) for p in listed] == [
        (quarterly, "BTC"),
        ("ETHUSD_PERP", "ETH"),
        ("BNBUSD_PERP", None),
    ]


def test_binance_coin_m_maintenance_margins_are_binance_s_cm_account_rows() -> None:
    """ "Get CM Account Detail" (GET /papi/v1/cm/account): the docs' example (every symbol
    listed, this one empty: left out) and a held row in each position mode, by symbol and
    side; a row without its margin is a frame error naming it."""
    empty = CM_ACCOUNT_EXAMPLE["positions"][0]
    long = empty | {"positionAmt": "2", "positionSide": "LONG", "maintMargin": "0.0012"}
    short = empty | {"symbol": "ETHUSD_PERP", "positionAmt": "-3", "maintMargin": "0.05"}
    answer = CM_ACCOUNT_EXAMPLE | {"positions": [empty, long, short]}
    assert binance.cm_maintenance_margins(answer, str) == {
        ("BTCUSD_201225", Side.LONG): D("0.0012"),
        ("ETHUSD_PERP", Side.SHORT): D("0.05"),
    }
    assert binance.cm_maintenance_margins(CM_ACCOUNT_EXAMPLE, str) == {}
    with pytest.raises(FrameError, match=r"^cm/account ETHUSD_PERP maintMargin: missing$"):
        binance.cm_maintenance_margins({"positions": [short | {"maintMargin": None}]}, str)
    with pytest.raises(FrameError, match=r"^cm/account: expected an object"):
        binance.cm_maintenance_margins([], str)


def test_binance_portfolio_margin_lists_its_coin_m_positions() -> None:
    """The feed on the local Binance's /papi: the UM position followed at the live mark, the
    COIN-M one (no COIN-M market loaded: Binance's id) listed as the reconcile read it."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = portfolio_long_btc(fake)
            fake.set_cm_positions(KEY, [CM_POSITION_EXAMPLE])
            # the connector's example made a stop of the long: a sell closing 0.4 of it at
            # 9,300 (its mark 11,788.67), asked by the position's symbol; one of another
            # symbol protects nothing of it
            stop = CM_CONDITIONAL_EXAMPLE | {
                "symbol": "BTCUSD_201225", "strategyType": "STOP_MARKET", "side": "SELL",
                "positionSide": "LONG",
            }  # fmt: skip
            fake.set_cm_conditional_orders(KEY, [stop, CM_CONDITIONAL_EXAMPLE])
            # Binance's COIN-M account: the long's maintenance margin, in BTC
            held = CM_ACCOUNT_EXAMPLE["positions"][0] | {
                "positionAmt": "1", "positionSide": "LONG", "maintMargin": "0.00001697",
            }  # fmt: skip
            fake.set_cm_account(KEY, CM_ACCOUNT_EXAMPLE | {"positions": [held]})
            async with kept_open(feed):
                um, cm = feed.state.exchange_ratio_positions()
                assert (um.maintenance_margin, cm.maintenance_margin) == (None, D("0.00001697"))
                assert (um.symbol, um.as_read, cm.symbol, cm.as_read) == (
                    BTC,
                    False,
                    "BTCUSD_201225",
                    True,
                )
                assert cm.liquidation_price == D("6170.20509059")
                assert cm.stop is not None
                assert (cm.stop.price, cm.stop.coverage, cm.stop.orders) == (D(9300), D("0.4"), 1)
                assert cm.stop.beyond_liquidation == (D("6170.20509059") - 9300) / cm.mark_price
                asked = [path for _, path in fake.requests if path.startswith("/papi/v1/cm/")]
                assert "/papi/v1/cm/conditional/openOrders" in asked
                fake.set_cm_positions(KEY, [])  # closed: gone at the next reconcile
                fake.requests.clear()
                await feed.reconcile()
                assert [p.symbol for p in feed.state.exchange_ratio_positions()] == [BTC]
                # with no COIN-M position the COIN-M account is not read (its weight spared)
                assert ("GET", "/papi/v1/cm/account") not in fake.requests

    run(body())


COIN_M_BTC = "BTC/USD:BTC"  # BTCUSD_PERP in ccxt's binancecoinm catalogue
EIGHT = D("0.00000001")


def portfolio_with_coin_m_long(fake: FakeBinanceUSDM) -> AccountFeed:
    """:func:`portfolio_long_btc`, and a COIN-M long beside it: 3 BTCUSD_PERP contracts (300
    USD) at 62,000, its mark 61,000, Binance's liquidation price of the account 40,000."""
    feed = portfolio_long_btc(fake)
    fake.set_cm_mark("BTCUSD_PERP", "61000")
    fake.open_cm_position(KEY, "BTCUSD_PERP", "3", "62000", "40000")
    return feed


@contextlib.asynccontextmanager
async def coin_m_streaming() -> AsyncIterator[tuple[FakeBinanceUSDM, AccountFeed]]:
    """The local Binance serving :func:`portfolio_with_coin_m_long`'s account (20,000 USDT)
    and its feed streaming, its user stream and COIN-M mark stream subscribed."""
    async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
        feed = portfolio_with_coin_m_long(fake)
        async with streaming(feed):
            await fake.wait_for_user_stream(KEY, 10)
            await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
            yield fake, feed


async def both_marks_at(
    fake: FakeBinanceUSDM,
    state: Any,
    um_mark: str,
    cm_mark: str,
    cm_market: tuple[str, str] = ("BTCUSD_PERP", COIN_M_BTC),
) -> None:
    """The local Binance's BTC marks moved, USDⓈ-M's to ``um_mark`` and the COIN-M market's
    (``cm_market``: its id and ccxt symbol, BTCUSD_PERP's by default) to ``cm_mark``, and
    both streamed into ``state``; another COIN-M market's moves BTCUSD_PERP's with it (the
    coin's index on the local Binance)."""
    market_id, symbol = cm_market
    fake.set_mark(BTC, um_mark)
    fake.set_cm_mark("BTCUSD_PERP", cm_mark)
    if market_id != "BTCUSD_PERP":
        fake.set_cm_mark(market_id, cm_mark)
    marks = {symbol: D(cm_mark), BTC: D(um_mark)}
    await eventually(
        lambda: all(state.marks.get(s) == m for s, m in marks.items()),
        what="the COIN-M and UM marks",
    )


def test_binance_portfolio_coin_m_position_follows_its_coin_m_mark_between_reconciles() -> None:
    """A COIN-M long (3 BTCUSD_PERP contracts of 100 USD at 62,000) beside the UM long: named
    by the COIN-M catalogue (GET /dapi/v1/exchangeInfo), its mark followed on the COIN-M mark
    stream (dstream's ``btcusd_perp@markPrice``), so that without a reconcile its PnL and
    notional in the coin are Binance's "Query CM Position Information" at the new mark (the
    local Binance's, to its 8 decimals), the distance to Binance's liquidation price (as
    read) at that mark, and uniMMR moved with its PnL in USD is Binance's next uniMMR."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            feed = portfolio_with_coin_m_long(fake)
            async with streaming(feed):
                state = feed.state
                await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
                (cm,) = [p for p in state.exchange_ratio_positions() if p.inverse]
                assert (cm.symbol, cm.mark_price) == (COIN_M_BTC, 61000)
                assert [p.quantity for p in state.listed_positions] == [300]  # in USD
                assert cm.stop_loss is None  # in the coin: no loss of the account's USDT
                for um_mark, cm_mark in (("60000", "55000"), ("58000", "52000")):
                    await both_marks_at(fake, state, um_mark, cm_mark)
                    (row,) = fake.cm_position_risk(KEY)
                    (cm,) = [p for p in state.exchange_ratio_positions() if p.inverse]
                    assert not cm.as_read and cm.mark_price == D(cm_mark)
                    assert cm.unrealized_pnl is not None and cm.notional is not None
                    assert cm.unrealized_pnl.quantize(EIGHT) == D(row["unRealizedProfit"])
                    assert cm.notional.quantize(EIGHT) == D(row["notionalValue"])
                    assert cm.liquidation_price == 40000  # Binance's, as read
                    assert cm.liquidation_distance == (D(cm_mark) - 40000) / D(cm_mark)
                    ratio, moved = state.exchange_ratio()
                    assert moved and ratio is not None
                    theirs = D(fake.portfolio_account(KEY)["uniMMR"])
                    ours = binance.PORTFOLIO_LIQUIDATION_UNI_MMR / ratio
                    # within what Binance's own figures carry: the COIN-M maintenance
                    # margin is read to 8 decimals of a BTC (half of one at 61,000 is 0.0003
                    # USD of about 233 USD: 1.3e-6), uniMMR to 8 decimals
                    assert abs(ours / theirs - 1) < D("1.3e-6"), (ours, theirs)

    run(body())


def hedged_600_short(
    fake: FakeBinanceUSDM, wallet: str, market_id: str = "BTCUSD_PERP"
) -> AccountFeed:
    """The hedge of issue 11 on the local Binance: a portfolio margin account long 1 BTC on
    USDⓈ-M at 60,000, short 600 contracts (60,000 USD) of the COIN-M ``market_id`` at 60,000
    (its mark and BTCUSD_PERP's, the coin's index here, at 60,000; Binance's liquidation price
    of the account 90,000), a COIN-M wallet of ``wallet`` BTC, BTC's collateral rate 0.95;
    and its feed (not started)."""
    fake.set_portfolio_margin(KEY)
    fake.set_mark(BTC, "60000")
    fake.open_position(KEY, BTC, "long", "1", "60000")
    fake.set_cm_mark("BTCUSD_PERP", "60000")
    fake.set_cm_mark(market_id, "60000")
    fake.set_cm_coin(KEY, "BTC", wallet, "0.95")
    fake.open_cm_position(KEY, market_id, "-600", "60000", "90000")
    # no stale reconnects on a loaded machine between the marks set and streamed
    settings = FAST.model_copy(update={"stale_after_s": 30.0})
    return AccountFeed(portfolio_margin_config(fake), secrets(KEY, SECRET), settings, FAST_OPTIONS)


def moved_as_binance_s_next(fake: FakeBinanceUSDM, state: Any, what: str) -> Decimal:
    """The account's ratio moved with the marks, checked to be the local Binance's next
    uniMMR (as 1.05 / uniMMR) within 1e-7; returned."""
    ratio, moved = state.exchange_ratio()
    assert moved and ratio is not None
    theirs = D(fake.portfolio_account(KEY)["uniMMR"])
    ours = binance.PORTFOLIO_LIQUIDATION_UNI_MMR / ratio
    assert abs(ours / theirs - 1) < D("1e-7"), (what, ours, theirs)
    return Decimal(ratio)


@pytest.mark.parametrize("wallet", ["0", "0.01", "-0.015"])
def test_binance_portfolio_coin_m_hedge_counts_gains_and_wallets_at_binance_s_collateral_rate(
    wallet: str,
) -> None:
    """The hedge of issue 11: UM long 1 BTC, COIN-M short 600 BTCUSD_PERP (60,000 USD) at
    60,000, 2,000 USDT, a COIN-M wallet of ``wallet`` BTC; BTC's collateral rate 0.95 as
    "Portfolio Margin Pro Tiered Collateral Rate" lists it (GET
    /sapi/v2/portfolio/collateralRate). uniMMR counts the coin's equity, the wallet and the
    short's PnL, as min(equity x index x rate, equity x index) (Binance FAQ "What Is the
    Unified Account Maintenance Margin Ratio (uniMMR)"). As BTC falls 17% and 50% with no
    reconcile, the moved ratio is the local Binance's next uniMMR (within its 8 decimals):
    the short's gain counts at 0.95, the wallet moves with the mark (a negative one, a loss
    realized in the coin, in full until the gain lifts it above zero). Before the rates were
    read the gain counted 0: critical (above 100%) after a 17% fall. The rates are read once
    for the exchange, not at every reconcile."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = hedged_600_short(fake, wallet)
            async with streaming(feed):
                state = feed.state
                # both marks streamed before they move (the local Binance pushes a change once)
                await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
                await fake.wait_for_subscription("btcusdt@markPrice@1s", 10)
                for mark in ("49800", "30000"):
                    await both_marks_at(fake, state, mark, mark)
                    ratio = moved_as_binance_s_next(fake, state, mark)
                    if mark == "49800":  # 17%: critical before the rates were read
                        assert ratio < 1, f"{ratio:.1%} at {mark}: critical where Binance is not"
                await feed.reconcile()
                assert fake.collateral_rate_reads == 1

    run(body())


def test_binance_portfolio_collateral_rates_refused_are_named_in_the_limits() -> None:
    """The hedge above with "Portfolio Margin Pro Tiered Collateral Rate" refused (-21001):
    Binance's FAQ "How to Use the Binance Portfolio Margin Pro Program APIs" says its
    endpoints "will not be available for Portfolio Margin (unless under exceptional
    circumstances)", so a portfolio margin account may never be served the tiers. The
    short's gain then counts 0 between reconciles (the moved ratio above Binance's next:
    early, never late), and the account's limits (status, snapshot) say so, naming BTC;
    before, only a log line said the read failed. Served, no such words."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            fake.collateral_rates_refused = True
            feed = hedged_600_short(fake, "0")
            async with streaming(feed):
                state = feed.state
                assert state.fatal is None and state.mode.mode is M.PORTFOLIO
                assert (
                    "no collateral rate read for BTC (GET /sapi/v2/portfolio/collateralRate, "
                    "a Portfolio Margin Pro endpoint): its COIN-M gains count 0 between "
                    "reconciles" in state.mode.limits
                )
                await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
                await fake.wait_for_subscription("btcusdt@markPrice@1s", 10)
                await both_marks_at(fake, state, "49800", "49800")
                ratio, moved = state.exchange_ratio()
                assert moved and ratio is not None
                theirs = D(fake.portfolio_account(KEY)["uniMMR"])
                assert ratio > binance.PORTFOLIO_LIQUIDATION_UNI_MMR / theirs
            fake.collateral_rates_refused = False
            feed = hedged_600_short(fake, "0")
            async with streaming(feed):
                assert "no collateral rate read" not in feed.state.mode.limits
                assert fake.collateral_rate_reads >= 2

    run(body())


# BTC's collateral tiers scripted on the local Binance ("Portfolio Margin Pro Tiered Collateral
# Rate" fields): 95% of the value to 100,000 USD, 90% of the part to 200,000, 80% above
BTC_COLLATERAL_TIERS = [
    {"tierFloor": "0.0000", "tierCap": "100000.0000", "collateralRate": "0.9500",
     "cum": "0.0000"},
    {"tierFloor": "100000.0000", "tierCap": "200000.0000", "collateralRate": "0.9000",
     "cum": "5000.0000"},
    {"tierFloor": "200000.0000", "tierCap": "999999999.0000", "collateralRate": "0.8000",
     "cum": "25000.0000"},
]  # fmt: skip


@pytest.mark.parametrize("mark", ["49800", "30000", "70000"])
def test_binance_portfolio_coin_s_whole_equity_moves_and_is_placed_in_its_collateral_tiers(
    mark: str,
) -> None:
    """The hedge (:func:`hedged_600_short`, a COIN-M wallet of 0.01 BTC) with BTC also in the
    cross margin account (2 BTC, 0.5 borrowed, 0.001 of interest) and the UM wallet (0.3),
    as "Account Balance" (GET /papi/v1/balance) lists them, and BTC's tiered collateral
    rates (:data:`BTC_COLLATERAL_TIERS`). BTC's equity, 1.809 BTC (108,540 USD at 60,000:
    the second tier) and the short's PnL, moves with the mark, and uniMMR counts each tier's
    rate on the part of the value within it. With no reconcile, at ``mark`` (across the
    100,000 USD edge at 49,800 and 30,000, up at 70,000) the moved ratio is the local
    Binance's next uniMMR to 1e-7. Before, the cross margin and UM BTC stood as read in USD
    and a tiered coin's change counted at its lowest or highest rate."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = hedged_600_short(fake, "0.01")
            fake.set_collateral_tiers("BTC", BTC_COLLATERAL_TIERS)
            fake.set_pm_coin_balance(
                KEY, "BTC", cross_margin="2", borrowed="0.5", interest="0.001", um_wallet="0.3"
            )
            async with streaming(feed):
                state = feed.state
                await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
                await fake.wait_for_subscription("btcusdt@markPrice@1s", 10)
                (cm,) = state.listed_positions
                assert cm.coin_other == D("1.799")  # 2 - 0.5 - 0.001 + 0.3
                await both_marks_at(fake, state, mark, mark)
                moved_as_binance_s_next(fake, state, mark)

    run(body())


def test_binance_portfolio_balance_refused_keeps_the_coin_m_positions_listed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ "Account Balance" (GET /papi/v1/balance) refused (Binance's -2015: the key's
    permissions; a malformed answer alike): the COIN-M positions are still listed, their coin's
    other wallets unknown (``coin_other`` None: its tiers bounded as before, not placed),
    logged once, not at every reconcile; read again, they are known."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            feed = portfolio_with_coin_m_long(fake)
            fake.fail_rest(401, 2, path_prefix="/papi/v1/balance")  # -2015, the key refused
            async with kept_open(feed):
                state = feed.state
                assert [(p.symbol, p.coin_other) for p in state.listed_positions] == [
                    (COIN_M_BTC, None)
                ]
                await feed.reconcile()
                await feed.reconcile()
                assert [p.coin_other for p in state.listed_positions] == [D(0)]

    with caplog.at_level(logging.WARNING):
        run(body())
    said = [r for r in caplog.records if "/papi/v1/balance" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


def test_binance_portfolio_brackets_refused_keep_the_coin_m_positions_listed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ "Query CM Notional and Leverage Brackets" (GET /papi/v1/cm/leverageBracket) refused
    (Binance's -2015): the COIN-M positions are still listed and the account's limits do not
    say them unlisted; with no brackets read before, none (each requirement as read), and
    once read, refused again, the brackets as last read; logged when each failure begins, not
    at every reconcile. Before, the refusal unlisted every COIN-M position until a read
    succeeded (the moved ratio without their PnL and wallets)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            feed = portfolio_with_coin_m_long(fake)
            fake.fail_rest(401, 1, path_prefix="/papi/v1/cm/leverageBracket")
            async with kept_open(feed):
                state = feed.state
                assert [(p.symbol, p.coin_brackets) for p in state.listed_positions] == [
                    (COIN_M_BTC, None)
                ]
                assert "not listed" not in state.mode.limits
                await feed.reconcile()
                (read,) = [p.coin_brackets for p in state.listed_positions]
                assert read is not None
                fake.fail_rest(401, 2, path_prefix="/papi/v1/cm/leverageBracket")
                await feed.reconcile()
                await feed.reconcile()
                assert [(p.symbol, p.coin_brackets) for p in state.listed_positions] == [
                    (COIN_M_BTC, read)
                ]
                assert "not listed" not in state.mode.limits

    with caplog.at_level(logging.WARNING):
        run(body())
    said = [r for r in caplog.records if "/papi/v1/cm/leverageBracket" in r.getMessage()]
    assert len(said) == 2, [r.getMessage() for r in said]


def test_binance_portfolio_coin_m_brackets_in_dapi_spelling_are_read_and_malformed_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """BTCUSD_PERP's brackets with the lower edge spelt ``qtylFloor``, as the COIN-M docs
    spell it (GET /dapi/v2/leverageBracket: "lower edge of base asset quantity"), are read;
    ETHUSD_PERP's, malformed (no ``maintMarginRatio``), are left out and said once over three
    reads, not at every reconcile. Before, a row without ``qtyFloor`` dropped its symbol's
    brackets (the requirement then stayed as read) and each malformed symbol was logged at
    every reconcile."""
    dapi_spelling = [
        {"bracket": 1, "initialLeverage": 125, "qtyCap": 50, "qtylFloor": 0,
         "maintMarginRatio": 0.004, "cum": 0.0},
        {"bracket": 2, "initialLeverage": 100, "qtyCap": 999999999, "qtylFloor": 50,
         "maintMarginRatio": 0.005, "cum": 0.05},
    ]  # fmt: skip

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            feed = portfolio_with_coin_m_long(fake)
            fake.set_cm_brackets("BTCUSD_PERP", dapi_spelling)
            fake.set_cm_brackets("ETHUSD_PERP", [{"bracket": 1, "qtyCap": 5, "cum": 0}])
            async with kept_open(feed):
                state = feed.state
                await feed.reconcile()
                await feed.reconcile()
                (table,) = [p.coin_brackets for p in state.listed_positions]
                assert table is not None
                assert (table.tier_for(D(60)).mmr, table.tier_for(D(60)).deduction) == (
                    D("0.005"),
                    D("0.05"),
                )

    with caplog.at_level(logging.WARNING):
        run(body())
    said = [r.getMessage() for r in caplog.records if "malformed COIN-M brackets" in r.getMessage()]
    assert len(said) == 1 and "ETHUSD_PERP maintMarginRatio" in said[0], said


COIN_M_BTC_Q = "BTC/USD:BTC-261225"  # BTCUSD_261225, a quarterly, in ccxt's binancecoinm


def test_binance_portfolio_coin_m_quarterly_hedge_counts_at_its_coin_s_rate_and_wallet() -> None:
    """The hedge of issue 11 with a COIN-M quarterly (delivery) short: UM long 1 BTC, COIN-M
    short 600 BTCUSD_261225 (60,000 USD) at 60,000, 2,000 USDT, a COIN-M wallet of 0.01 BTC,
    BTC's collateral rate 0.95. The quarterly's ccxt symbol is BTC/USD:BTC-261225: its coin is
    its market's settle (``marginAsset`` BTC in GET /dapi/v1/exchangeInfo), not the symbol's
    tail, so its gain counts at BTC's rate and BTC's wallet moves with it. Before, cut from
    the symbol ("BTC-261225"), it had no rate and no wallet: its gain counted 0, critical
    (above 100%) after a 17% fall where Binance's uniMMR is not. The quarterly's mark is kept
    at the perpetual's (the index here): alertd moves the coin's equity at the leg's mark."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = hedged_600_short(fake, "0.01", "BTCUSD_261225")
            async with streaming(feed):
                state = feed.state
                await fake.wait_for_subscription("btcusd_261225@markPrice@1s", 10)
                await fake.wait_for_subscription("btcusdt@markPrice@1s", 10)
                (cm,) = state.listed_positions
                assert (cm.symbol, cm.coin_wallet) == (COIN_M_BTC_Q, D("0.01"))
                assert cm.collateral_rates == (D("0.95"), D("0.95"))
                for mark in ("49800", "30000"):
                    await both_marks_at(fake, state, mark, mark, ("BTCUSD_261225", COIN_M_BTC_Q))
                    ratio, moved = state.exchange_ratio()
                    assert moved and ratio is not None
                    theirs = D(fake.portfolio_account(KEY)["uniMMR"])
                    ours = binance.PORTFOLIO_LIQUIDATION_UNI_MMR / ratio
                    assert abs(ours / theirs - 1) < D("1e-7"), (mark, ours, theirs)
                    if mark == "49800":
                        assert ratio < 1, f"{ratio:.1%} at {mark}: critical where Binance is not"

    run(body())


async def markets_refreshed(manager: FeedManager) -> None:
    """Each run of the manager's periodic market refresh ("markets" jobs), once."""
    scheduler = manager.schedule()  # not started: its jobs are run here
    for job in scheduler.get_jobs():
        if job.id.startswith("markets:"):
            await job.func()


def test_binance_portfolio_coin_m_hub_is_refreshed_and_banned_as_its_own_host() -> None:
    """Run by the manager, the COIN-M mark hub's exchange (binancecoinm, dapi.binance.com) is
    one of the manager's shared exchanges: its catalogue (GET /dapi/v1/exchangeInfo) is
    reloaded by the markets refresh, as the USDⓈ-M one is (before, loaded once and never
    again), and it sends within its host's IpBudget: a 418 on /dapi bans that host until
    its end (one ``ip-banned`` for binancecoinm; before, the hub sent into the ban), not the
    USDⓈ-M accounts' host (COIN-M's per-IP limit is its own: docs/exchanges.md)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            portfolio_with_coin_m_long(fake)
            config = Config(version=1, accounts=[portfolio_margin_config(fake)], feeds=FAST)
            manager = FeedManager(config, {"p": secrets(KEY, SECRET)}, FAST_OPTIONS)
            async with background(manager.run()):
                await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)

                def catalogue_reads() -> int:
                    return fake.requests.count(("GET", "/dapi/v1/exchangeInfo"))

                read = catalogue_reads()
                await markets_refreshed(manager)
                assert catalogue_reads() == read + 1
                fake.fail_rest(418, 1, path_prefix="/dapi/", retry_after_s=600)
                await markets_refreshed(manager)
                assert [ban.host for ban in manager.ip_bans()] == ["binancecoinm"]
                (feed,) = manager.feeds.values()
                assert feed.state.fatal is None

    run(body())


def sapi_banned(fake: FakeBinanceUSDM, retry_after_s: float) -> FeedManager:
    """A portfolio margin account with a COIN-M long on the local Binance, run by a manager,
    its collateral rates' first read (/sapi) answered with a 418 ban for ``retry_after_s``."""
    portfolio_with_coin_m_long(fake)
    fake.fail_rest(418, 1, path_prefix="/sapi/", retry_after_s=retry_after_s)
    config = Config(version=1, accounts=[portfolio_margin_config(fake)], feeds=FAST)
    return FeedManager(config, {"p": secrets(KEY, SECRET)}, FAST_OPTIONS)


def test_binance_portfolio_collateral_rate_ban_is_the_spot_host_s_alone() -> None:
    """A 418 (ban, Retry-After 600 s) on GET /sapi/v2/portfolio/collateralRate, the
    collateral rates' read: /sapi is api.binance.com, the spot API with its own per-IP limit.
    Its ban is that host's: no ``ip-banned`` of binanceusdm (before, the answer reached the
    fapi/papi IpBudget and held every portfolio margin account of the IP for the spot host's
    ban: reviewer's probe test_rvprobe_sapi_ban), the reconciles go on, and the read is not
    sent again into the ban (its own budget waits for the ban's end, not the 0.8 s retry)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            manager = sapi_banned(fake, retry_after_s=600)

            def count(path: str) -> int:
                return fake.requests.count(("GET", path))

            async with background(manager.run()):
                rates = "/sapi/v2/portfolio/collateralRate"
                await eventually(lambda: count(rates) == 1, what="the /sapi 418")
                read = count("/papi/v1/account")
                # reconciles every 0.5 s, the read's retry 0.8 s: several of each in 3 s
                await eventually(
                    lambda: count("/papi/v1/account") >= read + 3,
                    timeout_s=10,
                    what="the portfolio margin accounts read on, unbanned",
                )
                # the spot host's ban alone, named with what it holds (an ip-banned of its
                # own: the next test)
                bans = manager.ip_bans()
                assert [(ban.host, ban.holds) for ban in bans] == [
                    ("api.binance.com", binance.CoinMMarks.shared_read_name)
                ]
                assert count(rates) == 1
                (feed,) = manager.feeds.values()
                assert feed.state.fatal is None

    run(body())


def test_binance_portfolio_collateral_rate_ban_is_restored_after_a_restart() -> None:
    """A /sapi ban told before a restart (the store keeps it by host, api.binance.com) holds
    the collateral rates' read again until its real end, named with what ages: not told over
    at once for a host no budget of the new manager knew (the accounts' hosts alone were
    restored), and no request sent into it once the account is live (before, the restored
    ban was listed but the shared read, new in the process, read at once: review of
    tidy13, a request into a live ban at every restart lengthens it)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            manager = sapi_banned(fake, retry_after_s=600)
            manager.restore_ip_bans({"api.binance.com": (418, time.time() + 600)})
            assert [(ban.host, ban.status, ban.holds) for ban in manager.ip_bans()] == [
                ("api.binance.com", 418, binance.CoinMMarks.shared_read_name)
            ]
            async with background(manager.run()):
                (feed,) = manager.feeds.values()
                await eventually(lambda: feed.state.connected, timeout_s=20, what="live")
                await eventually(
                    lambda: ("GET", "/papi/v1/cm/positionRisk") in fake.requests,
                    what="the COIN-M positions read",
                )
                await asyncio.sleep(1)
            assert ("GET", "/sapi/v2/portfolio/collateralRate") not in fake.requests

    run(body())


def test_binance_portfolio_collateral_rate_ban_is_told_and_resolved_naming_what_ages() -> None:
    """The /sapi host's ban (418, Retry-After 2 s, on the collateral rates' read) was only
    logged: a portfolio margin account's collateral rates then aged unseen, for as long as
    Binance bans (up to 3 days). It is now one ``ip-banned`` for api.binance.com, as any
    host's ban, naming what ages (the collateral rates, kept as last read); resolved when the
    ban ends, the rates read again then; no ban of the accounts' own host."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            manager = sapi_banned(fake, retry_after_s=2)
            config = manager.config
            store = Store(":memory:")
            deliverer = Deliverer(store, {}, config.routes, config.delivery)
            alerting = Alerting(config, store, deliverer, book=Book(), wall_clock=lambda: 0.0)
            told: list[str] = []

            def tell() -> bool:
                told.extend(f"{m.title}\n{m.body}" for m in alerting.host_bans(manager.ip_bans()))
                return bool(told)

            rates = "/sapi/v2/portfolio/collateralRate"
            async with background(manager.run()):
                await eventually(tell, what="the /sapi ban told")
                (banned,) = told
                title, text = banned.split("\n")
                assert title.startswith("CRITICAL api.binance.com: this IP is banned until ")
                assert "(418): the portfolio margin collateral rates" in title
                assert "kept as last read and age until the ban ends" in text
                await eventually(lambda: tell() and len(told) == 2, what="the ban's end told")
                assert told[1].split("\n") == [
                    "RESOLVED api.binance.com: the IP ban is over",
                    "api.binance.com answers this IP again: the portfolio margin collateral "
                    "rates (GET /sapi/v2/portfolio/collateralRate) are read again.",
                ]
                await eventually(
                    lambda: fake.requests.count(("GET", rates)) == 2, what="the rates read again"
                )
                assert [m.title for m in alerting.host_bans(manager.ip_bans())] == []
                (feed,) = manager.feeds.values()
                assert feed.state.fatal is None

    run(body())


@pytest.mark.parametrize("status", [503, 403, 451, 400, 418])
def test_binance_portfolio_coin_m_catalogue_failing_lists_the_coin_m_position_as_read(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The COIN-M catalogue (``GET /dapi/v1/exchangeInfo``) failing, whatever the answer (a
    proxy or region that passes only fapi/papi: 403, 451; an outage: 503; a ban of /dapi:
    418; a refusal: 400): the bootstrap succeeds, the account is not stopped, the COIN-M
    position is listed as Binance read it (as before COIN-M positions were followed), and
    the failure is logged once, not at every reconcile."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            feed = portfolio_with_coin_m_long(fake)
            fake.fail_rest(status, 1000, path_prefix="/dapi/")
            async with kept_open(feed):
                state = feed.state
                assert state.bootstrapped and state.fatal is None
                assert [p.as_read for p in state.listed_positions] == [True]
                await feed.reconcile()
                assert [p.as_read for p in state.listed_positions] == [True]

    with caplog.at_level(logging.WARNING):
        run(body())
    said = [r for r in caplog.records if "COIN-M catalogue" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


@contextlib.asynccontextmanager
async def coin_m_300() -> AsyncIterator[tuple[FakeBinanceUSDM, AccountFeed]]:
    """A portfolio margin account (2,000 USDT, a UM long of 1 BTC at 60,000 and a COIN-M long
    of 300 BTCUSD_PERP at 60,000) on the local Binance, its feed streaming, its user stream
    and COIN-M mark stream subscribed."""
    async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
        fake.set_portfolio_margin(KEY, open_loss="100")
        fake.set_mark(BTC, "60000")
        fake.open_position(KEY, BTC, "long", "1", "60000")
        fake.set_cm_mark("BTCUSD_PERP", "60000")
        fake.open_cm_position(KEY, "BTCUSD_PERP", "300", "60000", "45000")
        feed = make_feed(portfolio_margin_config(fake), KEY, SECRET)
        async with streaming(feed):
            await fake.wait_for_user_stream(KEY, 10)
            await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
            yield fake, feed


@pytest.mark.parametrize("left", ["0", "30"])
def test_binance_portfolio_coin_m_reduce_push_keeps_the_realized_loss(left: str) -> None:
    """A COIN-M long (300 BTCUSD_PERP, 30,000 USD at 60,000) beside the UM long, its mark
    fallen to 57,100 (Binance's ratio 84.0%: critical), then reduced to ``left`` contracts at
    57,100: the closed part's loss is realized into the BTC wallet, which uniMMR keeps
    (1,900 - 1,450 = 450 USD of equity). The push's size alone would drop it from the moved
    ratio (pm11: 19.9%): the push settles with a REST read, and the ratio is Binance's again."""

    async def body() -> None:
        async with coin_m_300() as (fake, feed):
            state = feed.state
            fake.set_cm_mark("BTCUSD_PERP", "57100")
            await eventually(lambda: state.marks.get(COIN_M_BTC) == 57100, what="the mark")
            assert f"{state.exchange_ratio()[0]:.1%}" == "84.0%"
            fake.reduce_cm_position(KEY, "BTCUSD_PERP", left)
            row = {"s": "BTCUSD_PERP", "pa": left, "ep": "60000" if left != "0" else "0",
                   "cr": "0", "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH"}  # fmt: skip
            fake.push_cm_position_update(KEY, row)
            theirs = binance.PORTFOLIO_LIQUIDATION_UNI_MMR / D(
                fake.portfolio_account(KEY)["uniMMR"]
            )
            # the closed part's loss in the BTC wallet: equity 450, MM 240 and the rest's
            assert theirs > D("0.5")

            def ratio() -> Decimal | None:
                return state.exchange_ratio()[0]

            await eventually(
                lambda: (r := ratio()) is not None and abs(r / theirs - 1) < D("1e-6"),
                timeout_s=10,
                what=f"Binance's ratio {theirs:.1%} after the fill",
            )

    run(body())


def test_binance_portfolio_coin_m_partial_close_push_gives_the_coin_s_new_wallet() -> None:
    """The hedge (:func:`hedged_600_short`, wallet 0, 20,000 USDT) read at 50,000, then half
    the COIN-M short closed at 50,000 and pushed (ACCOUNT_UPDATE fs CM: ``a.P`` the position
    left, ``a.B`` BTC's new "Cross Wallet Balance" ``cw``, the 0.1 BTC realized), right after
    a reconcile (the push's own REST read waits for the interval). Before, the push's size
    was applied but the wallet stayed as read (0): the realized BTC did not move with the
    mark and alertd counted more equity than Binance's uniMMR does (a safer ratio than
    Binance's) until the next read (reviewer's probe test_rvprobe_push_wallet). Now alertd's
    equity at 40,000 is Binance's."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            feed = hedged_600_short(fake, "0")
            async with streaming(feed):
                state = feed.state
                await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
                await fake.wait_for_subscription("btcusdt@markPrice@1s", 10)
                await fake.wait_for_user_stream(KEY, 10)
                await both_marks_at(fake, state, "50000", "50000")
                await feed.reconcile()  # read at 50,000, the COIN-M wallet 0
                fake.reduce_cm_position(KEY, "BTCUSD_PERP", "-300")  # 0.1 BTC realized
                row = {"s": "BTCUSD_PERP", "pa": "-300", "ep": "60000", "cr": "0", "up": "0",
                       "mt": "cross", "iw": "0", "ps": "BOTH"}  # fmt: skip
                fake.push_cm_position_update(KEY, row)
                await eventually(
                    lambda: [p.contracts for p in state.listed_positions] == [300], what="push"
                )
                assert [p.coin_wallet for p in state.listed_positions] == [D("0.1")]
                await both_marks_at(fake, state, "40000", "40000")
                account = fake.portfolio_account(KEY)
                theirs = D(account["uniMMR"]) * D(account["accountMaintMargin"])
                ours = state.exchange_equity()
                assert ours is not None and abs(ours - theirs) < D("0.01"), (ours, theirs)

    run(body())


def test_binance_portfolio_coin_m_reduce_pushed_at_another_mark_than_the_read_s() -> None:
    """The hedge (:func:`hedged_600_short`, wallet 0) read at 50,000, a reduce to 500 and its
    own read at 50,000; then both marks at 55,000 and a second reduce, to 300, filled at
    55,000 and pushed (``a.P`` the size left, ``a.B`` the wallet with the PnL it realized),
    its read held by the reconcile interval. Binance's equity is the 300 left and the wallet
    at 55,000; the read's, the 500 and the wallet as read at 50,000. Before, both sides of the
    moved equity were the pushed size and wallet (the read's at 50,000 too): the PnL the fill
    realized between 50,000 and 55,000 was in neither, alertd's equity 3,800 USD above
    Binance's (review12 finding 1, probe A). Now the ratio is Binance's next uniMMR to 1e-7."""

    def push(fake: FakeBinanceUSDM, size: str) -> None:
        row = {"s": "BTCUSD_PERP", "pa": size, "ep": "60000", "cr": "0", "up": "0",
               "mt": "cross", "iw": "0", "ps": "BOTH"}  # fmt: skip
        fake.push_cm_position_update(KEY, row)

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            feed = hedged_600_short(fake, "0")
            async with streaming(feed):
                feed.reconcile_interval_s = 60.0  # the second reduce's read waits for it
                state = feed.state
                await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
                await fake.wait_for_subscription("btcusdt@markPrice@1s", 10)
                await fake.wait_for_user_stream(KEY, 10)
                await both_marks_at(fake, state, "50000", "50000")
                await feed.reconcile()
                await asyncio.sleep(1.5)  # past the start's settle resync
                fake.reduce_cm_position(KEY, "BTCUSD_PERP", "-500")
                push(fake, "-500")
                await eventually(
                    lambda: [p.contracts for p in state.listed_as_read] == [500],
                    timeout_s=10,
                    what="the first reduce's read",
                )
                await both_marks_at(fake, state, "55000", "55000")
                moved_as_binance_s_next(fake, state, "at 55,000")
                fake.reduce_cm_position(KEY, "BTCUSD_PERP", "-300")  # realized at 55,000
                push(fake, "-300")
                await eventually(
                    lambda: [p.contracts for p in state.listed_positions] == [300], what="push"
                )
                assert [p.contracts for p in state.listed_as_read] == [500]  # no read since
                moved_as_binance_s_next(fake, state, "after the reduce at 55,000")
                account = fake.portfolio_account(KEY)
                theirs = D(account["uniMMR"]) * D(account["accountMaintMargin"])
                ours = state.exchange_equity()
                assert ours is not None and abs(ours - theirs) < D("0.01"), (ours, theirs)

    run(body(), timeout_s=60)


@pytest.mark.parametrize("reason", ["WITHDRAW", "ASSET_TRANSFER", "FUNDING_FEE"])
def test_binance_portfolio_coin_m_wallet_push_counts_at_the_live_mark(reason: str) -> None:
    """The hedge (:func:`hedged_600_short`, a COIN-M wallet of 10 BTC) read at 60,000, both
    marks then at 50,000; 9 BTC leave the COIN-M wallet and Binance pushes its ``cw`` alone
    (ACCOUNT_UPDATE fs CM, ``a.m`` ``reason``, ``a.B`` the wallet, no ``a.P``): a fill that
    realizes nothing, so no read follows until the reconcile. Before, the new wallet stood on
    both sides of the moved equity (the read's at 60,000 too): the 9 BTC's 540,000 USD as
    read stayed in alertd's equity (580,000 USD against Binance's 67,000; ratio 0.08% where
    Binance's is 0.69%: review12 finding 1, probe A2). Now the ratio is Binance's next uniMMR
    to 1e-7."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            feed = hedged_600_short(fake, "10")
            async with streaming(feed):
                feed.reconcile_interval_s = 60.0
                state = feed.state
                await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
                await fake.wait_for_subscription("btcusdt@markPrice@1s", 10)
                await fake.wait_for_user_stream(KEY, 10)
                await both_marks_at(fake, state, "60000", "60000")
                await feed.reconcile()  # read at 60,000: wallet 10 BTC
                await both_marks_at(fake, state, "50000", "50000")
                moved_as_binance_s_next(fake, state, "at 50,000")
                fake.set_cm_coin(KEY, "BTC", "1", "0.95")  # 9 BTC leave the COIN-M wallet
                fake.push_cm_balance_update(KEY, "BTC", reason)
                await eventually(
                    lambda: [p.coin_wallet for p in state.listed_positions] == [1],
                    what="the pushed wallet",
                )
                assert [p.coin_wallet for p in state.listed_as_read] == [10]  # no read since
                moved_as_binance_s_next(fake, state, f"after the {reason} push")
                account = fake.portfolio_account(KEY)
                theirs = D(account["uniMMR"]) * D(account["accountMaintMargin"])
                ours = state.exchange_equity()
                assert ours is not None and abs(ours - theirs) < D("0.01"), (ours, theirs)

    run(body(), timeout_s=60)


# BTCUSD_PERP's brackets scripted on the local Binance (GET /papi/v1/cm/leverageBracket's
# fields): 0.5 BTC of notional at 0.4%, to 1 BTC at 5%, above at 10%; each ``cum`` the
# recursion's (0.5 x (0.05 - 0.004) = 0.023; 0.023 + 1 x (0.1 - 0.05) = 0.073), so that a
# 300-contract long (30,000 USD, 0.5 BTC at 60,000) crosses into the second as BTC falls
CM_BRACKETS_THREE = [
    {"bracket": 1, "initialLeverage": 125, "qtyCap": 0.5, "qtyFloor": 0,
     "maintMarginRatio": 0.004, "cum": 0.0},
    {"bracket": 2, "initialLeverage": 20, "qtyCap": 1, "qtyFloor": 0.5,
     "maintMarginRatio": 0.05, "cum": 0.023},
    {"bracket": 3, "initialLeverage": 10, "qtyCap": 999999, "qtyFloor": 1,
     "maintMarginRatio": 0.1, "cum": 0.073},
]  # fmt: skip


async def start_reads(fake: FakeBinanceUSDM) -> None:
    """Until a streaming portfolio margin account's start has read it twice: its bootstrap's
    read and the start's settle resync."""
    await eventually(
        lambda: fake.requests.count(("GET", "/papi/v1/account")) >= 2, what="the start's reads"
    )


def test_binance_portfolio_coin_m_requirement_moves_across_its_brackets_and_pushed_size() -> None:
    """A COIN-M long of 300 BTCUSD_PERP (30,000 USD) at 60,000 beside a UM long of 1 BTC,
    20,000 USDT, its brackets read with it ("Query CM Notional and Leverage Brackets", GET
    /papi/v1/cm/leverageBracket: :data:`CM_BRACKETS_THREE`). With no reconcile, BTC's COIN-M
    mark falls from 60,000 (0.5 BTC, the first bracket) to 59,000 and 55,000 (0.508 and
    0.545 BTC: the second), then a fill adds 100 contracts (pushed: ``pa`` 400, nothing
    realized, no REST read): the moved ratio is the local Binance's next uniMMR to 1e-7 each
    time. Before, the COIN-M requirement stayed as read in USD (0.002 BTC x 60,000 = 120
    USD where the second bracket asks 235 at 55,000), the pushed size moving the PnL alone."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            fake.set_portfolio_margin(KEY)
            fake.set_mark(BTC, "60000")
            fake.open_position(KEY, BTC, "long", "1", "60000")
            fake.set_cm_mark("BTCUSD_PERP", "60000")
            fake.set_cm_brackets("BTCUSD_PERP", CM_BRACKETS_THREE)
            fake.open_cm_position(KEY, "BTCUSD_PERP", "300", "60000", "45000")
            feed = make_feed(portfolio_margin_config(fake), KEY, SECRET)
            async with streaming(feed):
                feed.reconcile_interval_s = 60.0  # no read but the bootstrap's
                state = feed.state
                await fake.wait_for_user_stream(KEY, 10)
                await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
                await start_reads(fake)

                def matches() -> bool:
                    ratio, moved = state.exchange_ratio()
                    theirs = D(fake.portfolio_account(KEY)["uniMMR"])
                    if not moved or ratio is None:
                        return False
                    ours = binance.PORTFOLIO_LIQUIDATION_UNI_MMR / ratio
                    return abs(ours / theirs - 1) < D("1e-7")

                for mark in ("59000", "55000"):
                    fake.set_cm_mark("BTCUSD_PERP", mark)
                    await eventually(lambda m=mark: state.marks.get(COIN_M_BTC) == D(m))
                    assert matches(), (mark, state.exchange_ratio(), fake.portfolio_account(KEY))
                reads = fake.requests.count(("GET", "/papi/v1/account"))
                fake.open_cm_position(KEY, "BTCUSD_PERP", "400", "60000", "45000")
                fake.push_cm_position_update(KEY, COIN_M_ROW | {"pa": "400", "ep": "60000"})
                await eventually(
                    lambda: [p.contracts for p in state.listed_positions] == [400], what="push"
                )
                assert matches(), (state.exchange_ratio(), fake.portfolio_account(KEY))
                assert fake.requests.count(("GET", "/papi/v1/account")) == reads

    run(body())


def test_binance_portfolio_coin_m_position_opened_by_a_push_is_listed_and_followed() -> None:
    """The hedge's account (:func:`hedged_600_short`: UM long 1 BTC, COIN-M short 600
    BTCUSD_PERP at 60,000, a COIN-M wallet of 0.01 BTC, BTC's rate 0.95), the brackets of
    BTCUSD_261225 scripted (:data:`CM_BRACKETS_THREE`), then a quarterly short of 300
    BTCUSD_261225 opened at 60,000 and pushed (ACCOUNT_UPDATE fs CM, a position the last
    read did not list). Without a reconcile it is listed (``BTC/USD:BTC-261225``, its size
    the push's) and followed on its COIN-M mark; at 45,000 the moved ratio is the local
    Binance's next uniMMR to 1e-7 (its gain at BTC's rate, its requirement from its
    brackets), with no REST read. Before, the moved ratio left its PnL and requirement out
    until the next reconcile (uniMMR 19.56 where the local Binance's is 9.95 at 45,000)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            fake.set_cm_brackets("BTCUSD_261225", CM_BRACKETS_THREE)
            feed = hedged_600_short(fake, "0.01")
            async with streaming(feed):
                feed.reconcile_interval_s = 60.0  # no read but the bootstrap's
                state = feed.state
                await fake.wait_for_user_stream(KEY, 10)
                await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
                await fake.wait_for_subscription("btcusdt@markPrice@1s", 10)
                await start_reads(fake)
                reads = fake.requests.count(("GET", "/papi/v1/account"))
                fake.set_cm_mark("BTCUSD_261225", "60000")
                fake.open_cm_position(KEY, "BTCUSD_261225", "-300", "60000", "90000")
                row = {"s": "BTCUSD_261225", "pa": "-300", "ep": "60000", "cr": "0", "up": "0",
                       "mt": "cross", "iw": "0", "ps": "BOTH"}  # fmt: skip
                fake.push_cm_position_update(KEY, row)
                await eventually(
                    lambda: (
                        sorted(p.symbol for p in state.listed_positions)
                        == [COIN_M_BTC, COIN_M_BTC_Q]
                    ),
                    what="the opened position listed",
                )
                await fake.wait_for_subscription("btcusd_261225@markPrice@1s", 10)
                (opened,) = [p for p in state.listed_positions if p.symbol == COIN_M_BTC_Q]
                assert (opened.contracts, opened.quantity) == (300, 30000)
                await both_marks_at(fake, state, "45000", "45000", ("BTCUSD_261225", COIN_M_BTC_Q))
                moved_as_binance_s_next(fake, state, "45000")
                assert fake.requests.count(("GET", "/papi/v1/account")) == reads

    run(body())


def test_binance_portfolio_coin_m_pushes_read_the_account_once_an_interval_on_a_reduce() -> None:
    """A COIN-M push that adds to a listed position realizes nothing (the push's size and
    entry are all that moved): no REST read. Reduces realize PnL into the coin's wallet, which
    the push does not carry: read again, but at most once per reconcile interval, the fills
    meanwhile read together at its end (the reviewer's probe_cm_push_resyncs: a fill a second
    made a full portfolio margin snapshot each, 104 requests in 20 s outside the reconcile
    plan). The last read still gives Binance's ratio after the last reduce."""

    def snapshots(fake: FakeBinanceUSDM) -> int:
        return sum(path == "/papi/v1/account" for _, path in fake.requests)

    def push(fake: FakeBinanceUSDM, size: int) -> None:
        row = {"s": "BTCUSD_PERP", "pa": str(size), "ep": "60000", "cr": "0", "up": "0",
               "mt": "cross", "iw": "0", "ps": "BOTH"}  # fmt: skip
        fake.push_cm_position_update(KEY, row)

    async def body() -> None:
        async with coin_m_300() as (fake, feed):
            feed.reconcile_interval_s = 4.0  # as the manager sets it; no reconcile runs here
            state = feed.state
            await eventually(lambda: state.marks.get(COIN_M_BTC) is not None)
            # the start's own settle resync (the bootstrap's snapshot and its), done, so that
            # ``before`` counts every read of the start (waited for, not slept: 0.5 s was too
            # short under load). A snapshot whose read began before the pushes below and ended
            # after no longer lists the size it read over them (race14: PushesDuringReads;
            # tests/test_push_during_snapshot.py)
            await eventually(
                lambda: snapshots(fake) >= 2 and not feed._resync_lock.locked(),
                what="the start's settle resync",
            )
            before = snapshots(fake)
            for size in range(301, 306):  # adds: nothing realized
                fake.open_cm_position(KEY, "BTCUSD_PERP", str(size), "60000", "45000")
                push(fake, size)
                await asyncio.sleep(0.2)
            await eventually(
                lambda: [p.contracts for p in state.listed_positions] == [305], what="adds"
            )
            await asyncio.sleep(0.5)
            assert snapshots(fake) == before
            fake.set_cm_mark("BTCUSD_PERP", "57100")
            await eventually(lambda: state.marks.get(COIN_M_BTC) == 57100, what="the mark")
            for size in range(304, 294, -1):  # ten reduces within 2 s
                fake.reduce_cm_position(KEY, "BTCUSD_PERP", str(size))
                push(fake, size)
                await asyncio.sleep(0.2)
            theirs = binance.PORTFOLIO_LIQUIDATION_UNI_MMR / D(
                fake.portfolio_account(KEY)["uniMMR"]
            )
            await eventually(
                lambda: (
                    (r := state.exchange_ratio()[0]) is not None and abs(r / theirs - 1) < D("1e-6")
                ),
                timeout_s=15,
                what=f"Binance's ratio {theirs:.1%} after the last reduce",
            )
            # the first reduce's read, and one at the interval's end for the nine after
            assert snapshots(fake) - before <= 2

    run(body(), timeout_s=60)


COIN_M_ROW = {"s": "BTCUSD_PERP", "pa": "3", "ep": "62000", "cr": "0", "up": "0",
              "mt": "cross", "iw": "0", "ps": "BOTH"}  # fmt: skip


def test_binance_portfolio_malformed_coin_m_push_is_skipped_not_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A COIN-M push whose size Decimal cannot hold (``pa`` 1E+999999: decimal.Overflow, an
    ArithmeticError, not a FrameError) is skipped and logged as malformed; the private stream
    goes on (pm11: the error escaped ccxt's receive loop and the stream died silently), so the
    next COIN-M fill's push is applied."""

    async def body() -> None:
        async with coin_m_streaming() as (fake, feed):
            state = feed.state
            fake.push_cm_position_update(KEY, COIN_M_ROW | {"pa": "1E+999999"})
            await eventually(lambda: bool(feed.malformed), what="the malformed push")
            fake.open_cm_position(KEY, "BTCUSD_PERP", "5", "62000", "40000")
            fake.push_cm_position_update(KEY, COIN_M_ROW | {"pa": "5"})
            await eventually(
                lambda: [p.contracts for p in state.listed_positions] == [5],
                timeout_s=10,
                what="the next push on the private stream",
            )

    with caplog.at_level(logging.WARNING):
        run(body())
    assert any("skipped a malformed frame" in r.getMessage() for r in caplog.records)


def test_binance_portfolio_coin_m_push_without_an_entry_is_malformed() -> None:
    """A COIN-M push of an open position (``pa`` 4) with no entry (``ep`` 0) is malformed:
    skipped, the position kept as it was, so uniMMR still moves with the UM mark (pm11: the
    entry 0 left the COIN-M leg without a PnL, which froze the whole ratio as read)."""

    async def body() -> None:
        async with coin_m_streaming() as (fake, feed):
            state = feed.state
            fake.push_cm_position_update(KEY, COIN_M_ROW | {"pa": "4", "ep": "0"})
            await eventually(lambda: bool(feed.malformed), what="the malformed push")
            assert [p.contracts for p in state.listed_positions] == [3]
            fake.set_mark(BTC, "58000")
            await eventually(lambda: state.marks.get(BTC) == 58000, what="the UM mark")
            assert state.exchange_ratio()[1], "uniMMR left as read: the UM fall ignored"

    run(body())


def test_binance_portfolio_coin_m_push_of_an_unlisted_position_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A COIN-M push of a position not listed in a market the COIN-M catalogue does not hold
    (XRPUSD_PERP here: listed since the catalogue was loaded) is left to the next reconcile,
    and said once per market, not at every push (one in a market it holds is listed:
    ``test_binance_portfolio_coin_m_position_opened_by_a_push_is_listed_and_followed``)."""

    async def body() -> None:
        async with coin_m_streaming() as (fake, feed):
            state = feed.state
            for pa in ("2", "4"):
                fake.push_cm_position_update(KEY, COIN_M_ROW | {"s": "XRPUSD_PERP", "pa": pa})
            fake.open_cm_position(KEY, "BTCUSD_PERP", "5", "62000", "40000")
            fake.push_cm_position_update(KEY, COIN_M_ROW | {"pa": "5"})  # after them
            await eventually(
                lambda: [p.contracts for p in state.listed_positions] == [5], what="the push"
            )

    with caplog.at_level(logging.INFO):
        run(body())
    said = [r for r in caplog.records if "XRPUSD_PERP, a position not listed" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


def test_binance_portfolio_margin_stream_s_coin_m_push_updates_the_listed_position() -> None:
    """A COIN-M fill's push on the portfolio margin stream (``ACCOUNT_UPDATE`` with ``fs``
    CM: ``pa``, ``ep``) between reconciles: the listed COIN-M position takes its size and
    entry (its PnL at the live mark is then Binance's at the new size), Binance's liquidation
    price stays as read; a close's push removes it, and the close's read its COIN-M mark
    stream."""

    async def body() -> None:
        async with coin_m_streaming() as (fake, feed):
            state = feed.state
            fake.open_cm_position(KEY, "BTCUSD_PERP", "5", "61500", "40000")
            row = {"s": "BTCUSD_PERP", "pa": "5", "ep": "61500", "cr": "0", "up": "0",
                   "mt": "cross", "iw": "0", "ps": "BOTH"}  # fmt: skip
            fake.push_cm_position_update(KEY, row)

            def coin_m() -> list[Any]:
                return [p for p in state.exchange_ratio_positions() if p.inverse]

            await eventually(lambda: coin_m()[0].contracts == 5, what="the CM push")
            (cm,) = coin_m()
            (served,) = fake.cm_position_risk(KEY)
            assert (cm.entry_price, cm.liquidation_price) == (61500, 40000)
            assert [p.quantity for p in state.listed_positions] == [500]
            assert cm.unrealized_pnl is not None
            assert cm.unrealized_pnl.quantize(EIGHT) == D(served["unRealizedProfit"])
            assert list(state.positions) == [(BTC, Side.LONG)]  # not a UM position
            fake.reduce_cm_position(KEY, "BTCUSD_PERP", "0")  # the REST read that follows
            fake.push_cm_position_update(KEY, row | {"pa": "0", "ep": "0"})
            await eventually(lambda: coin_m() == [], what="the CM close's push")
            # its coin's wallet followed on its mark until the close's own read (session 15)
            await eventually(lambda: COIN_M_BTC not in state.marks, what="the close's read")
            listed = feed.listed_hub
            assert listed is not None and COIN_M_BTC not in listed.subscribers

    run(body())


@pytest.mark.parametrize("closed_by", ["push", "reconcile"])
def test_binance_portfolio_last_coin_m_close_ends_the_coin_m_mark_stream(closed_by: str) -> None:
    """The last COIN-M position closed (its push and the read that follows it, the push
    keeping the leg with no size and its mark until then; or a reconcile that no longer reads
    it): the account's subscription to its COIN-M mark is released, the hub's stream of it
    ends and the local Binance's dstream subscription (``btcusd_perp@markPrice@1s``) is gone."""

    async def body() -> None:
        async with coin_m_streaming() as (fake, feed):
            listed = feed.listed_hub
            assert listed is not None
            fake.reduce_cm_position(KEY, "BTCUSD_PERP", "0")
            if closed_by == "push":
                row = {"s": "BTCUSD_PERP", "pa": "0", "ep": "0", "cr": "0", "up": "0",
                       "mt": "cross", "iw": "0", "ps": "BOTH"}  # fmt: skip
                fake.push_cm_position_update(KEY, row)
            else:
                await feed.reconcile()
            await eventually(lambda: not feed.state.listed_positions, what="the close")
            await eventually(lambda: not listed.subscribers, what="the subscription released")
            await fake.wait_until(
                lambda: "btcusd_perp@markPrice@1s" not in fake.subscriptions(), 10
            )
            # and the COIN-M connection it was on closed: no public websocket left idle
            # (the USDⓈ-M marks' stays, with its stream)
            await fake.wait_until(
                lambda: all(c.streams for c in fake._connections_of("public")), 10
            )

    run(body())


def test_binance_portfolio_stale_coin_m_mark_stream_is_named_and_reconnected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The COIN-M mark stream silent while the UM one ticks: the COIN-M symbol is a stale
    mark like any other (the health line's and status' stale streams, "mark BTC/USD:BTC"),
    the watchdog says so and reconnects the COIN-M hub, not the UM one."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "20000")]) as fake:
            feed = portfolio_with_coin_m_long(fake)
            with caplog.at_level(logging.WARNING, logger="alertd.feeds.feed"):
                async with streaming(feed):
                    await fake.wait_for_subscription("btcusd_perp@markPrice@1s", 10)
                    hub, listed = feed.hub, feed.listed_hub
                    assert listed is not None
                    for _ in range(300):  # the UM mark ticks, the COIN-M one not (30 s: load)
                        fake.set_mark(BTC, "60000")
                        await asyncio.sleep(0.1)
                        if listed.reconnects:
                            break
                    now = feed._clock()
                    stale = stale_streams(feed, feed.settings, now)
                    assert stale == (f"mark {COIN_M_BTC}",)
                    assert listed.reconnects >= 1 and hub.reconnects == 0
            said = [r.getMessage() for r in caplog.records if "no mark price" in r.message]
            assert said and COIN_M_BTC in said[0] and BTC not in said[0]

    run(body())


def test_binance_portfolio_margin_without_coin_m_positions_opens_no_coin_m_stream() -> None:
    """No COIN-M position: no COIN-M catalogue read, no dstream connection."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = portfolio_long_btc(fake)
            async with streaming(feed):
                await fake.wait_for_subscription("btcusdt@markPrice@1s", 10)
                assert feed.listed_hub is not None and feed.listed_hub.exchange is None
                assert not any(path.startswith("/dapi/") for _, path in fake.requests)

    run(body())


def test_binance_portfolio_coin_m_refused_or_malformed_keeps_the_um_monitoring(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A malformed COIN-M row, then the key refused on /papi/v1/cm/* (Binance's -2015, an
    AuthenticationError in ccxt: fatal to the whole account before): the UM position and
    uniMMR are still read at every reconcile, the COIN-M positions "not listed (why)" in the
    account's limits (status, snapshot), logged once, not at every reconcile; listed again
    once Binance answers."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = portfolio_long_btc(fake)
            fake.set_cm_positions(KEY, [{**CM_POSITION_EXAMPLE, "markPrice": "abc"}])
            with caplog.at_level(logging.WARNING, logger="alertd.feeds.feed"):
                async with kept_open(feed):
                    state = feed.state
                    assert state.fatal is None and state.mode.mode is M.PORTFOLIO
                    assert [p.symbol for p in state.exchange_ratio_positions()] == [BTC]
                    assert "COIN-M positions not listed (FrameError: cm/positionRisk " in (
                        state.mode.limits
                    )
                    assert "markPrice" in state.mode.limits
                    fake.set_cm_positions(KEY, [CM_POSITION_EXAMPLE])
                    fake.fail_rest(401, 3, path_prefix="/papi/v1/cm/")
                    for _ in range(3):
                        fake.set_mark(BTC, "59000")
                        await feed.reconcile()
                    assert state.fatal is None and state.reported_account.margin_ratio
                    assert "COIN-M positions not listed (AuthenticationError: " in (
                        state.mode.limits
                    )
                    assert "-2015" in state.mode.limits
                    said = [r.getMessage() for r in caplog.records if "COIN-M" in r.message]
                    assert len(said) == 2  # the malformed row, then the refusal: once each
                    await feed.reconcile()  # the three refusals spent: Binance answers
                    assert "not listed" not in state.mode.limits
                    symbols = [p.symbol for p in state.exchange_ratio_positions()]
                    assert symbols == [BTC, "BTCUSD_201225"]

    run(body())


def test_binance_portfolio_margin_streams_from_the_portfolio_margin_user_stream() -> None:
    """ccxt.pro with options.portfolioMargin takes its listen key from /papi/v1/listenKey and
    listens on the portfolio margin stream: its UM ACCOUNT_UPDATEs (``fs`` UM) move the
    wallet and the positions between reconciles."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = portfolio_long_btc(fake)
            async with streaming(feed):
                await fake.wait_for_user_stream(KEY, 10)
                (path,) = fake.user_stream_paths(KEY)
                assert path.startswith("/pm/ws/")
                fake.set_balance(KEY, "2500")  # a deposit's push
                await eventually(lambda: feed.state.wallet_balance == 2500, what="the push")
                fake.open_position(KEY, "ETH/USDT:USDT", "short", "2", "3400")
                await eventually(
                    lambda: ("ETH/USDT:USDT", Side.SHORT) in feed.state.positions,
                    what="the position's push",
                )
                await feed.renew()  # alertd's timer keeps the portfolio margin key alive
                assert fake.listen_key_put_paths == ["/papi/v1/listenKey"]
                assert feed.state.fatal is None and feed.state.mode.mode is M.PORTFOLIO

    run(body())


def test_binance_portfolio_margin_stream_s_coin_m_push_is_not_a_um_position() -> None:
    """The portfolio margin stream carries COIN-M fills too (``ACCOUNT_UPDATE`` with ``fs``
    CM), which ccxt.pro hands to watch_positions with the UM ones: a COIN-M position is not
    one of the USDⓈ-M account's (its market is not loaded: an "unknown market" that stopped
    Binance's ratio moving with the marks until the next reconcile), nor its coin the UM
    wallet; the COIN-M positions stay listed as the reconcile reads them."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = portfolio_long_btc(fake)
            async with streaming(feed):
                await fake.wait_for_user_stream(KEY, 10)
                cm = {"s": "BTCUSD_PERP", "pa": "3", "ep": "60000", "cr": "0", "up": "0",
                      "mt": "cross", "iw": "0", "ps": "BOTH"}  # fmt: skip
                fake.push_cm_position_update(KEY, cm)
                fake.set_balance(KEY, "2500")  # a UM push after it: the stream got there
                state = feed.state
                await eventually(lambda: state.wallet_balance == 2500, what="the UM push")
                assert list(state.positions) == [(BTC, Side.LONG)]
                assert state.missing() == [] and state.fatal is None
                # with no COIN-M position read, its catalogue is not loaded: the pushed one
                # is named until the read it brings on at once (session 15), which here,
                # the local Binance holding none, lists none
                await eventually(lambda: not state.listed_pushed_unlisted, what="the read")
                fake.set_mark(BTC, "59000")
                state.set_mark(BTC, D("59000"), 1.0)
                assert state.exchange_ratio()[1]  # still moved with the marks

    run(body())


def test_binance_portfolio_margin_flags_a_non_portfolio_account_answer() -> None:
    """The option set on an account Binance does not run in portfolio margin: /papi answers
    its error and the feed says so (no figures are invented from the /fapi account)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "500")]) as fake:
            feed = make_feed(portfolio_margin_config(fake), KEY, SECRET)
            changes = watched(feed)
            try:
                await feed.run()
            finally:
                await feed.close()
            fatal = feed.state.fatal
            assert fatal is not None and "not a portfolio margin account" in fatal
            assert changes == [Change.FATAL]

    run(body())


def test_binance_portfolio_reads_of_a_non_portfolio_account_are_frame_errors() -> None:
    """The adapter's balance read after /papi refused the account (outside the feed, which
    stops at the refused mode first): a frame error naming the answer, not an assert."""

    async def body() -> None:
        async with (
            started(FakeBinanceUSDM(), [(KEY, SECRET, "500")]) as fake,
            ccxt_client(fake, "binanceusdm", KEY, SECRET) as exchange,
        ):
            exchange.options["portfolioMargin"] = True
            adapter = binance.BinanceUSDMAdapter()
            assert (await adapter.fetch_mode(exchange)) is binance.NOT_PORTFOLIO
            with pytest.raises(FrameError, match=r"^papi account: not a portfolio margin"):
                await adapter.fetch_balance(exchange)

    run(body())


def _liquidations_agree(state: AccountState) -> dict[str, D]:
    """alertd's liquidation price of each held symbol, checked against the local Binance's
    own (``positionRisk`` ``liquidationPrice``, solved by Binance's formula per pool)."""
    theirs = {symbol: r.liquidation_price for (symbol, _), r in state.reported_positions.items()}
    ours = {
        pm.position.symbol: pm.liquidation_price for pm in compute(state.to_account()).positions
    }
    assert sorted(theirs) == sorted(ours)
    for symbol, reported in theirs.items():
        mine = ours[symbol]
        assert reported is not None and mine is not None
        assert abs(mine / reported - 1) < D("1e-6"), (symbol, mine, reported)
    return {symbol: price for symbol, price in ours.items() if price is not None}


def test_binance_single_asset_computes_the_usdc_pool_on_its_own() -> None:
    """Single-asset mode: each margin asset is its own pool ("Account Information V3",
    ``assets[]``: the USDC row's own ``crossWalletBalance``, ``maintMargin``,
    ``marginBalance``). A USDC-M long is margined by the USDC wallet alone, the USDT-M long
    by the USDT wallet: two liquidation prices the local Binance solves per pool, which
    alertd reproduces, and each pool's ratio agrees with Binance's row of its asset. A third
    margin asset (FDUSD-M) is one more pool of its own, read from its row."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [("key-u", "secret-u", "2000")]) as fake:
            fake.add_symbol(USDC_BTC, "60000")
            fake.add_symbol(FDUSD_BTC, "60000")
            fake.set_asset_wallet("key-u", "USDC", "500")
            fake.set_mark(BTC, "60000")
            fake.open_position("key-u", BTC, "long", "0.1", "60000")
            fake.open_position("key-u", USDC_BTC, "long", "0.1", "60000")
            feed = make_feed(account_config("u", "binanceusdm", fake), "key-u", "secret-u")
            try:
                await feed.bootstrap()
                state = feed.state
                assert state.mode.coverage is C.COMPUTED and state.computable, state.missing()
                account = state.to_account()
                assert [(p.asset, p.wallet_balance) for p in account.pools] == [("USDC", 500)]
                liq = _liquidations_agree(state)
                # the USDC pool's 500 carry its long alone: 5,000 of room below 60,000 less
                # its MM, where the USDT pool's 2,000 give 20,000
                assert D(54000) < liq[USDC_BTC] < D(55500) and D(38000) < liq[BTC] < D(40500)
                metrics = compute(account)
                usdt, usdc = metrics.pools
                assert (usdt.pool.asset, usdc.pool.asset) == ("USDT", "USDC")
                assert metrics.worst_ratio == usdc.pool.margin_ratio > usdt.pool.margin_ratio
                assert metrics.pool == usdc.pool  # the account's cross figures: the riskiest
                comparison = feed.comparison
                assert comparison is not None and comparison.mismatches == ()
                rows = {r.key: r for r in comparison}
                raw = next(a for a in fake.account_v3("key-u")["assets"] if a["asset"] == "USDC")
                usdc_ratio = rows["USDC margin_ratio"]
                assert usdc_ratio.theirs == D(raw["maintMargin"]) / D(raw["marginBalance"])
                assert usdc_ratio.ours == usdc.pool.margin_ratio
                assert rows["USDT margin_ratio"].theirs == state.reported_account.margin_ratio

                # a third margin asset (an FDUSD-M perpetual on an FDUSD wallet): its own pool
                fake.set_asset_wallet("key-u", "FDUSD", "100")
                fake.open_position("key-u", FDUSD_BTC, "long", "0.01", "60000")
                await feed.reconcile()
                assert state.computable, state.missing()
                assert [(p.asset, p.wallet_balance) for p in state.to_account().pools] == [
                    ("FDUSD", 100),
                    ("USDC", 500),
                ]
                liq = _liquidations_agree(state)
                # 100 FDUSD carry 0.01 BTC: room for a fall of nearly 10,000 less its MM
                assert D(50000) < liq[FDUSD_BTC] < D(51000)
                ratios = {
                    m.pool.asset: m.pool.margin_ratio for m in compute(state.to_account()).pools
                }
                assert ratios["FDUSD"] == D("0.03")  # 600 x 0.5% (its first bracket) of 100
                comparison = feed.comparison
                assert comparison is not None and comparison.mismatches == ()
                assert {r.key: r.matches for r in comparison if r.pool == "FDUSD"} == {
                    "FDUSD maintenance_margin": True,
                    "FDUSD margin_balance": True,
                    "FDUSD margin_ratio": True,
                }
            finally:
                await feed.close()

    run(body())


def test_bybit_collateral_and_margin_modes_follow_the_account() -> None:
    async def body() -> None:
        fake = FakeBybit()
        async with long_btc(fake, "bybit", "1000", "0.1") as (feed, state):
            assert state.mode.mode is M.UNIFIED_CROSS and state.computable

            # BTC collateral at 60,000 USD valued at 95% (Bybit's tiered collateral ratio):
            # alertd counts it in the pool and agrees with Bybit's accountMMRate
            fake.set_collateral(KEY, "BTC", "0.01", "60000", "0.95", follows=BTC)
            await feed.reconcile()
            assert state.mode.coverage is C.COMPUTED and state.computable
            assert [(c.asset, c.value) for c in state.collateral] == [("BTC", D(570))]
            # MM: 0.5% of the notional plus the fee to close at the bankruptcy price (10x)
            fee = D("0.1") * 60000 * D("0.9") * D("0.00055")
            mm = D("0.1") * 60000 * D("0.005") + fee
            balance = 1000 + D("0.01") * 60000 * D("0.95")
            # Bybit shows accountMMRate cut to four decimals
            assert state.reported_account.margin_ratio == (mm / balance).quantize(D("0.0001"))
            assert feed.ratios is not None and feed.ratios[0] == mm / balance
            assert feed.comparison is not None and feed.comparison.mismatches == ()

            fake.set_margin_mode(KEY, "PORTFOLIO_MARGIN")
            await feed.reconcile()
            assert state.mode.mode is M.PORTFOLIO and state.mode.coverage is C.EXCHANGE_RATIO

            fake.set_collateral(KEY, "BTC", "0", "60000")
            fake.set_margin_mode(KEY, "REGULAR_MARGIN")
            await feed.reconcile()
            assert state.mode.coverage is C.COMPUTED and state.computable
            assert state.collateral == ()

    run(body())


def test_okx_portfolio_shows_okx_s_mgn_ratio_and_spot_mode_is_refused() -> None:
    # multi-currency margin (acctLv 3) is computed: tests/test_okx_multi_currency.py
    async def body() -> None:
        fake = FakeOKX()
        async with long_btc(fake, "okx", "8000", "10") as (feed, state):
            assert state.mode.mode is M.SINGLE_ASSET and state.computable
            fake.set_currency(KEY, "BTC", "0.1", "60000", follows=BTC)
            fake.set_account_level(KEY, "4")
            await feed.reconcile()
            assert state.mode.mode is M.PORTFOLIO and state.mode.coverage is C.EXCHANGE_RATIO
            assert not state.computable and state.mode.detail == "acctLv 4"
            ratio = state.reported_account.margin_ratio
            assert ratio is not None and state.reported_account.margin_balance is not None
            # the USD pool's adjEq: the USDT and the BTC's discounted value
            assert state.reported_account.margin_balance > D(8000)
            fake.set_account_level(KEY, "1")
            await feed.reconcile()
            assert state.fatal is not None and "spot mode (acctLv 1)" in state.fatal

    run(body())


def test_hyperliquid_switches_abstraction_without_a_restart() -> None:
    """Standard -> unified (computed, Hyperliquid's unified ratio reproduced) -> portfolio
    margin (Hyperliquid's own ratio, over its 0.95 liquidation level) -> standard."""
    hl_btc = "BTC/USDC:USDC"

    async def body() -> None:
        async with started(FakeHyperliquid(), [(HL_USER, "", "1000")]) as fake:
            fake.set_mark(hl_btc, "60000")
            fake.open_position(HL_USER, hl_btc, "long", "0.1", "60000")
            config = AccountConfig(
                name="h",
                exchange="hyperliquid",
                wallet_address=HL_USER,
                urls=fake.ccxt_urls(),
                options=dict(fake.ccxt_options),
            )
            async with kept_open(AccountFeed(config, {}, FAST, FAST_OPTIONS)) as feed:
                state = feed.state
                assert state.mode.mode is M.SINGLE_ASSET and state.computable
                # BTC at 40x: MM 6,000 x 1.25% = 75 over the 1,000 USDC
                assert state.reported_account.margin_ratio == D(75) / D(1000)

                fake.set_abstraction(HL_USER, "unifiedAccount")
                fake.set_mark(hl_btc, "59000")  # the spot balance holds the long's -100
                await feed.reconcile()
                assert state.fatal is None and state.computable
                assert state.mode.mode is M.UNIFIED_ACCOUNT and state.mode.coverage is C.COMPUTED
                reported = state.reported_account
                assert reported.margin_balance == 900 and reported.maintenance_margin == D("73.75")
                assert feed.ratios is not None and feed.ratios == (D("73.75") / 900,) * 2
                assert feed.comparison is not None and feed.comparison.mismatches == ()

                fake.set_abstraction(HL_USER, "portfolioMargin")
                fake.set_portfolio_margin_ratio(HL_USER, "0.38")
                await feed.reconcile()
                assert state.mode.mode is M.PORTFOLIO and state.mode.coverage is C.EXCHANGE_RATIO
                assert not state.computable and "0.95" in state.mode.limits
                assert state.reported_account.margin_ratio == D("0.4")
                assert state.exchange_ratio() == (D("0.4"), False)  # as read: no equity given

                fake.set_abstraction(HL_USER, "disabled")
                await feed.reconcile()
                assert state.mode.mode is M.SINGLE_ASSET and state.computable
                assert state.reported_account.margin_ratio == D("73.75") / 900

    run(body())


# --- the built-in rules that watch alertd's own figures ----------------------------------------

BASE_CONFIG = """
version: 1
accounts: [{name: hl, exchange: hyperliquid, wallet_address: "0x1"}]
"""


def test_builtin_watch_rules_have_defaults_and_can_be_tuned_or_turned_off() -> None:
    from alertd.config import parse_config
    from alertd.daemon.evaluation import build_rules

    rules = {r.name: r for r in build_rules(parse_config(BASE_CONFIG))}
    drift, mode, incomplete = rules["ratio-drift"], rules["account-mode"], rules["incomplete-data"]
    assert (drift.metric, drift.condition.above, drift.for_s) == ("ratio_drift", D("0.1"), 600.0)
    assert (mode.metric, mode.condition.above, mode.severity.label) == (
        "mode_not_computed",
        0,
        "warning",
    )
    assert (incomplete.metric, incomplete.for_s) == ("incomplete_data", 30.0)
    assert incomplete.for_s <= 60  # "within a minute"

    tuned = parse_config(
        BASE_CONFIG
        + "builtin_rules: {ratio_drift_above: 0.25, ratio_drift_for: 2m, incomplete_data: false,"
        " account_mode: false}\n"
    )
    rules = {r.name: r for r in build_rules(tuned)}
    assert (rules["ratio-drift"].condition.above, rules["ratio-drift"].for_s) == (D("0.25"), 120.0)
    assert "incomplete-data" not in rules and "account-mode" not in rules
    off = parse_config(BASE_CONFIG + "builtin_rules: {ratio_drift: false}\n")
    assert "ratio-drift" not in {r.name for r in build_rules(off)}


def test_drift_is_relative_and_nothing_within_the_exchange_s_rounding() -> None:
    from alertd.rules.model import FeedStatus
    from alertd.snapshot.compare import rounding

    def drift(ours: str, theirs: str) -> Decimal | None:
        pair = (D(ours), D(theirs))
        return FeedStatus(
            D(0), D(0), None, ratios=pair, ratio_rounding=rounding(pair[1])
        ).ratio_drift

    assert drift("0.573", "0.0925") == (D("0.573") - D("0.0925")) / D("0.0925")  # the issue's
    assert drift("0.12", "0.18") == D("0.06") / D("0.18")
    # Bybit's accountMMRate has four decimals: 0.00044 against "0.0004" is its rounding
    assert drift("0.00044", "0.0004") == 0
    assert drift("0.0006", "0.0004") == D("0.5")
    assert FeedStatus(D(0), D(0), None).ratio_drift is None
    assert drift("Infinity", "0.5") is None


def test_the_exchange_s_ratio_stands_in_only_while_alertd_has_none() -> None:
    from alertd.rules.metrics import observe
    from alertd.rules.model import FeedStatus

    feed = FeedStatus(
        D(0),
        D(0),
        None,
        exchange_name="Binance USDⓈ-M",
        mode="multi-assets (multiAssetsMargin true)",
        mode_limits="one USD pool",
        exchange_ratio=D("0.0925"),
        exchange_ratio_stands_in=True,
    )
    [account] = observe("a", "binanceusdm", None, feed)
    assert account.metrics["worst_ratio"] == account.metrics["margin_ratio"] == D("0.0925")
    assert account.metrics["mode_not_computed"] == 1
    assert account.metrics["exchange_margin_ratio"] == D("0.0925")
    assert "buffer" not in account.metrics  # alertd's own figures: none
    quiet = FeedStatus(D(0), D(0), None, exchange_ratio=D("0.0925"))
    [account] = observe("a", "binanceusdm", None, quiet)
    assert "worst_ratio" not in account.metrics  # not standing in: no ratio while incomplete


def test_binance_multi_assets_pools_usdc_m_positions() -> None:
    """In multi-assets mode a USDC-M perpetual is in the one USD pool with the USDT-M ones
    (Binance, "Multi-Assets Mode": the assets back every USDⓈ-M position): alertd computes
    the account with it, and each position's liquidation price is the local Binance's (its
    pool holds every position); back in single-asset mode the USDC pool is its own."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [("key-m", "secret-m", "2000")]) as fake:
            fake.add_symbol(USDC_BTC, "60000")
            fake.set_mark(BTC, "60000")
            fake.set_asset_index("USDC", "1", "0", "0")
            fake.set_multi_assets_coins("key-m", {"USDC": "500"})
            fake.open_position("key-m", BTC, "long", "0.1", "60000")
            fake.open_position("key-m", USDC_BTC, "long", "0.2", "59000")
            feed = make_feed(account_config("m", "binanceusdm", fake), "key-m", "secret-m")
            try:
                await feed.bootstrap()
                state = feed.state
                assert state.mode.mode is M.MULTI_ASSETS and state.computable, state.missing()
                theirs = {
                    symbol: r.liquidation_price
                    for (symbol, _), r in state.reported_positions.items()
                }
                ours = {
                    pm.position.symbol: pm.liquidation_price
                    for pm in compute(state.to_account()).positions
                }
                assert sorted(ours) == [USDC_BTC, BTC] and sorted(theirs) == sorted(ours)
                for symbol, reported in theirs.items():
                    mine = ours[symbol]
                    assert reported is not None and mine is not None
                    assert abs(mine / reported - 1) < D("1e-6"), (symbol, mine, reported)
                assert feed.comparison is not None and feed.comparison.mismatches == ()
                pooled = _liquidations_agree(state)

                # back in single-asset mode (no USDC wallet left): the USDC-M long is its own
                # pool, on its PnL alone, picked up at the next snapshot
                fake.set_multi_assets_coins("key-m", {}, on=False)
                await feed.resync()
                assert state.mode.mode is M.SINGLE_ASSET and state.computable, state.missing()
                assert [p.asset for p in state.to_account().pools] == ["USDC"]
                apart = _liquidations_agree(state)
                assert apart[USDC_BTC] > pooled[USDC_BTC]  # its own pool: less room
                assert feed.comparison is not None and feed.comparison.mismatches == ()
            finally:
                await feed.close()

    run(body())


def test_a_market_listed_after_start_is_loaded_not_fatal() -> None:
    """A position in a market listed since the catalogue was loaded (a new listing) reloads
    the catalogue at the next snapshot: the account goes on, computed with it (it stopped
    with ccxt's BadSymbol before); a catalogue reloaded by someone else is followed."""

    async def body() -> None:
        fake = FakeBinanceUSDM()
        async with long_btc(fake, "binanceusdm", "2000", "1") as (feed, state):
            doge = "DOGE/USDT:USDT"
            assert doge not in state.markets
            fake.add_symbol(doge, "0.2")
            fake.open_position(KEY, doge, "long", "1000", "0.2")
            await feed.reconcile()
            assert state.fatal is None
            assert doge in state.markets and state.computable, state.missing()
            assert {p.symbol for p in state.to_account().positions} == {BTC, doge}

            # a catalogue reloaded elsewhere (the daily refresh, another account's listing):
            # the account's markets follow it at the next snapshot, with no reload of its own
            ada = "ADA/USDT:USDT"
            fake.add_symbol(ada, "0.5")
            assert feed.exchange is not None
            await feed.exchange.load_markets(reload=True)
            fake.open_position(KEY, ada, "long", "100", "0.5")
            await feed.reconcile()
            assert ada in state.markets and state.computable, state.missing()

    run(body())


# --- position alerts while the exchange's ratio stands in (review findings on issue 11) ------


class Evaluated:
    """The daemon's evaluation of one feed's account against ``rules`` (the built-in ones
    off), with its book kept as the service keeps it (alertd/daemon/service.py
    ``_on_change``): the account's figures while its data is complete, none while not."""

    def __init__(
        self, feed: AccountFeed, *rules: RuleConfig, incomplete_data: bool = False
    ) -> None:
        config = Config(
            version=1,
            accounts=[feed.config],
            rules=list(rules),
            builtin_rules=BuiltinRules(
                feed_stale=False,
                feed_down=False,
                account_mode=False,
                incomplete_data=incomplete_data,
            ),
        )
        store = Store(":memory:")
        deliverer = Deliverer(store, {}, config.routes, config.delivery)
        self.book = Book()
        self.feed = feed
        self.wall = 0.0  # the evaluations' wall clock: their monotonic time, as passed in
        self.alerting = Alerting(
            config, store, deliverer, book=self.book, wall_clock=lambda: self.wall
        )

    def __call__(self, now: float) -> list[tuple[str, str, str | None]]:
        """(kind, subject, why it resolved) of what the evaluation at ``now`` sends."""
        state, name = self.feed.state, self.feed.config.name
        if state.missing():
            self.book.remove_account(name)
        else:
            self.book.set_account(name, state.to_account())
        self.wall = now
        notes = self.alerting.evaluate(self.feed, now)
        return [
            (n.kind.value, n.subject.key, None if n.reason is None else n.reason.value)
            for n in notes
        ]


NEAR_LIQUIDATION = RuleConfig(
    name="near-liq", metric="liquidation_distance", below=D("0.05"), severity="critical"
)


def test_a_position_alert_stays_as_it_is_while_a_new_symbol_s_tiers_are_not_read() -> None:
    """A computed account briefly incomplete (a new symbol whose leverage brackets Binance
    does not serve yet) has Binance's ratio stand in. Its positions were then read on
    Binance's figures: the long's liquidation-distance critical resolved ("no value": no
    liquidation price in Binance's last answer) and fired again once the tiers came, a
    resolve/fire pair sent for nothing. Now the alerts alertd raised from its own figures
    stay as they are meanwhile, and the account's status says so."""

    async def body() -> None:
        fake = FakeBinanceUSDM()
        # 1 BTC long at 60,000 on 2,000 USDT: liquidation about 2.9% below the mark
        async with long_btc(fake, "binanceusdm", "2000", "1") as (feed, state):
            evaluate = Evaluated(feed, NEAR_LIQUIDATION)
            btc_long = f"a/{BTC}/long"
            assert evaluate(1.0) == [("firing", btc_long, None)]

            eth = "ETH/USDT:USDT"
            fake.add_symbol(eth, "3400")
            fake.withhold_brackets(eth)
            fake.open_position(KEY, eth, "long", "0.01", "3400")
            await feed.reconcile()
            assert state.missing() == [f"{eth} long: no tier table"]
            # Binance's answer with no liquidation price for the long ("0")
            reported = state.reported_positions[(BTC, Side.LONG)]
            none = dataclasses.replace(reported, liquidation_price=None)
            state.reported_positions[(BTC, Side.LONG)] = none
            status = evaluate.alerting.feed_status(feed, 2.0, tuple(state.missing()))
            assert status.exchange_ratio_stands_in
            assert evaluate(2.0) == []  # was: resolved (no value)
            assert evaluate(3.0) == []
            assert evaluate.alerting.held_positions("a") == (f"{BTC} long",)
            # a status read as if complete changes nothing: what the status line names is
            # what the last evaluation kept (it cleared the hold, review rev11b finding 4)
            evaluate.alerting.feed_status(feed, 3.5, ())
            assert evaluate.alerting.held_positions("a") == (f"{BTC} long",)
            firing = evaluate.alerting.engine.firing()
            assert [s.subject.key for s in firing] == [btc_long]
            message = render_incomplete(evaluate.alerting, feed, 4.0)
            assert f"alerts on {BTC} long are kept as they are until then" in message

            fake.withhold_brackets(eth, False)
            await feed.reconcile()
            assert state.computable, state.missing()
            assert evaluate(5.0) == []  # was: firing again
            assert evaluate.alerting.held_positions("a") == ()

            # a position closed while the account is incomplete resolves as closed
            fake.withhold_brackets(eth)
            state.tiers.pop(eth)
            assert evaluate(6.0) == []
            fake.close_position(KEY, BTC)
            await feed.reconcile()
            assert evaluate(7.0) == [("resolved", btc_long, "no longer observed")]
            assert evaluate.alerting.held_positions("a") == ()

    run(body())


WARN_NEAR_LIQUIDATION = RuleConfig(
    name="warn-liq", metric="liquidation_distance", below=D("0.05"), severity="warning"
)
CRIT_NEAR_LIQUIDATION = RuleConfig(
    name="crit-liq", metric="liquidation_distance", below=D("0.02"), severity="critical"
)


async def eth_tiers_withheld(fake: FakeBinanceUSDM, feed: AccountFeed) -> None:
    """A new ETH long whose leverage brackets Binance does not serve yet: ``feed``'s account
    incomplete for it, Binance's ratio standing in."""
    eth = "ETH/USDT:USDT"
    fake.add_symbol(eth, "3400")
    fake.withhold_brackets(eth)
    fake.open_position(KEY, eth, "long", "0.01", "3400")
    await feed.reconcile()
    assert feed.state.missing() == [f"{eth} long: no tier table"]


def test_a_held_position_alert_escalates_on_the_exchange_s_figures() -> None:
    """A held position's alerts stay as they are only where the exchange's answer lacks a
    figure: one it gives is read. The long's liquidation-distance warning fires; an ETH
    long's tiers are withheld; BTC falls to 58,900, 1.1% above Binance's liquidation price
    (58,233): the critical fires. It was held with no value at all, and nothing was sent
    (review rev11b finding 1), while without the warning firing the critical fired."""

    async def body() -> None:
        fake = FakeBinanceUSDM()
        async with long_btc(fake, "binanceusdm", "2000", "1") as (feed, state):
            evaluate = Evaluated(feed, WARN_NEAR_LIQUIDATION, CRIT_NEAR_LIQUIDATION)
            btc_long = f"a/{BTC}/long"
            assert evaluate(1.0) == [("firing", btc_long, None)]
            await eth_tiers_withheld(fake, feed)
            assert evaluate(2.0) == []
            fake.set_mark(BTC, "58900")
            state.set_mark(BTC, D("58900"), 2.5)  # the mark stream's tick (not run here)
            await feed.reconcile()
            liquidation = state.reported_positions[(BTC, Side.LONG)].liquidation_price
            assert liquidation is not None and D("0.011") < 1 - liquidation / D(58900) < D("0.02")
            assert evaluate(3.0) == [("firing", btc_long, None)]
            assert evaluate.alerting.held_positions("a") == (f"{BTC} long",)
            firing = {s.rule for s in evaluate.alerting.engine.firing()}
            assert firing == {"warn-liq", "crit-liq"}

    run(body())


def test_a_held_position_alert_is_held_until_the_incomplete_data_warning_fires() -> None:
    """Held, a position's alert stays as it is while the exchange's answer lacks its figure,
    but only until the incomplete-data warning fires (``incomplete_data_for``, 30 s): from
    then the account is said to be incomplete and the exchange's figures read as they are
    (the hold was unbounded, review rev11b finding 1)."""

    async def body() -> None:
        fake = FakeBinanceUSDM()
        async with long_btc(fake, "binanceusdm", "2000", "1") as (feed, state):
            evaluate = Evaluated(feed, NEAR_LIQUIDATION, incomplete_data=True)
            btc_long = f"a/{BTC}/long"
            assert evaluate(1.0) == [("firing", btc_long, None)]
            await eth_tiers_withheld(fake, feed)
            # Binance's answer with no liquidation price for the long ("0")
            reported = state.reported_positions[(BTC, Side.LONG)]
            none = dataclasses.replace(reported, liquidation_price=None)
            state.reported_positions[(BTC, Side.LONG)] = none
            for now in (2.0, 20.0, 31.0):
                assert evaluate(now) == [], now
            assert evaluate.alerting.held_positions("a") == (f"{BTC} long",)
            assert evaluate(32.0) == [
                ("firing", "a", None),  # incomplete data
                ("resolved", btc_long, "no value"),
            ]
            assert evaluate.alerting.held_positions("a") == ()

    run(body())


def render_incomplete(alerting: Alerting, feed: AccountFeed, now: float) -> str:
    """The incomplete-data warning's body for ``feed``'s account as it is at ``now``."""
    from alertd.rules.lifecycle import Kind, Notification
    from alertd.rules.messages import render

    rule = next(
        r
        for r in builtin_rules(Config(version=1, accounts=[feed.config]))
        if r.name == "incomplete-data"
    )
    status = alerting.feed_status(feed, now, tuple(feed.state.incomplete()))
    subject = Subject(feed.config.name, feed.config.exchange)
    note = Notification(Kind.FIRING, rule, subject, now, now, D(1), Context(feed=status))
    return render(note).body


def test_a_position_in_a_market_alertd_does_not_know_is_not_closed() -> None:
    """A portfolio margin account (Binance's uniMMR stands in) holding a position in a market
    listed since the catalogue was last loaded (reloaded at most every 5 minutes): the
    exchange's list of the positions cannot describe it, and its alerts resolved as
    "(position closed)". Now the account is incomplete naming the market, and the alerts
    stay as they are until the market is known."""

    async def body() -> None:
        async with started(FakeBinanceUSDM(), [(KEY, SECRET, "2000")]) as fake:
            feed = portfolio_long_btc(fake)
            async with kept_open(feed):
                state = feed.state
                evaluate = Evaluated(feed, NEAR_LIQUIDATION, incomplete_data=True)
                name = feed.config.name
                btc_long = f"{name}/{BTC}/long"
                # the long within 5% of Binance's liquidation price
                assert evaluate(2.0) == [("firing", btc_long, None)]
                # the market missing from the catalogue alertd reads, as for a market listed
                # since the catalogue was loaded (in the state by hand: the local Binance
                # serves every market it lists in its catalogue)
                market = state.markets.pop(BTC)
                assert evaluate(3.0) == []  # was: resolved (position closed)
                assert state.incomplete() == [f"{BTC} long: unknown market"]
                status = evaluate.alerting.feed_status(feed, 3.0, tuple(state.incomplete()))
                assert status.missing == (f"{BTC} long: unknown market",)
                assert status.kept_positions == ((BTC, "long"),)
                # and its status says so (it named only the positions held while a computed
                # account's figures are incomplete, review rev11b finding 3)
                assert evaluate.alerting.held_positions(name) == (f"{BTC} long",)
                firing = evaluate.alerting.engine.firing()
                assert [s.subject.key for s in firing] == [btc_long]
                # it stays incomplete: the warning says what is missing within a minute
                for now in (4.0, 20.0):
                    assert evaluate(now) == []
                assert evaluate(34.0) == [("firing", name, None)]
                message = render_incomplete(evaluate.alerting, feed, 34.0)
                assert f"alertd cannot compute this account: {BTC} long: unknown market" in message
                state.markets[BTC] = market
                # the market known again: the long's alert still firing (nothing sent for it),
                # the incomplete-data warning resolved
                assert evaluate(35.0) == [("resolved", name, "cleared")]
                assert state.incomplete() == []

    run(body())


def test_the_exchange_ratio_is_moved_only_where_it_stands_in_or_a_rule_reads_it() -> None:
    """Binance's own ratio moved with the marks was computed at every evaluation of every
    account, a twentieth of a firing daemon's CPU at 1,000 accounts (firing14), though for an
    account alertd computes nothing reads it: its status carries none then. A rule on
    ``exchange_margin_ratio`` reads it, and where it stands in for alertd's (a mode alertd
    does not compute, incomplete data) it is there as before, moved with the marks."""

    async def body() -> None:
        fake = FakeBinanceUSDM()
        async with long_btc(fake, "binanceusdm", "2000", "1") as (feed, state):
            assert state.mode.coverage is C.COMPUTED and state.computable
            fake.set_mark(BTC, "59000")
            state.set_mark(BTC, D("59000"), 1.0)  # as the mark stream sets it
            moved, was_moved = state.exchange_ratio()
            assert was_moved and moved is not None

            def status(rules: list[RuleConfig], missing: tuple[str, ...] = ()) -> Any:
                config = Config(version=1, accounts=[feed.config], rules=rules)
                store = Store(":memory:")
                deliverer = Deliverer(store, {}, config.routes, config.delivery)
                alerting = Alerting(config, store, deliverer, book=Book(), wall_clock=lambda: 0.0)
                return alerting.feed_status(feed, 2.0, missing)

            plain = status([])
            assert plain.exchange_ratio is None and not plain.exchange_ratio_stands_in
            theirs = RuleConfig(name="theirs", metric="exchange_margin_ratio", above=D("0.8"))
            read = status([theirs])
            assert (read.exchange_ratio, read.exchange_ratio_moved) == (moved, True)
            assert not read.exchange_ratio_stands_in
            stands_in = status([], ("BTC/USDT:USDT tier table",))
            assert stands_in.exchange_ratio == moved and stands_in.exchange_ratio_stands_in

    run(body())
