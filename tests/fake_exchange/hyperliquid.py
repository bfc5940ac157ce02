"""A scriptable local Hyperliquid server (USDC perpetuals, read by wallet address).

ccxt's own ``ccxt.pro.hyperliquid`` runs against it unmodified: deep-merge ``fake.ccxt_urls()``
over ``exchange.urls['api']``. REST and the websocket share one aiohttp application on one
loopback port, as ``api.hyperliquid.xyz`` serves ``POST /info`` and ``/ws``.

Wire format, from Hyperliquid's API docs (hyperliquid.gitbook.io/hyperliquid-docs, "Info
endpoint", "Info endpoint / Perpetuals", "Info endpoint / Spot", "Websocket / Subscriptions",
"Websocket / Timeouts and heartbeats") and what ccxt sends (``ccxt/async_support/hyperliquid.py``,
``ccxt/pro/hyperliquid.py``); payload shapes follow the recorded answers in ccxt's
``ts/src/test/static/response/hyperliquid.json`` (fetchPositions: "fetch positions", "short
position", "isolated short position"; fetchBalance: "spot balance with correct currency
codes", "swap balance"):

- ``POST /info`` with a JSON body ``{"type": ...}``. Served types: ``meta``,
  ``metaAndAssetCtxs`` (ccxt's swap markets and tickers), ``spotMeta`` (ccxt's
  ``fetch_currencies``), ``spotMetaAndAssetCtxs`` (spot markets), ``perpDexs`` (HIP-3 dexes:
  none here, ``[null]``), ``allMids``, ``clearinghouseState`` and ``spotClearinghouseState``
  (by ``user``), ``userAbstraction`` (a bare JSON string: ``"default"``, ``"disabled"``,
  ``"unifiedAccount"``, ``"portfolioMargin"``). Nothing is signed: everything alertd reads is
  public. A body that does not deserialize (an unknown type, a ``user`` that is not ``0x`` and
  40 hex digits) is answered as Hyperliquid does: HTTP 422, plain text "Failed to deserialize
  the JSON body into the target type". A well-formed address the exchange has never seen gets
  an empty state, as on the real API.
- ``/ws``: ``{"method": "subscribe", "subscription": {...}}`` acknowledged with
  ``{"channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": ...}}``
  and followed by a snapshot; subscriptions ``activeAssetCtx`` (``coin``; ccxt's
  ``watch_ticker``), ``allMids`` (``watch_tickers``), ``clearinghouseState`` (``user``;
  ``watch_positions`` and ``watch_balance`` share it) and ``spotState`` (``user``; ccxt's
  ``watch_balance`` for unified accounts). ``{"method": "ping"}`` -> ``{"channel": "pong"}``.
  Errors are ``{"channel": "error", "data": "..."}`` ("Already subscribed: ...", "Error
  parsing JSON into valid websocket request: ...").

Accounts: ``add_account(address, ...)`` takes the wallet address where other exchanges take
an API key (the secret is ignored). Hyperliquid has no keys, so of the base's key scripting:
``ban`` answers HTTP 429 (Hyperliquid's rate limit is per IP and answers 429 with an empty
body) and ``revoke_key`` makes the address read as one the exchange has no state for (an
empty account), which is what the real API answers for any unknown address.
``set_abstraction`` scripts the account mode ("Trading / Account abstraction modes"): in
``unifiedAccount`` and ``portfolioMargin`` the USDC is one balance in the spot clearinghouse
state (``spotClearinghouseState``, ``spotState``) that backs the cross positions, and the
perpetuals state reports the positions with no USDC of its own (its raw USD is minus the
positions' entry value, so its account value is their PnL, and an isolated position's equity).
The spot USDC ``total`` is the whole balance: the scripted USDC plus the perpetuals state's
``marginSummary.accountValue`` (the positions' value; ccxt's ``fetch_balance`` gives it as the
account's USDC total, as the perpetuals account value in standard mode); ``hold`` the margin in
use. So the cross pool is ``total - isolated marginUsed`` against ``crossMaintenanceMarginUsed``,
Hyperliquid's documented "Unified Account Ratio", and ``liquidationPx`` is figured on it. In
``portfolioMargin`` the spot state also carries ``portfolioMarginEnabled`` and
``portfolioMarginRatio`` (liquidatable above 0.95, "Trading / Portfolio margin"): Hyperliquid
does not publish its requirement, so the ratio is scripted (``set_portfolio_margin_ratio``;
unscripted, the unified ratio stands in); the fake's positions keep the unified pool's
``liquidationPx``. That the spot ``total`` includes the positions' value is this fake's reading
of the docs (the only one under which the documented ratio measures liquidation risk); it is
not proven against a live unified account.

Figures are computed here from Hyperliquid's published rules ("Trading / Margining",
"Trading / Liquidations", "Trading / Margin tiers"), independently of alertd:
- ``positionValue = |szi| * mark``, ``unrealizedPnl = szi * (mark - entryPx)``; maintenance
  margin ``positionValue * mmr - deduction`` in the position's margin tier (``meta``'s
  ``marginTables``; ``mmr`` is ``1 / (2 * maxLeverage)`` of the tier, the deduction keeps it
  continuous across tiers; see ``_Market.maintenance``).
- Cross: ``marginUsed = positionValue / leverage``; the cross pool's ``totalRawUsd`` is USDC
  minus ``sum(szi * entryPx)``, ``accountValue = totalRawUsd + sum(szi * mark)``;
  ``crossMaintenanceMarginUsed`` the sum of the cross positions' maintenance margins.
- Isolated: ``rawUsd = margin - szi * entryPx``, ``marginUsed`` the position's equity
  (``margin + unrealizedPnl``).
- ``liquidationPx = mark - side * margin_available / |szi| / (1 - mmr * side)`` with
  ``margin_available`` the pool's value less its maintenance margin (``null`` when not
  positive), ``mmr`` the rate of the position's current tier.

Simplifications: no orders, fills, fees or funding (positions are scripted); one-way positions
only (Hyperliquid has no hedge mode); oracle, mid and impact prices follow the mark; marks are
rounded to Hyperliquid's price rule (5 significant figures, at most ``6 - szDecimals``
decimals); no HIP-3 dexes; frames are pushed when scripted, and by the ``mark_interval_s``
loop (``activeAssetCtx``, ``allMids`` and the user states, which Hyperliquid streams on).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar

from aiohttp import web

from tests.fake_exchange import base as shared
from tests.fake_exchange.base import FakeExchangeServer, Num, StopOrderSpec, now_ms, scripted
from tests.fake_exchange.base import to_decimal as _dec

__all__ = ["FakeHyperliquid"]

SETTLE = "USDC"
ABSTRACTIONS = ("default", "disabled", "unifiedAccount", "portfolioMargin", "dexAbstraction")
SPOT_COLLATERAL = ("unifiedAccount", "portfolioMargin")  # USDC is held in the spot state
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
DESERIALIZE = "Failed to deserialize the JSON body into the target type"

# (coin, mark, szDecimals, maxLeverage, marginTableId), as mainnet's ``meta`` lists them
_DEFAULT_MARKETS = (
    ("BTC", "65000", 5, 40, 56),
    ("ETH", "3500.0", 4, 25, 55),
    ("SOL", "150.00", 2, 20, 54),
)
# marginTables as ``meta`` gives them: one tier per plain table, BTC's tiered table
_MARGIN_TABLES: list[list[Any]] = [
    [50, {"description": "", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": 50}]}],
    [
        56,
        {
            "description": "tiered 40x",
            "marginTiers": [
                {"lowerBound": "0.0", "maxLeverage": 40},
                {"lowerBound": "150000000.0", "maxLeverage": 20},
            ],
        },
    ],
]
_TABLE_TIERS = {
    table_id: [(t["lowerBound"], t["maxLeverage"]) for t in body["marginTiers"]]
    for table_id, body in _MARGIN_TABLES
}
# spotMeta's tokens and the one canonical pair, as mainnet lists them
_TOKENS = [
    {
        "name": "USDC",
        "szDecimals": 8,
        "weiDecimals": 8,
        "index": 0,
        "tokenId": "0x6d1e7cde53ba9467b783cb7c530ce054",
        "isCanonical": True,
        "evmContract": None,
        "fullName": None,
    },
    {
        "name": "PURR",
        "szDecimals": 0,
        "weiDecimals": 5,
        "index": 1,
        "tokenId": "0xc1fb593aeffbeb02f85e0308e9956a90",
        "isCanonical": True,
        "evmContract": None,
        "fullName": None,
    },
]
_SPOT_UNIVERSE = [{"tokens": [1, 0], "name": "PURR/USDC", "index": 0, "isCanonical": True}]


# ---- numbers ---------------------------------------------------------------------------------


def _num(value: Decimal, places: int = 6) -> str:
    """Hyperliquid's number style: at most ``places`` decimals, always a decimal point
    ("0.0", "1100.0", "19762.483455")."""
    text = format(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP), "f")
    if "." in text:
        text = text.rstrip("0")
        text = text + "0" if text.endswith(".") else text
    else:
        text += ".0"
    return "0.0" if text == "-0.0" else text


def _px(value: Decimal) -> str:
    """A price as Hyperliquid prints it: no trailing zeros, integers without a point."""
    text = format(value.normalize(), "f")
    return text


# ---- markets and accounts --------------------------------------------------------------------


@dataclass
class _Market:
    coin: str
    mark: Decimal
    sz_decimals: int
    max_leverage: int
    margin_table: int

    @property
    def symbol(self) -> str:
        return f"{self.coin}/{SETTLE}:{SETTLE}"

    def maintenance(self, ntl: Decimal) -> tuple[Decimal, Decimal]:
        """(maintenance margin, maintenance rate) of a position of notional ``ntl``, from
        Hyperliquid's "Trading / Margin tiers": the tier is the last whose ``lowerBound`` the
        notional reaches, its rate half the initial rate at its max leverage, and
        ``MM = ntl * rate - deduction`` with ``deduction(0) = 0``, ``deduction(n) =
        deduction(n - 1) + lowerBound(n) * (rate(n) - rate(n - 1))``. A table id missing from
        ``meta.marginTables`` (ids under 50) is one tier at the asset's max leverage."""
        tiers = _TABLE_TIERS.get(self.margin_table, [("0", self.max_leverage)])
        rate = deduction = Decimal(0)
        for lower, leverage in tiers:
            if ntl < Decimal(lower) and rate:
                break
            tier_rate = 1 / (2 * Decimal(leverage))
            deduction += Decimal(lower) * (tier_rate - rate)
            rate = tier_rate
        return ntl * rate - deduction, rate

    def tick(self, price: Decimal | None = None) -> Decimal:
        """5 significant figures, at most ``6 - szDecimals`` decimals."""
        price = self.mark if price is None else price
        digits = len(str(int(price))) if price >= 1 else 0
        significant = Decimal(1).scaleb(digits - 5)
        return max(significant, Decimal(1).scaleb(-(6 - self.sz_decimals)))

    def round(self, price: Decimal) -> Decimal:
        return price.quantize(self.tick(price), rounding=ROUND_HALF_UP)


