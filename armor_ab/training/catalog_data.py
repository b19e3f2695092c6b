"""Training data from a user's own catalog (``CatalogItem``s and their photos), for the four task types.

The samples have the shape of the demo's (``data.py``): JSON lines of ordered segments plus a task type::

    {"id": "train-t2ti-00007", "split": "train", "task": "t2ti", "product": "kettle-01", "template": "t2ti/train/3",
     "segments": [
       {"role": "user", "type": "text", "text": "Describe Aurora kettle with a picture."},
       {"role": "assistant", "type": "text", "text": "Aurora kettle: capacity 1.7 l. The Aurora kettle holds ..."},
       {"role": "assistant", "type": "image", "image": {"product": "kettle-01", "variant": 0}}]}

``product`` is the catalog item's id. An image segment names the item's photo: variant 0 is the photo as
imported, variant k > 0 a copy augmented with a seed made from (item id, k) (``augment_photo``: crop, mirror,
a small rotation, brightness and colour), so photos are re-made, never stored per sample. Training uses
variants 0 .. ``ti2t_train_variants``, validation 1000 .., the held-out split 100000 .. (augmentations no
training sample sees). An answer picture is always the photo itself (variant 0).

What the model learns, per item:

* ``t2t``  a request for text -> the item's text (``answers.text``: name, specs and description)
* ``t2i``  a request for a picture -> its photo, as VQ codes of the model's own frozen VQGAN encoder
* ``t2ti`` a request for both -> the text, then the photo
* ``ti2t`` its photo (augmented) + "what is this?" -> an answer naming it and its category (``answers.category``)

Items without a photo get t2t samples only.

Phrasings (``DEFAULT_PHRASINGS``; a recipe's ``phrasings:`` block replaces a task's ``train`` and/or
``heldout`` list): each task has training phrasings and held-out ones that no training sample uses, in any
task. The text-prompted tasks name the item with ``{name}`` (or ``{id}``; ``{category}`` may be used too);
``ti2t`` questions are about the photo and name nothing. Splits:

* ``train``   training phrasings (all of them, or ``phrasings_per_item`` per item and task)
* ``val``     ``val_per_item`` training phrasings per item and task, kept out of that item's training samples
* ``heldout`` every held-out phrasing for every item, and held-out augmentations of the photos (``ti2t``):
  ``armor-ab eval`` measures here

Stage 3's "high-quality" subset is ``hq_per_item`` training samples per item and task (``hq``: true).
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from armor_ab.catalog.items import CatalogItem
from armor_ab.model.configuration import ArmorConfig

from .batches import CachedPictures, PictureKey
from .data import TASKS, mark_hq, number_samples

SPLITS = ("train", "val", "heldout")
TEXT_TASKS = ("t2t", "t2i", "t2ti")  # prompted by text, about a named item
PHOTO_TASKS = ("t2i", "t2ti", "ti2t")  # need the item's photo
PROMPT_FIELDS = ("name", "id", "category")  # what a text-prompted phrasing may name
VAL_VARIANT_BASE = 1000
HELDOUT_VARIANT_BASE = 100_000
PAD_COLOUR = (255, 255, 255)  # a non-square photo is padded to a square with white

DEFAULT_PHRASINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "t2t": {
        "train": (
            "Describe {name}.",
            "What are the specs of {name}?",
            "Give me the key data of {name}.",
            "Write a short product text for {name}.",
            "Give me the facts on {name}.",
            "What should I know about {name}?",
            "List the specifications of {name}.",
            "Product text for {name}, please.",
        ),
        "heldout": (
            "Tell me about {name}.",
            "Summarize {name} for a customer.",
            "What are the main features of {name}?",
            "Give an overview of {name}.",
        ),
    },
    "t2i": {
        "train": (
            "Show me a picture of {name}.",
            "Draw {name}.",
            "Generate an image of {name}.",
            "What does {name} look like? Show me.",
            "I want to see {name}.",
            "Picture of {name}, please.",
            "Make an image of {name}.",
            "Render {name}.",
        ),
        "heldout": (
            "Can you draw {name}?",
            "Show an image of {name}.",
            "I would like to see a picture of {name}.",
            "Create a picture of {name}.",
        ),
    },
    "t2ti": {
        "train": (
            "Describe {name} with a picture.",
            "Picture and specs of {name}.",
            "Write a product page for {name} with an image.",
            "Show me {name} and tell me its specs.",
            "Describe {name} and draw it.",
            "Product text with a picture for {name}.",
        ),
        "heldout": (
            "Tell me about {name} and show a picture.",
            "Can you draw {name} and describe it?",
            "I need the specs of {name} plus an image.",
            "Give an overview of {name} with a picture.",
        ),
    },
    "ti2t": {
        "train": (
            "What is this?",
            "What product is shown?",
            "Which category is this product in?",
            "Name the product in the picture.",
            "What do we have here?",
            "What is in the image?",
        ),
        "heldout": (
            "What do you see in this image?",
            "Identify this product.",
            "Tell me what this is.",
            "Which kind of product is in the picture?",
        ),
    },
}

# The answers, with the item's fields: {name}, {id}, {category}, {description} (shortened to
# ``max_description_chars``), {specs} (the values, comma-separated), {spec_list} ("capacity 1.7 l, burr flat
# 64 mm"), {spec_line} ("Aurora kettle: capacity 1.7 l." or "Aurora kettle." without specs), {spec_<label>}
# and every other imported column by its name.
DEFAULT_ANSWERS: dict[str, str] = {
    "text": "{spec_line} {description}",
    "category": "This is {name}, from the {category} category.",
}


class FieldError(ValueError):
    """A bad setting; ``field`` names it as the recipe writes it (``phrasings.t2i.heldout[2]``)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field, self.message = field_name, message


