"""``alertd snapshot``: pull a live account from its exchange into the snapshot format.

Connect, bootstrap over REST, and print the account as a snapshot (the format alertd calc
reads), with the exchange's own figures beside alertd's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from decimal import Decimal

from alertd.cli.common import (
    EXIT_OK,
    console,
)
from alertd.config import load_config
from alertd.engine.margin import compute
from alertd.errors import InputError
from alertd.snapshot.format import account_to_json
from alertd.views.report import render, render_comparison

JSON_HELP = "print the snapshot JSON object"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", metavar="NAME", help="only this account")


def run(args: argparse.Namespace) -> int:
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
    screen = console()
    for result in results:
        render(compute(result.account, Decimal("0.5")), screen)
        render_comparison(result, screen)
    return EXIT_OK
