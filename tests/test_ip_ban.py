"""An IP ban or a 429 pauses the host, not one account; nothing stops for good (issue 11/14).

Binance: "Repeatedly violating rate limits and/or failing to back off after receiving 429s
will result in an automated IP ban (HTTP status 418)"; "A Retry-After header is sent with a
418 or 429 responses and will give the number of seconds required to wait, in the case of a
429, to prevent a ban, or, in the case of a 418, until the ban is over" (USDⓈ-M futures,
"General Info", Limits: https://developers.binance.com/docs/derivatives/usds-margined-futures/
general-info). Bybit: "403, access too frequent" ... "wait for at least 10 minutes. The ban
will be lifted automatically" (bybit-exchange.github.io/docs/v5/rate-limit, "IP Limit").
"""

from __future__ import annotations

import asyncio
import io
import logging
import time as wall_time
from pathlib import Path
from typing import Any

import ccxt
import pytest
from rich.console import Console

from alertd.config import Secret, load_config
from alertd.daemon.evaluation import Alerting
from alertd.daemon.service import Service
from alertd.engine.book import Book
from alertd.exchanges.registry import get_spec
from alertd.feeds.ccxt_exchange import (
    BAN_MAX_S,
    ErrorKind,
    HostBan,
    IpBudget,
    SharedExchange,
    classify,
    make_exchange,
    new_ssl_context,
)
from alertd.feeds.feed import AccountFeed
from alertd.feeds.options import FeedOptions
from alertd.views.status import render_status, status_json
from tests.fake_exchange.binance import FakeBinanceUSDM
from tests.fake_exchange.bybit import FakeBybit
from tests.fake_exchange.gate import FakeGate
from tests.fake_exchange.okx import FakeOKX
from tests.support.aio import background, run
from tests.support.clock import ManualClock, VirtualTime
from tests.support.configs import write_config
from tests.support.fakes import started
from tests.support.feeds import FAST, account_config, secrets
from tests.support.poll import eventually
from tests.support.service import HOOK, NOON
from tests.test_shared_exchange import (
    SETTINGS,
    Built,
    alerting_for,
    manager_for,
    market_requests,
)

WALL = 1_800_000_000.0  # the tests' wall clock, epoch seconds


def _shared(exchange: str, budget: IpBudget) -> SharedExchange:
    return SharedExchange(
        f"{exchange} shared",
        lambda shared: None,
        new_ssl_context(),
        rest_concurrency=8,
        ip_budget=budget,
    )


