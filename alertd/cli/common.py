"""What every command shares: the parser, argument helpers, the console, exit codes."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import sys
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias

from rich.console import Console

from alertd import redact
from alertd.errors import InputError

EXIT_OK = 0
EXIT_BUG = 1
EXIT_INPUT = 2

# argparse's type for the object ``add_subparsers`` returns
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits on its own; raise instead so main() maps every input error the same way.
        command = self.prog.removeprefix("alertd").strip()
        where = f"{command}: " if command else ""
        raise InputError(f"{where}{message} (see: {self.prog} --help)")


def decimal_arg(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip().rstrip("%"))
    except InvalidOperation:
        raise InputError(f"{what}: not a number: {text!r}") from None
    if not value.is_finite():
        raise InputError(f"{what}: must be a finite number (got {text!r})")
    return value


def console() -> Console:
    """A console as wide as the terminal, or 200 columns when the output is not one."""
    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((200, 24))[0], 200)
    return Console(width=width, highlight=False)


def local_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def labels(matchers: dict[str, str] | Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in dict(matchers).items())


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # every record that reaches a handler, alertd's and third-party (ccxt, aiohttp, urllib3),
    # at every level, is masked: URLs with tokens, listen keys, revealed secrets
    redact.install()
    # ccxt and apscheduler are chatty at INFO; their warnings still show
    for noisy in ("ccxt", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # apprise's own lines can hold a receiver URL with its token ("Unparseable URL tgram://..."):
    # they stay inside apprise (which reads them into each result, redacted there); alertd
    # logs the outcome
    logging.getLogger("apprise").propagate = False
