"""Making ccxt.pro exchange objects, guarding them, and classifying their errors.

This is the only module that builds ccxt exchanges. Two of ccxt's behaviours are closed here
(see shared design notes, ccxt.md):

- A frame that is not valid JSON, or one that makes ccxt's own handler raise, escapes from a
  done-callback in ccxt's receive loop and silently ends that loop: the connection stays open
  and nothing more is read. The guard catches both, reports them, and the loop goes on.
- Frames ccxt has no handler for (Binance ``MARGIN_CALL``, ``listenKeyExpired``; OKX
  ``liquidation-warning``) are dropped by ccxt. The guard shows every decoded frame to a sink
  first, so the feed can capture them; those of a stream alertd subscribes to itself through
  ccxt's ``watch`` (Binance's asset index) it resolves for that watch.

Many accounts on one exchange share what is not theirs (:class:`SharedExchange`): the market
catalogue, the SSL context, the HTTP connection pool and, where the exchange limits requests
per IP, ccxt's rate limiter. An account's exchange object keeps only its credentials and its
own streams (and, on Binance, its listen key).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import copy
import dataclasses
import enum
import logging
import math
import re
import socket
import ssl
import time
import types
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import aiohttp
import ccxt
import ccxt.pro as ccxtpro
import certifi
from ccxt.async_support.base.throttler import Throttler

import alertd.views.format as fmt
from alertd.clock import Clock, Sleep
from alertd.config import AccountConfig, FeedSettings, Secret, source_address
from alertd.errors import AccountRefused
from alertd.exchanges.registry import get_spec
from alertd.exchanges.spec import Capabilities, Credential, IpBanAnswer
from alertd.feeds.adapter import AlikeAnswers, PublicTables
from alertd.feeds.backoff import Backoff
from alertd.redact import redact
from alertd.retry_after import reset_in, retry_after_in

log = logging.getLogger(__name__)

T = TypeVar("T")


class FrameSink(Protocol):
    def on_frame(self, message: Any) -> None: ...

    def on_malformed(self, kind: str, detail: str) -> None: ...

    def on_open(self, url: str) -> None:
        """The exchange object's websocket of ``url`` opened (ccxt's ``client.connected``)."""

    def on_login(self, url: str) -> None:
        """The exchange object's websocket of ``url`` logged in (its login accepted)."""

    def on_closed(self, url: str, opening_failed: bool) -> None:
        """The exchange object's websocket of ``url`` closed or failed (ccxt's ``on_close``,
        ``on_error``), whatever watch waited on it: one may be waiting on none.
        ``opening_failed``: it failed before it opened (its handshake refused, a 429, a
        timeout: ccxt's ``connected`` never resolved)."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


_classes: dict[str, type] = {}

# ccxt builds every exchange object's endpoint table (``api``: 181 KiB at Binance USD-M) and
# error-code map (``exceptions``: 22 KiB) afresh from its ``describe()``. Both are the
# exchange's, the same for every account (alertd passes neither), and only read once built:
# ccxt's Python calls its endpoints through the class's generated methods, and matches an
# error's code against ``exceptions``. So the first object's pair serves every later one of
# the exchange: at 1,000 Binance accounts about 200 MB less (benchmarks.md, eleventh pass).
# Not ``options`` or ``urls``: ccxt writes into those per object.
_READ_ONLY_TABLES = ("api", "exceptions")


class _Described:
    """One exchange class's ``describe()``, built once, and its read-only tables, shared.

    ccxt's constructor starts from ``describe()``: the exchange's whole description
    (endpoints, options, fees, error codes, features), each class's literal deep-extended over
    its parent's; ccxt pro's Binance USD-M builds a whole second (REST) exchange object for
    it, the constructor's work run twice. It depends on the class alone: ccxt calls it in the
    constructor before it applies the object's config, and the description's only values not
    literal are the object's own methods (``streaming.ping`` of Bybit, OKX, Hyperliquid),
    which each copy binds to its own object. So the first object's description is kept, those
    methods unbound, and every later object gets a copy of it: new dicts and lists (ccxt
    writes into ``options`` and ``urls``), the same strings, numbers and exception classes;
    without the read-only tables, which ccxt would copy twice more only for
    :meth:`share_tables` to replace them (benchmarks.md, session 12).
    """

    def __init__(self) -> None:
        self._template: dict[str, Any] | None = None
        self._tables: dict[str, Any] | None = None

    def copy_for(self, exchange: object, build: Callable[[], Any]) -> Any:
        """``exchange``'s description: ccxt's own (``build``) for the first object, a copy
        of it, the read-only tables left out, for every later one."""
        if self._template is None:
            described = build()
            kept = {k: v for k, v in described.items() if k not in _READ_ONLY_TABLES}
            self._template = _unbound(kept, exchange)
            return described
        return _bound(self._template, exchange)

    def share_tables(self, exchange: Any) -> None:
        """Give ``exchange`` the read-only tables of the exchange's first object."""
        if self._tables is None:
            self._tables = {name: getattr(exchange, name) for name in _READ_ONLY_TABLES}
        for name, table in self._tables.items():
            setattr(exchange, name, table)


@dataclasses.dataclass(frozen=True)
class _OwnMethod:
    """A method of the described object, in a kept description: bound again to each copy's."""

    function: Any


def _unbound(value: Any, exchange: object) -> Any:
    if isinstance(value, dict):
        return {key: _unbound(item, exchange) for key, item in value.items()}
    if isinstance(value, list):
        return [_unbound(item, exchange) for item in value]
    if isinstance(value, types.MethodType) and value.__self__ is exchange:
        return _OwnMethod(value.__func__)
    return value


def _bound(value: Any, exchange: object) -> Any:
    if type(value) is dict:
        return {key: _bound(item, exchange) for key, item in value.items()}
    if type(value) is list:
        return [_bound(item, exchange) for item in value]
    if type(value) is _OwnMethod:
        return types.MethodType(value.function, exchange)
    return value


def _walked_besides_methods(exchange: object) -> frozenset[str]:
    """The names ccxt's constructor aliases (``foo_bar``, no leading or trailing underscore)
    that ``exchange``'s class lists, less its methods: those read from the class as a method
    bound to the object (a function, an implicit endpoint's ``Entry``), which ccxt aliases on
    the class itself. A static method, a value, and whatever the object holds of its own
    stay: ccxt aliases them on each object."""
    own = vars(exchange)
    return frozenset(
        name
        for name in dir(type(exchange))
        if name[0] != "_"
        and name[-1] != "_"
        and "_" in name
        and (name in own or not isinstance(getattr(exchange, name, None), types.MethodType))
    )


# whether the request this task is making is a public one (set by ``Guarded.fetch2`` for the
# ``throttle`` it calls: ccxt's limiter is told the cost only, not the endpoint)
_PUBLIC_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "alertd_public_request", default=False
)
# the weight windows' admissions of the request this task is making, held until its end
# (set by ``Guarded.fetch2``, filled by its ``throttle``: :class:`Admitted`)
_HELD: contextvars.ContextVar[list[Admitted] | None] = contextvars.ContextVar(
    "alertd_held", default=None
)


class DebtBucket(Throttler):  # type: ignore[misc]
    """ccxt's leaky bucket (an account's own limiter: ``rateLimit`` ms a unit of cost), which
    wakes once while in debt instead of once a millisecond.

    ccxt's loop admits the request at the head of its queue while the bucket holds no debt
    (tokens at 0 or more), taking the request's cost from it; in debt it sleeps ``delay``
    (1 ms), refills what the time slept earned and looks again. A reconcile of OKX's
    (account config 4, positions 2, balance 2, trade fee 4 at 110 ms a unit) is about 1.3 s
    of debt: some 1,300 wake-ups an account a minute, the largest part of a calm OKX
    account's CPU (docs/benchmarks.md, calm13). Here the wait is the debt's own refill time
    (at least ``delay``): the same admissions in the same order, never one while in debt
    (ccxt's accounting; ccxt's 1 ms polling admits up to a tick after the debt is paid).
    """

    def __init__(self, config: Any, loop: Any = None, clock: Clock = time.monotonic) -> None:
        super().__init__(config, loop)
        self.debt_waits = 0  # the sleeps taken in debt (one a request in debt, give or take)
        self.at_once = 0  # the requests admitted without the loop (:meth:`__call__`)
        # the refill's clock, monotonic seconds: the last refill is kept across an account's
        # idle minute, and ccxt's wall clock can step (back: a debt of the whole step, every
        # account's next request held for it; review of calmreq17)
        self._clock = clock
        self._refilled_at = clock() * 1000  # ms, as ccxt's bucket counts

    def _refill(self, most: float) -> None:
        """The tokens the time since the last refill earned (none for a clock that went back),
        up to ``most``: a leaky bucket's refill, which ccxt's loop also makes while it runs
        (it forgets the time it was stopped, holding an idle account's next request for a debt
        long refilled)."""
        bucket = self.config
        now = self._clock() * 1000
        earned = max(0.0, now - self._refilled_at) * bucket["refillRate"]
        bucket["tokens"] = min(bucket["tokens"] + earned, most)
        self._refilled_at = now

    def __call__(self, cost: Any = None) -> Any:
        """A request admitted at once where the loop would admit it at its first look (none
        queued, the bucket out of debt): no loop task, no turn of the event loop. A calm account's
        request (one reconcile a minute) is one; the others queue as in ccxt's.

        The idle time pays the debt off and credits nothing beyond (tokens up to 0, not the
        bucket's capacity): an idle account's burst starts as it did in ccxt's loop, which
        forgot the idle time and admitted its first request at the debt just paid, so N
        requests of cost c take c * (N - 1) units as there (Bybit's cost-5 reads, 10 a second
        per UID: 10 in a second, not 11; review of calmreq17)."""
        ccxt_self: Any = self  # ccxt's attributes, untyped
        if not ccxt_self.running and not ccxt_self.queue:
            self._refill(0.0)
            bucket = self.config
            if bucket["tokens"] >= 0:
                bucket["tokens"] -= bucket["cost"] if cost is None else cost
                self.at_once += 1
                return _admitted_at_once(None)
        return super().__call__(cost)

    async def leaky_bucket_loop(self) -> None:
        ccxt_self: Any = self  # ccxt's attributes, untyped
        bucket, queue = ccxt_self.config, ccxt_self.queue
        while ccxt_self.running:
            future, cost = queue[0]
            if bucket["tokens"] >= 0:
                bucket["tokens"] -= bucket["cost"] if cost is None else cost
                if not future.done():
                    future.set_result(None)
                queue.popleft()
                await asyncio.sleep(0)  # the admitted request runs before the next is looked at
                if not queue:
                    ccxt_self.running = False
                continue
            refill_ms = -bucket["tokens"] / bucket["refillRate"]
            self.debt_waits += 1
            await asyncio.sleep(max(bucket["delay"], refill_ms / 1000))
            self._refill(bucket["capacity"])


