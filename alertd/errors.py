"""alertd's exceptions, and what each means to a user.

    AlertdError                 base of everything alertd raises on purpose
    ├── InputError              a usage, config or input problem: exit code 2
    │   └── SnapshotError       a snapshot file that cannot be used; lists every problem
    ├── StartupError            the daemon could not start: exit code 3
    └── AccountRefused          an account alertd will not read as the exchange runs it (a mode
                                it does not model, an id ccxt needs and cannot get): its feed
                                stops with this reason, since no retry can change it

Anything else that escapes is a bug in alertd: exit code 1. Only :func:`alertd.cli.main`
turns exceptions into messages and exit codes. Third-party errors are translated where they
enter (``raise InputError(...) from exc``).
"""

from __future__ import annotations

from collections.abc import Sequence


class AlertdError(Exception):
    exit_code = 1


class InputError(AlertdError):
    """Bad input from the user. ``problems`` holds one line per problem."""

    exit_code = 2

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class SnapshotError(InputError):
    """A snapshot file that cannot be used; each problem is ``path: reason``."""


class StartupError(AlertdError):
    exit_code = 3


class AccountRefused(AlertdError):
    """An account alertd cannot serve as it is; the message names what and why.

    Raised by the exchange adapters, classed fatal by the feeds: the account stops with this
    reason (and the account-error alert), where a retry would ask the same question forever.
    """
