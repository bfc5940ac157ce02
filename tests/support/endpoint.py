"""The daemon's HTTP endpoint, read as a user's script would (urllib, loopback)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def status_account(base: str) -> dict[str, Any]:
    """The first account of ``/status`` at ``base``."""
    status, text = get(f"{base}/status")
    assert status == 200, text
    account: dict[str, Any] = json.loads(text)["accounts"][0]
    return account


def computed_account(base: str) -> dict[str, Any] | None:
    """The first account of ``/status`` once alertd computes its figures (None before)."""
    account = status_account(base)
    return account if account["margin_ratio_source"] == "alertd" else None
