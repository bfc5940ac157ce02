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
from typing import Any, ClassVar

import pytest

from alertd.engine.margin import compute
from alertd.engine.model import Pool
from alertd.exchanges.binance import USDM_MARKETS, BinanceUSDMAdapter, single_asset_pools
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


def _market(market_id: str, base: str, settle: str, kind: str = "swap") -> dict[str, Any]:
    """A market of ccxt's binanceusdm catalogue, the fields alertd reads: ccxt's ``settle`` is
    exchangeInfo's ``marginAsset`` (ccxt binance.py ``parse_market``)."""
    return {
        "id": market_id,
        "symbol": f"{base}/{settle}:{settle}" + ("-250926" if kind == "future" else ""),
        "base": base,
        "quote": settle,
        "settle": settle,
        "type": kind,
        "contract": True,
        "linear": True,
        "inverse": False,
        "contractSize": 1.0,
    }


# Binance's USDⓈ-M margin assets as its exchangeInfo lists them: USDT-M perpetuals and a
# quarterly, USDC-M perpetuals, and a third margin asset (FDUSD-M; BUSD-M until 2023)
CATALOGUE = {
    m["symbol"]: m
    for m in (
        _market("BTCUSDT", "BTC", "USDT"),
        _market("BTCUSDT_250926", "BTC", "USDT", "future"),
        _market("ETHUSDC", "ETH", "USDC"),
        _market("BTCUSDC", "BTC", "USDC"),
        _market("BTCFDUSD", "BTC", "FDUSD"),
    )
}


def test_every_settle_currency_of_the_catalogue_is_a_margin_asset() -> None:
    # every USDⓈ-M contract is read, whatever its margin asset: none is left unknown
    assert all(USDM_MARKETS.accepts(m) for m in CATALOGUE.values())
    assert not USDM_MARKETS.accepts({"settle": None, "contract": False})  # a spot market
    assert USDM_MARKETS.margin_assets(CATALOGUE) == ("FDUSD", "USDC")
    # before the catalogue is loaded: none known yet (the next snapshot reads them)
    assert USDM_MARKETS.margin_assets(None) == ()
    # a margin asset listed later (a reloaded catalogue) is one more pool
    listed = {**CATALOGUE, "ETH/BUSD:BUSD": _market("ETHBUSD", "ETH", "BUSD")}
    assert USDM_MARKETS.margin_assets(listed) == ("BUSD", "FDUSD", "USDC")
    # found once per catalogue (each snapshot of each account asks): another catalogue, even
    # an older one, is its own answer
    assert USDM_MARKETS.margin_assets(listed) == ("BUSD", "FDUSD", "USDC")
    assert USDM_MARKETS.margin_assets(CATALOGUE) == ("FDUSD", "USDC")


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


