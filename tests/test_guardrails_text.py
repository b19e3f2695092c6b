"""The text guardrails (spec_fidelity, terms, modality, text_hygiene) on pages built from the demo catalog,
alone and through the pipeline; and the tokenizers' control tokens they look for."""

from __future__ import annotations

import io
from functools import cache

import pytest
from PIL import Image

from armor_ab.catalog.demo import demo_items
from armor_ab.catalog.items import CatalogItem
from armor_ab.experiments.content_checks import (
    ContentChecks,
    Expects,
    ModalityPolicy,
    SpecFidelityPolicy,
    TermsPolicy,
    TextHygienePolicy,
)
from armor_ab.guardrails import modality, spec_fidelity, terms, text_hygiene
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.modality import expects_from_prompt
from armor_ab.guardrails.model_context import special_tokens
from armor_ab.guardrails.page import Page, PageImage
from armor_ab.guardrails.pipeline import check_pages
from armor_ab.guardrails.units import find_quantities, parse_number
from armor_ab.model.tokenizer import ByteTokenizer
from tests.helpers.second_catalog import products

TEXT_PROMPT = "Write a short product description of {name}."
PHOTO_PROMPT = "Please give a short description of {name} and show a photo."
TEXT_ONLY = ContentChecks(image_sanity={"action": "off"}, image_text={"action": "off"})
MY_CHECKS = (spec_fidelity, terms, modality, text_hygiene)


@cache
def items() -> dict[str, CatalogItem]:
    return {item.id: item for item, _ in demo_items()}


@cache
def picture() -> PageImage:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (40, 120, 200)).save(buf, format="PNG")
    return PageImage("0" * 64, buf.getvalue())


def page(item_id: str, text: str, *, pictures: int = 0, prompt: str = TEXT_PROMPT) -> Page:
    return Page(items()[item_id], text, (picture(),) * pictures, prompt, expects_from_prompt(prompt))


def only_value(text: str) -> float:
    (q,) = find_quantities(text)
    (value,) = q.values
    return value


# --- units -------------------------------------------------------------------------------------------------

def test_units_normalise_spellings_to_the_same_value():
    assert only_value("5.5 kW") == only_value("5,5 kW") == only_value("5500 W") == pytest.approx(5500.0)
    assert only_value("5.5kW") == only_value("a 5.5-kW motor") == only_value("5.5 kilowatts")
    assert only_value("1,500 rpm") == pytest.approx(only_value("1500 rpm"))  # thousands separator
    assert only_value("1.500 rpm") == pytest.approx(only_value("1.5 rpm"))  # a dot is a decimal point
    assert parse_number("0,125") == 0.125 and parse_number("12,000,000") == 12e6 and parse_number("1,5000") == 1.5
    assert only_value("120 m3/h") == only_value("120 m³/h") == pytest.approx(only_value("2 m3/min"))
    assert only_value("250 Nm") == pytest.approx(250.0)  # newton metre, not pint's "number metre"
    (rng,) = find_quantities("Range 0-6 bar.")
    assert rng.values == (0.0, pytest.approx(6e5)) and rng.text == "0-6 bar"


def test_units_leave_numbers_without_a_unit_and_words_alone():
    text = "Pump P-01, DN25, IP55, M12 thread, ratio 1:50, ships in 3 working days, 1 in 4 buyers, 12 units."
    assert find_quantities(text) == []


# --- spec_fidelity -----------------------------------------------------------------------------------------

def test_spec_fidelity_accepts_every_spelling_of_the_catalog_values():
    # pumps-02: power 1.5 kW, flow 25 m3/h; motors-07: power 4 kW, speed 1450 rpm
    ok = page("pumps-02", "Pump P-02 draws 1,5 kW (1500 W) and moves 25 m³/h, that is 25 m3 per hour.")
    assert spec_fidelity.run(ok, SpecFidelityPolicy(), CheckContext()).status == "pass"
    motor = page("motors-07", "Motor M-07: 4000 W at 1,450 rpm.")
    assert spec_fidelity.run(motor, SpecFidelityPolicy(), CheckContext()).status == "pass"


