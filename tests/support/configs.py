"""Config files for the real ``alertd`` CLI, written as a user writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# an account that needs no secrets: a Hyperliquid wallet address
WALLET_ACCOUNT = {"name": "hl", "exchange": "hyperliquid", "wallet_address": "0x1"}


def fake_account(
    fake: Any, name: str, exchange: str, key_env: str, secret_env: str
) -> dict[str, Any]:
    """An account on a fake exchange, reached only through the ``urls:``/``options:`` keys, its
    secrets read from the named environment variables."""
    return {
        "name": name,
        "exchange": exchange,
        "api_key_env": key_env,
        "secret_env": secret_env,
        "urls": fake.ccxt_urls(),
        "options": fake.ccxt_options,
    }


def write_config(
    tmp_path: Path, accounts: list[dict[str, Any]] | None = None, **sections: Any
) -> Path:
    """``tmp_path/config.yaml`` (JSON is YAML): version 1, the state file in ``tmp_path``,
    ``accounts`` (``WALLET_ACCOUNT`` by default) and any other top-level ``sections``."""
    path = tmp_path / "config.yaml"
    config = {
        "version": 1,
        "state_path": str(tmp_path / "state.sqlite"),
        "accounts": accounts if accounts is not None else [WALLET_ACCOUNT],
        **sections,
    }
    path.write_text(json.dumps(config))
    return path


def exchange_account(
    fake: Any, name: str, exchange: str, key: str, secret: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """An account on any fake exchange as a user configures it, and the environment holding
    its secrets: ``key`` is the wallet address on Hyperliquid (no secrets), an API key
    elsewhere; OKX's passphrase is the fake's. Variables are named after the account."""
    account: dict[str, Any] = {
        "name": name,
        "exchange": exchange,
        "urls": fake.ccxt_urls(),
        "options": fake.ccxt_options,
    }
    if exchange == "hyperliquid":
        return {**account, "wallet_address": key}, {}
    prefix = "ALERTD_" + "".join(c if c.isalnum() else "_" for c in name).upper()
    env = {f"{prefix}_KEY": key, f"{prefix}_SECRET": secret}
    account.update(api_key_env=f"{prefix}_KEY", secret_env=f"{prefix}_SECRET")
    if exchange == "okx":
        account["password_env"] = f"{prefix}_PASSPHRASE"
        env[f"{prefix}_PASSPHRASE"] = fake.PASSPHRASE
    return account, env
