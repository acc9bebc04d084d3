"""Output of the `list` commands: an aligned table for people, or with `--json` one JSON array whose
items have the admin API's shape for the same thing (its *_json functions), keys sorted, so scripts
can rely on it."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
PAGE = 500


async def every(fetch: Callable[[int, str | None], Awaitable[Sequence[T]]], key: Callable[[T], str]) -> list[T]:
    """All rows of a paged store listing (`fetch(limit, after)`, in key order)."""
    rows: list[T] = []
    after = None
    while True:
        page = await fetch(PAGE, after)
        rows.extend(page)
        if len(page) < PAGE:
            return rows
        after = key(page[-1])


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    return str(value)


def emit(items: list[dict], columns: list[tuple[str, str]], as_json: bool, *, what: str, out=None) -> None:
    """`items` as JSON (`--json`), or as a table of `columns` ((heading, item key)); an empty table
    says so in words."""
    out = out or sys.stdout
    if as_json:
        out.write(json.dumps(items, sort_keys=True, indent=2) + "\n")
        return
    if not items:
        out.write(f"no {what}\n")
        return
    rows = [[heading for heading, _ in columns]] + [[_cell(item.get(key)) for _, key in columns] for item in items]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")


def size(n: int | None) -> str | None:
    """Bytes for people: 1.5 GiB, 12.0 MiB, 800 B."""
    if n is None:
        return None
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return None  # unreachable
