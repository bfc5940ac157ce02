"""``alertd replay``: run a price history through the rules: alerts, liquidation, lead time.

Replay historical prices (JSON, CSV, zipped CSV or feather) for a position or a snapshot,
through the same engine and rules as alertd run; print a table, or JSON for machines.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

import alertd.views.format as fmt
from alertd.config import DEFAULT_RULES, RuleConfig, load_config
from alertd.errors import InputError
from alertd.exchanges.registry import specs
from alertd.limits import MAX_TIME_MS
from alertd.replay.history import iso, load_history, window
from alertd.replay.run import (
    AT_ENTRY,
    BEFORE,
    ReplayResult,
    position_from_spec,
    replay,
    warmup_before,
)
from alertd.rules.messages import fmt_metric
from alertd.rules.metrics import book_rules
from alertd.rules.model import Rule
from alertd.snapshot.format import load_snapshot
from alertd.validation import short
from alertd.views.format import decimal_str

NEEDS_CONFIG = False
JSON_HELP = "print the result as JSON"


# why a rule on an order-book metric (close_slippage, gap_risk) has no value in a replay
NO_BOOKS = "it reads the exchange's order book, and price histories hold no order books"


def _engine_rules(rules: Sequence[RuleConfig]) -> list[Rule]:
    # imported here: the daemon's module loads the feeds and ccxt (seconds), which every
    # other command (``alertd calc`` above all) would otherwise pay at startup
    from alertd.daemon.evaluation import _rule

    return [_rule(rc) for rc in rules]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prices", metavar="PRICES")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--position", metavar="SPEC", help="e.g. 'BTC/USDT:USDT long 0.5 @ 62000 x20 isolated'"
    )
    what.add_argument(
        "--snapshot", metavar="FILE", help="an account snapshot (alertd calc's input)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,  # keeps a -c given before the command
        help="take the rules from this config (default: the rules of config.example.yaml)",
    )
    parser.add_argument(
        "--symbol", help="the symbol the prices are for (default: the first position's)"
    )
    parser.add_argument(
        "--exchange",
        default="binanceusdm",
        help=f"margin profile for --position: {', '.join(s.id for s in specs())}",
    )
    parser.add_argument("--start", metavar="ISO", help="e.g. 2021-05-19T12:00:00Z")
    parser.add_argument("--end", metavar="ISO")
    parser.add_argument(
        "--plot", metavar="OUT.png", help="draw price, liquidation price and alerts"
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="replay many entries (every --every) at 5x to 100x for --window each and report "
        "per rule: fired before liquidation, lead times, false alarms",
    )
    parser.add_argument("--every", default="24h", metavar="DURATION", help="sweep entry spacing")
    parser.add_argument("--window", default="24h", metavar="DURATION", help="sweep replay length")
    parser.add_argument(
        "--leverage",
        metavar="LIST",
        help="sweep these leverages, e.g. 10,20,50 (default 5,10,20,50,100)",
    )
    entries = parser.add_mutually_exclusive_group()
    entries.add_argument(
        "--before-move",
        metavar="DURATION",
        help="sweep one entry this long before the start of the history's largest adverse "
        "move within --move (the worst fall for a long, the worst rally for a short)",
    )
    entries.add_argument(
        "--calm",
        action="store_true",
        help="sweep entries every --every through the calm days only (whole UTC days whose "
        "range is at most the median day's), each replayed to the end of its day",
    )
    parser.add_argument(
        "--move", default="1h", metavar="DURATION", help="the move's length for --before-move"
    )


def parse_time(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{flag}: not an ISO-8601 time: {short(text)} (e.g. 2021-05-19T12:00:00Z)"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    try:
        ms = int(stamp.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        ms = -1
    if not 0 <= ms <= MAX_TIME_MS:
        raise InputError(f"{flag}: {short(text)} is outside 1970 to 9999")
    return ms


def result_json(result: ReplayResult, gaps: list[dict[str, Any]], source: str) -> dict[str, Any]:
    return {
        "prices": source,
        "symbol": result.symbol,
        "start": iso(result.start_ms),
        "end": iso(result.end_ms),
        "points": result.points,
        "intra_candle_path": f"open, {result.adverse_first}, "
        f"{'high' if result.adverse_first == 'low' else 'low'}, close (worst first)",
        "liquidated_at": iso(result.liquidated_at_ms) if result.liquidated_at_ms else None,
        "liquidation_mark": decimal_str(result.liquidation_mark),
        "alerts": [
            {
                "at": iso(a.at_ms),
                "rule": a.rule,
                "severity": a.severity,
                "kind": a.kind,
                "subject": a.subject,
                "value": decimal_str(a.value),
                "lead_time_s": result.lead_time_s(a),
                "warning": result.timing(a),
            }
            for a in result.alerts
        ],
        "gaps": gaps,
    }


@contextlib.contextmanager
def _progress_bar(label: str, total: int, show: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr (for a person at a terminal: ``show``), given as the callback
    that moves it to a count; ``None`` without one."""
    if not show:
        yield None
        return
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def _lead(result: ReplayResult, alert: Any) -> str:
    """The lead-time cell: minutes for a warning ahead of the liquidation, else what it was."""
    timing = result.timing(alert)
    if timing is None or timing == BEFORE:
        return fmt.minutes(result.lead_time_s(alert))
    if timing == AT_ENTRY:
        return f"at entry (liq. after {fmt.minutes(result.lead_time_s(alert))})"
    return "too late"


