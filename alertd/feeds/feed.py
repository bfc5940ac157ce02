"""One account's feed: REST bootstrap, websocket streams, reconnects, resyncs, staleness.

    bootstrap:  markets -> what the streams need (Gate's user id) -> the account's mode
                (refused, computed, or the exchange's own ratio) -> positions + balance
                (REST) -> tier tables for held symbols; every reconcile reads the mode again
    streams:    positions, balance, one mark stream per held symbol, a staleness watchdog
    on a NetworkError: back off (jittered, capped, reset after health), resync over REST,
                       resubscribe (ccxt neither resubscribes nor re-snapshots on its own)
    on a fatal error (bad key, no permission, an account alertd refuses as it is: see
                      ``classify``): stop this account, record why; an IP ban is not one
                      (every account of the host waits for its end: ``IpBudget``)

Periodic jobs (reconcile, tier refresh, listen-key renewal) are methods here and are
scheduled by :class:`~alertd.feeds.manager.FeedManager`.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import enum
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from contextlib import nullcontext
from decimal import Decimal
from typing import Any

import ccxt

from alertd.config import AccountConfig, FeedSettings, Secret
from alertd.engine.margin import compute
from alertd.engine.model import Side
from alertd.engine.reported import ExchangeRatioPosition
from alertd.engine.stops import StopOrder
from alertd.errors import AccountRefused
from alertd.exchanges.registry import get_spec
from alertd.feeds.adapter import (
    ExchangeAdapter,
    FrameError,
    Part,
    PublicTables,
    UnreadFee,
    checked_stops,
)
from alertd.feeds.ccxt_exchange import (
    ErrorKind,
    HostBan,
    IpBudget,
    Opening,
    PublicPause,
    SharedExchange,
    classify,
    describe,
    dial_backoff_s,
    drop_connections,
    load_markets,
    rest_slot,
    retry_delay,
)
from alertd.feeds.marks import MarkHub, SharedRead, bad_mark
from alertd.feeds.options import PRODUCTION, FeedOptions
from alertd.feeds.state import (
    AccountEvent,
    AccountMode,
    AccountState,
    Coverage,
    MarketInfo,
    MissedChange,
    MissedPushes,
    ModeReading,
    PoolRates,
    PositionState,
    ReportedAccount,
    Stream,
    missed_changes,
)
from alertd.snapshot.compare import Comparison, closest, compare

log = logging.getLogger(__name__)

# a held market the catalogue does not list reloads it, at most this often per account
MARKET_RELOAD_EVERY_S = 300.0
# how long a public mark read over REST serves the exchange's other accounts: at most one read
# per symbol a second, two in OKX's window of 10 per 2 s per IP and instrument (the rest for
# the other groups on the IP); a second old, as fresh as the stream's ticks it is seeding
MARK_SHARED_FOR_S = 1.0
# how long one half of a transfer between an account's wallets waits for its other half,
# pushed apart (:meth:`AccountFeed._hold_half`): the exchange sends both as the transfer
# lands, so a second is past any delivery gap of one socket; held longer, the transfer's
# change shows that much later, a wallet drained by it too
TRANSFER_HALF_HOLD_S = 1.0


def listed_marks_hub(
    name: str,
    config: AccountConfig,
    adapter: ExchangeAdapter,
    settings: FeedSettings,
    options: FeedOptions,
    shared: Callable[[AccountConfig], SharedExchange] | None = None,
) -> MarkHub | None:
    """The mark hub of the markets ``config``'s account lists beside its own
    (:meth:`ExchangeAdapter.listed_marks`: a Binance portfolio margin account's COIN-M
    positions, on binancecoinm's public streams), reached the way the account reaches its
    exchange (its URLs, sandbox) with no secrets; its exchange connects only once a symbol is
    subscribed (an account without such a position opens no connection). None: it lists
    nothing alertd follows. ``shared``: the manager's resources of the hub's exchange (its
    catalogue, refreshed on the USDⓈ-M one's schedule, and its host's :class:`IpBudget`, so
    that a ban of that host pauses the hub), given the hub's public account; None: alone (a
    feed without a manager loads its catalogue once)."""
    marks = adapter.listed_marks(config.options)
    if marks is None:
        return None
    public = config.model_copy(update={"exchange": marks.exchange_id, "options": {}})
    resources = shared(public) if shared is not None else None
    hub = MarkHub(
        name,
        lambda sink: options.exchange_factory(public, {}, settings, sink, resources),
        marks,
        options.backoff_factory(settings.backoff),
        options.clock,
        options.sleep,
        min_reconnect_interval_s=settings.stale_after_s,
        wall_clock=options.wall_clock,
        stale_after_s=settings.stale_after_s,
        shared=resources,
    )
    hub.close_when_idle = True  # its marks only: idle once the listed positions close
    if marks.shared_read_name is not None:
        # read once per exchange for its accounts, on the market catalogue's and the tiers'
        # schedule (feeds.tier_refresh_interval_s)
        host = marks.shared_read_host
        # another host's read: its bans and 429s paused in a budget of its own, per hub (a hub
        # per source address: an IP's, named with it as the accounts' hosts are, so that two
        # addresses' bans are told apart)
        address = resources.source_address if resources is not None else None
        budget = (
            None
            if host is None
            else IpBudget(
                rest_limit_per_ip=True,
                ip_ban=marks.shared_read_ban,
                host=host + (f" from {address}" if address is not None else ""),
                clock=options.clock,
                sleep=options.sleep,
                wall_clock=options.wall_clock,
            )
        )
        hub.shared_read = SharedRead(
            f"{name}: {marks.shared_read_name}",
            options.clock,
            settings.tier_refresh_interval_s,
            settings.stale_after_s,
            budget,
        )
    return hub


def realizes(
    before: tuple[ExchangeRatioPosition, ...], after: tuple[ExchangeRatioPosition, ...]
) -> bool:
    """Whether a push taking the listed positions from ``before`` to ``after`` reduced,
    closed or flipped one (a flip in one-way mode closes the side held: its position gone):
    the only fills that realize PnL into the wallet. An add or a new entry price realizes
    nothing the push's size and entry do not carry."""
    now = {(p.symbol, p.side): p.contracts for p in after}
    return any(
        (p.symbol, p.side) not in now or now[(p.symbol, p.side)] < p.contracts for p in before
    )


class PushesDuringReads:
    """The pushes applied while a REST snapshot of the account is being read (issue 11): the
    read's answer predates them, so once it lands they are applied again on top of it, in the
    order they came. Each is a function that applies one push to the state and says whether
    it changed it; a push older, by the exchange's own time, than the value the snapshot read
    (``AccountState.update_positions``, ``_set_wallet``; the listed positions' push) is
    dropped there, so a late push never rolls a newer snapshot back. Every REST snapshot of
    the account goes through :meth:`AccountFeed.resync` (the bootstrap, the settle resync
    after going live or a reconnect, the reconcile, a COIN-M fill's read), which opens a
    window here as it begins and closes it where the state is written: the one place."""

    def __init__(self, state: Callable[[], AccountState] | None = None) -> None:
        self._kept: list[KeptPush] = []
        self._reads = 0  # snapshot reads in flight
        # the live state, whose copy as each kept push found it is one of the drift check's
        # moments of the read (:class:`MomentsOfRead`)
        self._state = state

    def begin(self) -> int:
        """A snapshot read begins: where its pushes start in the log."""
        self._reads += 1
        return len(self._kept)

    def apply(
        self,
        push: Callable[[], bool],
        again: Callable[[], bool] | None = None,
        part: Part = Part.POSITIONS,
        at: int | None = None,
    ) -> bool:
        """Apply a push (of ``part``, made at ``at`` by the exchange's own time, where it
        says) now, and keep it while a read is in flight: ``again`` where applying it over a
        snapshot differs from ``push`` (a push that is a change of what it meets)."""
        if not self._reads:
            return push()
        live = None if self._state is None else self._state()
        found = None if live is None else moment_of(live)
        applied = push()
        changed = live is None or found is None or not same_part(found, live, part)
        self._kept.append(KeptPush(again or push, part, found, changed, at))
        return applied

    def kept_since(self, since: int) -> list[KeptPush]:
        """The pushes kept since ``since``, in order."""
        return self._kept[since:]

    @property
    def reading(self) -> bool:
        """Whether a snapshot read is in flight."""
        return self._reads > 0

    def kept(self, since: int) -> bool:
        """Whether any push came since ``since``."""
        return len(self._kept) > since

    def again(self, since: int, step: Callable[[KeptPush, bool], None] | None = None) -> int:
        """The pushes kept since ``since`` applied again, in order, over the snapshot just
        written; how many were not dropped as older than it. ``step`` is called after each
        one with whether it was (:class:`MomentsOfRead`)."""
        applied = 0
        for kept in self._kept[since:]:
            done = kept.again()
            applied += done
            if step is not None:
                step(kept, done)
        return applied

    def end(self) -> None:
        """A snapshot read ended (landed or failed); the last one drops the log."""
        self._reads -= 1
        if not self._reads:
            self._kept.clear()


@dataclasses.dataclass(frozen=True)
class KeptPush:
    """A push kept while a snapshot is read (:class:`PushesDuringReads`)."""

    again: Callable[[], bool]  # applies it again over the snapshot; whether not dropped
    part: Part  # the part of the state it changes
    found: AccountState | None  # the state as it found it, live (a copy: :func:`moment_of`)
    # whether it changed its part when it came (:func:`same_part`; a repeat of a value: not)
    changed: bool
    # when the exchange made it (ms, its own stamp: the latest of a position push's rows'
    # update times), where each row says; None: not said
    at: int | None = None


def made_at(rows: Sequence[PositionState]) -> int | None:
    """When the exchange made a position push, by its own stamps: the latest of its rows'
    update times (ms); None where a row carries none (or an update sequence: no time)."""
    times = [p.version for p in rows]
    if not times or not all(isinstance(t, int) for t in times):
        return None
    return max(t for t in times if isinstance(t, int))


def same_part(a: AccountState, b: AccountState, part: Part) -> bool:
    """Whether ``a`` and ``b`` hold the same ``part``: the positions by their sizes (a fill's
    change; a push's row and a REST row of one fill may differ in fields a push does not
    carry, Binance's ``ACCOUNT_UPDATE`` has no liquidation price, no leverage)."""
    if part is Part.POSITIONS:
        return a.sizes() == b.sizes()
    if part is Part.WALLETS:
        return a.wallet_balance == b.wallet_balance and a.pool_wallets == b.pool_wallets
    return a.listed_positions == b.listed_positions


# The most states a snapshot's drift is measured on (:class:`MomentsOfRead`): one computation
# of the account each, at a snapshot during whose read pushes came (a push adds at most two:
# the state it found, the state it leaves on top of the read). A read during which pushes
# made more (a burst of partial fills) measures no drift, the last comparison standing, as
# every read with pushes did before drift16.
DRIFT_MOMENTS_MAX = 12


def moment_of(state: AccountState) -> AccountState:
    """A copy of ``state`` that the pushes applied to it later leave as it is: shallow, with
    the containers a push changes in place (positions, other pools' wallets, the marks: a
    push that closes a position drops its mark live, :meth:`AccountFeed._sync_hub`) copied."""
    moment = copy.copy(state)
    moment.positions = dict(state.positions)
    moment.pool_wallets = dict(state.pool_wallets)
    moment.marks = dict(state.marks)
    return moment


