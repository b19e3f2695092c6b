"""What checks need beyond the page itself: the catalog's categories, the pictures' expected size, the
other items' pictures (duplicates), the model's understanding path and the judge, special tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

# The model's understanding path: answers[i] to questions[i] about pictures[i] (greedy text, no pictures drawn).
Understand = Callable[[Sequence[Image.Image], Sequence[str]], list[str]]
# The judge classifier: a category per picture.
Judge = Callable[[Sequence[Image.Image]], list[str]]


@dataclass
class CheckContext:
    categories: tuple[str, ...] = ()  # every category of the catalog
    image_size: tuple[int, int] | None = None  # (width, height) the model draws; None: not checked
    special_tokens: tuple[str, ...] = ()  # the tokenizer's control tokens, none of which may reach a page
    understand: Understand | None = None  # None: image_text cannot ask the model, and says so (warn)
    judge: Judge | None = None  # the shipped judge classifier, where the model has one
    # Perceptual hashes of every picture known in the experiment: sha256 -> (item_id, hash). Pages
    # already stored are registered before a batch; image_sanity's prepare adds the batch's own.
    picture_hashes: dict[str, tuple[str, int]] = field(default_factory=dict)
    # Answers computed in a batch by a check's prepare step, by (check, picture sha256).
    cache: dict[tuple[str, str], object] = field(default_factory=dict)
    model_name: str = ""
