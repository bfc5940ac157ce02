"""The command line. :func:`main` is the one place where exceptions become exit codes.

Exit codes: 0 success, 1 unexpected error (a bug), 2 usage, config or input error,
3 startup failure.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import logging
import shutil
import sys
import traceback
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from rich.console import Console

from alertd import __version__
from alertd.config import ConfigError, expand_env, load_config, read_secrets
from alertd.engine.margin import compute
from alertd.errors import AlertdError, InputError, StartupError
from alertd.snapshot.format import account_to_json, load_snapshot
from alertd.views.report import metrics_json, render, render_comparison

EXIT_OK = 0
EXIT_BUG = 1
EXIT_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits on its own; raise instead so main() maps every input error the same way.
        command = self.prog.removeprefix("alertd").strip()
        where = f"{command}: " if command else ""
        raise InputError(f"{where}{message} (see: {self.prog} --help)")


def _decimal_arg(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip().rstrip("%"))
    except InvalidOperation:
        raise InputError(f"{what}: not a number: {text!r}") from None
    if not value.is_finite():
        raise InputError(f"{what}: must be a finite number (got {text!r})")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="alertd",
        description="Margin alerts for leveraged crypto futures: warns before liquidation.",
    )
    parser.add_argument("--version", action="version", version=f"alertd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    calc = sub.add_parser(
        "calc",
        help="margin metrics of a snapshot file, with what-if prices",
        description="Compute an account's margin from a snapshot (JSON, schema 1).",
    )
    calc.add_argument("snapshot", metavar="SNAPSHOT.json")
    calc.add_argument(
        "--mark",
        action="append",
        default=[],
        metavar="SYMBOL=PRICE",
        help="replace a symbol's mark price (repeatable)",
    )
    calc.add_argument(
        "--move",
        metavar="PCT",
        help="move every mark by PCT percent after --mark, e.g. -10 for a 10%% drop",
    )
    calc.add_argument(
        "--target-ratio",
        metavar="R",
        default="0.5",
        help="ratio that 'margin to add' and 'size to cut' aim for (default 0.5)",
    )
    calc.add_argument("--json", action="store_true", help="print the result as JSON")

    check = sub.add_parser(
        "check",
        help="validate a config file and that its secrets are present",
        description="Validate the config without running anything; exit 0, or 2 listing "
        "every problem.",
    )
    check.add_argument("-c", "--config", required=True, metavar="CONFIG.yaml")
    check.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="PATH",
        help="also check that this file of secrets (systemd EnvironmentFile) is private",
    )
    check.add_argument(
        "--keys",
        action="store_true",
        help="also connect and warn about API keys that can do more than read",
    )

    snap = sub.add_parser(
        "snapshot",
        help="pull a live account from its exchange into the snapshot format",
        description="Connect, bootstrap over REST, and print the account as a snapshot "
        "(the format alertd calc reads), with the exchange's own figures beside alertd's.",
    )
    snap.add_argument("-c", "--config", required=True, metavar="CONFIG.yaml")
    snap.add_argument("--account", metavar="NAME", help="only this account")
    snap.add_argument("--json", action="store_true", help="print the snapshot JSON object")
    run = sub.add_parser(
        "run",
        help="the daemon: stream every account, until SIGTERM",
        description="Run alertd: feeds, engine (and, as they arrive, rules and delivery).",
    )
    run.add_argument("-c", "--config", required=True, metavar="CONFIG.yaml")

    notify = sub.add_parser(
        "test-notify",
        help="send a test message to each receiver and report each result",
        description="Send a test message through every receiver (or one) and print the result.",
    )
    notify.add_argument("-c", "--config", required=True, metavar="CONFIG.yaml")
    notify.add_argument("--receiver", metavar="NAME", help="only this receiver")

    silence = sub.add_parser(
        "silence",
        help="add, list or expire silences (muted alerts)",
        description="Silences mute notifications of alerts whose labels match, until they "
        "expire. They live in the state file, so the running daemon sees them within a second.",
    )
    silence.add_argument("-c", "--config", required=True, metavar="CONFIG.yaml")
    silence_sub = silence.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    silence_sub.required = True
    add = silence_sub.add_parser("add", help="mute matching alerts for a while")
    add.add_argument(
        "--match",
        action="append",
        required=True,
        metavar="LABEL=VALUE",
        help="e.g. account=main, severity=warning, alertname=feed-stale, symbol=BTC/USDT:USDT",
    )
    add.add_argument(
        "--for", dest="duration", required=True, metavar="DURATION", help="e.g. 30m, 2h, 1d"
    )
    add.add_argument("--comment", default="", help="why (shown by list)")
    silence_sub.add_parser("list", help="active and recently expired silences")
    expire = silence_sub.add_parser("expire", help="end a silence now")
    expire.add_argument("id", metavar="ID")
    status = sub.add_parser(
        "status",
        help="what the running daemon sees",
        description="Accounts, positions, feed freshness, firing alerts and "
        "undelivered messages, from the daemon (http enabled) or its state file.",
    )
    status.add_argument("-c", "--config", required=True, metavar="CONFIG.yaml")
    status.add_argument("--json", action="store_true")
    hist = sub.add_parser("history", help="recent alerts and their deliveries")
    hist.add_argument("-c", "--config", required=True, metavar="CONFIG.yaml")
    hist.add_argument("--since", default="24h", metavar="DURATION", help="e.g. 2h, 7d (24h)")
    hist.add_argument("--json", action="store_true")
    sub.add_parser("schema", help="print the config file's JSON Schema (for editors)")
    rp = sub.add_parser(
        "replay",
        help="run a price history through the engine and rules: alerts, liquidation, lead time",
        description="Replay historical prices (JSON, CSV, zipped CSV or feather) for a position "
        "or a snapshot, through the same engine and rules as alertd run.",
    )
    rp.add_argument("prices", metavar="PRICES")
    what = rp.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--position", metavar="SPEC", help="e.g. 'BTC/USDT:USDT long 0.5 @ 62000 x20 isolated'"
    )
    what.add_argument(
        "--snapshot", metavar="FILE", help="an account snapshot (alertd calc's input)"
    )
    rp.add_argument(
        "--config",
        metavar="FILE",
        help="take the rules from this config (default: the rules of config.example.yaml)",
    )
    rp.add_argument(
        "--symbol", help="the symbol the prices are for (default: the first position's)"
    )
    rp.add_argument("--exchange", default="binanceusdm", help="profile for --position")
    rp.add_argument("--start", metavar="ISO", help="e.g. 2021-05-19T12:00:00Z")
    rp.add_argument("--end", metavar="ISO")
    rp.add_argument("--json", action="store_true")
    rp.add_argument("--plot", metavar="OUT.png", help="draw price, liquidation price and alerts")
    rp.add_argument(
        "--sweep",
        action="store_true",
        help="replay many entries (every --every) at 5x to 100x for --window each and report "
        "per rule: fired before liquidation, lead times, false alarms",
    )
    rp.add_argument("--every", default="24h", metavar="DURATION", help="sweep entry spacing")
    rp.add_argument("--window", default="24h", metavar="DURATION", help="sweep replay length")
    fh = sub.add_parser(
        "fetch-history",
        help="download a symbol's mark-price (or trade) candles into the CSV replay reads",
    )
    fh.add_argument("symbol", metavar="SYMBOL", help="ccxt symbol, e.g. BTC/USDT:USDT")
    fh.add_argument("--exchange", default="binanceusdm")
    fh.add_argument("--since", required=True, metavar="ISO")
    fh.add_argument("--until", required=True, metavar="ISO")
    fh.add_argument("--timeframe", default="1m")
    fh.add_argument("--trades", action="store_true", help="trade candles even where marks exist")
    fh.add_argument("-o", "--output", required=True, metavar="OUT.csv")
    fh.add_argument(
        "-c",
        "--config",
        metavar="CONFIG.yaml",
        help="reach the exchange as this config's --account does (urls, options)",
    )
    fh.add_argument("--account", metavar="NAME")
    for p in (calc, check, snap, run, notify, silence, status, hist, rp, fh):
        p.add_argument(
            "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
        )
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # ccxt and apscheduler are chatty at INFO; their warnings still show
    for noisy in ("ccxt", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # apprise's own lines can hold a receiver URL with its token ("Unparseable URL tgram://..."):
    # they stay inside apprise (which reads them into each result); alertd logs the outcome
    logging.getLogger("apprise").propagate = False


def _cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    problems: list[str] = []
    for i, account in enumerate(config.accounts):
        if not account.enabled:
            continue
        try:
            read_secrets(account, where=f"accounts[{i}]")
        except ConfigError as exc:
            problems.extend(exc.problems)
    for i, receiver in enumerate(config.receivers):
        where = f"receivers[{i}].url"
        try:
            url = expand_env(receiver.url, where)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if not _apprise_accepts(url.reveal()):
            scheme = receiver.url.split("://", 1)[0]
            problems.append(f"{where}: apprise does not understand this {scheme}:// URL")
    if config.heartbeat.deadman_url:
        try:
            expand_env(config.heartbeat.deadman_url, "heartbeat.deadman_url")
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    warnings = _permission_warnings(config, args.config, args.env_file)
    if args.keys:
        warnings += asyncio.run(_key_warnings(config))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    enabled = [a.name for a in config.accounts if a.enabled]
    print(
        f"{args.config}: OK ({len(enabled)} accounts: {', '.join(enabled)}; "
        f"{len(config.rules)} rules; {len(config.receivers)} receivers)"
    )
    return EXIT_OK


def _permission_warnings(config: Any, config_path: str, env_files: list[str]) -> list[str]:
    """Files of secrets others can read, and a config others can change."""
    import os
    import stat

    out = []

    def mode(path: str) -> int | None:
        try:
            return stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            return None

    for i, account in enumerate(config.accounts):
        for secret, (kind, name) in account.secret_refs().items():
            m = mode(name) if kind == "file" else None
            if m is not None and m & 0o077:
                out.append(
                    f"accounts[{i}].{secret}_file: {name} is readable by other users "
                    f"(mode {m:o}; chmod 600 {name})"
                )
    for path in env_files:
        m = mode(path)
        if m is None:
            out.append(f"--env-file {path}: cannot read it")
        elif m & 0o077:
            out.append(
                f"{path} holds secrets and is readable by other users "
                f"(mode {m:o}; chmod 600 {path})"
            )
    m = mode(config_path)
    if m is not None and m & 0o022:
        out.append(
            f"{config_path} can be changed by other users (mode {m:o}): they could "
            "redirect your alerts; chmod 644 or stricter"
        )
    return out


async def _key_warnings(config: Any) -> list[str]:
    """Keys that can trade or withdraw, where the exchange reports a key's permissions."""
    from alertd.feeds.ccxt_exchange import describe, make_exchange
    from alertd.feeds.feed import adapter_for

    out = []
    for i, account in enumerate(config.accounts):
        if not account.enabled or not account.secret_refs():
            continue
        where = f"accounts[{i}] ({account.name})"
        exchange = make_exchange(account, read_secrets(account), config.feeds)
        try:
            granted = await adapter_for(account.exchange).key_permissions(exchange)
        except Exception as exc:
            out.append(f"{where}: could not read the key's permissions: {describe(exc)}")
            continue
        finally:
            await exchange.close()
        if granted:
            out.append(
                f"{where}: the API key also allows {', '.join(granted)}; alertd only "
                "reads, so a read-only key is safer"
            )
    return out


