"""All accounts' feeds, and their periodic jobs on one apscheduler scheduler.

One account's fatal error stops that account only; the others keep streaming.

Accounts that reach one exchange the same way share a mark hub and a
:class:`~alertd.feeds.ccxt_exchange.SharedExchange` (market catalogue, HTTP pool, SSL context,
per-IP rate limiter, REST slots): the manager owns both and closes them after the feeds. Each
account's periodic jobs start at its own offset within the interval, so that a thousand
reconciles do not hit the exchange in the same second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from alertd.config import AccountConfig, Config, FeedSettings, Secret, source_address
from alertd.exchanges.registry import get_spec
from alertd.feeds.books import Covers, OrderBooks
from alertd.feeds.ccxt_exchange import (
    REST_BUDGET_SHARE,
    HostBan,
    IpBudget,
    SharedExchange,
    new_ssl_context,
)
from alertd.feeds.feed import AccountFeed, listed_marks_hub
from alertd.feeds.marks import MarkHub
from alertd.feeds.options import PRODUCTION, FeedOptions
from alertd.feeds.state import START_KEEPS_FAILING_S

log = logging.getLogger(__name__)

# How often skipped periodic runs are summed up in the log (at most one line per kind).
SKIPS_REPORTED_EVERY_S = 600.0


class _NoSkipWarnings(logging.Filter):
    """apscheduler warns once per skipped run (its previous run still going); with a thousand
    accounts past their REST budget that is several lines a second. The manager counts the
    skips instead and sums them up every ``SKIPS_REPORTED_EVERY_S``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


# the setting that paces each kind of periodic job
_INTERVAL_SETTING = {
    "reconcile": "reconcile_interval_s",
    "tiers": "tier_refresh_interval_s",
    "listen-key": "listen_key_renew_interval_s",
    "markets": "tier_refresh_interval_s",
}

# the feeds scheduler's own logger, under apscheduler's (whose level the CLI sets), the skip
# warnings filtered
_scheduler_log = logging.getLogger("apscheduler.scheduler.feeds")
_scheduler_log.addFilter(_NoSkipWarnings())


class FeedFactory(Protocol):
    """Builds one account's feed: :class:`AccountFeed`, or a test's subclass of it."""

    def __call__(
        self,
        config: AccountConfig,
        secrets: Mapping[str, Secret],
        settings: FeedSettings,
        options: FeedOptions = ...,
        *,
        hub: MarkHub | None = ...,
        shared: SharedExchange | None = ...,
        listed_hub: MarkHub | None = ...,
    ) -> AccountFeed: ...


# The share of an exchange's per-IP budget the periodic reconciles may use together; the rest
# serves bootstraps after a restart, resyncs after a reconnect, marks and tiers.
RECONCILE_BUDGET_SHARE = 0.5
# How often the reconciles are fitted to the budget again (what the accounts hold changes the
# weight of their stop reads), and by how much an interval must move to be replaced.
REPLAN_EVERY_S = 60.0
REPLAN_TOLERANCE = 0.1


def spread_starts(count: int, interval_s: float) -> list[float]:
    """First-run delays of ``count`` jobs with one interval: spread evenly over one interval
    after the first (job i at interval * (1 + i / count)), not all at once."""
    return [interval_s * (1 + i / count) for i in range(count)]


def rescaled_delay_s(
    remaining_s: float, before_s: float, interval_s: float, since_last_s: float | None
) -> float:
    """When a reconcile job next runs after its interval moved from ``before_s`` to
    ``interval_s``, ``remaining_s`` before its next run on the old plan, ``since_last_s``
    after its last run began (None: not run yet): at the same phase of the new interval, so
    the jobs stay spread as they were and no account waits longer between two runs than the
    longer of the two intervals. Starting every job over one to two new intervals from now,
    whatever its last run, let an account wait the old interval and two new ones: past its
    private streams' stale allowance (2 intervals and ``stale_after_s``,
    ``publisher.stale_streams``), a quiet healthy account called stale. Never later than two
    new intervals after its last run either (a shrink by more than half): that run as the
    account's feed timed it, not one ``before_s`` before the next (after a rescale the two
    are no longer an interval apart: two shrinks a minute apart, 600, 200, then 60 s, left an
    account 180 s between reconciles where 150 s were allowed). A job not run yet (its first
    run one to two intervals after the start) keeps its place in the spread."""
    phase_s = max(remaining_s, 0.0) * interval_s / before_s
    if since_last_s is None:
        return phase_s
    return max(0.0, min(phase_s, 2 * interval_s - since_last_s))


