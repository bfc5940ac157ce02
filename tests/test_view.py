"""The daemon's published view: what the endpoint, ``alertd status`` and sd_notify render."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from rich.console import Console

from alertd.daemon import http
from alertd.daemon.http import make_app
from alertd.daemon.sdnotify import status_line
from alertd.daemon.store import NewMessage
from alertd.daemon.view import (
    Counters,
    DaemonView,
    Source,
    Undelivered,
)
from alertd.views.status import status_json

from .support.service import make
from .support.views import D, account, view

# an account in `alertd status --json` from the running daemon, in order
LIVE_ACCOUNT_KEYS = [
    "name", "bootstrapped", "connected", "fatal", "stale", "private_stream_missed",
    "margin_ratio", "buffer", "crash_distance", "effective_leverage", "concentration",
    "margin_concentration", "settle",
    "pools", "positions", "exchange", "mode", "coverage", "mode_limits", "incomplete",
    "fee_gap", "alerts_kept", "margin_ratio_source", "exchange_margin_ratio",
    "exchange_margin_ratio_moved",
]  # fmt: skip
# the same from the state file when the daemon is not running: what was saved
SAVED_ACCOUNT_KEYS = [
    "name", "saved_at", "positions", "margin_ratio", "buffer", "crash_distance",
    "effective_leverage", "concentration", "margin_concentration", "settle", "pools", "stale",
    "fatal",
    "exchange", "mode", "coverage", "mode_limits", "fee_gap", "margin_ratio_source",
    "exchange_margin_ratio", "mode_saved_at",
]  # fmt: skip


def test_the_endpoint_does_not_import_the_service() -> None:
    tree = ast.parse(Path(http.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "alertd.daemon.service" not in imported
    assert "alertd.engine.margin" not in imported  # it renders figures, never computes them


def test_health_reasons_name_the_feed_and_a_stuck_outbox() -> None:
    stuck = Undelivered(1, "hook", "t", 3, "refused", 1_000.0)
    v = view(account(), account("desk", stale=("mark ETH/USDT:USDT",)), undelivered=(stuck,))
    assert v.reasons == (
        "desk: stale: mark ETH/USDT:USDT",
        "outbox: 1 messages undelivered for over 5 minutes",
    )
    assert v.healthy is False and not v.feeds_fresh
    assert view(account()).healthy is True and view(account()).feeds_fresh
    assert view().reasons == ("no accounts",)
    assert status_line(view(account(), account("x", fatal="AuthenticationError"))) == (
        "2 accounts, 1 firing, 0 stale, 1 stopped"
    )


def test_endpoint_renders_the_view_it_is_given() -> None:
    calls = []

    def current() -> DaemonView:
        calls.append(1)
        return view(
            account(),
            account("down", bootstrapped=False, stale=("not bootstrapped",), figures=None),
        )

    async def scrape() -> tuple[str, int, dict[str, Any], dict[str, Any]]:
        server = TestServer(make_app(current, None), host="127.0.0.1")
        async with TestClient(server) as client:
            metrics = await (await client.get("/metrics")).text()
            health = await client.get("/healthz")
            status = await (await client.get("/status")).json()
            return metrics, health.status, await health.json(), status

    metrics, code, health, status = asyncio.run(scrape())
    assert len(calls) == 3  # one view per request, nothing else read
    assert 'alertd_margin_ratio{account="main"} 0.66' in metrics
    assert 'alertd_buffer{account="main",settle="USDT"} 118.5' in metrics
    assert 'alertd_reconnects_total{account="main"} 2.0' in metrics
    assert 'alertd_feed_age_seconds{account="main",key="BTC/USDT:USDT",stream="mark"} 0.25' in (
        metrics
    )
    assert 'alertd_alerts_firing{severity="warning"} 1.0' in metrics
    assert "alertd_engine_updates_total 7.0" in metrics
    assert 'alertd_margin_ratio{account="down"}' not in metrics  # no figures yet: no sample
    position = 'account="main",side="long",symbol="BTC/USDT:USDT"'
    assert f"alertd_position_liquidation_probability{{{position}}} 0.25" in metrics
    assert f"alertd_position_time_to_liquidation_seconds{{{position}}} 600.0" in metrics
    assert code == 503 and health["reasons"] == ["down: stale: not bootstrapped"]
    shown = status["accounts"][0]["positions"][0]
    assert shown["liquidation_price"] == "58232.93"
    assert shown["liquidation_probability_1h"] == "0.25" and shown["time_to_liquidation_s"] == "600"
    assert status["accounts"][1]["margin_ratio"] is None
    assert status["firing"][0]["severity"] == "warning"


def test_status_json_keeps_its_shape_for_both_sources() -> None:
    live = status_json(view(account()))
    keys = ["source", "healthy", "reasons", "ip_bans", "public_pauses", "accounts", "firing"]
    keys += ["undelivered"]
    assert list(live) == keys
    assert list(live["accounts"][0]) == LIVE_ACCOUNT_KEYS
    saved = DaemonView(Source.STATE_FILE, 0.0, (account(saved_at=5.0),), (), (), Counters(), ())
    offline = status_json(saved)
    assert offline["source"] == "state file" and offline["healthy"] is None
    assert list(offline["accounts"][0]) == SAVED_ACCOUNT_KEYS
    assert json.loads(json.dumps(offline)) == offline


def test_the_view_is_replaced_only_when_something_changed(tmp_path: Path) -> None:
    service = make(tmp_path)
    publisher = service.publisher
    assert publisher is not None and service.store is not None
    first = service.view()
    assert publisher.publish(set(), engine_updates=0) is first  # nothing changed
    service.store.enqueue([NewMessage("hook", "info", "t", "b", {})], 1.0)
    second = publisher.publish(set(), engine_updates=0)
    assert second is not first and [u.title for u in second.undelivered] == ["t"]
    assert first.undelivered == ()  # a published view never changes
    assert publisher.publish({"hl"}, engine_updates=0) is not second  # an account changed
    assert service.view().accounts[0].stale == ("not bootstrapped",)
    service.store.close()


def test_evaluations_note_changes_and_the_view_is_built_when_read(tmp_path: Path) -> None:
    """A thousand accounts ticking every second: the service notes each evaluation's changed
    accounts; the view is rebuilt once, when read, with everything noted since."""
    service = make(tmp_path)
    publisher = service.publisher
    assert publisher is not None
    first = service.view()
    built = publisher.published
    for ticks in range(1, 6):
        publisher.note({"hl"}, engine_updates=ticks, full=ticks == 3)
    assert publisher.published == built  # nothing built yet
    view = service.view()
    assert publisher.published == built + 1  # once, for all five
    assert view is not first and view.counters.engine_updates == 5
    assert service.view() is view  # nothing noted since: the same view
    assert publisher.published == built + 1
    assert service.store is not None
    service.store.close()


def test_figures_are_reused_while_nothing_moves_and_the_crash_distance_says_when(
    tmp_path: Path,
) -> None:
    """A ticking account's liquidation prices are current at every rebuild; its crash
    distance (the costliest figure) is solved at most once a second and carries that time;
    an account whose marks did not move keeps its figures without a solve."""
    from alertd.daemon.publisher import Publisher
    from alertd.engine.book import Book
    from alertd.engine.model import Account, MarginMode, Position, Side
    from alertd.engine.tiers import Tier, TierTable
    from alertd.exchanges.registry import get_spec

    service = make(tmp_path)
    assert service.manager and service.alerting and service.store and service.deliverer
    feed = service.manager.feeds["hl"]
    feed.state.bootstrapped = True  # as after a bootstrap (no position held in the feed:
    feed.state.wallet_balance = D(20_000)  # no mark or table missing)
    book: Book = service.alerting.book
    tiers = TierTable.build([Tier(D(100_000), D("0.01"), D(0)), Tier(None, D("0.02"), D(1_000))])
    profile = get_spec("hyperliquid").profile

    def leg(symbol: str, side: Side, contracts: str, price: str) -> Position:
        return Position(
            symbol,
            side,
            D(contracts),
            D(1),
            False,
            D(price),
            D(price),
            MarginMode.CROSS,
            tiers,
            profile.default_fee_rate,
        )

    held = (
        leg("BTC/USDC:USDC", Side.LONG, "1", "60000"),
        leg("ETH/USDC:USDC", Side.SHORT, "10", "3000"),
    )
    book.set_account("hl", Account(profile, "hl", "USDC", D(20_000), held))
    clock, wall = [100.0], [5_000.0]
    publisher = Publisher(
        service.manager.feeds,
        service.config.feeds,
        service.alerting,
        service.store,
        service.deliverer,
        clock=lambda: clock[0],
        wall_clock=lambda: wall[0],
        crash=True,
    )
    live = book.live("hl")
    first = publisher.view.accounts[0].figures
    assert first is not None and first.crash_at == 5_000.0
    assert first.crash_distance == live.crash_distance()

    clock[0] += 0.3
    wall[0] += 0.3
    again = publisher.publish({"hl"}, engine_updates=0).accounts[0].figures
    assert again is first  # nothing moved: the same figures, no solve

    symbol = live.positions[0].symbol
    book.apply_mark(symbol, live.positions[0].mark * D("0.99"))
    clock[0] += 0.3
    wall[0] += 0.3
    moved = publisher.publish({"hl"}, engine_updates=0).accounts[0].figures
    assert moved is not None
    # the liquidation prices and ratios are the book's, at the new marks
    assert [p.liquidation_price for p in moved.positions] == [
        live.liquidation_price(i) for i in range(len(live.positions))
    ]
    assert moved.positions[0].mark_price == live.positions[0].mark
    # the crash distance is the one solved 0.6 s ago, and says so
    assert moved.crash_distance == first.crash_distance and moved.crash_at == 5_000.0

    clock[0] += 0.8
    wall[0] += 0.8
    book.apply_mark(symbol, live.positions[0].mark * D("0.99"))
    later = publisher.publish({"hl"}, engine_updates=0).accounts[0].figures
    assert later is not None and later.crash_at == wall[0]
    assert later.crash_distance == live.crash_distance() != first.crash_distance
    service.store.close()


def test_the_state_file_keeps_each_accounts_mode_and_the_exchanges_ratio(tmp_path: Path) -> None:
    """``alertd status`` without the daemon: the mode as last read; where alertd did not
    compute the account, the exchange's ratio as last read stands in (and says so), and a
    snapshot from before the switch is not shown as today's figures. Each figure carries its
    own row's time: the mode row is saved each minute its reading moves (the exchange's ratio,
    read at each reconcile) while a snapshot waits up to 10 minutes for its marks, and the
    newer of the two labelled 10-minute-old marks as just saved."""
    from alertd.config import load_config
    from alertd.daemon.store import SavedMode, Store
    from alertd.views.status import render_status, status_from_store
    from tests.support.configs import write_config
    from tests.support.snapshots import position, snapshot, tiers

    accounts = [
        {"name": "a", "exchange": "hyperliquid", "wallet_address": "0x1"},
        {"name": "b", "exchange": "hyperliquid", "wallet_address": "0x2"},
    ]
    config = load_config(write_config(tmp_path, accounts))
    store = Store(config.state_path)
    btc = position("BTC/USDC:USDC", "long", "1", "60000", "58350", tiers([(None, "0.004", "0")]))
    for name in ("a", "b"):
        store.save_snapshot(name, snapshot("hyperliquid", "2000", [btc], "USDC"), 100.0)
    store.save_mode("a", SavedMode(250.0, "standard", "computed by alertd", None, D("0.6")))
    unified = SavedMode(200.0, "unified", "exchange's own ratio", "spot collateral", D("0.0975"))
    store.save_mode("b", unified)
    store.close()
    a, b = status_from_store(config, now=300.0)["accounts"]
    assert a["mode"] == "standard" and a["margin_ratio_source"] == "alertd"
    assert a["positions"] and a["margin_ratio"].startswith("0.66")  # alertd's, not the 0.6 read
    assert (a["saved_at"], a["mode_saved_at"]) == (100.0, 250.0)  # the snapshot's, the mode's
    assert (b["mode"], b["coverage"], b["mode_limits"]) == (
        "unified",
        "exchange's own ratio",
        "spot collateral",
    )
    assert b["margin_ratio"] == "0.0975" and b["margin_ratio_source"] == "exchange"
    assert b["positions"] == [] and b["saved_at"] == b["mode_saved_at"] == 200.0  # the ratio's
    console = Console(record=True, width=160)
    render_status({"source": "state file", **status_from_store(config, now=300.0)}, console)
    text = console.export_text()
    assert "9.75% (hyperliquid's own)" in text and "unified: exchange's own ratio" in text


def test_every_published_registry_metric_is_a_gauge_family_of_its_own() -> None:
    """The endpoint's figures are the registry's published metrics: one family each, under a
    name no other family takes (a metric added to the registry appears on /metrics)."""
    from alertd.daemon.http import ViewCollector
    from alertd.rules.metrics import METRICS, PUBLISHED

    names = [f.name for f in ViewCollector(lambda: view(account())).collect()]
    published = [m for metrics in PUBLISHED.values() for m in metrics]
    assert len(names) == len(set(names))
    assert {m.gauge_name for m in published} <= set(names)
    assert {m.name for m in published} >= {
        "stop_coverage",
        "stop_missing",
        "stop_loss_price",
        "stop_beyond_liquidation",
        "concentration",
        "effective_leverage",
        "adl_rank",
        "bankruptcy_buffer",
        "close_slippage",
        "gap_risk",
        "insurance_fund_drop",
    }
    # the feed's own status is shown by its own families (ages, up), not twice
    assert not any(m.name == "feed_stale_s" for m in published) and METRICS


def test_each_margin_pool_is_published_with_its_asset() -> None:
    """An account of several margin pools (Binance single-asset: USDT, USDC, FDUSD): each
    pool's money figures are a sample of their own on /metrics, labelled with the pool's
    asset (not only the riskiest pool's); ``alertd status`` lists each pool."""
    from alertd.daemon.http import ViewCollector
    from alertd.daemon.publisher import figures
    from alertd.engine.book import LiveAccount
    from alertd.views.status import render_status

    from .support.snapshots import margin_pools

    published = figures(LiveAccount("main", margin_pools(fdusd=True)), crash=False)
    shown = view(account(figures=published))
    samples = {
        (family.name, tuple(sorted(s.labels.items()))): s.value
        for family in ViewCollector(lambda: shown).collect()
        for s in family.samples
        if family.name in ("alertd_buffer", "alertd_margin_balance", "alertd_maintenance_margin")
    }
    # USDT: 1,000 behind an MM of 200; USDC: 100 behind 30; FDUSD: 200 behind 25
    expected = {
        "USDT": (800.0, 1000.0, 200.0),
        "USDC": (70.0, 100.0, 30.0),
        "FDUSD": (175.0, 200.0, 25.0),
    }
    assert samples == {
        (name, (("account", "main"), ("settle", asset))): values[i]
        for asset, values in expected.items()
        for i, name in enumerate(
            ("alertd_buffer", "alertd_margin_balance", "alertd_maintenance_margin")
        )
    }
    # the account's own figures stay its riskiest pool's (USDC: 30%)
    assert published.settle == "USDC" and published.buffer == 70

    console = Console(record=True, width=160)
    render_status(status_json(shown), console)
    text = " ".join(console.export_text().replace("┃", " ").replace("│", " ").split())
    assert "Margin pools" in text
    for row in ("main USDT 20.00% 800", "main USDC 30.00% 70", "main FDUSD 12.50% 175"):
        assert row in text, text


def test_status_names_the_position_alerts_kept_while_the_figures_are_incomplete() -> None:
    """An account alertd computes, incomplete for a while (a new symbol's tier table not read
    yet): the exchange's ratio stands in, and the alerts alertd had raised on its positions
    are kept as they are meanwhile; ``alertd status`` (and its JSON) says which."""
    from alertd.views.status import render_status

    held = account(
        figures=None,
        exchange_ratio=D("0.12"),
        missing=("ETH/USDT:USDT long: no tier table",),
        held_alerts=("BTC/USDT:USDT long",),
    )
    data = status_json(view(held))
    assert data["accounts"][0]["alerts_kept"] == ["BTC/USDT:USDT long"]
    console = Console(record=True, width=300)
    render_status(data, console)
    text = " ".join(console.export_text().replace("│", " ").split())
    assert "alerts kept as they are meanwhile: BTC/USDT:USDT long" in text, text


def test_status_shows_a_fee_gap_beside_the_figures() -> None:
    """A fee rate no read could tell (Bybit's GST where neither the fills nor the KYC region
    told) is shown in ``alertd status`` and its JSON (``/status``), the figures kept."""
    from alertd.views.status import render_status

    gap = "fee to close without the GST (18% on the fee): maintenance margin up to 1.20 USDT low"
    data = status_json(view(account(fee_gap=gap)))
    assert data["accounts"][0]["fee_gap"] == gap
    assert data["accounts"][0]["margin_ratio"] is not None
    console = Console(record=True, width=400)
    render_status(data, console)
    text = " ".join(console.export_text().replace("│", " ").split())
    assert gap in text, text
    assert status_json(view(account()))["accounts"][0]["fee_gap"] is None


def test_offline_status_keeps_the_saved_fee_gap(tmp_path: Path) -> None:
    """``alertd status`` without the daemon shows the fee gap its last snapshot saved (a GST
    no read could tell) beside the figures computed from it, as the running daemon did."""
    from alertd.config import load_config
    from alertd.daemon.store import Store
    from alertd.views.status import render_status, status_from_store
    from tests.support.configs import write_config
    from tests.support.snapshots import position, snapshot, tiers

    accounts = [{"name": "a", "exchange": "hyperliquid", "wallet_address": "0x1"}]
    config = load_config(write_config(tmp_path, accounts))
    store = Store(config.state_path)
    btc = position("BTC/USDC:USDC", "long", "1", "60000", "58350", tiers([(None, "0.004", "0")]))
    saved = snapshot("hyperliquid", "2000", [btc], "USDC")
    saved.update(schema=2, fee_gap={"what": "a tax on the fee", "share": "0.18"})
    store.save_snapshot("a", saved, 100.0)
    store.close()
    (a,) = status_from_store(config, now=300.0)["accounts"]
    assert a["positions"] and a["fee_gap"] is not None
    assert a["fee_gap"].startswith("fee to close without a tax on the fee (18% on the fee): ")
    assert "maintenance margin up to" in a["fee_gap"]
    console = Console(record=True, width=400)
    render_status({"source": "state file", **status_from_store(config, now=300.0)}, console)
    text = " ".join(console.export_text().replace("│", " ").split())
    assert a["fee_gap"] in text, text


def test_the_daemon_s_view_carries_the_feed_s_fee_gap(tmp_path: Path) -> None:
    """The fee gap a feed keeps (``AccountState.fee_gap``) reaches the daemon's view, which
    ``alertd status`` and ``/status`` show; gone once a read tells the rate."""
    from alertd.engine.fee_gap import FeeGap

    service = make(tmp_path)
    assert service.manager and service.publisher and service.store
    feed = service.manager.feeds["hl"]
    feed.state.bootstrapped = True  # as after a bootstrap, nothing held
    feed.state.wallet_balance = D(20_000)
    gap = FeeGap("a tax on the fee", D("0.18"))
    feed.state.fee_gap = gap
    shown = service.publisher.publish({"hl"}, engine_updates=0).accounts[0].fee_gap
    assert shown == "fee to close without a tax on the fee (18% on the fee)"
    feed.state.fee_gap = None
    assert service.publisher.publish({"hl"}, engine_updates=0).accounts[0].fee_gap is None
    service.store.close()


def test_an_account_alertd_does_not_compute_shows_no_fee_gap(tmp_path: Path) -> None:
    """In a mode alertd does not compute (portfolio margin) the ratio shown is the exchange's
    own, its fees in: a fee rate alertd could not read leaves nothing shown out."""
    from alertd.engine.fee_gap import FeeGap
    from alertd.feeds.state import ModeReading

    service = make(tmp_path)
    assert service.manager and service.publisher and service.store
    feed = service.manager.feeds["hl"]
    feed.state.bootstrapped = True
    feed.state.wallet_balance = D(20_000)
    feed.state.mode = ModeReading.portfolio_margin("accountType PM", "the exchange's")
    feed.state.fee_gap = FeeGap("a tax on the fee", D("0.18"))
    assert service.publisher.publish({"hl"}, engine_updates=0).accounts[0].fee_gap is None
    service.store.close()


def test_the_fee_gap_line_is_kept_while_nothing_moves_and_follows_the_marks(
    tmp_path: Path,
) -> None:
    """The fee gap's line (two computes per pool) is not redone at every publish: while the
    book's account and its marks stay it is the same line; at moved marks it is the line at
    those marks, as ``fee_gap_line`` of the account then."""
    import random

    from alertd.exchanges.bybit import GST_GAP
    from alertd.feeds.feed import Change
    from alertd.feeds.state import AccountMode, ModeReading
    from alertd.views.format import fee_gap_line
    from tests.support.clock import ManualClock
    from tests.test_mark_fanout import SYMBOLS, fill, start

    rng = random.Random(7)
    clock = ManualClock(100.0)
    service = start(tmp_path, {"by": "bybit"}, [], clock)
    assert service.manager and service.publisher and service.store
    feed = service.manager.feeds["by"]
    fill(feed, rng, {s: D(rng.randint(50, 100_000)) for s in SYMBOLS}, clock())
    feed.state.mode = ModeReading(AccountMode.UNIFIED_CROSS, "marginMode REGULAR_MARGIN")
    feed.state.fee_gap = GST_GAP
    feed._notify(Change.ACCOUNT)
    service.step(clock(), True)

    def shown() -> str | None:
        return service.publisher.publish({"by"}, engine_updates=0).accounts[0].fee_gap  # type: ignore[union-attr]

    def expected() -> str:
        return fee_gap_line(feed.state.to_account().pool_accounts(), GST_GAP)

    first = shown()
    assert first == expected() and "maintenance margin up to" in first
    assert shown() is first  # nothing moved: the same line, not computed again
    symbol = sorted(feed.state.held_symbols)[0]
    mark = feed.state.marks[symbol] * D("0.7")
    feed.state.set_mark(symbol, mark, clock())
    service.book.apply_mark(symbol, mark, feed.hub)
    moved = shown()
    assert moved == expected() != first
    service.store.close()


def test_offline_status_names_the_alerts_of_accounts_no_longer_watched(tmp_path: Path) -> None:
    """``alertd status`` from the state file shows the firing alerts of an account removed
    from the config or disabled, saying nothing watches it any more and that the daemon ends
    them at its next start: a daemon not restarted since the edit still watches and fires for
    it, so hiding them (session 13) hid live alerts; shown bare, one kept firing for ever."""
    from decimal import Decimal

    from rich.console import Console

    from alertd.config import load_config
    from alertd.daemon.store import Store
    from alertd.rules.lifecycle import AlertState, Phase
    from alertd.rules.model import Subject
    from alertd.views.status import render_status, status_from_store
    from tests.support.configs import WALLET_ACCOUNT, write_config

    off = {**WALLET_ACCOUNT, "name": "off", "enabled": False}
    config = load_config(write_config(tmp_path, [WALLET_ACCOUNT, off]))
    store = Store(config.state_path)
    for name in ("gone", "hl", "off"):
        state = AlertState("fee-gap", Subject(name, "bybit"), Phase.FIRING, 1.0, Decimal(1))
        store.commit_evaluation([state], [name], [], 1.0)
    store.close()
    shown = status_from_store(config, now=100.0)["firing"]
    assert sorted((f["subject"], f["unwatched"]) for f in shown) == [
        ("gone", "account not in the config: ends when alertd next starts"),
        ("hl", None),
        ("off", "account disabled in the config: ends when alertd next starts"),
    ]
    console = Console(record=True, width=200)
    render_status({"source": "state file", **status_from_store(config, now=100.0)}, console)
    text = console.export_text()
    assert "gone (account not in the config: ends when alertd next starts)" in text
    assert "hl (account" not in text
