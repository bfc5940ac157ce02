"""Presenting engine results: the ``calc --json`` object and the terminal tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

import alertd.views.format as fmt
from alertd.engine.collateral import RatioBasis
from alertd.engine.fee_gap import FeeGap, margin_left_out
from alertd.engine.margin import (
    AccountMetrics,
    CollateralMetrics,
    MarginAssetMetrics,
    PositionMetrics,
)
from alertd.engine.model import Account, Side
from alertd.engine.orderbook import ForcedClose, OrderBook, close_cost, gap_shortfall
from alertd.engine.profiles import DisplayedRatio
from alertd.engine.stops import StopFigures, stop_figures
from alertd.snapshot.compare import Figure, Row
from alertd.views.format import decimal_str
from alertd.views.tables import figures_table

if TYPE_CHECKING:
    from alertd.snapshot.live import LiveSnapshot


def fee_gap_json(pool: Account, gap: FeeGap) -> dict[str, Any]:
    """``calc --json``'s ``fee_gap`` of one pool: :func:`fee_gap_line`'s figures."""
    left = margin_left_out(pool, gap)
    return {
        "what": gap.what,
        "share": decimal_str(gap.share),
        "maintenance_margin_left_out": decimal_str(left.amount),
        "share_of_maintenance_margin": decimal_str(left.share),
    }


def _stops(m: AccountMetrics, pm: PositionMetrics) -> StopFigures | None:
    p = pm.position
    return stop_figures(m.account.stops, p, p.mark_price, pm.liquidation_price)


def stop_json(figures: StopFigures | None) -> dict[str, Any] | None:
    """A position's stop figures in ``calc --json`` (null: the stops were not read)."""
    if figures is None:
        return None
    return {
        "stop_loss_price": decimal_str(figures.price),
        "stop_coverage": decimal_str(figures.coverage),
        "protective_orders": figures.orders,
        "stop_beyond_liquidation": decimal_str(figures.beyond_liquidation),
        "stop_loss": decimal_str(figures.loss),
    }


# the text lines the daemon's message gives for closing a position into a book (the average
# fill, a book too thin, "→ cut 0.556 BTC/USDT:USDT to fit the book"): rules/messages.py's
BookNotes = Callable[[PositionMetrics, OrderBook], list[str]]
NO_BOOKS: Mapping[str, OrderBook] = {}


@dataclass(frozen=True, slots=True)
class GapFigures:
    """Closing a position whole into its symbol's order book: now, and at its liquidation
    price with the book moved there (alertd/engine/orderbook.py's model)."""

    slippage: Decimal | None  # None: the closing side is empty
    shortfall: Decimal | None  # past the bankruptcy price; None: no liq. or bankruptcy price
    notes: tuple[str, ...]

    @classmethod
    def of(cls, pm: PositionMetrics, book: OrderBook, notes: BookNotes | None) -> GapFigures:
        p = pm.position
        long = p.side is Side.LONG
        liq, bankrupt = pm.liquidation_price, pm.bankruptcy_price
        return cls(
            close_cost(book, long, p.quantity, p.mark_price, p.inverse).slippage,
            None
            if liq is None or bankrupt is None
            else gap_shortfall(book, ForcedClose(long, p.quantity, liq, bankrupt, p.inverse)),
            () if notes is None else tuple(notes(pm, book)),
        )


def gap_json(gap: GapFigures | None) -> dict[str, Any]:
    if gap is None:  # no order book of the symbol
        return {"close_slippage": None, "gap_risk": None, "book_notes": []}
    return {
        "close_slippage": decimal_str(gap.slippage),
        "gap_risk": decimal_str(gap.shortfall),
        "book_notes": list(gap.notes),
    }


def _gap(
    pm: PositionMetrics, books: Mapping[str, OrderBook], notes: BookNotes | None
) -> GapFigures | None:
    book = books.get(pm.position.symbol)
    return None if book is None else GapFigures.of(pm, book, notes)


