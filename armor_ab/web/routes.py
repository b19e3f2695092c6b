"""The browser side of armor-ab: the armor-ab.js snippet and an example catalog site.

``site_router`` (``server.py`` mounts it on the API app) serves

* ``GET /v1/sdk/armor-ab.js``: the snippet (ETag, short cache, gzip when accepted); it talks to the
  API's client routes (``…/content``, ``POST /v1/events`` and the beacon ``POST /v1/events/beacon``);
* ``GET /demo/``, ``/demo/products/{item_id}``: the example catalog site (see ``site.py``) over the
  database's catalog (``armor-ab catalog import``); photos come from the API's ``/v1/images/``.

Nothing here imports the API: the pages read the server's live state, when there is one, from
``request.app.state.armor`` (its catalog items and key scopes). The site alone (``create_site_app``)
reads the catalog from the API it talks to, with the read key in ``ARMOR_AB_KEY``.

The demo reads its settings from the environment at request time: ``ARMOR_AB_DEMO_CLIENT_KEY``
(the publishable key its pages use; without it they say so and show catalog copy only),
``ARMOR_AB_DEMO_API`` (the API base the pages talk to; default: this server) and
``ARMOR_AB_DEMO_EXPERIMENT`` (default ``catalog-interleaved``).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from armor_ab.catalog.items import CatalogItem
from armor_ab.config import DEFAULT_DEMO_EXPERIMENT, env_settings
from armor_ab.store.keys import hash_key
from armor_ab.web import site

log = logging.getLogger("armor_ab.web")
STATIC = Path(__file__).resolve().parent / "static"
SNIPPET = "armor-ab.js"
DEFAULT_EXPERIMENT = DEFAULT_DEMO_EXPERIMENT
# The snippet's URL is not versioned: caches revalidate (cheaply, by ETag) after five minutes.
ASSET_CACHE = "public, max-age=300, stale-while-revalidate=86400"
MEDIA_TYPES = {".js": "application/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

site_router = APIRouter()  # the snippet and the example site: needs no database
# -- static assets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str


@lru_cache(maxsize=8)
def asset(name: str) -> Asset:
    body = (STATIC / name).read_bytes()
    etag = f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'  # weak: one tag for both encodings
    return Asset(body, gzip.compress(body, 9, mtime=0), etag, MEDIA_TYPES[Path(name).suffix])


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip() for t in header.split(",")}
    return "*" in tags or etag in tags or etag.removeprefix("W/") in tags


def asset_response(request: Request, name: str) -> Response:
    a = asset(name)
    headers = {"ETag": a.etag, "Cache-Control": ASSET_CACHE, "Vary": "Accept-Encoding",
               "Cross-Origin-Resource-Policy": "cross-origin", "X-Content-Type-Options": "nosniff"}
    if _etag_matches(request.headers.get("if-none-match"), a.etag):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(a.gzipped, media_type=a.media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(a.body, media_type=a.media_type, headers=headers)


@site_router.get("/v1/sdk/armor-ab.js", tags=["client"], response_class=Response,
                 responses={200: {"content": {"application/javascript": {}}, "description": "the snippet"},
                            304: {"description": "Not Modified: the If-None-Match ETag matched"}})
async def get_snippet(request: Request):
    """armor-ab.js, the page snippet: renders variant content, tracks page views, dwell and inquiries."""
    return asset_response(request, SNIPPET)


@site_router.get("/demo/static/demo.css", include_in_schema=False)
async def get_demo_css(request: Request):
    return asset_response(request, "demo.css")


# -- the example catalog site --------------------------------------------------------------------------

REMOTE_CATALOG_TTL_S = 60.0  # the site alone re-reads the API's catalog this often
_remote: dict[str, tuple[float, dict[str, CatalogItem]]] = {}  # API base -> (read at, items)


async def catalog(request: Request) -> tuple[dict[str, CatalogItem], str]:
    """The catalog items by id (catalog order) and the base URL of their photos (empty: this server).

    Served by ``armor-ab serve``: the items the server loaded from its database at start. The site
    alone (``create_site_app``, no database) reads them from the API it talks to.
    """
    state = getattr(request.app.state, "armor", None)
    if state is not None:
        return state.catalog, ""
    api = env_settings().demo_api.rstrip("/")
    return await remote_catalog(api), api


async def remote_catalog(api: str) -> dict[str, CatalogItem]:
    """The catalog of the API at ``api`` (``GET /v1/catalog/items`` with the read key in ``ARMOR_AB_KEY``),
    re-read every ``REMOTE_CATALOG_TTL_S``. While the API cannot answer, the last catalog read stays:
    a customer's site keeps its pages when the testing platform is down."""
    now = time.monotonic()
    cached = _remote.get(api)
    if cached is not None and now - cached[0] < REMOTE_CATALOG_TTL_S:
        return cached[1]
    key = env_settings().key
    if not api or key is None:
        return cached[1] if cached else {}
    items: dict[str, CatalogItem] = {}
    try:
        async with httpx.AsyncClient(base_url=api, timeout=5.0,
                                     headers={"Authorization": f"Bearer {key.get_secret_value()}"}) as client:
            while True:
                r = await client.get("/v1/catalog/items", params={"limit": 500, "offset": len(items)})
                r.raise_for_status()
                page = r.json()
                items.update((i["id"], _item_of(i)) for i in page["items"])
                if not page["items"] or len(items) >= page["total"]:
                    break
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        log.warning("the example site cannot read the API's catalog", extra={"api": api, "error": str(exc)})
        return cached[1] if cached else {}
    _remote[api] = (now, items)
    return items


