"""The house rules that keep the core pure, enforced on the source.

The margin engine (``alertd/engine``) and the rule engine (``alertd/rules``) take data and a
``now`` and return data: no asyncio, no ccxt, no clock, no I/O, no logging. This reads their
imports and calls with ``ast``, so a stray ``import time`` fails here rather than in review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_PACKAGES = ("alertd/engine", "alertd/rules")
PURE_MODULES = ("alertd/views/format.py",)  # number formatting, used by messages

# Standard-library modules that compute and nothing else.
PURE_STDLIB = {
    "__future__",
    "bisect",
    "collections",
    "collections.abc",
    "dataclasses",
    "datetime",  # arithmetic on given times; reading the clock is caught below
    "decimal",
    "difflib",
    "enum",
    "functools",
    "heapq",
    "itertools",
    "math",
    "operator",
    "re",
    "statistics",
    "string",
    "typing",
    "zoneinfo",
}
# alertd modules the pure core may lean on (themselves checked here)
PURE_ALERTD = ("alertd.engine", "alertd.rules", "alertd.views.format", "alertd.errors")
# attribute calls that read a clock (the time module itself is refused as an import)
CLOCK_CALLS = {"now", "utcnow", "today"}


def pure_files() -> list[Path]:
    files = [p for pkg in PURE_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    files += [ROOT / m for m in PURE_MODULES if (ROOT / m).exists()]
    return files


def imported_modules(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def allowed(module: str) -> bool:
    if module in PURE_STDLIB:
        return True
    return any(module == p or module.startswith(p + ".") for p in PURE_ALERTD)


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_core_imports_only_pure_modules(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    relative = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert not relative, f"{path.name}: use absolute imports"
    bad = [m for m in imported_modules(tree) if not allowed(m)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the core must stay pure"


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_core_reads_no_clock_and_does_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_CALLS:
                raise AssertionError(
                    f"{path.relative_to(ROOT)}:{node.lineno}: .{func.attr}() reads a clock"
                )
            if isinstance(func, ast.Name) and func.id in {"open", "print", "input"}:
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.lineno}: {func.id}() is I/O")


def test_importing_the_core_loads_no_io_library() -> None:
    """What the core pulls in at run time, transitively (a subprocess: a clean interpreter)."""
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in pure_files()
    )
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "bad = [m for m in ('asyncio', 'ccxt', 'aiohttp', 'sqlite3', 'socket', 'apprise',"
        " 'logging') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the pure core loads {result.stdout.strip()}"


def test_commands_that_read_no_exchange_load_no_exchange_library(tmp_path: Path) -> None:
    """``status``, ``history``, ``calc``, ``silence`` and ``schema`` read files and the local
    endpoint only: they start without ccxt and its HTTP stack (a second of CPU a command)."""
    config = tmp_path / "alertd.yaml"
    config.write_text(
        "version: 1\naccounts: [{name: h, exchange: hyperliquid, wallet_address: '0x1'}]\n"
        f"state_path: {tmp_path / 'alertd.sqlite'}\n"
    )
    commands = [
        ["status", "-c", str(config)],
        ["history", "-c", str(config)],
        ["calc", "examples/binanceusdm.json"],
        ["silence", "-c", str(config), "list"],
        ["schema"],
    ]
    code = (
        "import io, sys\n"
        "from contextlib import redirect_stderr, redirect_stdout\n"
        "from alertd.cli.main import main\n"
        f"for argv in {commands!r}:\n"
        "    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):\n"
        "        print(argv[0], main(argv), file=sys.__stdout__)\n"
        "loaded = ('ccxt', 'aiohttp', 'websockets', 'apprise', 'telegram', 'apscheduler')\n"
        "print('loaded:', ','.join(m for m in loaded if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # each ran (status and history: no state file yet, exit 3) and none loaded them
    assert lines == ["status 3", "history 3", "calc 0", "silence 0", "schema 0", "loaded: "]