def test_an_ip_ban_holds_every_account_of_the_host_and_stops_none() -> None:
    """20 Binance accounts live on one IP; the local Binance bans the IP for 3 s. The account
    that meets the 418 is not stopped (it was: FATAL, stopped for good although the ban ends
    by itself), and the 19 others, reconciling meanwhile, send nothing until the ban's end
    (they each met the ban in turn); then every one reconciles by itself, all live. One
    message says so for the host, one its end (an account-error per account, before)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM()) as fake:
            # no periodic run meanwhile: the test sends the reconciles itself
            quiet = SETTINGS.model_copy(
                update={"reconcile_interval_s": 600, "listen_key_renew_interval_s": 600}
            )
            manager = manager_for(fake, "binanceusdm", Built(), count=20, settings=quiet)
            feeds = list(manager.feeds.values())
            async with background(manager.run()):
                await eventually(
                    lambda: (
                        all(f.state.bootstrapped and f.state.connected for f in feeds)
                        # and each one's resync once its streams subscribed, its stops read last:
                        # nothing in flight
                        and market_requests(fake, "/fapi/v1/openOrders") == len(feeds)
                        and market_requests(fake, "/fapi/v1/openAlgoOrders") == len(feeds)
                    ),
                    what="20 accounts live, resynced",
                    timeout_s=90,
                )
                fake.ban_ip(3.0)
                first, *others = feeds
                await first.reconcile()  # meets the ban: logged, retried at its next run
                (ban,) = manager.ip_bans()
                assert (ban.host, ban.status) == ("binanceusdm", 418)
                # one message for the host, not one per account
                alerting = alerting_for(manager.config)
                (told,) = alerting.host_bans(manager.ip_bans())
                assert told.title.startswith("CRITICAL binanceusdm: this IP is banned until ")
                assert fake.refused_while_banned == 1
                started_at = asyncio.get_running_loop().time()
                await asyncio.wait_for(asyncio.gather(*(f.reconcile() for f in others)), 30)
                # they waited for the ban's end (Retry-After: 3), none sent into it
                assert asyncio.get_running_loop().time() - started_at > 2.0
                assert fake.refused_while_banned == 1
                assert manager.ip_bans() == []
                (over,) = alerting.host_bans(manager.ip_bans())
                assert over.title == "RESOLVED binanceusdm: the IP ban is over"
                await first.reconcile()
                assert fake.refused_while_banned == 1
                assert [f.config.name for f in feeds if f.state.fatal is not None] == []
                assert all(f.state.connected for f in feeds)

    run(body(), timeout_s=180)


def test_a_429_s_retry_after_holds_every_account_of_the_host() -> None:
    """One account's request answered 429 with Retry-After: 30: another account of the same
    IP sends nothing before those 30 s are over (it kept its own pace: Binance bans an IP that
    keeps sending after 429s), then its request goes by itself."""

    async def body() -> None:
        async with started(FakeBinanceUSDM()) as fake:
            time = VirtualTime()
            capabilities = get_spec("binanceusdm").capabilities
            budget = IpBudget.of(capabilities, "binanceusdm", time, time.sleep, lambda: WALL)
            shared = _shared("binanceusdm", budget)
            config = account_config("a", "binanceusdm", fake)
            one, two = (make_exchange(config, {}, FAST, None, shared) for _ in range(2))
            try:
                fake.fail_rest(429, retry_after_s=30)
                with pytest.raises(ccxt.DDoSProtection):
                    await one.fapiPublicGetTime()
                assert budget.banned() is None  # rate limited, not banned
                sent = len(fake.requests)
                other = asyncio.ensure_future(two.fapiPublicGetTime())
                await time.advance_to(29)
                for _ in range(20):
                    await asyncio.sleep(0.01)
                assert not other.done() and len(fake.requests) == sent
                await time.advance_to(30)
                await asyncio.wait_for(other, 10)
                assert len(fake.requests) == sent + 1
            finally:
                await one.close()
                await two.close()
                await shared.close()

    run(body(), timeout_s=60)


@pytest.mark.parametrize(
    ("fake_class", "exchange", "status", "lasts_s"),
    [
        (FakeBinanceUSDM, "binanceusdm", 418, 100.0),  # its Retry-After: the ban's end
        (FakeBybit, "bybit", 403, 660.0),  # no Retry-After: "at least 10 minutes", and a minute
    ],
    ids=["binance 418", "bybit 403"],
)
def test_each_exchange_s_ban_answer_bans_the_host_until_its_end(
    fake_class: Any,
    exchange: str,
    status: int,
    lasts_s: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The local exchange bans the IP for 100 s and answers as the exchange does: the host is
    banned until the ban's end as the answer gives it (Binance's Retry-After; Bybit's
    documented 10 minutes and a minute), and the error is transient (it was fatal on Binance)."""

    async def body() -> None:
        async with started(fake_class()) as fake:
            clock = ManualClock(500.0)
            budget = IpBudget.of(
                get_spec(exchange).capabilities, exchange, clock, asyncio.sleep, lambda: WALL
            )
            shared = _shared(exchange, budget)
            exchange_object = make_exchange(
                account_config("a", exchange, fake), {}, FAST, None, shared
            )
            try:
                fake.ban_ip(100)
                with pytest.raises(ccxt.BaseError) as raised:
                    await exchange_object.load_markets()
                assert classify(raised.value) is ErrorKind.TRANSIENT
                assert budget.banned() == HostBan(exchange, status, 500 + lasts_s, WALL + lasts_s)
                clock.t = 500 + lasts_s
                assert budget.banned() is None  # over: every request goes again
                said = [r.getMessage() for r in caplog.records if r.name.endswith("ccxt_exchange")]
                assert [line.split(":")[0] for line in said] == [exchange, exchange], said
                assert "this IP is banned until " in said[0] and f"({status})" in said[0]
                assert said[1] == f"{exchange}: the IP ban is over: every account of it resumes"
            finally:
                await exchange_object.close()
                await shared.close()

    with caplog.at_level(logging.INFO, logger="alertd.feeds.ccxt_exchange"):
        run(body(), timeout_s=60)


