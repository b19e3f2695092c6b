"""Prompt templates against the catalog: render one for an item, and check one against a whole catalog.

A variant's prompt is a ``str.format`` template over ``CatalogItem.template_fields()``: the core
fields, the specs (``{spec_power}`` or ``{power}``) and every other imported column. Whoever's
catalog it is, a placeholder it lacks must be found before generation (``armor-ab experiment
validate``), not halfway through a run: ``check_templates`` reports it with the variant and the field.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from armor_ab.catalog.items import CatalogItem
from armor_ab.experiments.models import ExperimentSpec


class ContentError(ValueError):
    """A prompt template that cannot be rendered, or a model that cannot be found."""


def placeholders(template: str) -> list[str]:
    """The field names a template uses, in order, once each (``{specs[0]}`` and ``{name.upper}`` name
    ``specs`` and ``name``); a template ``str.format`` cannot read raises ``ContentError``."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ContentError(f"the prompt is not a valid template: {exc}") from None
    for _, field_name, _, _ in parsed:
        if field_name is None:
            continue
        base = field_name.split(".", 1)[0].split("[", 1)[0]
        if not base or base.isdigit():
            # format_map cannot fill a positional {} or {0}: say so now, not at generation time.
            raise ContentError(f"the prompt has a positional placeholder {{{field_name}}}; name a catalog field")
        if base not in names:
            names.append(base)
    return names


def render_prompt(template: str, item: CatalogItem, where: str) -> str:
    """The prompt of one item; an unknown placeholder names the item, the field and what is available."""
    fields = item.template_fields()
    try:
        return template.format_map(fields)
    except KeyError as exc:
        raise ContentError(f"{where}: the prompt names {{{exc.args[0]}}}, which catalog item {item.id!r} lacks "
                           f"(available: {', '.join(sorted(fields))})") from None
    except (AttributeError, IndexError, ValueError) as exc:
        raise ContentError(f"{where}: the prompt is not a valid template: {exc}") from None


@dataclass(frozen=True)
class FieldCoverage:
    """How many catalog items offer each template field (the whole catalog, read once)."""

    items: int
    counts: Counter[str]
    lacking: dict[str, list[str]]  # field -> a few item ids without it (for the message)

    @classmethod
    def of(cls, items: Iterable[CatalogItem], examples: int = 3) -> FieldCoverage:
        seen: list[set[str]] = []
        ids: list[str] = []
        counts: Counter[str] = Counter()
        for item in items:
            names = set(item.template_fields())
            counts.update(names)
            seen.append(names)
            ids.append(item.id)
        lacking = {name: [i for i, s in zip(ids, seen, strict=True) if name not in s][:examples]
                   for name, n in counts.items() if n < len(ids)}
        return cls(items=len(ids), counts=counts, lacking=lacking)


def check_templates(spec: ExperimentSpec, coverage: FieldCoverage) -> list[str]:
    """Every problem of the ARMOR variants' prompts against the catalog: a field no item has (with the
    fields there are), a field some items lack (how many, which), a template that cannot be read."""
    problems: list[str] = []
    available = ", ".join(sorted(coverage.counts))
    for index, variant in enumerate(spec.variants):
        if variant.content.source != "armor":
            continue
        where = f"variant {variant.key!r} (variants[{index}].content.prompt)"
        try:
            names = placeholders(variant.content.prompt or "")
        except ContentError as exc:
            problems.append(f"{where}: {exc}")
            continue
        for name in names:
            have = coverage.counts.get(name, 0)
            if have == 0:
                problems.append(f"{where}: the prompt names {{{name}}}, which no catalog item has "
                                f"(available: {available})")
            elif have < coverage.items:
                missing = coverage.items - have
                problems.append(f"{where}: the prompt names {{{name}}}, which {missing} of {coverage.items} "
                                f"catalog items lack (e.g. {', '.join(coverage.lacking[name])})")
    return problems
