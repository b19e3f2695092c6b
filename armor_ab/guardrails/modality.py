"""modality: the page holds what its template asked for (text, and at least N pictures).

A variant whose template says "show a photo" but whose pages come back as text only is broken in a
way no text check sees, so the page's ``Expects`` is checked: at least ``images`` pictures, and, when
``text``, non-blank text (at least ``MIN_TEXT_CHARS`` letters or digits). More than asked is fine.

``Expects`` is declared per variant; when it is not, ``expects_from_prompt`` reads it from the
template's English (placeholders such as ``{name}`` are dropped first, so an item's name never counts):

* a picture noun (picture, photo, photograph, image, illustration, drawing, sketch, pic; singular or
  plural) asks for a picture: "show a photo", "with pictures", "an image of {name}" -> images >= 1;
* a count before it, within the same clause ("two pictures", "3 large photos") asks for that many
  (at most 8); "several", "multiple", "a few", "a couple of" ask for 2;
* a negation before it in the same clause ("no pictures", "without images", "do not add a photo")
  cancels that mention;
* "only"/"just"/"solely" before it ("only a picture", "just an image") or "only" right after it
  ("a photo only") asks for the picture alone, as does "no text" / "without text" / "no words":
  text False.

A clause ends at punctuation or at "and", "but", "with", "plus", "then", "or": "no text but a picture"
is a picture without text. Anything else (the template names no picture): text True, images 0.
"""

from __future__ import annotations

import re

from armor_ab.experiments.content_checks import Expects, ModalityPolicy
from armor_ab.guardrails.check import Check
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.page import Page
from armor_ab.guardrails.result import CheckResult, Evidence, passed

NAME = "modality"
MIN_TEXT_CHARS = 3  # letters or digits that make text "non-blank"
MAX_IMAGES = 8  # Expects.images' bound
WINDOW = 4  # tokens looked at before a picture noun

PICTURE_NOUNS = frozenset({"picture", "pictures", "photo", "photos", "photograph", "photographs", "image",
                           "images", "illustration", "illustrations", "drawing", "drawings", "sketch",
                           "sketches", "pic", "pics"})
TEXT_NOUNS = frozenset({"text", "words", "description", "copy", "caption", "captions"})
NEGATIONS = frozenset({"no", "not", "without", "never", "nor", "none", "dont", "don't", "avoid", "omit", "skip"})
ALONE = frozenset({"only", "just", "solely", "merely"})
CLAUSE_ENDS = frozenset({"and", "but", "with", "plus", "then", "or", ".", ",", ";", ":", "!", "?", "(", ")"})
COUNTS = {"a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
          "seven": 7, "eight": 8, "nine": 9, "ten": 10, "couple": 2, "pair": 2, "few": 2, "several": 2,
          "multiple": 2, "some": 1}


def _tokens(prompt: str) -> list[str]:
    prompt = re.sub(r"\{[^{}]*\}", " ", prompt).lower().replace("’", "'")
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?|[.,;:!?()]", prompt)


def _clause_before(tokens: list[str], i: int) -> list[str]:
    """Up to ``WINDOW`` tokens before ``tokens[i]``, not reaching back past a clause end."""
    out: list[str] = []
    for tok in reversed(tokens[max(0, i - WINDOW):i]):
        if tok in CLAUSE_ENDS:
            break
        out.insert(0, tok)
    return out


def _negated(window: list[str]) -> bool:
    return any(t in NEGATIONS or t.endswith("n't") for t in window)


def _count(window: list[str]) -> int:
    for tok in reversed(window):
        if tok.isdigit():
            return max(1, int(tok))
        if tok in COUNTS:
            return COUNTS[tok]
    return 1


def expects_from_prompt(prompt_template: str) -> Expects:
    """What ``prompt_template`` asks a page to hold (rules in the module docstring)."""
    tokens = _tokens(prompt_template)
    images, text = 0, True
    for i, tok in enumerate(tokens):
        window = _clause_before(tokens, i)
        if tok in TEXT_NOUNS and _negated(window):
            text = False
        if tok not in PICTURE_NOUNS or _negated(window):
            continue
        images = max(images, min(MAX_IMAGES, _count(window)))
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        if any(t in ALONE for t in window) or after == "only":
            text = False
    return Expects(text=text, images=images)


def has_text(text: str) -> bool:
    return len(re.findall(r"[^\W_]", text)) >= MIN_TEXT_CHARS


def _pictures(n: int) -> str:
    return "a picture" if n == 1 else f"{n} pictures"


def run(page: Page, policy: ModalityPolicy, ctx: CheckContext) -> CheckResult:
    want, got = page.expects, len(page.images)
    reasons, evidence = [], []
    if got < want.images:
        reasons.append(f"the template asks for {_pictures(want.images)}; the page has {got or 'none'}")
        evidence.append(Evidence(f"{got} of {want.images} pictures"))
    if want.text and not has_text(page.text):
        reasons.append("the template asks for text; the page has none")
        evidence.append(Evidence(page.text, 0, len(page.text)))
    if not reasons:
        asked = [_pictures(want.images)] if want.images else []
        asked += ["text"] if want.text else []
        return passed(NAME, f"the page has what the template asks for ({', '.join(asked) or 'nothing'})")
    return CheckResult(NAME, "fail", "; ".join(reasons), tuple(evidence))


CHECK = Check(NAME, run, "the page has the text and the number of pictures its template asks for")