@pytest.mark.parametrize(
    ("headers", "body", "lasts_s"),
    [
        ({"Retry-After": "250"}, "banned until 0", 250.0),
        # no Retry-After: the end Binance's message gives (epoch ms)
        ({}, f"IP(1.2.3.4) banned until {int((WALL + 900) * 1000)}. Please", 900.0),
        ({}, "Way too many requests", 120.0),  # neither: Binance's shortest ban
        ({"Retry-After": "9" * 5000}, "", float(BAN_MAX_S)),  # at most Binance's longest
    ],
    ids=["retry-after", "banned until", "neither", "hostile"],
)
def test_a_binance_ban_lasts_as_its_answer_says(
    headers: dict[str, str], body: str, lasts_s: float
) -> None:
    clock = ManualClock(0.0)
    budget = IpBudget.of(
        get_spec("binanceusdm").capabilities, "binanceusdm", clock, asyncio.sleep, lambda: WALL
    )
    budget.refused(418, headers, body)
    ban = budget.banned()
    assert ban is not None and ban.until == lasts_s and ban.until_wall == WALL + lasts_s


def test_only_the_documented_ban_answer_bans_the_host() -> None:
    """A Bybit 403 without "access too frequent" (a CDN refusing a region) bans nothing; a
    429 without a Retry-After pauses nothing (the account's backoff applies)."""
    clock = ManualClock(0.0)
    bybit = IpBudget.of(get_spec("bybit").capabilities, "bybit", clock)
    bybit.refused(403, {}, "The request could not be satisfied: configured to block access")
    bybit.refused(429, {}, "")
    assert bybit.banned() is None and bybit.paused_until == -float("inf")
    okx = IpBudget.of(get_spec("okx").capabilities, "okx", clock)
    okx.refused(418, {"Retry-After": "30"}, "banned")  # not OKX's answer to anything
    assert okx.banned() is None and okx.paused_until == -float("inf")
    # OKX's private limits are per user: its 429 is the account's own (see below)
    okx.refused(429, {"Retry-After": "5"}, '{"code":"50011","msg":"Rate limit reached"}')
    assert okx.banned() is None and okx.paused_until == -float("inf")


def test_a_ban_met_alone_keeps_the_account_s_feed_retrying() -> None:
    """classify: a 418 is transient (the host waits it out), never a stopped account."""
    exc = ccxt.DDoSProtection("binanceusdm 418 I'm a teapot {banned until 1}")
    assert classify(exc) is ErrorKind.TRANSIENT


def started_at(path: Path, clock: ManualClock, wall: float = NOON) -> Service:
    """The daemon of the config at ``path`` started (not run), its feeds on ``clock``, the
    wall clock standing at ``wall``."""
    service = Service(
        load_config(path),
        config_path=path,
        secrets={},
        wall_clock=lambda: wall,
        feeds=FeedOptions(clock=clock, wall_clock=lambda: wall),
    )
    service._startup()
    return service


