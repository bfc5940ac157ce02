"""The alert lifecycle, with an explicit clock: every transition, hold and release."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from alertd.rules.lifecycle import AlertEngine, AlertState, Phase, Resolution
from alertd.rules.model import (
    Condition,
    Observation,
    QuietHours,
    Rule,
    Scope,
    Severity,
    Silence,
    Subject,
)

from .support.rules import BTC_LONG, MAIN, RATIO_WARNING, D, rule

WARN = replace(RATIO_WARNING, repeat_s=600)
CRIT = rule(
    "worst_ratio", severity=Severity.CRITICAL, name="ratio-critical", above=D("0.8"), repeat_s=300
)
DIST = rule(
    "liquidation_distance", Scope.POSITION, Severity.CRITICAL, "liq-distance", below=D("0.03")
)


def obs(value: str | None, subject: Subject = MAIN, metric: str = "worst_ratio") -> Observation:
    return Observation(subject, {metric: None if value is None else D(value)})


def kinds(notes: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(n.kind.value, n.rule.name) for n in notes]


def test_fires_repeats_and_resolves_with_hysteresis() -> None:
    engine = AlertEngine([WARN])
    assert engine.evaluate([obs("0.3")], 0) == []
    assert kinds(engine.evaluate([obs("0.55")], 10)) == [("firing", "ratio-warning")]
    assert engine.evaluate([obs("0.6")], 20) == []  # no repeat yet
    assert engine.evaluate([obs("0.48")], 30) == []  # in the hysteresis band: still firing
    assert engine.firing()[0].value == D("0.48")
    assert kinds(engine.evaluate([obs("0.52")], 610)) == [("repeat", "ratio-warning")]
    notes = engine.evaluate([obs("0.44")], 620)
    assert kinds(notes) == [("resolved", "ratio-warning")]
    assert notes[0].since == 10
    assert engine.states == {}


def test_for_debounces_and_a_blip_never_fires() -> None:
    rule = Rule(
        "r", Condition("worst_ratio", Scope.ACCOUNT, above=D("0.5")), Severity.WARNING, for_s=60
    )
    engine = AlertEngine([rule])
    assert engine.evaluate([obs("0.6")], 0) == []
    assert engine.states[("r", "main")].phase is Phase.PENDING
    assert engine.evaluate([obs("0.4")], 30) == []  # back below before 60 s: forgotten
    assert engine.states == {}
    engine.evaluate([obs("0.6")], 100)
    assert engine.evaluate([obs("0.7")], 159) == []
    assert kinds(engine.evaluate([obs("0.7")], 160)) == [("firing", "r")]


def test_keep_firing_for_needs_the_clear_to_last() -> None:
    held = rule("worst_ratio", name="r", above=D("0.5"), keep_firing_for_s=30)
    engine = AlertEngine([held])
    engine.evaluate([obs("0.6")], 0)
    assert engine.evaluate([obs("0.4")], 10) == []
    assert engine.evaluate([obs("0.6")], 20) == []  # breached again: the clear timer resets
    assert engine.evaluate([obs("0.4")], 30) == []
    assert engine.evaluate([obs("0.4")], 59) == []
    assert kinds(engine.evaluate([obs("0.4")], 60)) == [("resolved", "r")]


def test_escalation_and_inhibition() -> None:
    engine = AlertEngine([WARN, CRIT])
    assert kinds(engine.evaluate([obs("0.6")], 0)) == [("firing", "ratio-warning")]
    assert kinds(engine.evaluate([obs("0.85")], 10)) == [("firing", "ratio-critical")]
    # the critical inhibits the warning's repeats
    assert kinds(engine.evaluate([obs("0.9")], 700)) == [("repeat", "ratio-critical")]
    # back to warning level: the critical resolves and the overdue warning repeat goes out with
    # it, so "resolved" never reads as "all clear" while the warning still holds
    assert kinds(engine.evaluate([obs("0.7")], 710)) == [
        ("resolved", "ratio-critical"),
        ("repeat", "ratio-warning"),
    ]
    assert engine.evaluate([obs("0.7")], 720) == []


def test_a_gap_past_both_thresholds_notifies_the_critical_only() -> None:
    engine = AlertEngine([WARN, CRIT])
    assert kinds(engine.evaluate([obs("0.95")], 0)) == [("firing", "ratio-critical")]
    # the warning fires but is held; when the critical clears it is sent
    assert kinds(engine.evaluate([obs("0.6")], 10)) == [
        ("resolved", "ratio-critical"),
        ("firing", "ratio-warning"),
    ]
    assert kinds(engine.evaluate([obs("0.2")], 20)) == [("resolved", "ratio-warning")]


def test_silence_mutes_and_its_expiry_releases() -> None:
    silence = Silence("s1", {"account": "main", "severity": "warning"}, ends_at=100, created_at=0)
    engine = AlertEngine([WARN, CRIT], silences=[silence])
    assert engine.evaluate([obs("0.6")], 10) == []
    assert engine.firing()[0].notified is False
    assert kinds(engine.evaluate([obs("0.9")], 20)) == [("firing", "ratio-critical")]
    engine.evaluate([obs("0.6")], 30)  # critical resolves; warning still silenced
    assert kinds(engine.evaluate([obs("0.6")], 100)) == [("firing", "ratio-warning")]


def test_a_silenced_alert_that_clears_sends_nothing() -> None:
    silence = Silence("s1", {"alertname": "ratio-warning"}, ends_at=1000)
    engine = AlertEngine([WARN], silences=[silence])
    engine.evaluate([obs("0.6")], 10)
    assert engine.evaluate([obs("0.1")], 20) == []


def test_quiet_hours_hold_warnings_never_criticals() -> None:
    quiet = QuietHours(dt.time(23, 0), dt.time(7, 0), "UTC")
    night = dt.datetime(2026, 11, 24, 23, 30, tzinfo=dt.UTC).timestamp()
    morning = dt.datetime(2026, 11, 25, 7, 0, tzinfo=dt.UTC).timestamp()
    assert quiet.active(night) and not quiet.active(morning)
    engine = AlertEngine([WARN, CRIT], quiet_hours=quiet)
    assert engine.evaluate([obs("0.6")], night) == []
    assert kinds(engine.evaluate([obs("0.9")], night + 60)) == [("firing", "ratio-critical")]
    engine.evaluate([obs("0.6")], night + 120)  # critical resolves at night: sent
    assert kinds(engine.evaluate([obs("0.6")], morning)) == [("firing", "ratio-warning")]


def test_a_closed_position_resolves_its_alerts() -> None:
    engine = AlertEngine([DIST])
    notes = engine.evaluate([obs("0.02", BTC_LONG, "liquidation_distance")], 0)
    assert kinds(notes) == [("firing", "liq-distance")]
    # the account is observed again without that position
    notes = engine.evaluate([obs("0.1")], 10, accounts=["main"])
    assert kinds(notes) == [("resolved", "liq-distance")]
    assert notes[0].reason is Resolution.GONE
    assert notes[0].reason.value == "no longer observed"


def test_a_position_unseen_while_the_positions_are_unknown_stays_as_it_is() -> None:
    """An account whose feed stopped (or that has no figures and no exchange's list of its
    positions) is observed without its positions: that is not seeing them closed. Its
    position alerts stay firing, not "resolved (no longer observed)"; once its positions
    are known again, one missing from them is closed."""
    engine = AlertEngine([DIST])
    assert kinds(engine.evaluate([obs("0.02", BTC_LONG, "liquidation_distance")], 0)) == [
        ("firing", "liq-distance")
    ]
    assert engine.evaluate([obs("0.1")], 10, accounts=["main"], positions_known=False) == []
    assert engine.states[("liq-distance", BTC_LONG.key)].phase is Phase.FIRING
    notes = engine.evaluate([obs("0.1")], 20, accounts=["main"])
    assert kinds(notes) == [("resolved", "liq-distance")]
    assert notes[0].reason is Resolution.GONE


def test_other_accounts_are_left_alone() -> None:
    other = Subject("other", "bybit")
    engine = AlertEngine([WARN])
    engine.evaluate([obs("0.6"), obs("0.7", other)], 0)
    assert engine.evaluate([obs("0.6")], 10) == []  # only "main" observed: "other" untouched
    assert len(engine.firing()) == 2


def test_no_value_means_nothing_to_alert_on() -> None:
    engine = AlertEngine([DIST])
    engine.evaluate([obs("0.02", BTC_LONG, "liquidation_distance")], 0)
    notes = engine.evaluate([obs(None, BTC_LONG, "liquidation_distance")], 10)
    assert kinds(notes) == [("resolved", "liq-distance")]


def test_infinity_counts_as_above() -> None:
    engine = AlertEngine([CRIT])
    assert kinds(engine.evaluate([obs("Infinity")], 0)) == [("firing", "ratio-critical")]


def test_states_survive_a_restart_without_a_second_firing() -> None:
    engine = AlertEngine([WARN])
    engine.evaluate([obs("0.6")], 0)
    saved = [AlertState.from_json(s.to_json()) for s in engine.states.values()]
    again = AlertEngine([WARN], states=saved)
    assert again.evaluate([obs("0.6")], 10) == []
    assert kinds(again.evaluate([obs("0.6")], 600)) == [("repeat", "ratio-warning")]


def test_reload_keeps_states_of_rules_that_remain() -> None:
    engine = AlertEngine([WARN, CRIT])
    engine.evaluate([obs("0.9")], 0)
    engine.set_rules([CRIT])
    assert [s.rule for s in engine.firing()] == ["ratio-critical"]
    assert engine.evaluate([obs("0.9")], 10) == []


def test_filters_pick_subjects() -> None:
    btc_only = rule(
        "liquidation_distance",
        Scope.POSITION,
        name="btc-only",
        below=D("0.1"),
        symbols=frozenset({"BTC/USDT:USDT"}),
        accounts=frozenset({"main"}),
    )
    eth = Subject("main", "binanceusdm", "ETH/USDT:USDT", "short")
    engine = AlertEngine([btc_only])
    notes = engine.evaluate(
        [obs("0.05", BTC_LONG, "liquidation_distance"), obs("0.05", eth, "liquidation_distance")], 0
    )
    assert [n.subject for n in notes] == [BTC_LONG]


def test_silences_match_the_labels_of_a_system_message() -> None:
    # an exchange push is no rule: the engine only says whether a silence mutes its labels
    # (tests/test_system_messages.py follows one through the outbox)
    engine = AlertEngine([], silences=[Silence("s", {"account": "main"}, ends_at=50)])
    labels = {"alertname": "margin-call", "severity": "critical", **MAIN.labels}
    assert engine.muted(labels, 10)
    assert not engine.muted(labels, 60)


def test_a_rule_needs_one_threshold() -> None:
    with pytest.raises(ValueError):
        Condition("worst_ratio", Scope.ACCOUNT)


def test_missing_data_is_not_all_clear() -> None:
    engine = AlertEngine([WARN])
    engine.evaluate([obs("0.6")], 0)
    # the account is observed, but without a ratio (its data is incomplete): stays firing
    assert engine.evaluate([Observation(MAIN, {"feed_stale_s": D(40)})], 10) == []
    assert len(engine.firing()) == 1


def test_changed_names_the_accounts_whose_saved_states_moved() -> None:
    """What the daemon commits: every change but the moving value, and only those."""
    held = replace(RATIO_WARNING, name="r", keep_firing_for_s=30, repeat_s=100)
    engine = AlertEngine([held])
    steps = [
        ("0.3", 0, False),  # nothing
        ("0.6", 1, True),  # fires
        ("0.7", 2, False),  # the value moves: not saved
        ("0.4", 3, True),  # cleared: the keep-firing timer starts
        ("0.41", 4, False),  # still cleared, timer running
        ("0.48", 5, True),  # back in the band: the timer is reset
        ("0.6", 105, True),  # repeat: last_notified_at
        ("0.4", 106, True),
        ("0.4", 136, True),  # resolved
    ]
    for value, at, changed in steps:
        engine.evaluate([obs(value)], at)
        assert engine.changed == ({"main"} if changed else set()), (value, at)
    assert engine.states == {}
    assert engine.states_of("main") == [] and set(engine.alerted_metrics("main")) == set()


def test_states_are_found_by_account_and_subject() -> None:
    engine = AlertEngine([WARN, DIST])
    eth = Subject("main", "binanceusdm", "ETH/USDT:USDT", "short")
    engine.evaluate(
        [obs("0.6"), obs("0.01", BTC_LONG, "liquidation_distance"), obs("0.9", Subject("b", "x"))],
        0,
    )
    assert set(engine.alerted_metrics("main")) == {"main", BTC_LONG.key}
    assert set(engine.alerted_metrics("b")) == {"b"}
    assert [s.rule for s in engine.states_of("main")] == ["ratio-warning", "liq-distance"]
    # the position closed: its alert resolves, the account's stays
    notes = engine.evaluate([obs("0.6"), obs("0.2", eth, "liquidation_distance")], 1, ["main"])
    assert kinds(notes) == [("resolved", "liq-distance")]
    assert set(engine.alerted_metrics("main")) == {"main"}
    assert set(engine.alerted_metrics("b")) == {"b"}


def test_the_ratio_to_reach_is_never_zero() -> None:
    """A rule firing above 0 (legal in the config) once made every message divide by 0."""
    from alertd.daemon.evaluation import ratio_target

    def above(level: str, clear: str | None = None) -> Rule:
        return rule(
            "worst_ratio", name="r", above=D(level), clear_below=None if clear is None else D(clear)
        )

    assert ratio_target([above("0")]) == D("0.5")
    assert ratio_target([above("0.6", "-0.1"), above("0.8", "0.7")]) == D("0.7")
    assert ratio_target([above("0.6", "0.55"), WARN]) == D("0.45")


def rebuilt_alerted_metrics(engine: AlertEngine, account: str) -> dict[str, set[str]]:
    """Per subject of ``account`` with an alert state, the metrics its rules with a state read,
    rebuilt from every state (what ``alerted_metrics`` computed at each evaluation)."""
    out: dict[str, set[str]] = {}
    for state in engine.states.values():
        if state.subject.account != account:
            continue
        metrics = out.setdefault(state.subject.key, set())
        found = engine.rules.get(state.rule)
        if found is not None:
            metrics.update(c.metric for c in found.conditions)
    return out


# a pool of rules: two on one account metric, two on one position metric, one reading two
# (its ``while``), a pending one (``for``), and a second version of a rule under the same name
# reading other metrics (a config reload that changed it)
_LIQ = Condition("liquidation_distance", Scope.POSITION, below=D("0.1"))
_LEVERAGE = Condition("leverage", Scope.POSITION, above=D("10"))
_RULES = {
    "warn": WARN,
    "crit": CRIT,
    "dist": DIST,
    "adl": rule("adl_rank", Scope.POSITION, name="adl", above=D("0.5"), also=(_LIQ,)),
    "adl-2": rule("adl_rank", Scope.POSITION, name="adl", above=D("0.5"), also=(_LEVERAGE,)),
    "lev": rule("leverage", Scope.POSITION, name="lev", above=D("10"), for_s=5),
}
_SUBJECTS = (
    MAIN,
    BTC_LONG,
    Subject("main", "binanceusdm", "ETH/USDT:USDT", "short"),
    Subject("b", "binanceusdm"),
    Subject("b", "binanceusdm", "BTC/USDT:USDT", "long"),
)
# each past some rules' thresholds and short of others' (0.01: the distances; 0.6: the
# warning ratio and the ADL rank; 20: everything above), or no figure
_VALUES = st.sampled_from([None, "0.01", "0.6", "20"])
_METRICS = {
    Scope.ACCOUNT: ("worst_ratio",),
    Scope.POSITION: ("liquidation_distance", "adl_rank", "leverage"),
}


# built once, not at each draw (hypothesis validates a new strategy object at its first draw)
_SUBJECT_LISTS = st.lists(st.sampled_from(_SUBJECTS), unique=True)
_METRIC_DICTS = {
    scope: st.dictionaries(st.sampled_from(names), _VALUES) for scope, names in _METRICS.items()
}
_ACCOUNT_LISTS = st.sampled_from([None, ["main"], ["b"], ["main", "b"]])


@st.composite
def _evaluation(draw: st.DrawFn) -> tuple[str, Any]:
    observations = []
    for subject in draw(_SUBJECT_LISTS):
        metrics = draw(_METRIC_DICTS[subject.scope])
        values = {k: None if v is None else D(v) for k, v in metrics.items()}
        observations.append(Observation(subject, values))
    accounts = draw(_ACCOUNT_LISTS)
    return "evaluate", (observations, draw(st.integers(0, 10)), accounts, draw(st.booleans()))


_STEPS = st.one_of(
    _evaluation(),
    st.tuples(st.just("rules"), st.lists(st.sampled_from(sorted(_RULES)), unique=True)),
    st.tuples(st.just("restore"), st.none()),
)


def _observed(metrics: dict[str, str], subject: Subject = BTC_LONG) -> Observation:
    return Observation(subject, {k: D(v) for k, v in metrics.items()})


@settings(max_examples=300, deadline=None)
@given(st.lists(_STEPS, max_size=25))
# two rules with a state on one position, one of them resolved: the other's metrics stay
@example(
    [
        (
            "evaluate",
            ([_observed({"liquidation_distance": "0.01", "adl_rank": "0.6"})], 1, None, True),
        ),
        (
            "evaluate",
            ([_observed({"liquidation_distance": "0.01", "adl_rank": "0.01"})], 1, None, True),
        ),
    ]
)
def test_alerted_metrics_kept_with_the_states_are_the_rebuilt_ones(steps: list[Any]) -> None:
    """The metrics each subject's rules with a state read, kept as states are created and
    removed (fired, debounced away, resolved, closed, a rule dropped or changed by a reload, a
    restart from the saved states), are at every step those rebuilt from the states."""
    rules = [_RULES["warn"], _RULES["dist"], _RULES["adl"], _RULES["lev"]]
    engine = AlertEngine(rules)
    now = 0.0
    for kind, arg in steps:
        if kind == "evaluate":
            observations, elapsed, accounts, known = arg
            now += elapsed
            engine.evaluate(observations, now, accounts, positions_known=known)
        elif kind == "rules":
            # one version of a rule per name: the later one of the pool ("adl-2") wins
            rules = list({_RULES[k].name: _RULES[k] for k in arg}.values())
            engine.set_rules(rules)
        else:
            saved = [AlertState.from_json(s.to_json()) for s in engine.states.values()]
            engine = AlertEngine(rules, states=saved)
        for account in ("main", "b"):
            kept = {k: set(v) for k, v in engine.alerted_metrics(account).items()}
            assert kept == rebuilt_alerted_metrics(engine, account), (kind, account)


def test_only_a_restricted_rule_is_asked_whether_it_applies_and_both_are_stepped() -> None:
    """The rule engine steps every rule on every observation (22 per account at 1,000
    accounts firing, firing14): whether a rule applies is asked only of one restricted to
    some accounts, exchanges or symbols; one for every subject of its scope applies without
    asking. Both step as before: the one for another account does not fire here, and a rule
    whose ``also`` series is missing from the observation leaves its alert as it is."""
    asked: list[str] = []

    @dataclass(frozen=True)
    class Asked(Rule):
        def applies_to(self, subject: Subject) -> bool:
            asked.append(self.name)
            return Rule.applies_to(self, subject)

    def warning(name: str, **options: Any) -> Rule:
        return Asked(name, Condition("worst_ratio", Scope.ACCOUNT, above=D("0.5")), **options)

    also = (Condition("margin_ratio", Scope.ACCOUNT, above=D("0.5")),)
    rules = [
        warning("everywhere", severity=Severity.WARNING),
        warning("elsewhere", severity=Severity.WARNING, accounts=frozenset({"other"})),
        warning("mine", severity=Severity.WARNING, accounts=frozenset({"main"})),
        warning("both", severity=Severity.WARNING, also=also),
    ]
    engine = AlertEngine(rules)
    notes = engine.evaluate([obs("0.6")], 0.0)
    assert kinds(notes) == [("firing", "everywhere"), ("firing", "mine")]
    assert sorted(asked) == ["elsewhere", "mine"]
    both = Observation(MAIN, {"worst_ratio": D("0.6"), "margin_ratio": D("0.6")})
    assert kinds(engine.evaluate([both], 1.0)) == [("firing", "both")]