def test_wrong_spec_value_fails_with_its_span():
    text = "Pump P-02 is strong: it draws 7.5 kW and moves 25 m3/h."
    result = spec_fidelity.run(page("pumps-02", text), SpecFidelityPolicy(), CheckContext())
    assert result.status == "fail"
    assert "says 7.5 kW; the catalog's power is 1.5 kW" in result.reason
    (evidence,) = result.evidence
    assert (evidence.start, evidence.end) == (text.index("7.5 kW"), text.index("7.5 kW") + len("7.5 kW"))
    assert text[evidence.start:evidence.end] == evidence.text == "7.5 kW"


def test_wrong_end_of_a_range_fails_and_an_end_alone_passes():
    # sensors-01: range 0-6 bar, output 4-20 mA
    wrong = spec_fidelity.run(page("sensors-01", "Measures 0-10 bar, output 4-20 mA."), SpecFidelityPolicy(),
                              CheckContext())
    assert wrong.status == "fail" and "the catalog's range is 0-6 bar" in wrong.reason
    fine = spec_fidelity.run(page("sensors-01", "Measures up to 6 bar; 0 to 6 bar, 4-20 mA."), SpecFidelityPolicy(),
                             CheckContext())
    assert fine.status == "pass", fine.reason


def test_invented_number_fails_unless_turned_off():
    text = "Pump P-02: 1.5 kW, 25 m3/h, and it weighs only 40 kg."
    result = spec_fidelity.run(page("pumps-02", text), SpecFidelityPolicy(), CheckContext())
    assert result.status == "fail" and "says 40 kg" in result.reason and "mass" in result.reason
    assert [(e.text, e.start) for e in result.evidence] == [("40 kg", text.index("40 kg"))]
    lenient = spec_fidelity.run(page("pumps-02", text), SpecFidelityPolicy(flag_invented=False), CheckContext())
    assert lenient.status == "pass"


def test_second_catalog_units_and_several_specs_of_one_kind():
    row = next(r for r in products() if r["id"] == "scale-01")  # capacity 2 kg, resolution 0.1 g
    specs = {k.removeprefix("spec_"): v for k, v in row.items() if k.startswith("spec_") and v}
    item = CatalogItem(row["id"], row["name"], row["category"], row["description"], specs)
    ok = Page(item, "Weighs up to 2000 g in 0,1 g steps.", (), TEXT_PROMPT, Expects())
    assert spec_fidelity.run(ok, SpecFidelityPolicy(), CheckContext()).status == "pass"
    wrong = Page(item, "Weighs up to 5 kg in 0.1 g steps.", (), TEXT_PROMPT, Expects())
    result = spec_fidelity.run(wrong, SpecFidelityPolicy(), CheckContext())
    assert result.reason == "says 5 kg; the catalog says capacity 2 kg, resolution 0.1 g"


def test_required_specs_must_be_stated():
    policy = SpecFidelityPolicy(required_specs=["Power", "spec_FLOW"])
    both = page("pumps-02", "Pump P-02 draws 1500 W and moves 25 m3/h.")
    assert spec_fidelity.run(both, policy, CheckContext()).status == "pass"
    no_flow = spec_fidelity.run(page("pumps-02", "Pump P-02 draws 1.5 kW."), policy, CheckContext())
    assert no_flow.status == "fail" and "required flow (25 m3/h)" in no_flow.reason
    # A value without a quantity (valves' size "DN25", sensors' output "IO-Link") is matched as text.
    size = SpecFidelityPolicy(required_specs=["size"])
    dn25 = page("valves-01", "Valve V-01, size DN25, for 6 bar.")
    assert spec_fidelity.run(dn25, size, CheckContext()).status == "pass"
    assert spec_fidelity.run(page("valves-01", "Valve V-01, size DN250."), size, CheckContext()).status == "fail"
    link = SpecFidelityPolicy(required_specs=["output"])
    assert spec_fidelity.run(page("sensors-05", "Talks io-link."), link, CheckContext()).status == "pass"


