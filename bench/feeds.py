"""Footprint of the feeds: one alertd process streaming N accounts from the local exchange.

Starts the local fake Binance USDⓈ-M server (tests/fake_exchange) with N accounts, each
holding three positions, listing ``--markets`` markets (Binance lists about 550; the fake's own
three by default) and pushing every held symbol's mark price once a second (the rate of
Binance's all-market mark stream); then starts ``alertd run`` on a config with those N
accounts and measures:

- time until every account is live (bootstrapped; with ``--ws-cap`` also streaming, by the
  health line), from the start of the process; and exactly, by each account's own
  "streaming" log line (its private stream's first opening), the last one's timestamp, with
  alertd's CPU seconds by then (``all streaming``: the health line comes once a minute);
- alertd's CPU use (% of one core) and RSS (peak and now) over a window once all are live;
- errors: REST timeouts and failed bootstraps during the run (the log's lines), ERROR lines;
- the notifications by kind and rule (what fired, resolved, repeated: a "calm" run in which
  rules fire is not calm, and an account with an alert state costs more per tick), with an
  example message of each; ``--log FILE`` keeps alertd's whole log;
- the private logins refused as expired (``--late-logins N`` has the local Bybit or OKX
  refuse the first login of N accounts so, as a crowded start under load does) and the
  ``feed-down`` alerts by account: fired, resolved, and still firing at the end (blind).

``--rules FILE`` runs the rule set of a YAML list instead of the defaults (e.g. one with
price-dynamics rules, bench/rulesets/). ``--firing`` adds rules every account and every
position breaches (a crash day: all alerts firing), so that the rule engine's work under
load shows in the CPU figure. The built-in defences (leverage, concentration, ADL:
docs/rules.md) are on as shipped; ``--no-defences`` turns them off (the figure before them),
``--insurance`` adds the insurance fund poll.

The built-in gap-risk rule is on (as by default): the exchange serves ``--book-levels`` levels
a side for every market, and alertd polls the held symbols' books; ``--no-gap`` turns the
built-in off (no book is then fetched) to measure what it costs. Binance's books are streamed
(``--no-book-stream``: polled over REST, as before issue 15's streaming); ``--book-updates N``
changes every book N times a second (20 levels each; Binance's BTC diff stream sends about 10
events a second), each change pushed on the depth stream.

``--multi-assets`` (Binance) seeds every account in multi-assets mode with USDC (a margin
asset on its own line) and BTC (a coin following its mark) beside the same positions, and walks
USDT's and USDC's asset indices every mark interval: every frame of the asset index stream
(``!assetIndex@arr``, one subscription) then moves every account's rates, its worst case.

``--source-addresses N`` spreads the accounts over N addresses of the machine, 127.0.0.2,
127.0.0.3, ... (``feeds.source_addresses``; Linux routes all of 127/8 to the loopback), which
the local exchange counts its per-IP limits by (the request weight and websocket openings per
address are printed), as a VPS's extra IPs are to an exchange.

``--exchange bybit`` or ``okx`` runs that exchange's local server and accounts instead (Bybit
and OKX limit private requests per UID, each account its own, where Binance limits them per
IP: docs/scaling.md); their requests are counted, not weighed.

    python bench/feeds.py [--accounts 50] [--markets 550] [--firing] [--no-gap] [--seconds 30]

Everything runs on 127.0.0.1 and stops by itself (at most ``--live-timeout`` seconds of
bootstrap, then ``--seconds`` of measurement).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")

# rules every account (its worst maintenance ratio is above zero with any position open) and
# every position (well within 1,000% of its liquidation price) breaches
FIRING_RULES = [
    {"name": "bench-account-firing", "metric": "worst_ratio", "above": 0.000001},
    {"name": "bench-position-firing", "metric": "liquidation_distance", "below": 10},
]


# the local servers bench can run, per alertd exchange id: (module, class, the positions
# request's path, the one ``--timeout-bootstrap`` holds)
SERVERS = {
    "binanceusdm": ("binance", "FakeBinanceUSDM", "/fapi/v3/positionRisk"),
    "bybit": ("bybit", "FakeBybit", "/v5/position/list"),
    "okx": ("okx", "FakeOKX", "/api/v5/account/positions"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def py_spy() -> Path:
    return Path(sys.executable).with_name("py-spy")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def machine() -> str:
    model = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, nproc {os.cpu_count()}, load {load}, Python {platform.python_version()}"


def source_addresses(count: int) -> list[str]:
    """127.0.0.2, 127.0.0.3, ...: addresses of their own to the local exchange (Linux routes
    all of 127.0.0.0/8 to the loopback interface), as a VPS's extra IPs are to an exchange."""
    return [f"127.0.0.{2 + i}" for i in range(count)]


