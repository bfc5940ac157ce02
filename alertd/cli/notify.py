"""``alertd test-notify``: send a test message to each receiver and report each result.

Send a test message through every receiver (or one) and print the result. The dead-man's
switch (``heartbeat.deadman_url``), if set, is the receiver ``deadman``: it gets one ping.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from alertd.cli.common import (
    EXIT_BUG,
    EXIT_OK,
)
from alertd.config import load_config
from alertd.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--receiver", metavar="NAME", help="only this receiver")


def run(args: argparse.Namespace) -> int:
    from alertd.delivery.routing import build_receivers
    from alertd.delivery.senders import Outgoing, production_senders
    from alertd.delivery.system import receiver_check

    config = load_config(args.config)
    receivers = build_receivers(config)
    if args.receiver:
        if args.receiver not in receivers:
            names = ", ".join(receivers) or "none configured"
            raise InputError(f"--receiver: no receiver named {args.receiver!r} ({names})")
        receivers = {args.receiver: receivers[args.receiver]}
    if not receivers:
        raise InputError(f"{args.config}: no receivers configured")
    senders = production_senders(config)
    failed = 0

    async def send_all() -> list[tuple[str, bool, str]]:
        out = []
        for name, receiver in receivers.items():
            # straight to each receiver, not through routes or the outbox: this is a check of
            # every receiver, answered here and now
            m = receiver_check(name, time.time())
            sender = senders[receiver.transport]
            message = Outgoing(m.title, m.body, m.severity.label, m.payload())
            result = await sender.send(receiver.url, message)
            out.append((name, result.ok, result.error))
        return out

    for name, ok, error in asyncio.run(send_all()):
        print(f"{name}: {'OK' if ok else 'FAILED: ' + error}")
        failed += not ok
    if failed:
        print(f"{failed} of {len(receivers)} receivers failed", file=sys.stderr)
        return EXIT_BUG
    return EXIT_OK
