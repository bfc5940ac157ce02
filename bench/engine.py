"""Tick-path benchmark of the margin engine.

1,000 accounts x 10 cross positions on 200 symbols (real Binance USDⓈ-M tier tables from
../shared/data when present). A stream of mark ticks, one random symbol at a time; each tick
reprices every position in that symbol and recomputes the ratio of every account it touched,
which is what the daemon does per tick. Prints ticks/s, position updates/s, and the median and
p99 cost per tick; then, for reference, the same ticks through a full per-account recompute.

    python bench/engine.py [--accounts 1000] [--positions 10] [--symbols 200] [--ticks 20000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

from alertd.engine.book import Book
from alertd.engine.legs import Leg
from alertd.engine.margin import compute, margin_ratio
from alertd.engine.model import Account, MarginMode, Position, Side
from alertd.engine.tiers import Tier, TierTable, derive_deductions
from alertd.exchanges.registry import get_spec

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
) -> tuple[list[Account], dict[str, Decimal]]:
    profile = get_spec("binanceusdm").profile
    marks = {s: Decimal(rng.randint(100, 10_000_000)) / 100 for s in symbols}
    out = []
    for a in range(accounts):
        held = []
        total = Decimal(0)
        for symbol in rng.sample(symbols, per_account):
            notional = Decimal(rng.randint(1_000, 400_000))
            mark = marks[symbol]
            contracts = (notional / mark).quantize(Decimal("0.0001")) or Decimal("0.0001")
            held.append(
                Position(
                    symbol=symbol,
                    side=rng.choice([Side.LONG, Side.SHORT]),
                    contracts=contracts,
                    contract_size=Decimal(1),
                    inverse=False,
                    entry_price=mark * (1 + Decimal(rng.randint(-500, 500)) / 10_000),
                    mark_price=mark,
                    margin_mode=MarginMode.CROSS,
                    tiers=tables[symbol],
                    fee_rate=profile.default_fee_rate,
                )
            )
            total += notional
        wallet = (total / rng.randint(3, 20)).quantize(Decimal("0.01"))
        out.append(Account(profile, f"acct{a}", "USDT", wallet, tuple(held)))
    return out, marks


def percentile(sorted_values: list[int], fraction: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--positions", type=int, default=10)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--reference-ticks", type=int, default=2000)
    parser.add_argument("--full-accounts", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    symbols, tables, source = load_tables(args.symbols)
    held, marks = build(rng, args.accounts, args.positions, symbols, tables)
    book = Book()
    for account in held:
        book.set_account(account.name, account)

    ticks = []
    for _ in range(args.ticks):
        symbol = rng.choice(symbols)
        marks[symbol] = (marks[symbol] * (1 + Decimal(rng.randint(-30, 30)) / 10_000)).quantize(
            Decimal("0.0001")
        )
        ticks.append((symbol, marks[symbol]))

    costs: list[int] = []
    updates = 0
    worst = Decimal(0)
    clock = time.perf_counter_ns
    start = clock()
    for symbol, mark in ticks:
        t0 = clock()
        touched = book.apply_mark(symbol, mark)
        for key in touched:
            ratio = book.worst_ratio(key)
            if ratio > worst:
                worst = ratio
        costs.append(clock() - t0)
        updates += len(book._by_symbol.get(symbol, ()))
    elapsed = (clock() - start) / 1e9

    # Reference 1: the same ticks, re-summing every position of each touched account.
    legs = {a.name: [(p.symbol, Leg.of(p, a.profile)) for p in a.positions] for a in held}
    holders: dict[str, list[str]] = {}
    for a in held:
        for p in a.positions:
            holders.setdefault(p.symbol, []).append(a.name)
    wallets = {a.name: a.wallet_balance for a in held}
    now = {a.name: {p.symbol: p.mark_price for p in a.positions} for a in held}
    reference = ticks[: args.reference_ticks]
    r0 = clock()
    for symbol, mark in reference:
        for name in holders.get(symbol, ()):
            now[name][symbol] = mark
            upnl = mm = Decimal(0)
            for sym, leg in legs[name]:
                u = now[name][sym]
                upnl += leg.upnl(u)
                mm += leg.mm(u)
            margin_ratio(mm, wallets[name] + upnl)
    ref_elapsed = (clock() - r0) / 1e9

    # Reference 2: full metrics of one account (liquidation prices, crash distance, ...), the
    # on-demand path used when a rule or a message needs them.
    sample = held[: args.full_accounts]
    f0 = clock()
    for account in sample:
        compute(account, Decimal("0.5"))
    full_each = (clock() - f0) / 1e9 / len(sample)

    costs.sort()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"machine      : {cpu}, Python {platform.python_version()}, {platform.system()}")
    print(f"tier tables  : {source}")
    print(
        f"book         : {args.accounts} accounts x {args.positions} cross positions "
        f"on {len(symbols)} symbols"
    )
    print(f"ticks        : {len(ticks)} in {elapsed:.3f} s = {len(ticks) / elapsed:,.0f} ticks/s")
    print(
        f"positions    : {updates} updates = {updates / elapsed:,.0f} position updates/s "
        f"({updates / len(ticks):.1f} per tick)"
    )
    print(
        f"per tick     : median {statistics.median(costs) / 1000:.1f} us, "
        f"p99 {percentile(costs, 0.99) / 1000:.1f} us, max {costs[-1] / 1000:.1f} us"
    )
    print(f"worst ratio  : {worst:.4f} (random walk; some accounts end up liquidated)")
    ref_rate = len(reference) / ref_elapsed
    print(
        f"reference    : re-summing every position of each touched account: {ref_rate:,.0f} "
        f"ticks/s over {len(reference)} ticks ({len(ticks) / elapsed / ref_rate:.1f}x slower)"
    )
    print(
        f"full metrics : compute() of one {args.positions}-position account with liquidation "
        f"prices and crash distance: {full_each * 1000:.2f} ms (mean of {len(sample)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
