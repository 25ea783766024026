"""Where a model comes from: a local directory or a hub id, and what to say when it fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from dxray.text import first_line

T = TypeVar("T")


def looks_like_path(src: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with a slash is meant as a path.
    return src.startswith((".", "/", "~")) or src.count("/") > 1


def load_part(
    fn: Callable[[], T], *, what: str, model: str, src: str, is_local: bool, error: type[Exception]
) -> T:
    """`fn()`, with an OSError/ValueError turned into `error` saying what to do: check a local
    folder, or download a hub id on a connected machine."""
    try:
        return fn()
    except (OSError, ValueError) as err:
        where = "directory" if is_local else "hub id"
        advice = (
            "Check that the folder was written by save_pretrained."
            if is_local
            else "Offline or not cached? Download it on a connected machine "
            f"(`hf download {src} --local-dir DIR`) and pass DIR instead."
        )
        raise error(
            f"could not load the {what} of {model} {where} '{src}': {first_line(err)}. {advice}"
        ) from None
