"""Bad input gets one line per problem and exit 2 (3 for a state file), never a traceback.

One test per class of input that used to crash alertd (issue 12); each failed before the fix.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from alertd.config import ConfigError, parse_config
from alertd.daemon.store import Store
from alertd.limits import MAX_YAML_VALUES
from alertd.rules.model import Silence
from tests.support.inprocess import Run, alertd

ROOT = Path(__file__).resolve().parent.parent
BASE = """version: 1
state_path: {state}
accounts:
  - name: main
    exchange: hyperliquid
    wallet_address: "0xabc"
"""


def config(tmp_path: Path, extra: str = "", name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(BASE.format(state=tmp_path / "state.sqlite") + extra)
    return path


def check(tmp_path: Path, extra: str) -> Run:
    return alertd("check", "-c", str(config(tmp_path, extra)))


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE.format(state="s.sqlite") + text)
    return info.value.problems


def assert_one_line_each(run: Run, code: int = 2) -> None:
    assert run.code == code, run.err
    assert "Traceback" not in run.err
    assert all(line.startswith(("alertd: ", "warning: ")) for line in run.problems), run.err


# --- check: every problem listed, none raised -------------------------------------------


def test_a_bad_threshold_is_one_problem_among_the_others() -> None:
    found = problems(
        "rules:\n"
        "  - {name: a, metric: worst_ratio, above: banana}\n"
        "  - {name: b, metric: worst_ratio, above: 1e999999}\n"
        "  - {name: c, metric: worst_ratio, below: .nan}\n"
        "feeds: {stale_after_s: -1}\n"
    )
    assert found == [
        "feeds.stale_after_s: must be greater than 0.0 (got -1)",
        "rules[0].above: not a decimal number: 'banana'",
        "rules[1].above: out of range (got '1e999999'; alertd reads numbers from 1e-30 to 1e30)",
        "rules[2].below: must be a finite number (got 'nan')",
    ]


@pytest.mark.parametrize(
    "extra",
    [
        "receivers: [{name: a, url: 'json://localhost'}]\nroutes: [{receivers: 5}]\n",
        "receivers: [{name: [x], url: 'json://localhost'}]\nroutes: [{receivers: [a]}]\n",
        "receivers: [{name: a, url: 'json://localhost', tags: 7}]\nroutes: [{tags: [x]}]\n",
        "receivers: [{name: a, url: 'json://x'}]\nroutes: [{receivers: [a], fallback: [a]}]\n",
        "receivers: 3\nroutes: {a: 1}\n",
    ],
)
def test_cross_field_checks_survive_wrong_types(extra: str) -> None:
    found = problems(extra)
    assert found and all(": " in p for p in found)


@pytest.mark.parametrize("zone", ["Europe", "x" * 300, "../../../etc/passwd", "UTC\x00"])
def test_time_zones_that_are_folders_or_nonsense(zone: str) -> None:
    found = problems(f"quiet_hours: {{start: '23:00', end: '07:00', timezone: {json.dumps(zone)}}}")
    assert len(found) == 1 and found[0].startswith("quiet_hours.timezone: unknown time zone")


def test_huge_numbers_and_deep_nesting_are_refused_up_front() -> None:
    (found,) = problems("feeds: {stale_after_s: " + "9" * 5000 + "}\n")
    assert "a number longer than 64 characters" in found and len(found) < 200
    (found,) = problems("labels: " + "[" * 1000 + "]" * 1000 + "\n")
    assert "nested deeper than 32 levels" in found


def test_alias_bombs_are_refused_fast_and_never_formatted() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 20)]
    started = time.monotonic()
    (found,) = problems(
        "\n".join(lines) + "\nrules: [{name: b, metric: worst_ratio, above: *a19}]\n"
    )
    assert time.monotonic() - started < 2
    assert f"aliases expand to more than {MAX_YAML_VALUES} values" in found and len(found) < 200
    (found,) = problems("x: &x [*x]\n")
    assert "an alias refers to a value that contains it" in found
    # ordinary aliases still work
    parse_config(
        BASE.format(state="s.sqlite")
        + "receivers:\n  - {name: a, url: 'json://localhost', tags: &t [ops]}\n"
        "  - {name: b, url: 'json://localhost', tags: *t}\n"
    )


def test_duplicate_keys_are_reported_with_the_rest() -> None:
    found = problems("state_path: other.sqlite\nrules:\n  - {name: a, metric: worst_ratio}\n")
    assert found[0] == (
        "state_path: given twice (lines 2 and 7); remove one (YAML would keep only the last)"
    )
    assert found[1:] == ["rules[0]: give exactly one of above or below"]


def test_unreadable_config_and_key_files(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"version: 1\n# caf\xe9\n")
    run = alertd("check", "-c", str(latin1))
    assert_one_line_each(run)
    assert "cannot read: not UTF-8 text (byte 0xe9 at offset 16)" in run.err
    run = alertd("check", "-c", "/dev/zero")
    assert_one_line_each(run)
    assert "larger than 256 KiB" in run.err
    bad_key = tmp_path / "key"
    bad_key.write_bytes(b"\xff\xfe")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    run = check(
        tmp_path,
        "  - name: bn\n    exchange: binanceusdm\n    api_key_file: /dev/zero\n"
        f"    secret_file: {bad_key}\n"
        f"  - name: gt\n    exchange: gate\n    api_key_file: {fifo}\n"
        f"    secret_file: {tmp_path}\n",
    )
    assert_one_line_each(run)
    assert run.problems == [
        "alertd: accounts[1].api_key_file: cannot read /dev/zero: larger than 64 KiB, "
        "alertd's limit for this file",
        f"alertd: accounts[1].secret_file: cannot read {bad_key}: not UTF-8 text "
        "(byte 0xff at offset 0)",
        f"alertd: accounts[2].api_key_file: {fifo} is empty",  # no writer: read as empty
        f"alertd: accounts[2].secret_file: cannot read {tmp_path}: it is a directory",
    ]


def test_a_bomb_costs_little_memory_and_time(tmp_path: Path) -> None:
    """In a subprocess capped at 400 MB of address space: refused, not swapped to death."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 30)]
    path = config(
        tmp_path, "\n".join(lines) + "\nrules: [{name: b, metric: worst_ratio, above: *a29}]\n"
    )

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (400 << 20, 400 << 20))

    result = subprocess.run(
        [sys.executable, "-m", "alertd", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=cap,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    assert f"aliases expand to more than {MAX_YAML_VALUES} values" in result.stderr


# --- configs check accepted but run could not use -----------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "rules: [{name: a, metric: worst_ratio, above: 1, message: '{value:d}'}]",
            "rules[0].message: not a usable message template: Unknown format code 'd'",
        ),
        (
            "rules: [{name: a, metric: worst_ratio, above: 1, message: '{'}]",
            "rules[0].message: not a usable message template: Single '{' encountered",
        ),
        (
            "rules: [{name: a, metric: worst_ratio, above: 1, message: '{symbol[9]}'}]",
            "rules[0].message: {symbol[9]} is not a field name",
        ),
        (
            "rules: [{name: a, metric: worst_ratio, above: 1, message: '{value:>999999999}'}]",
            "rules[0].message: {value:>999999999}: a format spec is plain",
        ),
        ("heartbeat: {digest_at: banana}", "heartbeat.digest_at: 'banana' is not a time of day"),
        (
            'quiet_hours: {start: "23:00\\n", end: "07:00"}',
            "quiet_hours.start: '23:00\\n' is not a time of day like 23:00",
        ),
        ("rules: [{name: a, metric: worst_ratio, above: 1, for: .nan}]", "rules[0].for: not a"),
        (
            "rules: [{name: a, metric: worst_ratio, above: 1, keep_firing_for: .inf}]",
            "rules[0].keep_firing_for: longer than 3660 days",
        ),
        (
            "rules: [{name: a, metric: worst_ratio, above: 1, repeat: 99999999d}]",
            "rules[0].repeat: longer than 3660 days",
        ),
        ("feeds: {request_timeout_s: .inf}", "feeds.request_timeout_s: input should be a finite"),
        ("heartbeat: {deadman_interval: 0}", "heartbeat.deadman_interval: must be at least 0.1"),
        ("delivery: {retry_initial: 0}", "delivery.retry_initial: must be at least 0.1"),
        ("delivery: {retry_initial: 10, retry_max: 5}", "retry_initial 10s is above retry_max 5s"),
        ("state_path: ':memory:'", "state_path: ':memory:' is not a file"),
        ("accounts: [{name: a, exchange: gate, api_key_env: MY-KEY, secret_env: S}]", "MY-KEY"),
    ],
)
def test_what_run_cannot_use_check_refuses(extra: str, expected: str) -> None:
    text = BASE.format(state="s.sqlite").replace("state_path: s.sqlite\n", "")
    if extra.startswith("accounts"):
        text = "version: 1\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text + extra + "\n")
    assert any(p.startswith(expected) or expected in p for p in info.value.problems), info.value