def _item_of(public: dict) -> CatalogItem:
    """A ``CatalogItemPublic`` back as a ``CatalogItem`` (its photo by SHA-256 again)."""
    image = public.get("image")
    return CatalogItem(id=public["id"], name=public["name"], category=public["category"],
                       description=public["description"], specs=public.get("specs") or {},
                       image=image.rsplit("/", 1)[-1] if image else None, image_type=public.get("image_type"),
                       fields=public.get("fields") or {})


def demo_config(request: Request) -> dict | None:
    """What the pages pass to the snippet, or None when no usable publishable key is configured."""
    env = env_settings()
    key = env.demo_client_key.get_secret_value() if env.demo_client_key is not None else ""
    if not key:
        return None
    state = getattr(request.app.state, "armor", None)
    if state is not None:
        known = state.keys.get(hash_key(key))
        if known is not None and known[1] != "client":
            return None  # never publish a read or admin key in a page
    return {"api": env.demo_api.rstrip("/"), "key": key, "experiment": env.demo_experiment}


_HTML_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


@site_router.get("/demo", include_in_schema=False)
async def demo_root():
    return RedirectResponse("/demo/", status_code=308)


@site_router.get("/demo/", include_in_schema=False, response_class=HTMLResponse)
async def demo_list(request: Request):
    items, api = await catalog(request)
    user_id = request.query_params.get("user_id") or None
    page = site.product_list(list(items.values()), demo_config(request), user_id, api)
    return HTMLResponse(page, headers=_HTML_HEADERS)


@site_router.get("/demo/products/{item_id}", include_in_schema=False, response_class=HTMLResponse)
async def demo_product(item_id: str, request: Request):
    items, api = await catalog(request)
    item = items.get(item_id)
    if item is None:
        return HTMLResponse(site.not_found(item_id), status_code=404, headers=_HTML_HEADERS)
    return HTMLResponse(site.product_page(item, demo_config(request), api), headers=_HTML_HEADERS)


def create_site_app() -> FastAPI:
    """The example site alone (no database): a customer's site on another origin than the API.

    Set ``ARMOR_AB_DEMO_API`` to the API's base URL and ``ARMOR_AB_KEY`` to a read key of it (the
    site reads the catalog there; the key stays on the server, the pages publish only the client
    key), and start that API with ``--cors-origin`` for this site's origin.
    ``uvicorn --factory armor_ab.web.routes:create_site_app``.
    """
    app = FastAPI(title="armor-ab example site", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(site_router)
    return app


__all__ = ["create_site_app", "site_router"]
