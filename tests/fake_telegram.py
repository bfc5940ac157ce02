"""A local Telegram Bot API server on 127.0.0.1, speaking the real Bot API's wire format, so
that python-telegram-bot's own client code runs against it unmodified (its ``base_url``
points here).

The shapes follow https://core.telegram.org/bots/api: every method is
``POST /bot<token>/<method>`` with its parameters as a query string, form fields (complex
values JSON-encoded, as python-telegram-bot sends them), JSON or multipart; every answer is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": "...",
"parameters": {"retry_after": S}}``. Implemented: getMe, getUpdates (long polling with
``offset`` and ``timeout``), deleteWebhook, setMyCommands, sendMessage, editMessageText,
editMessageReplyMarkup, answerCallbackQuery. A wrong token gets 401 "Unauthorized"; a chat the
bot does not know gets 400 "Bad Request: chat not found"; a blocked chat 403 "Forbidden: bot
was blocked by the user"; a scripted rate limit 429 "Too Many Requests: retry after N".

A test plays the users: :meth:`LocalBotApi.user_says` (a message in a chat),
:meth:`LocalBotApi.user_presses` (an inline button), :meth:`LocalBotApi.block`; and reads what
the bot did in :attr:`LocalBotApi.sent` (messages as they stand after edits) and
:attr:`LocalBotApi.answers` (callback answers).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

from tests.receivers import LoopbackServer

TOKEN = "123456:TEST-local-bot-token"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "alertd", "username": "alertd_test_bot"}


ENTITY_TAGS = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "code": "code"}


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2  # the Bot API counts offsets in UTF-16 units


class _Html(HTMLParser):
    """Telegram's HTML parse mode: the text without tags, and the tags as entities."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""
        self.entities: list[dict[str, Any]] = []
        self._open: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ENTITY_TAGS:
            raise _ApiError(400, f"Bad Request: can't parse entities: unsupported tag {tag}")
        self._open.append((tag, _utf16_len(self.text)))

    def handle_endtag(self, tag: str) -> None:
        if not self._open or self._open[-1][0] != tag:
            raise _ApiError(400, f"Bad Request: can't parse entities: unmatched end tag {tag}")
        _, start = self._open.pop()
        length = _utf16_len(self.text) - start
        if length:
            self.entities.append({"type": ENTITY_TAGS[tag], "offset": start, "length": length})

    def handle_data(self, data: str) -> None:
        self.text += data


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    parser = _Html()
    parser.feed(text)
    parser.close()
    return parser.text, sorted(parser.entities, key=lambda e: e["offset"])


