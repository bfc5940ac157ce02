"""One account's live state as the feeds see it: plain data, no I/O, times passed in.

Positions are keyed by (symbol, side), never by ccxt's cache entries (see ccxt.md: sparse
Binance frames and one-way closes leave stale entries there). Zero contracts means closed.
Every stream's last-message time is kept so that the state can say what is fresh and what is
stale; the rules alert on it.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

from alertd.engine.collateral import Collateral, SettleTerms
from alertd.engine.fee_gap import FeeGap
from alertd.engine.margin import isolated_margin_liquidating_at
from alertd.engine.model import Account, MarginAsset, MarginMode, Pool, Position, Side
from alertd.engine.profiles import ExchangeProfile
from alertd.engine.reported import (
    CoinLeg,
    ExchangeRatioPosition,
    Exposure,
    exchange_ratio_position,
    moved_equity,
    moved_ratio,
)
from alertd.engine.stops import StopOrder, protection
from alertd.engine.tiers import TierTable
from alertd.views import format as fmt


class AccountMode(enum.Enum):
    """How the exchange pools an account's margin (``docs/exchanges.md``, "Account modes").

    Read at bootstrap and at every reconcile; the value is what status and messages show.
    """

    UNKNOWN = "not read yet"
    # one pool per margin asset: Binance single-asset, OKX single-currency (acctLv 2), Gate's
    # classic futures account with tiered MM, Hyperliquid's standard perpetuals account
    SINGLE_ASSET = "single-asset"
    # one USD pool over several collateral coins at haircut values: Binance multi-assets,
    # OKX multi-currency (acctLv 3), Gate unified multi-currency
    MULTI_ASSETS = "multi-assets"
    # Gate unified single-currency: each currency's pool inside the unified account
    UNIFIED_SINGLE_CURRENCY = "unified single-currency"
    UNIFIED_CROSS = "unified cross"  # Bybit UTA REGULAR_MARGIN: every collateral coin, one pool
    UNIFIED_ISOLATED = "unified isolated"  # Bybit UTA ISOLATED_MARGIN
    UNIFIED_ACCOUNT = "unified account"  # Hyperliquid unifiedAccount: spot clearinghouse state
    PORTFOLIO = "portfolio margin"  # scenario-based requirements (every exchange)
    LEGACY = "legacy"  # Bybit classic / UMA accounts, Gate's old non-tiered classic account
    SIMPLE = "simple"  # OKX acctLv 1: spot only, no derivatives margin


class Coverage(enum.Enum):
    """What alertd does with an account in its mode."""

    COMPUTED = "computed by alertd"  # alertd reproduces the exchange's figures
    EXCHANGE_RATIO = "exchange's own ratio"  # the exchange's account ratio is the figure shown
    NOT_COMPUTED = "not computed"  # neither: the account is flagged, its figures withheld
    REFUSED = "refused"  # the feed stops with the reason


@dataclass(frozen=True, slots=True)
class ModeReading:
    """An account's mode as the exchange answered it, and what alertd can do with it.

    ``detail`` is the exchange's own words (``multiAssetsMargin true``, ``acctLv 3``);
    ``limits`` says, for anything but :attr:`Coverage.COMPUTED`, what alertd cannot compute
    and why (the refusal's reason for :attr:`Coverage.REFUSED`).
    """

    mode: AccountMode
    detail: str
    coverage: Coverage = Coverage.COMPUTED
    limits: str = ""

    @property
    def label(self) -> str:
        return f"{self.mode.value} ({self.detail})" if self.detail else self.mode.value

    @classmethod
    def portfolio_margin(
        cls,
        detail: str,
        own_ratio: str,
        why: str = "portfolio margin requirements are scenario-based and not reproducible from "
        "public data",
    ) -> ModeReading:
        """Portfolio margin, on any exchange: the exchange's own ratio (``own_ratio`` names
        it) stands in for alertd's; ``why`` says what alertd cannot reproduce."""
        return cls(
            AccountMode.PORTFOLIO,
            detail,
            Coverage.EXCHANGE_RATIO,
            f"{why}: the margin ratio is {own_ratio}, read at every reconcile and moved with the "
            "marks in between; liquidation prices, crash distance and margin to add are not "
            "computed",
        )


NOT_READ = ModeReading(AccountMode.UNKNOWN, "")
# An account's start (its bootstrap, then its private stream's first opening: Binance's
# listen key is one more request in the same budget) whose failures in a row span more than
# this many seconds keeps failing. At a paced start hundreds of accounts share one per-IP
# budget, where a try can meet a 429 or a timeout in the crowd; a 429 lasts until the
# exchange's rate-limit window ends, a minute at Binance USD-M (REQUEST_WEIGHT per MINUTE;
# "General Info", Limits:
# https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info), and
# the 1 s x2 backoff tries about five times within one. Failures over a longer span are the
# account's own trouble, not the crowd's (a permanent one, a bad key, stops the feed at the
# first try: ``account_error``).
START_KEEPS_FAILING_S = 60.0
# the modes whose one pool holds contracts of several settle coins (USDT and USDC)
POOLED_MODES = frozenset(
    {
        AccountMode.MULTI_ASSETS,
        AccountMode.UNIFIED_CROSS,
        AccountMode.UNIFIED_ISOLATED,
        AccountMode.PORTFOLIO,
    }
)


class Stream(enum.Enum):
    MARK = "mark"
    POSITIONS = "positions"
    BALANCE = "balance"
    # the exchange's asset index (Binance multi-assets: the margin assets' rates, the coins'
    # indices), where the account's rates follow it between snapshots
    INDEX = "asset index"

    # Enum's own hash is a Python call (of the name's hash); members are singletons, equal
    # only to themselves, so identity's C hash serves: every mark recorded hashes one
    __hash__ = object.__hash__


# a member read from the class is an attribute look-up through the enum's metaclass: the
# marks' path (every holder at every tick) reads it once a module
MARK = Stream.MARK


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """What a feed keeps of one market from the exchange's catalogue: enough to turn a
    position's contracts into a quantity and to round a remedy to the exchange's steps."""

    symbol: str
    contract_size: Decimal
    inverse: bool
    settle: str
    tick_size: Decimal | None = None
    lot_size: Decimal | None = None  # the smallest step of an order's size, in contracts


