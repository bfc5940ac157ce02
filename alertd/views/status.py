"""``alertd status`` and ``alertd history``: what the running daemon sees, for a terminal.

``status`` asks the daemon's local endpoint when it is enabled and answering; otherwise it
reads the state file the daemon keeps (last snapshots, alert states, the outbox).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

import alertd.views.format as fmt
from alertd.config import Config, expand_env
from alertd.daemon.evaluation import build_rules
from alertd.daemon.store import Store
from alertd.daemon.view import (
    AccountFigures,
    AccountView,
    Counters,
    DaemonView,
    FiringAlert,
    Source,
    Undelivered,
)
from alertd.engine.margin import compute
from alertd.engine.reported import ExchangeRatioPosition
from alertd.engine.stops import StopFigures
from alertd.errors import StartupError
from alertd.snapshot.format import parse_snapshot
from alertd.views.format import decimal_str as dec
from alertd.views.format import fee_gap_line
from alertd.views.tables import figures_table


def _time_to(seconds: str | None) -> str:
    """Time to liquidation at the current pace: ``-`` while the mark moves away or without
    price history."""
    value = _d(seconds)
    if value is None:
        return fmt.NONE
    return fmt.duration(float(value)) if value.is_finite() else fmt.NONE


def figures_json(figures: AccountFigures | None) -> dict[str, Any]:
    """An account's figures as ``status`` shows them (the daemon's and the state file's)."""
    if figures is None:
        return {
            "margin_ratio": None,
            "buffer": None,
            "crash_distance": None,
            "effective_leverage": None,
            "concentration": None,
            "margin_concentration": None,
            "settle": None,
            "pools": [],
            "positions": [],
        }
    return {
        "margin_ratio": dec(figures.worst_ratio),
        "buffer": dec(figures.buffer),
        "crash_distance": dec(figures.crash_distance),
        "effective_leverage": dec(figures.effective_leverage),
        "concentration": dec(figures.concentration),
        "margin_concentration": dec(figures.margin_concentration),
        "settle": figures.settle,
        # each margin asset's cross pool where the account has several (Binance single-asset:
        # USDT and USDC); the figures above are the account's (its worst, its riskiest pool)
        "pools": [
            {
                "asset": pool.asset,
                "margin_ratio": dec(pool.margin_ratio),
                "buffer": dec(pool.buffer),
            }
            for pool in figures.pools
        ],
        "positions": [
            {
                "symbol": p.symbol,
                "side": p.side,
                "contracts": dec(p.contracts),
                "mark_price": dec(p.mark_price),
                "liquidation_price": dec(p.liquidation_price),
                "liquidation_distance": dec(p.liquidation_distance),
                "margin_ratio": dec(p.margin_ratio),
                **_stop_fields(p.stop),
                "adl_rank": dec(p.adl_rank),
                # the account's taker rate in the requirement (null: the formula has none)
                "fee_rate": dec(p.fee_rate),
                "bankruptcy_buffer": dec(p.bankruptcy_buffer),
                "gap_risk": dec(p.gap_risk),
                "close_slippage": dec(p.values.get("close_slippage")),
                "liquidation_probability_1h": dec(p.liquidation_probability),
                "time_to_liquidation_s": dec(p.time_to_liquidation),
            }
            for p in figures.positions
        ],
    }


