"""What one audit target costs end to end, split by stage, on the worker code path the Ray
actor runs (`dxray.run.host.ModelHost.serve("targets", ...)`, then the catalog write), not a copy.

Random-weight models at real size (timing depends on architecture, not weights): SD1.5 + LCM
with a TAESD-shaped tiny decoder, CLIPSeg (ViT-B/16, 352 px, rd64) and a ResNet-50, saved in
their real formats and loaded from the spec as an audit would. A fixed set of class and unit
targets runs with a fixed iteration budget (or the stop rule with --stop-prob). Prints seconds
per target by stage (explain with its full-VAE render, segment, probes, intervention, encode,
write), targets per GPU-hour, and the projection of the 6,000-target Salient ImageNet audit on
1 and 32 GPUs.

    python benchmarks/gpu_audit.py --device cuda                 # SD1.5 sizes, bf16
    python benchmarks/gpu_audit.py --arch tiny --device cpu      # plumbing check anywhere

The class-shortcut stage (renders shared by every class, ~160 per audit) is not per target and
is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dxray.catalog.writer import CatalogWriter  # noqa: E402
from dxray.run.host import ModelHost  # noqa: E402
from dxray.run.pipeline import split_rows  # noqa: E402
from dxray.run.targets import expand_targets  # noqa: E402
from dxray.spec.model import AuditSpec  # noqa: E402

SALIENT_TARGETS = 6000  # Salient ImageNet: 1,000 classes' top-5 features + the classes
GOAL_SECONDS = 1.0  # per target end to end: the whole audit in <= 100 GPU-minutes
STAGES = ("explain", "segment", "probes", "intervention", "encode", "write")
PROBES = ["water", "grass", "sand", "snow", "a watermark", "text", "a person", "a tree"]


def build_models(arch: str, root: Path) -> dict[str, str]:
    """Save random-weight models in their real formats under `root` (kept: a second run
    reuses them) and return the spec's model sources."""
    if arch == "tiny":
        from dxray.toyworld.zoo import build_tiny_zoo

        if not (root / "classifier").is_dir():
            build_tiny_zoo(root)
        return {p: str(root / p) for p in ("generator", "classifier", "segmenter")}
    from dxray.models.build import build_generator, sd15_lcm_arch
    from dxray.models.classifier import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
    from dxray.models.classifier_io import save_classifier
    from dxray.models.resnet import resnet50
    from dxray.toyworld.segmenter_training.config import ToySegmenterConfig
    from dxray.toyworld.segmenter_training.model import build_toy_segmenter
    from dxray.toyworld.world import default_world

    if not (root / "generator").is_dir():
        build_generator(sd15_lcm_arch(), seed=0).save_pretrained(root / "generator")
    if not (root / "classifier").is_dir():
        torch.manual_seed(0)
        save_classifier(
            root / "classifier", resnet50(num_classes=1000), factory="dxray.models.resnet:resnet50",
            factory_kwargs={"num_classes": 1000},
            preprocessing=Preprocessing((224, 224), IMAGENET_MEAN, IMAGENET_STD),
            class_names=[f"class{i}" for i in range(1000)],
        )  # fmt: skip
    if not (root / "segmenter").is_dir():  # CLIPSeg rd64-refined's sizes
        config = ToySegmenterConfig(
            image_size=352, patch_size=16, vision_hidden=768, vision_layers=12, vision_heads=12,
            extract_layers=(3, 6, 9), text_hidden=512, text_layers=12, text_heads=8,
            max_length=77, projection_dim=512, reduce_dim=64, decoder_heads=4, mlp_ratio=4,
        )  # fmt: skip
        build_toy_segmenter(default_world(), config, seed=0).save_pretrained(root / "segmenter")
    return {p: str(root / p) for p in ("generator", "classifier", "segmenter")}


def audit_spec(sources: dict, args, catalog: Path) -> AuditSpec:
    """Class targets, and unit targets owned by classes as Salient ImageNet's are (a unit CSV:
    the intervention removes the class's own object)."""
    if args.arch == "sd15":
        n_classes, layer, channels = args.classes, "layer4", 2048
    else:  # the tiny zoo: its 5 classes, its classifier's penultimate layer
        n_classes, layer, channels = 5, "penultimate", 8
    units = catalog.parent / f"{catalog.name}-units.csv"
    pairs = [(u % n_classes, (7 * u) % channels) for u in range(args.units)]
    units.write_text("class_index,feature_index\n" + "".join(f"{c},{f}\n" for c, f in pairs))
    return AuditSpec.from_dict(
        {
            "name": "gpu-audit",
            **sources,
            "targets": {
                "classes": list(range(n_classes)),
                "units": {"csv": str(units), "layer": layer},
                "seeds": [0],
            },
            "engine": {
                "iterations": args.iterations,
                "stop_prob": args.stop_prob,
                "batch_size": args.batch,
                "sampler": {"steps": args.steps},
            },
            "judge": {"probes": PROBES, "units": "intervention", "remove": "own"},
            "output": {"catalog": str(catalog)},
        }  # fmt: skip
    )


