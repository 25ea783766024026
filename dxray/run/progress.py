"""What an audit tells its user while it runs: what it will do, then one bar per stage.

    progress = TerminalProgress(sys.stdout)   # live bars on a terminal, a few lines when piped
    run_audit(spec, stages=progress)

`run_audit` calls `plan(line)` once it knows what it will compute, and `stage(name, done,
total)` when a stage starts (done may be above 0: a resumed run) and after every batch; a stage
is over when done == total. Without a `Progress`, the same goes to the "dxray.audit" logger.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Protocol, TextIO

log = logging.getLogger("dxray.audit")

BAR_WIDTH = 28
PIPED_LINES = 4  # lines per stage when the output is not a terminal: at 1/4, 1/2, 3/4, done


class Progress(Protocol):
    def plan(self, line: str) -> None:
        """What the run will do, said once before the first stage."""

    def stage(self, name: str, done: int, total: int) -> None:
        """`done` of `total` items of stage `name` are computed."""


class LogProgress:
    """The plan and each stage's start and end, as lines of the "dxray.audit" logger."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def plan(self, line: str) -> None:
        log.info("%s", line)

    def stage(self, name: str, done: int, total: int) -> None:
        if name not in self._started:
            self._started[name] = time.perf_counter()
            log.info("%s: %d/%d", name, done, total)
        elif done >= total:
            log.info("%s: %d/%d in %.0f s", name, done, total, self._seconds(name))

    def _seconds(self, name: str) -> float:
        return time.perf_counter() - self._started[name]


class TerminalProgress(LogProgress):
    """A live bar per stage on a terminal (the block of bars redrawn in place: stages may run
    side by side); on a pipe or a file, a line when a stage starts and at each quarter of it,
    so that a log of the run stays short."""

    def __init__(self, stream: TextIO, *, live: bool | None = None, log: Path | None = None):
        super().__init__()
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.log = log  # where the library output goes, said under the plan
        self._quarter: dict[str, int] = {}
        self._bars: dict[str, str] = {}  # live: the block's lines, by stage
        self._drawn = 0  # live: lines of the block on screen

    def plan(self, line: str) -> None:
        self._write(line + "\n")
        if self.log is not None:
            self._write(f"  Ray's and the models' output: {self.log} (--verbose shows it)\n")

    def stage(self, name: str, done: int, total: int) -> None:
        first = name not in self._started
        if first:
            self._started[name] = time.perf_counter()
        text = self._line(name, done, total)
        if self.live:
            self._bars[name] = text
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self._write(up + "".join(f"{line}\x1b[K\n" for line in self._bars.values()))
            self._drawn = len(self._bars)
            return
        quarter = PIPED_LINES * done // max(total, 1)
        if first or quarter > self._quarter.get(name, -1):
            self._quarter[name] = quarter
            self._write(text + "\n")

    def _line(self, name: str, done: int, total: int) -> str:
        filled = BAR_WIDTH * done // max(total, 1)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        return f"  {name:<20} [{bar}] {done:>5}/{total:<5} {self._seconds(name):4.0f} s"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
