"""Lead times before liquidation in the real crashes of ../shared/data, with the default rules.

For each crash: a long opened at the open of a candle shortly before the fall, at 10x, 20x and
50x, cross margin with only its initial margin, replayed with the default rules of
config.example.yaml (worst-first candle paths). Prints a Markdown table for docs/lead-time.md.

    python bench/lead_time.py
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from alertd.config import DEFAULT_RULES
from alertd.daemon.evaluation import _rule
from alertd.replay.history import iso, load_history, window
from alertd.replay.run import position_from_spec, replay

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CRASHES = [
    (
        "BTC 2021-05-19 (spot trades)",
        "2021-05-19_binance-spot_BTC_USDT-1m_2021-04-20_2021-05-20.json",
        "BTC/USDT:USDT",
        "2021-05-19T12:00:00Z",
    ),
    (
        "ETH 2024-08-05 (spot trades)",
        "2024-08-05_binance-spot_ETH_USDT-1m_2024-07-26_2024-08-25.feather",
        "ETH/USDT:USDT",
        "2024-08-05T00:00:00Z",
    ),
    (
        "BTC 2025-10-10 (COIN-M mark)",
        "2025-10-10_binance-coinm_BTCUSD_PERP_markPrice-1m.zip",
        "BTC/USDT:USDT",
        "2025-10-10T20:30:00Z",
    ),
]


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def main() -> int:
    rules = [_rule(r) for r in DEFAULT_RULES]
    print(
        "| crash | entry (UTC) | leverage | liquidated (UTC) | first warning | "
        "first critical | lead time of the first alert |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, name, symbol, entry_at in CRASHES:
        history = load_history(DATA / name)
        start = ms(entry_at)
        history = window(history, start, start + 12 * 3600 * 1000)
        entry = history.candles[0].open
        for lev in (10, 20, 50):
            account = position_from_spec(f"{symbol} long 1 @ {entry} x{lev} cross")
            result = replay(account, history, rules, symbol)
            firing = [a for a in result.alerts if a.kind == "firing"]
            warn = next((a for a in firing if a.severity == "warning"), None)
            crit = next((a for a in firing if a.severity == "critical"), None)
            first = firing[0] if firing else None
            liq = iso(result.liquidated_at_ms) if result.liquidated_at_ms else "not liquidated"

            def when(alert: object) -> str:
                if alert is None:
                    return "-"
                return f"{iso(alert.at_ms)[11:16]} {alert.rule}"  # type: ignore[attr-defined]

            lead = result.lead_time_s(first) if first else None
            lead_text = "-" if lead is None else f"{lead / 60:.0f} min"
            print(
                f"| {label} | {entry_at[:16].replace('T', ' ')} @ {entry} | {lev}x | "
                f"{liq[:16].replace('T', ' ')} | {when(warn)} | {when(crit)} | {lead_text} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
