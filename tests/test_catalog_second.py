"""Acceptance (issue 16): a second catalog, not the demo's, with no code change.

Twelve products in three categories the demo lacks (kettles, grinders, scales), their photos drawn here
(PNG and JPEG), ``spec_<label>`` columns and an extra column (``material``), go through the real
CLI into a real DuckDB file: ``catalog import``, ``keys create``, an experiment whose ARMOR prompt
names ``{name}``, ``{spec_capacity}`` and ``{material}`` (``experiment validate --db`` checks it against
the catalog), ``apply``/``start``, ``content generate`` with armor-tiny, ``content approve``. Then a real
``armor-ab serve`` on loopback serves the generated page to an ARMOR visitor, the item's own
description to a control visitor, the catalog at ``/v1/catalog/items`` and ``/demo/`` with the photos.
Nothing of the demo catalog appears anywhere.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from armor_ab.assets import DEMO_CATALOG
from armor_ab.experiments.loader import load_experiment_file
from tests.helpers.content import CHECKS_OFF, stored_pages, users_by_variant
from tests.helpers.platform import Server
from tests.helpers.second_catalog import draw_photo, products

# The whole walk (armor-tiny generates five pages) and a server: a minute or two on a laptop.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXP = "second-catalog"
PROMPT = "Write the catalog page of {name}: it holds {spec_capacity} and is made of {material}."
EXPERIMENT_YAML = f"""\
key: {EXP}
name: Generated pages for a kitchen catalog
hypothesis: Generated pages raise dwell time on kitchen products.
owner: qa@example.com
variants:
  - {{key: control, weight: 0.5, content: {{source: catalog}}}}
  - {{key: armor, weight: 0.5, content: {{source: armor, model: armor-tiny, max_images: 1, prompt: "{PROMPT}"}}}}
metrics: {{primary: dwell_time_per_view}}
""" + CHECKS_OFF  # not about the guardrails: armor-tiny's pages pass none of them
GENERATED = "kettles,grinder-02"  # one category and one id: five pages
GENERATED_IDS = ["kettle-01", "kettle-02", "kettle-03", "kettle-04", "grinder-02"]


def cli(*args: str, expect: int = 0, timeout: float = 600) -> subprocess.CompletedProcess:
    """``armor-ab ARGS`` as a user runs it: a child process of this interpreter."""
    r = subprocess.run([sys.executable, "-m", "armor_ab", *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == expect, (f"armor-ab {' '.join(args)} exited {r.returncode}, expected {expect}\n"
                                    f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}")
    return r


def demo_catalog() -> tuple[set[str], set[str], set[str]]:
    """The shipped demo catalog's ids, names and categories (none of which may show up here)."""
    data = json.loads((DEMO_CATALOG / "catalog.json").read_text())
    return ({p["id"] for p in data["products"]}, {p["name"] for p in data["products"]},
            {p["category"] for p in data["products"]})


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> dict:
    """Everything a user does on the command line, before the server starts (it then holds the database)."""
    tmp = tmp_path_factory.mktemp("second-catalog")
    db = tmp / "kitchen.duckdb"
    rows = products()
    photos = {row["id"]: draw_photo(tmp / "photos" / row["image"], i) for i, row in enumerate(rows)}
    catalog = tmp / "kitchen.csv"
    with catalog.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out: dict = {"tmp": tmp, "db": db, "rows": rows, "photos": photos}
    out["import"] = cli("catalog", "import", str(catalog), "--images", str(tmp / "photos"), "--db", str(db))
    out["list"] = cli("catalog", "list", "--db", str(db))
    out["list_scales"] = cli("catalog", "list", "--category", "scales", "--db", str(db))
    out["show"] = json.loads(cli("catalog", "show", "grinder-02", "--db", str(db)).stdout)
    out["keys"] = {scope: cli("keys", "create", "--scope", scope, "--name", f"kitchen-{scope}", "--db", str(db))
                   .stdout.strip() for scope in ("client", "read")}
    experiment = tmp / "kitchen-experiment.yaml"
    experiment.write_text(EXPERIMENT_YAML)
    out["spec"] = load_experiment_file(experiment)
    out["validate"] = cli("experiment", "validate", str(experiment), "--db", str(db))
    # Prompts naming fields this catalog lacks (in part, or the demo's) are refused before anything runs.
    for name, field in (("partial", "{spec_burr}"), ("demo", "{spec_power}")):
        bad = tmp / f"{name}.yaml"
        bad.write_text(EXPERIMENT_YAML.replace("{material}", field))
        out[f"validate_{name}"] = cli("experiment", "validate", str(bad), "--db", str(db), expect=2)
    out["apply"] = cli("experiment", "apply", str(experiment), "--db", str(db))
    out["start"] = cli("experiment", "start", EXP, "--db", str(db))
    out["generate"] = cli("content", "generate", "--experiment", EXP, "--items", GENERATED, "--db", str(db))
    out["approve"] = cli("content", "approve", EXP, "--all", "--db", str(db))
    out["pages"] = stored_pages(db, EXP)
    return out


