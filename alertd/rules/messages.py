"""Notification text: short enough for a phone lock screen, severity and account first,
then the figure, the threshold, each affected position, and one concrete action.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

import alertd.views.format as fmt
from alertd.engine.dynamics import log_distance, sigmas_for_probability
from alertd.engine.margin import AccountMetrics, PositionMetrics, compute
from alertd.engine.model import Side
from alertd.engine.orderbook import Fill, ForcedClose, OrderBook, close_cost, gap_risk
from alertd.engine.remedy import (
    Remedy,
    for_buffer,
    for_concentration,
    for_crash_distance,
    for_effective_leverage,
    for_liquidation_distance,
)
from alertd.engine.reported import ExchangeRatioPosition
from alertd.engine.stops import loss_at, price_for_loss, protective, stop_loss_price
from alertd.rules.lifecycle import Kind, Notification, Resolution
from alertd.rules.metrics import Needs, Unit, lookup, unit_of
from alertd.rules.model import FeedStatus, Rule

MAX_POSITIONS = 3  # lines of positions in one message; the rest are counted
# metrics whose remedy is a distance to the liquidation, not a margin ratio
DISTANCE_METRICS = frozenset({"liquidation_distance", "crash_distance"})
# metrics whose remedy brings the figure itself back to the rule's clear level
LEVEL_METRICS = frozenset({"buffer", "effective_leverage"})
# metrics of the price dynamics: their remedy is a liquidation distance found from their level
PREDICTIVE_METRICS = frozenset(
    {"liquidation_probability", "liquidation_distance_sigma", "time_to_liquidation"}
)
# metrics whose action is the guide's defence (leverage, spreading, leaving the ADL queue)
GUARD_METRICS = frozenset(
    {
        "effective_leverage",
        "concentration",
        "margin_concentration",
        "adl_rank",
        "adl_risk",
        "insurance_fund_drop",
    }
)


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str


def fmt_metric(metric: str, value: Decimal | None, beside: Decimal | None = None) -> str:
    """``value`` as the metric's unit shows it; ``beside`` a threshold, never rounded onto it."""
    if value is None:
        return "n/a"
    unit = unit_of(metric)
    if unit is Unit.SIGMAS:
        if beside is None:
            return fmt.sigmas(value, 1)
        return fmt.apart(value, beside, lambda v, p, r: fmt.sigmas(v, p, rounding=r), 1)
    if unit is Unit.DURATION:
        text = fmt.duration(float(value))
        if beside is None or text != fmt.duration(float(beside)):
            return text
        return fmt.apart(value, beside, fmt.seconds, 0)  # "30m" beside "below 30m": seconds
    if unit is Unit.LEVERAGE:
        return fmt.leverage(value)
    if unit in (Unit.RATIO, Unit.FRACTION, Unit.PROBABILITY, Unit.RANK):
        infinite = fmt.LIQUIDATED if unit is Unit.RATIO else fmt.INFINITE
        if beside is None:
            return fmt.percent(value, 1, infinite=infinite)
        return fmt.apart(
            value, beside, lambda v, p, r: fmt.percent(v, p, infinite=infinite, rounding=r), 1
        )
    if unit is Unit.SECONDS:
        return fmt.seconds(value)
    if unit is Unit.PRICE:
        return fmt.price(value)
    return fmt.money(value)


def _position_line(pm: PositionMetrics) -> str:
    p = pm.position
    return _line(
        p.symbol, p.side, p.contracts, p.mark_price, pm.liquidation_price, pm.liquidation_distance
    )


def _reported_line(p: ExchangeRatioPosition) -> str:
    """A position of an account whose exchange's ratio stands in: its liquidation price is
    the exchange's, and its mark the exchange's too where alertd does not follow it."""
    return _line(
        p.symbol,
        p.side,
        p.contracts,
        p.mark_price,
        p.liquidation_price,
        p.liquidation_distance,
        whose=" (exchange's)",
        mark_note=" (as read)" if p.as_read else "",
    )


def _line(
    symbol: str,
    side: Side,
    contracts: Decimal,
    mark: Decimal | None,
    liquidation: Decimal | None,
    distance: Decimal | None,
    whose: str = "",
    mark_note: str = "",
) -> str:
    liq = "no liq." if liquidation is None else f"liq {fmt.price(liquidation)}{whose}"
    dist = "" if distance is None else f" ({fmt.percent(distance, 1)})"
    at = "no mark" if mark is None else fmt.price(mark) + mark_note
    return f"{symbol} {side.label} {fmt.quantity(contracts)} @ {at} · {liq}{dist}"