@dataclass(frozen=True, slots=True)
class PositionState:
    symbol: str
    side: Side
    contracts: Decimal  # zero = closed
    entry_price: Decimal
    margin_mode: MarginMode
    isolated_margin: Decimal | None = None
    leverage: Decimal | None = None
    # the exchange's ADL indicator on alertd's scale (0 last in the queue, 1 first in line);
    # ``adl_given``: the frame carried the field (a stream that does not, Binance's, keeps
    # the rank the last REST snapshot gave)
    adl_rank: Decimal | None = None
    adl_given: bool = False
    # the exchange's liquidation price of an isolated position whose margin it does not send
    # (Bybit: ``positionBalance`` deprecated, ``isolated_margin`` then its Position IM, without
    # margin added by hand): the margin it implies stands in (``to_account``)
    exchange_liquidation_price: Decimal | None = None
    # the exchange's own order of this row, the same field in its REST rows and its pushes: a
    # time in ms (a REST row's last update, a push's event time) or an update sequence (Gate's
    # ``update_id``); None: the payload gives none. Not part of the position's value (equal
    # rows are the same position whenever they were stamped): only what orders a push against
    # a snapshot (:meth:`AccountState.update_positions`)
    version: int | LifeSequence | None = field(default=None, compare=False)
    # one-way (net) mode: the exchange holds one position a symbol, so this row, open, is the
    # symbol's whole position and ends the other side's (a fill flipping a long of 0.5 into a
    # short of 0.3 is pushed as one row of the signed size -0.3: :meth:`AccountState.
    # update_positions`). False in hedge mode, where both sides are held on purpose
    one_way: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class LifeSequence:
    """A position's update sequence where no source says it runs on across the position's
    lives (Gate's ``update_id``, "increments by 1 each time the position is updated": a
    closed and reopened position may number its updates afresh), with the span of the
    exchange's clock (ms) the update was made in: a push's own millisecond, a REST row's
    second (its update time is in seconds). Only the time orders two updates of different
    spans; the sequence orders two of one span where both are surely of one life
    (:func:`older`)."""

    sequence: int
    made_from_ms: int
    made_to_ms: int
    # the end of the span the life holding this update opened in (a REST row's open time);
    # None: not given (a push)
    opened_to_ms: int | None = None


def older(at: int | LifeSequence | None, than: int | LifeSequence | None) -> bool:
    """Whether a push stamped ``at`` by the exchange predates what the state holds, stamped
    ``than`` (times in ms, or update sequences): only where both carry the exchange's own (a
    push without one, or over a value read without one, is taken as the newer: it came after
    the value was read)."""
    if isinstance(at, LifeSequence) and isinstance(than, LifeSequence):
        return _older_in_life(at, than)
    if isinstance(at, int) and isinstance(than, int):
        return at < than
    return False


def _time_only(version: int | LifeSequence) -> int | LifeSequence:
    """``version`` ordering a push of another life of the position: a time as it is, an update
    sequence by its span of time alone (no life opened before the span: :func:`_older_in_life`
    orders by the span only)."""
    if isinstance(version, LifeSequence):
        return replace(version, opened_to_ms=None)
    return version


def _older_in_life(at: LifeSequence, than: LifeSequence) -> bool:
    """A push made before the held update's span is older, one made after it newer. Within
    the span, its sequence orders it only where the held value is a REST row whose life opened
    in an earlier span: an update of an earlier life cannot fall in a span the held life
    covered from its start, and a later life begins with a close (or, in one-way mode, a flip
    to the other side: another key) whose push comes first and is held from then on. Else
    (the held life opened in that very span, or the held value is a push of the same
    millisecond) the push is taken as the newer: a sequence numbered afresh would drop a
    newer push, where this applies at worst an older one until the next push or read."""
    if at.made_to_ms < than.made_from_ms:
        return True
    if at.made_from_ms > than.made_to_ms:
        return False
    opened = than.opened_to_ms
    one_life = opened is not None and opened < than.made_from_ms
    return one_life and at.sequence < than.sequence


@dataclass(frozen=True, slots=True)
class PoolRates:
    """What a pooled mode counts its currencies at: the settle currency's terms, the other
    margin assets' lines and the coins (``Account.settle_terms``, ``margin_assets``,
    ``collateral``)."""

    settle_terms: SettleTerms | None = None
    margin_assets: tuple[MarginAsset, ...] = ()
    collateral: tuple[Collateral, ...] = ()


@dataclass(frozen=True, slots=True)
class ReportedPosition:
    """The exchange's own figures for a position, kept only to cross-check ours."""

    liquidation_price: Decimal | None = None
    maintenance_margin: Decimal | None = None


@dataclass(frozen=True, slots=True)
class FigureScope:
    """What an exchange's account figures are where they are not of the pool alertd computes
    (Binance portfolio margin: the whole account's, in USD): each one's definition and what
    alertd's side of its comparison is. Such figures are shown beside alertd's, named so,
    and not compared: they are not like with like."""

    ours: str  # alertd's account figures: what they cover
    maintenance_margin: str
    margin_balance: str
    margin_ratio: str
    liquidation_price: str  # a position's, where the exchange gives one
    unit: str  # the exchange's money figures' unit


@dataclass(frozen=True, slots=True)
class ReportedAccount:
    maintenance_margin: Decimal | None = None
    margin_balance: Decimal | None = None
    margin_ratio: Decimal | None = None  # in alertd's direction: requirement / equity
    # None: the figures are of the pool alertd computes, as their generic names say
    scope: FigureScope | None = None
    # the unit of its money figures where it is not the settle currency and no scope names
    # it (Bybit's totalMarginBalance, OKX portfolio margin's adjEq: USD)
    unit: str | None = None

    def money_unit(self, settle: str) -> str:
        """The unit the exchange reports these money figures in."""
        if self.unit is not None:
            return self.unit
        return self.scope.unit if self.scope is not None else settle


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """Something the exchange pushed that ccxt drops: a margin call, a liquidation warning."""

    kind: str  # "margin_call", "liquidation_warning", "listen_key_expired"
    at: float
    detail: str


@dataclass(frozen=True, slots=True)
class MissedChange:
    """One position's size as held before a reconcile (from the snapshot before it and the
    pushes since) and as the reconcile read it, in contracts; 0: none held."""

    symbol: str
    side: Side
    held: Decimal
    read: Decimal

    def describe(self) -> str:
        what = f"{self.symbol} {self.side.label}"
        if not self.held:
            return f"{what} opened ({fmt.quantity(self.read)} contracts)"
        if not self.read:
            return f"{what} closed (was {fmt.quantity(self.held)} contracts)"
        return f"{what} {fmt.quantity(self.held)} -> {fmt.quantity(self.read)} contracts"


@dataclass(frozen=True, slots=True)
class MissedPushes:
    """Position changes a periodic reconcile found that no private push told, the private
    stream open: a stream dead while its connection lives (a login refused, the watches
    pending for ever), which the reconciles alone kept looking fresh (session 14)."""

    changes: tuple[MissedChange, ...]
    found_at: float  # monotonic, the feed's clock
    # how late alertd saw them at most: from the snapshot before (the last one they were not
    # in) to the reconcile that found them
    late_s: float

    def describe(self) -> str:
        what = "; ".join(c.describe() for c in self.changes)
        late = fmt.duration(self.late_s)
        return f"private stream missed {what} (found by a reconcile, up to {late} late)"


