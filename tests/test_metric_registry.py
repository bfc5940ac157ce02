"""The metric registry: one entry per metric, read by observations, messages, config and docs."""

from __future__ import annotations

import os
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings

from alertd.engine.book import Book
from alertd.engine.fee_gap import FeeGap, margin_left_out, pools_left_out
from alertd.engine.margin import AccountMetrics, PositionMetrics, compute
from alertd.engine.model import Account
from alertd.rules.lifecycle import Kind, Notification
from alertd.rules.messages import fmt_metric, render
from alertd.rules.metrics import (
    ACCOUNT_METRICS,
    METRICS,
    POSITION_METRICS,
    STOP_METRICS,
    FeedStatus,
    Needs,
    Unit,
    lookup,
    metric_scope,
    needs_of,
    observe,
    with_full_metrics,
    with_tables,
)
from alertd.rules.model import Condition, Rule, Scope, Severity

from .test_book import same
from .test_properties import accounts

D = Decimal
DOC = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
FEED = FeedStatus(D("1.5"), D(0), None)


def test_docs_rules_md_tables_are_generated_from_the_registry() -> None:
    text = DOC.read_text()
    if os.environ.get("ALERTD_WRITE_DOCS") == "1":  # regenerate, then check as always
        DOC.write_text(with_tables(text))
        text = DOC.read_text()
    assert with_tables(text) == text, (
        "docs/rules.md is stale: ALERTD_WRITE_DOCS=1 pytest tests/test_metric_registry.py"
    )
    for m in METRICS:
        assert f"| `{m.name}` | {m.description} |" in text


def test_every_entry_is_complete_and_shared_names_agree() -> None:
    assert len({(m.name, m.scope) for m in METRICS}) == len(METRICS)
    for m in METRICS:
        assert m.risky in ("above", "below") and m.description and m.name.islower()
    for name in ACCOUNT_METRICS.keys() & POSITION_METRICS.keys():
        a, p = ACCOUNT_METRICS[name], POSITION_METRICS[name]
        assert (a.unit, a.risky) == (p.unit, p.risky), name
    assert metric_scope("margin_ratio") is Scope.ACCOUNT  # account wins a tie
    assert metric_scope("liquidation_distance") is Scope.POSITION
    assert lookup("margin_ratio", Scope.POSITION) is POSITION_METRICS["margin_ratio"]
    assert lookup("nope") is None


def _rule(metric: str, scope: Scope) -> Rule:
    return Rule(metric, Condition(metric, scope, above=D(0)), Severity.WARNING)


def test_what_rules_need_computed() -> None:
    assert needs_of([]) is Needs.FEED
    assert needs_of([_rule("worst_ratio", Scope.ACCOUNT)]) is Needs.POOL
    assert needs_of([_rule("liquidation_distance", Scope.POSITION)]) is Needs.LIQUIDATION
    crash = [_rule("feed_down_s", Scope.ACCOUNT), _rule("crash_distance", Scope.ACCOUNT)]
    assert needs_of(crash) is Needs.CRASH


# What each metric meant when observations were built from compute()'s full figures.
def _expected_account(m: AccountMetrics) -> dict[str, Decimal | None]:
    pool = m.pool
    return {
        "worst_ratio": m.worst_ratio,
        "margin_ratio": pool.margin_ratio,
        "buffer": pool.buffer,
        "crash_distance": None if m.crash_distance is None else abs(m.crash_distance),
        "effective_leverage": pool.effective_leverage,
        "margin_balance": pool.margin_balance,
        "maintenance_margin": pool.maintenance_margin,
        "feed_stale_s": FEED.stale_s,
        "feed_down_s": FEED.down_s,
        "private_stream_missed": D(0),
        "account_error": D(0),
        "exchange_margin_ratio": None,  # FEED reports none
        "ratio_drift": None,
        "mode_not_computed": D(0),
        "incomplete_data": D(0),
        "fee_gap": D(0),  # FEED has no fee gap
        "fee_rate_unread": D(0),
        "concentration": m.concentration,
        "margin_concentration": m.margin_concentration,
    }


def _btc_long() -> Account:
    from .support.snapshots import account, position, snapshot, tiers

    btc = position("BTC/USDT:USDT", "long", "1", "50000", "49000", tiers([(None, "0.004", "0")]))
    return account(snapshot("binanceusdm", "1000", [btc]))


