"""What the class-shortcut stage costs per image, and what the erased/checked object set costs.

On the committed toy zoo (CPU), in one run: seconds per image to render (full VAE), then to
check or erase objects with every class's query ("all") vs the classifier's k likeliest
classes ("top-k"), and the classifier pass. The segmenter encodes each image once; each
object query is one decoder pass, so "all" grows with the number of classes and "top-k"
does not: the printed ratio is that difference at this zoo's 5 classes.

    python benchmarks/shortcut_cost.py --images 64 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dxray.explain.sampler import SamplerConfig  # noqa: E402
from dxray.models.classifier import load_classifier  # noqa: E402
from dxray.models.generator import load_generator  # noqa: E402
from dxray.models.segmenter import load_segmenter  # noqa: E402
from dxray.shortcuts.discover import render_pool  # noqa: E402
from dxray.shortcuts.erase import ObjectEraser  # noqa: E402


def _timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="dxray/toyworld/zoo/default")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top-k", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo = Path(args.zoo)
    generator = load_generator(zoo / "generator")
    classifier = load_classifier(zoo / "classifier")
    segmenter = load_segmenter(zoo / "segmenter")
    queries = [f"a {name}" for name in classifier.class_names]
    n = args.images
    config = SamplerConfig(steps=4)

    render, (_, images) = _timed(
        lambda: render_pool(generator, range(n), template="a {}", config=config), repeat=1
    )
    with torch.no_grad():
        logits = classifier.outputs(images).logits
    k = min(args.top_k, len(queries))
    likeliest = sorted(set(logits.topk(k, dim=1).indices.flatten().tolist()))
    chosen = [queries[c] for c in likeliest]
    with torch.no_grad():
        erase_all, _ = _timed(lambda: ObjectEraser(segmenter, queries)(images))
        erase_top, _ = _timed(lambda: ObjectEraser(segmenter, chosen)(images))
        classify, _ = _timed(lambda: classifier.outputs(images).logits)
    rows = [
        ("render (4 steps, full VAE)", render),
        (f"erase, all {len(queries)} classes' objects", erase_all),
        (f"erase, top-{k} classes' objects ({len(chosen)} queries in the batch)", erase_top),
        ("classify", classify),
    ]
    print(f"toy zoo {zoo}, CPU, {args.threads} thread(s), {n} images")
    for label, seconds in rows:
        print(f"  {label:<58} {1000 * seconds / n:8.2f} ms/image")
    print(f"erasing with every class vs top-{k}: {erase_all / erase_top:.2f}x the time")


if __name__ == "__main__":
    main()
