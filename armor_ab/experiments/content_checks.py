"""The experiment's content policy (``content_checks:`` in its YAML) and its live-health thresholds (``health:``).

Declared once, here; ``ExperimentSpec`` holds them, and ``armor_ab.guardrails`` runs the checks they
configure. Every check has an ``action``:

* ``block``: a failing page is never served (control's copy is, counted as fallback ``guardrail``),
  never auto-approved, and a human cannot approve it either;
* ``warn``: a failing page is marked ``warn``: never auto-approved, but a human may approve it;
* ``off``: the check does not run.

``auto_approve`` decides what happens to a page that passes every check that runs:
``when_all_pass`` approves it (recorded as approved by ``guardrails``), ``never`` leaves it pending
for a human. Unset, batch pages wait for a human and on-demand pages (which have nobody to wait
for) are approved when they pass: the behaviour of each before the policy existed.
docs/guardrails.md documents every field.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CheckAction = Literal["block", "warn", "off"]
AutoApprove = Literal["never", "when_all_pass"]
MAX_TERMS = 200
MAX_TERM_CHARS = 200
MAX_FALLBACK_WINDOW_MINUTES = 24 * 60  # the per-minute counts the server keeps (services.metrics.FallbackWindow)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Expects(_Strict):
    """What a page must hold: text, and at least ``images`` pictures. Declared per variant
    (``content: {expects: {...}}``); when absent it is read from the prompt template."""

    text: bool = True
    images: int = Field(default=0, ge=0, le=8)


class SpecFidelityPolicy(_Strict):
    """Every number-with-unit in the text must equal a catalog spec (units normalised).

    ``trust_description``: quantities the item's own control copy (``description``) states count as
    catalog facts too (a page may repeat what the catalog page already says)."""

    action: CheckAction = "block"
    # Spec labels (as in the catalog's ``specs``) the page must state; compared case-insensitively.
    # "*" stands for every spec of the item.
    required_specs: list[str] = Field(default=[], max_length=MAX_TERMS)
    # Relative tolerance when comparing normalised magnitudes ("5.5 kW" vs "5500 W" is exact).
    rel_tolerance: float = Field(default=0.005, ge=0.0, lt=0.5)
    # Numbers with a unit that match no spec are "invented"; false turns that part off.
    flag_invented: bool = True
    trust_description: bool = True


def _compiles(patterns: list[str]) -> list[str]:
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"[{i}] {pattern!r} is not a valid regular expression: {exc}") from None
    return patterns


class TermsPolicy(_Strict):
    """Blocked terms are regular expressions (Python ``re``), matched case-insensitively unless
    ``case_sensitive``; write ``\\b`` for word boundaries yourself. Required terms are plain
    strings, matched as whole words (no letter or digit on either side), case-insensitively unless
    ``case_sensitive``."""

    action: CheckAction = "block"
    blocked: list[str] = Field(default=[], max_length=MAX_TERMS)
    required: list[str] = Field(default=[], max_length=MAX_TERMS)
    case_sensitive: bool = False

    @field_validator("blocked")
    @classmethod
    def _valid_patterns(cls, value: list[str]) -> list[str]:
        if any(len(p) > MAX_TERM_CHARS for p in value):
            raise ValueError(f"a blocked pattern is at most {MAX_TERM_CHARS} characters")
        return _compiles(value)

    @field_validator("required")
    @classmethod
    def _nonblank(cls, value: list[str]) -> list[str]:
        if any(not t.strip() or len(t) > MAX_TERM_CHARS for t in value):
            raise ValueError(f"a required term is 1 to {MAX_TERM_CHARS} characters, not blank")
        return value


class ModalityPolicy(_Strict):
    """The page has what its template asked for (``Expects``)."""

    action: CheckAction = "block"


class ImageSanityPolicy(_Strict):
    """Each picture decodes at the model's size, is not blank, and is not a near-duplicate of
    another item's picture (64-bit perceptual hash, ``imagehash.phash``, Hamming distance).

    The duplicate threshold, measured on the demo model's pictures (``armor_ab.guardrails.image_sanity``
    has the figures): re-encoded or slightly changed copies (PNG re-save, JPEG down to quality 50,
    brightness +10 %, noise of sigma 4, down- and up-sampling) are at most 4 bits from the original;
    pictures of two different items are 10 bits or more apart in 99 % of pairs (median 28), and the few
    pairs within 4 bits are pictures the model drew alike for two same-shaped products."""

    action: CheckAction = "block"
    # Standard deviation of the grey levels (0-255) under which a picture counts as blank.
    min_stddev: float = Field(default=6.0, ge=0.0, le=128.0)
    # Pictures of two different items at most this many bits apart (of 64) are near-duplicates; -1 turns the
    # duplicate check off (even identical pictures pass).
    max_duplicate_distance: int = Field(default=4, ge=-1, le=32)


class ImageTextPolicy(_Strict):
    """The model's own understanding path, asked ``question`` about each generated picture, must
    name the item's category; the shipped judge classifier votes too where the model has one.

    "What is this?" is a phrasing of the models' training data (the demo's and a user's own catalog's
    ``ti2t`` questions). The demo model names the category of 296 of 300 drawn pictures (50 per
    category) with it; its answer is "This is a pump." (18 bytes for "This is a gearbox.": its byte
    tokenizer counts one token per character, so 12 tokens cut the answer short)."""

    action: CheckAction = "warn"
    question: str = Field(default="What is this?", min_length=1, max_length=200)
    # Text tokens of the answer (the model's tokenizer's; the demo model's are bytes).
    max_new_tokens: int = Field(default=24, ge=1, le=64)


class TextHygienePolicy(_Strict):
    """Length bounds, no leaked special tokens, no repetition loops, one language."""

    action: CheckAction = "block"
    min_chars: int = Field(default=20, ge=0)
    max_chars: int = Field(default=4000, ge=1)
    # A run of words repeated this many times in a row (or a sentence repeated this often) is a loop.
    max_repeats: int = Field(default=3, ge=2, le=50)
    one_language: bool = True


class ContentChecks(_Strict):
    """``content_checks:`` of an experiment: which checks run, block or warn, and auto-approval."""

    auto_approve: AutoApprove | None = None
    # Health turns critical when more than this share of the experiment's checked pages fail a blocking check.
    max_fail_rate: float = Field(default=0.25, ge=0.0, le=1.0)
    spec_fidelity: SpecFidelityPolicy = SpecFidelityPolicy()
    terms: TermsPolicy = TermsPolicy()
    modality: ModalityPolicy = ModalityPolicy()
    image_sanity: ImageSanityPolicy = ImageSanityPolicy()
    image_text: ImageTextPolicy = ImageTextPolicy()
    text_hygiene: TextHygienePolicy = TextHygienePolicy()

    def auto_approves(self, on_demand: bool) -> bool:
        """Whether a page that passes every check goes live without a human."""
        if self.auto_approve is None:
            return on_demand
        return self.auto_approve == "when_all_pass"


class HealthSpec(_Strict):
    """``health:`` of an experiment: when its live health warns, and whether critical pauses it.

    Critical (and, with ``auto_pause``, the ARMOR arms serve control's copy until a human resumes):
    a sequential SRM (``analysis.srm_alpha``), a guardrail metric breached (its always-valid bound),
    or the content fail rate above ``content_checks.max_fail_rate``. The thresholds here only warn."""

    auto_pause: bool = True
    max_fallback_rate: float = Field(default=0.2, ge=0.0, le=1.0)  # share of ARMOR-arm content requests
    # ... over the last this many minutes (whole minutes; at most a day: the server keeps a day of them)
    fallback_window_minutes: int = Field(default=15, ge=1, le=MAX_FALLBACK_WINDOW_MINUTES)
    max_ingestion_lag_s: float = Field(default=300.0, gt=0.0)  # p95 of received_at - ts
    max_bot_share: float = Field(default=0.3, ge=0.0, le=1.0)  # of exposures
    min_exposures_per_hour: float = Field(default=0.0, ge=0.0)  # 0: no floor
