"""The imported catalog (``read`` scope): ``GET /v1/catalog/items`` and ``GET /v1/catalog/items/{item_id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from armor_ab.api.deps import ReadKey, State
from armor_ab.api.schemas import ERRORS, CatalogItemPublic, CatalogItemsPublic
from armor_ab.services.catalog import DEFAULT_LIMIT, MAX_LIMIT, catalog_item, catalog_page

router = APIRouter(prefix="/v1", tags=["read"], responses=ERRORS)


@router.get("/catalog/items", response_model=CatalogItemsPublic)
async def get_catalog_items(
    state: State, principal: ReadKey,
    category: Annotated[str | None, Query(max_length=200, description="only the items of this category")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, description="items to skip")] = 0,
):
    """The catalog items (``armor-ab catalog import``) in catalog order, one page at a time."""
    return JSONResponse(catalog_page(state, category=category, limit=limit, offset=offset))


@router.get("/catalog/items/{item_id}", response_model=CatalogItemPublic)
async def get_catalog_item(item_id: str, state: State, principal: ReadKey):
    """One catalog item: name, category, control copy, specs, other fields and its photo's URL."""
    return JSONResponse(catalog_item(state, item_id))
