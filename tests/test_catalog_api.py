"""A manufacturer's own catalog, imported into the database, is what the server serves: ``GET /v1/catalog/items``,
the photos under ``/v1/images/``, control's copy, exposure segments and the ``/demo/`` site (a real server on
loopback over a real DuckDB file; no demo item in sight)."""

from __future__ import annotations

import hashlib
import html
import io
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from armor_ab.catalog.items import CatalogItem
from armor_ab.store.db import connect
from tests.helpers.platform import Server, import_catalog, seed_database

EXP = "catalog-interleaved"


def _photo(fmt: str, colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, format=fmt)
    return buf.getvalue()


def _item(item_id: str, category: str, photo: bytes | None, media_type: str | None, **specs: str) -> tuple:
    return (CatalogItem(
        id=item_id, name=f"Lumen {item_id.upper()}", category=category,
        description=f"The {item_id} of our own range.\n\nMade in Lyon, <b>not</b> a demo item & proud of it.",
        specs=specs, image=hashlib.sha256(photo).hexdigest() if photo else None, image_type=media_type,
        fields={"price_band": "mid", "ean": f"400{len(item_id)}"}), photo)


PNG, JPEG, WEBP = _photo("PNG", "teal"), _photo("JPEG", "orange"), _photo("WEBP", "navy")
ITEMS = [
    _item("lamp-a1", "lamps", PNG, "image/png", power="12 W", flux="1200 lm"),
    _item("lamp-b2", "lamps", JPEG, "image/jpeg", power="20 W"),
    _item("cable:c3", "cables", WEBP, "image/webp", length="5 m"),
    _item("cable-d4", "cables", None, None),
    _item("lamp-e5", "lamps", None, None, power="7 W"),
]
BY_ID = {item.id: (item, photo) for item, photo in ITEMS}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """The demo experiment over a catalog of five items of our own (no demo product)."""
    db = tmp_path_factory.mktemp("catalog") / "armor_ab.duckdb"
    keys = seed_database(db, items=[])
    con = connect(db)
    try:
        import_catalog(con, db, ITEMS, file="lumen.csv")
    finally:
        con.close()
    server = Server(db, extra_env={"ARMOR_AB_DEMO_CLIENT_KEY": keys["client"]}).start()
    yield server, keys
    server.stop()


def get(server: Server, path: str, key: str | None, **params: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(server.url + path, params=params, headers=headers, timeout=30)


def test_the_catalog_is_listed_in_order_one_page_at_a_time(shop) -> None:
    server, keys = shop
    r = get(server, "/v1/catalog/items", keys["read"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["total"], body["limit"], body["offset"]) == (5, 100, 0)
    assert [i["id"] for i in body["items"]] == [item.id for item, _ in ITEMS]
    first = body["items"][0]
    assert first == {"id": "lamp-a1", "name": "Lumen LAMP-A1", "category": "lamps",
                     "description": BY_ID["lamp-a1"][0].description, "specs": {"power": "12 W", "flux": "1200 lm"},
                     "fields": {"price_band": "mid", "ean": "4007"}, "image": f"/v1/images/{hashlib.sha256(PNG).hexdigest()}",
                     "image_type": "image/png"}
    assert body["items"][3]["image"] is None and body["items"][3]["image_type"] is None
    assert list(first["specs"]) == ["power", "flux"]  # the file's order

    page = get(server, "/v1/catalog/items", keys["read"], limit=2, offset=2).json()
    assert [i["id"] for i in page["items"]] == ["cable:c3", "cable-d4"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)
    past = get(server, "/v1/catalog/items", keys["read"], offset=10).json()
    assert past["items"] == [] and past["total"] == 5

    lamps = get(server, "/v1/catalog/items", keys["admin"], category="lamps", limit=2).json()
    assert [i["id"] for i in lamps["items"]] == ["lamp-a1", "lamp-b2"] and lamps["total"] == 3
    assert get(server, "/v1/catalog/items", keys["read"], category="pumps").json() == {
        "items": [], "total": 0, "limit": 100, "offset": 0}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "ten"}])