def _admitted_at_once(result: Any) -> asyncio.Future[Any]:
    """What a limiter's call gives a request admitted without its loop: a future already done
    (ccxt's limiter gives a future; awaiting a done one does not suspend)."""
    future: asyncio.Future[Any] = asyncio.Future()
    future.set_result(result)
    return future


def _guarded_class(exchange_id: str) -> type:
    if exchange_id in _classes:
        return _classes[exchange_id]
    base = getattr(ccxtpro, exchange_id)

    spec = get_spec(exchange_id)
    request_weight = spec.capabilities.request_weight
    reset_header = spec.capabilities.rate_limit_reset_header
    # the frames of streams alertd watches itself, which ccxt has no handler for (Binance's
    # asset index): resolved here for the watch that waits on their hash
    stream_hash = spec.adapter.stream_hash if spec.adapter is not None else None
    refused_login = spec.adapter.refused_login if spec.adapter is not None else None
    accepted_login = spec.adapter.accepted_login if spec.adapter is not None else None
    other_host_apis = spec.adapter.other_host_apis if spec.adapter is not None else frozenset()

    class Guarded(base):  # type: ignore[misc, valid-type]
        alertd_sink: FrameSink | None = None

        alertd_described = _Described()

        # the names ccxt's constructor walks that are not the class's methods, once its first
        # object walked them all (:meth:`__dir__`)
        alertd_walked: frozenset[str] | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # every object gets the endpoint and error tables its description left out (an
            # object built without make_exchange too: ccxt maps an error with ``exceptions``)
            super().__init__(*args, **kwargs)
            self.alertd_described.share_tables(self)
            if type(self).alertd_walked is None:
                type(self).alertd_walked = _walked_besides_methods(self)

        def __dir__(self) -> list[str]:
            """ccxt's constructor walks ``dir(self)`` (its only use of it) to alias each
            ``foo_bar`` as ``fooBar``: a method on the class, anything else on the object. The
            class's methods (about 1,500 of Binance's 4,000 names, its implicit endpoints) are
            aliased on the class by its first object; a later one's walk needs only its own
            attributes and the class's others (static methods, values), as ccxt sets those on
            each object: its walk (``dir``, a getattr and a setattr of every name) was 3 to 4
            of the 14 CPU s 1,000 Binance accounts' objects took under cProfile."""
            walked = type(self).alertd_walked
            if walked is None:
                return list(super().__dir__())
            return sorted(walked.union(self.__dict__))

        def init_throttler(self, cost: Any = None) -> None:
            """The account's own limiter: ccxt's bucket, waking once while in debt."""
            ccxt_self: Any = self  # ccxt's attributes, untyped
            ccxt_self.throttler = DebtBucket(ccxt_self.tokenBucket, ccxt_self.asyncio_loop)

        def describe(self) -> Any:
            """ccxt's description of the exchange, built once (:class:`_Described`)."""
            return self.alertd_described.copy_for(self, super().describe)

        def calculate_rate_limiter_cost(
            self, api: Any, method: Any, path: Any, params: Any, config: Any = None
        ) -> Any:
            """The exchange's documented weight where ccxt's own cost understates it."""
            if request_weight is not None:
                name = api[0] if isinstance(api, list | tuple) and api else str(api)
                weight = request_weight(name, str(method), str(path), params or {})
                if weight is not None:
                    return weight
            return super().calculate_rate_limiter_cost(api, method, path, params, config or {})

        # the headers of the answer ccxt's ``fetch`` is reading: it calls handle_errors and
        # then handle_http_status_code with nothing between (no await), so these are that
        # answer's. ccxt's exceptions carry no headers, and its ``last_response_headers`` is
        # read later, after other accounts' answers on the same object may have replaced it
        alertd_answer_headers: Any = None

        # the epoch clock a 429's reset time is read on: its host's (the feeds', passed in:
        # :meth:`IpBudget.adopt`), alone the system's
        alertd_wall_clock: Clock = staticmethod(time.time)
        # the limits of the host it sends to (:meth:`IpBudget.adopt`); None: alone
        alertd_ip_budget: IpBudget | None = None
        # alone (no shared pool), the address its own session's connections leave from
        alertd_source_address: str | None = None
        # the host's pace of websocket openings, where every socket this object dials takes a
        # turn in it at the dial (a mark hub's public exchange: MarkHub._exchange); None: its
        # openings are paced before the watch (an account's, whose login is signed after its
        # turn: AccountFeed._opening_turn), or not at all
        alertd_public_openings: OpeningPacer | None = None
        # the answers alike for every account of its exchange, parsed once (its shared group's,
        # :meth:`SharedExchange.adopt`); None: alone, each parsed
        alertd_answers: AlikeAnswers | None = None
        # how long a socket it drops waits for the peer's CLOSE reply (a test that must see
        # what happens while a drop still waits passes a longer one in its exchange factory)
        alertd_close_reply_wait_s: float = CLOSE_REPLY_WAIT_S

        def open(self, lazy: bool = False) -> Any:
            """ccxt's own session, bound to the source address where one is configured
            (`alertd check --keys`, `alertd snapshot`: a key whitelisted for that address only
            would be refused from another); ccxt still owns it and closes it. None built for a
            request's lazy open after close(), which ccxt's open refuses
            (ExchangeClosedByUser, ccxt issue #27418): it would be left open, nobody's."""
            address = self.alertd_source_address
            ccxt_self: Any = self  # ccxt's attributes, untyped
            refused = lazy and ccxt_self.closed_by_user
            if (
                address is not None
                and not refused
                and ccxt_self.own_session
                and ccxt_self.session is None
            ):
                if ccxt_self.ssl_context is None:
                    ccxt_self.ssl_context = new_ssl_context()
                connector = bound_connector(ccxt_self.ssl_context, address)
                ccxt_self.tcp_connector = connector
                ccxt_self.session = aiohttp.ClientSession(
                    connector=connector, trust_env=ccxt_self.aiohttp_trust_env
                )
            return super().open(lazy)

        def parse_json(self, http_response: Any) -> Any:
            """ccxt's parse of an answer's body; one asked within ``alike_answers`` (the
            adapters' reads of answers alike for most accounts) parsed once for all of them
            (:class:`~alertd.feeds.adapter.AlikeAnswers`)."""
            answers = self.alertd_answers
            if answers is None:
                return super().parse_json(http_response)
            return answers.parse(http_response, super().parse_json)

        async def fetch2(
            self, path: Any, api: Any = "public", method: Any = "GET", *rest: Any, **kw: Any
        ) -> Any:
            """ccxt's request, its weight held in the host's window until it ended
            (:class:`RollingWindow`)."""
            held: list[Admitted] = []
            token = _HELD.set(held)
            try:
                return await self._alertd_fetch2(path, api, method, *rest, **kw)
            finally:
                _HELD.reset(token)
                for admitted in held:
                    admitted.ended()

        async def _alertd_fetch2(
            self, path: Any, api: Any, method: Any, *rest: Any, **kw: Any
        ) -> Any:
            """A public request (OKX's, Gate's ``api[0]``) waits for the host's public pause
            first, and a 429 on it pauses the host's public requests."""
            budget = self.alertd_ip_budget
            name = api[0] if isinstance(api, list | tuple) and api else api
            if name in other_host_apis:
                # another host's request (Binance's /sapi): not this host's budget
                token = _OTHER_HOST.set(True)
                try:
                    return await super().fetch2(path, api, method, *rest, **kw)
                finally:
                    _OTHER_HOST.reset(token)
            if budget is None or name != "public":
                return await super().fetch2(path, api, method, *rest, **kw)
            await budget.resumed(public=True)
            public = _PUBLIC_REQUEST.set(True)
            try:
                return await super().fetch2(path, api, method, *rest, **kw)
            except ccxt.RateLimitExceeded as exc:
                budget.public_refused(retry_after_of(exc))
                raise
            finally:
                _PUBLIC_REQUEST.reset(public)

        async def throttle(self, cost: Any = None) -> Any:
            """ccxt's limiter, and the host's pause (a ban, a 429's Retry-After) before and
            after it: a request that waited its turn in the limiter while the pause began
            waits for its end too; a public one for the end of the host's public pause too
            (begun by a 429 on another public request while it waited)."""
            if _OTHER_HOST.get():
                # another host's request: neither this host's pause nor its window (ccxt's
                # limiter, shared by the host's objects) holds or counts it
                return None
            budget = self.alertd_ip_budget
            if budget is not None:
                await budget.resumed()
            result = await super().throttle(cost)
            held = _HELD.get()
            if held is not None and isinstance(result, Admitted):
                result.holds()  # until fetch2 tells its end
                held.append(result)
            if budget is not None:
                await budget.resumed(public=_PUBLIC_REQUEST.get())
            return result

        def handle_errors(
            self,
            code: Any,
            reason: Any,
            url: Any,
            method: Any,
            headers: Any,
            body: Any,
            *rest: Any,
        ) -> Any:
            self.alertd_answer_headers = headers
            try:
                return super().handle_errors(code, reason, url, method, headers, body, *rest)
            except ccxt.BaseError as exc:
                _carry_retry_after(exc, headers, reset_header, self.alertd_wall_clock)
                _tell_host(self.alertd_ip_budget, exc, code, headers, body)
                raise

        def handle_http_status_code(
            self, code: Any, reason: Any, url: Any, method: Any, body: Any
        ) -> Any:
            headers, self.alertd_answer_headers = self.alertd_answer_headers, None
            try:
                return super().handle_http_status_code(code, reason, url, method, body)
            except ccxt.BaseError as exc:
                _carry_retry_after(exc, headers, reset_header, self.alertd_wall_clock)
                _tell_host(self.alertd_ip_budget, exc, code, headers, body)
                raise

        def handle_message(self, client: Any, message: Any) -> None:
            sink = self.alertd_sink
            if sink is not None:
                try:
                    sink.on_frame(message)
                except Exception as exc:
                    # raised here, it would leave ccxt's receive loop and end the stream
                    # with no error a watch sees: the frame is skipped, the stream goes on
                    sink.on_malformed("frame", describe(exc))
            own = stream_hash(message) if stream_hash is not None else None
            if own is not None:
                client.resolve(message, own)
                return
            try:
                super().handle_message(client, message)
            except Exception as exc:  # ccxt's handler choked on a garbled frame: skip it
                if sink is None:
                    raise
                sink.on_malformed("unparsable frame", f"{type(exc).__name__}: {exc}")
            login = refused_login(message) if refused_login is not None else None
            if login is not None:  # the next watch logs in again (ExchangeAdapter)
                client.subscriptions.pop(login, None)
            elif sink is not None and accepted_login is not None and accepted_login(message):
                sink.on_login(str(client.url))

        def client(self, url: str) -> Any:
            client = super().client(url)
            if not getattr(client, "alertd_guarded", False):
                decode = client.handle_text_or_binary_message
                exchange = self

                def guarded_decode(data: Any) -> None:
                    try:
                        decode(data)
                    except ValueError as exc:  # not JSON: json.JSONDecodeError is a ValueError
                        sink = exchange.alertd_sink
                        if sink is None:
                            raise
                        sink.on_malformed("invalid JSON", f"{exc}: {str(data)[:80]!r}")

                client.handle_text_or_binary_message = guarded_decode
                client.alertd_guarded = True
                pacer = self.alertd_public_openings
                if pacer is not None:
                    client.open = _paced_open(client, pacer)
                client.connected.add_done_callback(lambda done: self._alertd_opened(client, done))
            return client

        async def close(self) -> Any:
            """ccxt's close; a socket still waiting for its turn to dial, or its backoff
            before it (``_paced_open``), gives its place on and never dials (ccxt's close
            knows no such wait)."""
            for client in list((self.clients or {}).values()):
                waiting: asyncio.Task[None] | None = getattr(client, "alertd_turn_wait", None)
                if waiting is not None:
                    waiting.cancel()
            return await super().close()

        def on_error(self, client: Any, error: Any) -> None:
            # ccxt resolves ``connected`` once the handshake succeeded, never on a failed one
            # (``WsClient.open``): an error before it is the opening's own
            dialling = not client.connected.done()
            current = self._alertd_current(client)  # before ccxt forgets it
            super().on_error(client, error)
            self._alertd_closed(client, dialling, current)

        def on_close(self, client: Any, error: Any) -> None:
            dialling = not client.connected.done()
            current = self._alertd_current(client)
            super().on_close(client, error)
            self._alertd_closed(client, dialling, current)

        def _alertd_current(self, client: Any) -> bool:
            """Whether ``client`` is the exchange's socket of its URL: not one alertd dropped
            (drop_connection pops it, its streams' watches failed then), whose URL may have
            a new socket dialling in a newer turn since."""
            current: Any = (self.clients or {}).get(str(client.url))
            return current is client

        def _alertd_closed(self, client: Any, dialling: bool, current: bool) -> None:
            sink = self.alertd_sink
            if sink is not None and current:
                # a dropped socket's end (its dial failing late, a 429 at its handshake) is
                # not the URL's: it would end the opening of the socket dialling now
                sink.on_closed(str(client.url), dialling)

        def _alertd_opened(self, client: Any, connected: Any) -> None:
            sink = self.alertd_sink
            if sink is None or connected.cancelled() or connected.exception() is not None:
                return
            # a socket dropped while it dialled (drop_connection) opens outside
            # ``clients`` and is closed at once: not the opening in progress of its URL
            if self._alertd_current(client):
                sink.on_open(str(client.url))

    Guarded.__name__ = f"Guarded_{exchange_id}"
    _classes[exchange_id] = Guarded
    return Guarded


