"""Getting messages out: routes pick receivers, the outbox holds every message until a
receiver accepted it, failed sends are retried with backoff (and copied to the route's
fallback receiver), and each receiver's rate limit is respected.

What goes out is a rule's :class:`~alertd.rules.lifecycle.Notification` (rendered) or a
:class:`~alertd.delivery.system.SystemMessage`; both take the same path. The transport is a
:class:`Sender`; production uses apprise (``ApriseSender``), whose
``notify`` only says yes or no, so a receiver's own "slow down" (Telegram's 429
``retry_after``) is honoured by the rate limit and the backoff, not by parsing replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from alertd import redact
from alertd.clock import Clock, Sleep
from alertd.config import Config, DeliverySettings, RouteConfig, Secret, expand_env
from alertd.daemon.store import NewMessage, OutboxRow, Store
from alertd.delivery.system import SystemMessage
from alertd.rules.lifecycle import Notification
from alertd.rules.messages import Message, notification_json

log = logging.getLogger(__name__)

# Messages a minute a receiver accepts before it starts refusing, when the config says nothing.
DEFAULT_RATE_PER_MIN = {"tgram": 20.0, "telegram": 20.0, "slack": 60.0, "discord": 30.0}


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str = ""
    retry_after_s: float | None = None


class Sender(Protocol):
    async def send(self, url: Secret, title: str, body: str, severity: str) -> SendResult: ...


class ApriseSender:
    """apprise, one instance per receiver, run in a worker thread (``notify`` blocks).

    apprise's own throttle is switched off (alertd rate-limits per receiver itself) and its
    retry is left at 0 (the outbox retries). apprise reports failures only as log lines; a
    receiver's HTTP status and Telegram's "retry after N" are read from those.
    """

    def __init__(self) -> None:
        self._instances: dict[str, Any] = {}

    async def send(self, url: Secret, title: str, body: str, severity: str) -> SendResult:
        return await asyncio.to_thread(self._send, url, title, body, severity)

    def _instance(self, url: Secret) -> Any:
        import apprise

        key = url.reveal()
        if key not in self._instances:
            apr = apprise.Apprise()
            if not apr.add(key):
                return None
            for plugin in apr:
                plugin.request_rate_per_sec = 0
            self._instances[key] = apr
        return self._instances[key]

    def _send(self, url: Secret, title: str, body: str, severity: str) -> SendResult:
        import apprise

        notify_type = {
            "info": apprise.NotifyType.INFO,
            "warning": apprise.NotifyType.WARNING,
            "critical": apprise.NotifyType.FAILURE,
        }.get(severity, apprise.NotifyType.INFO)
        apr = self._instance(url)
        if apr is None:
            return SendResult(False, "apprise cannot use this URL (run alertd check)")
        try:
            result = apr.notify(title=title, body=body, notify_type=notify_type)
        except Exception as exc:  # a plugin bug must not stop delivery to the others
            return SendResult(False, f"{type(exc).__name__} in apprise")
        if result:
            return SendResult(True)
        return _why(result, url)


_HTTP_STATUS = re.compile(r"error=(\d{3})")
_RETRY_AFTER = re.compile(r"retry after (\d+)", re.IGNORECASE)


def _why(result: Any, url: Secret | None = None) -> SendResult:
    """What apprise's per-service log lines say about a failure, redacted: they name the
    receiver's targets (a Telegram chat id, an ntfy topic, a webhook URL), which are parts
    of ``url``, so every part of it is masked in them, however short."""
    texts: list[str] = []
    try:
        for service in result:
            texts.extend(entry.message for entry in service.logs())
    except (TypeError, AttributeError):  # an apprise without per-service results
        pass
    parts = redact.url_parts(url.reveal()) if url is not None else []
    text = redact.redact(" | ".join(texts), parts)[:300] or "the receiver refused or did not answer"
    retry = _RETRY_AFTER.search(text)
    status = _HTTP_STATUS.search(text)
    if status and not retry and status.group(1) == "429":
        return SendResult(False, text, 30.0)  # rate limited without a stated delay
    return SendResult(False, text, float(retry.group(1)) if retry else None)


@dataclass(frozen=True, slots=True)
class Receiver:
    name: str
    url: Secret
    min_interval_s: float
    scheme: str
    tags: tuple[str, ...] = ()


def build_receivers(
    config: Config, environ: Mapping[str, str] | None = None
) -> dict[str, Receiver]:
    out = {}
    for i, r in enumerate(config.receivers):
        url = expand_env(r.url, f"receivers[{i}].url", environ)
        scheme = r.url.split("://", 1)[0].lower()
        rate = r.rate_per_min or DEFAULT_RATE_PER_MIN.get(scheme)
        out[r.name] = Receiver(r.name, url, 60.0 / rate if rate else 0.0, scheme, tuple(r.tags))
    return out


def route(
    routes: Sequence[RouteConfig],
    receivers: Sequence[str] | Mapping[str, Sequence[str]],
    labels: Mapping[str, str],
    severity: str,
) -> list[tuple[str, str | None]]:
    """``(receiver, fallback)`` pairs for a message; no routes at all sends to every receiver.

    ``receivers`` maps each receiver's name to its tags (a plain list: no tags).
    """
    tags: Mapping[str, Sequence[str]] = (
        receivers if isinstance(receivers, Mapping) else {name: () for name in receivers}
    )
    if not routes:
        return [(name, None) for name in tags]
    out: list[tuple[str, str | None]] = []
    for r in routes:
        if r.severities is not None and severity not in r.severities:
            continue
        if any(labels.get(k) != v for k, v in r.labels.items()):
            continue
        chosen = list(r.receivers) + [
            name for name, own in tags.items() if any(t in own for t in r.tags)
        ]
        for name in chosen:
            if all(name != done for done, _ in out):
                out.append((name, r.fallback))
    return out


class Deliverer:
    def __init__(
        self,
        store: Store,
        receivers: Mapping[str, Receiver],
        routes: Sequence[RouteConfig],
        settings: DeliverySettings,
        sender: Sender | None = None,
        *,
        clock: Clock = time.time,  # wall: outbox times are epoch seconds
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.store = store
        self.receivers = dict(receivers)
        self.routes = list(routes)
        self.settings = settings
        self.sender: Sender = sender or ApriseSender()
        self._clock = clock
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._next_send: dict[str, float] = {}  # receiver -> earliest next send (rate limit)
        self._fallbacks: dict[int, str] = {}
        self.sent = 0
        self.failed = 0
        # called after each delivery attempt (the service republishes its view)
        self.on_attempt: Callable[[], None] | None = None

    def messages_for(self, n: Notification, message: Message) -> list[NewMessage]:
        """Outbox rows for a rule's notification, one per receiver its routes pick."""
        payload = notification_json(n, message)
        return self._routed(n.labels, n.severity.label, message.title, message.body, payload)

    def system_messages_for(self, m: SystemMessage) -> list[NewMessage]:
        """Outbox rows for a system message, routed by its labels like any alert."""
        return self._routed(m.labels, m.severity.label, m.title, m.body, m.payload())

    def enqueue(self, m: SystemMessage) -> list[int]:
        """Write a system message to the outbox (it has no alert state to commit with)."""
        rows = self.system_messages_for(m)
        ids = self.store.enqueue(rows, self._clock())
        if rows:
            self.wake()
        return ids

    def _routed(
        self,
        labels: Mapping[str, str],
        severity: str,
        title: str,
        body: str,
        payload: Mapping[str, Any],
    ) -> list[NewMessage]:
        tags = {name: r.tags for name, r in self.receivers.items()}
        return [
            NewMessage(name, severity, title, body, {**payload, "fallback": fallback})
            for name, fallback in route(self.routes, tags, labels, severity)
        ]

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self.deliver_due()
            now = self._clock()
            next_at = self.store.next_due_at()
            wait = 5.0 if next_at is None else max(0.05, min(5.0, next_at - now))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def deliver_due(self) -> int:
        delivered = 0
        for row in self.store.due(self._clock()):
            if await self._deliver(row):
                delivered += 1
            if self.on_attempt is not None:
                self.on_attempt()
        return delivered

    async def _deliver(self, row: OutboxRow) -> bool:
        receiver = self.receivers.get(row.receiver)
        now = self._clock()
        if receiver is None:
            # removed from the config since: keep it, so a reload that brings it back sends it
            self.store.mark_failed(row.id, f"no receiver named {row.receiver!r}", now + 60)
            return False
        ready_at = self._next_send.get(receiver.name, 0.0)
        if now < ready_at:
            self.store.mark_failed(row.id, row.last_error or "rate limited", ready_at)
            return False
        self._next_send[receiver.name] = now + receiver.min_interval_s
        result = await self.sender.send(receiver.url, row.title, row.body, row.severity)
        now = self._clock()
        if result.ok:
            self.store.mark_delivered(row.id, now)
            self.sent += 1
            log.info("delivered #%d to %s: %s", row.id, receiver.name, row.title)
            return True
        self.failed += 1
        delay = min(self.settings.retry_max, self.settings.retry_initial * 2**row.attempts)
        if result.retry_after_s:
            delay = max(delay, result.retry_after_s)
            self._next_send[receiver.name] = now + result.retry_after_s
        self.store.mark_failed(row.id, result.error, now + delay)
        log.warning(
            "delivery #%d to %s failed (attempt %d): %s; retrying in %.0fs",
            row.id,
            receiver.name,
            row.attempts + 1,
            result.error,
            delay,
        )
        fallback = row.payload.get("fallback")
        if fallback and fallback in self.receivers and not self.store.has_fallback(row.id):
            copy = NewMessage(
                fallback, row.severity, row.title, row.body, {**row.payload, "fallback": None}
            )
            self.store.enqueue([copy], now, fallback_of=row.id)
            log.warning("delivery #%d: trying fallback receiver %s", row.id, fallback)
        return False

    async def drain(self, timeout_s: float) -> int:
        """Deliver what is due until nothing is pending or ``timeout_s`` runs out."""
        deadline = self._clock() + timeout_s
        while self.store.pending() and self._clock() < deadline:
            await self.deliver_due()
            next_at = self.store.next_due_at()
            if next_at is None:
                break
            await self._sleep(max(0.05, min(next_at, deadline) - self._clock()))
        return len(self.store.pending())
