"""The config file: every problem listed with its path, secrets by reference only."""

from __future__ import annotations

import re
import subprocess
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from alertd.config import (
    Config,
    ConfigError,
    Secret,
    load_config,
    parse_config,
    read_secrets,
    source_address,
)

from .support.process import alertd

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
version: 1
accounts:
  - name: main
    exchange: binanceusdm
    api_key_env: BINANCE_API_KEY
    secret_file: {secret_file}
  - name: hl
    exchange: hyperliquid
    wallet_address: "0xabc"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "config.example.yaml")
    assert [a.name for a in config.accounts] == ["main"]
    assert config.feeds.stale_after_s == 30
    assert config.feeds.backoff.max_s == 60


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def test_every_config_key_is_in_the_example() -> None:
    """The README says every key is commented in config.example.yaml: each field of the
    config model, nested ones too, appears there as a key (set or commented out)."""
    text = (ROOT / "config.example.yaml").read_text()
    missing: list[str] = []
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel], path: str) -> None:
        seen.add(model)
        for name, field in model.model_fields.items():
            key = field.alias or name
            if not re.search(rf"(^|[\s#{{,-]){re.escape(key)}:", text, re.M):
                missing.append(path + key)
            for sub in _models_in(field.annotation):
                if sub not in seen:
                    walk(sub, f"{path}{key}.")

    walk(Config, "")
    assert missing == []


def test_every_problem_is_listed_with_its_path() -> None:
    found = problems(
        """
version: 1
accounts:
  - name: main
    exchange: bianance
  - name: main
    exchange: okx
    api_key_env: K
    secret_env: S
    symbolz: [x]
  - name: "bad name"
    exchange: hyperliquid
feeds:
  stale_after_s: -1
"""
    )
    assert found == [
        "accounts[0].exchange: unknown exchange 'bianance' (did you mean binanceusdm?)",
        "accounts[1].symbolz: unknown key (check its spelling and indentation)",
        "accounts[2].name: 'bad name' is not a usable name: letters, digits, '_', '.', '-' only",
        "feeds.stale_after_s: must be greater than 0.0 (got -1)",
        "accounts[1].name: 'main' is already used by accounts[0]",
        "accounts[1]: okx needs password_env or password_file",
        "accounts[2]: hyperliquid needs wallet_address",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 2\naccounts: []", "version: this alertd reads config version 1 (got 2)"),
        ("accounts: [", "malformed YAML"),
        ("- a\n- b", "a config file is a YAML mapping"),
        ("version: 1\naccounts: []", "accounts: must not be empty"),
        (
            "version: 1\naccounts:\n  - {name: a, exchange: gate, api_key_env: K, "
            "api_key_file: /k, secret_env: S}",
            "accounts[0]: give api_key_env or api_key_file, not both",
        ),
    ],
)
def test_bad_files(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text))


def test_secrets_come_from_env_and_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t-value\n")
    config = parse_config(GOOD.format(secret_file=secret_file))
    found = read_secrets(config.accounts[0], {"BINANCE_API_KEY": "k3y-value"})
    assert found == {"api_key": Secret("k3y-value"), "secret": Secret("s3cr3t-value")}
    assert "k3y-value" not in repr(found) and "s3cr3t-value" not in str(found)
    assert read_secrets(config.accounts[1], {}) == {}


def test_missing_secrets_are_listed(tmp_path: Path) -> None:
    config = parse_config(GOOD.format(secret_file=tmp_path / "absent"))
    with pytest.raises(ConfigError) as info:
        read_secrets(config.accounts[0], {}, where="accounts[0]")
    assert info.value.problems == [
        "accounts[0].api_key_env: environment variable BINANCE_API_KEY is not set",
        f"accounts[0].secret_file: cannot read {tmp_path / 'absent'}: No such file or directory",
    ]


def run_check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return alertd("check", "-c", str(config), env={"PATH": "/usr/bin:/bin", **env})


