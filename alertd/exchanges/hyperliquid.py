"""Hyperliquid perpetuals (USDC), read by wallet address: everything alertd needs is public.

Wire formats: hyperliquid.gitbook.io/hyperliquid-docs: "Info endpoint / Perpetuals"
(``clearinghouseState``), "Websocket / Subscriptions" (``clearinghouseState``,
``activeAssetCtx``), "Trading / Margining", "Trading / Liquidations", "Trading / Margin tiers".

How Hyperliquid's numbers map onto alertd's model (margin balance = wallet + unrealized PnL of
the cross positions; isolated margin is the position's own margin without its PnL):

- Hyperliquid keeps a signed "raw USD" per pool: USDC minus the entry value of its positions
  (``rawUsd`` of an isolated position, ``crossMarginSummary.totalRawUsd`` for cross). Its account
  value is ``rawUsd + sum(szi * mark)``. So alertd's cross wallet is
  ``totalRawUsd + sum(szi * entryPx)`` over the cross positions, and an isolated position's
  margin is ``rawUsd + szi * entryPx``. With alertd's unrealized PnL, ``szi * (mark - entryPx)``,
  the engine then gives exactly Hyperliquid's account values, even though ``entryPx`` and
  ``unrealizedPnl`` are rounded for display.
- ``marginUsed`` of an isolated position is its equity (margin + PnL); of a cross one, its
  initial margin. ``crossMaintenanceMarginUsed`` covers the cross positions only.
- Maintenance margin: ``notional * rate - deduction`` in the position's margin tier (``meta``'s
  ``marginTables``), the rate half the initial rate at the tier's max leverage; cross
  liquidation when account value < maintenance margin; liquidation price
  ``price - side * margin_available / size / (1 - l * side)``.

Account abstraction ("Info endpoint": "Query a user's abstraction state", ``userAbstraction``;
"Trading / Account abstraction modes"), read at every snapshot:

- standard (``default``, ``disabled``, the legacy ``dexAbstraction``): the perpetuals state
  holds the USDC, as above.
- ``unifiedAccount``: one balance per asset, in the spot clearinghouse state, backs every cross
  position of the dexes that settle in it ("single balance for each asset. This balance
  collateralizes all cross margin positions in that asset"); the perpetuals state keeps the
  positions with no USDC of its own (its raw USD is minus their entry value, its account value
  their PnL). Hyperliquid's own "Unified Account Ratio" (same page) is, per collateral token,
  ``crossMaintenanceMarginUsed / (spot total - isolated marginUsed)``: the spot ``total`` is
  the token's whole balance, positions' value included (it is what ccxt's ``fetch_balance``
  gives as the account's USDC total in that mode, as ``marginSummary.accountValue`` in the
  standard one), so ``total`` less the isolated positions' equity is the cross pool's margin
  balance. alertd computes it as a standard cross pool: its wallet is that balance less the
  cross positions' PnL, and the spot ``total`` is re-read at every reconcile (between reads the
  perpetuals pushes move the positions' part). USDC is the only collateral of USDC perpetuals
  in this mode (other coins back their own dexes only), so there are no collateral legs.
- ``portfolioMargin``: HYPE and BTC back USDC positions at a loan-to-value, borrowing and
  cross-asset offsets; its requirement is not published. The spot state reports
  ``portfolioMarginRatio``, liquidatable above 0.95 ("Trading / Portfolio margin"): alertd's
  ratio (1 at liquidation) is that ratio over 0.95, read at every reconcile. Hyperliquid reports
  no equity beside it, so it is not moved with the marks in between (``engine/reported.py``
  needs the balance it is a ratio of).
- anything else is refused, naming the value.

HIP-3 dexes: alertd reads the main dex's positions. In a unified account the USDC HIP-3
dexes' cross positions share the spot balance (their value is in its ``total``): alertd reads
each such dex's state (the dexes ccxt loaded, ``info.dex`` with ``collateralToken`` 0) at every
snapshot, and where one holds positions the account's ratio is Hyperliquid's Unified Account
Ratio over every USDC dex, read at every reconcile (the exchange's ratio, labelled). Portfolio
margin's ratio covers every dex already.

ADL: Hyperliquid publishes no per-position auto-deleveraging rank ("Auto-deleveraging" in its
docs ranks by unrealized PnL and leverage; ``clearinghouseState`` carries no indicator), so
``adl_rank`` has no value here (docs/exchanges.md, "ADL rank").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from alertd.engine.model import MarginMode, Side
from alertd.engine.profiles import DisplayedRatio, ExchangeProfile
from alertd.engine.stops import StopKind, StopOrder, Trigger
from alertd.engine.tiers import Tier, TierTable, derive_deductions
from alertd.errors import AccountRefused
from alertd.exchanges.common import ticker_mark
from alertd.exchanges.spec import Capabilities, ExchangeSpec, MarketFilter, TierSource
from alertd.feeds.adapter import ExchangeAdapter, FrameError, dec, dec_or_none
from alertd.feeds.state import (
    AccountMode,
    Coverage,
    ModeReading,
    PositionState,
    ReportedAccount,
    ReportedPosition,
)

PROFILE = ExchangeProfile(
    id="hyperliquid",
    name="Hyperliquid",
    mmr_from_max_leverage=True,
    displayed_ratio=DisplayedRatio.NONE,
    displayed_ratio_name="",
)
SETTLE = "USDC"
MARKETS = MarketFilter(settle=SETTLE)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
FLAT_TABLES_BELOW = 50  # a margin table id under 50 is one tier at that leverage, not listed

# userAbstraction answers one bare JSON string: "unifiedAccount" | "portfolioMargin" |
# "disabled" | "default" | "dexAbstraction" (ccxt's hyperliquid.is_unified_enabled). The
# legacy dexAbstraction moves USDC to HIP-3 dexes; the native perpetuals keep their own pool.
STANDARD_ABSTRACTIONS = frozenset({"disabled", "default", "dexAbstraction"})
UNIFIED = "unifiedAccount"  # the USDC lives in the spot state, in these two
PORTFOLIO = "portfolioMargin"
# "Trading / Portfolio margin": an account is liquidatable when its portfolio margin ratio
# exceeds 0.95; alertd's ratio is 1 at liquidation
PORTFOLIO_LIQUIDATION_RATIO = Decimal("0.95")
PORTFOLIO_LIMITS = (
    "portfolio margin's requirement (HYPE and BTC at a loan-to-value, borrowing, offsets "
    "across spot and perpetuals) is not published: the margin ratio is Hyperliquid's own "
    f"portfolioMarginRatio over its liquidation level {PORTFOLIO_LIQUIDATION_RATIO}, read at "
    "every reconcile; Hyperliquid reports no equity beside it, so it is not moved with the "
    "marks in between; liquidation prices, crash distance and margin to add are not computed"
)


def abstraction_mode(user: str, answer: Any) -> ModeReading:
    """The account's mode from ``userAbstraction``: standard and unified accounts are
    computed, portfolio margin shows Hyperliquid's own ratio, anything else is refused."""
    # ccxt hands a bare JSON string back as the response text, quotes included
    mode = answer.strip().strip('"') if isinstance(answer, str) else None
    if mode in STANDARD_ABSTRACTIONS:
        return ModeReading(AccountMode.SINGLE_ASSET, f"userAbstraction {mode}")
    if mode == UNIFIED:
        return ModeReading(AccountMode.UNIFIED_ACCOUNT, f"userAbstraction {mode}")
    if mode == PORTFOLIO:
        return ModeReading(
            AccountMode.PORTFOLIO, f"userAbstraction {mode}", Coverage.EXCHANGE_RATIO,
            PORTFOLIO_LIMITS,
        )  # fmt: skip
    return ModeReading(
        AccountMode.UNKNOWN,
        "userAbstraction unknown",
        Coverage.REFUSED,
        f"hyperliquid: account {user} answered an abstraction alertd does not know "
        f"({str(answer)[:40]!r}); alertd reads the standard, unifiedAccount and "
        "portfolioMargin abstractions",
    )