def test_templates_check_accepts_render(tmp_path: Path) -> None:
    run = check(
        tmp_path,
        "rules:\n  - name: a\n    metric: worst_ratio\n    above: 0.5\n"
        "    message: '{account} {value!r:>10} {rule:.3} {{literal}} {unknown}'\n",
    )
    assert run.code == 0, run.err


# --- filters and silences that match nothing ------------------------------------------------


def test_check_warns_about_rule_filters_that_match_nothing(tmp_path: Path) -> None:
    run = check(
        tmp_path,
        "rules:\n"
        "  - {name: a, metric: worst_ratio, above: 0.5, accounts: [mian], exchanges: [binance]}\n"
        "  - {name: b, metric: worst_ratio, above: 0.5, accounts: []}\n",
    )
    assert run.code == 0, run.err
    assert run.problems == [
        "warning: rules[0].accounts[0]: no account named 'mian' (did you mean main?): "
        "the filter matches nothing there",
        "warning: rules[0].exchanges[0]: no account is on 'binance' (known: hyperliquid): "
        "the filter matches nothing there",
        "warning: rules[1].accounts: an empty list: this rule applies to nothing",
    ]


def test_silence_add_warns_about_labels_that_match_nothing(tmp_path: Path) -> None:
    path = config(tmp_path)
    run = alertd(
        "silence", "-c", str(path), "add", "--match", "acount=main", "--match",
        "alertname=feed-stal", "--match", "symbol=BTC/USDT:USDT", "--for", "1h",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert run.problems == [
        "warning: --match acount=main: no alert has the label 'acount' (did you mean account?): "
        "this silence mutes nothing",
        "warning: --match alertname=feed-stal: no alertname 'feed-stal' in this config "
        "(did you mean feed-stale?): this silence mutes nothing",
    ]
    for quiet in ("account=main", "alertname=margin-call"):  # a system message's name too
        assert alertd("silence", "-c", str(path), "add", "--match", quiet, "--for", "1h").err == ""


# --- silences far in the future -----------------------------------------------------------


def test_silence_durations_are_capped_and_old_ones_still_list(tmp_path: Path) -> None:
    path = config(tmp_path)
    run = alertd("silence", "-c", str(path), "add", "--match", "account=main", "--for", "99999999d")
    assert_one_line_each(run)
    assert run.problems == [
        "alertd: --for: longer than 3660 days, alertd's limit (got '99999999d')"
    ]
    # one stored by an alertd without the cap: listed, and it can be expired
    store = Store(tmp_path / "state.sqlite")
    store.add_silence(Silence("far", {"account": "main"}, 8.6e12, time.time()))
    store.close()
    listed = alertd("silence", "-c", str(path), "list")
    assert listed.code == 0, listed.err
    assert "far  active   until 8600000000000 (epoch seconds)  account=main" in listed.out
    assert alertd("silence", "-c", str(path), "expire", "far").code == 0
    assert "expired" in alertd("silence", "-c", str(path), "list").out


# --- state files that are not SQLite ------------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "not sqlite", "/dev/null"])
@pytest.mark.parametrize(
    "argv", [("status",), ("history",), ("silence", "list"), ("silence", "expire", "x")]
)
def test_unusable_state_files_exit_3(tmp_path: Path, kind: str, argv: tuple[str, ...]) -> None:
    state = {"directory": tmp_path, "not sqlite": tmp_path / "junk", "/dev/null": "/dev/null"}[kind]
    (tmp_path / "junk").write_text("not a database, but long enough to be read as a header " * 9)
    path = tmp_path / "c.yaml"
    path.write_text(BASE.format(state=state))
    command, *rest = argv
    run = alertd(command, "-c", str(path), *rest)
    assert_one_line_each(run, code=3)
    assert run.problems[0].startswith(f"alertd: state file {state}: ")


def test_status_from_the_state_file_prints_markup_as_written(tmp_path: Path) -> None:
    path = config(tmp_path)
    assert alertd("silence", "-c", str(path), "list").code == 0  # the state file is made
    run = alertd("status", "-c", str(path))
    assert run.code == 0, run.err
    assert run.out.startswith("alertd status from the state file")


# --- calc -------------------------------------------------------------------------------


def snapshot_file(tmp_path: Path, **changes: Any) -> Path:
    data = json.loads((ROOT / "examples" / "binanceusdm.json").read_text())
    for key, value in changes.items():
        if key.startswith("position_"):
            data["positions"][0][key.removeprefix("position_")] = value
        else:
            data[key] = value
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mark", "BTC/USDT:USDT=1e999999"], "--mark BTC/USDT:USDT: out of range"),
        (["--move", "1e999999"], "--move: out of range"),
        (["--target-ratio", "1e-999999"], "--target-ratio: out of range"),
        (["--move", "NaN"], "--move: must be a finite number"),
    ],
)
def test_calc_arguments_out_of_range(tmp_path: Path, args: list[str], expected: str) -> None:
    run = alertd("calc", str(snapshot_file(tmp_path)), *args)
    assert_one_line_each(run)
    assert run.problems[0].startswith(f"alertd: {expected}"), run.err


