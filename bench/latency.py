"""Alert latency: from a mark price frame leaving the exchange to the message at the receiver.

Runs the real ``alertd run`` process against the local fake Binance USDⓈ-M exchange and a
local HTTP receiver (apprise ``json://``). One account holds 1 BTC long; the exchange moves
the mark across a margin-ratio threshold and back, N times. Each crossing makes exactly one
message (firing, then resolved). Latency = the receiver's arrival time minus the moment the
exchange was told to push the frame. Prints p50, p90, p99 and max.

    python bench/latency.py [--crossings 200]

Loopback only; bounded: every crossing waits at most 10 s, the run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BTC = "BTC/USDT:USDT"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crossings", type=int, default=200)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))  # the local exchange and receiver live with the tests
    from tests.fake_exchange.binance import FakeBinanceUSDM
    from tests.receivers import HttpReceiver
    from tests.support.fakes import server_in_thread

    fake = FakeBinanceUSDM()
    http = HttpReceiver()
    http.start()
    latencies: list[float] = []
    with server_in_thread(fake), tempfile.TemporaryDirectory() as tmp:
        fake.add_account("key-bench", "secret-bench", wallet_balance="2000")
        fake.set_mark(BTC, "60000")
        fake.open_position("key-bench", BTC, "long", "1", "60000")
        config = {
            "version": 1,
            "state_path": str(Path(tmp) / "state.sqlite"),
            "accounts": [
                {
                    "name": "bench",
                    "exchange": "binanceusdm",
                    "api_key_env": "BENCH_KEY",
                    "secret_env": "BENCH_SECRET",
                    "urls": fake.ccxt_urls(),
                    "options": fake.ccxt_options,
                }
            ],
            # ratio 0.12 at 60,000 and about 0.67 at 58,350: one crossing of 0.5 each move
            "rules": [
                {
                    "name": "ratio",
                    "metric": "worst_ratio",
                    "above": 0.5,
                    "severity": "critical",
                    "repeat": 0,
                }
            ],
            "builtin_rules": {"feed_stale": False},
            "receivers": [{"name": "hook", "url": http.url()}],
        }
        path = Path(tmp) / "config.yaml"
        path.write_text(json.dumps(config))
        env = {**os.environ, "BENCH_KEY": "key-bench", "BENCH_SECRET": "secret-bench"}
        log_path = Path(tmp) / "alertd.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "alertd", "run", "-c", str(path)],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 60
                while "bootstrapped" not in log_path.read_text():
                    if time.monotonic() > deadline or proc.poll() is not None:
                        print(log_path.read_text())
                        raise SystemExit("alertd did not bootstrap")
                    time.sleep(0.1)
                time.sleep(1.0)
                for i in range(args.crossings):
                    price = "58350" if i % 2 == 0 else "60000"
                    before = len(http.posts)
                    sent = time.time()
                    fake.set_mark(BTC, price)
                    wait_until = time.monotonic() + 10
                    while len(http.posts) == before:
                        if time.monotonic() > wait_until:
                            raise SystemExit(f"crossing {i}: no message within 10 s")
                        time.sleep(0.002)
                    latencies.append(http.posts[before]["received_at"] - sent)
                    time.sleep(0.05)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    http.stop()

    first = latencies[0] * 1000 if latencies else float("nan")
    ms = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(p * len(ms)))]

    print(
        f"machine   : {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"crossings : {len(ms)} (alternating firing and resolved messages)")
    print(
        f"latency   : p50 {pct(0.5):.1f} ms, p90 {pct(0.9):.1f} ms, p99 {pct(0.99):.1f} ms, "
        f"max {ms[-1]:.1f} ms, mean {statistics.mean(ms):.1f} ms"
    )
    print(f"first     : {first:.1f} ms (the first alert after start)")
    print(f"load      : {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")
    met = pct(0.99) < 100 and first < 100
    print(f"target    : p99 and the first < 100 ms: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