def _paced_open(client: Any, pacer: OpeningPacer) -> Callable[..., Awaitable[None]]:
    """ccxt's ``WsClient.open`` of a public socket (``client``'s), in a turn of the host's
    pace: the turn's opening ends when the dial does (``open`` returns once the socket is open
    or its failure told), its place counted a window from then. The mark hubs' turns go ahead
    of the accounts' queued ones (``first``): they carry every account's marks. A client
    dropped while it waits for its turn (a stale stream's reconnect) gives its place on and
    never dials (:func:`drop_connection`).

    ccxt's dial backoff of the URL (``backoff_delay``: ccxt 4.5's ``ws_dial_delay``, after a
    failed dial up to 30 s, or the failed handshake's Retry-After) is slept before the turn,
    not in it (ccxt's ``open`` sleeps it first thing): held through it, the place kept the
    host's other openings waiting, and past ``held_at_most_s`` it was counted ended while the
    real dial came later, outside any place (review of ws13). The dial then has no backoff
    left to sleep. A client dropped in its backoff never dials either."""
    dial = client.open

    async def paced(session: Any, backoff_delay: float = 0) -> None:
        client.alertd_turn_wait = asyncio.current_task()
        try:
            if backoff_delay > 0:
                await pacer.pause(backoff_delay)
            opening = await pacer.turn(first=True)
        finally:
            client.alertd_turn_wait = None
        try:
            await dial(session, 0)
        finally:
            opening.ended()

    return paced


def dial_backoff_s(exchange: Any, picks: Callable[[str], bool]) -> float:
    """The longest dial backoff ccxt keeps for the websocket URLs of ``exchange`` that
    ``picks`` (seconds; 0 where none): ccxt 4.5 counts a failed dial against its URL
    (``on_error``: ``ws_dial_backoff``, up to 30 s, or the handshake's Retry-After) and its
    next watch sleeps what is left of it (``ws_dial_delay``) in ``WsClient.open``, before
    dialling. An account's turn to open is taken before its watch (:class:`OpeningPacer`):
    sleeping this first keeps the place from being held through ccxt's sleep."""
    backoffs = getattr(exchange, "ws_dial_backoff", None) or {}
    delays = [float(exchange.ws_dial_delay(url)) for url in list(backoffs) if picks(str(url))]
    return max(delays, default=0.0)


def new_ssl_context() -> ssl.SSLContext:
    """What ccxt builds for every exchange object (certifi's CA bundle; about 0.8 MB and 17 ms
    each): one serves every account."""
    return ssl.create_default_context(cafile=certifi.where())


class RestSlots:
    """``count`` concurrent slots for one exchange's REST work, bootstraps served first.

    An account not live yet is blind; a live one streams and its REST work (the resync after
    its streams subscribe, reconciles, stop reads, tier refreshes) is a safety net. With one
    FIFO queue a bootstrap retried after a timeout waited behind the resyncs every account
    live by then had queued (1,000 Binance accounts: hundreds, 16 weight each at 36 a
    second): it stayed blind for minutes after the others were live. Bootstraps queue ahead of
    the rest, each queue in order of arrival, except that a bootstrap retried after a failure
    goes to the front of its queue: its turn came once already (behind the 500 accounts still
    waiting, it would be blind until the last of them is live). A slot freed goes straight to
    the next waiter, so nobody overtakes the queues between the release and the wake-up.
    """

    def __init__(self, count: int) -> None:
        self._free = count
        # bootstraps, then the rest; a waiter is a future its slot is handed over with
        self._queues: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),
            collections.deque(),
        )

    async def acquire(self, bootstrap: bool, again: bool = False) -> None:
        """Wait for a slot: as a bootstrap (``again``: retried after a failure) or not."""
        if self._free > 0 and not any(self._queues):
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues[0 if bootstrap else 1]
        if bootstrap and again:
            queue.appendleft(waiter)
        else:
            queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot in the turn it was cancelled: pass it on
            raise

    def release(self) -> None:
        for queue in self._queues:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():  # a cancelled waiter stays queued until reached here
                    waiter.set_result(None)
                    return
        self._free += 1


@dataclasses.dataclass(frozen=True, slots=True)
class PublicPause:
    """A 429 on a public endpoint of an exchange limiting those per IP (OKX, Gate): every
    public request of the host waits until then (monotonic ``until``, epoch ``until_wall``);
    the private ones go on."""

    host: str
    until: float
    until_wall: float

    def said(self, wall: float) -> str:
        """``okx public requests paused 12 s more (429)``, at epoch ``wall`` (seconds: OKX's
        public limits count over 2 s, Gate's reset within its 10 s window)."""
        left = max(0.0, self.until_wall - wall)
        return f"{self.host} public requests paused {left:.0f} s more (429)"


