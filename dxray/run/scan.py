"""Scheduled checkpoint scans: audit each new checkpoint in a folder once, and diff it against
the checkpoint before it.

    dxray scan --watch '/checkpoints/*' --spec pipelines/toy.yaml     # cron, every 30 minutes

    result = scan("/checkpoints", load_spec("pipelines/toy.yaml"))
    result.audited   # [(checkpoint, run_id)] audited by this scan
    result.diffs     # [<catalog>/diffs/<from run>__<to run>.json] written by this scan

A checkpoint is known by the content hash of its files (`classifier_sha256`), so renaming or
copying it does not make it new, and changing its bytes does. It counts as audited when the
catalog holds a *finished* run of those weights made with the same audit settings (the spec,
minus where the classifier lives and how wide the audit runs: `AuditSpec.spec_hash`). A run
that failed or was killed is resumed by the next scan: its run id derives from the same hash
and spec, so `run_audit` picks up where it stopped.

Checkpoints are put in order by modification time (then path); consecutive checkpoints that
have finished runs get a diff (`diff_runs`) written as JSON, and a checkpoint rewritten in
place (one path, new bytes: `runs/**/best`) gets a diff against the run of its previous content
at that path (`previous_contents`). A diff missing after a crash is
written by the next scan, so the diffs always cover the whole chain.

One scan at a time per catalog: `<catalog>/.scan.lock` is created with O_EXCL and removed when
the scan ends. A second scan meanwhile raises `ScanLocked` and audits nothing. A lock left by
a scan that died (untouched for `stale_lock_hours`, or whose process is gone from this host)
is taken over with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from glob import glob
from pathlib import Path
from typing import Any

import yaml

from dxray.run.lock import FileLock, Locked
from dxray.run.pipeline import classifier_sha256, run_audit
from dxray.spec import AuditSpec, SpecError, load_spec, with_overrides

log = logging.getLogger("dxray.scan")

LOCK_FILE = ".scan.lock"
ScanLocked = Locked  # another scan holds the catalog's lock; this one audited nothing
HASH_CACHE_FILE = ".scan-hashes.json"  # path -> (file sizes and mtimes, sha256): skip rehashing
DIFF_DIR = "diffs"
STALE_LOCK_HOURS = 6.0  # a running scan touches its lock after every worker batch
# A checkpoint changed less than this long ago may still be being written: wait for it.
SETTLE_SECONDS = 60.0
# What a classifier directory holds (dxray's format, then Hugging Face's save_pretrained)...
CHECKPOINT_DIR_MARKERS = ("classifier.json", "config.json")
# ...and the files `load_classifier` takes (a .safetensors file needs the spec's factory).
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ts", ".torchscript")
_PLACEHOLDER = "<checkpoint>"  # the classifier source, blanked out of the settings hash


@dataclass
class Checkpoint:
    path: Path
    mtime: float  # the newest modification time of the checkpoint and its files
    sha256: str = ""


@dataclass
class ScanResult:
    """What one scan found and did. Paths are the checkpoints as found."""

    catalog: Path
    dry_run: bool = False
    planned: list[tuple[Path, str]] = field(default_factory=list)  # to audit: (path, run id)
    audited: list[tuple[Path, str]] = field(default_factory=list)  # finished now (not dry run)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (path, error); next scan retries
    diffs: list[Path] = field(default_factory=list)  # diff files written now


def scan(
    watch: str | os.PathLike,
    spec: AuditSpec,
    *,
    catalog: str | os.PathLike | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    settle_seconds: float = SETTLE_SECONDS,
    stale_lock_hours: float = STALE_LOCK_HOURS,
) -> ScanResult:
    """Audit every checkpoint matching `watch` that the catalog has no finished run of (by
    content hash and audit settings), then write the diff of each checkpoint against the one
    before it. `watch` is a folder of checkpoints or a glob (`'/ckpt/*'`, `'runs/**/best'`).

    `catalog` overrides `spec.output.catalog`. `dry_run` lists what would be audited and
    writes nothing, not even the lock. `progress` receives each line of output (default: the
    "dxray.scan" logger). Raises `ScanLocked` if another scan holds the catalog.
    """
    say = progress or log.info
    # 1. Check inputs: each checkpoint needs its own run id
    if spec.output.run_id is not None:
        raise SpecError(
            f"{spec.source_path or '<spec>'}: output.run_id: is {spec.output.run_id!r}, but a "
            "scan gives each checkpoint its own run; set output.run_id to null"
        )
    if catalog is not None:
        spec = with_overrides(spec, **{"output.catalog": str(catalog)})
    root = Path(spec.output.catalog)
    result = ScanResult(root, dry_run=dry_run)

    # 2. Lock the catalog (a dry run writes nothing, the lock included)
    lock = None
    if not dry_run:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(
            root / LOCK_FILE, stale_after_s=stale_lock_hours * 3600, watch=str(watch),
            what="scan", consequence="this one audits nothing",
        )  # fmt: skip
        lock.acquire()
    try:
        # 3. Find the checkpoints, oldest first, and hash them
        checkpoints, others = find_checkpoints(watch)
        result.skipped += [(p, "not a classifier checkpoint") for p in others]
        now = time.time()
        ready = []
        for ckpt in checkpoints:
            age = now - ckpt.mtime
            if age < settle_seconds:
                why = f"changed {age:.0f} s ago; audited once unchanged for {settle_seconds:.0f} s"
                result.skipped.append((ckpt.path, why))
            else:
                ready.append(ckpt)
        _hash_all(ready, root / HASH_CACHE_FILE, write=not dry_run)

        # 4. Which are audited already: one chain entry per distinct content, first seen first
        runs = audited_runs(root, spec)
        chain: list[Checkpoint] = []
        first: dict[str, Checkpoint] = {}
        for ckpt in ready:
            if ckpt.sha256 in first:
                same = first[ckpt.sha256].path
                result.skipped.append((ckpt.path, f"same content as {same}"))
                continue
            first[ckpt.sha256] = ckpt
            chain.append(ckpt)
            if ckpt.sha256 in runs:
                result.skipped.append((ckpt.path, f"already audited: run {runs[ckpt.sha256]}"))
            else:
                run_id = _spec_for(spec, ckpt.path).run_id_for(ckpt.sha256)
                result.planned.append((ckpt.path, run_id))
        for path, why in result.skipped:
            say(f"skip  {path}: {why}")
        if dry_run:
            for path, run_id in result.planned:
                say(f"would audit {path} as run {run_id}")
            say(f"dry run: {len(result.planned)} to audit, {len(result.skipped)} skipped -> {root}")
            return result

        # 5. Audit the new ones, one run each, on one Ray session for the whole scan
        by_path = {ckpt.path: ckpt for ckpt in chain}
        if result.planned:
            _audit_all(spec, result, by_path, runs, lock, say)

        # 6. Diff each checkpoint against the previous one with a finished run, and a
        #    checkpoint rewritten in place against its own previous content
        audited_chain = [(ckpt, runs[ckpt.sha256]) for ckpt in chain if ckpt.sha256 in runs]
        result.diffs = write_missing_diffs(root, audited_chain, say)
        rewritten = previous_contents(audited_chain, finished_runs(root, spec))
        result.diffs += write_rewrite_diffs(root, rewritten, say)
    finally:
        if lock is not None:
            lock.release()
    say(
        f"scan of {watch}: {len(result.audited)} audited, {len(result.failed)} failed, "
        f"{len(result.skipped)} skipped, {len(result.diffs)} diff(s) written -> {root}"
    )
    return result


def main_scan(
    watch: str,
    spec_path: str | os.PathLike,
    dry_run: bool = False,
    *,
    catalog: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[str]:
    """What `dxray scan --watch <dir or glob> --spec <yaml> [--dry-run]` runs: its output lines,
    each also given to `echo` as it happens. A held lock is a line of output, not an error (a
    cron tick that finds the previous scan still running has nothing to do); a bad spec raises
    `SpecError`."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if echo is not None:
            echo(line)

    spec = load_spec(spec_path)
    try:
        scan(watch, spec, catalog=catalog, dry_run=dry_run, progress=say)
    except ScanLocked as err:
        say(f"scan not started: {err}")
    return lines


