"""Accounts spread over the machine's source addresses, each with per-IP limits of its own
(issue 14: 1,000 accounts live in 30 s cannot be had from one IP within the exchanges' caps).

The local exchanges count their per-IP limits by the client address of each request and
handshake, and Linux routes all of 127.0.0.0/8 to the loopback interface: 127.0.0.2 and
127.0.0.3 are two IPs to the local Binance, as two addresses of a VPS are to the real one.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from typing import Any

import ccxt
import pytest

from alertd.config import AccountConfig, Config, FeedSettings, config_warnings, source_address
from alertd.feeds.ccxt_exchange import make_exchange
from alertd.feeds.manager import FeedManager, by_host
from alertd.feeds.options import FeedOptions
from alertd.feeds.route import default_route_address, exchange_host, route_source_addresses
from tests.fake_exchange.binance import FakeBinanceUSDM
from tests.support.aio import background, run
from tests.support.fakes import started
from tests.support.feeds import BTC, account_config, btc_long, fast_backoff, secrets
from tests.support.poll import eventually
from tests.test_config import problems
from tests.test_shared_exchange import SETTINGS, Built, alerting_for, market_requests

SOURCES = ["127.0.0.2", "127.0.0.3"]
# no periodic run meanwhile: the tests send the reconciles themselves
QUIET = SETTINGS.model_copy(
    update={"reconcile_interval_s": 600, "listen_key_renew_interval_s": 600}
)


def offline(name: str, **extra: Any) -> AccountConfig:
    """A Binance account the test only plans (nothing is sent)."""
    return AccountConfig(
        name=name, exchange="binanceusdm", api_key_env="K", secret_env="S", **extra
    )


def two_addresses(fake: Any, built: Built, **own: str) -> FeedManager:
    """Accounts a (on 127.0.0.2) and b (on 127.0.0.3), each named to its address, long BTC."""
    for name in ("a", "b"):
        fake.add_account(f"key-{name}", f"secret-{name}", wallet_balance=100_000)
        btc_long(fake, f"key-{name}")
    accounts = [
        account_config(name, "binanceusdm", fake, source_address=address)
        for name, address in zip(("a", "b"), SOURCES, strict=True)
    ]
    keys = {name: secrets(f"key-{name}", f"secret-{name}") for name in ("a", "b")}
    options = FeedOptions(exchange_factory=built, backoff=fast_backoff)
    return FeedManager(Config(version=1, accounts=accounts, feeds=QUIET), keys, options)


async def both_live(fake: Any, manager: FeedManager) -> None:
    feeds = list(manager.feeds.values())
    await eventually(
        lambda: (
            all(f.state.bootstrapped and f.state.connected for f in feeds)
            and market_requests(fake, "/fapi/v1/openAlgoOrders") == len(feeds)
        ),
        what="both accounts live, resynced",
        timeout_s=60,
    )


def test_each_address_sends_its_own_accounts_requests_and_websockets() -> None:
    """Two accounts on two addresses: the local exchange sees each one's REST requests and
    websocket handshakes come from its own address, none from the default 127.0.0.1; each
    address has a weight budget of its own (its own limiter), and the market catalogue is
    loaded once for both."""

    async def body() -> None:
        async with started(FakeBinanceUSDM()) as fake:
            built = Built()
            manager = two_addresses(fake, built)
            async with background(manager.run()):
                await both_live(fake, manager)
                a, b = manager.feeds["a"], manager.feeds["b"]
                assert set(fake.rest_peers) == set(SOURCES)
                assert set(fake.ws_openings) == set(SOURCES)
                # each account's own reads were weighed against its own address
                weights = {ip: used["fapi"] for ip, used in fake.used_weight_by_ip.items()}
                assert weights["127.0.0.3"] >= 12, weights  # b's bootstrap at least
                before = dict(fake.rest_peers)
                await b.reconcile()
                assert fake.rest_peers["127.0.0.2"] == before["127.0.0.2"]
                assert fake.rest_peers["127.0.0.3"] > before["127.0.0.3"]
                # two IPs: two budgets, two limiters, one catalogue
                assert a.shared is not None and b.shared is not None
                assert a.shared.ip_budget is not b.shared.ip_budget
                assert a.exchange.throttler is not b.exchange.throttler
                assert a.exchange.markets is b.exchange.markets
                assert market_requests(fake, "/fapi/v1/exchangeInfo") == 1
                assert [s.ip_budget.host for s in manager.shared.values()] == [
                    "binanceusdm from 127.0.0.2",
                    "binanceusdm from 127.0.0.3",
                ]

    run(body(), timeout_s=120)


def test_a_ban_of_one_address_holds_only_its_accounts() -> None:
    """The local Binance bans 127.0.0.2 for 3 s: a, on it, meets the 418 and its host waits
    for the ban's end; b, on 127.0.0.3, reconciles at once all the while. One message names
    the banned address."""

    async def body() -> None:
        async with started(FakeBinanceUSDM()) as fake:
            manager = two_addresses(fake, Built())
            async with background(manager.run()):
                await both_live(fake, manager)
                a, b = manager.feeds["a"], manager.feeds["b"]
                fake.ban_ip(3.0, address="127.0.0.2")
                await a.reconcile()  # meets the ban
                (ban,) = manager.ip_bans()
                assert (ban.host, ban.status) == ("binanceusdm from 127.0.0.2", 418)
                (told,) = alerting_for(manager.config).host_bans(manager.ip_bans())
                assert told.title.startswith(
                    "CRITICAL binanceusdm from 127.0.0.2: this IP is banned until "
                )
                loop = asyncio.get_running_loop()
                began, sent = loop.time(), fake.rest_peers["127.0.0.3"]
                await asyncio.wait_for(b.reconcile(), 10)
                # b neither waited for a's ban nor met it
                assert loop.time() - began < 2.0
                assert fake.rest_peers["127.0.0.3"] > sent
                assert fake.refused_while_banned == 1
                assert b.host_ban() is None and a.host_ban() is not None
                assert b.state.fatal is None and a.state.fatal is None

    run(body(), timeout_s=120)


def test_the_start_is_paced_per_address() -> None:
    """360 Binance accounts spend 4,320 weight to go live: from one address past its
    2,160 a minute (the second minute), from two (180 each, 2,160) all at once. Each address's
    accounts are one host: their own pace, their own reconcile plan."""

    def hosts(addresses: list[str]) -> list[tuple[float, int]]:
        accounts = [offline(f"a{i}", source_address=address) for i, address in enumerate(addresses)]
        config = Config(version=1, accounts=accounts, feeds=QUIET)
        manager = FeedManager(config, {}, FeedOptions(exchange_factory=Built()))
        return [
            (FeedManager._rest_pace(host)[0], len(host)) for host in by_host(manager.feeds.values())
        ]

    assert hosts(["127.0.0.2"] * 360) == [(60.0, 360)]
    assert hosts(["127.0.0.2", "127.0.0.3"] * 180) == [(0.0, 180), (0.0, 180)]


def test_the_listed_addresses_spread_the_accounts() -> None:
    """``feeds.source_addresses``: each account's feed sends from the address
    :func:`source_address` gives it, one group per address used."""
    accounts = [offline(f"acct{i}") for i in range(12)]
    feeds = QUIET.model_copy(update={"source_addresses": [*SOURCES, "127.0.0.4"]})
    config = Config(version=1, accounts=accounts, feeds=feeds)
    manager = FeedManager(config, {}, FeedOptions(exchange_factory=Built()))
    wanted = {a.name: source_address(a, feeds.source_addresses) for a in accounts}
    got = {}
    for name, feed in manager.feeds.items():
        assert feed.shared is not None
        got[name] = feed.shared.source_address
    assert got == wanted
    assert len(manager.shared) == len(set(wanted.values())) > 1


def test_an_exchange_alone_sends_from_its_address_too() -> None:
    """What `alertd check --keys`, `alertd snapshot` and `fetch-history` build (an exchange
    object with no shared pool, ccxt's own session) sends from the account's address as the
    daemon does: a key whitelisted for that address only is not refused from another. Its
    own address, or the one ``feeds.source_addresses`` gives it; REST and websockets."""

    async def body() -> None:
        async with started(FakeBinanceUSDM()) as fake:
            fake.set_mark(BTC, "60000")
            own = account_config("a", "binanceusdm", fake, source_address="127.0.0.3")
            listed = account_config("b", "binanceusdm", fake)
            settings = QUIET.model_copy(update={"source_addresses": ["127.0.0.4"]})
            for config, address in ((own, "127.0.0.3"), (listed, "127.0.0.4")):
                exchange = make_exchange(config, {}, settings)
                try:
                    await exchange.fapiPublicGetTime()
                    watch = asyncio.ensure_future(exchange.watch_mark_price(BTC))
                    await eventually(
                        lambda at=address: at in fake.ws_openings,
                        what="a handshake",
                    )
                    watch.cancel()
                finally:
                    await exchange.close()
                assert set(fake.rest_peers) <= {"127.0.0.3", "127.0.0.4"}
                assert fake.rest_peers[address] >= 1
            assert set(fake.ws_openings) == {"127.0.0.3", "127.0.0.4"}

    run(body(), timeout_s=60)


DOGE = "DOGE/USDT:USDT"


@pytest.mark.parametrize("which", ["a", "b"])
def test_an_account_on_any_address_reloads_the_catalogue_for_a_new_listing(which: str) -> None:
    """A market listed after start, first held by an account: its feed reloads the catalogue
    and computes the position, whichever address the account is on. Before, b's group (on
    the second address, its catalogue a's group's) had nothing to refresh: b stayed
    "unknown market" until the daily refresh (review of srcip12, finding 1)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM()) as fake:
            manager = two_addresses(fake, Built())
            async with background(manager.run()):
                await both_live(fake, manager)
                feed = manager.feeds[which]
                before = market_requests(fake, "/fapi/v1/exchangeInfo")
                fake.add_symbol(DOGE, "0.2")
                fake.open_position(f"key-{which}", DOGE, "long", "1000", "0.2")
                await feed.reconcile()
                assert market_requests(fake, "/fapi/v1/exchangeInfo") == before + 1
                assert DOGE in feed.state.markets, feed.state.missing()
                assert not feed.state.missing()
                # the other account's exchange follows the one catalogue too
                other = manager.feeds["b" if which == "a" else "a"]
                assert other.exchange.markets is feed.exchange.markets

    run(body(), timeout_s=120)


