"""systemd's notify protocol: READY, STATUS and WATCHDOG datagrams to $NOTIFY_SOCKET.

No dependency: the protocol is one datagram of ``KEY=value`` lines on a unix socket (an
``@`` prefix names the abstract namespace). Without $NOTIFY_SOCKET every call is a no-op, so
alertd runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Mapping

import alertd.views.format as fmt
from alertd.daemon.view import DaemonView

# The last datagrams sent, for tests and debugging: a STATUS every 5 s and WATCHDOG pings
# would otherwise grow the list forever (about 2.5 MB a day).
SENT_KEPT = 64


def status_line(view: DaemonView) -> str:
    """The one line systemd shows for the service (``systemctl status``)."""
    stale = sum(1 for a in view.accounts if a.stale and not a.fatal)
    stopped = sum(1 for a in view.accounts if a.fatal)
    feeds = "feeds fresh" if not stale and not stopped else f"{stale} stale, {stopped} stopped"
    return f"{fmt.count(len(view.accounts), 'account')}, {len(view.firing)} firing, {feeds}"


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval_s = int(usec) / 1_000_000 if usec.isdigit() else None
        self.sent: deque[str] = deque(maxlen=SENT_KEPT)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> bool:
        if not self.address:
            return False
        message = "\n".join(lines)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # never block the daemon's loop on a reader that does not read: drop instead
                sock.setblocking(False)
                sock.connect(self.address)
                sock.send(message.encode())
        except OSError:  # BlockingIOError included: a full queue, or systemd went away
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")
