"""Who gets a message: the receivers the config names, and the routes that pick them.

A receiver is an apprise URL from ``receivers:`` (or, with ``type: alertmanager``, a
Prometheus Alertmanager's address), or the dead-man's switch
(``heartbeat.deadman_url``), which is a receiver of its own named ``deadman``: only the
heartbeat is addressed to it, and no route sends anything else there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from alertd.config import DEADMAN, Config, ConfigError, RouteConfig, Secret, expand_env
from alertd.delivery.senders import Transport

# Prometheus re-sends firing alerts to Alertmanager every minute by default: so does alertd
ALERTMANAGER_RESEND_S = 60.0

# Telegram lets a bot write about 20 messages a minute into one chat
TELEGRAM_MESSAGES_PER_MIN = 20.0

# Messages a minute a receiver accepts before it starts refusing, when the config says nothing.
DEFAULT_RATE_PER_MIN = {"tgram": 20.0, "telegram": 20.0, "slack": 60.0, "discord": 30.0}


@dataclass(frozen=True, slots=True)
class Receiver:
    name: str
    url: Secret
    min_interval_s: float
    scheme: str
    tags: tuple[str, ...] = ()
    transport: Transport = Transport.APPRISE
    # re-send what is firing this often (Alertmanager forgets an alert that is not re-sent)
    refresh_every_s: float | None = None

    @property
    def routable(self) -> bool:
        """Routes may pick it (the dead-man's switch gets only the heartbeat)."""
        return self.transport is not Transport.PING


def build_receivers(
    config: Config, environ: Mapping[str, str] | None = None
) -> dict[str, Receiver]:
    out = {}
    for i, r in enumerate(config.receivers):
        if r.type == "telegram":
            assert r.chat is not None  # the config says so
            out[r.name] = Receiver(
                r.name,
                Secret(str(r.chat)),
                60.0 / (r.rate_per_min or TELEGRAM_MESSAGES_PER_MIN),
                "telegram",
                tuple(r.tags),
                Transport.TELEGRAM,
            )
            continue
        assert r.url is not None  # the config says so for every other type
        where = f"receivers[{i}].url"
        url = expand_env(r.url, where, environ)
        scheme = r.url.split("://", 1)[0].lower()
        rate = r.rate_per_min or DEFAULT_RATE_PER_MIN.get(scheme)
        interval = 60.0 / rate if rate else 0.0
        if r.type == "alertmanager":
            problem = alertmanager_problem(url)
            if problem is not None:
                raise ConfigError([f"{where}: {problem}"])
            every = r.resend_interval or ALERTMANAGER_RESEND_S
            out[r.name] = Receiver(
                r.name, url, interval, scheme, tuple(r.tags), Transport.ALERTMANAGER, every
            )
            continue
        out[r.name] = Receiver(r.name, url, interval, scheme, tuple(r.tags))
    deadman = deadman_receiver(config, environ)
    if deadman is not None:
        out[DEADMAN] = deadman
    return out


def alertmanager_problem(url: Secret) -> str | None:
    """What is wrong with an Alertmanager address once its variables are filled in."""
    parts = urlsplit(url.reveal())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return (
            "an alertmanager receiver's url is Alertmanager's address, e.g. http://127.0.0.1:9093"
        )
    if parts.query or parts.fragment:
        return "an alertmanager receiver's url is a base address, without ?query or #fragment"
    return None


def deadman_receiver(config: Config, environ: Mapping[str, str] | None = None) -> Receiver | None:
    """The dead-man's switch's receiver, if ``heartbeat.deadman_url`` is set: an http(s) URL
    (it is pinged with a GET); anything else is a config problem."""
    where = "heartbeat.deadman_url"
    if not config.heartbeat.deadman_url:
        return None
    url = expand_env(config.heartbeat.deadman_url, where, environ)
    parts = urlsplit(url.reveal())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError([f"{where}: an http:// or https:// URL is pinged here (with a GET)"])
    return Receiver(DEADMAN, url, 0.0, parts.scheme.lower(), transport=Transport.PING)


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