def test_a_star_requires_every_spec_of_the_item():
    """The demo model's truncated "Bearing B-03: 20 mm, 12" (the load lost its unit) passes without required
    specs, and fails with "*"."""
    truncated = page("bearings-03", "Bearing B-03: 20 mm, 12")
    assert spec_fidelity.run(truncated, SpecFidelityPolicy(), CheckContext()).status == "pass"
    every = SpecFidelityPolicy(required_specs=["*"])
    result = spec_fidelity.run(truncated, every, CheckContext())
    assert result.status == "fail" and "12 kN" in result.reason
    whole = page("bearings-03", f"{items()['bearings-03'].spec_line()}")
    assert spec_fidelity.run(whole, every, CheckContext()).status == "pass"


def test_required_spec_unknown_to_the_item_fails_clearly():
    result = spec_fidelity.run(page("pumps-02", "Pump P-02: 1.5 kW."), SpecFidelityPolicy(required_specs=["voltage"]),
                               CheckContext())
    assert result.status == "fail"
    assert "'voltage' is not a spec of item pumps-02" in result.reason and "power, flow" in result.reason


# --- terms -------------------------------------------------------------------------------------------------

def test_blocked_term_fails_with_every_match():
    text = "Guaranteed to last. Our guarantee: free shipping, carefree use."
    policy = TermsPolicy(blocked=[r"guarantee\w*", r"\bfree\b"])
    result = terms.run(page("pumps-02", text), policy, CheckContext())
    assert result.status == "fail" and "'Guaranteed'" in result.reason
    spans = [(e.text, e.start, e.end) for e in result.evidence]
    assert spans == [("Guaranteed", 0, 10), ("guarantee", 24, 33), ("free", 35, 39)]  # not "carefree"
    strict = TermsPolicy(blocked=["guarantee"], case_sensitive=True)
    assert [e.text for e in terms.run(page("pumps-02", "Guarantee."), strict, CheckContext()).evidence] == []


def test_required_terms_are_whole_words():
    policy = TermsPolicy(required=["IE3", "two year warranty"])
    ok = terms.run(page("motors-02", "An efficient motor (ie3) with a Two  year warranty."), policy, CheckContext())
    assert ok.status == "pass"
    bad = terms.run(page("motors-02", "An IE30 motor with a two year warranty."), policy, CheckContext())
    assert bad.status == "fail" and bad.reason == "missing required term 'IE3'"
    strict = TermsPolicy(required=["IE3"], case_sensitive=True)
    assert terms.run(page("motors-02", "An ie3 motor."), strict, CheckContext()).status == "fail"


# --- modality ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("prompt", "text", "images"), [
    ("Please give a short description of {name} and show a photo.", True, 1),
    ("Write a short product description of {name}.", True, 0),
    ("Describe {name} for our catalog, with pictures.", True, 1),
    ("Show two pictures of {name} and describe it.", True, 2),
    ("3 photos of {name}, please.", True, 3),
    ("Only a picture of {name}.", False, 1),
    ("Just an image of {name}, no text.", False, 1),
    ("Describe {name}. No pictures, please.", True, 0),
    ("Do not include an image; describe {name}.", True, 0),
    ("Describe {Picture_frame} in two sentences.", True, 0),  # a placeholder never counts
])
def test_expects_from_prompt(prompt, text, images):
    assert expects_from_prompt(prompt) == Expects(text=text, images=images)


def test_missing_picture_fails_modality():
    text = "Pump P-02 moves 25 m3/h with 1.5 kW."
    result = modality.run(page("pumps-02", text, prompt=PHOTO_PROMPT), ModalityPolicy(), CheckContext())
    assert result.status == "fail" and result.reason == "the template asks for a picture; the page has none"
    with_photo = page("pumps-02", text, pictures=1, prompt=PHOTO_PROMPT)
    assert modality.run(with_photo, ModalityPolicy(), CheckContext()).status == "pass"
    blank = modality.run(page("pumps-02", " \n ", pictures=1, prompt=PHOTO_PROMPT), ModalityPolicy(),
                         CheckContext())
    assert blank.status == "fail" and "asks for text" in blank.reason
    picture_only = page("pumps-02", "", pictures=1, prompt="Only a picture of {name}.")
    assert modality.run(picture_only, ModalityPolicy(), CheckContext()).status == "pass"


# --- text_hygiene ------------------------------------------------------------------------------------------

