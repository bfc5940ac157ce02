"""Asset index frame cost: the CPU one ``!assetIndex@arr`` frame costs when it moves every
multi-assets account's rates, stage by stage, at N accounts.

The worst case of docs/benchmarks.md's rates11 run (USDT's and USDC's indices walking every
second): each frame moves the ``USDTUSD`` and ``USDCUSD`` rows, and every account settles in
USDT with a USDC line, so every account is re-rated. Per account, what the daemon does with a
frame (feeds/feed.py ``on_asset_index``, daemon/service.py ``_on_change`` and ``step``):

- rerate: the adapter's ``rerated`` of the account's snapshot terms at the frame's rows;
- book: the account rebuilt at those terms and set in the book (``Book.set_account``);
- evaluate: since idx14, its band proven again at the new rates where it held
  (``Alerting.band_rerated``), else (before idx14, always) its band dropped, evaluated with
  the default and built-in rules (``Alerting.evaluate_figures``) and its band computed again
  (``keep_band``).

Accounts as bench/engine.py builds them (real Binance tier tables from ../shared/data when
present), calm (2-5x, entries within 1%: the rules idle, bands found), half the positions
USDC-M. Times are this thread's CPU time (what the work costs on a shared machine); the load
average is printed before and after.

    python bench/rates.py [--accounts 200,1000] [--positions 3] [--frames 20]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

# bench/engine.py, beside this script (its directory is on the path when run)
from engine import alerting, build, load_tables, machine

from alertd.config import AccountConfig, FeedSettings
from alertd.daemon.evaluation import Alerting, FeedStatus
from alertd.engine.book import Book, LiveAccount
from alertd.engine.collateral import ConversionRates, SettleTerms
from alertd.engine.model import Account
from alertd.exchanges.binance import (
    multi_assets_collateral,
    rerated,
    settle_rates,
    shared_margin_assets,
)
from alertd.feeds.feed import AccountFeed

AT_PAR = SettleTerms.of(None, Decimal(0), None, ConversionRates(Decimal(1), Decimal(1)))


def index_row(asset: str, index: Decimal) -> dict[str, object]:
    """A checked asset index row (the stream's fields) at the docs' example buffers."""
    bid, ask = Decimal("0.0001"), Decimal("0.0001")
    return {
        "symbol": f"{asset}USD",
        "index": str(index),
        "bidBuffer": str(bid),
        "askBuffer": str(ask),
        "bidRate": str(index * (1 - bid)),
        "askRate": str(index * (1 + ask)),
    }


def frames(rng: random.Random, count: int) -> list[dict[str, dict[str, object]]]:
    """``count`` frames, USDT's and USDC's indices each walking up to 0.0001 a frame (as
    bench/feeds.py's local Binance walks them)."""
    usdt, usdc = Decimal("0.99988"), Decimal("0.99995")
    out = []
    for _ in range(count):
        usdt += Decimal(rng.randint(-100, 100)) / 1_000_000
        usdc += Decimal(rng.randint(-100, 100)) / 1_000_000
        out.append({"USDTUSD": index_row("USDT", usdt), "USDCUSD": index_row("USDC", usdc)})
    return out


def rerated_band(
    alerts: Alerting,
    name: str,
    exchange: str,
    live: LiveAccount,
    status: FeedStatus,
    now: float,
    marks: dict[str, Decimal],
) -> bool:
    """What the daemon does first with a re-rated account (daemon/evaluation.py
    ``Alerting.evaluate``): its band proven again at the new rates, where it held; False
    before idx14 (no such path: every re-rated account evaluated)."""
    if not hasattr(alerts, "band_rerated"):
        return False
    alerts.rerated(name)
    return alerts.band_rerated(name, exchange, live, status, now, True, None, marks, lambda _: now)


def measure(accounts: list[Account], frame_rows: list[dict[str, dict[str, object]]]) -> None:
    clock = time.thread_time_ns
    book = Book()
    for account in accounts:
        book.set_account(account.name, account)
    wall = [1.0e9]
    alerts = alerting(book, wall)
    fresh = FeedStatus(Decimal(0), Decimal(0), None)  # feeds healthy
    exchange = accounts[0].profile.id
    for account in accounts:  # the bands of the first evaluation, as a running daemon has
        live = book.live(account.name)
        alerts.evaluate_figures(account.name, exchange, live, fresh)
        alerts.keep_band(account.name, exchange, live, fresh, 0.0, True, None)
    stages: dict[str, list[int]] = {"rerate": [], "book": [], "evaluate": []}
    current = {a.name: a for a in accounts}
    for rows in frame_rows:
        wall[0] += 1.0
        spent = dict.fromkeys(stages, 0)
        for name, account in current.items():
            t0 = clock()
            terms, lines, _ = rerated(
                rows, "USDT", account.settle_terms, account.margin_assets, account.collateral
            )
            t1 = clock()
            account = replace(account, settle_terms=terms, margin_assets=lines)
            current[name] = account
            book.set_account(name, account)
            t2 = clock()
            live = book.live(name)
            marks = {lp.symbol: lp.mark for lp in live.positions}
            if not rerated_band(alerts, name, exchange, live, fresh, wall[0], marks):
                alerts.forget(name)
                alerts.evaluate_figures(name, exchange, live, fresh)
                alerts.keep_band(name, exchange, live, fresh, wall[0], True, None)
            t3 = clock()
            spent["rerate"] += t1 - t0
            spent["book"] += t2 - t1
            spent["evaluate"] += t3 - t2
        for stage, ns in spent.items():
            stages[stage].append(ns)
    n = len(accounts)
    total = [sum(per) for per in zip(*stages.values(), strict=True)]
    print(f"accounts     : {n}, {len(accounts[0].positions)} positions each", flush=True)
    for stage, costs in [*stages.items(), ("frame", total)]:
        median = statistics.median(costs)
        print(
            f"  {stage:<10} : {median / 1e6:8.2f} ms CPU a frame (median of {len(costs)}), "
            f"{median / 1e3 / n:7.1f} us an account",
            flush=True,
        )
    print(f"  one frame a second: {statistics.median(total) / 1e7:.1f}% of one core", flush=True)


def dispatch(count: int, holders_share: float, frame_count: int) -> None:
    """What one frame costs the asset index stream and its followers (feeds/rates.py
    ``AssetIndexStream.deliver``, feeds/feed.py ``on_asset_index``): ``count`` multi-assets
    accounts (real ``AccountFeed`` objects, their pools read from an asset index answer: 400
    USDT, 100 USDC on its own line, and 1 BNB, a coin without a perpetual, in
    ``holders_share`` of them), one stream followed by all. Two kinds of frame, each
    ``frame_count`` times: one moving USDT's and USDC's rows (every account re-rated: the
    worst case) and one moving BNB's index alone (its holders' price). The rebuild and
    evaluation that follow a re-rate (the ``measure`` stages) are not in these figures."""
    config = FeedSettings()
    rng = random.Random(11)
    base = {"USDT": Decimal("0.99988"), "USDC": Decimal("0.99995"), "BNB": Decimal(600)}
    feeds = []
    for i in range(count):
        feed = AccountFeed(AccountConfig(name=f"a{i}", exchange="binanceusdm"), {}, config)
        coins = {"USDC": "100", **({"BNB": "1"} if i < count * holders_share else {})}
        answer = {"assets": [{"asset": a, "crossWalletBalance": w} for a, w in coins.items()]}
        rows = [index_row(a, price) for a, price in base.items()]
        state = feed.state
        state.margin_assets = shared_margin_assets(answer, rows, ["USDC"])
        state.collateral = multi_assets_collateral(answer, rows, "USDT", {}, ["USDC"])
        state.settle_terms = settle_rates(rows, "USDT")
        state.pool_read = state.pool_rates
        state.follows_index = state.rates_streamed = True
        feeds.append(feed)
    stream = feeds[0].hub.rates
    assert stream is not None
    stream.deliver([index_row(a, price) for a, price in base.items()])
    for feed in feeds:
        try:  # since idx12: the rows it holds
            stream.follow(feed, feed._index_symbols(), unserved=False)  # type: ignore[call-arg]
        except TypeError:  # before: every follower handed every frame
            stream.follow(feed)
    clock = time.thread_time_ns
    for kind, moving in (("USDT+USDC", ("USDT", "USDC")), ("BNB alone", ("BNB",))):
        costs = []
        for _ in range(frame_count):
            for asset in moving:
                base[asset] += base[asset] * Decimal(rng.randint(-100, 100)) / 1_000_000
            rows = [index_row(a, price) for a, price in base.items()]
            t0 = clock()
            stream.deliver(rows)
            costs.append(clock() - t0)
        median = statistics.median(costs)
        print(
            f"  dispatch {kind:<9}: {median / 1e6:8.2f} ms CPU a frame (median of "
            f"{len(costs)}), {count} followers, BNB held by {holders_share:.0%}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="200,1000")
    parser.add_argument("--positions", type=int, default=3)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holders", type=float, default=0.01, help="share holding BNB")
    parser.add_argument("--dispatch-only", action="store_true")
    args = parser.parse_args()
    load: Callable[[], str] = lambda: " ".join(f"{x:.2f}" for x in os.getloadavg())  # noqa: E731
    print(f"machine      : {machine()}", flush=True)
    print(f"load before  : {load()}", flush=True)
    rng = random.Random(args.seed)
    symbols, tables, source = load_tables(args.symbols)
    print(f"tier tables  : {source}", flush=True)
    frame_rows = frames(rng, args.frames)
    for count in (int(c) for c in args.accounts.split(",")):
        if not args.dispatch_only:
            accounts, _ = build(rng, count, args.positions, symbols, tables, False, AT_PAR, AT_PAR)
            measure(accounts, frame_rows)
        dispatch(count, args.holders, args.frames)
    print(f"load after   : {load()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
