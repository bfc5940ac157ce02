"""What alertd needs from one exchange, and the parts every exchange shares.

An adapter turns ccxt calls into alertd's own state (:mod:`alertd.feeds.state`): positions,
wallet balance, tiers with their deductions, marks. It reads raw exchange fields (``info``)
where ccxt's unified ones are unreliable for margin (ccxt.md), and never computes margin itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import enum
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from alertd.clock import Clock
from alertd.engine.collateral import Collateral, SettleTerms
from alertd.engine.fee_gap import FeeGap
from alertd.engine.model import MarginAsset
from alertd.engine.orderbook import Level, OrderBook
from alertd.engine.reported import ExchangeRatioPosition
from alertd.engine.stops import StopOrder
from alertd.engine.tiers import TierTable
from alertd.exchanges.spec import IpBanAnswer, MarketFilter
from alertd.feeds.state import (
    AccountEvent,
    AccountMode,
    MarketInfo,
    ModeReading,
    PositionState,
    ReportedAccount,
    ReportedPosition,
)

T = TypeVar("T")

# open positions, the exchange's own figures for them, and the marks it reported
Snapshot = tuple[list[PositionState], dict[tuple[str, Any], ReportedPosition], dict[str, Decimal]]


class FrameError(ValueError):
    """An exchange message alertd cannot use; the feed logs it once per kind and skips it."""


class RejectedRow(str):
    """What was wrong with one row of an asset index frame or read, a problem logged as any
    other, naming the row's ``symbol``: the exchange's word on that row is unusable, so its
    last good one expires (:class:`~alertd.feeds.rates.AssetIndexStream`) where a row that
    merely did not come keeps standing."""

    symbol: str

    def __new__(cls, detail: str, symbol: str) -> RejectedRow:
        problem = super().__new__(cls, detail)
        problem.symbol = symbol
        return problem


@dataclass(frozen=True)
class UnreadFee:
    """A part of the fee rates left out for want of a read: ``gap`` what it is and the most it
    adds, ``reason`` the reads' errors; ``malformed``: the exchange answered something alertd
    cannot read (told as a malformed frame), else it refused or failed the request."""

    gap: FeeGap
    reason: str
    malformed: bool


def dec(value: Any, field: str = "value") -> Decimal:
    """An exchange number (string or float) as an exact Decimal; :class:`FrameError` if not."""
    if value is None or isinstance(value, bool):
        raise FrameError(f"{field}: missing")
    try:
        d = Decimal(value if isinstance(value, str | int) else repr(value))
    except InvalidOperation:
        raise FrameError(f"{field}: not a number: {value!r}") from None
    if not d.is_finite():
        raise FrameError(f"{field}: not finite: {value!r}")
    return d


def stamp_or_none(value: Any) -> int | None:
    """An exchange's stamp of a row (a time in milliseconds, or an update sequence: an integer
    or its decimal string), None where it gives none or an unusable one (missing, 0:
    Binance's "never updated", not a number): a stamp only orders a push against a snapshot,
    so a bad one is no frame error."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        ms = int(value)
    except ValueError:
        return None
    return ms if ms > 0 else None


def dec_or_none(value: Any) -> Decimal | None:
    try:
        d = dec(value)
    except FrameError:
        return None
    return d if d != 0 else None


def checked_stops(stops: Iterable[StopOrder]) -> list[StopOrder]:
    """``stops`` as parsed, or :class:`FrameError` naming the first with a trigger price that
    is not positive or a negative size (an exchange's number alertd cannot use)."""
    out = list(stops)
    for s in out:
        if s.trigger_price is not None and s.trigger_price <= 0:
            raise FrameError(f"order {s.order_id}: trigger price {s.trigger_price} is not positive")
        if s.contracts is not None and s.contracts < 0:
            raise FrameError(f"order {s.order_id}: size {s.contracts} is negative")
    return out


def market_info(market: dict[str, Any], settle: str) -> MarketInfo:
    # ccxt's precisions are steps (its TICK_SIZE mode): the price's tick, the amount's lot
    precision = market.get("precision") or {}
    tick, lot = precision.get("price"), precision.get("amount")
    return MarketInfo(
        symbol=market["symbol"],
        contract_size=dec(market.get("contractSize") or 1, "contractSize"),
        inverse=bool(market.get("inverse")),
        # the market's own settle currency (another than the pool's: a pooled one)
        settle=str(market.get("settle") or settle),
        tick_size=dec(tick, "tick") if tick else None,
        lot_size=dec(lot, "lot") if lot else None,
    )


def _levels(raw: Any, side: str, contract_size: Decimal, depth: int) -> tuple[Level, ...]:
    if not isinstance(raw, list):
        raise FrameError(f"order book {side}: not a list")
    out = []
    for level in raw[:depth]:
        if not isinstance(level, list | tuple) or len(level) < 2:
            raise FrameError(f"order book {side}: not [price, amount]: {level!r}"[:200])
        price, amount = dec(level[0], f"{side} price"), dec(level[1], f"{side} amount")
        if price <= 0 or amount < 0:
            raise FrameError(f"order book {side}: a level of {amount} at {price}")
        if amount > 0:
            out.append((price, amount * contract_size))
    return tuple(out)


def parse_order_book(raw: Any, contract_size: Decimal, depth: int) -> OrderBook:
    """ccxt's unified order book as alertd's, the ``depth`` best levels a side, sizes in the
    position's units: ccxt leaves amounts in contracts where the exchange counts contracts
    (OKX, Gate, Binance COIN-M), so each is multiplied by the market's contract size (1 on
    Binance USDⓈ-M, Bybit, Hyperliquid, whose books count the coin)."""
    if not isinstance(raw, dict):
        raise FrameError("order book: not an object")
    bids = _levels(raw.get("bids"), "bids", contract_size, depth)
    asks = _levels(raw.get("asks"), "asks", contract_size, depth)
    try:
        book = OrderBook(bids, asks)
    except ValueError as exc:
        raise FrameError(f"order book: {exc}") from None
    if bids and asks and bids[0][0] >= asks[0][0]:
        raise FrameError(f"order book: crossed (bid {bids[0][0]} >= ask {asks[0][0]})")
    return book


# whether the answer ccxt is parsing is one asked within :func:`alike_answers`
_ALIKE: contextvars.ContextVar[bool] = contextvars.ContextVar("alertd_alike", default=False)


@contextlib.contextmanager
def alike_answers() -> Iterator[None]:
    """The requests made within it (in the same task) are answered much alike for every
    account: an answer's body equal to one parsed before, another account's, is not parsed
    again (:class:`AlikeAnswers`). Its caller must only read what it gets."""
    token = _ALIKE.set(True)
    try:
        yield
    finally:
        _ALIKE.reset(token)


class AlikeAnswers:
    """The last ``size`` bodies of answers asked within :func:`alike_answers`, each with
    its parse, by the body's exact text: an answer equal to one of them is its parse, not a
    parse again (the same text parses to the same value, so nothing differs but the CPU).
    For a signed answer that is the same for most accounts and costly to parse: Binance's
    leverage brackets of every listed symbol (about 1 KB a market, 580 KB at 550: 4-6 ms of
    orjson each and the garbage collections its 6,000 objects set off, for every account at
    its bootstrap). An account whose answer differs (its own ``notionalCoef``: its brackets
    adjusted) is parsed and kept as its own; the least recently used body leaves first.

    One per exchange (the feed manager's :class:`~alertd.feeds.ccxt_exchange.SharedExchange`
    holds it); its parses are shared, so read-only. ``parses`` and ``reused`` count."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._parsed: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.parses = 0
        self.reused = 0

    def parse(self, body: Any, parse: Callable[[Any], Any]) -> Any:
        """``body`` parsed by ``parse`` (ccxt's, None where it is not JSON), or the parse of
        an equal body kept; ``parse`` as ccxt calls it where not asked within
        :func:`alike_answers`."""
        if not _ALIKE.get() or not isinstance(body, str):
            return parse(body)
        kept = self._parsed.get(body)
        if kept is not None:
            self._parsed.move_to_end(body)
            self.reused += 1
            return kept
        value = parse(body)
        if value is not None:
            self.parses += 1
            self._parsed[body] = value
            while len(self._parsed) > self._size:
                self._parsed.popitem(last=False)
        return value


class PublicTables:
    """Public, slow-changing tables an exchange publishes per key (OKX's discount tiers and
    borrowing tiers per currency), read once for every account that reaches the exchange the
    same way and kept until :meth:`clear` (the feeds' market refresh, every
    ``feeds.tier_refresh_interval_s``; a lone feed at its own tier refresh). Accounts asking
    for the same key at once wait for one request. A failed read keeps nothing: the next
    asks again; nor does an empty one where ``keep_empty`` is false (a held symbol's tier
    table answered empty, as a new listing's may be for a while: kept, every account holding
    it would stay incomplete until the next market refresh, up to a day)."""

    def __init__(self) -> None:
        self._tables: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}
        # fast-changing public values (a mark) with when they were read: shared for a while
        self._recent: dict[Hashable, tuple[Any, float]] = {}

    async def get(
        self, key: Hashable, load: Callable[[], Awaitable[T]], *, keep_empty: bool = True
    ) -> T:
        if key in self._tables:
            kept: T = self._tables[key]
            return kept
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._tables:
                again: T = self._tables[key]
                return again
            value = await load()
            if value is not None or keep_empty:
                self._tables[key] = value
            return value

    async def recent(
        self, key: Hashable, load: Callable[[], Awaitable[T]], clock: Clock, shared_for_s: float
    ) -> tuple[T, float]:
        """A public value that changes by the second (a mark over REST) and when it was read
        (``clock``, taken as the read began): one read for the accounts that ask within
        ``shared_for_s`` of it, those asking meanwhile waiting for it. Kept by time, not until
        :meth:`clear`: the caller records the read time with the value, so its age counts."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            held = self._recent.get(key)
            if held is not None and clock() - held[1] < shared_for_s:
                value: T = held[0]
                return value, held[1]
            read_at = clock()
            loaded = await load()
            self._recent[key] = (loaded, read_at)
            return loaded, read_at

    def clear(self) -> None:
        self._tables.clear()
        self._recent.clear()


class Part(enum.Enum):
    """The part of an account's state one push changes, and one snapshot answer reads."""

    POSITIONS = "positions"
    WALLETS = "wallets"  # the settle currency's wallet and the other pools'
    LISTED = "listed"  # the positions listed beside the computed ones (portfolio margin)


class ExchangeAdapter:
    """Base: the unified ccxt calls that are sound for what alertd reads."""

    # the part the snapshot's first answer with figures the drift check compares reads: the
    # positions (Binance positionRisk before the account, Bybit the position list before the
    # wallet, Gate the positions before the accounts, Hyperliquid the clearinghouse state's
    # positions before its margin summary); OKX's balance, read with the mode, comes first
    # (:class:`~alertd.feeds.feed.MomentsOfRead`)
    read_first: Part = Part.POSITIONS

    # the exchange's public tables, shared by the accounts of one exchange (the feed gives
    # the shared one; an adapter made alone keeps its own)
    tables: PublicTables

    def __init__(self) -> None:
        self.tables = PublicTables()
        # the catalogue of the markets the listed positions (:meth:`fetch_listed_positions`)
        # are in, where another ccxt exchange serves them: that exchange with its markets
        # loaded, from the feed's listed-marks hub (:meth:`listed_marks`); None: none
        self.listed_catalogue: Callable[[], Awaitable[Any]] | None = None
        # one answer read for every account of the exchange (:class:`~alertd.feeds.marks.
        # SharedRead` of the listed-marks hub, where its adapter names one:
        # ``shared_read_name``): given the read, it returns the answer as last read
        self.listed_read: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]] | None = None

    # a listed-marks hub's adapter (:meth:`listed_marks`): what its accounts read once for all
    # of them (:attr:`listed_read`); None: nothing
    shared_read_name: str | None = None
    # where that read goes to another host than the hub's exchange (Binance's collateral rates:
    # api.binance.com): the host's name and its ban answer; the read waits out that host's bans
    # and 429s in an IpBudget of its own (:class:`~alertd.feeds.marks.SharedRead`)
    shared_read_host: str | None = None
    shared_read_ban: IpBanAnswer | None = None
    # the ccxt APIs (``api[0]`` of its implicit methods) an account's exchange object sends to
    # another host, with a per-IP limit of its own (Binance USDⓈ-M's sapi*: api.binance.com,
    # the spot API): never paced in, nor a ban or 429 of them told to, the exchange's IpBudget
    other_host_apis: frozenset[str] = frozenset()

    # the depths the exchange's order book endpoint accepts (None: any up to the limit)
    book_limits: tuple[int, ...] | None = None
    # alertd keeps the exchange's order books from its websocket (ccxt pro's watch_order_book,
    # served by the local exchange as the exchange documents it), REST as the fallback
    # (docs/exchanges.md, "Order books")
    streams_order_book = False

    exchange_id = ""
    # the markets one account reads: the exchange's spec names the same filter
    market_filter = MarketFilter(settle="USDT")
    wallet_includes_isolated = False
    # the account modes that count each other margin asset of the pool on an equity line of
    # its own (:meth:`margin_assets`): one held without a line is missing, never at par; and
    # what a line is read from, named where one is missing
    lined_modes: frozenset[AccountMode] = frozenset()
    line_source = "{asset}USD rates"
    # how the exchange's own figures are defined, so the drift check compares like with like
    reported_mm_excludes_fee = False  # OKX: position "mmr" leaves out the liquidation fee
    # OKX, Gate, Hyperliquid: the account's MM covers the cross positions only
    reported_account_mm_cross_only = False
    # the exchange publishes the balance of the insurance fund behind each symbol, and
    # :meth:`fetch_insurance_fund` reads it (docs/exchanges.md, "Insurance funds")
    reads_insurance_fund = False

    @property
    def settle(self) -> str:
        """The settle currency of the account's margin pool."""
        return self.market_filter.settle

    def markets(self, exchange: Any, symbols: list[str] | None) -> dict[str, MarketInfo]:
        out = {}
        for symbol, market in exchange.markets.items():
            if not self.market_filter.accepts(market):
                continue
            if symbols is not None and symbol not in symbols:
                continue
            out[symbol] = market_info(market, self.settle)
        return out

    async def prepare(self, exchange: Any) -> None:
        """Once per exchange, at bootstrap, after the markets and before the first snapshot and
        any private watch: read what the streams need (Gate's user id). Raises
        :class:`~alertd.errors.AccountRefused` when the account cannot be served."""

    def snapshot_begins(self, net: bool) -> None:
        """Called first at every snapshot. ``net``: the snapshot is the net for what the
        streams tell (the bootstrap, a resync after a stream was lost, every
        ``feeds.stops_reconcile_every``-th reconcile, every reconcile while the streams are
        not up): read everything. Otherwise the adapter may leave out a read whose change
        its streams push or its other answers show (OKX's account configuration, Bybit's
        positions of a settle coin the account holds none of). Nothing by default."""

    def snapshot_written(self) -> None:
        """Called when the snapshot just read is written to the state (after every ``fetch_*``
        succeeded, before the pushes that came meanwhile are applied again on top of it): what
        the adapter keeps of a read to judge later pushes by (Binance portfolio margin: the
        rows' update times) is installed here, not when the read answers, so a snapshot that
        fails after it leaves it as the state's read. Nothing by default."""

    async def fetch_mode(self, exchange: Any) -> ModeReading:
        """The account's mode as the exchange reports it, read first at every snapshot (the
        other ``fetch_*`` calls may depend on it). A reading with
        :attr:`~alertd.feeds.state.Coverage.REFUSED` stops the account with its reason."""
        return ModeReading(AccountMode.SINGLE_ASSET, "")

    def settled_mode(self, reading: ModeReading) -> ModeReading:
        """The reading of :meth:`fetch_mode` once the snapshot's balance and collateral are
        read: where the pool read with the balance decides whether alertd reproduces the
        account (:class:`~alertd.exchanges.common.ComputedPoolReads`), the coverage it
        gives; ``reading`` as it is by default."""
        return reading

    async def fetch_tiers(self, exchange: Any, symbols: list[str]) -> dict[str, TierTable]:
        raise NotImplementedError

    async def fetch_positions(self, exchange: Any) -> Snapshot:
        """Open positions, the exchange's figures for them, and the marks it reported."""
        raise NotImplementedError

    async def fetch_balance(self, exchange: Any) -> tuple[Decimal, ReportedAccount]:
        """The cross wallet balance in the settle currency, and the exchange's account figures."""
        raise NotImplementedError

    async def fetch_pools(self, exchange: Any) -> dict[str, tuple[Decimal, ReportedAccount]]:
        """The other margin assets that are pools of their own in the account's mode (Binance
        single-asset: USDC beside USDT), each with its cross wallet balance and the exchange's
        own figures of it; read at every snapshot after :meth:`fetch_balance`. None by
        default: a position settled in another asset is then named as missing."""
        return {}

    async def fetch_listed_positions(self, exchange: Any) -> tuple[ExchangeRatioPosition, ...]:
        """Positions the account holds beside those alertd reads into its state, as the
        exchange's own figures describe them (a portfolio margin account's COIN-M positions),
        read at every snapshot after :meth:`fetch_balance`; none by default."""
        return ()

    def listed_marks(self, options: Mapping[str, Any]) -> ExchangeAdapter | None:
        """The public mark streams of the markets an account with ccxt ``options`` lists
        beside its own (Binance portfolio margin: the COIN-M ones, on another ccxt
        exchange), as an adapter of that exchange for a mark hub of its own; None: its listed
        positions, if any, are in no market alertd follows."""
        return None

    def pushed_listed(
        self,
        message: Any,
        listed: tuple[ExchangeRatioPosition, ...],
        as_seen: bool = False,
    ) -> tuple[ExchangeRatioPosition, ...] | None:
        """``listed`` (:meth:`fetch_listed_positions`' positions) with a private frame's
        change of them applied (Binance portfolio margin: a COIN-M fill's push); None: the
        frame changes none of them (by default, none does). ``as_seen``: the frame is one
        half of a move whose other half alertd cannot count (a loan's push paired with a
        margin trade's balance push carrying another asset): the values it gives are taken
        as seen and the equity they are part of is left as read, as for that other half."""
        return None

    def pushed_unlisted(self) -> frozenset[str]:
        """The exchange's ids of the positions pushed since the last snapshot that
        :meth:`pushed_listed` could not list (Binance portfolio margin: a COIN-M position in a
        market of a catalogue not loaded, the account holding none at its read): not in the
        exchange's figures as read, nor moved; none by default."""
        return frozenset()

    def transfer_half(self, message: Any) -> frozenset[str]:
        """The assets a private frame moves where it is one half of a transfer between the
        account's wallets whose other half comes in another frame (Binance portfolio margin:
        a COIN-M or UM wallet's push of a transfer, the cross margin balance's in its own
        ``outboundAccountPosition``); the feed holds it for its other half
        (:meth:`transfer_other_half`). Empty by default: no such frame."""
        return frozenset()

    def transfer_other_half(self, message: Any) -> frozenset[str]:
        """The assets of a frame that may be the other half of a transfer half
        (:meth:`transfer_half`), held itself for it where it arrives first; empty by
        default."""
        return frozenset()

    def loan_half(self, message: Any) -> frozenset[str]:
        """The assets of a private frame that is one half of a loan or repay whose other half
        (the balance it credits or debits) comes in another frame (Binance portfolio margin's
        ``liabilityChange`` of a borrow or repay, the balance in its
        ``outboundAccountPosition``); held like a transfer half. Empty by default."""
        return frozenset()

    def listed_assets(self, message: Any) -> frozenset[str]:
        """The assets whose listed figures a private frame may move (Binance portfolio
        margin: a wallet's or the cross margin account's push): a frame of a coin whose
        transfer half is held waits behind it, applied after it in the order they came;
        empty by default."""
        return frozenset()

    def pushed_unfollowed(self) -> frozenset[str]:
        """The assets of the pushes since the last snapshot that moved the exchange's figures
        in a way alertd does not follow (Binance portfolio margin: a margin trade's or loan's
        push of an asset whose equity alertd does not move, USDT bought or sold, a coin held
        in no COIN-M position): the exchange's figures moved by them are not known until a
        read; none by default."""
        return frozenset()

    def listed_stops(self) -> tuple[StopOrder, ...]:
        """The protective stops of :meth:`fetch_listed_positions`' positions, read with them
        (their figures follow those positions' marks); none by default."""
        return ()

    async def fetch_collateral(self, exchange: Any) -> tuple[Collateral, ...]:
        """The cross pool's coins besides the settle wallet (multi-collateral modes), read at
        every snapshot; none by default."""
        return ()

    def snapshot_weight(self) -> float | None:
        """What this account's last snapshot weighed in its exchange's per-IP budget, where
        its mode reads more or less than the spec's ``Capabilities.snapshot_weight`` (Binance:
        a multi-assets account's coin index, a portfolio margin account's /papi reads); None:
        the spec's (or no snapshot yet)."""
        return None

    def stops_weight(self, symbols: int) -> float | None:
        """What reading the open stop orders of ``symbols`` held symbols weighs in that
        budget, where the account's mode reads them elsewhere than the spec's
        ``Capabilities.stops_weight`` counts (Binance portfolio margin: under /papi); None:
        the spec's."""
        return None

    def live_weight(self, options: Mapping[str, Any]) -> float | None:
        """What the account will weigh in that budget until it is live, known from its ccxt
        ``options`` before anything is read (Binance: ``portfolioMargin``); None: the spec's
        ``Capabilities.live_weight``."""
        return None

    def settle_terms(self) -> SettleTerms | None:
        """How the pool counts the settle currency's own equity where the exchange lends it
        when the wallet and the cross PnL fall below zero, or discounts it (OKX
        multi-currency margin, Gate unified multi-currency), as the last snapshot read it;
        None by default (at par, nothing lent)."""
        return None

    def margin_assets(self) -> tuple[MarginAsset, ...]:
        """The other margin assets sharing the settle currency's pool on equity lines of
        their own (Binance multi-assets: USDC at its own rates), as the last snapshot read
        them; none by default."""
        return ()

    def unlined_wallets(self) -> dict[str, Decimal]:
        """The wallets of the other margin assets the last snapshot read but could not line
        (Bybit: no USD value for USDC), by asset: the account stays incomplete naming them
        until a snapshot lines them, as after a push of one (a snapshot that left them out
        made each later push ask another); none by default."""
        return {}

    # the exchange streams the asset index its pooled mode counts the margin assets and coins
    # at (Binance multi-assets: "Multi-Assets Mode Asset Index"): one subscription per
    # exchange (:class:`~alertd.feeds.rates.AssetIndexStream`), the rates of an account in
    # that mode (``AccountMode.MULTI_ASSETS``) following it between snapshots (:meth:`rerated`)
    streams_asset_index = False
    # the rows that stream holds now, while it is fresh (None: stale or never up), set by the
    # feed: a snapshot in that mode may read them in place of the REST index
    streamed_index: Callable[[], Mapping[str, Mapping[str, Any]] | None] | None = None
    # handed the checked rows of a REST read of that index the snapshot made (it is public:
    # the stream's other followers take them too)
    index_read: Callable[[list[dict[str, Any]]], None] | None = None

    @staticmethod
    def stream_hash(message: Any) -> str | None:
        """The message hash a watch of alertd's own waits on, where ``message`` is a frame of
        a stream that ccxt has no handler for (the guard resolves it); None for the others."""
        return None

    @staticmethod
    def refused_login(message: Any) -> str | None:
        """Where ``message`` refuses a websocket login that ccxt would go on taking for
        sent (so that no later watch on the connection logs in again, and each waits
        forever): the subscription ccxt keeps for the login, which the guard then drops;
        None for every other frame."""
        return None

    @staticmethod
    def accepted_login(message: Any) -> bool:
        """Whether ``message`` accepts a websocket login: the account streams on that socket
        again where a refused one (:meth:`refused_login`) failed its watches while it stayed
        open, so no opening follows to say so (the guard tells the feed)."""
        return False

    async def watch_asset_index(self, exchange: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """The next frame of the asset index stream: its rows (the REST snapshot's shape,
        checked) and what was wrong with the rows skipped. Only where
        :attr:`streams_asset_index`."""
        raise NotImplementedError(f"{self.exchange_id}: no asset index stream")

    async def renew_asset_index(self, exchange: Any, reason: str) -> bool:
        """The asset index subscription fell silent: renew it alone, so that the pending
        :meth:`watch_asset_index` fails (a NetworkError) and the next one subscribes again,
        leaving every other stream on the exchange (the marks) as it is; False where there
        was nothing to renew (no socket, or one still dialling). Only where
        :attr:`streams_asset_index`."""
        raise NotImplementedError(f"{self.exchange_id}: no asset index stream")

    async def fetch_asset_index(self, exchange: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """The asset index over REST, as :meth:`watch_asset_index` gives a frame: read while
        the stream is stale. Only where :attr:`streams_asset_index`."""
        raise NotImplementedError(f"{self.exchange_id}: no asset index")

    def rerated(
        self,
        rows: Mapping[str, Mapping[str, Any]],
        terms: SettleTerms | None,
        lines: tuple[MarginAsset, ...],
        coins: tuple[Collateral, ...],
    ) -> tuple[SettleTerms | None, tuple[MarginAsset, ...], tuple[Collateral, ...]]:
        """The pool's settle terms, margin asset lines and coins as a snapshot read them, at
        the streamed asset index ``rows`` (by symbol); as read by default."""
        return terms, lines, coins

    async def fetch_fee_rates(self, exchange: Any, symbols: list[str]) -> dict[str, Decimal]:
        """The account's own taker fee rate of each of ``symbols`` (the held ones), read at
        every snapshot where the exchange's requirement holds a fee; none by default (the
        exchange's formula uses none, or the rate is not read: the profile's base rate)."""
        return {}

    def fee_rates_unread(self) -> UnreadFee | None:
        """A part of the account's fee rates the last :meth:`fetch_fee_rates` could not read
        and left out (Bybit: the GST of an India-KYC account when neither its fills nor its
        key's KYC region could be read), for the feed to tell once and show; None where
        nothing was left out."""
        return None

    async def fetch_stops(self, exchange: Any, symbols: list[str]) -> list[StopOrder] | None:
        """The account's open conditional orders (stops, take-profits, trailing stops and a
        position's own TP/SL), read at every snapshot; at least those of ``symbols`` (the
        held ones: an exchange that weighs a request for every market more than one per
        symbol is asked per symbol). ``None`` where the adapter reads none (then no stop
        rule has a value: not reading them is not "no stop")."""
        return None

    # the exchange pushes changes of conditional orders on a private stream ccxt.pro watches
    # (``watch_orders``); elsewhere the stops are read at every snapshot (reconcile) only
    watches_stops = False
    watch_orders_params: dict[str, Any] = {}  # noqa: RUF012 (read only)

    async def watch_stop_changes(self, exchange: Any) -> bool:
        """Wait for the next batch of order events; True when one of them is a conditional
        order (placed, amended, triggered, cancelled): the stops are then read again over
        REST, so that the stream only says *when* and the one parser of each exchange's
        REST answer says *what* (a missed push is caught by the next reconcile)."""
        orders = await exchange.watch_orders(params=dict(self.watch_orders_params))
        return any(self.is_stop_event(order.get("info") or {}) for order in orders or ())

    def stops_pushed(self, message: Any) -> bool:
        """Whether a decoded frame ccxt does not handle says the conditional orders changed
        (OKX's "algo-advance": trailing stops): the stops are then read again, as after
        :meth:`watch_stop_changes`."""
        return False

    def is_stop_event(self, raw: dict[str, Any]) -> bool:
        """Whether one raw order push is about a conditional order."""
        return False

    def stream_connection(self, stream: str) -> str:
        """The name of the websocket connection ``stream`` (positions, balance, orders) runs
        on: the streams of one connection take one turn to open it. One private connection by
        default."""
        return "private"

    def socket_connection(self, url: str) -> str:
        """The name (:meth:`stream_connection`'s) of the connection a websocket of ``url``
        is: what its opening or its close is counted against. One private connection by
        default."""
        return "private"

    async def watch_positions(self, exchange: Any) -> list[PositionState]:
        raise NotImplementedError

    async def watch_balance(self, exchange: Any) -> Decimal | None:
        raise NotImplementedError

    async def watch_balances(self, exchange: Any) -> dict[str, Decimal]:
        """The cross wallet balances a balance push changed, by margin asset: the settle
        currency's and, where the adapter reads pools of other assets (:meth:`fetch_pools`),
        theirs; empty when the push changed none. The push's own time, where it carries one,
        is left in :attr:`balance_pushed_ms` for the caller."""
        wallet = await self.watch_balance(exchange)
        return {} if wallet is None else {self.settle: wallet}

    # the exchange's own time (ms) of the balance push the last :meth:`watch_balances` (or
    # :meth:`watch_balance`) returned, where the push carries one; None: it gave none. Read by
    # the feed as the call returns, before any other await (no other push in between)
    balance_pushed_ms: int | None = None

    def wallet_times(self) -> dict[str, int]:
        """The exchange's own update time (ms) of each wallet (by margin asset) the last
        :meth:`fetch_balance` and :meth:`fetch_pools` read, where its answer gives one: a
        balance push older than it does not replace the wallet read. None by default: a
        push that arrives after the read began is then taken as the newer."""
        return {}

    def first_answer_ms(self) -> int | None:
        """The exchange's own time (ms) of this snapshot's first answer (:attr:`read_first`),
        where the answer gives one: what the account held then, every position change made
        before it, is in that answer and in every answer read after it, the positions
        answer's too. A position push made before it is then of no moment of the read
        (:class:`~alertd.feeds.feed.MomentsOfRead`), and one of a position the positions
        answer does not list is older than the read (``AccountState.update_positions``).
        None by default: no answer says when it was taken."""
        return None

    def _snapshot_into(
        self,
        rows: Iterable[dict[str, Any]],
        parse: Callable[[dict[str, Any]], Iterable[PositionState]],
        fields: tuple[str, str, str],
        snapshot: Snapshot,
    ) -> None:
        """Add the open positions of raw REST ``rows`` to ``snapshot``, with the exchange's
        own figures named by ``fields`` = (liquidation price, maintenance margin, mark)."""
        liq_field, mm_field, mark_field = fields
        positions, reported, marks = snapshot
        for raw in rows:
            for p in parse(raw):
                if p.contracts == 0:
                    continue
                positions.append(p)
                reported[(p.symbol, p.side)] = ReportedPosition(
                    liquidation_price=dec_or_none(raw.get(liq_field)),
                    maintenance_margin=dec_or_none(raw.get(mm_field)),
                )
                mark = dec_or_none(raw.get(mark_field))
                if mark is not None:
                    marks[p.symbol] = mark

    def _changed_positions(
        self,
        changed: list[dict[str, Any]],
        marker: str,
        parse: Callable[[dict[str, Any]], Iterable[PositionState]],
    ) -> list[PositionState]:
        """Positions from a ``watch_positions`` batch: raw entries carrying ``marker``, the
        last word per (symbol, side) winning."""
        out: dict[tuple[str, object], PositionState] = {}
        for position in changed:
            raw = position.get("info") or {}
            if marker not in raw:
                continue
            for p in parse(raw):
                # moved to the end: a one-way row ends the other side, so the rows of a
                # flip and a flip back are applied in the order they came
                out.pop((p.symbol, p.side), None)
                out[(p.symbol, p.side)] = p
        return list(out.values())

    async def fetch_mark(self, exchange: Any, symbol: str) -> Decimal:
        """The current mark over REST: seeds a newly held symbol before its stream ticks."""
        ticker = await exchange.fetch_ticker(symbol)
        return dec(ticker.get("markPrice") or (ticker.get("info") or {}).get("markPrice"), "mark")

    async def watch_mark(self, exchange: Any, symbol: str) -> Decimal:
        ticker = await exchange.watch_ticker(symbol)
        return dec(ticker.get("markPrice") or (ticker.get("info") or {}).get("markPrice"), "mark")

    async def fetch_mark_candles(
        self, exchange: Any, symbol: str, timeframe: str, since_ms: int, limit: int
    ) -> list[tuple[int, Decimal, Decimal]]:
        """Recent mark-price candles, ``(open time ms, open, close)``, oldest first: ccxt's
        ``fetch_mark_ohlcv`` where the exchange serves them; an exchange without mark candles
        (Hyperliquid) gives its trade candles, the nearest it has."""
        if exchange.has.get("fetchMarkOHLCV"):
            rows = await exchange.fetch_mark_ohlcv(symbol, timeframe, since_ms, limit)
        else:
            rows = await exchange.fetch_ohlcv(symbol, timeframe, since_ms, limit)
        out = []
        for row in rows or ():
            if not isinstance(row, list | tuple) or len(row) < 5 or not isinstance(row[0], int):
                raise FrameError(f"{symbol} candle: not [time, open, high, low, close]: {row!r}")
            out.append((row[0], dec(row[1], "candle open"), dec(row[4], "candle close")))
        return out

    async def fetch_insurance_fund(self, exchange: Any, symbol: str) -> Decimal:
        """The balance, in the settle currency, of the insurance fund that covers ``symbol``
        (public); only where :attr:`reads_insurance_fund`."""
        raise NotImplementedError(f"{self.exchange_id}: no insurance fund read")

    def _book_limit(self, depth: int) -> int | None:
        """What to ask the exchange for: ``depth``, or the next depth it accepts."""
        limits = self.book_limits
        return depth if limits is None else min((n for n in limits if n >= depth), default=None)

    def order_book(self, exchange: Any, symbol: str, raw: Any, depth: int) -> OrderBook:
        """ccxt's order book of ``symbol`` (fetched or watched) as alertd's, bounded."""
        market = exchange.markets.get(symbol) or {}
        size = dec(market.get("contractSize") or 1, "contractSize")
        return parse_order_book(raw, size, depth)

    async def fetch_order_book(self, exchange: Any, symbol: str, depth: int) -> OrderBook:
        """The ``depth`` best levels a side of ``symbol``'s order book, over REST."""
        raw = await exchange.fetch_order_book(symbol, self._book_limit(depth))
        return self.order_book(exchange, symbol, raw, depth)

    async def watch_order_book(self, exchange: Any, symbol: str, depth: int) -> Any:
        """ccxt pro's book of ``symbol`` at its next update (raw: :meth:`order_book` reads
        it); only where :attr:`streams_order_book`. ccxt keeps it current from the stream
        between calls."""
        return await exchange.watch_order_book(symbol, self._book_limit(depth))

    def streamed_order_book(self, exchange: Any, symbol: str) -> Any | None:
        """ccxt pro's copy of ``symbol``'s streamed book as it is now (None: none kept)."""
        books = getattr(exchange, "orderbooks", None)
        return books.get(symbol) if isinstance(books, dict) else None

    def book_version(self, raw: Any) -> Any:
        """What tells two states of a streamed book apart: ccxt's update id (``nonce``)."""
        return raw.get("nonce") if isinstance(raw, dict) else None

    async def unwatch_order_book(self, exchange: Any, symbol: str) -> None:
        """Leave ``symbol``'s book stream (where ccxt can unsubscribe)."""
        if exchange.has.get("unWatchOrderBook"):
            await exchange.un_watch_order_book(symbol)

    async def unwatch_mark(self, exchange: Any, symbol: str) -> None:
        if exchange.has.get("unWatchTicker"):
            await exchange.un_watch_ticker(symbol)

    def event(self, message: Any, now: float) -> AccountEvent | None:
        """An exchange push that ccxt drops, if this frame is one."""
        return None

    def listen_key_expired(self, message: Any) -> bool:
        return False

    async def renew(self, exchange: Any) -> None:
        """Keep private streams authorised (Binance listen keys); nothing elsewhere."""
