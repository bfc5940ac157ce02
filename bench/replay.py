"""Replay throughput: price points per second through the engine and the rules.

Replays a month of real 1-minute BTC/USDT candles (../shared/data, about 170,000 price points
with the four-point candle path) for an account of 1, 10 and 100 positions: one in BTC, which
moves, and the rest in other symbols, which do not; every point is evaluated by the rule engine
against the default rules for every position. The position is 2x leveraged so that the month
is replayed to its end rather than stopping at a liquidation.

    python bench/replay.py
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from alertd.config import DEFAULT_RULES, RuleConfig
from alertd.daemon.evaluation import _rule
from alertd.replay.history import load_history
from alertd.replay.run import position_from_spec, replay

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PRICES = DATA / "2021-05-19_binance-spot_BTC_USDT-1m_2021-04-20_2021-05-20.json"


def account(positions: int) -> object:
    base = position_from_spec("BTC/USDT:USDT long 0.1 @ 56000 x2 isolated")
    others = [
        replace(
            base.positions[0],
            symbol=f"ALT{i}/USDT:USDT",
            entry_price=Decimal(100),
            mark_price=Decimal(101),
            contracts=Decimal(10),
            isolated_margin=Decimal(500),
        )
        for i in range(positions - 1)
    ]
    return replace(base, positions=(*base.positions, *others))


def main() -> int:
    t0 = time.perf_counter()
    history = load_history(os.environ.get("ALERTD_BENCH_PRICES", PRICES))
    load_s = time.perf_counter() - t0
    rules = [_rule(r) for r in DEFAULT_RULES]
    print(
        f"machine : {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}"
    )
    print(f"history : {len(history.candles)} candles loaded in {load_s:.2f} s")
    # one position that does meet the rules: 3x cross, entered at the start, through the month
    busy = position_from_spec(f"BTC/USDT:USDT long 1 @ {history.candles[0].open} x3 cross")
    for label, shortcut in (("with", True), ("without", False)):
        start = time.perf_counter()
        result = replay(busy, history, rules, "BTC/USDT:USDT", shortcut=shortcut)
        elapsed = time.perf_counter() - start
        print(
            f"  1 position 3x cross, {label} the idle shortcut: {result.points} points in "
            f"{elapsed:.2f} s = {result.points / elapsed:,.0f} points/s, "
            f"{len(result.alerts)} alerts, liquidated: {result.liquidated_at_ms is not None}"
        )
    # the price-dynamics rules: the dynamics rebuilt as the history is replayed; no shortcut
    predictive = rules + [
        _rule(RuleConfig(name=m, metric=m, scope="position", above=Decimal("0.05")))
        if m == "liquidation_probability"
        else _rule(RuleConfig(name=m, metric=m, scope="position", below=Decimal(2)))
        for m in ("liquidation_probability", "time_to_liquidation", "liquidation_distance_sigma")
    ]
    # on a shared machine the wall clock counts the other processes too: the CPU time is
    # this replay's own
    for label, shortcut in (("with", True), ("without", False)):
        start, cpu = time.perf_counter(), time.process_time()
        result = replay(busy, history, predictive, "BTC/USDT:USDT", shortcut=shortcut)
        elapsed, used = time.perf_counter() - start, time.process_time() - cpu
        print(
            f"  1 position 3x cross, default + price-dynamics rules, {label} the shortcut: "
            f"{result.points} points in {elapsed:.2f} s = {result.points / elapsed:,.0f} "
            f"points/s ({used:.2f} s CPU = {result.points / used:,.0f} points/s), "
            f"{len(result.alerts)} alerts, liquidated: {result.liquidated_at_ms is not None}"
        )
    for n in (1, 10, 100):
        acct = account(n)
        start = time.perf_counter()
        result = replay(acct, history, rules, "BTC/USDT:USDT")  # type: ignore[arg-type]
        elapsed = time.perf_counter() - start
        print(
            f"{n:>3} positions: {result.points} points in {elapsed:.2f} s = "
            f"{result.points / elapsed:,.0f} points/s "
            f"({result.points * n / elapsed:,.0f} position-points/s), "
            f"{len(result.alerts)} alerts, liquidated: {result.liquidated_at_ms is not None}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