def most_in_window(
    times: list[float], window_s: float, weights: list[float] | None = None
) -> float:
    """The most (weight, or count) within any ``window_s`` of sorted ``times``."""
    weights = weights or [1.0] * len(times)
    most, first, inside = 0.0, 0, 0.0
    for last, at in enumerate(times):
        inside += weights[last]
        while times[first] <= at - window_s:
            inside -= weights[first]
            first += 1
        most = max(most, inside)
    return most


def bench_accounts(exchange: str, count: int, urls: Any, options: Any) -> list[dict[str, Any]]:
    """The config's accounts acct0.., their secrets in BENCH_KEY_i, BENCH_SECRET_i (and OKX's
    passphrase in BENCH_PASSWORD_i)."""
    accounts = [
        {
            "name": f"acct{i}",
            "exchange": exchange,
            "api_key_env": f"BENCH_KEY_{i}",
            "secret_env": f"BENCH_SECRET_{i}",
            "urls": urls,
            "options": options,
        }
        for i in range(count)
    ]
    if exchange == "okx":  # OKX signs with a passphrase too
        for i, account in enumerate(accounts):
            account["password_env"] = f"BENCH_PASSWORD_{i}"
    return accounts


def bench_config(args: argparse.Namespace, urls: Any, options: Any, state: str) -> dict[str, Any]:
    accounts = bench_accounts(args.exchange, args.accounts, urls, options)
    config: dict[str, Any] = {"version": 1, "accounts": accounts, "state_path": state}
    feeds: dict[str, Any] = {}
    if args.no_book_stream:
        feeds["order_books"] = {"stream": False}
    if args.rest_concurrency is not None:
        feeds["rest_concurrency"] = args.rest_concurrency
    if args.source_addresses:
        feeds["source_addresses"] = source_addresses(args.source_addresses)
    if feeds:
        config["feeds"] = feeds
    if args.firing:
        config["rules"] = FIRING_RULES
    elif args.rules:
        config["rules"] = yaml.safe_load(Path(args.rules).read_text())
    builtin: dict[str, Any] = {}
    if args.stops:
        # every stop rule on (stop-beyond-liquidation is on by default; the rest are not)
        builtin["stops"] = {"missing": True, "max_loss": 500, "max_loss_share": 0.02}
    if args.no_defences:
        builtin.update(leverage=False, concentration=False, adl=False)
    if args.insurance:
        builtin.update(insurance_fund=True, insurance_fund_interval=10)
    if args.no_gap:
        builtin["gap_risk"] = False
    if builtin:
        config["builtin_rules"] = builtin
    return config


