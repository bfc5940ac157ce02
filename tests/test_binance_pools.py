"""Binance USDⓈ-M single-asset mode: each margin asset is its own pool (issue 11).

The parsers on Binance's documented payloads, and the engine's split of an account into its
pools on figures worked by hand. The local Binance serving this account shape, the feed and
``alertd run`` against it: tests/test_account_modes.py
(``test_binance_single_asset_computes_the_usdc_pool_on_its_own``) and tests/test_e2e_modes.py
(``test_the_usdc_pool_falls_alone_and_its_alerts_fire_at_the_right_marks``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from alertd.engine.margin import compute
from alertd.engine.model import Account, Pool
from alertd.exchanges.binance import BinanceUSDMAdapter, single_asset_pools
from alertd.feeds.adapter import FrameError
from alertd.feeds.state import ReportedAccount
from alertd.snapshot.compare import compare
from alertd.snapshot.format import account_to_json, parse_snapshot

from .support import snapshots
from .support.aio import run

D = Decimal


def _row(asset: str, wallet: str, upnl: str, mm: str) -> dict[str, Any]:
    """One ``assets[]`` row of "Account Information V2" (developers.binance.com, USDⓈ-M
    futures, GET /fapi/v2/account, the single-asset response example: every field of it)."""
    margin = str(D(wallet) + D(upnl))
    return {
        "asset": asset,
        "walletBalance": wallet,
        "unrealizedProfit": upnl,
        "marginBalance": margin,
        "maintMargin": mm,
        "initialMargin": "0.00000000",
        "positionInitialMargin": "0.00000000",
        "openOrderInitialMargin": "0.00000000",
        "crossWalletBalance": wallet,
        "crossUnPnl": upnl,
        "availableBalance": wallet,
        "maxWithdrawAmount": wallet,
        "marginAvailable": True,
        "updateTime": 1625474304765,
    }


# The docs' single-asset example (its totals "only for USDT asset": 23.72469206 USDT, nothing
# held), with a USDC row in the same shape: a USDC wallet of 500 holding a long 50 in loss
SINGLE_ASSET = {
    "multiAssetsMargin": False,
    "totalMaintMargin": "0.00000000",
    "totalWalletBalance": "23.72469206",
    "totalMarginBalance": "23.72469206",
    "totalCrossWalletBalance": "23.72469206",
    "assets": [
        _row("USDT", "23.72469206", "0.00000000", "0.00000000"),
        _row("USDC", "500.00000000", "-50.00000000", "35.00000000"),
    ],
}


def test_each_margin_asset_s_pool_is_read_from_its_own_row() -> None:
    pools = single_asset_pools(SINGLE_ASSET, ("USDC", "FDUSD"))
    wallet, reported = pools["USDC"]
    assert wallet == D(500)
    assert reported == ReportedAccount(D(35), D(450), D(35) / D(450))
    # an asset the answer does not list: an empty wallet, no figures of Binance's
    assert pools["FDUSD"] == (D(0), ReportedAccount())
    broken = {"assets": [dict(_row("USDC", "1", "0", "0"), crossWalletBalance="n/a")]}
    with pytest.raises(FrameError, match=r"assets\[USDC\]\.crossWalletBalance"):
        single_asset_pools(broken, ("USDC",))


class _Pushes:
    """ccxt's binanceusdm as the adapter sees it: ``watch_balance`` hands back each
    ``ACCOUNT_UPDATE`` as its ``info``."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages

    async def watch_balance(self) -> dict[str, Any]:
        return {"info": self.messages.pop(0)}


def test_a_balance_push_updates_every_pool_it_names() -> None:
    # "Event: Balance and Position Update" (USDⓈ-M user data stream), its response example's
    # balances (USDT and BUSD rows), with a USDC row in the same shape; then a push naming
    # USDC alone (a USDC-M fill changes only the USDC row)
    example = {
        "e": "ACCOUNT_UPDATE",
        "E": 1564745798939,
        "T": 1564745798938,
        "a": {
            "m": "ORDER",
            "B": [
                {"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50.12345678"},
                {"a": "BUSD", "wb": "1.00000000", "cw": "0.00000000", "bc": "-49.12345678"},
                {"a": "USDC", "wb": "600.00000000", "cw": "450.00000000", "bc": "0"},
            ],
            "P": [],
        },
    }
    usdc_only = {"e": "ACCOUNT_UPDATE", "a": {"m": "ORDER", "B": [example["a"]["B"][2]]}}

    async def body() -> None:
        adapter = BinanceUSDMAdapter()
        exchange = _Pushes([example, usdc_only, usdc_only])
        assert await adapter.watch_balances(exchange) == {
            "USDT": D("100.12345678"),
            "USDC": D(450),
        }
        assert await adapter.watch_balances(exchange) == {"USDC": D(450)}
        assert await adapter.watch_balance(exchange) is None  # no USDT row in it

    run(body())


