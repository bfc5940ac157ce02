"""Can any rule on the price-dynamics figures meet both of issue 13's targets? A bound.

Every built-in figure a rule can read about a position's liquidation gets riskier one way:
a smaller distance, a shorter time to liquidation, a higher probability. A rule (or a rule
of several conditions, `while:`) on such figures, each pointing its risky way, that fires at
a moment A also fires at any moment B at least as risky in every figure it reads. So if every
moment at which a crash case would have to be warned (from its entry to 15 minutes before its
liquidation) is matched by a moment of a calm-day run that was never liquidated, at least as
risky in every figure, then no such rule warns that case in time without a false alarm on a
calm day: at 10x, where the shipped defaults give none, the two targets cannot both be met.

The figures (the scenario of bench/lead_time.py, replayed through alertd's own replay with
its shortcuts off, so every price point is seen): liquidation distance; time to liquidation
at the pace of the last 5, 15 and 60 minutes; the touch probability within 15 minutes and
within 1 hour at the last hour's volatility (the distance in standard deviations orders the
moments as the probability of the same horizon does). `for:` holds are outside the bound.

    python bench/lead_time_bound.py

Prints, per liquidated crash case, how many of its moments no calm moment matches.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np
from lead_time import CALM_EVERY_S, DATA, HISTORIES, HOUR, NEED_S, isolated_run

from alertd.config import RuleConfig
from alertd.daemon.evaluation import _rule
from alertd.replay.history import History, iso, load_history
from alertd.replay.sweep import Entry, before_the_move, calm_day_entries
from alertd.rules.metrics import lookup
from alertd.rules.model import Observation, Rule, Scope

# (metric, window, horizon): each read as a rule on it reads it
FIGURES = (
    ("liquidation_distance", None, None),
    ("time_to_liquidation", "5m", None),
    ("time_to_liquidation", "15m", None),
    ("time_to_liquidation", "1h", None),
    ("liquidation_probability", "1h", "15m"),
    ("liquidation_probability", "1h", "1h"),
)


def probes() -> list[Rule]:
    """One rule per figure, only so that the replay reads it (thresholds never matter)."""
    out = []
    for i, (metric, window, horizon) in enumerate(FIGURES):
        params = {"window": window} if window else {}
        if horizon:
            params["horizon"] = horizon
        entry = lookup(metric, Scope.POSITION)
        assert entry is not None
        side = entry.risky  # a rule pointing the figure's risky way
        out.append(
            _rule(
                RuleConfig.model_validate(
                    {"name": f"f{i}", "metric": metric, "scope": "position", side: 0, **params}
                )
            )
        )
    return out


def risk(observed: Sequence[Observation], rules: list[Rule]) -> list[float] | None:
    """The position's figures, each turned so that larger is riskier (no value: least risky:
    no liquidation price, or the mark moving away)."""
    if len(observed) < 2:
        return None
    values = observed[1].metrics
    out = []
    for r in rules:
        value = values.get(r.series)
        if value is None:
            out.append(-np.inf)
        else:
            out.append(float(value) if r.condition.direction == "above" else -float(value))
    return out


def moments(
    history: History, symbol: str, side: str, lev: int, entry: Entry, rules: list[Rule]
) -> tuple[list[tuple[int, list[float]]], int | None, int]:
    seen: list[tuple[int, list[float]]] = []

    def watch(t_ms: int, observed: Sequence[Observation]) -> None:
        figures = risk(observed, rules)
        if figures is not None:
            seen.append((t_ms, figures))

    result = isolated_run(symbol, side, lev, history, entry, rules, shortcut=False, watch=watch)
    return seen, result.liquidated_at_ms, result.start_ms


def main() -> int:
    began = time.process_time()
    rules = probes()
    histories = [(label, load_history(DATA / name), s) for label, name, s in HISTORIES]
    calm: dict[int, list[list[float]]] = {10: [], 20: []}
    for _, history, symbol in histories:
        entries = calm_day_entries(history, CALM_EVERY_S)
        if len({history.candles[e.index].t_ms // 86_400_000 for e in entries}) < 2:
            continue
        for lev in calm:
            for side in ("long", "short"):
                for e in entries:
                    seen, liquidated, _ = moments(history, symbol, side, lev, e, rules)
                    if liquidated is None:
                        calm[lev] += [figures for _, figures in seen]
    matrix = {lev: np.array(rows) for lev, rows in calm.items()}
    print(f"calm-day moments never liquidated: 10x {len(calm[10]):,}, 20x {len(calm[20]):,}")
    print()
    print("| case | liquidated | moments to warn at | of them no calm 10x moment matches |")
    print("|---|---|---|---|")
    for label, history, symbol in histories:
        for side in ("long", "short"):
            entry, _, _ = before_the_move(history, side == "long", HOUR, HOUR, 24 * HOUR)
            for lev in (10, 20, 50):
                seen, liquidated, start = moments(history, symbol, side, lev, entry, rules)
                if liquidated is None:
                    continue
                # at entry, or 15 minutes or more before the liquidation's candle
                due = [f for t, f in seen if t == start or t <= liquidated - NEED_S * 1000]
                free = sum(1 for f in due if not (matrix[10] >= np.array(f)).all(axis=1).any())
                after = (liquidated - start) // 60_000
                print(
                    f"| {label} {side} {lev}x | {iso(liquidated)[5:16]} ({after} min after "
                    f"entry) | {len(due)} | {free} |"
                )
    print(f"\n({time.process_time() - began:.0f} s of CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
