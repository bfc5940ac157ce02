"""A real Prometheus Alertmanager for the tests, on 127.0.0.1, notifying a local webhook.

Debian's ``prometheus-alertmanager`` package provides the binary (``.ci/run`` installs it). The
test starts it with its own config and storage folder, clustering off, short grouping waits so
a notification follows an alert within about a second; ``stop()`` ends it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.poll import wait_for

BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")


def alertmanager_binary() -> str | None:
    for name in BINARY_NAMES:
        found = shutil.which(name)
        if found is not None:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


CONFIG = """\
route:
  receiver: hook
  group_by: [alertname, account, symbol, side]
  group_wait: 500ms
  group_interval: 1s
  repeat_interval: 24h
receivers:
  - name: hook
    webhook_configs:
      - url: {webhook}
        send_resolved: true
"""


class LocalAlertmanager:
    def __init__(self, folder: Path, webhook_url: str) -> None:
        self.folder = folder
        self.webhook_url = webhook_url
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = alertmanager_binary()
        assert binary is not None, "prometheus-alertmanager is not installed"
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "alertmanager.yml"
        config.write_text(CONFIG.format(webhook=self.webhook_url))
        self.port = _free_port()
        log = (self.folder / "alertmanager.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # one instance: no gossip, no other address
                "--log.level=debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, what="Alertmanager ready", timeout_s=30)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"Alertmanager exited: {self.log()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def alerts(self) -> list[dict[str, Any]]:
        """What Alertmanager holds now (GET /api/v2/alerts)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:
            data: list[dict[str, Any]] = json.loads(response.read())
            return data

    def log(self) -> str:
        path = self.folder / "alertmanager.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