def _clear_level(rule: Rule) -> Decimal:
    """Where the rule's alert resolves: its hysteresis level, else its threshold."""
    c = rule.condition
    level = c.clear_above if c.direction == "below" else c.clear_below
    return c.threshold if level is None else level


def _remedy_text(remedy: Remedy, settle: str, goal: str) -> str | None:
    if remedy.margin_to_add == 0 and not remedy.size_to_cut:
        return None
    p = remedy.cut
    where = f" to {p.symbol}'s margin" if p is not None and p.is_isolated else ""
    text = f"add {fmt.money(remedy.margin_to_add, settle, up=True)}{where} {goal}"
    if remedy.size_to_cut and p is not None and remedy.size_to_cut < p.contracts:
        text += f", or cut {fmt.size_to_cut(remedy.size_to_cut, p.lot_size)} {p.symbol}"
    return text


def _distance_action(
    n: Notification, metrics: AccountMetrics, level: Decimal | None = None
) -> str | None:
    """For a distance rule: what moves the liquidation back to the rule's clear level (or to
    ``level``, a distance found for a predictive rule)."""
    rule = n.rule
    level = _clear_level(rule) if level is None else level
    settle = metrics.account.settle
    away = fmt.percent(level, 1)
    if n.context.position is not None:
        remedy = for_liquidation_distance(metrics, n.context.position.position.key, level)
        if remedy is None or remedy.price is None:
            return None
        return _remedy_text(
            remedy, settle, f"to move liq. to {fmt.price(remedy.price)} ({away} away)"
        )
    # an account's predictive figures are measured to its crash distance
    if rule.metric == "crash_distance" or rule.metric in PREDICTIVE_METRICS:
        remedy = for_crash_distance(metrics, level)
        if remedy is None or remedy.move is None:
            return None
        way = "fall" if remedy.move < 0 else "rise"
        return _remedy_text(remedy, settle, f"to survive a {away} {way} of every mark")
    return None


def _predictive_action(n: Notification, metrics: AccountMetrics) -> str | None:
    """For a predictive rule: the liquidation distance at which, at today's volatility (or
    velocity), the rule's figure is at its clear level, then the distance remedy for it.
    The volatility need not be known: the figures scale with the log distance, so the target
    is today's distance times the ratio of the two levels (in sigmas, for a probability)."""
    level, value = _clear_level(n.rule), n.value
    if value is None or value <= 0:
        return None
    if n.rule.metric == "liquidation_probability":
        now, then = sigmas_for_probability(float(value)), sigmas_for_probability(float(level))
        if now is None or then is None:
            return None
        scale = then / now
    else:  # sigmas and seconds are both proportional to the log distance
        scale = float(level) / float(value)
    focus = n.context.position
    if focus is not None:
        liq = focus.liquidation_price
        if liq is None:
            return None
        mark = focus.position.mark_price
        falls = liq < mark
        distance = log_distance(mark, liq)
    else:
        crash = metrics.crash_distance
        if crash is None or crash == 0 or crash <= -1:
            return None
        falls = crash < 0
        distance = abs(math.log1p(float(crash)))
    if not math.isfinite(distance * scale) or scale <= 1:
        return None
    log_target = distance * scale
    target = -math.expm1(-log_target) if falls else math.expm1(log_target)
    # the fraction of the mark, rounded up so that following the action is enough
    fraction = Decimal(repr(target)).quantize(Decimal("0.000001"), rounding=ROUND_CEILING)
    return _distance_action(n, metrics, fraction)


def _level_action(n: Notification, metrics: AccountMetrics) -> str | None:
    """For a buffer or leverage rule: what brings the figure back to the rule's clear level."""
    level = _clear_level(n.rule)
    settle = metrics.account.settle
    if n.rule.metric == "buffer":
        remedy = for_buffer(metrics, level)
        goal = f"for a buffer of {fmt.money(level, settle)}"
    else:
        focus = n.context.position
        remedy = for_effective_leverage(
            metrics, level, focus.position.key if focus is not None else None
        )
        goal = f"for {fmt.leverage(level)} effective leverage"
    return None if remedy is None else _remedy_text(remedy, settle, goal)


# --- concentration, leverage and ADL: what each means, and what to do (one line each) -------


