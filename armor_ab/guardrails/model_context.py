"""The check context of a model: what the checks need from the model that wrote the pages (its
picture size, its control tokens, its understanding path, the judge shipped beside it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from armor_ab.catalog.items import CatalogItem
from armor_ab.experiments.content_checks import ContentChecks
from armor_ab.guardrails.context import CheckContext, Judge, Understand


def understanding(generator, max_new_tokens: int = 12, batch_size: int = 8) -> Understand | None:
    """The generator's understanding path as ``Understand``: greedy text answers, no pictures drawn."""
    return None  # written by the image checks' author


def load_judge(model: str | Path) -> Judge | None:
    """The judge classifier shipped beside the model (``classifier.safetensors``), or None."""
    return None  # written by the image checks' author


def special_tokens(tokenizer) -> tuple[str, ...]:
    """The tokenizer's control tokens as text (none may reach a page), in the tokenizer's order.

    The byte tokenizer lists them (``specials``); a Hugging Face one (``HFTokenizer``, or a bare
    transformers tokenizer) has its named specials (``all_special_tokens``: bos, eos, pad, ...) and the
    tokens added as special (``added_tokens_decoder``: InternVL's image tokens, ARMOR's code tokens,
    ChatML's ``<|im_start|>``/``<|im_end|>``)."""
    if tokenizer is None:
        return ()
    if hasattr(tokenizer, "specials"):
        return tuple(dict.fromkeys(t for t in tokenizer.specials if t))
    tok = getattr(tokenizer, "tok", tokenizer)
    found = list(getattr(tok, "all_special_tokens", ()))
    found += [t.content for _, t in sorted(getattr(tok, "added_tokens_decoder", {}).items())
              if getattr(t, "special", False)]
    return tuple(dict.fromkeys(t for t in found if isinstance(t, str) and t))


def context_for(generator, model: str | Path, items: Sequence[CatalogItem], policy: ContentChecks) -> CheckContext:
    """The context checks of pages written by ``generator`` (loaded from ``model``) need, for ``items``'s catalog."""
    config = generator.backend.config
    size = config.image_size
    return CheckContext(
        categories=tuple(sorted({item.category for item in items})),
        image_size=(size, size),
        special_tokens=special_tokens(generator.tokenizer),
        understand=understanding(generator, policy.image_text.max_new_tokens) if policy.image_text.action != "off" else None,
        judge=load_judge(model) if policy.image_text.action != "off" else None,
        model_name=generator.model_name,
    )
