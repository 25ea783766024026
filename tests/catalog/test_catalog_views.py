"""The standard views over the sample catalog, by count and by numbers worked out by hand."""

import pyarrow.parquet as pq
import pytest

from dxray.catalog.sample import write_sample
from dxray.catalog.views import VIEWS, connect
from dxray.catalog.writer import CatalogWriter


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    write_sample(root)
    return connect(root)


def one(con, query):
    return con.sql(query).fetchall()[0]


def test_view_counts(con):
    counts = {v: one(con, f"SELECT count(*) FROM {v}")[0] for v in VIEWS}
    assert counts == {
        "runs": 2,  # latest row of each run
        "runs_log": 4,  # a start row and a finish row per run
        "explanations_log": 29,  # 28 (target, seed) pairs + one retried error
        "verdicts_log": 26,  # no verdict for the error in a and the nan in b
        "images_log": 26,
        "explanations": 28,  # the current rows: one per (run, target, seed)
        "verdicts": 26,
        "images": 26,
        "audit": 28,  # one row per (run, target, seed)
        "probe_scores": 78,  # 26 judged images x 3 probes
        "probe_rates": 42,  # 14 targets x 3 probes
        "target_summary": 14,
        "class_summary": 10,
        "unit_summary": 4,
        "labels": 2,  # one labelled unit a run
        "label_agreement": 2,
        "shortcut_images": 12,  # 2 runs x 3 prompts x 2 seeds
        "shortcuts": 34,  # 2 runs x 5 classes x 3 attributes + 4 with-object rows
        "shortcut_pool": 4,  # 2 pool images a run
        "shortcut_candidates": 4,  # 3 in a, 1 in b
        "class_shortcuts": 30,  # one row per run, class and attribute
        "unit_shortcuts": 4,  # 2 units of class 0 a run
        "eval_metrics": 0,  # the sample has not been evaluated
        "eval_neurons": 0,
        "eval_classes": 0,
    }


def test_eval_views_show_the_latest_evaluation_of_each_run(tmp_path):
    writer = CatalogWriter(tmp_path)
    for eval_id, value in (("20261126T100000.000000Z", 0.5), ("20261126T110000.000000Z", 0.9)):
        row = {"eval_id": eval_id, "section": "neurons", "setting": "default"}
        writer.write("eval_metrics", [{**row, "metric": "accuracy", "value": value}], "ckpt-a")
    other = {"eval_id": "20261126T090000.000000Z", "section": "success", "setting": "default"}
    writer.write("eval_metrics", [{**other, "metric": "success_rate", "value": 1.0}], "ckpt-b")
    rows = connect(tmp_path).sql("SELECT run_id, value FROM eval_metrics ORDER BY 1").fetchall()
    assert rows == [("ckpt-a", 0.9), ("ckpt-b", 1.0)]


def test_runs_shows_the_latest_row(con):
    assert con.sql("SELECT run_id, status, wall_seconds FROM runs ORDER BY 1").fetchall() == [
        ("ckpt-a", "finished", 120.0),
        ("ckpt-b", "finished", 121.0),
    ]


def test_class_summary_by_hand(con):
    # ckpt-a, circle: presence 0.10 and 0.05 (both <= 0.2: the object is absent from both of
    # its explanations), probability 0.9 and 0.7, water 0.9 and 0.8 (both present), a
    # watermark 0.1 and 0.2, grass 0.0 and 0.1; the shortcut test found water (2.4 nats).
    row = con.sql(
        "SELECT seeds, failed, judged, n_object_shown, n_object_absent, n_unclear, "
        "mean_probability, mean_presence, object_shown_fraction, object_in_explanation, "
        "top_probes, shortcuts, relies_on_shortcut FROM class_summary "
        "WHERE run_id = 'ckpt-a' AND class_name = 'circle'"
    ).fetchall()
    assert len(row) == 1
    seeds, failed, judged, shown, absent, unclear, p, presence, fraction, obj, top, sc, relies = (
        row[0]
    )
    assert (seeds, failed, judged, shown, absent, unclear) == (2, 0, 2, 0, 2, 0)
    assert p == pytest.approx(0.8) and presence == pytest.approx(0.075)
    assert fraction == 0.0 and obj == "absent"
    assert top == [{"probe": "water", "rate": 1.0}]
    assert (sc, relies) == (["water"], True)
    # no word of the units' verdicts on a class row
    columns = {r[0] for r in con.sql("DESCRIBE class_summary").fetchall()}
    assert not columns & {"verdict", "spurious_fraction", "n_spurious", "n_core"}
    # square in a: tested, its grass lift is under 1 nat -> no shortcut (an empty list, false)
    assert one(
        con,
        "SELECT shortcuts, relies_on_shortcut FROM class_summary "
        "WHERE run_id = 'ckpt-a' AND class_name = 'square'",
    ) == ([], False)