def _guard_action(n: Notification, metrics: AccountMetrics) -> str | None:
    """For the guide's defences: back to the rule's clear share, solved on the current
    figures; for ADL, how to leave the front of the queue (leverage: :func:`_level_action`)."""
    metric, level = n.rule.metric, _clear_level(n.rule)
    if metric in ("concentration", "margin_concentration") and metrics.positions:
        by_margin = metric == "margin_concentration"
        remedy = for_concentration(metrics, level, by_margin)
        p = remedy.cut if remedy is not None else None
        if remedy is not None and p is not None and remedy.size_to_cut:
            size = fmt.size_to_cut(remedy.size_to_cut, p.lot_size)
            return f"cut {size} {p.symbol} to bring it to {fmt.percent(level, 0)}"
        biggest = max(
            metrics.positions,
            key=lambda pm: pm.maintenance_margin if by_margin else pm.notional,
        )
        return f"reduce {biggest.position.symbol} or spread the margin over other positions"
    if metric in ("adl_rank", "adl_risk"):
        return "take some profit or lower its leverage to move back in the queue"
    if metric == "insurance_fund_drop":
        return "check its ADL rank; take some profit if it is near the front of the queue"
    return None


def _guard_meaning(n: Notification) -> str | None:
    """What the figure means, in one line."""
    metric, value = n.rule.metric, n.value
    if metric == "effective_leverage" and value is not None and value > 0:
        if not value.is_finite():
            return "the margin is gone: any move against it is a loss the wallet cannot cover"
        return f"a {fmt.percent(1 / value, 1)} move against it wipes out the margin behind it"
    share = "n/a" if value is None else fmt.percent(value, 0)
    if metric == "concentration":
        return f"one position is {share} of the exposure: a move in it moves the whole account"
    if metric == "margin_concentration":
        return f"one position needs {share} of the margin: its loss is most of the account's"
    if metric == "insurance_fund_drop":
        return (
            "the fund that pays for liquidations past bankruptcy is draining: when it runs "
            "short the exchange deleverages profitable positions"
        )
    if metric in ("adl_rank", "adl_risk"):
        profit = "in profit in a fast market " if metric == "adl_risk" else ""
        return (
            f"{profit}at the front of the ADL queue: if the insurance fund runs short the "
            "exchange closes it at a liquidated trader's price"
        )
    return None


def _action(n: Notification, metrics: AccountMetrics, target: Decimal) -> str | None:
    """One thing to do: for a distance, buffer, leverage or predictive rule, back to its clear
    level; for the guide's other defences, their own; otherwise computed for the target ratio
    the user would be happy with."""
    if n.rule.metric in DISTANCE_METRICS:
        return _distance_action(n, metrics)
    if n.rule.metric in LEVEL_METRICS:
        return _level_action(n, metrics)
    if n.rule.metric in PREDICTIVE_METRICS:
        return _predictive_action(n, metrics)
    if n.rule.metric in GUARD_METRICS:
        return _guard_action(n, metrics)
    at_target = compute(metrics.account, target)
    settle = metrics.account.settle
    pool = at_target.pool
    pct = fmt.percent(target, 0)
    focus = n.context.position
    if focus is not None and focus.position.is_isolated:
        pm = next(p for p in at_target.positions if p.position.key == focus.position.key)
        if pm.margin_to_add:
            amount = fmt.money(pm.margin_to_add, up=True)
            return f"add {amount} {settle} to {pm.position.symbol} to get back to {pct}"
        return None
    if pool.margin_to_add:
        cuts = [
            pm
            for pm in at_target.positions
            if not pm.position.is_isolated
            and pm.size_to_cut
            and pm.size_to_cut < pm.position.contracts
        ]
        text = f"add {fmt.money(pool.margin_to_add, settle, up=True)} to get back to {pct}"
        if cuts:
            biggest = max(cuts, key=lambda pm: pm.notional)
            assert biggest.size_to_cut is not None
            cut = fmt.size_to_cut(biggest.size_to_cut, biggest.position.lot_size)
            text += f", or cut {cut} {biggest.position.symbol}"
        return text
    worst = [pm for pm in at_target.positions if pm.position.is_isolated and pm.margin_to_add]
    if worst:
        pm = max(worst, key=lambda p: p.margin_ratio)
        assert pm.margin_to_add is not None
        amount = fmt.money(pm.margin_to_add, settle, up=True)
        return f"add {amount} to {pm.position.symbol} to get back to {pct}"
    return None


