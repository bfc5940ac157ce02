"""An account within its band is not evaluated (alertd/rules/band.py): the same alerts as
evaluating it at every tick.

Two daemon evaluations (``Alerting``) run side by side through one random world: one
evaluates every account at every tick and sweep, the other skips an evaluation while the
account is within the band its last evaluation set. Random books (every profile, cross,
isolated and hedged legs, inverse contracts, tier tables with steps, stops, ADL ranks), random
rules on every metric a band covers (and some it does not), thresholds near the world's
values, hysteresis, ``for``, ``keep_firing_for``, repeats; ticks small and large, symbols that
stop ticking (staleness), disconnections, order books replaced, reconciles and closed
positions. Both must send the same notifications (kind, rule, subject, times, value, reason,
message) and keep the same alert states at every step; and the banded one must have skipped
evaluations, or the comparison would prove nothing.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.config import AccountConfig, Config, RuleConfig
from alertd.daemon.evaluation import Alerting, build_rules
from alertd.daemon.store import Store
from alertd.delivery.deliverer import Deliverer
from alertd.engine.book import Book, LiveAccount, requirement_rate
from alertd.engine.collateral import Collateral, CollateralRatio, ConversionRates, SettleTerms
from alertd.engine.model import Account, MarginMode, Pool, Position, Side
from alertd.engine.orderbook import OrderBook
from alertd.engine.tiers import Tier, TierTable
from alertd.exchanges.registry import get_spec
from alertd.rules.band import Band, BandIndex, band
from alertd.rules.lifecycle import Notification
from alertd.rules.metrics import (
    FeedStatus,
    gap_proof,
    observe,
    position_shortfall,
    shortcuts,
    wanted_of,
)
from alertd.rules.model import Observation, Scope, Subject
from tests.support.rules import random_timings
from tests.support.rules import rule as rule_on
from tests.test_evaluation_shortcuts import (
    EXCHANGES,
    account,
    calm_btc_long,
    random_book,
    signature,
    states,
    table,
)

D = Decimal

# metric -> (scope, risky direction); the band covers all but the last two, which must make
# the account evaluate every time
METRICS = {
    "worst_ratio": ("account", "above"),
    "margin_ratio": ("account", "above"),
    "buffer": ("account", "below"),
    "margin_balance": ("account", "below"),
    "maintenance_margin": ("account", "above"),
    "effective_leverage": ("account", "above"),
    "concentration": ("account", "above"),
    "feed_stale_s": ("account", "above"),
    "feed_down_s": ("account", "above"),
    "account_error": ("account", "above"),
    "liquidation_distance": ("position", "below"),
    "unrealized_pnl": ("position", "below"),
    "notional": ("position", "above"),
    "stop_beyond_liquidation": ("position", "above"),
    "stop_loss_share": ("position", "above"),
    "stop_missing": ("position", "above"),
    "adl_risk": ("position", "above"),
    "gap_risk": ("position", "above"),
    "crash_distance": ("account", "below"),
    "bankruptcy_buffer": ("position", "below"),
}
FEED_LEVELS = {"feed_stale_s": (5, 40), "feed_down_s": (5, 60), "account_error": (0, 0)}


def random_rule(
    rng: random.Random,
    i: int,
    seen: Mapping[str, list[Decimal]],
    covered_only: bool,
    world: World | None = None,
    scoping: random.Random | None = None,
) -> RuleConfig:
    names = list(METRICS)[:-2] if covered_only else list(METRICS)
    metric = rng.choice(names)
    scope, risky = METRICS[metric]
    if metric in FEED_LEVELS:
        low, high = FEED_LEVELS[metric]
        level = D(rng.randint(low, high))
    else:
        near = seen.get(metric) or [D(rng.randint(-20, 1200)) / 1000]
        level = rng.choice(near) * (1 + D(rng.randint(-600, 600)) / 10_000)
        if metric == "gap_risk":
            level = max(level, D(0))
        if metric == "adl_risk":
            level = D(rng.choice(["0.25", "0.5", "0.7"]))
    level = level.quantize(D("0.0001"))
    if (risky == "above" and rng.random() < 0.9) or (risky == "below" and rng.random() < 0.1):
        kw: dict[str, object] = {"above": level}
        if rng.random() < 0.5:
            kw["clear_below"] = level - abs(level) * D(rng.randint(0, 500)) / 10_000
    else:
        kw = {"below": level}
        if rng.random() < 0.5:
            kw["clear_above"] = level + abs(level) * D(rng.randint(0, 500)) / 10_000
    kw.update(random_timings(rng))
    if world is not None and scoping is not None and scoping.random() < 0.3:
        # for some of the world's subjects only (band.py reads a rule naming none without
        # asking each subject); drawn apart, the world's own draws as they were
        scoped = scoping.choice(["accounts", "exchanges", "symbols"])
        pool = {"accounts": world.names, "exchanges": EXCHANGES, "symbols": world.symbols}[scoped]
        kw[scoped] = scoping.sample(pool, scoping.randint(1, len(pool)))
    severity = rng.choice(["info", "warning", "critical"])
    return RuleConfig.model_validate(
        {"name": f"r{i}", "metric": metric, "scope": scope, "severity": severity, **kw}
    )


class Evaluator:
    """The daemon's ``Alerting.evaluate`` with a feed simulated beside it: the feed status
    read at each evaluation (the age of the oldest mark, the time since the disconnection
    this path first saw), and the band checked first where ``banded``."""

    def __init__(self, config: Config, book: Book, banded: bool, wall: list[float]) -> None:
        store = Store(":memory:")
        deliverer = Deliverer(store, {}, config.routes, config.delivery)
        self.alerting = Alerting(config, store, deliverer, book=book, wall_clock=lambda: wall[0])
        self.book = book
        self.banded = banded
        self.down_since: dict[str, float] = {}

    def status(self, name: str, now: float, world: World) -> FeedStatus:
        fatal = world.fatal.get(name)
        if world.connected[name] or fatal is not None:
            self.down_since.pop(name, None)
            down = 0.0
        else:
            down = now - self.down_since.setdefault(name, now)
        held = world.held[name]
        ages = [now - world.last_seen[p.symbol] for p in held.positions]
        ratios = world.ratios.get(name)
        return FeedStatus(
            D(f"{max(ages, default=0.0):.3f}"), D(f"{down:.3f}"), fatal, ratios=ratios
        )

    def evaluate(self, name: str, now: float, world: World) -> list[Notification]:
        connected = world.connected[name]
        books = world.books
        seen = world.last_seen.get
        if self.banded and self.alerting.within_band(
            name, world.marks, now, connected, books, seen
        ):
            return []
        status = self.status(name, now, world)
        live = self.book.get(name)
        exchange = world.exchanges[name]
        if self.banded and self.alerting.band_rerated(
            name, exchange, live, status, now, connected, books, world.marks, seen
        ):
            return []  # re-rated: its band proven again at the new rates
        notes = self.alerting.evaluate_figures(name, exchange, live, status, None, books)
        if self.banded:
            self.alerting.keep_band(name, exchange, live, status, now, connected, books)
        return notes


class World:
    def __init__(self, rng: random.Random) -> None:
        self.symbols = [f"S{i}/USDT:USDT" for i in range(rng.randint(1, 4))]
        self.marks = {s: D(rng.randint(50, 100_000)) for s in self.symbols}
        self.names = [f"a{i}" for i in range(rng.randint(1, 3))]
        self.exchanges = {n: rng.choice(EXCHANGES) for n in self.names}
        self.held: dict[str, Account] = {}
        for n in self.names:
            a = account(rng, n, self.marks, self.exchanges[n])
            ranked = tuple(
                replace(p, adl_rank=D(rng.choice(["0.25", "0.5", "0.75", "1"])))
                if rng.random() < 0.6
                else p
                for p in a.positions
            )
            self.held[n] = replace(a, positions=ranked)
        self.last_seen = dict.fromkeys(self.symbols, 0.0)
        self.connected = dict.fromkeys(self.names, True)
        self.fatal: dict[str, str] = {}
        # (alertd's, the exchange's) margin ratio as the last reconcile compared them
        self.ratios: dict[str, tuple[Decimal, Decimal]] = {}
        self.books: dict[str, OrderBook] = {
            s: random_book(rng, m) for s, m in self.marks.items() if rng.random() < 0.8
        }


def run_world(seed: int, steps: int, covered_only: bool) -> tuple[int, int, int, int, int]:
    """Both paths through one random world; returns (notifications, evaluations skipped,
    re-rates, re-rated accounts whose band was proven again, re-read accounts whose band
    was kept)."""
    rng = random.Random(seed)
    world = World(rng)
    seen: dict[str, list[Decimal]] = {}
    for name, a in world.held.items():
        book = Book()
        book.set_account(name, a)
        quiet = FeedStatus(D(0), D(0), None)
        live = book.live(name)
        for o in observe(name, world.exchanges[name], live, quiet, None, None, books=world.books):
            for metric, value in o.metrics.items():
                if value is not None and value.is_finite():
                    seen.setdefault(metric, []).append(value)
    scoping = random.Random(seed + 1)
    reads = random.Random(
        seed + 2
    )  # the reads of what an account held (the world's own draws kept)
    count = rng.randint(1, 6)
    rules = [random_rule(rng, i, seen, covered_only, world, scoping) for i in range(count)]
    config = Config(
        version=1,
        accounts=[AccountConfig(name=n, exchange="binanceusdm") for n in world.names],
        rules=rules,
        builtin_rules={
            "feed_stale": False,
            "feed_down": False,
            "account_error": False,
            "account_mode": False,
            "ratio_drift": True,  # what a read of the same holdings moves
            "incomplete_data": False,
            "stops": {"beyond_liquidation": False},
            "leverage": False,
            "concentration": False,
            "adl": False,
            "gap_risk": False,
        },
    )
    wall = [86_400.0 * 20_000]
    every_book, banded_book = Book(), Book()
    for name, a in world.held.items():
        every_book.set_account(name, a)
        banded_book.set_account(name, a)
    every = Evaluator(config, every_book, False, wall)
    banded = Evaluator(config, banded_book, True, wall)
    now = 0.0
    notified = rerates = 0

    def evaluate(name: str) -> None:
        nonlocal notified
        ours = banded.evaluate(name, now, world)
        theirs = every.evaluate(name, now, world)
        assert signature(ours, D("0.5")) == signature(theirs, D("0.5")), (seed, name, now)
        assert states(banded.alerting.engine.states) == states(every.alerting.engine.states), (
            seed,
            name,
            now,
        )
        notified += len(ours)

    ticking = list(world.symbols)
    for _ in range(steps):
        dt = rng.choice([0.05, 0.3, 1.0, 1.0, 2.0, 7.0, 30.0])
        now += dt
        wall[0] += dt
        roll = rng.random()
        rated = [n for n in world.names if multi_assets(world.held[n])]
        if rated and rng.random() < 0.25:
            # an asset index frame (Binance multi-assets): the pool's rates alone move, an
            # index's step (0.0001 a second, as bench/feeds.py's local Binance walks it) or,
            # at times, a depeg; at the current marks, as the feed's state gives them
            name = rng.choice(rated)
            a = world.held[name]
            big = rng.random() < 0.4
            a = replace(
                a,
                positions=tuple(replace(p, mark_price=world.marks[p.symbol]) for p in a.positions),
                settle_terms=moved_terms(rng, a.settle_terms, big),
                margin_assets=tuple(
                    replace(m, terms=moved_terms(rng, m.terms, big)) for m in a.margin_assets
                ),
            )
            world.held[name] = a
            every_book.set_account(name, a)
            banded_book.set_account(name, a)
            banded.alerting.rerated(name)  # as the daemon does at Change.RATES
            rerates += 1
            evaluate(name)
        elif roll < 0.62 and ticking:  # a mark tick: every holder
            symbol = rng.choice(ticking)
            big = rng.random() < 0.1
            step = rng.randint(-1500, 1500) if big else rng.randint(-30, 30)
            mark = max(D("0.5"), world.marks[symbol] * (1 + D(step) / 10_000))
            world.marks[symbol] = mark = mark.quantize(D("0.0001"))
            world.last_seen[symbol] = now
            touched = every_book.apply_mark(symbol, mark)
            assert touched == banded_book.apply_mark(symbol, mark)
            for key in sorted(touched, key=str):
                evaluate(str(key))
        elif roll < 0.8:  # the sweep: time passes
            name = reads.choice(world.names)
            if name not in world.fatal and reads.random() < 0.5:
                # with a read of what it held: the daemon keeps the book's account (here, as
                # it stands) and sets its band aside (Alerting.reread); the drift it measured
                # moves, within the ratio-drift built-in's 0.1 or, at times, past it
                theirs = D(reads.randint(1, 90)) / 100
                past = reads.random() < 0.05
                drift = D(reads.choice([11, 30] if past else [0, 1, 5, 9])) / 100
                world.ratios[name] = (theirs * (1 + drift), theirs)
                banded.alerting.reread(name)
            for name in world.names:
                evaluate(name)
        elif roll < 0.85:  # a symbol stops ticking for a while, or starts again
            if rng.random() < 0.5 and ticking:
                ticking.remove(rng.choice(ticking))
            else:
                ticking = list(world.symbols)
        elif roll < 0.9:  # the private stream drops or comes back: no change is notified
            name = rng.choice(world.names)
            world.connected[name] = not world.connected[name]
        elif roll < 0.94:  # an order book fetched again: no change is notified
            symbol = rng.choice(world.symbols)
            world.books[symbol] = random_book(rng, world.marks[symbol])
        else:  # a reconcile: a fresh snapshot (maybe a position closed), or a fatal error
            name = rng.choice(world.names)
            a = world.held[name]
            kept = tuple(
                replace(p, mark_price=world.marks[p.symbol])
                for p in a.positions
                if len(a.positions) == 1 or rng.random() < 0.8
            )
            world.held[name] = replace(a, positions=kept)
            banded.alerting.forget(name)  # as the daemon does for any change but a mark
            if rng.random() < 0.1:
                world.fatal[name] = "bad key"
                every_book.remove_account(name)
                banded_book.remove_account(name)
            else:
                world.fatal.pop(name, None)
                every_book.set_account(name, world.held[name])
                banded_book.set_account(name, world.held[name])
            evaluate(name)
    alerting = banded.alerting
    return notified, alerting.skipped, rerates, alerting.reproven, alerting.kept_at_read


def multi_assets(account: Account) -> bool:
    """A Binance account that may be in multi-assets mode (one pool, cross positions only),
    its settle currency at par (its rates at 1, or no terms) or at rates."""
    terms = account.settle_terms
    return (
        account.profile.id == "binanceusdm"
        and not account.pools
        and not any(p.is_isolated for p in account.positions)
        and (terms is None or (terms.rates is not None and terms.tiers is None))
    )


def moved_terms(rng: random.Random, terms: SettleTerms | None, big: bool) -> SettleTerms | None:
    """A margin asset's terms at the next frame's rates (at par without terms): its bid and
    ask each moved by up to 0.0001 (or by up to 0.2: a depeg, as USDC's to 0.87 in March
    2023), its other terms as they were."""
    rates = ConversionRates(Decimal(1), Decimal(1)) if terms is None else terms.rates
    if rates is None:
        return terms
    step = 2000 if big else 1

    def move(rate: Decimal) -> Decimal:
        return max(D("0.5"), rate + D(rng.randint(-step, step)) / 10_000)

    bid = move(rates.bid)
    moved = ConversionRates(bid, max(bid, move(rates.ask)))
    if terms is None:
        return SettleTerms.of(None, D(0), None, moved)
    return SettleTerms.of(terms.tiers, terms.borrowed, terms.discount, moved)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_skipping_within_the_band_alerts_exactly_as_evaluating_every_tick(
    seed: int, covered_only: bool
) -> None:
    run_world(seed, 150, covered_only)


def test_the_worlds_compared_skip_evaluations_and_alert() -> None:
    """The comparison means something only if evaluations are skipped there while alerts
    fire, repeat and resolve."""
    notified = skipped = rerates = reproven = kept = 0
    for seed in range(16):
        n, s, r, p, k = run_world(seed, 150, covered_only=True)
        notified += n
        skipped += s
        rerates += r
        reproven += p
        kept += k
    assert notified > 30 and skipped > 200, (notified, skipped)
    # re-rated accounts whose evaluation a band proven again at the new rates stood in for
    assert rerates > 20 and reproven > 5, (rerates, reproven)
    # re-read accounts whose band was kept (their drift within the built-in's)
    assert kept > 20, kept


def test_a_calm_account_has_a_band_and_leaves_it_at_its_edge() -> None:
    """The default rules and built-ins on a calm account (liquidation about 67% below, a deep
    book): a band of several percent; a mark past its edge, a mark 30 s old (feed-stale) or a
    dropped stream end it, time alone does not while the marks tick; an account near
    liquidation has none."""
    config = Config(version=1, accounts=[AccountConfig(name="a", exchange="binanceusdm")])
    rules = build_rules(config)
    btc = "BTC/USDT:USDT"
    books = {btc: OrderBook(((D(59_999), D(50)),), ((D(60_001), D(50)),))}
    status = FeedStatus(D(0), D(0), None)
    book = Book()
    book.set_account("calm", calm_btc_long("20000"))
    book.set_account("close", calm_btc_long("1500"))
    subject = Subject("a", "binanceusdm")
    found = band(rules, subject, book.live("calm"), status, 0.0, connected=True, books=books)
    assert found is not None
    assert found.until == float("inf") and found.fresh_s == 30.0 - 0.002  # feed-stale's 30 s
    ((lo, hi),) = found.prices.values()
    assert lo < D(57_000) and D(63_000) < hi  # at least 5% either way
    at_0 = {btc: 0.0}.get  # the mark's last tick, at 0
    assert found.holds({btc: D(60_000)}, 1.0, True, books, at_0)
    assert not found.holds({btc: hi}, 1.0, True, books, at_0)
    assert not found.holds({btc: D(60_000)}, 30.0, True, books, at_0)  # the feed may be stale
    assert not found.holds({btc: D(60_000)}, 1.0, True, books)  # no arrival times: unproven
    assert not found.holds({btc: D(60_000)}, 1.0, True, books, {}.get)  # never ticked
    # ticking, the band outlives the 30 s (it ended every 30 s when it was a time)
    assert found.holds({btc: D(60_000)}, 3_600.0, True, books, {btc: 3_590.0}.get)
    assert not found.holds({btc: D(60_000)}, 1.0, False, books, at_0)  # the stream dropped
    # a book fetched again: held while it takes the position as well, not once it is thin
    fetched_again = {btc: OrderBook(books[btc].bids, books[btc].asks)}
    assert found.holds({btc: D(60_000)}, 1.0, True, fetched_again, at_0)
    thin = {btc: OrderBook(((D(59_999), D("0.01")), (D(50_000), D(1))), books[btc].asks)}
    assert not found.holds({btc: D(60_000)}, 1.0, True, thin, at_0)
    close = band(rules, subject, book.live("close"), status, 0.0, connected=True, books=books)
    assert close is None


def test_the_least_requirement_rate_bounds_every_notional() -> None:
    """``requirement_rate``: mm(u) >= rate x quantity x u at every price, tier edges
    included."""
    rng = random.Random(3)
    marks = {"S0/USDT:USDT": D(30_000)}
    for _ in range(200):
        exchange = rng.choice(EXCHANGES)
        a = account(rng, "a", marks, exchange)
        a = replace(
            a,
            positions=tuple(
                replace(p, tiers=table(rng, p.tiers.basis, rng.random() < 0.5)) for p in a.positions
            ),
        )
        live = LiveAccount("a", a)
        for lp in live.positions:
            rate = requirement_rate(lp.leg)
            if rate is None:
                continue
            caps = [t.cap for t in lp.leg.tiers.tiers if t.cap is not None]
            sizes = [c * f for c in caps for f in (D("0.999999"), D(1), D("1.000001"))]
            sizes += [D(rng.randint(1, 10**7)) for _ in range(20)]
            for notional in sizes:
                u = notional / lp.leg.quantity
                assert lp.leg.mm(u) >= rate * notional * D("0.999999999"), (rate, notional)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_no_rule_breaches_anywhere_the_band_holds(seed: int) -> None:
    """The band's claim itself: a random account and rules, a band at its marks, then
    random moves of every mark (near the band's edges) and books fetched again: wherever the
    band holds, no rule's value breaches."""
    rng = random.Random(seed)
    world = World(rng)
    name = world.names[0]
    exchange = world.exchanges[name]
    book = Book()
    book.set_account(name, world.held[name])
    live = book.live(name)
    quiet = FeedStatus(D(0), D(0), None)
    seen: dict[str, list[Decimal]] = {}
    for o in observe(name, exchange, live, quiet, None, None, books=world.books):
        for metric, value in o.metrics.items():
            if value is not None and value.is_finite():
                seen.setdefault(metric, []).append(value)
    configs = [random_rule(rng, i, seen, True) for i in range(rng.randint(1, 4))]
    config = Config(
        version=1, accounts=[AccountConfig(name=name, exchange="binanceusdm")], rules=configs
    )
    rules = [r for r in build_rules(config) if r.name.startswith("r")]
    wanted = wanted_of(rules)
    observations = observe(name, exchange, live, quiet, wanted, None, books=world.books)

    def breaches(observations: list[Observation]) -> list[str]:
        return [
            f"{r.name} {o.subject.key} {value}"
            for o in observations
            for r in rules
            if r.applies_to(o.subject)
            and (value := o.metrics.get(r.series)) is not None
            and r.breached(value)
        ]

    if breaches(observations):
        return  # the daemon sets a band only for an account whose values breach nothing
    found = band(
        rules, Subject(name, exchange), live, quiet, 0.0, connected=True, books=world.books
    )
    if found is None:
        return
    held = 0
    for _ in range(40):
        for symbol, (lo, hi) in found.prices.items():
            mark = world.marks[symbol]
            edge = rng.choice([lo, hi]) if hi.is_finite() else mark * 3
            target = edge if edge > 0 else mark / 3
            share = D(rng.choice(["0.3", "0.9", "0.99", "0.9999", "1", "1.01"]))
            world.marks[symbol] = (mark + (target - mark) * share).quantize(D("0.0001"))
            book.apply_mark(symbol, world.marks[symbol])
        if rng.random() < 0.3:
            symbol = rng.choice(world.symbols)
            world.books[symbol] = random_book(rng, world.marks[symbol])
        stale = D(rng.randint(0, 29))
        status = FeedStatus(stale, D(0), None)
        # every mark last seen at 0, so the feed's age is the time
        if not found.holds(world.marks, float(stale), True, world.books, lambda _: 0.0):
            continue
        held += 1
        # the book reprices an account when it is read: read again at the moved marks
        moved = book.live(name)
        seen_now = observe(name, exchange, moved, status, wanted, None, books=world.books)
        assert not breaches(seen_now), (seed, breaches(seen_now))


def test_no_band_where_the_running_bounds_do_not_cover_the_account() -> None:
    """A second cross pool holding positions (the account's cross figures may pass from one
    pool to the other as marks move) or a settle currency lent below zero (what is owed
    requires more as the PnL falls): no band, every tick is evaluated. (The default rules
    but concentration, which gives two positions no band of its own.)"""
    config = Config(version=1, accounts=[AccountConfig(name="a", exchange="binanceusdm")])
    rules = [r for r in build_rules(config) if r.metric != "concentration"]
    status = FeedStatus(D(0), D(0), None)
    subject = Subject("a", "binanceusdm")
    calm = calm_btc_long("20000")
    (btc,) = calm.positions
    eth = replace(btc, symbol="ETH/USDC:USDC", entry_price=D(3000), mark_price=D(3000))
    two_pools = replace(
        calm, positions=(btc, replace(eth, pool="USDC")), pools=(Pool("USDC", D(20_000)),)
    )
    lent = replace(calm, settle_terms=SettleTerms(TierTable.build([Tier(None, D("0.03"), D(0))])))
    # Binance multi-assets: USDT at the docs' usual rates moves no faster than at par, above
    # par (ask 1.0002) at most 1.0002 times as fast: the bounds take that rate, a band both
    usual = replace(calm, settle_terms=SettleTerms(rates=ConversionRates(D("0.9998"), D("0.9999"))))
    above = replace(calm, settle_terms=SettleTerms(rates=ConversionRates(D("1.0001"), D("1.0002"))))
    book = Book()
    for key, a in (
        ("calm", calm),
        ("two pools", two_pools),
        ("lent", lent),
        ("usual rates", usual),
        ("above par", above),
    ):
        book.set_account(key, a)
    for key in ("calm", "usual rates", "above par"):
        assert band(rules, subject, book.live(key), status, 0.0, connected=True) is not None, key
    for key in ("two pools", "lent"):
        assert band(rules, subject, book.live(key), status, 0.0, connected=True) is None, key


def test_a_stop_loss_share_band_counts_the_pnl_at_an_ask_rate_above_one() -> None:
    """``stop_loss_share``'s band bounds how fast the equity can fall: at every leg's notional
    times the rate its PnL counts at. USDT at a premium (bid 1.0098, ask 1.02: a loss counts
    2% more) with a 1 BTC long at 60,000 on 20,000 USDT and a stop at 50,000: the share is
    0.4951 now; at a mark just inside the band's edge it must still be at most the rule's 0.5
    (the band counted the notional at par and held where the share was 0.5000067; review3)."""
    from alertd.engine.model import Side
    from alertd.engine.stops import StopKind, StopOrder, Trigger

    calm = calm_btc_long("20000")
    (btc,) = calm.positions
    stop = StopOrder(btc.symbol, Side.LONG, StopKind.STOP, Trigger.FALL, Decimal(50000), None)
    rates = SettleTerms(rates=ConversionRates(Decimal("1.0098"), Decimal("1.02")))
    account = replace(calm, settle_terms=rates, stops=(stop,))
    config = Config(
        version=1,
        accounts=[AccountConfig(name="a", exchange="binanceusdm")],
        rules=[RuleConfig(name="r1", metric="stop_loss_share", severity="warning", above=D("0.5"))],
    )
    rules = [r for r in build_rules(config) if r.name == "r1"]
    status = FeedStatus(D(0), D(0), None)
    book = Book()
    book.set_account("a", account)

    def share() -> Decimal:
        (seen,) = [
            o.metrics["stop_loss_share"]
            for o in observe("a", "binanceusdm", book.live("a"), status, wanted_of(rules), None)
            if "stop_loss_share" in o.metrics
        ]
        assert seen is not None
        return seen

    assert share() < D("0.5")
    found = band(rules, Subject("a", "binanceusdm"), book.live("a"), status, 0.0, connected=True)
    assert found is not None
    low, high = found.prices[btc.symbol]
    for mark in (low + D("0.01"), high - D("0.01")):
        book.apply_mark(btc.symbol, mark)
        assert found.holds({btc.symbol: mark}, 0.5, True, None, lambda s: 0.0)
        assert share() <= D("0.5"), mark


def test_an_unread_fee_rate_gives_no_band_to_a_fee_gap_rule_above_zero() -> None:
    """A rule on ``fee_gap`` at a level above 0 (a user's "fee_gap above 0.05") while a fee
    rate stands unread: the marks move the share it leaves out across the level, so no band
    (before, the band passed fee_gap unbounded, sound only for the built-in level 0: the
    account's evaluations were skipped as the share crossed the user's level; idx14's
    note). With every rate read the value is 0 whatever the marks: a band."""
    from alertd.engine.fee_gap import FeeGap

    rule = RuleConfig.model_validate(
        {"name": "gap", "metric": "fee_gap", "scope": "account", "above": "0.5"}
    )
    config = Config(version=1, accounts=[AccountConfig(name="a", exchange="bybit")], rules=[rule])
    rules = [r for r in build_rules(config) if r.name == "gap"]
    assert len(rules) == 1
    book = Book()
    book.set_account("calm", calm_btc_long("20000"))
    subject = Subject("a", "bybit")
    read = FeedStatus(D(0), D(0), None)
    unread = replace(read, fee_gap=FeeGap("GST", D("0.18")))
    assert band(rules, subject, book.live("calm"), read, 0.0, connected=True) is not None
    assert band(rules, subject, book.live("calm"), unread, 0.0, connected=True) is None


def book_around(mid: Decimal, size: str, step: int = 10) -> OrderBook:
    """Eight levels a side, ``step`` apart, ``size`` each, around ``mid``."""
    bids = tuple((mid - 5 - step * k, D(size)) for k in range(8))
    asks = tuple((mid + 5 + step * k, D(size)) for k in range(8))
    return OrderBook(bids, asks)


def test_a_gap_risk_the_book_proves_zero_is_not_computed() -> None:
    """A crash day (issue 14, fire15): every position's gap risk (its liquidation and
    bankruptcy prices, the book's walk moved to the liquidation price) was computed at every
    evaluation, a tenth of a firing daemon's at 1,000 accounts, where the book takes the
    position whole at its liquidation price: its shortfall is 0 wherever the marks go (the
    band's proof, ``gap_proof``: the book's average fill within the leg's least requirement
    rate of the mid). Proven so, it is left out of the observation as a distance proven
    beyond its threshold is; a thin book is not proven and is read; an alert on the
    position's gap risk reads it whatever the proof says."""
    gap = rule_on("gap_risk", Scope.POSITION, name="gap-risk", above=D(0))
    book = Book()
    book.set_account("a", calm_btc_long("1500"))  # liquidation about 2% below
    live = book.live("a")
    healthy = FeedStatus(D(0), D(0), None)
    args = ("a", "binanceusdm", live, healthy, wanted_of([gap]))
    proofs = shortcuts([gap])
    deep = {"BTC/USDT:USDT": book_around(D(60_000), "5")}
    assert position_shortfall(live, 0, deep["BTC/USDT:USDT"]) == 0
    assert observe(*args, proofs=proofs, books=deep) == observe(*args, proofs=proofs)[:1]
    thin = {"BTC/USDT:USDT": book_around(D(60_000), "0.2", step=1_000)}
    (_, position) = observe(*args, proofs=proofs, books=thin)
    shortfall = position.metrics["gap_risk"]
    assert shortfall is not None and shortfall > 0  # past bankruptcy: read, and it breaches
    alerted = {position.subject.key: {"gap_risk"}}
    (_, held) = observe(*args, proofs=proofs, alerted=alerted, books=deep)
    assert held.metrics == {"gap_risk": D(0)}


BINANCE = get_spec("binanceusdm").profile


def cross_long(
    symbol: str, qty: str, mark: str, tiers: TierTable, pool: str | None = None
) -> Position:
    """A linear cross long of Binance USD-M at its entry price, in ``pool``'s margin asset."""
    return Position(
        symbol=symbol,
        side=Side.LONG,
        contracts=D(qty),
        contract_size=D(1),
        inverse=False,
        entry_price=D(mark),
        mark_price=D(mark),
        margin_mode=MarginMode.CROSS,
        tiers=tiers,
        fee_rate=BINANCE.default_fee_rate,
        pool=pool,
    )


def test_a_gap_risk_in_a_second_cross_pool_is_read() -> None:
    """fire15's review, finding 1: a Binance single-asset account whose USDC pool is not its
    riskiest (``live.cross`` is the USDT pool) holds, beside the USDC position asked about, a
    USDC leg whose tier table's deduction is off its recursion (its requirement below 0 at
    its size). The pool is then liquidated past the position's bankruptcy price: the
    shortfall is above 0 and the rule is due. The proof needs every other term of the
    pool's requirement at least 0; it checked the other legs only for ``live.cross`` and
    took this position for an isolated one, so ``gap_risk`` was never read: a lost alert.
    The proof now holds only where the band's precondition does (``live.bounded``: one
    cross pool holding positions), the position's own pool's legs checked."""
    plain = TierTable.build([Tier(None, D("0.01"), D(0))])
    # a deduction past the table's recursion (continuous: 10): the requirement below 0 at 2,000
    stepped = TierTable.build([Tier(D(1000), D("0.01"), D(0)), Tier(None, D("0.02"), D(200))])
    positions = (
        cross_long("BTC/USDT:USDT", "1", "60000", plain, None),  # the USDT pool: ratio about 0.6
        cross_long("ETH/USDC:USDC", "5", "2000", plain, "USDC"),  # 10,000 notional, requires 100
        cross_long("SOL/USDC:USDC", "20", "100", stepped, "USDC"),  # 2,000 notional, requires -160
    )
    pools = (Pool("USDC", D(500)),)
    book = Book()
    book.set_account("a", Account(BINANCE, "a", "USDT", D(1000), positions, pools=pools))
    live = book.live("a")
    assert live.positions[1].pool is not live.cross
    books = {lp.symbol: book_around(lp.mark, "1000", step=1) for lp in live.positions}
    shortfall = position_shortfall(live, 1, books["ETH/USDC:USDC"])
    assert shortfall is not None and shortfall > 0  # the rule breaches: an alert is due
    assert not gap_proof(live, 1, D(0)).fits(books["ETH/USDC:USDC"])
    gap = rule_on("gap_risk", Scope.POSITION, name="gap-risk", above=D(0))
    args = ("a", "binanceusdm", live, FeedStatus(D(0), D(0), None), wanted_of([gap]))
    fast = {
        o.subject.symbol: o.metrics.get("gap_risk")
        for o in observe(*args, proofs=shortcuts([gap]), books=books)
    }
    assert fast.get("ETH/USDC:USDC") == shortfall


def test_a_gap_risk_beside_a_liability_requiring_less_than_zero_is_read() -> None:
    """fire15's review, finding 1's sibling: the proof needs every term of the pool's
    requirement but the leg's own at least 0, a held liability's too. A BNB loan whose tier
    deduction is off its recursion requires below 0 (10 owed at 600: 60 less 200), so the
    one-cross-pool account (``live.bounded``) is liquidated past the position's bankruptcy
    price: the shortfall is above 0, and the proof must not call it 0."""
    position = cross_long(
        "ETH/USDT:USDT", "5", "2000", TierTable.build([Tier(None, D("0.01"), D(0))])
    )
    owing = TierTable.build([Tier(None, D("0.01"), D(200))])
    loan = Collateral("BNB", D(-10), D(600), CollateralRatio.flat(D(1)), liability_tiers=owing)
    assert loan.requirement < 0
    book = Book()
    book.set_account("a", Account(BINANCE, "a", "USDT", D(7000), (position,), collateral=(loan,)))
    live = book.live("a")
    assert live.bounded
    deep = book_around(D(2000), "1000", step=1)
    shortfall = position_shortfall(live, 0, deep)
    assert shortfall is not None and shortfall > 0
    assert not gap_proof(live, 0, D(0)).fits(deep)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_a_gap_risk_proven_zero_is_zero(seed: int) -> None:
    """Where ``gap_risk``'s proof holds for a book and a threshold, the computed shortfall
    is 0 or has no value (at or below any threshold of 0 or more), at the marks of the proof
    and after moves of them: random accounts of every exchange's conventions (inverse,
    isolated, hedged, tiered), random books from deep to thin or one-sided."""
    rng = random.Random(seed)
    symbols = [f"S{i}/USDT:USDT" for i in range(rng.randint(1, 3))]
    marks = {s: D(rng.randint(50, 100_000)) for s in symbols}
    books = {s: random_book(rng, marks[s]) for s in symbols}
    book = Book()
    book.set_account("a", account(rng, "a", marks, rng.choice(EXCHANGES)))
    live = book.live("a")
    threshold = rng.choice([D(0), D("0.5"), D(100)])
    proven = [
        i
        for i, lp in enumerate(live.positions)
        if gap_proof(live, i, threshold).fits(books[lp.symbol])
    ]
    for _ in range(rng.randint(1, 6)):
        for i in proven:
            value = position_shortfall(live, i, books[live.positions[i].symbol])
            assert value is None or value == 0, (seed, i, value)
        symbol = rng.choice(symbols)
        marks[symbol] = max(D("0.5"), marks[symbol] * (1 + D(rng.randint(-3000, 3000)) / 10_000))
        book.apply_mark(symbol, marks[symbol])
        live = book.live("a")


class _Reads(dict[str, Decimal]):
    """Marks that count how often a symbol's is read."""

    reads = 0

    def get(self, key: str, default: object = None) -> Decimal | None:  # type: ignore[override]
        _Reads.reads += 1
        return super().get(key)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_a_bands_index_wakes_the_accounts_a_tick_leaves_as_checking_every_band(seed: int) -> None:
    """Many accounts on two venues listing the same symbols at different marks, random bands
    (bounds on one side or both, a time, a freshness), random ticks, time passing, connections
    dropping, bands replaced: at every turn the accounts found outside their bands through the
    index (:class:`BandIndex`: marks read only for the accounts a tick's last price left) are
    those found by reading every ticked account's band, and at the sweep those of the
    accounts due; the index reads far fewer marks."""
    rng = random.Random(seed)
    venues, symbols = ("v1", "v2"), ("A", "B", "C", "D")
    marks = {v: _Reads({s: D(rng.randint(900, 1100)) for s in symbols}) for v in venues}
    seen = {v: dict.fromkeys(symbols, 0.0) for v in venues}
    names = [f"a{i}" for i in range(rng.randint(20, 80))]
    venue = {n: rng.choice(venues) for n in names}
    held = {n: rng.sample(symbols, rng.randint(1, 3)) for n in names}
    connected = dict.fromkeys(names, True)
    index, indexed, plain = BandIndex(), dict[str, Band](), dict[str, Band]()
    now = 0.0

    def new_band(name: str) -> Band:
        prices = {}
        for s in held[name]:
            mark = marks[venue[name]][s]
            lo = D(0) if rng.random() < 0.2 else mark * (1 - D(rng.randint(1, 60)) / 1000)
            hi = D("Infinity") if rng.random() < 0.2 else mark * (1 + D(rng.randint(1, 60)) / 1000)
            prices[s] = (lo, hi)
        until = float("inf") if rng.random() < 0.7 else now + rng.choice([0.5, 3.0, 20.0])
        fresh = float("inf") if rng.random() < 0.4 else rng.choice([1.5, 5.0, 30.0])
        return Band(prices, until, connected[name], (), fresh)

    def evaluate(name: str) -> None:  # an evaluation sets a band where none is held
        if name not in plain and rng.random() < 0.8:
            plain[name] = new_band(name)
            indexed[name] = replace(plain[name], _held={})
            index.add(venue[name], name, indexed[name])

    for name in names:
        evaluate(name)
    reads = {"index": 0, "plain": 0}

    def check(name: str, known: bool) -> None:
        v = venue[name]
        if name not in plain:
            evaluate(name)
            return
        _Reads.reads = 0
        new = indexed[name].holds(marks[v], now, connected[name], None, seen[v].get, known)
        reads["index"] += _Reads.reads
        _Reads.reads = 0
        old = plain[name].holds(marks[v], now, connected[name], None, seen[v].get)
        reads["plain"] += _Reads.reads
        assert new == old, (seed, name, now)
        if not old:
            del plain[name], indexed[name]
            evaluate(name)

    for _ in range(120):
        roll = rng.random()
        if roll < 0.65:  # ticks, then the turn
            prices: dict[tuple[str, str], Decimal] = {}
            for _ in range(rng.randint(1, 4)):
                v, s = rng.choice(venues), rng.choice(symbols[:3])  # D never ticks
                move = rng.randint(-80, 80) if rng.random() < 0.1 else rng.randint(-8, 8)
                marks[v][s] = prices[(v, s)] = (marks[v][s] * (1 + D(move) / 1000)).quantize(
                    D("0.001")
                )
                seen[v][s] = now
            now += rng.choice([0.0, 0.05])
            left: set[str] = set()
            for (v, s), price in prices.items():
                left.update(index.left(v, s, price))
            ticked = [n for n in names if any((venue[n], s) in prices for s in held[n])]
            for name in ticked:
                check(name, name not in left)
        elif roll < 0.9:  # time passes: the sweep of the accounts not ticked
            now += rng.choice([0.3, 1.0, 2.0, 7.0])
            for name in rng.sample(names, len(names) // 2):
                check(name, True)
        elif roll < 0.95:  # a private stream drops or returns
            name = rng.choice(names)
            connected[name] = not connected[name]
        else:  # a reconcile replaced some bands (the index keeps their old entries)
            for name in rng.sample(names, len(names) // 4):
                plain.pop(name, None)
                indexed.pop(name, None)
                evaluate(name)
    assert reads["index"] < reads["plain"] / 2 or reads["plain"] < 50, reads


def _bands_reachable(root: object) -> int:
    """How many :class:`Band` objects ``root`` reaches (its references, followed)."""
    seen: set[int] = set()
    todo, found = [root], 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        found += isinstance(obj, Band)
        todo.extend(gc.get_referents(obj))
    return found


def test_a_band_set_aside_and_put_back_is_read_at_a_tick_past_its_bound() -> None:
    """A band set aside over a turn (the daemon's re-rate or read: the same object put back)
    while other accounts' bands on its symbol are replaced many times, then a tick past its
    lower bound: its account is named, or its marks read (the band does not hold); a copy of
    a watched band (``dataclasses.replace``) is watched by nothing and reads its marks."""
    index, current = BandIndex(), dict[str, Band]()
    marks = {"BTC": D(100)}
    target = Band({"BTC": (D(90), D(110))}, float("inf"), True)
    current["t"] = target
    index.add("hub", "t", target)
    assert target.holds(marks, 0.0, True)  # its first check reads the marks: within
    del current["t"]  # set aside at a read
    for i in range(300):  # the others' reconciles: a new band each, indexed
        for name in ("a", "b", "c"):
            current[name] = Band({"BTC": (D(95) - i % 3, D(105) + i % 3)}, float("inf"), True)
            index.add("hub", name, current[name])
    current["t"] = target  # put back, and indexed as after its evaluation
    index.add("hub", "t", target)
    marks["BTC"] = D(80)
    left = index.left("hub", "BTC", D(80))
    assert not target.holds(marks, 1.0, True, marks_known="t" not in left)
    # a watched band, its marks within at its last read, copied: the copy reads them
    again = Band({"BTC": (D(70), D(120))}, float("inf"), True)
    index.add("hub", "u", again)
    assert again.holds(marks, 1.0, True, marks_known=True)
    copy = replace(again, prices={"BTC": (D(85), D(120))})
    assert not copy.holds(marks, 1.0, True, marks_known=True)


def test_a_bands_index_holds_no_replaced_band_and_entries_in_proportion_to_the_live() -> None:
    """Accounts whose bands are replaced at every reconcile (with the order books their gap
    proofs checked) and whose symbols change: after many replacements the index reaches no
    band (a replaced band is garbage, as without the index), holds at most about twice the
    live entries, and keeps no (venue, symbol) no band is watched on."""
    rng = random.Random(17)
    symbols = [f"S{i}" for i in range(30)]
    index, current = BandIndex(), dict[str, Band]()
    held: dict[str, list[str]] = {}
    for _ in range(200):  # reconciles
        for n in range(40):
            name = f"a{n}"
            if name not in held or rng.random() < 0.05:
                held[name] = rng.sample(symbols[: 10 + n % 20], rng.randint(1, 3))
            prices = {s: (D(900) + rng.randint(0, 50), D(1100)) for s in held[name]}
            current[name] = Band(prices, float("inf"), True)
            index.add("hub", name, current[name])
    assert _bands_reachable(index) == 0
    heaps = [*index._upper.items(), *index._lower.items()]
    live_keys = {("hub", s) for syms in held.values() for s in syms}
    assert {key for key, _ in heaps} <= live_keys
    entries = sum(len(side.heap) for _, side in heaps)
    live = 2 * sum(len(syms) for syms in held.values())
    assert entries <= 2 * live + 17 * len(heaps), (entries, live)
