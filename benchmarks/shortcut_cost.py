"""What the class-shortcut stage costs per image, and what checking every class's object costs.

On the committed toy zoo (CPU), in one run: ms per image to render (full VAE), to erase every
object, to classify, and the segmenter's split: encoding an image (once) and decoding one
object query (once per class checked). "all" objects grows with the number of classes,
`objects: k` (the classifier's k likeliest) does not; the last lines give both at this zoo's
5 classes and, from the measured per-query cost, at 1,000 (the toy segmenter's decoder and
encoder, not CLIPSeg's: the ratio on a real model differs).

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
from dxray.models.classifier_io import load_classifier  # noqa: E402
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
    parser.add_argument("--top-k", type=int, default=5)
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
        # The segmenter encodes each image once; every query is one decoder pass. Time 1 and
        # all queries to split the cost into encoding (per image) and decoding (per query).
        one, _ = _timed(lambda: segmenter.union_mask(images, queries[:1]))
        every, _ = _timed(lambda: segmenter.union_mask(images, queries))
        classify, _ = _timed(lambda: classifier.outputs(images).logits)
        erase, _ = _timed(lambda: ObjectEraser(segmenter, queries)(images))
    per_query = max(every - one, 0.0) / (len(queries) - 1) / n
    encode = max(one / n - per_query, 0.0)
    print(f"toy zoo {zoo}, CPU, {args.threads} thread(s), {n} images")
    rows = [
        ("render (4 steps, full VAE)", render / n),
        (f"erase every object ({len(queries)} classes: masks, grow, fill)", erase / n),
        ("classify", classify / n),
        ("segmenter: encode an image", encode),
        ("segmenter: decode one object query", per_query),
    ]
    for label, seconds in rows:
        print(f"  {label:<58} {1000 * seconds:8.3f} ms/image")
    k = args.top_k
    for classes in (len(queries), 1000):
        every_class = encode + classes * per_query
        likeliest = encode + min(k, classes) * per_query
        print(
            f"checking objects at {classes} classes: all {1000 * every_class:.2f} ms/image, "
            f"top-{k} {1000 * likeliest:.2f} ms/image: {every_class / likeliest:.1f}x"
            + (" (projected from the per-query cost)" if classes != len(queries) else "")
        )


if __name__ == "__main__":
    main()
