"""Lead time before liquidation in real crashes, and false alarms on calm days, per rule set.

The issue-13 scenario, through ``alertd replay --sweep``'s own code (:mod:`alertd.replay.sweep`):

- **crashes**: in each history, an isolated position of 1 entered 60 minutes before the start
  of the largest adverse move within an hour (the worst fall for a long, the worst rally for
  a short: :func:`~alertd.replay.sweep.largest_move`), at 10x, 20x and 50x, replayed for 24h.
  A case passes when the rule set's first alert comes at least 15 minutes before the
  liquidation, or at entry (the position was opened at risk);
- **calm days**: the whole UTC days of each history whose range is at most the median day's
  (:func:`~alertd.replay.sweep.calm_days`); a position entered every 4 hours, replayed to the end
  of its day, at 10x and 20x, long and short; every firing in a run with no liquidation is a
  false alarm, counted per position-day.

    python bench/lead_time.py                       # the defaults vs the predictive candidate
    python bench/lead_time.py --rules a.yaml b.yaml # any rule sets (a YAML list of rules)
    python bench/lead_time.py --history FILE SYMBOL # another history (e.g. alertd fetch-history)

Prints Markdown tables for docs/lead-time.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from alertd.cli.replay import parse_time
from alertd.config import DEFAULT_RULES, RuleConfig
from alertd.daemon.evaluation import _rule
from alertd.engine.model import MarginMode
from alertd.replay.history import History, iso, load_history, window
from alertd.replay.run import AT_ENTRY, BEFORE, ReplayResult
from alertd.replay.sweep import (
    Entry,
    before_the_move,
    calm_day_entries,
    replay_entry,
    sweep,
)
from alertd.rules.model import Rule

BENCH = Path(__file__).resolve().parent
DATA = BENCH.parents[1] / "shared" / "data"
HISTORIES = [
    (
        "BTC 2021-05-19 (spot)",
        "2021-05-19_binance-spot_BTC_USDT-1m_2021-04-20_2021-05-20.json",
        "BTC/USDT:USDT",
    ),
    (
        "ETH 2024-08-05 (spot)",
        "2024-08-05_binance-spot_ETH_USDT-1m_2024-07-26_2024-08-25.feather",
        "ETH/USDT:USDT",
    ),
    (
        "BTC 2025-10-10 (COIN-M mark)",
        "2025-10-10_binance-coinm_BTCUSD_PERP_markPrice-1m.zip",
        "BTC/USDT:USDT",
    ),
]
NEED_S = 15 * 60
HOUR = 3600.0
CALM_EVERY_S = 4 * HOUR  # an entry every 4 hours of each calm day (6 a day)


def rule_sets(paths: list[str]) -> list[tuple[str, list[Rule]]]:
    if not paths:
        return [
            ("shipped defaults", _engine(DEFAULT_RULES)),
            ("predictive candidate", _load(BENCH / "rulesets" / "predictive-candidate.yaml")),
        ]
    return [(Path(p).stem, _load(Path(p))) for p in paths]


def _load(path: Path) -> list[Rule]:
    raw = yaml.safe_load(path.read_text())
    return _engine(TypeAdapter(list[RuleConfig]).validate_python(raw))


def _engine(configs: list[RuleConfig]) -> list[Rule]:
    return [_rule(r) for r in configs]


def isolated_run(
    symbol: str,
    side: str,
    lev: int,
    history: History,
    entry: Entry,
    rules: list[Rule],
    **options: Any,
) -> ReplayResult:
    """The scenario's run: an isolated position of 1 at the entry, its price dynamics seeded
    from the history's candles before it (``options``: as ``replay_entry``'s)."""
    return replay_entry(
        symbol, side, MarginMode.ISOLATED, lev, history, entry, rules, before=history, **options
    )


def header(first: str, sets: list[tuple[str, list[Rule]]], what: str) -> None:
    """A Markdown table's head: the ``first`` columns, then one per rule set."""
    print(f"| {first} | " + " | ".join(f"{name}: {what}" for name, _ in sets) + " |")
    print("|---" * (first.count("|") + 1 + len(sets)) + "|")


