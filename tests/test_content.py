"""Variant content end to end: generate (armor-tiny), review, and serve through the real API."""

from __future__ import annotations

from pathlib import Path

import duckdb
import httpx
import pytest
from typer.testing import CliRunner

from armor_ab.assets import SHIPPED_MODELS
from armor_ab.cli import app
from armor_ab.experiments.loader import load_experiment_file
from tests.helpers.content import CHECKS_OFF, EXP, users_by_variant
from tests.helpers.platform import DEMO_EXPERIMENT, Server, seed_database

runner = CliRunner()


@pytest.fixture(scope="module")
def content_platform(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("content")
    yaml_file = tmp / "exp.yaml"
    yaml_file.write_text(DEMO_EXPERIMENT.read_text().replace(
        'prompt: "Describe {name} for our catalog, with pictures."',
        'prompt: "Describe {name} ({specs}) for our catalog, with pictures.", model: armor-tiny, max_images: 1')
        + CHECKS_OFF)
    db = tmp / "armor_ab.duckdb"
    # The server's catalog (the database's): five items; pages are generated for the first three.
    keys = seed_database(db, yaml_file, items=["pumps-01", "valves-02", "motors-03", "bearings-04", "gearboxes-05"])
    first = "pumps-01,valves-02,motors-03"
    r = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--items", first, "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "3 generated, 0 already there" in r.output
    again = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--items", first, "--db", str(db)])
    assert "0 generated, 3 already there" in again.output
    assert runner.invoke(app, ["content", "approve", EXP, "--item", "pumps-01", "--db", str(db)]).exit_code == 0
    assert runner.invoke(app, ["content", "reject", EXP, "--item", "valves-02", "--db", str(db)]).exit_code == 0
    listed = runner.invoke(app, ["content", "list", EXP, "--db", str(db)]).output
    assert "pumps-01\tarmor\tapproved" in listed and "motors-03\tarmor\tpending" in listed
    # A page with a picture, as the trained model writes them (armor-tiny's random weights rarely draw).
    from PIL import Image

    from armor_ab.model.interleaved import ContentMetadata, ImageSegment, InterleavedContent, TextSegment
    from armor_ab.store.content import images_dir_for, save_generated, set_review
    from armor_ab.store.db import connect

    page = InterleavedContent(
        [TextSegment("Gearbox G-05: ratio 10:1."), ImageSegment.from_pil(Image.new("RGB", (64, 64), "teal")),
         TextSegment(" Quiet and compact.")],
        ContentMetadata(model="hand-made", config_hash="-", seed=0, prompt="Describe Gearbox G-05"))
    con = connect(db)
    save_generated(con, images_dir_for(db), EXP, "armor", "gearboxes-05", page, "Describe Gearbox G-05")
    set_review(con, EXP, "approved", item_id="gearboxes-05")
    # As older versions stored pages of a shipped model: its directory on this server as the model.
    import json

    stored = json.loads(con.execute("SELECT content FROM content WHERE item_id = 'gearboxes-05'").fetchone()[0])
    stored["metadata"]["model"] = str(SHIPPED_MODELS / "armor-demo")
    con.execute("UPDATE content SET content = ?, model = ? WHERE item_id = 'gearboxes-05'",
                [json.dumps(stored), stored["metadata"]["model"]])
    con.close()
    # bearings-04 is in the catalog but has no page: "missing".
    server = Server(db).start()
    yield server, keys, load_experiment_file(yaml_file), db
    server.stop()


def get_content(server, keys, user, item, scope="client") -> dict:
    r = httpx.get(f"{server.url}/v1/experiments/{EXP}/content", params={"user_id": user, "item_id": item},
                  headers={"Authorization": f"Bearer {keys[scope]}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_approved_content_is_served_with_images(content_platform) -> None:
    server, keys, spec, db = content_platform
    users = users_by_variant(spec)
    body = get_content(server, keys, users["armor"], "pumps-01")
    assert body["variant"] == "armor" and body["source"] == "armor" and body["fallback"] is None
    assert body["content"]["format"] == "armor-interleaved/1"
    assert body["content"]["metadata"]["model"] == "armor-tiny"
    assert "Pump P-01" in body["content"]["metadata"]["prompt"]
    assert body["exposure_id"]
    drawn = get_content(server, keys, users["armor"], "gearboxes-05")
    assert [s["type"] for s in drawn["content"]["segments"]] == ["text", "image", "text"]
    for seg in drawn["content"]["segments"]:
        if seg["type"] == "image":
            assert seg["url"] == f"/v1/images/{seg['sha256']}" and (seg["width"], seg["height"]) == (64, 64)
            img = httpx.get(server.url + seg["url"])
            assert img.status_code == 200 and img.headers["content-type"] == "image/png"
            assert img.headers["etag"] == f'"{seg["sha256"]}"' and "immutable" in img.headers["cache-control"]
            import hashlib

            assert hashlib.sha256(img.content).hexdigest() == seg["sha256"]
            cached = httpx.get(server.url + seg["url"], headers={"If-None-Match": img.headers["etag"]})
            assert cached.status_code == 304


def test_content_names_the_model_never_a_path(content_platform) -> None:
    """Visitors get the model's name and config hash, never a path on the server: neither for a page
    an older version stored under the model's directory, nor for pages the shipped model writes."""
    server, keys, spec, db = content_platform
    user = users_by_variant(spec)["armor"]
    r = httpx.get(f"{server.url}/v1/experiments/{EXP}/content", params={"user_id": user, "item_id": "gearboxes-05"},
                  headers={"Authorization": f"Bearer {keys['client']}"})
    assert r.status_code == 200 and r.json()["source"] == "armor"
    assert r.json()["content"]["metadata"]["model"] == "armor-demo"
    assert r.json()["content"]["metadata"]["config_hash"] == "-"
    review = httpx.get(f"{server.url}/v1/experiments/{EXP}/content/review", params={"item_id": "gearboxes-05"},
                       headers={"Authorization": f"Bearer {keys['read']}"})
    assert review.json()[0]["model"] == "armor-demo"
    for answer in (r.text, review.text):
        for path in (SHIPPED_MODELS, db.parent, Path(__file__).resolve().parents[1]):
            assert str(path) not in answer
    from armor_ab.content.generate import load_generator, resolve_model

    shipped = resolve_model("armor-demo")
    assert Path(shipped).is_absolute()  # the shipped model loads from its directory...
    assert load_generator(shipped).model_name == "armor-demo"  # ...and its pages name it


def test_fallbacks_to_control_copy(content_platform) -> None:
    server, keys, spec, db = content_platform
    users = users_by_variant(spec)
    control = get_content(server, keys, users["control"], "pumps-01")
    assert control["source"] == "catalog" and control["fallback"] is None
    assert control["content"]["segments"] == [{"type": "text", "text": control["content"]["segments"][0]["text"]}]
    assert control["content"]["segments"][0]["text"].startswith("Pump P-01.")
    rejected = get_content(server, keys, users["armor"], "valves-02")
    assert (rejected["source"], rejected["fallback"]) == ("catalog", "unapproved")
    pending = get_content(server, keys, users["armor"], "motors-03")
    assert (pending["source"], pending["fallback"]) == ("catalog", "unapproved")
    missing = get_content(server, keys, users["armor"], "bearings-04")
    assert (missing["source"], missing["fallback"]) == ("catalog", "missing")
    assert missing["content"]["segments"][0]["text"].startswith("Bearing")
    unknown = get_content(server, keys, users["armor"], "no-such-item")
    assert unknown["content"] is None and unknown["fallback"] == "missing"  # no page, and no control copy
    unknown_control = get_content(server, keys, users["control"], "no-such-item")
    assert unknown_control["content"] is None and unknown_control["fallback"] == "unknown_item"
    odd = 'x"\\ü\u2028</script>'
    assert get_content(server, keys, users["control"], odd)["item_id"] == odd  # hand-built JSON stays JSON
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'armor_ab_content_fallback_total{experiment="catalog-interleaved",reason="unapproved"} 2.0' in metrics
    assert 'armor_ab_content_fallback_total{experiment="catalog-interleaved",reason="missing"} 2.0' in metrics  # bearings-04 and the unknown item


def test_approving_through_the_api_changes_what_is_served(content_platform) -> None:
    server, keys, spec, db = content_platform
    user = users_by_variant(spec)["armor"]
    assert get_content(server, keys, user, "motors-03")["source"] == "catalog"
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    review = httpx.get(f"{server.url}/v1/experiments/{EXP}/content/review", params={"status": "pending"},
                       headers={"Authorization": f"Bearer {keys['read']}"}).json()
    assert [r["item_id"] for r in review] == ["motors-03"]
    r = httpx.post(f"{server.url}/v1/experiments/{EXP}/content/review", json={"status": "approved", "item_id": "motors-03"},
                   headers=admin)
    assert r.status_code == 200 and r.json()["changed"] == 1
    assert get_content(server, keys, user, "motors-03")["source"] == "armor"
    bad = httpx.post(f"{server.url}/v1/experiments/{EXP}/content/review", json={"status": "approved"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "item_id"
    none = httpx.post(f"{server.url}/v1/experiments/{EXP}/content/review",
                      json={"status": "approved", "item_id": "zzz"}, headers=admin)
    assert none.status_code == 404


def test_content_errors(content_platform) -> None:
    server, keys, spec, db = content_platform
    h = {"Authorization": f"Bearer {keys['client']}"}
    r = httpx.get(f"{server.url}/v1/experiments/{EXP}/content", params={"user_id": "u"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "item_id"
    assert httpx.get(f"{server.url}/v1/images/../../etc/passwd").status_code == 404
    assert httpx.get(f"{server.url}/v1/images/{'0' * 64}").json()["error"]["code"] == "image_not_found"


def test_bad_prompt_template_names_the_field(tmp_path) -> None:
    yaml_file = tmp_path / "exp.yaml"
    yaml_file.write_text(DEMO_EXPERIMENT.read_text().replace("Describe {name}", "Describe {colour_code}"))
    db = tmp_path / "b.duckdb"
    seed_database(db, yaml_file, items=["pumps-01", "valves-02"])
    r = runner.invoke(app, ["content", "generate", "--experiment", EXP, "--db", str(db)])
    assert r.exit_code == 2 and "variants[1].content.prompt" in r.output and "{colour_code}" in r.output
    assert "'pumps-01'" in r.output and "price_band" in r.output  # the item, and the fields it has
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM content").fetchone()[0] == 0