def _account_json(a: AccountView, source: Source) -> dict[str, Any]:
    figures = figures_json(a.figures)
    computed = a.figures is not None
    if source is Source.STATE_FILE:
        if not computed and a.exchange_ratio is not None:
            figures["margin_ratio"] = dec(a.exchange_ratio)  # as last read, and says so
        return {
            "name": a.name,
            "saved_at": a.saved_at,
            "positions": figures.pop("positions"),
            **figures,
            "stale": list(a.stale),
            "fatal": a.fatal,
            "exchange": a.exchange,
            "mode": a.mode or None,
            "coverage": a.coverage or None,
            "mode_limits": a.mode_limits,
            "fee_gap": a.fee_gap,
            "margin_ratio_source": _ratio_source(computed, figures["margin_ratio"]),
            "exchange_margin_ratio": dec(a.exchange_ratio),
            "mode_saved_at": a.mode_saved_at,
        }
    if not computed and a.exchange_ratio is not None and a.bootstrapped and not a.fatal:
        # no figures of alertd's own: the account's ratio is the exchange's, and says so
        figures["margin_ratio"] = dec(a.exchange_ratio)
    if not computed and a.exchange_positions:
        # the positions beside it: size, the live mark, the exchange's liquidation prices
        figures["positions"] = [_exchange_position_json(p) for p in a.exchange_positions]
    return {
        "name": a.name,
        "bootstrapped": a.bootstrapped,
        "connected": a.connected,
        "fatal": a.fatal,
        "stale": list(a.stale),
        "private_stream_missed": a.missed,
        **figures,
        "exchange": a.exchange,
        "mode": a.mode or None,
        "coverage": a.coverage or None,
        "mode_limits": a.mode_limits,
        "incomplete": list(a.missing),
        "fee_gap": a.fee_gap,
        # the positions whose alerts are kept as they are while alertd's figures are incomplete
        "alerts_kept": list(a.held_alerts),
        "margin_ratio_source": _ratio_source(computed, figures["margin_ratio"]),
        "exchange_margin_ratio": dec(a.exchange_ratio),
        # the exchange's ratio as read at the last reconcile, moved with the marks since
        "exchange_margin_ratio_moved": a.exchange_ratio_moved,
    }


def _exchange_position_json(p: ExchangeRatioPosition) -> dict[str, Any]:
    """A position of an account alertd does not compute: no margin figure of alertd's, the
    liquidation price the exchange's (``liquidation_price_source``)."""
    return {
        "symbol": p.symbol,
        "side": p.side.label,
        "contracts": dec(p.contracts),
        "entry_price": dec(p.entry_price),
        "mark_price": dec(p.mark_price),
        "notional": dec(p.notional),
        "unrealized_pnl": dec(p.unrealized_pnl),
        # an inverse position's PnL (in the coin) at its mark, in USD; null for a linear one
        "unrealized_pnl_usd": dec(p.unrealized_pnl_usd),
        "liquidation_price": dec(p.liquidation_price),
        "liquidation_price_source": "exchange" if p.liquidation_price is not None else None,
        "liquidation_distance": dec(p.liquidation_distance),
        "margin_ratio": None,
        # the exchange's own, where it reports one (null: none reported, not zero)
        "maintenance_margin": dec(p.maintenance_margin),
        **_stop_fields(p.stop),
        # the mark and every figure the exchange's own as its last snapshot read them
        "as_read": p.as_read,
    }


def _stop_fields(stop: StopFigures | None) -> dict[str, str | None]:
    """A position's stop figures in ``status --json``; null: the account's stops are not
    read (not "no stop")."""
    return {
        "stop_loss_price": None if stop is None else dec(stop.price),
        "stop_coverage": None if stop is None else dec(stop.coverage),
        "stop_beyond_liquidation": None if stop is None else dec(stop.beyond_liquidation),
    }


def _ratio_source(computed: bool, ratio: str | None) -> str | None:
    """Whose number "margin_ratio" is: alertd's own, the exchange's, or none."""
    if computed:
        return "alertd"
    return "exchange" if ratio is not None else None


def status_json(view: DaemonView) -> dict[str, Any]:
    """What ``alertd status`` prints: accounts, positions, feeds, alerts, the outbox."""
    return {
        "source": view.source.value,
        "healthy": view.healthy,
        "reasons": list(view.reasons),
        "ip_bans": list(view.bans),
        "public_pauses": list(view.public_pauses),
        "accounts": [_account_json(a, view.source) for a in view.accounts],
        "firing": [
            {
                "rule": f.rule,
                "severity": f.severity,
                "subject": f.subject,
                "since": f.since,
                "value": dec(f.value),
                "notified": f.notified,
                "unwatched": f.unwatched,
            }
            for f in view.firing
        ],
        "undelivered": [
            {
                "id": u.id,
                "receiver": u.receiver,
                "title": u.title,
                "attempts": u.attempts,
                "last_error": u.last_error,
                "created_at": u.created_at,
            }
            for u in view.undelivered
        ],
    }