def crashes(histories: list[tuple[str, History, str]], sets: list[tuple[str, list[Rule]]]) -> bool:
    header("history | position | the move (start, size) | entry | liquidated", sets, "first alert")
    met = {name: True for name, _ in sets}
    for label, history, symbol in histories:
        for side in ("long", "short"):
            adverse_low = side == "long"
            entry, start, size = before_the_move(history, adverse_low, HOUR, HOUR, 24 * HOUR)
            when = iso(history.candles[start].t_ms)[5:16]
            move = f"{'fall' if adverse_low else 'rally'} {when} {size:.1%}"
            for lev in (10, 20, 50):
                cells = []
                liquidated = "-"
                for name, rules in sets:
                    result = isolated_run(symbol, side, lev, history, entry, rules)
                    if result.liquidated_at_ms is None:
                        cells.append("not liquidated")
                        continue
                    liquidated = iso(result.liquidated_at_ms)[5:16]
                    firing = [a for a in result.alerts if a.kind == "firing"]
                    first = firing[0] if firing else None
                    timing = None if first is None else result.timing(first)
                    lead = None if first is None else result.lead_time_s(first)
                    ok = timing == AT_ENTRY or (
                        timing == BEFORE and lead is not None and lead >= NEED_S
                    )
                    met[name] &= ok
                    if first is None or timing not in (AT_ENTRY, BEFORE):
                        cells.append(f"**{'missed' if first is None else timing}**")
                    else:
                        mins = f"{lead / 60:.0f} min" if lead is not None else "-"
                        what = f"at entry (liq. after {mins})" if timing == AT_ENTRY else mins
                        cells.append(f"{what}: {first.rule}" if ok else f"**{what}**: {first.rule}")
                print(
                    f"| {label} | {side} {lev}x | {move} | "
                    f"{iso(history.candles[entry.index].t_ms)[5:16]} | {liquidated} | "
                    + " | ".join(cells)
                    + " |"
                )
    print()
    for name, ok in met.items():
        verdict = "yes" if ok else "NO"
        print(f"- {name}: every liquidated case warned >= 15 min ahead or at entry: {verdict}")
    return all(met.values())


def calm(histories: list[tuple[str, History, str]], sets: list[tuple[str, list[Rule]]]) -> None:
    header(
        "history | leverage | calm days | runs (long+short) | position-days",
        sets,
        "false alarms (per position-day)",
    )
    for label, history, symbol in histories:
        entries = calm_day_entries(history, CALM_EVERY_S)
        days = len({history.candles[e.index].t_ms // 86_400_000 for e in entries})
        if days < 2:
            continue  # a one-day file has no calm days of its own month
        for lev in (10, 20):
            cells, runs, position_days = [], 0, 0.0
            for _, rules in sets:
                alarms = at_entry = 0
                runs, position_days = 0, 0.0
                for side in ("long", "short"):
                    (row,) = sweep(
                        symbol,
                        side,
                        MarginMode.ISOLATED,
                        history,
                        rules,
                        leverages=(lev,),
                        entries=entries,
                        before=history,
                    )
                    alarms += row.first.false_alarms
                    at_entry += row.first.false_alarms_at_entry
                    runs += row.runs
                    position_days += row.position_days
                cells.append(
                    f"{alarms} ({alarms / position_days:.3f}), {at_entry} of them at entry"
                )
            print(
                f"| {label} | {lev}x | {days} | {runs} | {position_days:.1f} | "
                + " | ".join(cells)
                + " |"
            )


def given(spec: str, symbol: str) -> tuple[str, History, str]:
    """``FILE`` or ``FILE@START/END`` (ISO times, either may be empty): a history, or only
    that part of it (e.g. the weeks before a crash, to check rules on moves they were not
    chosen on)."""
    path, _, cut = spec.partition("@")
    history = load_history(path)
    label = Path(path).name
    if cut:
        first, _, last = cut.partition("/")
        start, end = parse_time(first or None, "start"), parse_time(last or None, "end")
        history = window(history, start, end)
        label += f" ({first or 'start'} to {last or 'end'})"
    return label, history, symbol


def history_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--history FILE[@START/END] SYMBOL``, repeatable (read with :func:`given`)."""
    parser.add_argument(
        "--history", nargs=2, action="append", default=[], metavar=("FILE", "SYMBOL"), help=help
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", nargs="*", default=[], metavar="YAML")
    history_option(parser, "replace the shared histories with these")
    parser.add_argument("--no-calm", action="store_true")
    args = parser.parse_args()
    sets = rule_sets(args.rules)
    if args.history:
        histories = [given(f, s) for f, s in args.history]
    else:
        histories = [(label, load_history(DATA / name), s) for label, name, s in HISTORIES]
    began = time.process_time()
    ok = crashes(histories, sets)
    if not args.no_calm:
        print()
        calm(histories, sets)
    print(f"\n({time.process_time() - began:.0f} s of CPU)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
