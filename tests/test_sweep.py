"""``alertd replay --sweep`` tells the truth: an alert in the liquidation's minute is not a
warning, an alert at entry is counted apart from lead times, the issue's scenario (entered an
hour before the largest move; calm days) is chosen from the data, a progress bar shows on a
terminal only, and ``--plot`` draws the sweep's chart; the replay chart marks the entry, says
the price unit and keeps its labels inside the axes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from alertd.config import DEFAULT_RULES
from alertd.daemon.evaluation import _rule
from alertd.engine.model import MarginMode
from alertd.replay.history import History, load_history
from alertd.replay.run import AT_ENTRY, BEFORE, TOO_LATE, position_from_spec, replay
from alertd.replay.sweep import (
    Entry,
    SweepRow,
    before_the_move,
    calm_day_entries,
    calm_days,
    largest_move,
    sweep,
)
from alertd.rules.model import Condition, Rule, Scope, Severity

from .support.process import ROOT, alertd_command

T0 = 1_700_006_400_000  # 2023-11-15 00:00 UTC: a day's start
MIN = 60_000
DAY = 86_400_000
SPEC = "BTC/USDT:USDT long 1 @ 100 x10 isolated"


def ohlc_file(tmp_path: Path, rows: list[tuple[float, float, float, float]], name: str) -> Path:
    path = tmp_path / name
    lines = [f"{T0 + i * MIN},{o},{h},{lo},{c}" for i, (o, h, lo, c) in enumerate(rows)]
    path.write_text("open_time,open,high,low,close\n" + "\n".join(lines) + "\n")
    return path


def flat(price: float) -> tuple[float, float, float, float]:
    return (price, price, price, price)


def distance_rule(below: str, name: str = "dist") -> Rule:
    return Rule(
        name=name,
        condition=Condition("liquidation_distance", Scope.POSITION, below=Decimal(below)),
        severity=Severity.CRITICAL,
    )


def sweep_one(history: History, rules: list[Rule], end_ms: int) -> SweepRow:
    """One 10x isolated long entered at the first candle, replayed to ``end_ms``."""
    (row,) = sweep(
        "BTC/USDT:USDT",
        "long",
        MarginMode.ISOLATED,
        history,
        rules,
        leverages=(10,),
        entries=[Entry(0, end_ms)],
    )
    return row


# 10x isolated long at 100 with 0.4% maintenance: liquidation at 90 / 0.996 = 90.36


def test_an_alert_in_the_liquidation_minute_is_too_late(tmp_path: Path) -> None:
    # minute 2 opens at 92.5 (2.4% from liquidation: the 3% rule fires) and falls to 89 in
    # the same minute: the alert came 0 minutes before: not a warning
    rows = [flat(100), flat(99), (92.5, 92.5, 89, 89)]
    history = load_history(ohlc_file(tmp_path, rows, "late.csv"))
    rules = [distance_rule("0.03")]
    result = replay(position_from_spec(SPEC), history, rules)
    assert result.liquidated_at_ms == T0 + 2 * MIN
    (alert,) = [a for a in result.alerts if a.kind == "firing"]
    assert result.lead_time_s(alert) == 0 and result.timing(alert) == TOO_LATE
    row = sweep_one(history, rules, T0 + 10 * MIN)
    st = row.rules["dist"]
    assert (st.fired_before_liquidation, st.too_late, st.missed, st.warned_at_entry) == (0, 1, 0, 0)
    assert st.lead_times_s == [] and row.first.too_late == 1


def test_an_alert_only_at_the_liquidating_price_is_missed(tmp_path: Path) -> None:
    rows = [flat(100), flat(99), flat(85)]  # straight through the liquidation price
    history = load_history(ohlc_file(tmp_path, rows, "gap.csv"))
    row = sweep_one(history, [distance_rule("0.03")], T0 + 10 * MIN)
    assert row.liquidated == 1 and row.rules["dist"].missed == 1 and row.first.missed == 1


def test_a_warning_a_minute_ahead_has_a_lead_time(tmp_path: Path) -> None:
    rows = [flat(100), flat(99), flat(92.5), flat(85)]
    history = load_history(ohlc_file(tmp_path, rows, "ahead.csv"))
    result = replay(position_from_spec(SPEC), history, [distance_rule("0.03")])
    (alert,) = [a for a in result.alerts if a.kind == "firing"]
    assert result.timing(alert) == BEFORE and result.lead_time_s(alert) == 60


def test_an_alert_at_entry_is_counted_apart_from_lead_times(tmp_path: Path) -> None:
    # 10% from liquidation at entry: a 12% distance rule fires in the entry's minute; the
    # position is liquidated 5 minutes later
    rows = [flat(100), flat(98), flat(96), flat(94), flat(92), flat(85)]
    history = load_history(ohlc_file(tmp_path, rows, "entry.csv"))
    rules = [distance_rule("0.12"), distance_rule("0.03", "dist3")]
    result = replay(position_from_spec(SPEC), history, rules)
    first = next(a for a in result.alerts if a.kind == "firing")
    assert result.timing(first) == AT_ENTRY
    row = sweep_one(history, rules, T0 + 10 * MIN)
    wide, narrow = row.rules["dist"], row.rules["dist3"]
    assert wide.warned_at_entry == 1 and wide.lead_times_s == []
    assert wide.at_entry_lived_s == [300.0]
    assert narrow.fired_before_liquidation == 1 and narrow.lead_times_s == [60.0]
    assert row.first.warned_at_entry == 1 and row.first.lead_times_s == []


def test_false_alarms_are_counted_per_position_day(tmp_path: Path) -> None:
    # a dip to 93 and back, twice, in a day that never liquidates: two firings of the 3% rule
    prices = [100.0] * 600 + [93.0] * 10 + [100.0] * 400 + [93.0] * 10 + [100.0] * 420
    history = load_history(ohlc_file(tmp_path, [flat(p) for p in prices], "dips.csv"))
    row = sweep_one(history, [distance_rule("0.03")], T0 + DAY - MIN)
    assert row.liquidated == 0 and row.rules["dist"].false_alarms == 2
    assert row.rules["dist"].false_alarms_at_entry == 0
    assert row.position_days == pytest.approx(1.0)
    assert row.per_position_day(row.rules["dist"]) == pytest.approx(2.0)
    # a rule the position breaches from its entry on (10x: about 9.6% from liquidation)
    wide = sweep_one(history, [distance_rule("0.12")], T0 + DAY - MIN)
    assert wide.first.false_alarms == wide.first.false_alarms_at_entry == 1


def test_the_largest_move_and_the_entry_before_it(tmp_path: Path) -> None:
    # a 3% dip at minute 100, a 10% fall from minute 300 to 340, a 5% rally from minute 500
    prices = [100.0] * 600
    for m in range(100, 110):
        prices[m] = 97.0
    for m in range(300, 341):
        prices[m] = 100 - 10 * (m - 300) / 40
    for m in range(341, 500):
        prices[m] = 90.0
    for m in range(500, 600):
        prices[m] = 90 * 1.05
    history = load_history(ohlc_file(tmp_path, [flat(p) for p in prices], "moves.csv"))
    start, size = largest_move(history, True, 3600)
    # the fall's start: the last minute at 100 before it (of equal moves, the latest start)
    assert history.candles[start].t_ms == T0 + 300 * MIN and size == pytest.approx(0.1)
    entry, at, _ = before_the_move(history, True, 3600, 3600, 86_400)
    assert at == start and history.candles[entry.index].t_ms == T0 + 240 * MIN
    assert entry.end_ms == T0 + 240 * MIN + DAY
    rally, rally_size = largest_move(history, False, 3600)
    assert history.candles[rally].t_ms == T0 + 499 * MIN
    assert rally_size == pytest.approx(0.05)


def test_calm_days_are_the_calmer_half_of_whole_days(tmp_path: Path) -> None:
    # four whole days, ranges 1%, 2%, 8%, 3% (and a partial fifth): calm = the 1% and 2% days
    rows = []
    for rng in (0.01, 0.02, 0.08, 0.03):
        for m in range(1440):
            price = 100 * (1 + rng) if m == 700 else 100.0
            rows.append(flat(price))
    rows += [flat(100.0)] * 100
    history = load_history(ohlc_file(tmp_path, rows, "days.csv"))
    assert calm_days(history) == [T0, T0 + DAY]
    entries = calm_day_entries(history, 3600)
    assert len(entries) == 48
    assert {e.end_ms for e in entries} == {T0 + DAY - MIN, T0 + 2 * DAY - MIN}


def _sweep_prices(tmp_path: Path) -> Path:
    prices = [100.0] * 200 + [100 - i * 0.1 for i in range(150)] + [85.0] * 100
    return ohlc_file(tmp_path, [flat(p) for p in prices], "fall.csv")


def _sweep_args(tmp_path: Path, every: str, length: str) -> list[str]:
    prices = str(_sweep_prices(tmp_path))
    return ["replay", prices, "--position", SPEC, "--sweep", "--every", every, "--window", length]


def _run(args: list[str], stderr_tty: bool) -> tuple[int, str, str]:
    """``alertd`` with its stderr on a pseudo-terminal (or a pipe): exit code, stdout, stderr."""
    if not stderr_tty:
        done = subprocess.run(
            alertd_command(*args), cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        alertd_command(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    seen = b""
    while True:  # bounded: the process ends and the terminal closes
        ready, _, _ = select.select([master], [], [], 300)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=300)
    os.close(master)
    return proc.returncode, out, seen.decode(errors="replace")


def test_a_progress_bar_on_a_terminal_and_none_in_a_pipe(tmp_path: Path) -> None:
    # one leverage: the bar and the clean output are the point, not the sweep's size (the five
    # default leverages made it five times the work)
    args = [*_sweep_args(tmp_path, "30m", "3h"), "--leverage", "5", "--json"]
    code, out, err = _run(args, stderr_tty=True)
    assert code == 0, err
    assert "sweeping" in err  # rich draws the bar on the terminal
    assert json.loads(out)["rows"][0]["leverage"] == 5  # stdout stays clean JSON
    code, out, err = _run(args, stderr_tty=False)
    assert code == 0 and err == ""


def test_plot_with_sweep_draws_lead_time_against_false_alarms(tmp_path: Path) -> None:
    from alertd.replay.plot import png_size

    out = tmp_path / "sweep.png"
    code, stdout, err = _run(
        [
            *_sweep_args(tmp_path, "1h", "4h"),
            "--leverage",
            "10,20",
            "--plot",
            str(out),
        ],
        stderr_tty=False,
    )
    assert code == 0, err
    assert png_size(out) == (1600, 900) and out.stat().st_size > 10_000
    assert "(first alert)" in stdout and "At entry" in stdout


def test_sweep_options_without_sweep_are_refused(tmp_path: Path) -> None:
    for extra in (["--calm"], ["--before-move", "1h"], ["--leverage", "10"]):
        code, _out, err = _run(
            ["replay", str(_sweep_prices(tmp_path)), "--position", SPEC, *extra],
            stderr_tty=False,
        )
        assert code == 2 and len(err.strip().splitlines()) == 1 and "--sweep" in err, err
    code, _, err = _run(
        ["replay", str(_sweep_prices(tmp_path)), "--position", SPEC, "--sweep", "--leverage", "x"],
        stderr_tty=False,
    )
    assert code == 2 and "--leverage" in err and len(err.strip().splitlines()) == 1


def test_the_replay_chart_marks_the_entry_states_the_unit_and_keeps_labels_inside() -> None:
    from alertd.replay.history import window
    from alertd.replay.plot import figure

    data = ROOT.parent / "shared" / "data"
    full = load_history(data / "2021-05-19_binance-spot_BTC_USDT-1m_2021-04-20_2021-05-20.json")
    start = 1_621_425_600_000  # 2021-05-19 12:00 UTC
    history = window(full, start, start + 2 * 3600_000)
    rules = [_rule(r) for r in DEFAULT_RULES]
    result = replay(position_from_spec("BTC/USDT:USDT long 1 @ 38700 x20 cross"), history, rules)
    assert result.alerts
    fig = figure(result, history)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "price (USDT per BTC)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(text.startswith("entry 2021-05-19 12:00 UTC @ ") for text in labels)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    annotations = [t for t in ax.texts if t.get_text()]
    assert annotations
    for text in annotations:
        extent = text.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1, text.get_text()


def test_an_inverse_symbol_states_its_unit() -> None:
    from alertd.replay.plot import price_unit

    assert price_unit("BTC/USD:BTC") == "USD per BTC"
    assert price_unit("ETH/USDC:USDC") == "USDC per ETH"