def usdc_hip3_dexes(markets: Any) -> list[str]:
    """The HIP-3 dexes whose collateral is USDC (token 0), from ccxt's markets (its
    ``fetch_hip3_markets`` keeps each market's ``dex`` and ``collateralToken`` in ``info``)."""
    dexes = set()
    for market in (markets or {}).values():
        info = market.get("info") if isinstance(market, dict) else None
        if isinstance(info, dict) and info.get("dex") and str(info.get("collateralToken")) == "0":
            dexes.add(str(info["dex"]))
    return sorted(dexes)


def spot_usdc(spot: Any) -> Decimal:
    """The USDC ``total`` of a ``spotClearinghouseState`` (token 0; none held: 0)."""
    balances = spot.get("balances") if isinstance(spot, dict) else None
    if not isinstance(balances, list):
        raise FrameError("spotClearinghouseState: no balances")
    for row in balances:
        if isinstance(row, dict) and row.get("coin") == SETTLE and row.get("token", 0) == 0:
            return dec(row.get("total"), "total")
    return Decimal(0)


def unified_usdc_balance(spot: Any, states: Iterable[dict[str, Any]]) -> Decimal:
    """A unified account's cross pool balance: the spot USDC ``total`` less the isolated
    positions' equity (their ``marginUsed``, PnL included) on every USDC dex whose perpetuals
    state is in ``states``, as Hyperliquid's Unified Account Ratio counts it ("Trading /
    Account abstraction modes"). Less the dexes' ``crossMaintenanceMarginUsed`` it is
    Hyperliquid's own ``tokenToAvailableAfterMaintenance`` for USDC in a recorded answer
    (tests/test_hyperliquid_unified.py, an isolated short 35.16 at a loss)."""
    isolated = Decimal(0)
    for state in states:
        for entry in state.get("assetPositions") or []:
            raw = (entry or {}).get("position") or {}
            if dec(raw.get("szi", "0"), "szi") == 0:
                continue
            if (raw.get("leverage") or {}).get("type") == "isolated":
                isolated += dec(raw.get("marginUsed"), "marginUsed")
    return spot_usdc(spot) - isolated


