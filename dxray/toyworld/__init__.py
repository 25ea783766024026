"""The toy world: procedural scenes of shapes on textured contexts, with spurious correlations
planted in a classifier's training data. It gives the audit ground truth (see ARCHITECTURE.md).

    world = default_world()
    specs = sample_specs(world, 1000, seed=0, mode="biased")
    images, masks, captions = render_batch(world, specs)
"""
