"""The command line's shared conventions, in-process: where ``-c`` may stand, what a command
without its config says, and help that shows the defaults."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from alertd.cli.common import module_summary
from alertd.cli.main import COMMANDS
from tests.support.inprocess import alertd

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(tmp_path: Path) -> Path:
    text = (ROOT / "config.example.yaml").read_text()
    assert "\nstate_path: alertd.sqlite\n" in text
    path = tmp_path / "config.yaml"
    state = tmp_path / "state.sqlite"
    path.write_text(text.replace("\nstate_path: alertd.sqlite\n", f"\nstate_path: {state}\n"))
    return path


@pytest.mark.parametrize("before", [True, False], ids=["-c before", "-c after"])
def test_config_flag_before_or_after_the_command(config: Path, before: bool) -> None:
    args = ["-c", str(config), "check"] if before else ["check", "-c", str(config)]
    result = alertd(*args)
    assert result.code in (0, 2), result.err  # secrets of the example are not set here
    assert "required" not in result.err


def test_config_flag_before_a_nested_command(config: Path) -> None:
    before = alertd("-c", str(config), "silence", "list")
    between = alertd("silence", "-c", str(config), "list")
    after = alertd("silence", "list", "-c", str(config))
    outcomes = {(r.code, r.out) for r in (before, between, after)}
    assert outcomes == {(0, "no silences\n")}


def test_the_readme_form_of_silence_add(config: Path) -> None:
    added = alertd("silence", "add", "-c", str(config), "--match", "account=main", "--for", "2h")
    assert added.code == 0, added.err
    assert added.out.startswith("silence ")
    listed = alertd("silence", "list", "-c", str(config))
    assert "account=main" in listed.out


@pytest.mark.parametrize("command", ["run", "check", "status", "history", "test-notify"])
def test_a_command_without_its_config_says_so(command: str) -> None:
    result = alertd(command)
    assert result.code == 2
    assert result.problems == [
        f"alertd: {command}: the following arguments are required: -c/--config "
        f"(see: alertd {command} --help)"
    ]


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["replay", "--help"], ["sweep entry spacing (default: 24h)", "(default: binanceusdm)"]),
        (["fetch-history", "--help"], ["candle length (default: 1m)"]),
        (["history", "--help"], ["(default: 24h)", "Alerts that fired or resolved"]),
        (["schema", "--help"], ["JSON Schema of config.yaml"]),
    ],
)
def test_help_describes_the_command_and_shows_defaults(argv: list[str], shown: list[str]) -> None:
    result = alertd(*argv)
    assert result.code == 0
    text = " ".join(result.out.split())
    for words in shown:
        assert words in text, text
    assert "(default: False)" not in text and "(default: 0)" not in text


@pytest.mark.parametrize("command", ["status", "history"])
def test_status_before_any_run_says_there_is_no_state(config: Path, command: str) -> None:
    """A state file that is not there is not created empty: empty tables would read as
    "all is well" where alertd has never run with this config."""
    state = config.parent / "state.sqlite"
    result = alertd(command, "-c", str(config))
    assert result.code == 3
    assert result.problems == [
        f"alertd: state file {state}: no state yet: has alertd run with this config? "
        "(alertd run -c CONFIG keeps its state there)"
    ]
    assert not state.exists()


def test_the_command_list_is_each_command_modules_own() -> None:
    """``alertd --help`` lists the commands from :data:`alertd.cli.main.COMMANDS` without
    importing their modules: each name and summary there is the module docstring's."""
    for name, module_name, summary in COMMANDS:
        module = importlib.import_module(f"alertd.cli.{module_name}")
        first = (module.__doc__ or "").strip().partition("\n")[0]
        assert first == f"``alertd {name}``: {summary}."
        assert module_summary(module) == f"{summary}."


# what each start imports: the command's module and what it needs, not every command's
STARTS = [
    (["--help"], [], ["alertd.cli.calc", "alertd.config", "pydantic", "rich", "ccxt"]),
    (["status", "--help"], ["alertd.cli.status"], ["alertd.cli.calc", "ccxt", "apprise"]),
    (["check", "--help"], ["alertd.cli.check"], ["alertd.cli.replay", "alertd.snapshot.format"]),
    (["calc", "--help"], ["alertd.cli.calc"], ["alertd.cli.replay", "alertd.config", "ccxt"]),
    (["schema"], ["alertd.cli.schema"], ["alertd.cli.calc", "alertd.snapshot.format", "ccxt"]),
]


@pytest.mark.parametrize(("argv", "loaded", "not_loaded"), STARTS)
def test_a_start_imports_only_its_command(
    argv: list[str], loaded: list[str], not_loaded: list[str]
) -> None:
    """Every test and every user's command starts a process: its cost is its imports (0.7 CPU
    s for ``alertd --help`` when each start imported every command's module)."""
    code = (
        "import contextlib, io, sys\n"
        "from alertd.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main({argv!r})\n"
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('alertd', 'pydantic', 'rich', 'ccxt', 'apprise')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    code_text, _, modules_text = out.stdout.strip().partition(" ")
    assert code_text == "0", out
    modules = {m.strip("'") for m in modules_text.strip("[]").split(", ")}
    for name in loaded:
        assert name in modules
    for name in not_loaded:
        assert not any(m == name or m.startswith(f"{name}.") for m in modules), name
