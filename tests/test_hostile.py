"""Hostile input never crashes alertd.

Generated configs (YAML text), snapshots (JSON), price histories (CSV, JSON, zip, feather) and
command lines go through :func:`alertd.cli.main.main` in-process, and every run must end as
alertd promises: exit 0 or 2 (3 for a state file that cannot be used), every stderr line a
problem (``alertd: ...``) or a warning (``warning: ...``), never a traceback, within a
deadline. Output goes through strict UTF-8 streams, as a real terminal's would.

The example budget is small for CI (``ALERTD_HOSTILE_EXAMPLES``, default 100 per input kind,
about 10 s). A larger run locally, which also writes the outcomes per input kind:
``ALERTD_HOSTILE_EXAMPLES=2000 ALERTD_HOSTILE_REPORT=out.json pytest tests/test_hostile.py``.
"""

from __future__ import annotations

import collections
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd.config import load_config
from tests.support.inprocess import Run, alertd

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("ALERTD_HOSTILE_EXAMPLES", "100"))
HOSTILE = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=10),  # a single run; the bomb cases below are bounded tighter
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
OUTCOMES: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
FIRST_LINES: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def assert_handled(kind: str, run: Run, allowed: frozenset[int] = frozenset({0, 2})) -> None:
    """The promise: a known exit code, one prefixed line per problem, no traceback."""
    OUTCOMES[kind][f"exit {run.code}"] += 1
    if run.err:
        first = run.err.splitlines()[0]
        FIRST_LINES[kind][re.sub(r"/\S+|\d+", "#", first)[:90]] += 1
    assert "Traceback" not in run.err, run.err
    assert run.code in allowed, run.err
    for line in run.err.splitlines():
        assert line.startswith(("alertd: ", "warning: ")), (line, run.err)
    if run.code != 0:
        assert run.err.strip(), "a failure says why"


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    target = os.environ.get("ALERTD_HOSTILE_REPORT")
    if target:
        common = {kind: dict(lines.most_common(25)) for kind, lines in FIRST_LINES.items()}
        report = {"outcomes": OUTCOMES, "commonest first stderr lines": common}
        Path(target).write_text(json.dumps(report, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files hostile values point at: key files good and bad, a FIFO, a folder, a history."""
    base = tmp_path_factory.mktemp("hostile")
    good_key = base / "key"
    good_key.write_text("k3y")
    good_key.chmod(0o600)
    latin1 = base / "latin1.key"
    latin1.write_bytes(b"caf\xe9\n")
    big = base / "big.key"
    big.write_bytes(b"k" * (2 * 1024 * 1024))
    fifo = base / "fifo"
    os.mkfifo(fifo)
    prices = base / "prices.csv"
    t0 = 1_700_000_000_000
    prices.write_text(
        "open_time,open,high,low,close\n"
        + "".join(f"{t0 + i * 60_000},60000,60100,59900,60000\n" for i in range(30))
    )
    snapshot = base / "snapshot.json"
    snapshot.write_bytes((ROOT / "examples" / "binanceusdm.json").read_bytes())
    return {
        "base": base,
        "key": good_key,
        "latin1": latin1,
        "big": big,
        "fifo": fifo,
        "prices": prices,
        "snapshot": snapshot,
        "state": base / "state.sqlite",
    }


@pytest.fixture(scope="module", autouse=True)
def scratch_cwd(files: dict[str, Path]) -> Iterator[None]:
    """Relative paths a generated config names (``state_path: 0.5``) land in the scratch
    folder, not in the repository."""
    before = os.getcwd()
    os.chdir(files["base"])
    try:
        yield
    finally:
        os.chdir(before)


# --- hostile values ---------------------------------------------------------------------

WORDS = [
    "",
    " ",
    "banana",
    "[/]",
    "[bold]x",
    ":memory:",
    "{value:d}",
    "{",
    "}",
    "{}",
    "{0}",
    "{symbol[99]}",
    "{value.real}",
    "{value:>99999999}",
    "{value:{threshold}}",
    "{nosuch:d}",
    "23:00\n",
    "24:00",
    "7:5",
    "Europe",
    "Europe/Berlin",
    "../../etc/passwd",
    "x" * 300,
    "99999999d",
    "1e999999",
    "-1e999999",
    "1e-999999",
    "NaN",
    "-0",
    "0E-999999",
    "9" * 5000,
    "0." + "0" * 80 + "1",
    "1,5",
    "main",
    "mian",
    "binanceusdm",
    "binance",
    "json://localhost",
    "nosuch://x",
    "${NOT_SET}",
    "${MY-TOKEN}",
    "A-B",
    "\t",
    "line\nbreak",
    "\x1b[31mred",
    "\u2028",
    "\ud800",
    "é",
    "/dev/null",
    "/dev/zero",
    "/",
    "30s",
    "5m",
    ".5",
    "0ms",
    "1e308",
]

SCALARS = st.one_of(
    st.sampled_from(WORDS),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**80), max_value=10**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


# Values that a field may well accept: mutations drawn from these reach the paths past
# validation (rendering, the state file, the engine), where the subtler failures were.
PLAUSIBLE = st.sampled_from(
    [
        0,
        0.1,
        1,
        60,
        "0",
        "1",
        "0.5",
        0.5,
        1e-30,
        1e30,
        316_224_000,
        "250ms",
        "1m",
        "2h",
        "3660d",
        "23:59",
        "00:00",
        "Europe/Berlin",
        "{account}: {value} above {threshold}",
        "{value!r:>10} {rule:.3}",
        "{{literal}} {symbol}",
        ["main"],
        ["mian"],
        ["hyperliquid"],
        [],
        {"team": "ops"},
        "phone",
        ["ops"],
        ["phone"],
        "critical",
        "account",
        "position",
        "margin_ratio",
        "buffer",
        True,
        False,
        None,
        "main",
        "0xabc",
    ]
)
FIELD_VALUES = st.one_of(PLAUSIBLE, PLAUSIBLE, VALUES)


def set_path(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``data`` with the value at ``path`` replaced (missing containers are created)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(data) if isinstance(data, list) else []
        while len(items) <= head:
            items.append({})
        items[head] = set_path(items[head], rest, value)
        return items
    mapping = dict(data) if isinstance(data, dict) else {}
    mapping[head] = set_path(mapping.get(head, {}), rest, value)
    return mapping


# --- configs ----------------------------------------------------------------------------


def base_config(files: dict[str, Path]) -> dict[str, Any]:
    return {
        "version": 1,
        "state_path": str(files["state"]),
        "accounts": [
            {"name": "main", "exchange": "hyperliquid", "wallet_address": "0xabc"},
            {
                "name": "bn",
                "exchange": "binanceusdm",
                "api_key_file": str(files["key"]),
                "secret_file": str(files["key"]),
            },
        ],
        "rules": [
            {"name": "ratio", "metric": "worst_ratio", "above": 0.5, "clear_below": 0.45},
            {"name": "dist", "metric": "liquidation_distance", "below": 0.03, "for": "1m"},
        ],
        "receivers": [{"name": "phone", "url": "json://localhost", "tags": ["ops"]}],
        "routes": [{"severities": ["critical"], "receivers": ["phone"], "fallback": "phone"}],
        "quiet_hours": {"start": "23:00", "end": "07:00", "timezone": "UTC"},
        "heartbeat": {"digest_at": "08:00"},
        "delivery": {"retry_initial": 2, "retry_max": 300},
    }


def under(prefix: tuple[Any, ...], keys: str) -> list[tuple[Any, ...]]:
    """The config paths ``prefix + (key,)``, one per key of the space-separated ``keys``."""
    return [(*prefix, key) for key in keys.split()]


ACCOUNT_KEYS = "name exchange wallet_address api_key_env api_key_file secret_file symbols urls "
ACCOUNT_KEYS += "enabled sandbox"
RULE_KEYS = "name metric scope above below clear_above clear_below for keep_firing_for repeat "
RULE_KEYS += "severity accounts exchanges symbols labels message"
CONFIG_PATHS: list[tuple[Any, ...]] = [
    ("version",),
    ("accounts",),
    ("accounts", 0),
    *under(("accounts", 0), ACCOUNT_KEYS),
    *under(("accounts", 1), ACCOUNT_KEYS),
    ("feeds",),
    *under(("feeds",), "reconcile_interval_s stale_after_s request_timeout_s backoff"),
    *under(("feeds", "backoff"), "initial_s max_s multiplier jitter"),
    ("state_path",),
    ("rules",),
    ("rules", 0),
    *under(("rules", 0), RULE_KEYS),
    *under(("rules", 1), RULE_KEYS),
    ("builtin_rules",),
    ("builtin_rules", "feed_down_after_s"),
    ("receivers",),
    *under(("receivers", 0), "name url tags rate_per_min"),
    ("routes",),
    *under(("routes", 0), "severities labels receivers tags fallback"),
    ("quiet_hours",),
    *under(("quiet_hours",), "start end timezone"),
    *under(("heartbeat",), "digest_at deadman_url deadman_interval"),
    *under(("delivery",), "retry_initial retry_max drain_on_shutdown"),
    *under(("http",), "enabled port"),
    ("unknown_key",),
]


def bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


TEXT_EDITS = st.sampled_from(
    [
        "none",
        "duplicate-key",
        "bomb",
        "deep",
        "self-alias",
        "bad-utf8",
        "truncate",
        "tab",
        "huge-int",
        "surrogate-escape",
        "bom",
        "not-a-mapping",
    ]
)


def edit_text(text: str, edit: str, cut: int) -> bytes:
    if edit == "duplicate-key":
        return (text + "state_path: again.sqlite\n").encode()
    if edit == "bomb":
        return (
            text + bomb(12) + f"rules: [{{name: b, metric: worst_ratio, above: *a{11}}}]\n"
        ).encode()
    if edit == "deep":
        return (text + "labels: " + "[" * 2000 + "]" * 2000 + "\n").encode()
    if edit == "self-alias":
        return (text + "x: &x [*x]\n").encode()
    if edit == "bad-utf8":
        return text.encode()[:cut] + b"\xff\xfe" + text.encode()[cut:]
    if edit == "truncate":
        return text.encode()[:cut]
    if edit == "tab":
        return text.replace("  ", "\t", 1).encode()
    if edit == "huge-int":
        return (text + "feeds: {stale_after_s: " + "9" * 5000 + "}\n").encode()
    if edit == "surrogate-escape":
        return (text + 'heartbeat: {digest_at: "\\ud800"}\n').encode()
    if edit == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if edit == "not-a-mapping":
        return b"- 1\n- 2\n"
    return text.encode()


@st.composite
def hostile_configs(draw: st.DrawFn, files: dict[str, Path]) -> bytes:
    data = base_config(files)
    special = st.sampled_from(
        [str(files[k]) for k in ("latin1", "big", "fifo", "base")] + ["/dev/zero", "/nonexistent"]
    )
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(CONFIG_PATHS))
        files_too = path[-1] in ("api_key_file", "secret_file", "state_path")
        data = set_path(
            data, path, draw(st.one_of(FIELD_VALUES, special) if files_too else FIELD_VALUES)
        )
    text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False)
    edit = draw(st.one_of(st.just("none"), st.just("none"), TEXT_EDITS))
    return edit_text(text, edit, draw(st.integers(0, len(text))))


def check_run_would_start(path: Path) -> None:
    """What check accepted, run can interpret: every rule renders, every time parses."""
    import datetime as dt
    from decimal import Decimal

    from alertd.daemon.evaluation import build_rules, quiet_hours
    from alertd.delivery.routing import build_receivers
    from alertd.rules.lifecycle import Kind, Notification
    from alertd.rules.messages import render
    from alertd.rules.model import Subject

    config = load_config(path)
    quiet_hours(config)
    if config.heartbeat.digest_at:
        dt.time.fromisoformat(config.heartbeat.digest_at)
    build_receivers(config)
    for rule in build_rules(config):
        for kind in (Kind.FIRING, Kind.RESOLVED, Kind.REPEAT):
            note = Notification(
                kind, rule, Subject("main", "hyperliquid"), 1e9, 1e9 - 60, Decimal("0.6")
            )
            render(note)


@HOSTILE
@given(data=st.data())
def test_hostile_configs(files: dict[str, Path], data: st.DataObject) -> None:
    path = files["base"] / "config.yaml"
    path.write_bytes(data.draw(hostile_configs(files)))
    run = alertd("check", "-c", str(path))
    assert_handled("config: check", run)
    if run.code == 0:
        check_run_would_start(path)
        for argv in (("silence", "-c", str(path), "list"), ("history", "-c", str(path))):
            assert_handled("config: state commands", alertd(*argv), frozenset({0, 3}))


# --- snapshots --------------------------------------------------------------------------

SNAPSHOT_PATHS: list[tuple[Any, ...]] = [
    ("schema",),
    ("exchange",),
    ("account",),
    ("settle",),
    ("cross",),
    ("cross", "wallet_balance"),
    ("positions",),
    ("positions", 0),
    *[
        ("positions", 0, key)
        for key in (
            "symbol",
            "side",
            "contracts",
            "contract_size",
            "inverse",
            "entry_price",
            "mark_price",
            "margin_mode",
            "isolated_margin",
            "fee_rate",
            "leverage",
            "tick_size",
            "tiers",
        )
    ],
    ("positions", 0, "tiers", 0),
    *[
        ("positions", 0, "tiers", k, key)
        for k in (0, 1)
        for key in ("max_notional", "max_contracts", "mmr", "deduction", "max_leverage")
    ],
]
NUMBER_TEXT = st.sampled_from(
    [
        "1e999999",
        "1e-999999",
        "-1",
        "0",
        "nan",
        "Infinity",
        "1e30",
        "1e-30",
        "9" * 70,
        "1%",
        ".",
        "1",
        "0.001",
        "1e-8",
        "123456789",
        "0.5",
        "100000",
        "-0.5",
        "3",
    ]
)


@st.composite
def hostile_snapshots(draw: st.DrawFn) -> bytes:
    data: Any = json.loads((ROOT / "examples" / draw(st.sampled_from(EXAMPLE_FILES))).read_text())
    for _ in range(draw(st.integers(0, 2))):
        path = draw(st.sampled_from(SNAPSHOT_PATHS))
        data = set_path(data, path, draw(st.one_of(NUMBER_TEXT, NUMBER_TEXT, PLAUSIBLE, VALUES)))
    text = json.dumps(data, allow_nan=True, ensure_ascii=draw(st.booleans()))
    edit = draw(st.sampled_from(["none"] * 6 + ["deep", "huge-number", "bad-utf8", "truncate"]))
    if edit == "deep":
        text = text[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
    elif edit == "huge-number":
        text = text[:-1] + ', "x": ' + "9" * 5000 + "}"
    elif edit == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    raw = text.encode("utf-8", "surrogatepass")
    return raw + b"\xff" if edit == "bad-utf8" else raw


EXAMPLE_FILES = sorted(p.name for p in (ROOT / "examples").glob("*.json"))
CALC_FLAGS = st.lists(
    st.one_of(
        st.tuples(
            st.just("--mark"),
            st.sampled_from(["BTC/USDT:USDT", "ETH/USDT:USDT", "X"]).flatmap(
                lambda sym: st.one_of(NUMBER_TEXT, st.sampled_from(WORDS)).map(
                    lambda v: f"{sym}={v}"
                )
            ),
        ),
        st.tuples(
            st.just("--move"), st.one_of(NUMBER_TEXT, st.sampled_from(["-99.99", "-100", "50"]))
        ),
        st.tuples(
            st.just("--target-ratio"), st.one_of(NUMBER_TEXT, st.sampled_from(["0.5", "1", "2"]))
        ),
        st.tuples(st.just("--json")),
    ),
    max_size=3,
)


@HOSTILE
@given(snapshot=hostile_snapshots(), flags=CALC_FLAGS)
def test_hostile_snapshots(
    files: dict[str, Path], snapshot: bytes, flags: list[tuple[str, ...]]
) -> None:
    path = files["base"] / "snap.json"
    path.write_bytes(snapshot)
    argv = ["calc", str(path), *(part for flag in flags for part in flag)]
    assert_handled("snapshot: calc", alertd(*argv))


# --- price histories --------------------------------------------------------------------

CELLS = st.one_of(
    st.sampled_from(
        [
            "60000",
            "59000.5",
            "0",
            "-1",
            "nan",
            "inf",
            "1e999999",
            "",
            "abc",
            "2021-05-19T12:00:00Z",
            "9999-12-31T23:59:59+00:00",
            "0001-01-01T00:00:00+01:00",
            "99999999999999999999999",
            "1700000000",
            "1700000000000",
            "-5",
            "1e30",
            "\x00",
        ]
    ),
    st.text(max_size=8),
)
HEADERS = st.sampled_from(
    [
        ["open_time", "open", "high", "low", "close"],
        ["timestamp", "price"],
        ["date", "open", "high", "low", "close", "volume"],
        ["when", "value"],
        ["time", "mark_price"],
    ]
)


@st.composite
def hostile_histories(draw: st.DrawFn) -> tuple[str, bytes]:
    header = draw(HEADERS)
    t0 = 1_700_000_000_000
    rows = []
    for i in range(draw(st.integers(0, 12))):
        row = [str(t0 + i * 60_000), "60000", "60100", "59000", "60050", "1"][: len(header)]
        for _ in range(draw(st.integers(0, 1)) * draw(st.integers(0, 2))):
            row[draw(st.integers(0, len(row) - 1))] = draw(CELLS)
        if draw(st.integers(0, 19)) == 0:
            row = [*row, draw(CELLS)] if draw(st.booleans()) else row[:-1]
        rows.append(row)
    kind = draw(
        st.sampled_from(
            ["csv"] * 3 + ["json-rows", "json-objects", "zip", "junk-zip", "junk-feather"]
        )
    )
    if kind == "csv":
        text = "\n".join(",".join(r) for r in [header, *rows])
        return "prices.csv", text.encode("utf-8", "surrogatepass")
    if kind == "json-rows":
        return "prices.json", json.dumps(rows).encode("utf-8", "surrogatepass")
    if kind == "json-objects":
        objects = [dict(zip(header, r, strict=False)) for r in rows]
        return "prices.json", json.dumps(objects).encode("utf-8", "surrogatepass")
    if kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(
                "p.csv",
                "\n".join(",".join(r) for r in [header, *rows]).encode("utf-8", "surrogatepass"),
            )
        return "prices.zip", buffer.getvalue()
    junk = draw(st.binary(max_size=64))
    return ("prices.zip" if kind == "junk-zip" else "prices.feather"), b"PK\x03\x04" + junk


REPLAY_FLAGS = st.lists(
    st.one_of(
        st.tuples(
            st.just("--start"),
            st.sampled_from(
                [
                    "2023-11-14T22:15:00Z",
                    "0001-01-01T00:00:00+01:00",
                    "9999-12-31T23:59:59-12:00",
                    "banana",
                    "2099-01-01",
                ]
            ),
        ),
        st.tuples(st.just("--end"), st.sampled_from(["2023-11-14T22:20:00Z", "1969-01-01", "x"])),
        st.tuples(st.just("--symbol"), st.sampled_from(["BTC/USDT:USDT", "[/]", "ETH"])),
        st.tuples(st.just("--exchange"), st.sampled_from(["binanceusdm", "nope", "okx"])),
        st.tuples(st.just("--json")),
        st.tuples(
            st.just("--sweep"),
            st.just("--every"),
            st.sampled_from(["1ms", "1h", "0", "nan", "99999999d"]),
        ),
    ),
    max_size=3,
)
SPECS = st.sampled_from(
    [
        "BTC/USDT:USDT long 0.5 @ 60000 x20 isolated",
        "BTC/USDT:USDT short 1 @ 60000",
        "BTC/USDT:USDT long . @ 60000",
        "BTC/USDT:USDT long 1.2.3 @ 60000",
        "BTC/USDT:USDT long 1e999999 @ 60000",
        "BTC/USD:BTC long 100 @ 60000 x100 cross",
        "[/] long 1 @ 1",
        "BTC/USDT:USDT long 0 @ 60000",
    ]
)


@HOSTILE
@given(history=hostile_histories(), spec=SPECS, flags=REPLAY_FLAGS)
def test_hostile_histories(
    files: dict[str, Path], history: tuple[str, bytes], spec: str, flags: list[tuple[str, ...]]
) -> None:
    name, content = history
    path = files["base"] / name
    path.write_bytes(content)
    argv = ["replay", str(path), "--position", spec, *(part for flag in flags for part in flag)]
    assert_handled("history: replay", alertd(*argv))


# --- command lines ----------------------------------------------------------------------


@st.composite
def command_lines(draw: st.DrawFn, files: dict[str, Path]) -> list[str]:
    config = files["base"] / "cli.yaml"
    if not config.exists():
        config.write_text(yaml.safe_dump(base_config(files)))
    tokens = st.one_of(
        st.sampled_from(
            [
                "calc",
                "check",
                "silence",
                "status",
                "history",
                "replay",
                "schema",
                "add",
                "list",
                "expire",
                "-c",
                "--config",
                "--match",
                "--for",
                "--comment",
                "--since",
                "--json",
                "--mark",
                "--move",
                "--position",
                "--snapshot",
                "-v",
                "--help",
                "--env-file",
                str(config),
                str(files["snapshot"]),
                str(files["prices"]),
                str(files["fifo"]),
                str(files["base"]),
                "/dev/zero",
                "account=main",
                "acount=main",
                "severity=loud",
                "1h",
                "99999999d",
                "-1s",
                "nan",
                "0",
                "--",
                "-",
                "=",
            ]
        ),
        st.sampled_from(WORDS),
        st.text(max_size=12),
    )
    start = draw(
        st.sampled_from(
            [
                [],
                ["check", "-c", str(config)],
                ["silence", "-c", str(config), "add"],
                ["silence", "-c", str(config), "expire"],
                ["history", "-c", str(config), "--since"],
                ["status", "-c", str(config)],
                ["calc", str(files["snapshot"])],
                ["replay", str(files["prices"]), "--position"],
            ]
        )
    )
    return start + draw(st.lists(tokens, max_size=6))


@HOSTILE
@given(data=st.data())
def test_hostile_command_lines(files: dict[str, Path], data: st.DataObject) -> None:
    argv = data.draw(command_lines(files))
    if "--keys" in argv:  # connects to the exchanges
        return
    run = alertd(*argv)
    allowed = frozenset({0, 2, 3}) if "state file" in run.err else frozenset({0, 2})
    assert_handled("command line", run, allowed)