def _apprise_accepts(url: str) -> bool:
    import apprise

    return bool(apprise.Apprise().add(url))


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from alertd.snapshot.live import take_snapshots

    config = load_config(args.config)
    accounts = [config.account(args.account)] if args.account else list(config.accounts)
    if args.json and len(accounts) > 1:
        names = ", ".join(a.name for a in accounts)
        raise InputError(f"--json prints one account: add --account NAME (one of {names})")
    results = asyncio.run(take_snapshots(config, accounts))
    if args.json:
        print(json.dumps(account_to_json(results[0].account), indent=2))
        return EXIT_OK
    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((200, 24))[0], 200)
    console = Console(width=width, highlight=False)
    for result in results:
        render(compute(result.account, Decimal("0.5")), console)
        render_comparison(result, console)
    return EXIT_OK


def _cmd_calc(args: argparse.Namespace) -> int:
    loaded = load_snapshot(args.snapshot)
    account = loaded.account
    symbols = account.symbols

    marks: dict[str, Decimal] = {}
    for item in args.mark:
        symbol, sep, price_text = item.rpartition("=")
        if not sep or not symbol:
            raise InputError(f"--mark {item!r}: expected SYMBOL=PRICE")
        price = _decimal_arg(price_text, f"--mark {symbol}")
        if price <= 0:
            raise InputError(f"--mark {symbol}: price must be positive (got {price_text})")
        if symbol not in symbols:
            close = difflib.get_close_matches(symbol, symbols, n=1, cutoff=0.4)
            hint = f" (did you mean {close[0]}?)" if close else f" (held: {', '.join(symbols)})"
            raise InputError(f"--mark {symbol}: no position in that symbol{hint}")
        marks[symbol] = price
    if marks:
        account = account.with_marks(marks)
    if args.move is not None:
        pct = _decimal_arg(args.move, "--move")
        if pct <= -100:
            raise InputError(f"--move: a price cannot fall by {pct}% (must be above -100)")
        account = account.moved(pct / 100)
    target = _decimal_arg(args.target_ratio, "--target-ratio")
    if not 0 < target <= 1:
        raise InputError(f"--target-ratio: must be above 0 and at most 1 (got {target})")

    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    metrics = compute(account, target)
    if args.json:
        print(json.dumps(metrics_json(metrics), indent=2))
    else:
        width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((200, 24))[0], 200)
        render(metrics, Console(width=width, highlight=False))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from alertd.daemon.service import Service

    config = load_config(args.config)
    if args.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)  # a daemon logs its lifecycle and health
    return Service(config, config_path=args.config).run()


