"""Tick-path benchmark: the path the daemon uses for alerts, per mark update.

1,000 accounts x 10 cross positions on 200 symbols (real Binance USDⓈ-M tier tables from
../shared/data when present). A stream of mark ticks, one random symbol at a time. Per tick,
what the daemon does: the book reprices every position in that symbol (running pool sums), then
every account it touched is evaluated by the daemon's own ``Alerting.evaluate_figures`` with
the default rules and the built-in ones: the one observation function (a liquidation price is
solved for the ``liquidation_distance`` rule only where the pool's running figures cannot prove
it beyond the threshold, or the position has an alert), the rule engine (alert states indexed
by account and subject), and a commit of what changed to the alert store (SQLite in memory
here: no disk in the figure). The daemon batches a burst of ticks into one evaluation per
``eval_interval_s``; here every tick is evaluated, the worst case. Times are this thread's CPU
time (on a shared machine, what the work costs, not how long others held the core); the wall
time of the daemon's path is printed too, with the load average before and after.

Prints position updates/s, ticks/s, the median and p99 cost per tick; then, for reference, the
book alone, the daemon's path of an earlier version (a full ``compute()`` of every touched
account), and a full ``compute()`` of one account. ``--stressed`` (3-20x, entries within 5%,
up to 400,000 USDT: many accounts near or past liquidation, alerts firing) measures the firing
path: messages with full figures, commits. ``--usdt-rates`` puts every account in Binance's
multi-assets mode with USDT at those ``assetIndex`` rates (``0.99977692,0.99997689``: the
docs' ``USDTUSD`` example): the USDT equity at the bid rate, the MM at the ask rate, the
kink at USDT's zero equity in every solve. ``--usdc-rates`` puts every other position on
USDC's own line at those rates (a third of the wallet in USDC): two kinks in every solve.

    python bench/engine.py [--accounts 1000] [--positions 10] [--symbols 200] [--ticks 20000]
                           [--stressed] [--books] [--usdt-rates BID,ASK] [--usdc-rates BID,ASK]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from alertd.config import AccountConfig, Config
from alertd.daemon.evaluation import Alerting
from alertd.daemon.store import Store
from alertd.delivery.deliverer import Deliverer
from alertd.engine.book import Book
from alertd.engine.collateral import ConversionRates, SettleTerms
from alertd.engine.margin import compute
from alertd.engine.model import Account, MarginAsset, MarginMode, Position, Side
from alertd.engine.orderbook import OrderBook
from alertd.engine.tiers import Tier, TierTable, derive_deductions
from alertd.exchanges.registry import get_spec
from alertd.rules.metrics import FeedStatus

TIERS_FILE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "binance_usdm_leverage_tiers_freqtrade-2026.9.json"
)


def load_tables(count: int) -> tuple[list[str], dict[str, TierTable], str]:
    if TIERS_FILE.exists():
        raw = json.loads(TIERS_FILE.read_text())
        symbols = sorted(raw)[:count]
        tables = {}
        for symbol in symbols:
            rows = raw[symbol]
            tiers = []
            for k, row in enumerate(rows):
                info = row["info"]
                cap = None if k == len(rows) - 1 else Decimal(str(info["notionalCap"]))
                tiers.append(
                    Tier(cap, Decimal(str(info["maintMarginRatio"])), Decimal(str(info["cum"])))
                )
            tables[symbol] = TierTable.build(tiers)
        return symbols, tables, f"real Binance tiers ({TIERS_FILE.name})"
    symbols = [f"SYM{i}/USDT:USDT" for i in range(count)]
    caps: list[Decimal | None] = [Decimal(c) for c in (50_000, 250_000, 1_000_000, 5_000_000)]
    caps.append(None)
    mmrs = [Decimal(m) for m in ("0.004", "0.005", "0.01", "0.025", "0.05")]
    ded = derive_deductions(caps, mmrs)
    table = TierTable.build([Tier(c, m, d) for c, m, d in zip(caps, mmrs, ded, strict=True)])
    return symbols, dict.fromkeys(symbols, table), "synthetic tiers (../shared/data not found)"


def build(
    rng: random.Random,
    accounts: int,
    per_account: int,
    symbols: list[str],
    tables: dict[str, TierTable],
    stressed: bool = False,
    terms: SettleTerms | None = None,
    usdc: SettleTerms | None = None,
) -> tuple[list[Account], dict[str, Decimal]]:
    """Accounts at 2-5x, positions of 1,000-50,000 USDT with entries within 1% of the marks
    (calm: the rules are mostly idle), or, ``stressed``, at 3-20x, 1,000-400,000 USDT with
    entries within 5%: with the alts' steep tiers many start near or past liquidation.
    ``usdc``: every other position margined in USDC, on USDC's own line at those terms, with
    a USDC wallet of a third of the account's."""
    spread, low, high, largest = (500, 3, 20, 400_000) if stressed else (100, 2, 5, 50_000)
    profile = get_spec("binanceusdm").profile
    marks = {s: Decimal(rng.randint(100, 10_000_000)) / 100 for s in symbols}
    out = []
    for a in range(accounts):
        held = []
        total = Decimal(0)
        for symbol in rng.sample(symbols, per_account):
            notional = Decimal(rng.randint(1_000, largest))
            mark = marks[symbol]
            contracts = (notional / mark).quantize(Decimal("0.0001")) or Decimal("0.0001")
            held.append(
                Position(
                    symbol=symbol,
                    side=rng.choice([Side.LONG, Side.SHORT]),
                    contracts=contracts,
                    contract_size=Decimal(1),
                    inverse=False,
                    entry_price=mark * (1 + Decimal(rng.randint(-spread, spread)) / 10_000),
                    mark_price=mark,
                    margin_mode=MarginMode.CROSS,
                    tiers=tables[symbol],
                    fee_rate=profile.default_fee_rate,
                )
            )
            total += notional
        wallet = (total / rng.randint(low, high)).quantize(Decimal("0.01"))
        shared: tuple[MarginAsset, ...] = ()
        if usdc is not None:
            held = [replace(p, margin_asset="USDC") if i % 2 else p for i, p in enumerate(held)]
            third = (wallet / 3).quantize(Decimal("0.01"))
            wallet -= third
            shared = (MarginAsset("USDC", third, usdc),)
        out.append(
            Account(
                profile,
                f"acct{a}",
                "USDT",
                wallet,
                tuple(held),
                settle_terms=terms,
                margin_assets=shared,
            )
        )
    return out, marks


