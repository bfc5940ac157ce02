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
and lows from the marks the price window holds (the candles' opens). And the market's traded
volume, which alertd does not read: the volume of the last 15 minutes or hour over the median
of the last day's (a regime, scale-free), read from the history file itself (a mark price's
klines carry none: those cases print n/a).

    python bench/lead_time_bound.py [--max-calm-days N] [--history FILE@START/END SYMBOL ...]

(``--max-calm-days``: that many calm days of each month, evenly spread: fewer calm moments
can only leave more moments free, so a case still matched with fewer days is matched with all;
``--history``: more crash cases, as bench/lead_time.py takes them; the calm days stay the
shared months'.)

Prints, per liquidated crash case, how many of its moments no calm 10x moment matches, with
the six figures alone and, where they leave none, with each candidate; then, per candidate,
its largest value on the calm days and at each case's moments to warn at (the margin a
threshold between them would have).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import io
import json
import math
import sys
import time
import zipfile
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from lead_time import (
    CALM_EVERY_S,
    DATA,
    HISTORIES,
    HOUR,
    NEED_S,
    given,
    history_option,
    isolated_run,
)

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
VOLUME_RECENT_MIN = (15, 60)  # the recent volume's spans, in one-minute candles
VOLUME_BASELINE_MIN = 24 * 60  # the trailing day whose median minute is the baseline


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


class Volumes:
    """Per candle of a history, the mean volume of the last 15 and 60 closed one-minute
    candles over the median minute of the last day's: the market's activity against its own
    day, so comparable across assets and years. Only closed candles count (the one being
    replayed is still forming). ``None`` where the file carries no volume."""

    def __init__(self, history: History, by_time: dict[int, float] | None) -> None:
        self.ratio: dict[int, list[float]] | None = None
        if not by_time:
            return
        times = [c.t_ms for c in history.candles]
        self.index = {t: i for i, t in enumerate(times)}
        v = np.array([by_time.get(t, np.nan) for t in times])
        self.ratio = {}
        baseline = _rolling_median(v, VOLUME_BASELINE_MIN)
        for span in VOLUME_RECENT_MIN:
            recent = np.full(len(v), np.nan)
            sums = np.concatenate([[0.0], np.cumsum(np.nan_to_num(v))])
            for i in range(span, len(v)):  # closed candles i-span .. i-1
                recent[i] = (sums[i] - sums[i - span]) / span
            with np.errstate(divide="ignore", invalid="ignore"):
                self.ratio[span] = list(recent / baseline)

    def at(self, t_ms: int) -> list[float]:
        if self.ratio is None:
            return [np.nan] * len(VOLUME_RECENT_MIN)
        i = self.index[t_ms]
        return [self.ratio[span][i] for span in VOLUME_RECENT_MIN]


def _rolling_median(v: np.ndarray, span: int) -> np.ndarray:
    """The median of the ``span`` values before each index, NaN ones left out (NaN until a
    full span has passed)."""
    out = np.full(len(v), np.nan)
    kept: list[float] = []  # the finite values of the last span, sorted
    for i, x in enumerate(v):
        if i >= span:
            if kept:
                mid = len(kept) // 2
                out[i] = kept[mid] if len(kept) % 2 else (kept[mid - 1] + kept[mid]) / 2
            leaving = v[i - span]
            if not math.isnan(leaving):
                kept.pop(bisect.bisect_left(kept, leaving))
        if not math.isnan(x):
            bisect.insort(kept, float(x))
    return out