def position_json(
    pm: PositionMetrics,
    m: AccountMetrics | None = None,
    books: Mapping[str, OrderBook] = NO_BOOKS,
    notes: BookNotes | None = None,
) -> dict[str, Any]:
    p = pm.position
    return {
        "symbol": p.symbol,
        "side": p.side.label,
        "margin_mode": p.margin_mode.value,
        "contracts": decimal_str(p.contracts),
        "entry_price": decimal_str(p.entry_price),
        "mark_price": decimal_str(p.mark_price),
        "notional": decimal_str(pm.notional),
        "unrealized_pnl": decimal_str(pm.unrealized_pnl),
        "tier": pm.tier + 1,
        "mmr": decimal_str(pm.mmr),
        "maintenance_margin": decimal_str(pm.maintenance_margin),
        "initial_margin": decimal_str(pm.initial_margin),
        "margin_balance": decimal_str(pm.margin_balance),
        "margin_ratio": decimal_str(pm.margin_ratio),
        # alertd's own ratio in the form the exchange's screen shows it (never the exchange's
        # number: ``alertd snapshot`` compares that)
        "margin_ratio_in_exchange_form": decimal_str(pm.displayed_ratio),
        "liquidation_price": decimal_str(pm.liquidation_price),
        "bankruptcy_price": decimal_str(pm.bankruptcy_price),
        "liquidation_distance": decimal_str(pm.liquidation_distance),
        "effective_leverage": decimal_str(pm.effective_leverage),
        "margin_to_add": decimal_str(pm.margin_to_add),
        "size_to_cut": decimal_str(pm.size_to_cut),
        "stop": None if m is None else stop_json(_stops(m, pm)),
        "adl_rank": decimal_str(p.adl_rank),
        # the taker fee rate in the requirement (the account's where the feed read it)
        "fee_rate": decimal_str(p.fee_rate),
        "bankruptcy_buffer": decimal_str(pm.bankruptcy_buffer),
        **gap_json(_gap(pm, books, notes)),
    }


def collateral_json(cm: CollateralMetrics) -> dict[str, Any]:
    c = cm.collateral
    return {
        "asset": c.asset,
        "amount": decimal_str(c.amount),
        "price": decimal_str(c.price),
        "price_symbol": c.price_symbol,
        "market_value": decimal_str(cm.market_value),
        "value": decimal_str(cm.value),
        "requirement": decimal_str(cm.requirement),
    }


def equity_line_json(line: MarginAssetMetrics) -> dict[str, Any]:
    return {
        "asset": line.asset,
        "wallet_balance": decimal_str(line.wallet_balance),
        "equity": decimal_str(line.equity),
        "value": decimal_str(line.value),
        "requirement": decimal_str(line.requirement),
    }


