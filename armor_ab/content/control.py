"""Control content: the catalog's own text, in the same InterleavedContent JSON shape."""

from __future__ import annotations

from pathlib import Path

from armor_ab.assets import DEMO_CATALOG
from armor_ab.catalog.products import Product, load_catalog
from armor_ab.model.interleaved import FORMAT

DEFAULT_CATALOG = DEMO_CATALOG


def control_content(product: Product) -> dict:
    """Today's text-only page: the catalog description as one text segment."""
    return {
        "format": FORMAT,
        "metadata": {"source": "catalog", "item_id": product.id},
        "segments": [{"type": "text", "text": product.description}],
    }


def load_products(catalog: Path | None = None) -> dict[str, Product]:
    """Products by id from a catalog directory (the demo catalog by default; {} when absent)."""
    directory = Path(catalog) if catalog else DEFAULT_CATALOG
    if not (directory / "catalog.json").exists():
        return {}
    return {p.id: p for p in load_catalog(directory)}


def prompt_fields(product: Product) -> dict[str, str]:
    """What a variant's prompt template may name: {name}, {category}, {specs}, {power}, ..."""
    return {
        "id": product.id, "code": product.code, "name": product.name, "category": product.category,
        "noun": product.noun, "price_band": product.price_band, "description": product.description,
        "specs": ", ".join(product.spec_values), **product.specs,
    }
