"""The metrics rules can name, and the one function that turns figures into observations.

Every metric is one :class:`Metric` entry in :data:`METRICS`: its name and scope, its unit
(which decides how a message shows it), the direction in which it gets riskier, its meaning,
what it needs computed, and how it is read from an account in the book
(:class:`~alertd.engine.book.LiveAccount`) and the feed's status. Config validation, the
messages, replay and ``docs/rules.md``'s metric tables all read this table; adding a metric is
one entry (then regenerate the doc:
``ALERTD_WRITE_DOCS=1 pytest tests/test_metric_registry.py``; the test fails while it is stale).

:func:`observe` is the one path from figures to rule observations, for the daemon and replay
alike. It reads only the metrics asked for, so a liquidation price is solved only when a rule
needs one; :func:`with_full_metrics` adds the full figures a message quotes, when one is sent.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from alertd.engine.book import LiveAccount, LivePosition
from alertd.engine.margin import AccountMetrics, compute
from alertd.rules.lifecycle import Notification
from alertd.rules.model import Context, Observation, Rule, Scope, Subject


class Unit(enum.Enum):
    """What a metric's number measures; messages format by unit. The value is the docs' label."""

    RATIO = "ratio (shown as %)"  # maintenance margin / margin balance: 1 = liquidation
    FRACTION = "fraction (shown as %)"  # of a price: 0.03 = 3%
    MONEY = "settle currency"
    LEVERAGE = "x"  # notional / margin balance
    SECONDS = "seconds"
    FLAG = "0 or 1"


class Needs(enum.IntEnum):
    """What must be computed for a metric, cheapest first."""

    FEED = 0  # the feed's status alone
    POOL = 1  # the book's running pool and position figures (every tick, O(1))
    LIQUIDATION = 2  # liquidation prices (solved on demand, kept while valid)
    CRASH = 3  # the crash distance (every position moved at once: the costliest)

    @property
    def label(self) -> str:
        return ("feed status", "running pool figures", "liquidation prices", "crash solve")[self]


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """What the rules need to know about an account's feed, at one moment."""

    stale_s: Decimal  # age of the oldest held mark; 0 with nothing held
    down_s: Decimal  # disconnected for this long; 0 when connected
    fatal: str | None


@dataclass(slots=True)  # not frozen: built for every evaluation, and frozen costs twice
class Figures:
    """What an extractor reads: the feed's status and, once the account's data is complete,
    the account in the book; for a position metric, which position."""

    feed: FeedStatus
    live: LiveAccount | None = None
    index: int = -1

    @property
    def account(self) -> LiveAccount:
        assert self.live is not None, "an account metric read without the account"
        return self.live

    @property
    def position(self) -> LivePosition:
        return self.account.positions[self.index]


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    scope: Scope
    unit: Unit
    risky: str  # "above" or "below": the direction in which it gets riskier
    description: str
    needs: Needs
    extract: Callable[[Figures], Decimal | None]
    # For a costly position metric: a cheap proof that its value cannot breach a rule (then
    # it need not be computed for a subject with no alert), of one position (``index``) or of
    # every position of the account (``index`` -1). ``False`` proves nothing.
    clear: Callable[[Figures, Rule], bool] | None = None


def _abs(value: Decimal | None) -> Decimal | None:
    return None if value is None else abs(value)


def _liquidation_clear(f: Figures, rule: Rule) -> bool:
    """Every distance (or this position's) provably above a "below" rule's threshold."""
    if rule.below is None:
        return False
    if f.index < 0:
        return f.account.liquidations_beyond(rule.below)
    return f.account.liquidation_beyond(f.index, rule.below)