# ---------------------------------------------------------------------------------------------
# Finding and identifying checkpoints
# ---------------------------------------------------------------------------------------------


def find_checkpoints(watch: str | os.PathLike) -> tuple[list[Checkpoint], list[Path]]:
    """(the checkpoints matching `watch`, oldest first; the other matches). `watch` is a folder
    (its visible entries are the candidates) or a glob. A checkpoint is a directory with
    classifier.json or config.json, or a .safetensors / TorchScript file."""
    text = os.path.expanduser(str(watch))
    if Path(text).is_dir():
        candidates = [p for p in Path(text).iterdir() if not p.name.startswith(".")]
    elif any(char in text for char in "*?["):
        candidates = [Path(p) for p in glob(text, recursive=True)]
    else:
        raise FileNotFoundError(f"watch {str(watch)!r}: no such folder, and not a glob")
    checkpoints, others = [], []
    for path in candidates:
        path = path.absolute()
        if _is_checkpoint(path):
            checkpoints.append(Checkpoint(path, _newest_mtime(path)))
        else:
            others.append(path)
    checkpoints.sort(key=lambda c: (c.mtime, str(c.path)))
    return checkpoints, sorted(others)


def _is_checkpoint(path: Path) -> bool:
    if path.is_dir():
        return any((path / marker).is_file() for marker in CHECKPOINT_DIR_MARKERS)
    return path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _newest_mtime(path: Path) -> float:
    return max([path.stat().st_mtime] + [p.stat().st_mtime for p in _files(path)])