def test_the_daily_market_refresh_runs_once_per_catalogue() -> None:
    """Two addresses, one catalogue: one markets job (the second group's refresh is its
    holder's, so a job of its own would reload the catalogue twice)."""

    async def body() -> None:
        async with started(FakeBinanceUSDM()) as fake:
            manager = two_addresses(fake, Built())
            scheduler = manager.schedule()  # planned, not started
            jobs = [j.id for j in scheduler.get_jobs() if j.id.startswith("markets:")]
            assert jobs == ["markets:binanceusdm shared from 127.0.0.2"]

    run(body(), timeout_s=30)


def test_mixing_an_account_address_with_none_is_warned() -> None:
    """Accounts of one exchange, some naming a source address and others none, and no
    feeds.source_addresses: those without leave from the machine's default address, which
    may be the named one: one IP, two budgets. alertd cannot tell, so it says so, one line
    naming the field (review of srcip12, finding 2)."""

    def warned(accounts: list[AccountConfig], **feeds: Any) -> list[str]:
        settings = QUIET.model_copy(update=feeds)
        return config_warnings(Config(version=1, accounts=accounts, feeds=settings))

    mixed = [offline("d0"), offline("p0", source_address="127.0.0.1"), offline("d1")]
    assert warned(mixed) == [
        "accounts[1].source_address: 127.0.0.1, while 2 binanceusdm account(s) have none "
        "(accounts[0] first) and feeds.source_addresses is empty: those leave from the "
        "machine's default address, which alertd cannot resolve (alertd was not asked to "
        "resolve it), counted as another IP; if it is one of the named addresses, that IP "
        "gets two request budgets, twice the exchange's limit (a ban): give every "
        "binanceusdm account a source_address, or list the addresses in "
        "feeds.source_addresses"
    ]
    # every account spread over listed addresses, every one named, none named, a disabled one
    assert warned(mixed, source_addresses=["127.0.0.2"]) == []
    assert (
        warned(
            [offline("p0", source_address="127.0.0.1"), offline("p1", source_address="127.0.0.2")]
        )
        == []
    )
    assert warned([offline("d0"), offline("d1")]) == []
    assert warned([offline("d0", enabled=False), offline("p0", source_address="127.0.0.1")]) == []
    # another exchange's accounts are another host
    bybit = AccountConfig(name="y", exchange="bybit", api_key_env="K", secret_env="S")
    assert warned([bybit, offline("p0", source_address="127.0.0.1")]) == []


