"""``alertd check``: validate a config file and that its secrets are present.

Validate the config without running anything; exit 0, or 2 listing every problem. Also warns
about files of secrets others can read and, with --keys, about API keys that can do more than
read.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import alertd.views.format as fmt
from alertd.cli.common import (
    EXIT_OK,
    warn,
)
from alertd.config import (
    ConfigError,
    config_warnings,
    expand_env,
    load_config,
    read_secrets,
    source_address_problems,
)
from alertd.delivery.routing import alertmanager_problem, deadman_receiver


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="PATH",
        help="also check that this file of secrets (systemd EnvironmentFile) is private",
    )
    parser.add_argument(
        "--keys",
        action="store_true",
        help="also connect and warn about API keys that can do more than read",
    )


def run(args: argparse.Namespace) -> int:
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
        if receiver.url is None:  # a telegram receiver: a chat of the telegram: section's bot
            continue
        where = f"receivers[{i}].url"
        try:
            url = expand_env(receiver.url, where)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if receiver.type == "alertmanager":
            problem = alertmanager_problem(url)
            if problem is not None:
                problems.append(f"{where}: {problem}")
        elif not _apprise_accepts(url.reveal()):
            scheme = receiver.url.split("://", 1)[0]
            problems.append(f"{where}: apprise does not understand this {scheme}:// URL")
    if config.telegram is not None:
        try:
            config.telegram.read_token()
        except ConfigError as exc:
            problems.extend(exc.problems)
    try:
        deadman_receiver(config)
    except ConfigError as exc:
        problems.extend(exc.problems)
    http = config.http
    if http.enabled and http.token_env is not None:
        # a non-loopback bind needs the token the endpoint checks: a variable that is set
        try:
            expand_env("${" + http.token_env + "}", "http.token_env")
        except ConfigError as exc:
            problems.extend(exc.problems)
    problems += source_address_problems(config)
    if config.state_path.is_dir():
        problems.append(f"state_path: {config.state_path} is a directory, not a file")
    if problems:
        raise ConfigError(problems)
    from alertd.feeds.route import default_route_address  # ccxt: loaded only here

    # the default route resolved as the feeds resolve it: warned only where it cannot be
    warnings = config_warnings(config, default_route_address)
    warnings += _permission_warnings(config, args.config, args.env_file)
    if args.keys:
        warnings += asyncio.run(_key_warnings(config))
    for warning in warnings:
        warn(warning)
    enabled = [a.name for a in config.accounts if a.enabled]
    print(
        f"{args.config}: OK ({fmt.count(len(enabled), 'account')}: {', '.join(enabled)}; "
        f"{fmt.count(len(config.rules), 'rule')}; "
        f"{fmt.count(len(config.receivers), 'receiver')})"
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
    from alertd.exchanges.registry import get_spec
    from alertd.feeds.ccxt_exchange import describe, make_exchange

    out = []
    for i, account in enumerate(config.accounts):
        check = get_spec(account.exchange).capabilities.key_permissions
        if not account.enabled or not account.secret_refs() or check is None:
            continue
        where = f"accounts[{i}] ({account.name})"
        exchange = make_exchange(account, read_secrets(account), config.feeds)
        try:
            granted = await check(exchange)
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