def test_an_ip_ban_is_told_once_for_its_host_and_its_end_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three Binance accounts on one host: the ban is one message for the host (not one per
    account: an account-error each, before), said in the health line and the status while it
    lasts, and one resolution when it ends; no account is stopped, none feed-down meanwhile."""
    accounts: list[dict[str, Any]] = [
        {"name": f"b{i}", "exchange": "binanceusdm", "api_key_env": "K", "secret_env": "S"}
        for i in range(3)
    ]
    clock = ManualClock(1000.0)
    service = started_at(write_config(tmp_path, accounts, receivers=[HOOK]), clock)
    assert service.manager is not None and service.store is not None
    assert service.alerting is not None and service.publisher is not None
    feeds = list(service.manager.feeds.values())
    # not live yet (never run here): down from when first seen
    assert all(service.alerting.feed_status(f, 1000.0).down_s == 0 for f in feeds)
    # Binance's answer to the first account's request: banned for 10 minutes
    budget = feeds[0].shared.ip_budget if feeds[0].shared is not None else None
    assert budget is not None
    body = '{"code":-1003,"msg":"Way too many requests; IP(127.0.0.1) banned until 1."}'
    budget.refused(418, {"Retry-After": "600"}, body)
    for _ in range(3):
        service.step(clock.t, True)
    (row,) = service.store.pending()
    assert (row.severity, row.title) == (
        "critical",
        "CRITICAL binanceusdm: this IP is banned until 08:09 UTC (418)",
    )
    assert row.payload["labels"] == {
        "alertname": "ip-banned",
        "severity": "critical",
        "exchange": "binanceusdm",
    }
    assert all(f.state.fatal is None for f in feeds)
    clock.t += 599
    # not down while the host is banned (it was 599 s: a feed-down each at its threshold)
    assert all(service.alerting.feed_status(f, clock.t).down_s == 0 for f in feeds)
    with caplog.at_level(logging.INFO, logger="alertd.daemon.service"):
        service.log_health()
    said = "binanceusdm IP banned until 08:09 UTC (418)"
    assert said in caplog.records[-1].getMessage()
    status = status_json(service.view())
    assert status["ip_bans"] == [said] and said in status["reasons"]
    shown = io.StringIO()
    render_status(status, Console(file=shown, width=200))
    assert f"{said}: every account of it waits for the ban's end" in shown.getvalue()
    clock.t += 1
    service.step(clock.t, True)
    # down again from the ban's end (its last look during the ban), not from before it
    assert service.alerting.feed_status(feeds[0], clock.t + 100).down_s == 101
    titles = [r.title for r in service.store.pending()]
    assert titles == [row.title, "RESOLVED binanceusdm: the IP ban is over"]
    service.step(clock.t, True)
    assert len(service.store.pending()) == 2
    with caplog.at_level(logging.INFO, logger="alertd.daemon.service"):
        service.log_health()
    assert "banned" not in caplog.records[-1].getMessage()
    assert status_json(service.view())["ip_bans"] == []


def test_runs_skipped_during_a_ban_are_said_to_wait_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Reconciles skipped while the host is banned wait for the ban's end: the summary names
    the ban, not a saturated rate limit or REST slots (the reviewer's finding on ban11)."""

    class SlowFeed(AccountFeed):
        async def reconcile(self) -> None:
            await asyncio.sleep(2.5)  # four intervals of FAST's 0.5 s: later runs skipped

    async def body() -> None:
        fake = FakeBinanceUSDM()
        async with started(fake):
            manager = manager_for(
                fake, "binanceusdm", Built(), 1, settings=FAST, feed_factory=SlowFeed
            )
            async with background(manager.run()):
                await eventually(lambda: manager.skipped.get("reconcile", 0) >= 1, what="skip")
                manager.report_skips(every_s=0)
                (feed,) = manager.feeds.values()
                assert feed.shared is not None
                feed.shared.ip_budget.refused(418, {"Retry-After": "600"}, "banned")
                await eventually(lambda: manager.skipped.get("reconcile", 0) >= 1, what="skip")
                manager.report_skips(every_s=0)

    with caplog.at_level(logging.WARNING):
        run(body(), timeout_s=60)
    lines = [r.getMessage() for r in caplog.records if "reconcile runs skipped" in r.getMessage()]
    before, during = lines
    assert "saturated" in before and "banned" not in before
    assert "binanceusdm IP banned until" in during and "saturated" not in during


