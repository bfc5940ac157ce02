"""Messages that come from no rule: alertd's own (the test message, the daily digest, the
dead-man's switch's heartbeat) and the exchange's pushes (a margin call, a liquidation warning).

A :class:`SystemMessage` carries its text and labels; it is routed, written to the outbox and
delivered exactly like a rule's notification (retries, fallback, rate limits), and silences
match its labels (``alertname=margin-call``, ``account=main``). It never enters the rule
engine: it has nothing to resolve or repeat.

The heartbeat differs in two ways, both because it says "alertd is healthy *now*": it is
addressed to the dead-man's switch's own receiver rather than routed to the user's, and it
is worth sending only until the next one is due (``expires_at``), each one replacing the one
before in the outbox (``replaces_earlier``), so a monitor that is down for a day leaves one
row, not 1,440, and a restart does not deliver a ping from before the crash.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import alertd.views.format as fmt
from alertd.config import Config
from alertd.rules.model import Severity

MARGIN_CALL = "margin-call"  # the alertname of every exchange push
DIGEST = "daily-digest"
TEST = "test-message"
HEARTBEAT = "heartbeat"
IP_BANNED = "ip-banned"  # an exchange banned this host's IP: every account of it waits
IP_BAN_SEVERITY = Severity.CRITICAL  # the ban's and its resolution's
MAX_PUSH_CHARS = 400  # of an exchange's own text in a message


class SystemKind(enum.Enum):
    TEST = "test"
    DIGEST = "digest"
    MARGIN_CALL = "margin_call"
    LIQUIDATION_WARNING = "liquidation_warning"
    HEARTBEAT = "heartbeat"
    IP_BANNED = "ip_banned"
    # the ban's end: a resolution, as a rule alert's (Alertmanager resolves the same alert)
    IP_BAN_OVER = "resolved"


# what each exchange push is called in feeds/ (AccountEvent.kind)
PUSHES = {
    "margin_call": SystemKind.MARGIN_CALL,
    "liquidation_warning": SystemKind.LIQUIDATION_WARNING,
}


def alertnames(config: Config) -> list[str]:
    """The ``alertname`` of each system message this config can send (what a silence may
    match besides the rules)."""
    names = [MARGIN_CALL] if config.builtin_rules.margin_call else []
    names.append(IP_BANNED)
    if config.heartbeat.digest_at:
        names.append(DIGEST)
    if config.heartbeat.deadman_url:
        names.append(HEARTBEAT)
    return names


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
    receiver: str | None = None  # addressed to this receiver, not routed
    expires_at: float | None = None  # epoch seconds: not delivered by then, not delivered
    ends_at: float | None = None  # epoch seconds: what it says ends by itself then (a ban)

    @property
    def replaces_earlier(self) -> bool:
        """A newer one makes the older pointless: the outbox keeps only the latest."""
        return self.kind is SystemKind.HEARTBEAT

    @property
    def labels(self) -> dict[str, str]:
        out = {"alertname": self.name, "severity": self.severity.label}
        if self.account is not None:
            out["account"] = self.account
            out["exchange"] = self.exchange or ""
        elif self.exchange is not None:  # about every account of an exchange host
            out["exchange"] = self.exchange
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
            "expires_at": self.expires_at,
            "ends_at": self.ends_at,
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


def heartbeat(receiver: str, at: float, interval_s: float) -> SystemMessage:
    """The dead-man's switch: alertd is running and every feed is fresh. Its monitor raises
    the alarm when these stop; one not delivered before the next is due is dropped."""
    title = "INFO alertd heartbeat"
    body = "alertd is running and every feed is fresh."
    return SystemMessage(
        SystemKind.HEARTBEAT,
        HEARTBEAT,
        Severity.INFO,
        title,
        body,
        at,
        receiver=receiver,
        expires_at=at + interval_s,
    )


def ip_banned(
    host: str, status: int, until: float, at: float, holds: str | None = None
) -> SystemMessage:
    """The exchange banned this host's IP until ``until`` (epoch seconds): one message for
    every account on it, which wait for its end and resume by themselves; ``holds``: where
    only that read of alertd's goes to the host (:attr:`HostBan.holds`), what ages."""
    severity = IP_BAN_SEVERITY
    ends = fmt.utc_until(until, at)
    title = f"{severity.label.upper()} {host}: this IP is banned until {ends} ({status})"
    if holds is not None:
        title += f": the {holds} age until then"
        body = (
            f"{host} refuses every request from this IP until {ends}: too many requests were "
            f"sent from it (alertd's, or another program's on the same IP). alertd reads only "
            f"the {holds} from it: they are kept as last read and age until the ban ends, "
            "when they are read again; the accounts' own requests and streams go to their own "
            "hosts and go on."
        )
        return SystemMessage(
            SystemKind.IP_BANNED, IP_BANNED, severity, title, body, at, exchange=host, ends_at=until
        )
    body = (
        f"{host} refuses every request from this IP until {ends}: too many requests were "
        "sent from it (alertd's, or another program's on the same IP). alertd sends nothing "
        "to it until then: the accounts' snapshots, reconciles and restarts wait, their open "
        "streams go on only as long as the exchange keeps them (a Binance listen key lapses "
        "an hour after its last keep-alive, which waits too), and every account resumes by "
        "itself, its streams with it, when the ban ends."
    )
    return SystemMessage(
        SystemKind.IP_BANNED, IP_BANNED, severity, title, body, at, exchange=host, ends_at=until
    )


def ip_ban_over(host: str, at: float, holds: str | None = None) -> SystemMessage:
    """The ban of :func:`ip_banned` ended: its resolution, with the ban's severity and labels
    (as a rule alert's resolution keeps its alert's), so that routes and silences by severity
    send it where the ban went; ``holds`` as there."""
    title = f"RESOLVED {host}: the IP ban is over"
    resumes = "every account of it resumes by itself"
    if holds is not None:
        resumes = f"the {holds} are read again"
    body = f"{host} answers this IP again: {resumes}."
    return SystemMessage(
        SystemKind.IP_BAN_OVER, IP_BANNED, IP_BAN_SEVERITY, title, body, at, exchange=host
    )
