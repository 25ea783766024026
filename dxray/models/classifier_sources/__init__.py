"""Where a classifier comes from: one module per kind of source.

Each module turns one kind of source into `(model, known, class_names)`: the torch module, the
preprocessing the source states (a dict with some of "input_size", "mean" and "std"; "outputs"
too for a dxray directory) and its class names, or None where the source names none. A source
that cannot be loaded raises `dxray.models.classifier.ClassifierLoadError` saying what to do.
`dxray.models.classifier_io.load_classifier` picks the module, applies the spec's overrides and
wraps the model in a `Classifier`.
"""