def fetch_status(config: Config) -> dict[str, Any] | None:
    settings = config.http
    if not settings.enabled:
        return None
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    request = urllib.request.Request(f"http://{host}:{settings.port}/status")
    if settings.token_env:
        token = expand_env("${" + settings.token_env + "}", "http.token_env").reveal()
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            data: dict[str, Any] = json.loads(response.read())
            data["source"] = "daemon"
            return data
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _saved_state(config: Config) -> Store:
    """The daemon's state file, to read: one that is not there is not created empty (that
    would print empty tables as if all were well)."""
    if not config.state_path.exists():
        raise StartupError(
            f"state file {config.state_path}: no state yet: has alertd run with this config? "
            f"(alertd run -c CONFIG keeps its state there)"
        )
    return Store(config.state_path)


_UNWATCHED = {
    False: "account not in the config: ends when alertd next starts",
    True: "account disabled in the config: ends when alertd next starts",
}


def view_from_store(config: Config, now: float) -> DaemonView:
    """The daemon's view as its state file keeps it: last snapshots, alert states, outbox."""
    store = _saved_state(config)
    try:
        saved = store.snapshots()
        modes = store.modes()
        accounts = []
        for account in config.accounts:
            row = saved.get(account.name)
            mode = modes.get(account.name)
            figures = None
            fee_gap = None
            if row is not None and (mode is None or mode.limits is None):
                loaded = parse_snapshot(row.snapshot)
                figures = AccountFigures.of(compute(loaded.account))
                if loaded.fee_gap is not None:
                    # what the saved fee rates left out, at the saved marks, as the daemon said
                    fee_gap = fee_gap_line(loaded.account.pool_accounts(), loaded.fee_gap)
            # the mode row is saved as often as the exchange's ratio moves, the snapshot as
            # rarely as every 10 minutes for its marks: each figure carries its own row's time
            figures_row = row if figures is not None else mode
            accounts.append(
                AccountView(
                    name=account.name,
                    exchange=account.exchange,
                    bootstrapped=False,
                    connected=False,
                    fatal=None,
                    stale=(),
                    open_positions=0 if figures is None else len(figures.positions),
                    figures=figures,
                    saved_at=None if figures_row is None else figures_row.updated_at,
                    mode_saved_at=None if mode is None else mode.updated_at,
                    mode="" if mode is None else mode.mode,
                    coverage="" if mode is None else mode.coverage,
                    mode_limits=None if mode is None else mode.limits,
                    exchange_ratio=None if mode is None else mode.exchange_ratio,
                    fee_gap=fee_gap,
                )
            )
        # the daemon's rules are the config's plus the built-in ones: the same list here
        rules = {rule.name: rule for rule in build_rules(config)}
        # an account removed from the config or disabled keeps its alerts firing in the file
        # until the daemon next starts and ends them; a daemon not restarted since the edit
        # still watches it: shown, saying which
        watched = {a.name for a in config.accounts if a.enabled}
        configured = {a.name for a in config.accounts}
        firing = tuple(
            FiringAlert.of(
                s,
                rules.get(s.rule),
                None
                if s.subject.account in watched
                else _UNWATCHED[s.subject.account in configured],
            )
            for s in store.load_states()
            if s.phase.value == "firing"
        )
        undelivered = tuple(Undelivered.of(row) for row in store.pending())
    finally:
        store.close()
    return DaemonView(Source.STATE_FILE, now, tuple(accounts), firing, undelivered, Counters(), ())


def status_from_store(config: Config, now: float | None = None) -> dict[str, Any]:
    return status_json(view_from_store(config, time.time() if now is None else now))


def _d(text: str | None) -> Decimal | None:
    """A figure from the status JSON (decimal strings) back to a Decimal."""
    return None if text is None else Decimal(text)


def describe_stop(price: Decimal | None, coverage: Decimal | None, beyond: Decimal | None) -> str:
    """A position's stop in a few characters: "60,000.00 (100%)", "none", "-" (not read),
    "trailing (50%)" without a price, and "BEYOND LIQ." when the liquidation comes first."""
    if coverage is None:
        return fmt.NONE
    if coverage == 0:
        return "none"
    text = f"{fmt.price(price) if price is not None else 'trailing'} ({fmt.percent(coverage, 0)})"
    return text + (" BEYOND LIQ." if beyond is not None and beyond > 0 else "")


