"""What starting one model host costs at real model sizes: imports, then each model's load.

    python benchmarks/host_start.py --models /tmp/dxray-real-size      # builds once, then reuses

The models are benchmarks/gpu_audit.py's: SD1.5 + LCM with a TAESD-shaped tiny decoder,
CLIPSeg's sizes (ViT-B/16 at 352 px, rd64) and a ResNet-50, random weights in their real formats
(float32 on disk). Each measurement runs in a fresh process, as a Ray actor starts: the process
imports torch, diffusers and transformers, then loads the three models from local disk onto the
CPU (`--device cuda` on a GPU machine). The disk cache is warm after the first run; a node's first
load also downloads the weights. docs/BENCHMARKS.md multiplies this by the loads per audit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEASURE = """
import json, sys, time
started = time.perf_counter()
import torch, diffusers, transformers  # noqa: F401
from dxray.models.classifier_io import load_classifier
from dxray.models.generator import load_generator
from dxray.models.segmenter import load_segmenter
torch.set_num_threads({threads})
seconds = {{"imports": time.perf_counter() - started}}
for role, load in (("generator", load_generator), ("classifier", load_classifier),
                   ("segmenter", load_segmenter)):
    at = time.perf_counter()
    load(sys.argv[1] + "/" + role, device="{device}")
    seconds[role] = time.perf_counter() - at
print(json.dumps(seconds))
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True, help="built here once, reused")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="fresh processes (warm disk cache)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_audit import build_models

    started = time.perf_counter()
    build_models("sd15", args.models)
    print(f"models in {args.models} ({time.perf_counter() - started:.0f} s to build or find)")
    sizes = {
        role: sum(f.stat().st_size for f in (args.models / role).rglob("*") if f.is_file())
        for role in ("generator", "classifier", "segmenter")
    }
    code = MEASURE.format(threads=args.threads, device=args.device)
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", code, str(args.models)], check=True,
                             capture_output=True, text=True, cwd=ROOT)  # fmt: skip
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    last = runs[-1]
    for part, seconds in last.items():
        size = f"{sizes[part] / 2**30:5.2f} GiB" if part in sizes else " " * 9
        print(f"  {part:<11} {size}  {seconds:6.1f} s   (runs: "
              + ", ".join(f"{r[part]:.1f}" for r in runs) + ")")  # fmt: skip
    print(f"  one host start: {sum(last.values()):.1f} s")
    return {"sizes": sizes, "runs": runs}


if __name__ == "__main__":
    main()