@dataclasses.dataclass(frozen=True, slots=True)
class HostBan:
    """An exchange's ban of this host's IP: until when, on the feeds' monotonic clock and in
    epoch seconds (what the operator is told), and the HTTP status it was answered with;
    ``holds``: what alertd reads from the host and is kept as last read meanwhile, where that
    is one shared read and not the accounts' own requests (Binance's /sapi host: the portfolio
    margin collateral rates); None: every account of the host waits."""

    host: str
    status: int
    until: float
    until_wall: float
    holds: str | None = None

    def said(self, wall: float) -> str:
        """``binanceusdm IP banned until 09:42 UTC (418)``, at epoch seconds ``wall``."""
        return f"{self.host} IP banned until {fmt.utc_until(self.until_wall, wall)} ({self.status})"


# The share of an exchange's per-IP cap on websocket openings the accounts' private streams
# take (OKX's 3 a second: 2): the rest is for what opens unpaced from the same IP, the mark
# hubs' public connections and the other tools a trader runs there.
OPENING_CAP_SHARE = 0.8
# How long an opening holds its place at most when nothing ends it (a watch that neither opened
# nor failed): past ccxt's own 10 s connection timeout, and a listen key's REST read before it.
OPENING_HELD_AT_MOST_S = 30.0


class Opening:
    """One websocket opening's place in its host's :class:`OpeningPacer`: held from its turn
    until :meth:`ended` (the socket opened, or the attempt failed), and a window after."""

    __slots__ = ("_pacer", "turn_at")

    def __init__(self, pacer: OpeningPacer, turn_at: float) -> None:
        self._pacer = pacer
        self.turn_at = turn_at

    def ended(self) -> None:
        """The opening is over, opened or failed (again: nothing)."""
        self._pacer.ended(self)