def _gap_expected(pm: PositionMetrics) -> dict[str, Decimal | None]:
    """The gap-risk metrics (issue 15 item 4): the buffer from compute()'s prices; the
    order-book ones have no value without a book."""
    liq, bankrupt = pm.liquidation_price, pm.bankruptcy_price
    buffer = (
        None if liq is None or bankrupt is None else abs(liq - bankrupt) / pm.position.mark_price
    )
    return {"bankruptcy_buffer": buffer, "close_slippage": None, "gap_risk": None}


@settings(max_examples=100, deadline=None)
@given(accounts(hedge=True))
def test_observations_from_the_book_are_the_full_computation_s_figures(account: Account) -> None:
    book = Book()
    book.set_account("a", account)
    observed = observe("a", "binanceusdm", book.live("a"), FEED)
    full = compute(account)
    expected = _expected_account(full)
    assert observed[0].metrics.keys() == ACCOUNT_METRICS.keys()
    for name, value in observed[0].metrics.items():
        if ACCOUNT_METRICS[name].dynamic:  # no price dynamics given: no figure, not a guess
            assert value is None or (value in (0, 1) and full.crash_distance == 0), name
            continue
        assert same(value, expected[name]), name
    assert len(observed) == 1 + len(full.positions)
    for obs, pm in zip(observed[1:], full.positions, strict=True):
        assert obs.subject.symbol == pm.position.symbol
        assert obs.subject.side == pm.position.side.label
        want = {
            "margin_ratio": pm.margin_ratio,
            "liquidation_distance": pm.liquidation_distance,
            "effective_leverage": pm.effective_leverage,
            "unrealized_pnl": pm.unrealized_pnl,
            "notional": pm.notional,
            # the generated accounts' stops are not read: no stop figure, not "no stop"
            **dict.fromkeys(m.name for m in STOP_METRICS),
            "adl_rank": pm.position.adl_rank,
            "insurance_fund_drop": None,  # FEED watches no insurance fund
        }
        want |= _gap_expected(pm)
        assert obs.metrics.keys() == POSITION_METRICS.keys()
        for name, value in obs.metrics.items():
            if POSITION_METRICS[name].dynamic:
                liquidated = pm.margin_ratio >= 1 and pm.liquidation_price is not None
                assert value is None or (value in (0, 1) and liquidated), name
                continue
            assert same(value, want[name]), name


def test_only_the_wanted_metrics_are_read_and_incomplete_data_gives_feed_metrics_only() -> None:
    one = _btc_long()
    book = Book()
    book.set_account("a", one)
    wanted = {"worst_ratio", "feed_down_s"}
    observed = observe("a", "binanceusdm", book.live("a"), FEED, wanted)
    assert [set(o.metrics) for o in observed] == [wanted]  # no position rule: no positions
    observed = observe("a", "binanceusdm", book.live("a"), FEED, {"liquidation_distance"})
    assert [set(o.metrics) for o in observed] == [set(), {"liquidation_distance"}]
    blind = observe("a", "binanceusdm", None, FeedStatus(D(0), D(75), "banned"))
    assert len(blind) == 1
    assert blind[0].metrics == {
        "feed_stale_s": D(0),
        "feed_down_s": D(75),
        "private_stream_missed": D(0),
        "account_error": D(1),
        "exchange_margin_ratio": None,
        "ratio_drift": None,
        "mode_not_computed": D(0),
        "incomplete_data": D(0),
        # not known once stopped: a fee-gap warning stays as it is (idx13)
    }
    assert blind[0].context.fatal == "banned"


def test_a_sent_notification_carries_the_full_figures() -> None:
    one = _btc_long()
    book = Book()
    book.set_account("a", one)
    observed = observe("a", "binanceusdm", book.live("a"), FEED)
    rule = _rule("liquidation_distance", Scope.POSITION)
    notes = [
        Notification(Kind.FIRING, rule, o.subject, 1.0, 1.0, D(0), o.context) for o in observed
    ]
    full = with_full_metrics(notes, D("0.5"))
    assert full[0].context.live is None and full[1].context.live is None
    metrics = full[0].context.metrics
    assert isinstance(metrics, AccountMetrics)
    assert metrics == compute(one, D("0.5"))
    assert full[1].context.position == metrics.positions[0]
    assert full[1].context.metrics is metrics  # computed once per account


