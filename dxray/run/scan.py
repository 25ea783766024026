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

Finding and hashing checkpoints is `dxray.run.checkpoints`; writing the diff files is
`dxray.run.scan_diffs`; this module decides what to audit and in which order.

One scan at a time per catalog: `<catalog>/.scan.lock` is created with O_EXCL and removed when
the scan ends. A second scan meanwhile raises `ScanLocked` and audits nothing. A lock left by
a scan that died (untouched for `stale_lock_hours`, or whose process is gone from this host)
is taken over with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dxray.run.checkpoints import HASH_CACHE_FILE, Checkpoint, find_checkpoints, hash_checkpoints
from dxray.run.lock import FileLock, Locked
from dxray.run.pipeline import run_audit
from dxray.run.scan_diffs import write_missing_diffs, write_rewrite_diffs
from dxray.run.scan_gates import GatesFailed, write_missing_gates
from dxray.spec.model import AuditSpec, SpecError
from dxray.spec.parse import load_spec, recorded_spec, with_overrides
from dxray.text import first_line, one_line

log = logging.getLogger("dxray.scan")

LOCK_FILE = ".scan.lock"
ScanLocked = Locked  # another scan holds the catalog's lock; this one audited nothing
STALE_LOCK_HOURS = 6.0  # a running scan touches its lock after every worker batch
# A checkpoint changed less than this long ago may still be being written: wait for it.
SETTLE_SECONDS = 60.0
_PLACEHOLDER = "<checkpoint>"  # the classifier source, blanked out of the settings hash


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
    gates: list[Path] = field(default_factory=list)  # with gate=True: gate files written now
    gate_failures: list[str] = field(default_factory=list)  # "A -> B: why", failed or ungated


def scan(
    watch: str | os.PathLike,
    spec: AuditSpec,
    *,
    catalog: str | os.PathLike | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    settle_seconds: float = SETTLE_SECONDS,
    stale_lock_hours: float = STALE_LOCK_HOURS,
    gate: bool = False,
) -> ScanResult:
    """Audit every checkpoint matching `watch` that the catalog has no finished run of (by
    content hash and audit settings), then write the diff of each checkpoint against the one
    before it. `watch` is a folder of checkpoints or a glob (`'/ckpt/*'`, `'runs/**/best'`).

    `catalog` overrides `spec.output.catalog`. `dry_run` lists what would be audited and
    writes nothing, not even the lock. `progress` receives each line of output (default: the
    "dxray.scan" logger). `gate` also gates each pair with a diff (`dxray.run.scan_gates`):
    the later run against the earlier. Raises `ScanLocked` if another scan holds the catalog.
    """
    emit = progress or log.info

    def say(line: str) -> None:  # one line each, whatever the checkpoints' names hold
        emit(one_line(line))

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
        hash_checkpoints(ready, root / HASH_CACHE_FILE, write=not dry_run)

        # 4. Which are audited already: one chain entry per distinct content, first seen first
        history = finished_runs(root, spec)
        runs = first_run_per_content(history)
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
        rewritten = previous_contents(audited_chain, history)  # runs of this scan: new content
        result.diffs += write_rewrite_diffs(root, rewritten, say)

        # 7. With gate: the release gate of each pair the diffs cover, written next to them
        if gate:
            pairs = [
                (a, b) for (_, a), (_, b) in zip(audited_chain, audited_chain[1:], strict=False)
            ]
            pairs += [(before, after) for _, before, after in rewritten]
            source = f"{spec.source_path or 'the scan spec'} (gate:)"
            result.gates, result.gate_failures = write_missing_gates(
                root, pairs, spec.gate, source, say
            )
    finally:
        if lock is not None:
            lock.release()
    say(
        f"scan of {watch}: {len(result.audited)} audited, {len(result.failed)} failed, "
        f"{len(result.skipped)} skipped, {len(result.diffs)} diff(s) written -> {root}"
        + (f", {len(result.gates)} gate(s), {len(result.gate_failures)} failed" if gate else "")
    )
    return result


def main_scan(
    watch: str,
    spec_path: str | os.PathLike,
    dry_run: bool = False,
    *,
    catalog: str | None = None,
    echo: Callable[[str], None] | None = None,
    gate: bool = False,
) -> list[str]:
    """What `dxray scan --watch <dir or glob> --spec <yaml> [--dry-run] [--gate]` runs: its
    output lines, each also given to `echo` as it happens. A held lock is a line of output, not
    an error (a cron tick that finds the previous scan still running has nothing to do); a bad
    spec raises `SpecError`; with `gate`, a gate written now that failed (or a pair that could
    not be gated) raises `GatesFailed` once the scan is done."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if echo is not None:
            echo(line)

    spec = load_spec(spec_path)
    try:
        result = scan(watch, spec, catalog=catalog, dry_run=dry_run, progress=say, gate=gate)
    except ScanLocked as err:
        say(f"scan not started: {err}")
        return lines
    if result.failed:
        raise CheckpointsFailed(
            f"{len(result.failed)} checkpoint(s) failed to audit ("
            + "; ".join(f"{one_line(str(p))}: {e}" for p, e in result.failed)
            + "): the next scan retries them"
            + (f"; and {len(result.gate_failures)} gate(s) failed" if result.gate_failures else "")
        )
    if result.gate_failures:
        raise GatesFailed(
            f"{len(result.gate_failures)} gate(s) failed: {'; '.join(result.gate_failures)}"
        )
    return lines


class CheckpointsFailed(RuntimeError):
    """A scan in which a checkpoint's audit failed: cron and CI must see it (exit 1)."""


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


def first_run_per_content(history: list[FinishedRun]) -> dict[str, str]:
    """classifier sha256 -> run id: the earliest finished run of each content in `history`."""
    found: dict[str, str] = {}
    for run in history:
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
    # A run this version cannot read (an older spec format): not a match, so re-audited.
    spec = recorded_spec(spec_yaml)
    return _settings_hash(spec) if spec is not None else None


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
    from dxray.run.session import ray_session

    def beat(done: int, total: int, _statuses) -> None:
        lock.heartbeat()  # the lock is alive while batches come back
        say(f"      {done}/{total} targets")

    # One Ray session for every checkpoint: the model hosts keep the generator and the
    # segmenter, and load only each checkpoint's classifier
    with ray_session(spec):
        for i, (path, run_id) in enumerate(result.planned, 1):
            say(f"audit {path} as run {run_id} ({i}/{len(result.planned)})")
            try:
                # an interrupted run that other dxray code began is computed again, not mixed
                summary = run_audit(_spec_for(spec, path), progress=beat, resume="fresh-if-stale")
            except Exception as err:  # noqa: BLE001 - one bad checkpoint must not stop the scan
                log.debug("audit of %s failed", path, exc_info=True)  # the traceback: --debug
                error = f"{type(err).__name__}: {first_line(err)}"
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
