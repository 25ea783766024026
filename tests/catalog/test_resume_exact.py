"""Resume is exact: after any one file of a run is lost (cut short and left out, or
quarantined), resume redoes exactly the keys that file held, and every view then holds one
current row per key, equal to the rows of an undamaged catalog."""

import shutil

import pyarrow.parquet as pq
import pytest

from dxray.catalog.health import broken_files, quarantine
from dxray.catalog.sample import write_sample
from dxray.catalog.views import connect
from dxray.catalog.writer import CatalogWriter, part_files

RUN = "ckpt-a"
COMPARED = {
    "explanations": "target_id, seed, status, probability",
    "verdicts": "target_id, seed, verdict, presence",
    "images": "target_id, seed, md5(png::VARCHAR)",
    "audit": "target_id, seed, status, verdict, has_image",
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    write_sample(root)
    return root


def rows(root, view):
    query = f"SELECT {COMPARED[view]} FROM {view} WHERE run_id = '{RUN}' ORDER BY ALL"
    return connect(root).sql(query).fetchall()


def resume(root, pristine):
    """What a resumed audit does, with the sample's rows standing in for the recomputed ones:
    every key `done_keys` no longer lists is written again, as one worker batch."""
    writer = CatalogWriter(root)
    todo = CatalogWriter(pristine).done_keys(RUN, retry=()) - writer.done_keys(RUN)
    batch = {}
    for table in ("explanations", "verdicts", "images"):
        read = [pq.read_table(p).to_pylist() for p in part_files(pristine, table, RUN)]
        batch[table] = [
            {k: v for k, v in r.items() if k != "run_id"}
            for part in read
            for r in part
            if (r["target_id"], r["seed"]) in todo
        ]
    writer.write_batch(RUN, batch["explanations"], batch["verdicts"], batch["images"])
    return todo


@pytest.mark.parametrize("table", ["explanations", "verdicts", "images"])
@pytest.mark.parametrize("how", ["cut short", "quarantined"])
def test_losing_any_file_then_resuming_leaves_one_current_row_per_key(
    pristine, tmp_path, table, how
):
    root = tmp_path / "catalog"
    shutil.copytree(pristine, root)
    lost = part_files(root, table, RUN)[0]
    held = pq.read_table(lost, columns=["target_id", "seed"]).to_pylist()
    data = lost.read_bytes()
    lost.write_bytes(data[: len(data) // 2])  # a copy cut short
    if how == "quarantined":
        quarantine(root, broken_files(root))

    redone = resume(root, pristine)

    held = {(r["target_id"], r["seed"]) for r in held}
    assert redone == held | {("class:3", 1)}  # the sample's error row is retried anyway
    for view in COMPARED:
        got = rows(root, view)
        keys = [r[:2] for r in got]
        assert len(keys) == len(set(keys)), f"{view}: a key twice after resume"
        assert got == rows(pristine, view), view
