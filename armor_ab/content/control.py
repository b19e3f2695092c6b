"""Control content: the catalog's own text, in the same InterleavedContent JSON shape.

The items come from the database (``catalog_items``, filled by ``armor-ab catalog import``); nothing
here reads a catalog directory.
"""

from __future__ import annotations

from armor_ab.catalog.items import CatalogItem
from armor_ab.model.interleaved import FORMAT


def control_content(item: CatalogItem) -> dict:
    """Today's text-only page: the catalog description as one text segment."""
    return {
        "format": FORMAT,
        "metadata": {"source": "catalog", "item_id": item.id},
        "segments": [{"type": "text", "text": item.description}],
    }
