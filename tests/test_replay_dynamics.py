"""Replay with the price-dynamics rules: the same metrics through the same code as the daemon,
the dynamics rebuilt from the history as it is replayed, never ahead of it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from alertd.cli.replay import parse_time
from alertd.config import RuleConfig
from alertd.daemon.evaluation import _rule
from alertd.engine.model import MarginMode
from alertd.replay.history import History, load_history, window
from alertd.replay.run import position_from_spec, replay, warmup_before
from alertd.replay.sweep import (
    RuleStats,
    before_the_move,
    calm_day_entries,
    replay_entry,
    sweep,
)
from alertd.rules.model import Rule

from .support.process import ROOT
from .support.rules import configured

CRASH = (
    ROOT.parent
    / "shared"
    / "data"
    / "2021-05-19_binance-spot_BTC_USDT-1m_2021-04-20_2021-05-20.json"
)
MIN = 60_000


def rules() -> list[Rule]:
    return configured(
        """
        - {name: p-pos, metric: liquidation_probability, scope: position, above: 0.05,
           clear_below: 0.03, horizon: 30m}
        - {name: p-acct, metric: liquidation_probability, above: 0.2, window: 2h}
        - {name: ttl, metric: time_to_liquidation, scope: position, below: 3600, window: 10m}
        - {name: sigma, metric: liquidation_distance_sigma, scope: position, below: 2,
           severity: critical}
        - {name: dist, metric: liquidation_distance, below: 0.03}
        """
    )


def at(text: str) -> int:
    ms = parse_time(text, "--start")
    assert ms is not None
    return ms


@pytest.fixture(scope="module")
def full_history() -> History:
    return load_history(CRASH)


def test_a_replay_cut_at_t_gives_the_same_alerts_up_to_t(full_history: History) -> None:
    start, end = at("2021-05-19T11:00:00Z"), at("2021-05-19T13:30:00Z")
    spec = "BTC/USDT:USDT long 1 @ 43250 x10 isolated"
    engine_rules = rules()
    warmup = warmup_before(full_history, start, engine_rules)
    assert len(warmup) == 120  # two hours: the longest window a rule reads
    whole = replay(
        position_from_spec(spec), window(full_history, start, end), engine_rules, warmup=warmup
    )
    assert len({a.rule for a in whole.alerts if a.kind == "firing"}) >= 4
    assert whole.liquidated_at_ms is not None
    for cut in range(start + 10 * MIN, whole.liquidated_at_ms + MIN, 7 * MIN):
        part = replay(
            position_from_spec(spec),
            window(full_history, start, cut),
            engine_rules,
            warmup=warmup,
        )
        assert part.alerts == [a for a in whole.alerts if a.at_ms <= cut], cut


@pytest.mark.parametrize("leverage", [10, 20])
def test_the_dynamics_warn_before_the_distance_rule(full_history: History, leverage: int) -> None:
    # the crash of lead-time.md: a long entered at 12:00; the 3% rule warns 2 (13) minutes
    # before liquidation
    start = at("2021-05-19T12:00:00Z")
    engine_rules = rules()
    result = replay(
        position_from_spec(f"BTC/USDT:USDT long 1 @ 38700 x{leverage} isolated"),
        window(full_history, start, start + 180 * MIN),
        engine_rules,
        warmup=warmup_before(full_history, start, engine_rules),
    )
    assert result.liquidated_at_ms is not None
    first: dict[str, float | None] = {}
    for a in result.alerts:
        if a.kind == "firing":
            first.setdefault(a.rule, result.lead_time_s(a))
    distance = first["dist"]
    assert distance is not None
    for name in ("p-pos", "p-acct", "ttl", "sigma"):
        lead = first[name]
        assert lead is not None and lead > distance, name


def test_without_warmup_the_figures_wait_for_enough_history(full_history: History) -> None:
    start = at("2021-05-19T12:00:00Z")
    only = [r for r in rules() if r.name == "p-pos"]
    history = window(full_history, start, start + 60 * MIN)
    cold = replay(position_from_spec("BTC/USDT:USDT long 1 @ 38700 x10 isolated"), history, only)
    # an hour of lookback needs a quarter of it covered: nothing in the first 14 minutes
    assert cold.alerts and all(a.at_ms >= start + 14 * MIN for a in cold.alerts)


def test_sweep_reads_the_dynamics_rules(full_history: History) -> None:
    history = window(full_history, at("2021-05-19T10:00:00Z"), at("2021-05-19T16:00:00Z"))
    only = [r for r in rules() if r.name in ("p-pos", "dist")]
    rows = sweep(
        "BTC/USDT:USDT",
        "long",
        MarginMode.ISOLATED,
        history,
        only,
        leverages=(10,),
        every_s=3600,
        window_s=3 * 3600,
    )
    (row,) = rows
    assert row.runs == 7 and row.liquidated >= 1  # entries 10:00 to 16:00
    p, dist = row.rules["p-pos"], row.rules["dist"]
    # warned ahead of the liquidation, in a later minute or in the entry's
    warned = p.fired_before_liquidation + p.warned_at_entry
    assert warned >= dist.fired_before_liquidation + dist.warned_at_entry


def test_a_sweep_entry_is_seeded_from_the_history_before_the_cut(full_history: History) -> None:
    # a 50x long entered at 12:00 starts within 2% of liquidation: with the hour before as
    # seed the probability is known at entry; without, not before a quarter hour of prices
    start = at("2021-05-19T12:00:00Z")
    history = window(full_history, start, start + 120 * MIN)
    only = [r for r in rules() if r.name == "p-pos"]

    def stats(before: History | None) -> RuleStats:
        (row,) = sweep(
            "BTC/USDT:USDT",
            "long",
            MarginMode.ISOLATED,
            history,
            only,
            leverages=(50,),
            every_s=3 * 3600,
            window_s=7200,
            before=before,
        )
        assert row.runs == 1 and row.liquidated == 1
        return row.rules["p-pos"]

    cold, seeded = stats(None), stats(full_history)
    # seeded: the probability is known in the entry's minute (warned at entry: no lead time)
    assert seeded.warned_at_entry == 1 and seeded.lead_times_s == []
    # cold: not before a quarter of the hour's lookback is covered
    (lead,) = cold.lead_times_s
    assert cold.warned_at_entry == 0 and lead <= (30 - 14) * 60
    assert seeded.at_entry_lived_s == [lead + 14 * 60] or seeded.at_entry_lived_s[0] > lead


@pytest.mark.parametrize(
    ("spec", "start"),
    [
        ("BTC/USDT:USDT long 1 @ 38700 x20 isolated", "2021-05-19T00:00:00Z"),
        ("BTC/USDT:USDT short 1 @ 30000 x10 cross", "2021-05-19T13:00:00Z"),
        ("BTC/USD:BTC long 1000 @ 40000 x10 isolated", "2021-05-18T12:00:00Z"),  # inverse
    ],
)
def test_skipping_calm_candles_changes_nothing(
    full_history: History, spec: str, start: str
) -> None:
    # the candle shortcut: with every rule pointing its metric's risky way, a candle whose
    # adverse extreme breaches nothing is skipped; alerts, points and liquidation the same
    history = window(full_history, at(start), at(start) + 36 * 3600_000)
    warmup = warmup_before(full_history, history.candles[0].t_ms, rules())
    fast = replay(position_from_spec(spec), history, rules(), warmup=warmup)
    slow = replay(position_from_spec(spec), history, rules(), warmup=warmup, shortcut=False)
    assert fast.alerts == slow.alerts and fast.alerts
    assert (fast.points, fast.liquidated_at_ms) == (slow.points, slow.liquidated_at_ms)


def test_a_rule_against_the_risky_way_is_not_skipped(full_history: History) -> None:
    # "alert while far from liquidation": breaches at the candle's favourable extreme only
    far = _rule(RuleConfig(name="far", metric="liquidation_distance", above=Decimal("0.12")))
    history = window(full_history, at("2021-05-19T00:00:00Z"), at("2021-05-19T06:00:00Z"))
    spec = "BTC/USDT:USDT long 1 @ 42000 x10 isolated"
    fast = replay(position_from_spec(spec), history, [far])
    slow = replay(position_from_spec(spec), history, [far], shortcut=False)
    assert fast.alerts == slow.alerts


SHARED = ROOT.parent / "shared" / "data"
HISTORIES = sorted(
    p.name for p in SHARED.glob("*-1m*") if p.suffix in (".json", ".feather", ".zip")
)


def position_rules() -> list[Rule]:
    """The defaults' ratio and distance rules with every price-dynamics metric on the position
    (the rules whose reach lets a replay skip points)."""
    return configured(
        """
        - {name: ratio, metric: worst_ratio, above: 0.5}
        - {name: dist, metric: liquidation_distance, below: 0.03}
        - {name: p, metric: liquidation_probability, scope: position, above: 0.01,
           clear_below: 0.005}
        - {name: ttl, metric: time_to_liquidation, scope: position, below: 3600, window: 15m}
        - {name: sigma, metric: liquidation_distance_sigma, scope: position, below: 3,
           horizon: 4h}
        """
    )


@pytest.mark.parametrize("name", HISTORIES)
def test_the_fast_path_gives_the_same_alerts_on_every_shared_history(name: str) -> None:
    # the replay skips a candle when, by the window's dynamics, no rule can breach at its
    # adverse extreme; the straightforward replay evaluates every point. Entered an hour before
    # the file's largest fall (long) and rally (short), and at the start of its first calm
    # day, at 10x and 50x isolated and 20x cross: every alert, point and liquidation the same
    full = load_history(SHARED / name)
    engine_rules = position_rules()
    symbol = "BTC/USD:BTC" if "coinm" in name else "BTC/USDT:USDT"
    compared = alerts = 0
    for side in ("long", "short"):
        entry, _, _ = before_the_move(full, side == "long", 3600, 3600, 86_400)
        entries = [entry, calm_day_entries(full, 86_400)[0]]
        for lev, mode in (
            (10, MarginMode.ISOLATED),
            (50, MarginMode.ISOLATED),
            (20, MarginMode.CROSS),
        ):
            for e in entries:
                runs = [
                    replay_entry(symbol, side, mode, lev, full, e, engine_rules, shortcut=fast)
                    for fast in (True, False)
                ]
                fast_run, slow_run = runs
                assert fast_run.alerts == slow_run.alerts, (side, lev, mode, e)
                assert (fast_run.points, fast_run.liquidated_at_ms) == (
                    slow_run.points,
                    slow_run.liquidated_at_ms,
                )
                compared += 1
                alerts += len(fast_run.alerts)
    assert compared == 12 and alerts  # the rules did fire: the comparison is not of silences
