"""Train: a diffusion transformer over spacetime patches, trained from a captions manifest."""