class MomentsOfRead:
    """The states a snapshot's answers may each be of (drift16). The answers are read one
    after another (Binance: the positions, then the account; OKX: the balance with the
    mode, then the positions), each of one moment of the read, and each push kept during it
    is a change the exchange made meanwhile. An answer read before a push is of the state
    that push found (its ``found``, as alertd held it live); one read after it holds it: of
    the state as read (which holds what the answers read after the push hold) with the kept
    pushes applied again on top of it in order, one step each. Every moment is computed at
    the answer's marks.

    A push of the part the first answer reads (``first``: :attr:`ExchangeAdapter.read_first`)
    that changed it when it came and changes nothing applied again (or is dropped as older
    than the read) is one that answer already holds, and so does every answer read after it:
    the states it and the pushes before it found are of no answer of the read, and are no
    moments (fixdrift16: a late frame of a fill every answer held made the state before the
    fill a moment, and a model error the size of the fill measured nothing). A push of
    another part (Binance's wallet, read after the positions) says nothing of the first
    answer: the state it found stays a moment.

    A moment equal to another (:meth:`AccountState.holdings`: a push the answer already
    holds, one dropped as older than the read) is said once; the tier tables and markets are
    the final state's (a symbol a push opened has its tiers read after the pushes were
    applied; tier tables are only ever added), and so are the marks, over the moment's own (a
    position a push closed keeps the mark it had: the OKX balance answer, read before the
    positions answer, may be of a position closed meanwhile)."""

    def __init__(
        self,
        state: AccountState,
        kept: Sequence[KeptPush] = (),
        first: Part = Part.POSITIONS,
        first_ms: int | None = None,
        most: int = DRIFT_MOMENTS_MAX,
    ) -> None:
        self._state = state
        self._kept = kept
        self._first = first
        # the first answer's own time, where the exchange gives it (ExchangeAdapter.
        # first_answer_ms): a push made before it is held by that answer, of any part
        self._first_ms = first_ms
        self._most = most
        self._read = self._last = moment_of(state)
        self._seen = [state.holdings()]  # the steps', each said once
        # the states the pushes applied again leave, each new; None: more than ``most``
        self._steps: list[AccountState] | None = []
        self._stepped = 0  # the kept pushes applied again so far
        self._held = 0  # the kept pushes the first answer holds: the first so many
        # how many kept pushes came before the first one its stamp says was made at or after
        # the first answer was taken (None: none yet): that answer may not hold it, so the
        # state it found stays a moment, whatever a push after it says (two channels, no
        # order between them: OKX's wallet push made before the answer may come after a
        # position push made after it; review of okx17, note)
        self._after: int | None = None

    def step(self, push: KeptPush, applied: bool) -> None:
        """A kept push was applied again on top of the read (``applied``: not dropped as
        older than it): the state it leaves is a moment."""
        self._stepped += 1
        if self._steps is None:
            return
        held = not applied
        if applied:
            now = moment_of(self._state)
            held = same_part(self._last, now, push.part)
            self._last = now
            holdings = self._state.holdings()
            if holdings not in self._seen:
                self._seen.append(holdings)
                self._steps.append(now)
                if len(self._steps) > self._most:
                    self._steps = None
                    return
        if self._after is None and self._made(push, after=True):
            self._after = self._stepped - 1
        if push.changed and ((held and push.part is self._first) or self._made(push)):
            self._held = self._stepped if self._after is None else self._after

    def _made(self, push: KeptPush, after: bool = False) -> bool:
        """Whether the exchange's own stamps say ``push`` was made before the first answer
        was taken (``after``: at or after it). Before: that answer holds it, whichever part it
        changed (OKX: a position push against the balance answer's time; the sizes cannot say
        it of a wallet answer)."""
        if push.at is None or self._first_ms is None:
            return False
        return push.at >= self._first_ms if after else push.at < self._first_ms

    def complete(self) -> list[AccountState] | None:
        """Each moment that is a complete account, said once, with the final state's tier
        tables, markets and marks, its own marks under them (a state a push found before the
        first snapshot landed is none: no wallet yet); None where there are more than the
        bound, or none."""
        if self._steps is None:
            return None
        final = self._state
        found = (p.found for p in self._kept[self._held :] if p.found is not None)
        states: list[AccountState] = []
        seen: list[tuple[object, ...]] = []
        for moment in (self._read, *found, *self._steps):
            moment.tiers, moment.markets = final.tiers, final.markets
            moment.marks = {**moment.marks, **final.marks}
            # an incomplete moment is left out before the equal ones are said once: it
            # does not hide a complete one
            if moment.missing() or (holdings := moment.holdings()) in seen:
                continue
            seen.append(holdings)
            states.append(moment)
        return states if 0 < len(states) <= self._most else None


@dataclasses.dataclass(eq=False)
class HeldFrame:
    """A private frame held by :meth:`AccountFeed._hold`: as it came, the coins it moves,
    ``side`` ("wallet", "loan" or "cross") where it is a transfer's or a loan's half, and
    ``waits`` while it waits for its other half (else it waits only behind an earlier held
    frame of its coins); ``seen_alone``: a loan's half a margin trade's push of its coin
    came beside (an asset alertd does not follow in it: a margin sell of the borrowed coin),
    still waiting for its own cross margin push; if its bound passes without one, it is the
    trade's and ``as_seen``: applied as that push is, its values taken as seen, the coin's
    equity left as read (:meth:`ExchangeAdapter.pushed_listed`)."""

    message: Any
    at: float
    assets: frozenset[str]
    side: str | None
    waits: bool = False
    seen_alone: bool = False
    as_seen: bool = False


class Change(enum.Enum):
    """What a listener is told changed."""

    MARK = "mark"  # one symbol's mark price: the engine can update incrementally
    ACCOUNT = "account"  # positions, balance or tiers: rebuild the account
    # the pool's rates alone (Binance's asset index): rebuild the account; its positions,
    # stops, mode and feed as they were (what the daemon's band of it may be proven again at)
    RATES = "rates"
    EVENT = "event"  # an exchange push (margin call ...)
    FATAL = "fatal"  # the feed stopped for good


Listener = Callable[["AccountFeed", Change, str | None], None]