def test_check_command(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t-value")
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.format(secret_file=secret_file))
    ok = run_check(path, {"BINANCE_API_KEY": "k3y-value"})
    assert ok.returncode == 0, ok.stderr
    assert "OK (2 accounts: main, hl; 3 rules; 0 receivers)" in ok.stdout
    missing = run_check(path, {})
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "alertd: accounts[0].api_key_env: environment variable BINANCE_API_KEY is not set"
    )
    assert "Traceback" not in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\naccounts:\n  - name: x\n    exchange: bianance\n")
    result = run_check(bad, {})
    assert result.returncode == 2
    assert "did you mean binanceusdm?" in result.stderr


def test_check_validates_receivers(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        GOOD.format(secret_file=tmp_path / "s")
        + """receivers:
  - name: phone
    url: tgram://${TG_TOKEN}/42
  - name: weird
    url: nosuchscheme://x
"""
    )
    (tmp_path / "s").write_text("s")
    result = run_check(path, {"BINANCE_API_KEY": "k"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "alertd: receivers[0].url: environment variable TG_TOKEN is not set",
        "alertd: receivers[1].url: apprise does not understand this nosuchscheme:// URL",
    ]
    ok = run_check(path.parent / "config.yaml", {"BINANCE_API_KEY": "k", "TG_TOKEN": "123:abc"})
    assert "receivers[1]" in ok.stderr and "TG_TOKEN" not in ok.stderr


def test_check_warns_about_files_others_can_read(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t")
    secret_file.chmod(0o644)
    env_file = tmp_path / "alertd.env"
    env_file.write_text("BINANCE_API_KEY=k\n")
    env_file.chmod(0o640)
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.format(secret_file=secret_file))
    path.chmod(0o666)
    result = alertd(
        "check",
        "-c",
        str(path),
        "--env-file",
        str(env_file),
        env={"PATH": "/usr/bin:/bin", "BINANCE_API_KEY": "k"},
    )
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.strip().splitlines()
    assert warnings == [
        f"warning: accounts[0].secret_file: {secret_file} is readable by other users "
        f"(mode 644; chmod 600 {secret_file})",
        f"warning: {env_file} holds secrets and is readable by other users "
        f"(mode 640; chmod 600 {env_file})",
        f"warning: {path} can be changed by other users (mode 666): they could redirect your "
        "alerts; chmod 644 or stricter",
    ]
    assert "s3cr3t" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1.5h", 5400.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    from alertd.config import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1y", "w", "-1h", "nan", "1 week"])
def test_durations_refused(text: str) -> None:
    from alertd.config import parse_duration

    with pytest.raises(ValueError):
        parse_duration(text)


PREDICTIVE = """
version: 1
accounts:
  - {{name: main, exchange: hyperliquid, wallet_address: "0xabc"}}
rules:
{rules}
"""


def test_predictive_rule_parameters_are_read_and_checked() -> None:
    from alertd.daemon.evaluation import build_rules

    good = parse_config(
        PREDICTIVE.format(
            rules="  - {name: p, metric: liquidation_probability, scope: position, above: 0.05,"
            " horizon: 30m, window: 2h}\n"
            "  - {name: t, metric: time_to_liquidation, below: 900, window: 10m}\n"
            "  - {name: s, metric: liquidation_distance_sigma, below: 2}"
        )
    )
    p, t, s = build_rules(good)[:3]
    pc, tc, sc = p.condition, t.condition, s.condition
    assert (pc.horizon_s, pc.window_s, tc.horizon_s, tc.window_s) == (1800, 7200, None, 600)
    assert (sc.horizon_s, sc.window_s) == (None, None)  # the metric's defaults, when read
    assert len({p.series, t.series, s.series}) == 3
    found = problems(
        PREDICTIVE.format(
            rules="  - {name: a, metric: liquidation_probability, above: 5}\n"
            "  - {name: b, metric: time_to_liquidation, below: 900, horizon: 1h}\n"
            "  - {name: c, metric: liquidation_distance_sigma, below: 2, window: 2d}\n"
            "  - {name: d, metric: margin_ratio, above: 0.5, window: 1h}\n"
            "  - {name: e, metric: liquidation_probability, above: 0.1, horizon: 10s}\n"
            "  - {name: f, metric: liquidation_probability, above: 0.1, horizon: soon}"
        )
    )
    assert found == [
        "rules[0]: liquidation_probability is a probability: a threshold of 5 can never be "
        "crossed (use a value from 0 to 1, e.g. 0.05 for 5%)",
        "rules[1].horizon: time_to_liquidation takes no horizon (it takes window)",
        "rules[2].window: 172800s is outside 60s..86400s (from a minute to a day of mark "
        "prices kept per symbol)",
        "rules[3].window: margin_ratio takes no window",
        "rules[4].horizon: 10s is outside 60s..604800s (from a minute to a week ahead)",
        "rules[5].horizon: not a duration: 'soon' (use seconds, or 30s, 5m, 1h, 1d, 1w)",
    ]