def max_leverage_table(max_leverage: Decimal) -> TierTable:
    """One tier at the market's max leverage: ``mmr = 1 / (2 * max_leverage)`` (a margin
    table id under 50 is such a flat table, and ``meta`` does not list it)."""
    if max_leverage <= 0:
        raise FrameError(f"max leverage must be positive (got {max_leverage})")
    return TierTable.build([Tier(None, 1 / (2 * max_leverage), Decimal(0), max_leverage)])


def margin_table_to_tiers(table: Any) -> TierTable:
    """A table of ``meta``'s ``marginTables`` ("Trading / Margin tiers"): from each tier's
    ``lowerBound`` of notional on, at most ``maxLeverage``. The maintenance rate is half the
    initial rate at that leverage and ``MM = notional * rate - deduction``, with
    ``deduction(n) = deduction(n - 1) + lowerBound(n) * (rate(n) - rate(n - 1))``: the
    tax-bracket form, so each tier's cap is the next tier's lower bound. BTC (table 56):
    40x up to 150M USDC, 20x above."""
    rows = table.get("marginTiers") if isinstance(table, dict) else None
    if not isinstance(rows, list) or not rows:
        raise FrameError("marginTables: a table without marginTiers")
    tiers = sorted(
        (
            (dec(row.get("lowerBound"), "lowerBound"), dec(row.get("maxLeverage"), "maxLeverage"))
            for row in rows
            if isinstance(row, dict)
        ),
        key=lambda tier: tier[0],
    )
    if not tiers or any(leverage <= 0 for _, leverage in tiers):
        raise FrameError("marginTables: max leverage must be positive")
    caps: list[Decimal | None] = [lower for lower, _ in tiers[1:]] + [None]
    mmrs = [1 / (2 * leverage) for _, leverage in tiers]
    deductions = derive_deductions(caps, mmrs)
    return TierTable.build(
        [
            Tier(cap, mmr, deduction, leverage)
            for cap, mmr, deduction, (_, leverage) in zip(
                caps, mmrs, deductions, tiers, strict=True
            )
        ]
    )