@dataclass
class _Position:
    coin: str
    szi: Decimal  # signed size
    entry: Decimal
    isolated: bool
    margin: Decimal  # isolated: the position's own margin; cross: 0
    leverage: Decimal


@dataclass
class _Account(shared.Credentials):
    usdc: Decimal
    abstraction: str = "default"
    positions: dict[str, _Position] = field(default_factory=dict)
    portfolio_margin_ratio: Decimal | None = None  # scripted; None: the unified ratio


class _Connection(shared.WsConnection):
    """A Hyperliquid websocket: its streams are ``type:coin-or-user`` keys."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        super().__init__(request, ws, "public")  # one endpoint; user streams need no login
        self.subscriptions: dict[str, dict[str, Any]] = {}  # stream key -> as subscribed


def _address(value: Any) -> str | None:
    if isinstance(value, str) and ADDRESS.fullmatch(value):
        return value.lower()
    return None


# ---- the server ------------------------------------------------------------------------------


class FakeHyperliquid(FakeExchangeServer[_Account, _Connection]):
    """Hyperliquid (USDC perpetuals, ``/info`` and ``/ws``) on ``127.0.0.1``, one port."""

    NAME: ClassVar[str] = "Hyperliquid (USDC perpetuals)"
    BAN_DURATION_S: ClassVar[float] = 60.0
    DEFAULT_LEVERAGE: ClassVar[int] = 20

    def __init__(self, *, mark_interval_s: float | None = None) -> None:
        super().__init__(mark_interval_s=mark_interval_s)
        self._markets: dict[str, _Market] = {}
        for coin, mark, sz, lev, table in _DEFAULT_MARKETS:
            self._add_market(coin, Decimal(mark), sz, lev, table)

    def _add_market(self, coin: str, mark: Decimal, sz: int, lev: int, table: int) -> None:
        market = _Market(coin, mark, sz, lev, table)
        market.mark = market.round(mark)
        self._markets[coin] = market

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ws", self._ws),
            web.post("/info", self._info),
            web.route("*", "/{tail:.*}", self._not_found),
        ]

    def _urls(self, http: str, ws: str) -> dict[str, Any]:
        return {"public": http, "private": http, "ws": {"public": f"{ws}/ws"}}

    # ---- markets -----------------------------------------------------------------------------

    def _market_id(self, symbol: str) -> str:
        """``BTC/USDC:USDC`` or ``BTC`` -> ``BTC`` (the coin)."""
        if "/" not in symbol:
            return symbol
        coin, rest = symbol.split("/", 1)
        if rest != f"{SETTLE}:{SETTLE}":
            raise ValueError(f"{symbol}: only USDC perpetuals (COIN/USDC:USDC)")
        return coin

    @scripted
    def add_symbol(
        self, symbol: str, mark: Num, *, max_leverage: int = 10, sz_decimals: int = 2
    ) -> None:
        """Add (or replace) a perpetual ``COIN/USDC:USDC`` (a plain margin table)."""
        coin = self._market_id(symbol)
        self._add_market(coin, shared.positive(mark, "mark"), sz_decimals, max_leverage, 50)

    def tick(self, symbol: str) -> Decimal:
        market: _Market = self._market(symbol)
        return market.tick()

    @scripted
    def set_mark(self, symbol: str, price: Num, *, push: bool = True) -> None:
        """Move the mark (oracle, mid and impact prices follow); subscribers get an
        ``activeAssetCtx`` push and holders of the coin a ``clearinghouseState`` push, as
        each block does on Hyperliquid (unless ``push=False``)."""
        market = self._market(symbol)
        market.mark = market.round(shared.positive(price, "price"))
        if not push:
            return
        frame = self._ctx_frame(market)
        for conn in self._subscribers(f"activeAssetCtx:{market.coin}"):
            conn.send(frame)
        for account in self._accounts.values():
            if market.coin in account.positions:
                self._push_state(account)

    def _ctx(self, market: _Market) -> dict[str, Any]:
        mark, tick = market.mark, market.tick()
        return {
            "funding": "0.0000125",
            "openInterest": "27965.09348",
            "prevDayPx": _px(mark),
            "dayNtlVlm": _num(mark * Decimal("31087.12345"), 6),
            "premium": "0.00031774",
            "oraclePx": _px(mark),
            "markPx": _px(mark),
            "midPx": _px(mark + tick / 2),
            "impactPxs": [_px(mark), _px(mark + tick)],
            "dayBaseVlm": "31087.12345",
        }

    def _ctx_frame(self, market: _Market) -> dict[str, Any]:
        return {
            "channel": "activeAssetCtx",
            "data": {"coin": market.coin, "ctx": self._ctx(market)},
        }

    def _mids(self) -> dict[str, str]:
        mids = {m.coin: _px(m.mark + m.tick() / 2) for m in self._markets.values()}
        mids["PURR/USDC"] = "0.20129"
        return mids

    def _push_periodic_marks(self) -> None:
        for conn in list(self._connections):
            for key in sorted(conn.streams):
                kind, _, coin = key.partition(":")
                if kind == "activeAssetCtx" and coin in self._markets:
                    conn.send(self._ctx_frame(self._markets[coin]))
                elif kind == "allMids":
                    conn.send({"channel": "allMids", "data": {"mids": self._mids()}})
                elif kind in ("clearinghouseState", "spotState") and not conn.muted:
                    self._snapshot(conn, key)  # user states stream on, changed or not

    # ---- accounts and positions --------------------------------------------------------------

    @scripted
    def add_account(self, api_key: str, secret: str = "", wallet_balance: Num = "1000") -> None:
        """An account by its wallet address (``api_key``); ``secret`` is unused (no keys)."""
        address = _address(api_key)
        if address is None:
            raise ValueError(f"not a wallet address (0x and 40 hex digits): {api_key!r}")
        self._accounts[address] = _Account(address, secret, _dec(wallet_balance, "wallet"))

    def _account(self, api_key: str) -> _Account:
        return super()._account(api_key.lower())

    @scripted
    def set_abstraction(self, address: str, abstraction: str) -> None:
        """The account's mode, as ``userAbstraction`` answers it; in ``unifiedAccount`` and
        ``portfolioMargin`` the USDC moves to the spot state (and pushes follow)."""
        if abstraction not in ABSTRACTIONS:
            raise ValueError(f"abstraction must be one of {ABSTRACTIONS}")
        account = self._account(address)
        account.abstraction = abstraction
        self._push_state(account)

    @scripted
    def set_portfolio_margin_ratio(self, address: str, ratio: Num | None) -> None:
        """The ``portfolioMarginRatio`` a portfolio-margin account's spot state reports (None:
        the unified account ratio stands in)."""
        account = self._account(address)
        account.portfolio_margin_ratio = None if ratio is None else _dec(ratio, "ratio")
        self._push_state(account)

    def _open_position(
        self, account: _Account, market: _Market, order: shared.PositionOrder, hedge: bool
    ) -> None:
        if hedge:
            raise ValueError("Hyperliquid has one-way positions only")
        szi = order.size if order.long else -order.size
        account.positions[market.coin] = _Position(
            market.coin, szi, order.entry, order.isolated, order.isolated_margin, order.leverage
        )
        self._push_state(account)

    @scripted
    def close_position(self, api_key: str, symbol: str, side: str | None = None) -> None:
        account = self._account(api_key)
        market = self._market(symbol)
        position = account.positions.get(market.coin)
        if position is not None and (side is None or shared.parse_side(side) == (position.szi > 0)):
            del account.positions[market.coin]
        self._push_state(account)

    @scripted
    def set_balance(self, api_key: str, wallet_balance: Num) -> None:
        """Set the account's USDC (perp or, for unified accounts, spot) and push its state."""
        account = self._account(api_key)
        account.usdc = _dec(wallet_balance, "wallet_balance")
        self._push_state(account)

    def _push_state(self, account: _Account) -> None:
        user = account.api_key
        for conn in self._subscribers(f"clearinghouseState:{user}"):
            if conn.muted:
                continue
            state = self._clearinghouse(account)
            conn.send({"channel": "clearinghouseState", "data": self._user_data(user, state)})
        for conn in self._subscribers(f"spotState:{user}"):
            if conn.muted:
                continue
            spot = {"spotState": self._spot(account)}
            conn.send({"channel": "spotState", "data": {"user": user, **spot}})

    @staticmethod
    def _user_data(user: str, state: dict[str, Any]) -> dict[str, Any]:
        return {"dex": "", "user": user, "clearinghouseState": state}

    # ---- figures -----------------------------------------------------------------------------

    def _clearinghouse(self, account: _Account | None) -> dict[str, Any]:
        """``clearinghouseState`` of an account (None: one the exchange has no state for)."""
        positions = sorted(account.positions.values(), key=lambda p: p.coin) if account else []
        usdc = account.usdc if account and account.abstraction not in SPOT_COLLATERAL else 0
        cross_raw, cross_value, cross_ntl, cross_used, cross_mm = (Decimal(usdc),) + (
            Decimal(0),
        ) * 4
        iso_raw = iso_value = iso_ntl = Decimal(0)
        for p in positions:
            market = self._markets[p.coin]
            ntl = abs(p.szi) * market.mark
            if p.isolated:
                iso_raw += p.margin - p.szi * p.entry
                iso_value += p.margin + p.szi * (market.mark - p.entry)
                iso_ntl += ntl
            else:
                cross_raw -= p.szi * p.entry
                cross_value += p.szi * market.mark
                cross_ntl += ntl
                cross_used += ntl / p.leverage
                cross_mm += market.maintenance(ntl)[0]
        cross_value += cross_raw
        # the cross pool: in the unified modes the spot USDC (scripted ``usdc``) backs it
        pool = cross_value + (
            account.usdc if account and account.abstraction in SPOT_COLLATERAL else 0
        )
        rows = [self._position_row(p, pool - cross_mm) for p in positions]

        def summary(value: Decimal, ntl: Decimal, raw: Decimal, used: Decimal) -> dict[str, str]:
            return {
                "accountValue": _num(value),
                "totalNtlPos": _num(ntl),
                "totalRawUsd": _num(raw),
                "totalMarginUsed": _num(used),
            }

        return {
            "marginSummary": summary(
                cross_value + iso_value, cross_ntl + iso_ntl, cross_raw + iso_raw,
                cross_used + iso_value,
            ),
            "crossMarginSummary": summary(cross_value, cross_ntl, cross_raw, cross_used),
            "crossMaintenanceMarginUsed": _num(cross_mm),
            "withdrawable": _num(max(cross_value - cross_used, Decimal(0))),
            "assetPositions": rows,
            "time": now_ms(),
        }  # fmt: skip

    def _position_row(self, p: _Position, cross_available: Decimal) -> dict[str, Any]:
        market = self._markets[p.coin]
        size, mark = abs(p.szi), market.mark
        ntl = size * mark
        upl = p.szi * (mark - p.entry)
        leverage: dict[str, Any] = {"type": "isolated" if p.isolated else "cross"}
        leverage["value"] = int(p.leverage)
        if p.isolated:
            leverage["rawUsd"] = _num(p.margin - p.szi * p.entry)
        mm, rate = market.maintenance(ntl)
        if p.isolated:
            used = p.margin + upl
            available = used - mm
        else:
            used = ntl / p.leverage
            available = cross_available
        side = 1 if p.szi > 0 else -1
        # exact while the tier holds: MM is linear in the price within a tier
        liq = mark - side * available / size / (1 - rate * side)
        return {
            "type": "oneWay",
            "position": {
                "coin": p.coin,
                "szi": _px(p.szi),
                "leverage": leverage,
                "entryPx": _px(p.entry),
                "positionValue": _num(ntl),
                "unrealizedPnl": _num(upl),
                "returnOnEquity": _num(upl / (size * p.entry / p.leverage), 10),
                "liquidationPx": _num(liq, 10) if liq > 0 else None,
                "marginUsed": _num(used),
                "maxLeverage": market.max_leverage,
                "cumFunding": {"allTime": "0.0", "sinceOpen": "0.0", "sinceChange": "0.0"},
            },
        }

    def _spot(self, account: _Account | None) -> dict[str, Any]:
        """``spotClearinghouseState``: a unified account's USDC (``total`` the scripted USDC
        plus the positions' value, ``hold`` the margin in use; see the module docstring),
        else the (empty) spot wallet."""
        if account is None or account.abstraction not in SPOT_COLLATERAL:
            return {"balances": []}
        state = self._clearinghouse(account)
        summary = state["marginSummary"]
        total = account.usdc + Decimal(summary["accountValue"])
        row = {"coin": SETTLE, "token": 0, "total": _num(total, 8)}
        row.update(hold=_num(Decimal(summary["totalMarginUsed"]), 8), entryNtl="0.0")
        spot: dict[str, Any] = {"balances": [row]}
        if account.abstraction == "portfolioMargin":
            ratio = account.portfolio_margin_ratio
            if ratio is None:
                isolated = sum(
                    (
                        Decimal(r["position"]["marginUsed"])
                        for r in state["assetPositions"]
                        if r["position"]["leverage"]["type"] == "isolated"
                    ),
                    Decimal(0),
                )
                pool = total - isolated
                mm = Decimal(state["crossMaintenanceMarginUsed"])
                ratio = mm / pool if pool > 0 else Decimal(1)
            spot.update(portfolioMarginEnabled=True, portfolioMarginRatio=_num(ratio, 8))
        return spot

    # ---- REST --------------------------------------------------------------------------------

    @staticmethod
    def _unprocessable(detail: str = "") -> web.Response:
        text = DESERIALIZE + (f": {detail}" if detail else "")
        return web.Response(status=422, text=text)

    def _error_response(self, status: int, retry_after_s: float | None) -> web.Response:
        """Scripted failures: 429 as Hyperliquid's rate limit (empty body), anything else a
        plain-text error page with that status."""
        headers = {"Retry-After": str(int(retry_after_s))} if retry_after_s is not None else None
        text = "" if status == 429 else f"{status} error"
        return web.Response(status=status, text=text, headers=headers)

    def _key_rejected(self, rejection: shared.KeyRejection) -> web.Response:
        return self._error_response(429, None)  # only bans are refused; see the docstring

    def _user(self, body: dict[str, Any]) -> _Account | None:
        """The account a request names (None: no state on the exchange); a malformed address
        is rejected as the exchange does (422); a banned one gets 429."""
        address = _address(body.get("user"))
        if address is None:
            raise shared.Reject(self._unprocessable("invalid user address"))
        checked = self._authorize(address)
        if isinstance(checked, shared.KeyRejection):
            if checked.problem is shared.KeyProblem.BANNED:
                raise shared.Reject(self._key_rejected(checked))
            return None
        return checked

    async def _not_found(self, request: web.Request) -> web.Response:
        if request.path == "/info":
            return web.Response(status=405, text="Method Not Allowed")
        return web.Response(status=404, text="")

    def _l2_book(self, coin: Any) -> Any:
        # info "l2Book": {"coin", "time", "levels": [bids, asks]}, up to 20 levels a side,
        # each {"px", "sz" (coin), "n" (orders)} (hyperliquid.gitbook.io, info endpoint,
        # "L2 book snapshot"); an unknown coin answers null
        if not isinstance(coin, str) or coin not in self._markets:
            return None
        bids, asks = self.order_book(coin, 20)
        return {
            "coin": coin,
            "time": shared.now_ms(),
            "levels": [[{"px": p, "sz": s, "n": 1} for p, s in side] for side in (bids, asks)],
        }

    async def _info(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except ValueError:
            return self._unprocessable("expected value")
        if not isinstance(body, dict):
            return self._unprocessable("invalid type")
        kind = body.get("type")
        public: dict[str, Callable[[], Any]] = {
            "meta": self._meta,
            "metaAndAssetCtxs": lambda: [self._meta(), self._ctxs()],
            "spotMeta": self._spot_meta,
            "spotMetaAndAssetCtxs": lambda: [self._spot_meta(), self._spot_ctxs()],
            "perpDexs": lambda: [None],
            "allMids": self._mids,
            "candleSnapshot": lambda: self._candles(body.get("req")),
            "l2Book": lambda: self._l2_book(body.get("coin")),
        }
        by_user: dict[str, Callable[[_Account | None], Any]] = {
            "clearinghouseState": self._clearinghouse,
            "spotClearinghouseState": self._spot,
            "userAbstraction": lambda a: a.abstraction if a is not None else "default",
            "frontendOpenOrders": self._frontend_open_orders,
        }
        if kind in public:
            if body.get("dex"):  # no HIP-3 dexes are served
                return self._unprocessable("unknown dex")
            return shared.json_response(public[kind]())
        if kind in by_user:
            if kind == "clearinghouseState" and body.get("dex"):
                return self._unprocessable("unknown dex")
            return shared.json_response(by_user[kind](self._user(body)))
        return self._unprocessable(f"unknown variant `{kind}`")

    @staticmethod
    def _basic_order(stop: StopOrderSpec) -> dict[str, Any]:
        """A trigger order's basic fields (WsBasicOrder; frontendOpenOrders adds to them)."""
        size = "0.0" if stop.contracts is None else str(stop.contracts)
        return {
            "coin": stop.market.coin,
            "side": "A" if stop.sell else "B",
            "limitPx": str(stop.trigger),
            "sz": size,
            "oid": int(stop.order_id),
            "timestamp": stop.created_ms,
            "origSz": size,
        }

    def _push_stop(self, api_key: str, stop: StopOrderSpec, event: str) -> None:
        """The ``orderUpdates`` subscription (websocket, "Subscriptions": WsOrder): the basic
        order (no trigger fields: Hyperliquid's push does not say it is a trigger order),
        "open" when placed, "canceled" when cancelled."""
        update = {
            "order": self._basic_order(stop),
            "status": "open" if event == "new" else "canceled",
            "statusTimestamp": now_ms(),
        }
        key = f"orderUpdates:{api_key.lower()}"
        for conn in list(self._connections):
            if key in conn.streams and not conn.muted:
                conn.send({"channel": "orderUpdates", "data": [update]})

    def _frontend_open_orders(self, account: _Account | None) -> list[Any]:
        """Open trigger orders as "frontendOpenOrders" lists them (info endpoint): a position
        TP/SL (``isPositionTpsl``, sz "0.0") or a reduce-only trigger order of a size; side
        "A" sells."""
        if account is None:
            return []
        return [
            {
                **self._basic_order(stop),
                "triggerCondition": f"Price {'below' if stop.falls else 'above'} {stop.trigger}",
                "isTrigger": True,
                "triggerPx": str(stop.trigger),
                "children": [],
                "isPositionTpsl": stop.contracts is None,
                "reduceOnly": True,
                "orderType": "Stop Market" if stop.kind == "stop" else "Take Profit Market",
                "tif": None,
                "cloid": None,
            }
            for stop in reversed(self.stops(account.api_key))
        ]

    def _candles(self, req: Any) -> list[dict[str, Any]]:
        # "candleSnapshot": req {coin, interval, startTime, endTime} -> oldest first
        # {t, T, s, i, o, c, h, l, v, n} (hyperliquid-docs, info endpoint, perpetuals). Hyperliquid
        # has no mark-price candles: alertd seeds from these, the candles it serves; the fake
        # serves the scripted mark candles in their place.
        intervals = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240}
        if not isinstance(req, dict) or req.get("interval") not in intervals:
            return []
        coin = str(req.get("coin", ""))
        step = intervals[req["interval"]] * 60_000
        rows = self.mark_candles(
            coin, step, int(req.get("startTime") or 0), int(req.get("endTime") or 2**62), 5000
        )
        return [
            {"t": t, "T": t + step - 1, "s": coin, "i": req["interval"], "o": o, "c": c,
             "h": h, "l": low, "v": "0.0", "n": 0}
            for t, o, h, low, c in rows
        ]  # fmt: skip

    def _meta(self) -> dict[str, Any]:
        universe = [
            {
                "szDecimals": m.sz_decimals,
                "name": m.coin,
                "maxLeverage": m.max_leverage,
                "marginTableId": m.margin_table,
            }
            for m in self._markets.values()
        ]
        return {"universe": universe, "marginTables": _MARGIN_TABLES}

    def _ctxs(self) -> list[dict[str, Any]]:
        return [self._ctx(m) for m in self._markets.values()]

    @staticmethod
    def _spot_meta() -> dict[str, Any]:
        return {"universe": _SPOT_UNIVERSE, "tokens": _TOKENS}

    @staticmethod
    def _spot_ctxs() -> list[dict[str, Any]]:
        return [
            {
                "prevDayPx": "0.20432",
                "dayNtlVlm": "1414649.2434",
                "markPx": "0.20129",
                "midPx": "0.2013",
                "circulatingSupply": "598997046.6",
                "coin": "PURR/USDC",
                "totalSupply": "598997046.6",
                "dayBaseVlm": "6960113.0",
            }
        ]

    # ---- websocket ---------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_ws(request, _Connection, self._on_text)

    @staticmethod
    def _ws_error(conn: _Connection, text: str) -> None:
        conn.send({"channel": "error", "data": text})

    def _on_text(self, conn: _Connection, text: str) -> None:
        msg = shared.json_object(text) or {}
        method = msg.get("method")
        if method == "ping":
            if self.answers_pings:
                conn.send({"channel": "pong"})
            return
        subscription = msg.get("subscription")
        key = self._stream_key(subscription) if method in ("subscribe", "unsubscribe") else None
        if key is None:
            self._ws_error(conn, f"Error parsing JSON into valid websocket request: {text}")
            return
        assert isinstance(subscription, dict)
        shown = shared.compact(subscription)
        if method == "subscribe":
            if key in conn.streams:
                self._ws_error(conn, f"Already subscribed: {shown}")
                return
            conn.streams.add(key)
            conn.subscriptions[key] = subscription
        elif key not in conn.streams:
            self._ws_error(conn, f"Already unsubscribed: {shown}")
            return
        else:
            conn.streams.discard(key)
            conn.subscriptions.pop(key, None)
        ack = {"method": method, "subscription": subscription}
        conn.send({"channel": "subscriptionResponse", "data": ack})
        if method == "subscribe":
            self._snapshot(conn, key)

    def _stream_key(self, subscription: Any) -> str | None:
        """``type:coin`` / ``type:user`` of a valid subscription, else None."""
        if not isinstance(subscription, dict):
            return None
        kind = subscription.get("type")
        if kind == "allMids":
            return "allMids"
        if kind == "activeAssetCtx":
            coin = subscription.get("coin")
            return f"activeAssetCtx:{coin}" if isinstance(coin, str) else None
        if kind in ("clearinghouseState", "spotState", "webData2", "orderUpdates"):
            user = _address(subscription.get("user"))
            return f"{kind}:{user}" if user is not None else None
        return None

    def _snapshot(self, conn: _Connection, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "allMids":
            conn.send({"channel": "allMids", "data": {"mids": self._mids()}})
        elif kind == "activeAssetCtx":
            market = self._markets.get(name)
            if market is not None:
                conn.send(self._ctx_frame(market))
        elif kind == "clearinghouseState":
            state = self._clearinghouse(self._accounts.get(name))
            conn.send({"channel": "clearinghouseState", "data": self._user_data(name, state)})
        elif kind == "spotState":
            spot = {"spotState": self._spot(self._accounts.get(name))}
            conn.send({"channel": "spotState", "data": {"user": name, **spot}})

    # ---- failure injection --------------------------------------------------------------------

    MALFORMED_JSON = '{"channel":"activeAssetCtx","data":{"coin":"BT'

    def _garbled_frame(self, key: str) -> dict[str, Any] | None:
        """An ``activeAssetCtx`` with ``markPx "abc"``; a ``clearinghouseState`` whose
        position has ``szi "abc"``."""
        stream, _, name = key.partition(":")
        if stream == "activeAssetCtx":
            ctx = {"markPx": "abc", "oraclePx": "abc", "midPx": "abc", "prevDayPx": "abc"}
            return {"channel": stream, "data": {"coin": name, "ctx": ctx}}
        if stream == "clearinghouseState":
            row: dict[str, Any] = {"coin": "BTC", "szi": "abc", "entryPx": "abc"}
            row.update(leverage={"type": "cross", "value": "abc"}, unrealizedPnl="abc")
            state: dict[str, Any] = {"assetPositions": [{"type": "oneWay", "position": row}]}
            state["crossMarginSummary"] = {"accountValue": "abc", "totalRawUsd": "abc"}
            return {"channel": stream, "data": self._user_data(name, state)}
        return None


# ---- command line ------------------------------------------------------------------------------


def address_of(i: int) -> str:
    """The wallet address of the command line's account ``i``."""
    return "0x" + format(i + 1, "040x")


def _seed_accounts(fake: FakeHyperliquid, count: int) -> None:
    for i in range(count):
        address = address_of(i)
        fake.add_account(address, "", wallet_balance=str(5000 + 1000 * i))
        btc, eth = fake.mark("BTC"), fake.mark("ETH")
        fake.open_position(address, "BTC", "long", f"{0.01 * (i + 1):.3f}", btc * Decimal("0.99"))
        fake.open_position(address, "ETH", "short", f"{0.5 + 0.1 * i:.2f}", eth * Decimal("1.01"))


def main(argv: list[str] | None = None) -> int:
    return shared.serve_main(FakeHyperliquid, _seed_accounts, argv, max_step=0.0005)


if __name__ == "__main__":
    sys.exit(main())
