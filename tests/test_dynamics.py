"""Price dynamics: the mark window's statistics and the barrier arithmetic the predictive
metrics read (engine/dynamics.py), and the metrics themselves (rules/metrics.py)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.engine.book import Book
from alertd.engine.dynamics import (
    MarkWindow,
    seed_timeframe,
    seeded,
    sigmas,
    time_to_reach,
    touch_probability,
)
from alertd.engine.margin import compute
from alertd.engine.model import Account, MarginMode, Position, Side
from alertd.engine.tiers import Tier, TierTable
from alertd.exchanges.registry import get_spec
from alertd.rules.metrics import FeedStatus, observe, wanted_of
from alertd.rules.model import Condition, Rule, Scope, Severity, parse_series, series_key

D = Decimal
HOUR = 3600.0
T0 = 1_700_000_000.0  # an epoch second: the window never reads a clock
FEED = FeedStatus(D(0), D(0), None)

# --- the barrier arithmetic ------------------------------------------------------------------

distances = st.floats(0, 2, allow_nan=False)
vols = st.floats(0, 0.01, allow_nan=False)  # per square-root second: up to 60% an hour
horizons = st.floats(60, 7 * 86400, allow_nan=False)


@given(distances, vols, horizons)
def test_probability_is_a_probability(d: float, sigma: float, horizon: float) -> None:
    assert 0.0 <= touch_probability(d, sigma, horizon) <= 1.0


@given(distances, distances, vols, horizons)
def test_probability_falls_with_distance(a: float, b: float, sigma: float, t: float) -> None:
    near, far = sorted((a, b))
    assert touch_probability(near, sigma, t) >= touch_probability(far, sigma, t)


@given(distances, vols, vols, horizons)
def test_probability_rises_with_volatility_and_horizon(
    d: float, s1: float, s2: float, t: float
) -> None:
    calm, wild = sorted((s1, s2))
    assert touch_probability(d, calm, t) <= touch_probability(d, wild, t)
    assert touch_probability(d, calm, t) <= touch_probability(d, calm, 2 * t)
    assert sigmas(d, calm, t) >= sigmas(d, wild, t)


@given(st.floats(1e-6, 2), horizons)
def test_zero_volatility_limits(d: float, horizon: float) -> None:
    assert touch_probability(d, 0.0, horizon) == 0.0  # nothing moves: never reached
    assert sigmas(d, 0.0, horizon) == math.inf
    assert touch_probability(0.0, 0.0, horizon) == 1.0  # already there
    assert touch_probability(d, 1e-12, horizon) < 1e-6  # and continuously so


def test_hand_computed_probabilities() -> None:
    # 1% an hour; a barrier one (two) hourly standard deviation(s) away, over one hour:
    # 2 * (1 - Phi(1)) = 0.31731..., 2 * (1 - Phi(2)) = 0.04550... (normal tables)
    sigma = 0.01 / math.sqrt(HOUR)
    assert touch_probability(0.01, sigma, HOUR) == pytest.approx(0.3173105078629141, rel=1e-12)
    assert touch_probability(0.02, sigma, HOUR) == pytest.approx(0.0455002638963584, rel=1e-12)
    # over four hours the standard deviation doubles: two of them away is one of them
    assert touch_probability(0.02, sigma, 4 * HOUR) == pytest.approx(0.3173105078629141)
    assert sigmas(0.02, sigma, HOUR) == pytest.approx(2.0)
    assert time_to_reach(0.05, 0.05 / 600) == pytest.approx(600.0)
    assert time_to_reach(0.05, -1e-5) is None  # moving away
    assert time_to_reach(0.05, 0.0) is None


# --- the window ------------------------------------------------------------------------------


def walk(returns: list[float], step_s: float = 10.0, start: float = 100.0) -> MarkWindow:
    w = MarkWindow(4 * HOUR)
    x = math.log(start)
    w.add(T0, start)
    for k, r in enumerate(returns, 1):
        x += r
        w.add(T0 + k * step_s, math.exp(x))
    return w


def test_realized_volatility_is_time_scaled() -> None:
    r = 0.001
    w = walk([r, -r] * 100)  # |r| every 10 s
    assert w.volatility(HOUR) == pytest.approx(r / math.sqrt(10), rel=1e-9)
    # the same process sampled every 60 s (returns sqrt(6) larger): the same rate
    w60 = walk([r * math.sqrt(6), -r * math.sqrt(6)] * 30, step_s=60)
    assert w60.volatility(HOUR) == pytest.approx(r / math.sqrt(10), rel=1e-9)


def test_a_gap_counts_with_its_time() -> None:
    r = 0.001
    w = MarkWindow(4 * HOUR)
    times = [T0 + 10 * k for k in range(60)] + [T0 + 1190 + 10 * k for k in range(60)]
    x = 0.0
    for k, t in enumerate(times):
        if k == 60:  # ten minutes without a mark, then the move ten minutes would make
            x += r * math.sqrt(60)
        elif k:
            x += r if k % 2 else -r
        w.add(t, math.exp(x))
    assert w.volatility(HOUR) == pytest.approx(r / math.sqrt(10), rel=1e-9)


def test_a_single_bad_tick_changes_nothing() -> None:
    r = 0.0005
    returns = [r, -r, r, r, -r, -r] * 30
    clean = walk(returns)
    bad = walk(returns)
    # one tick 5% off in the middle of the window, then back
    spiked = MarkWindow(4 * HOUR)
    for k, (t, p) in enumerate(bad.samples()):
        spiked.add(t, p * (1.05 if k == 90 else 1.0))
    base = clean.volatility(HOUR)
    assert base is not None
    assert spiked.volatility(HOUR) == pytest.approx(base, rel=0.02)
    # the tick is the first of the velocity's 15 minutes: judged against the one before;
    # left in, it would tilt the slope by about 3.5e-6 a second (1.2% an hour)
    assert spiked.velocity(900) == pytest.approx(clean.velocity(900), abs=1e-7)
    # the naive estimate would have been several times larger
    naive = math.sqrt(sum(x * x for x in returns) + 2 * math.log(1.05) ** 2) / math.sqrt(
        10 * len(returns)
    )
    assert naive > 3 * base


def test_an_unconfirmed_jump_waits_for_two_more_samples() -> None:
    r = 0.0005
    w = walk([r, -r] * 60)
    base = w.volatility(HOUR)
    assert base is not None
    t_last, p_last = w.samples()[-1]
    w.add(t_last + 10, p_last * 0.95)  # a bad tick, or the start of a crash
    assert w.volatility(HOUR) == pytest.approx(base)
    w.add(t_last + 20, p_last * 0.948)  # a second bad tick at the same price, or a crash
    assert w.volatility(HOUR) == pytest.approx(base)
    w.add(t_last + 30, p_last * 0.94)  # it was a crash: the fall counts now
    after = w.volatility(HOUR)
    assert after is not None and after > 2 * base


@pytest.mark.parametrize("at", [30, 90, 118])
def test_two_bad_ticks_in_a_row_change_nothing(at: int) -> None:
    r = 0.0005
    returns = [r, -r, r, r, -r, -r] * 20
    clean = walk(returns)
    spiked = MarkWindow(4 * HOUR)
    for k, (t, p) in enumerate(clean.samples()):
        # two consecutive samples 5% (then 4.9%) off, then back; at 118 the return to the
        # real price is the newest sample
        spiked.add(t, p * (1.05 if k == at else 1.049 if k == at + 1 else 1.0))
    base = clean.volatility(HOUR)
    assert base is not None
    assert spiked.volatility(HOUR) == pytest.approx(base, rel=0.03)
    assert spiked.velocity(900) == pytest.approx(clean.velocity(900), abs=2e-7)


def test_two_bad_ticks_at_the_end_are_held_back_then_dropped() -> None:
    r = 0.0005
    w = walk([r, -r] * 60)
    base = w.volatility(HOUR)
    velocity = w.velocity(900)
    t_last, p_last = w.samples()[-1]
    for k, factor in enumerate((0.95, 0.951)):  # two ticks 5% down: not counted yet
        w.add(t_last + 10 * (k + 1), p_last * factor)
        assert w.volatility(HOUR) == pytest.approx(base)
        # the window's end moves with the newest sample: a tiny change, where the ticks
        # counted would tilt the slope by about 1e-5 a second
        assert w.velocity(900) == pytest.approx(velocity, abs=1e-7)
    w.add(t_last + 30, p_last)  # back where it was: they were bad ticks, dropped for good
    assert w.volatility(HOUR) == pytest.approx(base, rel=0.05)
    w.add(t_last + 40, p_last * 1.0005)
    assert w.volatility(HOUR) == pytest.approx(base, rel=0.05)


def test_three_ticks_at_a_new_price_are_a_real_move() -> None:
    r = 0.0005
    returns = [r, -r] * 60
    w = walk(returns)
    base = w.volatility(HOUR)
    assert base is not None
    t_last, p_last = w.samples()[-1]
    for k in range(3):
        w.add(t_last + 10 * (k + 1), p_last * 0.95)
    w.add(t_last + 40, p_last * 0.9505)
    after = w.volatility(HOUR)
    assert after is not None and after > 2 * base


def test_velocity_is_the_slope_of_log_price() -> None:
    rate = -0.02 / HOUR  # 2% an hour down
    w = MarkWindow(4 * HOUR)
    for k in range(200):
        w.add(T0 + 10 * k, 100 * math.exp(rate * 10 * k))
    assert w.velocity(900) == pytest.approx(rate, rel=1e-6)


def test_memory_is_bounded_and_order_is_kept() -> None:
    w = MarkWindow(600, resolution_s=10)
    for k in range(10_000):
        w.add(T0 + k, 100 + (k % 7))
    assert len(w) <= w.capacity == 62
    first = w.samples()[0][0]
    assert first >= T0 + 9_999 - 600
    last = w.samples()[-1]
    assert not w.add(T0, 50)  # older than the newest: ignored
    w.add(last[0] + 0.5, 123)  # the same bucket: its last price stands for it
    assert w.samples()[-1][1] == pytest.approx(123)
    for bad in (0, -1, float("nan"), float("inf")):
        assert not w.add(last[0] + 100, bad)


def test_too_little_data_gives_no_figure() -> None:
    w = walk([0.001, -0.001] * 3)
    assert w.volatility(HOUR) is None  # six returns
    w = walk([0.001, -0.001] * 20)  # 400 s of data: under a quarter of an hour
    assert w.volatility(HOUR) is None
    assert w.volatility(900) is not None


def test_seeded_from_candles_without_the_running_one() -> None:
    span = HOUR
    name, interval = seed_timeframe(span)
    assert (name, interval) == ("1m", 60_000)
    assert seed_timeframe(24 * HOUR) == ("15m", 900_000)
    now = T0 + 30  # the last candle opened at T0 and is still running
    candles = [(int((T0 - 60 * k) * 1000), D(100 + k), D(100 + k - 1)) for k in range(60, -1, -1)]
    w = seeded(span, candles, interval, now)
    times = [t for t, _ in w.samples()]
    assert times[-1] == T0  # the running candle's open; its close is not known yet
    assert w.samples()[-1][1] == pytest.approx(100)
    assert w.volatility(HOUR) is not None
    live = MarkWindow(span)
    live.add(T0 + 12, D(99))
    w = seeded(span, candles, interval, now, live)
    assert w.samples()[-1] == (T0 + 12, pytest.approx(99))


# --- the metrics -----------------------------------------------------------------------------


def one_position(side: Side, mark: str, lev: str = "10") -> Account:
    profile = get_spec("binanceusdm").profile
    entry = D(mark)
    margin = entry / D(lev)
    p = Position(
        symbol="BTC/USDT:USDT",
        side=side,
        contracts=D(1),
        contract_size=D(1),
        inverse=False,
        entry_price=entry,
        mark_price=entry,
        margin_mode=MarginMode.ISOLATED,
        tiers=TierTable.build([Tier(None, D("0.004"), D(0))]),
        fee_rate=D(0),
        isolated_margin=margin,
        leverage=D(lev),
    )
    return Account(profile, "a", "USDT", D(0), (p,))


def rule(metric: str, scope: Scope = Scope.POSITION, **params: float) -> Rule:
    return Rule(metric, Condition(metric, scope, above=D(0), **params), Severity.WARNING)


def observed(account: Account, windows: dict[str, MarkWindow] | None, *rules: Rule) -> dict:
    book = Book()
    book.set_account("a", account)
    obs = observe("a", "binanceusdm", book.live("a"), FEED, wanted_of(rules), windows)
    # each rule's series in its own scope: no key is in both
    return {k: v for o in obs for k, v in o.metrics.items()}


def test_position_probability_from_the_liquidation_price() -> None:
    account = one_position(Side.LONG, "50000")
    liq = compute(account).positions[0].liquidation_price
    assert liq is not None
    w = walk([0.001, -0.001] * 200, start=50000)  # the window's own last price is irrelevant
    sigma = w.volatility(HOUR)
    assert sigma is not None
    r = rule("liquidation_probability", horizon_s=1800.0)
    got = observed(account, {"BTC/USDT:USDT": w}, r)[r.series]
    d = math.log(50000 / float(liq))
    assert float(got) == pytest.approx(math.erfc(d / (sigma * math.sqrt(2 * 1800))), rel=1e-12)
    s = rule("liquidation_distance_sigma")  # the default horizon: an hour
    got = observed(account, {"BTC/USDT:USDT": w}, s)[s.series]
    assert float(got) == pytest.approx(d / (sigma * 60), rel=1e-12)
    # no dynamics for the symbol: no figure, not a guess
    assert observed(account, {}, r)[r.series] is None
    assert observed(account, None, r)[r.series] is None


def test_two_horizons_are_two_values() -> None:
    account = one_position(Side.LONG, "50000")
    w = walk([0.002, -0.002] * 200, start=50000)
    short, long_ = (rule("liquidation_probability", horizon_s=h) for h in (600.0, 86400.0))
    values = observed(account, {"BTC/USDT:USDT": w}, short, long_)
    assert values[short.series] < values[long_.series]
    assert parse_series(long_.series) == ("liquidation_probability", 86400.0, None)
    assert series_key("margin_ratio", None, None) == "margin_ratio"


def test_time_to_liquidation_only_while_moving_towards_it() -> None:
    account = one_position(Side.LONG, "50000")
    liq = compute(account).positions[0].liquidation_price
    assert liq is not None
    rate = -0.05 / HOUR
    falling = MarkWindow(HOUR)
    for k in range(100):
        falling.add(T0 + 10 * k, 50000 * math.exp(rate * 10 * k))
    r = rule("time_to_liquidation", window_s=900.0)
    got = observed(account, {"BTC/USDT:USDT": falling}, r)[r.series]
    assert float(got) == pytest.approx(math.log(50000 / float(liq)) / 0.05 * HOUR, rel=1e-6)
    rising = MarkWindow(HOUR)
    for k in range(100):
        rising.add(T0 + 10 * k, 50000 * math.exp(-rate * 10 * k))
    assert observed(account, {"BTC/USDT:USDT": rising}, r)[r.series] is None
    # a short is hurt by the rise
    short = one_position(Side.SHORT, "50000")
    assert observed(short, {"BTC/USDT:USDT": rising}, r)[r.series] is not None
    assert observed(short, {"BTC/USDT:USDT": falling}, r)[r.series] is None


def test_at_liquidation_the_figures_are_certain() -> None:
    account = one_position(Side.LONG, "50000")
    liq = compute(account).positions[0].liquidation_price
    assert liq is not None
    past = account.with_marks({"BTC/USDT:USDT": liq * D("0.99")})
    rules = [
        rule("liquidation_probability"),
        rule("time_to_liquidation"),
        rule("liquidation_distance_sigma"),
    ]
    values = observed(past, {}, *rules)  # no dynamics needed to know it
    assert [values[r.series] for r in rules] == [D(1), D(0), D(0)]


def test_account_figures_use_the_crash_distance() -> None:
    account = one_position(Side.LONG, "50000")
    book = Book()
    book.set_account("a", account)
    crash = book.live("a").crash_distance()
    assert crash is not None and crash < 0
    w = walk([0.001, -0.001] * 200, start=50000)
    sigma = w.volatility(HOUR)
    assert sigma is not None
    r = rule("liquidation_probability", Scope.ACCOUNT)
    got = observed(account, {"BTC/USDT:USDT": w}, r)[r.series]
    d = -math.log1p(float(crash))
    assert float(got) == pytest.approx(math.erfc(d / (sigma * math.sqrt(2 * HOUR))), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0001, 0.01), st.integers(2, 100))
def test_observed_probability_rises_as_the_mark_nears_liquidation(vol: float, lev: int) -> None:
    account = one_position(Side.LONG, "50000", str(lev))
    liq = compute(account).positions[0].liquidation_price
    assert liq is not None
    w = walk([vol, -vol] * 100, start=50000)
    r = rule("liquidation_probability")
    values = []
    for frac in ("1.5", "1.2", "1.05", "1.01"):
        moved = account.with_marks({"BTC/USDT:USDT": liq * D(frac)})
        values.append(observed(moved, {"BTC/USDT:USDT": w}, r)[r.series])
    assert values == sorted(values)
    assert all(D(0) <= v <= D(1) for v in values)


def test_status_shows_the_rules_default_outlook() -> None:
    """``alertd status`` and ``/metrics`` read each position's probability (1h ahead, the
    last hour's volatility) and time to liquidation (the last 15 minutes' pace) through the
    same extractors as a rule with the default parameters."""
    from alertd.daemon.publisher import figures

    account = one_position(Side.LONG, "50000", lev="20")
    # falling 0.05% every 10 s with some noise: a clear pace towards the liquidation price
    w = walk([-0.0008, 0.0003] * 200, start=50000)
    windows = {"BTC/USDT:USDT": w}
    book = Book()
    book.set_account("a", account)
    live = book.live("a")
    assert live is not None
    (shown,) = figures(live, crash=False, dynamics=windows).positions
    p = rule("liquidation_probability")
    t = Rule("t", Condition("time_to_liquidation", Scope.POSITION, below=D(1)), Severity.WARNING)
    expected = observed(account, windows, p, t)
    assert shown.liquidation_probability == expected[p.series] is not None
    assert shown.time_to_liquidation == expected[t.series] is not None
    assert 0 < shown.liquidation_probability < 1 and shown.time_to_liquidation > 0
    # without price history (no rule reads it) the daemon shows none
    (bare,) = figures(live, crash=False).positions
    assert bare.liquidation_probability is None and bare.time_to_liquidation is None


@settings(max_examples=60, deadline=None)
@given(
    metric=st.sampled_from(
        ["liquidation_probability", "liquidation_distance_sigma", "time_to_liquidation"]
    ),
    threshold=st.floats(1e-4, 0.5),
    drift=st.floats(-2e-5, 2e-5),
    seed=st.integers(0, 10_000),
)
def test_a_rule_breaches_exactly_within_its_reach(
    metric: str, threshold: float, drift: float, seed: int
) -> None:
    # the replay skips a point when its distance to liquidation is beyond the rules' reach:
    # the figure must not breach past it, and must breach just inside it (the bound is tight)
    import random

    from alertd.engine.dynamics import sigmas, time_to_reach, to_decimal, touch_probability
    from alertd.rules.metrics import REACH_MARGIN, dynamics_reach

    rng = random.Random(seed)
    window = MarkWindow(3600)
    price = 100.0
    for k in range(120):
        price *= math.exp(drift * 60 + rng.gauss(0, 0.002))
        window.add(1_000_000 + 60 * k, price)
    scale = {
        "liquidation_probability": 1,
        "liquidation_distance_sigma": 20,
        "time_to_liquidation": 20_000,
    }
    limit = Decimal(repr(threshold * scale[metric]))
    above = metric == "liquidation_probability"
    condition = Condition(
        metric,
        Scope.POSITION,
        above=limit if above else None,
        below=None if above else limit,
    )
    rule = Rule("r", condition, Severity.WARNING)
    direction = -1  # a long: liquidation below the mark
    reach = dynamics_reach([rule])
    assert reach is not None
    bound = reach(window, direction)
    exact = (bound - 1e-12) / (1 + REACH_MARGIN)

    def breaches(d: float) -> bool:
        sigma = window.volatility(3600)
        assert sigma is not None
        if metric == "liquidation_probability":
            value: float | None = touch_probability(d, sigma, 3600)
        elif metric == "liquidation_distance_sigma":
            value = sigmas(d, sigma, 3600)
        else:
            speed = window.velocity(900)
            value = time_to_reach(d, None if speed is None else speed * direction)
        return value is not None and rule.breached(to_decimal(value))

    assert not breaches(bound * (1 + 1e-9))
    if exact > 1e-9:
        assert breaches(exact * (1 - 1e-6))
