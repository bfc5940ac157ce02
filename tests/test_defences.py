"""Issue 15 items 2-3: concentration, the ADL rank on one scale, the ADL risk metric and the
built-in warnings' messages. Pure: the engine, the registry and the message renderer."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.engine.book import Book
from alertd.engine.dynamics import MarkWindow
from alertd.engine.margin import compute, largest_share
from alertd.engine.model import Account
from alertd.exchanges import binance, bybit, gate, okx
from alertd.exchanges.common import AdlScale
from alertd.rules.lifecycle import AlertEngine
from alertd.rules.messages import render
from alertd.rules.metrics import FeedStatus, observe, with_full_metrics
from alertd.rules.model import Condition, Rule, Scope, Severity

from .support.snapshots import account, position, snapshot, tiers
from .test_properties import accounts

FEED = FeedStatus(D(0), D(0), None)
SCALES = {"binance": binance.ADL, "bybit": bybit.ADL, "okx": okx.ADL, "gate": gate.ADL}
# each exchange's levels from last in the queue to first in line, as documented
LEVELS = {
    "binance": [0, 1, 2, 3, 4],  # adlQuantile / positionRisk v3 "adl": 0-4, 4 highest
    "bybit": [1, 2, 3, 4, 5],  # adlRankIndicator 1-5 (0: empty position)
    "okx": [0, 1, 2, 3, 4, 5],  # adl: 0-5, the smaller the weaker
    "gate": [5, 4, 3, 2, 1],  # adl_ranking: 1 highest, 5 lowest (6: none)
}


# --- the ADL scale ---------------------------------------------------------------------------


def test_each_exchange_s_levels_run_from_0_to_1_in_equal_steps() -> None:
    for name, levels in LEVELS.items():
        scale = SCALES[name]
        ranks = [scale.normalise(level) for level in levels]
        step = D(1) / (len(levels) - 1)
        assert ranks == [i * step for i in range(len(levels))], name
        assert all(r is not None and r.is_signed() is False for r in ranks), name  # no -0
        # as the exchanges send them: JSON numbers (Binance, Bybit) or strings (OKX, Gate)
        assert [scale.normalise(str(level)) for level in levels] == ranks, name


def test_the_levels_that_mean_no_rank_and_garbage_give_no_rank() -> None:
    assert bybit.ADL.normalise(0) is None  # "default value of empty position"
    assert gate.ADL.normalise("6") is None  # no position, or in liquidation
    for scale in SCALES.values():
        for bad in (None, "", "x", "1.5", 2.5, True, "NaN", "Infinity", -1, 7, [], {}):
            assert scale.normalise(bad) is None, (scale, bad)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-20, 20),
    st.integers(-20, 20),
    st.integers(-30, 30),
    st.integers(-30, 30),
)
def test_normalisation_is_monotone_bounded_and_exact_at_the_ends(
    lowest: int, highest: int, a: int, b: int
) -> None:
    if lowest == highest:
        return
    scale = AdlScale(lowest, highest)
    assert scale.normalise(lowest) == 0
    assert scale.normalise(highest) == 1
    ra, rb = scale.normalise(a), scale.normalise(b)
    for level, rank in ((a, ra), (b, rb)):
        inside = min(lowest, highest) <= level <= max(lowest, highest)
        assert (rank is not None) == inside
        assert rank is None or 0 <= rank <= 1
    if ra is not None and rb is not None:
        # closer to "first in line" on the exchange's own scale is never lower on alertd's
        towards = 1 if highest > lowest else -1
        assert (ra < rb) == (a * towards < b * towards)


# --- concentration --------------------------------------------------------------------------


def test_largest_share() -> None:
    assert largest_share([]) is None
    assert largest_share([D(5)]) is None  # one position is the whole account
    assert largest_share([D(0), D(0)]) is None
    assert largest_share([D(3), D(1)]) == D("0.75")
    assert largest_share([D(1), D(1), D(2)]) == D("0.5")


def _two(btc_size: str = "1", eth_size: str = "10") -> Account:
    t = tiers([(None, "0.01", "0")])
    btc = position("BTC/USDT:USDT", "long", btc_size, "60000", "60000", t)
    eth = position("ETH/USDT:USDT", "short", eth_size, "3000", "2000", t)
    return account(snapshot("binanceusdm", "20000", [btc, eth]))


def test_concentration_of_a_hand_built_account() -> None:
    # BTC 60,000 of notional, ETH 10 x 2,000 = 20,000: BTC holds 75% of the notional and,
    # at one flat 1% rate, 75% of the maintenance margin too
    m = compute(_two())
    assert m.concentration == D("0.75")
    assert m.margin_concentration == D("0.75")


@settings(max_examples=100, deadline=None)
@given(accounts(hedge=True))
def test_the_book_s_concentration_is_the_full_computation_s(acc: Account) -> None:
    book = Book()
    book.set_account("a", acc)
    live = book.live("a")
    full = compute(acc)
    assert live.concentration == full.concentration
    assert live.margin_concentration == full.margin_concentration
    for share in (full.concentration, full.margin_concentration):
        # the largest of n parts holds at least 1/n (less Decimal's rounding of 1/price)
        assert share is None or D(1) / len(acc.positions) - D("1e-20") <= share <= 1


# --- ADL risk: rank while in profit in a fast market ------------------------------------------


def _fast_window(hourly: float, now: float = 10_000.0) -> MarkWindow:
    """A window of marks zigzagging so that their realized volatility is ``hourly`` an hour
    (each 10 s return of size r: r^2 / 10 s = hourly^2 / 3600 s)."""
    import math

    window = MarkWindow(3600.0)
    r = hourly * math.sqrt(10 / 3600)
    for i in range(120):
        window.add(now - (120 - i) * 10, 60_000 * math.exp(r if i % 2 else 0.0))
    return window


def _adl_values(acc: Account, window: MarkWindow | None) -> list[D | None]:
    book = Book()
    book.set_account("a", acc)
    dynamics = {} if window is None else {"BTC/USDT:USDT": window}
    rules = [Rule("adl", Condition("adl_risk", Scope.POSITION, above=D("0.7")), Severity.WARNING)]
    from alertd.rules.metrics import wanted_of

    seen = observe("a", "binanceusdm", book.live("a"), FEED, wanted_of(rules), dynamics)
    return [o.metrics.get("adl_risk") for o in seen[1:]]


def _with_rank(acc: Account, rank: str | None) -> Account:
    ranked = tuple(replace(p, adl_rank=None if rank is None else D(rank)) for p in acc.positions)
    return replace(acc, positions=ranked)


def test_adl_risk_is_the_rank_of_a_profitable_position_in_a_fast_market_only() -> None:
    # BTC long entered at 60,000 marked at 60,000 (flat); ETH short from 3,000 at 2,000 (profit)
    acc = _with_rank(_two(), "1")
    fast, calm = _fast_window(0.02), _fast_window(0.002)
    btc, eth = _adl_values(acc, fast)
    assert btc == 0  # no profit: never deleveraged
    assert eth is None  # no window for ETH: how fast it moves is unknown, not calm
    profitable = replace(acc, positions=(replace(acc.positions[0], entry_price=D(50000)),))
    assert _adl_values(profitable, fast) == [D(1)]
    assert _adl_values(profitable, calm) == [D(0)]
    assert _adl_values(profitable, None) == [None]
    assert _adl_values(_with_rank(profitable, None), fast) == [None]  # no rank given


def test_the_adl_warning_says_what_it_means_and_what_to_do() -> None:
    acc = _with_rank(_two(), "1")
    acc = replace(acc, positions=(replace(acc.positions[0], entry_price=D(50000)),))
    book = Book()
    book.set_account("a", acc)
    rule = Rule(
        "adl-front", Condition("adl_risk", Scope.POSITION, above=D("0.7")), Severity.WARNING
    )
    engine = AlertEngine([rule])
    from alertd.rules.metrics import wanted_of

    seen = observe(
        "a",
        "binanceusdm",
        book.live("a"),
        FEED,
        wanted_of([rule]),
        {"BTC/USDT:USDT": _fast_window(0.02)},
    )
    (note,) = with_full_metrics(engine.evaluate(seen, 1000.0))
    message = render(note)
    assert message.title == (
        "WARNING a BTC/USDT:USDT long: first in the ADL queue (100.0%) in a fast market"
    )
    assert "at the front of the ADL queue" in message.body
    assert message.body.endswith(
        "→ take some profit or lower its leverage to move back in the queue"
    )


def test_the_leverage_and_concentration_warnings_give_the_cut_that_clears_them() -> None:
    acc = _two()  # cross: 80,000 notional on 20,000 + 10,000 PnL = 30,000: 2.67x
    book = Book()
    book.set_account("a", acc)
    rules = [
        Rule(
            "leverage-high",
            Condition("effective_leverage", Scope.ACCOUNT, above=D(2)),
            Severity.WARNING,
        ),
        Rule(
            "concentrated",
            Condition("concentration", Scope.ACCOUNT, above=D("0.6")),
            Severity.WARNING,
        ),
    ]
    engine = AlertEngine(rules)
    seen = observe("a", "binanceusdm", book.live("a"), FEED)
    notes = with_full_metrics(engine.evaluate(seen, 1000.0))
    texts = {n.rule.name: render(n) for n in notes}
    lev = texts["leverage-high"]
    assert lev.title == "WARNING a: effective leverage 2.67x"
    # 80,000 - 2 x 30,000 = 20,000 of BTC at 60,000: 0.3334 BTC (rounded up), or add 10,000
    assert "a 37.5% move against it wipes out the margin behind it" in lev.body
    assert lev.body.endswith(
        "→ add 10,000.00 USDT for 2.00x effective leverage, or cut 0.3334 BTC/USDT:USDT"
    )
    conc = texts["concentrated"]
    assert conc.title == "WARNING a: largest position 75.0% of notional"
    # (60,000 - x) / (80,000 - x) = 0.6: x = 30,000, half the BTC
    assert conc.body.endswith("→ cut 0.5 BTC/USDT:USDT to bring it to 60%")
    for message in texts.values():
        assert all(len(line) <= 100 for line in message.body.splitlines())


# --- configuration ----------------------------------------------------------------------------

DEFENCES = """
version: 1
accounts:
  - {{name: main, exchange: hyperliquid, wallet_address: "0x{wallet}"}}
