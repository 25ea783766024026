"""The toy segmenter's sizes, training recipe and budget: `ToySegmenterConfig`, the one config
of `train_segmenter` (the seed, device and progress lines are its `RunSettings`).

Its fields are recorded as "config" in the saved segmenter's `dxray_train.json`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ToySegmenterConfig:
    """Sizes of the toy CLIPSeg and how it is trained. Defaults: the zoo's segmenter."""

    # --- model ---
    image_size: int = 32  # the default world renders 32 px scenes: no resize at all
    patch_size: int = 4  # 8x8 token grid; each token paints its 4x4 pixels of the mask
    vision_hidden: int = 96
    vision_layers: int = 4
    vision_heads: int = 4
    extract_layers: tuple[int, ...] = (1, 2, 3)  # each < vision_layers; one decoder layer each
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 2
    max_length: int = 16  # longest query: "an orange triangle" is 5 tokens
    projection_dim: int = 64
    reduce_dim: int = 64
    decoder_heads: int = 4
    mlp_ratio: int = 2  # MLP width / hidden width everywhere; CLIP's 4 buys little at this size
    presence_top_fraction: float = 0.02  # Segmenter's default: about 20 pixels of a 32 px map
    # --- training ---
    steps: int = 1500  # about 6 minutes on one CPU thread (0.23 s a step)
    # Also stop after this many seconds of training (None: no time limit). The learning rate
    # decays over whichever budget runs out first, so a time-limited run still ends annealed.
    seconds: float | None = None
    batch_size: int = 32  # scenes per step on CPU; each gives one query of each kind
    cuda_batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    negative_fraction: float = 0.5
    context_only_fraction: float = 0.2  # of training scenes; their object queries are negatives
    cue_fraction: float = 0.5  # of training scenes carry a cue (the world's base rate is rarer)
    dice_weight: float = 1.0  # soft dice on positive pairs, beside per-pixel BCE on all pairs
    # BCE of the presence score (what the judge thresholds) against present/absent: per-pixel
    # BCE spreads a negative's few hot pixels over the whole map and barely corrects them.
    presence_weight: float = 1.0
    # Object queries per scene beyond the first, each naming a class the scene lacks. The first
    # zoo segmenter (one object query per scene) called a cross on 88% of triangle scenes: with
    # one random negative a scene, each confusable pair is seen rarely. 4 asks every class of
    # the default world about every scene, the sparring partners included.
    extra_object_negatives: int = 4
    log_every: int = 50  # a progress line (and a recorded loss) every N steps
    # Also save every N steps (same place, its record marked "partial"; None: at the end only),
    # so that a killed run leaves a segmenter that `init` can continue and the gates can judge.
    save_every: int | None = None
    # A saved toy segmenter (its folder) whose weights start this run, with the same sizes; the
    # optimiser and schedule start afresh. Give the run another seed than its own, or the
    # scenes repeat.
    init: str | None = None

    def __post_init__(self):
        self.extract_layers = tuple(self.extract_layers)
        if self.init is not None:
            self.init = str(self.init)  # a Path too; recorded as text
        if not self.extract_layers or max(self.extract_layers) >= self.vision_layers:
            raise ValueError(
                f"extract_layers {self.extract_layers} must be non-empty and each below "
                f"vision_layers={self.vision_layers} (CLIPSeg reads hidden_states[i + 1])"
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        if self.extra_object_negatives < 0:
            raise ValueError(
                f"extra_object_negatives must be >= 0, got {self.extra_object_negatives}"
            )
        for name in ("negative_fraction", "context_only_fraction", "cue_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
