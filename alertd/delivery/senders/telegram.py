"""The Telegram sender: receivers of ``type: telegram`` are written to by alertd's own bot
(the ``telegram:`` section: its token and the chats it may write to), through
python-telegram-bot against the Bot API at ``telegram.api_url``.

A message is HTML: the title in bold on the first line (what a phone's lock screen shows),
then the body, escaped. The receiver's "URL" is its chat id.

Answers, as the Bot API gives them (https://core.telegram.org/bots/api#making-requests):
429 with ``parameters.retry_after`` (python-telegram-bot's ``RetryAfter``) is handed to the
outbox worker as the receiver's own delay, so nothing is sent to that chat before it; 403
(the user blocked the bot, or left the chat) and 400 (chat not found) are failures the
outbox retries and, where the route has one, copies to the fallback receiver; network
errors and timeouts likewise. Error texts name the Bot API's reason, never the token.
"""

from __future__ import annotations

import hashlib
import html
import warnings
from typing import Any

from alertd import redact
from alertd.config import Secret
from alertd.delivery.senders import Outgoing, SendResult

MAX_MESSAGE_CHARS = 4096  # the Bot API's limit for one message's text
TIMEOUT_S = 10.0


# the buttons under a firing alert: (callback action, label); the bot (daemon/bot.py) acts on them
BUTTONS = (("ack", "Ack"), ("s1h", "Silence 1h"), ("sur", "Silence until resolved"))
FIRING_KINDS = frozenset({"firing", "repeat"})


def alert_token(alert_key: str) -> str:
    """A short stand-in for an alert's key in a button (Telegram allows 64 bytes of data)."""
    return hashlib.sha256(alert_key.encode()).hexdigest()[:16]


def keyboard(message: Outgoing) -> Any:
    """Ack / Silence 1h / Silence until resolved under a firing alert; nothing under others."""
    alert = message.payload.get("alert")
    if message.payload.get("kind") not in FIRING_KINDS or not isinstance(alert, str):
        return None
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup

    token = alert_token(alert)
    row = [InlineKeyboardButton(text, callback_data=f"{a}:{token}") for a, text in BUTTONS]
    return InlineKeyboardMarkup([row])


def render_html(message: Outgoing) -> str:
    """The title in bold, then the body, escaped for Telegram's HTML parse mode."""
    text = f"<b>{html.escape(message.title)}</b>"
    if message.body:
        text += "\n" + html.escape(message.body)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


class TelegramSender:
    """One bot (one token) for every telegram receiver; each receiver is a chat."""

    def __init__(self, token: Secret, api_url: str, timeout_s: float = TIMEOUT_S) -> None:
        self._token = token
        self._api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self._bot: Any = None

    def _make_bot(self) -> Any:
        from telegram import Bot
        from telegram.request import HTTPXRequest

        request = HTTPXRequest(
            connect_timeout=self.timeout_s,
            read_timeout=self.timeout_s,
            write_timeout=self.timeout_s,
        )
        return Bot(self._token.reveal(), base_url=f"{self._api_url}/bot", request=request)

    @property
    def bot(self) -> Any:
        if self._bot is None:
            self._bot = self._make_bot()
        return self._bot

    def _masked(self, text: str) -> str:
        """The library's words may quote the token (in a URL, or as itself): never stored."""
        return redact.redact(text, [self._token.reveal()])

    async def send(self, url: Secret, message: Outgoing) -> SendResult:
        from telegram.constants import ParseMode
        from telegram.error import Forbidden, InvalidToken, RetryAfter, TelegramError

        try:
            chat_id = int(url.reveal())
        except ValueError:
            return SendResult(False, "a telegram receiver's chat is a number (run alertd check)")
        try:
            # open for one send and closed after it (a few messages a minute: nothing is left
            # open to close at shutdown)
            async with self.bot as bot:
                await bot.send_message(
                    chat_id,
                    render_html(message),
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard(message),
                )
        except RetryAfter as exc:
            with warnings.catch_warnings():
                # python-telegram-bot 22 warns that this becomes a timedelta: both are read
                warnings.simplefilter("ignore")
                delay = exc.retry_after
            seconds = delay.total_seconds() if hasattr(delay, "total_seconds") else float(delay)
            return SendResult(
                False, f"Telegram: too many requests, retry after {seconds:g}s", seconds
            )
        except InvalidToken:
            return SendResult(False, "Telegram refused the bot's token (telegram.token_env/file)")
        except Forbidden as exc:
            return SendResult(False, self._masked(f"Telegram refused: {exc.message}"))
        except TelegramError as exc:
            return SendResult(False, self._masked(f"Telegram: {type(exc).__name__}: {exc.message}"))
        except Exception as exc:  # a bug in the library must not stop delivery to the others
            return SendResult(False, f"Telegram: {type(exc).__name__}")
        return SendResult(True)
