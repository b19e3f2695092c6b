"""Whether a text names a catalog category: one function for training's evaluation and the guardrails.

A category is named by its catalog spelling or by its singular ("pumps" by "pump", "gearboxes" by "gearbox",
"batteries" by "battery", "electric kettles" by "electric kettle"): the demo model answers "This is a pump."
about a picture of the category "pumps", a model fine-tuned on a user's catalog names the category as
imported. Matching is on whole words, in any case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["category_forms", "names_category"]

_ES_AFTER = ("ches", "shes", "sses", "xes", "zes")


def _singular(word: str) -> str | None:
    """The English singular of a plural noun by the regular rules, or None when ``word`` is not one."""
    lower = word.casefold()
    if lower.endswith("ies") and len(word) > 4:
        return word[:-3] + ("Y" if word[-3:].isupper() else "y")
    if lower.endswith(_ES_AFTER):
        return word[:-2]
    if lower.endswith("s") and not lower.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return None


def category_forms(category: str) -> tuple[str, ...]:
    """The ways a text may name ``category``: itself and, when its last word is a regular plural, its
    singular (casefolded)."""
    name = category.strip().casefold()
    head, _, last = name.rpartition(" ")
    singular = _singular(last)
    if singular is None:
        return (name,)
    return (name, f"{head} {singular}" if head else singular)


def _named(text: str, category: str) -> bool:
    folded = text.casefold()
    return any(re.search(rf"(?<!\w){re.escape(form)}(?!\w)", folded) for form in category_forms(category))


def names_category(text: str, category: str, categories: Sequence[str]) -> bool:
    """``text`` names ``category`` (whole words, any case, plural or singular) and no other category of the
    catalog (one that is part of ``category`` itself, like "kettles" of "electric kettles", does not count
    against it)."""
    if not _named(text, category):
        return False
    own = category.casefold()
    others = [c for c in categories if c.casefold() != own and not any(f in own for f in category_forms(c))]
    return not any(_named(text, c) for c in others)
