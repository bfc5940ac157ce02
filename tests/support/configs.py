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
