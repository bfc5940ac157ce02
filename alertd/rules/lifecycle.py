"""The alert lifecycle: inactive -> pending -> firing -> resolved, for each (rule, subject).

Pure: ``evaluate(observations, now)`` returns the notifications to send and updates the
alert states, which the caller persists (so a restart neither loses an alert nor repeats a
"firing" burst). Whether a notification goes out is decided here too:

- a silence that matches the alert's labels mutes it;
- quiet hours hold back info and warning, never critical;
- a firing critical alert inhibits lower severities on the same subject and metric;
- a firing alert that was held back for any of these is sent once nothing holds it;
- "resolved" is sent only for alerts whose "firing" was sent.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from alertd.rules.model import (
    NO_CONTEXT,
    Context,
    Observation,
    QuietHours,
    Rule,
    Scope,
    Severity,
    Silence,
    Subject,
)


class Phase(enum.Enum):
    PENDING = "pending"
    FIRING = "firing"


class Kind(enum.Enum):
    FIRING = "firing"
    REPEAT = "repeat"
    RESOLVED = "resolved"


class Resolution(enum.Enum):
    """Why an alert resolved."""

    CLEARED = "cleared"  # back on the safe side of its clear threshold
    NO_VALUE = "no value"  # the metric has no figure any more (no liquidation price, say)
    GONE = "no longer observed"  # its subject went away: a closed position
    REMOVED = "account removed from the config or disabled"  # seen at a start: not watched


@dataclass
class AlertState:
    rule: str
    subject: Subject
    phase: Phase
    since: float  # pending since, or firing since
    value: Decimal | None = None
    notified: bool = False  # the "firing" message went out
    last_notified_at: float | None = None
    clear_since: float | None = None  # cleared, waiting out keep_firing_for

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.subject.key)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "subject": {
                "account": self.subject.account,
                "exchange": self.subject.exchange,
                "symbol": self.subject.symbol,
                "side": self.subject.side,
            },
            "phase": self.phase.value,
            "since": self.since,
            "value": None if self.value is None else str(self.value),
            "notified": self.notified,
            "last_notified_at": self.last_notified_at,
            "clear_since": self.clear_since,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertState:
        s = data["subject"]
        return cls(
            rule=data["rule"],
            subject=Subject(s["account"], s["exchange"], s.get("symbol"), s.get("side")),
            phase=Phase(data["phase"]),
            since=float(data["since"]),
            value=None if data.get("value") is None else Decimal(data["value"]),
            notified=bool(data.get("notified")),
            last_notified_at=data.get("last_notified_at"),
            clear_since=data.get("clear_since"),
        )


@dataclass(frozen=True, slots=True)
class Notification:
    kind: Kind
    rule: Rule
    subject: Subject
    at: float
    since: float
    value: Decimal | None
    context: Context = NO_CONTEXT
    reason: Resolution | None = None  # for RESOLVED

    @property
    def severity(self) -> Severity:
        return self.rule.severity

    @property
    def labels(self) -> dict[str, str]:
        return alert_labels(self.rule, self.subject)

    @property
    def alert_key(self) -> str:
        return alert_key(self.rule.name, self.subject.key)


def alert_key(rule: str, subject_key: str) -> str:
    """One alert (a rule on a subject) as one string: what an acknowledgement names."""
    return f"{rule}|{subject_key}"


def alert_labels(rule: Rule, subject: Subject) -> dict[str, str]:
    return {
        **dict(rule.labels),
        **subject.labels,
        "alertname": rule.name,
        "severity": rule.severity.label,
        "metric": rule.metric,
    }


class AlertEngine:
    """The alert states of every (rule, subject), and how observations move them.

    The states are indexed by account and by subject, so an evaluation touches only the
    states of the accounts it evaluates, and :attr:`changed` says which accounts' saved
    states (everything but the moving value) it changed: what the caller commits.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        states: Iterable[AlertState] = (),
        silences: Iterable[Silence] = (),
        quiet_hours: QuietHours | None = None,
    ) -> None:
        self.rules: dict[str, Rule] = {}
        self.states: dict[tuple[str, str], AlertState] = {}
        # account -> its states' keys, in the order of ``states`` (insertion order)
        self._by_account: dict[str, dict[tuple[str, str], AlertState]] = {}
        # subject key -> rule name -> state: what inhibition looks up
        self._by_subject: dict[str, dict[str, AlertState]] = {}
        # account -> subject key with a state -> the metrics its rules with a state read
        # (each rule's own and its ``also`` conditions'), kept as states come and go: what an
        # evaluation reads (:meth:`alerted_metrics`; rebuilt at every evaluation, it was 2.5%
        # of a firing tick's samples at 1,000 accounts)
        self._alerted: dict[str, dict[str, set[str]]] = {}
        self._seq: dict[tuple[str, str], int] = {}  # insertion order, across accounts
        self._next_seq = 0
        self.changed: set[str] = set()  # accounts whose saved states the last evaluation changed
        for state in states:
            self._add(state)
        self.silences: list[Silence] = list(silences)
        self.quiet_hours = quiet_hours
        self.set_rules(rules)

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """New rules (a config reload): alerts of rules that still exist keep their state."""
        # critical first: a gap straight past both thresholds notifies only the critical
        ordered = sorted(rules, key=lambda r: -r.severity)
        self.rules = {r.name: r for r in ordered}
        # an observation is stepped by its own scope's rules only, in the same order, each
        # with the series it reads (its own, its ``also`` ones') and whether it applies to
        # every subject of its scope: read once here, not per rule and observation (a firing
        # daemon steps every rule on every observation, 22 per account at 1,000 accounts)
        self._scoped = {
            s: [
                (
                    r,
                    r.series,
                    tuple(c.series for c in r.also),
                    r.accounts is None and r.exchanges is None and r.symbols is None,
                )
                for r in ordered
                if r.scope is s
            ]
            for s in Scope
        }
        for state in [s for s in self.states.values() if s.rule not in self.rules]:
            self._drop(state)
        # a rule kept by name may read other metrics now
        for subjects in self._alerted.values():
            for key in subjects:
                subjects[key] = self._read_by(self._by_subject[key].values())

    # --- the index ------------------------------------------------------------------------

    def _add(self, state: AlertState) -> None:
        key = state.key
        if key in self.states:
            self._drop(self.states[key])
        self.states[key] = state
        self._by_account.setdefault(state.subject.account, {})[key] = state
        self._by_subject.setdefault(state.subject.key, {})[state.rule] = state
        read = self._alerted.setdefault(state.subject.account, {})
        read.setdefault(state.subject.key, set()).update(self._read_by((state,)))
        self._seq[key] = self._next_seq
        self._next_seq += 1

    def _drop(self, state: AlertState) -> None:
        key = state.key
        del self.states[key]
        del self._seq[key]
        account = state.subject.account
        mine = self._by_account[account]
        del mine[key]
        if not mine:
            del self._by_account[account]
        subject = self._by_subject[state.subject.key]
        del subject[state.rule]
        read = self._alerted[account]
        if subject:  # the others' metrics (two rules on this subject can read one metric)
            read[state.subject.key] = self._read_by(subject.values())
        else:
            del self._by_subject[state.subject.key]
            del read[state.subject.key]
            if not read:
                del self._alerted[account]

    def _read_by(self, states: Iterable[AlertState]) -> set[str]:
        """The metrics the rules of ``states`` read (a rule no longer configured: none)."""
        read: set[str] = set()
        for state in states:
            rule = self.rules.get(state.rule)
            if rule is not None:
                read.update(c.metric for c in rule.conditions)
        return read

    def states_of(self, account: str) -> list[AlertState]:
        """The alert states of ``account``, oldest first."""
        return list(self._by_account.get(account, {}).values())

    @property
    def alerted_accounts(self) -> Collection[str]:
        """The accounts with an alert state."""
        return self._by_account.keys()

    def alerted_metrics(self, account: str) -> Mapping[str, AbstractSet[str]]:
        """Per subject of ``account`` with an alert state (its key): the metrics that its
        rules with a state read (each rule's own and its ``also`` conditions'). The engine's
        own index, not a copy: it changes with the next evaluation."""
        return self._alerted.get(account, {})

    def _in_scope(self, scope: Collection[str]) -> list[AlertState]:
        """The states of the accounts in ``scope``, in insertion order (as ``states``)."""
        found = [s for a in scope for s in self._by_account.get(a, {}).values()]
        if len(scope) > 1:
            found.sort(key=lambda s: self._seq[s.key])
        return found

    # --- evaluation -----------------------------------------------------------------------

    def evaluate(
        self,
        observations: Sequence[Observation],
        now: float,
        accounts: Iterable[str] | None = None,
        positions_known: bool = True,
    ) -> list[Notification]:
        """Advance every alert of ``accounts`` (default: those observed) to ``now``.

        A subject of those accounts that is no longer observed (a closed position) resolves,
        unless ``positions_known`` is false (the account's positions are not known now: its
        feed stopped or has no figures, and no exchange's list of them stands in): not seeing
        a position is not seeing it closed.
        An observation without a rule's metric leaves that rule's alert on it as it is; a
        subject with no alert state may be left out when none of its values breaches a rule.
        """
        scope = set(accounts) if accounts is not None else {o.subject.account for o in observations}
        self.changed = set()
        observed = {o.subject.key for o in observations}
        out: list[Notification] = []
        self._observe(observations, now, out)
        for state in self._in_scope(scope):
            if state.subject.key in observed:
                continue
            if not positions_known and state.subject.symbol is not None:
                continue
            rule = self.rules[state.rule]
            gone = Observation(state.subject, {})
            self._resolve(rule, state, gone, now, out, Resolution.GONE)
        self._release_held(now, out, scope, observations)
        return out

    def resolve_removed(self, configured: Collection[str], now: float) -> list[Notification]:
        """End the alerts of the accounts not in ``configured`` (removed from the config: seen
        at a start, nothing will evaluate them again), each with
        :attr:`Resolution.REMOVED`; a firing one that notified tells its end."""
        out: list[Notification] = []
        for account in [a for a in self._by_account if a not in configured]:
            for state in list(self._by_account[account].values()):
                gone = Observation(state.subject, {})
                self._resolve(self.rules[state.rule], state, gone, now, out, Resolution.REMOVED)
        return out

    def _observe(
        self, observations: Sequence[Observation], now: float, out: list[Notification]
    ) -> None:
        """Step every rule on every observation that carries the rule's metric."""
        for obs in observations:
            subject, metrics = obs.subject, obs.metrics
            for rule, series, also, everywhere in self._scoped[subject.scope]:
                # a metric missing from an observation (an account whose data is incomplete)
                # leaves its alerts as they are: no data is not "all clear"
                # (Rule.observed_in and Rule.applies_to, with what they read read once)
                if series not in metrics or (also and not all(a in metrics for a in also)):
                    continue
                if everywhere or rule.applies_to(subject):
                    self._step(rule, obs, metrics[series], now, out)

    def idle(self, observations: Sequence[Observation]) -> bool:
        """True when :meth:`evaluate` would do nothing: no alert of these accounts exists and
        no observed value breaches a rule. Lets a caller skip most evaluations cheaply."""
        if any(o.subject.account in self._by_account for o in observations):
            return False
        for obs in observations:
            metrics = obs.metrics
            for rule in self.rules.values():
                value = metrics.get(rule.series)
                if (
                    value is not None
                    and rule.breached(value)
                    and (not rule.also or rule.holds(value, metrics))
                    and rule.applies_to(obs.subject)
                ):
                    return False
        return True

    def _step(
        self,
        rule: Rule,
        obs: Observation,
        value: Decimal | None,
        now: float,
        out: list[Notification],
    ) -> None:
        key = (rule.name, obs.subject.key)
        state = self.states.get(key)
        if value is None:
            # no figure (a long with no liquidation price, say): nothing to alert on
            if state is not None:
                self._resolve(rule, state, obs, now, out, Resolution.NO_VALUE)
            return
        if state is None:
            if not rule.holds(value, obs.metrics):
                return
            state = AlertState(rule.name, obs.subject, Phase.PENDING, now, value)
            self._add(state)
            self.changed.add(state.subject.account)
        state.value = value
        if state.phase is Phase.PENDING:
            if not rule.holds(value, obs.metrics):
                self._drop(state)
                self.changed.add(state.subject.account)
            elif now - state.since >= rule.for_s:
                state.phase = Phase.FIRING
                state.since = now
                self.changed.add(state.subject.account)
                self._send(rule, state, obs, now, out, Kind.FIRING)
            return
        # firing
        if rule.released(value, obs.metrics):
            if state.clear_since is None:
                state.clear_since = now
                self.changed.add(state.subject.account)
            if now - state.clear_since >= rule.keep_firing_for_s:
                self._resolve(rule, state, obs, now, out, Resolution.CLEARED)
            return
        if state.clear_since is not None:
            state.clear_since = None
            self.changed.add(state.subject.account)
        if not state.notified:
            self._send(rule, state, obs, now, out, Kind.FIRING)
        elif (
            rule.repeat_every_s > 0
            and state.last_notified_at is not None
            and now - state.last_notified_at >= rule.repeat_every_s
        ):
            self._send(rule, state, obs, now, out, Kind.REPEAT)

    def _resolve(
        self,
        rule: Rule,
        state: AlertState,
        obs: Observation,
        now: float,
        out: list[Notification],
        reason: Resolution,
    ) -> None:
        self._drop(state)
        self.changed.add(state.subject.account)
        if state.phase is Phase.FIRING and state.notified:
            s = state
            out.append(
                Notification(
                    Kind.RESOLVED, rule, s.subject, now, s.since, s.value, obs.context, reason
                )
            )

    def _send(
        self,
        rule: Rule,
        state: AlertState,
        obs: Observation,
        now: float,
        out: list[Notification],
        kind: Kind,
    ) -> None:
        if self.held(rule, state.subject, now):
            return  # stays un-notified; sent once nothing holds it
        state.notified = True
        state.last_notified_at = now
        self.changed.add(state.subject.account)
        out.append(
            Notification(kind, rule, state.subject, now, state.since, state.value, obs.context)
        )

    def _release_held(
        self,
        now: float,
        out: list[Notification],
        scope: set[str],
        observations: Sequence[Observation],
    ) -> None:
        """Held-back firing alerts go out once no silence, quiet hour or critical holds them."""
        waiting = [s for s in self._in_scope(scope) if s.phase is Phase.FIRING and not s.notified]
        if not waiting:
            return
        contexts = {o.subject.key: o.context for o in observations}
        sent = {(n.rule.name, n.subject.key) for n in out}
        for state in waiting:
            if state.key in sent:
                continue
            rule = self.rules[state.rule]
            obs = Observation(state.subject, {}, contexts.get(state.subject.key, NO_CONTEXT))
            self._send(rule, state, obs, now, out, Kind.FIRING)

    # --- what holds a notification back --------------------------------------------------

    def held(self, rule: Rule, subject: Subject, now: float) -> bool:
        return (
            self.silenced(rule, subject, now)
            or self.quiet(rule.severity, now)
            or self.inhibited(rule, subject)
        )

    def silenced(self, rule: Rule, subject: Subject, now: float) -> bool:
        return self.muted(alert_labels(rule, subject), now)

    def muted(self, labels: Mapping[str, str], now: float) -> bool:
        """An active silence matches ``labels`` (an alert's, or a system message's)."""
        return any(s.active(now) and s.matches(labels) for s in self.silences)

    def quiet(self, severity: Severity, now: float) -> bool:
        return (
            severity < Severity.CRITICAL
            and self.quiet_hours is not None
            and self.quiet_hours.active(now)
        )

    def inhibited(self, rule: Rule, subject: Subject) -> bool:
        if rule.severity >= Severity.CRITICAL:
            return False
        for state in self._by_subject.get(subject.key, {}).values():
            other = self.rules.get(state.rule)
            if (
                other is not None
                and state.phase is Phase.FIRING
                and other.severity > rule.severity
                and other.metric == rule.metric
                and state.subject == subject
            ):
                return True
        return False

    def firing(self) -> list[AlertState]:
        return [s for s in self.states.values() if s.phase is Phase.FIRING]
