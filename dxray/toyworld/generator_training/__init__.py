"""Train the toy world's generator: VAE, tiny decoder, then text encoder + UNet. Resumable.

    dxray zoo train --out zoo --parts generator --device cuda --generator-seconds 360         --generator-cuda-graphs
    dxray zoo train --out /tmp/zoo --parts generator --generator-preset tiny         --generator-max-steps 20  # CPU

    train_generator(world, "out", GeneratorTrainingConfig(ToyGeneratorConfig.tiny(), max_steps=20))

The result, `OUT/generator/`, is a diffusers `save_pretrained` layout that
`dxray.models.generator.load_generator` reads like any SD-family checkpoint. Training runs in
three stages, one after the other; each later stage depends on the earlier ones being frozen:

A. VAE (AutoencoderKL, one x2 downsampling: 32 px scenes -> 16x16x4 latents, so that shapes
   survive; 8x8 latents capped shape recognition at 80%). L1 + L2 reconstruction + a tiny KL.
   Its end sets the latent scaling factor (1 / std of the latents), as SD does.
B. Tiny decoder (AutoencoderTiny, TAESD-like): distilled from the VAE decoder on the scaled
   latents, for cheap decoding inside the explain engine's optimisation loop.
C. Text encoder (CLIPTextModel) + UNet (cross-attention) on VAE latents of scenes and their
   captions: v-prediction, cosine schedule (zero SNR at t=999, where few-step trailing DDIM
   starts), min-SNR weighting, caption dropout (for classifier-free guidance), EMA weights.

Scenes come from the world's *unbiased* distribution plus context-only scenes, never the
classifier's biased one: the generator must be able to draw every (colour, shape, context, cue)
combination. They are rendered into a pool held on the device; on CUDA, background processes
render fresh scenes that replace the pool's oldest ones while training runs.

Training stops at `seconds` (wall clock, split over the stages still to run) or `max_steps`
(UNet steps) of its `GeneratorTrainingConfig`, whichever comes first, and checkpoints to
`OUT/checkpoint.pt`; a later call with `resume=True` continues where it stopped (a finished
VAE or tiny-decoder stage stays frozen; the UNet stage can always be continued). Without `checkpoint.pt` (~100 MB with optimizer
state and EMA), `OUT/generator/` alone is enough to continue: its EMA weights become the live
weights and the optimizer starts afresh. `seconds=0` only re-exports.

Modules: `config` (sizes and recipe; the config of one call), `pool` (the scenes), `losses`
(one per stage), `samples` (what the engine sees), `checkpoints` (state, checkpoint, export),
`stage` (one stage's steps), `loop` (`train_generator`: the stages in order).
"""