def run(args) -> dict:
    root = Path(args.models or tempfile.mkdtemp(prefix="dxray-gpu-audit-"))
    started = time.perf_counter()
    sources = build_models(args.arch, root)
    built = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="dxray-gpu-audit-catalog-") as tmp:
        spec = audit_spec(sources, args, Path(tmp))
        if args.arch == "sd15" and args.device == "cuda":
            spec = AuditSpec.from_dict(
                {**spec.to_dict(), **{role: {**spec.to_dict()[role], "dtype": "bfloat16"}
                                      for role in ("generator", "classifier", "segmenter")}}
            )  # fmt: skip
        started = time.perf_counter()
        worker = ModelHost(spec.to_dict(), device=args.device, threads=args.threads)
        loaded = time.perf_counter() - started
        rows = expand_targets(spec, worker.classifier.class_names, "gpu-audit")
        writer = CatalogWriter(tmp)
        writer.write_run("gpu-audit", name="gpu-audit", num_targets=len(rows))
        worker.serve("targets", rows[: min(args.batch, len(rows))])  # warm-up: kernels, caches
        worker.stage_seconds.clear()
        started = time.perf_counter()
        statuses, steps = Counter(), []
        for at in range(0, len(rows), args.batch):
            out = worker.serve("targets", rows[at : at + args.batch])
            statuses.update(r["status"] for r in out)
            steps += [r["steps"] for r in out]
            write_started = time.perf_counter()
            writer.write_batch("gpu-audit", *split_rows(out))
            worker.stage_seconds["write"] += time.perf_counter() - write_started
        wall = time.perf_counter() - started
    n = len(rows)
    per_target = {stage: worker.stage_seconds[stage] / n for stage in STAGES}
    total = wall / n
    return {
        "arch": args.arch,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
        "targets": n,
        "batch": args.batch,
        "iterations": args.iterations,
        "stop_prob": args.stop_prob,
        "sampler_steps": args.steps,
        "median_steps": sorted(steps)[len(steps) // 2],
        "statuses": dict(statuses),
        "seconds_build": built,
        "seconds_load": loaded,
        "seconds_per_target": per_target,
        "seconds_per_target_total": total,
        "seconds_per_target_other": total - sum(per_target.values()),
        "targets_per_gpu_hour": 3600 / total,
        "salient_minutes_1_gpu": SALIENT_TARGETS * total / 60,
        "salient_minutes_32_gpus": SALIENT_TARGETS * total / 60 / 32,
    }


def report(r: dict) -> str:
    lines = [
        f"{r['arch']} on {r['device']}: {r['targets']} targets, batches of {r['batch']}, "
        f"{r['iterations']} iterations max (stop rule: {r['stop_prob']}), {r['sampler_steps']} "
        f"sampler steps; median {r['median_steps']} iterations; {r['statuses']}",
        f"  models built in {r['seconds_build']:.0f} s, loaded by the worker in "
        f"{r['seconds_load']:.1f} s (once per actor)",
    ]
    for stage, seconds in r["seconds_per_target"].items():
        lines.append(f"  {stage:<13} {seconds:8.3f} s/target")
    lines += [
        f"  {'other':<13} {r['seconds_per_target_other']:8.3f} s/target",
        f"  {'total':<13} {r['seconds_per_target_total']:8.3f} s/target = "
        f"{r['targets_per_gpu_hour']:.0f} targets per GPU-hour "
        f"(goal <= {GOAL_SECONDS:g} s: {r['seconds_per_target_total'] / GOAL_SECONDS:.1f}x it)",
        f"  Salient ImageNet ({SALIENT_TARGETS} targets): {r['salient_minutes_1_gpu']:.0f} "
        f"GPU-minutes on 1 GPU, {r['salient_minutes_32_gpus']:.1f} minutes on 32",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("sd15", "tiny"), default="sd15")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--classes", type=int, default=32, help="class targets")
    parser.add_argument("--units", type=int, default=16, help="unit targets (sd15: layer4)")
    parser.add_argument("--batch", type=int, default=16, help="targets per worker batch")
    parser.add_argument("--iterations", type=int, default=8, help="iteration budget")
    parser.add_argument("--stop-prob", type=float, default=None, help="the stop rule's p")
    parser.add_argument("--steps", type=int, default=4, help="sampler steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--models", help="where the random-weight models are kept")
    parser.add_argument("--json", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    result = run(args)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