def test_a_fee_gap_is_the_share_of_the_mm_it_leaves_out_and_its_message_says_how_much() -> None:
    """``fee_gap``: 0 without a gap; with one, the share of alertd's maintenance margin that
    the fee rates raised by the gap add (margin_left_out), at the book's marks. The fee-gap
    warning's message names what is missing and the MM left out, rounded up."""
    btc = _btc_long()
    one = replace(btc, positions=(replace(btc.positions[0], fee_rate=D("0.00055")),))
    book = Book()
    book.set_account("a", one)
    gap = FeeGap("a tax on the fee", D("0.18"))
    assert observe("a", "bybit", book.live("a"), FEED, {"fee_gap"})[0].metrics == {"fee_gap": D(0)}
    taxed = replace(FEED, fee_gap=gap)
    (observed,) = observe("a", "bybit", book.live("a"), taxed, {"fee_gap"})
    left = margin_left_out(one, gap)
    assert left.share is not None and observed.metrics == {"fee_gap": left.share}
    rule = _rule("fee_gap", Scope.ACCOUNT)
    note = Notification(Kind.FIRING, rule, observed.subject, 1.0, 1.0, left.share, observed.context)
    (full,) = with_full_metrics([note])
    message = render(full)
    # the fee to close at 0.055%, 18% of it left out: rounded up, as status shows it
    assert message.title == "WARNING a: maintenance margin low, a fee rate unread"
    assert message.body.splitlines()[0] == (
        "fee to close without a tax on the fee (18% on the fee): maintenance margin up to "
        f"{left.amount.quantize(D('0.01'), rounding='ROUND_CEILING')} USDT "
        f"({(left.share * 100).quantize(D('0.1'), rounding='ROUND_UP')}%) low"
    )


@settings(max_examples=100, deadline=None)
@given(accounts(hedge=True))
def test_the_fee_gap_from_the_book_is_the_full_computation_s(account: Account) -> None:
    """The ``fee_gap`` the rules read from the book's running figures (O(positions)) is the
    largest pool share :func:`margin_left_out` gives from two full computes, on any account
    (every exchange's fee term, isolated and cross, several pools), to Decimal's precision."""
    book = Book()
    book.set_account("a", account)
    gap = FeeGap("a tax on the fee", D("0.18"))
    (observed,) = observe("a", "x", book.live("a"), replace(FEED, fee_gap=gap), {"fee_gap"})
    shares = [left.share or D(0) for _, left in pools_left_out(account.pool_accounts(), gap)]
    assert abs(observed.metrics["fee_gap"] - max(shares, default=D(0))) <= D("1e-20")


@pytest.mark.parametrize(
    ("metric", "value", "shown"),
    [
        ("worst_ratio", D("0.6667"), "66.7%"),
        ("worst_ratio", D("Infinity"), "LIQUIDATED"),
        ("crash_distance", D("Infinity"), "∞"),
        ("liquidation_distance", D("0.031"), "3.1%"),
        ("feed_down_s", D("75.4"), "75s"),
        ("buffer", D("1234.5"), "1,234.50"),
        ("account_error", D(1), "1.00"),
        ("margin-call", D(1), "1.00"),  # not a metric (an exchange push): a plain number
    ],
)
def test_messages_format_by_unit(metric: str, value: Decimal, shown: str) -> None:
    assert fmt_metric(metric, value) == shown
    entry = lookup(metric)
    if entry is not None and entry.unit in (Unit.RATIO, Unit.FRACTION):
        assert shown.endswith("%") or not value.is_finite()


def test_the_fee_gap_warning_stands_until_a_read_tells_the_fee_rate() -> None:
    """The built-in ``fee-gap`` warning reads whether a fee rate stands unread
    (``fee_rate_unread``), not the margin it leaves out (``fee_gap``, 0 without a position):
    it stays firing while the account holds no position and while its data is incomplete
    (no figures of its own), and resolves only once the gap is gone (a read told it). On
    ``fee_gap`` it resolved "fee rates complete again" at the close and fired again at the
    next position (review of bybit12)."""
    from alertd.config import Config
    from alertd.daemon.evaluation import builtin_rules
    from alertd.rules.lifecycle import AlertEngine

    from .support.configs import WALLET_ACCOUNT

    config = Config(version=1, accounts=[WALLET_ACCOUNT])
    rule = next(r for r in builtin_rules(config) if r.name == "fee-gap")
    engine = AlertEngine([rule])
    btc = _btc_long()
    held = replace(btc, positions=(replace(btc.positions[0], fee_rate=D("0.00055")),))
    gap = FeeGap("a tax on the fee", D("0.18"))
    taxed = replace(FEED, fee_gap=gap)

    def kinds(account: Account | None, feed: FeedStatus, at: float) -> list[Kind]:
        live = None
        if account is not None:
            book = Book()
            book.set_account("a", account)
            live = book.live("a")
        observed = observe("a", "bybit", live, feed, {rule.series})
        return [n.kind for n in engine.evaluate(observed, at)]

    assert kinds(held, taxed, 1.0) == [Kind.FIRING]
    assert kinds(replace(held, positions=()), taxed, 2.0) == []  # closed: still unread
    assert kinds(None, replace(taxed, missing=("BTC/USDT:USDT: no tier table",)), 3.0) == []
    assert kinds(held, taxed, 4.0) == []  # reopened: not sent again
    assert kinds(held, FEED, 5.0) == [Kind.RESOLVED]  # a read told it


