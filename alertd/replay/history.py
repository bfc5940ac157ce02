"""Price histories for replays: candles from JSON, CSV, zipped CSV or feather files.

Accepted shapes (the real data under shared/data is the first input):
- JSON: freqtrade's ``[[open_time_ms, open, high, low, close, volume], ...]``, or a list of
  objects with a time (``timestamp``/``time``/``open_time``/``date``) and either OHLC or ``price``
- CSV (or a zip holding one CSV): a header with a time column and OHLC columns, or ``price``
  (Binance's kline archives: ``open_time,open,high,low,close,...``)
- feather / Arrow IPC: columns ``date`` (UTC) and ``open``, ``high``, ``low``, ``close``

Times must be strictly increasing; gaps are reported, never interpolated.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import statistics
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from alertd.errors import InputError
from alertd.limits import (
    MAX_HISTORY_BYTES,
    MAX_HISTORY_ROWS,
    MAX_TIME_MS,
    ReadError,
    decode_utf8,
    load_json,
    read_text,
    regular_file,
    size_text,
)
from alertd.validation import NotANumber, decimal_value, short

TIME_COLUMNS = ("open_time", "timestamp", "time", "date", "datetime", "t")


@dataclass(frozen=True, slots=True)
class Candle:
    t_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


@dataclass(frozen=True, slots=True)
class Gap:
    start_ms: int  # the last candle before the gap
    end_ms: int  # the first candle after it
    missing: int  # candles missing


@dataclass(frozen=True, slots=True)
class History:
    candles: tuple[Candle, ...]
    interval_ms: int
    gaps: tuple[Gap, ...]
    source: str


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise InputError(f"{where}: not a number: {short(value)}")
    try:
        d = decimal_value(value)
    except NotANumber:
        raise InputError(f"{where}: not a number: {short(value)}") from None
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None
    if d <= 0:
        raise InputError(f"{where}: a price must be positive (got {short(value)})")
    return d


def _time_ms(value: Any, where: str) -> int:
    """Epoch milliseconds from a datetime, epoch seconds or milliseconds, or an ISO time;
    within 1970 to 9999 (times outside cannot be shown or compared with a clock)."""
    ms = _parse_time_ms(value, where)
    if not 0 <= ms <= MAX_TIME_MS:
        raise InputError(f"{where}: time {short(value)} is outside 1970 to 9999")
    return ms


def _parse_time_ms(value: Any, where: str) -> int:
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        try:
            return int(stamp.timestamp() * 1000)
        except (OverflowError, OSError, ValueError):
            raise InputError(f"{where}: time {short(value)} is outside 1970 to 9999") from None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        if isinstance(value, int) and abs(value) > MAX_TIME_MS:
            return -1
        try:
            number = int(value)
        except (OverflowError, ValueError, ArithmeticError):  # inf, NaN
            raise InputError(f"{where}: not a time: {short(value)}") from None
        return number * 1000 if number < 10**11 else number  # seconds or milliseconds
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and text.isascii():
            return _parse_time_ms(int(text) if len(text) <= 20 else -1, where)
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{where}: not a time: {short(value)}") from None
        return _parse_time_ms(parsed, where)
    raise InputError(f"{where}: not a time: {short(value)}")


def _from_rows(header: list[str], rows: Iterable[dict[str, Any]], source: str) -> list[Candle]:
    """Candles from rows keyed by ``header`` (the first row's keys: one pass, no copies)."""
    columns = {k.lower(): k for k in header}
    found = ", ".join(header)[:200]
    time_col = next((columns[c] for c in TIME_COLUMNS if c in columns), None)
    if time_col is None:
        raise InputError(
            f"{source}: no time column (expected one of {', '.join(TIME_COLUMNS)}; found {found})"
        )
    if all(c in columns for c in ("open", "high", "low", "close")):
        names = [columns[c] for c in ("open", "high", "low", "close")]
    elif "price" in columns or "mark_price" in columns:
        names = [columns.get("price") or columns["mark_price"]] * 4
    else:
        raise InputError(
            f"{source}: no price columns (expected open, high, low, close, or price; found {found})"
        )
    out = []
    for i, row in enumerate(rows):
        where = f"{source}: row {i + 1}"
        o, h, low, c = (_num(_cell(row, n, where), f"{where} {n}") for n in names)
        out.append(
            Candle(_time_ms(_cell(row, time_col, where), f"{where} {time_col}"), o, h, low, c)
        )
    return out


def _cell(row: dict[str, Any], column: str, where: str) -> Any:
    if column not in row:
        raise InputError(f"{where}: no {short(column)} value")
    return row[column]


def _rows_bounded(count: int, source: str) -> None:
    if count > MAX_HISTORY_ROWS:
        raise InputError(
            f"{source}: more than {MAX_HISTORY_ROWS:,} rows (alertd's limit); "
            "replay a shorter span or a coarser timeframe"
        )


def _from_json(text: str, source: str) -> list[Candle]:
    data = load_json(text, source)
    if not isinstance(data, list) or not data:
        raise InputError(f"{source}: expected a JSON list of candles")
    _rows_bounded(len(data), source)
    if isinstance(data[0], list):
        out = []
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) < 5:
                raise InputError(
                    f"{source}: row {i + 1}: expected [time, open, high, low, close, ...]"
                )
            where = f"{source}: row {i + 1}"
            o, h, low, c = (_num(v, where) for v in row[1:5])
            out.append(Candle(_time_ms(row[0], where), o, h, low, c))
        return out
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise InputError(
                f"{source}: row {i + 1}: expected an object like "
                '{"time": ..., "open": ..., "high": ..., "low": ..., "close": ...}'
            )
    return _from_rows(list(data[0]), data, source)