def test_an_exchange_closed_builds_no_session_for_a_late_request() -> None:
    """ccxt refuses a request's lazy open after close() (ExchangeClosedByUser, ccxt issue
    #27418): alertd's bound session is not built for it either (it would be left open, with
    its connector, nobody's). Before, the override built it first (finding 3)."""

    async def body() -> None:
        for address in (None, "127.0.0.2"):
            config = offline("a", source_address=address)
            exchange = make_exchange(config, {}, FeedSettings())
            exchange.open()
            await exchange.close()
            with pytest.raises(ccxt.ExchangeClosedByUser):
                exchange.open(True)  # what ccxt's fetch does for an orphaned request
            assert exchange.session is None, address

    run(body(), timeout_s=30)


def test_an_ipv4_mapped_address_is_refused() -> None:
    """::ffff:127.0.0.2 binds, but a socket bound to it reaches no IPv4 host (aiohttp's
    AssertionError, retried forever): refused with the address to write (finding 4)."""
    found = problems(
        "version: 1\nfeeds:\n  source_addresses: ['::ffff:127.0.0.2']\naccounts:\n"
        "  - {name: a, exchange: hyperliquid, wallet_address: '0xabc',"
        " source_address: '::ffff:7f00:3'}\n"
    )
    assert found == [
        "accounts[0].source_address: ::ffff:7f00:3 is an IPv4-mapped IPv6 address, which "
        "reaches no host: write 127.0.0.3",
        "feeds.source_addresses: ::ffff:7f00:2 is an IPv4-mapped IPv6 address, which "
        "reaches no host: write 127.0.0.2",
    ]