def _listed(table_id: Any) -> bool:
    """Whether ``meta`` lists the table: ids under 50 are flat tables at that leverage."""
    try:
        return int(table_id) >= FLAT_TABLES_BELOW
    except (TypeError, ValueError):
        return False


# frontendOpenOrders ``orderType`` of trigger orders ("Info endpoint", "Retrieve a user's open
# orders with additional frontend info"): a Stop sell fires when the price falls to
# triggerPx, a Take Profit sell when it rises to it
_TRIGGER_KINDS = {
    "Stop Market": StopKind.STOP,
    "Stop Limit": StopKind.STOP,
    "Take Profit Market": StopKind.TAKE_PROFIT,
    "Take Profit Limit": StopKind.TAKE_PROFIT,
}


def trigger_stop(raw: dict[str, Any], symbol: str) -> StopOrder | None:
    """One of ``frontendOpenOrders`` as a stop; None for an order with no trigger.
    ``isPositionTpsl`` closes the whole position (its ``sz`` is 0); ``side`` "A" (ask) sells,
    reducing a long. Hyperliquid perpetuals are one-way."""
    if not raw.get("isTrigger"):
        return None
    kind = _TRIGGER_KINDS.get(str(raw.get("orderType")))
    if kind is None:
        raise FrameError(f"orderType: not a trigger order type: {raw.get('orderType')!r}")
    order_side = raw.get("side")
    if order_side not in ("A", "B"):
        raise FrameError(f"side: not A or B: {order_side!r}")
    sell = order_side == "A"
    falls = sell if kind is StopKind.STOP else not sell
    price = dec_or_none(raw.get("triggerPx"))
    if price is None:
        raise FrameError("triggerPx: missing or zero on a trigger order")
    whole = bool(raw.get("isPositionTpsl")) or dec_or_none(raw.get("sz")) is None
    return StopOrder(
        symbol,
        Side.LONG if sell else Side.SHORT,
        kind,
        Trigger.FALL if falls else Trigger.RISE,
        price,
        None if whole else dec(raw.get("sz"), "sz"),
        str(raw.get("oid", "")),
        bool(raw.get("reduceOnly")) or bool(raw.get("isPositionTpsl")),
    )