@pytest.fixture(scope="module")
def served(walk):
    server = Server(walk["db"], extra_env={"ARMOR_AB_DEMO_CLIENT_KEY": walk["keys"]["client"],
                                           "ARMOR_AB_DEMO_EXPERIMENT": EXP}).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_cli_imports_the_catalog_and_checks_the_prompt(walk) -> None:
    assert "12 items: 12 added, 0 changed, 0 unchanged" in walk["import"].stdout
    listed = walk["list"].stdout.splitlines()
    assert len(listed) == 1 + 12, walk["list"].stdout
    assert [line.split()[0] for line in listed[1:]] == [row["id"] for row in walk["rows"]]
    assert all(line.split()[-1] == "yes" for line in listed[1:])  # every item has its photo
    assert [line.split()[0] for line in walk["list_scales"].stdout.splitlines()[1:]] == [
        "scale-01", "scale-02", "scale-03", "scale-04"]
    shown = walk["show"]
    assert (shown["name"], shown["category"]) == ("Flint grinder", "grinders")
    assert shown["specs"] == {"capacity": "300 g", "burr": "flat 64 mm"}  # empty spec cells are no spec
    assert shown["fields"] == {"material": "stainless steel"}
    assert shown["image"] == hashlib.sha256(walk["photos"]["grinder-02"]).hexdigest()
    assert shown["image_type"] == "image/jpeg"  # rows alternate PNG and JPEG; grinder-02 is the sixth
    assert Path(shown["image_file"]).read_bytes() == walk["photos"]["grinder-02"]
    assert walk["keys"]["client"].startswith("aab_") and walk["keys"]["read"].startswith("aab_")
    assert "prompts fit the 12 catalog items" in walk["validate"].stdout
    assert "{spec_burr}, which 8 of 12 catalog items lack" in walk["validate_partial"].stderr
    assert "{spec_power}, which no catalog item has" in walk["validate_demo"].stderr
    assert "running" in walk["start"].stdout
    assert f"{EXP}: 5 generated, 0 already there" in walk["generate"].stdout
    assert f"{EXP}: 5 approved" in walk["approve"].stdout
    assert sorted(walk["pages"]) == sorted(GENERATED_IDS)
    for item_id, page in walk["pages"].items():
        row = next(r for r in walk["rows"] if r["id"] == item_id)
        assert (page.variant, page.status) == ("armor", "approved")
        # The prompt was rendered from the imported fields: name, a spec column and the extra column.
        assert page.prompt == PROMPT.format(name=row["name"], spec_capacity=row["spec_capacity"],
                                            material=row["material"])


