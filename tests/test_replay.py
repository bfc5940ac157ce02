"""Replays: a hand-built path with known alert and liquidation minutes, the real data files,
bad input, and the CLI."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from alertd.config import DEFAULT_RULES
from alertd.daemon.evaluation import _rule
from alertd.errors import InputError
from alertd.replay.history import load_history
from alertd.replay.run import position_from_spec, replay

from .support.process import ROOT, alertd

DATA = ROOT.parent / "shared" / "data"
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
MIN = 60_000

# 1 BTC long at 100, 10x cross: wallet 10, MM 0.4% of notional, liquidation at 90/0.996 =
# 90.3614. Warning (ratio 0.5) below 90.7258, critical (0.8) below 90.4523, liquidation
# distance under 3% below 93.156.
PATH = ["100", "95", "93", "92", "90.6", "90.42", "90.3", "95"]
SPEC = "BTC/USDT:USDT long 1 @ 100 x10 cross"


def csv_file(tmp_path: Path, rows: list[str], name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_text("timestamp,price\n" + "\n".join(rows) + "\n")
    return path


def flat(tmp_path: Path, prices: list[str]) -> Path:
    return csv_file(tmp_path, [f"{T0 + i * MIN},{p}" for i, p in enumerate(prices)])


def test_hand_built_path_gives_known_minutes(tmp_path: Path) -> None:
    history = load_history(flat(tmp_path, PATH))
    result = replay(position_from_spec(SPEC), history, [_rule(r) for r in DEFAULT_RULES])
    firing = [(a.rule, (a.at_ms - T0) // MIN) for a in result.alerts if a.kind == "firing"]
    assert firing == [
        ("liquidation-distance-critical", 2),
        ("margin-ratio-warning", 4),
        ("margin-ratio-critical", 5),
    ]
    assert result.liquidated_at_ms == T0 + 6 * MIN
    leads = [result.lead_time_s(a) for a in result.alerts if a.kind == "firing"]
    assert leads == [240.0, 120.0, 60.0]
    assert result.liquidation_mark == Decimal("90.3")
    (liq,) = result.liquidation_prices.values()
    assert liq is not None and abs(liq - Decimal("90.36144578313253")) < Decimal("1e-12")


def test_worst_order_inside_a_candle(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "open_time,open,high,low,close\n"
        f"{T0},100,100,100,100\n{T0 + MIN},100,101,90.3,100\n{T0 + 2 * MIN},100,100,100,100\n"
    )
    long = replay(position_from_spec(SPEC), load_history(path), [_rule(r) for r in DEFAULT_RULES])
    assert long.liquidated_at_ms == T0 + MIN and long.adverse_first == "low"
    short = replay(
        position_from_spec("BTC/USDT:USDT short 1 @ 100 x10 cross"),
        load_history(path),
        [_rule(r) for r in DEFAULT_RULES],
    )
    assert short.adverse_first == "high" and short.liquidated_at_ms is None


def test_the_real_data_files_load() -> None:
    btc = load_history(DATA / "2021-05-19_binance-spot_BTC_USDT-1m_2021-04-20_2021-05-20.json")
    assert len(btc.candles) == 42915 and btc.interval_ms == MIN
    # the README's one real gap: 2021-04-25 04:00-08:45
    assert [(g.missing) for g in btc.gaps] == [284]
    eth = load_history(DATA / "2024-08-05_binance-spot_ETH_USDT-1m_2024-07-26_2024-08-25.feather")
    assert len(eth.candles) == 43208 and eth.gaps == ()
    mark = load_history(DATA / "2025-10-10_binance-coinm_BTCUSD_PERP_markPrice-1m.zip")
    assert len(mark.candles) == 1440 and mark.candles[0].open == Decimal("121662")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([f"{T0},100", f"{T0},101"], "row 2: duplicate time"),
        (
            [f"{T0 + MIN},100", f"{T0},101"],
            "row 2: time 2023-11-14T22:13:00Z is before the row above (2023-11-14T22:14:00Z)",
        ),
        ([f"{T0},abc"], "row 1 price: not a number: 'abc'"),
        ([f"{T0},-5"], "a price must be positive"),
    ],
)
def test_bad_histories_are_named(tmp_path: Path, rows: list[str], message: str) -> None:
    with pytest.raises(InputError) as info:
        load_history(csv_file(tmp_path, rows))
    assert message in str(info.value)


def test_unknown_columns_and_gaps(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("when,value\n1,2\n")
    with pytest.raises(InputError) as info:
        load_history(path)
    assert "no time column" in str(info.value) and "found when, value" in str(info.value)
    gapped = load_history(
        csv_file(tmp_path, [f"{T0},1", f"{T0 + MIN},1", f"{T0 + 5 * MIN},1", f"{T0 + 6 * MIN},1"])
    )
    assert [(g.start_ms, g.end_ms, g.missing) for g in gapped.gaps] == [(T0 + MIN, T0 + 5 * MIN, 3)]


def test_cli_json_and_errors(tmp_path: Path) -> None:
    prices = flat(tmp_path, PATH)
    result = alertd("replay", str(prices), "--position", SPEC, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["liquidated_at"] == "2023-11-14T22:19:00Z"
    first = data["alerts"][0]
    assert first == {
        "at": "2023-11-14T22:15:00Z",
        "rule": "liquidation-distance-critical",
        "severity": "critical",
        "kind": "firing",
        "subject": "replay/BTC/USDT:USDT/long",
        "value": first["value"],
        "lead_time_s": 240.0,
        "warning": "before",
    }
    bad = alertd("replay", str(prices), "--position", "BTC long lots")
    assert bad.returncode == 2 and "expected 'SYMBOL long|short SIZE @ ENTRY" in bad.stderr
    table = alertd("replay", str(prices), "--position", SPEC)
    assert "liquidated at 2023-11-14T22:19:00Z" in table.stdout


def test_cli_table_names_subjects_and_says_when_nothing_fired(tmp_path: Path) -> None:
    # a gap after the liquidation (at minute 6) is outside what was replayed: not reported
    rows = [f"{T0 + i * MIN},{p}" for i, p in enumerate(PATH)]
    rows += [f"{T0 + 20 * MIN},95", f"{T0 + 21 * MIN},95"]
    table = alertd("replay", str(csv_file(tmp_path, rows)), "--position", SPEC)
    assert table.returncode == 0, table.stderr
    assert "Subject" in table.stdout and "replay/BTC/USDT:USDT/long" in table.stdout
    assert "gap:" not in table.stdout
    calm = flat(tmp_path, ["100", "101", "100.5"])
    quiet = alertd("replay", str(calm), "--position", SPEC)
    assert quiet.returncode == 0, quiet.stderr
    assert "no alert fired (3 rules watched)" in quiet.stdout
    assert "Alerts" not in quiet.stdout
    # a gap inside the replayed window is still reported
    minutes = [0, 1, 2, 6, 7]
    gapped = csv_file(tmp_path, [f"{T0 + m * MIN},100" for m in minutes], "g.csv")
    assert "3 candles missing" in alertd("replay", str(gapped), "--position", SPEC).stdout


def test_plot_is_a_png_of_the_expected_size(tmp_path: Path) -> None:
    from alertd.replay.plot import png_size

    prices = flat(tmp_path, PATH)
    out = tmp_path / "replay.png"
    result = alertd(
        "replay", str(prices), "--position", SPEC, "--plot", str(out), "--json", timeout_s=120
    )
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (1600, 900)
    assert out.stat().st_size > 10_000  # a drawn chart, not an empty canvas


def test_sweep_counts_leads_and_false_alarms(tmp_path: Path) -> None:
    # two days of a slow 10% fall then a recovery: high leverage liquidates, low does not
    prices = [str(100 - i * 0.01) for i in range(1000)] + ["90"] * 440 + ["100"] * 1440
    history = load_history(flat(tmp_path, prices))
    from alertd.engine.model import MarginMode
    from alertd.replay.sweep import sweep

    rows = sweep(
        "BTC/USDT:USDT",
        "long",
        MarginMode.CROSS,
        history,
        [_rule(r) for r in DEFAULT_RULES],
        leverages=(5, 20),
        every_s=86_400,
        window_s=86_400,
    )
    five, twenty = rows
    assert (five.runs, five.liquidated) == (2, 0)
    assert twenty.runs == 2 and twenty.liquidated == 1  # the entry during the fall
    distance = twenty.rules["liquidation-distance-critical"]
    assert distance.fired_before_liquidation == 1 and distance.lead_times_s[0] > 0
    result = alertd(
        "replay",
        str(flat(tmp_path, prices)),
        "--position",
        SPEC,
        "--sweep",
        "--json",
        timeout_s=300,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [row["leverage"] for row in data["rows"]] == [5, 10, 20, 50, 100]


@pytest.mark.parametrize(
    ("spec", "start"),
    [
        ("BTC/USDT:USDT long 1 @ 38700 x20 cross", "2021-05-19T12:00:00Z"),
        ("BTC/USDT:USDT long 1 @ 43000 x10 isolated", "2021-05-19T00:00:00Z"),
        ("BTC/USDT:USDT short 1 @ 30000 x20 cross", "2021-05-19T13:10:00Z"),
    ],
)
def test_the_idle_shortcut_changes_nothing(spec: str, start: str) -> None:
    from alertd.cli.replay import parse_time as _when
    from alertd.replay.history import window

    history = load_history(DATA / "2021-05-19_binance-spot_BTC_USDT-1m_2021-04-20_2021-05-20.json")
    begin = _when(start, "--start")
    assert begin is not None
    history = window(history, begin, begin + 2 * 86_400_000)
    rules = [_rule(r) for r in DEFAULT_RULES]
    fast = replay(position_from_spec(spec), history, rules)
    slow = replay(position_from_spec(spec), history, rules, shortcut=False)
    assert fast.alerts == slow.alerts and fast.alerts
    assert fast.liquidated_at_ms == slow.liquidated_at_ms
    assert fast.points == slow.points
