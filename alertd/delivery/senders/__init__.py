"""Senders: the last step, one message to one receiver. Each sender has its own module here.

A sender implements :class:`Sender`: ``send(url, message) -> SendResult``, ``message`` an
:class:`Outgoing` (title, body, severity, and the outbox row's JSON payload: kind, labels,
times, for a receiver that takes structured alerts such as Alertmanager). It
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
- ``alertmanager.py``: receivers of ``type: alertmanager``, Prometheus Alertmanager's v2 API.

A new channel (a Telegram bot that also answers commands, say) is a new module here with a
class implementing :class:`Sender`, a new :class:`Transport` member, and an entry in
:func:`production_senders`; test it against a local server in ``tests/receivers.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from alertd.config import Config, Secret
from alertd.retry_after import retry_after_s


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str = ""  # why not, for the log and the outbox row (no secrets)
    retry_after_s: float | None = None  # the receiver asked alertd to wait this long


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to one receiver, as the outbox holds it."""

    title: str
    body: str
    severity: str
    # the outbox row's payload: "kind" (firing, repeat, resolved, or a system message's kind),
    # "labels", "since", "at", ...; empty for a message that has none (the test message)
    payload: Mapping[str, Any] = field(default_factory=dict)


class Sender(Protocol):
    async def send(self, url: Secret, message: Outgoing) -> SendResult: ...


class Transport(enum.Enum):
    """How a receiver is reached: which :class:`Sender` the outbox worker hands it to."""

    APPRISE = "apprise"
    PING = "ping"
    ALERTMANAGER = "alertmanager"
    TELEGRAM = "telegram"


Senders = Mapping[Transport, Sender]


@runtime_checkable
class Prepares(Sender, Protocol):
    """A sender with costly first-use work (apprise: its import and plugin table, about
    170 ms): the outbox worker has it done for each receiver at start, so that the first alert
    after start does not wait for it."""

    async def prepare(self, url: Secret) -> None: ...


@runtime_checkable
class KeepsAlive(Sender, Protocol):
    """A sender whose receiver forgets what is not re-sent (Alertmanager): the outbox worker
    seeds it once from what was delivered to the receiver, then calls ``refresh`` every
    ``Receiver.refresh_every_s``."""

    def seed(self, url: Secret, delivered: Iterable[Outgoing], resend_s: float) -> None: ...

    async def refresh(self, url: Secret) -> SendResult: ...


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    text: str  # the start of the body, for an error message
    retry_after_s: float | None  # the receiver's Retry-After, in seconds

    @property
    def wait_s(self) -> float | None:
        """How long the receiver asked alertd to wait: its Retry-After, or for a 429 without
        a usable one, :data:`RATE_LIMITED_S`."""
        if self.status == 429 and self.retry_after_s is None:
            return RATE_LIMITED_S
        return self.retry_after_s


RATE_LIMITED_S = 30.0  # a 429 without a usable Retry-After
# a longer wait a receiver asks is read as this: the message is late rather than lost
RECEIVER_MAX_RETRY_AFTER_S = 3600


async def http_call(
    method: str, url: str, timeout_s: float, json: Any = None, max_chars: int = 300
) -> HttpAnswer:
    """One HTTP request in its own session (a few a minute: nothing left open to close at
    shutdown). Raises what aiohttp raises; the caller words it without the URL."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, url, json=json, allow_redirects=True) as response,
    ):
        text = (await response.text(errors="replace"))[:max_chars]
        wait = retry_after_s(response.headers.get("Retry-After"), RECEIVER_MAX_RETRY_AFTER_S)
        return HttpAnswer(response.status, text, wait)


def production_senders(config: Config | None = None) -> dict[Transport, Sender]:
    """One sender per transport, as ``alertd run`` uses them (imported here, on demand: the
    CLI's other commands do not load apprise or aiohttp). The Telegram bot's sender needs the
    config's ``telegram:`` section (its token is read here)."""
    from alertd.delivery.senders.alertmanager import AlertmanagerSender
    from alertd.delivery.senders.apprise import ApriseSender
    from alertd.delivery.senders.ping import PingSender

    senders: dict[Transport, Sender] = {
        Transport.APPRISE: ApriseSender(),
        Transport.PING: PingSender(),
        Transport.ALERTMANAGER: AlertmanagerSender(),
    }
    if config is not None and config.telegram is not None:
        from alertd.delivery.senders.telegram import TelegramSender

        token = config.telegram.read_token()
        senders[Transport.TELEGRAM] = TelegramSender(token, config.telegram.api_url)
    return senders