def request_weights(
    path: Path,
    start: float,
    marks: tuple[float, float],
    accounts: int,
    exchange_id: str,
    window: tuple[float, float] | None = None,
) -> list[str]:
    """Lines on the REST requests alertd sent (the local exchange's log of them): per
    endpoint, the count and the request weight as alertd's per-IP limiter counts it (Binance's
    documented weights; elsewhere each request counts 1), until every account streamed (the
    last account's own line, exact), until the health line said all were live (up to a minute
    later: the live accounts' settle resyncs and stop reads in it) and in all. ``marks``: those
    two moments, on the monotonic clock the local exchange dates its log by. ``window``: the
    measured window's start and end on that clock, whose requests get a column of their own
    (a calm window's reconciles: one an account a reconcile interval, or fewer)."""
    from urllib.parse import parse_qsl

    from alertd.config import AccountConfig, FeedSettings
    from alertd.feeds.ccxt_exchange import make_exchange

    config = AccountConfig(name="w", exchange="binanceusdm", api_key_env="K", secret_env="S")
    exchange = make_exchange(config, {}, FeedSettings())  # its limiter's weights, no I/O
    # endpoint -> [count, weight] in all, then until all streamed, then until all live
    rows: dict[str, list[float]] = {}
    in_window: dict[str, int] = {}
    by_ip: dict[str, tuple[list[float], list[float]]] = {}  # address -> (times, weights)
    # the TCP connections (client address and port) requests came on before the window, in it
    before: set[tuple[str, str]] = set()
    used: set[tuple[str, str]] = set()
    for line in path.read_text().splitlines():
        at, method, url_path, query, ip, port = [*line.split("\t"), "", "", ""][:6]
        if window is not None and float(at) < window[0]:
            before.add((ip, port))
        # as ccxt is given them: numbers as numbers (the depth's weight goes by its limit)
        params = {k: int(v) if v.isdigit() else v for k, v in parse_qsl(query)}
        weight, every = 1.0, False
        if exchange_id == "binanceusdm":
            # /fapi/v2/account -> ccxt's implicit API fapiPrivateV2 / fapiPublicV2, path account
            _, family, version, endpoint = url_path.split("/", 3)
            suffix = "" if version == "v1" else version.upper()
            apis = [f"{family}{kind}{suffix}" for kind in ("Public", "Private")]
            api = next(
                a for a in apis if endpoint in exchange.api.get(a, {}).get(method.lower(), {})
            )
            limits = exchange.api[api][method.lower()][endpoint]
            cost = exchange.calculate_rate_limiter_cost([api], method, endpoint, params, limits)
            weight = float(cost)
            every = "noSymbol" in limits and "symbol" not in params  # every symbol's at once
        key = f"{method} {url_path}" + (" (no symbol)" if every else "")
        row = rows.setdefault(key, [0.0] * 6)
        for column, until in enumerate((float("inf"), *marks)):
            if float(at) <= until:
                row[2 * column] += 1
                row[2 * column + 1] += weight
        if window is not None and window[0] <= float(at) <= window[1]:
            in_window[key] = in_window.get(key, 0) + 1
            used.add((ip, port))
        times, weights = by_ip.setdefault(ip, ([], []))
        times.append(float(at))
        weights.append(weight)
    lines = [
        f"  {key:38}"
        + "".join(f" {int(r[i]):>6} ({r[i + 1]:>7.0f} w)" for i in (2, 4, 0))
        + (f" {in_window.get(key, 0):>9}" if window is not None else "")
        for key, r in sorted(rows.items(), key=lambda kv: -kv[1][1])
    ]
    per_account = [sum(r[i] for r in rows.values()) / accounts for i in (3, 5, 1)]
    head = f"  {'endpoint':38} {'until streaming':>17} {'until all live':>17} {'in all':>17}"
    head += f" {'in window':>9}" if window is not None else ""
    foot = (
        f"  {'per account':38}"
        + "".join(f" {weight:>17.1f}" for weight in per_account)
        + f"   ({marks[0] - start:.0f} s to all streaming, {marks[1] - start:.0f} s to all live)"
    )
    most = max((most_in_window(times, 60.0, weights), ip) for ip, (times, weights) in by_ip.items())
    per_ip = (
        f"  from {len(by_ip)} address(es); the most one spent in any 60 s: {most[0]:.0f} "
        f"({most[1]})"
    )
    connections = []
    if window is not None:
        connections.append(
            f"  the window's requests came on {len(used)} TCP connection(s), "
            f"{len(used - before)} of them opened in it"
        )
    return [head, *lines, foot, per_ip, *connections]


# alertd.daemon.evaluation logs each notification as "<kind> <rule>: <title>" (Alerting._commit)
NOTIFICATION = re.compile(
    r" INFO alertd\.daemon\.evaluation: (firing|resolved|repeat) (\S+): (.*)$"
)


