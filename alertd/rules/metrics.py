"""From engine results and feed health to the metrics rules can name.

Every metric a rule may use is listed in :data:`ACCOUNT_METRICS` and :data:`POSITION_METRICS`
with its meaning; ``docs/rules.md`` is generated from the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from alertd.engine.margin import AccountMetrics
from alertd.rules.model import Observation, Scope, Subject

ACCOUNT_METRICS: dict[str, str] = {
    "worst_ratio": "highest margin ratio in the account (cross pool or any isolated position); "
    "1 = liquidation",
    "margin_ratio": "the cross pool's maintenance margin / margin balance; 1 = liquidation",
    "buffer": "cross margin balance minus maintenance margin, in the settle currency",
    "crash_distance": "uniform relative move of all marks that liquidates something (0.15 = 15%)",
    "effective_leverage": "cross notional / cross margin balance",
    "margin_balance": "cross wallet balance + unrealized PnL",
    "maintenance_margin": "cross maintenance margin",
    "feed_stale_s": "seconds since the oldest held symbol's last mark price",
    "feed_down_s": "seconds the account's streams have been disconnected",
    "account_error": "1 when the account's feed stopped for good (bad key, banned), else 0",
}
POSITION_METRICS: dict[str, str] = {
    "margin_ratio": "the position's ratio (isolated) or its pool's (cross); 1 = liquidation",
    "liquidation_distance": "distance from mark to liquidation price, as a fraction of the mark",
    "effective_leverage": "notional / margin balance behind the position",
    "unrealized_pnl": "unrealized PnL in the settle currency",
    "notional": "position value at the mark",
}


def metric_scope(metric: str) -> Scope | None:
    """The scope a metric lives in when a rule does not say (account wins a tie)."""
    if metric in ACCOUNT_METRICS:
        return Scope.ACCOUNT
    if metric in POSITION_METRICS:
        return Scope.POSITION
    return None


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """What the rules need to know about an account's feed, at one moment."""

    stale_s: Decimal  # age of the oldest held mark; 0 with nothing held
    down_s: Decimal  # disconnected for this long; 0 when connected
    fatal: str | None


def observe(
    account: str, exchange: str, metrics: AccountMetrics | None, feed: FeedStatus
) -> list[Observation]:
    """One observation for the account and one per position."""
    values: dict[str, Decimal | None] = {
        "feed_stale_s": feed.stale_s,
        "feed_down_s": feed.down_s,
        "account_error": Decimal(1 if feed.fatal else 0),
    }
    context: dict[str, object] = {"fatal": feed.fatal}
    out: list[Observation] = []
    if metrics is not None:
        pool = metrics.pool
        values.update(
            worst_ratio=metrics.worst_ratio,
            margin_ratio=pool.margin_ratio,
            buffer=pool.buffer,
            crash_distance=abs(metrics.crash_distance)
            if metrics.crash_distance is not None
            else None,
            effective_leverage=pool.effective_leverage,
            margin_balance=pool.margin_balance,
            maintenance_margin=pool.maintenance_margin,
        )
        context["metrics"] = metrics
        for pm in metrics.positions:
            p = pm.position
            subject = Subject(account, exchange, p.symbol, p.side.label)
            out.append(
                Observation(
                    subject,
                    {
                        "margin_ratio": pm.margin_ratio,
                        "liquidation_distance": pm.liquidation_distance,
                        "effective_leverage": pm.effective_leverage,
                        "unrealized_pnl": pm.unrealized_pnl,
                        "notional": pm.notional,
                    },
                    {"metrics": metrics, "position": pm},
                )
            )
    out.insert(0, Observation(Subject(account, exchange), values, context))
    return out
