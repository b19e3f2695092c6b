"""The catalog as the API serves it (``GET /v1/catalog/items``): from the server's memory, not the database.

The items are loaded once when the server starts (``AppState.load_catalog``); an import needs the
database file, so the catalog cannot change under a running server and no request reads DuckDB.
"""

from __future__ import annotations

from armor_ab.catalog.items import CatalogItem
from armor_ab.services.errors import ServiceError
from armor_ab.services.state import AppState

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


def image_url(sha256: str | None) -> str | None:
    """The photo's URL on this API (relative, like generated pages' images), or None."""
    return f"/v1/images/{sha256}" if sha256 else None


def item_public(item: CatalogItem) -> dict:
    """``CatalogItemPublic``: the item with its photo as a URL."""
    return {"id": item.id, "name": item.name, "category": item.category, "description": item.description,
            "specs": item.specs, "fields": item.fields, "image": image_url(item.image),
            "image_type": item.image_type}


def catalog_page(state: AppState, *, category: str | None = None, limit: int = DEFAULT_LIMIT,
                 offset: int = 0) -> dict:
    """``CatalogItemsPublic``: one page of the items in catalog order, optionally of one category."""
    items = list(state.catalog.values())
    if category is not None:
        items = [item for item in items if item.category == category]
    return {"items": [item_public(item) for item in items[offset:offset + limit]], "total": len(items),
            "limit": limit, "offset": offset}


def catalog_item(state: AppState, item_id: str) -> dict:
    """``CatalogItemPublic`` of one item; 404 ``item_not_found`` when the catalog has no such id."""
    item = state.catalog.get(item_id)
    if item is None:
        raise ServiceError(404, "item_not_found", f"no catalog item {item_id!r} (armor-ab catalog import adds items)",
                           field="item_id")
    return item_public(item)