def test_out_of_range_paging_is_a_422_naming_the_parameter(shop, params) -> None:
    server, keys = shop
    r = get(server, "/v1/catalog/items", keys["read"], **params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == next(iter(params))


def test_the_catalog_needs_a_read_key(shop) -> None:
    server, keys = shop
    for path in ("/v1/catalog/items", "/v1/catalog/items/lamp-a1"):
        missing = get(server, path, None)
        assert missing.status_code == 401 and set(missing.json()["error"]) >= {"code", "message", "field"}
        assert get(server, path, "aab_not-a-key").status_code == 401
        client = get(server, path, keys["client"])
        assert client.status_code == 403 and client.json()["error"]["code"] == "forbidden"
        assert get(server, path, keys["admin"]).status_code == 200


def test_one_item_and_an_unknown_id(shop) -> None:
    server, keys = shop
    r = get(server, "/v1/catalog/items/cable:c3", keys["read"])
    assert r.status_code == 200 and r.json()["image_type"] == "image/webp" and r.json()["category"] == "cables"
    unknown = get(server, "/v1/catalog/items/pumps-01", keys["read"])
    assert unknown.status_code == 404
    assert unknown.json() == {"error": {"code": "item_not_found", "field": "item_id",
                                        "message": unknown.json()["error"]["message"]}}


@pytest.mark.parametrize("item_id, photo, media_type", [
    ("lamp-a1", PNG, "image/png"), ("lamp-b2", JPEG, "image/jpeg"), ("cable:c3", WEBP, "image/webp")])
def test_an_items_image_url_is_its_photo_with_its_media_type(shop, item_id, photo, media_type) -> None:
    server, keys = shop
    url = get(server, f"/v1/catalog/items/{item_id}", keys["read"]).json()["image"]
    r = httpx.get(server.url + url)  # public, like generated pictures
    assert r.status_code == 200 and r.headers["content-type"] == media_type and r.content == photo
    assert "immutable" in r.headers["cache-control"]
    again = httpx.get(server.url + url, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


def test_the_image_route_takes_only_a_hex_sha256(shop) -> None:
    server, _ = shop
    for name in ("lamp-a1", hashlib.sha256(PNG).hexdigest().upper(), "0" * 63, hashlib.sha256(PNG).hexdigest() + ".png"):
        r = httpx.get(f"{server.url}/v1/images/{name}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "image_not_found", name
    assert httpx.get(f"{server.url}/v1/images/..%2F..%2Farmor_ab.duckdb").status_code == 404
    assert httpx.get(f"{server.url}/v1/images/{'0' * 64}").status_code == 404  # well formed, not stored


@pytest.mark.parametrize("item_id", ["lamp-b2", "cable:c3"])
def test_control_is_served_the_imported_items_own_copy(shop, item_id) -> None:
    server, keys = shop
    r = get(server, f"/v1/experiments/{EXP}/content", keys["admin"], user_id="qa", item_id=item_id,
            force_variant="control")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["source"], body["fallback"]) == ("catalog", None)
    assert body["content"] == {"format": "armor-interleaved/1", "metadata": {"source": "catalog", "item_id": item_id},
                               "segments": [{"type": "text", "text": BY_ID[item_id][0].description}]}
    # A demo product is not in this catalog: no control copy for it.
    demo = get(server, f"/v1/experiments/{EXP}/content", keys["admin"], user_id="qa", item_id="pumps-01",
               force_variant="control").json()
    assert demo["content"] is None and demo["fallback"] == "unknown_item"


def test_the_demo_site_lists_and_shows_the_imported_items(shop) -> None:
    server, keys = shop
    listing = httpx.get(f"{server.url}/demo/")
    assert listing.status_code == 200
    text = listing.text
    assert "5 products in 2 categories" in text
    assert text.index("<h2>lamps</h2>") < text.index("<h2>cables</h2>")  # by category, in catalog order
    for item, photo in ITEMS:
        assert html.escape(item.name) in text
        if photo is not None:
            assert f'src="/v1/images/{item.image}"' in text
    assert text.count('class="thumb no-photo"') == 2  # the two items without a photo
    assert "pumps-01" not in text and "Pump P-01" not in text

    item, _ = BY_ID["lamp-b2"]
    page = httpx.get(f"{server.url}/demo/products/lamp-b2")
    assert page.status_code == 200
    assert f'<img class="picture" src="/v1/images/{item.image}"' in page.text
    assert "<p>The lamp-b2 of our own range.</p>" in page.text  # paragraphs of the control copy, escaped
    assert "<p>Made in Lyon, &lt;b&gt;not&lt;/b&gt; a demo item &amp; proud of it.</p>" in page.text
    assert "<th>power</th><td>20 W</td>" in page.text
    config = json.loads(page.text.split("})(", 1)[1].split(");</script>", 1)[0])
    assert config["item"] == "lamp-b2" and config["key"] == keys["client"]
    assert httpx.get(f"{server.url}/demo/products/cable:c3").status_code == 200
    assert httpx.get(f"{server.url}/demo/products/pumps-01").status_code == 404


def test_the_site_alone_reads_the_catalog_from_the_api(shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """``create_site_app`` has no database: it lists the API's catalog, its photos on the API."""
    from armor_ab.web import routes

    server, keys = shop
    monkeypatch.setenv("ARMOR_AB_DEMO_API", server.url)
    monkeypatch.setenv("ARMOR_AB_DEMO_CLIENT_KEY", keys["client"])
    monkeypatch.setenv("ARMOR_AB_KEY", keys["read"])
    monkeypatch.setattr(routes, "_remote", {})
    with TestClient(routes.create_site_app()) as site:
        listing = site.get("/demo/").text
        assert "5 products in 2 categories" in listing
        assert f'src="{server.url}/v1/images/{BY_ID["lamp-a1"][0].image}"' in listing
        page = site.get("/demo/products/lamp-a1")
        assert page.status_code == 200 and "Lumen LAMP-A1" in page.text
        # A catalog read once stays while the API cannot answer (a customer's site keeps its pages).
        monkeypatch.setattr(routes, "REMOTE_CATALOG_TTL_S", 0.0)
        monkeypatch.setenv("ARMOR_AB_DEMO_API", server.url)
        monkeypatch.setenv("ARMOR_AB_KEY", "aab_revoked-or-wrong")
        assert site.get("/demo/products/lamp-a1").status_code == 200


def test_exposures_carry_the_imported_items_category(tmp_path: Path) -> None:
    db = tmp_path / "armor_ab.duckdb"
    keys = seed_database(db, items=[])
    con = connect(db)
    try:
        import_catalog(con, db, ITEMS[2:4], file="cables.csv")
    finally:
        con.close()
    server = Server(db).start()
    try:
        r = get(server, f"/v1/experiments/{EXP}/assignment", keys["client"], user_id="segment-user", item_id="cable-d4")
        assert r.status_code == 200 and r.json()["in_experiment"]
    finally:
        server.stop()  # commits the exposure and releases the file
    with duckdb.connect(str(db), read_only=True) as ro:
        (props,) = ro.execute("SELECT properties FROM events WHERE user_id = 'segment-user' AND type = 'exposure'"
                              ).fetchone()
    assert json.loads(props)["category"] == "cables"


def test_serve_refuses_the_old_catalog_option(tmp_path: Path) -> None:
    from armor_ab.cli import app

    r = CliRunner().invoke(app, ["serve", "--db", str(tmp_path / "x.duckdb"), "--catalog", str(tmp_path)])
    assert r.exit_code == 2
    assert "--catalog is gone" in r.output and "armor-ab catalog import" in r.output
    assert not (tmp_path / "x.duckdb").exists()  # refused before anything opened the database