def test_check_refuses_a_bad_horizon_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        PREDICTIVE.format(
            rules="  - {name: p, metric: liquidation_probability, above: 0.05, horizon: -1h}"
        )
    )
    result = run_check(path, {})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "alertd: rules[0].horizon: not a duration: '-1h' (use seconds, or 30s, 5m, 1h, 1d, 1w)"
    ]


def sources(addresses: str, extra: str = "") -> str:
    """A config of 40 accounts spread over ``addresses`` (a YAML list's items)."""
    accounts = "".join(
        f"  - {{name: acct{i}, exchange: hyperliquid, wallet_address: '0xabc'}}\n"
        for i in range(40)
    )
    return f"version: 1\nfeeds:\n  source_addresses: [{addresses}]\naccounts:\n{accounts}{extra}"


def test_source_addresses_are_ip_literals_listed_once() -> None:
    found = problems(
        sources(
            "127.0.0.2, example.com, 127.0.0.2",
            "  - {name: own, exchange: hyperliquid, wallet_address: '0xabc',"
            " source_address: '::g'}\n",
        )
    )
    assert found == [
        "accounts[40].source_address: '::g' is not an IP address (an IPv4 or IPv6 literal "
        "this machine owns)",
        "feeds.source_addresses: 'example.com' is not an IP address (an IPv4 or IPv6 literal "
        "this machine owns)",
    ]
    assert problems(sources("127.0.0.2, 127.0.0.2")) == [
        "feeds.source_addresses: 127.0.0.2 is listed twice (item 1)"
    ]
    assert problems(sources("0.0.0.0")) == [
        "feeds.source_addresses: 0.0.0.0 is not an address a connection can be sent from"
    ]


def test_an_account_keeps_its_source_address_whatever_happens_to_the_others() -> None:
    addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    config = parse_config(sources(", ".join(addresses)))
    before = {a.name: source_address(a, config.feeds.source_addresses) for a in config.accounts}
    # every address serves some of the 40
    assert set(before.values()) == set(addresses)
    # the others removed and the order of the list changed: each keeps its own
    for account in config.accounts[::3]:
        assert source_address(account, addresses[::-1]) == before[account.name]
    # an address added takes accounts only for itself; the rest stay where they were
    after = {a.name: source_address(a, [*addresses, "127.0.0.5"]) for a in config.accounts}
    moved = {name for name in before if after[name] != before[name]}
    assert moved and all(after[name] == "127.0.0.5" for name in moved)
    # an address removed hands on only its own accounts
    fewer = {a.name: source_address(a, addresses[1:]) for a in config.accounts}
    assert all(fewer[n] == before[n] for n in before if before[n] != addresses[0])
    # an account's own address wins over the list's
    own = config.accounts[0].model_copy(update={"source_address": "127.0.0.9"})
    assert source_address(own, addresses) == "127.0.0.9"
    assert source_address(config.accounts[0], []) is None


def test_check_refuses_an_address_the_machine_does_not_have(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    # 127.0.0.0/8 is all loopback on Linux; 192.0.2.0/24 is TEST-NET-1 (RFC 5737), no host's
    path.write_text(sources("127.0.0.2, 192.0.2.1"))
    for command in ("check", "run"):
        result = alertd(command, "-c", str(path), env={"PATH": "/usr/bin:/bin"})
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.strip() == (
            "alertd: feeds.source_addresses[1]: 192.0.2.1 is not an address of this machine "
            "(Cannot assign requested address): add it to an interface or remove it"
        ), command
        assert "Traceback" not in result.stderr
    path.write_text(sources("127.0.0.2, 127.0.0.3"))
    ok = alertd("check", "-c", str(path), env={"PATH": "/usr/bin:/bin"})
    assert ok.returncode == 0, ok.stderr
