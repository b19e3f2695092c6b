"""The picture guardrails: image_sanity (decodes, size, blank, near-duplicates of another item's picture) and
image_text (the demo model's own answer about each picture, and its judge, name the item's category).

Real pictures (the demo catalog's photos, ``catalog/draw.py`` drawings, the demo model's own pictures), the
real shipped model and judge; the model is loaded once for the module."""

from __future__ import annotations

import hashlib
import io
import itertools

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from armor_ab.assets import DEMO_MODEL
from armor_ab.catalog.categories import category_forms, names_category
from armor_ab.catalog.demo import demo_items
from armor_ab.catalog.draw import CATEGORIES, draw_product
from armor_ab.catalog.items import CatalogItem
from armor_ab.content.generate import load_generator, page_sampling, resolve_model
from armor_ab.experiments.content_checks import ContentChecks, Expects, ImageSanityPolicy, ImageTextPolicy
from armor_ab.experiments.models import ContentSpec
from armor_ab.guardrails import image_sanity, image_text
from armor_ab.guardrails.check import Check
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.model_context import context_for, load_judge, understanding
from armor_ab.guardrails.page import Page, PageImage
from armor_ab.guardrails.pipeline import check_pages
from armor_ab.guardrails.result import CheckResult

PROMPT = "Describe {name} for our catalog, with pictures."
SIZE = (64, 64)


@pytest.fixture(scope="module")
def items() -> dict[str, tuple[CatalogItem, bytes]]:
    return {item.id: (item, photo) for item, photo in demo_items()}


@pytest.fixture(scope="module")
def generator():
    return load_generator(resolve_model("armor-demo"))


@pytest.fixture(scope="module")
def model_ctx(generator) -> CheckContext:
    """What image_text needs: the demo model's understanding path and its judge, the demo's categories."""
    return CheckContext(categories=CATEGORIES, image_size=SIZE, understand=understanding(generator),
                        judge=load_judge("armor-demo"), model_name="armor-demo")


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def picture(data: bytes | Image.Image) -> PageImage:
    data = png(data) if isinstance(data, Image.Image) else data
    return PageImage(hashlib.sha256(data).hexdigest(), data)


def page(item: CatalogItem, *images: PageImage) -> Page:
    return Page(item, f"{item.name}: {item.spec_line}", tuple(images), PROMPT.format(name=item.name),
                Expects(images=1))


def run_check(check: Check, pages: list[Page], policy, ctx: CheckContext) -> list[CheckResult]:
    """One check as the pipeline runs it: its batch step on every page, then each page."""
    if check.prepare is not None:
        check.prepare(pages, policy, ctx)
    return [check.run(p, policy, ctx) for p in pages]


def statuses(results: list[CheckResult]) -> list[str]:
    return [r.status for r in results]


# --- image_sanity ---------------------------------------------------------------------------------------------
def test_a_blank_picture_fails_and_a_drawn_one_passes(items) -> None:
    valve, _ = items["valves-01"]
    motor, _ = items["motors-01"]
    pump, _ = items["pumps-01"]
    blank = picture(Image.new("RGB", SIZE, (245, 245, 242)))
    noise = np.random.default_rng(0).normal(0, 3, (*SIZE, 3))
    nearly = picture(Image.fromarray((np.full((*SIZE, 3), 240.0) + noise).clip(0, 255).astype("uint8")))
    drawn = picture(draw_product("valves", 11))
    results = run_check(image_sanity.CHECK, [page(valve, blank), page(motor, nearly), page(pump, drawn)],
                        ImageSanityPolicy(), CheckContext(image_size=SIZE))
    assert statuses(results) == ["fail", "fail", "pass"]
    assert "picture 1 is blank" in results[0].reason
    assert results[0].evidence[0].image == 0 and results[0].evidence[0].score == 0.0
    assert 0 < results[1].evidence[0].score < ImageSanityPolicy().min_stddev
    # The threshold is the policy's: at 0, nothing counts as blank.
    assert run_check(image_sanity.CHECK, [page(motor, nearly)], ImageSanityPolicy(min_stddev=0.0),
                     CheckContext(image_size=SIZE))[0].status == "pass"


