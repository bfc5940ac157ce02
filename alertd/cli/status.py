"""``alertd status``: what the running daemon sees.

Accounts, positions, feed freshness, firing alerts and undelivered messages, from the daemon
(http enabled) or its state file.
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
from alertd.errors import SnapshotError, StartupError

JSON_HELP = "print the status as JSON"


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
