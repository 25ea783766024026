"""CatalogWriter: hive-partitioned batch files, atomic writes, resume keys, schema checks."""

import re
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dxray.catalog import writer as writer_module
from dxray.catalog.sample import write_sample
from dxray.catalog.schema import SchemaError, validate
from dxray.catalog.views import connect
from dxray.catalog.writer import CatalogWriter

AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def explanation(target_id="class:0", seed=0, status="converged", **extra):
    row = {
        "target_id": target_id,
        "kind": "class",
        "class_index": 0,
        "class_name": "circle",
        "objective": "ClassCE(0)",
        "seed": seed,
        "status": status,
        "created_at": AT,
    }
    return row | extra


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("catalog"))


SAMPLE_TABLES = ("runs", "explanations", "verdicts", "images", "shortcut_images", "shortcuts",
                 "shortcut_candidates", "shortcut_pool", "unit_shortcuts", "labels")  # fmt: skip


def test_files_land_in_hive_partitions_one_per_batch(sample):
    name = re.compile(r"^part-[0-9a-f]{32}\.parquet$")
    for path in sample.files:
        table_name, partition = path.parent.parent.name, path.parent.name
        assert table_name in SAMPLE_TABLES
        assert name.match(path.name), path
        run_id = partition.removeprefix("run_id=")
        assert run_id in sample.run_ids
        assert set(pq.read_table(path, columns=["run_id"]).column(0).to_pylist()) == {run_id}
    # 7 targets per run in batches of 3 -> 3 explanations files per run, not one per target
    per_run = [p for p in sample.files if p.parts[-3] == "explanations"]
    assert len(per_run) == 6
    assert sum(pq.read_metadata(p).num_rows for p in per_run) == sample.rows["explanations"]


def test_rows_round_trip(tmp_path):
    writer = CatalogWriter(tmp_path)
    rows = [
        explanation(
            seed=3,
            steps=40,
            probability=0.75,
            converged=True,
            words='[[["water", 0.9]]]',
            prompt_vectors=[0.5, -1.0],
            vector_shape=[1, 2],
        ),
        explanation("class:1", 4, "error", error="CUDA out of memory", class_name="<b>x</b>"),
    ]
    path = writer.write("explanations", rows, "r1")
    assert path.parent == tmp_path / "explanations" / "run_id=r1"
    back = pq.read_table(path).to_pylist()
    assert [r["seed"] for r in back] == [3, 4]
    assert back[0]["prompt_vectors"] == [0.5, -1.0] and back[0]["vector_shape"] == [1, 2]
    assert back[0]["probability"] == 0.75 and back[0]["created_at"] == AT
    assert back[1]["error"] == "CUDA out of memory" and back[1]["class_name"] == "<b>x</b>"
    assert back[1]["run_id"] == "r1" and back[1]["probability"] is None

    writer.write(
        "verdicts",
        [
            {
                "target_id": "class:0",
                "seed": 3,
                "presence": 0.1,
                "verdict": "spurious",
                "probe_scores": {"water": 0.9, "a watermark": 0.0},
            }
        ],
        "r1",
    )
    writer.write("images", [{"target_id": "class:0", "seed": 3, "png": b"\x89PNG"}], "r1")
    con = connect(tmp_path)
    scores, png = con.sql(
        "SELECT probe_scores, png FROM verdicts JOIN images USING (run_id, target_id, seed)"
    ).fetchall()[0]
    assert scores == {"water": 0.9, "a watermark": 0.0} and png == b"\x89PNG"


def test_done_keys_skip_results_and_retry_errors(sample):
    writer = CatalogWriter(sample.root)
    done_a = writer.done_keys("ckpt-a")
    everything = {(t, s) for t in writer_targets() for s in (0, 1)}
    # class:3 seed 1 only ever errored -> retried; class:1 seed 0 errored, then succeeded -> done
    assert done_a == everything - {("class:3", 1)}
    assert ("class:1", 0) in done_a
    done_b = writer.done_keys("ckpt-b")
    assert done_b == everything  # "nan" counts as a result by default ...
    assert writer.done_keys("ckpt-b", retry=("error", "nan")) == everything - {
        ("unit:features.4:3:-", 1)
    }  # ... unless asked to retry it
    assert writer.done_keys("never-ran") == set()
    assert all(isinstance(seed, int) for _, seed in done_a)


def writer_targets():
    return [f"class:{i}" for i in range(5)] + ["unit:features.4:17:0", "unit:features.4:3:-"]


def test_done_keys_reads_only_key_columns(sample, monkeypatch):
    seen = []
    real = pq.read_table

    def spy(path, *args, columns=None, **kwargs):
        seen.append(columns)
        return real(path, *args, columns=columns, **kwargs)

    monkeypatch.setattr(writer_module.pq, "read_table", spy)
    CatalogWriter(sample.root).done_keys("ckpt-a")
    # explanations' keys and statuses; verdicts' and images' keys: never an image blob
    assert seen and all(c in (["target_id", "seed", "status"], ["target_id", "seed"]) for c in seen)
    assert ["target_id", "seed"] in seen