def test_the_default_route_host_keeps_its_name_beside_bound_ones() -> None:
    """The host name is the key a saved IP ban is restored by: the default route's stays
    "binanceusdm" whatever address-bound hosts exist; numbers count only the hosts of the
    same exchange and address (finding 5: it was "binanceusdm #2" beside a bound one)."""

    def names(accounts: list[AccountConfig]) -> list[str]:
        config = Config(version=1, accounts=accounts, feeds=QUIET)
        manager = FeedManager(config, {}, FeedOptions(exchange_factory=Built()))
        return [b.host for b in manager._ip_budgets.values()]

    assert names([offline("a", source_address="127.0.0.2"), offline("b")]) == [
        "binanceusdm from 127.0.0.2",
        "binanceusdm",
    ]
    assert names([offline("b")]) == ["binanceusdm"]
    # another host of the exchange (a proxy) is numbered among the same address's only
    proxied = {"urls": {"fapiPublic": "http://127.0.0.1:1/fapi/v1"}}
    assert names(
        [
            offline("a", source_address="127.0.0.2"),
            offline("b"),
            offline("c", **proxied),
            offline("d", source_address="127.0.0.2", **proxied),
        ]
    ) == [
        "binanceusdm from 127.0.0.2",
        "binanceusdm",
        "binanceusdm #2",
        "binanceusdm #2 from 127.0.0.2",
    ]


