"""``alertd replay --plot OUT.png``: price, liquidation price and alert markers on one chart;
with ``--sweep``, lead time against false alarms for each rule and for the rule set."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import alertd.views.format as fmt
from alertd.replay.history import History
from alertd.replay.run import ReplayResult

if TYPE_CHECKING:
    from alertd.replay.sweep import SweepRow

WIDTH_PX, HEIGHT_PX, DPI = 1600, 900, 100
COLOURS = {"info": "tab:blue", "warning": "tab:orange", "critical": "tab:red"}


def _t(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def price_unit(symbol: str) -> str:
    """What a price of ``symbol`` is counted in: ``USDT per BTC`` for BTC/USDT:USDT (and for
    an inverse BTC/USD:BTC, ``USD per BTC``)."""
    base, _, rest = symbol.partition("/")
    quote = rest.split(":")[0]
    return f"{quote} per {base}" if base and quote else "quote currency per unit"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    return plt


def plot(result: ReplayResult, history: History, out: str | Path) -> Path:
    fig = figure(result, history)
    out = Path(out)
    fig.savefig(out, dpi=DPI)
    _pyplot().close(fig)
    return out


def figure(result: ReplayResult, history: History) -> Any:
    """The replay's chart as a matplotlib figure (``plot`` saves it)."""
    plt = _pyplot()
    import matplotlib.dates as mdates

    def x(ms: int) -> float:
        return float(mdates.date2num(_t(ms)))  # type: ignore[no-untyped-call]

    candles = [c for c in history.candles if c.t_ms <= result.end_ms]
    times = [x(c.t_ms) for c in candles]
    fig, ax = plt.subplots(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    ax.fill_between(
        times,
        [float(c.low) for c in candles],
        [float(c.high) for c in candles],
        color="tab:gray",
        alpha=0.25,
        linewidth=0,
        label="candle range",
    )
    ax.plot(
        times,
        [float(c.close) for c in candles],
        color="black",
        linewidth=0.8,
        label=f"{result.symbol} close",
    )
    for label, price in result.liquidation_prices.items():
        if price is not None:
            ax.axhline(
                float(price),
                color="tab:red",
                linestyle="--",
                linewidth=1,
                label=f"liquidation price {label}: {fmt.price(price)}",
            )
    entry = candles[0]
    ax.axvline(x(entry.t_ms), color="tab:blue", linewidth=1, linestyle=":")
    ax.scatter(
        [x(entry.t_ms)],
        [float(entry.open)],
        marker="o",
        s=60,
        color="tab:blue",
        zorder=6,
        label=f"entry {_t(entry.t_ms):%Y-%m-%d %H:%M} UTC @ {fmt.price(entry.open)}",
    )
    if result.liquidated_at_ms is not None:
        ax.axvline(
            x(result.liquidated_at_ms),
            color="tab:red",
            linewidth=1.5,
            label=f"liquidated {_t(result.liquidated_at_ms):%Y-%m-%d %H:%M} UTC",
        )
    ax.set_title(
        f"alertd replay: {result.symbol}, {_t(result.start_ms):%Y-%m-%d %H:%M} to "
        f"{_t(result.end_ms):%Y-%m-%d %H:%M} UTC (within-candle path: "
        f"{result.adverse_first} first)"
    )
    ax.set_ylabel(f"price ({price_unit(result.symbol)})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))  # type: ignore[no-untyped-call]
    fig.autofmt_xdate()
    # limits fixed before the labels are placed: a label's side depends on where its point is
    ax.set_xlim(*ax.get_xlim())
    ax.set_ylim(*ax.get_ylim())
    close_at = {c.t_ms: c for c in candles}
    for alert in result.alerts:
        candle = close_at.get(alert.at_ms)
        if candle is None:
            continue
        y = float(candle.low if result.adverse_first == "low" else candle.high)
        marker = "v" if alert.kind == "firing" else "^"
        colour = COLOURS.get(alert.severity, "tab:blue") if alert.kind == "firing" else "tab:green"
        ax.scatter([x(alert.at_ms)], [y], marker=marker, s=70, color=colour, zorder=5)
        _label(ax, f"{alert.rule} {alert.kind}", x(alert.at_ms), y, colour)
    return fig


def _label(ax: Any, text: str, x: float, y: float, colour: str) -> None:
    """A point's label on the side of it that faces the middle of the axes, so it stays
    inside them (a label to the right of a point near the right edge would leave them)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    right = x <= (x0 + x1) / 2
    up = y <= (y0 + y1) / 2
    ax.annotate(
        text,
        (x, y),
        xytext=(6 if right else -6, 8 if up else -8),
        textcoords="offset points",
        ha="left" if right else "right",
        va="bottom" if up else "top",
        fontsize=7,
        color=colour,
        annotation_clip=True,
    )


LEVERAGE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_sweep(rows: Sequence[SweepRow], out: str | Path, title: str) -> Path:
    """Lead time against false alarms per position-day: one point per rule, and one for the
    rule set (its first alert), per leverage. A rule that never warned ahead of a
    liquidation has no lead time: it is drawn at 0 minutes and said so in its label."""
    from alertd.replay.sweep import FIRST_ALERT, median_or_none

    if not rows or all(row.runs == 0 for row in rows):
        raise ValueError("the sweep replayed nothing: nothing to chart")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    names = [*rows[0].rules, FIRST_ALERT]
    colours = plt.get_cmap("tab10")
    points: list[tuple[float, float, str, str]] = []
    for n, name in enumerate(names):
        for k, row in enumerate(rows):
            st = row.first if name == FIRST_ALERT else row.rules[name]
            per_day = row.per_position_day(st) or 0.0
            median = median_or_none(st.lead_times_s)
            lead = 0.0 if median is None else median / 60
            colour = colours(n % 10)
            ax.scatter(
                [per_day],
                [lead],
                marker=LEVERAGE_MARKERS[k % len(LEVERAGE_MARKERS)],
                s=90 if name == FIRST_ALERT else 50,
                color="black" if name == FIRST_ALERT else colour,
                label=f"{name}, {row.leverage}x",
                zorder=5,
            )
            if row.liquidated:
                worst = min(st.lead_times_s) / 60 if st.lead_times_s else 0.0
                ax.vlines(per_day, worst, lead, color=colour, alpha=0.5)
            tag = f"{row.leverage}x"
            if st.warned_at_entry:
                tag += f", {st.warned_at_entry} at entry"
            if row.liquidated and median is None:
                tag += ", no lead"
            points.append((per_day, lead, tag, "black" if name == FIRST_ALERT else colour))
    ax.set_xlabel("false alarms per position-day (firings in runs not liquidated)")
    ax.set_ylabel("median lead time before liquidation (minutes; bar down to the worst)")
    ax.set_title(f"alertd replay --sweep: {title}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.1)
    ax.legend(loc="best", fontsize=7, ncol=2)
    ax.set_xlim(*ax.get_xlim())
    ax.set_ylim(*ax.get_ylim())
    for x, y, tag, colour in points:
        _label(ax, tag, x, y, colour)
    out = Path(out)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def png_size(path: str | Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and a check that it is a PNG)."""
    data = Path(path).read_bytes()[:24]
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
