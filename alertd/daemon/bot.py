"""alertd's Telegram bot, the asking half: commands from the allowed chats, answered from the
daemon's published view and its state file.

Long polling (``getUpdates``), so nothing listens on the VPS. Only the chats in
``telegram.chats`` are answered; anything else is ignored and logged once per chat. Commands:

- ``/status``: every account's worst margin ratio and feed state, and what is firing;
- ``/positions [account]``: each position's size, mark, liquidation price and distance;
- ``/alerts``: the firing alerts;
- ``/silence LABEL=VALUE... DURATION``: mute matching alerts (the same silences as
  ``alertd silence add``: in the state file, listed by ``alertd silence list``);
- ``/silences``, ``/expire ID``;
- ``/ack N``: acknowledge the N-th alert of ``/alerts``;
- ``/move PCT [account]`` and ``/calc ACCOUNT SYMBOL=PRICE...``: what if the marks moved
  (the engine on the account as the feed holds it now);
- ``/help``.

The buttons under a firing alert's message (``delivery/senders/telegram.py``): **Ack** (no
more repeats of this alert until it resolves; an escalation, another rule, still comes),
**Silence 1h** (every alert of that account or position, for an hour), **Silence until
resolved** (every alert of it until this one resolves). Each is a silence in the state file,
like ``alertd silence add`` (acknowledgements end when the alert resolves), and the message
is edited to say who did what, and when.

The texts are built by :func:`answer` (pure: a view, the silences and a time in, text out); the
loop (:class:`CommandBot`) only fetches updates and sends answers.
"""

from __future__ import annotations

import asyncio
import html
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import alertd.views.format as fmt
from alertd.config import Secret, parse_duration
from alertd.daemon.store import Store
from alertd.daemon.view import DaemonView, FiringAlert
from alertd.delivery.senders.telegram import alert_token
from alertd.engine.margin import compute
from alertd.engine.model import Account
from alertd.rules.lifecycle import alert_key
from alertd.rules.model import Silence, Subject
from alertd.views.status import describe_stop

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 30  # getUpdates' long-polling wait
RETRY_S = 5.0  # after a failed poll
MAX_SILENCE_S = 30 * 86400.0  # also how long an acknowledgement lasts at most
HOUR_S = 3600.0
COMMANDS = {
    "status": "accounts, worst ratio, feeds, what is firing",
    "positions": "positions: size, mark, liq. price, distance (/positions ACCOUNT)",
    "alerts": "what is firing",
    "silence": "mute alerts: /silence account=main 2h",
    "silences": "active silences",
    "expire": "end a silence: /expire ID",
    "ack": "acknowledge an alert: /ack N (its number in /alerts)",
    "move": "what if every mark moved: /move -10% [account]",
    "calc": "what if: /calc ACCOUNT BTC/USDT:USDT=55000",
    "help": "this list",
}


@dataclass(frozen=True, slots=True)
class Reply:
    text: str  # HTML
    silence: Silence | None = None  # to add to the store
    expire: str | None = None  # a silence id to expire


def _status(view: DaemonView) -> str:
    lines = ["<b>alertd status</b>"]
    for a in view.accounts:
        ratio = "no data" if a.worst_ratio is None else fmt.percent(a.worst_ratio, 1)
        feed = a.problem or "fresh"
        lines.append(f"{html.escape(a.name)} ({a.exchange}): ratio {ratio}, feed {feed}")
    lines.append(f"{fmt.count(len(view.firing), 'alert')} firing")
    lines += [f"• {html.escape(f.rule)} {html.escape(f.subject)}" for f in view.firing[:10]]
    return "\n".join(lines)


