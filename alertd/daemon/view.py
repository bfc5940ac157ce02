"""What the daemon sees, as one immutable value: accounts, their figures, positions, feed
health, firing alerts, the outbox and the counters.

The service publishes a new :class:`DaemonView` (replacing the old one whole) when something
changed and at least once a second; the HTTP endpoint (``/healthz``, ``/metrics``,
``/status``), ``alertd status``, the sd_notify STATUS line, the health log line and the daily
digest render it. Nothing that renders a view computes margin figures: they are the ones the
evaluation computed. ``alertd status`` with the daemon down renders a view read from the state
file (:data:`Source.STATE_FILE`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from alertd.daemon.store import OutboxRow
from alertd.engine.margin import AccountMetrics
from alertd.engine.reported import ExchangeRatioPosition
from alertd.engine.stops import StopFigures, stop_figures
from alertd.rules.lifecycle import AlertState
from alertd.rules.model import Rule

# An undelivered message older than this means delivery is stuck, not just busy.
OUTBOX_STUCK_AFTER_S = 300.0


class Source(enum.Enum):
    DAEMON = "daemon"
    STATE_FILE = "state file"


@dataclass(frozen=True, slots=True)
class PositionFigures:
    """One position's figures as the daemon last published them, ready to render."""

    symbol: str
    side: str
    contracts: Decimal
    mark_price: Decimal
    liquidation_price: Decimal | None
    liquidation_distance: Decimal | None
    margin_ratio: Decimal
    stop: StopFigures | None = None  # None: the account's stops are not read
    adl_rank: Decimal | None = None  # the exchange's ADL queue position, 0 last .. 1 first
    # the account's taker fee rate in the requirement (None: the exchange's formula has none)
    fee_rate: Decimal | None = None
    # gap risk (issue 15 item 4): liquidation to bankruptcy as a fraction of the mark, and
    # what a close at liq. loses past bankruptcy into the order book (None: no book read)
    bankruptcy_buffer: Decimal | None = None
    gap_risk: Decimal | None = None
    # the predictive figures at their default parameters; None without price history (no
    # rule reads price dynamics, or too little yet)
    liquidation_probability: Decimal | None = None  # within 1h
    time_to_liquidation: Decimal | None = None  # seconds, at the last 15 minutes' pace
    # every published position metric with a value (rules/metrics.py ``published_values``):
    # what /metrics shows
    values: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PoolFigures:
    """One cross pool of an account of several (a margin asset each: Binance single-asset)."""

    asset: str
    margin_ratio: Decimal
    buffer: Decimal
    # the pool's published per-pool metrics (rules/metrics.py ``pool_values``): what /metrics
    # shows labelled with ``asset`` (empty for figures read from a snapshot)
    values: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccountFigures:
    """The figures of one account from one margin computation."""

    worst_ratio: Decimal
    pool_ratio: Decimal  # the cross pool's margin ratio
    buffer: Decimal
    crash_distance: Decimal | None  # None when the computation left it out
    settle: str
    positions: tuple[PositionFigures, ...]
    # when the crash distance was solved (epoch seconds): the daemon solves it at most once a
    # second for a ticking account, so it may be older than the other figures (None: now)
    crash_at: float | None = None
    # the cross pool's effective leverage, and the largest position's share of the notional
    # and of the maintenance margin (None with fewer than two positions)
    effective_leverage: Decimal | None = None
    concentration: Decimal | None = None
    margin_concentration: Decimal | None = None
    # every published account metric with a value (empty for figures read from a snapshot)
    values: Mapping[str, Decimal] = field(default_factory=dict)
    # each cross pool, where the account has several (empty with one: its figures are above)
    pools: tuple[PoolFigures, ...] = ()

    @classmethod
    def of(cls, metrics: AccountMetrics) -> AccountFigures:
        return cls(
            worst_ratio=metrics.worst_ratio,
            pool_ratio=metrics.pool.margin_ratio,
            buffer=metrics.pool.buffer,
            crash_distance=metrics.crash_distance,
            settle=metrics.pool.asset,  # the (riskiest) cross pool's margin asset
            positions=tuple(
                PositionFigures(
                    symbol=pm.position.symbol,
                    side=pm.position.side.label,
                    contracts=pm.position.contracts,
                    mark_price=pm.position.mark_price,
                    liquidation_price=pm.liquidation_price,
                    liquidation_distance=pm.liquidation_distance,
                    margin_ratio=pm.margin_ratio,
                    stop=stop_figures(
                        metrics.account.stops,
                        pm.position,
                        pm.position.mark_price,
                        pm.liquidation_price,
                    ),
                    adl_rank=pm.position.adl_rank,
                    fee_rate=pm.position.fee_rate if metrics.account.profile.uses_fee else None,
                    bankruptcy_buffer=pm.bankruptcy_buffer,
                )
                for pm in metrics.positions
            ),
            effective_leverage=metrics.pool.effective_leverage,
            concentration=metrics.concentration,
            margin_concentration=metrics.margin_concentration,
            pools=tuple(
                PoolFigures(m.pool.asset, m.pool.margin_ratio, m.pool.buffer) for m in metrics.pools
            ),
        )