def test_leaked_special_token_fails_text_hygiene():
    text = "Pump P-02 moves 25 m3/h.<eos> Power 1.5 kW [SEP] <imgcode_12>"
    ctx = CheckContext(special_tokens=("[SEP]",))
    result = text_hygiene.run(page("pumps-02", text), TextHygienePolicy(), ctx)
    assert result.status == "fail" and "leaked special tokens" in result.reason
    assert [(e.text, text[e.start:e.end]) for e in result.evidence] == [
        ("<eos>", "<eos>"), ("[SEP]", "[SEP]"), ("<imgcode_12>", "<imgcode_12>")]
    # Without the tokenizer's own token in the context, only the generic patterns are found.
    assert [e.text for e in text_hygiene.run(page("pumps-02", text), TextHygienePolicy(), CheckContext()).evidence] \
        == ["<eos>", "<imgcode_12>"]


def test_text_length_bounds():
    short = text_hygiene.run(page("pumps-02", "  Pump.  "), TextHygienePolicy(min_chars=20), CheckContext())
    assert short.status == "fail" and "5 characters, fewer than 20" in short.reason
    long = text_hygiene.run(page("pumps-02", "Pump P-02. " * 3), TextHygienePolicy(max_chars=20, max_repeats=5),
                            CheckContext())
    assert long.status == "fail" and "more than 20" in long.reason and long.evidence[0].start == 20
    picture_only = page("pumps-02", "", pictures=1, prompt="Only a picture of {name}.")
    assert text_hygiene.run(picture_only, TextHygienePolicy(), CheckContext()).status == "pass"


def test_repetition_loop_fails_with_its_span():
    text = "Pump P-02 is a reliable pump. It moves water the pump the pump the pump and more."
    result = text_hygiene.run(page("pumps-02", text), TextHygienePolicy(), CheckContext())
    assert result.status == "fail" and "repetition loop" in result.reason
    (loop,) = result.evidence
    assert text[loop.start:loop.end] == "the pump the pump the pump"
    assert text_hygiene.run(page("pumps-02", text), TextHygienePolicy(max_repeats=4), CheckContext()).status == "pass"
    same = "Great pump. It is quiet. Great pump. Buy now. Great pump!"
    repeated = text_hygiene.run(page("pumps-02", same), TextHygienePolicy(), CheckContext())
    assert repeated.status == "fail" and "appears 3 times" in repeated.reason
    assert [same[e.start:e.end] for e in repeated.evidence] == ["Great pump.", "Great pump.", "Great pump!"]


ENGLISH = ("This inline pump moves process water quietly and reliably through your plant. It is easy to install "
           "and needs very little maintenance over its long service life.")
GERMAN = ("Diese Inline-Pumpe fördert Prozesswasser leise und zuverlässig durch Ihre Anlage. Sie ist einfach zu "
          "installieren und braucht über ihre lange Lebensdauer kaum Wartung.")
FRENCH = ("Cette pompe en ligne transporte l'eau de process silencieusement et de manière fiable. Elle est facile à "
          "installer et demande très peu d'entretien pendant sa longue durée de vie.")


@pytest.mark.parametrize("text", [ENGLISH, GERMAN, FRENCH, "A 5 µm filter, 10 kΩ input, low Δp across the element."])
def test_one_language_passes(text):
    result = text_hygiene.run(page("pumps-02", text), TextHygienePolicy(), CheckContext())
    assert result.status == "pass", result.reason


def test_mixed_language_fails():
    text = ENGLISH.split(". ")[0] + ". " + GERMAN.split(". ")[1]
    result = text_hygiene.run(page("pumps-02", text), TextHygienePolicy(), CheckContext())
    assert result.status == "fail" and "more than one language" in result.reason
    assert all(e.score is not None and e.score >= 0.9 for e in result.evidence)
    assert text_hygiene.run(page("pumps-02", text), TextHygienePolicy(one_language=False), CheckContext()).status \
        == "pass"
    cyrillic = "This inline рump moves process water quietly."  # a Cyrillic "р"
    mixed = text_hygiene.run(page("pumps-02", cyrillic), TextHygienePolicy(), CheckContext())
    assert mixed.status == "fail" and "Latin and Cyrillic" in mixed.reason
    assert [e.text for e in mixed.evidence] == ["рump"]