def test_a_ban_whose_end_moves_later_is_told_again(tmp_path: Path) -> None:
    """A later refusal that moves the ban's end later re-announces it with its new end (the
    first message's end would be wrong); an end moved within the minute the title shows, or
    the same ban seen again, is not told again."""
    accounts = [{"name": "b", "exchange": "binanceusdm", "api_key_env": "K", "secret_env": "S"}]
    alerting = alerting_for(load_config(write_config(tmp_path, accounts)))

    def ban(until_wall: float) -> HostBan:
        return HostBan("binanceusdm", 418, until_wall, until_wall)

    (first,) = alerting.host_bans([ban(600.0)])
    assert first.title == "CRITICAL binanceusdm: this IP is banned until 00:10 UTC (418)"
    assert alerting.host_bans([ban(600.0)]) == []
    assert alerting.host_bans([ban(630.0)]) == []  # still "until 00:10 UTC"
    (later,) = alerting.host_bans([ban(7200.0)])
    assert later.title == "CRITICAL binanceusdm: this IP is banned until 02:00 UTC (418)"
    assert later.labels == first.labels
    assert alerting.host_bans([ban(7200.0)]) == []
    (over,) = alerting.host_bans([])
    assert over.title == "RESOLVED binanceusdm: the IP ban is over"


def test_the_saved_ban_end_is_the_real_one_and_the_told_one_stays_apart(tmp_path: Path) -> None:
    """A later refusal that moves the ban's end by less than the minute told is not told
    again, but the state file keeps the real end: a restart waits for it, not for the end told
    (which sent requests up to 59 s into the ban, reviewer's probe_ban_told_end_restored); the
    end told is kept apart, so the restarted daemon re-announces only past it."""
    accounts = [{"name": "b", "exchange": "binanceusdm", "api_key_env": "K", "secret_env": "S"}]
    config = load_config(write_config(tmp_path, accounts))
    alerting = alerting_for(config)

    def ban(until_wall: float) -> HostBan:
        return HostBan("binanceusdm", 418, until_wall, until_wall)

    (told,) = alerting.host_bans([ban(600.0)])
    assert alerting.host_bans([ban(645.0)]) == []  # still "until 00:10 UTC"
    assert alerting.store.ip_bans()["binanceusdm"].until_wall == 645.0
    # a restart on the same state file: the end told is still 600
    again = Alerting(
        config, alerting.store, alerting.deliverer, book=Book(), wall_clock=lambda: 0.0
    )
    assert again.host_bans([ban(655.0)]) == []
    (moved,) = again.host_bans([ban(660.0)])
    assert moved.title == "CRITICAL binanceusdm: this IP is banned until 00:11 UTC (418)"
    assert moved.labels == told.labels


def test_a_shared_read_s_ban_ended_while_down_is_resolved_naming_what_aged(
    tmp_path: Path,
) -> None:
    """A ban holding one shared read only (Binance's /sapi host: the collateral rates) that
    ends while alertd is down is resolved at the restart naming what is read again, as it
    was told: what aged was kept in memory only, so the restarted daemon resolved it with the
    generic "every account of it resumes" (session 13's note, cosmetic but untrue)."""
    accounts = [{"name": "b", "exchange": "binanceusdm", "api_key_env": "K", "secret_env": "S"}]
    config = load_config(write_config(tmp_path, accounts))
    alerting = alerting_for(config)
    rates = "portfolio margin collateral rates"
    (told,) = alerting.host_bans([HostBan("api.binance.com", 418, 600.0, 600.0, holds=rates)])
    assert f"the {rates} age until then" in told.title
    again = Alerting(
        config, alerting.store, alerting.deliverer, book=Book(), wall_clock=lambda: 700.0
    )
    (over,) = again.host_bans([])  # the ban ended while down
    assert over.title == "RESOLVED api.binance.com: the IP ban is over"
    assert over.body == f"api.binance.com answers this IP again: the {rates} are read again."