def warnings_with(route: tuple[tuple[str, ...], str], accounts: list[AccountConfig]) -> list[str]:
    asked: list[str] = []

    def default_route(account: AccountConfig) -> tuple[tuple[str, ...], str]:
        asked.append(account.name)
        return route

    config = Config(version=1, accounts=accounts, feeds=QUIET)
    warned = config_warnings(config, default_route)
    assert asked == ["d0"]  # the first account naming none, once per exchange
    return warned


def test_the_mix_is_warned_only_where_the_default_route_cannot_be_resolved() -> None:
    """``check`` and ``run`` resolve the default route's address as the feeds do: resolved,
    the accounts naming it share its one budget (or it is another IP): nothing to warn of;
    unresolved, the warning says why (issue 14, ws13)."""
    mixed = [offline("d0"), offline("p0", source_address="127.0.0.1")]
    assert warnings_with((("127.0.0.1",), ""), mixed) == []
    assert warnings_with((("127.0.0.5",), ""), mixed) == []
    (line,) = warnings_with(((), "fapi.binance.com: [Errno -2] Name or service not known"), mixed)
    assert line.startswith("accounts[1].source_address: 127.0.0.1, while 1 binanceusdm ")
    assert "which alertd cannot resolve (fapi.binance.com: [Errno -2] Name or service" in line


def loopback(name: str, host: str = "127.0.0.1", **extra: Any) -> AccountConfig:
    """A Binance account whose every URL names ``host``, the loopback (nothing is sent)."""
    urls = {
        "fapiPublic": f"http://{host}:9/fapi/v1",
        "fapiPrivate": f"http://{host}:9/fapi/v1",
        "ws": {"future": f"ws://{host}:9/ws"},
    }
    return offline(name, urls=urls, **extra)


def test_the_default_route_s_accounts_and_those_naming_its_address_share_one_budget() -> None:
    """Accounts naming no address leave from the kernel's choice for the exchange's host
    (the loopback's 127.0.0.1 for 127.0.0.1); accounts naming 127.0.0.1 send from the same IP:
    one per-IP budget, one pace, one ban (before: two, twice the exchange's limit; check and
    run only warned). Accounts naming another address are another IP. A ban saved under
    either name before the restart holds the one budget (issue 14, ws13)."""
    assert route_source_addresses("127.0.0.1", 443) == (("127.0.0.1",), "")
    assert default_route_address(loopback("x")) == (("127.0.0.1",), "")

    def budgets(accounts: list[AccountConfig]) -> tuple[FeedManager, list[list[str]]]:
        config = Config(version=1, accounts=accounts, feeds=QUIET)
        manager = FeedManager(config, {}, FeedOptions(exchange_factory=Built()))
        hosts = by_host(manager.feeds.values())
        return manager, [sorted(f.config.name for f in host) for host in hosts]

    named = [loopback("d0"), loopback("p0", source_address="127.0.0.1"), loopback("d1")]
    manager, hosts = budgets(named)
    assert hosts == [["d0", "d1", "p0"]]
    (budget,) = {f.shared.ip_budget for f in manager.feeds.values()}
    assert budget.host == "binanceusdm"
    # the groups stay apart (the named address's HTTP pool is bound to it)
    assert {f.shared.source_address for f in manager.feeds.values()} == {None, "127.0.0.1"}
    manager.restore_ip_bans({"binanceusdm from 127.0.0.1": (418, time.time() + 600)})
    assert budget.banned() is not None
    # another address is another IP
    other = [loopback("d0"), loopback("p0", source_address="127.0.0.2")]
    assert sorted(budgets(other)[1]) == [["d0"], ["p0"]]


