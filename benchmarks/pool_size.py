"""What a smaller pool changes in the object-free explanations' calls, on the committed worlds.

    python benchmarks/pool_size.py --sizes 128 256 512 1024 --threads 1

The pool of object-free explanations (`shortcuts.pool`: random soft prompts rendered with their
objects erased, docs/SHORTCUTS.md) is rendered once, as the evaluation's audit renders it
(pipelines/toy.yaml with the world's vocabulary); a pool of N is the pool's first N seeds, which
is what `pool: N` renders. For each world and N it prints the candidates (class <- attribute)
and how the evaluation would count them against the zoo's truth: relied-on ties singled out,
false leads. Each world's classifier scores the same renders.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dxray.eval.classes import attach_shortcuts, truth_class_rows  # noqa: E402
from dxray.eval.specs import eval_spec  # noqa: E402
from dxray.run.host import ModelHost  # noqa: E402
from dxray.run.shortcut_plans import pool_plan  # noqa: E402
from dxray.shortcuts.discover import candidates  # noqa: E402
from dxray.shortcuts.score import centred  # noqa: E402
from dxray.shortcuts.vocabulary import parse_vocabulary  # noqa: E402
from dxray.spec.parse import load_spec, with_overrides  # noqa: E402
from dxray.toyworld.truth_io import read_truth  # noqa: E402
from dxray.toyworld.zoo import zoo_part  # noqa: E402


def pool_rows(spec, size: int, batch: int) -> tuple[list[dict], list[str]]:
    """The first `size` pool members of `spec`, as the audit's pool stage computes them, and
    the classifier's class names."""
    host = ModelHost(spec.to_dict(), threads=torch.get_num_threads())
    jobs = pool_plan(with_overrides(spec, **{"shortcuts.pool": size}))
    rows = [r for i in range(0, size, batch) for r in host.serve("pool", jobs[i : i + batch])]
    return rows, list(host.classifier.class_names)


def calls(rows: list[dict], spec, n: int) -> list[dict]:
    """The candidate rows of the pool's first `n` members (`dxray.run.shortcuts._candidates`)."""
    names = [a.name for a in parse_vocabulary(spec.shortcuts.entries(spec.judge))[0]]
    rows = [r for r in rows[:n] if r["status"] != "error"]
    z = centred(torch.tensor([r["logits"] for r in rows], dtype=torch.float64))
    presence = torch.tensor(
        [[json.loads(r["probe_scores"]).get(a, 0.0) for a in names] for r in rows],
        dtype=torch.float64,
    )
    usable = torch.tensor([r["status"] == "kept" for r in rows])
    return candidates(z, presence, names, top=spec.shortcuts.top, usable=usable)


def score(found: list[dict], zoo: Path, class_names: list[str]) -> dict:
    """The evaluation's count (`dxray.eval.shortcut_scoring.score_shortcuts`): relied-on ties
    among the (class, factor) pairs the explanations read out, those singled out, and false
    leads."""
    truth = read_truth(zoo_part(zoo, "truth"))[0].to_pylist()
    rows = truth_class_rows(truth)
    readout = [{**r, "class_name": class_names[r["class_index"]], "lift": None, "low": None,
                "high": None, "finding": False, "explanation_rate": r["rate"]}
               for r in found]  # fmt: skip
    attach_shortcuts(rows, readout, {t["factor"] for t in truth})
    explored = [r for r in rows if r.get("explanation_candidate") is not None]
    lead = [r for r in explored if r["explanation_candidate"]]
    return {
        "relied": sum(r["relied"] for r in explored),
        "found": sum(r["relied"] for r in lead),
        "false": sum(not r["relied"] for r in lead),
        "leads": sorted(f"{r['class_name']} <- {r['factor']}" for r in lead),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--worlds", nargs="+", default=["default", "reshuffled"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = load_spec(ROOT / "pipelines" / "toy.yaml")
    out = {}
    for world in args.worlds:
        zoo = ROOT / "dxray" / "toyworld" / "zoo" / world
        with tempfile.TemporaryDirectory() as tmp:
            spec = eval_spec(base, zoo, seeds=1, catalog=tmp)
        started = time.perf_counter()
        rows, names = pool_rows(spec, max(args.sizes), args.batch)
        seconds = time.perf_counter() - started
        print(f"world {world}: {len(rows)} pool renders in {seconds:.0f} s")
        for n in sorted(args.sizes):
            result = score(calls(rows, spec, n), zoo, names)
            kept = sum(r["status"] == "kept" for r in rows[:n])
            out[f"{world}:{n}"] = {**result, "kept": kept}
            print(
                f"  pool {n:>5} ({kept:>4} usable): singles out {result['found']}/"
                f"{result['relied']}, false leads {result['false']}: {', '.join(result['leads'])}"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