def test_class_summary_failed_seed_and_tie(con):
    # triangle in a: seed 0 shows it (p 0.5), seed 1 an error -> judged 1, mean p over seed 0
    triangle = one(
        con,
        "SELECT seeds, failed, judged, object_in_explanation, mean_probability "
        "FROM class_summary WHERE run_id = 'ckpt-a' AND class_index = 3",
    )
    assert triangle == (2, 1, 1, "shown", pytest.approx(0.5))
    # hexagon in a: shown once (0.60), doubtful once (0.30): a tie -> unclear
    hexagon = one(
        con,
        "SELECT object_in_explanation, object_shown_fraction, mean_probability "
        "FROM class_summary WHERE run_id = 'ckpt-a' AND class_index = 4",
    )
    assert hexagon == ("unclear", 0.5, pytest.approx(0.35))


def test_audit_picks_the_successful_attempt(con):
    assert one(
        con,
        "SELECT status, attempts, ok, verdict, has_image FROM audit "
        "WHERE run_id = 'ckpt-a' AND target_id = 'class:1' AND seed = 0",
    ) == ("converged", 2, True, "core", True)
    assert one(
        con,
        "SELECT status, error, ok, verdict, has_image FROM audit "
        "WHERE run_id = 'ckpt-a' AND target_id = 'class:3' AND seed = 1",
    ) == ("error", "CUDA out of memory", False, None, False)


def test_probe_rates_and_units(con):
    rows = con.sql(
        "SELECT probe, images, rate, mean_presence FROM probe_rates "
        "WHERE run_id = 'ckpt-a' AND target_id = 'class:0' ORDER BY probe"
    ).fetchall()
    assert [r[:3] for r in rows] == [("a watermark", 2, 0.0), ("grass", 2, 0.0), ("water", 2, 1.0)]
    assert rows[2][3] == pytest.approx(0.85)
    unit = one(
        con,
        "SELECT layer, channel, class_name, verdict, failed FROM unit_summary "
        "WHERE run_id = 'ckpt-b' AND target_id = 'unit:features.4:3:-'",
    )
    assert unit == ("features.4", 3, None, "uncertain", 1)  # one seed diverged (nan)
    assert one(
        con,
        "SELECT unit, verdict, spurious_fraction FROM unit_summary "
        "WHERE run_id = 'ckpt-a' AND target_id = 'unit:features.4:17:0'",
    ) == ("features.4:17", "spurious", 1.0)


@pytest.mark.parametrize("make_folders", [False, True])
def test_empty_catalog_connects_with_typed_views(tmp_path, make_folders):
    if make_folders:  # table folders and a partition exist, but hold no committed file
        for table in ("runs", "explanations", "verdicts", "images"):
            (tmp_path / table / "run_id=r1").mkdir(parents=True)
        (tmp_path / "images" / "run_id=r1" / ".part-x.parquet.tmp").write_bytes(b"partial")
    con = connect(tmp_path / "catalog" if not make_folders else tmp_path)
    for view in VIEWS:
        assert con.sql(f"SELECT count(*) FROM {view}").fetchall() == [(0,)], view
    columns = {r[0]: r[1] for r in con.sql("DESCRIBE class_summary").fetchall()}
    assert columns["object_shown_fraction"] == "DOUBLE" and columns["seeds"] == "BIGINT"
    assert columns["shortcuts"] == "VARCHAR[]"
    assert {r[0]: r[1] for r in con.sql("DESCRIBE verdicts").fetchall()}["probe_scores"] == (
        "MAP(VARCHAR, DOUBLE)"
    )


