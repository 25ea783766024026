"""Checkpoints as a scan sees them: found by folder or glob, ordered by age, known by content.

    checkpoints, others = find_checkpoints("/ckpt/*")       # oldest first; others: not models
    hash_checkpoints(checkpoints, cache_file, write=True)   # sets each one's sha256
    classifier_sha256("zoo/classifier")                     # a file's or a folder's content hash

A checkpoint is a directory with `classifier.json` (dxray's format) or `config.json` (Hugging
Face's save_pretrained), or a `.safetensors` / TorchScript file. Its identity is the hash of
its files' relative names and bytes, so renaming or copying a folder keeps it; the hash is
cached per path while every file keeps its size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from glob import iglob
from pathlib import Path
from typing import Any

from dxray.catalog.writer import write_text_atomic

HASH_CACHE_FILE = ".scan-hashes.json"  # path -> (file sizes and mtimes, sha256): skip rehashing
# What a classifier directory holds (dxray's format, then Hugging Face's save_pretrained)...
CHECKPOINT_DIR_MARKERS = ("classifier.json", "config.json")
# ...and the files `load_classifier` takes (a .safetensors file needs the spec's factory).
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ts", ".torchscript")
MAX_MATCHES = 100_000  # paths a watch glob may match before the scan refuses it


@dataclass
class Checkpoint:
    path: Path
    mtime: float  # the newest modification time of the checkpoint and its files
    sha256: str = ""


def folder_files(folder: Path) -> dict[str, Path]:
    """A folder's files (in its subfolders too) by relative name, in path order: what the
    content hashes of a model folder read (`classifier_sha256`, `provenance.folder_fingerprint`)."""
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def classifier_sha256(source: Any) -> str:
    """Content hash of a classifier's weights: a file's bytes, or every file of a directory
    (relative names and bytes); for a hub id, the hash of the id itself. A renamed or copied
    checkpoint keeps its hash."""
    if isinstance(source, dict):
        source = source.get("source", json.dumps(source, sort_keys=True))
    path = Path(str(source).removeprefix("hf:"))
    digest = hashlib.sha256()
    if path.is_file():
        files = {"": path}
    elif path.is_dir():
        files = folder_files(path)
    else:
        digest.update(str(source).encode())
        return digest.hexdigest()
    for name, file in files.items():
        digest.update(name.encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def find_checkpoints(watch: str | os.PathLike) -> tuple[list[Checkpoint], list[Path]]:
    """(the checkpoints matching `watch`, oldest first; the other matches). `watch` is a folder
    (its visible entries are the candidates) or a glob. A checkpoint is a directory with
    classifier.json or config.json, or a .safetensors / TorchScript file."""
    text = os.path.expanduser(str(watch))
    if Path(text).is_dir():
        candidates = [p for p in Path(text).iterdir() if not p.name.startswith(".")]
    elif any(char in text for char in "*?["):
        candidates = _glob(text)
    else:
        raise FileNotFoundError(f"watch {str(watch)!r}: no such folder, and not a glob")
    checkpoints, others = [], []
    for path in candidates:
        path = path.absolute()
        if is_checkpoint(path):
            checkpoints.append(Checkpoint(path, _newest_mtime(path)))
        else:
            others.append(path)
    checkpoints.sort(key=lambda c: (c.mtime, str(c.path)))
    return checkpoints, sorted(others)


def _glob(pattern: str) -> list[Path]:
    """The matches of `pattern` (`**` recursive), each real path once, never through a
    symlinked folder below the pattern's fixed part (a link back up would loop: a watch over
    one such loop listed 41,778 paths); more than MAX_MATCHES matches is an error."""
    fixed = Path(pattern.split("*")[0].split("?")[0].split("[")[0]).parent
    found, seen = [], set()
    for n, match in enumerate(iglob(pattern, recursive=True), start=1):
        if n > MAX_MATCHES:
            raise ValueError(
                f"watch {pattern!r} matches more than {MAX_MATCHES:,} paths: narrow the glob "
                "(e.g. '/checkpoints/*' or '/runs/*/best')"
            )
        path = Path(match)
        inner = path.parents[: max(len(path.parts) - len(fixed.parts) - 1, 0)]
        if any(parent.is_symlink() for parent in inner):
            continue
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            found.append(path)
    return found


def is_checkpoint(path: Path) -> bool:
    if path.is_dir():
        return any((path / marker).is_file() for marker in CHECKPOINT_DIR_MARKERS)
    return path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _newest_mtime(path: Path) -> float:
    return max([path.stat().st_mtime] + [p.stat().st_mtime for p in _files(path)])


def hash_checkpoints(checkpoints: list[Checkpoint], cache_file: Path, *, write: bool) -> None:
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
        write_text_atomic(cache_file, json.dumps(fresh, indent=1))


def _size_mtime(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]
