"""Senders: the last step, one message to one receiver. Each sender has its own module here.

A sender implements :class:`Sender`: ``send(url, title, body, severity) -> SendResult``. It
sends once and says how it went; it never retries, waits or queues (the outbox worker in
``delivery/deliverer.py`` owns retries, backoff, fallback receivers and rate limits). A
receiver that tells alertd to slow down (an HTTP 429, Telegram's ``retry_after``) says so in
:attr:`SendResult.retry_after_s`; the worker then waits at least that long before the next
message to that receiver. Error text is stored and logged: it must not carry the URL's
secrets (``alertd.redact`` masks what it can; a sender should not echo the URL).

Which sender serves a receiver is its :class:`Transport`, chosen in
``delivery/routing.py::build_receivers``:

- ``apprise.py``: every receiver in ``receivers:`` (Telegram, mail, Slack, webhooks, ...).
- ``ping.py``: the dead-man's switch (``heartbeat.deadman_url``), an HTTP GET.

A new channel (a Telegram bot that also answers commands, say) is a new module here with a
class implementing :class:`Sender`, a new :class:`Transport` member, and an entry in
:func:`production_senders`; test it against a local server in ``tests/receivers.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from alertd.config import Secret


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str = ""  # why not, for the log and the outbox row (no secrets)
    retry_after_s: float | None = None  # the receiver asked alertd to wait this long


class Sender(Protocol):
    async def send(self, url: Secret, title: str, body: str, severity: str) -> SendResult: ...


class Transport(enum.Enum):
    """How a receiver is reached: which :class:`Sender` the outbox worker hands it to."""

    APPRISE = "apprise"
    PING = "ping"


Senders = Mapping[Transport, Sender]


def production_senders() -> dict[Transport, Sender]:
    """One sender per transport, as ``alertd run`` uses them (imported here, on demand: the
    CLI's other commands do not load apprise or aiohttp)."""
    from alertd.delivery.senders.apprise import ApriseSender
    from alertd.delivery.senders.ping import PingSender

    return {Transport.APPRISE: ApriseSender(), Transport.PING: PingSender()}
