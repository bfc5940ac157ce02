"""``alertd history``: recent alerts and their deliveries.

Alerts that fired or resolved, and what became of each message, from the state file.
"""

from __future__ import annotations

import argparse
import json

from alertd.cli.common import (
    EXIT_OK,
    console,
    state_file,
)
from alertd.config import load_config
from alertd.errors import InputError

JSON_HELP = "print the rows as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", default="24h", metavar="DURATION", help="e.g. 2h, 7d")


def run(args: argparse.Namespace) -> int:
    import time

    from alertd.config import parse_duration
    from alertd.views.status import history, render_history

    config = load_config(args.config)
    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        raise InputError(f"--since: {exc}") from None
    with state_file(config.state_path):
        rows = history(config, since, time.time())
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        render_history(rows, console())
    return EXIT_OK