def live_after_s(live_weight: float, weight_per_minute: float) -> float:
    """When the last of the accounts sharing one per-IP budget can be live, at the earliest,
    after a cold start, ``live_weight`` being what they all spend until then: the rolling
    window admits ``REST_BUDGET_SHARE`` of the minute's weight at once, and as much again
    each minute as the first requests leave it (Binance, 1,000 accounts of 12 weight: 12,000
    against 2,160 a minute, the sixth window: 300 s)."""
    budget = weight_per_minute * REST_BUDGET_SHARE
    return 60.0 * (math.ceil(live_weight / budget) - 1)


def openings_after_s(openings: int, count: int, window_s: float) -> float:
    """When the last of ``openings`` websockets of one host can open, at the earliest, in its
    :class:`~alertd.feeds.ccxt_exchange.OpeningPacer`'s turns: ``count`` at once, as many
    again each ``window_s`` as the first end (1,000 OKX accounts, 2,000 openings at 2 a
    second: 999 s). Their handshakes lengthen it: each holds its place until a window after
    it opened (2,000 OKX openings of 0.6 s handshakes: the last turn at 1,611 s), a time the
    start cannot know, so the pace line says "at least"."""
    return window_s * (math.ceil(openings / count) - 1) if openings else 0.0


def by_host(feeds: Iterable[AccountFeed]) -> list[list[AccountFeed]]:
    """``feeds`` by the exchange host they send from (their :class:`IpBudget`): the groups of
    one host (accounts whose ccxt options differ) share its per-IP limits, so one plan paces
    them all (the start, the reconciles). A feed with nothing shared is a host of its own."""
    hosts: dict[int, list[AccountFeed]] = {}
    for feed in feeds:
        budget: object = feed if feed.shared is None else feed.shared.ip_budget
        hosts.setdefault(id(budget), []).append(feed)
    return list(hosts.values())


def _accounts_of(host: Sequence[AccountFeed]) -> str:
    """``Binance USDⓈ-M accounts``, ``... accounts from 127.0.0.2`` where the host's accounts
    send from a source address of their own (each address paced on its own)."""
    shared = host[0].shared
    address = shared.source_address if shared is not None else None
    where = f" from {address}" if address is not None else ""
    return f"{host[0].spec.profile.name} accounts{where}"


def _insurance_poll(hub: MarkHub, window_s: float) -> Callable[[], Awaitable[None]]:
    async def poll() -> None:
        await hub.refresh_insurance(window_s)

    poll.__qualname__ = f"insurance fund poll of {hub.name}"
    return poll


