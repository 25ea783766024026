"""The DiffExplainer engine: pure torch, no Ray, no files. Tensors in, tensors out."""