def metrics_json(
    m: AccountMetrics, books: Mapping[str, OrderBook] = NO_BOOKS, notes: BookNotes | None = None
) -> dict[str, Any]:
    """The ``alertd calc --json`` object: ``{"account": {...}, "positions": [...]}``; the
    account's ``collateral`` lists the cross pool's coins (their ``value`` is in
    ``margin_balance``)."""
    a = m.account
    pool = m.pool
    return {
        "account": {
            "exchange": a.profile.id,
            "account": a.name,
            "settle": a.settle,
            "wallet_balance": decimal_str(pool.wallet_balance),
            "collateral_value": decimal_str(pool.collateral_value),
            "collateral": [collateral_json(cm) for cm in pool.collateral],
            "unrealized_pnl": decimal_str(pool.unrealized_pnl),
            "margin_balance": decimal_str(pool.margin_balance),
            "maintenance_margin": decimal_str(pool.maintenance_margin),
            # every margin asset's equity line, the settle currency's first: its wallet and
            # equity in its own unit, its value (after its discount, or at its bid or ask
            # rate) and what it owed requires in the pool's
            "equity_lines": [equity_line_json(line) for line in pool.equity_lines],
            # the keys of before equity_lines, still written (docs/engine.md): the settle
            # line's requirement and adjustment, and the other margin assets' lines
            "owed_requirement": decimal_str(pool.settle_line.requirement),
            "settle_discount": decimal_str(pool.settle_line.adjustment),
            "margin_assets": [equity_line_json(line) for line in pool.margin_assets],
            "margin_ratio": decimal_str(pool.margin_ratio),
            "margin_ratio_in_exchange_form": decimal_str(pool.displayed_ratio),
            "exchange_form_name": a.profile.displayed_ratio_name or None,
            "buffer": decimal_str(pool.buffer),
            "crash_distance": decimal_str(m.crash_distance),
            "worst_ratio": decimal_str(m.worst_ratio),
            "notional": decimal_str(pool.notional),
            "effective_leverage": decimal_str(pool.effective_leverage),
            "target_ratio": decimal_str(m.target_ratio),
            "margin_to_add": decimal_str(pool.margin_to_add),
            "concentration": decimal_str(m.concentration),
            "margin_concentration": decimal_str(m.margin_concentration),
        },
        "positions": [position_json(pm, m, books, notes) for pm in m.positions],
    }


def _shown_ratio(value: Decimal | None, m: AccountMetrics) -> str:
    """alertd's ratio the way the exchange's screen shows it (its direction and its units)."""
    kind = m.account.profile.displayed_ratio
    if value is None or kind is DisplayedRatio.NONE:
        return fmt.NONE
    if kind is DisplayedRatio.EQUITY_OVER_REQUIREMENT:
        return f"{fmt.money(value)} ({fmt.ratio(value)})"
    return fmt.ratio(value)


def render(
    m: AccountMetrics,
    console: Console,
    books: Mapping[str, OrderBook] = NO_BOOKS,
    notes: BookNotes | None = None,
) -> None:
    a = m.account
    pool = m.pool
    unit = a.settle
    summary = Table(
        title=f"{a.name} · {a.profile.name} · {unit}", show_header=False, box=None, padding=(0, 2)
    )
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    summary.add_row("Wallet balance", fmt.money(pool.wallet_balance, unit))
    if pool.collateral:
        summary.add_row("Collateral value (after ratios)", fmt.money(pool.collateral_value, unit))
    # the pool's PnL sums every margin asset's: each asset with a line of its own shows its
    # positions' PnL in its own unit below, the rest (counted at par) in the pool's
    lines_pnl = sum((line.equity - line.wallet_balance for line in pool.margin_assets), Decimal(0))
    summary.add_row("Unrealized PnL", fmt.money(pool.unrealized_pnl - lines_pnl, unit))
    settle = pool.settle_line
    if settle.adjustment:
        # what the settle currency's discount tiers (OKX) or its conversion rates (Binance
        # multi-assets: bid while its equity is positive, ask once negative) change
        summary.add_row(f"{unit} at its discount or rate", fmt.money(settle.adjustment, unit))
    for line in pool.margin_assets:
        # another margin asset's equity (its wallet and its positions' PnL) at its own rates
        summary.add_row(f"{line.asset} equity", fmt.money(line.equity, line.asset))
        summary.add_row(
            "  of it, unrealized PnL", fmt.money(line.equity - line.wallet_balance, line.asset)
        )
        summary.add_row(f"  at its rate, in {unit}", fmt.money(line.value, unit))
    summary.add_row("Margin balance", fmt.money(pool.margin_balance, unit))
    summary.add_row("Maintenance margin", fmt.money(pool.maintenance_margin, unit))
    if settle.requirement:
        summary.add_row(f"  of it, the {unit} owed", fmt.money(settle.requirement, unit))
    summary.add_row("Margin ratio (MM / balance)", fmt.ratio(pool.margin_ratio))
    if a.profile.displayed_ratio_name:
        # alertd's own figure in the exchange's form: the exchange's number is in the
        # comparison of ``alertd snapshot``, never here
        summary.add_row(
            f"{a.profile.displayed_ratio_name} as {a.profile.name} shows it (alertd's)",
            _shown_ratio(pool.displayed_ratio, m),
        )
    summary.add_row("Buffer", fmt.money(pool.buffer, unit))
    summary.add_row("Worst ratio", fmt.ratio(m.worst_ratio))
    summary.add_row(
        "Crash distance",
        "none"
        if m.crash_distance is None
        else f"{fmt.percent(m.crash_distance, signed=True)} (all marks)",
    )
    summary.add_row("Effective leverage (cross)", fmt.leverage(pool.effective_leverage))
    if m.concentration is not None and m.margin_concentration is not None:
        summary.add_row(
            "Largest position's share",
            f"{fmt.percent(m.concentration, 1)} of notional, "
            f"{fmt.percent(m.margin_concentration, 1)} of margin",
        )
    ranked = [pm.position for pm in m.positions if pm.position.adl_rank is not None]
    if ranked:
        first = max(ranked, key=lambda p: p.adl_rank or 0)
        summary.add_row(
            "ADL queue (highest)",
            f"{fmt.percent(first.adl_rank, 0)} {first.symbol} {first.side.label}",
        )
    if a.profile.uses_fee and m.positions:
        rates = dict.fromkeys(pm.position.fee_rate for pm in m.positions)
        summary.add_row(
            "Taker fee rate in MM",
            f"{', '.join(fmt.percent(r, 4) for r in rates)} ({a.profile.fee_term.value})",
        )
    if m.target_ratio is not None and pool.margin_to_add is not None:
        summary.add_row(
            f"Add to reach {fmt.ratio(m.target_ratio)}",
            fmt.money(pool.margin_to_add, unit, up=True),
        )
    console.print(summary)
    if pool.collateral:
        render_collateral(m, console)

    if console.width < fmt.WIDE_COLUMNS:
        _render_narrow(m, console)
    else:
        _render_wide(m, console)
    if m.account.stops is not None:
        render_stops(m, console)
    render_gap(m, console, books, notes)


