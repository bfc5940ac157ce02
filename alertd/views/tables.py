"""Tables of figures as alertd's terminal views draw them: text left, numbers right."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from rich import box
from rich.table import Table


def figures_table(
    title: str,
    columns: Iterable[str],
    text: Collection[str],
    *,
    compact: bool = False,
    no_wrap: bool | Collection[str] = False,
    pad_edge: bool = True,
) -> Table:
    """A table whose ``text`` columns are left-aligned and every other one (a figure) is
    right-aligned, so that digits line up. ``compact``: a simple head rule (the tables that
    must fit 80 columns); ``no_wrap``: every column (True) or those named keep to one line."""
    table = Table(
        title=title,
        header_style="bold",
        box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
        pad_edge=pad_edge,
    )
    for name in columns:
        keep = no_wrap if isinstance(no_wrap, bool) else name in no_wrap
        table.add_column(name, justify="left" if name in text else "right", no_wrap=keep)
    return table
