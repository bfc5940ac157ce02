"""Run ``alertd`` with a cProfile switched on and off by signals: a profile of one window.

``python bench/profiled.py OUT run -c config.yaml``: SIGUSR1 starts profiling, SIGUSR2 stops
it and writes the profile (pstats) to OUT. ``bench/feeds.py --profile-window OUT`` sends them
around a window once every account is live and the CPU window is measured, so the profile shows
the steady state only (``--profile`` profiles the whole run, dominated by going live).

alertd runs on one thread (its event loop; apprise's sends aside), the thread the handlers run
on, so the profile covers the loop and everything it calls. Timed in the process's CPU time, not
the wall clock: on a loaded machine a wall-clock profile (and py-spy's samples, which count a
thread runnable but waiting for a core as active) charges the wait for a core to wherever the
process was preempted, most of all to a loopback socket's send, which wakes the local exchange.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from types import FrameType


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    profiler = cProfile.Profile(time.process_time)

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from alertd.cli.main import main as alertd_main

    sys.exit(alertd_main(argv))


if __name__ == "__main__":
    main()