A, P = Scope.ACCOUNT, Scope.POSITION
METRICS: tuple[Metric, ...] = (
    Metric(
        "worst_ratio",
        A,
        Unit.RATIO,
        "above",
        "highest margin ratio in the account: the cross pool's, or any isolated position's; "
        "1 = liquidation",
        Needs.POOL,
        lambda f: f.account.worst_ratio,
    ),
    Metric(
        "margin_ratio",
        A,
        Unit.RATIO,
        "above",
        "the cross pool's maintenance margin / margin balance; 1 = liquidation",
        Needs.POOL,
        lambda f: f.account.cross.ratio,
    ),
    Metric(
        "buffer",
        A,
        Unit.MONEY,
        "below",
        "cross margin balance minus maintenance margin",
        Needs.POOL,
        lambda f: f.account.cross.buffer,
    ),
    Metric(
        "crash_distance",
        A,
        Unit.FRACTION,
        "below",
        "the uniform relative move of all marks that liquidates something (0.15 = 15%); "
        "0 once something is at or past liquidation",
        Needs.CRASH,
        lambda f: _abs(f.account.crash_distance()),
    ),
    Metric(
        "effective_leverage",
        A,
        Unit.LEVERAGE,
        "above",
        "cross notional / cross margin balance",
        Needs.POOL,
        lambda f: f.account.effective_leverage,
    ),
    Metric(
        "margin_balance",
        A,
        Unit.MONEY,
        "below",
        "cross wallet balance + unrealized PnL",
        Needs.POOL,
        lambda f: f.account.cross.margin_balance,
    ),
    Metric(
        "maintenance_margin",
        A,
        Unit.MONEY,
        "above",
        "cross maintenance margin",
        Needs.POOL,
        lambda f: f.account.cross.mm,
    ),
    Metric(
        "feed_stale_s",
        A,
        Unit.SECONDS,
        "above",
        "seconds since the oldest held symbol's last mark price",
        Needs.FEED,
        lambda f: f.feed.stale_s,
    ),
    Metric(
        "feed_down_s",
        A,
        Unit.SECONDS,
        "above",
        "seconds the account's streams have been disconnected",
        Needs.FEED,
        lambda f: f.feed.down_s,
    ),
    Metric(
        "account_error",
        A,
        Unit.FLAG,
        "above",
        "1 when the account's feed stopped for good (bad key, banned IP, an account mode alertd "
        "refuses), else 0",
        Needs.FEED,
        lambda f: Decimal(1 if f.feed.fatal else 0),
    ),
    Metric(
        "margin_ratio",
        P,
        Unit.RATIO,
        "above",
        "the position's own ratio (isolated) or its pool's (cross); 1 = liquidation",
        Needs.POOL,
        lambda f: f.position.pool.ratio,
    ),
    Metric(
        "liquidation_distance",
        P,
        Unit.FRACTION,
        "below",
        "distance from mark to liquidation price, as a fraction of the mark; negative once "
        "past it; no value when no price liquidates it",
        Needs.LIQUIDATION,
        lambda f: f.account.liquidation_distance(f.index),
        _liquidation_clear,
    ),
    Metric(
        "effective_leverage",
        P,
        Unit.LEVERAGE,
        "above",
        "notional / the margin balance behind the position",
        Needs.POOL,
        lambda f: f.position.effective_leverage,
    ),
    Metric(
        "unrealized_pnl",
        P,
        Unit.MONEY,
        "below",
        "unrealized PnL",
        Needs.POOL,
        lambda f: f.position.upnl,
    ),
    Metric(
        "notional",
        P,
        Unit.MONEY,
        "above",
        "position value at the mark",
        Needs.POOL,
        lambda f: f.position.notional,
    ),
)
del A, P

ACCOUNT_METRICS: dict[str, Metric] = {m.name: m for m in METRICS if m.scope is Scope.ACCOUNT}
POSITION_METRICS: dict[str, Metric] = {m.name: m for m in METRICS if m.scope is Scope.POSITION}
_BY_SCOPE = {Scope.ACCOUNT: ACCOUNT_METRICS, Scope.POSITION: POSITION_METRICS}


def metric_scope(metric: str) -> Scope | None:
    """The scope a metric lives in when a rule does not say (account wins a tie)."""
    if metric in ACCOUNT_METRICS:
        return Scope.ACCOUNT
    if metric in POSITION_METRICS:
        return Scope.POSITION
    return None


def lookup(metric: str, scope: Scope | None = None) -> Metric | None:
    """The registry entry for ``metric`` in ``scope`` (default: the metric's own scope)."""
    scope = scope or metric_scope(metric)
    return None if scope is None else _BY_SCOPE[scope].get(metric)


def unit_of(metric: str) -> Unit | None:
    """A metric's unit (the same in both scopes where a name is in both)."""
    found = lookup(metric)
    return None if found is None else found.unit


def needs_of(rules: Iterable[Rule]) -> Needs:
    """The most any of ``rules`` needs computed."""
    found = [lookup(r.metric, r.scope) for r in rules]
    return max((m.needs for m in found if m is not None), default=Needs.FEED)


# --- observations ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=65_536)  # subjects are immutable: one per account and position
def _subject(
    account: str, exchange: str, symbol: str | None = None, side: str | None = None
) -> Subject:
    return Subject(account, exchange, symbol, side)


@functools.lru_cache(maxsize=64)  # one entry per rule set in use
def _selection(
    wanted: frozenset[str] | None,
) -> tuple[tuple[Metric, ...], tuple[Metric, ...]]:
    """The account and position metrics among ``wanted`` (all of them for ``None``)."""

    def pick(metrics: dict[str, Metric]) -> tuple[Metric, ...]:
        return tuple(m for m in metrics.values() if wanted is None or m.name in wanted)

    return pick(ACCOUNT_METRICS), pick(POSITION_METRICS)


Shortcuts = Sequence[tuple[Metric, Sequence[Rule]]]


def shortcuts(rules: Iterable[Rule]) -> Shortcuts:
    """The position metrics with a :attr:`Metric.clear` proof, each with the rules on it."""
    rules = list(rules)
    found = []
    for m in POSITION_METRICS.values():
        on = [r for r in rules if r.scope is Scope.POSITION and r.metric == m.name]
        if m.clear is not None and on:
            found.append((m, tuple(on)))
    return tuple(found)


