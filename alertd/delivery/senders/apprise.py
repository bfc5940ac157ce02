"""The apprise sender: every receiver in ``receivers:`` (Telegram, mail, Slack, Discord,
ntfy, webhooks, ...) is an apprise URL.

apprise's ``notify`` only says yes or no, so a receiver's own "slow down" (Telegram's 429
``retry_after``) is read from apprise's per-service log lines and handed to the outbox
worker as :attr:`SendResult.retry_after_s`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from alertd import redact
from alertd.config import Secret
from alertd.delivery.senders import RATE_LIMITED_S, Outgoing, SendResult


class ApriseSender:
    """apprise, one instance per receiver, run in a worker thread (``notify`` blocks).

    apprise's own throttle is switched off (alertd rate-limits per receiver itself) and its
    retry is left at 0 (the outbox retries). apprise reports failures only as log lines; a
    receiver's HTTP status and Telegram's "retry after N" are read from those.
    """

    def __init__(self) -> None:
        self._instances: dict[str, Any] = {}

    async def send(self, url: Secret, message: Outgoing) -> SendResult:
        return await asyncio.to_thread(
            self._send, url, message.title, message.body, message.severity
        )

    async def prepare(self, url: Secret) -> None:
        """Import apprise and build the receiver's instance in a worker thread, at start."""
        await asyncio.to_thread(self._instance, url)

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
        return why_refused(result, url)


_HTTP_STATUS = re.compile(r"error=(\d{3})")
_RETRY_AFTER = re.compile(r"retry after (\d+)", re.IGNORECASE)


def why_refused(result: Any, url: Secret | None = None) -> SendResult:
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
        return SendResult(False, text, RATE_LIMITED_S)
    return SendResult(False, text, float(retry.group(1)) if retry else None)