def openings(path: Path, started_at: float, cap: tuple[int, float] | None) -> list[str]:
    """What the local exchange saw of alertd's websocket openings: how many it accepted and
    refused, the most in any window of the exchange's cap, and when the last one came."""
    lines = path.read_text().splitlines()
    refused = int(lines[-1].split()[1])
    rows = [line.split("\t") for line in lines[:-1]]
    opened = [float(row[0]) - started_at for row in rows]
    if not opened:
        return [f"ws openings : none accepted, {refused} refused"]
    count, window_s = cap or (1, 1.0)
    by_ip: dict[str, list[float]] = {}  # the cap is per IP: the most from one address
    for at, row in zip(opened, rows, strict=True):
        by_ip.setdefault(row[1] if len(row) > 1 else "", []).append(at)
    most = max(int(most_in_window(times, window_s)) for times in by_ip.values())
    per_s = [sum(1 for at in opened if s <= at < s + 1) for s in range(int(opened[-1]) + 1)]
    return [
        f"ws openings  : {len(opened)} accepted, {refused} refused, from {len(by_ip)} "
        f"address(es); most from one in any {window_s:g} s: {most} (cap "
        f"{count if cap else 'none'}); most in a second (all): {max(per_s)}",
        f"              first {opened[0]:.1f} s, last {opened[-1]:.1f} s after alertd's start",
    ]


def notifications(log: str) -> tuple[collections.Counter[tuple[str, str]], dict[str, str]]:
    """The log's notifications counted by (kind, rule), and one title per rule."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    example: dict[str, str] = {}
    for line in log.splitlines():
        found = NOTIFICATION.search(line)
        if found is not None:
            kind, rule, title = found.groups()
            counts[kind, rule] += 1
            example.setdefault(rule, title)
    return counts, example


# a private login refused as expired, as alertd logs the streams it failed: Bybit's
# "Params Error" to an auth past its expires, OKX's 60006 "Timestamp request expired"
REFUSED_LOGIN = re.compile(r" (\S+): \w+ stream (?:error|lost) .*(?:Params Error|60006)")


def blindness(log: str) -> list[str]:
    """The accounts whose private login was refused as expired, and the ``feed-down``
    alerts by account: fired, resolved, and firing still at the end (an account left blind)."""
    refused = {found.group(1) for found in map(REFUSED_LOGIN.search, log.splitlines()) if found}
    fired: collections.Counter[str] = collections.Counter()
    resolved: collections.Counter[str] = collections.Counter()
    for line in log.splitlines():
        found = NOTIFICATION.search(line)
        if found is None or found.group(2) != "feed-down" or found.group(1) == "repeat":
            continue
        account = re.search(r"\bacct\d+\b", found.group(3))  # the bench's account names
        name = account.group(0) if account else found.group(3)
        (fired if found.group(1) == "firing" else resolved)[name] += 1
    blind = sorted(name for name in fired if fired[name] > resolved[name])
    return [
        f"logins       : {len(refused)} accounts had a private login refused as expired",
        f"feed-down    : {sum(fired.values())} fired ({len(fired)} accounts), "
        f"{sum(resolved.values())} resolved, {len(blind)} firing at the end"
        + (f": {', '.join(blind[:10])}" if blind else ""),
    ]


def wait_lines(
    alertd: subprocess.Popen[bytes], log_path: Path, marker: str, want: int, limit_s: float
) -> float:
    """Seconds from now until the log holds ``want`` lines with ``marker`` (inf past limit):
    ": bootstrapped: " or the accounts' ": streaming: " lines."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if alertd.poll() is not None:
            print(log_path.read_text()[-3000:])
            raise SystemExit(f"alertd exited waiting for {want} {marker!r} lines")
        if log_path.read_text().count(marker) >= want:
            return time.monotonic() - start
        time.sleep(0.25)
    return float("inf")


# alertd.daemon.service's health line, once a minute: "health: N accounts, F fresh, S stale, L
# not live (...)"; an account bootstrapped but still waiting for its turn to open its private
# websocket (the per-IP openings' pace) is not live
# the health line's counts (alertd.daemon.service): stale and not live
HEALTH_COUNTS = re.compile(r" health: \d+ accounts?, \d+ fresh, (\d+) stale.*?, (\d+) not live")


def all_live(log: str) -> bool:
    """Whether the log's last health line says every account streams: none not live and
    none stale. An account whose private stream never came up after its bootstrap (a login
    refused: measure12's 19 blind Bybit accounts) is counted stale, never not live."""
    found = HEALTH_COUNTS.findall(log)
    return bool(found) and found[-1] == ("0", "0")


