"""The paper's experiments end to end on synthetic files in the real formats, no network:
a robustness-library checkpoint (real key layout, tiny widths) converted and audited with
Salient ImageNet's published answers as units and labels, then `dxray score`; FairFace's
released ResNet-34 shape converted and audited on its age head."""

import json

import pytest
from typer.testing import CliRunner

from dxray.catalog.views import connect
from dxray.eval.labels import score_run
from dxray.labels import MTURK_COLUMNS
from dxray.run.pipeline import run_audit
from dxray.spec.model import AuditSpec

M, S, B = "main_object", "separate_object", "background"
# (class, feature, rank) -> the five workers' answers; class 4 is not audited
PAIRS = {
    (0, 3, 1): [M, M, M, S, B],  # core (2 of 5 spurious)
    (0, 5, 2): [B, B, S, M, M],  # spurious (3 of 5)
    (1, 3, 1): [B, B, B, B, B],  # spurious, unanimous
    (4, 2, 1): [M, M, M, M, M],
}


@pytest.fixture(scope="module")
def scored(tiny_zoo, tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    lines = [",".join(MTURK_COLUMNS)]
    worker = 0
    for (c, f, rank), answers in PAIRS.items():
        for answer in answers:
            worker += 1
            lines.append(f'A{worker},n0000000{c},{c},{f},{rank},{answer},3,"a reason, quoted"')
    (root / "discover_spurious_features.csv").write_text("\n".join(lines) + "\n")
    # The robust ResNet-50 as released (network, attacker copy, normaliser), tiny widths
    from dxray.models.convert import convert_robustness, imagenet_class_names
    from tests.models.test_convert import robustness_checkpoint

    robustness_checkpoint(root / "imagenet_l2_3_0.pt", width=2, classes=5)
    metadata = ["class_index,synset,wordnet_id,gloss,wikilinks,supercategory,val_sample_paths"]
    metadata += [f'{c},"circle {c}, round",n0000000{c},g,w,s,p' for c in range(5)]
    (root / "class_metadata.csv").write_text("\n".join(metadata) + "\n")
    names = imagenet_class_names(root / "class_metadata.csv")
    convert_robustness(root / "imagenet_l2_3_0.pt", root / "robust", class_names=names)
    (root / "audit.yaml").write_text(json.dumps({
        "name": "labels",
        "generator": str(tiny_zoo / "generator"),
        "classifier": str(root / "robust"),
        "segmenter": str(tiny_zoo / "segmenter"),
        "targets": {"classes": [0, 1], "seeds": [0],
                    "units": {"layer": "avgpool", "csv": "discover_spurious_features.csv"}},
        "engine": {"iterations": 2, "template": "a {}", "sampler": {"steps": 1},
                   "batch_size": 8, "stop_prob": None},
        "output": {"catalog": str(root / "catalog")},
        "ray": {"workers": 1, "num_cpus_per_worker": 1},
    }))  # fmt: skip
    from dxray.spec.parse import load_spec

    summary = run_audit(load_spec(root / "audit.yaml"))
    return summary, score_run(summary.catalog, summary.run_id)


def test_the_votes_become_the_runs_labels(scored):
    summary, _ = scored
    con = connect(summary.catalog, read_only=True)
    rows = con.sql(
        "SELECT class_index, channel, rank, label, answers, votes_background, verdict "
        "FROM label_agreement ORDER BY class_index, channel"
    ).fetchall()
    # only the audited classes' pairs; each unit audited and judged
    assert [r[:6] for r in rows] == [
        (0, 3, 1, "core", 5, 1),
        (0, 5, 2, "spurious", 5, 2),
        (1, 3, 1, "spurious", 5, 5),
    ]
    assert all(r[6] in ("core", "spurious", "uncertain") for r in rows)


def test_the_run_is_scored_against_them(scored):
    summary, result = scored
    con = connect(summary.catalog, read_only=True)
    agree = con.sql("SELECT agree FROM label_agreement").fetchall()
    right = sum(bool(a) for (a,) in agree)
    assert result.get("neurons", "default", "n") == 3
    assert result.get("neurons", "default", "accuracy") == pytest.approx(right / 3)
    assert result.get("neurons", "default", "accuracy", judge="always-core") == pytest.approx(1 / 3)
    assert result.get("labels-rank", "rank=1", "n") == 2
    assert result.get("labels-rank", "rank=2", "n") == 1
    assert result.get("labels-rank", "unanimous", "n") == 1
    assert result.world == "labels:salient-imagenet"
    assert [n["truth"] for n in result.neurons] == ["core", "spurious", "spurious"]
    assert [n["unit"] for n in result.neurons] == ["avgpool:3", "avgpool:5", "avgpool:3"]
    assert result.neurons[0]["class_name"] == "circle 0, round"  # named, never class_0


def test_the_cli_scores_writes_and_reports(scored, tmp_path):
    from dxray.cli.main import app

    summary, _ = scored
    run = CliRunner().invoke(
        app, ["score", str(summary.catalog), "--json", str(tmp_path / "s.json")]
    )
    assert run.exit_code == 0, run.output
    assert "HEADLINE: world labels:salient-imagenet; neuron agreement" in run.output
    assert "by the feature's rank" in run.output
    page = (summary.catalog / "report.html").read_text()
    assert "Evaluation against human labels (salient-imagenet)" in page
    con = connect(summary.catalog, read_only=True)
    assert con.sql("SELECT count(*) FROM eval_neurons").fetchall()[0][0] == 3


def test_a_run_without_labels_says_what_to_do(tmp_path):
    from dxray.catalog.sample import write_sample
    from dxray.catalog.writer import CatalogWriter

    write_sample(tmp_path)
    CatalogWriter(tmp_path).write_run("bare", name="no labels")
    with pytest.raises(ValueError, match="has no human labels"):
        score_run(tmp_path, "bare")
    with pytest.raises(ValueError, match="has no run 'no-such-run'"):  # not "no labels"
        score_run(tmp_path, "no-such-run")


def test_fairface_as_released_is_audited_on_its_age_head(tiny_zoo, tmp_path):
    import torch

    from dxray.models.convert import convert_fairface
    from dxray.models.resnet import resnet34

    torch.manual_seed(0)
    torch.save(resnet34(num_classes=18).state_dict(), tmp_path / "res34_fair_align.pt")
    convert_fairface(tmp_path / "res34_fair_align.pt", tmp_path / "fairface_age", head="age")
    spec = AuditSpec.from_dict({
        "name": "fairface",
        "generator": str(tiny_zoo / "generator"),
        "classifier": str(tmp_path / "fairface_age"),
        "segmenter": str(tiny_zoo / "segmenter"),
        "targets": {"classes": ["0-2", "70+"], "seeds": [0]},
        "engine": {"iterations": 1, "template": "a {}", "sampler": {"steps": 1},
                   "batch_size": 8, "stop_prob": None},
        "judge": {"object_template": "the face of a person aged {}", "probes": ["a beard"]},
        "output": {"catalog": str(tmp_path / "catalog")},
        "ray": {"workers": 1, "num_cpus_per_worker": 1},
    })  # fmt: skip
    summary = run_audit(spec)
    con = connect(summary.catalog, read_only=True)
    rows = con.sql(
        "SELECT class_index, class_name, object_query, status FROM audit ORDER BY class_index"
    ).fetchall()
    assert [r[:3] for r in rows] == [
        (0, "0-2", "the face of a person aged 0-2"),
        (8, "70+", "the face of a person aged 70+"),
    ]
    assert all(r[3] != "error" for r in rows)
