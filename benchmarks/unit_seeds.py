"""How many object images per scene does the unit-shortcut test need? Re-scores a sweep's
catalogs (no new renders) with the object side cut to the first S seeds and the first K
scenes, against each world's truth.

    python benchmarks/unit_seeds.py --sweep sweeps     # the worlds of `dxray sweep`

Prints, per (S, K): units scored, balanced accuracy, precision, recall, and how many verdicts
equal the stored ones (S = 16 with every scene reproduces the audit's own scoring).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dxray.eval.sweep_table import unit_scores  # noqa: E402
from dxray.shortcuts.unit_score import UnitRule, UnitTarget, unit_rows  # noqa: E402
from dxray.shortcuts.vocabulary import Attribute  # noqa: E402


def _table(catalog: Path, table: str, run_id: str, columns: str = "*"):
    files = f"{catalog}/{table}/run_id={run_id}/*.parquet"
    return duckdb.sql(f"SELECT {columns} FROM read_parquet('{files}', union_by_name=true)").df()


def world_inputs(folder: Path):
    """(renders, unit targets, attributes, findings, truth and stored verdict by (class, unit),
    class names by index) of one sweep world."""
    result = json.loads((folder / "result.json").read_text())
    run, catalog = result["run_id"], folder / "catalog"
    images = _table(catalog, "shortcut_images", run,
                    "render_id, variant, scene, overlay, class_index, status, unit_means, seed, "
                    "created_at")  # fmt: skip
    # the latest row of each render, a usable one before an error, in render id order (as the
    # audit scores them: the bootstrap draws by index)
    images["usable"] = images.status != "error"
    images = images.sort_values(["render_id", "usable", "created_at"], kind="stable")
    images = images.drop_duplicates("render_id", keep="last").drop(columns="usable")
    renders = []
    for r in images.to_dict("records"):
        means = r["unit_means"]
        r["unit_means"] = None if means is None or not len(means) else dict(means)
        r["overlay"] = r["overlay"] if isinstance(r["overlay"], str) else None
        ci = r["class_index"]
        r["class_index"] = None if ci is None or ci != ci else int(ci)
        renders.append(r)
    units = _table(catalog, "unit_shortcuts", run)
    units = units[units.score_id == units.score_id.max()]
    scores = _table(catalog, "shortcuts", run)
    scores = scores[scores.score_id == scores.score_id.max()]
    findings: dict[int, list[str]] = {}
    for f in scores.to_dict("records"):
        if f["finding"] and f["method"] == "object_free":
            findings.setdefault(int(f["class_index"]), []).append(f["attribute"])
    free = [r for r in renders if r["variant"] == "object_free"]
    scenes = sorted({r["scene"] for r in free if r["overlay"] is None})
    overlays = sorted({r["overlay"] for r in free if r["overlay"]})
    attributes = [Attribute(s, "scene", s) for s in scenes]
    attributes += [Attribute(o, "overlay", o) for o in overlays]
    targets = [UnitTarget(int(u.class_index), u.layer, int(u.channel)) for u in units.itertuples()]
    truth = {
        (u["class_name"], u["unit"]): (u["truth"], u.get("unit_test")) for u in result["units"]
    }
    names = dict(zip(units.class_index, units.class_name, strict=True))
    return renders, targets, attributes, findings, truth, names, scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="sweeps", help="The sweep's output folder.")
    parser.add_argument("--seeds", default="16,8,4,2")
    parser.add_argument("--scenes", default="0", help="Scene counts to try (0: every scene).")
    args = parser.parse_args()
    folders = sorted(p.parent for p in Path(args.sweep).glob("seed-*/world-*/result.json"))
    folders = [f for f in folders if (f / "catalog").is_dir()]
    if not folders:
        raise SystemExit(f"no sweep world with a catalog under {args.sweep}: run `dxray sweep`")
    pairs: dict[tuple[int, int], list[tuple[str, str, str]]] = {}
    for folder in folders:
        renders, targets, attributes, findings, truth, names, scenes = world_inputs(folder)
        for s in map(int, args.seeds.split(",")):
            for k in map(int, args.scenes.split(",")):
                allowed = set(scenes[:k] if k else scenes)
                kept = [r for r in renders if r["variant"] == "object_free"
                        or (r["seed"] < s and r["scene"] in allowed)]  # fmt: skip
                for row in unit_rows(kept, targets, attributes, findings, UnitRule()):
                    key = (names[row["class_index"]], row["unit"])
                    if key in truth:
                        t, stored = truth[key]
                        pairs.setdefault((s, k), []).append((t, row["verdict"], stored))
    print(f"{len(folders)} worlds under {args.sweep}")
    print("seeds  scenes  units  balanced  precision  recall  same as stored")
    for (s, k), rows in pairs.items():
        m = unit_scores([r[0] for r in rows], [r[1] for r in rows])
        same = sum(r[1] == r[2] for r in rows)
        print(f"{s:5d}  {k or 'all':>6}  {len(rows):5d}  {m['balanced_accuracy']:8.1%}  "
              f"{m['precision']:9.1%}  {m['recall']:6.1%}  {same}")  # fmt: skip


if __name__ == "__main__":
    main()