def test_calc_snapshot_numbers_out_of_range(tmp_path: Path) -> None:
    run = alertd("calc", str(snapshot_file(tmp_path, position_contracts="1e-999999")))
    assert_one_line_each(run)
    assert run.problems == [
        "alertd: positions[0].contracts: out of range (got '1e-999999'; alertd reads numbers "
        "from 1e-30 to 1e30)"
    ]
    deep = tmp_path / "deep.json"
    deep.write_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "nested deeper than 32 levels" in alertd("calc", str(deep)).err
    digits = tmp_path / "digits.json"
    digits.write_text('{"schema": ' + "1" * 5000 + "}")
    assert "a number longer than 64 characters" in alertd("calc", str(digits)).err


def test_calc_refuses_a_coin_that_is_also_a_margin_asset(tmp_path: Path) -> None:
    """USDC in the pool twice, as a collateral coin (at its amount and ratio) and as a margin
    asset on its own equity line (at its rates): counted twice. A hand-written snapshot that
    says both is refused, the field named (it was computed, the wallet counted twice)."""
    data = json.loads((ROOT / "examples" / "binanceusdm-multi-assets.json").read_text())
    assert data["cross"]["collateral"][0]["asset"] == "USDC"
    data["cross"]["margin_assets"] = [{"asset": "USDC", "wallet_balance": "22"}]
    path = tmp_path / "both.json"
    path.write_text(json.dumps(data))
    run = alertd("calc", str(path))
    assert_one_line_each(run)
    assert run.problems == [
        "alertd: cross.margin_assets[0].asset: USDC is also a collateral coin "
        "(cross.collateral[0]): one or the other"
    ]