@dataclass(frozen=True)
class CatalogDataConfig:
    seed: int = 7
    phrasings_per_item: int = 0  # training phrasings per item and text-prompted task; 0 = all of them
    val_per_item: int = 1  # training phrasings per item and task used for validation instead
    ti2t_train_variants: int = 8  # augmented copies of each photo for ti2t training (plus the photo itself)
    ti2t_val_variants: int = 1
    ti2t_heldout_variants: int = 2  # held-out augmentations per photo (seeds no training sample uses)
    hq_per_item: int = 2  # stage 3's subset: training samples per item and task
    max_description_chars: int = 300  # {description} in answers, cut at a sentence or word boundary
    picture_cache: int = 512  # photos (and their ViT tensors) kept in memory, least recently used go first
    answers: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ANSWERS))
    phrasings: dict[str, dict[str, tuple[str, ...]]] = field(
        default_factory=lambda: {t: dict(v) for t, v in DEFAULT_PHRASINGS.items()}
    )

    @classmethod
    def from_dict(cls, data: Mapping | None, phrasings: Mapping | None = None) -> CatalogDataConfig:
        """Settings (a recipe's ``catalog_data:``) and phrasings (its ``phrasings:``) over the defaults;
        raises ``FieldError`` naming the setting."""
        if data is not None and not isinstance(data, Mapping):
            raise FieldError("catalog_data", "must be a mapping of settings")
        data = dict(data or {})
        known = {f for f in cls.__dataclass_fields__ if f != "phrasings"}
        for key, value in data.items():
            if key not in known:
                raise FieldError(f"catalog_data.{key}", f"unknown setting (known: {', '.join(sorted(known))})")
            if key == "answers":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise FieldError(f"catalog_data.{key}", f"must be a whole number >= 0, got {value!r}")
        if data.get("picture_cache", 1) < 1:
            raise FieldError("catalog_data.picture_cache", "must be at least 1")
        data["answers"] = _answers(data.get("answers"))
        data["phrasings"] = merge_phrasings(phrasings)
        return cls(**data)

    def to_json(self) -> dict:
        out = asdict(self)
        out["phrasings"] = {t: {s: list(v) for s, v in parts.items()} for t, parts in self.phrasings.items()}
        return out