def test_a_restored_ban_waits_at_most_the_longest_ban() -> None:
    """A saved end further than ``BAN_MAX_S`` away (a clock set back, a corrupted state file)
    holds the host's requests no longer than any ban met live would."""
    clock = ManualClock(500.0)
    budget = IpBudget.of(
        get_spec("binanceusdm").capabilities, "binanceusdm", clock, wall_clock=lambda: WALL
    )
    budget.restore_ban(418, WALL + 30 * 86_400)
    assert budget.paused_until == 500.0 + BAN_MAX_S
    ban = budget.banned()
    assert ban is not None and ban.until_wall == WALL + BAN_MAX_S


def test_bybit_s_ban_is_waited_out_a_little_past_its_documented_least() -> None:
    """Bybit: "wait for at least 10 minutes" (bybit-exchange.github.io/docs/v5/rate-limit,
    "IP Limit"): a request at exactly 10 minutes may still meet the ban."""
    ban = get_spec("bybit").capabilities.ip_ban
    assert ban is not None and ban.lasts_s > 600


@pytest.mark.parametrize(
    ("exchange", "host_waits"),
    [
        # request weight per IP ("General Info", Limits:
        # https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info)
        ("binanceusdm", True),
        # "REST requests share an aggregated weight limit of 1200 per minute" per IP
        ("hyperliquid", True),
        ("bybit", True),  # an IP cap on top of the per-UID limits ("IP Limit")
        # private endpoints limited per user ID ("Rate Limits", 50011:
        # https://www.okx.com/docs-v5/en/#overview-rate-limits)
        ("okx", False),
        # "rate limiting primarily at the UID level, except for public API" (Gate, "Latest
        # Announcement on API Rate Limit Adjustments", 2024-01-14)
        ("gate", False),
    ],
)
def test_a_429_pauses_the_host_only_where_the_limit_is_per_ip(
    exchange: str, host_waits: bool
) -> None:
    """Where the exchange limits a user's or key's requests, one account's 429 is its own (its
    retry waits its Retry-After: ``retry_delay``); the other accounts of the IP go on."""
    clock = ManualClock(500.0)
    budget = IpBudget.of(get_spec(exchange).capabilities, exchange, clock, wall_clock=lambda: WALL)
    body = '{"code":"50011","msg":"Too Many Requests"}'
    budget.refused(429, {"Retry-After": "30"}, body)
    assert budget.paused_until == (530.0 if host_waits else -float("inf"))


def test_an_ip_ban_survives_a_restart(tmp_path: Path) -> None:
    """The ban is kept in the state file (real SQLite): a restart during it holds the host's
    requests until its end and tells no second ban; a restart after it ended tells its end."""
    accounts = [{"name": "b", "exchange": "binanceusdm", "api_key_env": "K", "secret_env": "S"}]
    path = write_config(tmp_path, accounts, receivers=[HOOK])

    def start(clock: ManualClock, wall: float) -> Service:
        return started_at(path, clock, wall)

    first = start(ManualClock(1000.0), NOON)
    assert first.manager is not None and first.store is not None
    (feed,) = first.manager.feeds.values()
    assert feed.shared is not None
    feed.shared.ip_budget.refused(418, {"Retry-After": "600"}, "banned")
    first.step(1000.0, True)
    (banned,) = first.store.pending()
    first.store.close()

    # restarted 100 s into the ban, on a new monotonic clock
    clock = ManualClock(50.0)
    during = start(clock, NOON + 100)
    assert during.manager is not None and during.store is not None
    (ban,) = during.manager.ip_bans()
    assert (ban.host, ban.status, ban.until, ban.until_wall) == (
        "binanceusdm",
        418,
        550.0,
        NOON + 600,
    )
    (feed,) = during.manager.feeds.values()
    assert feed.shared is not None and feed.shared.ip_budget.paused_until == 550.0
    during.step(clock.t, True)
    assert [r.title for r in during.store.pending()] == [banned.title]  # no second ban
    during.store.close()

    # restarted after the ban's end
    after = start(ManualClock(10.0), NOON + 700)
    assert after.manager is not None and after.store is not None
    assert after.manager.ip_bans() == []
    after.step(10.0, True)
    titles = [r.title for r in after.store.pending()]
    assert titles == [banned.title, "RESOLVED binanceusdm: the IP ban is over"]
    after.step(10.0, True)
    assert len(after.store.pending()) == 2
    after.store.close()