def test_calc_prints_names_as_written(tmp_path: Path) -> None:
    run = alertd("calc", str(snapshot_file(tmp_path, account="[/]\ud800[bold]")))
    assert run.code == 0, run.err
    assert "[/]\\ud800[bold]" in run.out


# --- replay -----------------------------------------------------------------------------

SPEC = "BTC/USDT:USDT long 0.5 @ 60000 x20 isolated"
T0 = 1_700_000_000_000


def prices(tmp_path: Path, body: str, name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def replay(*argv: str) -> Run:
    return alertd("replay", *argv)


@pytest.mark.parametrize(
    ("body", "name", "expected"),
    [
        (f"open_time,price\n{T0},60000,extra\n", "p.csv", "row 1: 3 fields, but the header has 2"),
        (f"open_time,price\n{T0}\n", "p.csv", "row 1: 1 fields, but the header has 2"),
        ("[1, 2, 3]", "p.json", "row 1: expected an object like"),
        ("[[1, 2, 3]]", "p.json", "row 1: expected [time, open, high, low, close, ...]"),
        ('[{"time": 1}, 5]', "p.json", "row 2: expected an object"),
        ('[{"time": 1700000000}]', "p.json", "no price columns"),
        ('[{"time": 1700000000, "price": 1}, {"price": 2}]', "p.json", "row 2: no 'time' value"),
        (f"[[{T0}, NaN, 1, 1, 1]]", "p.json", "must be a finite number (got 'nan')"),
        (f"[[{T0}, Infinity, 1, 1, 1]]", "p.json", "must be a finite number"),
        ("[[1e30, 1, 1, 1, 1]]", "p.json", "outside 1970 to 9999"),
        ("[[-5, 1, 1, 1, 1]]", "p.json", "outside 1970 to 9999"),
        ('[["0001-01-01T00:00:00+01:00", 1, 1, 1, 1]]', "p.json", "outside 1970 to 9999"),
        ("open_time,price\n" + "9" * 25 + ",1\n", "p.csv", "outside 1970 to 9999"),
    ],
)
def test_replay_histories_of_the_wrong_shape(
    tmp_path: Path, body: str, name: str, expected: str
) -> None:
    run = replay(str(prices(tmp_path, body, name)), "--position", SPEC)
    assert_one_line_each(run)
    assert expected in run.err, run.err


def test_replay_readme_is_not_a_history() -> None:
    run = replay(str(ROOT / "README.md"), "--position", SPEC)
    assert_one_line_each(run)


def zip_with(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, data)
    return path


def test_replay_corrupt_encrypted_and_junk_archives(tmp_path: Path) -> None:
    good = f"open_time,price\n{T0},60000\n{T0 + 60_000},60000\n".encode()
    corrupt = zip_with(tmp_path / "corrupt.zip", "p.csv", good * 50)
    raw = bytearray(corrupt.read_bytes())
    raw[40:60] = b"\x00" * 20  # inside the deflated data
    corrupt.write_bytes(bytes(raw))
    encrypted = zip_with(tmp_path / "encrypted.zip", "p.csv", good)
    raw = bytearray(encrypted.read_bytes())
    raw[6] |= 1  # the "encrypted" flag, in the local header and the central directory
    raw[raw.rindex(b"PK\x01\x02") + 8] |= 1
    encrypted.write_bytes(bytes(raw))
    junk_feather = tmp_path / "junk.feather"
    junk_feather.write_bytes(b"ARROW1\x00\x00" + os.urandom(64))
    not_utf8 = zip_with(tmp_path / "latin1.zip", "p.csv", b"open_time,price\n\xe9\n")
    for path, expected in [
        (corrupt, "not a readable zip file"),
        (encrypted, "it is encrypted (alertd reads unencrypted zips)"),
        (junk_feather, "not a readable feather file"),
        (not_utf8, "not UTF-8 text"),
        (tmp_path / "missing.zip", "cannot read: No such file or directory"),
    ]:
        run = replay(str(path), "--position", SPEC)
        assert_one_line_each(run)
        assert expected in run.err, (path, run.err)


def test_replay_a_zip_bomb_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("p.csv", "w") as f,
    ):
        chunk = b"0" * (1 << 20)
        for _ in range(129):
            f.write(chunk)
    run = replay(str(path), "--position", SPEC)
    assert_one_line_each(run)
    assert "larger than 128 MiB uncompressed" in run.err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--position", "BTC/USDT:USDT long . @ 60000"],
            "--position 'BTC/USDT:USDT long . @ 60000'",
        ),
        (["--position", SPEC, "--exchange", "nope"], "unknown exchange 'nope'"),
        (["--position", SPEC, "--plot", "/nonexistent/out.png"], "--plot /nonexistent/out.png: no"),
        (["--position", SPEC, "--start", "0001-01-01T00:00:00+01:00"], "--start: "),
        # one leverage: the limit is per leverage, and five made five times the sweep
        (["--position", SPEC, "--sweep", "--every", "1ms", "--leverage", "5"], ""),
    ],
)
def test_replay_arguments(tmp_path: Path, args: list[str], expected: str) -> None:
    body = "open_time,price\n" + "".join(f"{T0 + i * 60_000},60000\n" for i in range(20))
    run = replay(str(prices(tmp_path, body)), *args)
    if not expected:  # a short history: every entry is within the limit
        assert run.code == 0, run.err
        return
    assert_one_line_each(run)
    assert run.problems[0].startswith(f"alertd: {expected}"), run.err