def _positions(view: DaemonView, account: str | None) -> str:
    lines = []
    for a in view.accounts:
        if account is not None and a.name != account:
            continue
        lines.append(f"<b>{html.escape(a.name)}</b>")
        if a.figures is None:
            lines.append("no complete data yet")
            continue
        if not a.figures.positions:
            lines.append("no positions")
        for p in a.figures.positions:
            liq = "no liq." if p.liquidation_price is None else fmt.price(p.liquidation_price)
            distance = p.liquidation_distance
            dist = "" if distance is None else f" ({fmt.percent(distance, 1)})"
            ratio = fmt.percent(p.margin_ratio, 1)
            stop = ""
            if p.stop is not None:  # the account's stops are read
                stop = " · stop " + describe_stop(
                    p.stop.price, p.stop.coverage, p.stop.beyond_liquidation
                )
            lines.append(
                f"{html.escape(p.symbol)} {p.side} {fmt.quantity(p.contracts)} @ "
                f"{fmt.price(p.mark_price)} · liq {liq}{dist} · ratio {ratio}{stop}"
            )
    if not lines:
        return f"no account named {html.escape(account or '')}"
    return "\n".join(lines)


def _alerts(view: DaemonView, now: float) -> str:
    if not view.firing:
        return "nothing is firing"
    lines = [f"<b>{fmt.count(len(view.firing), 'alert')} firing</b>"]
    for i, f in enumerate(view.firing, 1):
        severity = f.severity or "-"
        since = fmt.duration(now - f.since)
        what = f"{html.escape(f.rule)} {html.escape(f.subject)}"
        lines.append(f"{i}. {severity} {what} for {since}")
    return "\n".join(lines)


def _silences(silences: Sequence[Silence], now: float) -> str:
    active = [s for s in silences if s.active(now)]
    if not active:
        return "no active silences"
    return "\n".join(
        f"{s.id} until {fmt.timestamp(s.ends_at)}: "
        + html.escape(", ".join(f"{k}={v}" for k, v in s.matchers.items()))
        for s in active
    )


def _silence(args: list[str], now: float, who: str) -> Reply:
    usage = "usage: /silence LABEL=VALUE... DURATION (e.g. /silence account=main 2h)"
    if len(args) < 2:
        return Reply(usage)
    matchers: dict[str, str] = {}
    for item in args[:-1]:
        label, sep, value = item.partition("=")
        if not sep or not label:
            return Reply(f"{html.escape(item)}: expected LABEL=VALUE\n{usage}")
        matchers[label] = value
    try:
        seconds = parse_duration(args[-1])
    except ValueError as exc:
        return Reply(f"{html.escape(args[-1])}: {html.escape(str(exc))}")
    if not 0 < seconds <= MAX_SILENCE_S:
        return Reply("a silence lasts more than 0 and at most 30 days")
    silence = Silence(uuid.uuid4().hex[:8], matchers, now + seconds, now, f"telegram: {who}")
    text = ", ".join(f"{k}={v}" for k, v in matchers.items())
    return Reply(
        f"silence {silence.id} until {fmt.timestamp(silence.ends_at)}: {html.escape(text)}",
        silence=silence,
    )


def silence_for(action: str, alert: FiringAlert, now: float, who: str) -> Silence | None:
    """What a button (or ``/ack``) does to ``alert``, as a silence; None for an unknown one."""
    subject = Subject.from_key(alert.subject)
    key = alert_key(alert.rule, alert.subject)
    new_id = uuid.uuid4().hex[:8]
    if action == "ack":
        matchers = {"alertname": alert.rule, **subject.matchers}
        return Silence(new_id, matchers, now + MAX_SILENCE_S, now, f"ack: {who}", key)
    if action == "s1h":
        return Silence(new_id, subject.matchers, now + HOUR_S, now, f"telegram: {who}")
    if action == "sur":
        comment = f"until {alert.rule} resolves: {who}"
        return Silence(new_id, subject.matchers, now + MAX_SILENCE_S, now, comment, key)
    return None


DONE = {"ack": "acknowledged", "s1h": "silenced for 1h", "sur": "silenced until resolved"}


def _ack(args: list[str], view: DaemonView, now: float, who: str) -> Reply:
    if len(args) != 1 or not args[0].isdigit() or not 1 <= int(args[0]) <= len(view.firing):
        return Reply("usage: /ack N, N the alert's number in /alerts")
    alert = view.firing[int(args[0]) - 1]
    silence = silence_for("ack", alert, now, who)
    what = f"{html.escape(alert.rule)} {html.escape(alert.subject)}"
    return Reply(f"acknowledged {what}: no repeats until it resolves", silence=silence)