def test_a_public_endpoint_s_429_pauses_the_host_s_public_requests_only() -> None:
    """OKX limits its public endpoints per IP ("Rate limit rule: IP") and its private ones per
    User ID (www.okx.com/docs-v5/en/#overview-rate-limits): one account's 429 on a public
    endpoint holds every public request of the host (another account's too) for the limits'
    2 s window, OKX sending no Retry-After; a private request goes on (before: only the account
    that met the 429 waited, the others kept sending public requests into the spent limit)."""

    async def body() -> None:
        fake = FakeOKX()
        async with started(fake, [("key-p0", "secret", "1000"), ("key-p1", "secret", "1000")]):
            time = VirtualTime()
            budget = IpBudget.of(get_spec("okx").capabilities, "okx", time, time.sleep)
            exchanges = []
            for i in range(2):
                config = account_config(f"p{i}", "okx", fake)
                keys = secrets(f"key-p{i}", "secret")
                keys["password"] = Secret(fake.PASSPHRASE)
                exchange = make_exchange(config, keys, FAST)
                budget.adopt(exchange)
                exchanges.append(exchange)
            first, second = exchanges
            try:
                fake.fail_rest(429, path_prefix="/api/v5/public/mark-price")
                with pytest.raises(ccxt.RateLimitExceeded):
                    await first.publicGetPublicMarkPrice({"instType": "SWAP"})
                public = asyncio.create_task(second.publicGetPublicMarkPrice({"instType": "SWAP"}))
                # the private limits are the user's: two round trips while the public one waits
                for _ in range(2):
                    await second.privateGetAccountBalance()
                marks = [p for _, p in fake.requests if p == "/api/v5/public/mark-price"]
                assert len(marks) == 1 and not public.done()  # was sent, and answered
                await time.advance_to(2.0)
                assert (await asyncio.wait_for(public, 10))["code"] == "0"
            finally:
                for exchange in exchanges:
                    await exchange.close()

    run(body(), timeout_s=60)


def test_a_public_request_queued_in_ccxt_s_limiter_waits_for_the_public_pause() -> None:
    """A public request already queued in ccxt's limiter (the same exchange object) when
    another public request meets a 429 (OKX: public endpoints limited per IP) is not sent until
    the host's public pause ends (before: the check after the limiter was the host's pause
    alone, and it went out into the spent limit)."""

    async def body() -> None:
        fake = FakeOKX()
        async with started(fake, [("key-p0", "secret", "1000")]):
            time = VirtualTime()
            budget = IpBudget.of(get_spec("okx").capabilities, "okx", time, time.sleep)
            config = account_config("p0", "okx", fake)
            keys = secrets("key-p0", "secret")
            keys["password"] = Secret(fake.PASSPHRASE)
            exchange = make_exchange(config, keys, FAST)
            budget.adopt(exchange)
            try:
                fake.fail_rest(429, path_prefix="/api/v5/public/mark-price")
                # a slow limiter (as after a burst): the second request surely waits in it
                # while the first meets its 429
                exchange.rateLimit = 1000
                exchange.throttler.config["refillRate"] = 1 / 1000
                params = {"instType": "SWAP"}
                first = asyncio.create_task(exchange.publicGetPublicMarkPrice(params))
                queued = asyncio.create_task(exchange.publicGetPublicMarkPrice(params))
                with pytest.raises(ccxt.RateLimitExceeded):
                    await first
                await eventually(lambda: not exchange.throttler.queue, 30, "out of the limiter")
                for _ in range(20):
                    await asyncio.sleep(0.01)
                marks = [p for _, p in fake.requests if p == "/api/v5/public/mark-price"]
                assert len(marks) == 1 and not queued.done()
                await time.advance_to(2.0)  # OKX's limits' window: no Retry-After
                assert (await asyncio.wait_for(queued, 10))["code"] == "0"
            finally:
                await exchange.close()

    run(body(), timeout_s=60)


