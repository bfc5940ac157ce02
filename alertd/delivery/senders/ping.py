"""The ping sender: the dead-man's switch (``heartbeat.deadman_url``). An HTTP GET to a
monitor such as healthchecks.io, which raises the alarm when the pings stop; the message's
title and body are not sent (the ping itself is the message).

Any 2xx or 3xx answer is a delivered ping. A 429 or 503 with ``Retry-After`` (seconds) is
handed to the outbox worker as the receiver's own delay.
"""

from __future__ import annotations

from alertd.config import Secret
from alertd.delivery.senders import Outgoing, SendResult, http_call

TIMEOUT_S = 10.0  # a monitor that does not answer within this is down for this ping


class PingSender:
    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self.timeout_s = timeout_s

    async def send(self, url: Secret, message: Outgoing) -> SendResult:
        try:
            answer = await http_call("GET", url.reveal(), self.timeout_s)
        except Exception as exc:  # the URL's parts never reach the text: only the class
            return SendResult(False, f"the dead-man's switch was not reached: {type(exc).__name__}")
        if answer.status < 400:
            return SendResult(True)
        why = f"the dead-man's switch answered HTTP {answer.status}"
        return SendResult(False, why, answer.wait_s)
