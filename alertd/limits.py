"""How much alertd reads, and the bounded readers that hold every input to it.

Every file a user hands alertd (config, key files, snapshots, price histories) is read here:
its size is checked before and while reading (``/dev/zero`` is refused, not read until memory
runs out), it must be UTF-8, and JSON is parsed with its nesting and digit counts bounded.
docs/operations.md lists these limits; change them together.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from alertd.errors import InputError

KIB = 1024
MIB = 1024 * KIB

MAX_CONFIG_BYTES = 256 * KIB
MAX_SECRET_BYTES = 64 * KIB
MAX_SNAPSHOT_BYTES = 16 * MIB
MAX_HISTORY_BYTES = 128 * MIB  # about four years of one-minute candles as JSON
MAX_HISTORY_ROWS = 2_000_000  # about 3.8 years of one-minute candles

# YAML: values after aliases are expanded (a "billion laughs" file is refused before it is
# built), and nesting depth (text and aliases alike); JSON: nesting depth. A desk's config of
# 1,000 accounts, each with its own urls (a proxy) and options, is about 60,000 values.
MAX_YAML_VALUES = 100_000
MAX_DEPTH = 32
# A number in any input: digits and the decimal exponent. Far inside what Decimal's context
# can multiply and divide without overflow, and far outside any price, size or rate.
MAX_NUMBER_CHARS = 64
MAX_DIGITS = 40
MAX_EXPONENT = 30  # 1e-30 .. 1e30
# Durations (config, silence add --for, history --since): at most ten years.
MAX_DURATION_S = 10 * 366 * 86_400.0
# Times in price histories and --start/--end: 1970 to the end of year 9999, in milliseconds.
MAX_TIME_MS = 253_402_300_799_999
# replay --sweep: entries per leverage.
MAX_SWEEP_ENTRIES = 10_000
# A rule's `while` conditions: each is read at every evaluation of every subject it covers.
MAX_RULE_CONDITIONS = 8


class ReadError(Exception):
    """A file that cannot be read within the limits; ``reason`` is one short phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def size_text(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB"


def regular_file(path: str | Path, limit: int) -> None:
    """Refuse anything but a regular file of at most ``limit`` bytes (for formats that are
    read by seeking, like zip and Arrow, which a device or a FIFO cannot serve)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ReadError(exc.strerror or str(exc)) from None
    except ValueError as exc:
        raise ReadError(str(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise ReadError("it is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise ReadError("not a regular file")
    if info.st_size > limit:
        raise ReadError(f"larger than {size_text(limit)}, alertd's limit for this file")


def read_bytes(path: str | Path, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path``, or :class:`ReadError`.

    Opened non-blocking so that a FIFO with no writer reads as empty instead of hanging;
    reading stops one byte past the limit whatever the file claims its size is.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ReadError(exc.strerror or str(exc)) from None
    except ValueError as exc:  # an embedded NUL in the name
        raise ReadError(str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ReadError("it is a directory")
        if stat.S_ISREG(mode) and os.fstat(fd).st_size > limit:
            raise ReadError(f"larger than {size_text(limit)}, alertd's limit for this file")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            try:
                chunk = os.read(fd, min(MIB, limit + 1 - total))
            except OSError as exc:
                raise ReadError(exc.strerror or str(exc)) from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise ReadError(f"larger than {size_text(limit)}, alertd's limit for this file")
        return b"".join(chunks)
    finally:
        os.close(fd)


def decode_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        raise ReadError(f"not UTF-8 text (byte {byte:#04x} at offset {exc.start})") from None


def read_text(path: str | Path, limit: int) -> str:
    """``path`` as UTF-8 text of at most ``limit`` bytes, or :class:`ReadError`."""
    return decode_utf8(read_bytes(path, limit))


def read_input(path: str | Path, limit: int, error: Callable[[str], Exception] = InputError) -> str:
    """:func:`read_text` for a file the user named: a failure is ``error`` with one line,
    ``<path>: cannot read: <reason>``."""
    path = Path(path)
    try:
        return read_text(path, limit)
    except ReadError as exc:
        raise error(f"{path}: cannot read: {exc.reason}") from None


class _LongNumber(ValueError):
    pass


def _json_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _LongNumber(text)
    return int(text)


def _json_float(text: str) -> Decimal:
    if len(text) > MAX_NUMBER_CHARS:
        raise _LongNumber(text)
    return Decimal(text)


def load_json(text: str, source: str) -> Any:
    """JSON with floats as exact Decimals, numbers and nesting bounded, or :class:`InputError`
    (``source:3:7: malformed JSON: ...``)."""
    too_deep = f"{source}: nested deeper than {MAX_DEPTH} levels (alertd's limit)"
    try:
        data = json.loads(text, parse_float=_json_float, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    except _LongNumber:
        raise InputError(
            f"{source}: a number longer than {MAX_NUMBER_CHARS} characters (alertd's limit)"
        ) from None
    except RecursionError:
        raise InputError(too_deep) from None
    if depth_exceeds(data, MAX_DEPTH):
        raise InputError(too_deep)
    return data


def depth_exceeds(data: Any, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` deep (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