class OpeningPacer:
    """Turns to open a websocket on one exchange host from one IP, at most ``count`` in any
    ``window_s``, in order of asking (a turn asked ``first`` ahead of the others).

    The exchange counts an opening when its handshake arrives, somewhere between the turn and
    the end of the attempt as alertd sees it; so each opening holds its place from its turn
    until a window after it ended: no window of the exchange's can hold more than ``count``,
    however long the handshakes take (a place given back a window after the turn alone let
    slow handshakes bunch up). An opening nothing ends holds it ``held_at_most_s`` at most.
    A turn is taken before ccxt signs the login it sends on the socket (OKX's timestamp,
    Bybit's ``expires``): a login signed before the wait expired in it (OKX 60006,
    docs/scaling.md)."""

    def __init__(
        self,
        count: int,
        window_s: float,
        clock: Clock,
        sleep: Sleep,
        held_at_most_s: float = OPENING_HELD_AT_MOST_S,
    ) -> None:
        if count < 1 or window_s <= 0 or held_at_most_s <= 0:
            raise ValueError("an opening pacer needs count >= 1 and positive times")
        self.count = count
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._held_at_most_s = held_at_most_s
        self._open: dict[Opening, None] = {}  # in progress, in order of their turns
        self._ended: list[float] = []  # when the openings of the last window ended
        self._waiters: collections.deque[asyncio.Future[Opening]] = collections.deque()
        self._first: collections.deque[asyncio.Future[Opening]] = collections.deque()
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = float("inf")
        self.turns = 0  # turns given, since the start

    @classmethod
    def of(cls, cap: tuple[int, float], clock: Clock, sleep: Sleep) -> OpeningPacer:
        """The pacer of an exchange's documented cap (openings, seconds), at
        ``OPENING_CAP_SHARE`` of it."""
        count, window_s = cap
        return cls(max(1, int(count * OPENING_CAP_SHARE)), window_s, clock, sleep)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` on the pacer's clock, outside any turn (a dial's backoff)."""
        await self._sleep(seconds)

    def waiting(self) -> int:
        """How many wait for their turn."""
        return sum(not w.done() for w in (*self._first, *self._waiters))

    async def turn(self, first: bool = False) -> Opening:
        """Wait for a turn to open one websocket; the caller ends the opening it got.

        ``first``: the next place, ahead of the turns queued without it (in order of asking
        among those with it): a mark hub's public connection carries the marks of every
        account on the host, so it does not wait behind a storm of private openings (200 OKX
        accounts' 400 at 2 a second: 200 s without a mark for any of them)."""
        ahead = self._first if first else (*self._first, *self._waiters)
        if not any(not w.done() for w in ahead) and self._room(self._clock()):
            return self._give(self._clock())
        waiter: asyncio.Future[Opening] = asyncio.get_running_loop().create_future()
        (self._first if first else self._waiters).append(waiter)
        self._arm()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                waiter.result().ended()  # given a turn as it was cancelled: spent unused
            raise

    def ended(self, opening: Opening) -> None:
        if opening in self._open:
            del self._open[opening]
            self._ended.append(self._clock())
            self._dispatch()

    def _give(self, now: float) -> Opening:
        opening = Opening(self, now)
        self._open[opening] = None
        self.turns += 1
        return opening

    def _room(self, now: float) -> bool:
        """Whether an opening may start at ``now``: fewer than ``count`` in progress or ended
        within the last window (one held too long counted as ended when its hold ran out)."""
        held = self._held_at_most_s
        for opening in [o for o in self._open if now - o.turn_at >= held]:
            del self._open[opening]
            self._ended.append(opening.turn_at + held)
        self._ended = [at for at in self._ended if now - at < self.window_s]
        return len(self._open) + len(self._ended) < self.count

    def _next_room_at(self) -> float:
        """When a place frees without anything ending meanwhile."""
        held = self._held_at_most_s
        ends = [*self._ended, *(o.turn_at + held for o in self._open)]
        return min(ends) + self.window_s

    def _dispatch(self) -> None:
        now = self._clock()
        for queue in (self._first, self._waiters):
            while queue:
                if queue[0].done():  # cancelled while waiting
                    queue.popleft()
                elif self._room(now):
                    queue.popleft().set_result(self._give(now))
                else:
                    break
            if queue:  # no room left: the rest wait behind it
                break
        self._arm()

    def _arm(self) -> None:
        """Wake the queue when its next place frees (sooner than the wake-up set, if any)."""
        if not self._waiters and not self._first:
            return
        at = self._next_room_at()
        if self._timer is not None and not self._timer.done():
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().create_task(self._wake(at))

    async def _wake(self, at: float) -> None:
        # until ``at`` on the clock, however late this task starts (a sleep may end a little
        # early on some clocks: a few more, bounded)
        for _ in range(8):
            left = at - self._clock()
            if left <= 0:
                break
            await self._sleep(left)
        self._timer = None
        self._timer_at = float("inf")
        self._dispatch()


class IpBudget:
    """The limiter of what one IP may send to one exchange's host, shared by every group of
    accounts that reaches that host (the groups differ by ccxt options, the IP does not: two
    groups with a window each would send twice the cap, and Bybit bans the IP past it). Its
    limiters are made on first use, on the running loop.

    It is also where the host waits when the exchange says so, every account of it at once:
    an IP ban (Binance's 418) until the ban's end, a 429 for its Retry-After (Binance:
    "failing to back off after receiving 429s will result in an automated IP ban"). Every REST
    request of the host's exchange objects waits for the pause to end (their ``throttle``);
    nothing is stopped, and everything resumes by itself."""

    def __init__(
        self,
        *,
        rest_limit_per_ip: bool,
        rest_weight_per_minute: float | None = None,
        weight_window_s: float = 60.0,
        requests_per_ip: tuple[int, float] | None = None,
        ip_ban: IpBanAnswer | None = None,
        ws_openings_per_ip: tuple[int, float] | None = None,
        public_limit_window_s: float | None = None,
        host: str = "exchange",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall_clock: Clock = time.time,
    ) -> None:
        """The exchange's limits (:class:`~alertd.exchanges.spec.Capabilities`, of the same
        names; :meth:`of` reads them; ``weight_window_s``: the window the weight a minute
        counts over, a test's shorter); ``host``: what the log and the operator call it; the
        feeds' clocks and sleep (they time the pauses and pace the websocket openings)."""
        self.host = host
        self._ip_ban = ip_ban
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        # monotonic: until when every request waits (-inf: none), and the ban behind it;
        # until when the public ones wait (a public endpoint's 429 where those are per IP)
        self.paused_until = -float("inf")
        self.public_paused_until = -float("inf")
        self.public_pause: PublicPause | None = None  # the one going on (or just over)
        self._public_limit_window_s = public_limit_window_s
        self.ban: HostBan | None = None
        self.rest_limit_per_ip = rest_limit_per_ip
        self._weight_per_minute = rest_weight_per_minute
        self._weight_window_s = weight_window_s  # its minute (a test's shorter)
        self._requests_per_ip = requests_per_ip
        self._ip_window: Any = None
        self._throttler: Any = None
        # the accounts of the host (every group's) waiting for or in their bootstrap, by
        # whether it is retried after a failure (True) or their first try (False), and when
        # (monotonic) the last first try ended (:meth:`bootstrap`)
        self._bootstraps = {False: 0, True: 0}
        self._first_bootstraps_ended_at = -float("inf")
        # when (the feeds' clock) one of its accounts last bootstrapped or first opened its
        # private stream (None: none yet): its start's real progress, which a paced start's
        # feed-down grace follows where its estimate falls short (:meth:`start_progressed`)
        self.start_progress_at: float | None = None
        # the turns of the accounts' private websocket openings (None: the exchange caps none)
        self.openings = (
            None
            if ws_openings_per_ip is None
            else OpeningPacer.of(ws_openings_per_ip, clock, sleep)
        )

    @classmethod
    def of(
        cls,
        capabilities: Capabilities,
        host: str = "exchange",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall_clock: Clock = time.time,
    ) -> IpBudget:
        """The budget of an exchange with these capabilities."""
        return cls(
            rest_limit_per_ip=capabilities.rest_limit_per_ip,
            rest_weight_per_minute=capabilities.rest_weight_per_minute,
            requests_per_ip=capabilities.requests_per_ip,
            ip_ban=capabilities.ip_ban,
            ws_openings_per_ip=capabilities.ws_openings_per_ip,
            public_limit_window_s=capabilities.public_limit_window_s,
            host=host,
            clock=clock,
            sleep=sleep,
            wall_clock=wall_clock,
        )

    @contextlib.contextmanager
    def bootstrap(self, again: bool) -> Iterator[None]:
        """One account's bootstrap (``again``: retried after a failure), from its wait for a
        REST slot to its end, for as long as the block runs."""
        self._bootstraps[again] += 1
        try:
            yield
        finally:
            self._bootstraps[again] -= 1
            if not again and not self._bootstraps[False]:
                self._first_bootstraps_ended_at = self._clock()

    def start_progressed(self, at: float) -> None:
        """One of the host's accounts took a step of its start at ``at`` (the feed's clock):
        its bootstrap went through, or its private stream first opened."""
        if self.start_progress_at is None or at > self.start_progress_at:
            self.start_progress_at = at

    @property
    def bootstrapping(self) -> int:
        """The accounts of the host waiting for or in their bootstrap, first tries and retries:
        periodic reconciles give way to them, as the start's pace counted them on this budget."""
        return self._bootstraps[False] + self._bootstraps[True]

    def reconciles_held_until(self, now: float) -> float:
        """Until when (monotonic) reconciles that gave way to the host's bootstraps confirmed
        no account's private streams: ``now`` while a first try runs, else when the last one
        ended (-inf: never). A retry does not hold them: one that keeps failing would otherwise
        mask every live account's stale streams for as long as it fails (its end moved at each
        try)."""
        return now if self._bootstraps[False] else self._first_bootstraps_ended_at

    def banned(self) -> HostBan | None:
        """The ban of this host's IP while it lasts (its end passed: None)."""
        ban = self.ban
        if ban is not None and ban.until <= self._clock():
            self.ban = ban = None
            log.info("%s: the IP ban is over: every account of it resumes", self.host)
        return ban

    def restore_ban(self, status: int, until_wall: float) -> None:
        """A ban met before a restart (epoch seconds ``until_wall``): the host waits for its
        end again, on this process's clock (nothing if it is over), at most ``BAN_MAX_S``
        as any ban met live (a wall clock set back meanwhile, a state file edited)."""
        left = until_wall - self._wall_clock()
        if left > 0:
            self._pause(min(left, BAN_MAX_S), status)

    async def resumed(self, public: bool = False) -> None:
        """Return once no pause holds the host's requests (``public``: its public ones, which
        its public pause holds too), at once when none does."""
        # one sleep per pause: again only where another answer moved its end meanwhile
        for _ in range(MAX_PAUSES_WAITED):
            until = max(self.paused_until, self.public_paused_until if public else -math.inf)
            left = until - self._clock()
            if left <= 0:
                return
            await self._sleep(left)

    def public_refused(self, wait_s: float) -> None:
        """A 429 on a public endpoint, where those are limited per IP and the private ones per
        user (OKX, Gate): every public request of the host waits ``wait_s`` (the answer's
        Retry-After or reset), else the limits' window; the private ones go on."""
        window = self._public_limit_window_s
        if window is None:
            return
        now = self._clock()
        seconds = wait_s or window
        if self.public_paused_until <= now:
            log.warning(
                "%s: a public endpoint rate limited (429), asked to wait %.0f s: every public "
                "request of this IP waits",
                self.host,
                seconds,
            )
        if now + seconds > self.public_paused_until:
            self.public_pause = PublicPause(self.host, now + seconds, self._wall_clock() + seconds)
        self.public_paused_until = max(self.public_paused_until, now + seconds)

    def public_paused(self) -> PublicPause | None:
        """The pause of the host's public requests while it lasts (:meth:`public_refused`):
        shown in ``/status`` and ``alertd status`` (the marks streamed go on; what waits is
        read over REST: tier tables, catalogues, order books where not streamed)."""
        pause = self.public_pause
        if pause is not None and pause.until <= self._clock():
            self.public_pause = pause = None
        return pause

    def refused(self, status: int, headers: Mapping[object, object], body: str) -> None:
        """An answer refusing a request: a ban of the IP pauses the host until its end, a 429
        with a Retry-After for that long where the exchange limits the IP's requests; any
        other refusal is the request's own (where the limits are per user or key, OKX's and
        Gate's private ones, one account's 429 is its own: its retry waits the Retry-After,
        ``retry_delay``, and the other accounts of the IP go on)."""
        ban = self._ip_ban
        if ban is not None and status == ban.status and ban.text.lower() in body.lower():
            self._pause(self._ban_s(ban, headers, body), status)
        elif status == 429 and (self.rest_limit_per_ip or self._requests_per_ip is not None):
            wait = retry_after_in(headers, EXCHANGE_MAX_RETRY_AFTER_S)
            if wait:
                self._pause(wait, None)

    def _ban_s(self, ban: IpBanAnswer, headers: Mapping[object, object], body: str) -> float:
        """How long the ban lasts: its Retry-After, else the end the body gives, else the
        exchange's usual ban; at most ``BAN_MAX_S``."""
        wait = retry_after_in(headers, BAN_MAX_S)
        if wait:
            return wait
        found = re.search(ban.until_ms, body) if ban.until_ms is not None else None
        if found is not None:
            left = int(found.group(1)) / 1000 - self._wall_clock()
            if left > 0:
                return min(left, BAN_MAX_S)
        return ban.lasts_s

    def _pause(self, seconds: float, banned: int | None) -> None:
        now = self._clock()
        until = now + seconds
        if banned is not None:
            before = self.banned()
            if before is None or until > before.until:
                wall = self._wall_clock() + seconds
                self.ban = HostBan(self.host, banned, until, wall)
                if before is None:  # degraded, not our bug: WARNING
                    log.warning(
                        "%s: this IP is banned until %s (%d): every request to it waits until "
                        "then, and every account of it resumes by itself",
                        self.host,
                        fmt.utc_until(wall, self._wall_clock()),
                        banned,
                    )
        elif self.paused_until <= now:
            log.warning(
                "%s: rate limited (429), asked to wait %.0f s: every account of this IP waits",
                self.host,
                seconds,
            )
        self.paused_until = max(self.paused_until, until)

    def adopt(self, exchange: Any) -> None:
        """Give a new exchange object the shared rate limiter (where limits are per IP), or
        the IP's cap on top of its own (where the exchange caps an IP's requests too), and the
        host's pauses."""
        exchange.alertd_ip_budget = self
        # a reset header's epoch time is read on the feeds' wall clock (:func:`_carry_retry_after`)
        exchange.alertd_wall_clock = self._wall_clock
        if self._requests_per_ip is not None and not self.rest_limit_per_ip:
            if self._ip_window is None:
                count, window_s = self._requests_per_ip
                self._ip_window = request_window(count, window_s, exchange.asyncio_loop)
            exchange.throttler = BothLimits(exchange.throttler, self._ip_window)
            return
        if not self.rest_limit_per_ip:
            return
        if self._throttler is None:
            self._throttler = exchange.throttler
            if self._weight_per_minute is not None:
                self._throttler = weight_window(
                    self._weight_per_minute,
                    exchange.asyncio_loop,
                    self._weight_window_s,
                    self._clock,
                    self._sleep,
                )
        exchange.throttler = self._throttler


def bound_connector(
    ssl_context: ssl.SSLContext, address: str | None, limit: int = 100
) -> aiohttp.TCPConnector:
    """An aiohttp connector as ccxt makes its own (dual stack, happy eyeballs), its connections
    sent from ``address`` where one is given (None: the system's choice), and then only to
    hosts of its family (an IPv4 source cannot reach an IPv6 address); ``limit``: its cap on
    connections (aiohttp's default 100; 0: none)."""
    family = socket.AF_UNSPEC
    if address is not None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return aiohttp.TCPConnector(
        ssl=ssl_context,
        limit=limit,
        enable_cleanup_closed=True,
        family=family,
        happy_eyeballs_delay=0,
        local_addr=None if address is None else (address, 0),
    )


class SharedExchange:
    """What the accounts that reach one exchange the same way share; the feed manager owns it.

    - One market catalogue: loaded once by a public exchange object of its own, handed to
      every account's ccxt object with ccxt's ``set_markets_from_exchange`` (the same dicts,
      not a parsed copy each: about 9 MB per account at Binance's 550 markets), refreshed by
      :meth:`refresh_markets`.
    - One HTTP connection pool (an aiohttp session) for REST and websockets. ccxt does not
      close a session it was given (``own_session`` is False): closing an account's exchange
      leaves it open for the others; :meth:`close` closes it, last.
    - One SSL context, given by the manager (one for every exchange).
    - Where the exchange limits requests per IP (``Capabilities.rest_limit_per_ip``: Binance's
      request weight, Hyperliquid's), one ccxt rate limiter, so that a thousand accounts
      together stay within what one of them may send; elsewhere each account keeps its own
      (with the IP's cap on top where there is one): the :class:`IpBudget` of its host, which
      other groups reaching that host share.
    - A bound on concurrent REST work (bootstraps, resyncs, reconciles), bootstraps served
      first: :meth:`rest_slot`.
    """

    def __init__(
        self,
        name: str,
        build_public: Callable[[SharedExchange], Any],
        ssl_context: ssl.SSLContext,
        *,
        rest_concurrency: int,
        ip_budget: IpBudget,
        source_address: str | None = None,
        catalogue_of: SharedExchange | None = None,
    ) -> None:
        """``source_address``: the machine's address its connections leave from (None: the
        system's choice); ``catalogue_of``: the group of the same accounts on another source
        address, whose market catalogue and public tables this one uses (one per exchange,
        not per address: they are public, and the same from every IP)."""
        self.name = name
        # the limits of its host from its source address, shared with the other groups that
        # reach that host from there
        self.ip_budget = ip_budget
        self.source_address = source_address
        self._catalogue_of = catalogue_of
        self.ssl_context = ssl_context
        self._build_public = build_public
        self.rest_concurrency = rest_concurrency  # its REST slots
        self._rest = RestSlots(rest_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._catalogue: Any = None  # the public exchange object that holds the markets
        self._loading = asyncio.Lock()
        # every exchange object given the catalogue, to re-point after a refresh
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        # what accounts derive from the catalogue alike (alertd's market info), until a refresh
        self._derived: dict[Hashable, Any] = {}
        # the exchange's public tables the adapters read (OKX's discount and borrowing tiers),
        # read once for every account, dropped at each market refresh
        self.tables: PublicTables = PublicTables() if catalogue_of is None else catalogue_of.tables
        # the signed answers alike for most accounts (Binance's every-symbol leverage brackets),
        # parsed once for the exchange's accounts on every address
        self.answers: AlikeAnswers = (
            AlikeAnswers() if catalogue_of is None else catalogue_of.answers
        )
        self.closed = False

    def session(self) -> aiohttp.ClientSession:
        """The shared pool; made on first use (on the running loop)."""
        if self.closed:
            raise RuntimeError(f"{self.name}: shared resources already closed")
        if self._session is None:
            # bound to the source address, every connection of the pool leaves from it: REST
            # and websockets alike (ccxt.pro opens its websockets with the exchange object's
            # session: ``watch``/``watch_multiple`` in ccxt/async_support/base/exchange.py pass
            # ``self.session`` to ``client.connect``, which calls ``session.ws_connect``), and
            # only to hosts of its own family (an IPv4 source cannot reach an IPv6 address)
            # no cap on connections: every account's websockets live in this pool (aiohttp's
            # default cap of 100 would leave the 101st stream waiting forever); REST is bounded
            # by rest_slot
            connector = bound_connector(self.ssl_context, self.source_address, limit=0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def adopt(self, exchange: Any) -> None:
        """Give a new exchange object its host's limits (:meth:`IpBudget.adopt`) and the
        answers its accounts' reads share (:class:`~alertd.feeds.adapter.AlikeAnswers`)."""
        self.ip_budget.adopt(exchange)
        exchange.alertd_answers = self.answers

    async def share_markets(self, exchange: Any) -> None:
        """Give ``exchange`` the catalogue, loading it first if nobody has yet."""
        if self._catalogue_of is not None:
            await self._catalogue_of.share_markets(exchange)
            return
        catalogue = self._catalogue
        if catalogue is not None and catalogue.markets and exchange.markets is catalogue.markets:
            return  # already given (the mark hub asks before every watch)
        catalogue = await self._loaded()
        if exchange.markets is not catalogue.markets:
            exchange.set_markets_from_exchange(catalogue)
            self._clients.add(exchange)

    async def _loaded(self) -> Any:
        async with self._loading:  # many accounts bootstrapping at once: one request
            if self._catalogue is None:
                self._catalogue = self._build_public(self)
            if not self._catalogue.markets:
                await self._catalogue.load_markets()
            return self._catalogue

    async def refresh_markets(self) -> None:
        """Reload the catalogue (new listings, changed precisions) and re-point every client.

        A failure keeps the catalogue as it was; the next refresh tries again. The public
        tables are dropped either way: the next account to need one reads it afresh. A group
        on another source address refreshes the catalogue it uses, its holder's (whose
        clients its accounts' exchanges are): an account of it that holds a market listed
        since the load (the feed's reload) sees it too."""
        if self._catalogue_of is not None:
            await self._catalogue_of.refresh_markets()
            return
        self.tables.clear()
        if self._catalogue is None or not self._catalogue.markets:
            return  # not loaded yet: the first account to bootstrap loads it
        try:
            async with self._loading:
                await self._catalogue.load_markets(reload=True)
        except Exception as exc:
            log.warning("%s: market refresh failed: %s", self.name, describe(exc))
            return
        self._derived.clear()
        for exchange in list(self._clients):
            exchange.set_markets_from_exchange(self._catalogue)

    @property
    def holds_catalogue(self) -> bool:
        """Whether the market catalogue it uses is its own (not another group's)."""
        return self._catalogue_of is None

    def derived(self, key: Hashable, build: Callable[[], T]) -> T:
        """What every account derives alike from the catalogue, built once per catalogue."""
        if self._catalogue_of is not None:
            return self._catalogue_of.derived(key, build)
        if key not in self._derived:
            self._derived[key] = build()
        value: T = self._derived[key]
        return value

    @contextlib.asynccontextmanager
    async def rest_slot(self, bootstrap: bool = False, again: bool = False) -> AsyncIterator[None]:
        """Hold one of the exchange's concurrent REST slots (``bootstrap``: ahead of the live
        accounts' work; ``again``: a bootstrap retried, ahead of the others waiting)."""
        await self._rest.acquire(bootstrap, again)
        try:
            yield
        finally:
            self._rest.release()

    async def close(self) -> None:
        """Close the catalogue's exchange and the pool; after every account has closed."""
        self.closed = True
        if self._catalogue is not None:
            catalogue, self._catalogue = self._catalogue, None
            await catalogue.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


# The share of an exchange's per-IP weight budget alertd spends: the rest is headroom for the
# other tools a trader runs from the same IP, and for Binance counting by the calendar minute
# where the window here rolls.
REST_BUDGET_SHARE = 0.9
# The share of an IP's request cap (Bybit's 600 in 5 s, a ban past it) alertd admits: requests
# admitted together left bunched under load while the limiter counted them from their admission
# alone (the ninth pass: 575 arrived in 5 s where 540 were admitted, 6.5% more; since live15
# each is held until its answer, :class:`RollingWindow`), and a cap whose breach bans the IP
# keeps more headroom than a weight budget.
REQUEST_CAP_SHARE = 0.8


class _Ended:
    """A request's weight in a :class:`RollingWindow`'s ended deque: it leaves a window after
    ``end_ms``, unless the request was held after all (``live`` false: counted in flight)."""

    __slots__ = ("cost", "end_ms", "live")

    def __init__(self, end_ms: float, cost: float) -> None:
        self.end_ms = end_ms
        self.cost = cost
        self.live = True


class Admitted:
    """One request's weight in a :class:`RollingWindow`, from its admission: ended then,
    unless its sender :meth:`holds` it until it tells the request's end (:meth:`ended`)."""

    __slots__ = ("_entry", "_held_once", "_window", "at_ms", "cost", "until_ms")

    def __init__(self, window: RollingWindow, at_ms: float, cost: float) -> None:
        self._window = window
        self.at_ms = at_ms
        self.cost = cost
        self.until_ms = at_ms  # when it ended (inf: in flight)
        self._entry = window._ended_at(at_ms, cost)
        self._held_once = False

    def holds(self) -> None:
        """The request is being sent: its weight stays in the window until :meth:`ended`,
        however long that takes (a ban's pause between its admission and its sending
        included: ``fetch2``'s ``finally`` tells every held request's end)."""
        if self._held_once:
            return
        self._held_once = True
        self.until_ms = math.inf
        self._window._held(self)

    def ended(self) -> None:
        """The request's answer came, or it failed: its weight leaves a window after now."""
        if self.until_ms != math.inf:
            return  # never held (ended at its admission), or told already
        self.until_ms = self._window.now_ms()
        self._window._ending(self)


class RollingWindow(Throttler):  # type: ignore[misc]  # ccxt's class is untyped
    """ccxt's rolling-window limiter (its ``Throttler`` with ``algorithm: rollingWindow``),
    its rule kept: a request is admitted while the costs within the last ``windowSize`` ms
    and its own stay within ``maxWeight``, else it waits for the oldest to leave the window;
    requests in their order. ccxt's loop sums and copies every request still in the window
    at each admission, O(window) each: 4.1 s of the 69 CPU s a start of 1,000 Binance
    accounts over 7 addresses took under cProfile (a window holds up to about 2,200 of an
    IP's requests). Here the window is the requests in flight (a set and its running total)
    and a deque of the ended ones in the order of their ends, with its running total, those
    a window past their end dropped from its front; on ``clock``, monotonic seconds (ccxt's
    reads the wall clock, which can step).

    The exchange counts a request when it arrives, somewhere between its admission here and
    its answer, so a request its sender :meth:`Admitted.holds` (every request an exchange
    object sends: ``fetch2``) stays in the window from its admission until a window after its
    own answer or failure (:meth:`Admitted.ended`): every window of the exchange's then holds
    at most ``maxWeight`` of arrivals, however long each took to arrive (any window's
    arrivals are all held at its last instant). Counted from the admission alone, a cold
    start's requests, arriving late on new connections, and the next window's, sent on warm
    ones, arrived within one window: 2,206-2,220 weight against the 2,160 admitted (1,000
    Binance accounts over 7 addresses, and 300 from one; docs/benchmarks.md, "Session 15,
    live15"). Each request's weight leaves on its own end: one slow request holds only its
    own (kept in admission order, the front's end held every later one's: review of live15).
    A request that does not fit waits for the earliest ended one to leave, or, with none
    ended, for a request's end; a request's future gives its :class:`Admitted`."""

    running: bool  # ccxt's: its loop runs while requests queue

    def __init__(
        self,
        config: dict[str, Any],
        loop: Any = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__({**config, "algorithm": "rollingWindow"}, loop)
        self._clock = clock
        self._sleep = sleep
        self._in_flight: set[Admitted] = set()
        self._in_flight_total = 0.0
        # in the order of their ends (the clock's order: ends are told as they come)
        self._ended: collections.deque[_Ended] = collections.deque()
        self._ended_live = 0
        self._ended_total = 0.0
        self._an_end: asyncio.Event | None = None  # set by a held request's end

    def now_ms(self) -> float:
        return self._clock() * 1000

    def _ended_at(self, end_ms: float, cost: float) -> _Ended:
        entry = _Ended(end_ms, cost)
        self._ended.append(entry)
        self._ended_live += 1
        self._ended_total += cost
        return entry

    def _held(self, admitted: Admitted) -> None:
        """``admitted``, counted as ended at its admission, is in flight instead."""
        if admitted._entry.live:
            admitted._entry.live = False
            self._forget_ended(admitted.cost)
        self._in_flight.add(admitted)
        self._in_flight_total += admitted.cost

    def _ending(self, admitted: Admitted) -> None:
        """``admitted``, in flight, ended now: its weight leaves a window later."""
        self._in_flight.discard(admitted)
        self._in_flight_total -= admitted.cost
        if not self._in_flight:
            self._in_flight_total = 0.0  # no float residue from the subtractions
        admitted._entry = self._ended_at(admitted.until_ms, admitted.cost)
        if self._an_end is not None:
            self._an_end.set()

    def _forget_ended(self, cost: float) -> None:
        self._ended_live -= 1
        self._ended_total -= cost
        if not self._ended_live:
            self._ended_total = 0.0  # no float residue from the subtractions

    def _weight(self) -> float:
        return self._in_flight_total + self._ended_total

    def _admits(self, cost: float, now: float) -> bool:
        """Whether a request of ``cost`` fits the window at ``now`` (the ended requests a
        window past their end dropped first); one costlier than the whole window goes alone
        (ccxt's loop fails on it)."""
        ended = self._ended
        window_ms = self.config["windowSize"]
        while ended and (not ended[0].live or ended[0].end_ms + window_ms <= now):
            entry = ended.popleft()
            if entry.live:
                entry.live = False
                self._forget_ended(entry.cost)
        limit = self.config["maxWeight"]
        empty = not self._in_flight and not self._ended_live
        fits = self._weight() + cost <= limit
        if not fits and not empty and self._weight() + cost - limit <= 1e-9 * limit:
            # a miss within float noise is summed afresh, as ccxt sums at every admission:
            # the running totals' residue (fractional costs) never holds a request that fits;
            # a real miss (whole weights) waits with no re-sum
            self._in_flight_total = math.fsum(held.cost for held in self._in_flight)
            self._ended_total = math.fsum(e.cost for e in ended if e.live)
            fits = self._weight() + cost <= limit
        return fits or empty

    def __call__(self, cost: Any = None) -> Any:
        """A request admitted at once where the loop would admit it at its first look (none
        queued, the window holding room for it): its :class:`Admitted` without a loop task or
        a turn of the event loop; the others queue for the loop, in their order."""
        if not self.running and not self.queue:
            cost = self.config["cost"] if cost is None else cost
            now = self.now_ms()
            if self._admits(cost, now):
                return _admitted_at_once(Admitted(self, now, cost))
        return super().__call__(cost)

    async def rolling_window_loop(self) -> None:
        window_ms = self.config["windowSize"]
        ended = self._ended
        while self.running:
            future, cost = self.queue[0]
            cost = self.config["cost"] if cost is None else cost
            now = self.now_ms()
            if self._admits(cost, now):
                admitted = Admitted(self, now, cost)
                if not future.done():
                    future.set_result(admitted)
                self.queue.popleft()
                await self._sleep(0)  # as ccxt's: let the admitted request go first
                if not self.queue:
                    self.running = False
            elif ended:
                # the earliest ended one leaves a window after its end
                await self._sleep((ended[0].end_ms + window_ms - now) / 1000)
            else:
                # all in flight: nothing leaves before a request's end
                self._an_end = asyncio.Event()
                await self._an_end.wait()


def request_window(count: int, window_s: float, loop: Any) -> Any:
    """A rolling-window limiter holding requests (1 each) within ``REQUEST_CAP_SHARE`` of
    ``count`` over any ``window_s``."""
    window_ms = window_s * 1000
    rate = window_ms / (count * REQUEST_CAP_SHARE)
    return RollingWindow({"windowSize": window_ms, "rateLimit": rate}, loop)


class BothLimits:
    """An account's own ccxt limiter (its per-account limits) and the IP's window shared by
    every account on it, both waited for; what ccxt calls its ``throttler``."""

    def __init__(self, own: Any, ip: Any) -> None:
        self.own = own
        self.ip = ip

    async def __call__(self, cost: float | None = None) -> Any:
        """Both waited for; the IP window's :class:`Admitted`, for the request to hold until
        its end (the exchange counts it as it arrives)."""
        await self.own(cost)
        return await self.ip(1)  # the IP's cap counts requests, not the account's costs

    @property
    def loop(self) -> Any:
        return self.own.loop

    @loop.setter
    def loop(self, loop: Any) -> None:
        # ccxt sets its limiter's loop as it opens its session (open(), the first request)
        self.own.loop = loop


def weight_window(
    weight_per_minute: float,
    loop: Any,
    window_s: float = 60.0,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> Any:
    """A rolling-window limiter holding every request within ``REST_BUDGET_SHARE`` of the
    exchange's per-minute weight budget over any 60 s (``window_s``; so within any calendar
    minute too), as the exchange receives them (:class:`RollingWindow`). A cold start may
    spend the minute's budget at once (a thousand accounts going live); after that requests
    wait for the oldest to leave the window."""
    budget = weight_per_minute * REST_BUDGET_SHARE
    window_ms = window_s * 1000
    # ccxt's window allows windowSize / rateLimit weight
    return RollingWindow(
        {"windowSize": window_ms, "rateLimit": window_ms / budget}, loop, clock, sleep
    )


async def load_markets(exchange: Any, shared: SharedExchange | None) -> None:
    """The exchange's markets: the shared catalogue, or a load of its own when alone."""
    if shared is not None:
        await shared.share_markets(exchange)
    else:
        await exchange.load_markets()


def rest_slot(
    shared: SharedExchange | None, bootstrap: bool = False, again: bool = False
) -> contextlib.AbstractAsyncContextManager[None]:
    return shared.rest_slot(bootstrap, again) if shared is not None else contextlib.nullcontext()


def make_exchange(
    account: AccountConfig,
    secrets: Mapping[str, Secret],
    settings: FeedSettings,
    sink: FrameSink | None = None,
    shared: SharedExchange | None = None,
) -> Any:
    """A ccxt.pro exchange for ``account``, guarded, with its url and option overrides; with
    ``shared``, on the shared pool, SSL context and (where per IP) rate limiter."""
    # the spec's options are futures-only settings (its own comments say why); a deep copy,
    # so that ccxt cannot change the spec's nested values
    options = copy.deepcopy(deep_merge(get_spec(account.exchange).ccxt_options, account.options))
    params: dict[str, Any] = {
        "enableRateLimit": True,
        # ccxt keeps each exchange object's last response text and headers (alertd reads
        # neither): an account whose last request was Binance's all-symbol leverage brackets
        # held about 1 MB of JSON text until its next request
        "enableLastHttpResponse": False,
        "enableLastResponseHeaders": False,
        "timeout": int(settings.request_timeout_s * 1000),
        "options": options,
    }
    for credential in Credential:
        if credential.value in secrets:
            params[credential.ccxt_param] = secrets[credential.value].reveal()
    if account.wallet_address:
        params["walletAddress"] = account.wallet_address
    # ccxt offers permessage-deflate on every websocket: where a server accepts, each
    # connection holds a zlib compressor and decompressor (about 300 KB with aiohttp's
    # defaults), a thousand accounts 300 MB, for frames of a few hundred bytes of JSON
    options.setdefault("ws", {}).setdefault("compress", 0)
    if shared is not None:
        # given a session, ccxt neither makes one nor closes it (own_session is False); given
        # an SSL context, it does not build its own
        params["session"] = shared.session()
        params["ssl_context"] = shared.ssl_context
    exchange = _guarded_class(account.exchange)(params)
    exchange.alertd_sink = sink
    if shared is not None:
        shared.adopt(exchange)
    else:
        exchange.alertd_source_address = source_address(account, settings.source_addresses)
    if account.sandbox:
        exchange.set_sandbox_mode(True)
    if account.urls:
        exchange.urls["api"] = deep_merge(exchange.urls["api"], account.urls)
    return exchange


class ErrorKind(enum.Enum):
    TRANSIENT = "transient"  # retry with backoff, then resync
    FATAL = "fatal"  # stop this account's feed and report it


def classify(exc: BaseException) -> ErrorKind:
    """Fatal: what no retry can change; the rest retry with backoff.

    - a bad key, a missing permission, a suspended account;
    - an account alertd refuses as it is (:class:`~alertd.errors.AccountRefused`: a mode it
      does not model, a user id it cannot get);
    - a request the exchange rejects as malformed (``BadRequest``: a wrong account type, a bad
      parameter) or that ccxt will not send (``ArgumentsRequired``: Gate's private streams
      without a user id; ``NotSupported``): the same request gets the same answer.

    An expired Binance listen key stays transient (the next watch fetches a fresh key), as do
    network errors, timeouts, rate limits, IP bans (waited out by the host: :class:`IpBudget`),
    5xx answers and errors of alertd's own. (A market
    listed since the catalogue was loaded raises no ``BadSymbol``: the feed reloads the
    catalogue and leaves the market out of its per-symbol reads until it is listed.)
    """
    if isinstance(exc, AccountRefused):
        return ErrorKind.FATAL
    if not isinstance(exc, ccxt.BaseError):
        return ErrorKind.TRANSIENT
    text = str(exc)
    if "listenKey" in text or "-1125" in text:
        # an expired Binance listen key: ccxt fails the private watches with it (as a
        # BadRequest, sometimes as an AuthenticationError) and the next watch fetches a new key
        return ErrorKind.TRANSIENT
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return ErrorKind.FATAL
    if isinstance(exc, ccxt.BadRequest | ccxt.ArgumentsRequired | ccxt.NotSupported):
        return ErrorKind.FATAL
    # an IP ban (Binance's 418, Bybit's 403 "access too frequent") ends by itself: the host's
    # budget waits it out for every account at once (IpBudget.refused), none is stopped
    return ErrorKind.TRANSIENT


# a longer wait an exchange asks is read as this: two of Binance's one-minute windows (its
# request weight and order limits count per minute, "General Info", Limits:
# https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info), so a
# 429 is waited out, while a CDN's or gateway's 503 asking an hour does not park a bootstrap
# or a stream for that hour (a ban's own end is the host's to wait: IpBudget, BAN_MAX_S)
EXCHANGE_MAX_RETRY_AFTER_S = 120


# the longest ban alertd waits out before asking again: Binance's longest ("from 2 minutes
# to 3 days", "General Info", Limits)
BAN_MAX_S = 3 * 86_400
# how often one request waits for a pause moved on meanwhile before it is sent anyway
MAX_PAUSES_WAITED = 16


# set while an exchange object sends a request to another host than its budget's (the
# adapter's ``other_host_apis``: Binance USDⓈ-M's /sapi, api.binance.com): per task, so the
# object's other requests in flight meanwhile are not taken for it
_OTHER_HOST: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "alertd_other_host", default=False
)


def _tell_host(
    budget: IpBudget | None, exc: ccxt.BaseError, code: Any, headers: Any, body: Any
) -> None:
    """Show an answer that raised to the host's budget (:meth:`IpBudget.refused`); another
    host's answer (:data:`_OTHER_HOST`) is not its: it goes with ``exc`` instead, for its
    reader to show its own host (:func:`other_host_answer`). Never raises, as
    :func:`_carry_retry_after`."""
    if not isinstance(code, int):
        return
    try:
        answer = headers if isinstance(headers, Mapping) else {}
        text = body if isinstance(body, str) else ""
        if _OTHER_HOST.get():
            exc.alertd_other_host_answer = (code, answer, text)
        elif budget is not None:
            budget.refused(code, answer, text)
    except Exception:
        log.debug("unreadable answer %s", code, exc_info=True)


def other_host_answer(exc: BaseException) -> tuple[int, Mapping[object, object], str] | None:
    """The answer (status, headers, body) that raised ``exc`` on another host's request
    (:data:`_OTHER_HOST`), looked for along the chain of causes; None: none."""
    answer = _carried(exc, "alertd_other_host_answer", tuple)
    return answer if isinstance(answer, tuple) else None


def _carried(exc: BaseException, name: str, kind: type) -> object:
    """The first ``name`` attribute of the ``kind`` given along ``exc``'s chain of causes (a
    translated error's, a few deep); None: none."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        value = getattr(seen, name, None)
        if isinstance(value, kind):
            return value
        seen = seen.__cause__ or seen.__context__
    return None


def _carry_retry_after(
    exc: ccxt.BaseError, headers: Any, reset_header: str | None, wall_clock: Clock
) -> None:
    """Give the error raised on an answer that answer's Retry-After (:func:`retry_after_of`),
    or where it has none, the wait until the limit's reset its ``reset_header`` gives (Gate's,
    epoch time: read on ``wall_clock``, the feeds'). Never raises: it runs in ccxt's
    handle_errors, where an exception of its own would replace the answer's error (a 418 ban
    become another error, retried into the ban)."""
    try:
        wait = None
        if isinstance(headers, Mapping):
            wait = retry_after_in(headers, EXCHANGE_MAX_RETRY_AFTER_S)
            # on every answer, the header is the current time where the limit is not hit
            if (
                wait is None
                and reset_header is not None
                and isinstance(exc, ccxt.RateLimitExceeded)
            ):
                wait = reset_in(headers, reset_header, wall_clock(), EXCHANGE_MAX_RETRY_AFTER_S)
    except Exception:  # a headers object that cannot be read: the backoff's delay applies
        log.debug("unreadable headers on %s", type(exc).__name__, exc_info=True)
        return
    if wait is not None:
        exc.alertd_retry_after_s = wait


def retry_after_of(exc: BaseException) -> float:
    """How long the exchange asked alertd to wait with the answer that raised ``exc`` (its
    ``Retry-After``, which Binance sends with 429 and 418: "the number of seconds required to
    wait, in the case of a 429, to prevent a ban"; "General Info", Limits:
    https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info),
    looked for along the chain of causes; 0 where it asked nothing."""
    wait = _carried(exc, "alertd_retry_after_s", float)
    return wait if isinstance(wait, float) else 0.0


def retry_delay(backoff: Backoff, exc: BaseException) -> float:
    """The wait before retrying after ``exc``: the backoff's next delay, or the exchange's
    Retry-After where it is longer (a retry sooner meets the same 429, and Binance bans an
    IP that keeps sending after 429s)."""
    return max(backoff.next_delay(), retry_after_of(exc))


def describe(exc: BaseException) -> str:
    """A one-line reason for a log or an alert, with no request details (they can hold keys)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # ccxt prefixes "<id> <METHOD> <url> <status> ..."; query strings carry signatures
    words = [w.split("?", 1)[0] if w.startswith("http") else w for w in text.split()]
    # and ws URLs carry Binance's listen key (url='wss://...?listenKey=...', or in the path)
    return redact(f"{type(exc).__name__}: {' '.join(words)[:300]}")


async def drop_connections(exchange: Any, reason: str) -> None:
    """Reject every pending watch on ``exchange`` with a NetworkError and close its sockets.

    ccxt's own ``client.close()`` cancels the futures instead, which a caller cannot tell from
    its own cancellation; a NetworkError sends every stream down the reconnect path.
    """
    for url in list(exchange.clients or {}):
        await drop_connection(exchange, url, reason)


class SubscriptionRenewed(ccxt.NetworkError):  # type: ignore[misc]  # ccxt is untyped
    """A watch failed on purpose by :func:`renew_subscription`: watch again at once."""


# how long a dropped socket waits for the peer's CLOSE reply: a live one answers within a round
# trip; a half-dead one never does, and aiohttp's own wait (ClientWSTimeout.ws_close) is 10 s,
# which would hold whoever drops it (a REST fallback behind a renewal) as long
CLOSE_REPLY_WAIT_S = 1.0


# the closes of dropped clients whose dial completed after the drop (held until done)
_late_closes: set[asyncio.Task[None]] = set()


async def drop_connection(
    exchange: Any, url: str, reason: str, error: type[ccxt.NetworkError] = ccxt.NetworkError
) -> None:
    """:func:`drop_connections` for the one socket of ``url`` (the streams on it alone)."""
    client = (exchange.clients or {}).pop(url, None)
    if client is None:
        return
    sink: FrameSink | None = getattr(exchange, "alertd_sink", None)
    if sink is not None:
        # its close, told now: no longer the exchange's socket of ``url``, its own close or
        # failed dial later is not told (``Guarded._alertd_current``)
        sink.on_closed(url, False)
    # its error set: ccxt takes the close that follows for ours, not the server's, and leaves
    # the exchange's client of the same URL alone (a watch may have opened a new one already)
    client.error = error(f"alertd: {reason}")
    client.reject(client.error)
    waiting: asyncio.Task[None] | None = getattr(client, "alertd_turn_wait", None)
    if waiting is not None:
        # waiting for its turn to dial or its backoff before it (:func:`_paced_open`): no
        # socket; its place given on to the socket the next watch dials, not taken to open
        # one closed at once
        waiting.cancel()
        return
    wait_s = getattr(exchange, "alertd_close_reply_wait_s", CLOSE_REPLY_WAIT_S)
    if not client.connected.done():
        # still dialling: there is no socket to close yet; once the dial completes ccxt
        # subscribes on it, and it would live on outside exchange.clients, never closed
        client.connected.add_done_callback(lambda _: _close_late(client, url, wait_s))
        return
    await _close(client, url, wait_s)


def _close_late(client: Any, url: str, wait_s: float) -> None:
    task = asyncio.ensure_future(_close(client, url, wait_s))
    _late_closes.add(task)
    task.add_done_callback(_late_closes.discard)


async def _close(client: Any, url: str, wait_s: float) -> None:
    try:
        # cancelled in its wait for the reply, aiohttp closes the transport all the same
        await asyncio.wait_for(client.close(), wait_s)
    except TimeoutError:
        log.debug("closing %s: no CLOSE reply in %.0fs, closed without", url, wait_s)
    except Exception as exc:
        log.debug("closing %s: %s", url, exc)


async def renew_subscription(
    exchange: Any, url: str, subscribe_hash: str, unsubscribe: dict[str, Any], reason: str
) -> bool:
    """One subscription on the socket of ``url`` renewed, the others on it kept: ccxt forgets
    it (the next watch of ``subscribe_hash`` subscribes again), ``unsubscribe`` is sent first
    (the exchange's own request), and the pending watch of ``subscribe_hash`` fails with a
    :class:`SubscriptionRenewed`. A socket that carries nothing else is closed instead
    (:func:`drop_connection`): a half-dead one is reopened, and no other stream is on it.
    Nothing is done (False) where the socket is still dialling (its subscription is sent once
    the dial completes: there is none to renew yet) or there is none."""
    client = (exchange.clients or {}).get(url)
    if client is None or not client.connected.done():
        return False
    if not client.subscriptions.keys() - {subscribe_hash}:
        await drop_connection(exchange, url, reason, SubscriptionRenewed)
        return True
    client.subscriptions.pop(subscribe_hash, None)
    try:
        await client.send(unsubscribe)
    except Exception as exc:  # the socket is gone: every stream on it reconnects anyway
        log.debug("unsubscribing %s on %s failed: %s", subscribe_hash, url, exc)
    client.reject(SubscriptionRenewed(f"alertd: {reason}"), subscribe_hash)
    return True