def _cmd_test_notify(args: argparse.Namespace) -> int:
    from alertd.delivery.deliverer import ApriseSender, build_receivers

    config = load_config(args.config)
    receivers = build_receivers(config)
    if args.receiver:
        if args.receiver not in receivers:
            names = ", ".join(receivers) or "none configured"
            raise InputError(f"--receiver: no receiver named {args.receiver!r} ({names})")
        receivers = {args.receiver: receivers[args.receiver]}
    if not receivers:
        raise InputError(f"{args.config}: no receivers configured")
    sender = ApriseSender()
    failed = 0

    async def send_all() -> list[tuple[str, bool, str]]:
        out = []
        for name, receiver in receivers.items():
            result = await sender.send(
                receiver.url,
                "INFO alertd test message",
                f"If you can read this, alertd can reach you through '{name}'.",
                "info",
            )
            out.append((name, result.ok, result.error))
        return out

    for name, ok, error in asyncio.run(send_all()):
        print(f"{name}: {'OK' if ok else 'FAILED: ' + error}")
        failed += not ok
    if failed:
        print(f"{failed} of {len(receivers)} receivers failed", file=sys.stderr)
        return EXIT_BUG
    return EXIT_OK


def _cmd_silence(args: argparse.Namespace) -> int:
    import time
    import uuid

    from alertd.config import parse_duration
    from alertd.daemon.store import Store
    from alertd.rules.model import Silence

    config = load_config(args.config)
    store = Store(config.state_path)
    now = time.time()
    try:
        if args.action == "add":
            matchers = {}
            for item in args.match:
                label, sep, value = item.partition("=")
                if not sep or not label:
                    raise InputError(f"--match {item!r}: expected LABEL=VALUE")
                matchers[label.strip()] = value.strip()
            try:
                seconds = parse_duration(args.duration)
            except ValueError as exc:
                raise InputError(f"--for: {exc}") from None
            if seconds <= 0:
                raise InputError("--for: must be longer than 0")
            silence = Silence(uuid.uuid4().hex[:8], matchers, now + seconds, now, args.comment)
            store.add_silence(silence)
            print(f"silence {silence.id} until {_local(silence.ends_at)}: {_labels(matchers)}")
        elif args.action == "list":
            shown = [s for s in store.silences() if s.ends_at > now - 86400]
            if not shown:
                print("no silences")
            for s in shown:
                state = "active" if s.active(now) else "expired"
                print(
                    f"{s.id}  {state:7}  until {_local(s.ends_at)}  {_labels(s.matchers)}"
                    + (f"  # {s.comment}" if s.comment else "")
                )
        elif args.action == "expire":
            if not store.expire_silence(args.id, now):
                raise InputError(f"no active silence {args.id!r} (see: alertd silence list)")
            print(f"silence {args.id} expired")
    finally:
        store.close()
    return EXIT_OK


