"""``alertd replay --sweep``: how the rules would have done over many entries and leverages.

For each leverage and each entry, a fresh position is opened at that candle's open and
replayed for ``window_s`` (or to the entry's end). Per rule, and for the rule set as a whole
(its first alert, whichever rule it came from), each liquidated run ends in one of four cases:

- **warned before**: the first alert came at least one candle before the liquidation's candle
  (its lead time is counted);
- **warned at entry**: it fired in the entry's candle, before the liquidation: the position was
  opened already at risk. Reported apart: its "lead time" is only how long the position lived;
- **too late**: the first alert came in the liquidation's own candle (0 minutes: not a warning);
- **missed**: no alert before the liquidation.

Runs with no liquidation count every firing as a **false alarm**, and false alarms are also
given per position-day (the replayed time of all runs). This is how a user picks thresholds.

Entries are either every ``every_s`` through the history, or those :func:`before_the_move`
and :func:`calm_day_entries` choose: the issue's scenario (a position entered an hour before
the largest fall, or rally, of the file) and the calm days of the same file.
"""

from __future__ import annotations

import bisect
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from alertd.engine.model import MarginMode
from alertd.errors import InputError
from alertd.limits import MAX_SWEEP_ENTRIES
from alertd.replay.history import Candle, History
from alertd.replay.run import (
    AT_ENTRY,
    TOO_LATE,
    ReplayAlert,
    ReplayResult,
    position_from_spec,
    replay,
    warmup_before,
)
from alertd.rules.model import Observation, Rule

LEVERAGES = (5, 10, 20, 50, 100)
DAY_MS = 86_400_000
FIRST_ALERT = "(first alert)"  # the rule set as a whole, in tables and JSON


@dataclass
class RuleStats:
    fired_before_liquidation: int = 0  # warned at least a candle before, after the entry
    warned_at_entry: int = 0
    too_late: int = 0  # first alert in the liquidation's candle
    missed: int = 0
    false_alarms: int = 0  # firings in runs that were not liquidated
    false_alarms_at_entry: int = 0  # of those, in the entry's candle: opened already near a rule
    lead_times_s: list[float] = field(default_factory=list)  # of fired_before_liquidation
    # for warned_at_entry: how long after the entry the position was liquidated
    at_entry_lived_s: list[float] = field(default_factory=list)


@dataclass
class SweepRow:
    leverage: int
    runs: int = 0
    liquidated: int = 0
    position_days: float = 0.0
    rules: dict[str, RuleStats] = field(default_factory=dict)
    first: RuleStats = field(default_factory=RuleStats)  # the set's first alert

    def per_position_day(self, stats: RuleStats) -> float | None:
        return stats.false_alarms / self.position_days if self.position_days else None


@dataclass(frozen=True, slots=True)
class Entry:
    index: int  # the entry candle in the swept history
    end_ms: int  # the last candle time replayed


