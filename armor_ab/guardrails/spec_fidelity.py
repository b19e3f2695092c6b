"""spec_fidelity: every number-with-unit on a page must be one the catalog states for the item.

A generated page is about one catalog item; a figure the catalog does not back is the costliest
thing it can get wrong (a buyer orders the wrong pump). So every quantity in the text (``units``:
a number with a unit, normalised with pint, so "5.5 kW" = "5,5 kW" = "5500 W") is compared with the
item's facts:

* the quantities in its spec values (``CatalogItem.specs``, parsed the same way; a range such as
  "0-6 bar" gives both ends), and, when ``trust_description``, those of its control copy
  (``description``): what the catalog page already says is a fact too;
* a quantity of a kind (dimension) some fact has, whose value (each end, for a range) equals none of
  those facts within ``rel_tolerance``, is a **wrong value**: "says 7.5 kW; the catalog's power is 5.5 kW";
* a quantity of a kind no fact has is **invented** (when ``flag_invented``): "says 3 kg; the catalog
  states no mass for this item".

Numbers without a unit (model numbers such as P-01, counts, "3 working days") are not checked: what
they measure cannot be told. ``required_specs`` (labels, case-insensitive) must each be stated: every
quantity of the spec's value must appear; a value without a quantity ("IP55", "stainless steel",
"DN25", "1:50") must appear as text (whole words, case-insensitive, any run of spaces). A required
label the item lacks (or has empty) fails too: the policy asks for something the page cannot state.
A label may also be written as its template placeholder (``spec_power`` for ``power``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from armor_ab.catalog.items import CatalogItem
from armor_ab.experiments.content_checks import SpecFidelityPolicy
from armor_ab.guardrails.check import Check
from armor_ab.guardrails.context import CheckContext
from armor_ab.guardrails.page import Page
from armor_ab.guardrails.result import CheckResult, Evidence, passed
from armor_ab.guardrails.units import Quantity, find_quantities, kind_name

NAME = "spec_fidelity"
MAX_REASONS = 3  # problems spelled out in the reason; the evidence lists them all


@dataclass(frozen=True)
class Fact:
    """A value the catalog states: a spec (``label`` its label) or the description (``label`` None)."""

    label: str | None
    text: str
    quantity: Quantity


def item_facts(item: CatalogItem, trust_description: bool = True) -> list[Fact]:
    """The quantities the catalog states for ``item``: its specs', then (optionally) its description's."""
    facts = [Fact(label, q.text, q) for label, value in item.specs.items() for q in find_quantities(value)]
    if trust_description:
        facts += [Fact(None, q.text, q) for q in find_quantities(item.description)]
    return facts


def _catalog_says(facts: list[Fact]) -> str:
    specs = [f for f in facts if f.label is not None]
    if not specs:
        return "the catalog's description says " + " or ".join(dict.fromkeys(f.text for f in facts))
    if len(specs) == 1:
        return f"the catalog's {specs[0].label} is {specs[0].text}"
    return "the catalog says " + ", ".join(dict.fromkeys(f"{f.label} {f.text}" for f in specs))


def _value_problems(page: Page, policy: SpecFidelityPolicy) -> list[tuple[str, Evidence]]:
    facts = item_facts(page.item, policy.trust_description)
    problems = []
    for q in find_quantities(page.text):
        same_kind = [f for f in facts if f.quantity.kind == q.kind]
        evidence = Evidence(q.text, q.start, q.end)
        if not same_kind:
            if policy.flag_invented:
                problems.append((f"says {q.text}; the catalog states no {kind_name(q.kind)} for this item", evidence))
            continue
        if all(any(f.quantity.matches(v, policy.rel_tolerance) for f in same_kind) for v in q.values):
            continue
        problems.append((f"says {q.text}; {_catalog_says(same_kind)}", evidence))
    return problems


def _text_pattern(value: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in value.split()]
    return re.compile(r"(?<![^\W_])" + r"\s+".join(words) + r"(?![^\W_])", re.IGNORECASE)


def _states(page_quantities: list[Quantity], text: str, value: str, rel_tolerance: float) -> bool:
    """Whether the page states ``value`` (a spec value): its quantities, else its text."""
    wanted = find_quantities(value)
    if not wanted:
        return bool(_text_pattern(value).search(text))
    return all(any(q.kind == w.kind and q.matches(v, rel_tolerance) for q in page_quantities)
               for w in wanted for v in w.values)


def _required_problems(page: Page, policy: SpecFidelityPolicy) -> list[tuple[str, Evidence]]:
    if not policy.required_specs:
        return []
    specs = {label.casefold(): (label, value) for label, value in page.item.specs.items()}
    page_quantities = find_quantities(page.text)
    problems = []
    # "*" stands for every spec of the item (catalogs whose items have different labels per category).
    required = [w for w in policy.required_specs if w.strip() != "*"]
    if len(required) < len(policy.required_specs):
        required += [label for label in page.item.specs if label.casefold() not in {r.casefold() for r in required}]
    for wanted in required:
        key = wanted.strip().casefold()
        label, value = specs.get(key) or specs.get(key.removeprefix("spec_"), (None, ""))
        if label is None or not value.strip():
            known = ", ".join(page.item.specs) or "none"
            problems.append((f"required spec {wanted!r} is not a spec of item {page.item.id} (its specs: {known})",
                             Evidence(wanted)))
        elif not _states(page_quantities, page.text, value, policy.rel_tolerance):
            problems.append((f"does not state the required {label} ({value})", Evidence(f"{label}: {value}")))
    return problems


def run(page: Page, policy: SpecFidelityPolicy, ctx: CheckContext) -> CheckResult:
    problems = _value_problems(page, policy) + _required_problems(page, policy)
    if not problems:
        return passed(NAME, "every number with a unit matches the catalog")
    reasons = [r for r, _ in problems[:MAX_REASONS]]
    more = len(problems) - MAX_REASONS
    reason = ". ".join(reasons) + (f" (and {more} more)" if more > 0 else "")
    return CheckResult(NAME, "fail", reason, tuple(e for _, e in problems))


CHECK = Check(NAME, run, "numbers with units on the page equal the item's catalog specs (units normalised)")