def _answers(raw) -> dict[str, str]:
    answers = dict(DEFAULT_ANSWERS)
    if raw is None:
        return answers
    if not isinstance(raw, dict):
        raise FieldError("catalog_data.answers", "must be a mapping: text, category")
    for key, value in raw.items():
        where = f"catalog_data.answers.{key}"
        if key not in DEFAULT_ANSWERS:
            raise FieldError(where, f"unknown answer (known: {', '.join(DEFAULT_ANSWERS)})")
        if not isinstance(value, str) or not value.strip():
            raise FieldError(where, "must be a non-empty text")
        _placeholders(value, where)
        answers[key] = value
    if "{category}" not in answers["category"]:
        raise FieldError("catalog_data.answers.category", "must name {category}: evaluation checks it")
    return answers


def merge_phrasings(raw) -> dict[str, dict[str, tuple[str, ...]]]:
    """The default phrasings with a recipe's ``phrasings:`` block over them, checked (see the module doc)."""
    merged = {task: dict(parts) for task, parts in DEFAULT_PHRASINGS.items()}
    if raw is not None:
        if not isinstance(raw, dict):
            raise FieldError("phrasings", f"must be a mapping of task types ({', '.join(TASKS)})")
        for task, parts in raw.items():
            if task not in TASKS:
                raise FieldError(f"phrasings.{task}", f"unknown task type (one of {', '.join(TASKS)})")
            if not isinstance(parts, dict):
                raise FieldError(f"phrasings.{task}", "must be a mapping with train and/or heldout lists")
            for split, values in parts.items():
                where = f"phrasings.{task}.{split}"
                if split not in ("train", "heldout"):
                    raise FieldError(where, "unknown list (train or heldout)")
                if not isinstance(values, list) or not values:
                    raise FieldError(where, "must be a non-empty list of phrasings")
                merged[task][split] = tuple(values)
    seen: dict[tuple[str, str], str] = {}  # (split, normalised phrasing) -> where it is
    for task, parts in merged.items():
        for split in ("train", "heldout"):
            for i, text in enumerate(parts[split]):
                where = f"phrasings.{task}.{split}[{i}]"
                if not isinstance(text, str) or not text.strip():
                    raise FieldError(where, "must be a non-empty text")
                names = _placeholders(text, where)
                unknown = names - set(PROMPT_FIELDS)
                if unknown:
                    allowed = ", ".join("{" + f + "}" for f in PROMPT_FIELDS)
                    raise FieldError(where, f"unknown placeholder {{{sorted(unknown)[0]}}} (a phrasing may name "
                                            f"{allowed})")
                if task == "ti2t" and names:
                    raise FieldError(where, "a ti2t question is about the photo: it may not name the item")
                if task != "ti2t" and not names & {"name", "id"}:
                    raise FieldError(where, "must name the item: {name} or {id}")
                # One phrasing, one answer: the same request in two places would teach two answers.
                if (split, _normal(text)) in seen:
                    raise FieldError(where, f"the same phrasing as {seen[split, _normal(text)]}")
                seen[split, _normal(text)] = where
    for (split, text), where in seen.items():
        if split == "heldout" and ("train", text) in seen:
            raise FieldError(where, f"also a training phrasing ({seen['train', text]}); held-out phrasings must "
                                    "be ones no training sample uses")
    return merged


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _placeholders(text: str, where: str) -> set[str]:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise FieldError(where, f"bad placeholder syntax ({exc}); write {{name}}, and {{{{ for a brace") from None
    if "" in names or any(not n.isidentifier() for n in names):
        raise FieldError(where, "placeholders are names in braces, like {name}")
    return names