def two_pools() -> Account:
    """1,000 USDT with 1 BTCUSDT long at 50,000 (MM 0.4%), and a USDC pool of 100 USDC with
    1 ETHUSDC long at 3,000 (MM 1%), both at their entry price."""
    btc = snapshots.position(
        "BTC/USDT:USDT", "long", "1", "50000", "50000", snapshots.tiers([(None, "0.004", "0")])
    )
    eth = snapshots.position(
        "ETH/USDC:USDC", "long", "1", "3000", "3000", snapshots.tiers([(None, "0.01", "0")])
    )
    snap = snapshots.snapshot("binanceusdm", "1000", [btc, dict(eth, pool="USDC")])
    snap.update(schema=2, pools=[{"asset": "USDC", "wallet_balance": "100"}])
    return snapshots.account(snap)


def test_each_pool_is_computed_on_its_own_wallet() -> None:
    account = two_pools()
    assert account.pools == (Pool("USDC", D(100)),)
    metrics = compute(account, D("0.5"))
    usdt, usdc = metrics.pools
    # the USDT pool: MM 200 of 1,000; its liquidation 1,000 + (m - 50,000) = 0.004 m
    assert usdt.pool.margin_ratio == D("0.2") and usdt.pool.asset == "USDT"
    assert usdt.positions[0].liquidation_price == D(49000) / D("0.996")
    # the USDC pool: MM 30 of 100; 100 + (m - 3,000) = 0.01 m, on its wallet alone
    assert usdc.pool.margin_ratio == D("0.3") and usdc.pool.asset == "USDC"
    assert usdc.positions[0].liquidation_price == D(2900) / D("0.99")
    # the account: its worst pool, the riskiest cross pool's figures, each position's
    # figures those of its own pool
    assert metrics.worst_ratio == D("0.3") and metrics.pool == usdc.pool
    assert [pm.liquidation_price for pm in metrics.positions] == [
        usdt.positions[0].liquidation_price,
        usdc.positions[0].liquidation_price,
    ]
    assert metrics.pool_of(("ETH/USDC:USDC", account.positions[1].side)) is usdc
    # margin to add, in each pool's own asset: 30 / 0.5 - 100 = -40 (none), 200 / 0.5 - 1,000
    assert usdc.pool.margin_to_add == 0 and usdt.pool.margin_to_add == 0
    # every mark falling together: the USDT pool goes first (1,000 + 50,000 (x - 1) = 200 x
    # at x = 0.98394, a 1.61% fall), the USDC pool at a 2.36% fall (100 + 3,000 (x - 1) = 30 x)
    assert usdt.crash_distance == D(49000) / D(49800) - 1
    assert usdc.crash_distance == D(2900) / D(2970) - 1
    assert metrics.crash_distance == usdt.crash_distance
    assert metrics.crash_pool() is usdt


def test_a_pool_s_position_moves_its_pool_alone() -> None:
    account = two_pools()
    falling = compute(account.with_marks({"ETH/USDC:USDC": D(2950)}))
    usdt, usdc = falling.pools
    assert usdt.pool == compute(account).pools[0].pool  # the USDT pool did not move
    assert usdc.pool.margin_ratio == D("29.5") / D(50)  # 100 - 50 behind an MM of 29.5


def test_a_snapshot_keeps_every_pool() -> None:
    account = two_pools()
    text = json.dumps(account_to_json(account))
    again = parse_snapshot(text)
    assert again.account == account
    assert [pool.settle for pool in again.pools] == ["USDT", "USDC"]
    assert json.loads(text)["pools"] == [
        {"asset": "USDC", "wallet_balance": "100", "collateral": []}
    ]


def test_drift_is_checked_per_pool_against_binance_s_row_of_its_asset() -> None:
    """Each pool beside Binance's own figures of it (the totals for the settle pool, the
    asset's row for the others): the drift names the pool, and the ratio pair the drift rule
    reads is the pool's that differs the most."""
    metrics = compute(two_pools())
    usdt = ReportedAccount(D(200), D(1000), D("0.2"))
    # Binance counts 50% more maintenance margin in the USDC pool than alertd knows of
    usdc = ReportedAccount(D(45), D(100), D("0.45"))

    class Binance:
        reported_mm_excludes_fee = False
        reported_account_mm_cross_only = False

    comparison = compare(metrics, usdt, {}, Binance(), reported_pools={"USDC": usdc})
    rows = {r.key: r for r in comparison}
    assert rows["USDT margin_ratio"].matches and rows["USDT maintenance_margin"].matches
    assert not rows["USDC margin_ratio"].matches
    assert comparison.drift["USDC margin_ratio"] == abs(D("0.3") / D("0.45") - 1)
    assert comparison.margin_ratio == (D("0.3"), D("0.45"))
    # a pool Binance reported nothing of: alertd's figures, never shown as Binance's
    bare = compare(metrics, usdt, {}, Binance())
    assert {r.key: r.theirs for r in bare if r.pool == "USDC"} == {
        "USDC maintenance_margin": None,
        "USDC margin_balance": None,
        "USDC margin_ratio": None,
    }
    assert bare.margin_ratio == (D("0.2"), D("0.2"))
