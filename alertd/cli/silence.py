"""``alertd silence``: add, list or expire silences (muted alerts).

Silences mute notifications of alerts whose labels match, until they expire. They live in the
state file, so the running daemon sees them within a second.
"""

from __future__ import annotations

import argparse

from alertd.cli.common import (
    CONFIG_FLAGS,
    EXIT_OK,
    Parser,
    labels,
    local_time,
    state_file,
    text_arg,
    warn,
)
from alertd.config import Config, did_you_mean, load_config
from alertd.errors import InputError
from alertd.validation import short


def add_arguments(parser: argparse.ArgumentParser) -> None:
    silence_sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
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
    listing = silence_sub.add_parser("list", help="active and recently expired silences")
    expire = silence_sub.add_parser("expire", help="end a silence now")
    expire.add_argument("id", metavar="ID")
    for action in (add, listing, expire):  # `silence add -c config.yaml ...` as well
        action.add_argument(
            *CONFIG_FLAGS, metavar="CONFIG.yaml", default=argparse.SUPPRESS, help="the config file"
        )


def run(args: argparse.Namespace) -> int:
    import time
    import uuid

    from alertd.config import parse_duration
    from alertd.daemon.store import Store
    from alertd.rules.model import Silence

    config = load_config(args.config)
    now = time.time()
    if args.action == "add":
        matchers = {}
        for item in args.match:
            label, sep, value = text_arg(item, "--match").partition("=")
            if not sep or not label.strip():
                raise InputError(f"--match {short(item)}: expected LABEL=VALUE")
            matchers[label.strip()] = value.strip()
        try:
            seconds = parse_duration(args.duration)
        except ValueError as exc:
            raise InputError(f"--for: {exc}") from None
        if seconds <= 0:
            raise InputError("--for: must be longer than 0")
        silence = Silence(
            uuid.uuid4().hex[:8], matchers, now + seconds, now, text_arg(args.comment, "--comment")
        )
        for warning in match_warnings(config, matchers):
            warn(warning)
    with state_file(config.state_path):
        store = Store(config.state_path)
        try:
            if args.action == "add":
                store.add_silence(silence)
                print(
                    f"silence {silence.id} until {local_time(silence.ends_at)}: {labels(matchers)}"
                )
            elif args.action == "list":
                shown = [s for s in store.silences() if s.ends_at > now - 86400]
                if not shown:
                    print("no silences")
                for s in shown:
                    state = "active" if s.active(now) else "expired"
                    print(
                        f"{s.id}  {state:7}  until {local_time(s.ends_at)}  {labels(s.matchers)}"
                        + (f"  # {s.comment}" if s.comment else "")
                    )
            elif args.action == "expire":
                silence_id = text_arg(args.id, "ID")
                if not store.expire_silence(silence_id, now):
                    raise InputError(
                        f"no active silence {short(silence_id)} (see: alertd silence list)"
                    )
                print(f"silence {silence_id} expired")
        finally:
            store.close()
    return EXIT_OK


def match_warnings(config: Config, matchers: dict[str, str]) -> list[str]:
    """``--match`` labels and values no alert of this config can carry: such a silence
    mutes nothing, which the user should hear now rather than during the next alert."""
    from alertd.daemon.evaluation import build_rules
    from alertd.delivery.system import alertnames

    rules = build_rules(config)
    known: dict[str, list[str] | None] = {
        "account": [a.name for a in config.accounts],
        "exchange": sorted({a.exchange for a in config.accounts}),
        "alertname": [r.name for r in rules] + alertnames(config),
        "severity": ["info", "warning", "critical"],
        "metric": sorted({r.metric for r in rules}),
        "side": ["long", "short"],
        "symbol": None,  # any symbol an account may hold
    }
    for rule in rules:
        for key, value in rule.labels.items():
            values = known.setdefault(key, [])
            if values is not None and value not in values:
                values.append(value)
    out = []
    for label, value in matchers.items():
        where = f"--match {label}={value}"[:80]
        if label not in known:
            out.append(
                f"{where}: no alert has the label {short(label)}"
                f"{did_you_mean(label, sorted(known))}: this silence mutes nothing"
            )
            continue
        values = known[label]
        if values is not None and value not in values:
            out.append(
                f"{where}: no {label} {short(value)} in this config"
                f"{did_you_mean(value, values)}: this silence mutes nothing"
            )
    return out
