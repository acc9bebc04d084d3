"""Progress of the CLI's long jobs (`transfer`, `gc run`, `retention run`).

When stdout is a terminal: a live bar (rich) with what is done of the total, the rate and the time
left. Otherwise (a pipe, a file, a CI log): plain lines on stderr, one each time another tenth of the
total is done and one at the end, so stdout keeps only the command's results (JSON with --json).

The jobs report through two calls, which hub/registry (gc, retention) and hub/cli/transfer.py make
without knowing which of the two displays is on: `grow(units)` (the total is at least this much
more) and `advance(units, nbytes=0)`. A job measured in bytes (transfer) advances by bytes; one
measured in items (GC reviews, retention verdicts) counts items and shows the bytes it freed.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class _ItemSpeed(ProgressColumn):
    """Items a second (rich's own speed column is for bytes)."""

    def __init__(self, items: str):
        super().__init__()
        self.items = items

    def render(self, task) -> Text:
        return Text("?" if task.speed is None else f"{task.speed:.1f} {self.items}/s")


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # unreachable


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Meter:
    """One job's progress; a context manager (the bar is drawn, or the last line printed, on exit)."""

    def __init__(self, description: str, *, unit: str = "bytes", total: int = 0, items: str = "items",
                 freed: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None):
        self.description = description
        self.unit = unit          # "bytes" or "items"
        self.items = items        # what an item is, for the plain lines ("reviews", "tags")
        self.show_freed = freed   # an items job that frees bytes (GC) shows how many
        self.total = total
        self.done = 0
        self.nbytes = 0           # bytes moved or freed (items jobs)
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr
        self.live = self._stdout.isatty()
        self._started = time.monotonic()
        self._tenths = 0
        self._progress: Progress | None = None
        self._task = None

    # -- what the jobs call --------------------------------------------------------------------
    def grow(self, units: int) -> None:
        self.total += units
        if self._progress is not None:
            self._progress.update(self._task, total=self.total)

    def advance(self, units: int = 1, *, nbytes: int = 0) -> None:
        self.done += units
        self.nbytes += nbytes if self.unit == "items" else units
        if self.done > self.total:
            self.grow(self.done - self.total)
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, freed=self._freed())
        else:
            tenths = self.done * 10 // self.total if self.total else 0
            if tenths > self._tenths and self.done < self.total:
                self._tenths = tenths
                self._line()

    # -- display -------------------------------------------------------------------------------
    def _freed(self) -> str:
        return f"{human_bytes(self.nbytes)} freed" if self.show_freed else ""

    def _line(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self.done / elapsed
        if self.unit == "bytes":
            amount = f"{human_bytes(self.done)} of {human_bytes(self.total)}"
            speed = f"{human_bytes(rate)}/s"
        else:
            amount = ", ".join(filter(None, [f"{self.done} of {self.total} {self.items}", self._freed()]))
            speed = f"{rate:.1f} {self.items}/s"
        percent = 100 if not self.total else self.done * 100 // self.total
        if final:
            tail = f"done in {_duration(elapsed)}"
        else:
            tail = f"ETA {_duration((self.total - self.done) / rate) if rate else '-:--:--'}"
        print(f"{self.description}: {percent}% ({amount}) at {speed}, {tail}", file=self._stderr, flush=True)

    def __enter__(self) -> Meter:
        if self.live:
            console = Console(file=self._stdout)
            if self.unit == "bytes":
                columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), DownloadColumn(),
                           TransferSpeedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
            else:
                columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn(self.items), TextColumn("{task.fields[freed]}"), _ItemSpeed(self.items),
                           TextColumn("ETA"), TimeRemainingColumn()]
            self._progress = Progress(*columns, console=console, transient=False)
            self._task = self._progress.add_task(self.description, total=self.total or None,
                                                 completed=self.done, freed=self._freed())
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=self.total, completed=self.done,
                                  freed=self._freed())
            self._progress.stop()
        else:
            self._line(final=True)