def _cleared(figures: Figures, proofs: Shortcuts) -> set[str]:
    """The metrics among ``proofs`` that provably breach none of their rules."""
    found = set()
    for m, on in proofs:
        clear = m.clear
        if clear is not None and all(clear(figures, r) for r in on):
            found.add(m.name)
    return found


def observe(
    account: str,
    exchange: str,
    live: LiveAccount | None,
    feed: FeedStatus,
    wanted: Collection[str] | None = None,
    *,
    proofs: Shortcuts = (),
    alerted: Collection[str] = (),
) -> list[Observation]:
    """One observation for the account and one per position, with the ``wanted`` metrics
    (default: all). ``live`` is ``None`` while the account's data is incomplete: then only the
    feed's metrics are observed, and alerts on the others stay as they are.

    With ``proofs`` (from :func:`shortcuts`), a position metric that provably breaches none
    of its rules is left out for a subject with no alert state (``alerted``: the subject keys
    that have one), and a position left with no metric is not observed at all: for the rule
    engine that is the same as computing it (nothing to start, nothing to advance).

    The contexts hold the live account (``live``, and ``index`` for a position): a message
    that quotes full figures gets them from :func:`with_full_metrics`.
    """

    account_metrics, position_metrics = _selection(None if wanted is None else frozenset(wanted))
    subject = _subject(account, exchange)
    if live is None:
        idle = Figures(feed)
        values = {m.name: m.extract(idle) for m in account_metrics if m.needs is Needs.FEED}
        return [Observation(subject, values, Context(fatal=feed.fatal))]
    figures = Figures(feed, live)
    values = {m.name: m.extract(figures) for m in account_metrics}
    out = [Observation(subject, values, Context(fatal=feed.fatal, live=live))]
    if not position_metrics:
        return out  # no position rule: no position alert to advance or resolve
    everywhere = _cleared(figures, proofs) if proofs else set()
    if (
        everywhere
        and all(m.name in everywhere for m in position_metrics)
        and not any(k != account for k in alerted)
    ):
        return out  # nothing can breach, and no position alert to advance or resolve
    proofs = [(m, on) for m, on in proofs if m.name not in everywhere]
    for i, lp in enumerate(live.positions):
        figures = Figures(feed, live, i)
        p = lp.position
        subject = _subject(account, exchange, p.symbol, p.side.label)
        if subject.key in alerted or not (everywhere or proofs):
            values = {m.name: m.extract(figures) for m in position_metrics}
        else:
            spared = everywhere | _cleared(figures, proofs) if proofs else everywhere
            values = {m.name: m.extract(figures) for m in position_metrics if m.name not in spared}
            if not values:
                continue
        out.append(Observation(subject, values, Context(live=live, index=i)))
    return out


def with_full_metrics(
    notes: Sequence[Notification], target_ratio: Decimal | None = None, crash: bool = True
) -> list[Notification]:
    """``notes`` with the full figures a message quotes (``metrics``: liquidation prices,
    what to add or cut; ``position`` for a position's alert) in place of the live account.

    Call it right after the evaluation that produced ``notes``, while the book is at the same
    marks; the full computation runs once per account, and only when something is sent.
    """
    full: dict[int, AccountMetrics] = {}
    out = []
    for n in notes:
        live = n.context.live
        if live is None:
            out.append(n)
            continue
        if id(live) not in full:
            full[id(live)] = compute(live.current(), target_ratio, crash=crash)
        metrics = full[id(live)]
        index = n.context.index
        position = None if index is None else metrics.positions[index]
        context = replace(n.context, live=None, index=None, metrics=metrics, position=position)
        out.append(replace(n, context=context))
    return out


# --- docs/rules.md ---------------------------------------------------------------------------

DOC_BEGIN = (
    "<!-- metric tables: generated from alertd/rules/metrics.py "
    "(ALERTD_WRITE_DOCS=1 pytest tests/test_metric_registry.py); edit the registry -->"
)
DOC_END = "<!-- end of generated metric tables -->"


def metric_tables() -> str:
    """The metric tables of ``docs/rules.md``, from the registry."""
    lines: list[str] = []
    for scope, metrics in _BY_SCOPE.items():
        if lines:
            lines.append("")
        lines += [
            f"## {scope.value.capitalize()} metrics (`scope: {scope.value}`)",
            "",
            "| metric | meaning | unit | risky direction | computed from |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{m.name}` | {m.description} | {m.unit.value} | {m.risky} | {m.needs.label} |"
            for m in metrics.values()
        ]
    return "\n".join(lines)


def with_tables(doc: str) -> str:
    """``doc`` with the text between the markers replaced by :func:`metric_tables`."""
    head, begin, rest = doc.partition(DOC_BEGIN)
    _, end, tail = rest.partition(DOC_END)
    if not begin or not end:
        raise ValueError(f"the markers {DOC_BEGIN!r} and {DOC_END!r} are missing")
    return f"{head}{DOC_BEGIN}\n\n{metric_tables()}\n\n{DOC_END}{tail}"