# --- order-book metrics (gap risk): what the book does to the close, and the size that fits --

BOOK_METRICS = frozenset({"gap_risk", "close_slippage"})


def _thin(fill: Fill, pm: PositionMetrics) -> str | None:
    if fill.complete:
        return None
    size = pm.position.contract_size
    return (
        f"book too thin: fills only {fmt.quantity(fill.filled / size)} of "
        f"{fmt.quantity(fill.wanted / size)} (the rest at its deepest price)"
    )


def book_lines(metric: str, pm: PositionMetrics, book: OrderBook) -> list[str]:
    """For an order-book metric: the close the figure comes from, and what to do."""
    p = pm.position
    long = p.side is Side.LONG
    if metric == "close_slippage":
        cost = close_cost(book, long, p.quantity, p.mark_price, p.inverse)
        if cost.slippage is None:
            return ["the order book is empty on the closing side"]
        average = cost.fill.bounded_average
        lines = [
            f"a market close fills {fmt.price(average)} avg, {fmt.percent(cost.slippage, 2)} "
            "from the mark"
        ]
        thin = _thin(cost.fill, pm)
        return lines + ([thin] if thin else [])
    if pm.liquidation_price is None or pm.bankruptcy_price is None:
        return []
    close = ForcedClose(long, p.quantity, pm.liquidation_price, pm.bankruptcy_price, p.inverse)
    risk = gap_risk(book, close)
    if risk.shortfall is None:
        return ["the order book is empty on the closing side"]
    lines = [
        f"at liq. {fmt.price(pm.liquidation_price)} the book fills "
        f"{fmt.price(risk.fill.bounded_average)} avg; bankruptcy {fmt.price(pm.bankruptcy_price)}"
    ]
    thin = _thin(risk.fill, pm)
    if thin:
        lines.append(thin)
    excess = risk.excess
    if excess:
        cut = fmt.size_to_cut(excess / p.contract_size, p.lot_size)
        lines.append(f"→ cut {cut} {p.symbol} to fit the book")
    return lines


def book_notes(pm: PositionMetrics, book: OrderBook) -> list[str]:
    """What the daemon's close-slippage and gap-risk messages say of closing the position into
    ``book`` (``alertd calc`` shows them)."""
    return [
        line for metric in ("close_slippage", "gap_risk") for line in book_lines(metric, pm, book)
    ]


def while_text(rule: Rule) -> str:
    """A rule's ``also`` conditions as a message says them: ", while liquidation distance
    below 6.0%" (empty for a rule of one condition)."""
    return "".join(
        f", while {c.metric.replace('_', ' ')} {c.direction} {fmt_metric(c.metric, c.threshold)}"
        for c in rule.also
    )


