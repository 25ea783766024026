"""The segmenter's loss: per-pixel BCE, soft dice on the positives, BCE of the presence score."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dxray.models.segmenter import Segmenter
from dxray.toyworld.segmenter_training.config import ToySegmenterConfig
from dxray.toyworld.segmenter_training.data import SegmenterBatch
from dxray.toyworld.segmenter_training.model import pair_logits


def segmentation_loss(
    segmenter: Segmenter, batch: SegmenterBatch, config: ToySegmenterConfig
) -> Tensor:
    """Per-pixel BCE over all pairs + `dice_weight` x soft dice over the positive pairs +
    `presence_weight` x BCE of each pair's presence score against whether it is positive,
    positives and negatives weighted equally (the gates score balanced accuracy, and extra
    object negatives would otherwise outvote the positives)."""
    logits = pair_logits(segmenter, batch.images, batch.queries, batch.scene_index)
    targets = batch.targets.to(logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    positive = batch.positive.to(logits.device)
    if config.dice_weight > 0 and positive.any():
        probs = torch.sigmoid(logits[positive]).flatten(1)
        truth = targets[positive].flatten(1)
        dice = (2 * (probs * truth).sum(1) + 1) / (probs.sum(1) + truth.sum(1) + 1)
        loss = loss + config.dice_weight * (1 - dice).mean()
    if config.presence_weight > 0:
        # By hand: F.binary_cross_entropy refuses to run under autocast.
        presence = segmenter.presence(torch.sigmoid(logits)).clamp(1e-6, 1 - 1e-6)
        parts = [-presence[positive].log(), -(1 - presence[~positive]).log()]
        bce = torch.stack([p.mean() for p in parts if p.numel()]).mean()
        loss = loss + config.presence_weight * bce
    return loss