def missed_changes(
    held: Mapping[tuple[str, Side], Decimal], read: Mapping[tuple[str, Side], Decimal]
) -> tuple[MissedChange, ...]:
    """The positions whose sizes differ between ``held`` and ``read``, in order."""
    if held == read:  # every reconcile of every account: the usual answer, cheaply
        return ()
    keys = sorted(held.keys() | read.keys(), key=lambda k: (k[0], k[1].label))
    zero = Decimal(0)
    return tuple(
        MissedChange(symbol, side, held.get((symbol, side), zero), read.get((symbol, side), zero))
        for symbol, side in keys
        if held.get((symbol, side), zero) != read.get((symbol, side), zero)
    )


def _unknown_market(held: str) -> str:
    return f"{held}: unknown market"


def _stale(age_s: float | None, stale_after_s: float) -> bool:
    """Never heard from, or last heard from longer ago than ``stale_after_s``."""
    return age_s is None or age_s > stale_after_s


@dataclass(frozen=True, slots=True)
class Freshness:
    stream: Stream
    key: str  # the symbol for marks, "" otherwise
    age_s: float | None  # None: never heard from
    stale: bool


@dataclass
class AccountState:
    name: str
    profile: ExchangeProfile
    settle: str
    markets: dict[str, MarketInfo] = field(default_factory=dict)
    tiers: dict[str, TierTable] = field(default_factory=dict)
    positions: dict[tuple[str, Side], PositionState] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    wallet_balance: Decimal | None = None
    # the cross wallet balance of each other margin asset that is a pool of its own (Binance
    # single-asset mode: USDC-M positions against the USDC wallet), read at every snapshot
    # and from the balance stream; a position settled in one of them counts in its pool
    pool_wallets: dict[str, Decimal] = field(default_factory=dict)
    # the exchange's own figures of each of those pools (its drift is checked per pool)
    reported_pools: dict[str, ReportedAccount] = field(default_factory=dict)
    # the cross pool's other coins (multi-collateral modes), as of the last REST snapshot
    collateral: tuple[Collateral, ...] = ()
    # how the pool counts the settle currency's own equity where the exchange lends it
    # below zero or discounts it (OKX multi-currency margin, Gate unified multi-currency;
    # Account.settle_terms)
    settle_terms: SettleTerms | None = None
    # the other margin assets sharing the settle currency's pool at their own rates (Binance
    # multi-assets: USDC), as of the last REST snapshot; a wallet a push gave since
    # (``pool_wallets``, at each snapshot in that mode the wallets it read of assets it
    # could not line, ExchangeAdapter.unlined_wallets) stands for the one read
    margin_assets: tuple[MarginAsset, ...] = ()
    # the modes that count each other margin asset on a line of its own (Binance
    # multi-assets: at its <asset>USD rates; Bybit unified cross: at its USD value), so one
    # without a line is missing, never at par; ``line_source`` names what gives a line
    lined_modes: frozenset[AccountMode] = frozenset()
    line_source: str = "{asset}USD rates"
    # the settle terms, margin asset lines and coins as the last snapshot read them, where
    # the asset index stream moves their rates between snapshots (``follows_index``): what
    # the rows streamed since move
    pool_read: PoolRates | None = None
    # the account's rates follow the exchange's asset index stream (Binance multi-assets)
    follows_index: bool = False
    # its rates are the index's since the snapshot (False: the snapshot's own)
    rates_streamed: bool = False
    # the rows of its currencies the index stream expired (rejected since their last good
    # one, monotonic time it came): their rates kept at that one, each named stale
    expired_index_rows: dict[str, float] = field(default_factory=dict)
    # Bybit reports a wallet balance that still holds isolated positions' margin; Binance
    # reports the cross wallet alone
    wallet_includes_isolated: bool = False
    reported_positions: dict[tuple[str, Side], ReportedPosition] = field(default_factory=dict)
    reported_account: ReportedAccount = ReportedAccount()
    # positions the exchange reports beside those alertd holds, with its own figures as the
    # last snapshot read them (a portfolio margin account's COIN-M positions)
    listed_positions: tuple[ExchangeRatioPosition, ...] = ()
    # those positions as the last snapshot read them, before any push since (a fill's size,
    # a wallet's transfer): what the exchange's figures read hold, at ``reported_marks``
    listed_as_read: tuple[ExchangeRatioPosition, ...] = ()
    # their protective stops as read with them: re-figured at their live marks
    listed_stops: tuple[StopOrder, ...] = ()
    # the exchange's ids of positions pushed since the last read that could not be listed
    # (ExchangeAdapter.pushed_unlisted): the account is incomplete until a read lists them
    listed_pushed_unlisted: frozenset[str] = frozenset()
    # the assets pushed since the last read whose change alertd does not follow
    # (ExchangeAdapter.pushed_unfollowed): the account is incomplete until a read gives them
    pushed_unfollowed: frozenset[str] = frozenset()
    # the marks alertd held when reported_account was read: the exchange's ratio moves from them
    reported_marks: dict[str, Decimal] = field(default_factory=dict)
    mode: ModeReading = NOT_READ  # read at bootstrap and at every reconcile
    # the account's own taker fee rate per held symbol, where the exchange's requirement holds
    # a fee (``ExchangeProfile.uses_fee``), read at every snapshot; a symbol without one (held
    # since the last read) counts at the profile's base rate until the next
    fee_rates: dict[str, Decimal] = field(default_factory=dict)
    # a part of those rates no read could tell (Bybit's GST where neither the fills nor the
    # KYC region told): alertd's requirement is low by it at most, and says so
    fee_gap: FeeGap | None = None
    # open conditional orders, read at every snapshot (None: the adapter reads none)
    stops: tuple[StopOrder, ...] | None = None
    events: deque[AccountEvent] = field(default_factory=lambda: deque(maxlen=100))
    # monotonic time of the last message per (stream, key)
    last_seen: dict[tuple[Stream, str], float] = field(default_factory=dict)
    # the exchange's own order (PositionState.version) of each position's value held, and
    # its time (ms) of each wallet's, where the snapshot row or the push that gave it carried
    # one: a push older than it is dropped
    position_versions: dict[tuple[str, Side], int | LifeSequence] = field(default_factory=dict)
    # the exchange's time (ms) the last snapshot's positions are at least as new as, where an
    # answer read before them says when it was taken (ExchangeAdapter.first_answer_ms: OKX's
    # balance): a push made before it of a position the snapshot does not list (closed since,
    # or never open) is older than the read too
    positions_read_ms: int | None = None
    # the positions a push opened that were dropped on ``positions_read_ms`` alone (no row of
    # their own in the read): OKX documents no ordering between its balance and positions
    # answers, so a positions answer served a little behind the balance's (a lagging replica)
    # may miss a real position opened before the balance's time: the feed asks a read for
    # them at once (AccountFeed._fill_resync), which decides. Cleared by each snapshot
    dropped_unlisted: set[tuple[str, Side]] = field(default_factory=set)
    wallet_ms: dict[str, int] = field(default_factory=dict)
    connected: bool = False
    # position changes its private stream missed, found by a reconcile, until pushes are seen
    # again (or a reconcile after the stream was reopened misses nothing)
    missed: MissedPushes | None = None
    # what ended the last miss: "a position push since it was reopened", "a reconcile since
    # it was reopened missed nothing" (the resolution says which)
    miss_ended: str | None = None
    fatal: str | None = None  # why this account's feed stopped for good
    bootstrapped: bool = False
    # why its last try to go live failed while it retries: its bootstrap (then not live for
    # that reason, not merely waiting for its turn in the exchange's budget), or, bootstrapped,
    # its private stream's first opening; None once that step went through
    start_failed: str | None = None
    # when (monotonic, the feed's clock) the first and the last of those failures in a row
    # came (None once the step went through)
    start_failing: tuple[float, float] | None = None
    # its start kept failing once (:attr:`start_keeps_failing`): the paced start's grace is
    # over for good, its later success does not bring it back
    start_kept_failing: bool = False

    def start_failure(self, reason: str, at: float) -> None:
        """A try to go live (a bootstrap, a first opening of the private stream) failed at
        ``at`` for ``reason``: one more of its failures in a row."""
        self.start_failed = reason
        first = at if self.start_failing is None else self.start_failing[0]
        self.start_failing = (first, at)
        self.start_kept_failing = self.start_kept_failing or self.start_keeps_failing

    def start_step_done(self) -> None:
        """Its bootstrap, or its private stream's first opening, went through: the failures
        in a row are over (the next step's count afresh)."""
        self.start_failed = None
        self.start_failing = None

    @property
    def start_failing_for(self) -> float:
        """How long its start's failures in a row span, in seconds (0 with none)."""
        if self.start_failing is None:
            return 0.0
        first, last = self.start_failing
        return last - first

    @property
    def start_keeps_failing(self) -> bool:
        """Its start's failures in a row span more than :data:`START_KEEPS_FAILING_S`: no
        longer a failure of the crowd at a paced start, which a retry gets past once the
        exchange's rate-limit window ends."""
        return self.start_failing_for > START_KEEPS_FAILING_S

    def start_retrying(self) -> str | None:
        """Why the account is not live while its start retries (its bootstrap, or then its
        private stream's first opening), as the health line, status and feed-down's message say
        it ("retrying after RequestTimeout: ..."), and that it keeps failing; None while no try
        of the step failed, and once the feed connected."""
        if self.start_failed is None:
            return None
        span = self.start_failing_for
        keeps = f", failing for {span:.0f} s" if self.start_keeps_failing else ""
        return f"retrying after {self.start_failed}{keeps}"

    # --- updates -------------------------------------------------------------------------

    def replace_positions(
        self, positions: list[PositionState], now: float, read_ms: int | None = None
    ) -> None:
        """A full snapshot (REST): whatever it does not list is closed. Each row's time (its
        last update, where the exchange gives one) is what a push must be newer than; where
        the read is known to hold every change made before ``read_ms`` (the exchange's time
        of an answer read before the positions), so is a push of a position it does not
        list."""
        self.positions = {(p.symbol, p.side): p for p in positions if p.contracts > 0}
        self.position_versions = {}
        self.positions_read_ms = read_ms
        self.dropped_unlisted = set()
        for p in positions:
            if p.version is None:
                continue
            self.position_versions[(p.symbol, p.side)] = p.version
            if p.one_way and p.contracts > 0:
                # one-way: the row is the symbol's whole position, its time the symbol's: a
                # push of the other side made before it (a flip the read has overtaken,
                # delivered late) is older too, where it was ordered against nothing and
                # applied. By time alone: a flip begins another life, whose update sequence
                # may be numbered afresh (LifeSequence), so the row's is not compared
                other = (p.symbol, Side.SHORT if p.side is Side.LONG else Side.LONG)
                self.position_versions.setdefault(other, _time_only(p.version))
        self.last_seen[(Stream.POSITIONS, "")] = now

    def sizes(self) -> dict[tuple[str, Side], Decimal]:
        """Each held position's size in contracts, as :func:`missed_changes` compares them."""
        return {key: p.contracts for key, p in self.positions.items()}

    def update_positions(self, positions: list[PositionState], now: float) -> bool:
        """Changed positions only (a stream frame); zero contracts closes one. A row older by
        the exchange's own time than the value held (a snapshot read after it, a later push)
        is dropped. True when any row was applied."""
        applied = False
        for p in positions:
            key = (p.symbol, p.side)
            own = self.position_versions.get(key)
            if older(p.version, own):
                continue
            if own is None and older(p.version, self.positions_read_ms):
                if p.contracts > 0:
                    self.dropped_unlisted.add(key)
                else:  # closed before the read too: nothing hidden
                    self.dropped_unlisted.discard(key)
                continue
            self.dropped_unlisted.discard(key)
            applied = True
            if p.version is not None:
                self.position_versions[key] = p.version  # a close's too: no older open reopens it
            if p.contracts > 0:
                held = self.positions.get(key)
                if not p.adl_given and held is not None:
                    p = replace(p, adl_rank=held.adl_rank, adl_given=held.adl_given)
                self.positions[key] = p
                if p.one_way:
                    self._end_other_side(p)
            else:
                self.positions.pop(key, None)
                self.reported_positions.pop(key, None)
        self.last_seen[(Stream.POSITIONS, "")] = now
        return applied

    def _end_other_side(self, p: PositionState) -> None:
        """A one-way position applied open closes its symbol's other side, stamped with its
        own order: a push of the other side (a flip back) is then ordered against this one,
        not against the older value it replaced."""
        other = (p.symbol, Side.SHORT if p.side is Side.LONG else Side.LONG)
        self.positions.pop(other, None)
        self.reported_positions.pop(other, None)
        if p.version is None:
            self.position_versions.pop(other, None)  # the next push of that side wins
        else:
            self.position_versions[other] = p.version

    def set_wallet_balance(self, balance: Decimal, now: float, at_ms: int | None = None) -> bool:
        """The settle currency's wallet as a push gave it (stamped ``at_ms`` by the exchange,
        where it is); dropped (False) where it is older than the value held."""
        return self._set_wallet(self.settle, balance, now, at_ms)

    def set_pool_wallet(
        self, asset: str, balance: Decimal, now: float, at_ms: int | None = None
    ) -> bool:
        """Another margin asset's cross wallet balance (its own pool), as a push gave it;
        dropped (False) where it is older than the value held."""
        return self._set_wallet(asset, balance, now, at_ms)

    def _set_wallet(self, asset: str, balance: Decimal, now: float, at_ms: int | None) -> bool:
        if older(at_ms, self.wallet_ms.get(asset)):
            return False
        if at_ms is not None:
            self.wallet_ms[asset] = at_ms
        if asset == self.settle:
            self.wallet_balance = balance
        else:
            self.pool_wallets[asset] = balance
        self.last_seen[(Stream.BALANCE, "")] = now
        return True

    def read_wallets(
        self, wallet: Decimal, pools: Mapping[str, Decimal], read_ms: Mapping[str, int], now: float
    ) -> None:
        """A snapshot's wallets (the settle currency's, the other pools'), replacing those
        held, with the exchange's time of each where its answer gives one (``read_ms``)."""
        self.wallet_balance = wallet
        self.pool_wallets = dict(pools)
        self.wallet_ms = dict(read_ms)
        self.last_seen[(Stream.BALANCE, "")] = now

    def set_mark(self, symbol: str, price: Decimal, now: float) -> bool:
        """Record a mark; a non-positive or non-finite price is refused (returns False)."""
        if not price.is_finite() or price <= 0:
            return False
        self.record_mark(symbol, price, now)
        return True

    def record_mark(self, symbol: str, price: Decimal, now: float) -> None:
        """A mark its hub checked (finite and positive: :meth:`set_mark`'s test, made once a
        tick for every holder), recorded."""
        self.marks[symbol] = price
        self.last_seen[(MARK, symbol)] = now

    def set_collateral(
        self, coins: tuple[Collateral, ...], *read_at: Mapping[str, Decimal]
    ) -> None:
        """The pool's coins as read over REST. A coin that moves with a symbol keeps the basis
        of its price (an index) to that symbol's mark, and follows the mark from there until
        the next read. The mark is the one the coin was priced at: a tick may have come in
        while the answer was on its way, so of the marks held now and those of ``read_at``
        (the same snapshot's REST marks, the marks held as the reads were sent) the one
        nearest the coin's price, as an index follows its mark within a small basis. Taking
        the newer mark for an answer priced at the older one would value the coin at its old
        price until the next read (too high in a fall)."""

        def basis(c: Collateral, mark: Decimal) -> Decimal:
            marks = [mark, *(m[s] for m in read_at if (s := c.price_symbol or "") in m)]
            return min((c.price / m for m in marks), key=lambda b: abs(b - 1))

        self.collateral = tuple(
            replace(c, price_over_mark=basis(c, mark))
            if c.price_symbol is not None
            and c.price_over_mark is None
            and (mark := self.marks.get(c.price_symbol)) is not None
            else c
            for c in coins
        )

    def add_event(self, event: AccountEvent) -> None:
        self.events.append(event)

    # --- views ---------------------------------------------------------------------------

    @property
    def held_symbols(self) -> set[str]:
        return {symbol for symbol, _ in self.positions}

    @property
    def listed_symbols(self) -> set[str]:
        """The symbols of the listed positions that follow their marks between reconciles
        (a portfolio margin account's COIN-M positions in markets of the COIN-M catalogue;
        one a push closed too, until the next read: its coin's wallet moves with its mark)."""
        return {p.symbol for p in self.listed_positions if p.quantity is not None}

    @property
    def price_symbols(self) -> set[str]:
        """Every symbol whose mark moves the account: its positions' (the listed ones that
        follow a mark too) and its coins'."""
        return set(self._marked_symbols())

    def _marked_symbols(self) -> Iterator[str]:
        """:attr:`price_symbols` one by one, a symbol held twice given twice: what the
        evaluations read at every tick without building the set."""
        yield from (symbol for symbol, _ in self.positions)
        yield from (c.price_symbol for c in self.collateral if c.price_symbol is not None)
        yield from (p.symbol for p in self.listed_positions if p.quantity is not None)

    def freshness(
        self,
        now: float,
        stale_after_s: float,
        private_stale_after_s: float,
        reconciles_held_until: float = -float("inf"),
    ) -> list[Freshness]:
        """Per stream: the age of its last message and whether that is stale.

        Marks must tick while positions are open and while coins move with them. Private
        streams are quiet by design (Binance pushes only on changes), so they count as fresh
        while the REST reconcile keeps confirming them: their age counts from
        ``reconciles_held_until`` at the latest, while alertd itself held the reconciles back
        (accounts on the exchange bootstrapping, minutes at 1,000 accounts).
        """
        out = []
        for symbol in sorted(self.price_symbols):
            seen = self.mark_seen(symbol)
            age = None if seen is None else now - seen
            out.append(Freshness(Stream.MARK, symbol, age, _stale(age, stale_after_s)))
        for stream in (Stream.POSITIONS, Stream.BALANCE):
            seen = self.last_seen.get((stream, ""))
            age = None if seen is None else now - max(seen, reconciles_held_until)
            out.append(Freshness(stream, "", age, _stale(age, private_stale_after_s)))
        if self.follows_index:
            seen = self.last_seen.get((Stream.INDEX, ""))
            age = None if seen is None else now - seen
            out.append(Freshness(Stream.INDEX, "", age, _stale(age, stale_after_s)))
            for symbol, at in sorted(self.expired_index_rows.items()):
                out.append(Freshness(Stream.INDEX, symbol, now - at, True))
        return out

    @property
    def pool_rates(self) -> PoolRates:
        """The rates the pool counts at now (the snapshot's or the stream's)."""
        return PoolRates(self.settle_terms, self.margin_assets, self.collateral)

    def set_pool_rates(self, rates: PoolRates) -> bool:
        """The pool's rates from the asset index since the snapshot. True when anything
        changed."""
        before = self.pool_rates
        self.settle_terms = rates.settle_terms
        self.margin_assets = rates.margin_assets
        self.collateral = rates.collateral
        self.rates_streamed = True
        return self.pool_rates != before

    def mark_seen(self, symbol: str) -> float | None:
        """When ``symbol``'s last mark arrived (monotonic; ``None``: never)."""
        return self.last_seen.get((MARK, symbol))

    def oldest_mark_seen(self, never: float) -> float | None:
        """When the least recently marked of :attr:`price_symbols` last had a mark
        (monotonic; ``never`` for one never marked); ``None`` with none held. Read at every
        evaluation: no set of the symbols is built."""
        seen = self.last_seen
        oldest: float | None = None
        for symbol in self._marked_symbols():
            at = seen.get((Stream.MARK, symbol), never)
            if oldest is None or at < oldest:
                oldest = at
        return oldest

    def stale_marks(self, now: float, stale_after_s: float) -> list[str]:
        """The symbols whose marks :meth:`freshness` calls stale, sorted, without a row per
        stream: what the staleness watchdog asks of every account every second."""
        return self.stale_marks_until(now, stale_after_s)[0]

    def stale_marks_until(self, now: float, stale_after_s: float) -> tuple[list[str], float]:
        """:meth:`stale_marks`, and the first moment one of the others can be stale: none
        before it while the symbols are the same and their marks only arrive (inf: none)."""
        stale = []
        until = float("inf")
        for symbol in self.price_symbols:
            seen = self.mark_seen(symbol)
            if _stale(None if seen is None else now - seen, stale_after_s):
                stale.append(symbol)
            elif seen is not None and seen + stale_after_s < until:
                until = seen + stale_after_s
        return sorted(stale), until

    def missing(self) -> list[str]:
        """What keeps the state from being a complete account, one reason per item."""
        return [] if self._complete() else self._problems()

    def _problems(self) -> list[str]:
        """:meth:`missing`, worded."""
        problems = []
        if self.wallet_balance is None:
            problems.append("no balance yet")
        for (symbol, side), _ in self._held_in_order():
            held = f"{symbol} {side.label}"
            market = self.markets.get(symbol)
            if market is None or self._pool_unknown(market):
                # ccxt's unified symbol ends in the settle currency ("BTC/USDC:USDC")
                settle = symbol.rpartition(":")[2] if ":" in symbol else ""
                if settle and settle != self.settle:
                    *others, last = [f"{a}-" for a in (self.settle, *sorted(self.pool_wallets))]
                    computed = f"{', '.join(others)} and {last}" if others else last
                    problems.append(
                        f"{held}: settles in {settle}, a margin pool alertd does not compute "
                        f"yet (it computes {computed}settled positions)"
                    )
                else:
                    problems.append(_unknown_market(held))
                continue
            if symbol not in self.marks:
                problems.append(f"{held}: no mark price yet")
            if symbol not in self.tiers:
                problems.append(f"{held}: no tier table")
        for asset in self.unlined_margin_assets():
            problems.append(
                f"{asset}: a margin asset with no equity line (no "
                f"{self.line_source.format(asset=asset)} at the last snapshot): its wallet and "
                "positions are never counted at par"
            )
        return problems

    def _complete(self) -> bool:
        """:meth:`_problems` finds nothing: the same checks, with no reason worded and the
        positions not sorted (the daemon asks at every tick's evaluation of an account, and
        an account is complete all but at its start: 2% of a firing daemon's samples at
        1,000 accounts, fire15)."""
        if self.wallet_balance is None:
            return False
        markets, marks, tiers = self.markets, self.marks, self.tiers
        for symbol, _ in self.positions:
            market = markets.get(symbol)
            if (
                market is None
                or self._pool_unknown(market)
                or symbol not in marks
                or symbol not in tiers
            ):
                return False
        return not self.unlined_margin_assets()

    def unlined_margin_assets(self) -> list[str]:
        """The margin assets the pool holds a position or a wallet of (a ``B[].cw`` push or
        a position since the last snapshot) without a :class:`MarginAsset` line where the
        pooled mode needs one (``lined_modes``), sorted."""
        if self.mode.mode not in self.lined_modes:
            return []
        lined = {self.settle, *(m.asset for m in self.margin_assets)}
        held = {
            market.settle
            for (symbol, _) in self.positions
            if (market := self.markets.get(symbol)) is not None
        }
        held |= {asset for asset, wallet in self.pool_wallets.items() if wallet != 0}
        return sorted(held - lined)

    def incomplete(self) -> list[str]:
        """What keeps alertd's figures of the account incomplete in its mode: all that
        :meth:`missing` names where alertd computes the account; where the exchange's own
        ratio stands in for a mode alertd does not compute, the positions in markets alertd
        does not know (the exchange's list of the positions cannot describe them, issue 11
        Deliver 6: an account that stays incomplete says what is missing)."""
        if self.mode.coverage is Coverage.COMPUTED:
            return self.missing()
        unknown = [_unknown_market(f"{s} {side.label}") for s, side in self.unknown_positions()]
        return (
            unknown
            + [
                f"{p.symbol} {p.side.label}: opened by a push in {p.coin or 'a coin'} with no "
                "position of it read, whose equity as read (its COIN-M wallet, cross margin and "
                "UM balances) and collateral tiers the pushes do not carry: left out of the "
                "exchange's ratio (moved without it) until the account is read again (at once)"
                for p in self.listed_unplaced()
            ]
            + [
                f"{market_id}: a position pushed that the last read did not list (its market's "
                "catalogue not loaded): not in the exchange's ratio until the account is read "
                "again (at once)"
                for market_id in sorted(self.listed_pushed_unlisted)
            ]
            + [
                f"{asset}: a balance or loan pushed (a margin trade, a transfer, a loan) whose "
                "value alertd does not follow (its index and collateral rate): the exchange's "
                "ratio stands without the push's change until the account is read again (at "
                "once)"
                for asset in sorted(self.pushed_unfollowed)
            ]
        )

    def listed_unplaced(self) -> list[ExchangeRatioPosition]:
        """The listed positions a push opened in a coin the last read held none of (Binance
        portfolio margin's COIN-M: no wallet, balances or collateral tiers of the coin were
        read, and its pushes carry only its COIN-M wallet now, not what the exchange's
        equity as read holds of it): their PnL cannot be placed in the exchange's figures
        (a gain at the coin's collateral tiers, a loss in full below zero) until a read."""
        return [
            p
            for p in self.listed_positions
            if p.opened and p.coin_wallet is None and p.contracts > 0 and p.quantity is not None
        ]

    def unknown_positions(self) -> list[tuple[str, Side]]:
        """The held positions in markets alertd does not know (a market listed since the
        catalogue was loaded, until it is reloaded), in the order :meth:`missing` names them."""
        return [(s, side) for (s, side), _ in self._held_in_order() if s not in self.markets]

    def _held_in_order(self) -> list[tuple[tuple[str, Side], PositionState]]:
        """The held positions by symbol, a long before a short: the one order in which the
        account's lists and messages name them."""
        return sorted(self.positions.items(), key=lambda kv: (kv[0][0], -kv[0][1]))

    def _pool_unknown(self, market: MarketInfo) -> bool:
        """``market`` settles in a margin asset that is a pool of its own and that pool's
        wallet was not read (an exchange alertd reads one pool of)."""
        return self.pool_of(market) not in (None, *self.pool_wallets)

    def pool_of(self, market: MarketInfo) -> str | None:
        """The margin asset of the pool a position in ``market`` counts in, where that is not
        the settle currency's (None)."""
        if market.settle == self.settle or self.pools_settle_coins:
            return None
        return market.settle

    @property
    def pools_settle_coins(self) -> bool:
        """The account's mode margins contracts of every settle coin in one pool (Binance
        multi-assets, Bybit's unified account); elsewhere each settle coin is a pool of its
        own (Binance single-asset) and alertd computes the settle currency's alone."""
        return self.mode.mode in POOLED_MODES

    def _exchange_exposures(self) -> list[Exposure] | None:
        """The cross positions the exchange's account figures move with (another margin
        asset's pool left out: the figures read are the settle pool's); None: a market alertd
        does not know (they cannot be moved)."""
        exposures = []
        for (symbol, side), p in self.positions.items():
            if p.margin_mode is MarginMode.ISOLATED:
                continue
            market = self.markets.get(symbol)
            if market is None:
                return None
            if self.pool_of(market) is not None:
                continue
            size = side * p.contracts * market.contract_size
            exposures.append(Exposure(symbol, size, market.inverse))
        return exposures

    def _coin_legs(self, listed: tuple[ExchangeRatioPosition, ...]) -> list[CoinLeg]:
        """The ``listed`` inverse positions that follow their marks, as they move the exchange's
        USD figures (Binance portfolio margin's uniMMR: the COIN-M positions' PnL at the coin's
        mark; their maintenance margin read, in the coin, at the mark of the read, in the
        terms of the ratio's requirement: the ratio's requirement over the account's
        maintenance margin, Binance's 1.05)."""
        read = self.reported_account
        ratio, balance, mm = read.margin_ratio, read.margin_balance, read.maintenance_margin
        terms = None if ratio is None or balance is None or not mm else ratio * balance / mm
        legs = []
        for p in listed:
            if p.quantity is None or not p.inverse:
                continue
            margin, mark = p.maintenance_margin, p.mark_price
            known = margin is not None and mark is not None and terms is not None
            requirement = margin * mark * terms if known else None  # type: ignore[operator]
            if p.opened:  # none of it in the requirement read: from its brackets alone
                requirement = Decimal(0)
            low, high = p.collateral_rates or (Decimal(0), Decimal(1))
            coin = (p.coin or "") if p.coin_wallet is not None else ""
            legs.append(
                CoinLeg(
                    p.symbol,
                    p.side * p.quantity,
                    p.entry_price,
                    requirement,
                    low,
                    high,
                    coin,
                    p.coin_brackets if terms is not None else None,
                    terms or Decimal(1),
                    # placed in its tiers only with the coin's whole equity read
                    p.collateral_tiers if p.coin_other is not None and coin else (),
                    p.opened,
                )
            )
        return legs

    @staticmethod
    def _coin_wallets(listed: tuple[ExchangeRatioPosition, ...]) -> dict[str, Decimal]:
        """The coins' wallets with the ``listed`` inverse positions (Binance portfolio margin's
        COIN-M wallets, with the coin's cross margin equity and UM wallet where read), by coin:
        they move with the coin's mark (:func:`moved_ratio`)."""
        return {
            p.coin: p.coin_wallet + (p.coin_other or Decimal(0))
            for p in listed
            if p.inverse and p.coin and p.coin_wallet is not None
        }

    def _coin_moves(
        self,
    ) -> tuple[list[CoinLeg], dict[str, Decimal], list[CoinLeg], dict[str, Decimal]]:
        """The coin legs and wallets :func:`moved_ratio` moves: those held now (pushed since
        the read) at the live marks, those the snapshot read at its marks (review12: both
        sides from the pushed ones left what a push moved, priced at the read's mark, out of
        the exchange's equity)."""
        # a position opened by a push in a coin not read (listed_unplaced) is left out: its
        # PnL cannot be placed in the exchange's figures until a read (named incomplete)
        unplaced = self.listed_unplaced()
        listed = tuple(p for p in self.listed_positions if p not in unplaced)
        read = self.listed_as_read
        return (
            self._coin_legs(listed),
            self._coin_wallets(listed),
            self._coin_legs(read),
            self._coin_wallets(read),
        )

    def _followed(self, p: ExchangeRatioPosition) -> ExchangeRatioPosition:
        """A listed position at its live mark where it follows one (its size known, its
        market's mark held): PnL, notional, the distance to the exchange's liquidation price
        as read, its stops; as read otherwise."""
        mark = self.marks.get(p.symbol)
        if p.quantity is None or mark is None:
            return replace(p, quantity=None)  # no loss at its stop (see below)
        figures = exchange_ratio_position(
            Exposure(p.symbol, p.side * p.quantity, p.inverse),
            p.contracts,
            p.entry_price,
            mark,
            p.liquidation_price,
        )
        stop = protection(
            self.listed_stops, p.symbol, p.side, p.contracts, mark, p.liquidation_price
        )
        # no loss at its stop (``quantity`` left out): in the coin, it is no amount of the
        # account's settle currency nor a share of the exchange's USD equity
        return replace(
            figures,
            stop=stop,
            maintenance_margin=p.maintenance_margin,
            coin_brackets=p.coin_brackets,
            collateral_rates=p.collateral_rates,
            collateral_tiers=p.collateral_tiers,
            coin_wallet=p.coin_wallet,
            coin_other=p.coin_other,
            coin_cross=p.coin_cross,
            coin_liability=p.coin_liability,
            coin_um=p.coin_um,
            opened=p.opened,
            coin=p.coin,
            quantity=None,
        )

    def exchange_ratio(self) -> tuple[Decimal | None, bool]:
        """The exchange's own account ratio, and whether it was moved with the marks since it
        was read (``alertd/engine/reported.py``); as read when it cannot be moved (an unknown
        market, a mark missing, no margin balance reported). A position the pushes opened but
        cannot place (:meth:`listed_unplaced`, :attr:`listed_pushed_unlisted`) is left out,
        the rest moved, the account named incomplete until a read: frozen as read, the moves
        since the read were dropped with it, a firing ratio alert resolving and firing again
        (review of pm15, finding 7)."""
        read = self.reported_account
        if read.margin_ratio is None or read.margin_balance is None:
            return read.margin_ratio, False
        exposures = self._exchange_exposures()
        moved = (
            None
            if exposures is None
            else moved_ratio(
                read.margin_ratio,
                read.margin_balance,
                exposures,
                self.reported_marks,
                self.marks,
                *self._coin_moves(),
            )
        )
        return (read.margin_ratio, False) if moved is None else (moved, True)

    def exchange_equity(self) -> Decimal | None:
        """The exchange's own equity of the account (the margin balance its ratio is of),
        moved with the marks as :meth:`exchange_ratio` is; as read where it cannot be moved;
        None: the exchange reports none."""
        read = self.reported_account.margin_balance
        if read is None:
            return None
        exposures = self._exchange_exposures()
        moved = (
            None
            if exposures is None
            else moved_equity(
                read,
                exposures,
                self.reported_marks,
                self.marks,
                *self._coin_moves(),
            )
        )
        return read if moved is None else moved

    def exchange_ratio_positions(self) -> tuple[ExchangeRatioPosition, ...]:
        """The held positions as far as their size, the live mark and the exchange's reported
        liquidation price describe them: shown where the exchange's ratio stands in for
        alertd's (no figures of alertd's own); a market alertd does not know is left out.
        Then the positions it lists beside them (:attr:`listed_positions`), at their live marks
        where they follow one (:meth:`_followed`), as read otherwise."""
        out = []
        equity = self.exchange_equity()
        unit = self.reported_account.money_unit(self.settle)
        for (symbol, side), p in self._held_in_order():
            market = self.markets.get(symbol)
            if market is None:
                continue
            reported = self.reported_positions.get((symbol, side))
            liquidation = None if reported is None else reported.liquidation_price
            mark = self.marks.get(symbol)
            figures = exchange_ratio_position(
                Exposure(symbol, side * p.contracts * market.contract_size, market.inverse),
                p.contracts,
                p.entry_price,
                mark,
                liquidation,
            )
            if mark is not None:
                stop = protection(self.stops, symbol, side, p.contracts, mark, liquidation)
                figures = replace(figures, stop=stop)
            out.append(replace(figures, equity=equity, equity_unit=unit))
        # a listed position a push closed is held without a size until the next read (its
        # coin's wallet moving on with its mark: reported.py): closed, it is not shown
        listed = (self._followed(p) for p in self.listed_positions if p.contracts > 0)
        return (*out, *listed)

    @property
    def shown_fee_gap(self) -> FeeGap | None:
        """:attr:`fee_gap` where it is one of the figures shown: alertd's own, in a mode it
        computes. Elsewhere the ratio shown is the exchange's (portfolio margin), its fees in,
        and the fee rates leave nothing of it out."""
        return self.fee_gap if self.mode.coverage is Coverage.COMPUTED else None

    @property
    def computable(self) -> bool:
        """alertd computes this account's figures: bootstrapped, in a mode it models, with
        every market, mark and tier table it holds."""
        return self.bootstrapped and self.mode.coverage is Coverage.COMPUTED and not self.missing()

    def holdings(self) -> tuple[object, ...]:
        """What :meth:`to_account` reads but the marks, as values (its parts are frozen):
        equal, the account is the same but for its marks. A few tuples, where the account
        and its JSON cost about a millisecond (every account's, each health interval: 2-11% of a
        firing daemon's samples, benchmarks.md tenth pass)."""
        held = sorted(self.held_symbols)
        return (
            tuple(self.positions.items()),
            self.wallet_balance,
            tuple(self.pool_wallets.items()),
            self.collateral,
            self.settle_terms,
            self.margin_assets,
            self.stops,
            tuple(self.fee_rates.items()),
            self.fee_gap,
            tuple(self.markets.get(symbol) for symbol in held),
            tuple(self.tiers.get(symbol) for symbol in held),
            self.wallet_includes_isolated,
            self.mode.mode,  # which settle coins share a pool (pool_of)
        )

    def to_account(self, marks: Mapping[str, Decimal] | None = None) -> Account:
        """The engine's account at the current marks (or at ``marks`` where given: the ones an
        exchange answer was figured at); :meth:`missing` must be empty."""
        at = self.marks if not marks else {**self.marks, **marks}
        if problems := self.missing():
            raise ValueError("; ".join(problems))
        assert self.wallet_balance is not None
        pool_of = {symbol: self.pool_of(self.markets[symbol]) for symbol in self.held_symbols}

        held = []
        for (symbol, _), p in self._held_in_order():
            market = self.markets[symbol]
            position = Position(
                symbol=symbol,
                side=p.side,
                contracts=p.contracts,
                contract_size=market.contract_size,
                inverse=market.inverse,
                entry_price=p.entry_price,
                mark_price=at[symbol],
                margin_mode=p.margin_mode,
                tiers=self.tiers[symbol],
                fee_rate=self.fee_rates.get(symbol, self.profile.default_fee_rate),
                isolated_margin=p.isolated_margin if p.margin_mode is MarginMode.ISOLATED else None,
                leverage=p.leverage,
                tick_size=market.tick_size,
                lot_size=market.lot_size,
                adl_rank=p.adl_rank,
                pool=pool_of[symbol],
                # a contract of another settle coin in the one pool: not the settle
                # currency's equity (Binance multi-assets converts each at its rates)
                margin_asset=(
                    market.settle if market.settle != (pool_of[symbol] or self.settle) else None
                ),
            )
            if position.is_isolated and p.exchange_liquidation_price is not None:
                implied = isolated_margin_liquidating_at(
                    position, self.profile, p.exchange_liquidation_price
                )
                if implied is not None:
                    position = replace(position, isolated_margin=implied)
            held.append(position)

        lined = {m.asset for m in self.margin_assets}

        def cross_wallet(asset: str | None, wallet: Decimal, line: str | None = None) -> Decimal:
            """``wallet`` (of pool ``asset``, or of its margin asset ``line``'s equity line)
            less the isolated positions' margin it holds, where the exchange's wallet holds
            it: an isolated position of a lined margin asset (Bybit's USDC perpetuals) is
            margined from that asset's wallet."""
            if not self.wallet_includes_isolated:
                return wallet
            return wallet - sum(
                (
                    h.isolated_margin or 0
                    for h in held
                    if h.is_isolated
                    and h.pool == asset
                    and (h.margin_asset if h.margin_asset in lined else None) == line
                ),
                Decimal(0),
            )

        coins = tuple(
            replace(c, price=c.price_over_mark * mark)
            if c.price_over_mark is not None
            and c.price_symbol is not None
            and (mark := self.marks.get(c.price_symbol)) is not None
            else c
            for c in self.collateral
        )
        # the pools of other margin assets that hold positions, in a stable order
        pools = tuple(
            Pool(asset, cross_wallet(asset, self.pool_wallets[asset]))
            for asset in sorted({a for a in pool_of.values() if a is not None})
        )
        return Account(
            self.profile,
            self.name,
            self.settle,
            cross_wallet(None, self.wallet_balance),
            tuple(held),
            coins,
            self.stops,
            self.settle_terms,
            pools,
            tuple(
                replace(
                    m,
                    wallet_balance=cross_wallet(
                        None, self.pool_wallets.get(m.asset, m.wallet_balance), m.asset
                    ),
                )
                for m in self.margin_assets
                if not any(pool.asset == m.asset for pool in pools)
            ),
        )
