"""``alertd replay --plot OUT.png``: price, liquidation price and alert markers on one chart."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import alertd.views.format as fmt
from alertd.replay.history import History
from alertd.replay.run import ReplayResult

WIDTH_PX, HEIGHT_PX, DPI = 1600, 900, 100
COLOURS = {"info": "tab:blue", "warning": "tab:orange", "critical": "tab:red"}


def _t(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def plot(result: ReplayResult, history: History, out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

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
    close_at = {c.t_ms: c for c in candles}
    for alert in result.alerts:
        candle = close_at.get(alert.at_ms)
        if candle is None:
            continue
        y = float(candle.low if result.adverse_first == "low" else candle.high)
        marker = "v" if alert.kind == "firing" else "^"
        colour = COLOURS.get(alert.severity, "tab:blue") if alert.kind == "firing" else "tab:green"
        ax.scatter([x(alert.at_ms)], [y], marker=marker, s=70, color=colour, zorder=5)
        ax.annotate(
            f"{alert.rule} {alert.kind}",
            (x(alert.at_ms), y),
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=7,
            color=colour,
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
    ax.set_ylabel("price")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))  # type: ignore[no-untyped-call]
    fig.autofmt_xdate()
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