def wait_streaming(alertd: subprocess.Popen[bytes], log_path: Path, limit_s: float) -> float:
    """Seconds from now until a health line says every account streams (:func:`all_live`;
    inf past limit): bootstrapped is not live while the account waits for its turn to open
    its private websocket (``--ws-cap``); the health line comes once a minute, so this is
    late by up to one (the local exchange's log of openings dates the last one)."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if alertd.poll() is not None:
            print(log_path.read_text()[-3000:])
            raise SystemExit("alertd exited while going live")
        if all_live(log_path.read_text()):
            return time.monotonic() - start
        time.sleep(1.0)
    return float("inf")


# alertd.feeds.feed's line once per account, at its private stream's first opening (the
# moment it streams: bootstrapped and its websocket open), dated by the log's own timestamp
STREAMING_LINE = ": streaming: its private stream open"
STREAMING = re.compile(r"^(\S+ \S+) INFO alertd\.feeds\.feed: \S+: streaming: ", re.MULTILINE)


def last_streaming_s(log: str, started_wall: float) -> float:
    """Seconds from ``started_wall`` (time.time() as alertd was started) to the last
    account's streaming line, by the line's own timestamp (the log's local time, ms)."""
    stamps = STREAMING.findall(log)
    if not stamps:
        return float("inf")
    last = max(stamps)  # "YYYY-MM-DD HH:MM:SS,mmm" sorts as it dates
    at = time.mktime(time.strptime(last[:19], "%Y-%m-%d %H:%M:%S")) + int(last[20:]) / 1000
    return at - started_wall


# the health line's running counts (alertd.daemon.service): engine updates and evaluations
HEALTH_RUNNING = re.compile(
    r"^(\S+ \S+) INFO alertd\.daemon\.service: health: .*?, ([\d,]+) engine updates?, "
    r"([\d,]+) evaluations?,",
    re.MULTILINE,
)


def window_rates(log: str, start_wall: float, end_wall: float) -> str | None:
    """Engine updates and evaluations a second between the first and last health lines
    logged within the window (wall-clock ``start_wall`` to ``end_wall``; one a minute: None
    if fewer than two fall in it)."""
    found = []
    for stamp, updates, evaluations in HEALTH_RUNNING.findall(log):
        at = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1000
        if start_wall <= at <= end_wall:
            found.append((at, int(updates.replace(",", "")), int(evaluations.replace(",", ""))))
    if len(found) < 2:
        return None
    (t0, u0, e0), (t1, u1, e1) = found[0], found[-1]
    return (
        f"{(u1 - u0) / (t1 - t0):.0f} engine updates/s, {(e1 - e0) / (t1 - t0):.0f} "
        f"evaluations/s (health lines {t1 - t0:.0f} s apart)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument(
        "--exchange", choices=sorted(SERVERS), default="binanceusdm", help="whose local server"
    )
    parser.add_argument("--markets", type=int, default=0, help="markets listed (0: 3)")
    parser.add_argument("--firing", action="store_true", help="every account past a threshold")
    parser.add_argument(
        "--stops", action="store_true", help="every stop rule on (stop-missing, maximum loss)"
    )
    parser.add_argument(
        "--rules", metavar="YAML", help="these rules (a YAML list) instead of the defaults"
    )
    parser.add_argument("--seconds", type=float, default=30, help="measurement window")
    parser.add_argument("--no-defences", action="store_true", help="leverage/concentration/ADL off")
    parser.add_argument("--insurance", action="store_true", help="poll insurance funds every 10 s")
    parser.add_argument("--live-timeout", type=float, default=180, help="bootstrap limit")
    parser.add_argument(
        "--settle",
        type=float,
        default=0,
        help="seconds to wait once all are live before measuring (steady state: the start "
        "resyncs and first reconciles done)",
    )
    parser.add_argument("--profile", metavar="OUT", help="run alertd under cProfile into OUT")
    parser.add_argument(
        "--profile-window",
        metavar="OUT",
        help="cProfile of alertd over a second window of --seconds after the measured one "
        "(bench/profiled.py: the steady state only, the measured window unprofiled)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="OUT",
        help="py-spy's samples of alertd (collapsed stacks, 100 a second, not pausing it) over "
        "a second window of --seconds after the measured one (py-spy installed in the venv)",
    )
    parser.add_argument(
        "--fake-py-spy",
        metavar="OUT",
        help="py-spy's samples of the local exchange (collapsed stacks, 100 a second, not "
        "pausing it) from alertd's start until every account streams: what serving the start "
        "costs the stand-in (py-spy installed in the venv)",
    )
    parser.add_argument(
        "--timeout-bootstrap",
        type=int,
        metavar="N",
        help="the positions request after the N-th is answered only after alertd's timeout (a "
        "bootstrap timing out once N accounts went live, as at 1,000 accounts under load)",
    )
    parser.add_argument(
        "--keep-log", "--log", metavar="PATH", help="copy alertd's log here (its errors, when live)"
    )
    parser.add_argument(
        "--rest-concurrency",
        type=int,
        metavar="N",
        help="feeds.rest_concurrency (default: the exchange's own, 8, Bybit 32, OKX 64)",
    )
    parser.add_argument("--book-levels", type=int, default=100, help="order book levels a side")
    parser.add_argument("--no-gap", action="store_true", help="the gap-risk built-in off")
    parser.add_argument(
        "--book-updates",
        type=float,
        default=0.0,
        help="changes of every book a second, 20 levels each (Binance's BTC diff stream: 10)",
    )
    parser.add_argument(
        "--no-book-stream", action="store_true", help="order books over REST only (stream: false)"
    )
    parser.add_argument(
        "--ws-cap",
        action="store_true",
        help="the local exchange refuses websocket openings past its documented per-IP cap",
    )
    parser.add_argument(
        "--source-addresses",
        type=int,
        default=0,
        metavar="N",
        help="spread the accounts over N source addresses, 127.0.0.2.. (feeds.source_addresses)",
    )
    parser.add_argument(
        "--multi-assets",
        action="store_true",
        help="Binance multi-assets accounts (USDC, BTC), USDT's and USDC's indices walking",
    )
    parser.add_argument(
        "--late-logins",
        type=int,
        default=0,
        metavar="N",
        help="the local Bybit or OKX refuses the first websocket login of N accounts as "
        "expired (a login starved past its expiry in a crowded start under load)",
    )
    args = parser.parse_args()
    if args.multi_assets and args.exchange != "binanceusdm":
        parser.error("--multi-assets is Binance's mode")
    if args.late_logins and args.exchange not in ("bybit", "okx"):
        parser.error("--late-logins: the local Bybit and OKX only")

    sys.path.insert(0, str(ROOT))  # the local exchange lives with the tests
    import importlib

    module_name, class_name, positions_path = SERVERS[args.exchange]
    module = f"tests.fake_exchange.{module_name}"
    server_class = getattr(importlib.import_module(module), class_name)
    options = server_class().ccxt_options
    port = free_port()
    fake_args = ["--port", str(port), "--accounts", str(args.accounts)]
    fake_args += ["--markets", str(args.markets), "--book-levels", str(args.book_levels)]
    fake_args += ["--book-updates", str(args.book_updates)]
    requests_out = Path(tempfile.mkdtemp()) / "requests.tsv"
    fake_args += ["--requests-out", str(requests_out)]
    openings_out = requests_out.with_name("openings.txt")
    fake_args += ["--openings-out", str(openings_out)]
    if args.ws_cap:
        fake_args.append("--ws-cap")
    if args.multi_assets:
        fake_args.append("--multi-assets")
    if args.late_logins:
        fake_args += ["--late-logins", str(args.late_logins)]
    if args.timeout_bootstrap is not None:
        # held past alertd's request timeout (feeds.request_timeout_s, 10 s by default)
        fake_args += ["--slow-request", f"{positions_path}:{args.timeout_bootstrap}:15"]
    fake = subprocess.Popen(
        [sys.executable, "-m", module, *fake_args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    alertd = None
    try:
        assert fake.stdout is not None
        urls = json.loads(fake.stdout.readline())
        env = dict(os.environ)
        for i in range(args.accounts):
            env[f"BENCH_KEY_{i}"] = f"key{i}"
            env[f"BENCH_SECRET_{i}"] = f"secret{i}"
            env[f"BENCH_PASSWORD_{i}"] = getattr(server_class, "PASSPHRASE", "")
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.yaml"
            state = str(Path(tmp) / "state.sqlite")
            # YAML, so that every account's urls and options are one anchor and aliases (a
            # thousand copies written out would pass alertd's 256 KiB limit on the file)
            config.write_text(yaml.safe_dump(bench_config(args, urls, options, state)))
            log_path = Path(tmp) / "alertd.log"
            with log_path.open("w") as log_file:
                profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
                profile += ["-m", "alertd"]
                if args.profile_window:
                    profile = [str(ROOT / "bench" / "profiled.py"), args.profile_window]
                fake_spy = None
                if args.fake_py_spy:
                    record = ["record", "--pid", str(fake.pid), "--rate", "100", "--nonblocking"]
                    fake_spy = subprocess.Popen(
                        [str(py_spy()), *record, "--format", "raw", "--output", args.fake_py_spy],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                fake_cpu_start = cpu_seconds(fake.pid)
                started_at = time.monotonic()
                started_wall = time.time()
                alertd = subprocess.Popen(
                    [sys.executable, *profile, "run", "-c", str(config)],
                    cwd=ROOT,
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
                live_s = wait_lines(
                    alertd, log_path, ": bootstrapped: ", args.accounts, args.live_timeout
                )
                booted_s = live_s
                # every account streaming (its own log line): the exact all-live, and alertd's
                # CPU then (read within 0.25 s of the last line: the poll)
                left_s = args.live_timeout - (time.monotonic() - started_at)
                streams = wait_lines(alertd, log_path, STREAMING_LINE, args.accounts, left_s)
                cpu_streaming = cpu_seconds(alertd.pid)
                fake_cpu_streaming = cpu_seconds(fake.pid) - fake_cpu_start
                if fake_spy is not None:  # SIGINT: py-spy writes what it sampled and exits
                    fake_spy.send_signal(signal.SIGINT)
                    fake_spy.wait(60)
                if args.ws_cap:  # bootstrapped, not yet live: the openings' pace
                    live_s = time.monotonic() - started_at
                    live_s += wait_streaming(alertd, log_path, args.live_timeout - live_s)
                live_at = time.monotonic()
                cpu_live = cpu_seconds(alertd.pid)  # what going live cost, its retries too
                rss_live = status_kb(alertd.pid, "VmHWM")
                time.sleep(args.settle)
                load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
                c0, t0, w0 = cpu_seconds(alertd.pid), time.monotonic(), time.time()
                time.sleep(args.seconds)
                c1, t1, w1 = cpu_seconds(alertd.pid), time.monotonic(), time.time()
                rss_peak = status_kb(alertd.pid, "VmHWM")
                rss_now = status_kb(alertd.pid, "VmRSS")
                if args.profile_window:  # a second window, profiled (bench/profiled.py)
                    alertd.send_signal(signal.SIGUSR1)
                    time.sleep(args.seconds)
                    alertd.send_signal(signal.SIGUSR2)
                    time.sleep(5)  # its dump
                if args.py_spy:  # a second window, sampled from outside
                    spy = py_spy()
                    record = ["record", "--pid", str(alertd.pid), "--rate", "100", "--nonblocking"]
                    record += ["--duration", str(int(args.seconds)), "--format", "raw"]
                    subprocess.run(
                        [str(spy), *record, "--output", args.py_spy],
                        check=False,
                        capture_output=True,
                    )
                fake_cpu = cpu_seconds(fake.pid)
                alertd.send_signal(signal.SIGTERM)
                code = alertd.wait(60)
            log = log_path.read_text()
        fake.send_signal(signal.SIGTERM)  # it writes its log of requests as it stops
        fake.wait(60)
        if args.keep_log:
            Path(args.keep_log).write_text(log)
        bootstrapped = log.count(": bootstrapped: ")
        # the failures' own lines (the health line names an account retrying after one too)
        timeouts = sum(
            "RequestTimeout" in line for line in log.splitlines() if " health: " not in line
        )
        failed = log.count("bootstrap failed")
        reconcile_failed = log.count("reconcile failed")
        # a periodic job still running when its next run is due (apscheduler skips that run):
        # the feeds manager filters apscheduler's warning a run and sums the skips up every
        # SKIPS_REPORTED_EVERY_S (600 s) instead, so a shorter run shows none here; the
        # requests' "in window" column tells the reconciles done
        summaries = re.findall(r" WARNING .*?: (\d+) \w[\w-]* runs skipped", log)
        skipped = sum(int(n) for n in summaries)
        errors = [line for line in log.splitlines() if " ERROR " in line]
        cpu_pct = (c1 - c0) / (t1 - t0) * 100
        mode = "firing" if args.firing else "calm"
        mode += ", defences off" if args.no_defences else ", defences on"
        mode += ", insurance fund every 10 s" if args.insurance else ""
        mode += ", gap off" if args.no_gap else ", gap on"
        mode += ", books over REST" if args.no_book_stream else ", books streamed where possible"
        mode += f", {args.book_updates:g} book changes/s" if args.book_updates else ""
        mode += ", every stop rule" if args.stops else ""
        mode += f", {args.rest_concurrency} REST slots" if args.rest_concurrency else ""
        mode += ", multi-assets, rates walking" if args.multi_assets else ""
        if args.source_addresses:
            mode += f", {args.source_addresses} source addresses"
        depth_requests = log.count("order book")  # warnings about books, if any
        print(f"machine      : {machine()}")
        print(f"exchange     : {args.exchange} (the local server)")
        print(f"accounts     : {args.accounts} ({bootstrapped} bootstrapped), {mode}")
        print(f"markets      : {args.markets or 3} listed")
        streaming_s = last_streaming_s(log, started_wall) if streams < float("inf") else streams
        print(f"bootstrapped : {booted_s:.1f} s after start")
        print(
            f"all streaming: {streaming_s:.1f} s after start, exact (the last account's "
            f"'streaming' log line); {cpu_streaming:.1f} CPU s of alertd's by then"
        )
        if args.ws_cap:
            print(
                f"all live     : {live_s:.1f} s after start by the health line (one a minute: "
                f"up to 60 s late; limit {args.live_timeout:.0f} s)"
            )
        else:
            print(f"all live     : {live_s:.1f} s after start (limit {args.live_timeout:.0f} s)")
        print(f"window       : {t1 - t0:.1f} s, {args.settle:.0f} s after all live")
        print(f"load average : {load_before} at the window's start (the end's: machine line)")
        print(f"alertd CPU   : {cpu_pct:.2f}% of one core ({c1 - c0:.1f} CPU s)")
        print(f"in the window: {window_rates(log, w0, w1) or '(fewer than two health lines)'}")
        by = " (by the health line)" if args.ws_cap else ""
        print(f"going live   : {cpu_live:.1f} CPU s of alertd's until all were live{by}")
        print(
            f"alertd RSS   : peak {rss_peak / 1024:.0f} MB (at all-live {rss_live / 1024:.0f} MB), "
            f"now {rss_now / 1024:.0f} MB"
        )
        print(
            f"errors       : {timeouts} REST timeouts, {failed} failed bootstraps, "
            f"{reconcile_failed} failed reconciles, {len(errors)} ERROR lines"
        )
        print(
            f"jobs skipped : {skipped} periodic runs (the previous one still running; summed up "
            "by alertd every 600 s: none said in a shorter run)"
        )
        print(f"book warnings: {depth_requests} log lines about order books")
        print(f"exit         : {code}")
        print(
            f"fake server  : {fake_cpu:.1f} CPU s in total (not counted above), "
            f"{fake_cpu_streaming:.1f} from alertd's start until all streaming"
        )
        # alertd's own summary: engine updates, evaluations skipped within bands, notifications
        for line in log.splitlines():
            if "stopped in" in line:
                print("alertd       : " + line.split("stopped in", 1)[1].split(": ", 1)[-1])
        counts, example = notifications(log)
        print(f"notified     : {sum(counts.values())} in all (from the start)")
        for (kind, rule), n in counts.most_common():
            print(f"  {n:7d} {kind} {rule}: e.g. {example[rule]}")
        for line in errors[:5]:
            print("  " + line)
        for line in blindness(log):
            print(line)
        for line in openings(openings_out, started_at, server_class.WS_OPENINGS_PER_IP):
            print(line)
        print("REST requests (the local exchange's log; weight as alertd's limiter counts it):")
        marks = (started_at + streaming_s, live_at)
        weights = request_weights(
            requests_out, started_at, marks, args.accounts, args.exchange, (t0, t1)
        )
        for line in weights:
            print(line)
        return 0
    finally:
        if alertd is not None and alertd.poll() is None:
            alertd.kill()
        fake.send_signal(signal.SIGTERM)  # a no-op once it stopped
        try:
            fake.wait(10)
        except subprocess.TimeoutExpired:
            fake.kill()


if __name__ == "__main__":
    sys.exit(main())
