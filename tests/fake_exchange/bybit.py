"""A scriptable local Bybit v5 server (unified trading account, USDT linear perpetuals).

ccxt's own ``ccxt.pro.bybit`` runs against it unmodified: deep-merge ``fake.ccxt_urls()`` over
``exchange.urls['api']`` and pass ``fake.ccxt_options`` as the exchange's options. REST and both
websocket endpoints share one aiohttp application on one loopback port. Response shapes follow
captured Bybit answers (ccxt's ``ts/src/test/static/{response,ws}/bybit.json``) and the v5 API
docs ("Get Instruments Info", "Get Risk Limit", "Get Position Info", "Get Wallet Balance",
websocket "Connect", "Ticker", "Position", "Wallet").

What it serves (paths as on api.bybit.com / stream.bybit.com):
- REST public: ``/v5/market/instruments-info`` (linear; every other category answers an empty
  list), ``/v5/market/risk-limit``, ``/v5/market/tickers``, ``/v5/market/time``,
  ``/v5/spot-margin-trade/collateral`` (tiered collateral value ratios).
- REST signed (``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP``, ``X-BAPI-RECV-WINDOW``, ``X-BAPI-SIGN``
  = HMAC-SHA256 hex of ``timestamp + key + recvWindow + query-or-body``):
  ``/v5/position/list``, ``/v5/account/wallet-balance``, ``/v5/asset/coin/query-info`` (ccxt's
  ``fetch_currencies`` inside ``load_markets``), ``/v5/user/query-api`` and
  ``/v5/account/info`` (ccxt's unified-account probe, skipped with ``ccxt_options``).
  Errors answer HTTP 200 with Bybit's ``retCode``: 10003 unknown key, 10004 bad signature,
  10002 timestamp outside ``recvWindow``, 10006 rate limit (with the ``X-Bapi-Limit*`` headers),
  10001 bad parameters.
- Websocket public ``/v5/public/{linear,spot,inverse,option}``: ``subscribe`` to
  ``tickers.<SYMBOL>`` (a snapshot follows the ack, then deltas), JSON ``ping``.
- Websocket private ``/v5/private``: ``auth`` (``args: [key, expires, hex HMAC of
  "GET/realtime" + expires]``), ``subscribe`` to ``position`` / ``position.linear`` /
  ``wallet`` (and, accepted but silent, ``order`` and ``execution``), JSON ``ping``.

Figures are computed here, independently of alertd, from Bybit's published formulas:
- Risk tier: the first ``riskLimitValue`` at or above the position value. ``MM = value * mmr -
  mmDeduction`` (deduction as published, or the continuous one where Bybit leaves it empty).
  Since 2025-09-02 ("The New Margin Calculation: Adjustments and Implications") MM is valued
  at the mark for cross and isolated positions alike, IM at the mark for cross and at the
  entry for isolated ones, and both hold the estimated fee to close at the bankruptcy price,
  ``size x entry x (1 -+ 1/leverage) x taker fee`` (long -, short +; 0.055%).
- Isolated liquidation price: where ``positionBalance + upl`` meets the MM at that price,
  solved per tier; long rounded up, short down, to tick (fixed: it does not move with the mark).
- ``positionBalance``: ``"0"`` on cross positions, as live frames of open cross positions carry
  it; an isolated position's margin (with none given, its Position IM: the IM at the entry and
  the fee to close) until ``deprecate_position_balance``, then ``"0"`` too (the docs deprecate
  the field); ``positionIMByMp`` / ``positionMMByMp`` on REST and stream.
- Cross liquidation price (UTA estimate): the mark of that symbol at which the cross margin
  balance (wallet - isolated position margin + cross unrealised PnL) equals the cross
  maintenance margin, other marks held (collateral coins whose price follows that market move
  with it); solved exactly per tier, rounded as above.
- Collateral coins (``set_collateral``): each counts ``quantity after its tiered collateral
  value ratio x USD price`` in the margin balance, a liability in full (help centre, "Key
  Terms and Formulas in Unified Trading Account": margin balance "after considering the
  collateral value ratio"; docs "Get Tiered Collateral Ratio").
- Settle coins (USDT, and USDC for its perpetuals; ``set_balance(..., coin=)``): each coin's row
  in its own coin, ``equity = walletBalance - spotBorrow + unrealisedPnl`` of its perpetuals,
  ``usdValue`` at its USD index (``set_usd_price``: USDC at 0.999, a depeg at 0.99); the totals in
  USD: ``totalMarginBalance`` each coin's equity after its tiered collateral value ratio (a
  negative one in full) at its index, plus the collateral coins, ``totalMaintenanceMargin`` each
  coin's ``totalPositionMM`` at its index ("Get Wallet Balance": "∑ Asset Total Maintenance
  Margin"), ``accountMMRate = totalMaintenanceMargin / totalMarginBalance`` (and the IM
  analogues), rates cut to four decimals as Bybit shows them. The cross liquidation price is
  solved over every coin's line the same way.

Simplifications, on purpose: no orders or fills (positions are scripted), no fees charged or
funding, index and last price follow the mark, marks are rounded to the instrument's
``priceScale``, USDT at 1 USD (unless scripted) and its collateral value ratio 1, and
``tradeMode`` 1 marks an isolated position (on a real UTA it is always 0; isolation is the
account's ``marginMode``). Frames are pushed only when scripted (or by
the ``mark_interval_s`` ticker loop), never on price moves.

Connections, queues, drops, unanswered pings (protocol and JSON ``ping``), malformed frames,
scripted REST failures, bans and revoked keys are the shared machinery of ``base.py``; this
module adds Bybit's wire format. A banned key gets HTTP 403 "access too frequent" (Bybit's IP
ban); an unknown or revoked one ``retCode`` 10003. Scripting methods may be called from the
server's loop or from another thread.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import secrets
import string
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, ClassVar
from urllib.parse import unquote

from aiohttp import web

from tests.fake_exchange import base as shared
from tests.fake_exchange.base import FakeExchangeServer, Num, StopOrderSpec, now_ms, scripted
from tests.fake_exchange.base import to_decimal as _dec

__all__ = ["FakeBybit"]

# ccxt bybit.py, is_unified_enabled: a real "Get Account Info" answer (GET /v5/account/info,
# a UTA 1.0 pro account); the local Bybit answers in its fields
ACCOUNT_INFO_EXAMPLE: dict[str, Any] = {
    "marginMode": "REGULAR_MARGIN", "updatedTime": "1697078946000", "unifiedMarginStatus": 4,
    "dcpStatus": "OFF", "timeWindow": 10, "smpGroup": 0, "isMasterTrader": False,
    "spotHedgingStatus": "OFF",
}  # fmt: skip

SETTLE = "USDT"
# USDC perpetuals (``BTCPERP``, ccxt's ``BTC/USDC:USDC``) share the unified account's pool;
# their PnL and MM are USDC's, valued at USDC's USD index (``set_usd_price``; 1 by default)
USDC = "USDC"
# the base taker fee rate of perpetuals (non-VIP): the estimated fee to close a position at
# its bankruptcy price joins IM and MM ("The New Margin Calculation", 2025-09-02)
TAKER_FEE = Decimal("0.00055")
PRIVATE_TOPICS = frozenset(
    {"position", "position.linear", "wallet", "order", "order.linear", "execution"}
)
CATEGORIES = ("linear", "spot", "inverse", "option")


def _risk_table(step: int, first_mmr: str, im_over_mm: str) -> list[dict[str, Any]]:
    """A linear risk-limit table shaped like Bybit's published ones: five equal steps of
    ``riskLimitValue``, the maintenance rate up 0.5% a step, the initial rate ``im_over_mm``
    above it and ``maxLeverage`` its inverse."""
    rows = []
    for n in range(5):
        mmr = Decimal(first_mmr) + Decimal("0.005") * n
        imr = mmr + Decimal(im_over_mm)
        leverage = format((1 / imr).quantize(Decimal("0.01")), "f")
        rows.append(
            {
                "riskLimitValue": str(step * (n + 1)),
                "maintenanceMargin": str(mmr),
                "initialMargin": str(imr),
                "maxLeverage": leverage,
            }
        )
    return rows


_GENERIC_RISK = _risk_table(200_000, "0.01", "0.01")  # a mid-cap's, for added symbols
# (symbol, mark, priceScale, tickSize, qtyStep, maxOrderQty, maxMktOrderQty, launchTime, risk)
_DEFAULT_MARKETS = (
    ("BTC/USDT:USDT", "65000.00", 2, "0.10", "0.001", "1190.000", "500.000", "1585526400000",
     _risk_table(2_000_000, "0.005", "0.005")),
    ("ETH/USDT:USDT", "3500.00", 2, "0.01", "0.01", "7240.00", "3620.00", "1615766400000",
     _risk_table(1_000_000, "0.005", "0.005")),
    ("SOL/USDT:USDT", "150.000", 3, "0.010", "0.1", "79770.0", "39880.0", "1633593600000",
     _GENERIC_RISK),
)  # fmt: skip


# ---- numbers ---------------------------------------------------------------------------------


def _fmt(value: Decimal, places: int = 8) -> str:
    """Plain decimal string, at most ``places`` decimals, no trailing zeros (Bybit's style)."""
    text = format(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _rate(part: Decimal, whole: Decimal) -> str:
    """An account rate as Bybit shows it: cut (not rounded) to four decimals."""
    if whole <= 0:
        return "0" if part == 0 else "1"
    return _fmt((part / whole).quantize(Decimal("0.0001"), rounding=ROUND_DOWN), 4)


def _to_tick(value: Decimal, tick: Decimal, up: bool) -> Decimal:
    steps = (value / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return steps * tick


def _decimals(step: str) -> int:
    return max(0, -Decimal(step).as_tuple().exponent)  # type: ignore[operator]


# ---- markets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tier:
    id: int
    cap: Decimal
    mmr: Decimal
    imr: Decimal
    deduction: Decimal


def _normalize_risk_rows(market_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Complete caller-given risk-limit rows into Bybit's shape, ordered by riskLimitValue."""
    if not rows:
        raise ValueError("risk_limits: at least one row")
    ordered = sorted(rows, key=lambda r: _dec(r["riskLimitValue"], "riskLimitValue"))
    out: list[dict[str, Any]] = []
    prev_cap, prev_mmr, deduction = Decimal(0), Decimal(0), Decimal(0)
    for i, row in enumerate(ordered):
        cap = _dec(row["riskLimitValue"], "riskLimitValue")
        mmr = _dec(row["maintenanceMargin"], "maintenanceMargin")
        if not Decimal(0) <= mmr < 1:
            raise ValueError(f"maintenanceMargin {mmr} is not a fraction in [0, 1)")
        imr = _dec(row.get("initialMargin", mmr * 2), "initialMargin")
        deduction += prev_cap * (mmr - prev_mmr)
        given = row.get("mmDeduction")
        lev = row.get("maxLeverage") or _fmt((1 / imr).quantize(Decimal("0.01")), 2)
        out.append(
            {
                "id": int(row.get("id", i + 1)),
                "symbol": market_id,
                "riskLimitValue": _fmt(cap),
                "maintenanceMargin": _fmt(mmr),
                "initialMargin": _fmt(imr),
                "isLowestRisk": 1 if i == 0 else 0,
                "maxLeverage": str(lev),
                # Bybit leaves the lowest tier's deduction empty
                "mmDeduction": str(given)
                if given is not None
                else ("" if i == 0 else _fmt(deduction)),
            }
        )
        prev_cap, prev_mmr = cap, mmr
    return out


def _tiers(rows: list[dict[str, Any]]) -> list[_Tier]:
    tiers, prev_cap, prev_mmr, continuous = [], Decimal(0), Decimal(0), Decimal(0)
    for row in rows:
        cap, mmr = Decimal(row["riskLimitValue"]), Decimal(row["maintenanceMargin"])
        continuous += prev_cap * (mmr - prev_mmr)
        given = row["mmDeduction"]
        ded = Decimal(given) if given not in ("", None) else continuous
        tiers.append(_Tier(row["id"], cap, mmr, Decimal(row["initialMargin"]), ded))
        prev_cap, prev_mmr = cap, mmr
    return tiers


@dataclass
class _Market:
    symbol: str  # unified, e.g. BTC/USDT:USDT
    id: str  # exchange id, e.g. BTCUSDT
    base: str
    mark: Decimal
    price_scale: int
    tick: Decimal
    qty_step: str
    max_qty: str
    max_mkt_qty: str
    launch: str
    risk_rows: list[dict[str, Any]]
    tiers: list[_Tier] = field(default_factory=list)
    cs: int = 0
    settle: str = SETTLE  # USDT, or USDC for a USDC perpetual (id ``BASEPERP``)

    def __post_init__(self) -> None:
        self.tiers = _tiers(self.risk_rows)
        self.mark = self.round_mark(self.mark)

    def round_mark(self, price: Decimal) -> Decimal:
        return price.quantize(Decimal(1).scaleb(-self.price_scale), rounding=ROUND_HALF_UP)

    def price(self, value: Decimal) -> str:
        return format(self.round_mark(value), "f")

    def tier(self, value: Decimal) -> _Tier:
        for tier in self.tiers:
            if value <= tier.cap:
                return tier
        return self.tiers[-1]

    def mm(self, value: Decimal) -> Decimal:
        tier = self.tier(value)
        return max(value * tier.mmr - tier.deduction, Decimal(0))

    def next_cs(self) -> int:
        self.cs += 1
        return self.cs


def _split_symbol(symbol: str) -> tuple[str, str]:
    """``BTC/USDT:USDT`` (or ``BTCUSDT``) -> (``BTC``, ``BTCUSDT``); a USDC perpetual
    ``BTC/USDC:USDC`` (or ``BTCPERP``) -> (``BTC``, ``BTCPERP``), Bybit's id for it."""
    if "/" in symbol:
        base, rest = symbol.split("/", 1)
        if rest == f"{USDC}:{USDC}":
            return base, base + "PERP"
        if rest != f"{SETTLE}:{SETTLE}":
            raise ValueError(
                f"{symbol}: only linear perpetuals settled in USDT (BASE/USDT:USDT) or USDC"
            )
        return base, base + SETTLE
    for suffix in (SETTLE, "PERP"):
        if symbol.endswith(suffix) and len(symbol) > len(suffix):
            return symbol[: -len(suffix)], symbol
    raise ValueError(f"{symbol}: not a USDT or USDC linear perpetual id")


def _settle_of(market_id: str) -> str:
    return USDC if market_id.endswith("PERP") else SETTLE


def _default_scale(mark: Decimal) -> int:
    digits = len(str(int(abs(mark))))
    return max(1, 6 - digits)


# ---- accounts --------------------------------------------------------------------------------


@dataclass
class _Position:
    symbol: str  # exchange id
    side: str  # "Buy" / "Sell"
    size: Decimal
    entry: Decimal
    isolated: bool
    balance: Decimal | None  # isolated position margin (positionBalance)
    leverage: Decimal
    idx: int  # positionIdx: 0 one-way, 1 hedge long, 2 hedge short
    created_ms: int
    updated_ms: int
    seq: int
    taker_fee: Decimal = TAKER_FEE  # the account's taker rate (``set_fee_rate``)
    gst: Decimal = Decimal(0)  # the tax on the fee, as a share of it (``set_gst``)

    def upl(self, mark: Decimal) -> Decimal:
        diff = mark - self.entry
        return self.size * (diff if self.side == "Buy" else -diff)

    @property
    def close_fee(self) -> Decimal:
        """The estimated fee to close at the bankruptcy price, in IM and MM alike, with the
        GST on it (a live GST-paying position's ``positionMMByMp``: the fee x 1.18)."""
        fee = _close_fee(self.size, self.entry, self.side == "Buy", self.leverage, self.taker_fee)
        return fee + fee * self.gst


def _close_fee(
    size: Decimal, entry: Decimal, long: bool, leverage: Decimal, taker: Decimal
) -> Decimal:
    """``size x entry x (1 -+ 1/leverage) x taker``: at the bankruptcy price (long -, short +)."""
    return size * entry * (1 + (-1 if long else 1) / leverage) * taker


@dataclass
class _Account(shared.Credentials):
    wallet: Decimal
    cum_realised: Decimal = Decimal(0)
    positions: dict[tuple[str, int], _Position] = field(default_factory=dict)
    # /v5/account/info: 1 classic account, 3-6 unified trading account versions (docs v5,
    # "Different Account Modes"); the fake serves the UTA endpoints whatever it says
    unified_margin_status: int = 5
    # /v5/account/info marginMode: REGULAR_MARGIN, ISOLATED_MARGIN or PORTFOLIO_MARGIN
    margin_mode: str = "REGULAR_MARGIN"
    # other collateral coins: coin -> amount (wallet balance less spot borrow; negative: a
    # liability); priced and tiered by the server (``_coin_price``, ``_collateral_tiers``)
    collateral: dict[str, Decimal] = field(default_factory=dict)
    # the wallets of the other settle coins (USDC): coin -> wallet balance; the coin's equity
    # is it plus its perpetuals' PnL ("Get Wallet Balance" ``equity``)
    settle_wallets: dict[str, Decimal] = field(default_factory=dict)
    # the account's fee rates for linear contracts (VIP levels lower them): /v5/account/fee-rate
    taker_fee: Decimal = TAKER_FEE
    maker_fee: Decimal = Decimal("0.0002")
    # India's GST on trading fees of a kyc=IND account, as a share of the fee (``set_gst``):
    # its fills carry it in ``extraFees`` and its fee to close holds it
    gst: Decimal = Decimal(0)
    # how GET /v5/execution/list answers the account (``script_fills``): refused with this
    # retCode; no fill listed (none in Bybit's 7-day window); each fill's ``extraFees`` as given
    fills_refused: int | None = None
    fills_listed: bool = True
    fills_extra: Any = None
    fills_asked: int = 0  # how many times /v5/execution/list was asked
    # the key's "Get API Key Information" (GET /v5/user/query-api): the account's KYC region
    # (an ISO 3166 alpha-3 code, "MYS" in Bybit's example; None: the field left out), or
    # refused with this retCode (``script_key_info``); how many times it was asked
    kyc_region: str | None = "MYS"
    key_info_refused: int | None = None
    key_info_body: str | None = None  # served as is, in place of the answer (``script_key_info``)
    key_info_asked: int = 0
    # the wallet's totalMaintenanceMargin (and accountMMRate) as the server's own times this:
    # a rule of the exchange alertd does not know (``set_reported_mm_factor``)
    reported_mm_factor: Decimal = Decimal(1)


@dataclass
class _Figures:
    value: Decimal  # positionValue (at entry)
    upl: Decimal
    im: Decimal
    mm: Decimal
    im_mark: Decimal
    mm_mark: Decimal
    balance: Decimal
    tier: _Tier
    liq: Decimal | None


class _ApiError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


# ---- websocket connections -------------------------------------------------------------------


class _Connection(shared.WsConnection):
    """A Bybit websocket; Bybit names each connection in its replies (``conn_id``)."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, kind: str) -> None:
        super().__init__(request, ws, kind)
        alphabet = string.ascii_lowercase + string.digits
        self.conn_id = f"{shared.random_id(alphabet, 20)}-{shared.random_id(alphabet, 4)}"


# ---- the server ------------------------------------------------------------------------------


class FakeBybit(FakeExchangeServer[_Account, _Connection]):
    """Bybit v5 (UTA, USDT linear perpetuals) on ``127.0.0.1``: REST and websockets, one port."""

    NAME: ClassVar[str] = "Bybit v5 (UTA, USDT perpetuals)"
    BAN_DURATION_S: ClassVar[float] = 600.0  # Bybit's IP ban lasts at least 10 minutes
    # Options alertd passes to ccxt.pro.bybit for this server (and for Bybit itself):
    # "Do not establish more than 500 connections within a 5-minute window" (per IP;
    # bybit-exchange.github.io/docs/v5/rate-limit, "Websocket IP limit")
    WS_OPENINGS_PER_IP: ClassVar[tuple[int, float] | None] = (500, 300.0)
    CCXT_OPTIONS: ClassVar[dict[str, Any]] = {
        # ccxt otherwise probes /v5/user/query-api and /v5/account/info before its first
        # private call to learn the account type; with both set it skips the probe and
        # uses the UTA endpoints (accountType=UNIFIED, wallet topic, /v5/private).
        "enableUnifiedAccount": True,
        "enableUnifiedMargin": False,
    }

    def __init__(self, *, mark_interval_s: float | None = None) -> None:
        super().__init__(mark_interval_s=mark_interval_s)
        self._markets: dict[str, _Market] = {}
        self._seq = itertools.count(8_327_597_863)
        # API keys whose next websocket login arrives past its ``expires`` (:meth:`late_login`)
        self._late_logins: set[str] = set()
        # every websocket login's outcome, in order: (API key, accepted)
        self.logins: list[tuple[str, bool]] = []
        # collateral coins' USD prices: coin -> (price, market id whose mark moves it, or None)
        self._coin_prices: dict[str, tuple[Decimal, str | None]] = {}
        # GET /v5/spot-margin-trade/collateral: coin -> [(maxQty or None, collateralRatio)];
        # USDC, a settle coin that is always collateral ("Set Collateral Coin": "USDT, USDC
        # cannot be set"), at 1 until scripted
        self._collateral_tiers: dict[str, list[tuple[Decimal | None, Decimal]]] = {
            USDC: [(None, Decimal(1))]
        }
        # the settle coins' USD index prices ("USD Index Price", help centre "Understanding
        # Collateral Value Ratios in Unified Trading Account"): each coin's equity, PnL and MM
        # count in the account's USD totals at it
        self._usd_prices: dict[str, Decimal] = {SETTLE: Decimal(1), USDC: Decimal(1)}
        # "Get Position Info": positionBalance "**Deprecated**, can refer to positionIM or
        # positionIMByMp" (bybit-exchange/docs, docs/v5/position/position.mdx, 2025-11)
        self._position_balance_deprecated = False
        for symbol, mark, scale, tick, step, max_qty, max_mkt, launch, risk in _DEFAULT_MARKETS:
            base, market_id = _split_symbol(symbol)
            self._markets[market_id] = _Market(
                symbol=symbol,
                id=market_id,
                base=base,
                mark=Decimal(mark),
                price_scale=scale,
                tick=Decimal(tick),
                qty_step=step,
                max_qty=max_qty,
                max_mkt_qty=max_mkt,
                launch=launch,
                risk_rows=_normalize_risk_rows(market_id, risk),
            )

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v5/private", self._ws_private),
            web.get("/v5/public/{category}", self._ws_public),
            web.route("*", "/{tail:.*}", self._rest),
        ]

    def _urls(self, http: str, ws: str) -> dict[str, Any]:
        """Every websocket entry points here too, so nothing reaches the real Bybit; only
        ``public.*`` and ``private.contract`` (= ``private.spot.unified``) are served."""
        urls: dict[str, Any] = dict.fromkeys(("spot", "futures", "v2", "public", "private"), http)
        urls["ws"] = {
            "public": {c: f"{ws}/v5/public/{c}" for c in CATEGORIES},
            "private": {
                "spot": {"unified": f"{ws}/v5/private", "nonUnified": f"{ws}/spot/private/v3"},
                "contract": f"{ws}/v5/private",
                "usdc": f"{ws}/trade/option/usdc/private/v1",
                "trade": f"{ws}/v5/trade",
            },
        }
        return urls

    # ---- markets -----------------------------------------------------------------------------

    def _market_id(self, symbol: str) -> str:
        return _split_symbol(symbol)[1]

    @scripted
    def add_symbol(
        self,
        symbol: str,
        mark: Num,
        risk_limits: list[dict[str, Any]] | None = None,
        *,
        tick_size: Num | None = None,
    ) -> None:
        """Add (or replace) a USDT perpetual ``BASE/USDT:USDT`` or a USDC one ``BASE/USDC:USDC``
        (in the same unified pool). ``risk_limits`` rows need
        ``riskLimitValue`` and ``maintenanceMargin`` (a fraction); ``initialMargin``,
        ``maxLeverage``, ``mmDeduction`` and ``id`` are filled in as Bybit would."""
        base, market_id = _split_symbol(symbol)
        price = shared.positive(mark, "mark")
        if risk_limits is None:
            risk_limits = _GENERIC_RISK
        scale = _default_scale(price)
        tick = _dec(tick_size, "tick_size") if tick_size is not None else Decimal(1).scaleb(-scale)
        scale = max(scale, _decimals(format(tick, "f")))
        settle = _settle_of(market_id)
        self._markets[market_id] = _Market(
            symbol=f"{base}/{settle}:{settle}",
            settle=settle,
            id=market_id,
            base=base,
            mark=price,
            price_scale=scale,
            tick=tick,
            qty_step="0.01",
            max_qty="100000.00",
            max_mkt_qty="50000.00",
            launch=str(now_ms() - 86_400_000),
            risk_rows=_normalize_risk_rows(market_id, list(risk_limits)),
        )

    @scripted
    def set_mark(self, symbol: str, price: Num, *, push: bool = True) -> None:
        """Set the mark (and index and last) price, rounded to the ``priceScale``; subscribers
        of ``tickers.<ID>`` get a delta (unless ``push=False``)."""
        market = self._market(symbol)
        market.mark = market.round_mark(shared.positive(price, "price"))
        if push:
            frame = self._ticker_frame(market, delta=True)
            for conn in self._subscribers(f"tickers.{market.id}"):
                conn.send(frame)

    def _ticker_data(self, market: _Market) -> dict[str, Any]:
        mark = market.mark
        price = market.price
        return {
            "symbol": market.id,
            "tickDirection": "ZeroPlusTick",
            "price24hPcnt": "0",
            "lastPrice": price(mark),
            "prevPrice24h": price(mark),
            "highPrice24h": price(mark * Decimal("1.01")),
            "lowPrice24h": price(mark * Decimal("0.99")),
            "prevPrice1h": price(mark),
            "markPrice": price(mark),
            "indexPrice": price(mark),
            "openInterest": "57798.137",
            "openInterestValue": _fmt(mark * Decimal("57798.137"), 2),
            "turnover24h": _fmt(mark * Decimal("61874.639"), 4),
            "volume24h": "61874.6390",
            "fundingIntervalHour": "8",
            "fundingCap": "0.005",
            "nextFundingTime": str((now_ms() // 28_800_000 + 1) * 28_800_000),
            "fundingRate": "0.0001",
            "bid1Price": price(mark - market.tick),
            "bid1Size": "6.907",
            "ask1Price": price(mark + market.tick),
            "ask1Size": "2.750",
            "preOpenPrice": "",
            "preQty": "",
            "curPreListingPhase": "",
        }

    def _ticker_frame(self, market: _Market, *, delta: bool) -> dict[str, Any]:
        if delta:
            mark = market.price(market.mark)
            data = {"symbol": market.id, "lastPrice": mark, "markPrice": mark, "indexPrice": mark}
        else:
            data = self._ticker_data(market)
        return {
            "topic": f"tickers.{market.id}",
            "type": "delta" if delta else "snapshot",
            "data": data,
            "cs": market.next_cs(),
            "ts": now_ms(),
        }

    def _push_periodic_marks(self) -> None:
        for conn in list(self._connections):
            for topic in sorted(conn.streams):
                market = self._markets.get(topic.removeprefix("tickers."))
                if topic.startswith("tickers.") and market is not None:
                    conn.send(self._ticker_frame(market, delta=True))

    # ---- accounts and positions --------------------------------------------------------------

    @scripted
    def add_account(self, api_key: str, secret: str, wallet_balance: Num = "1000") -> None:
        self._accounts[api_key] = _Account(api_key, secret, _dec(wallet_balance, "wallet"))

    def _opening_margin(
        self, api_key: str, side: str, contracts: Num, entry_price: Num, leverage: Num
    ) -> Decimal:
        """Bybit's Position IM: the IM at the entry and the fee to close at the bankruptcy
        price, as a recorded 50x FTMUSDT row has it (positionBalance 0.1220222 = 10 x 0.5941 /
        50 + 10 x 0.5941 x (1 - 1/50) x 0.055%; thibaultyou/trading-toolbox,
        back/src/modules/exchange/types/position-data.interface.ts)."""
        lev = _dec(leverage, "leverage")
        size, entry = _dec(contracts, "contracts"), _dec(entry_price, "entry_price")
        account = self._account(api_key)
        fee = _close_fee(size, entry, shared.parse_side(side), lev, account.taker_fee)
        return size * entry / lev + fee + fee * account.gst

    def _open_position(
        self, account: _Account, market: _Market, order: shared.PositionOrder, hedge: bool
    ) -> None:
        """Pushes the position on the account's ``position`` topic. One-way mode
        (``positionIdx`` 0) replaces the symbol's position; ``hedge=True`` uses ``positionIdx``
        1 (long) / 2 (short)."""
        now = now_ms()
        idx = (1 if order.long else 2) if hedge else 0
        old = account.positions.get((market.id, idx))
        position = _Position(
            symbol=market.id,
            side="Buy" if order.long else "Sell",
            size=order.size,
            entry=order.entry,
            isolated=order.isolated,
            balance=order.isolated_margin if order.isolated else None,
            leverage=order.leverage,
            idx=idx,
            created_ms=old.created_ms if old else now,
            updated_ms=now,
            seq=next(self._seq),
            taker_fee=account.taker_fee,
            gst=account.gst,
        )
        account.positions[(market.id, idx)] = position
        row = self._position_row(account, position, ws=True)
        self._push_private(account.api_key, "position", [row])

    @scripted
    def close_position(self, api_key: str, symbol: str, side: str | None = None) -> None:
        """Close and push the close: one-way ``side ""``, ``size "0"``; hedge mode keeps the
        ``positionIdx``. ``side`` picks one hedge leg; None closes whatever the symbol has."""
        account = self._account(api_key)
        market = self._market(symbol)
        keys = [k for k in account.positions if k[0] == market.id]
        if side is not None:
            wanted = "Buy" if shared.parse_side(side) else "Sell"
            keys = [k for k in keys if account.positions[k].side == wanted]
        slots = [(p.idx, p.leverage, p.created_ms) for p in map(account.positions.pop, keys)]
        if not slots:  # Bybit still reports a flat one-way slot
            slots = [(0, Decimal(10), now_ms())]
        rows = [self._flat_row(account, market, *slot, ws=True) for slot in slots]
        self._push_private(api_key, "position", rows)

    @scripted
    def set_reported_mm_factor(self, api_key: str, factor: Num) -> None:
        """Report the wallet's ``totalMaintenanceMargin`` and ``accountMMRate`` as the
        server's own times ``factor``: an exchange rule alertd does not know, which its drift
        check must notice (the positions' ``positionMM`` stay the server's own)."""
        self._account(api_key).reported_mm_factor = _dec(factor, "factor")

    @scripted
    def set_balance(self, api_key: str, wallet_balance: Num, coin: str = SETTLE) -> None:
        """Set the wallet balance of a settle coin (USDT, or USDC: its perpetuals' coin) and
        push a ``wallet`` frame."""
        account = self._account(api_key)
        wallet = _dec(wallet_balance, "wallet_balance")
        if coin == SETTLE:
            account.wallet = wallet
        elif coin in self._usd_prices:
            account.settle_wallets[coin] = wallet
        else:
            raise ValueError(f"{coin}: not a settle coin (set_collateral holds other coins)")
        row = self._wallet_row(account)
        self._push_private(api_key, "wallet", [row])

    @scripted
    def set_usd_price(self, coin: str, price: Num) -> None:
        """A settle coin's USD index price (USDC at 0.999, a depeg at 0.99; USDT's conversion
        rate): its rows' ``usdValue`` and the account totals count its equity and its
        perpetuals' MM at it from now on; nothing is pushed."""
        if coin not in self._usd_prices:
            raise ValueError(f"{coin}: not a settle coin (set_collateral prices other coins)")
        self._usd_prices[coin] = shared.positive(price, "price")

    @scripted
    def set_fee_rate(self, api_key: str, taker: Num, maker: Num = "0.0002") -> None:
        """Script the account's fee rates (a VIP level): ``/v5/account/fee-rate`` answers them
        and the positions' estimated fee to close (IM, MM, liquidation prices) uses the taker
        rate from now on."""
        account = self._account(api_key)
        account.taker_fee = _dec(taker, "taker")
        account.maker_fee = _dec(maker, "maker")
        for position in account.positions.values():
            position.taker_fee = account.taker_fee

    @scripted
    def set_gst(self, api_key: str, share: Num) -> None:
        """Make the account pay GST at ``share`` of its trading fees (a kyc=IND account:
        "0.18"): its fills list it in ``extraFees`` and its positions' fee to close holds it."""
        account = self._account(api_key)
        account.gst = _dec(share, "share")
        # Bybit charges it to kyc=IND accounts alone (v5 enums, extraFees.feeType "GST")
        account.kyc_region = "IND" if account.gst else "MYS"
        for position in account.positions.values():
            position.gst = account.gst

    @scripted
    def script_fills(
        self,
        api_key: str,
        *,
        refuse: int | None = None,
        listed: bool = True,
        extra_fees: Any = None,
    ) -> None:
        """How ``/v5/execution/list`` answers the account from now on: refused with retCode
        ``refuse`` (10005 "Permission denied" for a key without the permission, bybit v5
        "Error Codes"); no fill at all (``listed`` False: none in the 7 days Bybit lists by
        default); each fill's ``extraFees`` as ``extra_fees`` (not None: a malformed one)."""
        account = self._account(api_key)
        account.fills_refused = refuse
        account.fills_listed = listed
        account.fills_extra = extra_fees

    @scripted
    def script_key_info(
        self, api_key: str, *, refuse: int | None = None, body: str | None = None
    ) -> None:
        """``/v5/user/query-api`` refused with retCode ``refuse`` from now on (None: answered);
        ``body`` (not None): the HTTP 200 body served as is, a hostile or malformed answer."""
        account = self._account(api_key)
        account.key_info_refused, account.key_info_body = refuse, body

    @scripted
    def set_kyc_region(self, api_key: str, region: str | None) -> None:
        """The account's KYC region as ``/v5/user/query-api`` answers it (None: the field left
        out, as an answer alertd cannot read)."""
        self._account(api_key).kyc_region = region

    @scripted
    def key_info_asked(self, api_key: str) -> int:
        """How many times the account's ``/v5/user/query-api`` was asked."""
        return self._account(api_key).key_info_asked

    @scripted
    def fills_asked(self, api_key: str) -> int:
        """How many times the account's ``/v5/execution/list`` was asked."""
        return self._account(api_key).fills_asked

    @scripted
    def deprecate_position_balance(self) -> None:
        """Send ``positionBalance`` ``"0"`` on isolated positions too, as the deprecated field
        arrives (the position's margin then only in ``positionIM``); no push."""
        self._position_balance_deprecated = True

    @scripted
    def add_margin(self, api_key: str, symbol: str, margin: Num, side: str | None = None) -> None:
        """ "Add Or Reduce Margin" (``POST /v5/position/add-margin``, bybit-exchange/docs,
        docs/v5/position/manual-add-margin.mdx): ``margin`` more (negative: less) on an
        isolated position, its liquidation price moved with it, and the position pushed on
        the ``position`` topic. ``side`` picks a hedge leg."""
        account = self._account(api_key)
        market = self._market(symbol)
        wanted = None if side is None else "Buy" if shared.parse_side(side) else "Sell"
        (position,) = (
            p
            for (market_id, _), p in account.positions.items()
            if market_id == market.id and wanted in (None, p.side)
        )
        if not position.isolated or position.balance is None:
            raise ValueError(f"{symbol}: margin is added to an isolated position only")
        position.balance += _dec(margin, "margin")
        position.updated_ms = now_ms()
        position.seq = next(self._seq)
        self._push_private(api_key, "position", [self._position_row(account, position, ws=True)])

    @scripted
    def set_unified_margin_status(self, api_key: str, status: int) -> None:
        """Script the account type ``/v5/account/info`` reports (1: a classic account)."""
        self._account(api_key).unified_margin_status = status

    @scripted
    def set_margin_mode(self, api_key: str, margin_mode: str) -> None:
        """Script the ``marginMode`` ``/v5/account/info`` reports."""
        self._account(api_key).margin_mode = margin_mode

    @scripted
    def set_collateral(
        self,
        api_key: str,
        coin: str,
        amount: Num,
        usd_price: Num,
        ratio: Num | None = "1",
        *,
        follows: str | None = None,
    ) -> None:
        """Hold ``amount`` of ``coin`` as collateral (0 removes it; negative: borrowed):
        wallet-balance lists it and the account's totals count it at its USD value times the
        tiered collateral value ratio (a held amount; a liability counts in full). ``ratio``
        sets a flat table (None keeps ``set_collateral_tiers``'); ``follows``: a symbol whose
        mark moves the coin's USD price from now on (its index follows its market)."""
        account = self._account(api_key)
        value = _dec(amount, "amount")
        price = _dec(usd_price, "usd_price")
        market_id = None
        if follows is not None:
            market = self._markets[self._market_id(follows)]
            market_id = market.id
            price = price / market.mark  # kept as the basis to the mark
        self._coin_prices[coin] = (price, market_id)
        if ratio is not None:
            self._collateral_tiers[coin] = [(None, _dec(ratio, "ratio"))]
        if value == 0:
            account.collateral.pop(coin, None)
        else:
            account.collateral[coin] = value

    @scripted
    def set_collateral_tiers(self, coin: str, tiers: list[tuple[Num | None, Num]]) -> None:
        """``coin``'s tiered collateral value ratio, as ``GET /v5/spot-margin-trade/collateral``
        serves it: ``[(maxQty in coins, or None for the last, collateralRatio), ...]``."""
        self._collateral_tiers[coin] = [
            (None if cap is None else _dec(cap, "maxQty"), _dec(ratio, "collateralRatio"))
            for cap, ratio in tiers
        ]

    def _coin_price(self, coin: str, mark: Decimal | None = None) -> Decimal:
        """``coin``'s USD price now (or with its market's mark at ``mark``)."""
        price, market_id = self._coin_prices[coin]
        if market_id is None:
            return price
        return price * (mark if mark is not None else self._markets[market_id].mark)

    def _counted(self, coin: str, amount: Decimal) -> Decimal:
        """The quantity of ``coin`` that counts after its tiered ratios (a liability: all);
        USDT, the unit of every USDT perpetual, in full (its ratio is 1: "USDT >0 1", help
        centre, "Understanding Collateral Value Ratios in Unified Trading Account")."""
        if amount <= 0 or coin == SETTLE:
            return amount
        counted, floor = Decimal(0), Decimal(0)
        for cap, ratio in self._collateral_tiers.get(coin, [(None, Decimal(0))]):
            top = amount if cap is None else min(amount, cap)
            if top > floor:
                counted += (top - floor) * ratio
            if cap is None or amount <= cap:
                break
            floor = cap
        return counted

    def _collateral_value(
        self, account: _Account, market_id: str | None = None, mark: Decimal | None = None
    ) -> Decimal:
        """The USD value the coins add to the margin balance (those moved by market
        ``market_id`` with its mark at ``mark``)."""
        return sum(
            (
                self._counted(coin, amount)
                * self._coin_price(coin, mark if self._coin_prices[coin][1] == market_id else None)
                for coin, amount in account.collateral.items()
            ),
            Decimal(0),
        )

    def _settle_coins(self, account: _Account) -> list[str]:
        """USDT and every other settle coin the account holds a wallet or a position in."""
        held = {self._markets[p.symbol].settle for p in account.positions.values()}
        return [SETTLE, *sorted((held | account.settle_wallets.keys()) - {SETTLE})]

    @staticmethod
    def _settle_wallet(account: _Account, coin: str) -> Decimal:
        return account.wallet if coin == SETTLE else account.settle_wallets.get(coin, Decimal(0))

    def _push_private(self, api_key: str, topic: str, data: list[dict[str, Any]]) -> None:
        if not self._held_push(
            api_key, functools.partial(self._send_private, api_key, topic, data)
        ):
            self._send_private(api_key, topic, data)

    def _send_private(self, api_key: str, topic: str, data: list[dict[str, Any]]) -> None:
        targets = []
        for conn in self._connections:
            if conn.kind != "private" or conn.owner != api_key or conn.muted:
                continue
            for name in (topic, f"{topic}.linear"):
                if name in conn.streams:
                    targets.append((conn, name))
                    break
        for conn, name in targets:
            conn.send(self._private_frame(name, data))

    # ---- figures -----------------------------------------------------------------------------

    def _figures(self, account: _Account, position: _Position) -> _Figures:
        market = self._markets[position.symbol]
        mark = market.mark
        value = position.size * position.entry
        at_mark = position.size * mark
        fee = position.close_fee
        # IM at entry for isolated positions, at the mark for cross; MM at the mark for both
        tier = market.tier(at_mark)
        im = (value if position.isolated else at_mark) / position.leverage + fee
        mm = market.mm(at_mark) + fee
        balance = position.balance if position.balance is not None else im
        if position.isolated:
            liq = self._isolated_liquidation(market, position, balance)
        else:
            liq = self._cross_liquidation(account, position)
        return _Figures(
            value=value,
            upl=position.upl(mark),
            im=im,
            mm=mm,
            im_mark=at_mark / position.leverage + fee,
            mm_mark=mm,
            balance=balance,
            tier=tier,
            liq=liq,
        )

    @staticmethod
    def _isolated_liquidation(market: _Market, p: _Position, balance: Decimal) -> Decimal | None:
        """The price where the position's margin, ``balance + upl``, meets its MM at that
        price (``size x P x mmr - deduction + fee to close``): fixed, it does not move with the
        mark. Solved per tier, the tier of the notional at the answer kept."""
        is_long = p.side == "Buy"
        for tier in market.tiers:
            # long: balance + size (P - entry) = size P mmr - ded + fee
            if is_long:
                raw = (p.size * p.entry - balance - tier.deduction + p.close_fee) / (
                    p.size * (1 - tier.mmr)
                )
            else:
                raw = (balance + p.size * p.entry + tier.deduction - p.close_fee) / (
                    p.size * (1 + tier.mmr)
                )
            if raw > 0 and market.tier(p.size * raw) == tier:
                return _to_tick(raw, market.tick, up=is_long)
        return None

    def _cross_liquidation(self, account: _Account, target: _Position) -> Decimal | None:
        """The mark of ``target``'s symbol at which the cross margin balance meets the cross
        maintenance margin, all other marks held: each settle coin's equity (its wallet less
        its isolated positions' margin, plus its cross perpetuals' PnL) counted after its
        collateral value ratio at its USD index, its perpetuals' MM at that index, and the
        collateral coins (those following this market moving with it)."""
        market = self._markets[target.symbol]

        def surplus(price: Decimal) -> Decimal:
            total = self._collateral_value(account, market.id, price)
            for coin in self._settle_coins(account):
                equity, mm = self._settle_wallet(account, coin), Decimal(0)
                for p in account.positions.values():
                    held = self._markets[p.symbol]
                    if held.settle != coin:
                        continue
                    if p.isolated:
                        equity -= p.balance if p.balance is not None else Decimal(0)
                        continue
                    at = price if held.id == market.id else held.mark
                    equity += p.upl(at)
                    mm += held.mm(p.size * at) + p.close_fee
                total += (self._counted(coin, equity) - mm) * self._usd_prices[coin]
            return total

        is_long = target.side == "Buy"
        mark = market.mark
        if surplus(mark) <= 0:
            return _to_tick(mark, market.tick, up=is_long)
        if is_long:
            good, bad = mark, Decimal(0)  # surplus > 0 at good, <= 0 at bad
            if surplus(bad) > 0:
                return None
        else:
            good, bad = mark, mark * 2
            while surplus(bad) > 0:
                good, bad = bad, bad * 2
                if bad > mark * 1_000_000:
                    return None
        for _ in range(200):
            mid = (good + bad) / 2
            if surplus(mid) > 0:
                good = mid
            else:
                bad = mid
            if abs(good - bad) < market.tick * Decimal("1e-9"):
                break
        # the surplus is linear in the price between tiers and ratio tiers: the root of the
        # line through the bracket's ends, kept where it falls inside the bracket
        at_good, at_bad = surplus(good), surplus(bad)
        root = (good + bad) / 2
        if at_good != at_bad:
            exact = good - at_good * (bad - good) / (at_bad - at_good)
            if min(good, bad) <= exact <= max(good, bad):
                root = exact
        return _to_tick(root, market.tick, up=is_long) if root > 0 else None

    def _position_row(self, account: _Account, p: _Position, *, ws: bool) -> dict[str, Any]:
        market = self._markets[p.symbol]
        f = self._figures(account, p)
        row: dict[str, Any] = {
            "positionIdx": p.idx,
            "riskId": f.tier.id,
            "riskLimitValue": _fmt(f.tier.cap),
            "symbol": p.symbol,
            "side": p.side,
            "size": _fmt(p.size),
            ("entryPrice" if ws else "avgPrice"): _fmt(p.entry),
            "positionValue": _fmt(f.value),
            "tradeMode": 1 if p.isolated else 0,
            "positionStatus": "Normal",
            "autoAddMargin": 0,
            "adlRankIndicator": 2,
            "leverage": _fmt(p.leverage),
            "positionBalance": self._position_balance(p, f.balance),
            "markPrice": market.price(market.mark),
            "liqPrice": format(f.liq, "f") if f.liq is not None else "",
            "bustPrice": "",
            "positionMM": _fmt(f.mm),
            "positionIM": _fmt(f.im),
            "tpslMode": "Full",
            "takeProfit": self._position_tpsl(account, p, "take_profit"),
            "stopLoss": self._position_tpsl(account, p, "stop"),
            "trailingStop": "0",
            "unrealisedPnl": _fmt(f.upl),
            "curRealisedPnl": "0",
            "cumRealisedPnl": _fmt(account.cum_realised),
            "sessionAvgPrice": "",
            "seq": p.seq,
            "isReduceOnly": False,
            "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "",
            "createdTime": str(p.created_ms),
            "updatedTime": str(p.updated_ms),
        }
        # REST and stream alike (the docs' "Position" stream and live frames since 2025-10)
        row["positionIMByMp"] = _fmt(f.im_mark)
        row["positionMMByMp"] = _fmt(f.mm_mark)
        if ws:
            row["category"] = "linear"
        return row

    def _position_balance(self, p: _Position, balance: Decimal) -> str:
        """``positionBalance`` as Bybit sends it: ``"0"`` on a cross position (live frames of
        open cross positions, 2025-01 to 2026-03) and, once the field is deprecated
        (``deprecate_position_balance``), on an isolated one too; else its margin."""
        if p.isolated and not self._position_balance_deprecated:
            return _fmt(balance)
        return "0"

    def _flat_row(
        self,
        account: _Account,
        market: _Market,
        idx: int,
        leverage: Decimal,
        created_ms: int,
        *,
        ws: bool,
    ) -> dict[str, Any]:
        tier = market.tiers[0]
        row: dict[str, Any] = {
            "positionIdx": idx,
            "riskId": tier.id,
            "riskLimitValue": _fmt(tier.cap),
            "symbol": market.id,
            "side": "",
            "size": "0",
            ("entryPrice" if ws else "avgPrice"): "0",
            "positionValue": "0",
            "tradeMode": 0,
            "positionStatus": "Normal",
            "autoAddMargin": 0,
            "adlRankIndicator": 0,
            "leverage": _fmt(leverage),
            "positionBalance": "0",
            "markPrice": market.price(market.mark),
            "liqPrice": "",
            "bustPrice": "",
            "positionMM": "0",
            "positionIM": "0",
            "positionMMByMp": "0",
            "positionIMByMp": "0",
            "tpslMode": "Full",
            "takeProfit": "0",
            "stopLoss": "0",
            "trailingStop": "0",
            "unrealisedPnl": "0",
            "curRealisedPnl": "0",
            "cumRealisedPnl": _fmt(account.cum_realised),
            "sessionAvgPrice": "",
            "seq": next(self._seq),
            "isReduceOnly": False,
            "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "",
            "createdTime": str(created_ms),
            "updatedTime": str(now_ms()),
        }
        if ws:
            row["category"] = "linear"
        return row

    def _wallet_row(self, account: _Account, coins: Iterable[str] | None = None) -> dict[str, Any]:
        """Each settle coin's row in its own coin (``equity`` = ``walletBalance`` - ``spotBorrow``
        + ``unrealisedPnl``, "Get Wallet Balance"), ``usdValue`` at its USD index; the totals
        in USD: the margin balance each coin's equity after its collateral value ratio at its
        index, the MM each coin's positions' MM at it (docs: totalMaintenanceMargin "∑ Asset
        Total Maintenance Margin"; help centre, "Key Terms and Formulas in Unified Trading
        Account": margin balance "after considering the collateral value ratio")."""
        wanted = set(coins) if coins is not None else None
        rows: list[dict[str, Any]] = []
        equity_usd = wallet_usd = upl_usd = margin_balance = im = mm = Decimal(0)
        template: dict[str, Any] = {}
        for coin in self._settle_coins(account):
            price = self._usd_prices[coin]
            c_upl = c_im = c_mm = Decimal(0)
            for p in account.positions.values():
                if self._markets[p.symbol].settle == coin:
                    f = self._figures(account, p)
                    c_upl, c_im, c_mm = c_upl + f.upl, c_im + f.im, c_mm + f.mm
            wallet = self._settle_wallet(account, coin)
            equity = wallet + c_upl
            equity_usd += equity * price
            wallet_usd += wallet * price
            upl_usd += c_upl * price
            margin_balance += self._counted(coin, equity) * price
            im, mm = im + c_im * price, mm + c_mm * price
            row = {
                "coin": coin,
                "equity": _fmt(equity),
                "usdValue": _fmt(equity * price),
                "walletBalance": _fmt(wallet),
                "availableToWithdraw": _fmt(max(min(wallet, equity - c_im), Decimal(0))),
                "availableToBorrow": "",
                "borrowAmount": "0",
                "accruedInterest": "0",
                "totalOrderIM": "0",
                "totalPositionIM": _fmt(c_im),
                "totalPositionMM": _fmt(c_mm),
                "unrealisedPnl": _fmt(c_upl),
                "cumRealisedPnl": _fmt(account.cum_realised if coin == SETTLE else Decimal(0)),
                "bonus": "0",
                "marginCollateral": True,
                "collateralSwitch": True,
                "locked": "0",
                "spotHedgingQty": "0",
                "spotBorrow": "0",
            }
            template = template or row
            show = coin in wanted if wanted is not None else (wallet != 0 or bool(c_upl))
            if show:
                rows.append(row)
        for coin, amount in sorted(account.collateral.items()):
            price = self._coin_price(coin)
            usd = amount * price
            equity_usd, wallet_usd = equity_usd + usd, wallet_usd + usd
            margin_balance += self._counted(coin, amount) * price
            if wanted is None or coin in wanted:
                borrowed = max(-amount, Decimal(0))
                rows.append(
                    template
                    | {
                        "coin": coin,
                        "equity": _fmt(amount),
                        "usdValue": _fmt(usd),
                        # a borrowed coin: walletBalance - spotBorrow is the net amount
                        "walletBalance": _fmt(max(amount, Decimal(0))),
                        "spotBorrow": _fmt(borrowed),
                        "borrowAmount": _fmt(borrowed),
                        "availableToWithdraw": _fmt(max(amount, Decimal(0))),
                        "totalPositionIM": "0",
                        "totalPositionMM": "0",
                        "unrealisedPnl": "0",
                        "cumRealisedPnl": "0",
                    }
                )
        mm *= account.reported_mm_factor
        return {
            "accountType": "UNIFIED",
            "accountLTV": "0",
            "accountIMRate": _rate(im, margin_balance),
            "accountMMRate": _rate(mm, margin_balance),
            "totalEquity": _fmt(equity_usd),
            "totalWalletBalance": _fmt(wallet_usd),
            "totalMarginBalance": _fmt(margin_balance),
            "totalAvailableBalance": _fmt(max(margin_balance - im, Decimal(0))),
            "totalPerpUPL": _fmt(upl_usd),
            "totalInitialMargin": _fmt(im),
            "totalMaintenanceMargin": _fmt(mm),
            "coin": rows,
        }

    # ---- REST --------------------------------------------------------------------------------

    @staticmethod
    def _json(body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        base_headers = {"Traceid": secrets.token_hex(16), "Timenow": str(now_ms())}
        return shared.json_response(body, headers=base_headers | (headers or {}))

    def _answer(
        self, result: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now_ms()}
        return self._json(body, headers)

    def _api_error(self, error: _ApiError, headers: dict[str, str] | None = None) -> web.Response:
        body = {
            "retCode": error.code,
            "retMsg": error.msg,
            "result": {},
            "retExtInfo": {},
            "time": now_ms(),
        }
        return self._json(body, headers)

    def _error_response(self, status: int, retry_after_s: float | None) -> web.Response:
        """Scripted failures (``fail_rest``). 429 answers as Bybit's API rate limit does: HTTP
        200, ``retCode`` 10006 "Too many visits", ``X-Bapi-Limit*`` headers (reset after
        ``retry_after_s``, default 1 s). 403 is the IP limit ("access too frequent"); any other
        status is a plain-text error page with that status."""
        if status == 429:
            wait_ms = int((retry_after_s if retry_after_s is not None else 1) * 1000)
            headers = {
                "X-Bapi-Limit": "10",
                "X-Bapi-Limit-Status": "0",
                "X-Bapi-Limit-Reset-Timestamp": str(now_ms() + wait_ms),
            }
            return self._api_error(_ApiError(10006, "Too many visits"), headers)
        if status == 403:
            return web.Response(status=403, text="access too frequent")
        headers = {}
        if retry_after_s is not None:
            headers["Retry-After"] = str(int(retry_after_s))
        return web.Response(status=status, text=f"{status} error", headers=headers)

    def _ip_ban_response(self, until_ms: int) -> web.Response:
        # "403, access too frequent" ... "wait for at least 10 minutes. The ban will be lifted
        # automatically" (bybit-exchange.github.io/docs/v5/rate-limit, "IP Limit")
        return web.Response(status=403, text="access too frequent")

    def _key_rejected(self, rejection: shared.KeyRejection) -> web.Response:
        if rejection.problem is shared.KeyProblem.BANNED:
            return web.Response(status=403, text="access too frequent")
        return self._api_error(_ApiError(10003, "API key is invalid."))

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        params = dict(request.query)
        public = {
            "/v5/market/instruments-info": self._instruments,
            "/v5/market/risk-limit": self._risk_limit,
            "/v5/market/tickers": self._tickers,
            "/v5/market/time": self._time,
            "/v5/market/mark-price-kline": self._mark_kline,
            "/v5/spot-margin-trade/collateral": self._collateral_ratios,
            "/v5/market/orderbook": self._orderbook,
        }
        private = {
            "/v5/position/list": self._position_list,
            "/v5/account/wallet-balance": self._wallet_balance,
            "/v5/asset/coin/query-info": self._coin_info,
            "/v5/user/query-api": self._query_api,
            "/v5/account/info": self._account_info,
            "/v5/account/fee-rate": self._fee_rate,
            "/v5/execution/list": self._execution_list,
            "/v5/order/realtime": self._order_realtime,
        }
        try:
            if path in public:
                return self._answer(public[path](params))
            if path in private:
                body = await request.text() if request.method == "POST" else ""
                account = self._authenticate(request, body)
                headers = {
                    "X-Bapi-Limit": "50",
                    "X-Bapi-Limit-Status": "49",
                    "X-Bapi-Limit-Reset-Timestamp": str(now_ms()),
                }
                if path == "/v5/user/query-api" and account.key_info_body is not None:
                    account.key_info_asked += 1
                    return web.Response(text=account.key_info_body, content_type="application/json")
                return self._answer(private[path](account, params), headers)
        except _ApiError as error:
            return self._api_error(error)
        return web.Response(status=404, text="404 page not found")

    def _authenticate(self, request: web.Request, body: str) -> _Account:
        headers = request.headers
        key = headers.get("X-BAPI-API-KEY", "")
        account = self._authorized(key)
        stamp, window = (
            headers.get("X-BAPI-TIMESTAMP", ""),
            headers.get("X-BAPI-RECV-WINDOW", "5000"),
        )
        sign = headers.get("X-BAPI-SIGN", "")
        if not stamp.isdigit() or not window.isdigit():
            raise _ApiError(10001, f"empty value: apiTimestamp[{stamp}] apiKey[{key}]")
        now = now_ms()
        if not now - int(window) <= int(stamp) < now + 1000:
            raise _ApiError(
                10002,
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{stamp}],server_timestamp[{now}],recv_window[{window}]",
            )
        raw_query = request.raw_path.partition("?")[2]
        payloads = [body] if request.method == "POST" else [raw_query, unquote(raw_query)]
        for payload in payloads:
            origin = stamp + key + window + payload
            expected = hmac.new(account.secret.encode(), origin.encode(), hashlib.sha256)
            if hmac.compare_digest(expected.hexdigest(), sign):
                return account
        raise _ApiError(10004, f"error sign! origin_string[{stamp + key + window + payloads[0]}]")

    def _collateral_ratios(self, params: dict[str, str]) -> dict[str, Any]:
        # "Get Tiered Collateral Ratio" (docs v5, spot-margin-uta/tier-collateral-ratio):
        # minQty/maxQty in coins, "" for no upper limit
        wanted = params.get("currency")
        rows = []
        for coin, tiers in sorted(self._collateral_tiers.items()):
            if wanted and coin != wanted:
                continue
            floor, ratios = Decimal(0), []
            for cap, ratio in tiers:
                ratios.append(
                    {
                        "minQty": _fmt(floor),
                        "maxQty": "" if cap is None else _fmt(cap),
                        "collateralRatio": _fmt(ratio),
                    }
                )
                floor = cap if cap is not None else floor
            rows.append({"currency": coin, "collateralRatioList": ratios})
        return {"list": rows}

    def _mark_kline(self, params: dict[str, str]) -> dict[str, Any]:
        # Bybit v5 "Get Mark Price Kline": category, symbol, interval (minutes, or D/W/M),
        # start, end, limit (default 200, at most 1000); rows newest first, as strings
        # [startTime, open, high, low, close] (bybit-exchange.github.io/docs/v5/market/mark-kline)
        symbol, interval = params.get("symbol", ""), params.get("interval", "")
        if symbol not in self._markets:
            raise _ApiError(10001, "params error: symbol invalid")
        if not interval.isdigit():
            raise _ApiError(10001, "Invalid period!")
        limit = min(int(params.get("limit", 200)), 1000)
        rows = self.mark_candles(
            symbol,
            int(interval) * 60_000,
            int(params.get("start", 0)),
            int(params.get("end", 2**62)),
            limit,
        )
        return {
            "symbol": symbol,
            "category": params.get("category", ""),
            "list": [[str(t), o, h, low, c] for t, o, h, low, c in reversed(rows)],
        }

    def _instruments(self, params: dict[str, str]) -> dict[str, Any]:
        category = params.get("category", "")
        if category not in CATEGORIES:
            raise _ApiError(10001, "params error: category is invalid")
        markets: list[_Market] = []
        if category == "linear" and params.get("status", "Trading") == "Trading":
            markets = [m for m in self._markets.values() if params.get("symbol") in (None, m.id)]
            base = params.get("baseCoin")
            if base:
                markets = [m for m in markets if m.base == base]
        return {
            "category": category,
            "list": [self._instrument(m) for m in markets],
            "nextPageCursor": "",
        }

    @staticmethod
    def _instrument(m: _Market) -> dict[str, Any]:
        return {
            "symbol": m.id,
            "contractType": "LinearPerpetual",
            "status": "Trading",
            "baseCoin": m.base,
            "quoteCoin": m.settle,
            "launchTime": m.launch,
            "deliveryTime": "0",
            "deliveryFeeRate": "",
            "priceScale": str(m.price_scale),
            "leverageFilter": {
                "minLeverage": "1",
                "maxLeverage": m.risk_rows[0]["maxLeverage"],
                "leverageStep": "0.01",
            },
            "priceFilter": {
                "minPrice": format(m.tick, "f"),
                "maxPrice": format(m.tick * 19_999_998, "f"),
                "tickSize": format(m.tick, "f"),
            },
            "lotSizeFilter": {
                "maxOrderQty": m.max_qty,
                "minOrderQty": m.qty_step,
                "qtyStep": m.qty_step,
                "postOnlyMaxOrderQty": m.max_qty,
                "maxMktOrderQty": m.max_mkt_qty,
                "minNotionalValue": "5",
            },
            "unifiedMarginTrade": True,
            "fundingInterval": 480,
            "settleCoin": m.settle,
            "copyTrading": "both",
            "upperFundingRate": "0.005",
            "lowerFundingRate": "-0.005",
            "isPreListing": False,
            "preListingInfo": None,
            "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
            "symbolType": "",
            "displayName": "",
        }

    def _risk_limit(self, params: dict[str, str]) -> dict[str, Any]:
        category = params.get("category", "")
        if category not in ("linear", "inverse"):
            raise _ApiError(10001, "params error: category only support linear or inverse")
        rows: list[dict[str, Any]] = []
        if category == "linear" and not params.get("cursor"):
            symbol = params.get("symbol")
            if symbol is not None and symbol not in self._markets:
                raise _ApiError(10001, "params error: symbol invalid")
            for market in self._markets.values():
                if symbol in (None, market.id):
                    rows.extend(dict(r) for r in market.risk_rows)
        return {"category": category, "list": rows, "nextPageCursor": ""}

    def _orderbook(self, params: dict[str, str]) -> dict[str, Any]:
        # v5 "Get Orderbook": category, symbol, limit (linear/inverse 1-500, default 25);
        # result {"s", "b": bids, "a": asks (["price", "size"]), "ts", "u", "seq", "cts"}
        # (bybit-exchange.github.io/docs/v5/market/orderbook)
        if params.get("category") != "linear":
            raise _ApiError(10001, "params error: category is invalid")
        symbol = params.get("symbol", "")
        if symbol not in self._markets:
            raise _ApiError(10001, "params error: symbol invalid")
        limit = params.get("limit", "25")
        if not limit.isdigit() or not 1 <= int(limit) <= 500:
            raise _ApiError(10001, "params error: limit invalid")
        bids, asks = self.order_book(symbol, int(limit))
        stamp = now_ms()
        return {
            "s": symbol,
            "b": [list(level) for level in bids],
            "a": [list(level) for level in asks],
            "ts": stamp,
            "u": stamp,
            "seq": stamp,
            "cts": stamp,
        }

    def _tickers(self, params: dict[str, str]) -> dict[str, Any]:
        category = params.get("category", "")
        if category not in CATEGORIES:
            raise _ApiError(10001, "params error: category is invalid")
        symbol = params.get("symbol")
        if category != "linear":
            return {"category": category, "list": []}
        if symbol is not None and symbol not in self._markets:
            raise _ApiError(10001, "params error: symbol invalid")
        markets = [m for m in self._markets.values() if symbol in (None, m.id)]
        return {"category": category, "list": [self._ticker_data(m) for m in markets]}

    @staticmethod
    def _time(params: dict[str, str]) -> dict[str, Any]:
        nanos = time.time_ns()
        return {"timeSecond": str(nanos // 1_000_000_000), "timeNano": str(nanos)}

    # ---- open conditional orders ("Get Open & Closed Orders", /v5/order/realtime) --------------

    def _position_tpsl(self, account: _Account, p: _Position, kind: str) -> str:
        """A position's full TP/SL price as "Get Position Info" shows it ("0": none)."""
        side = "long" if p.side == "Buy" else "short"
        for stop in self.stops(account.api_key):
            whole = stop.contracts is None
            if whole and (stop.market.id, stop.side, stop.kind) == (p.symbol, side, kind):
                return _fmt(stop.trigger)
        return "0"

    def _conditional_order(self, stop: StopOrderSpec) -> dict[str, Any]:
        """An untriggered conditional order as /v5/order/realtime lists it: a position's full
        TP/SL (``StopLoss``/``TakeProfit``, qty 0, closeOnTrigger) or a reduce-only
        conditional order (``Stop``) with its triggerDirection (1 rise, 2 fall)."""
        full = stop.contracts is None
        qty = "0" if full else _fmt(stop.contracts)
        kind = {"stop": "StopLoss", "take_profit": "TakeProfit"}[stop.kind] if full else "Stop"
        return {
            "orderId": f"{stop.order_id[:8]}-7847-404e-b947-b46980a4d140",
            "orderLinkId": "",
            "blockTradeId": "",
            "symbol": stop.market.id,
            "price": "0",
            "qty": qty,
            "side": "Sell" if stop.sell else "Buy",
            "isLeverage": "",
            "positionIdx": {"long": 1, "short": 2}[stop.side] if stop.hedge else 0,
            "orderStatus": "Untriggered",
            "createType": "CreateByStopLoss" if full else "CreateByUser",
            "cancelType": "UNKNOWN",
            "rejectReason": "EC_NoError",
            "avgPrice": "",
            "leavesQty": qty,
            "leavesValue": "0",
            "cumExecQty": "0",
            "cumExecValue": "0",
            "cumExecFee": "0",
            "timeInForce": "IOC",
            "orderType": "Market",
            "stopOrderType": kind,
            "orderIv": "",
            "marketUnit": "",
            "triggerPrice": _fmt(stop.trigger),
            "takeProfit": "0",
            "stopLoss": "0",
            "tpslMode": "Full" if full else "",
            "ocoTriggerBy": "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": 2 if stop.falls else 1,
            "triggerBy": "MarkPrice",
            "lastPriceOnCreated": "",
            "reduceOnly": True,
            "closeOnTrigger": full,
            "placeType": "",
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "createdTime": str(stop.created_ms),
            "updatedTime": str(stop.created_ms),
        }

    def _push_stop(self, api_key: str, stop: StopOrderSpec, event: str) -> None:
        """The private ``order`` topic (v5 websocket, "Order"): the order with its category;
        a cancelled conditional order is "Deactivated"."""
        row = self._conditional_order(stop)
        row["category"] = "linear"
        if event != "new":
            row["orderStatus"] = "Deactivated"
        self._push_private(api_key, "order", [row])

    def _order_realtime(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        if params.get("category") != "linear":
            raise _ApiError(10001, "params error: category is invalid")
        symbol, settle = params.get("symbol"), params.get("settleCoin")
        if symbol is None and settle is None and params.get("baseCoin") is None:
            raise _ApiError(10001, "Missing some parameters that must be filled in")
        try:
            limit = int(params.get("limit", "20"))
            offset = int(params["cursor"]) if params.get("cursor") else 0
        except ValueError:
            raise _ApiError(10001, "params error: limit or cursor is invalid") from None
        if not 1 <= limit <= 50:
            raise _ApiError(10001, "params error: limit must be in [1, 50]")
        rows = [
            self._conditional_order(stop)
            for stop in reversed(self.stops(account.api_key))  # newest first, as Bybit sorts
            if symbol in (None, stop.market.id) and settle in (None, _settle_of(stop.market.id))
        ]
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        return {
            "category": "linear",
            "list": page,
            "nextPageCursor": str(offset + limit) if more else "",
        }

    def _position_list(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        category = params.get("category")
        if category not in ("linear", "inverse", "option"):
            raise _ApiError(10001, "params error: category is invalid")
        try:
            limit = int(params.get("limit", "20"))
            offset = int(params.get("cursor", "p0")[1:] or 0) if params.get("cursor") else 0
        except ValueError:
            raise _ApiError(10001, "params error: limit or cursor is invalid") from None
        if not 1 <= limit <= 200:
            raise _ApiError(10001, "params error: limit must be in [1, 200]")
        rows: list[dict[str, Any]] = []
        if category == "linear":
            symbol, settle = params.get("symbol"), params.get("settleCoin")
            if symbol is None and settle is None and params.get("baseCoin") is None:
                raise _ApiError(
                    10001, "Missing some parameters that must be filled in, symbol or settleCoin"
                )
            if symbol is not None:
                market = self._markets.get(symbol)
                if market is None:
                    raise _ApiError(10001, "params error: symbol invalid")
                found = sorted(
                    (p for p in account.positions.values() if p.symbol == symbol),
                    key=lambda p: p.idx,
                )
                rows = [self._position_row(account, p, ws=False) for p in found] or [
                    self._flat_row(account, market, 0, Decimal(10), now_ms(), ws=False)
                ]
            elif settle in (None, SETTLE, USDC):
                base = params.get("baseCoin")
                found = sorted(account.positions.values(), key=lambda p: (p.symbol, p.idx))
                rows = [
                    self._position_row(account, p, ws=False)
                    for p in found
                    if base in (None, self._markets[p.symbol].base)
                    and settle in (None, self._markets[p.symbol].settle)
                ]
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        return {
            "category": category,
            "list": page,
            "nextPageCursor": f"p{offset + limit}" if more else "",
        }

    def _wallet_balance(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        if params.get("accountType") != "UNIFIED":
            raise _ApiError(10001, "accountType only support UNIFIED.")
        coins = params.get("coin")
        wanted = [c for c in coins.split(",") if c] if coins else None
        return {"list": [self._wallet_row(account, wanted)]}

    def _coin_info(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        coins = [SETTLE, *sorted({m.base for m in self._markets.values()})]
        if params.get("coin"):
            coins = [c for c in coins if c == params["coin"]]
        rows = [
            {
                "name": coin,
                "coin": coin,
                "remainAmount": "50000000000" if coin == SETTLE else "1200",
                "chains": [
                    {
                        "chainType": "Ethereum" if coin == SETTLE else coin,
                        "confirmation": "6",
                        "withdrawFee": "1" if coin == SETTLE else "0.001",
                        "depositMin": "0",
                        "withdrawMin": "10" if coin == SETTLE else "0.001",
                        "chain": "ETH" if coin == SETTLE else coin,
                        "chainDeposit": "1",
                        "chainWithdraw": "1",
                        "minAccuracy": "4" if coin == SETTLE else "8",
                        "withdrawPercentageFee": "0",
                        "contractAddress": "",
                    }
                ],
            }
            for coin in coins
        ]
        return {"rows": rows}

    @staticmethod
    def _query_api(account: _Account, params: dict[str, str]) -> dict[str, Any]:
        # "Get API Key Information" (bybit-exchange/docs, docs/v5/user/apikey-info.mdx): any
        # permission can read it; ``kycLevel`` and ``kycRegion`` since 2023-10-17 (changelog)
        account.key_info_asked += 1
        if account.key_info_refused is not None:
            raise _ApiError(account.key_info_refused, "Permission denied")
        region = {} if account.kyc_region is None else {"kycRegion": account.kyc_region}
        return {
            "id": "13770661",
            "note": "fake",
            "apiKey": account.api_key,
            "readOnly": 1,
            "secret": "",
            "permissions": {
                "ContractTrade": [],
                "Spot": [],
                "Wallet": ["AccountTransfer"],
                "Options": [],
                "Derivatives": [],
                "CopyTrading": [],
                "BlockTrade": [],
                "Exchange": [],
                "NFT": [],
                "Affiliate": [],
            },
            "ips": ["*"],
            "type": 1,
            "deadlineDay": 83,
            "expiredAt": "",
            "createdAt": "2024-01-01T00:00:00Z",
            "unified": 0,
            "uta": 1,
            "userID": 24600000,
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": True,
            "parentUid": "0",
            "kycLevel": "LEVEL_2",
            **region,
        }

    def _execution_list(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        # "Get Trade History" (bybit-exchange/docs, docs/v5/order/execution.mdx), newest first:
        # each open linear position's opening fill at the taker rate. ``feeRate`` is the
        # trading fee alone and a GST-paying account's tax comes beside it in ``extraFees``
        # (a live fill: feeRate 0.00055, GST feeRate 0.000099); the docs type ``extraFees`` a
        # string ("" where there is none), the stream a list, as served here
        if params.get("category") not in CATEGORIES:
            raise _ApiError(10001, "params error: category is invalid")
        account.fills_asked += 1
        if account.fills_refused == 10005:
            raise _ApiError(10005, "Permission denied, please check your API key permissions.")
        if account.fills_refused is not None:
            raise _ApiError(account.fills_refused, "params error")
        rows = []
        listed = params["category"] == "linear" and account.fills_listed
        positions = account.positions.values() if listed else ()
        for p in sorted(positions, key=lambda p: -p.updated_ms):
            value = p.size * p.entry
            extra: Any = ""
            if account.gst:
                tax = account.taker_fee * account.gst
                extra = [
                    {"feeCoin": SETTLE, "feeType": "GST", "subFeeType": "IND_GST",
                     "feeRate": _fmt(tax), "fee": _fmt(value * tax)}
                ]  # fmt: skip
            if account.fills_extra is not None:
                extra = account.fills_extra
            rows.append(
                {
                    "symbol": p.symbol, "side": p.side, "execPrice": _fmt(p.entry),
                    "execQty": _fmt(p.size), "execValue": _fmt(value), "execType": "Trade",
                    "execFee": _fmt(value * account.taker_fee),
                    "feeRate": _fmt(account.taker_fee), "isMaker": False,
                    "execTime": str(p.updated_ms), "extraFees": extra, "feeCurrency": SETTLE,
                }
            )  # fmt: skip
        limit = int(params.get("limit") or 50)
        return {"category": params["category"], "list": rows[:limit], "nextPageCursor": ""}

    def _fee_rate(self, account: _Account, params: dict[str, str]) -> dict[str, Any]:
        # "Get Fee Rate" (bybit-exchange/docs, docs/v5/account/fee-rate.mdx): derivatives rows
        # carry symbol, takerFeeRate and makerFeeRate (no category, no baseCoin)
        if params.get("category") not in CATEGORIES:
            raise _ApiError(10001, "params error: category is invalid")
        if params["category"] != "linear":
            return {"list": []}
        wanted = params.get("symbol")
        if wanted is not None and wanted not in {m.id for m in self._markets.values()}:
            raise _ApiError(10001, f"params error: symbol {wanted} is invalid")
        return {
            "list": [
                {
                    "symbol": m.id,
                    "takerFeeRate": _fmt(account.taker_fee),
                    "makerFeeRate": _fmt(account.maker_fee),
                }
                for m in self._markets.values()
                if wanted in (None, m.id)
            ]
        }

    @staticmethod
    def _account_info(account: _Account, params: dict[str, str]) -> dict[str, Any]:
        return {
            **ACCOUNT_INFO_EXAMPLE,
            "marginMode": account.margin_mode,
            "updatedTime": str(now_ms()),
            "unifiedMarginStatus": account.unified_margin_status,
        }

    # ---- websockets ----------------------------------------------------------------------------

    async def _ws_public(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["category"] not in CATEGORIES:
            return web.Response(status=404, text="404 page not found")
        return await self._serve_ws(request, self._connection("public"), self._on_text)

    async def _ws_private(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_ws(request, self._connection("private"), self._on_text)

    @staticmethod
    def _connection(kind: str) -> Callable[[web.Request, web.WebSocketResponse], _Connection]:
        return lambda request, ws: _Connection(request, ws, kind)

    def _on_text(self, conn: _Connection, text: str) -> None:
        msg = shared.json_object(text)
        if msg is None:
            conn.send({"success": False, "ret_msg": "error:invalid op", "conn_id": conn.conn_id})
            return
        op = msg.get("op")
        req_id = msg.get("req_id")
        reply: dict[str, Any] = {"conn_id": conn.conn_id}
        if req_id is not None:
            reply["req_id"] = str(req_id)
        if op == "ping":
            if not self.answers_pings:
                return
            if conn.kind == "public":
                reply.update(success=True, ret_msg="pong", op="ping")
                reply.setdefault("req_id", "")
            else:
                reply.update(op="pong", args=[str(now_ms())])
            conn.send(reply)
        elif op == "auth" and conn.kind == "private":
            ok = self._ws_auth(conn, msg.get("args"))
            args = msg.get("args")
            self.logins.append((str(args[0]) if isinstance(args, list) and args else "", ok))
            reply.update(success=ok, ret_msg="" if ok else "Params Error", op="auth")
            conn.send(reply)
        elif op in ("subscribe", "unsubscribe"):
            self._ws_subscribe(conn, op, msg.get("args"), reply)
        else:
            reply.update(success=False, ret_msg="error:invalid op", op=op or "")
            conn.send(reply)

    def late_login(self, api_key: str) -> None:
        """The key's next websocket login arrives after its ``expires`` (signed more than
        ccxt's 10 s before it reaches the exchange: a starved client): refused as any
        expired one, with Bybit's ``Params Error``."""
        self._late_logins.add(api_key)

    def _ws_auth(self, conn: _Connection, args: Any) -> bool:
        if not isinstance(args, list) or len(args) != 3:
            return False
        key, expires, signature = (str(a) for a in args)
        account = self._authorize(key)
        late = key in self._late_logins
        self._late_logins.discard(key)
        if (
            isinstance(account, shared.KeyRejection)
            or not expires.isdigit()
            or int(expires) <= now_ms()
            or late
        ):
            return False
        origin = f"GET/realtime{expires}"
        expected = hmac.new(account.secret.encode(), origin.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return False
        conn.owner = key
        return True

    def _ws_subscribe(self, conn: _Connection, op: str, args: Any, reply: dict[str, Any]) -> None:
        reply["op"] = op
        topics = [str(t) for t in args] if isinstance(args, list) else []
        error = None
        if not topics:
            error = "error:args is empty"
        elif conn.kind == "private" and conn.owner is None:
            error = "Request not authorized"
        for topic in topics:
            if error is not None:
                break
            if conn.kind == "private":
                if topic not in PRIVATE_TOPICS:
                    error = f"error:handler not found,topic:{topic}"
            elif not topic.startswith("tickers."):
                error = f"error:handler not found,topic:{topic}"
            elif topic.split(".", 1)[1] not in self._markets:
                error = f"Invalid symbol :[{topic}]"
            if error is None and op == "subscribe" and topic in conn.streams:
                error = f"error:already subscribed,topic:{topic}"
        if error is None:
            if op == "subscribe":
                conn.streams.update(topics)
            else:
                conn.streams.difference_update(topics)
        snapshots = [
            self._ticker_frame(self._markets[t.split(".", 1)[1]], delta=False)
            for t in topics
            if error is None and op == "subscribe" and t.startswith("tickers.")
        ]
        reply.update(success=error is None, ret_msg=error or "")
        conn.send(reply)
        for frame in snapshots:
            conn.send(frame)

    # ---- failure injection --------------------------------------------------------------------

    MALFORMED_JSON = '{"topic":"tickers.BTCUSDT","type":"delta","data":{"sym'

    def _garbled_frame(self, topic: str) -> dict[str, Any] | None:
        """A ``tickers`` delta with ``markPrice "abc"``; a ``position`` row and a ``wallet``
        row with "abc" numbers."""
        if topic.startswith("tickers."):
            market_id = topic.split(".", 1)[1]
            data = {"symbol": market_id, "markPrice": "abc", "indexPrice": "abc"}
            return {"topic": topic, "type": "delta", "data": data, "cs": 0, "ts": now_ms()}
        if topic.startswith("position"):
            row = {"symbol": "BTCUSDT", "side": "Buy", "size": "abc", "positionIdx": 0}
            row.update(entryPrice="abc", markPrice="abc", positionValue="abc")
            row.update(category="linear", leverage="abc", liqPrice="abc")
            return self._private_frame(topic, [row])
        if topic == "wallet":
            coin = {"coin": SETTLE, "walletBalance": "abc", "equity": "abc"}
            wallet = {"accountType": "UNIFIED", "accountMMRate": "abc", "coin": [coin]}
            return self._private_frame(topic, [wallet])
        return None

    @staticmethod
    def _private_frame(topic: str, data: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": f"{secrets.token_hex(16)}:{secrets.token_hex(8)}:0:01",
            "topic": topic,
            "creationTime": now_ms(),
            "data": data,
        }


# ---- command line ------------------------------------------------------------------------------


def _seed_accounts(fake: FakeBybit, count: int) -> None:
    for i in range(count):
        key = f"key{i}"
        fake.add_account(key, f"secret{i}", wallet_balance=str(5000 + 1000 * i))
        btc, eth, sol = (fake.mark(s) for s in ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"))
        fake.open_position(
            key, "BTC/USDT:USDT", "long", f"{0.01 * (i + 1):.3f}", btc * Decimal("0.99")
        )
        fake.open_position(
            key, "ETH/USDT:USDT", "short", f"{0.5 + 0.1 * i:.2f}", eth * Decimal("1.01")
        )
        if i % 2:
            fake.open_position(
                key, "SOL/USDT:USDT", "long", f"{10 + i}", sol, margin_mode="isolated", leverage=5
            )


def main(argv: list[str] | None = None) -> int:
    return shared.serve_main(FakeBybit, _seed_accounts, argv, max_step=0.0005)


if __name__ == "__main__":
    sys.exit(main())