def test_replay_sweep_entries_are_bounded(tmp_path: Path) -> None:
    body = "open_time,price\n" + "".join(f"{T0 + i * 60_000},60000\n" for i in range(10_001))
    run = replay(str(prices(tmp_path, body)), "--position", SPEC, "--sweep", "--every", "1m")
    assert_one_line_each(run)
    assert "--every: 10,001 entries per leverage (alertd's limit is 10,000)" in run.err


def test_replay_a_snapshot_without_positions(tmp_path: Path) -> None:
    snap = snapshot_file(tmp_path, positions=[])
    body = f"open_time,price\n{T0},60000\n"
    run = replay(str(prices(tmp_path, body)), "--snapshot", str(snap))
    assert_one_line_each(run)
    assert "nothing to replay: the account holds no positions" in run.err


# --- output -----------------------------------------------------------------------------


def test_problems_are_one_line_whatever_they_quote(tmp_path: Path) -> None:
    run = alertd("calc", str(tmp_path / "no\nsuch\x1b[31m.json"))
    assert_one_line_each(run)
    assert run.problems == [
        f"alertd: {tmp_path}/no\\nsuch\\x1b[31m.json: cannot read: No such file or directory"
    ]


def test_bytes_that_are_not_utf8_on_the_command_line(tmp_path: Path) -> None:
    path = config(tmp_path)
    comment = b"caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of argv bytes
    run = alertd("silence", "-c", str(path), "add", "--match", "account=main", "--for", "1h",
                 "--comment", comment)  # fmt: skip
    assert_one_line_each(run)
    assert run.problems == ["alertd: --comment: not valid UTF-8 text: 'caf\\udce9'"]