def _from_csv(text: str, source: str) -> list[Candle]:
    """Rows of a CSV with a header; every row has the header's number of fields."""
    # blank lines are skipped, as csv.DictReader does
    lines = (line for line in csv.reader(io.StringIO(text, newline="")) if line)
    try:
        header = next(lines, None)
        if header is None:
            raise InputError(f"{source}: no prices in the file")

        def rows() -> Iterator[dict[str, str]]:
            for i, line in enumerate(lines):
                if len(line) != len(header):
                    raise InputError(
                        f"{source}: row {i + 1}: {len(line)} fields, "
                        f"but the header has {len(header)}"
                    )
                _rows_bounded(i, source)
                yield dict(zip(header, line, strict=True))

        candles = _from_rows(header, rows(), source)
    except csv.Error as exc:
        raise InputError(f"{source}: not a readable CSV file: {exc}") from None
    if not candles:
        raise InputError(f"{source}: no prices in the file")
    return candles


def _from_feather(path: Path) -> list[Candle]:
    try:
        import pyarrow as pa
        import pyarrow.feather as feather
    except ImportError:
        raise InputError(
            f"{path}: reading feather files needs pyarrow (pip install pyarrow)"
        ) from None
    try:
        table = feather.read_table(str(path))
        _rows_bounded(table.num_rows, str(path))
        rows = table.to_pylist()
    except (pa.ArrowException, OSError, ValueError, TypeError, OverflowError) as exc:
        # pyarrow raises its own errors for files that are not Arrow, and ValueError /
        # OverflowError converting values Python cannot hold (a date past year 9999)
        raise InputError(f"{path}: not a readable feather file: {short(str(exc))}") from None
    if not rows:
        raise InputError(f"{path}: no prices in the file")
    return _from_rows(table.column_names, rows, str(path))


def _from_zip(path: Path, source: str) -> list[Candle]:
    """The one CSV or JSON member of a zip, its uncompressed size bounded before reading."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [
                info
                for info in archive.infolist()
                if info.filename.lower().endswith((".csv", ".json"))
            ]
            if len(members) != 1:
                raise InputError(f"{source}: expected one CSV or JSON file inside the zip")
            member = members[0]
            inner = f"{source}!{member.filename}"
            if member.file_size > MAX_HISTORY_BYTES:
                raise InputError(
                    f"{inner}: larger than {size_text(MAX_HISTORY_BYTES)} uncompressed, "
                    "alertd's limit for a price history"
                )
            with archive.open(member) as handle:
                data = handle.read(MAX_HISTORY_BYTES + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
        raise InputError(f"{source}: not a readable zip file: {short(str(exc))}") from None
    except NotImplementedError as exc:  # a compression method zipfile does not have
        raise InputError(f"{source}: {exc}") from None
    except RuntimeError as exc:  # "File ... is encrypted, password required for extraction"
        reason = "it is encrypted" if "encrypted" in str(exc) else short(str(exc))
        raise InputError(f"{source}: {reason} (alertd reads unencrypted zips)") from None
    if len(data) > MAX_HISTORY_BYTES:
        raise InputError(f"{inner}: larger than {size_text(MAX_HISTORY_BYTES)} uncompressed")
    try:
        text = decode_utf8(data)
    except ReadError as exc:
        raise InputError(f"{inner}: {exc.reason}") from None
    return (_from_json if member.filename.lower().endswith(".json") else _from_csv)(text, inner)


def load_history(path: str | Path) -> History:
    path = Path(path)
    source = str(path)
    try:
        suffix = path.suffix.lower()
        if suffix in (".feather", ".arrow", ".ipc"):
            regular_file(path, MAX_HISTORY_BYTES)
            candles = _from_feather(path)
        elif suffix == ".zip":
            regular_file(path, MAX_HISTORY_BYTES)
            candles = _from_zip(path, source)
        elif suffix == ".json":
            candles = _from_json(read_text(path, MAX_HISTORY_BYTES), source)
        else:
            candles = _from_csv(read_text(path, MAX_HISTORY_BYTES), source)
    except ReadError as exc:
        raise InputError(f"{source}: cannot read: {exc.reason}") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None
    return _checked(candles, source)


def _checked(candles: list[Candle], source: str) -> History:
    for i in range(1, len(candles)):
        before, here = candles[i - 1].t_ms, candles[i].t_ms
        if here == before:
            raise InputError(f"{source}: row {i + 1}: duplicate time {iso(here)}")
        if here < before:
            raise InputError(
                f"{source}: row {i + 1}: time {iso(here)} is before the row above ({iso(before)}); "
                "the history must be sorted"
            )
    steps = [b.t_ms - a.t_ms for a, b in itertools.pairwise(candles)]
    interval = int(statistics.median(steps)) if steps else 60_000
    gaps = tuple(
        Gap(a.t_ms, b.t_ms, (b.t_ms - a.t_ms) // interval - 1)
        for a, b in itertools.pairwise(candles)
        if b.t_ms - a.t_ms > interval
    )
    return History(tuple(candles), interval, gaps, source)


def window(history: History, start_ms: int | None, end_ms: int | None) -> History:
    candles = tuple(
        c
        for c in history.candles
        if (start_ms is None or c.t_ms >= start_ms) and (end_ms is None or c.t_ms <= end_ms)
    )
    if not candles:
        raise InputError(f"{history.source}: no prices between the given --start and --end")
    gaps = tuple(
        g for g in history.gaps if g.start_ms >= candles[0].t_ms and g.end_ms <= candles[-1].t_ms
    )
    return History(candles, history.interval_ms, gaps, history.source)