def _what_if_lines(name: str, before: Account, after: Account) -> list[str]:
    was, now_ = compute(before, crash=False), compute(after, crash=False)
    ratio = fmt.percent(now_.worst_ratio, 1)
    head = f"<b>{html.escape(name)}</b>: ratio {fmt.percent(was.worst_ratio, 1)} → {ratio}"
    if now_.worst_ratio >= 1:
        head += " (liquidated)"
    lines = [head]
    for pm in now_.positions:
        p = pm.position
        liq = "no liq." if pm.liquidation_price is None else fmt.price(pm.liquidation_price)
        distance = pm.liquidation_distance
        dist = "" if distance is None else f" ({fmt.percent(distance, 1)})"
        where = f"{html.escape(p.symbol)} {p.side.label} @ {fmt.price(p.mark_price)}"
        lines.append(f"{where} · liq {liq}{dist}")
    return lines


def what_if(command: str, args: list[str], accounts: Mapping[str, Account | None]) -> str:
    """``/move PCT [account]`` or ``/calc ACCOUNT SYMBOL=PRICE...`` on the accounts as they
    are now (None: no complete data)."""
    if command == "move":
        usage = "usage: /move PCT [account], e.g. /move -10%"
        if not 1 <= len(args) <= 2:
            return usage
        try:
            pct = Decimal(args[0].rstrip("%"))
        except InvalidOperation:
            return usage
        if not pct.is_finite() or not -100 < pct <= 1000:
            return "a move is more than -100% and at most 1000%"
        names = [args[1]] if len(args) == 2 else list(accounts)
        fraction = pct / 100

        def change(account: Account) -> Account:
            return account.moved(fraction)
    else:
        usage = "usage: /calc ACCOUNT SYMBOL=PRICE..., e.g. /calc main BTC/USDT:USDT=55000"
        if len(args) < 2:
            return usage
        marks: dict[str, Decimal] = {}
        for item in args[1:]:
            symbol, sep, price_text = item.rpartition("=")
            try:
                price = Decimal(price_text)
            except InvalidOperation:
                return usage
            if not sep or not price.is_finite() or price <= 0:
                return usage
            marks[symbol] = price
        names = [args[0]]

        def change(account: Account) -> Account:
            return account.with_marks(marks)

    lines: list[str] = []
    for name in names:
        if name not in accounts:
            return f"no account named {html.escape(name)}"
        account = accounts[name]
        if account is None:
            lines.append(f"{html.escape(name)}: no complete data yet")
            continue
        lines += _what_if_lines(name, account, change(account))
    return "\n".join(lines) or "no accounts"


def answer(
    text: str,
    view: DaemonView,
    silences: Sequence[Silence],
    now: float,
    who: str = "",
    accounts: Mapping[str, Account | None] | None = None,
) -> Reply | None:
    """The reply to a message from an allowed chat; None for what is not a command."""
    words = text.split()
    if not words or not words[0].startswith("/"):
        return None
    command = words[0][1:].split("@", 1)[0].lower()  # /status@alertd_bot in groups
    args = words[1:]
    if command == "status":
        return Reply(_status(view))
    if command == "positions":
        return Reply(_positions(view, args[0] if args else None))
    if command == "alerts":
        return Reply(_alerts(view, now))
    if command == "silences":
        return Reply(_silences(silences, now))
    if command == "silence":
        return _silence(args, now, who)
    if command == "ack":
        return _ack(args, view, now, who)
    if command in ("move", "calc"):
        return Reply(what_if(command, args, accounts or {}))
    if command == "expire":
        if len(args) != 1:
            return Reply("usage: /expire ID (see /silences)")
        return Reply(f"silence {html.escape(args[0])} expired", expire=args[0])
    return Reply("\n".join(f"/{name}: {what}" for name, what in COMMANDS.items()))