# --- together ----------------------------------------------------------------------------------------------

def test_every_control_description_of_the_demo_catalog_passes():
    policy, ctx = ContentChecks(), CheckContext(special_tokens=ByteTokenizer().specials)
    for item in items().values():
        p = Page(item, item.description, (), TEXT_PROMPT, Expects())
        for check in MY_CHECKS:
            result = check.run(p, getattr(policy, check.NAME), ctx)
            assert result.status == "pass", (item.id, result)
    assert len(items()) == 42


CLEAN = ("Pump P-02 is an inline pump for process water. It draws 1.5 kW and moves 25 m3/h, quietly and "
         "reliably. Order today: it ships in 2 working days.")


def test_clean_page_passes_every_text_check():
    policy = ContentChecks(spec_fidelity={"required_specs": ["power", "flow"]},
                           terms={"blocked": [r"\bguarantee\w*"], "required": ["inline pump"]})
    ctx = CheckContext(special_tokens=ByteTokenizer().specials)
    clean = page("pumps-02", CLEAN, pictures=1, prompt=PHOTO_PROMPT)
    for check in MY_CHECKS:
        result = check.CHECK.run(clean, getattr(policy, check.NAME), ctx)
        assert (result.check, result.status) == (check.NAME, "pass"), result


def test_pipeline_verdicts():
    ctx = CheckContext(special_tokens=ByteTokenizer().specials)
    clean = page("pumps-02", CLEAN, pictures=1, prompt=PHOTO_PROMPT)
    wrong = page("pumps-02", CLEAN.replace("1.5 kW", "7.5 kW"), pictures=1, prompt=PHOTO_PROMPT)
    no_photo = page("pumps-02", CLEAN, prompt=PHOTO_PROMPT)
    verdicts = check_pages([clean, wrong, no_photo], TEXT_ONLY, ctx)
    assert [v.verdict for v in verdicts] == ["pass", "fail", "fail"]
    assert verdicts[1].failing() == ["spec_fidelity"] and verdicts[2].failing() == ["modality"]
    assert [r.check for r in verdicts[0].results] == ["spec_fidelity", "terms", "modality", "text_hygiene"]
    warn_only = TEXT_ONLY.model_copy(update={"spec_fidelity": SpecFidelityPolicy(action="warn")})
    warned = check_pages([wrong, no_photo], warn_only, ctx)
    assert [v.verdict for v in warned] == ["warn", "fail"]
    (spec,) = [r for r in warned[0].results if r.check == "spec_fidelity"]
    assert (spec.status, spec.action, spec.blocks) == ("fail", "warn", False)


# --- the tokenizers' control tokens ------------------------------------------------------------------------

def test_special_tokens_of_the_byte_tokenizer():
    assert special_tokens(ByteTokenizer()) == ByteTokenizer().specials
    assert "<|assistant|>" in special_tokens(ByteTokenizer()) and special_tokens(None) == ()


def test_special_tokens_of_a_hugging_face_tokenizer(tmp_path):
    from armor_ab.model.hf_tokenizer import HFTokenizer, extend_for_armor
    from tests.helpers.base_models import bpe_tokenizer

    tok = bpe_tokenizer(tmp_path)
    found = special_tokens(HFTokenizer(tok))
    assert {"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<img>", "</img>", "<IMG_CONTEXT>"} <= set(found)
    assert not any(t in found for t in ("the", "pump", ""))
    extend_for_armor(tok, len(tok) + 3, num_codes=4)
    extended = special_tokens(HFTokenizer(tok))
    assert {"<imgcode_0>", "<imgcode_3>", "<imgbos>", "<imgend>", "<imgpad>"} <= set(extended)
    text = "A pump.<|im_end|><imgcode_3>"
    leaked = text_hygiene.run(page("pumps-02", text * 3), TextHygienePolicy(max_repeats=5),
                              CheckContext(special_tokens=extended))
    assert [e.text for e in leaked.evidence][:2] == ["<|im_end|>", "<imgcode_3>"]