class HyperliquidAdapter(ExchangeAdapter):
    reported_account_mm_cross_only = True
    exchange_id = "hyperliquid"
    market_filter = MARKETS
    wallet_includes_isolated = False  # the wallet is built from the cross pool alone

    def __init__(self) -> None:
        # Every clearinghouseState push lists all open positions: a position missing from a
        # push has been closed. Remember what the last snapshot held to say so.
        self._held: set[tuple[str, Side]] = set()
        # the unified modes (as fetch_mode read them; None: standard): the account's USDC is
        # in the spot state, and ``_cash`` is the part of the cross pool's balance outside the
        # perpetuals state (its ``total`` less the positions' value), as last read over REST,
        # added to what each perpetuals push gives
        self._abstraction: str | None = None
        self._cash = Decimal(0)
        # a unified account's positions on USDC HIP-3 dexes (their perpetuals states, by dex):
        # they share the spot balance, and alertd reads the main dex's positions only
        self._hip3: dict[str, dict[str, Any]] = {}

    def _user(self, exchange: Any) -> str:
        address = getattr(exchange, "walletAddress", None)
        if not address:
            raise AccountRefused("hyperliquid: the account needs its wallet_address")
        if not _ADDRESS.fullmatch(str(address)):
            # Hyperliquid answers 422 "Failed to deserialize" to it, which ccxt raises as a
            # plain ExchangeError: retried forever unless refused here, as a bad key is
            raise AccountRefused(
                f"hyperliquid: wallet_address {str(address)[:60]!r} is not a wallet address "
                "(0x and 40 hex digits)"
            )
        return str(address)

    async def _state(self, exchange: Any) -> dict[str, Any]:
        state = await exchange.publicPostInfo(
            {"type": "clearinghouseState", "user": self._user(exchange)}
        )
        if not isinstance(state, dict) or "crossMarginSummary" not in state:
            raise FrameError("clearinghouseState: not a perpetuals account summary")
        return state

    def _symbol(self, exchange: Any, coin: Any) -> str:
        # ccxt maps a coin ("BTC", HIP-3 "xyz:TSLA") to its swap symbol ("BTC/USDC:USDC")
        return str(exchange.coin_to_market_id(str(coin)))

    async def fetch_mode(self, exchange: Any) -> ModeReading:
        user = self._user(exchange)
        mode = abstraction_mode(
            user, await exchange.publicPostInfo({"type": "userAbstraction", "user": user})
        )
        unified = mode.mode in (AccountMode.UNIFIED_ACCOUNT, AccountMode.PORTFOLIO)
        self._abstraction = mode.detail.removeprefix("userAbstraction ") if unified else None
        self._hip3 = {}
        if self._abstraction != UNIFIED:
            return mode  # portfolio margin's ratio is the whole account's already
        for dex in usdc_hip3_dexes(exchange.markets):
            state = await exchange.publicPostInfo(
                {"type": "clearinghouseState", "user": user, "dex": dex}
            )
            if not isinstance(state, dict) or "crossMarginSummary" not in state:
                raise FrameError(f"clearinghouseState of dex {dex}: not a perpetuals summary")
            if any(self._parse(exchange, state)):
                self._hip3[dex] = state
        if not self._hip3:
            return mode
        return dataclasses.replace(
            mode,
            coverage=Coverage.EXCHANGE_RATIO,
            limits=f"positions on the HIP-3 dex(es) {', '.join(sorted(self._hip3))} share the "
            "USDC balance and alertd reads the main dex's positions only: the margin ratio is "
            "Hyperliquid's Unified Account Ratio over every USDC dex (their "
            "crossMaintenanceMarginUsed over the spot USDC less their isolated margin), read "
            "at every reconcile and not moved with the marks in between; liquidation prices, "
            "crash distance and margin to add are not computed",
        )

    async def fetch_tiers(self, exchange: Any, symbols: list[str]) -> dict[str, TierTable]:
        """Each market's margin table: ccxt's market keeps the asset's ``marginTableId``; the
        tiered tables themselves are listed only in ``meta`` (read once, when a market names
        one). A table ``meta`` does not list (a flat one, id under 50) is one tier at the
        market's max leverage."""
        table_ids = {
            symbol: (exchange.market(symbol).get("info") or {}).get("marginTableId")
            for symbol in symbols
        }
        tables: dict[str, Any] = {}
        if any(_listed(table_id) for table_id in table_ids.values()):
            meta = await exchange.publicPostInfo({"type": "meta"})
            listed = meta.get("marginTables") if isinstance(meta, dict) else None
            for entry in listed or []:
                if isinstance(entry, list) and len(entry) == 2:
                    tables[str(entry[0])] = entry[1]
        out = {}
        for symbol in symbols:
            table = tables.get(str(table_ids[symbol]))
            if table is not None:
                out[symbol] = margin_table_to_tiers(table)
                continue
            market = exchange.market(symbol)
            limit = ((market.get("limits") or {}).get("leverage") or {}).get("max")
            if limit is None:
                limit = (market.get("info") or {}).get("maxLeverage")
            if limit is None:
                raise FrameError(f"{symbol}: the market gives no max leverage")
            out[symbol] = max_leverage_table(dec(limit, "maxLeverage"))
        return out

    def _parse(
        self, exchange: Any, state: dict[str, Any]
    ) -> list[tuple[PositionState, dict[str, Any]]]:
        out = []
        for entry in state.get("assetPositions") or []:
            raw = (entry or {}).get("position") or {}
            szi = dec(raw.get("szi", "0"), "szi")
            if szi == 0:
                continue
            leverage = raw.get("leverage") or {}
            isolated = leverage.get("type") == "isolated"
            entry_px = dec(raw.get("entryPx"), "entryPx")
            margin = None
            if isolated:
                raw_usd = dec_or_none(leverage.get("rawUsd"))
                if raw_usd is not None:
                    margin = raw_usd + szi * entry_px
                else:  # marginUsed is the isolated equity: take its PnL out
                    margin = dec(raw.get("marginUsed"), "marginUsed") - dec(
                        raw.get("unrealizedPnl"), "unrealizedPnl"
                    )
            p = PositionState(
                symbol=self._symbol(exchange, raw.get("coin")),
                side=Side.LONG if szi > 0 else Side.SHORT,
                contracts=abs(szi),
                entry_price=entry_px,
                margin_mode=MarginMode.ISOLATED if isolated else MarginMode.CROSS,
                isolated_margin=margin,
                leverage=dec_or_none(leverage.get("value")),
            )
            out.append((p, raw))
        return out

    def _wallet(self, state: dict[str, Any], parsed: list[tuple[PositionState, Any]]) -> Decimal:
        summary = state.get("crossMarginSummary") or {}
        wallet = dec(summary.get("totalRawUsd"), "totalRawUsd")
        for p, _ in parsed:
            if p.margin_mode is MarginMode.CROSS:
                wallet += int(p.side) * p.contracts * p.entry_price
        return wallet

    # the "orderUpdates" subscription; its orders carry no trigger fields, so any change of
    # the account's orders is read again (frontendOpenOrders)
    watches_stops = True

    def is_stop_event(self, raw: dict[str, Any]) -> bool:
        return True

    async def fetch_stops(self, exchange: Any, symbols: list[str]) -> list[StopOrder]:
        rows = await exchange.publicPostInfo(
            {"type": "frontendOpenOrders", "user": self._user(exchange)}
        )
        if not isinstance(rows, list):
            raise FrameError("frontendOpenOrders: not a list")
        return [
            stop
            for raw in rows
            if isinstance(raw, dict)
            and (stop := trigger_stop(raw, self._symbol(exchange, raw.get("coin")))) is not None
        ]

    async def fetch_positions(
        self, exchange: Any
    ) -> tuple[list[PositionState], dict[tuple[str, Any], ReportedPosition], dict[str, Decimal]]:
        parsed = self._parse(exchange, await self._state(exchange))
        positions, reported, marks = [], {}, {}
        for p, raw in parsed:
            positions.append(p)
            # Hyperliquid reports no per-position maintenance margin
            reported[(p.symbol, p.side)] = ReportedPosition(
                liquidation_price=dec_or_none(raw.get("liquidationPx"))
            )
            value = dec_or_none(raw.get("positionValue"))
            if value is not None:
                marks[p.symbol] = value / p.contracts  # positionValue is |szi| * mark
        self._held = {(p.symbol, p.side) for p in positions}
        return positions, reported, marks

    async def fetch_balance(self, exchange: Any) -> tuple[Decimal, ReportedAccount]:
        state = await self._state(exchange)
        parsed = self._parse(exchange, state)
        wallet = self._wallet(state, parsed)
        summary = state.get("crossMarginSummary") or {}
        mm = dec_or_none(state.get("crossMaintenanceMarginUsed"))
        if self._abstraction is None:
            self._cash = Decimal(0)
            value = dec_or_none(summary.get("accountValue"))
            ratio = mm / value if mm is not None and value else None
            return wallet, ReportedAccount(mm, value, ratio)
        cross_value = dec(summary.get("accountValue"), "accountValue")
        # the unified modes: the cross pool's balance is the spot USDC total less the isolated
        # positions' equity (their marginUsed), as Hyperliquid's Unified Account Ratio counts it
        spot = await exchange.publicPostInfo(
            {"type": "spotClearinghouseState", "user": self._user(exchange)}
        )
        for dex_state in self._hip3.values():  # their margin is in the same USDC balance
            mm = (mm or Decimal(0)) + dec(
                dex_state.get("crossMaintenanceMarginUsed"), "crossMaintenanceMarginUsed"
            )
        balance = unified_usdc_balance(spot, [state, *self._hip3.values()])
        self._cash = balance - cross_value
        wallet += self._cash
        if self._abstraction == PORTFOLIO:
            read = spot.get("portfolioMarginRatio") if isinstance(spot, dict) else None
            pm = None if read is None else dec(read, "portfolioMarginRatio")
            if pm is not None and pm < 0:
                raise FrameError(f"portfolioMarginRatio: negative: {pm}")
            return wallet, ReportedAccount(
                margin_ratio=None if pm is None else pm / PORTFOLIO_LIQUIDATION_RATIO
            )
        ratio = mm / balance if mm is not None and balance > 0 else None
        if self._hip3:  # the whole USDC pool's ratio: not moved by the main dex's marks alone
            return wallet, ReportedAccount(mm, None, ratio)
        return wallet, ReportedAccount(mm, balance, ratio)

    async def watch_positions(self, exchange: Any) -> list[PositionState]:
        changed = await exchange.watch_positions()
        current: list[PositionState] = []
        for position in changed:
            info = position.get("info") or {}
            state = {"assetPositions": [info]}
            current.extend(p for p, _ in self._parse(exchange, state))
        held = {(p.symbol, p.side) for p in current}
        closed = [
            PositionState(symbol, side, Decimal(0), Decimal(1), MarginMode.CROSS)
            for symbol, side in sorted(self._held - held, key=lambda k: (k[0], int(k[1])))
        ]
        self._held = held
        return current + closed

    async def watch_balance(self, exchange: Any) -> Decimal | None:
        balance = await exchange.watch_balance()
        state = balance.get("info")
        if not isinstance(state, dict) or "crossMarginSummary" not in state:
            # ccxt subscribed to the spot state (the account's options ask for
            # enableUnifiedMargin): its pushes carry no positions, alertd cannot follow them
            raise AccountRefused(
                "hyperliquid: the balance stream carries the spot clearinghouse state "
                "(options enableUnifiedMargin); alertd streams the perpetuals state and reads "
                "the spot state itself: leave enableUnifiedMargin out of the account's options"
            )
        # a unified account's perpetuals push holds no USDC: the spot part, as last read
        return self._cash + self._wallet(state, self._parse(exchange, state))

    async def fetch_mark(self, exchange: Any, symbol: str) -> Decimal:
        return ticker_mark(await exchange.fetch_ticker(symbol), "markPx")

    async def watch_mark(self, exchange: Any, symbol: str) -> Decimal:
        return ticker_mark(await exchange.watch_ticker(symbol), "markPx")


SPEC = ExchangeSpec(
    profile=PROFILE,
    adapter=HyperliquidAdapter,
    # "REST requests share an aggregated weight limit of 1200 per minute" per IP (Hyperliquid
    # docs, API, Rate limits and user limits)
    capabilities=Capabilities(
        tier_source=TierSource.MAX_LEVERAGE, private_streams=False, rest_limit_per_ip=True
    ),
    markets=MARKETS,
    # no credentials: the wallet address is enough, everything alertd reads is public
    wallet_address=True,
    # alertd checks the abstraction itself and reads the spot state over REST: ccxt's own
    # probe, one more request per watch_balance whose errors it takes for "standard", must not
    # move the balance stream to the spot state (whose pushes carry no positions)
    ccxt_options={"defaultType": "swap", "enableUnifiedMargin": False},
)
