"""``alertd run``: the daemon: stream every account, until SIGTERM.

Run alertd: feeds, engine, rules and delivery, until SIGTERM (SIGHUP reloads the rules and
receivers).
"""

from __future__ import annotations

import argparse
import logging

from alertd.config import ConfigError, config_warnings, load_config, source_address_problems

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    from alertd.daemon.service import Service

    config = load_config(args.config)
    # an address the machine does not have would fail every connection of its accounts
    # (EADDRNOTAVAIL, retried forever): refused at start, as `check` refuses it
    problems = source_address_problems(config)
    if problems:
        raise ConfigError(problems)
    # a daemon logs its lifecycle and health line (INFO) by default; -v adds every message (DEBUG)
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from alertd.feeds.route import default_route_address

    # what check warns about, in the journal too
    for warning in config_warnings(config, default_route_address):
        log.warning("config: %s", warning)
    return Service(config, config_path=args.config).run()
