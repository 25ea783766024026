"""Keep the terminal for dxray's own lines: what libraries print goes to a log file.

    with library_output(catalog / "logs" / "audit-20261205T080000Z.log") as terminal:
        with TerminalProgress(terminal) as progress:
            run_audit(spec, stages=progress)

Inside the block, whatever goes to `sys.stdout` or `sys.stderr` is written to the log file:
Ray's start-up lines, its authentication notice and the worker logs it forwards (the hosts'
"Loading weights" bars and warnings), Ray Data's messages, Python warnings (deprecations),
and every logging handler that was writing to the terminal. `terminal` is where stdout
pointed before: dxray's plan line and progress bars go there. With `verbose`, the library
output is shown on stderr as well as logged.

It works at the level of Python's streams: a native library writing to file descriptor 2
itself would still reach the terminal (none does in an audit once its causes are fixed:
tests/run/test_terminal.py runs a piped demo and checks).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

LOG_DIR = "logs"  # inside the catalog


def log_path(catalog: str | Path, command: str) -> Path:
    """Where a command's library output goes: `<catalog>/logs/<command>-<UTC time>.log`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(catalog) / LOG_DIR / f"{command}-{stamp}.log"


class _LogFile:
    """A text stream to a file made on first use: a command refused before anything was
    printed (a bad spec, a catalog path that is a file) leaves no log and no folder behind."""

    def __init__(self, path: Path):
        self.path = path
        self.encoding = "utf-8"
        self._file: TextIO | None = None

    def _open(self) -> TextIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # kept open while the block runs; library_output closes it
            self._file = open(self.path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        return self._file

    def write(self, text: str) -> int:
        return self._open().write(text) if text else 0

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def fileno(self) -> int:
        return self._open().fileno()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _Tee:
    """A text stream writing to several; its file descriptor is the first one's (the log)."""

    def __init__(self, *streams: TextIO):
        self.streams = streams
        self.encoding = streams[0].encoding

    def fileno(self) -> int:
        return self.streams[0].fileno()

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


@contextmanager
def library_output(path: str | Path, *, verbose: bool = False) -> Iterator[TextIO]:
    """Send what is printed inside the block to the log file `path` (created when something
    is first written, appended to); yield the stream of the terminal. `verbose`: also show it
    on stderr."""
    terminal, errors = sys.stdout, sys.stderr
    log = _LogFile(Path(path))
    with contextlib.closing(log):
        sink = _Tee(log, errors) if verbose else log
        # Handlers that captured the terminal's streams when they were made (logging's
        # basicConfig, the libraries' own) write to the log too, while the block runs
        moved = [
            (handler, handler.stream)
            for handler in _stream_handlers()
            if handler.stream in (terminal, errors)
        ]
        for handler, _ in moved:
            handler.setStream(sink)
        root = logging.getLogger()
        level = root.level
        root.setLevel(min(level, logging.INFO))  # dxray's own info lines belong in the log
        file_handler = None
        if not moved:  # nothing writes the root logger's records anywhere: the log does
            file_handler = logging.StreamHandler(sink)
            root.addHandler(file_handler)
        sys.stdout = sys.stderr = sink
        try:
            yield terminal
        finally:
            sys.stdout, sys.stderr = terminal, errors
            if file_handler is not None:
                root.removeHandler(file_handler)
            root.setLevel(level)
            for handler, stream in moved:
                handler.setStream(stream)


def _stream_handlers() -> list[logging.StreamHandler]:
    """Every handler of every logger that writes to a stream it holds (not a file)."""
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    return [
        handler
        for logger in loggers
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and "stream" in vars(handler)  # not one that looks sys.stderr up as it writes
    ]
