"""Messages: severity and account first, the figure and threshold, positions, one action."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from alertd.engine.margin import AccountMetrics, compute
from alertd.rules.lifecycle import Kind, Notification, Resolution
from alertd.rules.messages import render
from alertd.rules.model import Context, Rule, Scope, Severity

from .support.rules import BTC_LONG, MAIN, RATIO_WARNING, D, rule
from .support.snapshots import account, btc_long_on_2000, position, snapshot, tiers

WARN = replace(RATIO_WARNING, name="margin-ratio-warning")


def metrics() -> AccountMetrics:
    snap = snapshot(
        "binanceusdm",
        "2000",
        [position("BTC/USDT:USDT", "long", "1", "60000", "58350", tiers([(None, "0.004", "0")]))],
    )
    return compute(account(snap), D("0.45"))


def note(
    kind: Kind,
    rule: Rule = WARN,
    value: str = "0.667",
    reason: Resolution | None = None,
    fatal: str | None = None,
) -> Notification:
    context = Context(metrics(), fatal=fatal)
    return Notification(kind, rule, MAIN, 1000.0, 400.0, D(value), context, reason)


def position_note(rule: Rule, value: str) -> Notification:
    """A firing alert of ``rule`` on the account's one position (BTC long)."""
    m = metrics()
    (pm,) = m.positions
    return Notification(
        Kind.FIRING, rule, BTC_LONG, 1000.0, 400.0, D(value), Context(m, position=pm)
    )


def test_firing_leads_with_severity_and_account_and_says_what_to_do() -> None:
    m = render(note(Kind.FIRING), D("0.45"))
    assert m.title == "WARNING main: worst ratio 66.7%"
    lines = m.body.splitlines()
    assert lines[0] == "above 50.0% (margin-ratio-warning)"
    assert lines[1] == "BTC/USDT:USDT long 1 @ 58,350.00 · liq 58,232.93 (0.2%)"
    # MM 233.4 at 45% needs 518.67 of margin balance; the balance is 350
    assert lines[2] == "→ add 168.67 USDT to get back to 45%, or cut 0.3252 BTC/USDT:USDT"
    assert len(m.title) <= 60 and len(lines) <= 4


def test_repeat_and_resolved() -> None:
    assert "firing for 10m" in render(note(Kind.REPEAT)).body
    resolved = render(note(Kind.RESOLVED, value="0.3", reason=Resolution.CLEARED))
    assert resolved.title == "RESOLVED main: worst ratio 30.0%"
    assert resolved.body == "was above 50.0% for 10m (margin-ratio-warning)"


def test_feed_problems_say_alertd_is_blind() -> None:
    stale = rule("feed_stale_s", name="feed-stale", above=D(30))
    m = render(note(Kind.FIRING, stale, "45"))
    assert m.title == "WARNING main: feed stale for 45s"
    assert "cannot see this account's risk" in m.body
    fresh = render(note(Kind.RESOLVED, stale, "0.4", reason=Resolution.CLEARED))
    assert fresh.title == "RESOLVED main: feed fresh again"
    assert fresh.body == "was above 30s for 10m (feed-stale)"
    down = rule("feed_down_s", severity=Severity.CRITICAL, name="feed-down", above=D(60))
    assert render(note(Kind.FIRING, down, "75")).title == "CRITICAL main: feed down for 75s"
    error = rule("account_error", severity=Severity.CRITICAL, name="account-error", above=D(0))
    m = render(note(Kind.FIRING, error, "1", fatal="AuthenticationError: binanceusdm -2015"))
    assert m.title == "CRITICAL main: feed stopped"
    assert m.body == "feed stopped: AuthenticationError: binanceusdm -2015"


def test_custom_template() -> None:
    mine = rule(
        "worst_ratio",
        severity=Severity.CRITICAL,
        name="mine",
        above=D("0.8"),
        message="{account} at {value} (limit {threshold})\nact now {unknown}",
    )
    m = render(note(Kind.FIRING, mine, "0.9"))
    assert m.title == "CRITICAL main at 90.0% (limit 80.0%)"
    assert m.body == "act now {unknown}"
    # exchange pushes (margin calls) are system messages now: tests/test_system_messages.py


def test_a_closed_position_says_so() -> None:
    resolved = render(note(Kind.RESOLVED, value="0.3", reason=Resolution.GONE))
    assert resolved.title == "RESOLVED main: worst ratio 30.0% (position closed)"


def test_a_distance_alert_says_how_to_get_back_to_its_clear_level() -> None:
    """The critical distance alert's advice targets its own clear level (4%), not a ratio."""
    distance = rule("liquidation_distance", Scope.POSITION, below=D("0.03"), clear_above=D("0.04"))
    lines = render(position_note(distance, "0.002")).body.splitlines()
    # at 58,350 x 0.96 = 56,016: equity 2,000 - 3,984 = -1,984 against MM 224.064: 2,208.064
    # short; or close c with -1,984 + 2,334c >= 224.064 (1 - c): c >= 0.86318...
    assert lines[-1] == (
        "→ add 2,208.07 USDT to move liq. to 56,016.00 (4.0% away), or cut 0.8632 BTC/USDT:USDT"
    )


def predictive(metric: str, **threshold: Decimal) -> Rule:
    return rule(metric, **threshold)


