"""The shipped demo catalog as ``CatalogItem``s with their photos: what the demo imports.

The demo's products carry more than an import needs (``code``, ``noun``, ``price_band``, ``colour``,
``picture_seed``): they travel as ordinary extra fields, so prompt templates may name them like any
user's column.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from armor_ab.assets import DEMO_CATALOG

from .items import CatalogItem
from .products import Product, load_catalog

DEMO_FIELDS = ("code", "noun", "price_band", "colour", "picture_seed")


def item_from_product(product: Product, photo: bytes | None) -> CatalogItem:
    """A demo product as a catalog item; ``photo`` is its PNG (None: no photo)."""
    return CatalogItem(
        id=product.id, name=product.name, category=product.category, description=product.description,
        specs=dict(product.specs),
        image=hashlib.sha256(photo).hexdigest() if photo is not None else None,
        image_type="image/png" if photo is not None else None,
        fields={name: str(getattr(product, name)) for name in DEMO_FIELDS},
    )


def demo_items(directory: Path = DEMO_CATALOG) -> list[tuple[CatalogItem, bytes | None]]:
    """Every demo product as (item, photo bytes), in catalog order."""
    out = []
    for product in load_catalog(directory):
        picture = Path(directory) / product.picture if product.picture else None
        photo = picture.read_bytes() if picture is not None and picture.is_file() else None
        out.append((item_from_product(product, photo), photo))
    return out
