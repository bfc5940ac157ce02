"""The real ``alertd`` command line, run as a user runs it: ``python -m alertd ...``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60.0


def alertd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "alertd", *args]


def alertd(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout_s: float = CLI_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``alertd *args`` to completion; returns its code, stdout and stderr (text).
    ``env`` replaces the environment (None: this process's); fails after ``timeout_s``."""
    return subprocess.run(
        alertd_command(*args),
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


class Daemon:
    """``alertd run -c CONFIG`` in the background, its output appended to ``log``."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.args: list[str] = []  # more options for `alertd run`: -vv
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                alertd_command("run", "-c", str(self.config), *self.args),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.proc = None

    def kill(self) -> None:
        """Kill the process if it still runs (a test's clean-up, whatever the test left)."""
        if self.proc is not None:
            self.stop(signal.SIGKILL)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *_: object) -> None:
        self.kill()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def e2e_env(**more: str) -> dict[str, str]:
    """The environment of an end-to-end daemon: the caller's PATH and the local exchange's
    ``key-e2e``/``secret-e2e`` pair as ``E2E_KEY``/``E2E_SECRET`` (plus ``more``)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "E2E_KEY": "key-e2e",
        "E2E_SECRET": "secret-e2e",
        **more,
    }
