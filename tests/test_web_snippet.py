"""armor-ab.js as served, the events beacon, and the example catalog site (in-process, no browser)."""

from __future__ import annotations

import gzip
import html
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from armor_ab.catalog.demo import demo_items
from armor_ab.store.process import query
from armor_ab.web.routes import STATIC
from armor_ab.web.server import ServerSettings, create_server
from armor_ab.web.site import script_json
from tests.helpers.platform import seed_database

EXP = "catalog-interleaved"
SNIPPET = STATIC / "armor-ab.js"


def demo_catalog() -> dict:
    """The demo catalog's items by id, as the seeded database holds them."""
    return {item.id: item for item, _ in demo_items()}


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    db = tmp_path_factory.mktemp("web") / "armor_ab.duckdb"
    keys = seed_database(db)
    with TestClient(create_server(ServerSettings(db_path=db)), base_url="http://127.0.0.1") as client:
        yield client, keys, db


def test_snippet_is_at_most_6_kb_gzipped() -> None:
    size = len(gzip.compress(SNIPPET.read_bytes(), 9))
    assert size <= 6 * 1024, f"armor-ab.js is {size} bytes gzipped"


def test_snippet_is_plain_javascript() -> None:
    if shutil.which("node") is None:
        why = "node is not installed (make system-deps installs nodejs)"
        if os.environ.get("ARMOR_AB_REQUIRE_BROWSER") == "1":  # `make test`: no silent skip
            pytest.fail(f"{why} (ARMOR_AB_REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(why)
    r = subprocess.run(["node", "--check", str(SNIPPET)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_snippet_is_served_with_type_and_caching_headers(web) -> None:
    client, _, _ = web
    r = client.get("/v1/sdk/armor-ab.js", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/javascript")
    assert r.content == SNIPPET.read_bytes()
    assert "max-age=" in r.headers["cache-control"] and "public" in r.headers["cache-control"]
    etag = r.headers["etag"]
    assert etag and "content-encoding" not in r.headers
    cached = client.get("/v1/sdk/armor-ab.js", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag
    zipped = client.get("/v1/sdk/armor-ab.js", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["etag"] == etag
    assert zipped.content == SNIPPET.read_bytes()  # httpx decodes it
    assert "accept-encoding" in zipped.headers["vary"].lower()


def test_demo_list_has_every_catalog_item(web, monkeypatch) -> None:
    client, keys, _ = web
    monkeypatch.setenv("ARMOR_AB_DEMO_CLIENT_KEY", keys["client"])
    r = client.get("/demo/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    items = demo_catalog()
    assert len(items) == 42
    for item_id, p in items.items():
        assert f'href="/demo/products/{item_id}"' in r.text
        assert html.escape(p.name) in r.text
        assert f'src="/v1/images/{p.image}"' in r.text  # the photo, from the image store
    assert '<script src="/v1/sdk/armor-ab.js">' in r.text  # flushes what earlier pages queued
    assert 'id="no-key"' not in r.text
    assert client.get("/demo", follow_redirects=False).headers["location"] == "/demo/"
    assert client.get("/demo/static/demo.css").headers["content-type"].startswith("text/css")


def test_product_page_has_control_copy_picture_and_inquiry_button(web, monkeypatch) -> None:
    client, keys, _ = web
    monkeypatch.setenv("ARMOR_AB_DEMO_CLIENT_KEY", keys["client"])
    p = demo_catalog()["pumps-01"]
    r = client.get("/demo/products/pumps-01")
    assert r.status_code == 200
    assert f"<p>{html.escape(p.description)}</p>" in r.text  # the control copy, without JS
    assert 'id="description"' in r.text and 'id="inquire"' in r.text and "Send an inquiry" in r.text
    assert f'<img class="picture" src="/v1/images/{p.image}"' in r.text
    assert '<script src="/v1/sdk/armor-ab.js">' in r.text and 'ArmorAB.track("inquiry")' in r.text
    config = json.loads(r.text.split("})(", 1)[1].split(");</script>", 1)[0])
    assert config == {"api": "", "key": keys["client"], "experiment": EXP, "item": "pumps-01",
                      "alt": f"Illustration of {p.name}"}
    picture = client.get(f"/v1/images/{p.image}")
    assert picture.status_code == 200 and picture.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.headers["content-type"] == "image/png"
    assert client.get("/v1/images/..%2Fcatalog.json").status_code == 404
    assert client.get("/demo/pictures/pumps-01.png").status_code == 404  # no catalog directory is served
    missing = client.get("/demo/products/no-such-item")
    assert missing.status_code == 404 and "no-such-item" in missing.text


def test_demo_without_a_usable_key_says_so(web, monkeypatch) -> None:
    client, keys, _ = web
    monkeypatch.delenv("ARMOR_AB_DEMO_CLIENT_KEY", raising=False)
    for path in ("/demo/", "/demo/products/valves-02"):
        r = client.get(path)
        assert r.status_code == 200 and 'id="no-key"' in r.text and "ARMOR_AB_DEMO_CLIENT_KEY" in r.text
        assert "<script" not in r.text
    page = client.get("/demo/products/valves-02").text
    assert html.escape(demo_catalog()["valves-02"].description) in page  # still the catalog's page
    monkeypatch.setenv("ARMOR_AB_DEMO_CLIENT_KEY", keys["admin"])  # a secret key is never published
    r = client.get("/demo/products/valves-02")
    assert 'id="no-key"' in r.text and keys["admin"] not in r.text


def test_inline_config_cannot_break_out_of_the_script() -> None:
    text = script_json({"alt": "</script><script>alert(1)</script> & <!--"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["alt"] == "</script><script>alert(1)</script> & <!--"


def _event(**kw) -> dict:
    return {"event_id": str(uuid.uuid4()), "experiment": EXP, "variant": "control", "user_id": "beacon-user",
            "item_id": "pumps-01", "type": "dwell", "value": 1234.0, **kw}


def test_beacon_commits_text_plain_batches_with_a_client_key(web) -> None:
    client, keys, _ = web
    events = [_event(), _event(type="inquiry", value=None)]
    body = json.dumps({"events": events})
    url = f"/v1/events/beacon?key={keys['client']}"
    r = client.post(url, content=body, headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0}
    again = client.post(url, content=body, headers={"Content-Type": "text/plain"})
    assert again.json() == {"accepted": 0, "duplicates": 2}  # a re-sent queue is stored once
    rows = client.app.state.armor.store.read(
        query, "SELECT type, value FROM events WHERE user_id = 'beacon-user' ORDER BY type").result(10)
    assert rows == [("dwell", 1234.0), ("inquiry", None)]


@pytest.mark.parametrize(
    ("key", "body", "status", "code", "field"),
    [
        (None, {"events": [_event()]}, 401, "unauthorized", "key"),
        ("aab_nope_nope", {"events": [_event()]}, 401, "unauthorized", None),
        ("admin", {"events": [_event()]}, 403, "forbidden", "key"),
        ("read", {"events": [_event()]}, 403, "forbidden", None),
        ("client", {"events": [_event(value=-1.0)]}, 422, "validation_error", "events[0]"),
        ("client", {"events": [_event(experiment="nope")]}, 422, "unknown_reference", "events[0].experiment"),
        ("client", "not json", 400, "invalid_json", None),
    ],
)
def test_beacon_refuses_what_post_events_refuses(web, key, body, status, code, field) -> None:
    client, keys, _ = web
    url = "/v1/events/beacon" + (f"?key={keys.get(key, key)}" if key else "")
    r = client.post(url, content=body if isinstance(body, str) else json.dumps(body),
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert error["field"] == field
