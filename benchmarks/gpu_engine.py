"""GPU benchmark of the explain engine at real size (random weights: timing depends on
architecture, not weights).

Builds the SD1.5 + LCM architecture (860M UNet with "w" time conditioning, 84M VAE, CLIP ViT-L
text encoder, TAESD-shaped tiny decoder) and a ResNet-50 classifier, in bf16, and times the real
optimisation loop (`dxray.explain.optimize.explain`) for several batch sizes and settings.
Prints s/target-iteration, peak GiB and achieved TFLOP/s (FLOPs counted by torch).

    python benchmarks/gpu_engine.py                      # on a CUDA machine
    python benchmarks/gpu_engine.py --arch tiny --device cpu   # plumbing check anywhere
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dxray.bench import engine_timing, iteration_flops  # noqa: E402
from dxray.explain.optimize import ExplainConfig  # noqa: E402
from dxray.explain.sampler import SamplerConfig  # noqa: E402
from dxray.models.build import GeneratorArch, build_generator, sd15_lcm_arch  # noqa: E402
from dxray.models.classifier import Classifier, Preprocessing  # noqa: E402

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

# (name, batches, ExplainConfig changes, SamplerConfig changes)
SETTINGS = [  # most informative first: a budget cut drops the tail
    ("4 steps, tiny decoder, last", (8, 16, 32), dict(decoder="tiny"), dict(grad_mode="last")),
    ("4 steps, tiny decoder, full", (16, 1), dict(decoder="tiny"), dict()),
    ("4 steps, VAE decode, full", (8, 1), dict(decoder="vae"), dict()),
    ("4 steps, tiny decoder, detached", (16,), dict(decoder="tiny"), dict(grad_mode="detached")),
    ("1 step, tiny decoder", (16,), dict(decoder="tiny"), dict(steps=1)),
    ("4 steps, VAE decode, full, ckpt", (16,), dict(decoder="vae", decoder_checkpoint=True, decode_micro_batch=8), dict(checkpoint=True)),
    ("4 steps, tiny decoder, full, ckpt", (32,), dict(decoder="tiny"), dict(checkpoint=True)),
    ("4 steps, tiny decoder, last", (1,), dict(decoder="tiny"), dict(grad_mode="last")),
]  # fmt: skip


def build(arch_name: str, device: str, dtype: torch.dtype):
    if arch_name == "sd15":
        arch, classes, size = sd15_lcm_arch(), 1000, 224
    else:
        arch, classes, size = GeneratorArch(), 10, 16
    from transformers import ResNetConfig, ResNetForImageClassification

    with torch.device(device):
        generator = build_generator(arch, seed=0)
        if arch_name == "sd15":  # ResNet-50
            net = ResNetForImageClassification(ResNetConfig(num_labels=classes))
        else:
            cfg = ResNetConfig(
                embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=classes
            )
            net = ResNetForImageClassification(cfg)
    generator.to(device=device, dtype=dtype)
    net = net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    classifier = Classifier(net, Preprocessing(input_size=(size, size), **IMAGENET))
    return generator, classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["sd15", "tiny"], default="sd15")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--timed", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument(
        "--budget-s", type=float, default=240.0, help="stop starting settings after this"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name()} torch {torch.__version__}", flush=True)
    generator, classifier = build(args.arch, args.device, dtype)
    print(f"built {args.arch} in {time.perf_counter() - started:.0f} s", flush=True)
    base = ExplainConfig(sampler=SamplerConfig(steps=4))
    rows = []
    flops_cache: dict[tuple, float] = {}
    for name, batches, changes, sampler_changes in SETTINGS:
        config = replace(base, **changes, sampler=replace(base.sampler, **sampler_changes))
        for batch in batches:
            if time.perf_counter() - started > args.budget_s:
                print(f"budget reached; skipping {name} B={batch}", flush=True)
                continue
            row = {"setting": name, "batch": batch}
            try:
                timing = engine_timing(generator, classifier, batch, config, timed=args.timed)
                key = (config.decoder, config.sampler.steps, config.sampler.grad_mode)
                if key not in flops_cache:  # FLOPs scale with batch: count once at B=1
                    flops_cache[key] = iteration_flops(generator, classifier, config, batch=1)
                per_target = timing.seconds_per_target_iteration
                row.update(
                    s_per_iteration=round(timing.seconds_per_iteration, 4),
                    s_per_target_iteration=round(per_target, 4),
                    peak_gib=None if timing.peak_gib is None else round(timing.peak_gib, 1),
                    tflops_per_target_iteration=round(flops_cache[key] / 1e12, 2),
                    achieved_tflop_s=round(flops_cache[key] / per_target / 1e12, 1),
                )
            except torch.OutOfMemoryError:
                row["error"] = "out of memory"
            except RuntimeError as err:  # e.g. kernel limits at large batch
                row["error"] = str(err).splitlines()[0][:200]
            finally:
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
