"""The check context of a model: what the checks need from the model that wrote the pages (its
picture size, its control tokens, its understanding path, the judge shipped beside it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from armor_ab.assets import SHIPPED_MODELS
from armor_ab.catalog.items import CatalogItem
from armor_ab.experiments.content_checks import ContentChecks
from armor_ab.guardrails.context import CheckContext, Judge, Understand


def understanding(generator, max_new_tokens: int = 24, batch_size: int = 32) -> Understand | None:
    """The generator's understanding path as ``Understand``: greedy text answers, no pictures drawn.

    ``generator`` is an ``InterleavedGenerator`` (None: no understanding path, so None). Answers are
    stripped text; ``batch_size`` pictures go through one ``generate`` call (32: on the demo model, 41
    pictures took 0.68 s in batches of 8, 0.49 s of 16, 0.32 s in one; the checks' cost is mostly
    this). The same code answers
    training's own-catalog evaluation (``training.evaluate.answer_about_pictures``). ``max_new_tokens``
    counts tokens of the model's tokenizer: the demo model's byte tokenizer needs 18 for "This is a
    gearbox." (12 cuts it to "This is a ge")."""
    if generator is None:
        return None
    from armor_ab.training.evaluate import answer_about_pictures

    def understand(pictures: Sequence[Image.Image], questions: Sequence[str]) -> list[str]:
        if not pictures:
            return []
        return answer_about_pictures(generator, pictures, questions, max_new_tokens, batch_size, seed=0)

    return understand


class ClassifierJudge:
    """The judge classifier (``training.classifier.CategoryClassifier``) as a ``Judge``: the category of
    each picture, by the names in its ``classifier.json`` (``categories``: what it can tell apart)."""

    def __init__(self, classifier, categories: Sequence[str], batch_size: int = 64) -> None:
        self.classifier = classifier.eval()
        self.categories = tuple(categories)
        self.batch_size = batch_size

    def __call__(self, pictures: Sequence[Image.Image]) -> list[str]:
        import torch

        from armor_ab.training.batches import pil_to_vq_pixels
        from armor_ab.training.classifier import SIZE

        out: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(pictures), self.batch_size):
                chunk = pictures[start : start + self.batch_size]
                pixels = torch.stack([pil_to_vq_pixels(p, SIZE) for p in chunk])
                out += [self.categories[i] for i in self.classifier(pixels).argmax(-1).tolist()]
        return out


def model_directory(model: str | Path) -> Path | None:
    """A model directory, or a shipped model's name resolved under ``armor_ab/assets/models/``; None when
    neither exists (a named configuration with random weights has no directory)."""
    path = Path(model)
    if path.is_dir():
        return path
    shipped = SHIPPED_MODELS / str(model)
    return shipped if str(model) and "/" not in str(model) and shipped.is_dir() else None


def load_judge(model: str | Path) -> Judge | None:
    """The judge classifier shipped beside the model (``classifier.safetensors`` and ``classifier.json`` in
    the model's directory, or in the shipped model of that name), or None when the model has none."""
    from armor_ab.training.classifier import CLASSIFIER_FILE, CLASSIFIER_META, CategoryClassifier

    directory = model_directory(model)
    if directory is None or not (directory / CLASSIFIER_FILE).is_file():
        return None
    from safetensors.torch import load_file

    from armor_ab.catalog.draw import CATEGORIES

    meta_path = directory / CLASSIFIER_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    categories = tuple(meta.get("categories") or CATEGORIES)
    classifier = CategoryClassifier(num_classes=len(categories))
    classifier.load_state_dict(load_file(str(directory / CLASSIFIER_FILE)))
    return ClassifierJudge(classifier, categories)


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
    """The context checks of pages written by ``generator`` (loaded from ``model``) need, for ``items``'s catalog.

    ``items``: the catalog (its categories are what image_text's answers must tell apart: pass the whole
    catalog, not only the items being generated, where it is at hand). The understanding path and the judge
    are only set up when image_text runs."""
    config = generator.backend.config
    size = config.image_size
    asks = policy.image_text.action != "off"
    return CheckContext(
        categories=tuple(sorted({item.category for item in items})),
        image_size=(size, size),
        special_tokens=special_tokens(generator.tokenizer),
        understand=understanding(generator, policy.image_text.max_new_tokens) if asks else None,
        judge=load_judge(model) if asks else None,
        model_name=generator.model_name,
    )
