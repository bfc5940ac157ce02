"""Rules of several conditions (`while:`): a rule fires only while its own metric and every
condition are past their thresholds, and resolves when any of them clears. Checked by
`alertd check`, evaluated by the one rule engine the daemon and replay share."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

from alertd.config import RuleConfig
from alertd.daemon.evaluation import _rule
from alertd.engine.dynamics import MarkWindow
from alertd.engine.model import MarginMode
from alertd.replay.history import load_history
from alertd.replay.sweep import before_the_move, calm_day_entries, replay_entry
from alertd.rules.lifecycle import AlertEngine, Kind, Notification
from alertd.rules.messages import render
from alertd.rules.metrics import (
    dynamics_reach,
    dynamics_span_s,
    needs_of,
    shortcuts,
    wanted_of,
)
from alertd.rules.model import Condition, Observation, Rule, Scope, Severity

from .support.process import ROOT, alertd
from .support.rules import BTC_LONG

D = Decimal
TTL = "time_to_liquidation[window=900.0s]"
PROBABILITY = "liquidation_probability[horizon=3600.0s,window=3600.0s]"


def soon_and_near(**options: object) -> Rule:
    """Liquidation within an hour at the last 15 minutes' pace, while under 6% away."""
    return Rule(
        "soon-and-near",
        Condition(
            "time_to_liquidation",
            Scope.POSITION,
            below=D(3600),
            clear_above=D(7200),
            window_s=900.0,
        ),
        Severity.WARNING,
        also=(
            Condition(
                "liquidation_distance", Scope.POSITION, below=D("0.06"), clear_above=D("0.07")
            ),
        ),
        **options,  # type: ignore[arg-type]
    )


def step(engine: AlertEngine, at: float, ttl: str | None, distance: str | None) -> list[Kind]:
    values = {
        TTL: None if ttl is None else D(ttl),
        "liquidation_distance": None if distance is None else D(distance),
    }
    return [n.kind for n in engine.evaluate([Observation(BTC_LONG, values)], at)]


def test_it_fires_only_while_every_condition_holds() -> None:
    engine = AlertEngine([soon_and_near()])
    assert step(engine, 0, "1800", "0.08") == []  # fast, but far: nothing
    assert step(engine, 1, "9000", "0.05") == []  # near, but slow: nothing
    assert step(engine, 2, None, "0.05") == []  # near, moving away (no time): nothing
    assert not engine.states
    assert step(engine, 3, "1800", "0.05") == [Kind.FIRING]  # both at once
    assert step(engine, 4, "5000", "0.065") == []  # both in their hysteresis bands: firing
    assert step(engine, 5, "1800", "0.07") == [Kind.RESOLVED]  # the distance clears it alone


def test_any_condition_clearing_resolves_it_and_missing_data_leaves_it() -> None:
    engine = AlertEngine([soon_and_near()])
    assert step(engine, 0, "1800", "0.05") == [Kind.FIRING]
    # a condition's series missing (incomplete data) leaves the alert as it is
    only_ttl = Observation(BTC_LONG, {TTL: D(1800)})
    assert engine.evaluate([only_ttl], 1) == [] and engine.states
    assert step(engine, 2, "7200", "0.05") == [Kind.RESOLVED]  # the pace clears it alone
    assert step(engine, 3, "1800", "0.05") == [Kind.FIRING]
    assert step(engine, 4, None, "0.05") == [Kind.RESOLVED]  # moving away: no time left


def test_for_counts_from_when_all_conditions_hold() -> None:
    engine = AlertEngine([soon_and_near(for_s=60.0)])
    assert step(engine, 0, "1800", "0.05") == []
    assert step(engine, 30, "1800", "0.08") == []  # the distance lets go: pending dropped
    assert not engine.states
    assert step(engine, 40, "1800", "0.05") == []
    assert step(engine, 100, "1800", "0.05") == [Kind.FIRING]


def test_the_message_says_every_condition() -> None:
    rule = soon_and_near()
    note = Notification(Kind.FIRING, rule, BTC_LONG, 0.0, 0.0, D(1800))
    message = render(note)
    assert "below 60m, while liquidation distance below 6.0% (soon-and-near)" in message.body
    resolved = render(Notification(Kind.RESOLVED, rule, BTC_LONG, 600.0, 0.0, D(1800)))
    assert "was below 60m, while liquidation distance below 6.0% for 10m" in resolved.body


def config_rule(**conditions: object) -> Rule:
    return _rule(
        RuleConfig.model_validate(
            {
                "name": "soon-and-likely",
                "metric": "time_to_liquidation",
                "scope": "position",
                "below": 3600,
                "window": "15m",
                **conditions,
            }
        )
    )


def test_a_configured_condition_is_read_like_a_rule_of_its_own() -> None:
    rule = config_rule(
        **{"while": [{"metric": "liquidation_probability", "above": 0.01, "window": "2h"}]}
    )
    assert [c.metric for c in rule.conditions] == ["time_to_liquidation", "liquidation_probability"]
    assert rule.also[0].scope is Scope.POSITION  # the rule's scope, not the metric's default
    # the daemon reads the condition's series and keeps marks for its longer window
    assert wanted_of([rule]) == {
        "position:" + TTL,
        "position:liquidation_probability[window=7200.0s]",
    }
    assert dynamics_span_s([rule]) == 7200.0
    distance = config_rule(**{"while": [{"metric": "liquidation_distance", "below": 0.06}]})
    assert "liquidation_distance" in wanted_of([distance])
    # a metric a condition reads keeps its "spare when provably clear" proof honest: the
    # condition's threshold is among those it must prove
    (proof,) = [on for m, on in shortcuts([distance]) if m.name == "liquidation_distance"]
    assert [c.threshold for c in proof] == [D("0.06")]
    assert needs_of([distance]).label == "liquidation prices"