class _Snapshot:
    """ccxt's binanceusdm: its catalogue, its options and the snapshot's two answers (no
    position, ``account`` as the account answer)."""

    markets = CATALOGUE
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, account: dict[str, Any]) -> None:
        self.account = account

    async def fapiPrivateV3GetPositionRisk(self) -> list[Any]:
        return []

    async def fapiPrivateV2GetAccount(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(json.dumps(self.account))
        return answer


def test_single_asset_reads_a_pool_for_every_margin_asset_the_catalogue_lists() -> None:
    # the docs' answer with an FDUSD row in the same shape: 80 FDUSD holding a long 4.5 in
    # loss; BNB has a row too (a spot-wallet asset, no contract settles in it): no pool
    account = dict(
        SINGLE_ASSET,
        assets=[
            *SINGLE_ASSET["assets"],
            _row("FDUSD", "80.00000000", "-4.50000000", "2.50000000"),
            _row("BNB", "1.00000000", "0.00000000", "0.00000000"),
        ],
    )

    pools = run(BinanceUSDMAdapter().fetch_pools(_Snapshot(account)))
    assert pools == {
        "FDUSD": (D(80), ReportedAccount(D("2.5"), D("75.5"), D("2.5") / D("75.5"))),
        "USDC": (D(500), ReportedAccount(D(35), D(450), D(35) / D(450))),
    }


def test_an_asset_row_without_its_name_is_skipped_not_the_snapshot() -> None:
    """An account answer's asset row without "asset" is skipped as before (the wallets'
    update times, read for ordering pushes against the snapshot, indexed it: KeyError, every
    snapshot failed and retried for ever; review of race14)."""
    account = dict(
        SINGLE_ASSET, assets=[*SINGLE_ASSET["assets"], {"walletBalance": "0", "updateTime": 5}]
    )

    adapter = BinanceUSDMAdapter()
    wallet, _ = run(adapter.fetch_balance(_Snapshot(account)))
    assert wallet == D("23.72469206")
    assert set(run(adapter.fetch_pools(_Snapshot(account)))) == {"FDUSD", "USDC"}


class _Pushes:
    """ccxt's binanceusdm as the adapter sees it: its market catalogue, and ``watch_balance``
    handing back each ``ACCOUNT_UPDATE`` as its ``info``."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.markets = CATALOGUE

    async def watch_balance(self) -> dict[str, Any]:
        return {"info": self.messages.pop(0)}


def test_a_balance_push_updates_every_pool_it_names() -> None:
    # "Event: Balance and Position Update" (USDⓈ-M user data stream), its response example's
    # balances (USDT and BUSD rows), with USDC, FDUSD and BNB rows in the same shape; then a
    # push naming USDC alone (a USDC-M fill changes only the USDC row). BUSD and BNB are no
    # margin asset of this catalogue (no contract settles in them): not a pool's wallet
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
                {"a": "FDUSD", "wb": "80.00000000", "cw": "75.50000000", "bc": "0"},
                {"a": "BNB", "wb": "2.00000000", "cw": "2.00000000", "bc": "0"},
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
            "FDUSD": D("75.5"),
        }
        assert await adapter.watch_balances(exchange) == {"USDC": D(450)}
        assert await adapter.watch_balance(exchange) is None  # no USDT row in it

    run(body())


def test_each_pool_is_computed_on_its_own_wallet() -> None:
    account = snapshots.margin_pools()
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


def test_a_third_margin_asset_is_a_pool_of_its_own() -> None:
    account = snapshots.margin_pools(fdusd=True)
    assert [(p.asset, p.wallet_balance) for p in account.pools] == [
        ("USDC", D(100)),
        ("FDUSD", D(200)),
    ]
    usdt, usdc, fdusd = compute(account).pools
    # the FDUSD pool: MM 0.1 x 50,000 x 0.5% = 25 of 200; its liquidation on its own wallet,
    # 200 + 0.1 (m - 50,000) = 0.0005 m; the other pools as with two
    assert fdusd.pool.asset == "FDUSD" and fdusd.pool.margin_ratio == D("0.125")
    assert fdusd.positions[0].liquidation_price == D(4800) / D("0.0995")
    assert (usdt.pool, usdc.pool) == tuple(m.pool for m in compute(snapshots.margin_pools()).pools)
    falling = compute(account.with_marks({"BTC/FDUSD:FDUSD": D(49000)})).pools
    assert falling[2].pool.margin_ratio == D("24.5") / D(100)  # 200 - 100 behind an MM of 24.5
    assert [m.pool for m in falling[:2]] == [usdt.pool, usdc.pool]  # the others unmoved


def test_a_pool_s_position_moves_its_pool_alone() -> None:
    account = snapshots.margin_pools()
    falling = compute(account.with_marks({"ETH/USDC:USDC": D(2950)}))
    usdt, usdc = falling.pools
    assert usdt.pool == compute(account).pools[0].pool  # the USDT pool did not move
    assert usdc.pool.margin_ratio == D("29.5") / D(50)  # 100 - 50 behind an MM of 29.5


def test_a_snapshot_keeps_every_pool() -> None:
    account = snapshots.margin_pools()
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
    metrics = compute(snapshots.margin_pools())
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
    assert comparison.margin_ratio_pool == "USDC"  # the drift message names it
    # a pool Binance reported nothing of: alertd's figures, never shown as Binance's
    bare = compare(metrics, usdt, {}, Binance())
    assert {r.key: r.theirs for r in bare if r.pool == "USDC"} == {
        "USDC maintenance_margin": None,
        "USDC margin_balance": None,
        "USDC margin_ratio": None,
    }
    assert bare.margin_ratio == (D("0.2"), D("0.2")) and bare.margin_ratio_pool == "USDT"
    # one pool: none named
    single = compute(snapshots.btc_long_on_2000("60000"))
    alone = compare(single, ReportedAccount(D(240), D(2000), D("0.12")), {}, Binance())
    assert alone.margin_ratio == (D("0.12"), D("0.12")) and alone.margin_ratio_pool is None