def _hash_all(checkpoints: list[Checkpoint], cache_file: Path, *, write: bool) -> None:
    """Set each checkpoint's sha256. Hashing gigabytes every half hour is wasteful, so a hash is
    reused while every file of the checkpoint keeps its size and mtime."""
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    fresh = {}
    for ckpt in checkpoints:
        stamp = [[str(p.relative_to(ckpt.path.parent)), *_size_mtime(p)] for p in _files(ckpt.path)]
        entry = cache.get(str(ckpt.path))
        if not (isinstance(entry, dict) and entry.get("files") == stamp):
            entry = {"files": stamp, "sha256": classifier_sha256(str(ckpt.path))}
        ckpt.sha256 = entry["sha256"]
        fresh[str(ckpt.path)] = entry
    # Keep entries of paths still on disk (another watch may share the catalog).
    kept = {k: v for k, v in cache.items() if k not in fresh and Path(k).exists()}
    fresh = dict(sorted({**kept, **fresh}.items()))
    if write and fresh != cache:
        _write_atomic(cache_file, json.dumps(fresh, indent=1))


def _size_mtime(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _source_key(spec: AuditSpec) -> str:
    # A dict source ({source: w.safetensors, factory: ...}) keeps its loader options.
    return (
        "classifier.source.source"
        if isinstance(spec.classifier.source, dict)
        else ("classifier.source")
    )


def _spec_for(spec: AuditSpec, checkpoint: Path) -> AuditSpec:
    """`spec` with the classifier replaced by `checkpoint`."""
    return with_overrides(spec, **{_source_key(spec): str(checkpoint)})


def _settings_hash(spec: AuditSpec) -> str:
    """The spec's hash with the classifier's location blanked out: equal for two runs that
    audit (possibly different) weights the same way."""
    return with_overrides(spec, **{_source_key(spec): _PLACEHOLDER}).spec_hash()


def audited_runs(catalog: Path, spec: AuditSpec) -> dict[str, str]:
    """classifier sha256 -> run id, for the catalog's finished runs made with `spec`'s settings
    (the earliest when there are several)."""
    found: dict[str, str] = {}
    for run in finished_runs(catalog, spec):
        found.setdefault(run.sha256, run.run_id)
    return found


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    sha256: str
    checkpoint: str  # the classifier's path as the run recorded it
    created_at: datetime


def finished_runs(catalog: Path, spec: AuditSpec) -> list[FinishedRun]:
    """The catalog's finished runs made with `spec`'s settings, oldest first."""
    from dxray.catalog.views import connect

    if not (catalog / "runs").is_dir():
        return []
    con = connect(catalog, read_only=True)
    try:
        rows = con.sql(
            "SELECT run_id, classifier_sha256, classifier, spec_yaml, created_at FROM runs "
            "WHERE status = 'finished' AND classifier_sha256 IS NOT NULL "
            "ORDER BY created_at, run_id"
        ).fetchall()
    finally:
        con.close()
    want = _settings_hash(spec)
    return [
        FinishedRun(run_id, sha, _recorded_path(classifier), created_at)
        for run_id, sha, classifier, spec_yaml, created_at in rows
        if _settings_hash_of(spec_yaml) == want
    ]


def _recorded_path(classifier: str | None) -> str:
    """The checkpoint path of a runs row's `classifier` (a path, or a loader mapping as JSON)."""
    text = classifier or ""
    if text.startswith("{"):
        try:
            text = str(json.loads(text).get("source", ""))
        except (ValueError, AttributeError):
            return ""
    return str(Path(text).absolute()) if text else ""


def previous_contents(
    chain: list[tuple[Checkpoint, str]], history: list[FinishedRun]
) -> list[tuple[Checkpoint, str, str]]:
    """(checkpoint, run of its previous content, run of its content now) for each checkpoint
    of `chain` ((checkpoint, run id)) whose path held other weights at an earlier finished run:
    a checkpoint rewritten in place (`runs/**/best`). The previous content is the latest run
    recorded at that path with other weights."""
    found = []
    for ckpt, run_id in chain:
        earlier = [
            run
            for run in history
            if run.checkpoint == str(ckpt.path.absolute()) and run.sha256 != ckpt.sha256
        ]
        if earlier:
            found.append((ckpt, earlier[-1].run_id, run_id))
    return found


def _settings_hash_of(spec_yaml: str | None) -> str | None:
    try:
        return _settings_hash(AuditSpec.from_dict(yaml.safe_load(spec_yaml or "")))
    except (SpecError, yaml.YAMLError, TypeError, ValueError) as err:
        # A run this version cannot read (an older spec format): not a match, so re-audited.
        log.debug("a run's spec_yaml does not parse: %s", err)
        return None


# ---------------------------------------------------------------------------------------------
# Auditing and diffing
# ---------------------------------------------------------------------------------------------


def _audit_all(
    spec: AuditSpec,
    result: ScanResult,
    by_path: dict[Path, Checkpoint],
    runs: dict[str, str],
    lock: FileLock,
    say: Callable[[str], None],
) -> None:
    """Audit `result.planned` in order; record each finished run in `runs` (sha -> run id). A
    checkpoint that fails is reported and left for the next scan; the others go on."""
    from dxray.run.pipeline import ensure_ray

    def beat(done: int, total: int, _statuses) -> None:
        lock.heartbeat()  # the lock is alive while batches come back
        say(f"      {done}/{total} targets")

    started_ray = ensure_ray(spec)  # one Ray session for every checkpoint, not one each
    try:
        for i, (path, run_id) in enumerate(result.planned, 1):
            say(f"audit {path} as run {run_id} ({i}/{len(result.planned)})")
            try:
                summary = run_audit(_spec_for(spec, path), progress=beat)
            except Exception as err:  # noqa: BLE001 - one bad checkpoint must not stop the scan
                log.warning("audit of %s failed", path, exc_info=True)
                error = f"{type(err).__name__}: {err}"
                result.failed.append((path, error))
                say(f"FAILED {path}: {error}")
                continue
            finally:
                lock.heartbeat()
            runs[by_path[path].sha256] = summary.run_id
            result.audited.append((path, summary.run_id))
            counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()))
            say(
                f"      run {summary.run_id} {summary.status} in {summary.seconds:.0f} s ({counts})"
            )
    finally:
        if started_ray:
            from dxray.run.pipeline import stop_ray

            stop_ray()


