"""What an audit tells its user while it runs: what it will do, then one bar per stage.

    with TerminalProgress(sys.stdout) as progress:  # live bars on a terminal, a few lines
        run_audit(spec, stages=progress)              # when piped

`run_audit` calls `plan(line)` once it knows what it will compute, and `stage(name, done,
total)` when a stage starts (done may be above 0: a resumed run) and after every batch; a stage
is over when done == total. Without a `Progress`, the same goes to the "dxray.audit" logger.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Protocol, TextIO

log = logging.getLogger("dxray.audit")

BAR_WIDTH = 28
PIPED_LINES = 4  # lines per stage when the output is not a terminal: at 1/4, 1/2, 3/4, done
# Live bars are redrawn this often while a stage runs, so that the clock moves between batches
# (the demo's first targets batch takes ~50 s: a still screen that long looks like a hang).
TICK_SECONDS = 1.0


class Progress(Protocol):
    def plan(self, line: str) -> None:
        """What the run will do, said once before the first stage."""

    def stage(self, name: str, done: int, total: int) -> None:
        """`done` of `total` items of stage `name` are computed."""


class LogProgress:
    """The plan and each stage's start and end, as lines of the "dxray.audit" logger."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._ended: dict[str, float] = {}

    def plan(self, line: str) -> None:
        log.info("%s", line)

    def stage(self, name: str, done: int, total: int) -> None:
        if name not in self._started:
            self._started[name] = time.perf_counter()
            log.info("%s: %d/%d", name, done, total)
        elif done >= total:
            log.info("%s: %d/%d in %.0f s", name, done, total, self._seconds(name))

    def _seconds(self, name: str) -> float:
        """Since the stage started; a finished stage's clock stops."""
        return self._ended.get(name, time.perf_counter()) - self._started[name]


class TerminalProgress(LogProgress):
    """A live bar per stage on a terminal (the block of bars redrawn in place: stages may run
    side by side, and redrawn every `tick` seconds while one runs, so its clock moves); on a
    pipe or a file, a line when a stage starts and at each quarter of it, so that a log of the
    run stays short. Use it as a context manager: leaving it stops the redrawing."""

    def __init__(
        self,
        stream: TextIO,
        *,
        live: bool | None = None,
        log: Path | None = None,
        tick: float = TICK_SECONDS,
    ):
        super().__init__()
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.log = log  # where the library output goes, said under the plan
        self.tick = tick
        self._quarter: dict[str, int] = {}
        self._counts: dict[str, tuple[int, int]] = {}  # live: (done, total) by stage
        self._drawn = 0  # live: lines of the block on screen
        self._lock = threading.Lock()  # the stages' calls and the ticker draw in turn
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop redrawing (the bars stay as last drawn)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None

    def plan(self, line: str) -> None:
        self._write(line + "\n")
        if self.log is not None:
            self._write(f"  Ray's and the models' output: {self.log} (--verbose shows it)\n")

    def stage(self, name: str, done: int, total: int) -> None:
        with self._lock:
            first = name not in self._started
            if first:
                self._started[name] = time.perf_counter()
            if done >= total:
                self._ended.setdefault(name, time.perf_counter())
            else:
                self._ended.pop(name, None)  # a stage that goes on (more work found)
            if self.live:
                self._counts[name] = (done, total)
                self._draw()
                if self._ticker is None:
                    self._stop.clear()
                    self._ticker = threading.Thread(target=self._redraw, daemon=True)
                    self._ticker.start()
                return
            quarter = PIPED_LINES * done // max(total, 1)
            if first or quarter > self._quarter.get(name, -1):
                self._quarter[name] = quarter
                self._write(self._line(name, done, total) + "\n")

    def _draw(self) -> None:
        """The block of live bars, over the one drawn before (the caller holds the lock)."""
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        lines = (self._line(name, *counts) for name, counts in self._counts.items())
        self._write(up + "".join(f"{line}\x1b[K\n" for line in lines))
        self._drawn = len(self._counts)

    def _redraw(self) -> None:
        while not self._stop.wait(self.tick):
            with self._lock:
                if any(name not in self._ended for name in self._counts):
                    self._draw()

    def _line(self, name: str, done: int, total: int) -> str:
        filled = BAR_WIDTH * done // max(total, 1)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        return f"  {name:<20} [{bar}] {done:>5}/{total:<5} {self._seconds(name):4.0f} s"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