class LocalBotApi(LoopbackServer):
    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.chats: dict[int, dict[str, Any]] = {}  # chat id -> the chat object
        self.blocked: set[int] = set()
        self.sent: dict[int, dict[str, Any]] = {}  # message id -> the message (bot's, edited)
        self.answers: list[dict[str, Any]] = []  # answerCallbackQuery calls
        self.calls: list[tuple[str, dict[str, Any]]] = []  # every method call, in order
        self.limit_next: list[int] = []  # retry_after seconds for the next sendMessage calls
        self.limited_at: list[float] = []  # time.monotonic() of each 429 answered
        self.sent_at: dict[int, float] = {}  # message id -> time.monotonic() it was sent
        self.commands: list[dict[str, Any]] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._new_update: asyncio.Event | None = None
        self._lock = threading.Lock()

    # --- the test's side --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What python-telegram-bot's ``base_url`` is set to (it appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    def add_chat(self, chat_id: int, first_name: str = "Trader") -> None:
        self.chats[chat_id] = {"id": chat_id, "type": "private", "first_name": first_name}

    def block(self, chat_id: int) -> None:
        self.blocked.add(chat_id)

    def user_says(self, chat_id: int, text: str) -> None:
        if chat_id not in self.chats:
            self.add_chat(chat_id)
        message = {
            "message_id": next(self._message_ids),
            "from": self._user(chat_id),
            "chat": self.chats[chat_id],
            "date": int(time.time()),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        self._push({"message": message})

    def user_presses(self, chat_id: int, message_id: int, data: str) -> None:
        message = self.sent[message_id]
        query = {
            "id": str(next(self._update_ids) * 1000),
            "from": self._user(chat_id),
            "message": message,
            "chat_instance": str(chat_id),
            "data": data,
        }
        self._push({"callback_query": query})

    def messages_to(self, chat_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.sent.values() if m["chat"]["id"] == chat_id]

    def buttons(self, message: dict[str, Any]) -> list[tuple[str, str]]:
        """``(text, callback_data)`` of a message's inline keyboard, row by row."""
        rows = message.get("reply_markup", {}).get("inline_keyboard", [])
        return [(b["text"], b.get("callback_data", "")) for row in rows for b in row]

    def _user(self, chat_id: int) -> dict[str, Any]:
        name = self.chats.get(chat_id, {}).get("first_name", "Trader")
        return {"id": chat_id, "is_bot": False, "first_name": name}

    def _push(self, update: dict[str, Any]) -> None:
        def add() -> None:
            self._updates.append({"update_id": next(self._update_ids), **update})
            if self._new_update is not None:
                self._new_update.set()

        self._loop.call_soon_threadsafe(add)

    # --- the server ---------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.text()
            if body:
                params.update(json.loads(body))
        elif request.can_read_body:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        for key in ("reply_markup", "commands", "allowed_updates"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    async def _method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        name = request.match_info["method"]
        params = await self._params(request)
        with self._lock:
            self.calls.append((name, params))
        handler = getattr(self, f"_m_{name}", None)
        if handler is None:
            return _error(404, "Not Found")
        try:
            result = await handler(params)
        except _ApiError as exc:
            return _error(exc.code, exc.description, exc.retry_after)
        return web.json_response({"ok": True, "result": result})

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        self.commands = list(params.get("commands", []))
        return True

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset", 0) or 0)
        timeout = min(float(params.get("timeout", 0) or 0), 50.0)
        # as the real server: updates below offset are confirmed and forgotten
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and timeout > 0:
            self._new_update = asyncio.Event()
            try:
                await asyncio.wait_for(self._new_update.wait(), timeout)
            except TimeoutError:
                pass
            finally:
                self._new_update = None
        limit = int(params.get("limit", 100) or 100)
        return [u for u in self._updates if u["update_id"] >= offset][:limit]

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, ValueError):
            raise _ApiError(400, "Bad Request: chat_id is empty") from None
        if chat_id in self.blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id not in self.chats:
            raise _ApiError(400, "Bad Request: chat not found")
        return self.chats[chat_id]

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        if self.limit_next:
            retry_after = self.limit_next.pop(0)
            self.limited_at.append(time.monotonic())
            raise _ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        text = str(params.get("text", ""))
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "from": BOT_USER,
            "chat": chat,
            "date": int(time.time()),
        }
        self._set_text(message, text, params.get("parse_mode"))
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        with self._lock:
            self.sent[message["message_id"]] = message
            self.sent_at[message["message_id"]] = time.monotonic()
        return message

    def _message(self, params: dict[str, Any]) -> dict[str, Any]:
        self._chat(params)
        message = self.sent.get(int(params.get("message_id", 0)))
        if message is None or message["chat"]["id"] != int(params["chat_id"]):
            raise _ApiError(400, "Bad Request: message to edit not found")
        return message

    @staticmethod
    def _set_text(message: dict[str, Any], text: str, parse_mode: Any) -> None:
        """As the real server stores it: HTML becomes plain text and entities."""
        if parse_mode == "HTML":
            message["text"], entities = parse_html(text)
            if entities:
                message["entities"] = entities
        else:
            message["text"] = text
            message.pop("entities", None)

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        message = self._message(params)
        text = str(params.get("text", ""))
        markup = params.get("reply_markup")
        plain = parse_html(text)[0] if params.get("parse_mode") == "HTML" else text
        if plain == message["text"] and markup == message.get("reply_markup"):
            raise _ApiError(400, "Bad Request: message is not modified")
        with self._lock:
            self._set_text(message, text, params.get("parse_mode"))
            message["edit_date"] = int(time.time())
            if markup:
                message["reply_markup"] = markup
            else:
                message.pop("reply_markup", None)
        return message

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        message = self._message(params)
        with self._lock:
            if params.get("reply_markup"):
                message["reply_markup"] = params["reply_markup"]
            else:
                message.pop("reply_markup", None)
        return message

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        with self._lock:
            self.answers.append(params)
        return True

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._method)

    def stop(self) -> None:
        def release() -> None:  # a long poll still waiting answers now, so the server can stop
            if self._new_update is not None:
                self._new_update.set()

        self._loop.call_soon_threadsafe(release)
        super().stop()


class _ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        self.code, self.description, self.retry_after = code, description, retry_after


def _error(code: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=code)
