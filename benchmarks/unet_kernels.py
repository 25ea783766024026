"""Faster kernels for the same UNet work? The toy UNet under each option, in one run.

The demo audit's compute is ~95% UNet calls (docs/BENCHMARKS.md). This script times one UNet
call on the committed toy zoo's UNet, at the batch the renders use, as the audit makes it:
no-grad (a render, or the optimisation's first steps) and with the gradient to the text
conditioning (the optimisation's last step). Each option is timed against the eager float32
call in the same process, and the largest difference of its output from eager's is printed:
any difference is a change of rounding, which the toy's verdicts are sensitive to.

    python benchmarks/unet_kernels.py --threads 2 --batch 32

Options: channels_last memory format; torch.compile (inductor; its first call compiles, for
this one batch shape: a batch of another size compiles again; a fresh, empty inductor
cache, as on a fresh machine); bfloat16 autocast.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# A cold compile, as on a fresh machine: inductor's on-disk cache would hide its cost.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="dxray-inductor-"))

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ZOO_UNET = Path(__file__).resolve().parents[1] / "dxray/toyworld/zoo/default/generator/unet"


def _best_ms(call, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(ZOO_UNET).eval().requires_grad_(False)
    rng = torch.Generator().manual_seed(0)
    size = unet.config.sample_size
    x = torch.randn(args.batch, unet.config.in_channels, size, size, generator=rng)
    cond = torch.randn(args.batch, 12, unet.config.cross_attention_dim, generator=rng)
    t = torch.full((args.batch,), 500)

    def forward(model, sample):
        with torch.no_grad():
            return model(sample, t, encoder_hidden_states=cond).sample

    def backward(model, sample):
        c = cond.clone().requires_grad_(True)
        out = model(sample, t, encoder_hidden_states=c).sample
        out.square().mean().backward()
        return c.grad

    channels_last = UNet2DConditionModel.from_pretrained(ZOO_UNET).eval().requires_grad_(False)
    channels_last = channels_last.to(memory_format=torch.channels_last)
    x_last = x.contiguous(memory_format=torch.channels_last)

    def autocast(call):
        def run(model, sample):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return call(model, sample).float()

        return run

    options = [
        ("channels_last", channels_last, x_last, None),
        ("bfloat16 autocast", unet, x, autocast),
    ]
    if not args.no_compile:
        options.append(("torch.compile", torch.compile(unet), x, None))

    print(
        f"toy UNet, batch {args.batch}, {args.threads} threads; ms per call (best of "
        f"{args.repeat}); ratio: eager / option (>1: faster)"
    )
    for name, call in (("no-grad call", forward), ("call + backward to the text", backward)):
        reference = call(unet, x)
        eager = _best_ms(lambda call=call: call(unet, x), args.repeat)
        print(f"{name}: eager float32 {eager:.1f} ms")
        for option, model, sample, wrap in options:
            run = wrap(call) if wrap else call
            started = time.perf_counter()
            out = run(model, sample)
            first = time.perf_counter() - started
            ms = _best_ms(
                lambda run=run, model=model, sample=sample: run(model, sample), args.repeat
            )
            diff = (out.float() - reference).abs().max().item()
            print(
                f"  {option:18s} {ms:7.1f} ms  ratio {eager / ms:4.2f}  first call "
                f"{first:5.1f} s  largest difference {diff:.2e}"
            )


if __name__ == "__main__":
    main()