# --- item texts -------------------------------------------------------------------------------------------
def short_description(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters: at the last sentence end past half of it, else at a word."""
    text = " ".join(text.split())
    if limit <= 0 or len(text) <= limit:
        return text
    cut = text[:limit]
    sentence = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if sentence >= limit // 2:
        return cut[: sentence + 1]
    word = cut.rfind(" ")
    return (cut[:word] if word > 0 else cut).rstrip(" ,;:") + "…"


def item_fields(item: CatalogItem, config: CatalogDataConfig) -> dict[str, str]:
    """What an answer may name (see ``DEFAULT_ANSWERS``)."""
    spec_list = ", ".join(f"{label.replace('_', ' ')} {value}" for label, value in item.specs.items())
    fields = item.template_fields()
    fields["description"] = short_description(item.description, config.max_description_chars)
    fields["spec_list"] = spec_list
    fields["spec_line"] = f"{item.name}: {spec_list}." if spec_list else f"{item.name}."
    return fields


def render(template: str, item: CatalogItem, fields: Mapping[str, str], where: str) -> str:
    try:
        return " ".join(template.format_map(fields).split())
    except KeyError as exc:
        raise FieldError(where, f"item {item.id!r} has no {{{exc.args[0]}}}") from None


def text_answer(item: CatalogItem, config: CatalogDataConfig) -> str:
    return render(config.answers["text"], item, item_fields(item, config), "catalog_data.answers.text")


def category_answer(item: CatalogItem, config: CatalogDataConfig) -> str:
    return render(config.answers["category"], item, item_fields(item, config), "catalog_data.answers.category")


def prompt(phrasing: str, item: CatalogItem | None) -> str:
    if item is None:
        return phrasing
    return phrasing.format(name=item.name, id=item.id, category=item.category)


def items_sha256(items: Sequence[CatalogItem]) -> str:
    """SHA-256 of the items as trained on (their content, photos by hash), independent of their order."""
    canonical = [item.to_json() for item in sorted(items, key=lambda i: i.id)]
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# --- samples ----------------------------------------------------------------------------------------------
def _user(text: str) -> dict:
    return {"role": "user", "type": "text", "text": text}


def _picture(role: str, item: CatalogItem, variant: int) -> dict:
    return {"role": role, "type": "image", "image": {"product": item.id, "variant": variant}}


def _say(text: str) -> dict:
    return {"role": "assistant", "type": "text", "text": text}


def _sample(split: str, task: str, item: CatalogItem, template: str, segments: list[dict]) -> dict:
    return {"split": split, "task": task, "product": item.id, "template": template, "segments": segments}


def _text_task(task: str, item: CatalogItem, question: str, config: CatalogDataConfig) -> list[dict]:
    if task == "t2t":
        return [_user(question), _say(text_answer(item, config))]
    if task == "t2i":
        return [_user(question), _picture("assistant", item, 0)]
    return [_user(question), _say(text_answer(item, config)), _picture("assistant", item, 0)]


def build_catalog_datasets(
    items: Sequence[CatalogItem], photos: Mapping[str, Path], config: CatalogDataConfig = CatalogDataConfig()
) -> dict[str, list[dict]]:
    """All splits, deterministically from the items, which of them have a photo (``photos``: id -> file)
    and ``config``. Raises ``FieldError`` when an answer template names a field an item lacks."""
    if not items:
        raise ValueError("the catalog has no items")
    rng = random.Random(config.seed)
    sets: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for task in TEXT_TASKS:
        train, heldout = config.phrasings[task]["train"], config.phrasings[task]["heldout"]
        for item in items:
            if task in PHOTO_TASKS and item.id not in photos:
                continue
            order = list(range(len(train)))
            rng.shuffle(order)
            n_val = min(config.val_per_item, len(order) - 1)
            chosen = order[n_val:]
            if config.phrasings_per_item:
                chosen = chosen[: config.phrasings_per_item]
            for split, indices in (("val", order[:n_val]), ("train", sorted(chosen))):
                for i in indices:
                    segments = _text_task(task, item, prompt(train[i], item), config)
                    sets[split].append(_sample(split, task, item, f"{task}/train/{i}", segments))
            for i, phrasing in enumerate(heldout):
                segments = _text_task(task, item, prompt(phrasing, item), config)
                sets["heldout"].append(_sample("heldout", task, item, f"{task}/heldout/{i}", segments))

    ranges = {
        "train": range(0, config.ti2t_train_variants + 1),  # 0 = the photo itself
        "val": range(VAL_VARIANT_BASE, VAL_VARIANT_BASE + config.ti2t_val_variants),
        "heldout": range(HELDOUT_VARIANT_BASE, HELDOUT_VARIANT_BASE + config.ti2t_heldout_variants),
    }
    with_photo = [item for item in items if item.id in photos]
    for split, variants in ranges.items():
        pool = config.phrasings["ti2t"]["heldout" if split == "heldout" else "train"]
        kind = "heldout" if split == "heldout" else "train"
        for n, item in enumerate(with_photo):
            answer = category_answer(item, config)
            for k, variant in enumerate(variants):
                i = (n + k) % len(pool)  # rotate the questions across items and copies
                segments = [_picture("user", item, variant), _user(pool[i]), _say(answer)]
                sets[split].append(_sample(split, "ti2t", item, f"ti2t/{kind}/{i}", segments))

    mark_hq(sets["train"], config.hq_per_item, rng)
    number_samples(sets)
    return sets


def phrasings_used(samples: Sequence[dict], config: CatalogDataConfig) -> set[str]:
    """The phrasings (templates, not rendered) behind ``samples``: for checking which ones a split uses."""
    used = set()
    for sample in samples:
        task, kind, index = sample["template"].split("/")
        used.add(config.phrasings[task][kind][int(index)])
    return used


# --- photos -----------------------------------------------------------------------------------------------
def load_photo(path: Path | str, size: int) -> Image.Image:
    """A photo file -> RGB, upright (EXIF orientation), padded to a square with white, ``size`` x ``size``."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    w, h = image.size
    if w != h:
        side = max(w, h)
        square = Image.new("RGB", (side, side), PAD_COLOUR)
        square.paste(image, ((side - w) // 2, (side - h) // 2))
        image = square
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image


def photo_seed(item_id: str, variant: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{item_id}/{variant}".encode()).digest()[:8], "big")


def augment_photo(image: Image.Image, seed: int) -> Image.Image:
    """A seeded copy: a crop of 80-100% of the side, mirrored half the time, turned up to 8 degrees, brightness
    and colour within 15-20%. Same size as ``image``."""
    rng = random.Random(seed)
    w, h = image.size
    scale = rng.uniform(0.8, 1.0)
    cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out = out.rotate(rng.uniform(-8.0, 8.0), resample=Image.Resampling.BICUBIC, fillcolor=PAD_COLOUR)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15))
    return ImageEnhance.Color(out).enhance(rng.uniform(0.8, 1.2))


class PhotoStore(CachedPictures):
    """The items' photos by ``(item id, variant)``: PIL (square, ``work_size``), ViT tensors, VQ codes.

    Photos are read from their files on demand and kept in a bounded cache (``cache_size``), so a catalog of
    thousands of large photos does not have to fit in memory.
    """

    def __init__(self, photos: Mapping[str, Path], config: ArmorConfig, cache_size: int = 512) -> None:
        super().__init__(config, cache_size)
        self.photos = {item: Path(path) for item, path in photos.items()}
        self.work_size = max(config.image_size, config.input_image_size)
        self._pil: OrderedDict[PictureKey, Image.Image] = OrderedDict()

    def pil(self, key: PictureKey) -> Image.Image:
        if key in self._pil:
            self._pil.move_to_end(key)
            return self._pil[key]
        item, variant = key
        if item not in self.photos:
            raise KeyError(f"catalog item {item!r} has no photo")
        image = load_photo(self.photos[item], self.work_size)
        if variant:
            image = augment_photo(image, photo_seed(item, variant))
        self.remember(self._pil, key, image)
        return image
