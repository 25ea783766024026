"""Class shortcuts: what a class relies on besides its object, measured in centred logits.

A class explanation that maximises the class paints the class's object, and beside the object a
shortcut adds almost nothing to the class's probability (docs/EVALUATION.md). So the shortcut's
question is asked directly, without the object:

- `vocabulary`: the attributes to test (scenes such as "water", overlays such as "a watermark")
  and the prompts that render them, with and without a class's object;
- `render`: text -> images with the generator (no optimisation, full VAE) and the checks that
  decide which images count: no class's object in an object-free image, the attribute found;
- `score`: centred logits (logit minus the mean over classes, never probabilities), the lift of
  every class on every attribute with a bootstrap interval, and the finding rule;
- `erase`: the object eraser that lets an explanation reach its class only through what is not
  an object (object-free explanations, open discovery beyond a vocabulary).

Pure torch: no Ray, no files. The images are shared by every class, so one classifier pass
scores them all and the cost does not grow with the number of classes.
"""
