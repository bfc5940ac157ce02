"""``alertd status``: what the running daemon sees (from its endpoint or its state file)."""

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
from alertd.errors import SnapshotError, StartupError


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    status = sub.add_parser(
        "status",
        help="what the running daemon sees",
        description="Accounts, positions, feed freshness, firing alerts and "
        "undelivered messages, from the daemon (http enabled) or its state file.",
    )
    status.add_argument("-c", "--config", required=True, metavar="CONFIG.yaml")
    status.add_argument("--json", action="store_true")
    return status


def run(args: argparse.Namespace) -> int:
    from alertd.views.status import fetch_status, render_status, status_from_store

    config = load_config(args.config)
    data = fetch_status(config)
    if data is None:
        with state_file(config.state_path):
            try:
                data = status_from_store(config)
            except SnapshotError as exc:
                raise StartupError(
                    f"state file {config.state_path}: a saved snapshot is unreadable: {exc}"
                ) from None
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        render_status(data, console())
    return EXIT_OK
