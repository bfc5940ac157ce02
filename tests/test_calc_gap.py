"""``alertd calc`` shows the gap figures (issue 15): every position's bankruptcy buffer and,
with an order book (the snapshot's ``order_books`` or ``--book FILE``, a saved ccxt
``fetch_order_book`` answer), the close slippage, the shortfall past bankruptcy of a close at
liq., and the daemon's own lines ("→ cut 0.556 BTC/USDT:USDT to fit the book")."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from .support.process import alertd
from .test_e2e_gap_risk import ASKS, BANKRUPT, LIQ, THIN_BIDS, expected_gap

D = Decimal
BTC = "BTC/USDT:USDT"


def snapshot(tmp_path: Path, **more: Any) -> Path:
    """1 BTC long at 60,000 on 2,000 USDT cross, maintenance margin 0.4% (the e2e gap test's
    account: liq. 58,000 / 0.996, bankruptcy 58,000), Binance's 0.001 BTC lot."""
    data = {
        "schema": 2,
        "exchange": "binanceusdm",
        "account": "main",
        "settle": "USDT",
        "cross": {"wallet_balance": "2000"},
        "positions": [
            {
                "symbol": BTC,
                "side": "long",
                "contracts": "1",
                "contract_size": "1",
                "entry_price": "60000",
                "mark_price": "60000",
                "margin_mode": "cross",
                "lot_size": "0.001",
                "tiers": [{"max_notional": "1000000000", "mmr": "0.004", "deduction": "0"}],
            }
        ],
        **more,
    }
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(data))
    return path


def thin_book() -> dict[str, Any]:
    return {"bids": [list(level) for level in THIN_BIDS], "asks": [list(level) for level in ASKS]}


def calc(*args: str) -> dict[str, Any]:
    run = alertd("calc", *args, "--json")
    assert run.returncode == 0, run.stderr
    (position,) = json.loads(run.stdout)["positions"]
    assert isinstance(position, dict)
    return position


def test_calc_gives_the_shortfall_and_the_cut_from_the_snapshot_s_book(tmp_path: Path) -> None:
    path = snapshot(tmp_path, order_books={BTC: thin_book()})
    position = calc(str(path))
    shortfall, fits = expected_gap()
    cut = (1 - fits).quantize(D("0.001"), rounding="ROUND_CEILING")
    assert D(position["bankruptcy_buffer"]) == (LIQ - BANKRUPT) / D(60000)
    assert abs(D(position["gap_risk"]) - shortfall) < D("1e-9"), position
    # a market close now sells 0.2 at 59,990, 0.2 at 59,700 and 0.6 at 59,000
    average = (D("0.2") * 59990 + D("0.2") * 59700 + D("0.6") * 59000) / 1
    assert D(position["close_slippage"]) == (60000 - average) / 60000
    notes = position["book_notes"]
    assert notes[-1] == f"→ cut {cut} {BTC} to fit the book", notes
    assert any(n.startswith("a market close fills 59,338.00 avg") for n in notes), notes

    table = alertd("calc", str(path), env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert table.returncode == 0, table.stderr
    out = table.stdout
    assert "Gap risk" in out and f"{shortfall:,.2f}" in out, out
    assert f"→ cut {cut} {BTC} to fit the book" in out, out


def test_a_book_file_replaces_the_snapshot_s_and_a_deep_book_has_no_gap(tmp_path: Path) -> None:
    path = snapshot(tmp_path, order_books={BTC: thin_book()})
    # ccxt's fetch_order_book answer as saved: symbol, timestamps, nonce (not read)
    deep = {
        "symbol": BTC,
        "bids": [[59990.0, 10.0]],
        "asks": [[60010.0, 10.0]],
        "timestamp": 1_765_000_000_000,
        "datetime": "2025-12-06T05:46:40.000Z",
        "nonce": 123,
    }
    book = tmp_path / "book.json"
    book.write_text(json.dumps(deep))
    position = calc(str(path), "--book", str(book))
    assert D(position["gap_risk"]) == 0
    assert not any("cut" in n for n in position["book_notes"]), position
    # without any book: the buffer still, the book figures none (not zero)
    bare = calc(str(snapshot(tmp_path)))
    assert bare["bankruptcy_buffer"] is not None
    assert bare["gap_risk"] is None and bare["close_slippage"] is None
    table = alertd("calc", str(snapshot(tmp_path)), env={"COLUMNS": "80", "PATH": "/usr/bin"})
    assert table.returncode == 0 and "no book" in table.stdout, table.stdout


@pytest.mark.parametrize(
    ("book", "problem"),
    [
        (
            {"ETH/USDT:USDT": {"bids": [["3000", "1"]]}},
            "order_books.ETH/USDT:USDT: no position at ETH/USDT:USDT (held: BTC/USDT:USDT)",
        ),
        (
            {BTC: {"bids": [["59000", "1"], ["59500", "1"]]}},
            f"order_books.{BTC}.bids[1]: prices must go down level by level",
        ),
        (
            {BTC: {"bids": [["-1", "1"]]}},
            f"order_books.{BTC}.bids[0]: a level needs a positive price",
        ),
        (
            {BTC: {"bids": [["60020", "1"]], "asks": [["60010", "1"]]}},
            f"order_books.{BTC}: crossed (best bid 60020 >= best ask 60010)",
        ),
        ({BTC: {"bids": [["60020"]]}}, f"order_books.{BTC}.bids[0]: a level is [price, amount]"),
        ({BTC: {"bids": [["x", "1"]]}}, f"order_books.{BTC}.bids[0][0]"),
    ],
)
def test_a_bad_book_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, book: dict[str, Any], problem: str
) -> None:
    run = alertd("calc", str(snapshot(tmp_path, order_books=book)))
    assert run.returncode == 2, run.stdout
    assert problem in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_a_bad_book_file_names_the_file(tmp_path: Path) -> None:
    path = snapshot(tmp_path)
    nameless = tmp_path / "nameless.json"
    nameless.write_text(json.dumps(thin_book()))
    run = alertd("calc", str(path), "--book", str(nameless))
    assert run.returncode == 2 and f"--book {nameless}: symbol" in run.stderr, run.stderr
    missing = tmp_path / "missing.json"
    run = alertd("calc", str(path), "--book", str(missing))
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