builtin_rules: {builtin}
rules:
{rules}
"""


def test_the_built_in_defences_and_their_settings() -> None:
    from alertd.config import parse_config
    from alertd.daemon.evaluation import build_rules

    text = DEFENCES.format(wallet="ab" * 20, builtin="{}", rules="  []")
    rules = {r.name: r for r in build_rules(parse_config(text))}
    lev, conc, adl = rules["leverage-high"], rules["concentrated"], rules["adl-front"]
    assert (lev.metric, lev.scope, lev.condition.above, lev.condition.clear_below, lev.for_s) == (
        "effective_leverage",
        Scope.ACCOUNT,
        D(10),
        D(9),
        300.0,
    )
    assert (conc.metric, conc.condition.above, conc.condition.clear_below) == (
        "concentration",
        D("0.8"),
        D("0.72"),
    )
    assert (adl.metric, adl.scope, adl.condition.above, adl.condition.window_s) == (
        "adl_risk",
        Scope.POSITION,
        D("0.7"),
        900.0,
    )
    builtin = "{leverage_above: 25, concentration: false, adl_window: 1h, defences_for: 2m}"
    text = DEFENCES.format(wallet="ab" * 20, builtin=builtin, rules="  []")
    rules = {r.name: r for r in build_rules(parse_config(text))}
    assert "concentrated" not in rules
    assert (rules["leverage-high"].condition.above, rules["leverage-high"].for_s) == (D(25), 120.0)
    assert rules["adl-front"].condition.window_s == 3600.0
    # a rule of the user's with the same name replaces the built-in
    mine = "  - {name: adl-front, metric: adl_rank, above: 0.9}"
    text = DEFENCES.format(wallet="ab" * 20, builtin="{}", rules=mine)
    assert [r.metric for r in build_rules(parse_config(text)) if r.name == "adl-front"] == [
        "adl_rank"
    ]


def test_check_names_each_bad_defence_setting_in_one_line(tmp_path: Path) -> None:
    from .support.process import alertd

    builtin = "{leverage_above: 0.5, concentration_above: 1.2, adl_rank_above: x, adl_window: 5s}"
    rules = "  - {name: r, metric: adl_rank, above: 4}"
    path = tmp_path / "config.yaml"
    path.write_text(DEFENCES.format(wallet="ab" * 20, builtin=builtin, rules=rules))
    result = alertd("check", "-c", str(path), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 5, lines
    for field in (
        "builtin_rules.leverage_above",
        "builtin_rules.concentration_above",
        "builtin_rules.adl_rank_above",
        "builtin_rules.adl_window",
        "rules[0]",
    ):
        assert sum(line.startswith(f"alertd: {field}") for line in lines) == 1, (field, lines)
    assert any("queue position (0 last, 1 first in line)" in line for line in lines), lines


def test_status_shows_leverage_concentration_and_the_adl_queue() -> None:
    import io

    from rich.console import Console

    from alertd.daemon.view import AccountFigures
    from alertd.views.status import figures_json, render_status

    acc = _with_rank(_two(), "0.75")
    shown = figures_json(AccountFigures.of(compute(acc)))
    assert (shown["concentration"], shown["margin_concentration"]) == ("0.75", "0.75")
    assert shown["effective_leverage"] is not None
    assert [p["adl_rank"] for p in shown["positions"]] == ["0.75", "0.75"]
    data = {
        "source": "daemon",
        "healthy": True,
        "reasons": [],
        "accounts": [{"name": "a", "stale": [], **shown}],
        "firing": [],
        "undelivered": [],
    }
    out = io.StringIO()
    render_status(data, Console(file=out, width=160))
    text = out.getvalue()
    assert "Lev." in text and "Largest" in text and "ADL" in text
    assert "75%" in text
    assert "Position risks" not in text  # one positions table on a wide terminal
    # on 100 columns, as `alertd calc`: the key figures and the risks in two tables, each
    # position in both, nothing cut
    narrow = io.StringIO()
    render_status(data, Console(file=narrow, width=100))
    text = narrow.getvalue()
    assert "Position risks" in text and "…" not in text
    assert all(len(line) <= 100 for line in text.splitlines())
    for p in shown["positions"]:
        assert text.count(f"a {p['symbol']} {p['side']}") == 2
    assert "Liq. price" in text and "Bkr. buffer" in text and "P(liq. 1h)" in text


# --- the insurance fund -----------------------------------------------------------------------


def test_a_fund_history_gives_the_fall_from_its_high_within_the_window() -> None:
    from alertd.engine.insurance import FundHistory

    h = FundHistory(3600.0)
    assert h.drop(3600.0) is None
    assert h.add(0.0, D(1000))
    assert h.drop(3600.0) is None  # one reading: nothing to compare
    h.add(600.0, D(1200))
    assert h.drop(3600.0) == 0  # it rose
    h.add(1200.0, D(900))
    assert h.drop(3600.0) == D("0.25")  # 1,200 -> 900
    assert h.drop(300.0) == 0  # within the last 5 minutes only 900 itself
    assert not h.add(100.0, D(5))  # older than the newest: refused
    assert not h.add(1300.0, D(-1)) and not h.add(1300.0, D("NaN"))
    h.add(4000.0, D(900))  # the 1,000 fell out of the span; the 1,200 is still in
    assert len(h) == 3 and h.drop(3600.0) == D("0.25")
    h.add(4801.0, D(900))  # and now the 1,200 too
    assert len(h) == 2 and h.drop(3600.0) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**9), min_size=2, max_size=40), st.integers(1, 30))
def test_a_fund_s_drop_is_a_fraction_and_memory_stays_bounded(
    balances: list[int], step_minutes: int
) -> None:
    from alertd.engine.insurance import FundHistory

    h = FundHistory(3600.0)
    for i, b in enumerate(balances):
        h.add(i * step_minutes * 60.0, D(b))
        assert len(h) <= 3600 // (step_minutes * 60) + 1
    drop = h.drop(3600.0)
    assert drop is None or 0 <= drop <= 1
    if drop is not None and balances[-1] >= max(balances[-(len(h)) :]):
        assert drop == 0


# Binance "Query Insurance Fund Balance Snapshot" (developers.binance.com, USDⓈ-M futures,
# market data, GET /fapi/v1/insuranceBalance) response example, with a symbol
BINANCE_INSURANCE = {
    "symbols": [
        "BNBUSDT", "BTCUSDT", "BTCUSDT_250627", "BTCUSDT_250926", "ETHBTC", "ETHUSDT",
        "ETHUSDT_250627", "ETHUSDT_250926",
    ],
    "assets": [
        {"asset": "USDC", "marginBalance": "299999998.6497832", "updateTime": 1745366402000},
        {"asset": "USDT", "marginBalance": "793930579.315848", "updateTime": 1745366402000},
        {"asset": "BTC", "marginBalance": "61.73143554", "updateTime": 1745366402000},
        {"asset": "BNFCR", "marginBalance": "633223.99396922", "updateTime": 1745366402000},
    ],
}  # fmt: skip


def test_binance_s_insurance_fund_from_its_published_answer() -> None:
    import pytest

    from alertd.feeds.adapter import FrameError

    assert binance.insurance_balance(BINANCE_INSURANCE, "USDT") == D("793930579.315848")
    assert binance.insurance_balance(BINANCE_INSURANCE, "USDC") == D("299999998.6497832")
    for bad in ([BINANCE_INSURANCE], {"assets": []}, {"assets": [{"asset": "USDT"}]}, None):
        with pytest.raises(FrameError):
            binance.insurance_balance(bad, "USDT")
    assert binance.BinanceUSDMAdapter.reads_insurance_fund
    assert not any(
        spec.adapter.reads_insurance_fund
        for spec in (bybit.SPEC, okx.SPEC, gate.SPEC)
        if spec.adapter is not None
    )


def test_a_stream_without_the_adl_field_keeps_the_rank_rest_gave() -> None:
    from alertd.engine.model import MarginMode, Side
    from alertd.exchanges.common import with_adl
    from alertd.feeds.state import AccountState, PositionState

    state = AccountState("a", binance.USDM_PROFILE, "USDT")
    btc = PositionState("BTC/USDT:USDT", Side.LONG, D(1), D(60000), MarginMode.CROSS)
    # the REST snapshot (positionRisk v3) carries "adl": 4
    state.replace_positions([with_adl(btc, {"adl": 4}, "adl", binance.ADL)], 0.0)
    # Binance's ACCOUNT_UPDATE has no ADL field: the size changes, the rank stays
    state.update_positions([with_adl(btc, {"pa": "2"}, "adl", binance.ADL)], 1.0)
    assert state.positions[("BTC/USDT:USDT", Side.LONG)].adl_rank == D(1)
    # a Bybit-style stream that carries it, with "no rank": the rank goes
    state.update_positions(
        [with_adl(btc, {"adlRankIndicator": 0}, "adlRankIndicator", bybit.ADL)], 2.0
    )
    assert state.positions[("BTC/USDT:USDT", Side.LONG)].adl_rank is None


def test_an_isolated_position_s_leverage_warning_says_what_to_add_to_it() -> None:
    # isolated long 1 BTC at 60,000 on 3,000 of margin: 20x; back to 10x by closing half at
    # the mark (60,000 - 10 x 3,000 = 30,000 of notional) or adding 3,000 to its margin
    t = tiers([(None, "0.004", "0")])
    btc = position(
        "BTC/USDT:USDT", "long", "1", "60000", "60000", t, mode="isolated", isolated_margin="3000"
    )
    acc = account(snapshot("binanceusdm", "10000", [btc]))
    book = Book()
    book.set_account("a", acc)
    rule = Rule(
        "lev", Condition("effective_leverage", Scope.POSITION, above=D(10)), Severity.WARNING
    )
    seen = observe("a", "binanceusdm", book.live("a"), FEED)
    (note,) = with_full_metrics(AlertEngine([rule]).evaluate(seen, 1000.0))
    message = render(note)
    assert message.title == "WARNING a BTC/USDT:USDT long: effective leverage 20.00x"
    assert "a 5.0% move against it wipes out the margin behind it" in message.body
    # closing part of an isolated position releases its margin in proportion: its leverage
    # stays, so only margin is offered (engine/remedy.py)
    assert message.body.endswith(
        "→ add 3,000.00 USDT to BTC/USDT:USDT's margin for 10.00x effective leverage"
    )