def render(n: Notification, target_ratio: Decimal = Decimal("0.5")) -> Message:
    """The message for ``n``; actions aim at ``target_ratio`` (the lowest ratio that clears
    every ratio rule, chosen by the caller from the configured rules)."""
    rule = n.rule
    metric = rule.metric
    head = "RESOLVED" if n.kind is Kind.RESOLVED else n.severity.label.upper()
    who = n.subject.describe()
    value = fmt_metric(metric, n.value, beside=rule.condition.threshold)
    threshold = fmt_metric(metric, rule.condition.threshold)
    metrics = n.context.metrics

    if n.reason is Resolution.REMOVED:
        # not a resolution a figure told (a user's message or a resolved title would say
        # "fee rates read", "back below"): the alert ends unwatched, and says so
        entry = lookup(metric, rule.scope)
        was = entry.headline(value) if entry is not None else f"{metric.replace('_', ' ')} {value}"
        return Message(
            f"{head} {who}: {Resolution.REMOVED.value}, no longer watched",
            f"{rule.name} was firing for {fmt.duration(n.at - n.since)} ({was}); "
            "alertd stopped watching the account, so it cannot tell whether that still holds",
        )

    if rule.message:
        text = rule.message.format_map(_fields(n, value, threshold))
        title, _, rest = text.partition("\n")
        return Message(f"{head} {title}", rest)

    entry = lookup(metric, rule.scope)
    resolved = n.kind is Kind.RESOLVED
    words = (
        entry.headline(value, resolved)
        if entry is not None
        else f"{metric.replace('_', ' ')} {value}"
    )
    feed = n.context.feed
    own = _about_alertd(n, head, who, value, feed)
    if own is not None:
        return own
    stop = _about_stop(n, head, who)
    if stop is not None:
        return stop
    also = while_text(rule)
    if resolved:
        gone = " (position closed)" if n.reason is Resolution.GONE else ""
        title = f"{head} {who}: {words}{gone}"
        body = (
            f"was {rule.condition.direction} {threshold}{also} for {fmt.duration(n.at - n.since)} "
            f"({rule.name})"
        )
        return Message(title, body)

    title = f"{head} {who}: {words}"
    lines = [f"{rule.condition.direction} {threshold}{also} ({rule.name})"]
    if metric == "account_error":
        lines = [f"feed stopped: {n.context.fatal or 'unknown error'}"]
    elif unit_of(metric) is Unit.SECONDS:
        lines = [f"no fresh data for {value}: alertd cannot see this account's risk"]
        if feed is not None and feed.not_live is not None:
            lines.append(f"not live yet: {feed.not_live}")
    if n.kind is Kind.REPEAT:
        lines[0] += f", firing for {fmt.duration(n.at - n.since)}"
    if feed is not None and feed.exchange_ratio_stands_in and unit_of(metric) is Unit.RATIO:
        # no figures of alertd's own: the value is the exchange's, and the message says so
        incomplete = "incomplete data: " + "; ".join(feed.missing) if feed.missing else ""
        why = "; ".join(filter(None, (feed.mode_limits, incomplete)))
        how = "read over REST" + (
            ", moved with the marks since" if feed.exchange_ratio_moved else ""
        )
        lines.append(f"the ratio is {feed.exchange_name}'s own, {how} ({why})")
    reported = n.context.reported
    if reported is not None:  # a position alertd does not compute: the exchange's figures
        lines += [_reported_line(reported), _exchange_liquidation(n)]
    about_feed = entry is not None and entry.needs is Needs.FEED  # no figures to quote
    if metrics is not None and not about_feed:
        focus = n.context.position
        shown = (
            [focus]
            if focus is not None
            else sorted(metrics.positions, key=lambda pm: -pm.margin_ratio)
        )
        for pm in shown[:MAX_POSITIONS]:
            lines.append(_position_line(pm))
        if len(shown) > MAX_POSITIONS:
            lines.append(f"+{len(shown) - MAX_POSITIONS} more positions")
        meaning = _guard_meaning(n) if metric in GUARD_METRICS else None
        if meaning:
            lines.insert(1, meaning)
        if metric in BOOK_METRICS:
            book = n.context.book
            if focus is not None and book is not None:
                lines += book_lines(metric, focus, book)
            return Message(title, "\n".join(lines))
        pool = _pool_metrics(n, metrics)
        if pool is not metrics and focus is None:
            lines[0] += f" · {pool.account.settle} pool"
        action = _action(n, pool, target_ratio)
        if action:
            lines.append("→ " + action)
    return Message(title, "\n".join(lines))


def _pool_metrics(n: Notification, metrics: AccountMetrics) -> AccountMetrics:
    """The figures of the pool a notification is about, where the account has several (each
    margin asset its own: Binance single-asset): the position's, the pool that sets the
    crash distance or the worst ratio, else the riskiest cross pool. Its action is solved on
    them, so that it names the pool's asset and never moves another pool's money."""
    if not metrics.pools:
        return metrics
    focus = n.context.position
    if focus is not None:
        return metrics.pool_of(focus.position.key)
    metric = n.rule.metric
    if metric == "crash_distance" or metric in PREDICTIVE_METRICS:
        return metrics.crash_pool()
    if metric == "worst_ratio":
        return max(metrics.pools, key=lambda m: m.worst_ratio)
    return metrics.riskiest_pool()


