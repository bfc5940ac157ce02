"""A scriptable local Gate v4 server (futures, USDT-settled perpetuals such as ``BTC_USDT``).

ccxt's own ``ccxt.pro.gate`` runs against it unmodified: deep-merge ``fake.ccxt_urls()`` over
``exchange.urls['api']``. REST and the futures websocket share one aiohttp application on one
loopback port. Shapes follow Gate's API v4 documentation (gate.com/docs/developers/apiv4: "List
all futures contracts", "List all positions of a user", "Query futures account", "List risk
limit tiers", "List futures tickers", "Get account detail"; futures websocket docs:
"Authentication", "Ping/pong", "Tickers", "Positions", "Balances", error codes) and the real
answers quoted in ccxt (``ccxt/gate.py`` and ``ccxt/pro/gate.py`` response comments,
``ts/src/test/static/response/gate.json``; the same payloads alertd's adapter tests use).

What it serves (paths as on api.gateio.ws / fx-ws.gateio.ws):
- REST public under ``/api/v4``: ``/futures/usdt/contracts``, ``/futures/usdt/tickers``,
  ``/futures/usdt/risk_limit_tiers`` (``offset`` / ``limit`` paging, as Gate pages it),
  ``/spot/currencies`` and, empty, the markets of the other types ccxt's ``load_markets`` asks
  for (``/spot/currency_pairs``, ``/futures/btc/contracts``, ``/delivery/*/contracts``,
  ``/options/underlyings``).
- REST signed (headers ``KEY``, ``Timestamp``, ``SIGN`` = hex HMAC-SHA512 of
  ``METHOD\\n/api/v4/PATH\\nQUERY\\nsha512(body)\\nTIMESTAMP``): ``/account/detail``
  (``user_id``, ccxt's unified-account probe in ``load_markets``), ``/futures/usdt/positions``
  (``holding``, ``limit`` / ``offset``), ``/futures/usdt/accounts``, ``/unified/accounts``,
  ``/unified/currency_discount_tiers``, ``/unified/loan_margin_tiers``. Errors are Gate's
  ``{"label": ..., "message": ...}`` bodies: 401 ``INVALID_KEY`` (unknown or revoked),
  ``INVALID_SIGNATURE``, ``REQUEST_EXPIRED`` (a timestamp more than 60 s off), 429
  ``TOO_MANY_REQUESTS`` (with Gate's ``X-Gate-RateLimit-*`` headers; also a banned key), 5xx
  ``SERVER_ERROR``, 400 ``INVALID_PARAM_VALUE``, 404 ``NOT_FOUND``.
- Websocket ``/v4/ws/futures/usdt``: ``futures.tickers`` (payload: contract ids; the current
  ticker follows the ack, then updates), private ``futures.positions`` (payload ``[user_id,
  "!all"]`` or a contract) and ``futures.balances`` (payload ``[user_id]``), each with
  ``auth: {method: api_key, KEY, SIGN}``, SIGN the hex HMAC-SHA512 of
  ``channel=<c>&event=subscribe&time=<t>``. Gate's error codes: 2 invalid argument (unknown
  contract; a missing or foreign user id in a private payload), 4 authentication failed (with
  the REST error JSON as its message, as Gate sends it). JSON ``futures.ping`` is answered with
  ``futures.pong``. ``X-Gate-Size-Decimal: 1`` on a positions request or on the websocket
  handshake (ccxt sends it on both) makes sizes decimal strings; without it they are integers
  rounded toward zero, as Gate does.

Figures are computed here, independently of alertd, from Gate's published rules:
- value = |size| * quanto_multiplier * mark; tier = the first ``risk_limit`` at or above it;
  maintenance margin = value * (maintenance_rate + taker fee) - deduction (Gate adds the taker
  fee; both real samples in alertd's adapter tests confirm it); initial margin = value /
  leverage.
- Isolated liquidation: the mark at which margin + unrealised PnL equals the maintenance
  margin (tier held). Cross: the mark at which the cross margin balance (wallet - isolated
  margin + cross unrealised PnL) equals the cross maintenance margin, other marks held. Longs
  rounded up, shorts down, to ``order_price_round``.
- Account: ``total`` is the wallet (it still holds isolated margin), ``cross_margin_balance``
  = total - isolated margin + cross unrealised PnL, ``cross_maintenance_margin`` the cross
  positions' sum, ``cross_mmr`` = cross_margin_balance / cross_maintenance_margin.
- Unified account (``/unified/accounts``, ``set_margin_mode``): single-currency (3) reports
  the USDT cross pool above in ``balances.USDT`` (``margin_balance``, ``mm``); multi-currency
  (1) one USD pool: every currency's equity (USDT's = total - isolated margin + cross PnL
  - USDT borrowed, ``set_usdt_borrowed``; others', scripted with ``set_coin``, balance -
  borrowed) at its price (its USDT perpetual's
  index, which follows the mark here; USDT at par), a positive one after its discount tiers by
  USD value (the docs' example answer, served at ``/unified/currency_discount_tiers``), a
  negative one in full; maintenance margin = the cross positions' plus each currency's
  liability (borrowed plus a negative balance; USDT's: borrowed plus the shortfall of the
  wallet and the cross PnL below zero), its USD value slice by slice at the rates of its tiers
  in ``LOAN_MARGIN_TIERS`` (served at ``/unified/loan_margin_tiers``). USDT in
  Simple Earn as margin (``set_usdt_earn``: ``use_funding``, the row's ``funding``) is in
  USDT's balance and equity but not in its Spot Available (help centre article 33018), so it
  does not lower the liability. A cross
  position's liquidation price there is bisected: the mark of its contract where margin
  balance = maintenance margin, the currencies priced by that contract moving with it.

Simplifications, on purpose: no orders, fills, fees charged or funding; index and last follow
the mark; one-way ``single`` mode unless ``hedge=True`` (``dual_long`` / ``dual_short``); one
settle currency (USDT). Connections, queues, drops, unanswered pings, malformed frames, scripted
REST failures, bans and revoked keys are ``base.py``'s.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Any, ClassVar
from urllib.parse import unquote

from aiohttp import web

from tests.fake_exchange import base as shared
from tests.fake_exchange.base import (
    FakeExchangeServer,
    Num,
    Reject,
    StopOrderSpec,
    now_ms,
    scripted,
)
from tests.fake_exchange.base import to_decimal as _dec

__all__ = ["FakeGate"]

SETTLE = "USDT"
API = "/api/v4"
WS_PATH = "/v4/ws/futures/usdt"
PRIVATE_CHANNELS = frozenset({"futures.positions", "futures.balances", "futures.autoorders"})
TAKER_FEE = Decimal("0.00075")  # Gate's futures taker fee rate, in both real samples
SIGNATURE_WINDOW_S = 60  # Gate: "gap between request Timestamp and server time exceeds 60"
FIRST_USER_ID = 10406147  # the user id in ccxt's recorded Gate answers
DEFAULT_LIMIT = 100  # Gate's default page size


def _fmt(value: Decimal, places: int = 12) -> str:
    """Plain decimal string, no exponent, no trailing zeros (Gate's style)."""
    text = format(value.quantize(Decimal(1).scaleb(-places)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _to_tick(value: Decimal, tick: Decimal, up: bool) -> Decimal:
    steps = (value / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return steps * tick


def _tier_rows(contract: str, base: int, first_mmr: str, first_lev: int) -> list[dict[str, Any]]:
    """Risk limit tiers shaped like Gate's: equal ``risk_limit`` steps, the maintenance rate up
    a step each tier, the initial rate twice it and deductions continuous (Gate's rows for
    BTC_USDT start at 1,000,000 / 0.004 / 125x, ccxt's ``fetch_market_leverage_tiers``)."""
    rows, prev_cap, prev_mmr, deduction = [], Decimal(0), Decimal(0), Decimal(0)
    for n in range(5):
        cap = Decimal(base * (n + 1))
        mmr = Decimal(first_mmr) * (n + 1)
        deduction += prev_cap * (mmr - prev_mmr)
        lev = max(1, first_lev // (n + 1))
        rows.append(
            {
                "tier": n + 1,
                "risk_limit": _fmt(cap),
                "initial_rate": _fmt(1 / Decimal(lev), 6),
                "maintenance_rate": _fmt(mmr),
                "leverage_max": str(lev),
                "contract": contract,
                "deduction": _fmt(deduction),
            }
        )
        prev_cap, prev_mmr = cap, mmr
    return rows


# (contract, mark, quanto_multiplier, order_price_round, first tier cap, first mmr, max lev)
_DEFAULT_MARKETS = (
    ("BTC_USDT", "65000", "0.0001", "0.1", 1_000_000, "0.004", 125),
    ("ETH_USDT", "3500", "0.01", "0.01", 1_000_000, "0.005", 100),
    ("SOL_USDT", "150", "1", "0.001", 200_000, "0.01", 50),
)


@dataclass
class _Market:
    id: str  # BTC_USDT
    base: str
    mark: Decimal
    quanto: Decimal
    tick: Decimal
    tiers: list[dict[str, Any]]

    @property
    def symbol(self) -> str:
        return f"{self.base}/{SETTLE}:{SETTLE}"

    def tier(self, value: Decimal) -> dict[str, Any]:
        for row in self.tiers:
            if value <= Decimal(row["risk_limit"]):
                return row
        return self.tiers[-1]

    def mm(self, value: Decimal, taker_fee: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        """(maintenance margin, rate incl. the account's taker fee, deduction) of a position
        value."""
        row = self.tier(value)
        rate = Decimal(row["maintenance_rate"]) + taker_fee
        deduction = Decimal(row["deduction"])
        return max(value * rate - deduction, Decimal(0)), rate, deduction


def _contract_id(symbol: str) -> tuple[str, str]:
    """``BTC/USDT:USDT`` or ``BTC_USDT`` -> (``BTC``, ``BTC_USDT``)."""
    if "/" in symbol:
        base, rest = symbol.split("/", 1)
        if rest != f"{SETTLE}:{SETTLE}":
            raise ValueError(f"{symbol}: only USDT-settled perpetuals (BASE/USDT:USDT)")
        return base, f"{base}_{SETTLE}"
    base, _, quote = symbol.partition("_")
    if quote != SETTLE or not base:
        raise ValueError(f"{symbol}: not a USDT perpetual contract id")
    return base, symbol


@dataclass
class _Position:
    contract: str
    size: Decimal  # signed, in contracts
    entry: Decimal
    isolated: bool
    margin: Decimal  # isolated margin; 0 for cross
    leverage: Decimal
    mode: str  # single / dual_long / dual_short
    open_time: int
    # Position ``update_id``, "increments by 1 each time the position is updated": counted
    # here from 1 in each life of the position (a close and a reopen start it again), the case
    # no Gate source rules out (alertd/exchanges/gate.py::_life_sequence)
    update_id: int
    updated_ms: int  # when it was last updated: the push's ``time_ms``, the row's update_time


@dataclass
class _Coin:
    balance: Decimal
    borrowed: Decimal = Decimal(0)
    collateral: bool = True
    price: Decimal | None = None


# "List currency discount tiers" (GET /unified/currency_discount_tiers): the example answer of
# Gate's API v4 docs, as (lower_limit, upper_limit or "+", discount); the limits are USD
# values (Gate's 2024-03-28 announcement of the gradient margin adjustment factors: 200 BTC at
# 70,000 USD count 5M x 1 + 5M x 0.97 + 4M x 0.95)
DISCOUNT_TIERS = {
    "USDT": [("0", "+", "1")],
    "USDC": [
        ("0", "10000000", "1"),
        ("10000000", "15000000", "0.98"),
        ("15000000", "20000000", "0.95"),
        ("20000000", "50000000", "0.925"),
        ("50000000", "100000000", "0.9"),
        ("100000000", "+", "0"),
    ],
    "BTC": [
        ("0", "1000", "0.98"),
        ("1000", "10000", "0.95"),
        ("10000", "50000", "0.9"),
        ("50000", "+", "0.85"),
    ],
    "ETH": [
        ("0", "1000", "0.98"),
        ("1000", "10000", "0.95"),
        ("10000", "50000", "0.9"),
        ("50000", "+", "0.85"),
    ],
}
# "Query unified account tiered loan margin" (GET /unified/loan_margin_tiers), as
# (lower_limit, upper_limit or "", margin_rate), the limits the debt's USD value. USDT: the
# docs' example row (200,000 to 400,000 at 2%) between made-up tiers below and above it; BTC
# and ETH: the tiers Gate announced for XRP ("Gate.io Unified Account to Launch the Second Batch
# of Tiered Borrowing Maintenance Margin Rate on July 11th", 2024: debt size in USD against a
# rate). Each slice of a debt's USD value is at its own tier's rate (gate.com, "Tiered Margin
# Calculation", cross margin: "2,000,000 * 2% + 1,000,000 * 4% = 80,000 USD" for 30 BTC owed
# at 100,000).
LOAN_MARGIN_TIERS = {
    "USDT": [("0", "200000", "0.015"), ("200000", "400000", "0.02"), ("400000", "", "0.03")],
    **{
        ccy: [
            ("0", "500000", "0.05"),
            ("500000", "1000000", "0.07"),
            ("1000000", "2000000", "0.1"),
            ("2000000", "3000000", "0.15"),
            ("3000000", "5000000", "0.2"),
            ("5000000", "", "0.3"),
        ]
        for ccy in ("BTC", "ETH")
    },
}
# the rate of a currency with no tiers listed: the announcements' "original single-tier
# borrowing maintenance margin rate" (XRP's before the change: ">0 | 10%")
SINGLE_TIER_LOAN_RATE = Decimal("0.1")
BISECTIONS = 200  # a multi-currency liquidation price: halvings of the bracket (far below a tick)


MARGIN_MODE_NAMES = {0: "classic", 1: "multi_currency", 2: "portfolio", 3: "single_currency"}


@dataclass
class _Account(shared.Credentials):
    wallet: Decimal
    user_id: int
    positions: dict[tuple[str, str], _Position] = field(default_factory=dict)
    # the futures account's margin_mode: 0 classic, 1 multi-currency, 2 portfolio, 3
    # single-currency (unified account); in 1-3 GET /unified/accounts reports the pool
    margin_mode: int = 0
    tiered_mm: bool = True  # False: an old classic account
    # the unified account's other currencies: balance, borrowed, whether it is collateral
    # and its USD price (None: its USDT perpetual's index, which follows the mark here)
    coins: dict[str, _Coin] = field(default_factory=dict)
    # USDT borrowed in the unified account (its proceeds are in ``wallet``)
    usdt_borrowed: Decimal = Decimal(0)
    # USDT in Simple Earn used as margin (multi-currency mode): in the coin balance and
    # equity, not in Spot Available
    usdt_earn: Decimal = Decimal(0)
    # the account's futures fee rates (VIP levels lower them): GET /futures/usdt/fee, and the
    # taker rate joins the maintenance rate
    taker_fee: Decimal = TAKER_FEE
    maker_fee: Decimal = Decimal("-0.00025")


class _Connection(shared.WsConnection):
    """A Gate futures websocket: Gate names each in its replies (``conn_id``)."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, kind: str) -> None:
        super().__init__(request, ws, kind)
        self.conn_id = secrets.token_hex(8)
        self.size_decimal = request.headers.get("X-Gate-Size-Decimal") == "1"


def _error(status: int, label: str, message: str, **headers: str) -> web.Response:
    return shared.json_response({"label": label, "message": message}, status, headers or None)


def _auth_failed(label: str, message: str) -> dict[str, Any]:
    """Gate's websocket code 4: the REST error body as its message, newline and all (ccxt's
    ``handle_error_message`` sample: ``{"label":"INVALID_KEY","message":"Invalid key
    provided"}\\n``)."""
    return {"code": 4, "message": shared.compact({"label": label, "message": message}) + "\n"}


class FakeGate(FakeExchangeServer[_Account, _Connection]):
    """Gate v4 futures (USDT perpetuals) on ``127.0.0.1``: REST and websocket, one port."""

    NAME: ClassVar[str] = "Gate v4 (USDT perpetual futures)"
    BAN_DURATION_S: ClassVar[float] = 300.0

    def __init__(self, *, mark_interval_s: float | None = None) -> None:
        super().__init__(mark_interval_s=mark_interval_s)
        self._markets: dict[str, _Market] = {}
        self._user_ids = itertools.count(FIRST_USER_ID)
        for contract, mark, quanto, tick, cap, mmr, lev in _DEFAULT_MARKETS:
            self._markets[contract] = _Market(
                contract,
                contract.split("_")[0],
                Decimal(mark),
                Decimal(quanto),
                Decimal(tick),
                _tier_rows(contract, cap, mmr, lev),
            )

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get(WS_PATH, self._ws),
            web.route("*", "/{tail:.*}", self._rest),
        ]

    def _urls(self, http: str, ws: str) -> dict[str, Any]:
        """Every REST section and websocket entry points here, so nothing reaches the real
        Gate; only USDT futures are served."""
        rest = http + API
        sections = (
            "withdrawals", "wallet", "futures", "margin", "delivery", "spot", "options",
            "sub_accounts", "subAccounts", "earn", "unified", "rebate", "account", "loan", "otc",
        )  # fmt: skip
        return {
            "public": dict.fromkeys(sections, rest),
            "private": dict.fromkeys(sections, rest),
            "ws": f"{ws}/v4",
            "spot": f"{ws}/ws/v4/",
            # ccxt tells the market type from the URL: "/ws/futures/" means swap
            "swap": {"usdt": f"{ws}{WS_PATH}", "btc": f"{ws}/v4/ws/futures/btc"},
            "future": {
                "usdt": f"{ws}/v4/ws/delivery/usdt",
                "btc": f"{ws}/v4/ws/delivery/btc",
            },
            "option": {"usdt": f"{ws}/v4/ws/options/usdt", "btc": f"{ws}/v4/ws/options/btc"},
        }

    # ---- markets -------------------------------------------------------------------------------

    def _market_id(self, symbol: str) -> str:
        return _contract_id(symbol)[1]

    @scripted
    def add_symbol(
        self, symbol: str, mark: Num, *, quanto_multiplier: Num = "1", tick_size: Num = "0.0001"
    ) -> None:
        """Add (or replace) a USDT perpetual with generic tiers (cap 200,000, 1%, 50x)."""
        base, contract = _contract_id(symbol)
        self._markets[contract] = _Market(
            contract,
            base,
            shared.positive(mark, "mark"),
            shared.positive(quanto_multiplier, "quanto_multiplier"),
            shared.positive(tick_size, "tick_size"),
            _tier_rows(contract, 200_000, "0.01", 50),
        )

    @scripted
    def set_mark(self, symbol: str, price: Num, *, push: bool = True) -> None:
        """Set the mark (and index and last); ``futures.tickers`` subscribers get an update."""
        market = self._market(symbol)
        market.mark = shared.positive(price, "price")
        if push:
            self._push_ticker(market)

    def _push_ticker(self, market: _Market) -> None:
        frame = self._update("futures.tickers", [self._ticker(market)])
        for conn in self._subscribers(f"futures.tickers:{market.id}"):
            conn.send(frame)

    def _push_periodic_marks(self) -> None:
        for market in self._markets.values():
            self._push_ticker(market)

    def _ticker(self, market: _Market) -> dict[str, Any]:
        """A ``futures.tickers`` entry (Gate's futures websocket docs, "Tickers")."""
        mark = _fmt(market.mark)
        return {
            "contract": market.id,
            "last": mark,
            "change_percentage": "0",
            "funding_rate": "0.0001",
            "funding_rate_indicative": "0.0001",
            "mark_price": mark,
            "index_price": mark,
            "total_size": "73648",
            "volume_24h": "745487577",
            "volume_24h_btc": "117",
            "volume_24h_usd": "419950",
            "quanto_base_rate": "",
            "volume_24h_quote": "1665006",
            "volume_24h_settle": "178",
            "volume_24h_base": "5526",
            "low_24h": _fmt(market.mark * Decimal("0.99")),
            "high_24h": _fmt(market.mark * Decimal("1.01")),
        }

    def _contract_row(self, market: _Market) -> dict[str, Any]:
        """A "List all futures contracts" entry (Gate API docs' response example)."""
        first = market.tiers[0]
        return {
            "name": market.id,
            "type": "direct",
            "quanto_multiplier": _fmt(market.quanto),
            "ref_discount_rate": "0",
            "order_price_deviate": "0.5",
            "maintenance_rate": first["maintenance_rate"],
            "mark_type": "index",
            "last_price": _fmt(market.mark),
            "mark_price": _fmt(market.mark),
            "index_price": _fmt(market.mark),
            "funding_rate_indicative": "0.0001",
            "mark_price_round": _fmt(market.tick),
            "funding_offset": 0,
            "in_delisting": False,
            "risk_limit_base": first["risk_limit"],
            "interest_rate": "0.0003",
            "order_price_round": _fmt(market.tick),
            "order_size_min": 1,
            "ref_rebate_rate": "0.2",
            "funding_interval": 28800,
            "risk_limit_step": first["risk_limit"],
            "leverage_min": "1",
            "leverage_max": first["leverage_max"],
            "risk_limit_max": market.tiers[-1]["risk_limit"],
            "maker_fee_rate": "-0.00025",
            "taker_fee_rate": _fmt(TAKER_FEE),
            "funding_rate": "0.0001",
            "order_size_max": 1000000,
            "funding_next_apply": (int(time.time()) // 28800 + 1) * 28800,
            "short_users": 977,
            "config_change_time": 1609899548,
            "trade_size": 28530850594,
            "position_size": 5223816,
            "long_users": 455,
            "funding_impact_value": "60000",
            "orders_limit": 50,
            "trade_id": 10851092,
            "orderbook_id": 2129638396,
            "enable_bonus": True,
            "enable_credit": True,
            "create_time": 1669688556,
            "funding_cap_ratio": "0.75",
            "status": "trading",
            "launch_time": 1609899548,
            "enable_decimal": True,
        }

    # ---- accounts and positions ----------------------------------------------------------------

    @scripted
    def add_account(
        self,
        api_key: str,
        secret: str,
        wallet_balance: Num = "1000",
        *,
        user_id: int | None = None,
    ) -> None:
        """An account; its Gate user id (``/account/detail``'s ``user_id``) is numbered from
        10406147 unless given."""
        uid = next(self._user_ids) if user_id is None else user_id
        self._accounts[api_key] = _Account(api_key, secret, _dec(wallet_balance, "wallet"), uid)

    @scripted
    def user_id(self, api_key: str) -> int:
        return self._account(api_key).user_id

    def _contract_size(self, market: Any) -> Decimal:
        return Decimal(market.quanto)

    def _open_position(
        self, account: _Account, market: _Market, order: shared.PositionOrder, hedge: bool
    ) -> None:
        """One-way (``single``) replaces the contract's position; ``hedge`` uses
        ``dual_long`` / ``dual_short``. Pushes the row on ``futures.positions``."""
        mode = ("dual_long" if order.long else "dual_short") if hedge else "single"
        old = account.positions.get((market.id, mode))
        position = _Position(
            contract=market.id,
            size=order.size if order.long else -order.size,
            entry=order.entry,
            isolated=order.isolated,
            margin=order.isolated_margin,
            leverage=order.leverage,
            mode=mode,
            open_time=old.open_time if old else int(time.time()),
            update_id=old.update_id + 1 if old else 1,
            updated_ms=now_ms(),
        )
        if hedge:
            account.positions.pop((market.id, "single"), None)
        else:
            account.positions.pop((market.id, "dual_long"), None)
            account.positions.pop((market.id, "dual_short"), None)
        account.positions[(market.id, mode)] = position
        self._push_position(account, position)

    @scripted
    def close_position(self, api_key: str, symbol: str, side: str | None = None) -> None:
        """Close the contract's position(s) (``side`` picks a hedge leg); pushes size 0."""
        account = self._account(api_key)
        market = self._market(symbol)
        modes = ["single", "dual_long", "dual_short"]
        if side is not None:
            modes = ["dual_long" if shared.parse_side(side) else "dual_short", "single"]
        for mode in modes:
            position = account.positions.pop((market.id, mode), None)
            if position is not None:
                position.size = Decimal(0)
                position.update_id += 1
                position.updated_ms = now_ms()
                self._push_position(account, position)
                return

    @scripted
    def set_balance(self, api_key: str, wallet_balance: Num) -> None:
        """Set ``total``; ``futures.balances`` subscribers get the change (type ``dnw``)."""
        account = self._account(api_key)
        new = _dec(wallet_balance, "wallet")
        change, account.wallet = new - account.wallet, new
        now = now_ms()
        entry = {
            "balance": float(new),
            "change": float(change),
            "text": "-",
            "time": now // 1000,
            "time_ms": now,
            "type": "dnw",
            "user": str(account.user_id),
        }
        frame = self._update("futures.balances", [entry])
        self._push_private(account, "futures.balances", lambda conn: frame)

    def _push_position(self, account: _Account, position: _Position) -> None:
        made = replace(position)  # as it is now, sent now or, held, later
        self._push_private(
            account,
            "futures.positions",
            lambda conn: self._update(
                "futures.positions",
                [self._position_row(account, made, conn.size_decimal, ws=True)],
            ),
        )

    def _push_private(
        self, account: _Account, channel: str, frame: Callable[[_Connection], dict[str, Any]]
    ) -> None:
        """Send a private push to the account's subscribers of ``channel`` now, or in its
        turn where its pushes are held (:meth:`delay_pushes`)."""

        def send() -> None:
            for conn in self._private_subscribers(account, channel):
                conn.send(frame(conn))

        if not self._held_push(account.api_key, send):
            send()

    def _private_subscribers(self, account: _Account, channel: str) -> list[_Connection]:
        return [
            c
            for c in self._subscribers(channel)
            if c.owner == account.api_key and c.live and not c.muted
        ]

    # ---- figures -------------------------------------------------------------------------------

    def _upl(self, position: _Position) -> Decimal:
        market = self._markets[position.contract]
        return position.size * market.quanto * (market.mark - position.entry)

    def _value(self, position: _Position) -> Decimal:
        market = self._markets[position.contract]
        return abs(position.size) * market.quanto * market.mark

    def _mm(self, account: _Account, position: _Position) -> Decimal:
        return self._markets[position.contract].mm(self._value(position), account.taker_fee)[0]

    def _liq_price(self, account: _Account, position: _Position) -> Decimal:
        market = self._markets[position.contract]
        qty = position.size * market.quanto  # signed, in base units
        if qty == 0:
            return Decimal(0)
        if account.margin_mode == 1 and not position.isolated:
            return self._multi_currency_liq(account, position)
        _, rate, deduction = market.mm(self._value(position), account.taker_fee)
        if position.isolated:
            cushion = position.margin
        else:  # the rest of the cross account, held fixed at today's marks
            others = [p for p in account.positions.values() if p is not position]
            cross = [p for p in others if not p.isolated]
            cushion = (
                account.wallet
                - sum((p.margin for p in others if p.isolated), Decimal(0))
                + sum((self._upl(p) for p in cross), Decimal(0))
                - sum((self._mm(account, p) for p in cross), Decimal(0))
            )
        # cushion + qty * (P - entry) = |qty| * P * rate - deduction
        price = (qty * position.entry - cushion - deduction) / (qty - abs(qty) * rate)
        return max(_to_tick(price, market.tick, up=qty > 0), Decimal(0))

    def _position_row(
        self, account: _Account, position: _Position, size_decimal: bool, *, ws: bool = False
    ) -> dict[str, Any]:
        """A position as "List all positions of a user" answers it (real answer: ccxt's
        gate.json ``fetchPositions``), or as a ``futures.positions`` push (ccxt's
        ``handle_positions`` sample: numbers, not strings)."""
        market = self._markets[position.contract]
        value = self._value(position)
        mm, _, _ = market.mm(value, account.taker_fee)
        tier = market.tier(value)
        upl = self._upl(position)
        im = value / position.leverage
        lev_field = _fmt(position.leverage) if position.isolated else "0"
        size: Any = position.size
        if not size_decimal:
            size = int(size.to_integral_value(rounding=ROUND_DOWN))
        row: dict[str, Any] = {
            "value": _fmt(value, 8),
            "leverage": lev_field,
            "mode": position.mode,
            "realised_point": "0",
            "contract": position.contract,
            "entry_price": _fmt(position.entry) if position.size else "0",
            "mark_price": _fmt(market.mark),
            "history_point": "0",
            "realised_pnl": "0",
            "close_order": None,
            "size": _fmt(size) if size_decimal else size,
            "cross_leverage_limit": "0" if position.isolated else _fmt(position.leverage),
            "pending_orders": "0",
            "adl_ranking": "5",
            "maintenance_rate": tier["maintenance_rate"],
            "unrealised_pnl": _fmt(upl, 8),
            "user": str(account.user_id),
            "leverage_max": tier["leverage_max"],
            "history_pnl": "0",
            "risk_limit": tier["risk_limit"],
            "margin": _fmt(position.margin if position.isolated else im, 8),
            "last_close_pnl": "0",
            "liq_price": _fmt(self._liq_price(account, position)),
            "update_time": position.updated_ms // 1000,
            "update_id": str(position.update_id),
            "initial_margin": _fmt(im, 8),
            "maintenance_margin": _fmt(mm, 8),
            "open_time": str(position.open_time),
            "trade_max_size": "0",
            "pos_margin_mode": "isolated" if position.isolated else "cross",
            "lever": _fmt(position.leverage),
        }
        if ws:
            numeric = ("entry_price", "leverage", "cross_leverage_limit", "liq_price", "margin")
            # the channel's fields (futures.positions, "Positions notification"; ccxt's recorded
            # push): no value, mark, close order, update or open time of the REST row
            rest_only = ("value", "mark_price", "close_order", "update_time", "open_time")
            row = {k: v for k, v in row.items() if k not in rest_only}
            for key in (*numeric, "maintenance_rate", "leverage_max", "risk_limit"):
                row[key] = float(row[key])
            if not size_decimal:
                row["size"] = size
            made = position.updated_ms
            row.update(time=made // 1000, time_ms=made, update_id=position.update_id)
        return row

    @scripted
    def set_margin_mode(self, api_key: str, margin_mode: int, *, tiered_mm: bool = True) -> None:
        """Script the account's mode as its futures account reports it (``margin_mode``,
        ``enable_tiered_mm``)."""
        account = self._account(api_key)
        account.margin_mode = margin_mode
        account.tiered_mm = tiered_mm

    @scripted
    def set_coin(
        self,
        api_key: str,
        currency: str,
        balance: Num,
        *,
        borrowed: Num = "0",
        collateral: bool = True,
        price: Num | None = None,
    ) -> None:
        """Script a currency of the unified account besides USDT: its balance, borrowed
        amount, whether it is enabled as collateral and its USD price (default: its USDT
        perpetual's index price, which follows the mark here)."""
        self._account(api_key).coins[currency] = _Coin(
            _dec(balance), _dec(borrowed), collateral, None if price is None else _dec(price)
        )

    @scripted
    def set_usdt_borrowed(self, api_key: str, borrowed: Num) -> None:
        """Script USDT borrowed in the unified account (its proceeds are in the wallet: set
        the balance to hold them)."""
        self._account(api_key).usdt_borrowed = _dec(borrowed)

    @scripted
    def set_usdt_earn(self, api_key: str, amount: Num) -> None:
        """Script USDT in Simple Earn used as the unified account's margin (``use_funding``
        on while it is above 0; multi-currency mode)."""
        self._account(api_key).usdt_earn = _dec(amount)

    @scripted
    def set_fee_rate(self, api_key: str, taker: Num, maker: Num = "-0.00025") -> None:
        """Script the account's futures fee rates (a VIP level): ``/futures/usdt/fee`` answers
        them, and the taker rate joins the maintenance rate from now on."""
        account = self._account(api_key)
        account.taker_fee = _dec(taker)
        account.maker_fee = _dec(maker)

    def _fee(self, account: _Account, params: dict[str, str]) -> Any:
        """ "Query user trading fee rates" (GET /futures/{settle}/fee): a map of contract to
        its ``taker_fee`` and ``maker_fee`` (gateio/gateapi-csharp docs/FuturesFee.md: "the
        key represents the market and the value represents the taker and maker fee rates");
        ``contract`` narrows it to one."""
        wanted = params.get("contract")
        if wanted is not None and wanted not in self._markets:
            raise Reject(_error(400, "CONTRACT_NOT_FOUND", f"contract {wanted} not found"))
        fee = {"taker_fee": _fmt(account.taker_fee), "maker_fee": _fmt(account.maker_fee)}
        return {c: dict(fee) for c in self._markets if wanted in (None, c)}

    def _coin_price(self, currency: str, coin: _Coin, marks: dict[str, Decimal]) -> Decimal:
        """A currency's USD price: scripted, or its USDT perpetual's index (= its mark)."""
        if coin.price is not None:
            return coin.price
        market = self._markets.get(f"{currency}_{SETTLE}")
        if market is None:
            raise ValueError(f"{currency}: no price and no {currency}_{SETTLE} perpetual")
        return marks.get(market.id, market.mark)

    @staticmethod
    def _loan_margin(currency: str, debt: Decimal) -> Decimal:
        """The borrowing maintenance margin of a USD ``debt`` in ``currency``: each slice of
        it between a tier's limits at that tier's rate (the last tier's rate past its limit)."""
        tiers = LOAN_MARGIN_TIERS.get(currency)
        if not tiers:
            return debt * SINGLE_TIER_LOAN_RATE
        out = Decimal(0)
        for i, (low, high, rate) in enumerate(tiers):
            top = debt if high == "" or i == len(tiers) - 1 else min(debt, Decimal(high))
            if top > Decimal(low):
                out += (top - Decimal(low)) * Decimal(rate)
        return out

    @staticmethod
    def _discounted(currency: str, value: Decimal) -> Decimal:
        """A positive USD ``value`` of ``currency`` after its discount tiers (a currency with
        no tiers counts nothing)."""
        out = Decimal(0)
        for low, high, rate in DISCOUNT_TIERS.get(currency, ()):
            top = value if high == "+" else min(value, Decimal(high))
            if top > Decimal(low):
                out += (top - Decimal(low)) * Decimal(rate)
        return out

    def _multi_currency(
        self, account: _Account, marks: dict[str, Decimal] | None = None
    ) -> tuple[Decimal, Decimal, Decimal]:
        """A multi-currency account's (total margin balance, total maintenance margin, USDT
        equity) at its marks or at ``marks`` (contract -> mark) where given. Margin balance:
        every currency's equity (balance - borrowed; USDT's holds the cross positions' PnL)
        at its USD price, a positive one times its discount tiers by USD value, a negative one
        in full (USDT at par with USD). Maintenance margin: the cross positions' (risk limit
        tiers, the taker fee added) plus each liability's USD value, sliced at its loan tiers' rates
        (borrowed + a negative balance; USDT's: a negative equity, "Coin Liabilities =
        Borrowed + ABS(Min(Spot Available + Futures Unrealized PnL + Options Value, 0))")."""
        moved = marks or {}

        def mark(p: _Position) -> Decimal:
            return moved.get(p.contract, self._markets[p.contract].mark)

        positions = list(account.positions.values())
        cross = [p for p in positions if not p.isolated]
        iso_margin = sum((p.margin for p in positions if p.isolated), Decimal(0))
        quanto = {p.contract: self._markets[p.contract].quanto for p in positions}
        upl = sum((p.size * quanto[p.contract] * (mark(p) - p.entry) for p in cross), Decimal(0))
        # "Spot Available + Futures Unrealized PnL": the wallet (the loan's proceeds in it) less
        # the isolated margin, plus the cross PnL; the equity ("Coin Balance - Borrowed +
        # Coin Futures Unrealized PnL", the balance holding Simple Earn funds as margin) is
        # net of the loan
        spot = account.wallet - iso_margin + upl
        usdt = spot + account.usdt_earn - account.usdt_borrowed
        mm = sum(
            (
                self._markets[p.contract].mm(
                    abs(p.size) * quanto[p.contract] * mark(p), account.taker_fee
                )[0]
                for p in cross
            ),
            Decimal(0),
        )
        balance = self._discounted(SETTLE, usdt) if usdt > 0 else usdt
        # "Coin Liabilities = Borrowed + ABS(Min(Spot Available + Futures Unrealized PnL, 0))"
        owed = account.usdt_borrowed + max(-spot, Decimal(0))
        mm += self._loan_margin(SETTLE, owed)
        for currency, coin in account.coins.items():
            price = self._coin_price(currency, coin, moved)
            equity = coin.balance - coin.borrowed
            if equity < 0:
                balance += equity * price
            elif coin.collateral:
                balance += self._discounted(currency, equity * price)
            debt = (coin.borrowed + max(-coin.balance, Decimal(0))) * price
            mm += self._loan_margin(currency, debt)
        return balance, mm, usdt

    def _multi_currency_liq(self, account: _Account, position: _Position) -> Decimal:
        """The mark of ``position``'s contract at which the multi-currency account's margin
        balance equals its maintenance margin, the currencies priced by that contract moving
        too, other marks held: bisected (tiers make it piecewise), longs rounded up and
        shorts down to the tick; 0 when no mark liquidates it."""
        market = self._markets[position.contract]

        def surplus(price: Decimal) -> Decimal:
            balance, mm, _ = self._multi_currency(account, {market.id: price})
            return balance - mm

        long = position.size > 0
        unsafe, safe = (Decimal(0), market.mark) if long else (market.mark * 1000, market.mark)
        if surplus(unsafe) >= 0 or surplus(safe) < 0:
            return Decimal(0)
        for _ in range(BISECTIONS):
            mid = (unsafe + safe) / 2
            if surplus(mid) < 0:
                unsafe = mid
            else:
                safe = mid
        return max(_to_tick(safe, market.tick, up=long), Decimal(0))

    @staticmethod
    def _tier_answer(
        tables: dict[str, list[tuple[str, str, str]]], key: str, rate: str, leverage: str
    ) -> list[Any]:
        """One unified-account tier answer: each currency's tiers under ``key``."""
        return [
            {
                "currency": currency,
                key: [
                    {
                        "tier": str(i + 1),
                        rate: value,
                        "lower_limit": low,
                        "upper_limit": high,
                        "leverage": leverage,
                    }
                    for i, (low, high, value) in enumerate(tiers)
                ],
            }
            for currency, tiers in tables.items()
        ]

    def _discount_tiers(self, account: _Account, params: dict[str, str]) -> list[Any]:
        """ "List currency discount tiers", nested in one more list as the docs' example is."""
        return [self._tier_answer(DISCOUNT_TIERS, "discount_tiers", "discount", "10")]

    def _loan_margin_tiers(self, account: _Account, params: dict[str, str]) -> list[Any]:
        """ "Query unified account tiered loan margin" (a plain list, as the docs' example)."""
        return self._tier_answer(LOAN_MARGIN_TIERS, "margin_tiers", "margin_rate", "3")

    def _unified_account(self, account: _Account) -> dict[str, Any]:
        """ "Get unified account information" (gateapi-python UnifiedAccount, UnifiedBalance):
        in single-currency mode the USDT cross pool in ``balances.USDT`` (``margin_balance``,
        ``mm``, ``mmr``) and the totals 0; in the other modes the totals over every currency."""
        futures = self._futures_account(account)
        iso_margin = futures["isolated_position_margin"]
        zero = {"margin_balance": "0", "mm": "0", "mmr": "0", "im": "0", "imr": "0"}
        loan = account.usdt_borrowed if account.margin_mode != 3 else Decimal(0)
        if account.margin_mode == 3:
            usdt = Decimal(futures["cross_margin_balance"])
            mm = Decimal(futures["cross_maintenance_margin"])
            settle = {
                "equity": _fmt(usdt, 8),
                "cross_balance": _fmt(usdt, 8),
                "margin_balance": _fmt(usdt, 8),
                "mm": _fmt(mm, 8),
                "mmr": _fmt(usdt / mm, 4) if mm else "0",
                "im": futures["cross_initial_margin"],
            }
            total, total_mm, coins = Decimal(0), Decimal(0), {}
        else:
            total, total_mm, usdt = self._multi_currency(account)
            settle = {**zero, "equity": _fmt(usdt, 8), "cross_balance": "0"}
            coins = {
                currency: {
                    **zero,
                    "available": _fmt(max(coin.balance, Decimal(0))),
                    "freeze": "0",
                    "borrowed": _fmt(coin.borrowed),
                    "negative_liab": _fmt(max(-coin.balance, Decimal(0))),
                    "futures_pos_liab": "0",
                    "equity": _fmt(coin.balance - coin.borrowed),
                    "total_liab": _fmt(coin.borrowed + max(-coin.balance, Decimal(0))),
                    "cross_balance": "0",
                    "iso_balance": "0",
                    "enabled_collateral": coin.collateral,
                }
                for currency, coin in account.coins.items()
            }
        balances = {
            SETTLE: {
                "available": futures["available"],
                "freeze": "0",
                "borrowed": _fmt(loan),
                "negative_liab": "0",
                "futures_pos_liab": "0",
                "total_liab": _fmt(loan),
                "funding": _fmt(account.usdt_earn if account.margin_mode != 3 else Decimal(0)),
                "iso_balance": iso_margin,
                "enabled_collateral": True,
                **settle,
            },
            **coins,
        }
        return {
            "user_id": account.user_id,
            "refresh_time": now_ms(),
            "locked": False,
            "mode": MARGIN_MODE_NAMES[account.margin_mode],
            "balances": balances,
            "total": _fmt(total, 8),
            "borrowed": "0",
            "total_initial_margin": "0"
            if account.margin_mode == 3
            else futures["cross_initial_margin"],
            "total_margin_balance": _fmt(total, 8),
            "total_maintenance_margin": _fmt(total_mm, 8),
            "total_initial_margin_rate": "0",
            "total_maintenance_margin_rate": _fmt(total / total_mm, 4) if total_mm else "0",
            "total_available_margin": futures["available"],
            "unified_account_total": _fmt(total, 8),
            "unified_account_total_liab": "0",
            "unified_account_total_equity": _fmt(total, 8),
            "leverage": "3",
            "use_funding": account.usdt_earn > 0 and account.margin_mode != 3,
        }

    def _futures_account(self, account: _Account) -> dict[str, Any]:
        """ "Query futures account" (Gate API docs' example, a new-classic account)."""
        positions = list(account.positions.values())
        cross = [p for p in positions if not p.isolated]
        isolated_margin = sum((p.margin for p in positions if p.isolated), Decimal(0))
        upl = sum((self._upl(p) for p in positions), Decimal(0))
        cross_upl = sum((self._upl(p) for p in cross), Decimal(0))
        cross_mm = sum((self._mm(account, p) for p in cross), Decimal(0))
        cross_im = sum((self._value(p) / p.leverage for p in cross), Decimal(0))
        balance = account.wallet - isolated_margin + cross_upl
        available = max(balance - cross_im, Decimal(0))
        return {
            "user": account.user_id,
            "currency": SETTLE,
            "total": _fmt(account.wallet),
            "unrealised_pnl": _fmt(upl, 8),
            "position_margin": _fmt(isolated_margin, 8),
            "order_margin": "0",
            "available": _fmt(available, 8),
            "point": "0",
            "bonus": "0",
            "in_dual_mode": any(p.mode != "single" for p in positions),
            "enable_evolved_classic": False,
            "cross_initial_margin": _fmt(cross_im, 8),
            "cross_maintenance_margin": _fmt(cross_mm, 8),
            "cross_order_margin": "0",
            "cross_unrealised_pnl": _fmt(cross_upl, 8),
            "cross_available": _fmt(available, 8),
            "cross_margin_balance": _fmt(balance, 8),
            "cross_mmr": _fmt(balance / cross_mm, 4) if cross_mm else "0",
            "cross_imr": _fmt(balance / cross_im, 4) if cross_im else "0",
            "isolated_position_margin": _fmt(isolated_margin, 8),
            "enable_tiered_mm": account.tiered_mm,
            # Gate API v4 docs, futures account: 0 classic, 1 multi-currency, 2 portfolio,
            # 3 single-currency margin
            "margin_mode": account.margin_mode,
            "margin_mode_name": MARGIN_MODE_NAMES[account.margin_mode],
        }

    # ---- REST ----------------------------------------------------------------------------------

    def _error_response(self, status: int, retry_after_s: float | None) -> web.StreamResponse:
        if status == 429:
            reset = now_ms() + int((retry_after_s or 1) * 1000)
            return _error(
                429,
                "TOO_MANY_REQUESTS",
                "Request Rate limit Exceeded",
                **{
                    "X-Gate-RateLimit-Requests-Remain": "0",
                    "X-Gate-RateLimit-Limit": "200",
                    "X-Gate-RateLimit-Reset-Timestamp": str(reset),
                },
            )
        if status >= 500:
            return _error(status, "SERVER_ERROR", "Internal server error")
        return _error(status, "INVALID_PARAM_VALUE", "invalid argument")

    def _key_rejected(self, rejection: shared.KeyRejection) -> web.Response:
        if rejection.problem is shared.KeyProblem.BANNED:
            return _error(
                429,
                "TOO_MANY_REQUESTS",
                "Request Rate limit Exceeded",
                **{"X-Gate-RateLimit-Reset-Timestamp": str(rejection.banned_until_ms)},
            )
        if rejection.problem is shared.KeyProblem.MISSING:
            return _error(401, "MISSING_REQUIRED_HEADER", "Missing required header: KEY")
        return _error(401, "INVALID_KEY", "Invalid key provided")

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if not path.startswith(API + "/"):
            raise Reject(_error(404, "NOT_FOUND", f"{request.method} {path} not found"))
        route = path[len(API) :]
        params = dict(request.query)
        body = await request.text()
        public: dict[str, Callable[[dict[str, str]], Any]] = {
            "/futures/usdt/contracts": self._contracts,
            "/futures/usdt/tickers": self._tickers,
            "/futures/usdt/risk_limit_tiers": self._risk_limit_tiers,
            "/futures/usdt/candlesticks": self._candlesticks,
            "/futures/usdt/order_book": self._order_book,
            "/spot/currencies": self._currencies,
            "/spot/currency_pairs": lambda p: [],
            "/margin/currency_pairs": lambda p: [],
            "/futures/btc/contracts": lambda p: [],
            "/delivery/usdt/contracts": lambda p: [],
            "/delivery/btc/contracts": lambda p: [],
            "/options/underlyings": lambda p: [],
        }
        private: dict[str, Callable[[_Account, dict[str, str]], Any]] = {
            "/account/detail": self._account_detail,
            "/futures/usdt/positions": self._positions,
            "/futures/usdt/accounts": lambda account, p: self._futures_account(account),
            "/unified/accounts": lambda account, p: self._unified_account(account),
            "/unified/currency_discount_tiers": self._discount_tiers,
            "/unified/loan_margin_tiers": self._loan_margin_tiers,
            "/futures/usdt/price_orders": self._price_orders,
            "/futures/usdt/fee": self._fee,
        }
        if request.method == "GET" and route in public:
            return shared.json_response(public[route](params))
        if request.method == "GET" and route in private:
            account = self._signed(request, body)
            if route == "/futures/usdt/positions":
                params["size_decimal"] = request.headers.get("X-Gate-Size-Decimal", "")
            answer = private[route](account, params)
            return shared.json_response(answer)
        raise Reject(_error(404, "NOT_FOUND", f"{request.method} {path} not found"))

    # ---- open price-triggered orders (GET /futures/{settle}/price_orders) ----------------------

    def _price_order(self, account: _Account, stop: StopOrderSpec) -> dict[str, Any]:
        """A stop as Gate lists an open FuturesPriceTriggeredOrder: a position's full close
        (size 0, ``close`` in single mode, ``auto_size`` in dual mode) or a partial plan close
        (size signed: negative sells, closing a long); ``trigger.rule`` 1 is >=, 2 is <=."""
        full = stop.contracts is None
        size = 0 if full else int(stop.contracts) * (-1 if stop.sell else 1)  # type: ignore[arg-type]
        plan = "" if full else "plan-"
        return {
            "initial": {
                "contract": stop.market.id,
                "size": size,
                "price": "0",
                "close": full and not stop.hedge,
                "tif": "ioc",
                "text": "api",
                "reduce_only": not full,
                "auto_size": f"close_{stop.side}" if full and stop.hedge else "",
                "is_reduce_only": True,
                "is_close": full,
            },
            "trigger": {
                "strategy_type": 0,
                "price_type": 1,
                "price": str(stop.trigger),
                "rule": 2 if stop.falls else 1,
                "expiration": 0,
            },
            "id": int(stop.order_id),
            "user": account.user_id,
            "create_time": stop.created_ms / 1000,
            "finish_time": 0,
            "trade_id": 0,
            "status": "open",
            "finish_as": "",
            "reason": "",
            "order_type": f"{plan}close-{stop.side}-position",
            "me_order_id": 0,
        }

    def _push_stop(self, api_key: str, stop: StopOrderSpec, event: str) -> None:
        """The private ``futures.autoorders`` channel (futures websocket, "Auto orders"): the
        price-triggered order, "open" when placed, "finished" (``finish_as`` cancelled) when
        cancelled."""
        account = self._accounts[api_key]
        row = self._price_order(account, stop)
        if event != "new":
            row.update(status="finished", finish_as="cancelled")
        frame = self._update("futures.autoorders", [row])
        self._push_private(account, "futures.autoorders", lambda conn: frame)

    def _price_orders(self, account: _Account, params: dict[str, str]) -> list[Any]:
        if params.get("status") not in ("open", "finished"):
            raise Reject(_error(400, "INVALID_PARAM_VALUE", "status is required"))
        if params["status"] == "finished":
            return []
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100))
        rows = [
            self._price_order(account, stop)
            for stop in reversed(self.stops(account.api_key))
            if params.get("contract") in (None, stop.market.id)
        ]
        return rows[offset : offset + limit]

    def _candlesticks(self, params: dict[str, str]) -> list[dict[str, Any]]:
        # Gate v4 "Get futures candlesticks": contract ("mark_" + id for mark prices),
        # interval (1m, 5m, 15m, 1h, ...), from/to (seconds) or limit (not both); oldest first,
        # {t (seconds), o, h, l, c} (gate.com/docs/developers/apiv4, futures-market-k-line-chart)
        minutes = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240}.get(
            params.get("interval", "5m")
        )
        contract = params.get("contract", "")
        if minutes is None:
            raise Reject(_error(400, "INVALID_PARAM_VALUE", "invalid interval"))
        if "limit" in params and ("from" in params or "to" in params):
            raise Reject(_error(400, "INVALID_PARAM_VALUE", "limit is conflicted with from/to"))
        if not contract.startswith("mark_"):
            return []  # only mark-price candles are served
        rows = self.mark_candles(
            contract.removeprefix("mark_"),
            minutes * 60_000,
            int(params.get("from", 0)) * 1000,
            int(params.get("to", 2**40)) * 1000,
            min(int(params.get("limit", 100)), 2000),
        )
        return [{"t": t // 1000, "o": o, "h": h, "l": low, "c": c} for t, o, h, low, c in rows]

    def _signed(self, request: web.Request, body: str) -> _Account:
        """The account of a signed request (``KEY``, ``Timestamp``, ``SIGN``), else Gate's
        refusal (``Reject``)."""
        account = self._authorized(request.headers.get("KEY"))
        stamp = request.headers.get("Timestamp", "")
        try:
            skew = abs(time.time() - float(stamp))
        except ValueError:
            skew = float("inf")
        if skew > SIGNATURE_WINDOW_S:
            raise Reject(
                _error(
                    401,
                    "REQUEST_EXPIRED",
                    f"gap between request Timestamp and server time exceeds {SIGNATURE_WINDOW_S}",
                )
            )
        body_hash = hashlib.sha512(body.encode()).hexdigest()
        query = unquote(request.query_string)
        payload = "\n".join([request.method, request.path, query, body_hash, stamp])
        expected = hmac.new(account.secret.encode(), payload.encode(), hashlib.sha512).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("SIGN", "")):
            raise Reject(_error(401, "INVALID_SIGNATURE", "Signature mismatch"))
        return account

    @staticmethod
    def _page(rows: list[Any], params: dict[str, str]) -> list[Any]:
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
            offset = int(params.get("offset", 0))
        except ValueError:
            raise Reject(_error(400, "INVALID_PARAM_VALUE", "invalid argument: limit")) from None
        if limit < 1 or offset < 0:
            raise Reject(_error(400, "INVALID_PARAM_VALUE", "invalid argument: limit"))
        return rows[offset : offset + limit]

    def _known(self, contract: str | None) -> _Market:
        market = self._markets.get(contract or "")
        if market is None:
            raise Reject(_error(400, "CONTRACT_NOT_FOUND", f"Contract {contract} not found"))
        return market

    def _order_book(self, params: dict[str, str]) -> dict[str, Any]:
        # "Futures order book": contract, interval, limit (1-300, default 10), with_id;
        # {"id" (with_id), "current", "update" (seconds, float), "asks", "bids"}, each level
        # {"p": price, "s": size in contracts} (gate.com/docs/developers/apiv4,
        # #futures-order-book)
        market = self._known(params.get("contract"))
        limit = params.get("limit", "10")
        if not limit.isdigit() or not 1 <= int(limit) <= 300:
            raise Reject(_error(400, "INVALID_PARAM_VALUE", "invalid argument: limit"))
        bids, asks = self.order_book(market.id, int(limit))
        now = time.time()
        answer: dict[str, Any] = {
            "current": round(now, 3),
            "update": round(now, 3),
            "asks": [{"p": p, "s": int(Decimal(s))} for p, s in asks],
            "bids": [{"p": p, "s": int(Decimal(s))} for p, s in bids],
        }
        if params.get("with_id") == "true":
            answer = {"id": int(now * 1000), **answer}
        return answer

    def _contracts(self, params: dict[str, str]) -> list[dict[str, Any]]:
        rows = [self._contract_row(m) for m in self._markets.values()]
        return list(self._page(rows, params))

    def _tickers(self, params: dict[str, str]) -> list[dict[str, Any]]:
        contract = params.get("contract")
        markets = [self._known(contract)] if contract else list(self._markets.values())
        return [self._ticker(m) for m in markets]

    def _risk_limit_tiers(self, params: dict[str, str]) -> list[dict[str, Any]]:
        contract = params.get("contract")
        markets = [self._known(contract)] if contract else list(self._markets.values())
        rows = [row for m in markets for row in m.tiers]
        return list(self._page(rows, params))

    def _currencies(self, params: dict[str, str]) -> list[dict[str, Any]]:
        coins = [SETTLE, *sorted({m.base for m in self._markets.values()})]
        return [
            {
                "currency": coin,
                "name": coin,
                "delisted": False,
                "withdraw_disabled": False,
                "withdraw_delayed": False,
                "deposit_disabled": False,
                "trade_disabled": False,
                "fixed_rate": "",
                "chain": "ETH" if coin == SETTLE else coin,
                "chains": [
                    {
                        "name": "ETH" if coin == SETTLE else coin,
                        "addr": "",
                        "withdraw_disabled": False,
                        "withdraw_delayed": False,
                        "deposit_disabled": False,
                    }
                ],
            }
            for coin in coins
        ]

    @staticmethod
    def _account_detail(account: _Account, params: dict[str, str]) -> dict[str, Any]:
        """ "Get account detail" (Gate API docs): ``key.mode`` 1 is a classic account."""
        return {
            "user_id": account.user_id,
            "ip_whitelist": [],
            "currency_pairs": [],
            "key": {"mode": 1},
            "tier": 0,
            "copy_trading_role": 0,
        }

    def _positions(self, account: _Account, params: dict[str, str]) -> list[dict[str, Any]]:
        size_decimal = params.get("size_decimal") == "1"  # the X-Gate-Size-Decimal header
        rows = [
            self._position_row(account, p, size_decimal)
            for p in sorted(account.positions.values(), key=lambda p: (p.contract, p.mode))
        ]
        return list(self._page(rows, params))

    # ---- websocket -----------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_ws(
            request, lambda req, ws: _Connection(req, ws, "public"), self._on_text
        )

    @staticmethod
    def _update(channel: str, result: Any) -> dict[str, Any]:
        now = now_ms()
        return {
            "time": now // 1000,
            "time_ms": now,
            "channel": channel,
            "event": "update",
            "result": result,
        }

    def _reply(self, conn: _Connection, msg: dict[str, Any], event: str) -> dict[str, Any]:
        now = now_ms()
        trace = secrets.token_hex(16)
        reply: dict[str, Any] = {"time": now // 1000, "time_ms": now}
        if msg.get("id") is not None:
            reply["id"] = msg["id"]
        reply.update(conn_id=conn.conn_id, trace_id=trace, channel=msg.get("channel", ""))
        reply["event"] = event
        if "payload" in msg:
            reply["payload"] = msg["payload"]
        return reply

    def _on_text(self, conn: _Connection, text: str) -> None:
        msg = shared.json_object(text)
        if msg is None:
            reply = self._reply(conn, {}, "")
            reply.update(error={"code": 1, "message": "invalid request body format"})
            conn.send(reply)
            return
        channel = str(msg.get("channel", ""))
        event = str(msg.get("event", ""))
        if channel == "futures.ping":
            if self.answers_pings:
                reply = self._reply(conn, msg, "")
                reply.update(channel="futures.pong", result=None)
                conn.send(reply)
            return
        if event in ("subscribe", "unsubscribe"):
            self._subscribe(conn, msg, channel, event)
            return
        reply = self._reply(conn, msg, event)
        reply.update(error={"code": 1, "message": "unknown channel or event"}, result=None)
        conn.send(reply)

    def _subscribe(self, conn: _Connection, msg: dict[str, Any], channel: str, event: str) -> None:
        reply = self._reply(conn, msg, event)
        payload = msg.get("payload")
        items = [str(p) for p in payload] if isinstance(payload, list) else []
        streams, error, account = self._streams(conn, msg, channel, items)
        if error is not None:
            reply.update(error=error, result={"status": "fail"})
            conn.send(reply)
            return
        if event == "subscribe":
            conn.streams.update(streams)
            if account is not None:
                conn.owner = account.api_key
        else:
            conn.streams.difference_update(streams)
        reply.update(result={"status": "success"}, requestId=reply["trace_id"])
        conn.send(reply)
        if event == "subscribe" and channel == "futures.tickers":
            conn.send(self._update(channel, [self._ticker(self._markets[c]) for c in items]))

    def _streams(
        self, conn: _Connection, msg: dict[str, Any], channel: str, items: list[str]
    ) -> tuple[list[str], dict[str, Any] | None, _Account | None]:
        """(streams, Gate's error, the authenticated account) of a (un)subscribe request."""
        if channel == "futures.tickers":
            unknown = [c for c in items if c not in self._markets]
            if not items or unknown:
                return [], {"code": 2, "message": f"unknown contract {','.join(unknown)}"}, None
            return [f"futures.tickers:{c}" for c in items], None, None
        if channel not in PRIVATE_CHANNELS:
            return [], {"code": 2, "message": f"unknown channel {channel}"}, None
        checked = self._ws_auth(msg, channel)
        if isinstance(checked, dict):
            return [], checked, None
        # Gate's futures docs: the private channels' payload starts with the user id
        if not items or items[0] != str(checked.user_id):
            return [], {"code": 2, "message": "invalid argument: user_id"}, None
        return [channel], None, checked

    def _ws_auth(self, msg: dict[str, Any], channel: str) -> _Account | dict[str, Any]:
        """The account of a private request's ``auth``, or Gate's code-4 error (its message the
        REST error body, as Gate sends it: ccxt's ``handle_error_message`` sample)."""
        auth = msg.get("auth")
        if not isinstance(auth, dict) or auth.get("method") != "api_key":
            return _auth_failed("MISSING_REQUIRED_HEADER", "Missing required header: KEY")
        checked = self._authorize(str(auth.get("KEY") or ""))
        if isinstance(checked, shared.KeyRejection):
            if checked.problem is shared.KeyProblem.BANNED:
                return _auth_failed("TOO_MANY_REQUESTS", "Request Rate limit Exceeded")
            return _auth_failed("INVALID_KEY", "Invalid key provided")
        stamp = str(msg.get("time", ""))
        origin = f"channel={channel}&event={msg.get('event')}&time={stamp}"
        expected = hmac.new(checked.secret.encode(), origin.encode(), hashlib.sha512).hexdigest()
        if not hmac.compare_digest(expected, str(auth.get("SIGN", ""))):
            return _auth_failed("INVALID_SIGNATURE", "Signature mismatch")
        return checked

    # ---- failure injection ---------------------------------------------------------------------

    MALFORMED_JSON = '{"time":1,"channel":"futures.tickers","event":"update","result":[{"cont'

    def _garbled_frame(self, stream: str) -> dict[str, Any] | None:
        """A ticker, a position and a balance update with "abc" numbers."""
        if stream.startswith("futures.tickers:"):
            contract = stream.split(":", 1)[1]
            row = {"contract": contract, "mark_price": "abc", "last": "abc"}
            return self._update("futures.tickers", [row])
        if stream == "futures.positions":
            row = {"contract": "BTC_USDT", "size": "abc", "entry_price": "abc"}
            row.update(leverage="abc", margin="abc", mode="single", user="0")
            return self._update(stream, [row])
        if stream == "futures.balances":
            return self._update(stream, [{"balance": "abc", "change": "abc"}])
        return None


# ---- command line --------------------------------------------------------------------------------


def _seed_accounts(fake: FakeGate, count: int) -> None:
    for i in range(count):
        key = f"key{i}"
        fake.add_account(key, f"secret{i}", wallet_balance=str(5000 + 1000 * i))
        btc, eth = fake.mark("BTC_USDT"), fake.mark("ETH_USDT")
        fake.open_position(key, "BTC_USDT", "long", str(100 * (i + 1)), btc * Decimal("0.99"))
        fake.open_position(key, "ETH_USDT", "short", str(50 + 10 * i), eth * Decimal("1.01"))


def main(argv: list[str] | None = None) -> int:
    return shared.serve_main(FakeGate, _seed_accounts, argv, max_step=0.0005)


if __name__ == "__main__":
    sys.exit(main())