def _plot_target(path: str | None) -> Path | None:
    """``--plot``'s file, checked before a long replay: its folder must exist."""
    if path is None:
        return None
    target = Path(path)
    if not target.parent.is_dir():
        raise InputError(f"--plot {path}: no folder {target.parent}")
    if target.is_dir():
        raise InputError(f"--plot {path}: that is a folder; name a file like out.png")
    return target


def run(args: argparse.Namespace) -> int:
    plot_to = _plot_target(args.plot)
    full = load_history(args.prices)
    history = window(full, parse_time(args.start, "--start"), parse_time(args.end, "--end"))
    if args.sweep:
        return _cmd_sweep(args, history, full, plot_to)
    for flag, given in (
        ("--leverage", args.leverage),
        ("--before-move", args.before_move),
        ("--calm", args.calm),
    ):
        if given:
            raise InputError(f"{flag} is a sweep option: add --sweep")
    if args.snapshot:
        account = load_snapshot(args.snapshot).account
    else:
        account = position_from_spec(args.position, args.exchange)
    rules = load_config(args.config).rules if args.config else DEFAULT_RULES
    engine_rules = _engine_rules(rules)
    # the price dynamics start from the candles before --start, as the daemon's from the
    # exchange's recent candles
    warmup = warmup_before(full, history.candles[0].t_ms, engine_rules)
    show_progress = sys.stderr.isatty() and len(history.candles) > 5000
    with _progress_bar("replaying", len(history.candles), show_progress) as tick:
        result = replay(account, history, engine_rules, args.symbol, progress=tick, warmup=warmup)
    gaps = [
        {"after": iso(g.start_ms), "before": iso(g.end_ms), "missing_candles": g.missing}
        for g in history.gaps
        # only the gaps inside what was replayed (the replay starts at the position's entry)
        if g.start_ms >= result.start_ms and g.end_ms <= result.end_ms
    ]
    data = result_json(result, gaps, history.source)
    # the order-book metrics (gap risk) need the book at each moment: no history has them
    unreplayed = [r.name for r in book_rules(engine_rules)]
    data["not_replayed"] = [{"rule": name, "why": NO_BOOKS} for name in unreplayed]
    if plot_to is not None:
        from alertd.replay.plot import plot

        try:
            plot(result, history, str(plot_to))
        except (OSError, ValueError) as exc:  # matplotlib: a format it cannot write, a full disk
            raise InputError(f"--plot {args.plot}: cannot write it: {exc}") from None
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    console.print(
        f"[bold]{escape(result.symbol)}[/bold] {data['start']} to {data['end']}: "
        f"{result.points} price points; inside a candle: {data['intra_candle_path']}"
    )
    for g in gaps:
        console.print(
            f"gap: no prices between {g['after']} and {g['before']} "
            f"({g['missing_candles']} candles missing; not interpolated)"
        )
    for name in unreplayed:
        console.print(Text(f"rule {name}: not replayed: {NO_BOOKS}"))
    metric_of = {r.name: r.metric for r in engine_rules}
    table = Table(title="Alerts", header_style="bold")
    for col in ("Time (UTC)", "Rule", "Subject", "Severity", "Kind", "Value", "Lead time"):
        table.add_column(col)
    for alert, a in zip(result.alerts, data["alerts"], strict=True):
        table.add_row(
            a["at"],
            Text(a["rule"]),  # names from the config print as written, never as markup
            Text(a["subject"]),  # which position: several can fire the same rule
            a["severity"],
            a["kind"],
            fmt.NONE if alert.value is None else fmt_metric(metric_of[alert.rule], alert.value),
            _lead(result, alert),
        )
    if result.alerts:
        console.print(table)
    else:
        console.print(f"no alert fired ({fmt.count(len(engine_rules), 'rule')} watched)")
    if result.liquidated_at_ms:
        console.print(
            f"[bold red]liquidated[/bold red] at {data['liquidated_at']} "
            f"(mark {data['liquidation_mark']})"
        )
    else:
        console.print("not liquidated in this history")
    return 0


def _leverages(text: str | None) -> tuple[int, ...]:
    from alertd.replay.sweep import LEVERAGES

    if text is None:
        return LEVERAGES
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(
            f"--leverage {short(text)}: expected whole numbers, e.g. 10,20,50"
        ) from None
    if not values or any(not 1 <= v <= 1000 for v in values):
        raise InputError(f"--leverage {short(text)}: each leverage must be from 1 to 1000")
    return values