def test_the_fee_gap_warning_stays_while_stopped_and_resolves_saying_why_in_another_mode() -> None:
    """What a user expects of the ``fee-gap`` warning when alertd stops reading the account
    (idx13, issue 11). Stopped (a fatal error): the rate is as unread as before and alertd
    will leave it out again once restarted, so the warning stays firing beside the
    account-error (it resolved "fee rates complete again" though nothing was read), also
    where the book still holds the account's figures (an evaluation after the fatal error:
    review of idx13, finding 4); while the restart bootstraps (fatal None, not yet
    bootstrapped: nothing read either) it stays (it resolved, then fired again once the
    bootstrap read the gap: a second page; reviewer's probe_bootstrap_window_after_restart),
    and a read after the restart resolves it. In a mode alertd does not compute (portfolio
    margin), the exchange's own ratio is shown, its fees in: the unread rate leaves nothing
    out of it, so it resolves, saying so, not "fee rates complete again"."""
    from alertd.config import Config
    from alertd.daemon.evaluation import builtin_rules
    from alertd.rules.lifecycle import AlertEngine
    from alertd.rules.messages import render

    from .support.configs import WALLET_ACCOUNT

    config = Config(version=1, accounts=[WALLET_ACCOUNT])
    rule = next(r for r in builtin_rules(config) if r.name == "fee-gap")
    btc = _btc_long()
    held = replace(btc, positions=(replace(btc.positions[0], fee_rate=D("0.00055")),))
    taxed = replace(FEED, fee_gap=FeeGap("a tax on the fee", D("0.18")), exchange_name="Bybit")

    def step(engine: AlertEngine, feed: FeedStatus, at: float, figures: bool) -> list[Notification]:
        live = None
        if figures:
            book = Book()
            book.set_account("a", held)
            live = book.live("a")
        return engine.evaluate(observe("a", "bybit", live, feed, {rule.series}), at)

    # what the daemon's feed_status gives an account it does not watch: no fee gap shown
    stopped = replace(FEED, fatal="AuthenticationError: bybit 10003 invalid key")
    booting = replace(FEED, exchange_name="Bybit", watched=False)
    engine = AlertEngine([rule])
    assert [n.kind for n in step(engine, taxed, 1.0, True)] == [Kind.FIRING]
    assert step(engine, stopped, 2.0, False) == []  # stopped: still firing
    assert step(engine, stopped, 3.0, True) == []  # the book's figures as last read
    assert step(engine, booting, 4.0, False) == []  # restarted, bootstrapping
    assert (
        step(engine, replace(booting, not_live="retrying after RequestTimeout"), 5.0, False) == []
    )
    assert [s.phase.value for s in engine.states_of("a")] == ["firing"]
    assert step(engine, taxed, 6.0, True) == []  # bootstrapped, still unread: not sent again
    assert [n.kind for n in step(engine, FEED, 7.0, True)] == [Kind.RESOLVED]  # read

    portfolio = replace(
        FEED,
        exchange_name="Bybit",
        mode="portfolio margin",
        mode_limits="scenario-based requirements",
        exchange_ratio=D("0.2"),
        exchange_ratio_stands_in=True,
    )
    engine = AlertEngine([rule])
    step(engine, taxed, 1.0, True)
    (resolved,) = step(engine, portfolio, 61.0, False)
    assert resolved.kind is Kind.RESOLVED
    message = render(resolved)
    assert "fee rates complete again" not in message.title
    assert "no longer counts: Bybit's own ratio is shown" in message.title
    assert "account mode portfolio margin" in message.body
    assert "still unread leaves nothing out of it" in message.body
