"""``alertd snapshot``: pull a live account from its exchange into the snapshot format.

Connect, bootstrap over REST, and print the account as a snapshot (the format alertd calc
reads), with the exchange's own figures beside alertd's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from decimal import Decimal
from typing import TYPE_CHECKING

import alertd.views.format as fmt
from alertd.cli.common import (
    EXIT_OK,
    console,
)
from alertd.config import load_config
from alertd.engine.margin import compute
from alertd.errors import InputError
from alertd.feeds.state import Coverage
from alertd.snapshot.format import account_to_json
from alertd.views.format import fee_gap_line
from alertd.views.report import render, render_comparison

if TYPE_CHECKING:
    from alertd.snapshot.live import LiveSnapshot

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
        for note in notes(results[0]):
            print(note, file=sys.stderr)  # the JSON itself stays the snapshot calc reads
        written = account_to_json(results[0].account, results[0].state.fee_gap)
        print(json.dumps(written, indent=2))
        return EXIT_OK
    screen = console()
    for result in results:
        screen.print(f"{result.account.name}: account mode {result.state.mode.label}")
        for note in notes(result):
            screen.print(note, markup=False, highlight=False)
        for pool in compute(result.account, Decimal("0.5")).by_pool:
            render(pool, screen)  # each margin asset's pool on its own
        render_comparison(result, screen)
    return EXIT_OK


def notes(result: LiveSnapshot) -> list[str]:
    """What a user must know before reading alertd's figures of the account: a mode alertd
    does not compute, a part of the fee rates no read could tell."""
    out = [note] if (note := mode_note(result)) is not None else []
    if (gap := result.state.shown_fee_gap) is not None:
        line = fee_gap_line(result.account.pool_accounts(), gap)
        out.append(f"warning: {result.account.name}: {line}")
    return out


def mode_note(result: LiveSnapshot) -> str | None:
    """What a user must know before reading alertd's figures of an account whose mode alertd
    does not compute; None when it computes it."""
    mode = result.state.mode
    if mode.coverage is Coverage.COMPUTED:
        return None
    exchange = result.account.profile.name
    theirs = result.state.reported_account.margin_ratio
    shown = fmt.ratio(theirs) if theirs is not None else "not reported"
    return (
        f"warning: {result.account.name}: alertd does not compute {exchange} {mode.label} "
        f"accounts ({mode.limits}). The figures below count the {result.account.settle} "
        f"wallet alone and are not {exchange}'s; {exchange}'s own margin ratio: {shown}"
    )