def test_old_files_without_a_column_read_as_null(tmp_path):
    CatalogWriter(tmp_path).write(
        "explanations",
        [
            {
                "target_id": "class:0",
                "kind": "class",
                "objective": "ClassCE(0)",
                "seed": 0,
                "status": "converged",
                "worker": "w1",
            }
        ],
        "r1",
    )
    (path,) = (tmp_path / "explanations" / "run_id=r1").glob("part-*.parquet")
    table = pq.read_table(path)
    older = table.drop_columns(["worker"])  # as written before `worker` existed
    pq.write_table(older, path.with_name("part-0000.parquet"))
    rows = connect(tmp_path).sql("SELECT worker FROM explanations_log ORDER BY worker").fetchall()
    assert rows == [("w1",), (None,)]


def test_class_shortcuts_is_the_bias_report_in_one_query(con):
    found = con.sql(
        "SELECT run_id, class_name, attribute, lift, with_object_lift, object_in_explanation "
        "FROM class_shortcuts WHERE finding ORDER BY run_id, class_name"
    ).fetchall()
    assert found == [
        ("ckpt-a", "circle", "water", 2.4, 0.3, "absent"),
        ("ckpt-a", "star", "a watermark", 2.0, 1.5, "absent"),
        ("ckpt-b", "square", "grass", 1.3, 0.2, "absent"),
        ("ckpt-b", "star", "a watermark", 2.1, 1.4, "absent"),
    ]
    # square-grass in a: a lift, but under 1 nat: not a finding, and no with-object row
    row = one(
        con,
        "SELECT finding, with_object_lift FROM class_shortcuts "
        "WHERE run_id = 'ckpt-a' AND class_name = 'square' AND attribute = 'grass'",
    )
    assert row == (False, None)
    # Object-free explanations: circle-water is a confirmed candidate, hexagon-grass a false lead
    leads = con.sql(
        "SELECT class_name, attribute, candidate, confirmed FROM class_shortcuts "
        "WHERE run_id = 'ckpt-a' AND candidate ORDER BY class_name"
    ).fetchall()
    assert leads == [("circle", "water", True, True), ("hexagon", "grass", True, False)]


def test_label_agreement_says_where_dxray_and_the_crowd_disagree(con):
    rows = con.sql(
        "SELECT run_id, class_name, channel, label, verdict, agree, votes_background "
        "FROM label_agreement ORDER BY run_id"
    ).fetchall()
    assert rows == [
        ("ckpt-a", "circle", 17, "spurious", "spurious", True, 2),
        ("ckpt-b", "circle", 17, "spurious", "core", False, 2),
    ]


def test_an_older_shortcuts_file_without_score_ids_still_reads(tmp_path):
    """Files written before a column existed read it as null; the latest-scoring filter must
    keep them (it used to drop every row, and the report its shortcut section, silently)."""
    from dxray.catalog.sample import write_sample
    from dxray.catalog.writer import part_files

    write_sample(tmp_path)
    for table in ("shortcuts", "shortcut_candidates"):
        for path in part_files(tmp_path, table, "ckpt-a"):
            pq.write_table(pq.read_table(path).drop_columns(["score_id"]), path)
    con = connect(tmp_path)
    found = con.sql(
        "SELECT class_name, attribute FROM class_shortcuts WHERE run_id = 'ckpt-a' AND finding "
        "ORDER BY ALL"
    ).fetchall()
    assert found == [("circle", "water"), ("star", "a watermark")]
    assert one(con, "SELECT count(*) FROM shortcut_candidates WHERE run_id = 'ckpt-a'") == (3,)
