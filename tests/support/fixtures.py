"""pytest fixtures: the local receivers, fakes on their own threads, and the end-to-end world
(the real ``alertd run`` process against the fake Binance, a real SMTP server and a real HTTP
receiver). ``tests/conftest.py`` makes them available to every test module."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from alertd import redact
from tests.fake_exchange.base import FakeExchangeServer
from tests.fake_exchange.binance import FakeBinanceUSDM
from tests.receivers import HttpReceiver, SmtpReceiver
from tests.support.configs import exchange_account, fake_account, write_config
from tests.support.endpoint import computed_account, free_port, status_account
from tests.support.fakes import make_fake, server_in_thread
from tests.support.poll import wait_for
from tests.support.process import Daemon, alertd, e2e_env

BTC = "BTC/USDT:USDT"

# A 1 BTC long at 60,000 with 2,000 USDT: the ratio is 0.12 at 60,000, about 0.67 at 58,350
# and about 0.93 at 58,250 (maintenance margin 0.4% of notional, no deduction in tier 1).
RULES = [
    {
        "name": "ratio-warning",
        "metric": "worst_ratio",
        "above": 0.5,
        "clear_below": 0.45,
        "severity": "warning",
    },
    {
        "name": "ratio-critical",
        "metric": "worst_ratio",
        "above": 0.8,
        "clear_below": 0.75,
        "severity": "critical",
    },
]


R = TypeVar("R", HttpReceiver, SmtpReceiver)


def _running(receiver: R) -> Iterator[R]:
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(autouse=True)
def secrets_forgotten_after_each_test() -> Iterator[None]:
    """The secrets a test reveals are masked in every later log line of the process: a later
    test on the same xdist worker read "gap_risk is a *** metric" once test_hostile's fuzzed
    receiver URL "position" was revealed. Each test forgets what it revealed."""
    with redact.scoped_secrets():
        yield


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    """An HTTP endpoint recording apprise's JSON posts (``posts``, ``titles()``)."""
    yield from _running(HttpReceiver())


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    """An SMTP server recording mails (``mails``, ``subjects()``); can stop and start again."""
    yield from _running(SmtpReceiver())


@pytest.fixture
def fake_in_thread() -> Iterator[Callable[..., FakeExchangeServer[Any, Any]]]:
    """``fake_in_thread("bybit", mark_interval_s=0.2)``: a started fake exchange (by ccxt id) on
    its own thread, stopped at the end of the test."""
    with contextlib.ExitStack() as stack:

        def serve(exchange: str, **kwargs: Any) -> FakeExchangeServer[Any, Any]:
            return stack.enter_context(server_in_thread(make_fake(exchange, **kwargs)))

        yield serve


def started(daemon: Daemon) -> None:
    """Start the daemon and wait until it has bootstrapped its accounts."""
    daemon.start()
    # importing ccxt and loading markets takes seconds on a loaded machine: a generous bound
    wait_for(lambda: "bootstrapped" in daemon.text(), 60, what="bootstrap\n" + daemon.text())


def btc_long(fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]]) -> FakeBinanceUSDM:
    """The fake Binance with one account (keys ``key-e2e``/``secret-e2e``): 2,000 USDT and
    1 BTC long at 60,000, the mark at 60,000 and pushed every 0.2 s."""
    fake = fake_in_thread("binanceusdm", mark_interval_s=0.2)
    assert isinstance(fake, FakeBinanceUSDM)
    fake.add_account("key-e2e", "secret-e2e", wallet_balance="2000")
    fake.set_mark(BTC, "60000")
    fake.open_position("key-e2e", BTC, "long", "1", "60000")
    return fake