def diff_path(catalog: Path, from_run: str, to_run: str) -> Path:
    """Where the diff of two runs is written."""
    return Path(catalog) / DIFF_DIR / f"{from_run}__{to_run}.json"


def write_missing_diffs(
    catalog: Path, chain: list[tuple[Checkpoint, str]], say: Callable[[str], None]
) -> list[Path]:
    """For each consecutive pair of `chain` ((checkpoint, run id), oldest first) whose diff file
    is missing, compute the diff and write it. Returns the files written."""
    pairs = [(a, b, False) for a, b in zip(chain, chain[1:], strict=False)]
    return _write_diffs(catalog, pairs, say)


def write_rewrite_diffs(
    catalog: Path, rewritten: list[tuple[Checkpoint, str, str]], say: Callable[[str], None]
) -> list[Path]:
    """The diff of each checkpoint rewritten in place ((checkpoint, run of its previous
    content, run of its content now), from `previous_contents`) whose diff file is missing."""
    pairs = [((ckpt, before), (ckpt, after), True) for ckpt, before, after in rewritten]
    return _write_diffs(catalog, pairs, say)


def _write_diffs(
    catalog: Path,
    pairs: list[tuple[tuple[Checkpoint, str], tuple[Checkpoint, str], bool]],
    say: Callable[[str], None],
) -> list[Path]:
    """Write the diff of each ((checkpoint, run) before, after, rewritten in place) whose file
    is missing; returns the files written."""
    from dxray.catalog.diff import diff_runs
    from dxray.catalog.views import connect

    pairs = [p for p in pairs if not diff_path(catalog, p[0][1], p[1][1]).exists()]
    if not pairs:
        return []
    written = []
    con = connect(catalog, read_only=True)
    try:
        for (before, from_run), (after, to_run), in_place in pairs:
            diff = diff_runs(con, from_run, to_run)
            document = {
                "from_run": from_run,
                "to_run": to_run,
                "from_checkpoint": str(before.path),
                "to_checkpoint": str(after.path),
                "rewritten_in_place": in_place,
                "summary": diff.summary,
                "targets": diff.rows,
                "shortcuts": diff.shortcuts.to_pylist() if diff.shortcuts is not None else [],
            }
            path = diff_path(catalog, from_run, to_run)
            _write_atomic(path, json.dumps(_json_safe(document), indent=1, allow_nan=False))
            written.append(path)
            if in_place:
                say(
                    f"      {after.path} was rewritten in place: diffed against its previous content"
                )
            say(_diff_line(diff.rows, from_run, to_run, path))
            for row in document["shortcuts"]:
                if row["change"] != "kept":
                    say(f"      shortcut {row['class_name']} <- {row['attribute']} {row['change']}")
    finally:
        con.close()
    return written


def _diff_line(rows: list[dict], from_run: str, to_run: str, path: Path) -> str:
    def named(change: str) -> str:
        hits = [r for r in rows if r["change"] == change]
        labels = [
            r["target_id"] + (f" ({r['class_name']})" if r["class_name"] else "") for r in hits
        ]
        return f"{len(hits)} {change}" + (f" [{', '.join(labels)}]" if labels else "")

    changed = sum(1 for r in rows if r["change"] == "changed")
    return (
        f"diff  {from_run} -> {to_run}: {named('new spurious')}, {named('resolved')}, "
        f"{changed} changed otherwise -> {path}"
    )


def _json_safe(value: Any) -> Any:
    """Plain JSON: timestamps as ISO text, non-finite floats as null."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and a rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temp.write_text(text)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------------------------