def test_a_duplicate_picture_fails_on_both_pages_and_distinct_products_pass(items) -> None:
    (pump, pump_photo), (motor, _), (valve, valve_photo), (bearing, bearing_photo) = (
        items[i] for i in ("pumps-01", "motors-01", "valves-01", "bearings-01"))
    # The pump's photo, brightened by 10 % and saved again: other bytes, the same picture to a shopper.
    copy = ImageEnhance.Brightness(Image.open(io.BytesIO(pump_photo)).convert("RGB")).enhance(1.1)
    pages = [page(pump, picture(pump_photo)), page(valve, picture(valve_photo)), page(motor, picture(copy)),
             page(bearing, picture(bearing_photo))]
    policy = ImageSanityPolicy()
    for order in (pages, pages[::-1]):  # either order: both pages of the pair fail
        results = {r_page.item.id: r for r_page, r in
                   zip(order, run_check(image_sanity.CHECK, order, policy, CheckContext(image_size=SIZE)),
                       strict=True)}
        assert {k: r.status for k, r in results.items()} == {
            "pumps-01": "fail", "motors-01": "fail", "valves-01": "pass", "bearings-01": "pass"}
        assert "near-duplicate of a picture of item motors-01" in results["pumps-01"].reason
        assert "near-duplicate of a picture of item pumps-01" in results["motors-01"].reason
        assert results["pumps-01"].evidence[0].score <= policy.max_duplicate_distance
    # The two products that pass are far apart (the hash itself, measured independently).
    far = imagehash.phash(Image.open(io.BytesIO(valve_photo))) - imagehash.phash(Image.open(io.BytesIO(bearing_photo)))
    assert far > policy.max_duplicate_distance
    # -1 turns duplicates off.
    off = run_check(image_sanity.CHECK, pages, ImageSanityPolicy(max_duplicate_distance=-1),
                    CheckContext(image_size=SIZE))
    assert statuses(off) == ["pass"] * 4


def test_the_same_bytes_on_two_items_fail_both_and_one_items_pictures_never_do(items) -> None:
    (pump, _), (sensor, _), (gearbox, _) = (items[i] for i in ("pumps-02", "sensors-01", "gearboxes-01"))
    same = picture(draw_product("sensors", 5))
    # One item's picture on two of its pages (two variants), and twice on one page: not a duplicate.
    own = run_check(image_sanity.CHECK, [page(sensor, same), page(sensor, same, same)], ImageSanityPolicy(),
                    CheckContext(image_size=SIZE))
    assert statuses(own) == ["pass", "pass"]
    # Identical bytes on pages of two items: both fail, whichever comes first.
    for order in ([page(pump, same), page(sensor, same)], [page(sensor, same), page(pump, same)]):
        results = run_check(image_sanity.CHECK, order, ImageSanityPolicy(), CheckContext(image_size=SIZE))
        assert statuses(results) == ["fail", "fail"]
        assert all(r.evidence[0].score == 0.0 for r in results)
    # A page stored before the batch (registered by the content layer) counts as well.
    ctx = CheckContext(image_size=SIZE)
    image_sanity.register_pictures(ctx, gearbox.id, [same])
    [result] = run_check(image_sanity.CHECK, [page(pump, same)], ImageSanityPolicy(), ctx)
    assert result.status == "fail" and "item gearboxes-01" in result.reason


def test_a_picture_of_the_wrong_size_fails(items) -> None:
    valve, _ = items["valves-02"]
    big = picture(draw_product("valves", 3, size=96))
    [result] = run_check(image_sanity.CHECK, [page(valve, picture(draw_product("valves", 4)), big)],
                         ImageSanityPolicy(), CheckContext(image_size=SIZE))
    assert result.status == "fail"
    assert "picture 2 is 96x96, not the model's 64x64" in result.reason
    assert [e.image for e in result.evidence] == [1]
    # Without a known size, the size is not checked.
    [unchecked] = run_check(image_sanity.CHECK, [page(valve, big)], ImageSanityPolicy(), CheckContext())
    assert unchecked.status == "pass"


