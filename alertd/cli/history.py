"""``alertd history``: recent alerts and their deliveries."""

from __future__ import annotations

import argparse
import json

from alertd.cli.common import (
    EXIT_OK,
    Subparsers,
    console,
    state_file,
)
from alertd.config import load_config
from alertd.errors import InputError


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    hist = sub.add_parser("history", help="recent alerts and their deliveries")
    hist.add_argument("-c", "--config", required=True, metavar="CONFIG.yaml")
    hist.add_argument("--since", default="24h", metavar="DURATION", help="e.g. 2h, 7d (24h)")
    hist.add_argument("--json", action="store_true")
    return hist


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
