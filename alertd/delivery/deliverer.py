"""The durable outbox worker: every message is written to the outbox (SQLite) before it is
sent and stays there until a receiver accepted it; failed sends are retried with backoff (and
copied to the route's fallback receiver), and each receiver's rate limit is respected.

What goes out is a rule's :class:`~alertd.rules.lifecycle.Notification` (rendered) or a
:class:`~alertd.delivery.system.SystemMessage`; both take the same path. Which receivers get
a message is ``routing.py``'s; how a message reaches one is its sender's (``senders/``: one
module per transport, the :class:`~alertd.delivery.senders.Sender` protocol documented there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alertd.clock import Clock, Sleep
from alertd.config import DeliverySettings, RouteConfig
from alertd.daemon.store import NewMessage, OutboxRow, Store
from alertd.delivery.routing import Receiver, route
from alertd.delivery.senders import (
    KeepsAlive,
    Outgoing,
    Prepares,
    Sender,
    Senders,
    production_senders,
)
from alertd.delivery.system import SystemMessage
from alertd.rules.lifecycle import Notification
from alertd.rules.messages import Message, notification_json

log = logging.getLogger(__name__)


class Deliverer:
    def __init__(
        self,
        store: Store,
        receivers: Mapping[str, Receiver],
        routes: Sequence[RouteConfig],
        settings: DeliverySettings,
        senders: Senders | None = None,
        *,
        clock: Clock = time.time,  # wall: outbox times are epoch seconds
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.store = store
        self.receivers = dict(receivers)
        self.routes = list(routes)
        self.settings = settings
        # one per transport (a test passes its own)
        self.senders: Senders = senders if senders is not None else production_senders()
        self._clock = clock
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._next_send: dict[str, float] = {}  # receiver -> earliest next send (rate limit)
        self._fallbacks: dict[int, str] = {}
        self._next_refresh: dict[str, float] = {}  # receiver -> next re-send of what fires
        self.sent = 0
        self.failed = 0
        # called after each delivery attempt (the service republishes its view)
        self.on_attempt: Callable[[], None] | None = None

    def messages_for(self, n: Notification, message: Message) -> list[NewMessage]:
        """Outbox rows for a rule's notification, one per receiver its routes pick."""
        payload = notification_json(n, message)
        return self._routed(n.labels, n.severity.label, message.title, message.body, payload)

    def system_messages_for(self, m: SystemMessage) -> list[NewMessage]:
        """Outbox rows for a system message, routed by its labels like any alert (one
        addressed to a receiver, the heartbeat, goes to that receiver if it is configured)."""
        if m.receiver is not None:
            if m.receiver not in self.receivers:
                return []
            return [NewMessage(m.receiver, m.severity.label, m.title, m.body, m.payload())]
        return self._routed(m.labels, m.severity.label, m.title, m.body, m.payload())

    def enqueue(self, m: SystemMessage) -> list[int]:
        """Write a system message to the outbox (it has no alert state to commit with)."""
        rows = self.system_messages_for(m)
        ids = self.store.enqueue(
            rows, self._clock(), replace_kind=m.kind.value if m.replaces_earlier else None
        )
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
        tags = {name: r.tags for name, r in self.receivers.items() if r.routable}
        return [
            NewMessage(name, severity, title, body, {**payload, "fallback": fallback})
            for name, fallback in route(self.routes, tags, labels, severity)
        ]

    def wake(self) -> None:
        self._wake.set()

    async def prepare(self) -> None:
        """Each receiver's sender does its first-use work now, not at the first alert."""
        for receiver in self.receivers.values():
            sender = self.senders.get(receiver.transport)
            if isinstance(sender, Prepares):
                try:
                    await sender.prepare(receiver.url)
                except Exception as exc:  # sending will say what is wrong, with a retry
                    log.warning("preparing %s failed: %s", receiver.name, type(exc).__name__)

    async def run(self) -> None:
        await self.prepare()
        while True:
            await self.deliver_due()
            await self.refresh_due()
            now = self._clock()
            next_at = min([*self._next_refresh.values(), self.store.next_due_at() or now + 5.0])
            wait = max(0.05, min(5.0, next_at - now))
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

    async def refresh_due(self) -> None:
        """Re-send what is firing to each receiver that forgets otherwise (Alertmanager),
        every ``refresh_every_s``; the first time, from what the outbox delivered to it."""
        for receiver in self.receivers.values():
            every = receiver.refresh_every_s
            sender = self.senders.get(receiver.transport)
            if every is None or not isinstance(sender, KeepsAlive):
                continue
            name = receiver.name
            if name not in self._next_refresh:
                rows = self.store.delivered_to(name)
                delivered = [Outgoing(r.title, r.body, r.severity, r.payload) for r in rows]
                sender.seed(receiver.url, delivered, every)
            elif self._clock() < self._next_refresh[name]:
                continue
            result = await sender.refresh(receiver.url)
            self._next_refresh[name] = self._clock() + every
            if not result.ok:
                log.warning("re-sending firing alerts to %s failed: %s", name, result.error)

    async def _deliver(self, row: OutboxRow) -> bool:
        receiver = self.receivers.get(row.receiver)
        now = self._clock()
        if receiver is None:
            # removed from the config since: keep it, so a reload that brings it back sends it
            self.store.mark_failed(row.id, f"no receiver named {row.receiver!r}", now + 60)
            return False
        expires_at = row.payload.get("expires_at")
        if expires_at is not None and now > expires_at:
            # it said "healthy at that time": too late to be true now
            self.store.discard(row.id)
            log.info("dropped #%d to %s: not delivered before it expired", row.id, receiver.name)
            return False
        ready_at = self._next_send.get(receiver.name, 0.0)
        if now < ready_at:
            self.store.mark_failed(row.id, row.last_error or "rate limited", ready_at)
            return False
        self._next_send[receiver.name] = now + receiver.min_interval_s
        message = Outgoing(row.title, row.body, row.severity, row.payload)
        result = await self._sender(receiver).send(receiver.url, message)
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
        # a receiver that says "wait N s" is up and will take the message then: only when it
        # fails again after that wait is the message copied to the fallback
        rate_limited_once = result.retry_after_s is not None and row.attempts == 0
        if (
            fallback
            and fallback in self.receivers
            and not rate_limited_once
            and not self.store.has_fallback(row.id)
        ):
            copy = NewMessage(
                fallback, row.severity, row.title, row.body, {**row.payload, "fallback": None}
            )
            self.store.enqueue([copy], now, fallback_of=row.id)
            log.warning("delivery #%d: trying fallback receiver %s", row.id, fallback)
        return False

    def _sender(self, receiver: Receiver) -> Sender:
        sender = self.senders.get(receiver.transport)
        if sender is None:  # a test that passed senders for some transports only
            raise LookupError(
                f"no sender for {receiver.transport.value} (receiver {receiver.name})"
            )
        return sender

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