class CommandBot:
    """Polls the Bot API and answers the allowed chats; everything it changes goes through
    the store, as ``alertd silence`` does."""

    def __init__(
        self,
        token: Secret,
        api_url: str,
        chats: Sequence[int],
        view: Callable[[], DaemonView],
        store: Store,
        wall_clock: Callable[[], float],
        accounts: Callable[[], Mapping[str, Account | None]] = dict,
    ) -> None:
        self._token = token
        self._api_url = api_url.rstrip("/")
        self.chats = frozenset(chats)
        self._view = view
        self._store = store
        self._wall = wall_clock
        self._accounts = accounts  # each account as its feed holds it now (None: incomplete)
        self._ignored: set[int] = set()
        self.answered = 0

    async def run(self) -> None:
        from telegram import Bot
        from telegram.error import NetworkError, RetryAfter, TelegramError, TimedOut

        bot = Bot(self._token.reveal(), base_url=f"{self._api_url}/bot")
        async with bot:
            await bot.set_my_commands(list(COMMANDS.items()))
            offset: int | None = None
            while True:
                try:
                    updates = await bot.get_updates(
                        offset=offset,
                        timeout=POLL_TIMEOUT_S,
                        allowed_updates=["message", "callback_query"],
                    )
                except (TimedOut, NetworkError, RetryAfter) as exc:
                    log.warning("telegram: polling failed (%s); trying again", type(exc).__name__)
                    await asyncio.sleep(RETRY_S)
                    continue
                for update in updates:
                    offset = update.update_id + 1  # confirmed at the next poll, come what may
                    try:
                        await self._update(bot, update)
                    except TelegramError as exc:  # the answer was refused: the next one may not be
                        log.warning("telegram: answering failed: %s", type(exc).__name__)
                    except Exception:  # a bug: logged, and the bot goes on with the next update
                        log.exception("telegram: an update could not be handled")

    async def _update(self, bot: Any, update: Any) -> None:
        from telegram.constants import ParseMode

        if update.callback_query is not None:
            await self._pressed(bot, update.callback_query)
            return
        message = update.message
        if message is None or message.text is None:
            return
        chat = message.chat.id
        if not self._allowed(chat):
            return
        user = message.from_user
        reply = self.handle(message.text, user.first_name if user else "")
        if reply is not None:
            await bot.send_message(chat, reply.text, parse_mode=ParseMode.HTML)
            self.answered += 1

    def _allowed(self, chat: int) -> bool:
        if chat in self.chats:
            return True
        if chat not in self._ignored:
            self._ignored.add(chat)
            log.warning("telegram: ignoring a chat not in telegram.chats")
        return False

    async def _pressed(self, bot: Any, query: Any) -> None:
        """A button under an alert: the silence it stands for, then the message says so."""
        message = query.message
        if message is None or not self._allowed(message.chat.id):
            return
        who = query.from_user.first_name if query.from_user else "someone"
        result = self.press(str(query.data or ""), who)
        await bot.answer_callback_query(query.id, text=result)
        if result.startswith("no longer") or result.startswith("unknown"):
            return
        stamp = fmt.timestamp(self._wall())
        text = f"{message.text_html}\n<i>{html.escape(who)}: {result} at {stamp}</i>"
        from telegram.constants import ParseMode

        await bot.edit_message_text(
            text, chat_id=message.chat.id, message_id=message.message_id, parse_mode=ParseMode.HTML
        )

    def press(self, data: str, who: str) -> str:
        """What pressing the button with ``data`` did (the store now has the silence)."""
        action, _, token = data.partition(":")
        if action not in DONE:
            return "unknown button"
        now = self._wall()
        view = self._view()
        alert = next(
            (f for f in view.firing if alert_token(alert_key(f.rule, f.subject)) == token), None
        )
        if alert is None:
            return "no longer firing: nothing to do"
        silence = silence_for(action, alert, now, who)
        assert silence is not None
        self._store.add_silence(silence)
        return DONE[action]

    def handle(self, text: str, who: str) -> Reply | None:
        now = self._wall()
        asks_what_if = text.lstrip().lower().startswith(("/move", "/calc"))
        accounts = self._accounts() if asks_what_if else {}
        reply = answer(text, self._view(), self._store.silences(), now, who, accounts)
        if reply is None:
            return None
        if reply.silence is not None:
            self._store.add_silence(reply.silence)
        if reply.expire is not None and not self._store.expire_silence(reply.expire, now):
            return Reply(f"no active silence {html.escape(reply.expire)} (see /silences)")
        return reply
