"""``alertd run``: the daemon, until SIGTERM."""

from __future__ import annotations

import argparse
import logging

from alertd.cli.common import (
    Subparsers,
)
from alertd.config import config_warnings, load_config

log = logging.getLogger(__name__)


def add_parser(sub: Subparsers) -> argparse.ArgumentParser:
    run = sub.add_parser(
        "run",
        help="the daemon: stream every account, until SIGTERM",
        description="Run alertd: feeds, engine (and, as they arrive, rules and delivery).",
    )
    run.add_argument("-c", "--config", required=True, metavar="CONFIG.yaml")
    return run


def run(args: argparse.Namespace) -> int:
    from alertd.daemon.service import Service

    config = load_config(args.config)
    if args.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)  # a daemon logs its lifecycle and health
    for warning in config_warnings(config):  # what check warns about, in the journal too
        log.warning("config: %s", warning)
    return Service(config, config_path=args.config).run()
