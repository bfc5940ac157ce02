"""Between the feeds and the phone: evaluate accounts against the rules, render messages,
and commit alert states and outbox rows together.

The rule engine and the margin engine stay pure; this is the one place that reads the feed
state, the clocks, and writes to the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from alertd.clock import Clock
from alertd.config import ConditionConfig, Config, RuleConfig, StopRules
from alertd.daemon.store import SavedBan, Store
from alertd.delivery.system import PUSHES, SystemMessage, exchange_push, ip_ban_over, ip_banned
from alertd.engine.book import Book, LiveAccount
from alertd.engine.dynamics import MarkWindow
from alertd.engine.orderbook import OrderBook
from alertd.feeds.state import AccountEvent, AccountState, Coverage, Stream
from alertd.rules.band import Band, BandRules, band, reads_hold
from alertd.rules.lifecycle import AlertEngine, Kind, Notification
from alertd.rules.messages import render
from alertd.rules.metrics import (
    FeedStatus,
    Needs,
    metric_scope,
    needs_of,
    observe,
    shortcuts,
    wanted_of,
    with_full_metrics,
)
from alertd.rules.model import Condition, QuietHours, Rule, Scope, Severity, Subject
from alertd.snapshot.compare import rounding

if TYPE_CHECKING:  # the daemon's parts: `alertd status` builds the rules without ccxt
    from alertd.delivery.deliverer import Deliverer
    from alertd.feeds.ccxt_exchange import HostBan
    from alertd.feeds.feed import AccountFeed

log = logging.getLogger(__name__)

# the metric of the exchange's own account ratio (moved with the marks): read by a rule on it
EXCHANGE_RATIO = "exchange_margin_ratio"
# an IP ban's end is told to the minute ("until 09:42 UTC"): an end moved later by less is
# not told again
BAN_END_TOLD_TO_S = 60.0
ZERO = Decimal(0)
# a connected feed's down time, as its 3-decimal figure reads (made once: every evaluation)
NOT_DOWN = Decimal("0.000")


def _condition(c: ConditionConfig, scope: Scope) -> Condition:
    """A configured condition (a rule's own, or one of its ``while``) read in ``scope``."""
    return Condition(
        c.metric, scope, c.above, c.below, c.clear_above, c.clear_below, c.horizon, c.window
    )


def _rule(rc: RuleConfig) -> Rule:
    scope = Scope(rc.scope) if rc.scope else metric_scope(rc.metric)
    assert scope is not None  # the config model checked the metric
    return Rule(
        name=rc.name,
        condition=_condition(rc, scope),
        severity=Severity[rc.severity.upper()],
        for_s=rc.for_,
        keep_firing_for_s=rc.keep_firing_for,
        repeat_s=rc.repeat,
        accounts=frozenset(rc.accounts) if rc.accounts is not None else None,
        exchanges=frozenset(rc.exchanges) if rc.exchanges is not None else None,
        symbols=frozenset(rc.symbols) if rc.symbols is not None else None,
        labels=dict(rc.labels),
        message=rc.message,
        also=tuple(_condition(c, scope) for c in rc.while_ or ()),
    )


def build_rules(config: Config) -> list[Rule]:
    """The configured rules plus the built-in ones that watch alertd itself and the guide's
    defences (an exchange's margin call is no rule: it is a system message, see
    :meth:`Alerting.event`). A user rule of the same name replaces the built-in."""
    rules = [_rule(rc) for rc in config.rules]
    taken = {r.name for r in rules}
    rules += [r for r in builtin_rules(config) if r.name not in taken]
    return rules


def _builtin(
    name: str,
    metric: str,
    scope: Scope = Scope.ACCOUNT,
    severity: Severity = Severity.WARNING,
    *,
    above: Decimal,
    clear_below: Decimal | None = None,
    window_s: float | None = None,
    **timings: Any,
) -> Rule:
    """A built-in rule: ``metric`` above ``above`` (cleared below ``clear_below``), read over
    ``window_s`` where the metric takes a window; ``timings``: the rule's own (``for_s``,
    ``repeat_s``, ``accounts``)."""
    condition = Condition(metric, scope, above=above, clear_below=clear_below, window_s=window_s)
    return Rule(name, condition, severity, **timings)


# hysteresis of the defences' built-in rules: a breach clears this far back below its level
DEFENCE_CLEAR = Decimal("0.9")


def _defence(name: str, metric: str, level: Decimal, for_s: float) -> Rule:
    return _builtin(name, metric, above=level, clear_below=level * DEFENCE_CLEAR, for_s=for_s)


def builtin_rules(config: Config) -> list[Rule]:
    """The built-in rules ``builtin_rules`` leaves on (docs/rules.md, "Built-in rules")."""
    b = config.builtin_rules
    stale_after = Decimal(str(config.feeds.stale_after_s))
    down_after = Decimal(str(b.feed_down_after_s))
    position = Scope.POSITION
    defences_for = b.defences_for
    candidates: list[tuple[bool, Rule]] = [
        (b.feed_stale, _builtin("feed-stale", "feed_stale_s", above=stale_after)),
        (
            b.feed_down,
            _builtin("feed-down", "feed_down_s", severity=Severity.CRITICAL, above=down_after),
        ),
        (
            b.private_stream_missed,
            _builtin("private-stream-missed", "private_stream_missed", above=ZERO),
        ),
        (
            b.account_error,
            _builtin(
                "account-error",
                "account_error",
                severity=Severity.CRITICAL,
                above=ZERO,
                repeat_s=4 * 3600,
            ),
        ),
        (b.account_mode, _builtin("account-mode", "mode_not_computed", above=ZERO)),
        (
            b.ratio_drift,
            _builtin(
                "ratio-drift", "ratio_drift", above=b.ratio_drift_above, for_s=b.ratio_drift_for
            ),
        ),
        (
            b.incomplete_data,
            _builtin("incomplete-data", "incomplete_data", above=ZERO, for_s=b.incomplete_data_for),
        ),
        # the gap's presence, not its size: the size is 0 without a position, and the
        # warning resolves only once a read tells the fee rate (fee_gap is its gauge)
        (b.fee_gap, _builtin("fee-gap", "fee_rate_unread", above=ZERO)),
        *((True, rule) for rule in stop_rules(b.stops)),
        (
            b.leverage,
            _defence("leverage-high", "effective_leverage", b.leverage_above, defences_for),
        ),
        (
            b.concentration,
            _defence("concentrated", "concentration", b.concentration_above, defences_for),
        ),
        (
            b.insurance_fund,
            _builtin(
                "insurance-fund-drop",
                "insurance_fund_drop",
                position,
                above=b.insurance_fund_drop_above,
            ),
        ),
        (
            b.adl,
            _builtin(
                "adl-front", "adl_risk", position, above=b.adl_rank_above, window_s=b.adl_window
            ),
        ),
        (
            b.gap_risk,
            _builtin(
                "gap-risk", "gap_risk", position, above=b.gap_risk_above, for_s=b.gap_risk_for
            ),
        ),
    ]
    return [rule for on, rule in candidates if on]


def stop_rules(stops: StopRules) -> list[Rule]:
    """The stop-loss warnings (position rules) on the accounts ``stops`` names."""
    accounts = frozenset(stops.accounts) if stops.accounts is not None else None
    wanted = [
        ("stop-missing", "stop_missing", ZERO if stops.missing else None, stops.missing_for),
        (
            "stop-beyond-liquidation",
            "stop_beyond_liquidation",
            ZERO if stops.beyond_liquidation else None,
            0.0,
        ),
        ("stop-max-loss", "stop_loss", stops.max_loss, 0.0),
        ("stop-max-loss-share", "stop_loss_share", stops.max_loss_share, 0.0),
    ]
    return [
        _builtin(name, metric, Scope.POSITION, above=most, for_s=for_s, accounts=accounts)
        for name, metric, most, for_s in wanted
        if most is not None
    ]


def ratio_target(rules: Sequence[Rule]) -> Decimal:
    """The ratio that clears every "above" ratio rule: what messages tell the user to reach.

    Only a positive ratio can be reached (and divided by: what to add is ``mm / target``); a
    rule that fires above 0, or clears below 0, sets no target."""
    levels = [
        c.clear_below if c.clear_below is not None else c.threshold
        for c in (r.condition for r in rules)
        if c.metric in ("worst_ratio", "margin_ratio") and c.above is not None
    ]
    return min((level for level in levels if level > 0), default=Decimal("0.5"))


def watched_exchange_ratio(state: AccountState) -> tuple[Decimal | None, bool]:
    """The exchange's own account ratio (moved with the marks since it was read) while the
    account is watched (bootstrapped, not stopped), and whether it was moved."""
    if not state.bootstrapped or state.fatal is not None:
        return None, False
    return state.exchange_ratio()


def quiet_hours(config: Config) -> QuietHours | None:
    import datetime as dt

    q = config.quiet_hours
    if q is None:
        return None
    return QuietHours(dt.time.fromisoformat(q.start), dt.time.fromisoformat(q.end), q.timezone)


@dataclass(slots=True)
class _Down:
    """One account's count of down time while it is not connected (:meth:`Alerting.feed_status`),
    one record so that its parts begin, reset and end together: dropped as a whole once the
    account connects or stops, begun again as a whole when its host's IP is banned."""

    since: float  # first seen not connected, or its host's ban last seen (monotonic)
    # waiting for its first turn at a paced start: the most down it was counted while it
    # waits (never less after), and once that came past feed_down_after_s (``stalled``), its
    # host's start progress then (None: none yet), which later progress no longer moves
    start_down: float = 0.0
    stalled: bool = False
    stalled_progress: float | None = None


class Alerting:
    def __init__(
        self,
        config: Config,
        store: Store,
        deliverer: Deliverer,
        *,
        book: Book,
        wall_clock: Clock,
    ) -> None:
        self.store = store
        self.deliverer = deliverer
        self.book = book  # kept current by the feeds' changes; the figures rules read
        self._wall = wall_clock
        self.rules = build_rules(config)
        saved = store.load_states()
        self.engine = AlertEngine(
            self.rules,
            states=saved,
            silences=store.silences(),
            quiet_hours=quiet_hours(config),
        )
        self._down: dict[str, _Down] = {}  # per account not connected (:class:`_Down`)
        self.down_after = Decimal(str(config.builtin_rules.feed_down_after_s))
        self._computable: dict[str, bool] = {}  # complete, in a mode alertd computes
        self._missing: dict[str, tuple[str, ...]] = {}  # what keeps each account incomplete
        # per account whose figures alertd computes but are incomplete for a while: since when
        # (monotonic), and the positions (symbol, side) it had alerts on when its figures went
        self._held: dict[str, tuple[float, frozenset[tuple[str, str]]]] = {}
        # per account, the positions whose alerts its last evaluation kept as they are
        # (FeedStatus.kept_positions): what its status says
        self._kept: dict[str, tuple[tuple[str, str], ...]] = {}
        # per account with no alert state: the marks and time within which no rule can
        # breach (rules/band.py), so that an evaluation there would change nothing
        self._bands: dict[str, Band] = {}
        # per account re-rated since its band was set (:meth:`rerated`): that band, proven at
        # the rates before, until its next evaluation proves one at the new rates
        self._rerated: dict[str, Band] = {}
        # of those, the accounts set aside by a read that left their figures as they were
        # (:meth:`reread`) and by nothing else since: that band holds at their figures
        self._reread: set[str] = set()
        self.skipped = 0  # evaluations a band proved idle
        self.reproven = 0  # of those, re-rated accounts' (:meth:`band_rerated`)
        # of those, re-read accounts' whose band was kept (:meth:`reread`; down, proven again)
        self.kept_at_read = 0
        self.evaluations = 0  # evaluations done (not skipped): what a firing daemon's CPU is
        # the exchange hosts whose IP ban was told (until it ends), with its real end and the
        # end told (epoch seconds) and what ages where it holds one shared read only; kept in
        # the store, so that a restart waits for its real end and tells its end, not it again
        self._bans_told = store.ip_bans()
        self.notifications = 0
        self.commits = 0  # store commits of alert states: the firing alerts may have changed
        self.margin_calls = config.builtin_rules.margin_call
        self.insurance_window_s = config.builtin_rules.insurance_fund_window
        self.hold_s = config.builtin_rules.incomplete_data_for
        self._use_rules()
        self._end_removed(config, {s.subject.account for s in saved})

    def _end_removed(self, config: Config, saved: Collection[str]) -> None:
        """At a start: the alerts saved for accounts no longer in the config end, told
        through the normal delivery (a user paged by one sees it end; nothing would
        evaluate them again, and ``alertd status`` listed them as firing for ever: review of
        idx13). ``saved``: the accounts with states loaded; their rows in the store go too
        (those of rules no longer configured, which the engine dropped, with them)."""
        configured = {a.name for a in config.accounts if a.enabled}  # a disabled one has no feed
        wall = self._wall()
        notes = self.engine.resolve_removed(configured, wall)
        for account in sorted(set(saved) - configured):
            mine = [n for n in notes if n.subject.account == account]
            log.info(
                "account %s removed from the config or disabled: its %d alerts ended",
                account,
                len(mine),
            )
            self._commit(account, mine, wall)

    def _use_rules(self) -> None:
        self.target = ratio_target(self.rules)
        self._wanted = wanted_of(self.rules)  # observe only what a rule reads
        self._proofs = shortcuts(self.rules)  # and solve nothing that provably breaches none
        self._band_rules = BandRules.of(self.rules)  # the rules as band() reads them
        self._needs_crash = needs_of(self.rules) is Needs.CRASH
        self._reads_exchange_ratio = EXCHANGE_RATIO in self._wanted
        self._bands.clear()
        self._rerated.clear()
        self._reread.clear()

    def reload(self, config: Config) -> None:
        self.rules = build_rules(config)
        self.engine.set_rules(self.rules)
        self.engine.quiet_hours = quiet_hours(config)
        self.margin_calls = config.builtin_rules.margin_call
        self.insurance_window_s = config.builtin_rules.insurance_fund_window
        self.hold_s = config.builtin_rules.incomplete_data_for
        self.down_after = Decimal(str(config.builtin_rules.feed_down_after_s))
        self._use_rules()

    def refresh_silences(self) -> None:
        """Silences are added by ``alertd silence`` from another process, through the store."""
        self.engine.silences = self.store.silences()

    def forget(self, name: str) -> None:
        """Something but a mark changed for ``name`` (a snapshot, stops, mode, a fatal error):
        its band no longer says anything."""
        self._bands.pop(name, None)
        self._rerated.pop(name, None)
        self._reread.discard(name)

    def rerated(self, name: str) -> None:
        """The pool's rates of ``name`` alone moved (an asset index frame): its positions,
        stops, mode and feed are as its band assumed, its figures are not. The band is set
        aside until its next evaluation (:meth:`evaluate`), which proves one at the new rates
        where that band still holds, instead of observing every rule."""
        held = self._bands.pop(name, None)
        if held is not None:
            self._rerated[name] = held
        self._reread.discard(name)  # (one set aside by a read: proven again, at the new rates)

    def reread(self, name: str) -> None:
        """A read of ``name`` (a reconcile, a push) left the account's figures as its band
        assumed: the book's account was kept, built from the same holdings (positions,
        wallets, stops, fee rates, tiers, mode: ``Service._built_from``). What else a read
        brings (the drift, the flags, incomplete data, the mode's coverage) may have moved.
        The band is set aside until its next evaluation, which keeps it where it still holds
        and every value the read brought is on its rules' safe side
        (:func:`~alertd.rules.band.reads_hold`), instead of observing every rule; while its
        private stream is down, proves it again at the status then (its down time)."""
        held = self._bands.pop(name, None)
        if held is not None:
            self._rerated[name] = held
            self._reread.add(name)

    def feed_status(
        self, feed: AccountFeed, now: float, missing: tuple[str, ...] = ()
    ) -> FeedStatus:
        """The feed's status and the exchange's own figures; ``missing``: what keeps the
        account's data incomplete (read by :meth:`evaluate` when something arrived)."""
        state = feed.state
        name = feed.config.name
        if state.connected or state.fatal is not None:
            self._down.pop(name, None)
            down = 0.0
        else:
            record = self._down.get(name)
            if record is None or feed.host_ban() is not None:
                # first seen down; or its exchange host's IP is banned: the host's one
                # ip-banned message says so (not a feed-down per account), and down counts
                # from the ban's end, its paced start's count begun again
                record = self._down[name] = _Down(now)
            since = record.since
            waiting = feed.waiting_first_turn()
            if waiting:
                # waiting for its turn in the per-IP budget's pace (said at start), or retrying
                # after a failure in that crowd (a 429, a timeout): not down until its group
                # could all be live. Its private stream opens after its bootstrap with one more
                # request in the budget: bootstrapped, it can still wait a window (826 of 1,000
                # accounts fired feed-down so, the first 175 included, issue 14 ninth pass), or
                # meet the crowd's 429 there. Either step failing in a row for longer than a
                # rate-limit window ends the wait (state.START_KEEPS_FAILING_S), as does a
                # stream's failure once it was connected
                since += feed.paced_start_s
                # nor while its first bootstrap waits in alertd's own queue for a REST slot
                # (feeds.rest_concurrency at once: 463 of 1,000 Bybit accounts, 519 on OKX,
                # fired feed-down so, benchmarks.md ninth pass): down counts from its slot,
                # or the paced start's grace if that ends later
                if feed.waiting_for_first_slot():
                    since = now
                elif feed.first_slot_at is not None:
                    since = max(since, feed.first_slot_at)
            # nor while it waits for its turn to open a private websocket in its exchange
            # host's pace (OKX: 3 openings a second per IP), at a start or after a drop of
            # every account at once: the time it waited is not counted down
            since += feed.waited_for_turns_s(now)
            paced = waiting and feed.paced_start_s > 0
            progress = record.stalled_progress if record.stalled else feed.host_start_progress_at()
            if paced and progress is not None:
                # the paced start's grace is an estimate from the exchange's limits alone, a
                # floor: the machine's load makes each bootstrap, listen-key POST (after its
                # opening turn: not a turn's wait, not credited above) and handshake longer.
                # 1,000 Binance accounts were all live after 1,431 s where the start said "at
                # least 1200 s" (load 11 to 13; the REST budget averaged 565 of its 2,160
                # weight a minute meanwhile), and 12 bootstrapped or bootstrapping at 1,200 s,
                # their turns' waits credited 2 s at most, fired feed-down at 1,263 s, resolved
                # a second later (issue 14, firing1000). So it also holds while its host's
                # start makes progress (an account of it bootstrapped or first opened its
                # private stream): down counts from the later of the estimate's end and that
                # last progress. A start that stalls (nothing of the host goes through) fires
                # feed_down_after_s after its last progress, or after the estimate if later
                # (a stall within the estimate pages after it only, as before: the estimate is
                # a floor, and bootstraps came 45-49 s apart under load, firing1000);
                # its own failures in a row end the wait as before (``waiting`` False). Once
                # down so, later progress no longer moves it: its feed-down, fired, stays
                # (it would resolve at another account's progress and fire again).
                # Its own waits for an opening turn after that progress (the host's pace
                # full: nothing of the host can go through meanwhile) count on top of it, as
                # they do on top of the estimate (reviewer's probe_turn_wait)
                since = max(since, progress + feed.waited_for_turns_s(now, after=progress))
            down = max(0.0, now - since)
            if paced:
                # never less than it was while it waits: the progress above moves ``since``
                # forward, and a rule on feed_down_s below feed_down_after_s (a user's 30 s
                # warning) fired and resolved at every progress of its host while it never
                # connected (reviewer's probe_user_rule_flap). So down is the longest it went
                # without its host's progress past the estimate: a rule fires once, at its own
                # threshold, and stays until it connects; feed-down itself is not moved by
                # other rules' thresholds (freezing at the lowest would page a host's 30 s
                # gaps between bootstraps: 45-49 s under load, firing1000). Once down past
                # feed_down_after_s, tested as the feed-down rule tests it (the 3-decimal
                # value above it), its stall's progress is kept (above)
                down = record.start_down = max(down, record.start_down)
                if not record.stalled and Decimal(f"{down:.3f}") > self.down_after:
                    record.stalled = True
                    record.stalled_progress = progress
        stale = 0.0
        if state.bootstrapped:
            # the oldest held mark's age (a symbol never marked: since the positions
            # stream opened); the same float as the largest of the ages, read once
            opened = state.last_seen.get((Stream.POSITIONS, ""), now)
            oldest = state.oldest_mark_seen(opened)
            stale = 0.0 if oldest is None else now - oldest
        computed = state.mode.coverage is Coverage.COMPUTED
        watched = state.bootstrapped and state.fatal is None
        exchange_ratio, moved = None, False
        if watched and (missing or not computed or self._reads_exchange_ratio):
            # the exchange's ratio moved with the marks is read where it stands in for
            # alertd's (missing data, a mode alertd does not compute; the messages then quote
            # it) or a rule reads it: moving it at every evaluation of an account alertd
            # computes was a twentieth of a firing daemon's CPU at 1,000 accounts (firing14)
            exchange_ratio, moved = watched_exchange_ratio(state)
        ratios = feed.ratios if computed else None
        stands_in = watched and exchange_ratio is not None and (bool(missing) or not computed)
        return FeedStatus(
            Decimal(f"{stale:.3f}"),
            NOT_DOWN if down == 0.0 else Decimal(f"{down:.3f}"),
            state.fatal,
            exchange_name=feed.spec.name,
            mode=state.mode.label,
            mode_limits=state.mode.limits if watched and not computed else None,
            exchange_ratio=exchange_ratio,
            exchange_ratio_moved=moved,
            exchange_ratio_stands_in=stands_in,
            ratios=ratios,
            ratio_pool=feed.ratio_pool if ratios is not None else None,
            ratio_rounding=Decimal(0) if ratios is None else rounding(ratios[1]),
            missing=missing if watched else (),
            fee_gap=state.shown_fee_gap if watched else None,
            insurance_drops=self._insurance_drops(feed),
            # the stop and liquidation-distance rules read them where alertd has no figures
            positions=state.exchange_ratio_positions() if stands_in else (),
            kept_positions=self._kept_positions(feed, now, stands_in),
            # its bootstrap retrying, or then its private stream's first opening
            not_live=state.start_retrying(),
            missed=state.missed.describe() if watched and state.missed is not None else None,
            miss_ended=state.miss_ended,
            watched=watched,
        )

    def counting_down(self) -> frozenset[str]:
        """The accounts whose down time :meth:`feed_status` counts: not connected, last seen."""
        return frozenset(self._down)

    def _kept_positions(
        self, feed: AccountFeed, now: float, stands_in: bool
    ) -> tuple[tuple[str, str], ...]:
        """The held positions whose alerts stay as they are while the exchange's ratio stands
        in, as (symbol, side): those in markets alertd does not know (the exchange's list
        cannot describe them: not seeing them there is not seeing them closed), and those
        :meth:`_hold` holds, until ``builtin_rules.incomplete_data_for`` has passed."""
        if not stands_in:
            return ()
        kept = {(symbol, side.label) for symbol, side in feed.state.unknown_positions()}
        hold = self._held.get(feed.config.name)
        if hold is not None and now - hold[0] < self.hold_s:
            kept |= hold[1]
        return tuple(sorted(kept))

    def _hold(self, feed: AccountFeed, now: float, missing: tuple[str, ...]) -> None:
        """Hold the positions of an account whose figures alertd computes but which are
        incomplete for a while (a new symbol's tier table not read yet): those alertd
        alerted on from its own figures when its figures went. Read on the exchange's
        figures meanwhile, a figure its answer lacks (no liquidation price, say) would
        resolve their alerts ("no value") and they would fire again once alertd's figures
        are back; so, held, a missing value leaves an alert as it is while a present one is
        evaluated as ever (metrics.py ``_reported``). The hold ends once the incomplete-data
        warning could have fired (``builtin_rules.incomplete_data_for``): from then on the
        account is said to be incomplete and the exchange's figures are read as they are."""
        state = feed.state
        name = feed.config.name
        if not missing or state.fatal is not None or state.mode.coverage is not Coverage.COMPUTED:
            self._held.pop(name, None)
            return
        since, held = self._held.get(name) or (now, self._alerted_positions(name))
        # one closed meanwhile is no longer held: its alerts resolve as closed
        held &= {(symbol, side.label) for symbol, side in state.positions}
        self._held[name] = (since, held)

    def _alerted_positions(self, name: str) -> frozenset[tuple[str, str]]:
        subjects = (s.subject for s in self.engine.states_of(name))
        return frozenset((s.symbol, s.side or "") for s in subjects if s.symbol is not None)

    def held_positions(self, name: str) -> tuple[str, ...]:
        """The positions of ``name`` whose alerts its last evaluation kept as they are while
        the exchange's ratio stands in (:attr:`FeedStatus.kept_positions`: a market alertd
        does not know, or held while its figures are incomplete), "BTC/USDT:USDT long":
        what its status says."""
        return tuple(f"{symbol} {side}" for symbol, side in self._kept.get(name, ()))

    def _insurance_drops(self, feed: AccountFeed) -> dict[str, Decimal]:
        funds = feed.hub.insurance
        if not funds:
            return {}
        out = {}
        for symbol in feed.state.held_symbols:
            history = funds.get(symbol)
            drop = None if history is None else history.drop(self.insurance_window_s)
            if drop is not None:
                out[symbol] = drop
        return out

    def evaluate(
        self, feed: AccountFeed, now: float, changed: bool = True, marks_known: bool = False
    ) -> list[Notification]:
        """Evaluate one account at monotonic ``now``; commit what changed.

        The figures are the account's in the book (running sums, liquidation prices solved
        only for a rule that reads them), complete once the feed has bootstrapped with every
        mark, tier table and market. ``changed=False`` (the once-a-second sweep that advances
        "for", repeats and staleness) skips re-checking that: nothing arrived since.

        Within the account's band (set by its last evaluation when it left no alert state)
        nothing is evaluated: no rule's value can breach there, so nothing would change.
        ``marks_known``: the caller's band index saw every tick since (:meth:`Band.holds`).
        """
        state = feed.state
        name = feed.config.name
        books = feed.hub.books.books if feed.hub.books is not None else None
        # (a band set aside at a re-rate is not there: proven again below)
        if self.within_band(
            name, state.marks, now, state.connected, books, state.mark_seen, marks_known
        ):
            return []
        if changed or name not in self._computable:
            self._missing[name] = tuple(state.incomplete()) if state.bootstrapped else ()
            self._computable[name] = (
                state.bootstrapped
                and state.mode.coverage is Coverage.COMPUTED
                and not self._missing[name]
            )
        self._hold(feed, now, self._missing[name])
        status = self.feed_status(feed, now, self._missing[name])
        self._kept[name] = status.kept_positions
        # read from the book each time: it reprices the account at the marks ticked since
        live = self.book.get(name) if self._computable[name] else None
        exchange = feed.config.exchange
        if self.band_rerated(
            name, exchange, live, status, now, state.connected, books, state.marks, state.mark_seen
        ):
            return []
        self.evaluations += 1  # (a re-rated account proven idle is counted in skipped)
        notes = self.evaluate_figures(name, exchange, live, status, feed.hub.dynamics, books)
        self.keep_band(name, exchange, live, status, now, state.connected, books)
        return notes

    def within_band(
        self,
        name: str,
        marks: Mapping[str, Decimal],
        now: float,
        connected: bool,
        books: Mapping[str, OrderBook] | None,
        seen: Callable[[str], float | None],
        marks_known: bool = False,
    ) -> bool:
        """The account is within the band its last evaluation set: evaluating it would change
        nothing (counted in :attr:`skipped`). Outside it the band is dropped. ``seen``: when
        each symbol's last mark arrived (monotonic); ``marks_known``: see
        :meth:`Band.holds`."""
        held = self._bands.get(name)
        if held is None:
            return False
        if held.holds(marks, now, connected, books, seen, marks_known):
            self.skipped += 1
            return True
        del self._bands[name]
        return False

    @property
    def bands(self) -> Mapping[str, Band]:
        """Each account's band as it stands (read only: the daemon's index of their bounds)."""
        return self._bands

    def keep_band(
        self,
        name: str,
        exchange: str,
        live: LiveAccount | None,
        status: FeedStatus,
        now: float,
        connected: bool,
        books: Mapping[str, OrderBook] | None,
    ) -> None:
        """After an evaluation: the account's band, if it has no alert state and its rules
        give one (:func:`alertd.rules.band.band`)."""
        if live is None or name in self.engine.alerted_accounts:
            return
        subject = Subject(name, exchange)
        found = band(self._band_rules, subject, live, status, now, connected=connected, books=books)
        if found is not None:
            self._bands[name] = found

    def band_rerated(
        self,
        name: str,
        exchange: str,
        live: LiveAccount | None,
        status: FeedStatus,
        now: float,
        connected: bool,
        books: Mapping[str, OrderBook] | None,
        marks: Mapping[str, Decimal],
        seen: Callable[[str], float | None],
    ) -> bool:
        """An account whose rates alone moved since its band was set (:meth:`rerated`), or
        that a read left at the figures the band assumed (:meth:`reread`), that band still
        holding now (at the marks, time, connection and books as they are) and every value a
        read sets on its rules' safe side (:func:`~alertd.rules.band.reads_hold`): True, and
        its band set again (re-read alone: that band, its figures the same; re-rated: where a
        band found at its new figures holds too); then evaluating it would change nothing
        (counted in :attr:`skipped`). False proves nothing: evaluate it (its band set aside
        is dropped either way).

        Why this is the evaluation's outcome: with no alert state (it had a band), an
        evaluation changes something only where a rule's value breaches
        (``AlertEngine.idle``). A value that does not read the pool's rates (the stops'
        coverage, price and loss, the ADL rank, the feed's age, the mode, the last
        reconcile's drift, incomplete data while its figures are computed) is what it would
        be at the rates before, where the band held: none breaches (and a read's, checked
        here: none breaches). Every value that reads
        them (the pool's ratio, buffer, equity, requirement and leverage, the liquidation
        distances, the stop's share of the equity and its place past the liquidation price,
        gap risk) is one ``rules/band.py`` bounds from the figures at the new rates, and the
        band found there exists only where each is on its safe side now. A rule it does not
        bound gives no band: evaluated. The fee gap's share reads the requirement and is
        not bounded by the band (only marks move it, never across 0): evaluated where one is
        read."""
        before = self._rerated.pop(name, None)
        reread = name in self._reread
        self._reread.discard(name)
        if (
            before is None
            or live is None
            or status.fee_gap is not None
            or not before.holds(marks, now, connected, books, seen)
            or not reads_hold(self._band_rules, Subject(name, exchange), live, status)
        ):
            return False
        if reread and connected:
            if name in self.engine.alerted_accounts:
                return False  # (a band is for an account without an alert state)
            # the same figures (the book's account kept), connected (its down time 0, no
            # value the band bounds by time is one a read moves): the band proven on them holds
            self._bands[name] = before
            self.skipped += 1
            self.kept_at_read += 1
            return True
        # re-rated, or re-read while its private stream is down: proven again at the status
        # now. Down, the band's ``until`` came from the down time at its evaluation, assumed
        # to grow a second a second; it can jump (an opening that failed withdraws the credit
        # of its waits for a turn, ``AccountFeed.waited_for_turns_s``; a start that keeps
        # failing ends its paced start's grace), and main's evaluation at every read fired
        # feed-down there (reviewer's probe_down)
        self.keep_band(name, exchange, live, status, now, connected, books)
        found = self._bands.get(name)
        if found is None or not found.holds(marks, now, connected, books, seen):
            self._bands.pop(name, None)
            return False
        self.skipped += 1
        if reread:
            self.kept_at_read += 1
        else:
            self.reproven += 1
        return True

    def evaluate_figures(
        self,
        name: str,
        exchange: str,
        live: LiveAccount | None,
        status: FeedStatus,
        dynamics: Mapping[str, MarkWindow] | None = None,
        books: Mapping[str, OrderBook] | None = None,
    ) -> list[Notification]:
        """Evaluate one account from its figures (``None`` while incomplete), its feed's
        status and its exchange's price dynamics; commit what changed. What :meth:`evaluate`
        does once it has read the feed."""
        engine = self.engine
        alerted = engine.alerted_metrics(name)
        observations = observe(
            name,
            exchange,
            live,
            status,
            self._wanted,
            dynamics,
            proofs=self._proofs,
            alerted=alerted,
            books=books,
        )
        if not alerted and engine.idle(observations):
            return []  # no alert of this account, nothing breached: nothing would change
        wall = self._wall()
        # without figures, only an exchange's list of the positions says which were closed
        known = live is not None or status.exchange_ratio_stands_in
        notes = engine.evaluate(observations, wall, accounts=[name], positions_known=known)
        if notes or name in engine.changed:
            notes = with_full_metrics(notes, self.target, self._needs_crash)
            self._commit(name, notes, wall)
        return notes

    def event(self, feed: AccountFeed, event: AccountEvent) -> SystemMessage | None:
        """An exchange push (margin call, liquidation warning): one message, unless silenced
        (``builtin_rules.margin_call: false`` turns them off)."""
        kind = PUSHES.get(event.kind)
        if kind is None or not self.margin_calls:
            return None
        wall = self._wall()
        m = exchange_push(kind, feed.config.name, feed.config.exchange, event.detail, wall)
        if self.engine.muted(m.labels, wall) or self.engine.quiet(m.severity, wall):
            return None
        self.deliverer.enqueue(m)
        self.notifications += 1
        log.info("%s %s: %s", m.kind.value, m.name, m.title)
        return m

    def host_bans(self, bans: Sequence[HostBan]) -> list[SystemMessage]:
        """The exchange hosts whose IP is banned now: one message per host as its ban begins
        (not one per account: each account of it waits for the same end), again when a later
        refusal moves its end later than the minute told, one as it ends; unless silenced
        (``alertname=ip-banned``). Returns what was sent."""
        wall = self._wall()
        now = {ban.host: ban for ban in bans}
        told = self._bans_told
        messages = [
            ip_ban_over(host, wall, saved.holds) for host, saved in told.items() if host not in now
        ]
        self._bans_told = {}
        for host, ban in now.items():
            before = told.get(host)
            told_wall = before.told_wall if before is not None else -float("inf")
            if ban.until_wall >= told_wall + BAN_END_TOLD_TO_S:
                messages.append(ip_banned(host, ban.status, ban.until_wall, wall, ban.holds))
                told_wall = ban.until_wall
            # the real end saved (a restart waits for it), the end told kept apart
            self._bans_told[host] = SavedBan(ban.status, ban.until_wall, told_wall, ban.holds)
        if self._bans_told != told:
            self.store.save_ip_bans(self._bans_told)
        sent = [m for m in messages if not self.engine.muted(m.labels, wall)]
        for m in sent:
            self.deliverer.enqueue(m)
            self.notifications += 1
            log.info("%s %s: %s", m.kind.value, m.name, m.title)
        return sent

    def _commit(self, account: str, notes: Sequence[Notification], wall: float) -> None:
        messages = []
        for n in notes:
            message = render(n, self.target)
            messages.extend(self.deliverer.messages_for(n, message))
            log.info("%s %s: %s", n.kind.value, n.rule.name, message.title)
        self.store.commit_evaluation(self.engine.states_of(account), [account], messages, wall)
        resolved = [n.alert_key for n in notes if n.kind is Kind.RESOLVED]
        if sum(self.store.end_acknowledgements(key, wall) for key in resolved):
            self.refresh_silences()  # an acknowledged alert resolved: its next firing is news
        self.commits += 1
        self.notifications += len(notes)
        if messages:
            self.deliverer.wake()