def every_entries(history: History, every_s: float, window_s: float) -> list[Entry]:
    """An entry every ``every_s`` from the first candle, each replayed for ``window_s``."""
    step = max(1, int(every_s * 1000 // history.interval_ms))
    span = int(window_s * 1000)
    return [Entry(i, history.candles[i].t_ms + span) for i in range(0, len(history.candles), step)]


def largest_move(history: History, adverse_low: bool, move_s: float) -> tuple[int, float]:
    """The candle where the largest adverse move within ``move_s`` starts, and its size.

    For a long (``adverse_low``): the candle whose open is furthest above the lowest low of the
    ``move_s`` from that open (the start of the worst fall); for a short, furthest below the
    highest high (the worst rally). A sliding extreme: linear in the candles."""
    candles = history.candles
    span = int(move_s * 1000)
    best, best_i = -1.0, 0
    window: deque[int] = deque()  # indices, their extremes monotone
    j = 0
    for i, c in enumerate(candles):
        while j < len(candles) and candles[j].t_ms < c.t_ms + span:
            v = candles[j].low if adverse_low else candles[j].high
            while window and (
                (candles[window[-1]].low >= v) if adverse_low else (candles[window[-1]].high <= v)
            ):
                window.pop()
            window.append(j)
            j += 1
        while window[0] < i:
            window.popleft()
        extreme = candles[window[0]]
        move = float(1 - extreme.low / c.open) if adverse_low else float(extreme.high / c.open - 1)
        if move >= best:  # of equal moves the latest start: where the price leaves its level
            best, best_i = move, i
    return best_i, best


def before_the_move(
    history: History, adverse_low: bool, move_s: float, before_s: float, window_s: float
) -> tuple[Entry, int, float]:
    """One entry ``before_s`` before the start of the largest adverse move (see
    :func:`largest_move`), replayed for ``window_s``; with the move's start candle and size."""
    start, size = largest_move(history, adverse_low, move_s)
    t = history.candles[start].t_ms - int(before_s * 1000)
    times = [c.t_ms for c in history.candles]
    index = min(bisect.bisect_left(times, t), start)
    return Entry(index, history.candles[index].t_ms + int(window_s * 1000)), start, size


def calm_days(history: History) -> list[int]:
    """The start (ms) of each whole UTC day of the history whose range (highest high over
    lowest low) is at most the median of its whole days' ranges: the calmer half."""
    by_day: dict[int, list[float]] = {}
    per_day = DAY_MS // history.interval_ms
    counts: dict[int, int] = {}
    for c in history.candles:
        day = c.t_ms - c.t_ms % DAY_MS
        hi, lo = float(c.high), float(c.low)
        seen = by_day.get(day)
        by_day[day] = [max(seen[0], hi), min(seen[1], lo)] if seen else [hi, lo]
        counts[day] = counts.get(day, 0) + 1
    # whole days: the first and the last day of a file are usually cut
    first, last = history.candles[0].t_ms, history.candles[-1].t_ms
    ranges = {
        day: hl[0] / hl[1] - 1
        for day, hl in by_day.items()
        if day >= first
        and day + DAY_MS - history.interval_ms <= last
        and counts[day] >= per_day // 2
    }
    if not ranges:
        return []
    median = statistics.median(ranges.values())
    return sorted(day for day, r in ranges.items() if r <= median)


def calm_day_entries(history: History, every_s: float) -> list[Entry]:
    """An entry every ``every_s`` through each calm day, replayed to the end of that day."""
    times = [c.t_ms for c in history.candles]
    entries = []
    step = int(every_s * 1000)
    for day in calm_days(history):
        for t in range(day, day + DAY_MS, step):
            i = bisect.bisect_left(times, t)
            if i < len(times) and times[i] < day + DAY_MS:
                entries.append(Entry(i, day + DAY_MS - history.interval_ms))
    return entries


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
    entries: Sequence[Entry] | None = None,
) -> list[SweepRow]:
    """``before``: the whole history ``history`` was cut from, whose candles before an entry
    seed the price dynamics (default: ``history`` itself). ``entries``: where to enter
    (default: every ``every_s``, each replayed for ``window_s``)."""
    chosen = list(entries) if entries is not None else every_entries(history, every_s, window_s)
    if len(chosen) > MAX_SWEEP_ENTRIES:
        raise InputError(
            f"--every: {len(chosen):,} entries per leverage (alertd's limit is "
            f"{MAX_SWEEP_ENTRIES:,}): choose a longer --every or a shorter history"
        )
    rows = []
    total = len(chosen) * len(leverages)
    done = 0
    for lev in leverages:
        row = SweepRow(lev, rules={r.name: RuleStats() for r in rules})
        for entry in chosen:
            result = replay_entry(
                spec_symbol, side, margin_mode, lev, history, entry, rules, exchange, before
            )
            _count(row, result, history.interval_ms)
            done += 1
            if progress is not None:
                progress(done, total)
        rows.append(row)
    return rows


def replay_entry(
    spec_symbol: str,
    side: str,
    margin_mode: MarginMode,
    leverage: int,
    history: History,
    entry: Entry,
    rules: Sequence[Rule],
    exchange: str = "binanceusdm",
    before: History | None = None,
    shortcut: bool = True,
    watch: Callable[[int, Sequence[Observation]], None] | None = None,
) -> ReplayResult:
    """One sweep run: a fresh position of 1 at the entry candle's open, replayed to the
    entry's end, its price dynamics seeded from the candles before it (``shortcut``: as
    :func:`~alertd.replay.run.replay`)."""
    first = history.candles[entry.index]
    end = bisect.bisect_right(history.candles, entry.end_ms, lo=entry.index, key=_time)
    window = replace(history, candles=history.candles[entry.index : end], gaps=())
    mode = "isolated" if margin_mode is MarginMode.ISOLATED else "cross"
    account = position_from_spec(
        f"{spec_symbol} {side} 1 @ {first.open} x{leverage} {mode}", exchange
    )
    warmup = warmup_before(before or history, first.t_ms, rules)
    return replay(
        account, window, rules, spec_symbol, warmup=warmup, shortcut=shortcut, watch=watch
    )


def _time(candle: Candle) -> int:
    return candle.t_ms


def _count(row: SweepRow, result: ReplayResult, interval_ms: int) -> None:
    row.runs += 1
    row.position_days += (result.end_ms + interval_ms - result.start_ms) / DAY_MS
    firing = [a for a in result.alerts if a.kind == "firing"]
    if result.liquidated_at_ms is None:
        for alert in firing:
            at_entry = alert.at_ms == result.start_ms
            for stats in (row.rules[alert.rule], row.first):
                stats.false_alarms += 1
                stats.false_alarms_at_entry += at_entry
        return
    row.liquidated += 1
    firsts: dict[str, ReplayAlert] = {}
    for alert in firing:
        firsts.setdefault(alert.rule, alert)
    for name, stats in row.rules.items():
        _classify(stats, result, firsts.get(name))
    _classify(row.first, result, firing[0] if firing else None)


def _classify(stats: RuleStats, result: ReplayResult, alert: ReplayAlert | None) -> None:
    """One liquidated run for one rule (or the set), from its first firing."""
    liquidated_at = result.liquidated_at_ms
    assert liquidated_at is not None
    timing = None if alert is None else result.timing(alert)
    if alert is None or (timing == TOO_LATE and alert.point >= result.liquidation_point):
        stats.missed += 1  # never fired, or only at the liquidating price itself
    elif timing == AT_ENTRY:
        stats.warned_at_entry += 1
        stats.at_entry_lived_s.append((liquidated_at - result.start_ms) / 1000)
    elif timing == TOO_LATE:
        stats.too_late += 1
    else:
        stats.fired_before_liquidation += 1
        stats.lead_times_s.append((liquidated_at - alert.at_ms) / 1000)


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
