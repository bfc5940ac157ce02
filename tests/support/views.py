"""A daemon's published view, built by hand: what the endpoint, ``alertd status``, sd_notify and
the Telegram bot render."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import alertd.daemon.view as v

D = Decimal
FIGURES = v.AccountFigures(
    worst_ratio=D("0.66"),
    pool_ratio=D("0.66"),
    buffer=D("118.5"),
    crash_distance=D("-0.0021"),
    settle="USDT",
    positions=(
        v.PositionFigures(
            "BTC/USDT:USDT",
            "long",
            D("1"),
            D("58350"),
            D("58232.93"),
            D("0.002"),
            D("0.66"),
            liquidation_probability=D("0.25"),
            time_to_liquidation=D("600"),
            # what the publisher reads from the metric registry (/metrics renders these)
            values={
                "margin_ratio": D("0.66"),
                "liquidation_distance": D("0.002"),
                "liquidation_probability": D("0.25"),
                "time_to_liquidation": D("600"),
            },
        ),
    ),
    values={
        "worst_ratio": D("0.66"),
        "margin_ratio": D("0.66"),
        "buffer": D("118.5"),
        "crash_distance": D("-0.0021"),
    },
)


def account(name: str = "main", **changes: Any) -> v.AccountView:
    base: dict[str, Any] = dict(
        name=name,
        exchange="binanceusdm",
        bootstrapped=True,
        connected=True,
        fatal=None,
        stale=(),
        open_positions=1,
        figures=FIGURES,
        reconnects=2,
        ages=(v.StreamAge("mark", "BTC/USDT:USDT", 0.25),),
        drift=(("margin_balance", D("0.0001")),),
    )
    base.update(changes)
    return v.AccountView(**base)


def view(
    *accounts: v.AccountView, undelivered: tuple[v.Undelivered, ...] = (), now: float = 10_000.0
) -> v.DaemonView:
    """The view at ``now``, with one warning firing on ``main`` since 1,000 s before."""
    return v.DaemonView(
        source=v.Source.DAEMON,
        at=now,
        accounts=accounts,
        firing=(v.FiringAlert("ratio-warning", "warning", "main", now - 1_000, D("0.66"), True),),
        undelivered=undelivered,
        counters=v.Counters(engine_updates=7, notifications=1, sent=1, failed=0),
        reasons=v.health_reasons(accounts, undelivered, now),
    )