class FeedStopped(Exception):
    """A fatal error ended this account's feed; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AccountFeed:
    def __init__(
        self,
        config: AccountConfig,
        secrets: Mapping[str, Secret],
        settings: FeedSettings,
        options: FeedOptions = PRODUCTION,
        *,
        hub: MarkHub | None = None,
        shared: SharedExchange | None = None,
        listed_hub: MarkHub | None = None,
    ) -> None:
        self.config = config
        # what this account shares with the others on its exchange (markets, HTTP pool, rate
        # limiter, REST slots); None: alone, it owns all of it (alertd snapshot, tests)
        self.shared = shared
        self.settings = settings
        self.spec = get_spec(config.exchange)
        self.adapter = self.spec.new_adapter()
        # the exchange's public tables: read once for every account on it, or alone its own
        self.adapter.tables = shared.tables if shared is not None else PublicTables()
        self.state = AccountState(config.name, self.spec.profile, self.adapter.settle)
        self.state.wallet_includes_isolated = self.adapter.wallet_includes_isolated
        self.state.lined_modes = self.adapter.lined_modes
        self.state.line_source = self.adapter.line_source
        self._unlined_warned: set[str] = set()  # margin assets named in the log once each
        self._unread_fee_told: UnreadFee | None = None  # the fee-rate gap last logged
        # the held symbols the fee rates were last read for, the rates and what the read left
        # out (:meth:`_fee_rates`): kept until those symbols change or a reconcile reads again
        self._fee_read: tuple[frozenset[str], dict[str, Decimal], UnreadFee | None] | None = None
        # the unlined margin assets a snapshot was last asked for (:meth:`_reline`)
        self._relining: frozenset[str] = frozenset()
        self._secrets = secrets
        self._factory = options.exchange_factory
        self._clock = options.clock
        self._sleep = options.sleep
        self._backoff_factory = options.backoff_factory(settings.backoff)
        self.exchange: Any = None
        self.listeners: list[Listener] = []
        self.malformed: dict[str, int] = {}
        self.reconnects = 0
        self.drift: dict[str, Decimal] = {}
        self.comparison: Comparison | None = None
        # (alertd's, the exchange's) account margin ratio at the last reconcile
        self.ratios: tuple[Decimal, Decimal] | None = None
        self.ratio_pool: str | None = None  # the pool ``ratios`` are of (several pools)
        # marks come from a hub shared by the accounts of one exchange; alone, a feed owns one
        self._owns_hub = hub is None
        self.hub = hub or MarkHub(
            f"{config.name} marks",
            lambda sink: self._factory(self.config, {}, self.settings, sink, shared),
            self.adapter,
            self._backoff_factory,
            options.clock,
            options.sleep,
            shared=shared,
            stale_after_s=settings.stale_after_s,
            index_read_every_s=settings.reconcile_interval_s,
        )
        if self.hub.rates is not None:
            # a snapshot reads the streamed index while it is fresh (Binance multi-assets),
            # and its own REST read of it serves every account
            self.adapter.streamed_index = self.hub.rates.fresh_rows
            self.adapter.index_read = self.hub.rates.read
        self._subscribed: set[str] = set()
        # the marks of the positions it lists beside its own, on another exchange's public
        # streams (a Binance portfolio margin account's COIN-M positions: dstream), shared by
        # the accounts of its exchange or, alone, its own; None: it follows none
        self._owns_listed_hub = listed_hub is None
        self.listed_hub = listed_hub or listed_marks_hub(
            f"{config.name} listed marks", config, self.adapter, settings, options
        )
        if self.listed_hub is not None:
            self.adapter.listed_catalogue = self.listed_hub.ready_exchange
            if self.listed_hub.shared_read is not None:
                self.adapter.listed_read = self.listed_hub.shared_read.get
        self._listed_subscribed: set[str] = set()
        # how often the manager reconciles this account: the setting, or longer where many
        # accounts share one per-IP budget (a quiet private stream is fresh while reconciles
        # keep confirming it)
        self.reconcile_interval_s = settings.reconcile_interval_s
        # how long after start the per-IP budget's pace may keep this account waiting for its
        # first bootstrap (0: not paced); the manager sets it with the pace it says at start
        self.paced_start_s = 0.0
        # when (the feed's clock) its first bootstrap got one of the exchange's REST slots
        # (None: not yet), and whether it has queued for one: queued in alertd's own queue
        # behind feeds.rest_concurrency others, nothing failed, it is waiting its turn
        self.first_slot_at: float | None = None
        self._first_slot_queued = False
        self._stops_for: frozenset[str] = frozenset()  # the symbols of the last stops read
        self._reconciles = 0
        self._fees_read_at = 0  # the reconcile count at the last fee rates' read
        self._gave_way = False  # the last reconcile gave way to the host's bootstraps
        # when the last reconcile that read (not gave way) began, on this feed's clock: what a
        # replan rescales the next one from (FeedManager.replan_reconciles)
        self._reconcile_started: float | None = None
        self._markets_reloaded_at = -float("inf")
        self._markets_of: Any = None  # the catalogue ``state.markets`` was built from
        self._stops_read_at = -float("inf")
        # stop reads numbered as they begin, and the last one applied: a read overtaken by one
        # begun after it (an order push's, during a reconcile's) answers older news
        self._stops_reads = 0
        self._stops_read_queued = False  # a push-asked read of the stops waits for a slot
        self._stops_applied = 0
        self._group: asyncio.TaskGroup | None = None
        self._resync_lock = asyncio.Lock()
        # the pushes applied while a snapshot is read, applied again once it lands
        self._pushes = PushesDuringReads(lambda: self.state)
        # a push's realized fill (:meth:`_fill_resync`): the last one's time, whether a read
        # for it waits, and before when (the feed's clock) no other read for one starts
        self._fill_at = -float("inf")
        self._fill_why = "COIN-M fill"  # what the waiting read is for
        self._fill_resync_waits = False
        self._fill_resync_after = -float("inf")
        # the halves of a transfer held for their other half and the frames of their coins
        # queued behind them, in the order they came (:meth:`_hold`); when each coin's side
        # of a transfer was last applied alone, its other half not come by its bound
        self._held: list[HeldFrame] = []
        self._alone_at: dict[tuple[str, str], float] = {}
        # when a cross margin push of each coin last came carrying an asset alertd does not
        # follow (a margin trade's): a loan's push of the coin within the bound is its pair
        self._partial_at: dict[str, float] = {}
        # when the last successful resync began: one begun after a disconnect (or a reopen)
        # covers it; one that failed covers nothing
        self._last_resync_started = -float("inf")
        self._forced_at = -float("inf")
        # the watchdog's last finding of no stale mark: until when none can be, for the
        # symbols of these coins, listed positions and positions (tuples replaced, never
        # changed in place; the positions' keys as they were). Its check of every account
        # every second was 5% of a calm daemon's samples at 1,000 Bybit accounts
        # (benchmarks.md, "Session 15, calm15"); a mark arriving only moves the moment later
        self._marks_fresh: (
            tuple[float, tuple[Any, ...], tuple[Any, ...], frozenset[tuple[str, Side]]] | None
        ) = None
        self._last_failure = -float("inf")
        # the private pushes seen (a watch of positions, balance or orders returned), those of
        # positions, when a position push last named each symbol, and when the last snapshot
        # written began: a periodic reconcile that finds a position changed that no push named
        # since, and no position push at all while it reads nor for a grace after, is the
        # stream's miss (:meth:`_judge_reconcile`)
        self.position_pushes = 0
        self._pushed_at: dict[str, float] = {}
        self.snapshots = 0  # the snapshots written (a bootstrap, a resync, a reconcile)
        self._snapshot_started: float | None = None
        # its private stream opened again since a miss was found: the next push, or a
        # reconcile that misses nothing, ends the miss
        self._reopened_since_miss = False
        self._connected_once = False
        self._fatal_event = asyncio.Event()
        # the turns taken to open each of its private connections (by the name its adapter
        # gives it), one taken at a time per connection; each connection's opening not ended
        # yet; how many of its connections wait for their turn; when it last got one
        self._turns: dict[str, int] = {}
        self._turn_locks: dict[str, asyncio.Lock] = {}
        self._openings: dict[str, Opening] = {}
        self._turns_waited = 0
        self.opening_turn_at: float | None = None
        # when it waited for those turns since it last streamed: the waits ended (from, to;
        # none added once an opening of its own failed: a few at most), and when the one
        # going on began (None: none)
        self._turn_waits: list[tuple[float, float]] = []
        self._turns_waited_since: float | None = None
        # an opening of its own failed since it last streamed (a 429 at the handshake, a ban,
        # an outage): its waits for turns are then no longer waits through no failure
        self._opening_failed = False
        # per connection, how many times its websocket closed or failed, and its turns at the
        # last of those: a stream whose socket closed while it read over REST (the stops after
        # an order push) never saw its watch fail, and ccxt's next watch opens the connection
        # again; another connection's close is not its own (OKX's business connection's)
        self._closes: dict[str, int] = {}
        self._turns_at_close: dict[str, int] = {}
        # the longest its host's pace can keep an opening waiting: every private connection of
        # the host's accounts at its count a window (the manager sets it with the start's
        # pace; 0: not scheduled, or all open at once)
        self.openings_paced_s = 0.0

    def waiting_first_turn(self) -> bool:
        """Not connected yet through no failure of its own: its bootstrap, or after it its
        private stream's first opening (Binance's listen key, one more request in the same
        per-IP budget), first or retried after a failure in the crowd (a 429, a 5xx, a
        timeout: the two steps alike, until the failures in a row keep failing), waits its turn
        in the exchange's paced start (:attr:`paced_start_s`)."""
        return not self._connected_once and not self.state.start_kept_failing

    def host_start_progress_at(self) -> float | None:
        """When (its clock) an account of its exchange host (its own included) last
        bootstrapped or first opened its private stream; None: none yet, or no host shared."""
        return self.shared.ip_budget.start_progress_at if self.shared is not None else None

    def waiting_for_first_slot(self) -> bool:
        """Its first bootstrap is queued for one of the exchange's REST slots, not given one
        yet (1,000 Bybit accounts at 8 slots: the last waits minutes, through no failure)."""
        return self._first_slot_queued and self.first_slot_at is None

    def host_public_pause(self) -> PublicPause | None:
        """The pause of its exchange host's public requests while it lasts (a 429 on a public
        endpoint limited per IP: OKX's, Gate's), its own public reads waiting too."""
        return self.shared.ip_budget.public_paused() if self.shared is not None else None

    def host_ban(self) -> HostBan | None:
        """The ban of its exchange host's IP while it lasts: every REST request of the host
        waits for its end (``IpBudget``), this account's too."""
        return self.shared.ip_budget.banned() if self.shared is not None else None

    def private_connections(self) -> int:
        """How many websocket connections its private streams open (OKX: the private one and
        the business one for the algo orders; one elsewhere)."""
        streams = ["positions", "balance"] + (["orders"] if self.adapter.watches_stops else [])
        return len({self.adapter.stream_connection(s) for s in streams})

    def waiting_for_opening_turn(self) -> bool:
        """One of its private connections waits for its turn to open in its exchange host's
        pace (:class:`~alertd.feeds.ccxt_exchange.OpeningPacer`: OKX opens 3 a second per IP,
        1,000 accounts take minutes), nothing failed meanwhile."""
        return self._turns_waited > 0

    def waited_for_turns_s(self, now: float, after: float = -float("inf")) -> float:
        """How long, since it last streamed (and after ``after``), it has waited for turns to
        open its private connections (the wait going on at ``now`` included): time not down.
        None once one of its openings failed meanwhile (each retry's wait credited held a
        dropped OKX account 3,000 s from feed-down with 999 others retrying), and never more
        than its host's own accounts' openings take at its pace (:attr:`openings_paced_s`)."""
        if self._opening_failed:
            return 0.0
        waits = list(self._turn_waits)
        if self._turns_waited_since is not None:
            waits.append((self._turns_waited_since, now))
        waited = sum(max(0.0, end - max(begin, after)) for begin, end in waits)
        return min(waited, self.openings_paced_s)

    async def _opening_turn(self, connection: str, seen: int) -> Opening | None:
        """Wait for the turn to open ``connection`` where its host paces openings, unless a
        turn was taken since the stream asking last lost it (``seen``: the connection's turns
        then): the streams sharing one connection (OKX's positions and balance) take one turn
        for it, whichever asks first, after a drop too. Taken before the stream's watch, so
        that ccxt signs its login after the wait (OKX's timestamp expires in 30 s), and after
        ccxt's dial backoff of the connection (:func:`dial_backoff_s`), not through it."""
        pacer = self.shared.ip_budget.openings if self.shared is not None else None
        if pacer is None:
            return None
        lock = self._turn_locks.setdefault(connection, asyncio.Lock())
        async with lock:
            if self._turns.get(connection, 0) > seen:
                return None
            exchange = self.exchange
            if exchange is not None:
                # ccxt's dial backoff of the connection's URL after a failed dial, slept before
                # the turn: the watch would sleep it in ccxt's open, in the turn, its place
                # held meanwhile (review of ws13)
                backoff_s = dial_backoff_s(
                    exchange, lambda url: self.adapter.socket_connection(url) == connection
                )
                if backoff_s > 0:
                    await self._sleep(backoff_s)
            if not self._turns_waited:
                self._turns_waited_since = self._clock()
            self._turns_waited += 1
            try:
                opening = await pacer.turn()
            finally:
                self._turns_waited -= 1
                if not self._turns_waited and self._turns_waited_since is not None:
                    if not self._opening_failed:
                        self._turn_waits.append((self._turns_waited_since, self._clock()))
                    self._turns_waited_since = None
            self._turns[connection] = self._turns.get(connection, 0) + 1
            self.opening_turn_at = self._clock()
            self._openings[connection] = opening
            return opening

    def on_closed(self, url: str, opening_failed: bool) -> None:
        """Its websocket of ``url`` closed or failed: the next step of each stream on that
        connection takes a turn to open it unless one was taken since (:meth:`_loop`). One
        that failed before it opened is a failed opening of its own, whichever stream's turn
        it was, or none's (a watch that opened it again after its turn's step returned)."""
        connection = self.adapter.socket_connection(url)
        self._closes[connection] = self._closes.get(connection, 0) + 1
        self._turns_at_close[connection] = self._turns.get(connection, 0)
        if opening_failed:
            self._opening_failed = True
            self._opening_ended(self._openings.get(connection))

    def _opening_ended(self, opening: Opening | None) -> None:
        if opening is not None:
            opening.ended()
            for connection, held in list(self._openings.items()):
                if held is opening:
                    del self._openings[connection]

    def reconciles_held_until(self, now: float) -> float:
        """Until when (monotonic) its periodic reconciles last gave way to the first
        bootstraps of accounts on its exchange host (:meth:`reconcile`): ``now`` while one
        runs; -inf if never. A retried bootstrap does not count (see ``IpBudget``)."""
        shared = self.shared
        return -float("inf") if shared is None else shared.ip_budget.reconciles_held_until(now)

    # --- lifecycle ----------------------------------------------------------------------

    def _exchange(self) -> Any:
        if self.exchange is None:
            self.exchange = self._factory(
                self.config, self._secrets, self.settings, self, self.shared
            )
        return self.exchange

    async def close(self) -> None:
        self._leave_streams()
        if self._owns_hub:
            await self.hub.close()
        if self._owns_listed_hub and self.listed_hub is not None:
            await self.listed_hub.close()
        if self.exchange is not None:
            exchange, self.exchange = self.exchange, None
            await exchange.close()

    async def bootstrap(self, stops: bool = True, again: bool = False) -> None:
        """Markets, positions, balance, tiers and (unless ``stops`` is False) the open stop
        orders over REST. Raises ccxt errors as they come.

        With many accounts on one exchange, at most ``feeds.rest_concurrency`` bootstrap at
        once (the rest wait their turn, ahead of the live accounts' REST work; ``again``, a
        retry after a failure, ahead of the others waiting), on the exchange's one market
        catalogue."""
        shared = self.shared
        counted = shared.ip_budget.bootstrap(again) if shared is not None else nullcontext()
        with counted:
            self._first_slot_queued = True
            async with rest_slot(shared, bootstrap=True, again=again):
                if self.first_slot_at is None:
                    self.first_slot_at = self._clock()
                exchange = self._exchange()
                await load_markets(exchange, shared)
                self._follow_catalogue(exchange)
                await self.adapter.prepare(exchange)
                await self.resync(stops=stops)
                self.state.bootstrapped = True

    def _market_infos(self, exchange: Any) -> dict[str, MarketInfo]:
        symbols = self.config.symbols
        if self.shared is None:
            return self.adapter.markets(exchange, symbols)
        # the same for every account with the same symbols (read-only): one dict, not one
        # per account (about 170 KB each at 550 markets)
        key = ("market infos", None if symbols is None else tuple(symbols))
        return self.shared.derived(key, lambda: self.adapter.markets(exchange, symbols))

    async def run(self, watchdog: bool = True) -> None:
        """Bootstrap (retrying transient errors), then stream until cancelled or fatal.

        ``watchdog=False`` when a manager checks staleness for many feeds in one loop.
        """
        backoff = self._backoff_factory()
        while not self.state.bootstrapped:
            try:
                # the stops are read by the resync once the streams subscribe (the order
                # stream among them): reading them here as well would only read them twice
                await self.bootstrap(stops=False, again=backoff.attempt > 0)
            except Exception as exc:
                if self._is_fatal(exc):
                    return
                self._start_failure(exc, "its bootstrap")
                delay = retry_delay(backoff, exc)
                log.warning(
                    "%s: bootstrap failed (%s); retrying in %.1fs",
                    self.config.name,
                    self.state.start_failed,
                    delay,
                )
                await self._sleep(delay)
        log.info(
            "%s: bootstrapped: %d positions, wallet %s %s%s",
            self.config.name,
            len(self.state.positions),
            self.state.wallet_balance,
            self.state.settle,
            f" (after {backoff.attempt} failed tries)" if backoff.attempt else "",
        )
        self._start_step_done()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._loop("positions", self._positions_step))
                group.create_task(self._loop("balance", self._balance_step))
                if self.adapter.watches_stops:
                    group.create_task(self._loop("orders", self._orders_step))
                if watchdog:
                    group.create_task(self._watchdog())
                if self._owns_hub:
                    group.create_task(self.hub.run())
                if self._owns_listed_hub and self.listed_hub is not None:
                    group.create_task(self.listed_hub.run())
                group.create_task(self._stop_on_fatal())
                self._sync_mark_streams()
                self._settle_resync(self._clock(), "start")
        except* FeedStopped:
            pass
        finally:
            self._group = None
            self._leave_streams()

    def _leave_streams(self) -> None:
        """Unsubscribe from the hub's marks and asset index."""
        for symbol in sorted(self._subscribed):
            self.hub.unsubscribe(symbol, self)
        self._subscribed.clear()
        for symbol in sorted(self._listed_subscribed):
            if self.listed_hub is not None:
                self.listed_hub.unsubscribe(symbol, self)
        self._listed_subscribed.clear()
        if self.hub.rates is not None:
            self.hub.rates.unfollow(self)

    def _start_failure(self, exc: BaseException, step: str) -> None:
        """A transient failure of ``step`` on the way to live (its bootstrap, its private
        stream's first opening): recorded, and said once when the failures in a row come to
        keep failing (the paced start's grace then over)."""
        keeps = self.state.start_keeps_failing
        self.state.start_failure(describe(exc), self._clock())
        if self.state.start_keeps_failing and not keeps and self.paced_start_s > 0:
            log.warning(
                "%s: %s keeps failing (failures in a row over %.0f s): feed-down no longer "
                "waits for the paced start",
                self.config.name,
                step,
                self.state.start_failing_for,
            )

    def _connected(self) -> None:
        """A private stream delivered or opened: the account streams; the first time, the
        failures in a row of its start are over."""
        self.state.connected = True
        self._turn_waits.clear()
        self._opening_failed = False
        if not self._connected_once:
            self._connected_once = True
            # once per account: the moment it is live (bench/feeds.py times a start by it)
            log.info("%s: streaming: its private stream open", self.config.name)
            self._start_step_done()

    def _start_step_done(self) -> None:
        """Its bootstrap, or its private stream's first opening, went through: its failures
        in a row are over, and its host's start made progress (:meth:`host_start_progress_at`)."""
        self.state.start_step_done()
        if self.shared is not None:
            self.shared.ip_budget.start_progressed(self._clock())

    async def _stop_on_fatal(self) -> None:
        # a fatal error seen by a periodic job (outside the task group) ends the streams too
        await self._fatal_event.wait()
        raise FeedStopped(self.state.fatal or "stopped")

    # --- REST ---------------------------------------------------------------------------

    async def resync(self, stops: bool = True, fees: bool = False) -> None:
        """Positions and balance over REST (a full snapshot), then any missing tiers; the
        open stop orders too unless ``stops`` is False (they are then kept as they are); the
        fee rates where ``fees``, or where the held symbols differ from their last read's.
        ``stops`` also makes it a net snapshot for the adapter
        (:meth:`~alertd.feeds.adapter.ExchangeAdapter.snapshot_begins`): with it False, what
        the streams push or other answers show may be left unread. The pushes that arrive
        while it reads are applied again on top of what it read (:class:`PushesDuringReads`)."""
        since = self._pushes.begin()
        try:
            await self._resync(since, stops, fees)
        finally:
            self._pushes.end()

    async def _resync(self, since: int, stops: bool, fees: bool) -> None:
        started = self._clock()
        exchange = self._exchange()
        if not exchange.markets:  # a client made afresh after a close: the adapters need them
            await load_markets(exchange, self.shared)
        # the catalogue may have been reloaded since (the daily refresh, another account's
        # new listing): the markets this account reads follow it
        self._follow_catalogue(exchange)
        # ``stops``: this snapshot is the net for a missed push (:meth:`reconcile`); so is
        # the first, the daemon's bootstrap (which reads no stops): nothing told yet
        self.adapter.snapshot_begins(net=stops or not self.state.bootstrapped)
        mode = await self.adapter.fetch_mode(exchange)
        # the first answer's own time, where it gives one: read before the positions are
        first_ms = self.adapter.first_answer_ms()
        if mode.coverage is Coverage.REFUSED:
            self._set_mode(mode)
            raise AccountRefused(mode.limits)
        wanted = self.config.symbols
        positions, reported, marks = await self.adapter.fetch_positions(exchange)
        held = {p.symbol for p in positions if wanted is None or p.symbol in wanted}
        if await self._reload_for(exchange, held):
            # a market listed since the catalogue was loaded: the positions read again
            self._follow_catalogue(exchange)
            positions, reported, marks = await self.adapter.fetch_positions(exchange)
        if wanted is not None:
            positions = [p for p in positions if p.symbol in wanted]
        marks_sent = dict(self.state.marks)  # as the reads that price the coins are sent
        wallet, account_figures = await self.adapter.fetch_balance(exchange)
        pools = await self.adapter.fetch_pools(exchange)
        listed = await self.adapter.fetch_listed_positions(exchange)
        collateral = await self.adapter.fetch_collateral(exchange)
        held = set(self._known({p.symbol for p in positions}))
        fee_rates, unread_fee = await self._fee_rates(exchange, held, fees)
        read_stops = stops or (self.state.stops is not None and bool(held - self._stops_for))
        if read_stops:
            self.state.stops = await self._fetch_stops(exchange, held)
        coin_symbols = {c.price_symbol for c in collateral if c.price_symbol is not None}
        # the listed positions that follow a mark were read at the exchange's own (their
        # figures, and its ratio, are of that mark): it seeds their stream
        listed_marks = {
            p.symbol: p.mark_price
            for p in listed
            if p.quantity is not None and p.mark_price is not None
        }
        # a coin that moves with a symbol nobody holds: its mark over REST, so that the coin's
        # index keeps its basis to the mark the stream then moves. Read before the state is
        # written: from the write to the pushes applied again on top of it there is no await,
        # so a read failing there cannot leave the snapshot written and those pushes dropped
        seeded = {s for s, m in {**marks, **listed_marks}.items() if m.is_finite() and m > 0}
        coin_marks: dict[str, tuple[Decimal, float]] = {}
        for symbol in sorted(coin_symbols - self.state.marks.keys() - seeded):
            coin_marks[symbol] = await self._public_mark(exchange, symbol)
        now = self._clock()
        self.adapter.snapshot_written()
        self.state.replace_positions(positions, now, first_ms)
        self.state.reported_positions = reported
        pool_wallets = {asset: pool_wallet for asset, (pool_wallet, _) in pools.items()}
        self.state.read_wallets(wallet, pool_wallets, self.adapter.wallet_times(), now)
        self.state.reported_account = account_figures
        self.state.listed_positions = self.state.listed_as_read = listed
        self.state.reported_pools = {asset: figures for asset, (_, figures) in pools.items()}
        self.state.fee_rates = fee_rates
        # with the rates it was read with: a read that fails before them keeps both
        self._tell_unread_fee(unread_fee)
        self._set_mode(self._settled(mode, account_figures))
        self.state.listed_stops = self.adapter.listed_stops()
        self.state.listed_pushed_unlisted = self.adapter.pushed_unlisted()
        self.state.pushed_unfollowed = self.adapter.pushed_unfollowed()
        for symbol, mark in marks.items():
            # a REST mark seeds a symbol; the stream keeps it fresh after that
            wanted_mark = symbol in self.state.held_symbols or symbol in coin_symbols
            if wanted_mark and symbol not in self.state.marks:
                self.state.set_mark(symbol, mark, now)
        for symbol, mark in listed_marks.items():
            if symbol not in self.state.marks:
                self.state.set_mark(symbol, mark, now)
        for symbol, (mark, at) in coin_marks.items():
            if symbol not in self.state.marks:  # else the stream's, newer
                self.state.set_mark(symbol, mark, at)
        self.state.set_collateral(collateral, marks, marks_sent)
        self.state.settle_terms = self.adapter.settle_terms()
        self.state.margin_assets = self.adapter.margin_assets()
        self.state.pool_wallets.update(self.adapter.unlined_wallets())
        # the pushes that came while it read, newer than what it read: on top of it (a fill
        # pushed during a settle resync kept its older size until the next reconcile). Most
        # are of a change the answer already holds: only a state they change is told
        pushed = False
        moments: MomentsOfRead | None = None
        if self._pushes.kept(since):
            read = (self.state.holdings(), self.state.listed_positions)
            moments = MomentsOfRead(
                self.state, self._pushes.kept_since(since), self.adapter.read_first, first_ms
            )
            pushed = self._pushes.again(since, moments.step) > 0
            pushed = pushed and (self.state.holdings(), self.state.listed_positions) != read
        if pushed:
            log.info(
                "%s: pushes that came while the snapshot was read are newer than it: "
                "applied on top of it",
                self.config.name,
            )
            # a position they opened is held now: its stops were read by its push
            # (:meth:`_positions_step`), a read this snapshot's, of its own symbols only (Binance
            # reads per symbol, Bybit per settle coin held), overtook: read them again
            if read_stops and set(self._known(self.state.held_symbols)) - self._stops_for:
                self.state.stops = await self._fetch_stops(exchange, self.state.held_symbols)
        # the snapshot's rates are the truth at each read: the asset index moves them from
        # here on (its stream, or its REST read while the stream is stale: feeds/rates.py)
        self.state.pool_read = self.state.pool_rates
        self.state.rates_streamed = False
        follows = self.hub.rates is not None and self.state.mode.mode is AccountMode.MULTI_ASSETS
        if follows and not self.state.follows_index:
            # the snapshot's index is as fresh as a first frame: the stream has a staleness
            # interval to deliver one (as a REST mark seeds a newly held symbol's)
            self.state.last_seen[(Stream.INDEX, "")] = now
        self.state.follows_index = follows
        # the exchange's figures were read at about the marks of its own positions answer, not
        # at the stream's, which can lag the exchange's: a fall the answer holds and the stream
        # has not delivered yet would be counted twice once it is (a false "liquidated")
        self.state.reported_marks = {**self.state.marks, **marks, **listed_marks}
        await self._ensure_tiers()
        self._last_resync_started = started  # a snapshot taken entirely after ``started``
        self._snapshot_started = started
        self.snapshots += 1
        # with pushes during the read, its answers are not of one moment: the account's,
        # read after the positions', may hold the pushed change already (a 0.8 BTC long's
        # maintenance margin beside the positions answer's 0.5: fixrace14), or the positions',
        # read after the account's (OKX), hold it where the account's does not. Each figure is
        # compared at the moment of the read nearest it (drift16: before, a read whose pushes
        # changed the state measured nothing, so on an active account a model error went
        # unseen, and one whose answer held them measured a false drift on OKX)
        self._measure_drift(marks, moments)
        self._sync_mark_streams()
        # a push during the read named what only a read places (a second margin trade while
        # the first's read was in flight, of the same assets): its own read asked, as at a
        # push outside a read (the fill reads' cap), where before none was and the account
        # stayed named incomplete, its figure off, until the next reconcile (review of pm16, 3)
        unread = self.state.listed_pushed_unlisted | self.state.pushed_unfollowed
        if unread:
            self._fill_resync(now, "pushed during a read: " + ", ".join(sorted(unread)))
        self._read_dropped(now)
        self._notify(Change.ACCOUNT)

    def _read_dropped(self, now: float) -> None:
        """A push opening a position the last read does not list, dropped as made before
        the read (OKX: before its balance answer's time, ``AccountState.positions_read_ms``),
        may be of a real position its positions answer missed: OKX documents no ordering
        between its balance and positions endpoints (a positions answer served a little behind
        would hide the position until the next reconcile, a lost alert: review of okx17, 1).
        A read is asked at once (after the settle delay), and decides; bounded as the fill
        reads are (:meth:`_fill_resync`): at most one a reconcile interval, however often the
        exchange pushes the position again (OKX's regular pushes carry its last adjustment's
        ``uTime``, as old); one asked within an interval of the last waits for its end. A
        late push of a position closed since stays dropped meanwhile: it costs a read, and
        reopens nothing."""
        dropped = self.state.dropped_unlisted
        if dropped:
            names = ", ".join(sorted(f"{symbol} {side.name.lower()}" for symbol, side in dropped))
            self._fill_resync(now, "unlisted position pushed before the read: " + names)

    async def _fee_rates(
        self, exchange: Any, held: set[str], read: bool
    ) -> tuple[dict[str, Decimal], UnreadFee | None]:
        """The held symbols' fee rates and what their read left out: read where ``read``,
        at the first snapshot, where the held symbols changed or the last read left a part
        out; else the last read's (the same symbols: the exchange sets an account's rates
        once a day, ``feeds.fee_rates_reconcile_every``)."""
        symbols = frozenset(held)
        last = self._fee_read
        # a read that left a part out (Bybit's GST: its fills' read failed) is read again at
        # the next snapshot, as before
        if not read and last is not None and last[0] == symbols and last[2] is None:
            return dict(last[1]), last[2]
        rates = await self.adapter.fetch_fee_rates(exchange, sorted(held)) if held else {}
        unread = self.adapter.fee_rates_unread()
        self._fee_read = (symbols, dict(rates), unread)
        self._fees_read_at = self._reconciles
        return rates, unread

    async def reconcile(self) -> None:
        """The periodic REST reconcile; transient errors are logged, fatal ones stop the feed."""
        if self.state.fatal is not None or not self.state.bootstrapped:
            return
        if self.shared is not None and self.shared.ip_budget.bootstrapping and not self._gave_way:
            # accounts on this exchange host are still bootstrapping (blind until then; any
            # group's: they share its per-IP budget); this one streams: its safety net can wait
            # a round, not two in a row (another group's bootstraps failing for as long as
            # /papi answers 503 skipped 64% of a live group's reconciles, and two missed make
            # a quiet account stale: publisher.stale_streams)
            self._gave_way = True
            return
        self._gave_way = False
        self._reconcile_started = self._clock()
        # with the order stream up, the stops' REST read is a net for a missed push: every
        # n-th reconcile (feeds.stops_reconcile_every)
        self._reconciles += 1
        # streaming: the order stream runs and no stream failed since the stops were read
        streamed = (
            self.adapter.watches_stops
            and self._group is not None
            and self._last_failure < self._stops_read_at
        )
        stops = not streamed or self._reconciles % self.settings.stops_reconcile_every == 0
        # counted from the last read, not by the count alone: a failed n-th reconcile leaves
        # them due at the next, not at the 2n-th
        fees = self._reconciles - self._fees_read_at >= self.settings.fee_rates_reconcile_every
        try:
            async with self._resync_lock, rest_slot(self.shared):
                # what the snapshot before and the pushes since hold, and whether the private
                # stream looks open: what this reconcile's snapshot is judged against
                held, pushes = self.state.sizes(), self.position_pushes
                before, streaming = self._snapshot_started, self.state.connected
                catalogue = self._exchange().markets
                # a push of a symbol explains its change only if it came this close to the
                # read: a REST answer a little older than the push, not a push a whole
                # interval before that the stream's death left the last one
                told_after = self._clock() - self.settings.missed_push_grace_s
                await self.resync(stops=stops, fees=fees)
        except Exception as exc:
            if not self._is_fatal(exc):
                log.warning("%s: reconcile failed: %s", self.config.name, describe(exc))
            return
        if self.settings.detect_missed_pushes:
            self._judge_reconcile(held, pushes, before, streaming, catalogue, told_after)

    def _judge_reconcile(
        self,
        held: Mapping[tuple[str, Side], Decimal],
        pushes: int,
        before: float | None,
        streaming: bool,
        catalogue: Mapping[str, Any] | None,
        told_after: float,
    ) -> None:
        """A periodic reconcile read the positions: one changed since the snapshot before
        (begun at ``before``) that no position push named since, while the stream looked
        open and no position push at all came while it read (``pushes`` their count as it
        began), is a change the stream missed unless one comes within
        ``feeds.missed_push_grace_s`` (:meth:`_confirm_missed`); balance and order pushes do
        not count (a stream whose positions died while its balance pushes go on misses
        changes all the same). A push of its symbol since the
        snapshot before and no earlier than ``told_after`` (the grace before the read began)
        explains a difference (a REST answer a little older than the push, a side named
        otherwise): never called missed. An earlier push does not: the stream may have died
        after it (ETH opened and pushed, the stream dead 10 s later, the stop filled 30 s
        later: the close never pushed). Every exchange pushes each
        change of a position on its private stream (Binance ACCOUNT_UPDATE, Bybit
        ``position``, OKX ``positions``, Gate ``futures.positions``, Hyperliquid
        ``clearinghouseState``: docs/exchanges.md, "A dead private stream"), and a quiet
        account's positions do not change: nothing to miss, nothing said. A reconcile that
        finds nothing missed once the stream was reopened after a miss ends it.

        A symbol the market ``catalogue`` did not list as the reconcile began is not judged:
        a new listing's position, pushed under the exchange's raw id ("DOGEUSDT": ccxt cannot
        name a market it has not loaded) and read under its unified symbol once the
        reconcile reloaded the catalogue, is one position under two names, not a change."""
        told = self._pushed_at
        changes = tuple(
            change
            for change in missed_changes(held, self.state.sizes())
            if (before is None or told.get(change.symbol, -float("inf")) < max(before, told_after))
            and (not catalogue or change.symbol in catalogue)
        )
        alive = self.position_pushes != pushes
        if (
            changes
            and not alive
            and streaming
            and before is not None
            and self._unbroken_since(before)
        ):
            if self._group is not None:
                self._group.create_task(self._confirm_missed(changes, pushes, before))
        elif self.state.missed is not None and self._reopened_since_miss and not changes:
            self._end_miss("a reconcile since it was reopened missed nothing")

    async def _confirm_missed(
        self, changes: tuple[MissedChange, ...], pushes: int, before: float
    ) -> None:
        """The changes a reconcile found are missed unless a position push comes within the
        grace (one in flight as the REST answer was read): then said, and the private stream
        reopened (its connections dropped: the watches fail and open them again, logging in
        afresh)."""
        await self._sleep(self.settings.missed_push_grace_s)
        if self.position_pushes != pushes or self.state.fatal is not None:
            return
        if not self._unbroken_since(before):
            return  # lost meanwhile: feed-down's, and the resync after it reads it all
        now = self._clock()
        missed = self.state.missed = MissedPushes(changes, now, now - before)
        self._reopened_since_miss = False
        log.warning(
            "%s: %s: no push told it; reopening the private stream",
            self.config.name,
            missed.describe(),
        )
        self._notify(Change.ACCOUNT)
        await self.force_reconnect("private stream missed a change")

    def _unbroken_since(self, before: float) -> bool:
        """The private stream open now and no stream failed since ``before`` (the snapshot
        before a reconcile began): a change made while no socket was up is not the stream's
        miss but feed-down's business (Binance, Bybit and Gate push no snapshot on
        subscribing: the change is never pushed), and the resync that follows the reopen
        (:meth:`_settle_resync`) reads it."""
        return self.state.connected and self._last_failure < before

    def _position_pushed(self, changed: Sequence[PositionState]) -> None:
        """A position push came: the positions stream lives; after a miss, once reopened, it
        delivers again. Only a position push ends the miss: a balance or order push comes on
        a stream whose positions channel may still be dead (a positions subscription refused
        at each login while OKX's ``account`` channel pushes its snapshot)."""
        self.position_pushes += 1
        now = self._clock()
        for p in changed:
            self._pushed_at[p.symbol] = now
        if self.state.missed is not None and self._reopened_since_miss:
            self._end_miss("a position push since it was reopened")

    def _end_miss(self, why: str) -> None:
        missed = self.state.missed
        self.state.missed = None
        self.state.miss_ended = why
        if missed is not None:
            log.info(
                "%s: private stream delivering again (%s) %.0f s after it missed a change",
                self.config.name,
                why,
                self._clock() - missed.found_at,
            )
        self._notify(Change.ACCOUNT)

    def since_reconcile_s(self) -> float | None:
        """Seconds since the last reconcile that read began; None before the first."""
        started = self._reconcile_started
        return None if started is None else self._clock() - started

    def reconcile_weight(self) -> float | None:
        """This account's weight per reconcile, on average, in its exchange's per-IP budget:
        the snapshot, and the stop-order read's share (every ``stops_reconcile_every``-th
        reconcile where an order stream watches the stops, every one where none does).
        None: the exchange counts no weight."""
        capabilities = self.spec.capabilities
        if capabilities.snapshot_weight is None:
            return None
        # what its mode read at the last snapshot (Binance multi-assets, portfolio margin)
        read = self.adapter.snapshot_weight()
        weight = float(capabilities.snapshot_weight if read is None else read)
        if capabilities.stops_weight is not None:
            every = self.settings.stops_reconcile_every if self.adapter.watches_stops else 1
            held = len(self.state.held_symbols)
            own = self.adapter.stops_weight(held)
            weight += (capabilities.stops_weight(held) if own is None else own) / every
        return weight

    def live_weight(self) -> float | None:
        """This account's weight in its exchange's per-IP budget until it is live: what its
        configured mode reads (a Binance portfolio margin account's /papi requests), else the
        spec's. None: the exchange counts no weight."""
        default = self.spec.capabilities.live_weight
        if default is None:
            return None
        own = self.adapter.live_weight(self.config.options)
        return float(default if own is None else own)

    async def refresh_tiers(self) -> None:
        if self.state.fatal is not None or not self.state.bootstrapped:
            return
        if self.shared is None:
            self.adapter.tables.clear()  # alone, its public tables are its own to refresh
        try:
            held = self._known(self.state.held_symbols)
            async with rest_slot(self.shared):
                tiers = await self.adapter.fetch_tiers(self._exchange(), held)
            self.state.tiers.update(tiers)
        except Exception as exc:
            if not self._is_fatal(exc):
                log.warning("%s: tier refresh failed: %s", self.config.name, describe(exc))

    async def renew(self) -> None:
        """Keep the private stream's authorisation alive (Binance listen key)."""
        if self.state.fatal is not None or self.exchange is None:
            return
        try:
            await self.adapter.renew(self.exchange)
        except Exception as exc:
            if not self._is_fatal(exc):
                log.warning("%s: listen key renewal failed: %s", self.config.name, describe(exc))

    async def _reload_for(self, exchange: Any, symbols: set[str]) -> bool:
        """Reload the market catalogue when ``symbols`` hold one it does not list (a market
        listed since it was loaded), at most once per ``MARKET_RELOAD_EVERY_S``; True when it
        was reloaded. Until the market is listed, the account names it as missing
        ("unknown market") and its per-symbol reads leave it out."""
        unknown = symbols - set(self._known(symbols))
        if not unknown or self._clock() - self._markets_reloaded_at < MARKET_RELOAD_EVERY_S:
            return False
        self._markets_reloaded_at = self._clock()
        log.info("%s: reloading markets for %s", self.config.name, ", ".join(sorted(unknown)))
        if self.shared is not None:
            await self.shared.refresh_markets()
        else:
            await exchange.load_markets(reload=True)
        return True

    def _follow_catalogue(self, exchange: Any) -> None:
        """The markets alertd reads for this account, from ``exchange``'s catalogue, built
        again whenever the catalogue is a new one (a load replaces the dict)."""
        if exchange.markets is not self._markets_of:
            self.state.markets = self._market_infos(exchange)
            self._markets_of = exchange.markets

    def _known(self, symbols: set[str]) -> list[str]:
        """``symbols`` the exchange's market catalogue lists (every market, not only those
        alertd computes), sorted; all of them before it is loaded."""
        listed = self.exchange.markets if self.exchange is not None else None
        return sorted(s for s in symbols if not listed or s in listed)

    async def _seed_marks(self) -> None:
        """A newly opened position gets its mark over REST at once, not at the next tick."""
        for symbol in self._known(self.state.held_symbols - self.state.marks.keys()):
            self.state.set_mark(symbol, *await self._public_mark(self._exchange(), symbol))

    async def _public_mark(self, exchange: Any, symbol: str) -> tuple[Decimal, float]:
        """The symbol's mark over REST and when it was read: one read for every account of
        the exchange asking within :data:`MARK_SHARED_FOR_S` (many accounts bootstrapping at
        once, each holding ETH as a coin: OKX allows 10 mark reads per 2 s per IP and
        instrument, www.okx.com/docs-v5/en/#public-data-rest-api-get-mark-price)."""
        return await self.adapter.tables.recent(
            ("mark", symbol),
            functools.partial(self.adapter.fetch_mark, exchange, symbol),
            self._clock,
            MARK_SHARED_FOR_S,
        )

    async def _ensure_tiers(self) -> None:
        missing = self._known({s for s in self.state.held_symbols if s not in self.state.tiers})
        if missing:
            self.state.tiers.update(await self.adapter.fetch_tiers(self._exchange(), missing))

    def _settled(self, mode: ModeReading, reported: ReportedAccount) -> ModeReading:
        """The mode's reading once the balance is known."""
        mode = self.adapter.settled_mode(mode)
        if mode.coverage is Coverage.EXCHANGE_RATIO and reported.margin_ratio is None:
            return dataclasses.replace(
                mode,
                coverage=Coverage.NOT_COMPUTED,
                limits=f"{mode.limits}; {self.spec.name} reported no account margin ratio",
            )
        return mode

    def _set_mode(self, mode: ModeReading) -> None:
        """Record the account's mode; a change (a user switching modes) is logged once."""
        before = self.state.mode
        self.state.mode = mode
        if mode == before:
            return
        if mode.coverage is Coverage.COMPUTED:
            log.info("%s: account mode %s: computed by alertd", self.config.name, mode.label)
        else:
            log.warning(
                "%s: account mode %s: %s: %s",
                self.config.name,
                mode.label,
                mode.coverage.value,
                mode.limits,
            )

    def _measure_drift(
        self, marks: Mapping[str, Decimal], moments: MomentsOfRead | None = None
    ) -> None:
        """Compare alertd's figures with the exchange's own, for the log and for metrics: at
        the marks the exchange reported with them (a streamed mark a tick older or newer moves
        a cross liquidation price with every other leg's PnL: a difference not of the model).
        With ``moments`` (pushes came during the read), each figure at the moment of the read
        where alertd's is nearest the exchange's (:func:`closest`); where there are more
        moments than the bound, or none complete, the last comparison stands."""
        if self.state.missing():
            self.ratios = self.ratio_pool = None
            return
        states = [self.state] if moments is None else moments.complete()
        if states is None:
            log.debug(
                "%s: pushes during the read made more than %d states of the account, or "
                "none complete: drift not measured on this snapshot",
                self.config.name,
                DRIFT_MOMENTS_MAX,
            )
            return
        self.comparison = closest(
            [
                # the comparison reads no crash distance (the exchanges report none) nor
                # bankruptcy price: not solved (the crash distance a fifth of the drift's
                # compute at 1,000 calm Bybit accounts, docs/benchmarks.md "Session 16,
                # calmb16"; the bankruptcy prices: "Session 17, calmeval17")
                compare(
                    compute(state.to_account(marks), crash=False, bankruptcy=False),
                    self.state.reported_account,
                    self.state.reported_positions,
                    self.adapter,
                    reported_pools=self.state.reported_pools,
                )
                for state in states
            ]
        )
        self.drift = self.comparison.drift
        self.ratios = self.comparison.margin_ratio
        self.ratio_pool = self.comparison.margin_ratio_pool
        worst = self.comparison.worst()
        if worst is not None and self.state.mode.coverage is Coverage.COMPUTED:
            log.warning(
                "%s: alertd differs from the exchange on %s: alertd %s, exchange %s",
                self.config.name,
                worst.key,
                worst.ours,
                worst.theirs,
            )

    # --- streams ------------------------------------------------------------------------

    async def _positions_step(self) -> None:
        changed = await self.adapter.watch_positions(self._exchange())
        self._position_pushed(changed)
        wanted = self.config.symbols
        if wanted is not None:
            changed = [p for p in changed if p.symbol in wanted]
        applied = self._pushes.apply(
            functools.partial(self._push_positions, changed), at=made_at(changed)
        )
        if changed and not applied:
            log.debug("%s: a position push older than the snapshot: dropped", self.config.name)
        self._read_dropped(self._clock())
        await self._ensure_tiers()
        await self._seed_marks()
        self._sync_mark_streams()
        self._notify(Change.ACCOUNT)
        held = set(self._known(self.state.held_symbols))  # as _fetch_stops reads them
        if held - self._stops_for and self._group is not None:
            # a newly held symbol: its stops may have been placed before the position (the
            # exchanges read per symbol know none of them yet); read them beside the stream,
            # not in its way
            self._stops_for |= held  # one read, however many frames
            self._group.create_task(self._read_stops_now())

    async def _fetch_stops(self, exchange: Any, held: set[str]) -> tuple[StopOrder, ...] | None:
        """The open conditional orders of the account's ``held`` symbols (None: not read, or
        unreadable); a market the catalogue does not list yet is left out."""
        symbols = self._known(held)
        self._stops_reads += 1
        read = self._stops_reads
        try:
            stops = await self.adapter.fetch_stops(exchange, symbols)
            if stops is not None:
                stops = checked_stops(stops)
        except FrameError as exc:
            if read < self._stops_applied:
                return self.state.stops
            # an order alertd cannot read: no stop figures (not "no stop") until it can
            self.on_malformed("open orders: bad entry", str(exc))
            self._stops_applied = read
            return None
        if read < self._stops_applied:
            log.debug("%s: a stop read overtaken by a newer one: dropped", self.config.name)
            return self.state.stops
        self._stops_applied = read
        self._stops_for = frozenset(symbols)
        self._stops_read_at = self._clock()
        if stops is None:
            return None
        wanted = self.config.symbols
        return tuple(s for s in stops if wanted is None or s.symbol in wanted)

    async def _orders_step(self) -> None:
        """A conditional order changed on the order stream: read the stops again."""
        if not await self.adapter.watch_stop_changes(self._exchange()):
            return
        await self._refresh_stops()
        self._notify(Change.ACCOUNT)

    async def _read_stops_now(self) -> None:
        """:meth:`_refresh_stops` as a task of its own: a failure is logged (fatal ones stop
        the feed); the next reconcile reads them again."""
        try:
            await self._refresh_stops()
            self._notify(Change.ACCOUNT)
        except Exception as exc:
            if not self._is_fatal(exc):
                log.warning("%s: reading the stops failed: %s", self.config.name, describe(exc))

    async def _refresh_stops(self) -> None:
        async with rest_slot(self.shared):
            self._stops_read_queued = False  # a push from here on needs a read after this one
            self.state.stops = await self._fetch_stops(self._exchange(), self.state.held_symbols)

    def _push_positions(self, changed: list[PositionState]) -> bool:
        return self.state.update_positions(self._named_by_catalogue(changed), self._clock())

    def _named_by_catalogue(self, changed: list[PositionState]) -> list[PositionState]:
        """A pushed position of a market the catalogue did not list when it came (ccxt
        names it by the exchange's id) named by its market once the catalogue lists it: a
        push applied again over the snapshot that reloaded the catalogue for it would
        otherwise stand beside the snapshot's own row as an unknown market."""
        markets = self.state.markets
        by_id = getattr(self.exchange, "markets_by_id", None) or {}
        named = []
        for p in changed:
            if p.symbol not in markets and p.symbol in by_id:
                found = by_id[p.symbol]
                listed = [m.get("symbol") for m in (found if isinstance(found, list) else [found])]
                symbol = next((s for s in listed if s in markets), None)
                if symbol is not None:
                    p = dataclasses.replace(p, symbol=symbol)
            named.append(p)
        return named

    async def _balance_step(self) -> None:
        balances = await self.adapter.watch_balances(self._exchange())
        at_ms = self.adapter.balance_pushed_ms  # this push's: no await since it returned
        if balances:
            wallets = functools.partial(self._push_wallets, balances, at_ms)
            if not self._pushes.apply(wallets, part=Part.WALLETS, at=at_ms):
                log.debug("%s: a balance push older than the snapshot: dropped", self.config.name)
            self._notify(Change.ACCOUNT)

    def _push_wallets(self, balances: Mapping[str, Decimal], at_ms: int | None) -> bool:
        now = self._clock()
        applied = [self.state.set_pool_wallet(a, w, now, at_ms) for a, w in balances.items()]
        return any(applied)

    def on_mark(self, symbol: str, price: Decimal) -> None:
        """A mark from the hub; symbols this account no longer holds are ignored."""
        if symbol not in self._subscribed and symbol not in self._listed_subscribed:
            return
        if self.state.set_mark(symbol, price, self._clock()):
            self._notify(Change.MARK, symbol)
        else:
            self.on_malformed(*bad_mark(symbol, price))

    def record_mark(self, symbol: str, price: Decimal, now: float) -> None:
        """A mark the hub checked, for every holder at once: recorded, no listener told (the
        hub's tick listener is, once for all of them)."""
        self.state.record_mark(symbol, price, now)

    def on_asset_index(
        self,
        rows: Mapping[str, Mapping[str, Any]],
        changed: Set[str],
        now: float,
        streamed: bool = True,
        expired: Mapping[str, float] | None = None,
    ) -> None:
        """The asset index's rows (every standing symbol, ``changed`` this frame's; not
        ``streamed``: read over REST while the stream is stale): the pool's rates as they
        count now, moved to the rows of its currencies (its settle currency's, its margin
        asset lines', its coins'). Only a change of one of those rebuilds the account, once
        the index's rates stand. A row of those ``expired`` (rejected since its last good
        one) keeps the rates it last gave, named stale until a good one comes."""
        state, read = self.state, self.state.pool_read
        if not state.follows_index or read is None:
            return
        if streamed:
            state.last_seen[(Stream.INDEX, "")] = now
        symbols = self._index_symbols()
        state.expired_index_rows = {s: at for s, at in (expired or {}).items() if s in symbols}
        if state.rates_streamed:
            # only the rows that changed: the others gave the rates it counts at now
            rows = {s: rows[s] for s in symbols & changed if s in rows}
            if not rows:
                return
        # from the rates it counts at now, not the snapshot's: an asset whose row is missing
        # keeps them (a USDC depeg streamed since, where the snapshot's rates were par)
        now_rates = state.pool_rates
        terms, lines, coins = self.adapter.rerated(
            rows, now_rates.settle_terms, now_rates.margin_assets, now_rates.collateral
        )
        if state.set_pool_rates(PoolRates(terms, lines, coins)):
            self._notify(Change.RATES)

    def on_index_frame(self, now: float) -> None:
        """An asset index frame that moved none of its rows: the stream is fresh."""
        if self.state.follows_index:
            self.state.last_seen[(Stream.INDEX, "")] = now

    def _index_symbols(self) -> set[str]:
        """The asset index rows its pool counts at (its snapshot's currencies): the settle
        currency's, its margin asset lines', its coins'."""
        read = self.state.pool_read
        if read is None:
            return set()
        return {
            f"{asset}USD"
            for asset in (
                self.state.settle,
                *(line.asset for line in read.margin_assets),
                *(coin.asset for coin in read.collateral),
            )
        }

    def _sync_mark_streams(self) -> None:
        """Subscribe to the marks of newly held symbols (positions and coins that move with
        a symbol); drop those no longer held. Follow the asset index stream while the
        account's rates do (multi-assets mode), leave it otherwise."""
        if self._group is None:
            return
        rates = self.hub.rates
        if rates is not None and self.state.follows_index:
            rates.follow(self, self._index_symbols(), unserved=not self.state.rates_streamed)
        elif rates is not None:
            rates.unfollow(self)
            self.state.last_seen.pop((Stream.INDEX, ""), None)
        listed = self.state.listed_symbols if self.listed_hub is not None else set()
        held = set(self._known(self.state.price_symbols - listed))
        self._sync_hub(self.hub, self._subscribed, held)
        if self.listed_hub is not None:
            self._sync_hub(self.listed_hub, self._listed_subscribed, listed)

    def _sync_hub(self, hub: MarkHub, subscribed: set[str], held: set[str]) -> None:
        """Subscribe to ``hub``'s marks of ``held`` symbols not in ``subscribed`` yet, and
        drop those no longer held (their marks with them).

        A mark seeded over REST before its stream is subscribed counts its age from the
        subscription (as the asset index's seed does): the stream has a staleness interval
        to deliver one. The seed can be much older by then: a paced start's tiers read
        waited 56 s for the per-IP budget's next window after the resync seeded the marks,
        and 10 of 1,000 Binance accounts fired feed-stale as they went live (issue 14)."""
        now = self._clock()
        for symbol in sorted(held - subscribed):
            subscribed.add(symbol)
            hub.subscribe(symbol, self)
            if symbol in self.state.marks:
                self.state.last_seen[(Stream.MARK, symbol)] = now
        for symbol in sorted(subscribed - held):
            subscribed.discard(symbol)
            hub.unsubscribe(symbol, self)
            self.state.marks.pop(symbol, None)
            self.state.last_seen.pop((Stream.MARK, symbol), None)
            self._marks_fresh = None  # the watchdog's moment counted its time

    async def _loop(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run one stream forever: skip bad frames, reconnect on network errors."""
        backoff = self._backoff_factory()
        connection = self.adapter.stream_connection(name)
        seen = 0  # its connection's turns to open when this stream last lost it
        closes = self._closes.get(connection, 0)  # its connection's closes by its last step
        while True:
            opening: Opening | None = None
            try:
                if self._closes.get(connection, 0) != closes:
                    # its socket closed since its last step, maybe while it read over REST,
                    # its watch not failed: ccxt's next watch opens it again, in its turn
                    # unless one was taken for it since (unpaced, it would open outside the
                    # host's pace)
                    closes = self._closes.get(connection, 0)
                    seen = max(seen, self._turns_at_close.get(connection, 0))
                opening = await self._opening_turn(connection, seen)
                await step()
                self._connected()
                backoff.healthy(self._clock())
            except FrameError as exc:
                self.on_malformed(f"{name}: bad frame", str(exc))
            except Exception as exc:
                if opening is not None and self._openings.get(connection) is opening:
                    # failed before its socket opened (its open ends the opening it held):
                    # the handshake, or what comes before it (Binance's listen key); its
                    # retry opens one, in a turn of its own
                    self._opening_failed = True
                    seen = self._turns.get(connection, 0)
                # else its socket opened and is open still (a refused subscription, a REST
                # read after a push failed): its retry opens nothing and takes no turn, as
                # the mark hub's (:meth:`MarkHub._stream`); a close since takes one at the
                # next step (``_closes``)
                self._opening_ended(opening)
                if classify(exc) is ErrorKind.FATAL:
                    self._stop(exc)
                if not isinstance(exc, ccxt.BaseError):
                    # not the exchange's doing: a bug of ours, but one stream must not take
                    # the account down; back off and resync as for a network error
                    log.exception("%s: %s stream failed unexpectedly", self.config.name, name)
                elif not isinstance(exc, ccxt.NetworkError):
                    log.warning("%s: %s stream error: %s", self.config.name, name, describe(exc))
                failed_at = self._clock()
                if not self._connected_once:
                    # its first opening failed (Binance's listen key refused in the crowd):
                    # as a bootstrap's failure, the grace holds until it keeps failing
                    self._start_failure(exc, "its private stream's first opening")
                if failed_at - self._last_failure > 1.0:  # one outage, however many streams
                    self.reconnects += 1
                self._last_failure = failed_at
                self.state.connected = False
                delay = retry_delay(backoff, exc)
                log.warning(
                    "%s: %s stream lost (%s); reconnecting in %.1fs",
                    self.config.name,
                    name,
                    describe(exc),
                    delay,
                )
                await self._sleep(delay)
                self._settle_resync(failed_at, name)
            finally:
                self._opening_ended(opening)

    def _settle_resync(self, since: float, name: str) -> None:
        """Resync over REST shortly after the streams (re)subscribe.

        ccxt neither re-snapshots after a reconnect nor subscribes on the first
        ``watch_positions`` call (that call returns a REST snapshot), so a change made while
        the subscription is being set up would be lost. Snapshot *after* subscribing: the
        stream and the snapshot then overlap instead of leaving a gap.
        """
        group = self._group
        if group is None:
            return

        async def later() -> None:
            await self._sleep(min(1.0, self.settings.stale_after_s / 4))
            await self._resync_after(since, name)

        group.create_task(later())

    def _fill_resync(self, now: float, why: str = "COIN-M fill") -> None:
        """A push reduced, closed or flipped a listed position (Binance portfolio margin's
        COIN-M): its PnL since the read is realized into the coin's wallet, which the
        exchange's ratio keeps and the push does not carry: read the account again rather than
        drop that loss from the moved ratio. Likewise a position a push opened that only a
        read places, or a push a read may have missed dropped as older than it
        (:meth:`_read_dropped`) (``why``). At most one such read per reconcile interval (each
        is a full snapshot, weighed in the host's per-IP budget as every request is): the pushes
        meanwhile wait for one read at the interval's end, skipped where a snapshot (a
        reconcile) began after the last of them."""
        self._fill_at = now
        self._fill_why = why
        group = self._group
        if self._fill_resync_waits or group is None:
            return  # the read waiting reads this fill too
        self._fill_resync_waits = True
        settle_s = min(1.0, self.settings.stale_after_s / 4)
        wait_s = max(settle_s, self._fill_resync_after - now)

        async def later() -> None:
            try:
                await self._sleep(wait_s)
            finally:
                self._fill_resync_waits = False
            self._fill_resync_after = self._clock() + self.reconcile_interval_s
            await self._resync_after(self._fill_at, self._fill_why)

        group.create_task(later())

    def _reline(self) -> None:
        """Snapshot at once (after the settle delay) when a push gives a margin asset with
        no equity line (a deposit or a first position of it since the last snapshot): the
        account is incomplete until a snapshot lines it, and the reconcile may be a minute
        away. Once per newly unlined asset: a snapshot that still leaves it unlined is not
        asked again until the asset is lined or gone."""
        unlined = frozenset(self.state.unlined_margin_assets())
        new = unlined - self._relining
        self._relining = unlined
        if new:
            self._settle_resync(self._clock(), "unlined " + ", ".join(sorted(new)))

    async def _resync_after(self, failed_at: float, name: str) -> None:
        """One REST resync per disconnect, however many streams saw it, retried with backoff
        until it succeeds: what changed while the streams were down is only there (a 429 or
        a 5xx must not leave it missing until the next periodic reconcile)."""
        backoff = self._backoff_factory()
        while True:
            async with self._resync_lock:
                if self._last_resync_started >= failed_at:
                    return
                try:
                    async with rest_slot(self.shared):
                        await self.resync()
                    if name.startswith(("unlined", "unlisted", "COIN-M", "margin", "pushed")):
                        log.info("%s: resynced for the %s", self.config.name, name)
                    elif name != "start":
                        log.info("%s: resynced after losing the %s stream", self.config.name, name)
                    return
                except Exception as exc:
                    if classify(exc) is ErrorKind.FATAL:
                        self._stop(exc)
                    delay = retry_delay(backoff, exc)
                    log.warning(
                        "%s: resync failed (%s); retrying in %.1fs",
                        self.config.name,
                        describe(exc),
                        delay,
                    )
            await self._sleep(delay)

    async def _watchdog(self) -> None:
        period = min(1.0, self.settings.stale_after_s / 4)
        while True:
            await self._sleep(period)
            await self.check_stale()

    def marks_may_be_stale(self) -> bool:
        """Whether :meth:`check_stale` has anything to look at: False while the account
        holds the symbols of its last check that found none stale and none of their marks
        can be stale yet (the watchdog asks every account every second, without a coroutine
        for those)."""
        state = self.state
        fresh = self._marks_fresh
        return not (
            fresh is not None
            and self._clock() <= fresh[0]
            and fresh[1] is state.collateral
            and fresh[2] is state.listed_positions
            and state.positions.keys() == fresh[3]
        )

    async def check_stale(self) -> None:
        """Stale marks on a connection that looks open: force a reconnect (and say so)."""
        if not self.state.bootstrapped or self.state.fatal is not None:
            return
        # a stale asset index stream is the hub's to say and renew, once for all its
        # followers (feeds/rates.py): a reconnect of the hub would gap every mark on it
        if not self.marks_may_be_stale():
            return  # the same symbols, none of whose marks can be stale yet
        now = self._clock()
        state = self.state
        stale, until = state.stale_marks_until(now, self.settings.stale_after_s)
        self._marks_fresh = None
        if not stale:
            symbols = frozenset(state.positions)
            self._marks_fresh = (until, state.collateral, state.listed_positions, symbols)
        if stale and now - self._forced_at > self.settings.stale_after_s:
            self._forced_at = now
            log.warning(
                "%s: no mark price for %s in %.0fs; reconnecting",
                self.config.name,
                ", ".join(stale),
                self.settings.stale_after_s,
            )
            # each hub reconnected for its own symbols (COIN-M's for a listed position's)
            listed = set(stale) & self._listed_subscribed
            if set(stale) - listed:
                await self.hub.force_reconnect("stale mark stream")
            if listed and self.listed_hub is not None:
                await self.listed_hub.force_reconnect("stale mark stream")

    async def force_reconnect(self, reason: str) -> None:
        """Fail this account's pending private watches and drop its connections."""
        if self.exchange is not None:
            await drop_connections(self.exchange, reason)

    # --- errors and frames --------------------------------------------------------------

    def _is_fatal(self, exc: BaseException) -> bool:
        if classify(exc) is ErrorKind.FATAL:
            self._record_fatal(exc)
            return True
        return False

    def _record_fatal(self, exc: BaseException) -> None:
        if self.state.fatal is None:
            self.state.fatal = describe(exc)
            self.state.connected = False
            # a refused account or a rejected request says what is wrong itself
            key = isinstance(exc, ccxt.AuthenticationError)
            hint = " (check the API key and its permissions)" if key else ""
            log.error("%s: feed stopped: %s%s", self.config.name, self.state.fatal, hint)
            self._fatal_event.set()
            self._notify(Change.FATAL)

    def _stop(self, exc: BaseException) -> None:
        self._record_fatal(exc)
        raise FeedStopped(self.state.fatal or "stopped")

    def on_frame(self, message: Any) -> None:
        """Every decoded frame, before ccxt handles it: catch what ccxt drops."""
        now = self._clock()
        if not self._hold(message, now) and self._listed_frame(message, now):
            self._notify(Change.ACCOUNT)
        self._after_frame(message, now)

    def _hold(self, message: Any, now: float) -> bool:
        """Hold a push that is one half of a transfer between the account's wallets, pushed
        apart from its other half (the adapter's :meth:`~ExchangeAdapter.transfer_half` and
        :meth:`~ExchangeAdapter.transfer_other_half`: Binance portfolio margin's COIN-M or UM
        wallet push and the cross margin account's ``outboundAccountPosition``, in either
        order), until its other half comes (applied together) or :data:`TRANSFER_HALF_HOLD_S`
        passes (then applied alone): applied alone at once, the coin is gone from one wallet
        and in no other (or in both) until the next frame, and a rule with ``for_s: 0`` fires
        and resolves on nothing. Likewise a loan's or repay's push and the balance it moves
        (:meth:`~ExchangeAdapter.loan_half`). A cross margin push holding an asset no listed
        position follows (a margin trade against USDT) is no transfer's and is not held. A
        later frame of a held coin waits behind it (applied after it, as they came: applied
        first, the held older wallet would overwrite it). A loan's push beside a cross
        margin push of its coin carrying an asset alertd does not follow (borrow BTC and sell
        it for USDT: Binance pushes the loan, then BTC and USDT in one
        ``outboundAccountPosition``; in either order) still waits for a push of its coin
        alone (a plain loan's own balance push within the bound: paired whole with it); none
        by its bound, it was the trade's and is applied as that push is, neither counted (the
        coin's equity left as read, the account read at once for the other asset): the loan
        applied alone would show the borrowed coin owed and not the USDT it was sold for.
        Whether the frame was taken here (held, or applied with those it released); not: the
        caller applies it."""
        followed = frozenset(p.coin for p in self.state.listed_positions if p.coin)
        if not followed or self._group is None:
            return False  # nothing to split, or nothing to bound a hold with
        wallet = self.adapter.transfer_half(message) & followed
        loan = self.adapter.loan_half(message) & followed
        cross = self.adapter.transfer_other_half(message)
        side = "wallet" if wallet else "loan" if loan else "cross" if cross & followed else None
        assets = (
            wallet or loan or cross & followed or self.adapter.listed_assets(message) & followed
        )
        if not assets:
            return False
        held = HeldFrame(message, now, assets, side)
        if side is not None:
            # a wallet's or a loan's half pairs with the cross margin balance's
            others = ("cross",) if side != "cross" else ("wallet", "loan")
            waiting = [h for h in self._held if h.waits and h.side in others and h.assets & assets]
            # a margin trade's push (another asset in it): a loan waiting is its pair only if
            # the loan's own push of the coin alone does not come by the bound (review of pm17)
            partial = side == "cross" and not cross <= followed
            for pair in waiting:
                if partial and pair.side == "loan":
                    pair.seen_alone = True
                else:
                    pair.waits = False
            # its other half applied alone at its bound: this one is it, late
            since = now - TRANSFER_HALF_HOLD_S
            late = [self._alone_at.pop((a, o), -math.inf) >= since for a in assets for o in others]
            if partial:
                self._partial_at.update(dict.fromkeys(assets, now))
            elif side == "loan" and not waiting:
                # its margin trade's push came first (applied at once, not whole)
                paired = [self._partial_at.pop(a, -math.inf) >= since for a in assets]
                held.seen_alone = any(paired)
            held.waits = not waiting and not any(late) and not partial
        if not held.waits and not any(h.assets & assets for h in self._held):
            return False  # nothing held before it: applied at once
        self._held.append(held)
        if held.waits:
            self._group.create_task(self._hold_bound(held))
        if self._release_held():
            self._notify(Change.ACCOUNT)
        return True

    async def _hold_bound(self, held: HeldFrame) -> None:
        """``held``'s other half not come by :data:`TRANSFER_HALF_HOLD_S`: applied alone, with
        the frames queued behind it (this hold's own bound: another's ends its own)."""
        await self._sleep(TRANSFER_HALF_HOLD_S)
        if not held.waits:
            return  # its other half came
        held.waits = False
        held.as_seen = held.seen_alone  # a margin trade's loan: taken as seen with the trade
        now = self._clock()
        for asset in held.assets:
            self._alone_at[(asset, held.side or "")] = now
        if self._release_held():
            self._notify(Change.ACCOUNT)

    def _release_held(self) -> bool:
        """Apply the held frames no waiting half holds back (one waiting holds back every
        later frame of its coins), in the order they came; whether any changed the listed
        positions (told by the caller, once)."""
        blocked: set[str] = set()
        kept: list[HeldFrame] = []
        ready: list[HeldFrame] = []
        for held in self._held:
            if held.waits or held.assets & blocked:
                blocked |= held.assets
                kept.append(held)
            else:
                ready.append(held)
        self._held = kept
        changed = False
        for held in ready:
            changed = self._listed_frame(held.message, held.at, held.as_seen) or changed
        if ready:
            self._named_unread(self._clock())
        return changed

    def _listed_frame(self, message: Any, now: float, as_seen: bool = False) -> bool:
        """A frame's change of the listed positions applied (:meth:`ExchangeAdapter.
        pushed_listed`, ``as_seen`` as it says), a read asked for where only a read can place
        it; whether it changed them (the caller tells the listeners)."""
        try:
            listed = self.adapter.pushed_listed(message, self.state.listed_positions, as_seen)
        except (FrameError, ArithmeticError) as exc:
            # ArithmeticError: a figure Decimal holds but cannot compute with (``pa`` 1E+999999
            # overflows the size's arithmetic), as malformed as a missing one
            self.on_malformed("listed positions: bad frame", describe(exc))
            listed = None
        if listed is None:
            return False
        before = self.state.listed_positions
        unplaced = {(p.symbol, p.side) for p in self.state.listed_unplaced()}
        self._pushes.apply(
            functools.partial(self._push_listed, message, listed),
            functools.partial(self._push_listed, message, as_seen=as_seen),
            Part.LISTED,
        )
        self._sync_mark_streams()
        if realizes(before, listed):
            self._fill_resync(now)
        elif {(p.symbol, p.side) for p in self.state.listed_unplaced()} - unplaced:
            # opened in a coin the last read held none of: what the exchange's equity as
            # read holds of the coin is only in a read (the account incomplete meanwhile)
            self._fill_resync(now, "COIN-M position opened in a coin not read")
        return True

    def _after_frame(self, message: Any, now: float) -> None:
        """What a frame tells beside the listed positions: positions not listed, assets not
        followed, stops, events, an expired listen key."""
        self._named_unread(now)
        # a read queued and not begun yet covers this push too: a burst of pushes (twenty
        # trailing stops placed at once, the channel's snapshot at each subscribe) is one
        # read, not one a push (each 3 requests on OKX)
        if (
            self.adapter.stops_pushed(message)
            and self._group is not None
            and not self._stops_read_queued
        ):
            self._stops_read_queued = True
            self._group.create_task(self._read_stops_now())
        event = self.adapter.event(message, now)
        if event is not None:
            self._event(event)
        if self.adapter.listen_key_expired(message):
            self._event(AccountEvent("listen_key_expired", now, "private stream key expired"))
            asyncio.get_running_loop().create_task(self.force_reconnect("listen key expired"))

    def _named_unread(self, now: float) -> None:
        """The positions the pushes could not list and the assets whose pushes alertd
        cannot follow, named and read (a frame applied, or held ones released)."""
        # a position the pushes cannot list: a read lists it. Added here, cleared only where a
        # read's snapshot is written (_resync): the adapter forgets them as a read begins, and
        # a read that fails must not leave the account called complete (review of pm15, 5)
        new = self.adapter.pushed_unlisted() - self.state.listed_pushed_unlisted
        if new:
            self.state.listed_pushed_unlisted |= new
            self._notify(Change.ACCOUNT)
            self._fill_resync(now, "COIN-M position pushed, not listed")
        # likewise an asset's push whose change alertd cannot follow (a margin trade)
        unfollowed = self.adapter.pushed_unfollowed() - self.state.pushed_unfollowed
        if unfollowed:
            self.state.pushed_unfollowed |= unfollowed
            self._notify(Change.ACCOUNT)
            self._fill_resync(now, "margin push of " + ", ".join(sorted(unfollowed)))

    def _push_listed(
        self,
        message: Any,
        listed: tuple[ExchangeRatioPosition, ...] | None = None,
        as_seen: bool = False,
    ) -> bool:
        """A push of the listed positions applied: ``listed`` as it made them from those held
        when it came, or, applied again over a snapshot, made anew from the snapshot's (a row
        older than the one read is left as read: ``pushed_listed``). Whether it changed them."""
        if listed is None:
            try:
                listed = self.adapter.pushed_listed(message, self.state.listed_positions, as_seen)
            except (FrameError, ArithmeticError):
                return False  # told when it first came
            if listed is None:
                return False
        changed = listed != self.state.listed_positions
        self.state.listed_positions = listed
        return changed

    def on_open(self, url: str) -> None:
        """A private websocket opened: the account streams (a quiet account may send nothing
        for hours; its first frame is not what says it is connected). Opened again after a
        lost stream, it is resynced once more, shortly after it subscribes: the resync that
        followed the loss may have run while the socket was still down, and a change made
        between that snapshot and the new subscription would be seen by neither. Its
        connection's opening in progress ended: its place in the host's pace counts a window
        from here."""
        self._opening_ended(self._openings.get(self.adapter.socket_connection(url)))
        if self.state.missed is not None:
            self._reopened_since_miss = True
        if not self.state.bootstrapped or self.state.fatal is not None:
            return
        reopened = not self.state.connected and self._last_failure > -float("inf")
        self._connected()
        if reopened:
            self._settle_resync(self._clock(), "reopened")

    def on_login(self, url: str) -> None:
        """A private websocket's login accepted. After a login refused on a socket that stayed
        open (expired in a crowded start: Bybit's "Params Error", OKX's 60006), the retried
        watch logs in on that socket: no opening follows (:meth:`on_open`), and a quiet
        account pushes nothing for hours, so it stayed disconnected for good, feed-down firing
        while its stream was up (5 of 1,000 Bybit accounts at load 14-15, issue 14, session
        16). The accepted login says it streams again; resynced once more, as at a reopening
        (a change between the resync after the refusal and the new subscriptions)."""
        if not self.state.bootstrapped or self.state.fatal is not None or self.state.connected:
            return
        self._connected()
        self._settle_resync(self._clock(), "private")

    def _event(self, event: AccountEvent) -> None:
        self.state.add_event(event)
        log.warning("%s: exchange pushed %s: %s", self.config.name, event.kind, event.detail)
        self._notify(Change.EVENT)

    def _tell_unread_fee(self, unread: UnreadFee | None) -> None:
        """A part of the fee rates left out (:meth:`ExchangeAdapter.fee_rates_unread`),
        logged once until it changes and kept in the state (``fee_gap``: status, snapshots
        and ``calc`` show it): the account runs on without it."""
        if unread is not None and unread != self._unread_fee_told:
            what = unread.gap.describe()
            if unread.malformed:
                self.on_malformed(what, unread.reason)
            else:
                log.warning("%s: %s: %s", self.config.name, what, unread.reason)
        self._unread_fee_told = unread
        self.state.fee_gap = None if unread is None else unread.gap

    def on_malformed(self, kind: str, detail: str) -> None:
        count = self.malformed.get(kind, 0) + 1
        self.malformed[kind] = count
        if count == 1:
            log.warning("%s: skipped a malformed frame (%s): %s", self.config.name, kind, detail)
        else:
            log.debug("%s: skipped malformed frame #%d (%s)", self.config.name, count, kind)

    def _notify(self, change: Change, symbol: str | None = None) -> None:
        if change is Change.RATES and self._pushes.reading:
            # a snapshot in flight writes its stops, positions and wallets before its own
            # notify, with awaits between: more than the rates may have moved since the
            # daemon's band was proven (review of idx14, finding 2)
            change = Change.ACCOUNT
        if change is Change.ACCOUNT or change is Change.RATES:
            self._reline()
            for asset in self.state.unlined_margin_assets():
                if asset not in self._unlined_warned:
                    self._unlined_warned.add(asset)
                    log.warning(
                        "%s: margin asset %s has no equity line (no %s at the last "
                        "snapshot): the account is incomplete until a snapshot gives it one",
                        self.state.name,
                        asset,
                        self.state.line_source.format(asset=asset),
                    )
        for listener in self.listeners:
            listener(self, change, symbol)