def content(server: Server, key: str, user: str, item: str) -> dict:
    r = httpx.get(f"{server.url}/v1/experiments/{EXP}/content", params={"user_id": user, "item_id": item},
                  headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_armor_visitors_get_the_generated_page_control_visitors_the_description(walk, served) -> None:
    users = users_by_variant(walk["spec"])
    key = walk["keys"]["client"]
    for item_id in ("kettle-03", "grinder-02"):
        body = content(served, key, users["armor"], item_id)
        assert (body["variant"], body["source"], body["fallback"]) == ("armor", "armor", None), body
        assert body["content"] == walk["pages"][item_id].public()["content"]  # the page generated and approved
        assert body["content"]["metadata"]["model"] == "armor-tiny"
        assert "it holds" in body["content"]["metadata"]["prompt"]
    rows = {row["id"]: row for row in walk["rows"]}
    for item_id in ("kettle-03", "scale-04"):
        body = content(served, key, users["control"], item_id)
        assert (body["variant"], body["source"], body["fallback"]) == ("control", "catalog", None), body
        assert body["content"]["segments"] == [{"type": "text", "text": rows[item_id]["description"]}]
    # An item without a generated page: the ARMOR visitor gets the item's description too.
    missing = content(served, key, users["armor"], "scale-04")
    assert (missing["source"], missing["fallback"]) == ("catalog", "missing")
    assert missing["content"]["segments"] == [{"type": "text", "text": rows["scale-04"]["description"]}]
    # A demo item is not in this catalog: no control copy for it.
    demo = content(served, key, users["control"], "pumps-01")
    assert demo["content"] is None and demo["fallback"] == "unknown_item"


def test_the_catalog_api_serves_the_twelve_items(walk, served) -> None:
    headers = {"Authorization": f"Bearer {walk['keys']['read']}"}
    r = httpx.get(f"{served.url}/v1/catalog/items", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 12 and [i["id"] for i in body["items"]] == [row["id"] for row in walk["rows"]]
    grinders = httpx.get(f"{served.url}/v1/catalog/items", params={"category": "grinders"}, headers=headers).json()
    assert [i["id"] for i in grinders["items"]] == ["grinder-01", "grinder-02", "grinder-03", "grinder-04"]
    one = httpx.get(f"{served.url}/v1/catalog/items/scale-02", headers=headers).json()
    sha = hashlib.sha256(walk["photos"]["scale-02"]).hexdigest()
    assert one["specs"] == {"capacity": "5 kg", "resolution": "1 g"} and one["fields"] == {"material": "bamboo"}
    assert (one["image"], one["image_type"]) == (f"/v1/images/{sha}", "image/jpeg")
    assert httpx.get(f"{served.url}/v1/catalog/items/pumps-01", headers=headers).status_code == 404


class ProductLinks(HTMLParser):
    """The /demo/ list page's product links under each category heading (h2)."""

    def __init__(self) -> None:
        super().__init__()
        self.heading: str | None = None
        self.in_h2 = False
        self.sections: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h2":
            self.in_h2, self.heading = True, ""
        href = dict(attrs).get("href") or ""
        if tag == "a" and href.startswith("/demo/products/"):
            assert self.heading is not None, f"product link {href} before any category heading"
            self.sections[self.heading].append(href.removeprefix("/demo/products/").split("?")[0])

    def handle_data(self, data: str) -> None:
        if self.in_h2:
            self.heading = (self.heading or "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self.in_h2 = False
            self.sections.setdefault(self.heading.strip(), [])
            self.heading = self.heading.strip()


def test_the_demo_site_lists_and_shows_the_new_catalog_with_its_photos(walk, served) -> None:
    page = httpx.get(f"{served.url}/demo/", timeout=30)
    assert page.status_code == 200
    links = ProductLinks()
    links.feed(page.text)
    expected: dict[str, list[str]] = {}
    for row in walk["rows"]:
        expected.setdefault(row["category"], []).append(row["id"])
    assert links.sections == expected  # all twelve, each under its own category, nothing else
    demo_ids, demo_names, demo_categories = demo_catalog()
    for text in (*demo_ids, *demo_names):
        assert text not in page.text, f"demo item {text!r} on the list page"
    assert not demo_categories & set(links.sections)
    for row in walk["rows"]:
        product = httpx.get(f"{served.url}/demo/products/{row['id']}", timeout=30)
        assert product.status_code == 200, row["id"]
        assert escape(row["name"]) in product.text and escape(row["description"]) in product.text
        sha = hashlib.sha256(walk["photos"][row["id"]]).hexdigest()
        url = f"/v1/images/{sha}"
        assert f'src="{url}"' in product.text, f"{row['id']}: no photo {url} on its page"
        photo = httpx.get(served.url + url, timeout=30)
        assert photo.status_code == 200 and photo.content == walk["photos"][row["id"]]
        assert photo.headers["content-type"] == ("image/png" if row["image"].endswith(".png") else "image/jpeg")
    # The product pages run this experiment with the configured client key.
    assert f'"experiment": "{EXP}"' in product.text
    assert httpx.get(f"{served.url}/demo/products/pumps-01", timeout=30).status_code == 404
