"""Presenting engine results: the ``calc --json`` object and the terminal tables."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from alertd.engine.margin import AccountMetrics, PositionMetrics

if TYPE_CHECKING:
    from alertd.snapshot.live import LiveSnapshot


def dec(value: Decimal | None) -> str | None:
    """A decimal string with no exponent; ``"Infinity"`` for a liquidated ratio."""
    if value is None:
        return None
    if not value.is_finite():
        return "Infinity" if value > 0 else "-Infinity"
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def position_json(pm: PositionMetrics) -> dict[str, Any]:
    p = pm.position
    return {
        "symbol": p.symbol,
        "side": p.side.label,
        "margin_mode": p.margin_mode.value,
        "contracts": dec(p.contracts),
        "entry_price": dec(p.entry_price),
        "mark_price": dec(p.mark_price),
        "notional": dec(pm.notional),
        "unrealized_pnl": dec(pm.unrealized_pnl),
        "tier": pm.tier + 1,
        "mmr": dec(pm.mmr),
        "maintenance_margin": dec(pm.maintenance_margin),
        "initial_margin": dec(pm.initial_margin),
        "margin_balance": dec(pm.margin_balance),
        "margin_ratio": dec(pm.margin_ratio),
        "exchange_margin_ratio": dec(pm.displayed_ratio),
        "liquidation_price": dec(pm.liquidation_price),
        "bankruptcy_price": dec(pm.bankruptcy_price),
        "liquidation_distance": dec(pm.liquidation_distance),
        "effective_leverage": dec(pm.effective_leverage),
        "margin_to_add": dec(pm.margin_to_add),
        "size_to_cut": dec(pm.size_to_cut),
    }


def metrics_json(m: AccountMetrics) -> dict[str, Any]:
    """The ``alertd calc --json`` object: ``{"account": {...}, "positions": [...]}``."""
    a = m.account
    pool = m.pool
    return {
        "account": {
            "exchange": a.profile.id,
            "account": a.name,
            "settle": a.settle,
            "wallet_balance": dec(pool.wallet_balance),
            "unrealized_pnl": dec(pool.unrealized_pnl),
            "margin_balance": dec(pool.margin_balance),
            "maintenance_margin": dec(pool.maintenance_margin),
            "margin_ratio": dec(pool.margin_ratio),
            "exchange_margin_ratio": dec(pool.displayed_ratio),
            "exchange_margin_ratio_name": a.profile.displayed_ratio_name or None,
            "buffer": dec(pool.buffer),
            "crash_distance": dec(m.crash_distance),
            "worst_ratio": dec(m.worst_ratio),
            "notional": dec(pool.notional),
            "effective_leverage": dec(pool.effective_leverage),
            "target_ratio": dec(m.target_ratio),
            "margin_to_add": dec(pool.margin_to_add),
        },
        "positions": [position_json(pm) for pm in m.positions],
    }


def _money(value: Decimal | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if not value.is_finite():
        return "∞"
    suffix = f" {unit}" if unit else ""
    places = 2 if abs(value) >= 1 or value == 0 else 8
    return f"{value:,.{places}f}{suffix}"


def _price(value: Decimal | None) -> str:
    if value is None:
        return "--"  # the exchanges' own way of showing "no liquidation price"
    magnitude = abs(value)
    places = 2 if magnitude >= 1000 else 4 if magnitude >= 1 else 8
    return f"{value:,.{places}f}"


def _pct(value: Decimal | None) -> str:
    if value is None:
        return "-"
    if not value.is_finite():
        return "LIQUIDATED"
    return f"{value * 100:,.2f}%"


def _shown_ratio(value: Decimal | None, m: AccountMetrics) -> str:
    from alertd.engine.profiles import DisplayedRatio

    kind = m.account.profile.displayed_ratio
    if value is None or kind is DisplayedRatio.NONE:
        return "-"
    if kind is DisplayedRatio.EQUITY_OVER_REQUIREMENT:
        return f"{value:,.2f} ({_pct(value)})"
    return _pct(value)


def _qty(value: Decimal) -> str:
    return format(value.normalize(), "f")


def render(m: AccountMetrics, console: Console) -> None:
    a = m.account
    pool = m.pool
    unit = a.settle
    summary = Table(
        title=f"{a.name} · {a.profile.name} · {unit}", show_header=False, box=None, padding=(0, 2)
    )
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("Wallet balance", _money(pool.wallet_balance, unit))
    summary.add_row("Unrealized PnL", _money(pool.unrealized_pnl, unit))
    summary.add_row("Margin balance", _money(pool.margin_balance, unit))
    summary.add_row("Maintenance margin", _money(pool.maintenance_margin, unit))
    summary.add_row("Margin ratio (MM / balance)", _pct(pool.margin_ratio))
    if a.profile.displayed_ratio_name:
        summary.add_row(
            f"{a.profile.name} {a.profile.displayed_ratio_name}",
            _shown_ratio(pool.displayed_ratio, m),
        )
    summary.add_row("Buffer", _money(pool.buffer, unit))
    summary.add_row("Worst ratio", _pct(m.worst_ratio))
    summary.add_row(
        "Crash distance",
        "none" if m.crash_distance is None else f"{m.crash_distance * 100:+.2f}% (all marks)",
    )
    if m.target_ratio is not None and pool.margin_to_add is not None:
        summary.add_row(f"Add to reach {_pct(m.target_ratio)}", _money(pool.margin_to_add, unit))
    console.print(summary)

    table = Table(title="Positions", header_style="bold")
    for name in (
        "Symbol",
        "Side",
        "Mode",
        "Size",
        "Entry",
        "Mark",
        "Notional",
        "uPnL",
        "MM",
        "Ratio",
        "Liq. price",
        "Distance",
        "Bankruptcy",
        "Lev.",
        f"To {_pct(m.target_ratio)}" if m.target_ratio is not None else "Action",
    ):
        table.add_column(name, justify="left" if name in ("Symbol", "Side", "Mode") else "right")
    for pm in m.positions:
        p = pm.position
        action = "-"
        if pm.margin_to_add:
            action = f"add {_money(pm.margin_to_add)}"
        elif pm.size_to_cut:
            action = f"cut {_qty(pm.size_to_cut)}"
        elif m.target_ratio is not None and pm.size_to_cut is None:
            action = "add margin"
        elif m.target_ratio is not None:
            action = "ok"
        table.add_row(
            p.symbol,
            p.side.label,
            p.margin_mode.value,
            _qty(p.contracts),
            _price(p.entry_price),
            _price(p.mark_price),
            _money(pm.notional),
            _money(pm.unrealized_pnl),
            _money(pm.maintenance_margin),
            _pct(pm.margin_ratio),
            _price(pm.liquidation_price),
            _pct(pm.liquidation_distance),
            _price(pm.bankruptcy_price),
            "∞"
            if pm.effective_leverage is not None and not pm.effective_leverage.is_finite()
            else f"{pm.effective_leverage:.2f}x"
            if pm.effective_leverage is not None
            else "-",
            action,
        )
    console.print(table)


def render_comparison(snapshot: LiveSnapshot, console: Console) -> None:
    """alertd's figures beside the exchange's own, so a user can check them on its screen."""
    from alertd.engine.margin import compute

    metrics = compute(snapshot.account)
    state = snapshot.state
    table = Table(
        title=f"{snapshot.account.name}: alertd vs {snapshot.account.profile.name}",
        header_style="bold",
    )
    for name in ("Figure", "alertd", "exchange", "difference"):
        table.add_column(name, justify="left" if name == "Figure" else "right")

    def row(label: str, ours: Decimal | None, theirs: Decimal | None, fmt: Any) -> None:
        diff = "-"
        if ours is not None and theirs is not None and ours.is_finite() and theirs != 0:
            diff = f"{(ours - theirs) / abs(theirs) * 100:+.4f}%"
        table.add_row(label, fmt(ours), fmt(theirs), diff)

    total_mm = sum((pm.maintenance_margin for pm in metrics.positions), Decimal(0))
    row(
        "Maintenance margin (all positions)",
        total_mm,
        state.reported_account.maintenance_margin,
        _money,
    )
    if all(not pm.position.is_isolated for pm in metrics.positions):
        row("Margin ratio", metrics.pool.margin_ratio, state.reported_account.margin_ratio, _pct)
    for pm in metrics.positions:
        figures = state.reported_positions.get(pm.position.key)
        if figures is None:
            continue
        label = f"{pm.position.symbol} {pm.position.side.label}"
        row(f"{label} MM", pm.maintenance_margin, figures.maintenance_margin, _money)
        row(f"{label} liq. price", pm.liquidation_price, figures.liquidation_price, _price)
    console.print(table)