def test_bytes_that_do_not_decode_fail(items) -> None:
    motor, _ = items["motors-02"]
    whole = png(draw_product("motors", 8))
    garbage = picture(b"\x89PNG\r\n\x1a\n this is not a picture")
    truncated = picture(whole[: len(whole) // 2])
    missing = PageImage(hashlib.sha256(b"gone").hexdigest(), b"")  # a stored page whose file is missing
    results = run_check(image_sanity.CHECK,
                        [page(motor, garbage), page(motor, truncated), page(motor, missing), page(motor, picture(whole))],
                        ImageSanityPolicy(), CheckContext(image_size=SIZE))
    assert statuses(results) == ["fail", "fail", "fail", "pass"]
    assert results[0].reason == "picture 1 does not decode"
    assert results[1].reason == "picture 1 does not decode"
    assert results[2].reason == "picture 1 is missing from the image store"


def test_a_page_without_pictures_passes_both_checks(items, model_ctx) -> None:
    pump, _ = items["pumps-03"]
    bare = page(pump)
    assert image_sanity.run(bare, ImageSanityPolicy(), CheckContext()).status == "pass"
    result = image_text.run(bare, ImageTextPolicy(), model_ctx)
    assert (result.status, result.reason) == ("pass", "no pictures to check")


# --- image_text -----------------------------------------------------------------------------------------------
def test_names_category_reads_singulars_and_refuses_two_categories() -> None:
    assert category_forms("gearboxes") == ("gearboxes", "gearbox")
    assert category_forms("electric kettles") == ("electric kettles", "electric kettle")
    assert category_forms("batteries") == ("batteries", "battery")
    assert names_category("This is a pump.", "pumps", CATEGORIES)
    assert names_category("This is a gearbox.", "gearboxes", CATEGORIES)
    assert not names_category("This is a gearbox.", "motors", CATEGORIES)
    assert not names_category("This is a pump or a motor.", "pumps", CATEGORIES)
    assert not names_category("This is a pumpkin.", "pumps", CATEGORIES)  # whole words only
    kettles = ("kettles", "electric kettles")
    assert names_category("An electric kettle, 1.7 l.", "electric kettles", kettles)  # "kettle" is part of it
    assert not names_category("An electric kettle, 1.7 l.", "kettles", kettles)


def test_the_judge_and_the_understanding_path_of_the_demo_model(generator, tmp_path) -> None:
    judge = load_judge("armor-demo")
    assert judge is not None and load_judge(DEMO_MODEL) is not None
    assert judge.categories == CATEGORIES
    drawn = [draw_product(c, 42) for c in CATEGORIES]
    assert judge(drawn) == list(CATEGORIES)
    assert load_judge(tmp_path) is None  # a model directory without classifier.safetensors
    assert load_judge("armor-tiny") is None  # a named configuration: no directory, no judge
    answers = understanding(generator)(drawn, ["What is this?"] * len(drawn))
    assert answers == ["This is a pump.", "This is a valve.", "This is a motor.", "This is a bearing.",
                       "This is a sensor.", "This is a gearbox."]
    # 12 tokens of a byte tokenizer cut the answer short: why the policy asks for 24.
    assert understanding(generator, max_new_tokens=12)(drawn[-1:], ["What is this?"]) == ["This is a ge"]
    assert understanding(None) is None


def test_a_picture_of_the_wrong_category_fails_image_text(items, model_ctx) -> None:
    (valve1, _), (valve2, _), (pump3, pump_photo) = (items[i] for i in ("valves-01", "valves-02", "pumps-03"))
    pump_on_valve = page(valve1, picture(pump_photo))  # the pump's catalog photo on a valve's page
    valve_on_valve = page(valve2, picture(draw_product("valves", 21)))
    pump_on_pump = page(pump3, picture(pump_photo))
    results = run_check(image_text.CHECK, [pump_on_valve, valve_on_valve, pump_on_pump], ImageTextPolicy(),
                        model_ctx)
    assert statuses(results) == ["fail", "pass", "pass"]
    [evidence] = results[0].evidence
    assert evidence.image == 0 and evidence.score == 0.0
    assert "This is a pump." in evidence.text and "the judge says pumps" in evidence.text
    assert results[0].reason.startswith("picture 1 does not show valves")
    # Answers are cached per picture: the pump's photo, on two pages, is one entry.
    shas = {p.images[0].sha256 for p in (pump_on_valve, valve_on_valve, pump_on_pump)}
    assert len(shas) == 2 and all(("image_text", sha) in model_ctx.cache for sha in shas)


def test_the_model_and_the_judge_disagreeing_warns(items, model_ctx) -> None:
    # A drawn pump the demo model takes for a motor (one of 4 of 300 drawn pictures it gets wrong); the judge
    # sees the pump.
    pump, _ = items["pumps-04"]
    [result] = run_check(image_text.CHECK, [page(pump, picture(draw_product("pumps", 900333)))], ImageTextPolicy(),
                         model_ctx)
    assert result.status == "warn"
    assert "This is a motor." in result.evidence[0].text and "the judge says pumps" in result.evidence[0].text
    assert result.evidence[0].score == 0.5


def test_no_model_warns(items) -> None:
    valve, photo = items["valves-03"]
    [result] = run_check(image_text.CHECK, [page(valve, picture(photo))], ImageTextPolicy(),
                         CheckContext(categories=CATEGORIES, image_size=SIZE))
    assert (result.status, result.reason) == ("warn", "not checked: no model to ask")


# --- the whole pipeline on pages the demo model writes ---------------------------------------------------------
def test_the_pipeline_on_pages_the_demo_model_writes(items, generator) -> None:
    chosen = [items[i][0] for i in ("valves-03", "pumps-06", "pumps-01")]
    spec = ContentSpec(source="armor", prompt=PROMPT, max_images=1)
    out = generator.generate([PROMPT.format(name=i.name) for i in chosen], settings=page_sampling(spec, 0))
    pages = [Page.from_content(content, item, PROMPT.format(name=item.name), Expects(images=1))
             for content, item in zip(out.contents, chosen, strict=True)]
    assert all(len(p.images) == 1 for p in pages)
    policy = ContentChecks()
    ctx = context_for(generator, "armor-demo", chosen, policy)
    assert ctx.image_size == SIZE and ctx.understand is not None and ctx.judge is not None
    checked = check_pages(pages, policy, ctx)

    # What the model's own answers (and its judge) imply, asked here directly.
    pictures = [p.images[0].pil for p in pages]
    answers = understanding(generator)(pictures, [policy.image_text.question] * len(pictures))
    judged = load_judge("armor-demo")(pictures)
    expected_text = []
    for p, answer, category in zip(pages, answers, judged, strict=True):
        votes = {names_category(answer, p.item.category, ctx.categories), category == p.item.category}
        expected_text.append("pass" if votes == {True} else "fail" if votes == {False} else "warn")
    hashes = [imagehash.phash(pic) for pic in pictures]
    duplicate = {i for i, j in itertools.combinations(range(len(pages)), 2)
                 if pages[i].item.id != pages[j].item.id
                 and hashes[i] - hashes[j] <= policy.image_sanity.max_duplicate_distance for i in (i, j)}
    expected_sanity = ["fail" if i in duplicate else "pass" for i in range(len(pages))]

    by_check = [{r.check: r for r in c.results} for c in checked]
    assert [r["image_text"].status for r in by_check] == expected_text
    assert [r["image_sanity"].status for r in by_check] == expected_sanity
    # The batch is not all-pass: the demo model draws pumps-01 and pumps-06 alike (a duplicate pair) and the
    # valve as something else; a failing image_sanity (block) fails the page, image_text only warns.
    assert {"pass"} < set(expected_text + expected_sanity)
    for c, r in zip(checked, by_check, strict=True):
        assert r["image_text"].action == "warn" and r["image_sanity"].action == "block"
        if r["image_sanity"].status == "fail":
            assert c.verdict == "fail"
