"""``alertd replay --sweep``: how the rules would have done over many entries and leverages.

For each leverage and each entry time (every ``every_s`` through the history), a fresh
position is opened at that candle's open and replayed for ``window_s``. Per rule: how often it
fired before a liquidation, its median and worst lead time, and its false alarms (it fired, but
no liquidation followed within the window). This is how a user picks thresholds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from alertd.engine.model import MarginMode
from alertd.errors import InputError
from alertd.limits import MAX_SWEEP_ENTRIES
from alertd.replay.history import History
from alertd.replay.run import position_from_spec, replay, warmup_before
from alertd.rules.model import Rule

LEVERAGES = (5, 10, 20, 50, 100)


@dataclass
class RuleStats:
    fired_before_liquidation: int = 0
    false_alarms: int = 0
    lead_times_s: list[float] = field(default_factory=list)


@dataclass
class SweepRow:
    leverage: int
    runs: int = 0
    liquidated: int = 0
    rules: dict[str, RuleStats] = field(default_factory=dict)


def sweep(
    spec_symbol: str,
    side: str,
    margin_mode: MarginMode,
    history: History,
    rules: Sequence[Rule],
    *,
    exchange: str = "binanceusdm",
    leverages: Sequence[int] = LEVERAGES,
    every_s: float = 86_400,
    window_s: float = 86_400,
    progress: Callable[[int, int], None] | None = None,
    before: History | None = None,
) -> list[SweepRow]:
    """``before``: the whole history ``history`` was cut from, whose candles before an entry
    seed the price dynamics (default: ``history`` itself)."""
    step = max(1, int(every_s * 1000 // history.interval_ms))
    span = int(window_s * 1000)
    entries = range(0, len(history.candles), step)
    if len(entries) > MAX_SWEEP_ENTRIES:
        raise InputError(
            f"--every: {len(entries):,} entries per leverage (alertd's limit is "
            f"{MAX_SWEEP_ENTRIES:,}): choose a longer --every or a shorter history"
        )
    rows = []
    total = len(entries) * len(leverages)
    done = 0
    for lev in leverages:
        row = SweepRow(lev, rules={r.name: RuleStats() for r in rules})
        for index in entries:
            first = history.candles[index]
            end = first.t_ms + span
            candles = tuple(c for c in history.candles[index:] if c.t_ms <= end)
            window = replace(history, candles=candles, gaps=())
            mode = "isolated" if margin_mode is MarginMode.ISOLATED else "cross"
            account = position_from_spec(
                f"{spec_symbol} {side} 1 @ {first.open} x{lev} {mode}", exchange
            )
            warmup = warmup_before(before or history, first.t_ms, rules)
            result = replay(account, window, rules, spec_symbol, warmup=warmup)
            row.runs += 1
            liquidated = result.liquidated_at_ms is not None
            row.liquidated += liquidated
            seen: set[str] = set()
            for alert in result.alerts:
                if alert.kind != "firing" or alert.rule in seen:
                    continue
                seen.add(alert.rule)
                stats = row.rules[alert.rule]
                if liquidated:
                    stats.fired_before_liquidation += 1
                    lead = result.lead_time_s(alert)
                    assert lead is not None
                    stats.lead_times_s.append(lead)
                else:
                    stats.false_alarms += 1
            done += 1
            if progress is not None:
                progress(done, total)
        rows.append(row)
    return rows


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
