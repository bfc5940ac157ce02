"""The command line. :func:`main` is the one place where exceptions become exit codes.

Exit codes: 0 success, 1 unexpected error (a bug), 2 usage, config or input error,
3 startup failure. Each command is one module in this package with ``add_parser(sub)`` and
``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from alertd import __version__
from alertd.cli import (
    calc,
    check,
    fetch_history,
    history,
    notify,
    replay,
    schema,
    silence,
    snapshot,
    status,
)
from alertd.cli import (
    run as run_command,
)
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

COMMANDS = (
    calc,
    check,
    snapshot,
    run_command,
    notify,
    silence,
    status,
    history,
    schema,
    replay,
    fetch_history,
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in COMMANDS:
        p = command(sub, module)
        handler: Callable[[argparse.Namespace], int] = module.run
        p.set_defaults(handler=handler)
        if module is not schema:
            p.add_argument(
                "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
            )
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