def _about_alertd(
    n: Notification, head: str, who: str, value: str, feed: FeedStatus | None
) -> Message | None:
    """The messages of the built-in rules that watch alertd's own figures: a mode it does not
    compute, a drift from the exchange's numbers, incomplete data, a fee rate unread. None for
    any other."""
    metric = n.rule.metric
    about = (
        "mode_not_computed",
        "ratio_drift",
        "incomplete_data",
        "fee_gap",
        "fee_rate_unread",
        "private_stream_missed",
    )
    if metric not in about or feed is None:
        return None
    exchange = feed.exchange_name or n.subject.exchange
    since = fmt.duration(n.at - n.since)
    if metric == "private_stream_missed":
        if n.kind is Kind.RESOLVED:
            return Message(
                f"{head} {who}: private stream delivering again",
                f"it had missed a change; reopened, for {since} until it delivered "
                f"({feed.miss_ended or 'its pushes seen again'})",
            )
        body = (
            f"{feed.missed or 'private stream missed a change'}\n"
            f"its websocket looked open but pushed nothing of it: alertd reopens it; until "
            f"it delivers, {exchange} changes reach alertd only at each reconcile"
        )
        return Message(f"{head} {who}: private stream missed a change", body)
    if metric in ("fee_gap", "fee_rate_unread"):
        return _fee_gap_message(n, head, who, value, feed, since)
    if metric == "ratio_drift":
        if n.kind is Kind.RESOLVED:
            most = fmt_metric(metric, n.rule.condition.threshold)
            return Message(
                f"{head} {who}: alertd's margin ratio agrees with {exchange}'s again",
                f"differed by more than {most} for {since}",
            )
        ours, theirs = feed.ratios if feed.ratios is not None else (None, None)
        # an account of several margin pools: the pool whose figures differ, by its asset
        pool = f"{feed.ratio_pool} pool" if feed.ratio_pool else ""
        ratio = f"{pool} margin ratio" if pool else "margin ratio"
        title = f"{head} {who}: alertd's {ratio} differs from {exchange}'s by {value}"
        body = (
            f"{pool + ': ' if pool else ''}alertd {fmt.ratio(ours)}, {exchange} "
            f"{fmt.ratio(theirs)}, for {since}: check alertd's numbers (`alertd snapshot` "
            f"shows each figure beside {exchange}'s)"
        )
        return Message(title, body)
    if metric == "mode_not_computed":
        if n.kind is Kind.RESOLVED:
            return Message(
                f"{head} {who}: alertd computes the account again",
                f"account mode {feed.mode or 'changed'}",
            )
        title = f"{head} {who}: alertd does not compute {exchange} {feed.mode} accounts"
        lines = [feed.mode_limits or "the account's figures are withheld"]
        if feed.exchange_ratio_stands_in and feed.exchange_ratio is not None:
            lines.append(f"{exchange}'s own margin ratio: {_exchange_ratio(feed)}")
        return Message(title, "\n".join(lines))
    if n.kind is Kind.RESOLVED:
        return Message(f"{head} {who}: data complete again", f"was incomplete for {since}")
    lines = ["alertd cannot compute this account: " + ("; ".join(feed.missing) or "unknown")]
    if feed.exchange_ratio_stands_in and feed.exchange_ratio is not None:
        lines.append(f"{exchange}'s own margin ratio stands in meanwhile: {_exchange_ratio(feed)}")
    else:
        lines.append("no margin figures for it until then")
    if feed.kept_positions:
        kept = ", ".join(f"{symbol} {side}" for symbol, side in feed.kept_positions)
        lines.append(f"alerts on {kept} are kept as they are until then")
    return Message(f"{head} {who}: incomplete data", "\n".join(lines))


def _fee_gap_message(
    n: Notification, head: str, who: str, value: str, feed: FeedStatus, since: str
) -> Message:
    """The fee-gap warning: what the fee rates leave out and the maintenance margin it leaves
    out of alertd's figures, at the marks of the moment; resolved once a read tells it."""
    if n.kind is Kind.RESOLVED:
        if feed.mode_limits is not None:
            # a mode alertd does not compute (portfolio margin): the exchange's own ratio is
            # shown, its fees in, so the unread rate leaves nothing out of what is shown
            exchange = feed.exchange_name or n.subject.exchange
            return Message(
                f"{head} {who}: the unread fee rate no longer counts: {exchange}'s own "
                "ratio is shown",
                f"account mode {feed.mode or 'changed'}: alertd shows {exchange}'s margin "
                "ratio, its fees in, so the fee rate still unread leaves nothing out of it "
                f"(left out of alertd's maintenance margin for {since}; this warns again if "
                "alertd computes the account again with the rate unread)",
            )
        return Message(
            f"{head} {who}: fee rates complete again",
            f"alertd's maintenance margin left out part of the fee to close for {since}",
        )
    # the account at the marks of the moment (with_full_metrics put it in the live's place)
    metrics, live = n.context.metrics, n.context.live
    account = metrics.account if metrics is not None else live.current() if live else None
    gap = feed.fee_gap
    if gap is None:  # not told since (a repeat after the read): the value is all there is
        what = "fee to close without a part alertd could not read"
        if n.rule.metric == "fee_gap":
            what += f": MM up to {value} low"
    elif account is None:
        what = gap.describe()
    else:
        what = fmt.fee_gap_line(account.pool_accounts(), gap)
    lines = [
        what,
        "alertd's margin ratio reads low by as much and its liquidation prices far (the "
        "unsafe side) while the account pays it; `alertd status` says why it is unread, and "
        "this resolves once a read tells it",
    ]
    return Message(f"{head} {who}: maintenance margin low, a fee rate unread", "\n".join(lines))