def render_gap(
    m: AccountMetrics,
    console: Console,
    books: Mapping[str, OrderBook] = NO_BOOKS,
    notes: BookNotes | None = None,
) -> None:
    """Each position's bankruptcy buffer and, with its symbol's order book, the close's
    slippage now and the shortfall past bankruptcy of a close at liq., then what the
    daemon's message says to do (fits 80 columns)."""
    gaps = [(pm, _gap(pm, books, notes)) for pm in m.positions]
    columns = ("Position", "Bankr. buffer", "Close slippage", "Past bankr. at liq.")
    table = figures_table("Gap risk", columns, ("Position",), compact=True, no_wrap=True)
    for pm, gap in gaps:
        p = pm.position
        table.add_row(
            f"{p.symbol} {p.side.label}",
            fmt.percent(pm.bankruptcy_buffer, 2),
            "no book" if gap is None else fmt.percent(gap.slippage, 2),
            "no book" if gap is None else fmt.money(gap.shortfall, m.account.settle),
        )
    console.print(table)
    for pm, gap in gaps:
        if gap is not None and gap.notes:
            p = pm.position
            console.print(f"{p.symbol} {p.side.label}: " + "; ".join(gap.notes), highlight=False)


def render_stops(m: AccountMetrics, console: Console) -> None:
    """Each position's protective stops: the closest, how much they cover, where it stands
    against the liquidation price, and the loss there (fits 80 columns)."""
    columns = ("Position", "Stop", "Covers", "vs liq.", "Loss at stop")
    table = figures_table("Stops", columns, ("Position",), compact=True, no_wrap=True)
    for pm in m.positions:
        p = pm.position
        figures = _stops(m, pm)
        assert figures is not None
        if figures.orders == 0:
            stop, against = "none", fmt.NONE
        else:
            stop = "trailing" if figures.price is None else fmt.price(figures.price)
            beyond = figures.beyond_liquidation
            if beyond is None:
                against = fmt.NONE
            elif beyond > 0:
                against = f"{fmt.percent(beyond, 1)} BEYOND"
            else:
                against = f"{fmt.percent(-beyond, 1)} before"
        table.add_row(
            f"{p.symbol} {p.side.label}",
            stop,
            fmt.percent(figures.coverage, 0),
            against,
            fmt.money(figures.loss, m.account.settle),
        )
    console.print(table)