def _console() -> Console:
    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((200, 24))[0], 200)
    return Console(width=width, highlight=False)


def _cmd_status(args: argparse.Namespace) -> int:
    from alertd.views.status import fetch_status, render_status, status_from_store

    config = load_config(args.config)
    data = fetch_status(config) or status_from_store(config)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        render_status(data, _console())
    return EXIT_OK


def _cmd_history(args: argparse.Namespace) -> int:
    import time

    from alertd.config import parse_duration
    from alertd.views.status import history, render_history

    config = load_config(args.config)
    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        raise InputError(f"--since: {exc}") from None
    rows = history(config, since, time.time())
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        render_history(rows, _console())
    return EXIT_OK


def _cmd_fetch_history(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.progress import Progress

    from alertd.config import AccountConfig, FeedSettings
    from alertd.feeds.ccxt_exchange import make_exchange
    from alertd.replay.cli import _when
    from alertd.replay.fetch import fetch_history

    since, until = _when(args.since, "--since"), _when(args.until, "--until")
    assert since is not None and until is not None
    if until < since:
        raise InputError("--until is before --since")
    if args.config:
        config = load_config(args.config)
        account = config.account(args.account) if args.account else config.accounts[0]
        account = account.model_copy(
            update={"api_key_env": None, "secret_env": None, "password_env": None}
        )
        settings = config.feeds
    else:
        account = AccountConfig(
            name="history",
            exchange=args.exchange,
            api_key_env="-",
            secret_env="-",
            password_env="-",
            wallet_address="-",
        )
        settings = FeedSettings()

    async def go() -> tuple[int, str]:
        exchange = make_exchange(account, {}, settings)
        try:
            with Progress(
                console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty()
            ) as bar:
                task = bar.add_task("downloading", total=until - since)
                return await fetch_history(
                    exchange,
                    args.symbol,
                    since,
                    until,
                    Path(args.output),
                    timeframe=args.timeframe,
                    prefer_mark=not args.trades,
                    progress=lambda t: bar.update(task, completed=min(t, until) - since),
                )
        finally:
            await exchange.close()

    try:
        rows, kind = asyncio.run(go())
    except AlertdError:
        raise
    except Exception as exc:
        from alertd.feeds.ccxt_exchange import describe

        raise StartupError(f"fetch-history: {describe(exc)}") from exc
    print(f"{args.output}: {rows} {args.timeframe} {kind} candles of {args.symbol}")
    return EXIT_OK


def _local(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _labels(matchers: dict[str, str] | Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in dict(matchers).items())


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        _setup_logging(getattr(args, "verbose", 0))
        if args.command == "calc":
            return _cmd_calc(args)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "snapshot":
            return _cmd_snapshot(args)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "test-notify":
            return _cmd_test_notify(args)
        if args.command == "silence":
            return _cmd_silence(args)
        if args.command == "status":
            return _cmd_status(args)
        if args.command == "history":
            return _cmd_history(args)
        if args.command == "replay":
            from alertd.replay.cli import cmd_replay

            return cmd_replay(args)
        if args.command == "fetch-history":
            return _cmd_fetch_history(args)
        if args.command == "schema":
            from alertd.config import Config

            print(json.dumps(Config.model_json_schema(by_alias=True), indent=2))
            return EXIT_OK
        raise InputError(f"unknown command {args.command!r}")
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except AlertdError as exc:
        problems = exc.problems if isinstance(exc, InputError) else [str(exc)]
        for line in problems:
            print(f"alertd: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:
        traceback.print_exc()
        print(
            "alertd: internal error (a bug: please report it with the lines above)", file=sys.stderr
        )
        return EXIT_BUG


def run() -> None:
    sys.exit(main())