def _exchange_ratio(feed: FeedStatus) -> str:
    moved = " (moved with the marks since its last read)" if feed.exchange_ratio_moved else ""
    return fmt.ratio(feed.exchange_ratio) + moved


# --- stop-loss coverage ---------------------------------------------------------------------

STOP_RULE_METRICS = frozenset(
    {"stop_missing", "stop_beyond_liquidation", "stop_loss", "stop_loss_share"}
)


def _about_stop(n: Notification, head: str, who: str) -> Message | None:
    """The messages of the stop-loss rules: what is wrong with the stop, both prices, and
    where to put it. None for any other metric, or without the position's figures (alertd's,
    or the exchange's where its ratio stands in: then the liquidation price is named as the
    exchange's)."""
    metric = n.rule.metric
    if metric not in STOP_RULE_METRICS:
        return None
    metrics, pm, reported = n.context.metrics, n.context.position, n.context.reported
    whose = ""
    if reported is not None and reported.stop is not None and reported.mark_price is not None:
        stop, liq, side = reported.stop.price, reported.liquidation_price, reported.side
        mark, line, whose = reported.mark_price, _reported_line(reported), " (exchange's)"
    elif metrics is not None and pm is not None:
        p = pm.position
        stops = protective(metrics.account.stops or (), p.symbol, p.side, p.mark_price)
        stop, liq, side = stop_loss_price(stops, p.side), pm.liquidation_price, p.side
        mark, line = p.mark_price, _position_line(pm)
    else:
        return None
    # a long's stop goes above the liquidation (and below the mark), a short's below
    toward = "above" if side > 0 else "below"
    if n.kind is Kind.RESOLVED:
        now = "no stop" if stop is None else f"stop {fmt.price(stop)}"
        liq_text = "" if liq is None else f", liq {fmt.price(liq)}{whose}"
        words = {
            "stop_missing": "stop-loss set",
            "stop_beyond_liquidation": "stop now fires before liquidation",
        }.get(metric, "stop-loss within the maximum loss")
        return Message(f"{head} {who}: {words}", f"{now}{liq_text} ({n.rule.name})")
    if metric == "stop_missing":
        where = "" if liq is None else f" {toward} liq {fmt.price(liq)}{whose}"
        return Message(f"{head} {who}: no stop-loss", f"{line}\n→ set a reduce-only stop{where}")
    if stop is None:
        return None
    if metric == "stop_beyond_liquidation":
        if liq is None:
            return None
        gap = abs(liq - stop)
        title = f"{head} {who}: stop {fmt.price(stop)} is beyond liq {fmt.price(liq)}{whose}"
        lines = [
            f"liquidation comes {fmt.price(gap)} ({fmt.percent(gap / mark, 1)}) "
            "before the stop: it can never trigger",
            line,
        ]
        if reported is not None:
            lines.append(_exchange_liquidation(n))
        lines.append(f"→ move the stop {toward} {fmt.price(liq)}")
        return Message(title, "\n".join(lines))
    if reported is not None:
        if reported.quantity is None:
            return None  # a position listed as read: no size to figure a loss from
        quantity, entry, inverse = reported.quantity, reported.entry_price, reported.inverse
        # its coin where read (a COIN-M quarterly's symbol ends in BTC-261225); else ccxt's
        # unified contract symbol names its settle currency: BASE/QUOTE:SETTLE
        symbol_settle = reported.symbol.rpartition(":")[2] if ":" in reported.symbol else ""
        settle = reported.coin or symbol_settle
    else:
        assert metrics is not None and pm is not None
        p = pm.position
        quantity, entry, inverse = p.quantity, p.entry_price, p.inverse
        settle = metrics.account.pool_asset(p)
    loss = loss_at(stop, side, quantity, entry, inverse)
    if metric == "stop_loss":
        most = n.rule.condition.threshold
        share = ""
        limit = f"the {fmt.money(most, settle)} maximum"
    else:
        if not n.value:
            return None
        most = n.rule.condition.threshold * loss / n.value  # the share's limit in money
        share = f" ({fmt.percent(n.value, 1)} of equity)"
        limit = (
            f"the {fmt.percent(n.rule.condition.threshold, 1)} maximum ({fmt.money(most, settle)})"
        )
    title = f"{head} {who}: stop {fmt.price(stop)} loses {fmt.money(loss, settle)}{share}"
    lines = [f"more than {limit} ({n.rule.name})", line]
    if share and reported is not None and reported.equity is not None:
        # no equity of alertd's: the share is of the exchange's, and the message says so
        equity = fmt.money(reported.equity, reported.equity_unit)
        lines.insert(1, f"the equity is {_exchange_of(n)}'s own, {equity}")
    target = price_for_loss(most, side, quantity, entry, inverse)
    if target is not None and target > 0:
        lines.append(f"→ move the stop {toward} {fmt.price(target)}")
    return Message(title, "\n".join(lines))