def _render_wide(m: AccountMetrics, console: Console) -> None:
    columns = (
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
        f"To {fmt.ratio(m.target_ratio)}" if m.target_ratio is not None else "Action",
    )
    table = figures_table("Positions", columns, ("Symbol", "Side", "Mode"))
    for pm in m.positions:
        p = pm.position
        table.add_row(
            p.symbol,
            p.side.label,
            p.margin_mode.value,
            fmt.quantity(p.contracts),
            fmt.price(p.entry_price),
            fmt.price(p.mark_price),
            fmt.money(pm.notional),
            fmt.money(pm.unrealized_pnl),
            fmt.money(pm.maintenance_margin),
            fmt.ratio(pm.margin_ratio),
            fmt.price(pm.liquidation_price),
            fmt.percent(pm.liquidation_distance),
            fmt.price(pm.bankruptcy_price),
            fmt.leverage(pm.effective_leverage),
            _action(pm, m),
        )
    console.print(table)


def _action(pm: PositionMetrics, m: AccountMetrics) -> str:
    if pm.margin_to_add:
        return f"add {fmt.money(pm.margin_to_add, up=True)}"
    if pm.size_to_cut:
        return f"cut {fmt.size_to_cut(pm.size_to_cut, pm.position.lot_size)}"
    if m.target_ratio is not None and pm.size_to_cut is None:
        return "add margin"
    if m.target_ratio is not None:
        return "ok"
    return fmt.NONE


def _render_narrow(m: AccountMetrics, console: Console) -> None:
    """Positions for a terminal of 80 to 149 columns: what decides the next move (size, mark,
    liquidation price, distance, ratio) in one table that fits 80 columns, never cut; the
    rest in a second (notional, maintenance margin and leverage: in the wide table and
    ``--json``). The symbol and side share one column."""
    key_columns = ("Position", "Size", "Mark", "Liq. price", "Distance", "Ratio")
    key = figures_table("Positions", key_columns, ("Position",), compact=True, no_wrap=True)
    target = f"To {fmt.ratio(m.target_ratio)}" if m.target_ratio is not None else "Action"
    text = ("Position", "Mode")
    rest = figures_table(
        "Position details",
        ("Position", "Mode", "Entry", "uPnL", "Bankr.", target),
        text,
        compact=True,
        no_wrap=text,
        pad_edge=False,
    )
    for pm in m.positions:
        p = pm.position
        position = f"{p.symbol} {p.side.label}"
        key.add_row(
            position,
            fmt.quantity(p.contracts),
            fmt.price(p.mark_price),
            fmt.price(pm.liquidation_price),
            fmt.percent(pm.liquidation_distance),
            fmt.ratio(pm.margin_ratio),
        )
        rest.add_row(
            position,
            p.margin_mode.value,
            fmt.price(p.entry_price),
            fmt.money(pm.unrealized_pnl),
            fmt.price(pm.bankruptcy_price),
            _action(pm, m),
        )
    console.print(key)
    console.print(rest)


def _ratio_text(cm: CollateralMetrics) -> str:
    c = cm.collateral
    if c.amount <= 0:
        shown = "liability" + ("" if c.liability_ratio == 1 else f" x{c.liability_ratio}")
        rate = c.liability_rate
        return shown + (f", MM {fmt.ratio(rate)}" if rate else "")
    if c.ratio.is_flat:
        return fmt.ratio(c.ratio.tiers[0].ratio)
    kind = "by value" if c.ratio.basis is RatioBasis.VALUE else "by amount"
    # the ratio the whole holding gets at this price, from its tiers
    return f"{fmt.ratio(cm.value / cm.market_value)} (tiered {kind})"