class FeedManager:
    def __init__(
        self,
        config: Config,
        secrets: Mapping[str, Mapping[str, Secret]],
        options: FeedOptions = PRODUCTION,
        *,
        feed_factory: FeedFactory = AccountFeed,
        dynamics_span_s: float = 0.0,
        book_covers: Covers | None = None,
    ) -> None:
        self.config = config
        self.book_covers = book_covers  # which held symbols' order books a rule reads
        self.options = options
        self.dynamics_span_s = dynamics_span_s  # the rules' longest price-dynamics window
        self.hubs: dict[str, MarkHub] = {}
        # by how accounts reach the exchange and from which source address: the accounts'
        # groups, and the exchanges only the listed-marks hubs reach (Binance portfolio
        # margin's COIN-M: binancecoinm), shared by those hubs alike: refreshed and closed
        # with the others
        self.shared: dict[str, SharedExchange] = {}
        self.listed_shared: dict[str, SharedExchange] = {}
        # by how accounts reach the exchange: the group holding its market catalogue (the
        # accounts' and the listed-marks hubs' apart)
        self._first_shared: dict[str, SharedExchange] = {}
        self._first_listed: dict[str, SharedExchange] = {}
        self._ip_budgets: dict[str, IpBudget] = {}  # by exchange host: what one IP may send
        # by every name a host's budget is known by (a saved ban is restored by it): the
        # default route's accounts' and those naming its address share one budget, named as
        # whichever came first, known by both names
        self._budget_names: dict[str, IpBudget] = {}
        # by exchange host: the exchange and the address its name was given by (the first
        # account's: None, the default route's)
        self._named_as: dict[str, tuple[str, str | None]] = {}
        # by exchange host whose accounts mix a source address with none: the address those
        # without one leave from (the kernel's route), None where it cannot be told
        self._default_routes = self._default_routes_of(config)
        self.feeds: dict[str, AccountFeed] = {}
        self._ssl_context: ssl.SSLContext | None = None
        for account in config.accounts:
            if not account.enabled:
                continue
            key = self._key(account)
            listed = self._listed_hub_for(key, account)
            feed = feed_factory(
                account,
                secrets.get(account.name, {}),
                config.feeds,
                options,
                hub=self._hub_for(key, account),
                shared=self._shared_for(key, account),
                # only where there is one: a test's feed factory may not take it
                **({"listed_hub": listed} if listed is not None else {}),
            )
            self.feeds[account.name] = feed
        self._scheduler: AsyncIOScheduler | None = None
        self._stopping = False  # close() began: jobs cancelled now are stopped, not crashed
        # the accounts of each exchange host (:func:`by_host`), one plan each, and the
        # hosts' reconcile intervals
        self._hosts: list[list[AccountFeed]] = []
        self._reconcile_intervals: list[float] = []
        self._replanned_at = options.clock()
        self._running_jobs: set[asyncio.Task[Any]] = set()  # periodic runs in flight
        self.skipped: dict[str, int] = {}  # periodic runs skipped since the last report, by kind
        # by kind, the ban of the host's IP the last of those skipped met: it held the run
        self._skips_banned: dict[str, HostBan] = {}
        self._skips_reported_at = options.clock()

    @staticmethod
    def _key(account: AccountConfig) -> str:
        """Accounts with the same key reach the same exchange the same way."""
        return json.dumps(
            [account.exchange, account.sandbox, account.urls, account.options],
            sort_keys=True,
            default=str,
        )

    def _source_address(self, account: AccountConfig) -> str | None:
        return source_address(account, self.config.feeds.source_addresses)

    def _shared_for(self, key: str, account: AccountConfig, listed: bool = False) -> SharedExchange:
        """The group of accounts that reach the same exchange the same way from the same source
        address: its own HTTP pool bound to that address and the address's per-IP limits; the
        market catalogue is the first group's of the exchange (``catalogue_of``). ``listed``:
        of a listed-marks hub's exchange (:attr:`listed_shared`), from the address of the
        account that needs it (its collateral rates read signs with that account's key)."""
        groups, firsts = (
            (self.listed_shared, self._first_listed)
            if listed
            else (self.shared, self._first_shared)
        )
        address = self._source_address(account)
        full = json.dumps([key, address])
        if full not in groups:
            if self._ssl_context is None:
                self._ssl_context = new_ssl_context()
            settings = self.config.feeds
            factory = self.options.exchange_factory
            first = firsts.get(key)

            def catalogue_exchange(shared: SharedExchange, account: AccountConfig = account) -> Any:
                return factory(account, {}, settings, None, shared)  # markets are public

            names = list(firsts)
            index = names.index(key) if key in names else len(names)
            groups[full] = SharedExchange(
                f"{account.exchange} shared"
                + (f" #{index}" if index else "")
                + (f" from {address}" if address is not None else ""),
                catalogue_exchange,
                self._ssl_context,
                rest_concurrency=(
                    settings.rest_concurrency
                    or get_spec(account.exchange).capabilities.rest_concurrency
                ),
                ip_budget=self._ip_budget_for(account, address),
                source_address=address,
                catalogue_of=first,
            )
            firsts.setdefault(key, groups[full])
        return groups[full]

    def _every_shared(self) -> list[SharedExchange]:
        """The accounts' groups and the listed-marks hubs' exchanges."""
        return [*self.shared.values(), *self.listed_shared.values()]

    @staticmethod
    def _host_of(account: AccountConfig) -> str:
        """How an account reaches its exchange's host, whatever its ccxt options."""
        return json.dumps(
            [account.exchange, account.sandbox, account.urls], sort_keys=True, default=str
        )

    def _default_routes_of(self, config: Config) -> dict[str, str | None]:
        """Per exchange host whose enabled accounts mix a source address with none: the address
        the kernel's default route gives those without one (:mod:`alertd.feeds.route`), or None
        (unresolved: two budgets, which ``check`` and ``run`` warn of). The route is one per
        address family the host resolves to (the connections try every family at once): where
        one of them is a named address, those without one share its budget (a dual-stack host
        whose IPv6 fails is reached from the IPv4 route's address); where none is, they are
        another IP (either family's: one budget of their own). Not asked elsewhere: where no
        account names one, no address is compared."""
        used: dict[str, set[str | None]] = {}
        first: dict[str, AccountConfig] = {}
        for account in config.accounts:
            if account.enabled:
                host = self._host_of(account)
                used.setdefault(host, set()).add(self._source_address(account))
                first.setdefault(host, account)
        routes: dict[str, str | None] = {}
        for host, addresses in used.items():
            if None in addresses and len(addresses) > 1:
                sources, _ = self.options.default_route(first[host])
                named = [address for address in sources if address in addresses]
                # two families routed from two named addresses: the first's budget is shared,
                # and check and run warn of the other's two
                routes[host] = named[0] if named else (sources[0] if sources else None)
                if named:
                    log.info(
                        "%s accounts without a source_address leave from %s; %s is an "
                        "address others name: one IP, one budget",
                        first[host].exchange,
                        " or ".join(sources),
                        named[0],
                    )
        return routes

    def _ip_budget_for(self, account: AccountConfig, address: str | None) -> IpBudget:
        """One per exchange host and source address: accounts whose ccxt options differ
        (their own groups, with their own catalogue and REST slots) still send from the one
        IP (review4: two groups of Bybit accounts, each held within the IP's cap, together
        passed it). The same URLs written in another key order are the same host (sorted: two
        budgets would send twice the cap). Each source address is an IP of its own to the
        exchange: its own weight budget, openings, bans; the accounts naming none leave from
        the default route's address, one with those naming it (:meth:`_default_routes_of`)."""
        route = self._default_routes.get(self._host_of(account))
        real = address if address is not None else route
        host = json.dumps(
            [account.exchange, account.sandbox, account.urls, real], sort_keys=True, default=str
        )
        if host not in self._ip_budgets:
            # named as the operator knows it: the exchange, numbered where it has more hosts,
            # and the address it is reached from where one is configured
            # numbered among the hosts of the same exchange and the same address only (the
            # name is the key a saved ban is restored by: a default-route host must stay
            # "binanceusdm" whatever address-bound hosts the config adds or removes)
            where = f" from {address}" if address is not None else ""
            same = sum(named == (account.exchange, address) for named in self._named_as.values())
            self._named_as[host] = (account.exchange, address)
            self._ip_budgets[host] = IpBudget.of(
                get_spec(account.exchange).capabilities,
                account.exchange + (f" #{same + 1}" if same else "") + where,
                self.options.clock,
                self.options.sleep,
                self.options.wall_clock,
            )
        budget = self._ip_budgets[host]
        self._budget_names.setdefault(budget.host, budget)
        if real is not None and real == route:
            # shared by the default route's accounts and those naming its address: a ban
            # saved under either name (a config that named it, or not, before) is this IP's
            plain = budget.host.removesuffix(f" from {real}")
            self._budget_names.setdefault(plain, budget)
            self._budget_names.setdefault(f"{plain} from {real}", budget)
        return budget

    def restore_ip_bans(self, bans: Mapping[str, tuple[int, float]]) -> None:
        """The bans of the hosts' IPs met before a restart, by host: (HTTP status, end in
        epoch seconds); every account of such a host waits for its end again
        (:meth:`IpBudget.restore_ban`), none sends into it."""
        named = [
            *self._budget_names.items(),
            *((b.host, b) for b, _ in self._shared_read_budgets()),
        ]
        for name, budget in named:
            if name in bans:
                budget.restore_ban(*bans[name])

    def _shared_read_budgets(self) -> list[tuple[IpBudget, str]]:
        """The budgets of the hosts only a hub's shared read reaches (Binance's /sapi,
        api.binance.com: the portfolio margin collateral rates), with what that read is."""
        return [
            (hub.shared_read.budget, hub.adapter.shared_read_name or hub.shared_read.name)
            for hub in self.hubs.values()
            if hub.shared_read is not None and hub.shared_read.budget is not None
        ]

    def ip_bans(self) -> list[HostBan]:
        """The exchange hosts whose IP is banned now, each once (every account of one waits
        for the ban's end: :class:`IpBudget`); a host only a shared read reaches, with what
        ages meanwhile (:attr:`HostBan.holds`): its ban was only logged, and a portfolio
        margin account's collateral rates aged unseen."""
        bans = [budget.banned() for budget in self._ip_budgets.values()]
        bans += [
            dataclasses.replace(ban, holds=what)
            for budget, what in self._shared_read_budgets()
            if (ban := budget.banned()) is not None
        ]
        return [ban for ban in bans if ban is not None]

    def _hub_for(self, key: str, account: AccountConfig) -> MarkHub:
        """Accounts that reach the same exchange the same way share one mark hub."""
        if key not in self.hubs:
            settings = self.config.feeds
            factory = self.options.exchange_factory
            shared = self._shared_for(key, account)

            def public_exchange(sink: Any, account: AccountConfig = account) -> Any:
                return factory(account, {}, settings, sink, shared)  # no secrets: marks are public

            self.hubs[key] = MarkHub(
                f"{account.exchange} marks" + (f" #{len(self.hubs)}" if self.hubs else ""),
                public_exchange,
                get_spec(account.exchange).new_adapter(),
                self.options.backoff_factory(settings.backoff),
                self.options.clock,
                self.options.sleep,
                min_reconnect_interval_s=settings.stale_after_s,
                # the asset index's REST read, the truth its stream is checked against
                index_read_every_s=settings.reconcile_interval_s,
                wall_clock=self.options.wall_clock,
                dynamics_span_s=self.dynamics_span_s,
                shared=shared,
            )
            hub = self.hubs[key]
            hub.books = OrderBooks(
                f"{hub.name} books".replace(" marks", ""),
                account.exchange,
                hub.ready_exchange,
                hub.adapter,
                lambda: hub.subscribers,
                settings.order_books,
                self.options.clock,
                self.options.sleep,
                covers=self.book_covers,
            )
        return self.hubs[key]

    def _listed_hub_for(self, key: str, account: AccountConfig) -> MarkHub | None:
        """Accounts that reach the same exchange the same way share one hub of the marks their
        listed positions follow (Binance portfolio margin's COIN-M: one dstream connection and
        one COIN-M catalogue for all of them); None: the account lists none alertd follows.
        Run, closed and told of ticks as the other hubs are (it is one of :attr:`hubs`)."""
        listed_key = f"{key} listed"
        if listed_key not in self.hubs:
            hub = listed_marks_hub(
                f"{account.exchange} listed marks" + (f" #{len(self.hubs)}" if self.hubs else ""),
                account,
                get_spec(account.exchange).new_adapter(),
                self.config.feeds,
                self.options,
                # its own exchange's catalogue (refreshed with the others: markets job) and
                # its own host's budget: /dapi is another host with its own per-IP limit
                lambda public: self._shared_for(self._key(public), public, listed=True),
            )
            if hub is None:
                return None
            self.hubs[listed_key] = hub
        return self.hubs[listed_key]

    def _job(self, step: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """A periodic job that ends quietly when the feeds stop under it.

        apscheduler cancels a job still running at shutdown and logs the cancellation as the
        job's crash, with a traceback: a reconcile in flight when the daemon stops is not one.
        A run it submitted but had not started is logged so too ("Error running job"): the
        manager's :meth:`close` lets such a run start, and it returns at once.
        """

        @functools.wraps(step)
        async def job() -> None:
            if self.stopping():
                return  # submitted in the turn the feeds began to stop: nothing to do
            task = asyncio.current_task()
            assert task is not None
            self._running_jobs.add(task)
            try:
                await step()
            except asyncio.CancelledError:
                if not self.stopping():
                    raise  # cancelled for another reason than the shutdown
                log.debug("%s: stopped with the feeds", getattr(step, "__qualname__", step))
            finally:
                self._running_jobs.discard(task)

        return job

    def stopping(self) -> bool:
        """Whether :meth:`close` began (read afresh after every wait)."""
        return self._stopping

    def set_dynamics_span(self, span_s: float) -> None:
        """The rules changed (a reload): every hub keeps price windows this long."""
        self.dynamics_span_s = span_s
        for hub in self.hubs.values():
            hub.set_dynamics_span(span_s)

    def set_book_covers(self, covers: Covers | None) -> None:
        """The rules changed (a reload): the order books they read, from the next round on."""
        self.book_covers = covers
        for hub in self.hubs.values():
            if hub.books is not None:
                hub.books.covers = covers

    def schedule(self) -> AsyncIOScheduler:
        """The periodic jobs (not started): per account reconcile, tier refresh and listen-key
        renewal, each account at its own offset within the interval; per shared exchange the
        market catalogue's refresh, with the tiers'."""
        settings = self.config.feeds
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), logger=_scheduler_log)
        scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        now = datetime.now(UTC)

        def add(
            job: Callable[[], Awaitable[None]], job_id: str, interval: float, delay: float
        ) -> None:
            scheduler.add_job(
                self._job(job),
                "interval",
                seconds=interval,
                start_date=now + timedelta(seconds=delay),
                id=job_id,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )

        feeds = list(self.feeds.items())
        self._hosts = by_host([f for _, f in feeds])
        intervals = [self.reconcile_interval_s(host) for host in self._hosts]
        self._reconcile_intervals = intervals
        for host, interval in zip(self._hosts, intervals, strict=True):
            paced_s = self._say_pace(host)
            openings_s, _ = self._openings_pace(host)
            self._warn_stretched(host, interval)
            for feed in host:
                feed.reconcile_interval_s = interval
                feed.paced_start_s = paced_s
                feed.openings_paced_s = openings_s
        self._pace_index_reads()
        jobs: list[tuple[str, float, list[tuple[str, Callable[[], Awaitable[None]]]]]] = [
            ("reconcile", interval, [(f.config.name, f.reconcile) for f in host])
            for host, interval in zip(self._hosts, intervals, strict=True)
        ]
        jobs += [
            ("tiers", settings.tier_refresh_interval_s, [(n, f.refresh_tiers) for n, f in feeds]),
            (
                "listen-key",
                settings.listen_key_renew_interval_s,
                [(n, f.renew) for n, f in feeds if f.spec.capabilities.renews_listen_key],
            ),
            (
                "markets",
                settings.tier_refresh_interval_s,
                # once per catalogue: a group on another address refreshes its holder's
                [(s.name, s.refresh_markets) for s in self._every_shared() if s.holds_catalogue],
            ),
        ]
        builtin = self.config.builtin_rules
        if builtin.insurance_fund:
            window = builtin.insurance_fund_window
            funds = [(h.name, _insurance_poll(h, window)) for h in self.hubs.values()]
            jobs.append(("insurance", builtin.insurance_fund_interval, funds))
        for kind, interval, calls in jobs:
            for (name, call), delay in zip(calls, spread_starts(len(calls), interval), strict=True):
                add(call, f"{kind}:{name}", interval, delay)
        return scheduler

    def _pace_index_reads(self) -> None:
        """Each hub's asset index read over REST every longest planned reconcile interval of
        its accounts (recomputed at each plan and replan): that read stands in for their
        reconciles' own (weight 10 at Binance), so at the configured interval, shorter than a
        stretched plan, it would spend more of the per-IP budget than the plan counts; a plan
        that shrinks again brings it back down with it."""
        longest: dict[MarkHub, float] = {}
        for feed in self.feeds.values():
            longest[feed.hub] = max(longest.get(feed.hub, 0.0), feed.reconcile_interval_s)
        for hub, interval in longest.items():
            if hub.rates is not None:
                hub.rates.read_every_s = interval

    def reconcile_interval_s(self, host: Sequence[AccountFeed]) -> float:
        """``feeds.reconcile_interval_s``, or longer where the accounts of ``host`` (every group
        of one exchange host: one per-IP budget) would together exceed
        ``RECONCILE_BUDGET_SHARE`` of that budget (Binance: 1,000 accounts x 10 weight a
        minute is 10,000, four times its 2,400), counting each account's snapshot at its own
        mode's weight and its share of the stop-order reads (2 per held symbol on Binance,
        every few reconciles: known once the accounts hold something, see
        :meth:`replan_reconciles`). The streams keep every account current; the reconcile is
        the safety net, and one that overruns the exchange's limit gets the IP banned (418),
        which holds every account of the host until the ban ends."""
        configured = self.config.feeds.reconcile_interval_s
        per_minute = host[0].spec.capabilities.rest_weight_per_minute
        weights = [f.reconcile_weight() for f in host]
        if host[0].shared is None or per_minute is None:
            return configured
        counted = [w for w in weights if w is not None]
        if len(counted) < len(weights):
            return configured
        budget_per_s = per_minute * REST_BUDGET_SHARE * RECONCILE_BUDGET_SHARE / 60
        return max(configured, sum(counted) / budget_per_s)

    @staticmethod
    def _rest_pace(host: Sequence[AccountFeed]) -> tuple[float, str]:
        """When the accounts of ``host`` can all be live within their per-IP REST budget
        (0: all at once), and what they spend in it."""
        per_minute = host[0].spec.capabilities.rest_weight_per_minute
        # what each one's configured mode reads (Binance portfolio margin: /papi)
        weights = [f.live_weight() for f in host]
        if host[0].shared is None or per_minute is None:
            return 0.0, ""
        counted = [w for w in weights if w is not None]
        if not counted or len(counted) < len(weights):
            return 0.0, ""
        total = sum(counted)
        after_s = live_after_s(total, per_minute)
        if after_s <= 0:
            return 0.0, ""
        low, high = min(counted), max(counted)
        if low == high:
            each = f"{low:g} weight each"
        else:  # the groups' modes differ (portfolio margin: its /papi reads)
            each = f"{low:g} to {high:g} weight each, {total:.0f} in all"
        return after_s, f"{each}, {per_minute * REST_BUDGET_SHARE:.0f} a minute"

    @staticmethod
    def _openings_pace(host: Sequence[AccountFeed]) -> tuple[float, str]:
        """When the private websockets of ``host``'s accounts can all have opened in their
        host's turns (0: all at once; OKX opens 3 a second per IP), and how many."""
        shared = host[0].shared
        pacer = shared.ip_budget.openings if shared is not None else None
        if pacer is None:
            return 0.0, ""
        openings = sum(f.private_connections() for f in host)
        after_s = openings_after_s(openings, pacer.count, pacer.window_s)
        if after_s <= 0:
            return 0.0, ""
        return after_s, f"{openings} websocket openings, {pacer.count} every {pacer.window_s:g} s"

    def _say_pace(self, host: Sequence[AccountFeed]) -> float:
        """Say at start when the accounts of ``host`` (every group of one exchange host)
        cannot all be live at once within their per-IP limits (the REST budget, the
        websocket openings): how long it takes, and what the others look like meanwhile.
        Returns that time (0: all at once)."""
        paces = [self._rest_pace(host), self._openings_pace(host)]
        after_s = max(s for s, _ in paces)
        if after_s <= 0:
            return 0.0
        builtin = self.config.builtin_rules
        log.info(
            "%d %s go live at their per-IP budget's pace: all after at least %.0f s "
            "(%s); the health line counts the others not live meanwhile%s",
            len(host),
            _accounts_of(host),
            after_s,
            "; ".join(said for s, said in paces if s > 0),
            f", and feed-down fires for one still waiting builtin_rules.feed_down_after_s "
            f"({builtin.feed_down_after_s:g} s) after that (or after the last of them to "
            "bootstrap or first open its stream, if later), or once its bootstrap, or its "
            "private stream's first opening, keeps failing (failures in a row over more than "
            f"{START_KEEPS_FAILING_S:g} s)"
            if builtin.feed_down
            else "",
        )
        return after_s

    def _warn_stretched(self, host: Sequence[AccountFeed], interval: float) -> None:
        configured = self.config.feeds.reconcile_interval_s
        if interval <= configured:
            return
        capabilities = host[0].spec.capabilities
        log.warning(
            "%d %s share one per-IP request budget (%d weight a minute): each is "
            "reconciled every %.0f s, not every %g s (feeds.reconcile_interval_s); the "
            "streams keep them current meanwhile (docs/scaling.md: splitting accounts over IPs)",
            len(host),
            _accounts_of(host),
            capabilities.rest_weight_per_minute,
            interval,
            configured,
        )

    def replan_reconciles(self) -> None:
        """Fit the reconciles to the budget again with what the accounts hold now (the stop
        reads grow with the held symbols, unknown when the jobs were first planned) and the
        modes their snapshots read: a host's interval that moved by more than
        ``REPLAN_TOLERANCE`` is replaced, each of its accounts' jobs (every group's) kept at
        its phase, rescaled to the new interval (:func:`rescaled_delay_s`)."""
        scheduler = self._scheduler
        if scheduler is None or not scheduler.running:
            return
        now = datetime.now(UTC)
        for i, host in enumerate(self._hosts):
            before = self._reconcile_intervals[i]
            interval = self.reconcile_interval_s(host)
            if abs(interval - before) <= before * REPLAN_TOLERANCE:
                continue
            self._reconcile_intervals[i] = interval
            log.info(
                "%d %s: reconciled every %.0f s (was %.0f s), their modes' snapshots "
                "and their stop-order reads counted in the per-IP budget",
                len(host),
                _accounts_of(host),
                interval,
                before,
            )
            for feed, delay in zip(host, spread_starts(len(host), interval), strict=True):
                feed.reconcile_interval_s = interval
                job_id = f"reconcile:{feed.config.name}"
                upcoming = scheduler.get_job(job_id).next_run_time
                if upcoming is not None:
                    remaining = (upcoming - now).total_seconds()
                    since_last = feed.since_reconcile_s()
                    delay = rescaled_delay_s(remaining, before, interval, since_last)
                start = now + timedelta(seconds=delay)
                scheduler.reschedule_job(
                    job_id, trigger="interval", seconds=interval, start_date=start
                )
                # a start due now is in the past by the time the trigger reads its own clock
                # (it would then run one whole interval later): run it at its start
                scheduler.modify_job(job_id, next_run_time=start)
        self._pace_index_reads()

    async def run(self) -> None:
        """Run every feed until cancelled; then stop the jobs and close the exchanges."""
        self._scheduler = self.schedule()
        self._scheduler.start()
        try:
            async with asyncio.TaskGroup() as group:
                for name, feed in self.feeds.items():
                    group.create_task(self._run_one(name, feed), name=f"feed:{name}")
                group.create_task(self._watchdog(), name="staleness watchdog")
                for hub in self.hubs.values():
                    group.create_task(hub.run(), name=hub.name)
        finally:
            await self.close()

    async def _watchdog(self) -> None:
        # one loop for every feed: a wake-up a second, not one per account
        period = min(1.0, self.config.feeds.stale_after_s / 4)
        while True:
            await self.options.sleep(period)
            for feed in list(self.feeds.values()):
                if feed.marks_may_be_stale():
                    await feed.check_stale()
            self.report_skips()
            now = self.options.clock()
            if now - self._replanned_at >= REPLAN_EVERY_S:
                self._replanned_at = now
                self.replan_reconciles()

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        kind, _, account = str(event.job_id).partition(":")
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
        feed = self.feeds.get(account)
        ban = feed.host_ban() if feed is not None else None
        if ban is not None:
            self._skips_banned[kind] = ban

    def report_skips(self, every_s: float = SKIPS_REPORTED_EVERY_S) -> None:
        """One line per kind of periodic job whose runs were skipped since the last report."""
        now = self.options.clock()
        if now - self._skips_reported_at < every_s:
            return
        self._skips_reported_at = now
        settings = self.config.feeds
        wall = self.options.wall_clock()
        for kind, count in sorted(self.skipped.items()):
            setting = _INTERVAL_SETTING.get(kind, "reconcile_interval_s")
            ban = self._skips_banned.get(kind)
            cause = (
                "the exchange's rate limit or the REST slots (feeds.rest_concurrency) are saturated"
                if ban is None
                else f"{ban.said(wall)}: its requests wait for the ban's end"
            )
            log.warning(
                "%d %s runs skipped in the last %.0f s: an account's previous run was still "
                "going after feeds.%s (%g s): %s",
                count,
                kind,
                every_s,
                setting,
                getattr(settings, setting),
                cause,
            )
        self.skipped.clear()
        self._skips_banned.clear()

    async def _run_one(self, name: str, feed: AccountFeed) -> None:
        await feed.run(watchdog=False)
        if feed.state.fatal is not None:
            log.error("%s: feed stopped for good: %s", name, feed.state.fatal)

    async def close(self) -> None:
        """Stop in order: no new periodic runs; the runs in flight ended (their requests
        cancelled); then the feeds, the hubs and last what they share."""
        self._stopping = True
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.pause()  # submits nothing more
            # a run submitted in this very turn has not started: apscheduler would cancel it
            # unstarted and log that as an error; one turn of the loop starts it, and it
            # returns at once (the feeds are stopping)
            await asyncio.sleep(0)
            running = list(self._running_jobs)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            scheduler.shutdown(wait=False)  # nothing left in flight to cancel
        await asyncio.gather(*(feed.close() for feed in self.feeds.values()))
        await asyncio.gather(*(hub.close() for hub in self.hubs.values()))
        # last: every account's and hub's exchange is closed, nothing uses the pools any more
        await asyncio.gather(*(shared.close() for shared in self._every_shared()))
