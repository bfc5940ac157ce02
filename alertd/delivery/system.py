"""Messages that come from no rule: alertd's own (the test message, the daily digest) and the
exchange's pushes (a margin call, a liquidation warning).

A :class:`SystemMessage` carries its text and labels; it is routed, written to the outbox and
delivered exactly like a rule's notification (retries, fallback, rate limits), and silences
match its labels (``alertname=margin-call``, ``account=main``). It never enters the rule
engine: it has nothing to resolve or repeat.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import alertd.views.format as fmt
from alertd.rules.model import Severity

MARGIN_CALL = "margin-call"  # the alertname of every exchange push
DIGEST = "daily-digest"
TEST = "test-message"
MAX_PUSH_CHARS = 400  # of an exchange's own text in a message


class SystemKind(enum.Enum):
    TEST = "test"
    DIGEST = "digest"
    MARGIN_CALL = "margin_call"
    LIQUIDATION_WARNING = "liquidation_warning"


# what each exchange push is called in feeds/ (AccountEvent.kind)
PUSHES = {
    "margin_call": SystemKind.MARGIN_CALL,
    "liquidation_warning": SystemKind.LIQUIDATION_WARNING,
}


@dataclass(frozen=True, slots=True)
class SystemMessage:
    kind: SystemKind
    name: str  # the ``alertname`` label
    severity: Severity
    title: str
    body: str
    at: float  # epoch seconds
    account: str | None = None  # None: about alertd itself
    exchange: str | None = None

    @property
    def labels(self) -> dict[str, str]:
        out = {"alertname": self.name, "severity": self.severity.label}
        if self.account is not None:
            out["account"] = self.account
            out["exchange"] = self.exchange or ""
        return out

    def payload(self) -> Mapping[str, Any]:
        """What the outbox stores (the same keys as a rule's notification; plain JSON)."""
        return {
            "kind": self.kind.value,
            "rule": self.name,
            "severity": self.severity.label,
            "labels": self.labels,
            "value": None,
            "threshold": None,
            "at": self.at,
            "since": self.at,
            "title": self.title,
            "body": self.body,
        }


def exchange_push(
    kind: SystemKind, account: str, exchange: str, detail: str, at: float
) -> SystemMessage:
    """A margin call or liquidation warning the exchange pushed: critical, one message each."""
    severity = Severity.CRITICAL
    title = f"{severity.label.upper()} {account}: {MARGIN_CALL}"
    body = f"{kind.value}: {detail}"[:MAX_PUSH_CHARS]
    return SystemMessage(kind, MARGIN_CALL, severity, title, body, at, account, exchange)


def digest(accounts: int, firing: int, lines: list[str], at: float) -> SystemMessage:
    title = f"INFO alertd daily: {fmt.count(accounts, 'account')}, {firing} firing"
    return SystemMessage(SystemKind.DIGEST, DIGEST, Severity.INFO, title, "\n".join(lines), at)


def receiver_check(receiver: str, at: float) -> SystemMessage:
    body = f"If you can read this, alertd can reach you through '{receiver}'."
    title = "INFO alertd test message"
    return SystemMessage(SystemKind.TEST, TEST, Severity.INFO, title, body, at)
