"""The browser side of armor-ab: the armor-ab.js snippet and an example catalog site.

``site_router`` (``server.py`` mounts it on the API app) serves

* ``GET /v1/sdk/armor-ab.js``: the snippet (ETag, short cache, gzip when accepted); it talks to the
  API's client routes (``…/content``, ``POST /v1/events`` and the beacon ``POST /v1/events/beacon``);
* ``GET /demo/``, ``/demo/products/{item_id}``: the example catalog site (see ``site.py``).

Nothing here imports the API: the pages read the server's live state, when there is one, from
``request.app.state.armor`` (its catalog directory and key scopes).

The demo reads its settings from the environment at request time: ``ARMOR_AB_DEMO_CLIENT_KEY``
(the publishable key its pages use; without it they say so and show catalog copy only),
``ARMOR_AB_DEMO_API`` (the API base the pages talk to; default: this server) and
``ARMOR_AB_DEMO_EXPERIMENT`` (default ``catalog-interleaved``).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from armor_ab.catalog.products import Product
from armor_ab.config import DEFAULT_DEMO_EXPERIMENT, env_settings
from armor_ab.content.control import DEFAULT_CATALOG, load_products
from armor_ab.store.keys import hash_key
from armor_ab.web import site

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


def _catalog_dir(request: Request) -> Path:
    state = getattr(request.app.state, "armor", None)
    configured = state.settings.catalog_dir if state is not None else env_settings().catalog
    return Path(configured) if configured else DEFAULT_CATALOG


@lru_cache(maxsize=4)
def _products(directory: Path, mtime: float) -> dict[str, Product]:
    return load_products(directory)


def catalog(request: Request) -> tuple[Path, dict[str, Product]]:
    directory = _catalog_dir(request)
    try:
        mtime = (directory / "catalog.json").stat().st_mtime
    except OSError:
        return directory, {}
    return directory, _products(directory, mtime)


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
    _, products = catalog(request)
    user_id = request.query_params.get("user_id") or None
    page = site.product_list(list(products.values()), demo_config(request), user_id)
    return HTMLResponse(page, headers=_HTML_HEADERS)


@site_router.get("/demo/products/{item_id}", include_in_schema=False, response_class=HTMLResponse)
async def demo_product(item_id: str, request: Request):
    _, products = catalog(request)
    product = products.get(item_id)
    if product is None:
        return HTMLResponse(site.not_found(item_id), status_code=404, headers=_HTML_HEADERS)
    return HTMLResponse(site.product_page(product, demo_config(request)), headers=_HTML_HEADERS)


@site_router.get("/demo/pictures/{name}", include_in_schema=False)
async def demo_picture(name: str, request: Request):
    directory, products = catalog(request)
    product = products.get(name.removesuffix(".png")) if name.endswith(".png") else None
    path = (directory / product.picture).resolve() if product and product.picture else None
    if path is None or not path.is_relative_to(directory.resolve()) or not path.is_file():
        return Response(status_code=404)
    return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})



def create_site_app() -> FastAPI:
    """The example site alone (no database): a customer's site on another origin than the API.

    Set ``ARMOR_AB_DEMO_API`` to the API's base URL and start that API with ``--cors-origin`` for
    this site's origin. ``uvicorn --factory armor_ab.web.routes:create_site_app``.
    """
    app = FastAPI(title="armor-ab example site", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(site_router)
    return app


__all__ = ["create_site_app", "site_router"]
