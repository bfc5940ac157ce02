"""The configuration file: YAML, validated whole, then one frozen, typed object.

Every problem is reported at once with its dotted path
(``accounts[1].exchange: unknown exchange 'bianance' (did you mean binanceusdm?)``). Secrets
never sit in the YAML: the file names environment variables or files that hold them, and they
are read into :class:`Secret` values that do not print.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InputError

CONFIG_VERSION = 1

# Exchanges alertd can stream from, with what each needs to authenticate.
FEED_EXCHANGES: dict[str, tuple[str, ...]] = {
    "binanceusdm": ("api_key", "secret"),
    "bybit": ("api_key", "secret"),
    "okx": ("api_key", "secret", "password"),
    "gate": ("api_key", "secret"),
    "hyperliquid": (),  # a wallet address is enough: everything alertd reads is public
}
SECRET_NAMES = ("api_key", "secret", "password")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConfigError(InputError):
    """A config file that cannot be used; one ``path: reason`` line per problem."""


class Secret:
    """A credential. ``str()`` and ``repr()`` never show it; :meth:`reveal` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveSeconds = Annotated[float, Field(gt=0)]


class BackoffSettings(_Model):
    """Reconnect delays: exponential with jitter, capped, reset after a healthy period."""

    initial_s: PositiveSeconds = 1.0
    max_s: PositiveSeconds = 60.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    reset_after_s: PositiveSeconds = 60.0


class FeedSettings(_Model):
    reconcile_interval_s: PositiveSeconds = 60.0
    tier_refresh_interval_s: PositiveSeconds = 86_400.0
    listen_key_renew_interval_s: PositiveSeconds = 1_800.0
    stale_after_s: PositiveSeconds = 30.0
    request_timeout_s: PositiveSeconds = 10.0
    backoff: BackoffSettings = BackoffSettings()


class AccountConfig(_Model):
    name: str
    exchange: str
    api_key_env: str | None = None
    api_key_file: Path | None = None
    secret_env: str | None = None
    secret_file: Path | None = None
    password_env: str | None = None
    password_file: Path | None = None
    wallet_address: str | None = None
    sandbox: bool = False
    symbols: list[str] | None = None
    # Merged over ccxt's exchange.urls['api'] with the same keys: for proxies and for tests.
    urls: dict[str, Any] = Field(default_factory=dict)
    # Advanced: merged over the ccxt exchange's options.
    options: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a usable name: letters, digits, '_', '.', '-' only")
        return value

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, value: str) -> str:
        if value not in FEED_EXCHANGES:
            close = difflib.get_close_matches(value, FEED_EXCHANGES, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}?" if close else f"one of {', '.join(FEED_EXCHANGES)}"
            raise ValueError(f"unknown exchange {value!r} ({hint})")
        return value

    def secret_refs(self) -> dict[str, tuple[str, str]]:
        """``{secret: ('env' | 'file', name)}`` for the secrets this account references."""
        refs = {}
        for secret in SECRET_NAMES:
            env, file = getattr(self, f"{secret}_env"), getattr(self, f"{secret}_file")
            if env is not None:
                refs[secret] = ("env", env)
            elif file is not None:
                refs[secret] = ("file", str(file))
        return refs


class Config(_Model):
    version: Literal[1]
    accounts: Annotated[list[AccountConfig], Field(min_length=1)]
    feeds: FeedSettings = FeedSettings()

    def account(self, name: str) -> AccountConfig:
        for account in self.accounts:
            if account.name == name:
                return account
        known = [a.name for a in self.accounts]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else f" (configured: {', '.join(known)})"
        raise InputError(f"no account named {name!r}{hint}")


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _describe(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown key (check its spelling and indentation)"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return f"must be {ctx['expected']} (got {err.get('input')!r})"
    if kind == "too_short":
        return "must not be empty"
    message: str = err["msg"]
    return f"{message[0].lower()}{message[1:]} (got {err.get('input')!r})"


def _cross_checks(data: dict[str, Any]) -> list[str]:
    """Rules across fields, run on the raw data so they are reported beside field errors."""
    problems: list[str] = []
    accounts = data.get("accounts")
    if not isinstance(accounts, list):
        return problems
    seen: dict[str, int] = {}
    for i, account in enumerate(accounts):
        if not isinstance(account, dict):
            continue
        name = account.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    f"accounts[{i}].name: {name!r} is already used by accounts[{seen[name]}]"
                )
            seen.setdefault(name, i)
        exchange = account.get("exchange")
        for secret in SECRET_NAMES:
            env, file = account.get(f"{secret}_env"), account.get(f"{secret}_file")
            if env is not None and file is not None:
                problems.append(f"accounts[{i}]: give {secret}_env or {secret}_file, not both")
            elif secret in FEED_EXCHANGES.get(str(exchange), ()) and env is None and file is None:
                problems.append(f"accounts[{i}]: {exchange} needs {secret}_env or {secret}_file")
        if exchange == "hyperliquid" and not account.get("wallet_address"):
            problems.append(f"accounts[{i}]: hyperliquid needs wallet_address")
    return problems


def parse_config(text: str, source: str = "config") -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config file is a YAML mapping (with version: 1)")
    if "version" in data and data["version"] != CONFIG_VERSION:
        raise ConfigError(
            f"version: this alertd reads config version {CONFIG_VERSION} (got {data['version']!r})"
        )
    problems = []
    config = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_path(tuple(e['loc']))}: {_describe(e)}" for e in exc.errors()]
    problems += _cross_checks(data)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_config(text, str(path))


def read_secrets(
    account: AccountConfig, environ: Mapping[str, str] | None = None, where: str | None = None
) -> dict[str, Secret]:
    """Read the account's secrets from the environment or files; every missing one is listed."""
    env = os.environ if environ is None else environ
    found: dict[str, Secret] = {}
    problems = []
    for secret, (kind, name) in account.secret_refs().items():
        path = f"{where or 'account ' + account.name}.{secret}_{kind}"
        if kind == "env":
            value = env.get(name)
            if not value:
                problems.append(f"{path}: environment variable {name} is not set")
                continue
        else:
            try:
                value = Path(name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(f"{path}: cannot read {name}: {exc.strerror or exc}")
                continue
            if not value:
                problems.append(f"{path}: {name} is empty")
                continue
        found[secret] = Secret(value)
    if problems:
        raise ConfigError(problems)
    return found