def stop_text(p: dict[str, Any]) -> str:
    """:func:`describe_stop` of a position of ``status --json``."""
    return describe_stop(
        _d(p.get("stop_loss_price")),
        _d(p.get("stop_coverage")),
        _d(p.get("stop_beyond_liquidation")),
    )


def _liquidation_text(p: dict[str, Any]) -> str:
    """A position's liquidation price, marked where it is the exchange's (an account whose
    mode alertd does not compute)."""
    price = fmt.price(_d(p["liquidation_price"]))
    return f"{price} (exchange's)" if p.get("liquidation_price_source") == "exchange" else price


def _mark_text(p: dict[str, Any]) -> str:
    """A position's mark, marked where it is the exchange's of the last snapshot (a position
    alertd lists but does not follow)."""
    price = fmt.price(_d(p["mark_price"]))
    return f"{price} (as read)" if p.get("as_read") else price


# a position row of `alertd status`: (header, value from the position's entry in the data)
PositionColumn = tuple[str, Callable[[dict[str, Any]], str]]
# what decides the next move
POSITION_KEY: tuple[PositionColumn, ...] = (
    ("Size", lambda p: fmt.quantity(_d(p["contracts"]))),
    ("Mark", _mark_text),
    ("Liq. price", lambda p: _liquidation_text(p)),
    ("Distance", lambda p: fmt.percent(_d(p["liquidation_distance"]))),
    ("Ratio", lambda p: fmt.ratio(_d(p["margin_ratio"]))),
)
# the guide's defences and the predictive figures
POSITION_RISKS: tuple[PositionColumn, ...] = (
    ("Stop", stop_text),
    ("ADL", lambda p: fmt.percent(_d(p.get("adl_rank")), 0)),
    ("Fee", lambda p: fmt.percent(_d(p.get("fee_rate")), 4)),
    ("Bkr. buffer", lambda p: fmt.percent(_d(p.get("bankruptcy_buffer")))),
    ("Gap risk", lambda p: fmt.money(_d(p.get("gap_risk")))),
    ("P(liq. 1h)", lambda p: fmt.percent(_d(p.get("liquidation_probability_1h")))),
    ("Liq. in", lambda p: _time_to(p.get("time_to_liquidation_s"))),
)


def _position_tables(accounts: list[dict[str, Any]], width: int) -> list[Table]:
    """One positions table on a terminal of WIDE_COLUMNS or more; below that (80 to 149
    columns), as ``alertd calc`` does, what decides the next move in one table and the risks
    in a second, each row named by account, symbol and side."""
    groups = [("Positions", POSITION_KEY + POSITION_RISKS)]
    if width < fmt.WIDE_COLUMNS:
        groups = [("Positions", POSITION_KEY), ("Position risks", POSITION_RISKS)]
    tables = []
    for title, columns in groups:
        headers = ("Position", *(header for header, _ in columns))
        table = figures_table(title, headers, ("Position",), no_wrap=("Position",))
        for a in accounts:
            for p in a["positions"]:
                name = f"{a['name']} {p['symbol']} {p['side']}"
                table.add_row(name, *(value(p) for _, value in columns))
        tables.append(table)
    return tables


def _pools_table(accounts: list[dict[str, Any]]) -> Table | None:
    """Each margin pool of the accounts that have several (Binance single-asset: USDT, USDC,
    FDUSD), its ratio and buffer in its own asset; None when no account has several (the
    accounts table's figures are then the one pool's)."""
    rows = [(a["name"], pool) for a in accounts for pool in a.get("pools") or ()]
    if not rows:
        return None
    table = figures_table(
        "Margin pools", ("Account", "Pool", "Ratio", "Buffer"), ("Account", "Pool")
    )
    for name, pool in rows:
        table.add_row(
            name,
            pool["asset"],
            fmt.ratio(_d(pool["margin_ratio"])),
            fmt.money(_d(pool["buffer"]), pool["asset"]),
        )
    return table


