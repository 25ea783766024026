"""Train the toy world's segmenter: a small CLIPSeg that finds objects, contexts and cues by name.

    dxray zoo train --out /tmp/zoo --parts segmenter --world default
    train_segmenter(world, "/tmp/zoo", ToySegmenterConfig(steps=1500), RunSettings(seed=0))

The judge asks the segmenter "is a circle here?" (object_query: "a circle"), and the probes ask
"water?" and "a watermark?". The toy segmenter learns exactly those questions from rendered
scenes, whose masks are exact:

- positives: a query naming what the scene holds ("a circle", "a red circle", "water",
  "a watermark"), target = that thing's mask;
- negatives: a query naming something the scene lacks (another shape, another context, a cue
  not painted), target = an all-zero mask. About half of all pairs, so that "absent" is learnt
  as firmly as "where".

Scenes are unbiased (every class on every context) plus context-only ones, with the cue on half
of them, rendered on the fly. The model is a transformers `CLIPSegForImageSegmentation` trained
through the same preprocessing and parts as `Segmenter.segment` (see `pair_logits`), saved with
`Segmenter.save_pretrained` so `load_segmenter` reads it like a real CLIPSeg.
`segmenter_gates` then checks it on held-out scenes: mask IoU and presence accuracy.

Modules: `config` (sizes and recipe), `model` (the CLIPSeg and its pair logits), `data` (scenes
and their query pairs), `losses`, `checkpoints` (the saved folder and its record, continuing
from one), `loop` (`train_segmenter`), `gates` (is it good enough for the judge?).
"""
