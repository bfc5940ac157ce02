"""The one clock type every seam takes: seconds as a float, and an async sleep.

Which clock a parameter wants is in its name: ``clock`` is monotonic (intervals, deadlines,
staleness), ``wall_clock`` is epoch seconds, UTC (what is stored or shown). Tests pass their
own functions; production passes :func:`time.monotonic`, :func:`time.time` and
:func:`asyncio.sleep`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