def dual_stack(host: str, port: int) -> list[tuple[Any, ...]]:
    """A resolver answering for ``exchange.test`` as for a dual-stack host: its AAAA record
    first (RFC 6724 puts IPv6 ahead where the machine has it), then its A record; on this
    machine ::1 and 127.0.0.1. Any other name: not known."""
    if host != "exchange.test":
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return [
        (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0)),
        (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port + 1, 0, 0)),
        (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port)),
    ]


def on_dual_stack(name: str, **extra: Any) -> AccountConfig:
    """A Binance account whose every URL names ``exchange.test`` (:func:`dual_stack`)."""
    return loopback(name, "exchange.test", **extra)


def test_a_dual_stack_host_s_route_is_read_for_each_family() -> None:
    """alertd's connector with no address dials every resolved address at once (AF_UNSPEC,
    happy eyeballs with no delay) and keeps the first to connect: a host with an AAAA record
    whose IPv6 path is slow or broken is reached over IPv4, from the IPv4 route's address.
    The route is read for each family, so accounts naming that IPv4 address share the budget
    of those naming none (before: read for the first address only, ::1, two budgets for
    127.0.0.1 and no warning: review of ws13, family_probe.py)."""
    resolve = functools.partial(default_route_address, resolve=dual_stack)
    assert resolve(on_dual_stack("x")) == (("::1", "127.0.0.1"), "")

    def budgets(accounts: list[AccountConfig]) -> list[str]:
        config = Config(version=1, accounts=accounts, feeds=QUIET)
        options = FeedOptions(exchange_factory=Built(), default_route=resolve)
        manager = FeedManager(config, {}, options)
        return sorted({f.shared.ip_budget.host for f in manager.feeds.values()})

    mixed = [on_dual_stack("d0"), on_dual_stack("p0", source_address="127.0.0.1")]
    assert budgets(mixed) == ["binanceusdm"]
    assert budgets([on_dual_stack("d0"), on_dual_stack("p6", source_address="::1")]) == [
        "binanceusdm"
    ]
    # neither family's route is named: another IP (whichever family connects), no warning
    other = [on_dual_stack("d0"), on_dual_stack("p0", source_address="127.0.0.2")]
    assert budgets(other) == ["binanceusdm", "binanceusdm from 127.0.0.2"]
    assert config_warnings(Config(version=1, accounts=other, feeds=QUIET), resolve) == []
    assert config_warnings(Config(version=1, accounts=mixed, feeds=QUIET), resolve) == []
    # both families' routes named: one budget cannot be both, the second IP gets two: warned
    both = [*mixed, on_dual_stack("p6", source_address="::1")]
    (line,) = config_warnings(Config(version=1, accounts=both, feeds=QUIET), resolve)
    assert line.startswith("accounts[1].source_address: 127.0.0.1, while 1 binanceusdm ")
    assert "which is ::1 or 127.0.0.1 (the host's address families route" in line
    assert "they share ::1's request budget, and 127.0.0.1 gets two" in line


def test_the_route_is_read_for_the_host_the_feed_s_requests_go_to() -> None:
    """Binance USDⓈ-M's feed reads fapi.binance.com (its user-data stream is fstream's); ccxt's
    URLs name api.binance.com (sapi, spot) more often: the spec's ``api_url`` picks fapi
    (before: api.binance.com, whose IPv6 records may not be fapi's). Elsewhere, and for an
    account's own ``urls``, the host most named."""
    assert exchange_host(offline("x")) == ("fapi.binance.com", 443)
    assert exchange_host(offline("x", sandbox=True)) == ("testnet.binancefuture.com", 443)
    assert exchange_host(loopback("x")) == ("127.0.0.1", 9)
    bybit = AccountConfig(name="b", exchange="bybit", api_key_env="K", secret_env="S")
    assert exchange_host(bybit) == ("api.bybit.com", 443)
