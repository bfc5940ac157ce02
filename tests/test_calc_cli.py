"""``alertd calc`` as a user runs it: a subprocess, its output, its exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from .support.process import alertd
from .support.snapshots import position, snapshot, tiers

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))

# product.md, "Snapshot format": the names `alertd calc --json` must use.
ACCOUNT_FIELDS = {
    "margin_balance",
    "maintenance_margin",
    "margin_ratio",
    "buffer",
    "crash_distance",
}
POSITION_FIELDS = {
    "notional",
    "unrealized_pnl",
    "maintenance_margin",
    "margin_ratio",
    "liquidation_price",
    "bankruptcy_price",
    "liquidation_distance",
}


def write(tmp_path: Path, data: Any, name: str = "snap.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def calc_json(*args: str) -> dict[str, Any]:
    result = alertd("calc", *args, "--json")
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_every_example_profile_is_shipped() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"binanceusdm", "binancecoinm", "bybit", "okx", "gate", "hyperliquid"} <= names


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_json_output_has_the_contract_fields(example: Path) -> None:
    out = calc_json(str(example))
    assert set(out) == {"account", "positions"}
    assert set(out["account"]) >= ACCOUNT_FIELDS
    snap = json.loads(example.read_text())
    assert len(out["positions"]) == len(snap["positions"])
    # alertd's ratio in the exchange's form is alertd's number, named as such: no field
    # claims to be the exchange's own (only `alertd snapshot` shows the exchange's numbers)
    assert "margin_ratio_in_exchange_form" in out["account"]
    assert not any(key.startswith("exchange_margin") for key in out["account"])
    for pos in out["positions"]:
        assert set(pos) >= POSITION_FIELDS
        assert "margin_ratio_in_exchange_form" in pos and "exchange_margin_ratio" not in pos
        for name in POSITION_FIELDS:
            value = pos[name]
            assert value is None or isinstance(value, str)
            if value is not None:
                Decimal(value)  # a decimal string, never a float


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_table_output_names_account_and_positions(example: Path) -> None:
    result = alertd("calc", str(example))
    assert result.returncode == 0, result.stderr
    snap = json.loads(example.read_text())
    assert snap["account"] in result.stdout
    for pos in snap["positions"]:
        assert pos["symbol"] in result.stdout
    assert "Margin ratio" in result.stdout and "Liq. price" in result.stdout


def faq_long() -> dict[str, Any]:
    """Binance's single-position FAQ: 500 USDT, 0.02 BTC long at 50,000 (liquidation 25,100.40)."""
    btc = position("BTC/USDT:USDT", "long", "0.02", "50000", "50000", tiers([(None, "0.004", "0")]))
    return snapshot("binanceusdm", "500", [btc])


def test_table_shows_the_same_numbers_as_json(tmp_path: Path) -> None:
    path = write(tmp_path, faq_long())
    out = calc_json(str(path))
    assert Decimal(out["positions"][0]["liquidation_price"]).quantize(Decimal("0.01")) == Decimal(
        "25100.40"
    )
    table = alertd("calc", str(path)).stdout
    assert "25,100.40" in table
    assert "500.00 USDT" in table


def test_mark_and_move_what_ifs(tmp_path: Path) -> None:
    path = write(tmp_path, faq_long())
    liq = calc_json(str(path))["positions"][0]["liquidation_price"]
    at_liq = calc_json(str(path), "--mark", f"BTC/USDT:USDT={liq}")
    assert abs(Decimal(at_liq["account"]["margin_ratio"]) - 1) < Decimal("1e-20")
    moved = calc_json(str(path), "--move", "-10")
    assert Decimal(moved["positions"][0]["mark_price"]) == Decimal(45000)
    both = calc_json(str(path), "--mark", "BTC/USDT:USDT=40000", "--move", "+10%")
    assert Decimal(both["positions"][0]["mark_price"]) == Decimal(44000)


def test_target_ratio_gives_margin_to_add(tmp_path: Path) -> None:
    snap = snapshot(
        "binanceusdm",
        "300",
        [position("BTC/USDT:USDT", "long", "0.5", "60000", "59000", tiers([(None, "0.004", "0")]))],
    )
    out = calc_json(str(write(tmp_path, snap)), "--target-ratio", "0.2")
    account = out["account"]
    # MM 0.5 * 59,000 * 0.4% = 118; balance 300 - 500 = -200: liquidated
    assert account["margin_ratio"] == "Infinity"
    assert account["crash_distance"] == "0"
    assert account["margin_to_add"] == str(Decimal(118) / Decimal("0.2") + 200)


def test_null_where_a_figure_does_not_exist(tmp_path: Path) -> None:
    # a 1x long: no positive price liquidates it
    snap = snapshot(
        "binanceusdm",
        "100000",
        [position("BTC/USDT:USDT", "long", "1", "50000", "50000", tiers([(None, "0.004", "0")]))],
    )
    pos = calc_json(str(write(tmp_path, snap)))["positions"][0]
    assert pos["liquidation_price"] is None
    assert pos["liquidation_distance"] is None
    assert pos["bankruptcy_price"] is None


def bad(tmp_path: Path, data: Any, *extra: str) -> str:
    result = alertd("calc", str(write(tmp_path, data)), *extra)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return result.stderr


def good_position(**changes: Any) -> dict[str, Any]:
    p = position(
        "BTC/USDT:USDT",
        "long",
        "1",
        "50000",
        "49000",
        tiers([("50000", "0.004", "0"), (None, "0.005", "50")]),
    )
    p.update(changes)
    return p


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    err = bad(tmp_path, '{\n  "schema": 1,\n  "exchange": "binanceusdm",,\n}')
    assert "snap.json:3:29: malformed JSON" in err
    assert err.count("\n") == 1


