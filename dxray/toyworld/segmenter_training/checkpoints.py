"""The trained segmenter on disk: `<out_dir>/segmenter/`, in transformers' layout (what
`load_segmenter` reads like a real CLIPSeg) with its training record `dxray_train.json`
(`SegmenterTrainReport`); and continuing from such a folder (`continue_from`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dxray.models.segmenter import Segmenter
from dxray.toyworld.records import library_versions, write_record

SEGMENTER_DIR = "segmenter"
TRAIN_FILE = "dxray_train.json"


@dataclass
class SegmenterTrainReport:
    """What `train_segmenter` did; also written to `<out_dir>/segmenter/dxray_train.json`."""

    path: str  # the saved segmenter directory (load with `load_segmenter`)
    seed: int
    steps: int
    batch_size: int
    seconds: float
    device: str
    final_loss: float
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean since last)
    config: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    world: str = ""
    # Continued from: the earlier run's own record (its dxray_train.json), None if from scratch.
    init: dict | None = None
    partial: bool = False  # True while a `save_every` run is still going (or was killed)

    def to_dict(self) -> dict:
        return asdict(self)


def save_segmenter(segmenter: Segmenter, out_dir: str | Path, **record) -> SegmenterTrainReport:
    """Write `segmenter` to `<out_dir>/segmenter` in transformers' layout, plus what made it:
    `record` (the fields of `SegmenterTrainReport` but its path and versions)."""
    path = segmenter.save_pretrained(Path(out_dir) / SEGMENTER_DIR)
    report = SegmenterTrainReport(
        path=str(path),
        versions=library_versions("dxray", "torch", "transformers", "numpy", "python"),
        **record,
    )
    write_record(path / TRAIN_FILE, report.to_dict())
    return report


def continue_from(init: str | Path, segmenter: Segmenter) -> dict:
    """Load the weights of the toy segmenter saved at `init` into `segmenter` (same config: a
    mismatch fails by parameter name); returns its training record."""
    init = Path(init)
    record = init / TRAIN_FILE
    if not record.is_file():
        raise FileNotFoundError(f"{init} is not a toy segmenter saved by train_segmenter")
    earlier = json.loads(record.read_text())
    from dxray.models.segmenter import load_segmenter

    state = load_segmenter(init).model.state_dict()
    segmenter.model.load_state_dict(state)
    return earlier
