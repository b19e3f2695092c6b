"""Experiments as code: the YAML model, its loader and deterministic assignment."""
