"""The command line. :func:`main` is the one place where exceptions become exit codes.

Exit codes: 0 success, 1 unexpected error (a bug), 2 usage, config or input error,
3 startup failure. Each command is one module in this package with ``add_parser(sub)`` and
``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from alertd import __version__
from alertd.cli.common import (
    CONFIG_FLAGS,
    EXIT_BUG,
    Parser,
    command,
    one_line,
    safe_output,
    setup_logging,
)
from alertd.errors import AlertdError, InputError
from alertd.redact import redact

# Every command: its name, its module in this package and the summary `alertd --help` lists
# (its module docstring's, tests/test_cli.py checks). A command's module is imported only when
# that command runs or shows its --help: the modules import the config models, ccxt, rich and
# the engine, which every start paid for before (about 0.5 CPU s of alertd --help's 0.7).
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("calc", "calc", "margin metrics of a snapshot file, with what-if prices"),
    ("check", "check", "validate a config file and that its secrets are present"),
    ("snapshot", "snapshot", "pull a live account from its exchange into the snapshot format"),
    ("run", "run", "the daemon: stream every account, until SIGTERM"),
    (
        "test-notify",
        "notify",
        "send a test message to each receiver and report each result",
    ),
    ("silence", "silence", "add, list or expire silences (muted alerts)"),
    ("status", "status", "what the running daemon sees"),
    ("history", "history", "recent alerts and their deliveries"),
    (
        "schema",
        "schema",
        "print the config file's (or the snapshot's) JSON Schema (for editors)",
    ),
    (
        "replay",
        "replay",
        "run a price history through the rules: alerts, liquidation, lead time",
    ),
    (
        "fetch-history",
        "fetch_history",
        "download mark-price (or trade) candles into the CSV replay reads",
    ),
)


if TYPE_CHECKING:  # generic for the type checker only
    _SubParsers = argparse._SubParsersAction[Parser]
else:
    _SubParsers = argparse._SubParsersAction


class Commands(_SubParsers):
    """The COMMAND argument: the chosen command's options are added (its module imported)
    just before its parser reads the rest of the command line, --help included."""

    modules: dict[str, str]

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert values is not None  # argparse passes the command and what follows it
        name = values[0]
        module_name = self.modules.pop(name, None)
        if module_name is not None:
            add_options(self._name_parser_map[name], module_name)
        super().__call__(parser, namespace, values, option_string)


def add_options(parser: argparse.ArgumentParser, module_name: str) -> None:
    module = importlib.import_module(f"alertd.cli.{module_name}")
    command(parser, module)
    handler: Callable[[argparse.Namespace], int] = module.run
    parser.set_defaults(handler=handler)
    if module_name != "schema":
        parser.add_argument(
            "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="alertd",
        description="Margin alerts for leveraged crypto futures: warns before liquidation.",
    )
    parser.add_argument("--version", action="version", version=f"alertd {__version__}")
    parser.add_argument(
        *CONFIG_FLAGS,
        metavar="CONFIG.yaml",
        default=None,
        help="the config file (here or after COMMAND)",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=Parser, action=Commands
    )
    sub.required = True
    assert isinstance(sub, Commands)
    sub.modules = {}
    for name, module_name, summary in COMMANDS:
        sub.add_parser(name, help=summary)
        sub.modules[name] = module_name
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    safe_output()
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "needs_config", False) and args.config is None:
            raise InputError(
                f"{args.command}: the following arguments are required: -c/--config "
                f"(see: alertd {args.command} --help)"
            )
        setup_logging(getattr(args, "verbose", 0))
        code: int = args.handler(args)
        return code
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except AlertdError as exc:
        problems = exc.problems if isinstance(exc, InputError) else [str(exc)]
        for line in problems:
            print(f"alertd: {one_line(redact(line))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:
        print(redact(traceback.format_exc()), end="", file=sys.stderr)
        print(
            "alertd: internal error (a bug: please report it with the lines above)", file=sys.stderr
        )
        return EXIT_BUG


def run() -> None:
    sys.exit(main())
