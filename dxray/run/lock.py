"""Lock files: one holder at a time for a catalog (scans) or a run (audits), across processes
and hosts sharing the catalog's folder; a holder that died is taken over."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("dxray.lock")


class Locked(RuntimeError):
    """Someone else holds the lock; the caller did nothing."""


class FileLock:
    """A lock file created with O_EXCL (atomic on local disks and NFSv3+), holding who took
    it; removed by its owner. Its mtime is the owner's heartbeat. `what` holds it ("scan",
    "audit of run X") and `consequence` says what the refused caller did not do."""

    def __init__(
        self,
        path: Path,
        *,
        stale_after_s: float,
        watch: str = "",
        what: str = "scan",
        consequence: str = "this one does nothing",
    ):
        self.path = Path(path)
        self.stale_after_s = stale_after_s
        self.what, self.consequence = what, consequence
        self.owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "watch": watch,
            "token": uuid.uuid4().hex,
        }

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; raise `Locked` if it is held."""
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:
                    continue  # released meanwhile: try again
                why = self._stale(holder)
                if why is None:
                    raise Locked(self._held_message(holder)) from None
                log.warning("taking over the %s lock %s: %s", self.what.split()[0], self.path, why)
                self._remove_if_unchanged(holder)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(self.owner, handle)
            return
        raise Locked(f"{self.path}: others keep taking the lock; try again later")

    def heartbeat(self) -> None:
        # Gone if removed by hand: nothing to refresh then.
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def release(self) -> None:
        """Remove the lock if it is still ours (one that took it over keeps its own)."""
        holder = self._read()
        if holder is not None and holder.get("token") == self.owner["token"]:
            self.path.unlink(missing_ok=True)

    def _read(self) -> dict | None:
        """The lock's content plus its stat; None if there is no lock."""
        try:
            stat = self.path.stat()
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
        except ValueError:
            info = {}  # a writer that died between create and write
        info = info if isinstance(info, dict) else {}
        return {**info, "_stat": (stat.st_ino, stat.st_mtime_ns), "_mtime": stat.st_mtime}

    def _stale(self, holder: dict) -> str | None:
        idle = time.time() - holder["_mtime"]
        if idle > self.stale_after_s:
            return (
                f"untouched for {idle / 3600:.1f} h (stale after {self.stale_after_s / 3600:g} h)"
            )
        pid = holder.get("pid")
        if holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return f"its {self.what} (pid {pid} on this host) is gone"
            except PermissionError:
                pass  # alive, another user's
        return None

    def _held_message(self, holder: dict) -> str:
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        idle = time.time() - holder["_mtime"]
        return (
            f"another {self.what} holds {self.path} ({who}, started "
            f"{holder.get('started_at', '?')}, last active {idle:.0f} s ago), so "
            f"{self.consequence}. The lock goes when it ends; a lock untouched for "
            f"{self.stale_after_s / 3600:g} h, or left by a process gone from this host, is "
            "taken over."
        )

    def _remove_if_unchanged(self, holder: dict) -> None:
        """Remove the stale lock seen as `holder`, not one a racing scan has just created:
        move it aside, and put it back if it turns out to be another."""
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        stat = aside.stat()
        if (stat.st_ino, stat.st_mtime_ns) == holder["_stat"]:
            aside.unlink(missing_ok=True)
        else:
            os.rename(aside, self.path)