def file_volumes(path: Path) -> dict[int, float] | None:
    """Each candle's traded volume by its open time (ms), from the history file itself: alertd's
    candles keep no volume, as the daemon reads none. ``None`` when the file has none (Binance's
    mark-price klines carry a volume of 0)."""
    if path.suffix == ".feather":
        import pyarrow.feather as feather

        table = feather.read_table(str(path), columns=["date", "volume"])
        times = [int(d.timestamp() * 1000) for d in table.column("date").to_pylist()]
        volumes = [float(x) for x in table.column("volume").to_pylist()]
    elif path.suffix == ".json":  # freqtrade's [[open_time_ms, o, h, l, c, volume], ...]
        rows = json.loads(path.read_text())
        times, volumes = [int(r[0]) for r in rows], [float(r[5]) for r in rows]
    elif path.suffix == ".zip":  # Binance's kline archive: one CSV with a header
        with zipfile.ZipFile(path) as archive:
            (member,) = archive.namelist()
            reader = csv.DictReader(io.TextIOWrapper(archive.open(member)))
            rows = [(int(r["open_time"]), float(r["volume"])) for r in reader]
        times, volumes = [t for t, _ in rows], [x for _, x in rows]
    else:
        return None
    if not any(volumes):
        return None
    return dict(zip(times, volumes, strict=True))


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
    t_ms: int,
    observed: Sequence[Observation],
    rules: list[Rule],
    extremes: Extremes,
    volumes: Volumes,
) -> list[float] | None:
    """The position's six figures, each turned so that larger is riskier (no value: least
    risky: no liquidation price, or the mark moving away), then the raw figures the
    candidates are made of: the three volatilities' distances in sigmas, the three paces'
    times, the mark, the side, the highs and lows, the volume regimes."""
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
    return out + volumes.at(t_ms)


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
            # the market trading more than its day's median minute, either side's risk
            "volume 15m/24h": m[:, BASE + 12],
            "volume 1h/24h": m[:, BASE + 13],
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
    volumes: Volumes,
) -> tuple[list[tuple[int, list[float]]], int | None, int]:
    seen: list[tuple[int, list[float]]] = []

    def watch(t_ms: int, observed: Sequence[Observation]) -> None:
        figures = risk(t_ms, observed, rules, extremes, volumes)
        if figures is not None:
            seen.append((t_ms, figures))

    result = isolated_run(symbol, side, lev, history, entry, rules, shortcut=False, watch=watch)
    return seen, result.liquidated_at_ms, result.start_ms


def unmatched(due: np.ndarray, calm: np.ndarray) -> int:
    """How many rows of ``due`` no row of ``calm`` is at least as risky as in every column."""
    # only calm rows at least as risky in the first column can match: sorted on it, they are
    # a prefix (a view, not a copy)
    calm = calm[np.argsort(-calm[:, 0], kind="stable")]
    first = -calm[:, 0]
    return sum(
        1
        for row in due
        if not (calm[: np.searchsorted(first, -row[0], side="right")] >= row).all(axis=1).any()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-calm-days", type=int, metavar="N", help="per month, evenly spread")
    history_option(parser, "more crash cases (the calm days stay the shared months')")
    parser.add_argument(
        "--figures", nargs="*", metavar="WORD", help="only the candidates whose name has one"
    )
    args = parser.parse_args()
    began = time.process_time()
    rules = probes()
    shared = [(label, load_history(DATA / name), s, DATA / name) for label, name, s in HISTORIES]
    more = [(*given(f, s), Path(f.partition("@")[0])) for f, s in args.history]
    calm_rows: list[list[float]] = []
    for _, history, symbol, path in shared:
        entries = calm_day_entries(history, CALM_EVERY_S)
        days = sorted({history.candles[e.index].t_ms // 86_400_000 for e in entries})
        if len(days) < 2:
            continue
        if args.max_calm_days and args.max_calm_days < len(days):
            n = args.max_calm_days
            keep = {days[j * len(days) // n] for j in range(n)}
            entries = [e for e in entries if history.candles[e.index].t_ms // 86_400_000 in keep]
            print(f"{path.name}: {n} calm days of {len(days)}")
        extremes, volumes = Extremes(history), Volumes(history, file_volumes(path))
        for side in ("long", "short"):
            for e in entries:
                seen, liquidated, _ = moments(
                    history, symbol, side, 10, e, rules, extremes, volumes
                )
                if liquidated is None:
                    calm_rows += [figures for _, figures in seen]
    calm = np.array(calm_rows)
    calm_extra = candidates(calm)
    if args.figures is not None:
        calm_extra = {n: v for n, v in calm_extra.items() if any(w in n for w in args.figures)}
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
    for label, history, symbol, path in shared + more:
        extremes, volumes = Extremes(history), Volumes(history, file_volumes(path))
        for side in ("long", "short"):
            entry, _, _ = before_the_move(history, side == "long", HOUR, HOUR, 24 * HOUR)
            for lev in (10, 20, 50):
                seen, liquidated, start = moments(
                    history, symbol, side, lev, entry, rules, extremes, volumes
                )
                if liquidated is None:
                    continue
                # at entry, or 15 minutes or more before the liquidation's candle
                rows = np.array(
                    [f for t, f in seen if t == start or t <= liquidated - NEED_S * 1000]
                )
                extra = {n: v for n, v in candidates(rows).items() if n in calm_extra}
                free = unmatched(rows[:, :BASE], calm[:, :BASE])
                cells = [str(free)]
                # a figure added can only leave more moments unmatched: where the six leave
                # some, the case can be warned in time already (a rule on them exists)
                for n in [*names, None]:
                    if free:
                        cells.append("-")
                        continue
                    if volumes.ratio is None and (n is None or n.startswith("volume")):
                        cells.append("n/a")  # no volume in this file
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
                    if volumes.ratio is not None or not n.startswith("volume"):
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