def percentile(sorted_values: list[int], fraction: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def alerting(book: Book, wall: list[float]) -> Alerting:
    """The daemon's evaluation with the default and built-in rules, no receivers."""
    config = Config(version=1, accounts=[AccountConfig(name="bench", exchange="binanceusdm")])
    store = Store(":memory:")
    deliverer = Deliverer(store, {}, config.routes, config.delivery)
    return Alerting(config, store, deliverer, book=book, wall_clock=lambda: wall[0])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, load average {load}, "
        f"Python {platform.python_version()}, {platform.system()}"
    )


def deep_book(mark: Decimal) -> OrderBook:
    """20 levels a side, one basis point apart, 50,000 USDT each, around ``mark``."""
    size = (Decimal(50_000) / mark).quantize(Decimal("0.001"))
    step = mark / 10_000
    bids = tuple((mark - step * (k + 1), size) for k in range(20))
    asks = tuple((mark + step * (k + 1), size) for k in range(20))
    return OrderBook(bids, asks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--positions", type=int, default=10)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--reference-ticks", type=int, default=500)
    parser.add_argument("--full-accounts", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--stressed", action="store_true", help="many accounts near liquidation (alerts firing)"
    )
    parser.add_argument(
        "--books",
        action="store_true",
        help="a deep order book per symbol (20 levels a side, 1 bp apart, 50,000 USDT each, "
        "around its last mark of the run, never replaced): the gap-risk rule reads it",
    )
    parser.add_argument(
        "--usdt-rates",
        default=None,
        help="BID,ASK: multi-assets mode, USDT at these rates (0.99977692,0.99997689)",
    )
    parser.add_argument(
        "--usdc-rates",
        default=None,
        help="BID,ASK: every other position USDC-M, on USDC's own line at these rates",
    )
    args = parser.parse_args()
    terms = usdc = None
    if args.usdt_rates:
        bid, ask = (Decimal(v) for v in args.usdt_rates.split(","))
        terms = SettleTerms.of(None, Decimal(0), None, ConversionRates(bid, ask))
        print(f"usdt rates   : bid {bid}, ask {ask} (multi-assets)", flush=True)
    if args.usdc_rates:
        bid, ask = (Decimal(v) for v in args.usdc_rates.split(","))
        usdc = SettleTerms.of(None, Decimal(0), None, ConversionRates(bid, ask))
        print(f"usdc rates   : bid {bid}, ask {ask} (half the positions USDC-M)", flush=True)

    print(f"machine      : {machine()}", flush=True)
    rng = random.Random(args.seed)
    symbols, tables, source = load_tables(args.symbols)
    held, marks = build(
        rng, args.accounts, args.positions, symbols, tables, args.stressed, terms, usdc
    )
    exchange = held[0].profile.id
    ticks = []
    for _ in range(args.ticks):
        symbol = rng.choice(symbols)
        marks[symbol] = (marks[symbol] * (1 + Decimal(rng.randint(-30, 30)) / 10_000)).quantize(
            Decimal("0.0001")
        )
        ticks.append((symbol, marks[symbol]))

    books = None
    if args.books:
        # made after the ticks are drawn: each book sits around its symbol's last mark (the
        # gap model moves it to the liquidation price, so where it sits does not matter)
        books = {symbol: deep_book(mark) for symbol, mark in marks.items()}
        print("order books  : one per symbol, 20 levels a side, 50,000 USDT each", flush=True)

    def fresh_book() -> Book:
        book = Book()
        for account in held:
            book.set_account(account.name, account)
        return book

    # CPU time of this thread: on a shared machine, what the work costs, not how long others
    # kept the core (the wall time of the daemon's path is printed too)
    clock = time.thread_time_ns
    # The daemon's path: book update, then every touched account evaluated.
    book = fresh_book()
    wall = [1.0e9]
    alerts = alerting(book, wall)
    fresh = FeedStatus(Decimal(0), Decimal(0), None)  # feeds healthy
    costs: list[int] = []
    updates = notified = evaluations = 0
    wall_start = time.perf_counter()
    start = clock()
    for symbol, mark in ticks:
        t0 = clock()
        wall[0] += 0.005
        for key in book.apply_mark(symbol, mark):
            live = book.live(key)
            notes = alerts.evaluate_figures(str(key), exchange, live, fresh, books=books)
            notified += len(notes)
            evaluations += 1
        costs.append(clock() - t0)
        updates += book.holders(symbol)
    elapsed = (clock() - start) / 1e9
    wall_elapsed = time.perf_counter() - wall_start
    firing = len(alerts.engine.firing())

    # What an evaluation reads first of the rule engine (the metrics each alerted subject's
    # rules read, AlertEngine.alerted_metrics), on the states the run left: per call, against
    # an evaluation's mean cost
    engine = alerts.engine
    alerted = list(engine.alerted_accounts)
    rounds = 200
    a0 = clock()
    for _ in range(rounds):
        for name in alerted:
            engine.alerted_metrics(name)
    index_each = (clock() - a0) / 1e9 / max(1, rounds * len(alerted))
    evaluation_each = elapsed / max(1, evaluations)

    # Reference: the book alone (running sums and the worst ratio, no rules).
    book = fresh_book()
    worst = Decimal(0)
    b0 = clock()
    for symbol, mark in ticks:
        for key in book.apply_mark(symbol, mark):
            worst = max(worst, book.worst_ratio(key))
    book_elapsed = (clock() - b0) / 1e9

    # Reference: the daemon's path before the book fed the rules: a full compute() (without
    # the crash distance) of every touched account, before any observation or rule.
    book = fresh_book()
    reference = ticks[: args.reference_ticks]
    reference_updates = 0
    r0 = clock()
    for symbol, mark in reference:
        for key in book.apply_mark(symbol, mark):
            compute(book.account(key), alerts.target, crash=False)
        reference_updates += book.holders(symbol)
    reference_elapsed = (clock() - r0) / 1e9

    # Reference: full metrics of one account (liquidation prices, crash distance, ...), what a
    # message quotes when one is sent.
    sample = held[: args.full_accounts]
    f0 = clock()
    for account in sample:
        compute(account, Decimal("0.5"))
    full_each = (clock() - f0) / 1e9 / len(sample)

    costs.sort()
    print(f"tier tables  : {source}")
    print(
        f"book         : {args.accounts} accounts x {args.positions} cross positions "
        f"on {len(symbols)} symbols ({'stressed' if args.stressed else 'calm'}); "
        f"rules: {len(alerts.rules)} (defaults + built-ins)"
    )
    print(
        f"daemon path  : {updates} position updates = {updates / elapsed:,.0f} position "
        f"updates/s ({updates / len(ticks):.1f} per tick)"
    )
    print(
        f"ticks        : {len(ticks)} in {elapsed:.3f} CPU s = {len(ticks) / elapsed:,.0f} ticks/s "
        f"(wall {wall_elapsed:.3f} s: {updates / wall_elapsed:,.0f} position updates/s)"
    )
    print(
        f"per tick     : median {statistics.median(costs) / 1000:.1f} us, "
        f"p99 {percentile(costs, 0.99) / 1000:.1f} us, max {costs[-1] / 1000:.1f} us"
    )
    print(f"alerts       : {notified} notifications, {firing} firing at the end (random walk)")
    print(
        f"alert index  : alerted_metrics of {len(alerted)} accounts ({len(engine.states)} "
        f"states): {index_each * 1e6:.2f} us a call, {index_each / evaluation_each:.1%} of an "
        f"evaluation's mean {evaluation_each * 1e6:.0f} us ({evaluations} evaluations)"
    )
    print(
        f"book alone   : {updates / book_elapsed:,.0f} position updates/s "
        f"(the daemon path costs {elapsed / book_elapsed:.1f}x as much)"
    )
    print(
        f"before       : a full compute() per touched account (the daemon's path before): "
        f"{reference_updates / reference_elapsed:,.0f} position updates/s over "
        f"{len(reference)} ticks, before any rule"
    )
    print(
        f"full metrics : compute() of one {args.positions}-position account with liquidation "
        f"prices and crash distance: {full_each * 1000:.2f} ms (mean of {len(sample)})"
    )
    print(f"load average : {'/'.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