def test_predictive_metrics_read_in_their_units() -> None:
    likely = render(
        note(Kind.FIRING, predictive("liquidation_probability", above=D("0.05")), "0.0512")
    )
    assert likely.title == "WARNING main: liquidation probability 5.1%"
    assert likely.body.splitlines()[0] == "above 5.0% (liquidation_probability)"
    # a value beside its threshold is never shown rounded onto it
    near = render(
        note(Kind.FIRING, predictive("liquidation_probability", above=D("0.05")), "0.05004")
    )
    assert near.title == "WARNING main: liquidation probability 5.01%"
    soon = render(note(Kind.FIRING, predictive("time_to_liquidation", below=D(1800)), "754.2"))
    assert soon.title == "WARNING main: time to liquidation 12m"
    lines = soon.body.splitlines()
    assert lines[0] == "below 30m (time_to_liquidation)"  # not a feed-staleness message
    assert lines[1].startswith("BTC/USDT:USDT long 1 @ 58,350.00")
    close = render(note(Kind.FIRING, predictive("time_to_liquidation", below=D(1800)), "1800.4"))
    assert close.title == "WARNING main: time to liquidation 1,800.4s"  # not "30m"
    sigma = render(note(Kind.FIRING, predictive("liquidation_distance_sigma", below=D(2)), "1.96"))
    assert sigma.title == "WARNING main: liquidation distance sigma 1.96σ"  # not 2.0σ
    assert sigma.body.splitlines()[0] == "below 2.0σ (liquidation_distance_sigma)"


def test_a_size_to_cut_is_in_the_markets_lot_size() -> None:
    """The action line's cut is rounded up to the market's lot (0.3252 BTC -> 0.326 at a
    0.001 lot), so cutting what it says is enough; without a lot, four significant digits."""
    context = Context(compute(btc_long_on_2000("58350", lot_size="0.001"), D("0.45")))
    n = Notification(Kind.FIRING, WARN, MAIN, 1000.0, 400.0, D("0.667"), context, None)
    assert render(n, D("0.45")).body.splitlines()[-1] == (
        "→ add 168.67 USDT to get back to 45%, or cut 0.326 BTC/USDT:USDT"
    )


def test_buffer_and_leverage_alerts_say_how_to_get_back_to_their_clear_level() -> None:
    """Equity 350 (2,000 - 1,650 of loss), MM 233.4: a buffer of 116.6, leverage 166.7x."""
    buffer = rule("buffer", below=D(500), clear_above=D(600))
    # closing all of BTC leaves a buffer of 350 at most: only margin gets to 600
    lines = render(note(Kind.FIRING, buffer, "116.6")).body.splitlines()
    assert lines[-1] == "→ add 483.40 USDT for a buffer of 600.00 USDT"
    leverage = rule("effective_leverage", above=D(20), clear_below=D(15))
    lines = render(note(Kind.FIRING, leverage, "166.7")).body.splitlines()
    # 58,350 / 15 - 350 = 3,540 to add; or keep 350 x 15 / 58,350 = 0.08997 BTC: cut 0.91003
    assert lines[-1] == (
        "→ add 3,540.00 USDT for 15.00x effective leverage, or cut 0.9101 BTC/USDT:USDT"
    )


def test_predictive_alerts_say_what_brings_them_back_to_their_clear_level() -> None:
    """Liq. 58,232.93 under a 58,350 mark: a log distance d. At a touch probability of 40%
    the volatility over the horizon is d / z(40%); the 3% clear level needs the distance
    z(3%) / z(40%) times d. Doing what the line says gets there: recomputed below."""
    import math
    from dataclasses import replace

    from alertd.engine.dynamics import sigmas_for_probability, touch_probability

    likely = rule("liquidation_probability", Scope.POSITION, above=D("0.05"), clear_below=D("0.03"))
    m = metrics()
    (pm,) = m.positions
    action = render(position_note(likely, "0.4")).body.splitlines()[-1]
    assert action.startswith("→ add ") and " USDT to move liq. to " in action, action
    added = D(action.split()[2].replace(",", ""))
    assert pm.liquidation_price is not None
    d = math.log(float(pm.position.mark_price / pm.liquidation_price))
    z = sigmas_for_probability(0.4)
    assert z is not None
    scale = d / z  # sigma * sqrt(horizon), implied by today's figure
    after = compute(replace(m.account, wallet_balance=m.account.wallet_balance + added))
    (moved,) = after.positions
    assert moved.liquidation_price is not None
    d_after = math.log(float(moved.position.mark_price / moved.liquidation_price))
    assert 0.029 < touch_probability(d_after, scale, 1.0) <= 0.03
    # the same from the seconds and sigma figures: proportional to the distance
    for metric, value, clear in (
        ("time_to_liquidation", "120", "600"),
        ("liquidation_distance_sigma", "0.4", "2"),
    ):
        timed = rule(metric, Scope.POSITION, below=D(clear))
        line = render(position_note(timed, value)).body.splitlines()[-1]
        assert line.startswith("→ add ") and "(1.0% away)" in line, line  # 5 x 0.2%
    # at or past the clear level already: no line of its own
    assert not render(position_note(likely, "0.02")).body.splitlines()[-1].startswith("→ add")
    # the account's figure is measured to its crash distance: the same, as a fall of every mark
    whole = rule("liquidation_probability", above=D("0.05"))
    line = render(note(Kind.FIRING, whole, "0.4")).body.splitlines()[-1]
    assert line.startswith("→ add ") and "fall of every mark" in line, line
