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
import json
import statistics
import zipfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from alertd.errors import InputError

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
    try:
        d = Decimal(value if isinstance(value, str | int | Decimal) else repr(value))
    except (InvalidOperation, TypeError):
        raise InputError(f"{where}: not a number: {value!r}") from None
    if not d.is_finite() or d <= 0:
        raise InputError(f"{where}: a price must be positive (got {value!r})")
    return d


def _time_ms(value: Any, where: str) -> int:
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return int(stamp.timestamp() * 1000)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        number = int(value)
        return number * 1000 if number < 10**11 else number  # seconds or milliseconds
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _time_ms(int(text), where)
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{where}: not a time: {value!r}") from None
        return _time_ms(parsed, where)
    raise InputError(f"{where}: not a time: {value!r}")


def _from_rows(rows: list[dict[str, Any]], source: str) -> list[Candle]:
    if not rows:
        raise InputError(f"{source}: no prices in the file")
    columns = {k.lower(): k for k in rows[0]}
    time_col = next((columns[c] for c in TIME_COLUMNS if c in columns), None)
    if time_col is None:
        raise InputError(
            f"{source}: no time column (expected one of {', '.join(TIME_COLUMNS)}; "
            f"found {', '.join(rows[0])})"
        )
    if all(c in columns for c in ("open", "high", "low", "close")):
        names = [columns[c] for c in ("open", "high", "low", "close")]
    elif "price" in columns or "mark_price" in columns:
        names = [columns.get("price") or columns["mark_price"]] * 4
    else:
        raise InputError(
            f"{source}: no price columns (expected open, high, low, close, or price; "
            f"found {', '.join(rows[0])})"
        )
    out = []
    for i, row in enumerate(rows):
        where = f"{source}: row {i + 1}"
        o, h, low, c = (_num(row[n], f"{where} {n}") for n in names)
        out.append(Candle(_time_ms(row[time_col], f"{where} {time_col}"), o, h, low, c))
    return out


def _from_json(text: str, source: str) -> list[Candle]:
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{source}: expected a JSON list of candles")
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
    return _from_rows([dict(r) for r in data], source)


def _from_csv(text: str, source: str) -> list[Candle]:
    reader = csv.DictReader(io.StringIO(text))
    return _from_rows(list(reader), source)


def _from_feather(path: Path) -> list[Candle]:
    try:
        import pyarrow.feather as feather
    except ImportError:
        raise InputError(
            f"{path}: reading feather files needs pyarrow (pip install pyarrow)"
        ) from None
    table = feather.read_table(str(path))
    return _from_rows(table.to_pylist(), str(path))


def load_history(path: str | Path) -> History:
    path = Path(path)
    source = str(path)
    try:
        suffix = path.suffix.lower()
        if suffix in (".feather", ".arrow", ".ipc"):
            candles = _from_feather(path)
        elif suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                members = [n for n in archive.namelist() if n.lower().endswith((".csv", ".json"))]
                if len(members) != 1:
                    raise InputError(f"{source}: expected one CSV or JSON file inside the zip")
                text = archive.read(members[0]).decode("utf-8")
                inner = f"{source}!{members[0]}"
                candles = (_from_json if members[0].endswith(".json") else _from_csv)(text, inner)
        elif suffix == ".json":
            candles = _from_json(path.read_text(encoding="utf-8"), source)
        else:
            candles = _from_csv(path.read_text(encoding="utf-8"), source)
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except zipfile.BadZipFile:
        raise InputError(f"{source}: not a zip file") from None
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