def test_missing_field_names_its_path(tmp_path: Path) -> None:
    second = good_position(symbol="ETH/USDT:USDT")
    del second["entry_price"]
    err = bad(tmp_path, snapshot("binanceusdm", "1000", [good_position(), second]))
    assert err.strip() == "alertd: positions[1].entry_price: missing"


def test_negative_size(tmp_path: Path) -> None:
    err = bad(tmp_path, snapshot("binanceusdm", "1000", [good_position(contracts="-0.5")]))
    assert err.strip() == "alertd: positions[0].contracts: must be greater than 0 (got -0.5)"


def test_unknown_exchange_suggests_the_closest(tmp_path: Path) -> None:
    err = bad(tmp_path, snapshot("bianance", "1000", [good_position()]))
    assert (
        err.strip() == "alertd: exchange: unknown exchange 'bianance' (did you mean binanceusdm?)"
    )


def test_tiers_out_of_order(tmp_path: Path) -> None:
    p = good_position(
        tiers=tiers([("50000", "0.004", "0"), ("40000", "0.005", "50"), (None, "0.01", "250")])
    )
    err = bad(tmp_path, snapshot("binanceusdm", "1000", [p]))
    assert err.strip() == (
        "alertd: positions[0].tiers[1].max_notional: tiers out of order: "
        "cap 40000 is not above the previous cap 50000"
    )


def test_isolated_without_isolated_margin(tmp_path: Path) -> None:
    p = good_position(margin_mode="isolated", isolated_margin=None)
    err = bad(tmp_path, snapshot("binanceusdm", "1000", [p]))
    assert err.strip() == "alertd: positions[0].isolated_margin: required for an isolated position"


def test_every_problem_is_listed(tmp_path: Path) -> None:
    first = good_position(side="sideways")
    second = good_position(symbol="ETH/USDT:USDT", mark_price="abc")
    err = bad(tmp_path, snapshot("binanceusdm", "1000", [first, second]))
    lines = err.strip().splitlines()
    assert lines == [
        "alertd: positions[0].side: must be 'long' or 'short' (got 'sideways')",
        "alertd: positions[1].mark_price: not a decimal number: 'abc'",
    ]


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    result = alertd("calc", str(tmp_path / "nope.json"))
    assert result.returncode == 2 and "cannot read" in result.stderr
    path = write(tmp_path, snapshot("binanceusdm", "1000", [good_position()]))
    for args, message in (
        (
            ["--mark", "BTC/USDT=1"],
            "no position or collateral at that symbol (did you mean BTC/USDT:USDT?)",
        ),
        (["--mark", "BTC/USDT:USDT=-5"], "price must be positive"),
        (["--move", "-100"], "must be above -100"),
        (["--target-ratio", "2"], "must be above 0 and at most 1"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ):
        result = alertd("calc", str(path), *args)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_deduction_warning_names_the_tier(tmp_path: Path) -> None:
    p = good_position(tiers=tiers([("50000", "0.004", "0"), (None, "0.005", "75")]))
    result = alertd("calc", str(write(tmp_path, snapshot("binanceusdm", "1000", [p]))), "--json")
    assert result.returncode == 0
    assert "tier 2 deduction is 75, the recursion gives 50" in result.stderr
    json.loads(result.stdout)


def test_console_script_entry_point() -> None:
    # installed by `pip install -e .`, as the README says
    exe = Path(sys.executable).parent / "alertd"
    result = subprocess.run(
        [str(exe), "calc", str(EXAMPLES[0]), "--json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["account"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_snapshot_json_round_trips(example: Path) -> None:
    from alertd.engine.margin import compute
    from alertd.snapshot.format import account_to_json, parse_snapshot

    first = parse_snapshot(example.read_text()).account
    again = parse_snapshot(json.dumps(account_to_json(first))).account
    assert again == first
    assert compute(again) == compute(first)


@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_the_key_figures_fit_the_terminal(example: Path, width: int) -> None:
    """In 80 to 149 columns the positions' key figures (position, size, mark, liquidation
    price, distance, ratio) are one table that fits, every figure whole."""
    import io
    from decimal import Decimal

    from rich.console import Console

    from alertd.engine.margin import compute
    from alertd.snapshot.format import load_snapshot
    from alertd.views import format as fmt
    from alertd.views.report import render

    metrics = compute(load_snapshot(example).account, Decimal("0.5"))
    out = io.StringIO()
    render(metrics, Console(file=out, width=width, highlight=False, markup=False, emoji=False))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    key = text.split("Positions", 1)[1].split("Position details", 1)[0]
    assert "…" not in key
    for pm in metrics.positions:
        row = next(
            line
            for line in key.splitlines()
            if f"{pm.position.symbol} {pm.position.side.label} " in line
        )
        assert fmt.price(pm.liquidation_price) in row
        assert fmt.price(pm.position.mark_price) in row
        assert fmt.percent(pm.liquidation_distance) in row


@pytest.mark.parametrize(
    ("gap", "problem"),
    [
        ({"what": "a tax", "share": "1.5"}, "fee_gap.share: input should be less than or equal"),
        ({"what": "a tax", "share": "0"}, "fee_gap.share: must be greater than 0"),
        ({"share": "0.18"}, "fee_gap.what: missing"),
    ],
)
def test_a_fee_gap_calc_cannot_use_names_its_field(
    tmp_path: Path, gap: dict[str, Any], problem: str
) -> None:
    """A snapshot's ``fee_gap`` (a part of the fee rates no read could tell) is checked as every
    other field: one line naming it, exit 2."""
    data = {**snapshot("bybit", "1000", [good_position()]), "schema": 2, "fee_gap": gap}
    err = bad(tmp_path, data)
    assert err.startswith(f"alertd: {problem}"), err
    assert err.count("\n") == 1
