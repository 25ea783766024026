"""A rerun resumes only rows this dxray code computed (dxray.run.provenance)."""

import json
from pathlib import Path

import pytest

from dxray.catalog.views import connect
from dxray.catalog.writer import CatalogWriter
from dxray.eval.reads import query
from dxray.run import provenance
from dxray.run.pipeline import run_audit
from dxray.run.provenance import (
    StaleRun,
    code_revision,
    folder_fingerprint,
    recorded_revision,
    source_digest,
    stale_reason,
)
from dxray.run.session import ray_session
from dxray.spec.model import AuditSpec

EXPECTED = (5 + 1) * 2  # the tiny spec: 5 classes and 1 unit, 2 seeds


def _package(root: Path) -> Path:
    for name, text in {
        "explain/optimize.py": "STEPS = 4\n",
        "run/host.py": "HOSTS = 1\n",
        "cli/main.py": "HELP = 'x'\n",
        "report/page.py": "CSS = ''\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_digest_follows_the_code_that_makes_rows_only(tmp_path):
    root = _package(tmp_path / "dxray")
    first = source_digest(root)
    assert len(first) == 12 and int(first, 16) >= 0 and source_digest(root) == first
    (root / "cli/main.py").write_text("HELP = 'clearer'\n")  # reads or prints rows
    (root / "report/page.py").write_text("CSS = 'body {}'\n")
    assert source_digest(root) == first
    (root / "explain/optimize.py").write_text("STEPS = 8\n")  # makes rows
    assert source_digest(root) != first
    (root / "explain/optimize.py").write_text("STEPS = 4\n")
    (root / "run/new.py").write_text("\n")  # a new module where rows are made
    assert source_digest(root) != first
    assert len(code_revision()) == 12


def test_a_run_is_stale_unless_it_recorded_this_revision_and_these_model_files():
    made = {"dxray_code": "abc", "generator_files": "g1"}
    mine = {"versions_json": json.dumps({"torch": "2.13.0", **made})}
    assert recorded_revision(mine) == "abc" and stale_reason(mine, made) is None
    assert stale_reason(None, made) is None  # nothing to resume
    other = {**made, "dxray_code": "def"}
    assert stale_reason(mine, other) == "computed by dxray code abc (this is def)"
    retrained = {**made, "generator_files": "g2", "segmenter_files": "s1"}
    assert stale_reason(mine, retrained) == (
        "computed with another generator folder's files (g1, now g2) and segmenter folder's "
        "files (None, now s1)"
    )
    for old in ({"versions_json": json.dumps({"torch": "2.13.0"})}, {"versions_json": "{"}, {}):
        assert recorded_revision(old) is None
        assert "recorded no code revision" in stale_reason(old, made)


def test_a_model_folder_is_fingerprinted_by_its_files_not_where_it_lies(tmp_path):
    import shutil

    folder = tmp_path / "generator"
    (folder / "unet").mkdir(parents=True)
    weights = bytes(range(256)) * 1024  # 256 KiB: head and tail read, the middle not
    (folder / "unet" / "model.safetensors").write_bytes(weights)
    (folder / "model_index.json").write_text("{}")
    first = folder_fingerprint(folder)
    assert len(first) == 12 and folder_fingerprint(str(folder)) == first
    shutil.copytree(folder, tmp_path / "moved")
    assert folder_fingerprint(tmp_path / "moved") == first
    retrained = bytearray(weights)
    retrained[-1] ^= 1  # training rewrites every tensor: the last bytes change too
    (folder / "unet" / "model.safetensors").write_bytes(bytes(retrained))
    assert folder_fingerprint(folder) != first
    (tmp_path / "moved" / "extra.json").write_text("{}")
    assert folder_fingerprint(tmp_path / "moved") != first
    assert folder_fingerprint("runwayml/stable-diffusion-v1-5") is None  # a hub id
    assert folder_fingerprint(tmp_path / "moved" / "extra.json") is None


def test_moving_a_run_aside_keeps_its_files_out_of_every_reader(tmp_path):
    writer = CatalogWriter(tmp_path)
    for run in ("r1", "r2"):
        writer.write_run(run, name="toy", num_targets=1)
        writer.write("images", [{"target_id": "t", "seed": 0, "png": b"x"}], run)
    assert writer.move_run_aside("missing", "x") is None
    aside = writer.move_run_aside("r1", "20261205T170000Z")
    assert aside == tmp_path / "_superseded" / "r1-20261205T170000Z"
    assert {p.name for p in aside.iterdir()} == {"runs", "images"}
    assert writer.latest_run("r1") is None and writer.latest_run("r2") is not None
    con = connect(tmp_path, read_only=True)
    try:
        assert con.sql("SELECT DISTINCT run_id FROM runs").fetchall() == [("r2",)]
    finally:
        con.close()
    writer.write_run("r1", name="toy", num_targets=1)
    again = writer.move_run_aside("r1", "20261205T170000Z")  # the same label: both kept
    assert again.name == "r1-20261205T170000Z.2" and aside.is_dir()
    with pytest.raises(ValueError, match="a label of letters"):
        writer.move_run_aside("r2", "../up")


class _Plan:
    def __init__(self):
        self.lines = []

    def plan(self, line):
        self.lines.append(line)

    def stage(self, name, done, total):
        pass


def _rows(catalog) -> int:
    return query(catalog, "SELECT count(*) AS n FROM explanations", [])[0]["n"]


def test_a_rerun_resumes_only_what_this_code_computed(tiny_spec, tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from dxray.cli.main import app

    spec = AuditSpec.from_dict(tiny_spec)
    catalog = Path(spec.output.catalog)
    with ray_session(spec):
        first = run_audit(spec, limit=4)
        run = CatalogWriter(catalog).latest_run(first.run_id)
        assert recorded_revision(run) == code_revision()
        assert run_audit(spec, limit=2).skipped == 4  # the same code resumes

        # Other code: the run is refused before anything is computed or recorded
        monkeypatch.setattr(provenance, "code_revision", lambda: "0123456789ab")
        runs_before = len(list((catalog / "runs").rglob("*.parquet")))
        with pytest.raises(StaleRun, match="--fresh to compute it again"):
            run_audit(spec)
        assert _rows(catalog) == 6
        assert len(list((catalog / "runs").rglob("*.parquet"))) == runs_before
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(tiny_spec))
        cli = CliRunner().invoke(app, ["audit", str(path), "--fresh", "--resume-stale"])
        assert cli.exit_code == 2 and "give one" in cli.output
        cli = CliRunner().invoke(app, ["audit", str(path)])
        assert cli.exit_code == 2 and f"run {first.run_id} in {catalog} was computed by" in (
            cli.output
        )

        # --resume-stale keeps the rows; the demo's policy computes the run again
        kept = run_audit(spec, limit=1, resume="any")
        assert kept.skipped == 6 and _rows(catalog) == 7
        monkeypatch.setattr(provenance, "code_revision", lambda: "ba9876543210")
        said = _Plan()
        again = run_audit(spec, limit=3, resume="fresh-if-stale", stages=said)
        assert again.skipped == 0 and _rows(catalog) == 3
        assert "earlier rows, computed by dxray code 0123456789ab (this is ba98" in said.lines[0]
        (aside,) = (catalog / "_superseded").iterdir()
        assert str(aside) in said.lines[0] and aside.name.startswith(first.run_id)
        assert len(list((aside / "explanations").rglob("*.parquet"))) >= 1
        # this code's run now: resumed, and --fresh computes it all again
        assert run_audit(spec, resume="fresh-if-stale").skipped == 3
        assert _rows(catalog) == EXPECTED
        fresh = run_audit(spec, limit=2, resume="fresh")
        assert fresh.skipped == 0 and _rows(catalog) == 2
        assert len(list((catalog / "_superseded").iterdir())) == 2
        # the generator trained again in its folder: refused like other code
        recorded = CatalogWriter(catalog).latest_run(first.run_id)["versions_json"]
        assert json.loads(recorded)["generator_files"] == folder_fingerprint(spec.generator.source)
        real = provenance.folder_fingerprint
        monkeypatch.setattr(
            provenance,
            "folder_fingerprint",
            lambda source: "feedfacecafe" if source == spec.generator.source else real(source),
        )
        with pytest.raises(StaleRun, match="another generator folder's files"):
            run_audit(spec)
    with pytest.raises(ValueError, match="resume is one of"):
        run_audit(spec, resume="sometimes")