def _cmd_sweep(args: argparse.Namespace, history: Any, full: Any, plot_to: Path | None) -> int:
    from alertd.config import parse_duration
    from alertd.replay.sweep import (
        FIRST_ALERT,
        before_the_move,
        calm_day_entries,
        every_entries,
        median_or_none,
        sweep,
    )

    if not args.position:
        raise InputError("--sweep needs --position (its symbol, side and margin mode are swept)")
    template = position_from_spec(args.position, args.exchange).positions[0]
    rules = load_config(args.config).rules if args.config else DEFAULT_RULES
    durations = {}
    for flag in ("every", "window", "move", "before_move"):
        text = getattr(args, flag)
        if text is None:
            continue
        name = "--" + flag.replace("_", "-")
        try:
            durations[flag] = parse_duration(text)
        except ValueError as exc:
            raise InputError(f"{name}: {exc}") from None
        if durations[flag] <= 0 and flag != "before_move":
            raise InputError(f"{name} must be longer than 0")
    leverages = _leverages(args.leverage)
    # a long is liquidated below its entry (an inverse long too): the fall is its move
    adverse_low = template.side.label == "long"
    scenario = f"entries every {args.every}, {args.window} each"
    if args.before_move is not None:
        entry, start, size = before_the_move(
            history, adverse_low, durations["move"], durations["before_move"], durations["window"]
        )
        entries = [entry]
        scenario = (
            f"entered {args.before_move} before the largest "
            f"{'fall' if adverse_low else 'rally'} within {args.move} "
            f"({size:.1%} from {iso(history.candles[start].t_ms)}), {args.window} each"
        )
    elif args.calm:
        entries = calm_day_entries(history, durations["every"])
        if not entries:
            raise InputError("--calm: the history holds no whole UTC day")
        days = len({history.candles[e.index].t_ms // 86_400_000 for e in entries})
        scenario = f"calm days ({days}), entries every {args.every}, to the end of the day"
    else:
        entries = every_entries(history, durations["every"], durations["window"])
    engine_rules = _engine_rules(rules)
    with _progress_bar("sweeping", len(entries) * len(leverages), sys.stderr.isatty()) as tick:
        rows = sweep(
            template.symbol,
            template.side.label,
            template.margin_mode,
            history,
            engine_rules,
            exchange=args.exchange,
            leverages=leverages,
            before=full,
            entries=entries,
            progress=None if tick is None else lambda done, _total: tick(done),
        )

    def stats_json(row: Any, st: Any) -> dict[str, Any]:
        return {
            "fired_before_liquidation": st.fired_before_liquidation,
            "warned_at_entry": st.warned_at_entry,
            "too_late": st.too_late,
            "missed": st.missed,
            "median_lead_time_s": median_or_none(st.lead_times_s),
            "worst_lead_time_s": min(st.lead_times_s) if st.lead_times_s else None,
            "at_entry_liquidated_after_s": st.at_entry_lived_s,
            "false_alarms": st.false_alarms,
            "false_alarms_at_entry": st.false_alarms_at_entry,
            "false_alarms_per_position_day": row.per_position_day(st),
        }

    data: list[dict[str, Any]] = [
        {
            "leverage": row.leverage,
            "runs": row.runs,
            "liquidated": row.liquidated,
            "position_days": row.position_days,
            "rules": {name: stats_json(row, st) for name, st in row.rules.items()},
            "first_alert": stats_json(row, row.first),
        }
        for row in rows
    ]
    title = f"{template.symbol} {template.side.label} {template.margin_mode.value}: {scenario}"
    if plot_to is not None:
        from alertd.replay.plot import plot_sweep

        try:
            plot_sweep(rows, plot_to, title)
        except (OSError, ValueError) as exc:
            raise InputError(f"--plot {args.plot}: cannot write it: {exc}") from None
    if args.json:
        print(json.dumps({"scenario": title, "rows": data}, indent=2))
        return 0
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    table = Table(title=Text(f"Sweep: {title}"), header_style="bold")
    for col in (
        "Leverage",
        "Rule",
        "Liquidated",
        "Warned before",
        "At entry",
        "Too late",
        "Missed",
        "Median lead",
        "Worst lead",
        "False alarms",
        "per position-day",
    ):
        table.add_column(col, justify="left" if col == "Rule" else "right")

    for row in data:
        named = [*row["rules"].items(), (FIRST_ALERT, row["first_alert"])]
        for name, st in named:
            per_day = st["false_alarms_per_position_day"]
            table.add_row(
                f"{row['leverage']}x",
                Text(name),
                f"{row['liquidated']}/{row['runs']}",
                f"{st['fired_before_liquidation']}/{row['liquidated']}",
                str(st["warned_at_entry"]),
                str(st["too_late"]),
                str(st["missed"]),
                fmt.minutes(st["median_lead_time_s"]),
                fmt.minutes(st["worst_lead_time_s"]),
                f"{st['false_alarms']} ({st['false_alarms_at_entry']} at entry)",
                fmt.NONE if per_day is None else f"{per_day:.3f}",
            )
    console.print(table)
    console.print(
        "Warned before: the first alert came at least a minute before the liquidation's "
        "candle; at entry: in the entry's candle (opened at risk; no lead time); too late: in "
        "the liquidation's candle. False alarms: firings in runs not liquidated."
    )
    return 0
