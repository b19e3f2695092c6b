"""The checks, by name. A check's name is also its field in ``ContentChecks`` (its policy)."""

from __future__ import annotations

from armor_ab.guardrails import image_sanity, image_text, modality, spec_fidelity, terms, text_hygiene
from armor_ab.guardrails.check import Check

CHECKS: dict[str, Check] = {c.name: c for c in (spec_fidelity.CHECK, terms.CHECK, modality.CHECK,
                                                image_sanity.CHECK, image_text.CHECK, text_hygiene.CHECK)}