def test_leftover_temp_file_is_ignored(tmp_path):
    writer = CatalogWriter(tmp_path)
    key = {"target_id": "class:0", "seed": 0}
    writer.write_batch("r1", [explanation()], [key], [{**key, "png": b"png"}])
    folder = tmp_path / "explanations" / "run_id=r1"
    (folder / ".part-deadbeef.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert connect(tmp_path).sql("SELECT count(*) FROM explanations").fetchall() == [(1,)]
    assert writer.done_keys("r1") == {("class:0", 0)}
    # a result without its verdict and image (their files lost) is not done: resume redoes it
    for table in ("verdicts", "images"):
        for path in (tmp_path / table / "run_id=r1").glob("part-*.parquet"):
            path.unlink()
    assert writer.done_keys("r1") == set()


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    writer = CatalogWriter(tmp_path)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(writer_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        writer.write("explanations", [explanation()], "r1")
    assert list((tmp_path / "explanations" / "run_id=r1").iterdir()) == []


def test_write_batch_writes_explanations_last(tmp_path, monkeypatch):
    order = []
    real = CatalogWriter.write

    def record(self, table_name, rows, run_id):
        order.append(table_name)
        return real(self, table_name, rows, run_id)

    monkeypatch.setattr(CatalogWriter, "write", record)
    image = {"target_id": "class:0", "seed": 0, "png": b"x"}
    verdict = {"target_id": "class:0", "seed": 0, "verdict": "core", "presence": 0.9}
    CatalogWriter(tmp_path).write_batch("r1", [explanation()], [verdict], [image])
    assert order[-1] == "explanations" and sorted(order) == ["explanations", "images", "verdicts"]


@pytest.mark.parametrize(
    "rows, message",
    [
        ([explanation(seed="zero")], r"explanations\.seed"),
        ([explanation(status="done")], r"explanations\.status has value\(s\) \['done'\]"),
        ([explanation(kind="neuron")], r"explanations\.kind"),
        ([explanation(target_id=None)], r"explanations\.target_id is required"),
        ([explanation(colour="red")], r"unknown field\(s\) \['colour'\]"),
        ([explanation(run_id="other")], r"run_id \['other'\]"),
    ],
)
def test_bad_rows_are_rejected_by_name(tmp_path, rows, message):
    with pytest.raises(SchemaError, match=message):
        CatalogWriter(tmp_path).write("explanations", rows, "r1")
    assert not (tmp_path / "explanations").exists()


def test_wrong_arrow_column_type_is_rejected(tmp_path):
    table = pa.Table.from_pylist([explanation()])
    table = table.set_column(table.column_names.index("seed"), "seed", pa.array(["0"], pa.string()))
    with pytest.raises(SchemaError, match=r"explanations\.seed has type string; expected int64"):
        CatalogWriter(tmp_path).write("explanations", table, "r1")
    # within a kind, Arrow columns are cast: int64 class_index -> int32
    table = pa.Table.from_pylist([explanation()])
    assert table.schema.field("class_index").type == pa.int64()
    path = CatalogWriter(tmp_path).write("explanations", table, "r1")
    assert pq.read_schema(path).field("class_index").type == pa.int32()


def test_validate_checks_columns_directly():
    table = pa.table({"run_id": ["r"], "target_id": ["t"]})
    with pytest.raises(SchemaError, match=r"verdicts: missing column\(s\) \['seed'"):
        validate("verdicts", table)
    with pytest.raises(SchemaError, match="unknown catalog table 'verdict'"):
        validate("verdict", table)


@pytest.mark.parametrize("run_id", ["../up", "a/b", "", "run id", "x=y"])
def test_unsafe_run_ids_are_refused(tmp_path, run_id):
    with pytest.raises(SchemaError, match="partition name"):
        CatalogWriter(tmp_path).write("explanations", [explanation()], run_id)


def test_run_rows_start_and_finish(tmp_path):
    writer = CatalogWriter(tmp_path)
    start = writer.write_run("r1", name="toy", classifier="clf", num_targets=4)
    assert start["status"] == "running" and start["dxray_version"]
    writer.write_run("r2", name="other")
    writer.finish_run("r1", "finished", wall_seconds=12.5)
    writer.finish_run("r2", "failed", error="ray cluster lost")
    con = connect(tmp_path)
    rows = con.sql(
        "SELECT run_id, status, name, num_targets, wall_seconds, error FROM runs ORDER BY 1"
    ).fetchall()
    assert rows[0] == ("r1", "finished", "toy", 4, 12.5, None)
    assert rows[1][:3] == ("r2", "failed", "other") and rows[1][5] == "ray cluster lost"
    assert con.sql("SELECT count(*) FROM runs_log").fetchall() == [(4,)]
    with pytest.raises(ValueError, match="no start row"):
        writer.finish_run("r3")
    with pytest.raises(ValueError, match="'finished', 'partial' or 'failed'"):
        writer.finish_run("r1", "done")


def test_a_resumed_run_keeps_its_start_and_adds_up_its_time(tmp_path):
    writer = CatalogWriter(tmp_path)
    first = writer.write_run("r1", name="toy")
    writer.finish_run("r1", "failed", wall_seconds=30.0, error="killed")
    again = writer.write_run("r1", name="toy")
    assert again["created_at"] == first["created_at"] and again["wall_seconds"] == 30.0
    writer.finish_run("r1", "finished", wall_seconds=12.5)
    row = connect(tmp_path).sql("SELECT status, wall_seconds, created_at FROM runs").fetchall()
    assert row == [("finished", 42.5, first["created_at"])]
    # Without a measured time, a session counts from its own start, not from the run's.
    writer.write_run("r2")
    writer.finish_run("r2", "finished")
    assert writer.latest_run("r2")["wall_seconds"] < 5


def test_json_safe_makes_plain_json_and_rounds_when_asked():
    import json
    import math

    from dxray.catalog.writer import json_safe

    value = {1: [math.nan, 1.23456789, (AT, "x")], "ok": {"inf": math.inf, "n": None, "b": True}}
    plain = json_safe(value)
    assert plain == {"1": [None, 1.23456789, [AT.isoformat(), "x"]],
                     "ok": {"inf": None, "n": None, "b": True}}  # fmt: skip
    assert json_safe(value, digits=3)["1"][1] == 1.235
    json.dumps(plain, allow_nan=False)  # no NaN, no timestamp object left