def test_a_rule_of_several_conditions_reaches_only_as_far_as_its_nearest() -> None:
    # each condition breaches only nearer liquidation than its reach; all must at once, so
    # the rule's reach is the smallest of them
    window = MarkWindow(3600.0)
    for k in range(61):
        window.add(k * 60.0, D(100) - D(k) / 10 + (D("0.3") if k % 2 else D(0)))
    ttl_only = config_rule()
    both = config_rule(
        **{"while": [{"metric": "liquidation_probability", "above": 0.01, "horizon": "1h"}]}
    )
    probability_only = _rule(
        RuleConfig.model_validate(
            {
                "name": "likely",
                "metric": "liquidation_probability",
                "scope": "position",
                "above": 0.01,
            }
        )
    )
    reaches = [dynamics_reach([r]) for r in (ttl_only, probability_only, both)]
    assert all(r is not None for r in reaches)
    ttl_reach, p_reach, both_reach = (r(window, -1) for r in reaches if r is not None)
    assert min(ttl_reach, p_reach) > 0 and ttl_reach != p_reach
    assert math.isclose(both_reach, min(ttl_reach, p_reach))


BAD = """
version: 1
accounts:
  - name: hl
    exchange: hyperliquid
    wallet_address: "0xabc"
rules:
  - name: soon-and-near
    metric: time_to_liquidation
    scope: position
    below: 3600
    while:
      - metric: liquidation_distanse
        below: 0.06
      - metric: liquidation_probability
        above: 0.01
        horizon: 10s
      - metric: liquidation_distance
        below: 0.06
        colour: red
  - name: wrong-scope
    metric: worst_ratio
    above: 0.5
    while:
      - metric: liquidation_distance
        below: 0.06
  - name: never
    metric: worst_ratio
    above: 0.5
    while:
      - metric: liquidation_probability
        above: 5
  - name: empty
    metric: worst_ratio
    above: 0.5
    while: []
"""


def test_alertd_check_names_each_bad_condition_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    done = alertd("check", "-c", str(path))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line.removeprefix("alertd: ") for line in done.stderr.splitlines()]
    assert lines == [
        "rules[0].while[0]: unknown metric 'liquidation_distanse' (did you mean "
        "liquidation_distance?)",
        "rules[0].while[1].horizon: 10s is outside 60s..604800s (from a minute to a week ahead)",
        "rules[0].while[2].colour: unknown key (check its spelling and indentation)",
        "rules[1]: while[0]: liquidation_distance is a position metric, and this rule reads "
        "account metrics (a condition is about the rule's own subject)",
        "rules[2].while[0]: liquidation_probability is a probability: a threshold of 5 can never "
        "be crossed (use a value from 0 to 1, e.g. 0.05 for 5%)",
        "rules[3].while: must not be empty",
    ]


SHARED = ROOT.parent / "shared" / "data"
CRASH = SHARED / "2021-05-19_binance-spot_BTC_USDT-1m_2021-04-20_2021-05-20.json"


def test_replay_skips_only_what_a_rule_of_two_conditions_cannot_fire_at() -> None:
    # the replay's shortcuts (a price past which nothing breaches, candles whose riskiest
    # point is beyond every rule's reach) against the replay that evaluates every point,
    # with rules of two conditions (a static and a dynamic one; two dynamic ones)
    rules = [
        config_rule(**{"while": [{"metric": "liquidation_distance", "below": 0.06}]}),
        _rule(
            RuleConfig.model_validate(
                {
                    "name": "likely-and-near",
                    "metric": "liquidation_probability",
                    "scope": "position",
                    "above": 0.01,
                    "while": [
                        {"metric": "liquidation_distance_sigma", "below": 4, "horizon": "4h"}
                    ],
                }
            )
        ),
        _rule(RuleConfig(name="dist", metric="liquidation_distance", below=D("0.03"))),
    ]
    full = load_history(CRASH)
    fired = set()
    for side in ("long", "short"):
        entry, _, _ = before_the_move(full, side == "long", 3600, 3600, 86_400)
        for e in (entry, calm_day_entries(full, 86_400)[0]):
            for lev in (10, 20):
                fast, slow = (
                    replay_entry(
                        "BTC/USDT:USDT", side, MarginMode.ISOLATED, lev, full, e, rules, shortcut=s
                    )
                    for s in (True, False)
                )
                assert fast.alerts == slow.alerts, (side, lev, e)
                assert (fast.points, fast.liquidated_at_ms) == (slow.points, slow.liquidated_at_ms)
                fired |= {a.rule for a in fast.alerts}
    assert {"soon-and-likely", "likely-and-near"} <= fired  # compared while they fired


def test_replay_shows_what_the_rules_saw_at_every_point() -> None:
    # bench/lead_time_bound.py compares crash and calm moments through this
    full = load_history(CRASH)
    entry, _, _ = before_the_move(full, True, 3600, 3600, 3 * 3600)
    rules = [config_rule()]
    seen: list[tuple[int, object]] = []
    result = replay_entry(
        "BTC/USDT:USDT",
        "long",
        MarginMode.ISOLATED,
        10,
        full,
        entry,
        rules,
        shortcut=False,
        watch=lambda t, observed: seen.append((t, observed[1].metrics.get(TTL))),
    )
    assert len(seen) == result.points > 100
    assert seen[0][0] == result.start_ms and any(v is not None for _, v in seen)