def test_a_public_pause_is_shown_in_the_status_and_the_health_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 on OKX's public endpoints pauses the host's public requests (its Retry-After, else
    OKX's 2 s window): said in ``/status``, ``alertd status`` and the health line while it
    lasts, as the host's ban is, not a reason the daemon is unhealthy (the marks stream on; a
    mark it starves goes stale, which is one). Before: a log line only (issue 14, ws13)."""
    accounts: list[dict[str, Any]] = [
        {
            "name": f"o{i}",
            "exchange": "okx",
            "api_key_env": "K",
            "secret_env": "S",
            "password_env": "P",
        }
        for i in range(2)
    ]
    clock = ManualClock(1000.0)
    service = started_at(write_config(tmp_path, accounts, receivers=[HOOK]), clock)
    assert service.manager is not None and service.publisher is not None
    feeds = list(service.manager.feeds.values())
    budget = feeds[0].shared.ip_budget if feeds[0].shared is not None else None
    assert budget is not None
    budget.public_refused(12.0)  # a public 429 with a Retry-After of 12 s
    service.step(clock.t, True)
    said = "okx public requests paused 12 s more (429)"
    status = status_json(service.view())
    assert status["public_pauses"] == [said] and said not in status["reasons"]
    shown = io.StringIO()
    render_status(status, Console(file=shown, width=200))
    assert f"{said}: its public reads wait, private requests and streams go on" in (
        shown.getvalue()
    )
    with caplog.at_level(logging.INFO, logger="alertd.daemon.service"):
        service.log_health()
    assert said in caplog.records[-1].getMessage()
    clock.t += 12
    service.step(clock.t, True)
    assert status_json(service.view())["public_pauses"] == []
    with caplog.at_level(logging.INFO, logger="alertd.daemon.service"):
        service.log_health()
    assert "paused" not in caplog.records[-1].getMessage()


def test_gate_s_reset_time_is_read_on_the_feeds_wall_clock() -> None:
    """Gate's 429 on a public endpoint says when the limit resets in epoch milliseconds
    ("X-Gate-RateLimit-Reset-Timestamp", Gate API v4 docs, "Rate limit"): the wait is read
    against the wall clock the feeds are given (FeedOptions.wall_clock, through the host's
    IpBudget), not the system's (before: ``time.time()`` inside the guard, not injectable).
    The local Gate sets the reset 30 s past its own clock; alertd's wall stands 20 s later:
    the host's public requests wait 10 s."""

    async def body() -> None:
        fake = FakeGate()
        async with started(fake):
            time = VirtualTime()
            budget = IpBudget.of(
                get_spec("gate").capabilities,
                "gate",
                time,
                time.sleep,
                lambda: wall_time.time() + 20.0,
            )
            exchange = make_exchange(account_config("g", "gate", fake), {}, FAST)
            budget.adopt(exchange)
            try:
                fake.fail_rest(429, path_prefix="/api/v4/futures/usdt/contracts", retry_after_s=30)
                with pytest.raises(ccxt.RateLimitExceeded):
                    await exchange.publicFuturesGetSettleContracts({"settle": "usdt"})
                assert 9.0 <= budget.public_paused_until - time() <= 10.5
            finally:
                await exchange.close()

    run(body(), timeout_s=60)