@pytest.fixture
def world(
    tmp_path: Path,
    fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]],
    smtp_receiver: SmtpReceiver,
    http_receiver: HttpReceiver,
) -> Iterator[dict[str, Any]]:
    """One account holding 1 BTC long at 60,000 on the fake Binance, the ``RULES``, both
    receivers, and a ``Daemon`` for its config (not started)."""
    fake = btc_long(fake_in_thread)
    path = write_config(
        tmp_path,
        [fake_account(fake, "main", "binanceusdm", "E2E_KEY", "E2E_SECRET")],
        feeds={
            "stale_after_s": 3,
            "reconcile_interval_s": 5,
            "backoff": {"initial_s": 0.1, "max_s": 1},
        },
        rules=RULES,
        receivers=[
            {"name": "mail", "url": smtp_receiver.url()},
            {"name": "hook", "url": "${E2E_HOOK_URL}"},
        ],
        delivery={"retry_initial": 0.2, "retry_max": 1, "drain_on_shutdown": 5},
    )
    env = e2e_env(E2E_HOOK_URL=http_receiver.url())
    with Daemon(path, env, tmp_path / "alertd.log") as daemon:
        yield _world(daemon, fake=fake, smtp=smtp_receiver, http=http_receiver)


def _world(daemon: Daemon, **parts: Any) -> dict[str, Any]:
    """What an end-to-end fixture hands its tests: the daemon, its config file (``path``) and
    what that file says (``config``), and ``parts`` (the fake, the receivers, ...)."""
    config = json.loads(daemon.config.read_text())
    return {"daemon": daemon, "path": daemon.config, "config": config, **parts}


def status_world(
    tmp_path: Path,
    fake: FakeExchangeServer[Any, Any],
    exchange: str,
    keys: tuple[str, str],
    http_receiver: HttpReceiver,
) -> Iterator[dict[str, Any]]:
    """One account (``main``, ``keys`` the key and secret; the wallet address on Hyperliquid)
    on ``fake``, a config with the ``RULES``, the status endpoint and a slow reconcile
    (alertd moves the account with the marks itself), and a ``Daemon`` for it (not started),
    stopped at the end. For a fixture: ``yield from status_world(...)``."""
    account, env = exchange_account(fake, "main", exchange, *keys)
    port = free_port()
    path = write_config(
        tmp_path,
        [account],
        feeds={
            "stale_after_s": 3,
            "reconcile_interval_s": 3600,
            "backoff": {"initial_s": 0.1, "max_s": 1},
        },
        rules=RULES,
        receivers=[{"name": "hook", "url": http_receiver.url()}],
        http={"enabled": True, "port": port},
        delivery={"retry_initial": 0.2, "retry_max": 1, "drain_on_shutdown": 5},
    )
    env = {**env, "PATH": "/usr/bin:/bin"}
    with Daemon(path, env, tmp_path / "alertd.log") as daemon:
        base = f"http://127.0.0.1:{port}"
        yield _world(daemon, fake=fake, http=http_receiver, env=env, base=base, tmp=tmp_path)


def status_world_fixture(
    exchange: str,
    keys: tuple[str, str],
    wallet: str,
    prepare: Callable[[Any], None] | None = None,
) -> Any:
    """A fixture (assign it to the name tests ask for): the local ``exchange`` with one
    account (``keys``; ``wallet`` in its settle coin), ``prepare``d, and a daemon for it
    (``status_world``: the status endpoint, a slow reconcile)."""

    @pytest.fixture
    def world(
        tmp_path: Path,
        fake_in_thread: Callable[..., FakeExchangeServer[Any, Any]],
        http_receiver: HttpReceiver,
    ) -> Iterator[dict[str, Any]]:
        fake = fake_in_thread(exchange, mark_interval_s=0.2)
        fake.add_account(*keys, wallet)
        if prepare is not None:
            prepare(fake)
        yield from status_world(tmp_path, fake, exchange, keys, http_receiver)

    return world