def _exchange_of(n: Notification) -> str:
    """The exchange's name, for a figure of its own a message quotes."""
    feed = n.context.feed
    return (feed.exchange_name if feed is not None else "") or n.subject.exchange


def _exchange_liquidation(n: Notification) -> str:
    """Whose liquidation price a position alert of an account alertd does not compute
    quotes, and why it is not alertd's."""
    feed = n.context.feed
    why = "" if feed is None or not feed.mode_limits else f": {feed.mode_limits}"
    return f"the liquidation price is {_exchange_of(n)}'s own (alertd does not compute it{why})"


# The fields a rule's own ``message`` may name; each is a string when the message is rendered.
TEMPLATE_FIELDS = (
    "rule",
    "severity",
    "account",
    "exchange",
    "symbol",
    "side",
    "value",
    "threshold",
    "metric",
)
MAX_TEMPLATE_WIDTH = 200  # widths and precisions in a template's format specs


class _Fields(dict[str, Any]):
    """Template fields for a rule's own ``message``; unknown names stay as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fields(n: Notification, value: str, threshold: str) -> _Fields:
    return _Fields(
        rule=n.rule.name,
        severity=n.severity.label,
        account=n.subject.account,
        exchange=n.subject.exchange,
        symbol=n.subject.symbol or "",
        side=n.subject.side or "",
        value=value,
        threshold=threshold,
        metric=n.rule.metric,
    )


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot be a rule's ``message``, or None when it can.

    The template is rendered when the alert fires; an error there would lose the alert, so
    everything that could fail is refused up front: positional, indexed and attribute fields
    (``{}``, ``{symbol[9]}``, ``{value.x}``), nested or huge format specs, and specs that do
    not apply to strings (``{value:d}``), found by rendering it once with string fields.
    """
    hint = f"fields: {', '.join(TEMPLATE_FIELDS)}; write {{{{ and }}}} for braces"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"not a usable message template: {exc} ({hint})"
    for _, name, spec, _ in parts:
        if name is None:
            continue
        if not name.isidentifier():
            return f"{{{name[:40]}}} is not a field name ({hint})"
        spec = spec or ""
        widths = re.findall(r"[0-9]+", spec)
        if "{" in spec or any(len(w) > 3 or int(w) > MAX_TEMPLATE_WIDTH for w in widths):
            return (
                f"{{{name}:{spec[:20]}}}: a format spec is plain (no nested fields), widths and "
                f"precisions at most {MAX_TEMPLATE_WIDTH}"
            )
    try:
        template.format_map(_Fields(dict.fromkeys(TEMPLATE_FIELDS, "x")))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return f"not a usable message template: {exc} ({hint})"
    return None


def notification_json(n: Notification, message: Message) -> Mapping[str, Any]:
    """What the outbox stores for one notification (no secrets, plain JSON)."""
    return {
        "kind": n.kind.value,
        "rule": n.rule.name,
        "alert": n.alert_key,
        "severity": n.severity.label,
        "labels": n.labels,
        "value": None if n.value is None else str(n.value),
        "threshold": str(n.rule.condition.threshold),
        "at": n.at,
        "since": n.since,
        "title": message.title,
        "body": message.body,
        # why it resolved ("cleared", "removed", ...): a receiver shared by several instances
        # lets an alert of an account this instance no longer watches lapse, not end
        "reason": None if n.reason is None else n.reason.name.lower(),
    }
