"""Model loaders. Every model enters dxray through here, as plain torch modules."""