def ratio_alerts_at(
    fake: Any,
    http: HttpReceiver,
    daemon: Daemon,
    symbol: str,
    *steps: tuple[str, str],
    posts_before: int = 0,
) -> None:
    """With exactly ``posts_before`` messages before (none by default: no false alert at
    bootstrap), set ``symbol``'s mark to each step's price in turn: the first brings the ratio
    warning, the second the critical, each titled with the step's ratio as shown ("53.6%");
    then the daemon stops cleanly, without a traceback."""
    before = posts_before
    assert len(http.posts) == before, http.titles()
    for n, ((mark, shown), severity) in enumerate(zip(steps, ("WARNING", "CRITICAL"), strict=True)):
        fake.set_mark(symbol, mark)
        wait_for(
            lambda n=n: len(http.posts) > before + n, what=f"ratio {severity.lower()} at {mark}"
        )
        title = http.titles()[before + n]
        assert title.startswith(f"{severity} main: worst ratio {shown}"), http.titles()
    stopped_cleanly(daemon)


def stopped_cleanly(daemon: Daemon) -> None:
    """The daemon stops with exit status 0 and no traceback in its log."""
    assert daemon.stop() == 0
    log = daemon.text()
    assert "Traceback" not in log, log[-3000:]


def reconciling_every(world: dict[str, Any], seconds: float) -> None:
    """Rewrite a world's config (before its daemon starts) to reconcile every ``seconds``:
    a mode switch or a liability on the exchange is read soon."""
    config = dict(world["config"])
    config["feeds"] = {**config["feeds"], "reconcile_interval_s": seconds}
    world["path"].write_text(json.dumps(config))


def started_computed(world: dict[str, Any], mode: str) -> dict[str, Any]:
    """Start a ``status_world``'s daemon and wait for alertd's own figures of the account
    (the status endpoint's account), which must be in ``mode`` and computed by alertd."""
    started(world["daemon"])
    account = wait_for(lambda: computed_account(world["base"]), what="alertd's own figures")
    assert account["mode"] == mode
    assert account["coverage"] == "computed by alertd"
    return account


def exchange_ratio(base: str) -> Decimal:
    """The exchange's own margin ratio on the status endpoint at ``base``, once it has one."""
    wait_for(
        lambda: status_account(base)["exchange_margin_ratio"] is not None,
        what="the exchange's margin ratio",
    )
    return Decimal(status_account(base)["exchange_margin_ratio"])


def liquidations_agree(
    positions: list[dict[str, Any]],
    theirs: dict[str, Decimal],
    symbols: list[str],
    tolerance: Decimal,
) -> dict[str, Decimal]:
    """alertd's liquidation price of each position (``positions``: calc's or the status
    endpoint's rows) against the exchange's own (``theirs``, by symbol): the same
    ``symbols``, each within ``tolerance`` of the exchange's, relative. alertd's, by symbol."""
    ours = {p["symbol"]: Decimal(p["liquidation_price"]) for p in positions}
    assert sorted(ours) == sorted(theirs) == sorted(symbols), (ours, theirs)
    for symbol, price in theirs.items():
        assert abs(ours[symbol] / price - 1) < tolerance, (symbol, ours[symbol], price)
    return ours


def snapshot_then_calc(world: dict[str, Any], mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``alertd snapshot`` of a ``status_world``'s account (its table names the account
    ``mode``, which alertd computes), then its JSON through ``alertd calc --json``: the
    snapshot and calc's result (numbers as exact Decimals)."""
    config, env = str(world["path"]), world["env"]
    table = alertd("snapshot", "-c", config, env=env)
    assert table.returncode == 0, table.stderr
    text = " ".join(table.stdout.split())
    assert f"main: account mode {mode}" in text, table.stdout
    assert "does not compute" not in text
    written = alertd("snapshot", "-c", config, "--json", "--account", "main", env=env)
    assert written.returncode == 0, written.stderr
    path = world["tmp"] / "main.json"
    path.write_text(written.stdout)
    calc = alertd("calc", str(path), "--json", env=env)
    assert calc.returncode == 0, calc.stderr
    return json.loads(written.stdout), json.loads(calc.stdout, parse_float=Decimal)
