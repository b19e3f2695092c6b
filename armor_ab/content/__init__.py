"""Variant content: generated ARMOR pages, their review, and what the API serves for each variant."""