def render_status(data: dict[str, Any], console: Console) -> None:
    source = data["source"]
    health = data.get("healthy")
    head = (
        "from the running daemon"
        if source == "daemon"
        else ("from the state file (the daemon's endpoint is off or not answering)")
    )
    console.print(Text.assemble(("alertd status", "bold"), f" {head}"))
    if health is not None:
        console.print("healthy" if health else "UNHEALTHY: " + "; ".join(data["reasons"]))
    for ban in data.get("ip_bans", ()):
        console.print(f"{ban}: every account of it waits for the ban's end, none is stopped")
    for pause in data.get("public_pauses", ()):
        console.print(f"{pause}: its public reads wait, private requests and streams go on")
    columns = (
        "Account",
        "Mode",
        "Worst ratio",
        "Buffer",
        "Crash distance",
        "Lev.",
        "Largest",
        "Feed",
    )
    accounts = figures_table("Accounts", columns, ("Account", "Mode", "Feed"))
    for a in data["accounts"]:
        if a.get("fatal"):
            feed = f"STOPPED: {a['fatal']}"
        elif "saved_at" in a:
            feed = f"saved {fmt.timestamp(a['saved_at'])}"
        else:
            feed = "stale: " + ", ".join(a["stale"]) if a["stale"] else "fresh"
        if a.get("incomplete"):
            feed += "; incomplete: " + "; ".join(a["incomplete"])
        if a.get("fee_gap"):
            feed += "; " + a["fee_gap"]
        if a.get("alerts_kept"):
            feed += "; alerts kept as they are meanwhile: " + ", ".join(a["alerts_kept"])
        buffer = fmt.money(_d(a["buffer"]), a["settle"] or "")
        crash = fmt.percent(_d(a["crash_distance"]), signed=True)
        ratio = fmt.ratio(_d(a["margin_ratio"]))
        if a.get("margin_ratio_source") == "exchange":
            ratio += f" ({a.get('exchange', 'exchange')}'s own)"
        mode = a.get("mode") or "-"
        if a.get("coverage") and a.get("mode_limits"):
            mode += f": {a['coverage']}"
        leverage = fmt.leverage(_d(a.get("effective_leverage")))
        largest = fmt.percent(_d(a.get("concentration")), 0)
        accounts.add_row(a["name"], mode, ratio, buffer, crash, leverage, largest, feed)
    console.print(accounts)
    pools = _pools_table(data["accounts"])
    if pools is not None:
        console.print(pools)
    for table in _position_tables(data["accounts"], console.width):
        console.print(table)
    firing = Table(title=f"Firing alerts ({len(data['firing'])})", header_style="bold")
    for col in ("Rule", "Severity", "Subject", "Since", "Value", "Sent"):
        firing.add_column(col)
    for f in data["firing"]:
        firing.add_row(
            f["rule"],
            f["severity"] or "-",
            f["subject"] if not f.get("unwatched") else f"{f['subject']} ({f['unwatched']})",
            fmt.timestamp(f["since"]),
            f["value"] or "-",
            "yes" if f["notified"] else "held",
        )
    console.print(firing)
    outbox = Table(title=f"Undelivered messages ({len(data['undelivered'])})", header_style="bold")
    for col in ("#", "Receiver", "Title", "Attempts", "Last error"):
        outbox.add_column(col)
    for u in data["undelivered"]:
        outbox.add_row(
            str(u["id"]),
            u["receiver"],
            u["title"],
            str(u["attempts"]),
            (u["last_error"] or "-")[:60],
        )
    console.print(outbox)


def history(config: Config, since_s: float, now: float) -> list[dict[str, Any]]:
    store = _saved_state(config)
    try:
        return [
            {
                "id": r.id,
                "created_at": r.created_at,
                "receiver": r.receiver,
                "severity": r.severity,
                "title": r.title,
                "kind": r.payload.get("kind"),
                "rule": r.payload.get("rule"),
                "delivered_at": r.delivered_at,
                "attempts": r.attempts,
                "last_error": r.last_error,
            }
            for r in store.history(now - since_s)
        ]
    finally:
        store.close()


def render_history(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title=f"Alerts and deliveries ({len(rows)})", header_style="bold")
    for col in ("Time", "Severity", "Title", "Receiver", "Delivered", "Attempts"):
        table.add_column(col)
    for r in rows:
        delivered = (
            fmt.timestamp(r["delivered_at"])
            if r["delivered_at"]
            else (f"pending: {r['last_error']}" if r["last_error"] else "pending")
        )
        table.add_row(
            fmt.timestamp(r["created_at"]),
            r["severity"],
            r["title"],
            r["receiver"],
            delivered,
            str(r["attempts"]),
        )
    console.print(table)