@dataclass(frozen=True, slots=True)
class StreamAge:
    stream: str  # "mark", "positions", "balance"
    key: str  # the symbol for marks, "" otherwise
    age_s: float  # seconds since its last message, when the view was built


@dataclass(frozen=True, slots=True)
class AccountView:
    name: str
    exchange: str
    bootstrapped: bool
    connected: bool
    fatal: str | None
    stale: tuple[str, ...]  # "mark BTC/USDT:USDT", "balance", "not bootstrapped", ...
    open_positions: int  # positions the feed holds (figures may be missing: incomplete data)
    figures: AccountFigures | None  # None: no complete data yet
    reconnects: int = 0
    ages: tuple[StreamAge, ...] = ()
    drift: tuple[tuple[str, Decimal], ...] = ()  # (figure, relative difference) vs the exchange
    saved_at: float | None = None  # from the state file: when these figures were saved
    mode_saved_at: float | None = None  # from the state file: when the mode and ratio were
    mode: str = ""  # the account's mode as the exchange reported it ("" : not read)
    coverage: str = ""  # what alertd does with that mode (Coverage's value)
    mode_limits: str | None = None  # what alertd cannot compute in this mode, and why
    # the exchange's own account margin ratio (requirement / equity) at the last reconcile,
    # moved with the marks since when ``exchange_ratio_moved``
    exchange_ratio: Decimal | None = None
    exchange_ratio_moved: bool = False
    missing: tuple[str, ...] = ()  # what keeps the account's data incomplete
    # a part of the fee rates no read could tell, and how low it makes alertd's maintenance
    # margin at most (Bybit's GST where neither the fills nor the KYC region told)
    fee_gap: str | None = None
    # while incomplete for a while, the positions whose alerts alertd keeps as they are
    # ("BTC/USDT:USDT long"): read on the exchange's figures meanwhile, they would resolve
    held_alerts: tuple[str, ...] = ()
    # where the exchange's ratio stands in (a mode alertd does not compute): the positions
    # with their notional and PnL at the live mark and the exchange's own liquidation prices
    exchange_positions: tuple[ExchangeRatioPosition, ...] = ()
    # what its private stream missed, as a reconcile found it: said here and by the
    # ``private-stream-missed`` warning, not stale (the reconcile's snapshot is applied and
    # the stream reopened): it neither fails /healthz nor withholds the dead-man's heartbeat
    missed: str | None = None

    @property
    def worst_ratio(self) -> Decimal | None:
        return None if self.figures is None else self.figures.worst_ratio

    @property
    def problem(self) -> str | None:
        """Why this account counts against health, or None when its feed is fresh."""
        if self.fatal:
            return f"stopped: {self.fatal}"
        if self.stale:
            return f"stale: {', '.join(self.stale)}"
        return None


