"""The toy world: procedural scenes of shapes on textured contexts, with spurious correlations
planted in a classifier's training data. It gives the audit ground truth (see ARCHITECTURE.md).

    world = default_world()
    specs = sample_specs(world, 1000, seed=0, mode="biased")
    images, masks, captions = render_batch(world, specs)
"""

from dxray.toyworld.data import (
    MODES,
    SceneLabels,
    class_names,
    colour_names,
    context_names,
    context_probs,
    cue_names,
    cue_probs,
    sample_specs,
    scene_labels,
)
from dxray.toyworld.scenes import Scene, SceneSpec, caption, caption_words, render, render_batch
from dxray.toyworld.world import (
    Context,
    Correlation,
    Cue,
    Layout,
    ShapeClass,
    World,
    WorldConfigError,
    default_world,
    load_world,
)

__all__ = [
    "MODES",
    "Context",
    "Correlation",
    "Cue",
    "Layout",
    "Scene",
    "SceneLabels",
    "SceneSpec",
    "ShapeClass",
    "World",
    "WorldConfigError",
    "caption",
    "caption_words",
    "class_names",
    "colour_names",
    "context_names",
    "context_probs",
    "cue_names",
    "cue_probs",
    "default_world",
    "load_world",
    "render",
    "render_batch",
    "sample_specs",
    "scene_labels",
]