def render_collateral(m: AccountMetrics, console: Console) -> None:
    unit = m.account.settle
    columns = ("Asset", "Amount", "Price", "Moves with", "Market value", "Ratio", "Value")
    table = figures_table("Collateral", columns, ("Asset", "Moves with"))
    for cm in m.pool.collateral:
        c = cm.collateral
        table.add_row(
            c.asset,
            fmt.quantity(c.amount),
            fmt.price(c.price),
            c.price_symbol or "(fixed)",
            fmt.money(cm.market_value, unit),
            _ratio_text(cm),
            fmt.money(cm.value, unit),
        )
    console.print(table)


NOT_REPORTED = "not reported"  # the exchange has no such figure: alertd's is not shown for it
_ACCOUNT_LABELS = {
    Figure.MAINTENANCE_MARGIN: "Maintenance margin (account)",
    Figure.MARGIN_BALANCE: "Margin balance",
    Figure.MARGIN_RATIO: "Margin ratio (MM / balance)",
}
_POSITION_LABELS = {Figure.MAINTENANCE_MARGIN: "MM", Figure.LIQUIDATION_PRICE: "liq. price"}


def _figure_label(r: Row, exchange: str) -> str:
    if r.position is None:
        label = _ACCOUNT_LABELS[r.figure]
        if r.scope is not None:  # the generic definition in brackets is not the exchange's
            label = _scoped(label.partition(" (")[0], r, exchange)
        return label if r.pool is None else f"{r.pool} pool: {label}"
    symbol, side = r.position
    return _scoped(f"{symbol} {side.label} {_POSITION_LABELS[r.figure]}", r, exchange)


def _scoped(label: str, r: Row, exchange: str) -> str:
    """``label``, saying what each side is where the two are not like with like."""
    if r.scope is None:
        return label
    return f"{label}: alertd ({r.scope.ours}) vs {exchange} {r.defined_as}"


def _pool_asset(account: Account, key: tuple[str, Side] | None) -> str:
    held = next((p for p in account.positions if p.key == key), None)
    return account.settle if held is None else account.pool_asset(held)


def _figure_value(r: Row, value: Decimal | None, unit: str) -> str:
    if r.figure is Figure.MARGIN_RATIO:
        return fmt.ratio(value)
    if r.figure is Figure.LIQUIDATION_PRICE:
        return "none" if value is None else fmt.price(value)
    return fmt.money(value, unit)


def render_comparison(snapshot: LiveSnapshot, console: Console) -> None:
    """alertd's figures beside the exchange's own, so a user can check them on its screen.

    The same comparison as the daemon's drift check; the exchange's column shows only the
    exchange's own numbers.
    """
    account = snapshot.account
    exchange = account.profile.name
    columns = ("Figure", "alertd", exchange, "Difference", "Agrees")
    table = figures_table(f"{account.name}: alertd vs {exchange}", columns, ("Figure", "Agrees"))
    for r in snapshot.comparison:
        # money in its pool's asset: an account figure's pool, a position's margin asset
        unit = r.pool or _pool_asset(account, r.position)
        table.add_row(
            _figure_label(r, exchange),
            _figure_value(r, r.ours, unit),
            NOT_REPORTED
            if r.theirs is None
            else _figure_value(r, r.theirs, unit if r.scope is None else r.scope.unit),
            fmt.NONE if r.difference is None else fmt.percent(r.difference, 4, signed=True),
            {True: "yes", False: "NO", None: fmt.NONE}[r.matches],
        )
    console.print(table)
    for adjustment in snapshot.comparison.adjustments:
        console.print(f"  {exchange}: {adjustment}")