@dataclass(frozen=True, slots=True)
class FiringAlert:
    rule: str
    severity: str | None  # None: the rule is not known here (read from the state file)
    subject: str
    since: float
    value: Decimal | None
    notified: bool
    # why nothing watches it any more (read from the state file: its account is no longer
    # configured or is disabled); None while its account is watched
    unwatched: str | None = None

    @classmethod
    def of(cls, state: AlertState, rule: Rule | None, unwatched: str | None = None) -> FiringAlert:
        severity = rule.severity.label if rule is not None else None
        return cls(
            state.rule,
            severity,
            state.subject.key,
            state.since,
            state.value,
            state.notified,
            unwatched,
        )


@dataclass(frozen=True, slots=True)
class Undelivered:
    id: int
    receiver: str
    title: str
    attempts: int
    last_error: str | None
    created_at: float

    @classmethod
    def of(cls, row: OutboxRow) -> Undelivered:
        return cls(row.id, row.receiver, row.title, row.attempts, row.last_error, row.created_at)


@dataclass(frozen=True, slots=True)
class Counters:
    engine_updates: int = 0
    notifications: int = 0
    sent: int = 0  # messages delivered
    failed: int = 0  # delivery attempts that failed


@dataclass(frozen=True, slots=True)
class FundView:
    """The latest balance of an exchange's insurance fund behind a held symbol, where the
    rules watch it (``builtin_rules.insurance_fund``) and the exchange publishes it."""

    exchange: str
    symbol: str
    balance: Decimal


@dataclass(frozen=True, slots=True)
class DaemonView:
    source: Source
    at: float  # epoch seconds when it was built
    accounts: tuple[AccountView, ...]
    firing: tuple[FiringAlert, ...]
    undelivered: tuple[Undelivered, ...]
    counters: Counters
    reasons: tuple[str, ...]  # why the daemon is unhealthy; empty when healthy
    funds: tuple[FundView, ...] = ()
    # the exchange hosts whose IP is banned ("binanceusdm IP banned until 09:42 UTC (418)"):
    # every account of one waits for the ban's end
    bans: tuple[str, ...] = ()
    # the exchange hosts whose public requests wait after a 429 on a public endpoint limited
    # per IP ("okx public requests paused 12 s more (429)"): degraded, not unhealthy
    # (the marks stream on; a mark starved long enough is stale, which is)
    public_pauses: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool | None:
        """Every feed fresh and the outbox draining; None when read from the state file."""
        if self.source is Source.STATE_FILE:
            return None
        return not self.reasons

    @property
    def feeds_fresh(self) -> bool:
        """Every account bootstrapped with fresh streams (what the dead-man's switch needs)."""
        return bool(self.accounts) and all(a.problem is None for a in self.accounts)

    def firing_by_severity(self) -> dict[str, int]:
        counts = {"info": 0, "warning": 0, "critical": 0}
        for alert in self.firing:
            if alert.severity in counts:
                counts[alert.severity] += 1
        return counts


def health_reasons(
    accounts: Sequence[AccountView],
    undelivered: Sequence[Undelivered],
    now: float,
    bans: Sequence[str] = (),
) -> tuple[str, ...]:
    """Why the daemon is not healthy: a stopped or stale feed, an IP ban of an exchange host,
    or a stuck outbox."""
    reasons = list(bans)
    if not accounts:
        reasons.append("no accounts")
    for account in accounts:
        if account.problem is not None:
            reasons.append(f"{account.name}: {account.problem}")
    stuck = sum(1 for u in undelivered if now - u.created_at > OUTBOX_STUCK_AFTER_S)
    if stuck:
        reasons.append(f"outbox: {stuck} messages undelivered for over 5 minutes")
    return tuple(reasons)


EMPTY = DaemonView(Source.DAEMON, 0.0, (), (), (), Counters(), ("no accounts",))
