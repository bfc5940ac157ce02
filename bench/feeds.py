"""Footprint of the feeds: one alertd process streaming 50 accounts from the local exchange.

Starts the local fake Binance USDⓈ-M server (tests/fake_exchange) with N accounts, each
holding a few positions, pushing every held symbol's mark price once a second (the rate of
Binance's all-market mark stream); then starts ``alertd run`` on a config with those N
accounts, lets it bootstrap, and measures its CPU use and peak RSS over a window. Reports the
engine updates per second too (from alertd's own shutdown summary line).

    python bench/feeds.py [--accounts 50] [--seconds 60] [--warmup 15]

Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--profile", metavar="OUT", help="run alertd under cProfile into OUT")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))  # the local exchange lives with the tests
    from tests.fake_exchange.binance import FakeBinanceUSDM

    options = FakeBinanceUSDM().ccxt_options
    port = free_port()
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fake_exchange.binance",
            "--port",
            str(port),
            "--accounts",
            str(args.accounts),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    alertd = None
    try:
        assert fake.stdout is not None
        urls = json.loads(fake.stdout.readline())
        env = dict(os.environ)
        accounts = []
        for i in range(args.accounts):
            env[f"BENCH_KEY_{i}"] = f"key{i}"
            env[f"BENCH_SECRET_{i}"] = f"secret{i}"
            accounts.append(
                {
                    "name": f"acct{i}",
                    "exchange": "binanceusdm",
                    "api_key_env": f"BENCH_KEY_{i}",
                    "secret_env": f"BENCH_SECRET_{i}",
                    "urls": urls,
                    "options": options,
                }
            )
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.yaml"
            state = str(Path(tmp) / "state.sqlite")
            config.write_text(json.dumps({"version": 1, "accounts": accounts, "state_path": state}))
            log_path = Path(tmp) / "alertd.log"
            with log_path.open("w") as log_file:
                profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
                alertd = subprocess.Popen(
                    [sys.executable, *profile, "-m", "alertd", "run", "-c", str(config)],
                    cwd=ROOT,
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
                time.sleep(args.warmup)
                if alertd.poll() is not None:
                    print(log_path.read_text())
                    raise SystemExit("alertd exited during warm-up")
                c0, t0 = cpu_seconds(alertd.pid), time.monotonic()
                time.sleep(args.seconds)
                c1, t1 = cpu_seconds(alertd.pid), time.monotonic()
                rss_peak = status_kb(alertd.pid, "VmHWM")
                rss_now = status_kb(alertd.pid, "VmRSS")
                fake_cpu = cpu_seconds(fake.pid)
                alertd.send_signal(signal.SIGTERM)
                code = alertd.wait(30)
            log = log_path.read_text()
        bootstrapped = len(re.findall(r": bootstrapped: ", log))
        summary = re.search(r"stopped in ([\d.]+)s: (\d+) accounts, (\d+) engine updates", log)
        errors = [line for line in log.splitlines() if " ERROR " in line]
        cpu_pct = (c1 - c0) / (t1 - t0) * 100
        print(
            f"machine      : {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}"
        )
        print(f"accounts     : {args.accounts} ({bootstrapped} bootstrapped)")
        print(f"window       : {t1 - t0:.1f} s after {args.warmup:.0f} s warm-up")
        print(f"alertd CPU   : {cpu_pct:.2f}% of one core")
        print(f"alertd RSS   : peak {rss_peak / 1024:.1f} MB, now {rss_now / 1024:.1f} MB")
        if summary:
            total = int(summary.group(3))
            print(
                f"engine       : {total} updates in total, "
                f"{total / (args.warmup + args.seconds):.0f}/s average"
            )
        print(f"exit         : {code} (errors logged: {len(errors)})")
        print(f"fake server  : {fake_cpu:.1f} CPU s in total (not counted above)")
        for line in errors[:5]:
            print("  " + line)
        return 0
    finally:
        if alertd is not None and alertd.poll() is None:
            alertd.kill()
        fake.send_signal(signal.SIGTERM)
        try:
            fake.wait(10)
        except subprocess.TimeoutExpired:
            fake.kill()


if __name__ == "__main__":
    sys.exit(main())
