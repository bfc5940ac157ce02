"""What every command shares: the parser, argument helpers, the console, exit codes."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from alertd import redact
from alertd.errors import InputError, StartupError
from alertd.validation import decimal_value, short

if TYPE_CHECKING:  # rich is imported by the commands that print with it
    from rich.console import Console

EXIT_OK = 0
EXIT_BUG = 1
EXIT_INPUT = 2


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits on its own; raise instead so main() maps every input error the same way.
        command = self.prog.removeprefix("alertd").strip()
        where = f"{command}: " if command else ""
        raise InputError(f"{where}{message} (see: {self.prog} --help)")


CONFIG_FLAGS = ("-c", "--config")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it says something (not for flags and counters)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, 0, [], "") or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def command(parser: argparse.ArgumentParser, module: ModuleType) -> None:
    """A command's options, from its module: the docstring's first line (after the command's
    name) is the summary ``alertd --help`` lists (:data:`alertd.cli.main.COMMANDS` holds it
    too, so that listing imports no command) and the rest its description; ``NEEDS_CONFIG``
    (default true) adds ``-c CONFIG``, ``JSON_HELP`` a ``--json`` flag, ``add_arguments`` the
    command's own options.

    ``-c`` is accepted before the command too (``alertd -c x.yaml run``): here its default is
    suppressed so that a value given there survives, and :func:`alertd.cli.main` checks that a
    command that needs a config got one."""
    summary = module_summary(module)
    rest = (module.__doc__ or "").strip().partition("\n")[2]
    parser.description = " ".join(rest.split()) or summary
    parser.formatter_class = HelpFormatter
    if getattr(module, "NEEDS_CONFIG", True):
        parser.add_argument(
            *CONFIG_FLAGS, metavar="CONFIG.yaml", default=argparse.SUPPRESS, help="the config file"
        )
        parser.set_defaults(needs_config=True)
    json_help = getattr(module, "JSON_HELP", None)
    if json_help is not None:
        parser.add_argument("--json", action="store_true", help=json_help)
    add_arguments = getattr(module, "add_arguments", None)
    if add_arguments is not None:
        add_arguments(parser)


def module_summary(module: ModuleType) -> str:
    """The summary in a command module's docstring: ``alertd calc``: *this*."""
    first = (module.__doc__ or "").strip().partition("\n")[0]
    return first.partition("``: ")[2]


def decimal_arg(text: str, what: str) -> Decimal:
    """A number on the command line (``-10``, ``0.5``, ``5%``) within alertd's range."""
    try:
        return decimal_value(text.strip().removesuffix("%"))
    except ValueError as exc:
        raise InputError(f"{what}: {exc}") from None


def text_arg(text: str, what: str) -> str:
    """A string from the command line that can be stored and printed: valid Unicode.

    Bytes that are not UTF-8 reach Python as lone surrogates, which SQLite and every
    encoder refuse.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what}: not valid UTF-8 text: {short(text)}") from None
    return text


def one_line(text: str) -> str:
    """``text`` with line breaks and control characters escaped: one problem, one line,
    whatever a file name or a value holds (and no terminal escape sequences from files)."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def warn(text: str) -> None:
    print(f"warning: {one_line(text)}", file=sys.stderr)


def safe_output() -> None:
    """Make stdout and stderr print anything: text alertd did not write (names from files,
    a lone surrogate) is escaped, never an UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def console() -> Console:
    """A console as wide as the terminal, or 200 columns when the output is not one.

    Markup and emoji codes are off: account names, symbols and rule names come from files,
    and ``[/]`` in one must print as written, not raise rich's MarkupError.
    """
    from rich.console import Console

    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size((200, 24))[0], 200)
    return Console(width=width, highlight=False, markup=False, emoji=False)


def local_time(ts: float) -> str:
    """``ts`` as local time; a time no calendar can show (a silence stored by an older
    alertd for 99999999d) prints as its number instead of failing."""
    try:
        return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f} (epoch seconds)"


@contextlib.contextmanager
def state_file(path: Path) -> Iterator[None]:
    """Reading or writing the state file: what SQLite or the OS refuses is a startup
    failure (exit 3) in one line, as for ``alertd run``, not a traceback."""
    try:
        yield
    except (sqlite3.Error, OSError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StartupError(f"state file {path}: {reason}") from None


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
