"""Can any rule on the price-dynamics figures meet both of issue 13's targets? A bound.

Every built-in figure a rule can read about a position's liquidation gets riskier one way:
a smaller distance, a shorter time to liquidation, a higher probability. A rule (or a rule
of several conditions, `while:`) on such figures, each pointing its risky way, that fires at
a moment A also fires at any moment B at least as risky in every figure it reads. So if every
moment at which a crash case would have to be warned (from its entry to 15 minutes before its
liquidation) is matched by a moment of a calm-day run that was never liquidated, at least as
risky in every figure, then no such rule warns that case in time without a false alarm on a
calm day: at 10x, where the shipped defaults give none, the two targets cannot both be met.

The six figures (the scenario of bench/lead_time.py, replayed through alertd's own replay with
its shortcuts off, so every price point is seen): liquidation distance; time to liquidation
at the pace of the last 5, 15 and 60 minutes; the touch probability within 15 minutes and
within 1 hour at the last hour's volatility (the distance in standard deviations orders the
moments as the probability of the same horizon does). `for:` holds are outside the bound.

Then each candidate seventh figure (``CANDIDATES``: the market's state, not the position's,
each standard in risk practice), added to the six: does a crash case's moment then escape
every calm moment? The volatility regime (the realized volatility of the last 15 minutes or
hour over the last day's), the long-horizon volatility itself, the fall from the highest
mark of the last 4 or 24 hours (a long's; a short's rise from the lowest) as a fraction and
in units of the day's volatility, and the acceleration of the move towards liquidation (the
5-minute pace over the hour's, in units of the day's volatility). The volatilities are read
through ``liquidation_distance_sigma`` at those windows (``d / (sigma sqrt(T))``: the ratio of
two is the ratio of the volatilities), the paces through ``time_to_liquidation``, the highs
and lows from the marks the price window holds (the candles' opens).

    python bench/lead_time_bound.py

Prints, per liquidated crash case, how many of its moments no calm 10x moment matches, with
the six figures alone and, where they leave none, with each candidate; then, per candidate,
its largest value on the calm days and at each case's moments to warn at (the margin a
threshold between them would have).
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
from lead_time import CALM_EVERY_S, DATA, HISTORIES, HOUR, NEED_S, isolated_run

from alertd.config import RuleConfig
from alertd.daemon.evaluation import _rule
from alertd.replay.history import History, iso, load_history
from alertd.replay.sweep import Entry, before_the_move, calm_day_entries
from alertd.rules.metrics import lookup
from alertd.rules.model import Observation, Rule, Scope

# (metric, window, horizon): each read as a rule on it reads it; the first six are the bound's
FIGURES = (
    ("liquidation_distance", None, None),
    ("time_to_liquidation", "5m", None),
    ("time_to_liquidation", "15m", None),
    ("time_to_liquidation", "1h", None),
    ("liquidation_probability", "1h", "15m"),
    ("liquidation_probability", "1h", "1h"),
)
BASE = len(FIGURES)
# read only for the candidates: the volatilities of 15 minutes, 1 hour and 1 day
SIGMA_WINDOWS = ("15m", "1h", "24h")
PROBED = FIGURES + tuple(("liquidation_distance_sigma", w, "1h") for w in SIGMA_WINDOWS)
DAY = 24 * HOUR
EXTREMES_S = (4 * HOUR, DAY)  # the lookbacks of the highs (lows) a fall (rise) is from


def probes() -> list[Rule]:
    """One rule per figure, only so that the replay reads it (thresholds never matter)."""
    out = []
    for i, (metric, window, horizon) in enumerate(PROBED):
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


class Extremes:
    """The highest and lowest candle open of a history over each lookback ending at each
    candle (the marks a window holds: opens, and closes that are the next opens)."""

    def __init__(self, history: History) -> None:
        times = [c.t_ms for c in history.candles]
        opens = [float(c.open) for c in history.candles]
        self.index = {t: i for i, t in enumerate(times)}
        self.high: dict[float, list[float]] = {}
        self.low: dict[float, list[float]] = {}
        for span in EXTREMES_S:
            self.high[span] = _sliding(times, opens, span, max)
            self.low[span] = _sliding(times, opens, span, min)


def _sliding(
    times: list[int], values: list[float], span_s: float, pick: Callable[..., float]
) -> list[float]:
    out, window, lo = [], deque[int](), 0
    for i, t in enumerate(times):
        while window and pick(values[window[-1]], values[i]) == values[i]:
            window.pop()
        window.append(i)
        while times[lo] < t - span_s * 1000:
            lo += 1
        while window[0] < lo:
            window.popleft()
        out.append(values[window[0]])
    return out


def risk(
    t_ms: int, observed: Sequence[Observation], rules: list[Rule], extremes: Extremes
) -> list[float] | None:
    """The position's six figures, each turned so that larger is riskier (no value: least
    risky: no liquidation price, or the mark moving away), then the raw figures the
    candidates are made of: the log distance, the three volatilities' distances in sigmas,
    the mark, the side, the highs and lows."""
    if len(observed) < 2:
        return None
    values = observed[1].metrics
    out = []
    for r in rules[:BASE]:
        value = values.get(r.series)
        if value is None:
            out.append(-np.inf)
        else:
            out.append(float(value) if r.condition.direction == "above" else -float(value))
    raw = [values.get(r.series) for r in rules[BASE:]]
    live = observed[1].context.live
    assert live is not None
    lp = live.positions[0]
    i = extremes.index[t_ms]
    ttl = [values.get(r.series) for r in rules[1:4]]
    out += [np.nan if v is None else float(v) for v in raw]
    out += [np.nan if v is None else float(v) for v in ttl]
    out += [float(lp.mark), float(lp.position.side)]
    out += [extremes.high[s][i] for s in EXTREMES_S] + [extremes.low[s][i] for s in EXTREMES_S]
    return out


def candidates(m: np.ndarray) -> dict[str, np.ndarray]:
    """Each candidate figure of every moment (rows of :func:`risk`), larger riskier; NaN
    (no value) as the least risky."""
    distance = -m[:, 0]  # liquidation distance, a fraction of the mark
    mark, side = m[:, BASE + 6], m[:, BASE + 7]
    # |ln(liquidation / mark)|: below the mark for a long, above for a short
    clipped = np.clip(distance, -0.99, 0.99)
    log_distance = np.abs(np.where(side > 0, np.log1p(-clipped), np.log1p(clipped)))
    sd15, sd60, sd24 = m[:, BASE], m[:, BASE + 1], m[:, BASE + 2]
    ttl5, ttl60 = m[:, BASE + 3], m[:, BASE + 5]
    high4, high24, low4, low24 = (m[:, BASE + 8 + k] for k in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma24 = log_distance / (sd24 * math.sqrt(HOUR))  # per square-root second
        fall4 = np.where(
            side > 0, np.log(np.maximum(high4, mark) / mark), np.log(mark / np.minimum(low4, mark))
        )
        fall24 = np.where(
            side > 0,
            np.log(np.maximum(high24, mark) / mark),
            np.log(mark / np.minimum(low24, mark)),
        )
        # the pace towards liquidation (log per second), 0 while moving away
        pace5 = np.where(np.isnan(ttl5), 0.0, log_distance / ttl5)
        pace60 = np.where(np.isnan(ttl60), 0.0, log_distance / ttl60)
        found = {
            "regime 15m/24h": sd24 / sd15,
            "regime 1h/24h": sd24 / sd60,
            "volatility 24h": sigma24,
            "fall from 4h high": fall4,
            "fall from 24h high": fall24,
            "fall from 4h high in day-sigmas": fall4 / (sigma24 * math.sqrt(4 * HOUR)),
            "fall from 24h high in day-sigmas": fall24 / (sigma24 * math.sqrt(DAY)),
            "acceleration 5m over 1h": (pace5 - pace60) * math.sqrt(HOUR) / sigma24,
        }
    return {k: np.where(np.isfinite(v), v, -np.inf) for k, v in found.items()}


def moments(
    history: History,
    symbol: str,
    side: str,
    lev: int,
    entry: Entry,
    rules: list[Rule],
    extremes: Extremes,
) -> tuple[list[tuple[int, list[float]]], int | None, int]:
    seen: list[tuple[int, list[float]]] = []

    def watch(t_ms: int, observed: Sequence[Observation]) -> None:
        figures = risk(t_ms, observed, rules, extremes)
        if figures is not None:
            seen.append((t_ms, figures))

    result = isolated_run(symbol, side, lev, history, entry, rules, shortcut=False, watch=watch)
    return seen, result.liquidated_at_ms, result.start_ms


def unmatched(due: np.ndarray, calm: np.ndarray) -> int:
    """How many rows of ``due`` no row of ``calm`` is at least as risky as in every column."""
    # only calm rows at least as risky in the first column can match: cuts the comparisons
    return sum(1 for row in due if not (calm[calm[:, 0] >= row[0]] >= row).all(axis=1).any())


def main() -> int:
    began = time.process_time()
    rules = probes()
    histories = [(label, load_history(DATA / name), s) for label, name, s in HISTORIES]
    calm_rows: list[list[float]] = []
    for _, history, symbol in histories:
        entries = calm_day_entries(history, CALM_EVERY_S)
        if len({history.candles[e.index].t_ms // 86_400_000 for e in entries}) < 2:
            continue
        extremes = Extremes(history)
        for side in ("long", "short"):
            for e in entries:
                seen, liquidated, _ = moments(history, symbol, side, 10, e, rules, extremes)
                if liquidated is None:
                    calm_rows += [figures for _, figures in seen]
    calm = np.array(calm_rows)
    calm_extra = candidates(calm)
    names = list(calm_extra)
    print(f"calm-day moments of 10x runs never liquidated: {len(calm):,}")
    print()
    print(
        "| case | liquidated | moments to warn at | no calm 10x moment matches: the six figures | "
        + " | ".join(f"+ {n}" for n in names)
        + " | + all of them |"
    )
    print("|---" * (len(names) + 5) + "|")
    tops: dict[str, list[str]] = {n: [] for n in names}
    for label, history, symbol in histories:
        extremes = Extremes(history)
        for side in ("long", "short"):
            entry, _, _ = before_the_move(history, side == "long", HOUR, HOUR, 24 * HOUR)
            for lev in (10, 20, 50):
                seen, liquidated, start = moments(
                    history, symbol, side, lev, entry, rules, extremes
                )
                if liquidated is None:
                    continue
                # at entry, or 15 minutes or more before the liquidation's candle
                rows = np.array(
                    [f for t, f in seen if t == start or t <= liquidated - NEED_S * 1000]
                )
                extra = candidates(rows)
                free = unmatched(rows[:, :BASE], calm[:, :BASE])
                cells = [str(free)]
                # a figure added can only leave more moments unmatched: where the six leave
                # some, the case can be warned in time already (a rule on them exists)
                for n in [*names, None]:
                    if free:
                        cells.append("-")
                        continue
                    added = list(extra.values()) if n is None else [extra[n]]
                    kept = list(calm_extra.values()) if n is None else [calm_extra[n]]
                    cells.append(
                        str(
                            unmatched(
                                np.column_stack([rows[:, :BASE], *added]),
                                np.column_stack([calm[:, :BASE], *kept]),
                            )
                        )
                    )
                for n in names:
                    tops[n].append(f"{label[:14]} {side} {lev}x {extra[n].max():.3g}")
                after = (liquidated - start) // 60_000
                print(
                    f"| {label} {side} {lev}x | {iso(liquidated)[5:16]} ({after} min after "
                    f"entry) | {len(rows)} | " + " | ".join(cells) + " |"
                )
    print()
    for n in names:
        finite = calm_extra[n][np.isfinite(calm_extra[n])]
        q = np.percentile(finite, [50, 99, 99.9, 100]) if len(finite) else []
        print(
            f"- {n}: calm 10x median/99%/99.9%/max "
            + "/".join(f"{v:.3g}" for v in q)
            + "; largest at the moments to warn at: "
            + "; ".join(tops[n])
        )
    print(f"\n({time.process_time() - began:.0f} s of CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
