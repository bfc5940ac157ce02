"""The Alertmanager sender: receivers of ``type: alertmanager`` get structured alerts through
Prometheus Alertmanager's v2 API (``POST /api/v2/alerts``), so that Alertmanager's own
grouping, deduplication, silences, inhibition and routing serve alertd's alerts, and several
alertd instances (a hot standby, or accounts split between instances) yield one notification
per alert.

What is sent, per message (the outbox row's payload):

- ``labels``: the alert's labels (``alertname`` = the rule, ``severity``, ``metric``,
  ``account``, ``exchange``, ``symbol``, ``side`` and the rule's own labels). Nothing that
  differs between instances (no host, no instance name): two instances watching the same
  account send the same label set, which Alertmanager deduplicates.
- ``annotations``: ``summary`` (the message's title), ``description`` (its body), and the
  ``value`` and ``threshold`` where a rule has them.
- ``startsAt``: when the alert started firing. ``endsAt``: for a firing alert, now plus four
  re-send intervals (as Prometheus does: Alertmanager resolves an alert that stops being
  re-sent, after that), or the end it gives itself (an IP ban's: ``ends_at``); for a resolved
  one, when it resolved. An IP ban is kept firing as a rule alert is, and its end resolves it.
  An alert of an account removed from the config, or disabled, is not resolved but no longer
  re-sent: it lapses at its ``endsAt`` (four re-send intervals) unless an instance now
  watching the account keeps it firing.
  Other system messages (an exchange's margin call, the digest, the test message) have no
  resolution: each is sent valid for four intervals and then expires.

Alertmanager forgets a firing alert whose ``endsAt`` passes, so every firing alert is re-sent
every ``resend_interval`` (:meth:`AlertmanagerSender.refresh`, called by the outbox worker);
after a restart the alerts still firing are found in the outbox's history
(:meth:`AlertmanagerSender.seed`). An alert is never re-sent past the end it gives itself
(an IP ban's, resolved or not), nor is a ban the older code delivered without its end; the
older code's end of a ban (kind ``ip_ban_over``, severity info) resolves that ban. Re-sends
are idempotent and not written to the outbox: a failed one is simply followed by the next.

Answers: 2xx delivered; 429 or 503 with ``Retry-After`` handed to the outbox worker as the
receiver's own delay; anything else a failure the outbox retries, with Alertmanager's error
text (it names the offending field, never a secret: the URL is not echoed).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from alertd.clock import Clock
from alertd.config import Secret
from alertd.delivery.senders import Outgoing, SendResult, http_call

TIMEOUT_S = 10.0
DEFAULT_RESEND_S = 60.0
VALID_FOR_RESENDS = 4  # an alert not re-sent for this many intervals is resolved by Alertmanager
# the kinds re-sent until resolved: a rule's alert, and an IP ban (SystemKind.IP_BANNED)
FIRING_KINDS = frozenset({"firing", "repeat", "ip_banned"})
RESOLVED = "resolved"
# a resolution's reason (the payload's ``reason``) for an account removed from the config
NO_LONGER_WATCHED = "removed"
# the end of an IP ban as alertd before session 11 wrote it to the outbox: severity info, not
# the ban's labels; a restart seeding from that history reads it as the ban's resolution
LEGACY_BAN_OVER = "ip_ban_over"
# a kind whose alert gives its own end (``ends_at``): one without it is from the older code,
# its end unknown, and is not re-sent
ENDS_BY_ITSELF = frozenset({"ip_banned"})
API_PATH = "/api/v2/alerts"
_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")

Alert = dict[str, Any]


def iso(epoch_s: float) -> str:
    """RFC 3339 in UTC, as Alertmanager's API takes times."""
    return (
        datetime.fromtimestamp(epoch_s, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def label_name(name: str) -> str:
    """Alertmanager's label names are ``[a-zA-Z_][a-zA-Z0-9_]*``: other characters become _."""
    clean = _LABEL_NAME.sub("_", name) or "_"
    return "_" + clean if clean[0].isdigit() else clean


def alert_of(message: Outgoing) -> tuple[Alert, bool]:
    """The alert ``message`` says, without ``endsAt`` unless it gives its own end (an IP
    ban's), and whether it fires until it resolves (to be re-sent until then)."""
    payload = message.payload
    raw = payload.get("labels") or {"alertname": "alertd", "severity": message.severity}
    labels = {label_name(str(k)): str(v) for k, v in raw.items()}
    annotations = {"summary": message.title, "description": message.body}
    for key in ("value", "threshold"):
        if payload.get(key) is not None:
            annotations[key] = str(payload[key])
    started = payload.get("since") or payload.get("at")
    alert: Alert = {"labels": labels, "annotations": annotations}
    if started is not None:
        alert["startsAt"] = iso(float(started))
    if payload.get("ends_at") is not None:
        alert["endsAt"] = iso(float(payload["ends_at"]))
    return alert, payload.get("kind") in FIRING_KINDS


def fingerprint(alert: Alert) -> str:
    """What makes two alerts the same alert: their labels (as Alertmanager sees it)."""
    return json.dumps(alert["labels"], sort_keys=True)


def own_end(alert: Alert) -> float | None:
    """The end an alert gives itself (epoch seconds; an IP ban's), None where it has none."""
    ends = alert.get("endsAt")
    return None if ends is None else datetime.fromisoformat(ends).timestamp()


def over_by_itself(alert: Alert, now: float) -> bool:
    """Whether an alert's own end has passed: never to be re-sent as firing again."""
    ends = own_end(alert)
    return ends is not None and ends <= now


def endpoint(url: Secret) -> str:
    base = url.reveal().rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


def _without_severity(alert: Alert) -> str:
    return json.dumps({k: v for k, v in alert["labels"].items() if k != "severity"}, sort_keys=True)


class AlertmanagerSender:
    """Posts alerts to Alertmanager and keeps the firing ones alive.

    ``active`` holds, per receiver URL, each alert last sent as firing and not yet resolved:
    what :meth:`refresh` re-sends.
    """

    def __init__(self, clock: Clock = time.time, timeout_s: float = TIMEOUT_S) -> None:
        self._clock = clock  # wall clock: Alertmanager's times are absolute
        self.timeout_s = timeout_s
        self.active: dict[str, dict[str, Alert]] = {}
        self.resend_s: dict[str, float] = {}

    def _valid_s(self, key: str) -> float:
        return VALID_FOR_RESENDS * self.resend_s.get(key, DEFAULT_RESEND_S)

    async def send(self, url: Secret, message: Outgoing) -> SendResult:
        key = url.reveal()
        kept, firing = alert_of(message)
        now = self._clock()
        kind = message.payload.get("kind")
        if kind == RESOLVED and message.payload.get("reason") == NO_LONGER_WATCHED:
            # this instance no longer watches the account (removed from its config): it stops
            # re-sending the alert, which Alertmanager ends by itself at its ``endsAt`` unless
            # another instance that watches the account now (sharding by config, an account
            # moved) keeps it firing; a resolution sent here would end that one's alert
            self.active.get(key, {}).pop(fingerprint(kept), None)
            return SendResult(True)
        if kind == RESOLVED:
            alert = {**kept, "endsAt": iso(float(message.payload.get("at") or now))}
        else:
            alert = {"endsAt": iso(now + self._valid_s(key)), **kept}
        result = await self._post(url, [alert])
        if result.ok:
            mine = self.active.setdefault(key, {})
            if firing:
                mine[fingerprint(alert)] = kept
            elif kind == RESOLVED:
                mine.pop(fingerprint(alert), None)
        return result

    def seed(self, url: Secret, delivered: Iterable[Outgoing], resend_s: float) -> None:
        """After a start: the alerts this receiver was last sent as firing, from the outbox's
        delivered messages to it (oldest first), become the ones :meth:`refresh` re-sends."""
        key = url.reveal()
        self.resend_s[key] = resend_s
        mine = self.active.setdefault(key, {})
        now = self._clock()
        for message in delivered:
            alert, firing = alert_of(message)
            kind = message.payload.get("kind")
            if kind == LEGACY_BAN_OVER:  # severity info: resolves the ban of its other labels
                same = _without_severity(alert)
                for fp in [fp for fp, a in mine.items() if _without_severity(a) == same]:
                    del mine[fp]
            elif not firing:
                if kind == RESOLVED:
                    mine.pop(fingerprint(alert), None)
            elif over_by_itself(alert, now) or (kind in ENDS_BY_ITSELF and "endsAt" not in alert):
                mine.pop(fingerprint(alert), None)  # over: this row supersedes any before it
            else:
                mine[fingerprint(alert)] = alert

    async def refresh(self, url: Secret) -> SendResult:
        """Re-send every firing alert with a fresh ``endsAt``, or the end it gives itself
        (nothing to send: nothing done)."""
        key = url.reveal()
        mine, now = self.active.get(key, {}), self._clock()
        for fp in [fp for fp, a in mine.items() if over_by_itself(a, now)]:
            del mine[fp]  # never re-sent past its own end, resolution or not
        alerts = list(mine.values())
        if not alerts:
            return SendResult(True)
        ends = iso(now + self._valid_s(key))
        return await self._post(url, [{"endsAt": ends, **a} for a in alerts])

    async def _post(self, url: Secret, alerts: list[Alert]) -> SendResult:
        try:
            answer = await http_call("POST", endpoint(url), self.timeout_s, alerts)
        except Exception as exc:  # the URL's parts never reach the text: only the class
            return SendResult(False, f"Alertmanager was not reached: {type(exc).__name__}")
        if answer.status < 300:
            return SendResult(True)
        detail = " ".join(answer.text.split())
        why = f"Alertmanager answered HTTP {answer.status}: {detail}"
        return SendResult(False, why, answer.wait_s)
