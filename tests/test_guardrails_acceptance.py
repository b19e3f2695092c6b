"""Issue 19's acceptance: one seeded bad page per check is caught, and a clean page passes every check.

All pages go through the pipeline together, as a batch of generated pages does: the demo experiment's
own policy (``content_checks:`` of catalog-interleaved.yaml), the shipped demo model's context (its
understanding path and judge, its picture size, its tokenizer's control tokens). Pictures are drawn
products (``catalog/draw.py``) and the catalog's own photos, each page a different item of the demo catalog.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from armor_ab.assets import DEMO_EXPERIMENT
from armor_ab.catalog.demo import demo_items
from armor_ab.catalog.draw import draw_product
from armor_ab.content.generate import load_generator, resolve_model
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.guardrails.model_context import context_for
from armor_ab.guardrails.page import Page, PageImage
from armor_ab.guardrails.pipeline import check_pages, resolve_expects

pytestmark = pytest.mark.timeout(300)


def picture(image: Image.Image | bytes) -> PageImage:
    if isinstance(image, Image.Image):
        out = io.BytesIO()
        image.save(out, "PNG")
        image = out.getvalue()
    return PageImage(hashlib.sha256(image).hexdigest(), image)


@pytest.fixture(scope="module")
def checked():
    spec = load_experiment_file(DEMO_EXPERIMENT)
    content = next(v.content for v in spec.variants if v.content.source == "armor")
    policy = spec.content_checks
    catalog = dict((item.id, (item, photo)) for item, photo in demo_items())
    items = [item for item, _ in catalog.values()]
    model = resolve_model(content.model)
    generator = load_generator(model)
    ctx = context_for(generator, model, items, policy)
    size = ctx.image_size
    expects = resolve_expects(content)
    assert expects.images == 1  # "Describe {name} for our catalog, with pictures."

    def page(item_id: str, text: str | None = None, images: tuple[PageImage, ...] | None = None) -> Page:
        item = catalog[item_id][0]
        drawn = (picture(draw_product(item.category, sum(map(ord, item_id))).resize(size)),)
        return Page(item, item.spec_line() if text is None else text, drawn if images is None else images,
                    content.prompt.format(name=item.name), expects, "armor")

    bearing_photo = picture(catalog["bearings-05"][1])  # no other page shows a bearing
    shared = picture(draw_product("sensors", 7).resize(size))
    blank = picture(Image.new("RGB", size, (200, 200, 200)))
    pages = {
        "clean": page("pumps-02"),
        "wrong_spec_value": page("motors-04", "Motor M-04: 0.75 kW, 3000 rpm."),  # the catalog says 0.55 kW
        "invented_number": page("motors-02", "Motor M-02: 4 kW, 2900 rpm, 38 kg."),  # no weight in the catalog
        "blocked_term": page("valves-05", "Valve V-05: DN65, 16 bar. The cheapest valve you can buy."),
        "missing_picture": page("motors-05", images=()),
        "blank_picture": page("bearings-02", images=(blank,)),
        "duplicate_picture": page("sensors-01", images=(shared,)),
        "duplicate_partner": page("sensors-04", images=(shared,)),
        "wrong_category_picture": page("valves-01", images=(bearing_photo,)),
        "leaked_special_token": page("gearboxes-01", "Gearbox G-01: 1:50, 250 Nm.<imgcode_17><eos>"),
    }
    results = check_pages(list(pages.values()), policy, ctx)
    return {name: pc for name, pc in zip(pages, results, strict=True)}


def failing(pc) -> dict[str, str]:
    return {r.check: r.status for r in pc.results if r.status != "pass"}


def test_a_clean_page_passes_every_check(checked) -> None:
    pc = checked["clean"]
    assert [r.check for r in pc.results] == ["spec_fidelity", "terms", "modality", "image_sanity", "image_text",
                                            "text_hygiene"]
    assert failing(pc) == {} and pc.verdict == "pass", [r.reason for r in pc.results]


@pytest.mark.parametrize(("page", "check", "verdict", "evidence"), [
    ("wrong_spec_value", "spec_fidelity", "fail", "0.75 kW"),
    ("invented_number", "spec_fidelity", "fail", "38 kg"),
    ("blocked_term", "terms", "fail", "cheapest"),
    ("missing_picture", "modality", "fail", None),
    ("blank_picture", "image_sanity", "fail", None),
    ("duplicate_picture", "image_sanity", "fail", None),
    ("duplicate_partner", "image_sanity", "fail", None),
    ("wrong_category_picture", "image_text", "warn", None),  # image_text warns by default: a human may approve
    ("leaked_special_token", "text_hygiene", "fail", "<imgcode_17>"),
])
def test_a_seeded_bad_page_is_caught_by_its_check_alone(checked, page, check, verdict, evidence) -> None:
    pc = checked[page]
    # Only the seeded fault's check objects; a blank picture shows no product either, so image_text may too.
    also = {"image_text"} if page == "blank_picture" else set()
    assert {check} <= set(failing(pc)) <= {check} | also, [r.reason for r in pc.results if r.status != "pass"]
    [result] = [r for r in pc.results if r.check == check]
    assert result.status == "fail" and result.reason and result.evidence or check == "modality"
    assert pc.verdict == verdict
    if evidence is not None:
        spans = [e.text for e in result.evidence]
        assert any(evidence in s for s in spans), spans
