"""A scriptable local OKX v5 server (single- and multi-currency margin, USDT-margined
perpetual swaps and a USDT expiry future).

ccxt's own ``ccxt.pro.okx`` runs against it unmodified: deep-merge ``fake.ccxt_urls()`` over
``exchange.urls['api']`` and pass ``fake.ccxt_options``. Wire formats follow the OKX v5 API
docs (okx.com/docs-v5/en: "Get instruments", "Get position tiers", "Get mark price", "Get
positions", "Get balance", "Get currencies", websocket "Login", "Subscribe", "Mark price
channel", "Positions channel", "Account channel", "Liquidation warning channel") and the
payload examples there (not yet checked field by field against ccxt's recorded responses,
``ts/src/test/static/response/okx.json``; the tier rows are illustrative values).

What it serves (paths as on www.okx.com / ws.okx.com):
- REST public: ``/api/v5/public/instruments`` (SWAP; other types answer an empty list),
  ``/api/v5/public/position-tiers``, ``/api/v5/public/mark-price``, ``/api/v5/public/time``.
- REST signed (``OK-ACCESS-KEY``, ``OK-ACCESS-SIGN`` = base64 HMAC-SHA256 of ``timestamp +
  method + requestPath + body``, ``OK-ACCESS-TIMESTAMP`` ISO 8601, ``OK-ACCESS-PASSPHRASE``):
  ``/api/v5/account/positions``, ``/api/v5/account/balance``, ``/api/v5/asset/currencies``
  (ccxt's ``fetch_currencies`` inside ``load_markets``). Errors: HTTP 401 ``50111`` invalid
  key, ``50105`` wrong passphrase, ``50113`` invalid sign; 429 ``50011`` (rate limit and bans).
- Websocket ``/ws/v5/public`` (``mark-price``) and ``/ws/v5/private`` (``login`` with
  ``sign`` = base64 HMAC of ``timestamp + "GET/users/self/verify"``, then ``positions``,
  ``account`` and ``liquidation-warning``); text ``ping`` answered by ``pong``.

Figures, independently of alertd: ``notional = |pos| * ctVal * mark``; a position's ``mmr`` is
``notional * tier mmr`` (tier by ``|pos|`` against ``maxSz``); ``mgnRatio`` of the USDT cross
pool is ``crossEq / (cross mmr + notional * 0.05%)``; liquidation prices solve equity = MM for
one position (isolated: its own margin; cross: the cross equity, other marks held).
Multi-currency margin (``acctLv`` 3, help centre "Multi-currency margin mode: cross margin
trading"): each currency's equity at its USD price (``eqUsd``) times its discount rate, tiered
by the amount held in the currency ("Get discount rate and interest-free quota": ``minAmt``,
``maxAmt`` in the currency; served at ``/api/v5/public/discount-rate-interest-free-quota``),
summed over the currencies to ``adjEq``; a negative equity (cash less accrued interest, help
centre: "Equity (cross) = Balance + Floating PnL (cross) + Options value - Accrued interest")
is a liability, counted in full. ``mmr`` is the positions' MM plus the liabilities' borrowing
MM in USD (USDT at ``set_usdt_usd``): the amount owed times its USD price times the rate of
the currency's borrowing tier holding that amount ("Get position tiers" instType MARGIN with
``ccy``: ``maxSz`` the amount borrowed in the currency, step tiers as the positions'), the
settle currency's too. ``mgnRatio`` is ``adjEq / (mmr + notional * 0.05%)`` (in the recorded
answer cited in alertd/exchanges/okx.py the account's mgnRatio sits below adjEq / mmr: the
fee is not in ``mmr``; no fee is added on a liability). A currency scripted to follow a market
(``set_currency(..., follows=BTC)``) keeps its price to that market's mark ratio as the mark
moves. A liquidation price solves adjEq = mmr + fee in the position's mark, the currency that
follows it moving too (searched where a USDT liability bends the line).
Simplifications: no orders, fees or funding; marks are pushed only when scripted or by the
``mark_interval_s`` loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from aiohttp import web

from tests.fake_exchange import base as shared
from tests.fake_exchange.base import FakeExchangeServer, Num, StopOrderSpec, now_ms, scripted
from tests.fake_exchange.base import to_decimal as _dec

__all__ = ["FakeOKX"]

SETTLE = "USDT"
LIQ_FEE = Decimal("0.0005")  # OKX adds the taker fee to the MM in mgnRatio
PRIVATE_CHANNELS = frozenset({"positions", "account", "liquidation-warning", "orders"})
# private channels on the business connection (/ws/v5/business, after login): algo orders
BUSINESS_CHANNELS = frozenset({"orders-algo", "algo-advance"})
UID = "448097284125409280"  # the uid in OKX's websocket doc examples

# (instId, mark, tickSz, ctVal, position tiers as (maxSz, mmr, imr, maxLever)); the tier rows
# as in the docs' "Get position tiers" example for BTC-USDT (SWAP, cross); an instId with an
# expiry date is a USDT expiry future (instType FUTURES, its own tiers)
FUTURE = "BTC-USDT-261225"
FUTURE_EXPIRY_MS = 1798185600000  # 2026-12-25 08:00 UTC, OKX's delivery time
_MARKETS = (
    (
        "BTC-USDT-SWAP",
        "60000",
        "0.1",
        "0.01",
        (
            ("10000", "0.004", "0.008", "125"),
            ("20000", "0.005", "0.01", "100"),
            ("30000", "0.01", "0.02", "50"),
        ),
    ),
    (
        "ETH-USDT-SWAP",
        "3000",
        "0.01",
        "0.1",
        (("10000", "0.004", "0.008", "100"), ("50000", "0.01", "0.02", "50")),
    ),
    (
        FUTURE,
        "60300",
        "0.1",
        "0.01",
        (("5000", "0.005", "0.01", "100"), ("20000", "0.008", "0.016", "50")),
    ),
)
# "Get discount rate and interest-free quota" tiers (minAmt, maxAmt or "", discountRate): BTC's
# first two as in the docs' response example, USDT and USDC illustrative
DISCOUNTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "BTC": (("0", "20", "0.98"), ("20", "25", "0.9775"), ("25", "", "0.95")),
    "USDT": (("0", "5000000", "1"), ("5000000", "", "0.95")),
    "USDC": (("0", "5000000", "0.98"), ("5000000", "", "0.9")),
}
# "Get position tiers" (instType MARGIN, tdMode cross, ccy) in multi-currency margin: the
# borrowing tiers, (maxSz in the currency, mmr, imr, maxLever); illustrative rates in the shape
# of the docs' example (tier 1 mmr 0.03, imr 0.1, maxLever 10)
BORROWING: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "BTC": (("5", "0.03", "0.1", "10"), ("20", "0.05", "0.2", "5"), ("100", "0.1", "0.5", "2")),
    "USDC": (("200000", "0.03", "0.1", "10"), ("1000000", "0.06", "0.2", "5")),
    "USDT": (("200000", "0.03", "0.1", "10"), ("1000000", "0.06", "0.2", "5")),
    "ETH": (("100", "0.03", "0.1", "10"), ("500", "0.05", "0.2", "5")),
}


# "Get position tiers" of a market added without tiers (``add_symbol``, ``list_markets``): a
# mid-cap's steps as (notional cap in USDT, mmr, imr, maxLever), turned into contracts at the
# listing mark (OKX's maxSz counts contracts); illustrative rates in the shape of the docs'
# example (mmr rising with the tier, maxLever falling)
_GENERIC_TIERS = (
    (Decimal(50_000), "0.01", "0.02", "50"),
    (Decimal(200_000), "0.015", "0.03", "33"),
    (Decimal(1_000_000), "0.025", "0.05", "20"),
    (Decimal(5_000_000), "0.05", "0.1", "10"),
)


def _generic_contract(mark: Decimal) -> tuple[Decimal, Decimal]:
    """(ctVal, tickSz) of a USDT swap listed at ``mark``, as OKX sizes its listings: one
    contract worth 100-1,000 USDT (ctVal 0.01 BTC at 60,000, 0.1 ETH at 3,000, 1 SOL at 150,
    100 XRP at 2.5, 1,000 DOGE at 0.15) and prices to five significant digits (tickSz 0.01
    SOL, 0.0001 XRP, 0.00001 DOGE): "Get instruments" (okx.com/docs-v5/en/
    #public-data-rest-api-get-instruments) answers of those swaps."""
    magnitude = mark.adjusted()  # floor(log10(mark))
    ct_val = Decimal(1).scaleb((Decimal(1000) / mark).adjusted())
    return ct_val, Decimal(1).scaleb(magnitude - 4)


def _s(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


@dataclass
class _Market:
    symbol: str
    id: str
    base: str
    mark: Decimal
    tick: Decimal
    ct_val: Decimal
    tiers: tuple[tuple[str, str, str, str], ...]
    inst_type: str = "SWAP"

    def mmr_rate(self, contracts: Decimal) -> Decimal:
        for max_sz, mmr, _imr, _lever in self.tiers:
            if contracts <= Decimal(max_sz):
                return Decimal(mmr)
        return Decimal(self.tiers[-1][1])


@dataclass
class _Position:
    market: _Market
    pos_side: str  # net, long, short
    pos: Decimal  # signed in net mode
    entry: Decimal
    isolated: bool
    margin: Decimal
    leverage: Decimal
    pos_id: str
    c_time: int
    # "uTime": "Latest time position was adjusted" (ms; www.okx.com/docs-v5/en/#trading-account-
    # rest-api-get-positions, the positions channel alike): the fill's, not the answer's
    u_time: int = 0

    @property
    def sign(self) -> int:
        if self.pos_side == "net":
            return 1 if self.pos > 0 else -1
        return 1 if self.pos_side == "long" else -1

    def upl(self) -> Decimal:
        return abs(self.pos) * self.market.ct_val * (self.market.mark - self.entry) * self.sign

    def notional(self) -> Decimal:
        return abs(self.pos) * self.market.ct_val * self.market.mark

    def mm(self) -> Decimal:
        return self.notional() * self.market.mmr_rate(abs(self.pos))


@dataclass
class _Account(shared.Credentials):
    passphrase: str
    wallet: Decimal
    positions: dict[tuple[str, str], _Position] = field(default_factory=dict)
    # "Get account configuration" acctLv: 2 single-currency, 3 multi-currency, 4 portfolio;
    # in 3 and 4 the balance reports the USD pool: adjEq is the other currencies' discounted
    # USD value (``other_adj_eq``) plus the USDT equity
    acct_lv: str = "2"
    # multi-currency margin: the other currencies' cash (negative: a liability) and the
    # interest accrued on what is owed (the equity is the cash less it)
    coins: dict[str, Decimal] = field(default_factory=dict)
    interest: dict[str, Decimal] = field(default_factory=dict)
    # the account's taker fee rate (its fee level): OKX's liquidation fee in mgnRatio
    taker_fee: Decimal = LIQ_FEE
    # a rule of the exchange alertd does not know (``set_reported_mm_factor``)
    reported_mm_factor: Decimal = Decimal(1)


class _Connection(shared.WsConnection):
    """An OKX websocket; OKX names each connection in its replies (``connId``)."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, kind: str) -> None:
        super().__init__(request, ws, kind)
        self.conn_id = shared.random_id("0123456789abcdef", 8)


class FakeOKX(FakeExchangeServer[_Account, _Connection]):
    """OKX v5 (single-currency margin, USDT swaps) on ``127.0.0.1``: REST and websockets."""

    NAME: ClassVar[str] = "OKX v5 (USDT swaps)"
    BAN_DURATION_S: ClassVar[float] = 300.0
    PASSPHRASE: ClassVar[str] = "fake-passphrase"  # every account's unless add_account says
    CCXT_OPTIONS: ClassVar[dict[str, Any]] = {"defaultType": "swap"}
    # "Connection limit: 3 requests per second (based on IP)" (www.okx.com/docs-v5/en/
    # #overview-websocket-connect)
    WS_OPENINGS_PER_IP: ClassVar[tuple[int, float] | None] = (3, 1.0)
    # a trailing stop: a move_order_stop algo order, its trigger where it stands now
    STOP_KINDS: ClassVar[tuple[str, ...]] = ("stop", "take_profit", "trailing")

    def __init__(self, *, mark_interval_s: float | None = None) -> None:
        super().__init__(mark_interval_s=mark_interval_s)
        # private channels that push nothing on any connection, those opened later too: a
        # subscription the exchange accepts at each login yet never serves (a failure that
        # outlives a reopen, unlike ``mute_pushes``)
        self.dead_channels: frozenset[str] = frozenset()
        # an account's positions answer behind by a symbol, once (``lag_positions``)
        self._positions_behind: dict[str, str] = {}
        self._markets: dict[str, _Market] = {}
        self._next_id = 1_000_000_000_000_000_000
        for inst_id, mark, tick, ct_val, tiers in _MARKETS:
            base, _quote, kind = inst_id.split("-")
            future = kind != "SWAP"
            self._markets[inst_id] = _Market(
                f"{base}/USDT:USDT-{kind}" if future else f"{base}/USDT:USDT",
                inst_id,
                base,
                Decimal(mark),
                Decimal(tick),
                Decimal(ct_val),
                tiers,
                "FUTURES" if future else "SWAP",
            )
        # multi-currency margin: each currency's USD price, and the market whose mark it
        # follows (its price over that mark kept as the mark moves)
        self._usd: dict[str, tuple[Decimal, str | None]] = {SETTLE: (Decimal(1), None)}
        self._discounts = {ccy: tuple(rows) for ccy, rows in DISCOUNTS.items()}
        # currencies whose borrowing tiers "Get position tiers" leaves out (OKX still
        # requires their borrowing MM)
        self._unlisted_borrowing: set[str] = set()
        # API keys whose next websocket login arrives past OKX's 30 s (:meth:`late_login`),
        # and every login's key, connection (private, business) and whether it was accepted
        self._late_logins: set[str] = set()
        self.logins: list[tuple[str, str, bool]] = []

    def late_login(self, api_key: str) -> None:
        """The key's next websocket login arrives more than 30 s after its timestamp (a
        starved client): refused as any expired one, "60006 Timestamp request expired"."""
        self._late_logins.add(api_key)

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ws/v5/public", self._ws("public")),
            web.get("/ws/v5/private", self._ws("private")),
            web.get("/ws/v5/business", self._ws("business")),
            web.route("*", "/{tail:.*}", self._rest),
        ]

    def _urls(self, http: str, ws: str) -> dict[str, Any]:
        return {"rest": http, "ws": f"{ws}/ws/v5"}

    # ---- markets and scripting --------------------------------------------------------------

    def _market_id(self, symbol: str) -> str:
        if symbol in self._markets:
            return symbol
        swap = f"{symbol.split('/')[0]}-USDT-SWAP"
        if swap in self._markets and self._markets[swap].symbol == symbol:
            return swap  # without a walk through hundreds of listed markets
        for market in self._markets.values():
            if market.symbol == symbol:
                return market.id
        base = symbol.split("/")[0]
        return f"{base}-USDT-SWAP"

    @scripted
    def add_symbol(
        self,
        symbol: str,
        mark: Num,
        tiers: tuple[tuple[str, str, str, str], ...] | None = None,
        *,
        tick_size: Num | None = None,
        ct_val: Num | None = None,
    ) -> None:
        """Add (or replace) a USDT perpetual swap ``BASE/USDT:USDT`` (``BASE-USDT-SWAP``).
        ``tiers`` as (maxSz in contracts, mmr, imr, maxLever); without them a mid-cap's
        (``_GENERIC_TIERS``); ``tick_size`` and ``ct_val`` default to what OKX lists at that
        price (``_generic_contract``)."""
        base, _slash, tail = symbol.partition("/")
        if not base or tail not in ("USDT:USDT", "USDT"):
            raise ValueError(f"{symbol!r}: the local OKX lists USDT swaps 'BASE/USDT:USDT'")
        price = shared.positive(mark, "mark")
        generic_ct_val, generic_tick = _generic_contract(price)
        size = _dec(ct_val, "ct_val") if ct_val is not None else generic_ct_val
        tick = _dec(tick_size, "tick_size") if tick_size is not None else generic_tick
        if tiers is None:
            contract = size * price
            tiers = tuple(
                (_s((cap / contract).to_integral_value()), mmr, imr, lever)
                for cap, mmr, imr, lever in _GENERIC_TIERS
            )
        inst_id = f"{base}-USDT-SWAP"
        self._markets[inst_id] = _Market(
            f"{base}/USDT:USDT", inst_id, base, price.quantize(tick), tick, size, tiers
        )

    @scripted
    def set_mark(self, symbol: str, price: Num, *, push: bool = True) -> None:
        market = self._market(symbol)
        market.mark = shared.positive(price, "mark").quantize(market.tick)
        if push:
            self._push_mark(market)

    def _mark_frame(self, market: _Market) -> dict[str, Any]:
        row = {"instType": market.inst_type, "instId": market.id, "markPx": _s(market.mark)}
        row["ts"] = str(now_ms())
        return {"arg": {"channel": "mark-price", "instId": market.id}, "data": [row]}

    def _push_mark(self, market: _Market) -> None:
        for conn in self._subscribers(f"mark-price:{market.id}"):
            conn.send(self._mark_frame(market))

    def _push_periodic_marks(self) -> None:
        for market in self._markets.values():
            self._push_mark(market)

    @scripted
    def add_account(
        self, api_key: str, secret: str, wallet_balance: Num = "1000", *, passphrase: str = ""
    ) -> None:
        self._accounts[api_key] = _Account(
            api_key, secret, passphrase or self.PASSPHRASE, _dec(wallet_balance, "wallet")
        )

    def _contract_size(self, market: Any) -> Decimal:
        return Decimal(market.ct_val)  # positions count contracts of ctVal base units

    def _open_position(
        self, account: _Account, market: Any, order: shared.PositionOrder, hedge: bool
    ) -> None:
        side = ("long" if order.long else "short") if hedge else "net"
        pos = order.size if order.long or hedge else -order.size
        margin = order.isolated_margin
        if order.isolated and not margin:
            margin = order.size * market.ct_val * order.entry / order.leverage
        self._next_id += 1
        account.positions[(market.id, side)] = _Position(
            market,
            side,
            pos,
            order.entry,
            order.isolated,
            margin,
            order.leverage,
            str(self._next_id),
            made := now_ms(),
            made,
        )
        self._push_positions(account, [account.positions[(market.id, side)]])
        self._push_account(account)

    @scripted
    def close_position(self, api_key: str, symbol: str, side: str | None = None) -> None:
        account = self._account(api_key)
        market = self._market(symbol)
        closed = [
            p
            for key, p in account.positions.items()
            if key[0] == market.id and (side is None or p.pos_side in (side, "net"))
        ]
        for p in closed:
            del account.positions[(market.id, p.pos_side)]
            p.pos = Decimal(0)
            p.u_time = now_ms()
        self._push_positions(account, closed)
        self._push_account(account)

    @scripted
    def set_account_level(self, api_key: str, acct_lv: str) -> None:
        """Script the account mode (``acctLv``: 2 single-currency, 3 multi-currency, 4
        portfolio; in 3 and 4 the balance reports the USD pool over every currency)."""
        self._account(api_key).acct_lv = acct_lv
        self._push_account(self._account(api_key))

    @scripted
    def set_currency(
        self,
        api_key: str,
        ccy: str,
        amount: Num,
        usd_price: Num,
        *,
        follows: str | None = None,
        interest: Num = 0,
    ) -> None:
        """Give a multi-currency account ``amount`` of ``ccy`` (its cash; negative: a
        liability) priced at ``usd_price``, with ``interest`` accrued on it (owed too); with
        ``follows`` (a symbol) the price moves in proportion to that market's mark from here."""
        price = shared.positive(usd_price, "usd_price")
        market = self._market(follows) if follows is not None else None
        self._usd[ccy] = (price / market.mark if market else price, market.id if market else None)
        account = self._account(api_key)
        account.coins[ccy] = _dec(amount, "amount")
        account.interest[ccy] = _dec(interest, "interest")
        self._push_account(account)

    @scripted
    def set_usdt_usd(self, price: Num) -> None:
        """USDT's USD price (1 by default): OKX values the multi-currency pool in USD."""
        self._usd[SETTLE] = (shared.positive(price, "price"), None)

    @scripted
    def set_discount_tiers(self, ccy: str, tiers: list[tuple[str, str, str]]) -> None:
        """``ccy``'s discount tiers as (minAmt, maxAmt or "", discountRate)."""
        self._discounts[ccy] = tuple(tiers)

    @scripted
    def unlist_borrowing_tiers(self, ccy: str) -> None:
        """Leave ``ccy``'s borrowing tiers out of "Get position tiers" answers."""
        self._unlisted_borrowing.add(ccy)

    @scripted
    def set_fee_rate(self, api_key: str, taker: Num) -> None:
        """Script the account's taker fee rate (a fee level's), the liquidation fee OKX adds
        to the maintenance margin in mgnRatio and liqPx."""
        account = self._account(api_key)
        account.taker_fee = _dec(taker)
        self._push_account(account)

    def _trade_fee(self, account: _Account, params: dict[str, str]) -> list[Any]:
        """ "Get fee rates" (GET /api/v5/account/trade-fee) as the docs' response lists it:
        rates as OKX signs them (negative: charged), ``taker`` for coin-margined contracts,
        ``takerU`` for USDT-margined, ``takerUSDC`` for USDC-margined."""
        taker = _s(-account.taker_fee)
        return [
            {
                "category": "1",
                "delivery": "",
                "exercise": "",
                "instType": params.get("instType", "SWAP"),
                "level": "Lv1" if account.taker_fee == LIQ_FEE else "Lv5",
                "maker": "-0.0002",
                "taker": taker,
                "makerU": "-0.0002",
                "takerU": taker,
                "makerUSDC": "-0.0002",
                "takerUSDC": taker,
                "ruleType": "normal",
                "ts": str(now_ms()),
                "fiat": [],
            }
        ]

    def _config_row(self, account: _Account, _params: dict[str, str]) -> list[Any]:
        """ "Get account configuration", the row of ccxt's okx.fetch_accounts docstring."""
        return [
            {
                "acctLv": account.acct_lv,
                "acctStpMode": "cancel_maker",
                "autoLoan": False,
                "ctIsoMode": "automatic",
                "enableSpotBorrow": False,
                "greeksType": "PA",
                "ip": "",
                "kycLv": "3",
                "label": "alertd",
                "level": "Lv1",
                "levelTmp": "",
                "liquidationGear": "-1",
                "mainUid": account.api_key[:17],
                "mgnIsoMode": "automatic",
                "perm": "read_only",
                "posMode": "long_short_mode",
                "roleType": "0",
                "spotRoleType": "0",
                "uid": account.api_key[:17],
            }
        ]

    @scripted
    def set_reported_mm_factor(self, api_key: str, factor: Num) -> None:
        """Report the USDT pool's cross ``mmr`` (and so its ``mgnRatio``) in the balance as
        the server's own times ``factor``: an exchange rule alertd does not know, which its
        drift check must notice (the positions' ``mmr`` stay the server's own)."""
        self._account(api_key).reported_mm_factor = _dec(factor, "factor")

    @scripted
    def set_balance(self, api_key: str, wallet_balance: Num) -> None:
        account = self._account(api_key)
        account.wallet = _dec(wallet_balance, "wallet")
        self._push_account(account)

    @scripted
    def push_liquidation_warning(self, api_key: str) -> None:
        """Push OKX's ``liquidation-warning`` frame (the positions channel's row format) for
        every open position of the account to its subscribed private connections."""
        account = self._account(api_key)
        rows = [self._position_row(account, p) for p in account.positions.values()]
        self._push_private(account, "liquidation-warning", rows)

    def _private_frame(self, channel: str, data: list[Any]) -> dict[str, Any]:
        arg = {"channel": channel, "uid": UID}
        if channel != "account":
            arg["instType"] = "ANY"
        return {"arg": arg, "eventType": "event_update", "data": data}

    def _push_private(self, account: _Account, channel: str, data: list[Any]) -> None:
        """Send a private push now, or in its turn where the account's pushes are held
        (:meth:`delay_pushes`): its frame made, and stamped, now."""
        frame = self._private_frame(channel, data)

        def send() -> None:
            for conn in self._subscribers(channel):
                muted = conn.muted or channel in conn.muted_channels | self.dead_channels
                if conn.owner == account.api_key and conn.live and not muted:
                    conn.send(frame)

        if not self._held_push(account.api_key, send):
            send()

    def _push_positions(self, account: _Account, positions: list[_Position]) -> None:
        self._push_private(
            account, "positions", [self._position_row(account, p) for p in positions]
        )

    def _push_account(self, account: _Account) -> None:
        self._push_private(account, "account", [self._balance_row(account)])

    # ---- figures ------------------------------------------------------------------------------

    def _usd_price(self, ccy: str, moved: dict[str, Decimal] | None = None) -> Decimal:
        """``ccy``'s USD price; ``moved`` marks (instId -> mark) stand in for the markets'."""
        price, follows = self._usd.get(ccy, (Decimal(0), None))
        if follows is None:
            return price
        mark = (moved or {}).get(follows, self._markets[follows].mark)
        return price * mark

    def _discounted(self, ccy: str, amount: Decimal) -> Decimal:
        """``amount`` of ``ccy`` after its discount tiers (in the currency; a liability in
        full; a currency without tiers counts nothing, as OKX's non-collateral ones)."""
        if amount <= 0:
            return amount
        out = Decimal(0)
        for low, high, rate in self._discounts.get(ccy, ()):
            top = amount if high == "" else min(amount, Decimal(high))
            if top > Decimal(low):
                out += (top - Decimal(low)) * Decimal(rate)
        return out

    def _borrowing_mm(self, ccy: str, equity: Decimal) -> Decimal:
        """The borrowing MM of ``ccy`` at an equity of ``equity`` (in the currency): what is
        owed at the rate of the borrowing tier holding it (step tiers)."""
        if equity >= 0:
            return Decimal(0)
        owed = -equity
        tiers = BORROWING[ccy]
        for max_sz, mmr, _imr, _lever in tiers:
            if owed <= Decimal(max_sz):
                return owed * Decimal(mmr)
        return owed * Decimal(tiers[-1][1])

    def _equity(self, account: _Account, ccy: str) -> Decimal:
        return account.coins[ccy] - account.interest.get(ccy, Decimal(0))

    def _pool_mm(
        self, account: _Account, moved: dict[str, Decimal] | None = None
    ) -> tuple[Decimal, Decimal]:
        """A multi-currency account's (mmr, liquidation fee) in USD: the cross positions' MM
        and the liabilities' borrowing MM, at its marks or at ``moved`` ones."""
        cross = [p for p in account.positions.values() if not p.isolated]
        marks = {p.market.id: (moved or {}).get(p.market.id, p.market.mark) for p in cross}
        usdt = self._usd_price(SETTLE)
        positions = fee = Decimal(0)
        for p in cross:
            notional = abs(p.pos) * p.market.ct_val * marks[p.market.id]
            positions += notional * p.market.mmr_rate(abs(p.pos))
            fee += notional * account.taker_fee
        borrowing = self._borrowing_mm(SETTLE, self._usdt_equity(account, moved)) * usdt
        for ccy in account.coins:
            equity = self._equity(account, ccy)
            borrowing += self._borrowing_mm(ccy, equity) * self._usd_price(ccy, moved)
        return positions * usdt + borrowing, fee * usdt

    def _usdt_equity(self, account: _Account, moved: dict[str, Decimal] | None = None) -> Decimal:
        """The settle currency's cross equity, at its marks or at ``moved`` ones."""
        cross = [p for p in account.positions.values() if not p.isolated]
        marks = {p.market.id: (moved or {}).get(p.market.id, p.market.mark) for p in cross}
        iso_margin = sum((p.margin for p in account.positions.values() if p.isolated), Decimal(0))
        upl = sum(
            (abs(p.pos) * p.market.ct_val * (marks[p.market.id] - p.entry) * p.sign for p in cross),
            Decimal(0),
        )
        return account.wallet - iso_margin + upl

    def _pool(
        self, account: _Account, moved: dict[str, Decimal] | None = None
    ) -> tuple[Decimal, Decimal]:
        """A multi-currency account's (adjEq, mmr + liquidation fee) in USD, at its marks or
        at ``moved`` ones."""
        usdt = self._usd_price(SETTLE)
        adj_eq = self._discounted(SETTLE, self._usdt_equity(account, moved)) * usdt
        for ccy in account.coins:
            adj_eq += self._discounted(ccy, self._equity(account, ccy)) * self._usd_price(
                ccy, moved
            )
        mm, fee = self._pool_mm(account, moved)
        return adj_eq, mm + fee

    def _multi_liq(self, account: _Account, p: _Position) -> Decimal | None:
        """The mark of ``p``'s market at which adjEq = mmr + fee, the currencies following it
        moving too: linear in that mark, so two evaluations give the root exactly."""

        def surplus(mark: Decimal) -> Decimal:
            adj_eq, requirement = self._pool(account, {p.market.id: mark})
            return adj_eq - requirement

        at_zero, at_mark = surplus(Decimal(0)), surplus(p.market.mark)
        if at_mark == at_zero:
            return None
        price = p.market.mark * at_zero / (at_zero - at_mark)
        if price > 0 and abs(surplus(price)) > Decimal("1e-9") * abs(at_mark):
            # not one line (a USDT liability's tier or its start lies between): bisect on
            # the side where the surplus changes sign, bounded
            far = Decimal(0) if (at_zero > 0) != (at_mark > 0) else p.market.mark * 10
            low, high = sorted((far, p.market.mark))
            if (surplus(low) > 0) == (surplus(high) > 0):
                return None
            for _ in range(200):
                middle = (low + high) / 2
                if (surplus(middle) > 0) == (surplus(low) > 0):
                    low = middle
                else:
                    high = middle
            price = (low + high) / 2
        return price.quantize(p.market.tick) if price > 0 else None

    def _cross(self, account: _Account) -> tuple[Decimal, Decimal, Decimal]:
        """(cross equity, cross MM, cross notional) of the USDT pool."""
        cross = [p for p in account.positions.values() if not p.isolated]
        iso_margin = sum((p.margin for p in account.positions.values() if p.isolated), Decimal(0))
        eq = account.wallet - iso_margin + sum((p.upl() for p in cross), Decimal(0))
        return (
            eq,
            sum((p.mm() for p in cross), Decimal(0)),
            sum((p.notional() for p in cross), Decimal(0)),
        )

    def _liq(self, account: _Account, p: _Position) -> Decimal | None:
        size = abs(p.pos) * p.market.ct_val
        if not size:
            return None
        if account.acct_lv in ("3", "4") and not p.isolated:
            return self._multi_liq(account, p)
        rate = p.market.mmr_rate(abs(p.pos)) + account.taker_fee
        if p.isolated:
            others = Decimal(0)
            cash = p.margin - p.sign * size * p.entry
        else:
            eq, _mm, _n = self._cross(account)
            others = sum(
                (
                    q.mm() + q.notional() * account.taker_fee
                    for q in account.positions.values()
                    if not q.isolated and q is not p
                ),
                Decimal(0),
            )
            cash = eq - p.upl() - p.sign * size * p.entry
        # cash + sign*size*L = others + size*L*rate
        denom = size * (rate - p.sign)
        price = (cash - others) / denom
        return price.quantize(p.market.tick) if price > 0 else None

    def _position_row(self, account: _Account, p: _Position) -> dict[str, Any]:
        """A row as in the docs' "Get positions" example (SWAP)."""
        m = p.market
        liq = self._liq(account, p) if p.pos else None
        open_ = bool(p.pos)
        return {
            "adl": "1",
            "availPos": "",
            "avgPx": _s(p.entry) if open_ else "",
            "cTime": str(p.c_time),
            "ccy": SETTLE,
            "deltaBS": "",
            "deltaPA": "",
            "gammaBS": "",
            "gammaPA": "",
            "imr": _s(p.notional() / p.leverage) if open_ and not p.isolated else "",
            "instId": m.id,
            "instType": m.inst_type,
            "interest": "0",
            "idxPx": _s(m.mark),
            "last": _s(m.mark),
            "usdPx": "",
            "lever": _s(p.leverage),
            "liab": "",
            "liabCcy": "",
            "liqPx": _s(liq) if liq is not None else "",
            "markPx": _s(m.mark),
            "margin": _s(p.margin) if p.isolated and open_ else "",
            "mgnMode": "isolated" if p.isolated else "cross",
            "mgnRatio": "",
            "mmr": _s(p.mm()) if open_ else "",
            "notionalUsd": _s(p.notional()),
            "optVal": "",
            "pendingCloseOrdLiabVal": "",
            "pTime": str(now_ms()),
            "pos": _s(p.pos),
            "posCcy": "",
            "posId": p.pos_id,
            "posSide": p.pos_side,
            "spotInUseAmt": "",
            "spotInUseCcy": "",
            "thetaBS": "",
            "thetaPA": "",
            "tradeId": "",
            "bizRefId": "",
            "bizRefType": "",
            "quoteBal": "",
            "baseBal": "",
            "baseBorrowed": "",
            "baseInterest": "",
            "quoteBorrowed": "",
            "quoteInterest": "",
            "uTime": str(p.u_time),
            "upl": _s(p.upl()),
            "uplLastPx": _s(p.upl()),
            "uplRatio": "",
            "vegaBS": "",
            "vegaPA": "",
            "realizedPnl": "0",
            "pnl": "0",
            "fee": "0",
            "fundingFee": "0",
            "liqPenalty": "0",
            "closeOrderAlgo": [],
        }

    def _balance_row(self, account: _Account) -> dict[str, Any]:
        """An account as in the docs' "Get balance" example (single-currency margin)."""
        eq, mm, notional = self._cross(account)
        mm *= account.reported_mm_factor
        iso = [p for p in account.positions.values() if p.isolated]
        iso_eq = sum((p.margin + p.upl() for p in iso), Decimal(0))
        denom = mm + notional * account.taker_fee
        ratio = _s((eq / denom).quantize(Decimal("0.0001"))) if denom else ""
        upl = sum((p.upl() for p in account.positions.values()), Decimal(0))
        total = eq + iso_eq
        # the cash balance leaves out what isolated positions hold: a real single-currency
        # answer with one isolated SOL-USDT-SWAP (2024-04, quoted in a public okx-bot log)
        # reads cashBal 4920.0718, isoEq 60.3833 (isoUpl 0.38), eq 4980.4551 = cashBal + isoEq
        # and, with no cross position, mmr "0": the currency's mmr is the cross positions' only
        iso_margin = sum((p.margin for p in iso), Decimal(0))
        detail = {
            "availBal": _s(eq - mm),
            "availEq": _s(eq - mm),
            "borrowFroz": "",
            "cashBal": _s(account.wallet - iso_margin),
            "ccy": SETTLE,
            "crossLiab": "",
            "disEq": _s(total),
            "eq": _s(total),
            "eqUsd": _s(total),
            "fixedBal": "0",
            "frozenBal": "0",
            "imr": "",
            "interest": "",
            "isoEq": _s(iso_eq),
            "isoLiab": "",
            "isoUpl": _s(iso_eq - iso_margin),
            "liab": "",
            "maxLoan": "",
            "mgnRatio": ratio,
            "mmr": _s(mm),
            "notionalLever": "",
            "ordFrozen": "0",
            "spotInUseAmt": "",
            "stgyEq": "0",
            "twap": "0",
            "uTime": str(now_ms()),
            "upl": _s(upl),
            "uplLiab": "",
        }
        pool = {"adjEq": "", "mgnRatio": "", "mmr": ""}
        details = [detail]
        if account.acct_lv in ("3", "4"):
            # the USD pool's figures are the account's; the currency's own are empty
            details = self._currency_details(account, detail, eq)
            adj_eq, requirement = self._pool(account)
            pool = {
                "adjEq": _s(adj_eq),
                "mgnRatio": _s(adj_eq / requirement) if requirement else "",
                "mmr": _s(self._pool_mm(account)[0]),
            }
            total = sum((Decimal(d["eqUsd"]) for d in details), Decimal(0))
        return {
            **pool,
            "borrowFroz": "",
            "details": details,
            "imr": "",
            "isoEq": _s(iso_eq),
            "notionalUsd": _s(notional),
            "ordFroz": "",
            "totalEq": _s(total),
            "uTime": str(now_ms()),
            "upl": _s(upl),
        }

    def _currency_details(
        self, account: _Account, settle: dict[str, Any], cross_eq: Decimal
    ) -> list[dict[str, Any]]:
        """A multi-currency account's ``details``: the settle currency's row with its USD
        figures, and a row per other currency (fields as in the recorded answer cited in
        alertd/exchanges/okx.py)."""
        usdt = self._usd_price(SETTLE)
        eq = Decimal(settle["eq"])
        settle.update(
            mgnRatio="",
            mmr="",
            eqUsd=_s(eq * usdt),
            disEq=_s(self._discounted(SETTLE, cross_eq) * usdt),
            liab=_s(max(-cross_eq, Decimal(0))),
            crossLiab=_s(max(-cross_eq, Decimal(0))),
            collateralEnabled=True,
        )
        rows = [settle]
        for ccy, cash in sorted(account.coins.items()):
            price = self._usd_price(ccy)
            amount = self._equity(account, ccy)
            owed = _s(max(-amount, Decimal(0)))
            rows.append(
                {
                    **{key: "" for key in settle},
                    "availBal": _s(max(amount, Decimal(0))),
                    "availEq": _s(max(amount, Decimal(0))),
                    "borrowFroz": "0",
                    "cashBal": _s(cash),
                    "ccy": ccy,
                    "collateralEnabled": ccy in self._discounts,
                    "crossLiab": owed,
                    "disEq": _s(self._discounted(ccy, amount) * price),
                    "eq": _s(amount),
                    "eqUsd": _s(amount * price),
                    "fixedBal": "0",
                    "frozenBal": "0",
                    "interest": _s(account.interest.get(ccy, Decimal(0))),
                    "isoEq": "0",
                    "isoLiab": "0",
                    "isoUpl": "0",
                    "liab": owed,
                    "ordFrozen": "0",
                    "stgyEq": "0",
                    "twap": "0",
                    "uTime": str(now_ms()),
                    "upl": "0",
                    "uplLiab": "0",
                }
            )
        return rows

    def _discount_answer(self, params: dict[str, str]) -> list[Any]:
        """ "Get discount rate and interest-free quota" rows, as in the docs' example."""
        wanted = params.get("ccy")
        out = []
        for ccy, tiers in self._discounts.items():
            if wanted not in (None, ccy):
                continue
            details = [
                {
                    "discountRate": rate,
                    "liqPenaltyRate": "0.02",
                    "maxAmt": high,
                    "minAmt": low,
                    "tier": str(i),
                    "disCcyEq": _s(self._discounted(ccy, Decimal(high))) if high else "",
                }
                for i, (low, high, rate) in enumerate(tiers, 1)
            ]
            out.append(
                {
                    "amt": "0",
                    "ccy": ccy,
                    "colRes": "0",
                    "collateralRestrict": False,
                    "details": details,
                    "discountLv": "1",
                    "minDiscountRate": "0",
                }
            )
        return out

    # ---- REST ---------------------------------------------------------------------------------

    @staticmethod
    def _error(code: str, msg: str, status: int = 200) -> web.Response:
        return shared.json_response({"code": code, "msg": msg, "data": []}, status=status)

    def _error_response(self, status: int, retry_after_s: float | None) -> web.Response:
        """429: OKX's ``50011`` "Too Many Requests"; other statuses OKX's system error body."""
        if status == 429:
            return self._error("50011", "Too Many Requests", 429)
        return self._error("50001", "Service temporarily unavailable. Try again later.", status)

    def _key_rejected(self, rejection: shared.KeyRejection) -> web.Response:
        if rejection.problem is shared.KeyProblem.BANNED:
            return self._error("50011", "Too Many Requests", 429)
        if rejection.problem is shared.KeyProblem.MISSING:
            return self._error("50103", "Request header OK-ACCESS-KEY cannot be empty.", 401)
        return self._error("50111", "Invalid OK-ACCESS-KEY", 401)

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        public: dict[str, Callable[[dict[str, str]], list[Any]]] = {
            "/api/v5/public/instruments": self._instruments,
            "/api/v5/public/position-tiers": self._position_tiers,
            "/api/v5/public/mark-price": self._mark_price,
            "/api/v5/market/books": self._books_answer,
            "/api/v5/public/time": lambda _p: [{"ts": str(now_ms())}],
            "/api/v5/public/discount-rate-interest-free-quota": self._discount_answer,
            "/api/v5/market/mark-price-candles": self._mark_candles_answer,
            "/api/v5/market/history-mark-price-candles": self._mark_candles_answer,
        }
        private: dict[str, Callable[[_Account, dict[str, str]], list[Any]]] = {
            "/api/v5/account/positions": self._positions,
            "/api/v5/account/balance": lambda a, _p: [self._balance_row(a)],
            "/api/v5/account/config": self._config_row,
            "/api/v5/account/trade-fee": self._trade_fee,
            "/api/v5/asset/currencies": self._currencies,
            "/api/v5/trade/orders-algo-pending": self._algo_pending,
        }
        params = dict(request.query)
        path = request.path
        if path in public:
            data = public[path](params)
        elif path in private:
            body = await request.text()
            checked = self._authenticate(request, body)
            if isinstance(checked, web.Response):
                return checked
            data = private[path](checked, params)
        else:
            return self._error("404", "Not Found", 404)
        return shared.json_response({"code": "0", "msg": "", "data": data})

    def _authenticate(self, request: web.Request, body: str) -> _Account | web.Response:
        headers = request.headers
        account = self._authorized(headers.get("OK-ACCESS-KEY"))
        stamp = headers.get("OK-ACCESS-TIMESTAMP", "")
        try:
            when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            return self._error("50107", "Invalid OK-ACCESS-TIMESTAMP", 401)
        if abs(when.timestamp() - time.time()) > 30:
            return self._error("50102", "Timestamp request expired", 401)
        if headers.get("OK-ACCESS-PASSPHRASE") != account.passphrase:
            return self._error("50105", "Invalid OK-ACCESS-PASSPHRASE", 401)
        prehash = stamp + request.method + request.raw_path + body
        if not hmac.compare_digest(
            _sign(account.secret, prehash), headers.get("OK-ACCESS-SIGN", "")
        ):
            return self._error("50113", "Invalid Sign", 401)
        return account

    def _mark_candles_answer(self, params: dict[str, str]) -> list[Any]:
        # OKX v5 "Get mark price candlesticks" (and its history twin): instId, bar (1m, 5m,
        # 15m, 1H, ...), after (older than, ms), before (newer than, ms), limit (at most 100);
        # rows newest first, [ts, o, h, l, c, confirm] (okx.com/docs-v5, market data)
        bars = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1H": 60, "2H": 120, "4H": 240}
        minutes = bars.get(params.get("bar", "1m"))
        if minutes is None or params.get("instId") not in self._markets:
            return []
        rows = self.mark_candles(
            params["instId"],
            minutes * 60_000,
            int(params.get("before", -1)) + 1,
            int(params.get("after", 2**62)) - 1,
            min(int(params.get("limit", 100)), 100),
        )
        last_open = now_ms() - now_ms() % (minutes * 60_000)
        return [
            [str(t), o, h, low, c, "0" if t >= last_open else "1"]
            for t, o, h, low, c in reversed(rows)
        ]

    def _instruments(self, params: dict[str, str]) -> list[Any]:
        kind = params.get("instType")
        return [self._instrument(m) for m in self._markets.values() if m.inst_type == kind]

    @staticmethod
    def _instrument(m: _Market) -> dict[str, Any]:
        """As in the docs' "Get instruments" example (BTC-USDT-SWAP; a future has its
        ``expTime`` and ``alias``)."""
        family = f"{m.base}-USDT"
        future = m.inst_type == "FUTURES"
        return {
            "alias": "quarter" if future else "",
            "baseCcy": "",
            "category": "1",
            "ctMult": "1",
            "ctType": "linear",
            "ctVal": _s(m.ct_val),
            "ctValCcy": m.base,
            "expTime": str(FUTURE_EXPIRY_MS) if future else "",
            "instFamily": family,
            "instId": m.id,
            "instType": m.inst_type,
            "lever": "100",
            "listTime": "1611916828000",
            "lotSz": "0.01",
            "maxIcebergSz": "100000000",
            "maxLmtAmt": "20000000",
            "maxLmtSz": "100000000",
            "maxMktAmt": "",
            "maxMktSz": "12000",
            "maxStopSz": "12000",
            "maxTriggerSz": "100000000",
            "maxTwapSz": "100000000",
            "minSz": "0.01",
            "optType": "",
            "quoteCcy": "",
            "ruleType": "normal",
            "settleCcy": SETTLE,
            "state": "live",
            "stk": "",
            "tickSz": _s(m.tick),
            "uly": family,
        }

    def _position_tiers(self, params: dict[str, str]) -> list[Any]:
        family = params.get("instFamily") or params.get("uly") or ""
        kind = params.get("instType", "SWAP")
        if kind == "MARGIN" and params.get("ccy"):
            # multi-currency margin: the currency's borrowing tiers, minSz/maxSz amounts
            # borrowed in it
            ccy = params["ccy"]
            return [] if ccy in self._unlisted_borrowing else _tier_rows(BORROWING.get(ccy, ()), "")
        rows = []
        for m in self._markets.values():
            if f"{m.base}-USDT" == family and m.inst_type == kind:
                rows += _tier_rows(m.tiers, family)
        return rows

    def _books_answer(self, params: dict[str, str]) -> list[Any]:
        # "Get order book": instId, sz (1-400, default 1); data [{"asks", "bids", "ts"}], each
        # level [price, size in contracts, "0" (deprecated), number of orders]
        # (okx.com/docs-v5/en/#order-book-trading-market-data-get-order-book)
        inst = params.get("instId", "")
        if inst not in self._markets:
            return []  # (OKX answers 51001 "Instrument ID does not exist"; no test needs it)
        size = params.get("sz", "1")
        limit = int(size) if size.isdigit() and 1 <= int(size) <= 400 else 1
        bids, asks = self.order_book(inst, limit)
        return [
            {
                "asks": [[p, s, "0", "1"] for p, s in asks],
                "bids": [[p, s, "0", "1"] for p, s in bids],
                "ts": str(now_ms()),
            }
        ]

    def _mark_price(self, params: dict[str, str]) -> list[Any]:
        inst = params.get("instId")
        return [
            self._mark_frame(m)["data"][0] for m in self._markets.values() if inst in (None, m.id)
        ]

    # ---- open algo orders ("Get algo order list", GET /api/v5/trade/orders-algo-pending) --------

    def _algo_row(self, stop: StopOrderSpec) -> dict[str, Any]:
        """A stop as a pending ``conditional`` algo order, the docs' response example's fields:
        ``slTriggerPx`` for a stop, ``tpTriggerPx`` for a take-profit; ``closeFraction`` 1
        (and no ``sz``) closes the whole position. A ``trailing`` one is a ``move_order_stop``
        order, its current trigger in ``moveTriggerPx`` (1% callback)."""
        full = stop.contracts is None
        trailing = stop.kind == "trailing"
        sl, tp = (stop.trigger, None) if stop.kind == "stop" else (None, stop.trigger)
        if trailing:
            sl = tp = None
        return {
            "activePx": "",
            "actualPx": "",
            "actualSide": "",
            "actualSz": "0",
            "algoClOrdId": "",
            "algoId": f"68109694465527{stop.order_id}",
            "attachAlgoOrds": [],
            "cTime": str(stop.created_ms),
            "callbackRatio": "0.01" if trailing else "",
            "callbackSpread": "",
            "ccy": "",
            "clOrdId": "",
            "closeFraction": "1" if full else "",
            "failCode": "",
            "instId": stop.market.id,
            "instType": "SWAP",
            "last": str(stop.market.mark),
            "lever": "10",
            "linkedOrd": {"ordId": ""},
            "moveTriggerPx": str(stop.trigger) if trailing else "",
            "ordId": "",
            "ordIdList": [],
            "ordPx": "",
            "ordType": "move_order_stop" if trailing else "conditional",
            "posSide": stop.side if stop.hedge else "net",
            "quickMgnType": "",
            "reduceOnly": "true",
            "side": "sell" if stop.sell else "buy",
            "slOrdPx": "-1" if sl is not None else "",
            "slTriggerPx": "" if sl is None else str(sl),
            "slTriggerPxType": "" if sl is None else "mark",
            "state": "live",
            "sz": "" if full else str(stop.contracts),
            "tag": "",
            "tdMode": "cross",
            "tgtCcy": "",
            "tpOrdPx": "-1" if tp is not None else "",
            "tpTriggerPx": "" if tp is None else str(tp),
            "tpTriggerPxType": "" if tp is None else "mark",
            "triggerPx": "",
            "triggerPxType": "",
            "triggerTime": "",
        }

    def _push_stop(self, api_key: str, stop: StopOrderSpec, event: str) -> None:
        """The business connection's ``orders-algo`` channel: the algo order, ``state``
        "live" when placed, "canceled" when cancelled; a trailing stop on ``algo-advance``
        (advance algo orders: iceberg, TWAP, trailing; its push data has ``pTime``)."""
        row = {**self._algo_row(stop), "uTime": str(now_ms())}
        if event != "new":
            row["state"] = "canceled"
        if stop.kind == "trailing":
            row["pTime"] = row.pop("uTime")
            self._push_private(self._accounts[api_key], "algo-advance", [row])
            return
        self._push_private(self._accounts[api_key], "orders-algo", [row])

    def _algo_pending(self, account: _Account, params: dict[str, str]) -> list[Any]:
        # one ordType a request, but "conditional,oco" together
        kinds = set((params.get("ordType") or "").split(","))
        # the fake's stops are conditional orders, its trailing ones move_order_stop orders
        wanted = params.get("instId")
        return [
            self._algo_row(stop)
            for stop in reversed(self.stops(account.api_key))  # newest first
            if wanted is None or stop.market.id == wanted
            if ("move_order_stop" if stop.kind == "trailing" else "conditional") in kinds
        ]

    def _positions(self, account: _Account, params: dict[str, str]) -> list[Any]:
        behind = self._positions_behind.pop(account.api_key, None)
        return [
            self._position_row(account, p)
            for p in account.positions.values()
            if behind is None or p.market.symbol != behind
        ]

    @scripted
    def lag_positions(self, api_key: str, symbol: str) -> None:
        """The account's next positions answer leaves ``symbol``'s positions out, as a
        positions service a little behind the matching engine (and the balance answer, and
        the pushes) would: OKX documents no ordering between its REST endpoints."""
        self._positions_behind[self._account(api_key).api_key] = symbol

    @staticmethod
    def _currencies(account: _Account, params: dict[str, str]) -> list[Any]:
        row = {
            "canDep": True,
            "canInternal": True,
            "canWd": True,
            "ccy": SETTLE,
            "chain": "USDT-TRC20",
            "depQuotaFixed": "",
            "depQuoteDailyLayer2": "",
            "logoLink": "",
            "mainNet": False,
            "maxFee": "1.6",
            "maxFeeForCtAddr": "",
            "maxWd": "8852150",
            "minDep": "0.00000001",
            "minDepArrivalConfirm": "1",
            "minFee": "0.8",
            "minFeeForCtAddr": "",
            "minWd": "2",
            "minWdUnlockConfirm": "1",
            "name": "Tether",
            "needTag": False,
            "usedDepQuotaFixed": "",
            "usedWdQuota": "0",
            "wdQuota": "10000000",
            "wdTickSz": "4",
        }
        return [row]

    # ---- websockets ---------------------------------------------------------------------------

    def _ws(self, kind: str) -> Callable[[web.Request], Any]:
        async def serve(request: web.Request) -> web.StreamResponse:
            return await self._serve_ws(
                request, lambda r, ws: _Connection(r, ws, kind), self._on_text
            )

        return serve

    def _on_text(self, conn: _Connection, text: str) -> None:
        if text == "ping":
            if self.answers_pings:
                conn.post("pong")
            return
        msg = shared.json_object(text)
        if msg is None:
            self._ws_error(conn, "60012", f"Illegal request: {text}")
            return
        op = msg.get("op")
        if op == "login" and conn.kind in ("private", "business"):
            self._ws_login(conn, msg.get("args"))
        elif op in ("subscribe", "unsubscribe"):
            self._ws_subscribe(conn, msg, op)
        else:
            self._ws_error(conn, "60012", f"Illegal request: {text}")

    def _ws_error(self, conn: _Connection, code: str, msg: str, req_id: Any = None) -> None:
        reply: dict[str, Any] = {"event": "error", "code": code, "msg": msg, "connId": conn.conn_id}
        if req_id is not None:
            reply["id"] = req_id
        conn.send(reply)

    def _ws_login(self, conn: _Connection, args: Any) -> None:
        arg = args[0] if isinstance(args, list) and args and isinstance(args[0], dict) else {}
        checked = self._authorize(arg.get("apiKey"))
        if isinstance(checked, shared.KeyRejection):
            if checked.problem is shared.KeyProblem.BANNED:
                self._ws_error(conn, "60014", "Requests too frequent.")
            else:
                self._ws_error(conn, "60005", "Invalid OK-ACCESS-KEY")
            return
        stamp = str(arg.get("timestamp", ""))
        late = checked.api_key in self._late_logins
        self._late_logins.discard(checked.api_key)
        if not stamp.isdigit() or abs(int(stamp) - time.time()) > 30 or late:
            self.logins.append((checked.api_key, conn.kind, False))
            self._ws_error(conn, "60006", "Timestamp request expired")
            return
        if arg.get("passphrase") != checked.passphrase:
            self._ws_error(conn, "60024", "Wrong passphrase")
            return
        if not hmac.compare_digest(
            _sign(checked.secret, stamp + "GET/users/self/verify"), str(arg.get("sign", ""))
        ):
            self._ws_error(conn, "60007", "Invalid sign")
            return
        conn.owner = checked.api_key
        self.logins.append((checked.api_key, conn.kind, True))
        conn.send({"event": "login", "code": "0", "msg": "", "connId": conn.conn_id})

    def _ws_subscribe(self, conn: _Connection, msg: dict[str, Any], op: str) -> None:
        req_id = msg.get("id")
        args = msg.get("args")
        if not isinstance(args, list) or not args:
            self._ws_error(conn, "60012", f"Illegal request: {shared.compact(msg)}", req_id)
            return
        acks: list[dict[str, Any]] = []
        snapshots: list[dict[str, Any]] = []
        for arg in args:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            if conn.kind == "public" and channel == "mark-price":
                inst = arg.get("instId")
                if inst not in self._markets:
                    self._ws_error(
                        conn,
                        "60018",
                        f"Wrong URL or channel:{channel},instId:{inst} doesn't exist. Please "
                        "use the correct URL, channel and parameters referring to API document.",
                        req_id,
                    )
                    return
                stream = f"mark-price:{inst}"
                snapshots.append(self._mark_frame(self._markets[inst]))
            elif (conn.kind == "private" and channel in PRIVATE_CHANNELS) or (
                conn.kind == "business" and channel in BUSINESS_CHANNELS
            ):
                if conn.owner is None:
                    self._ws_error(conn, "60011", "Please log in", req_id)
                    return
                stream = str(channel)
            else:
                self._ws_error(
                    conn, "60018", f"Wrong URL or channel:{channel} doesn't exist.", req_id
                )
                return
            if op == "subscribe":
                conn.streams.add(stream)
            else:
                conn.streams.discard(stream)
            ack: dict[str, Any] = {"event": op, "arg": arg, "connId": conn.conn_id}
            if req_id is not None:
                ack["id"] = req_id
            acks.append(ack)
        for ack in acks:
            conn.send(ack)
        if op == "subscribe":
            for frame in snapshots:
                conn.send(frame)
            account = self._accounts.get(conn.owner or "")
            if account is not None:
                for arg in args:
                    if arg.get("channel") in self.dead_channels:
                        continue
                    if arg.get("channel") == "positions":
                        rows = [self._position_row(account, p) for p in account.positions.values()]
                        frame = self._private_frame("positions", rows)
                        frame["eventType"] = "snapshot"
                        conn.send(frame)
                    elif arg.get("channel") == "account":
                        frame = self._private_frame("account", [self._balance_row(account)])
                        frame["eventType"] = "snapshot"
                        conn.send(frame)

    MALFORMED_JSON = '{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"ma'

    def _garbled_frame(self, stream: str) -> dict[str, Any] | None:
        """A ``mark-price`` push with ``markPx`` "abc"; ``positions`` / ``account`` rows with
        "abc" numbers."""
        if stream.startswith("mark-price:"):
            inst = stream.split(":", 1)[1]
            row = {"instType": "SWAP", "instId": inst, "markPx": "abc", "ts": str(now_ms())}
            return {"arg": {"channel": "mark-price", "instId": inst}, "data": [row]}
        if stream == "positions":
            row = {"instType": "SWAP", "instId": "BTC-USDT-SWAP", "pos": "abc", "posSide": "net"}
            row.update(avgPx="abc", mgnMode="cross", lever="abc")
            return self._private_frame("positions", [row])
        if stream == "account":
            detail = {"ccy": SETTLE, "cashBal": "abc", "eq": "abc", "mgnRatio": "abc"}
            return self._private_frame("account", [{"details": [detail]}])
        return None


def _tier_rows(tiers: tuple[tuple[str, str, str, str], ...], family: str) -> list[Any]:
    """ "Get position tiers" rows of one table of (maxSz, mmr, imr, maxLever)."""
    rows = []
    low = "0"
    for tier, (max_sz, mmr, imr, lever) in enumerate(tiers, 1):
        rows.append(
            {
                "baseMaxLoan": "",
                "imr": imr,
                "instFamily": family,
                "instId": "",
                "maxLever": lever,
                "maxSz": max_sz,
                "minSz": low,
                "mmr": mmr,
                "optMgnFactor": "0",
                "quoteMaxLoan": "",
                "tier": str(tier),
                "uly": family,
            }
        )
        low = max_sz
    return rows


def _sign(secret: str, prehash: str) -> str:
    digest = hmac.new(secret.encode(), prehash.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# ---- command line ------------------------------------------------------------------------------


def _seed_accounts(fake: FakeOKX, count: int) -> None:
    for i in range(count):
        key = f"key{i}"
        fake.add_account(key, f"secret{i}", wallet_balance=str(5000 + 1000 * i))
        btc = fake.mark("BTC/USDT:USDT")
        fake.open_position(key, "BTC/USDT:USDT", "long", f"{1 + i}", btc * Decimal("0.99"))


def main(argv: list[str] | None = None) -> int:
    return shared.serve_main(FakeOKX, _seed_accounts, argv, max_step=0.0005)


if __name__ == "__main__":
    sys.exit(main())
