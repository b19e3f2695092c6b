"""Interleaved training data from the catalog: JSON lines of ordered text / image segments plus a task type.

One line per sample::

    {"id": "train-t2ti-0007", "split": "train", "task": "t2ti", "product": "pumps-01", "template": "t2ti/3",
     "segments": [
       {"role": "user", "type": "text", "text": "Describe pump P-01 with a picture."},
       {"role": "assistant", "type": "image", "image": {"product": "pumps-01", "variant": 0}},
       {"role": "assistant", "type": "text", "text": "Pump P-01: 5.5 kW, 120 m3/h."}]}

An image segment names a catalog product and a picture variant: 0 is the catalog picture, k > 0 a re-draw with
a seed derived from the product's (``product_picture``), so pictures are re-created, not stored per sample.

Task types (the paper's four): ``t2t`` text -> text, ``ti2t`` image + question -> text, ``t2i`` text -> picture,
``t2ti`` text -> picture + text. Output layouts:

* t2i  -> [picture]
* t2ti -> [picture] "Pump P-01: 5.5 kW, 120 m3/h."   picture first: the modality choice is then the answer's
  first token, where the prompt is best summarised (a 4-layer byte model decides poorly mid-sentence)
* t2t  -> "Pump P-01: 5.5 kW, 120 m3/h."  (or the price band)
* ti2t -> "This is a pump."

Splits:

* ``base``    the "existing MLLM" (stage 0): t2t and ti2t only. A text-out MLLM asked for a picture answers
  in text ("I can only write text." plus the specs when they were asked for), as InternVL2.5 does; those
  answers are kept so the base model, like a real one, tells picture requests apart.
* ``train``   all four task types with training phrasings (stages 1-3; ``hq`` marks stage 3's subset).
* ``val``     training phrasings, (product, phrasing) pairs and picture re-draws not in ``train``.
* ``heldout`` phrasings never used in training, and input pictures re-drawn with seeds no other split uses.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from armor_ab.catalog.products import Product

TASKS = ("t2t", "ti2t", "t2i", "t2ti")
SPLITS = ("base", "train", "val", "heldout")
REFUSAL = "I can only write text."

# Prompt phrasings; {p} is "pump P-01". Held-out phrasings are new sentences built from the same request
# words (picture, image, draw, specs, describe ...): a byte-level model of this size cannot learn words it
# never saw, but it should generalise to new sentences around them.
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "t2t": {
        "train": [
            "Describe {p}.",
            "What are the specs of {p}?",
            "Give me the key data of {p}.",
            "Write a short text about {p}.",
            "List the specs of {p}.",
            "Product text for {p}, please.",
            "Which ratings does {p} have?",
            "Tell me the key specs of {p}.",
        ],
        "heldout": [
            "Tell me about {p}.",
            "What should a buyer know about {p}?",
            "Summarize {p} for the catalog.",
            "Please describe {p} in one line.",
        ],
    },
    "price": {  # a second t2t question type, so the text answers depend on what was asked
        "train": ["What is the price band of {p}?", "How expensive is {p}?", "Price class of {p}?"],
        "heldout": [],
    },
    "t2i": {
        "train": [
            "Draw {p}.",
            "Show me a picture of {p}.",
            "Generate an image of {p}.",
            "Make a drawing of {p}.",
            "Picture of {p}, please.",
            "Render an image of {p}.",
            "What does {p} look like? Show me.",
            "Sketch {p}.",
        ],
        "heldout": [
            "Can you draw {p}?",
            "I would like to see a picture of {p}.",
            "Please show an image of {p}.",
            "Create a drawing of {p}.",
        ],
    },
    "t2ti": {
        "train": [
            "Describe {p} with a picture.",
            "Show {p} and list its specs.",
            "Picture and specs of {p}, please.",
            "Write a product page for {p} with an image.",
            "Draw {p} and give its key data.",
            "Give me an image of {p} and its specs.",
            "Product text with a picture for {p}.",
            "Show me a picture of {p} with its ratings.",
        ],
        "heldout": [
            "Tell me about {p} and show a picture.",
            "Can you draw {p} and describe it?",
            "I need the specs of {p} plus an image.",
            "Describe {p}, with a drawing.",
        ],
    },
    "ti2t": {
        "train": [
            "What is this?",
            "What product is shown?",
            "Which category is this product in?",
            "Name the product in the picture.",
            "What kind of device is this?",
            "What do we have here?",
        ],
        "heldout": [
            "What do you see in this image?",
            "Identify this product.",
            "Which kind of product is in the picture?",
            "Tell me what this is.",
        ],
    },
}


@dataclass(frozen=True)
class DataConfig:
    seed: int = 7
    val_fraction: float = 0.1  # of (product, phrasing) pairs, per task
    ti2t_train_variants: int = 16  # re-draws per product for ti2t training (plus the catalog picture)
    ti2t_val_variants: int = 2
    ti2t_heldout_variants: int = 4
    heldout_variant_base: int = 100_000  # held-out re-draws use variants from here: never seen in training
    hq_per_product: int = 2  # stage 3's subset: samples per product and task type

    @classmethod
    def from_dict(cls, data: dict | None) -> DataConfig:
        return cls(**(data or {}))


def product_ref(product: Product) -> str:
    """How prompts name a product: ``"pump P-01"``."""
    return f"{product.noun} {product.code}"


def answer_text(product: Product) -> str:
    return product.spec_line()


def price_text(product: Product) -> str:
    return f"{product.name} is in the {product.price_band} price band."


def category_text(product: Product) -> str:
    return f"This is a {product.noun}."


def _user(text: str) -> dict:
    return {"role": "user", "type": "text", "text": text}


def _user_image(product: Product, variant: int) -> dict:
    return {"role": "user", "type": "image", "image": {"product": product.id, "variant": variant}}


def _say(text: str) -> dict:
    return {"role": "assistant", "type": "text", "text": text}


def _draw(product: Product) -> dict:
    return {"role": "assistant", "type": "image", "image": {"product": product.id, "variant": 0}}


def _sample(split: str, task: str, product: Product, template: str, segments: list[dict]) -> dict:
    return {"split": split, "task": task, "product": product.id, "template": template, "segments": segments}


def _text_task(task: str, product: Product, prompt: str, base: bool) -> list[dict]:
    """Segments of a t2t / t2i / t2ti (or price) sample; ``base``: as the text-only base model answers."""
    if task == "t2t":
        return [_user(prompt), _say(answer_text(product))]
    if task == "price":
        return [_user(prompt), _say(price_text(product))]
    if task == "t2i":
        return [_user(prompt), _say(REFUSAL)] if base else [_user(prompt), _draw(product)]
    if task == "t2ti":
        if base:
            return [_user(prompt), _say(f"{REFUSAL} {answer_text(product)}")]
        return [_user(prompt), _draw(product), _say(answer_text(product))]
    raise ValueError(task)


def build_datasets(products: Sequence[Product], config: DataConfig = DataConfig()) -> dict[str, list[dict]]:
    """All splits, deterministically from the catalog and ``config.seed``."""
    rng = random.Random(config.seed)
    sets: dict[str, list[dict]] = {split: [] for split in SPLITS}

    # Text-prompted tasks: (product, phrasing) pairs; a fraction of the training pairs goes to val.
    for task in ("t2t", "price", "t2i", "t2ti"):
        templates = TEMPLATES[task]
        pairs = [(p, i) for p in products for i in range(len(templates["train"]))]
        val_pairs = set(rng.sample(range(len(pairs)), max(1, int(len(pairs) * config.val_fraction))))
        for k, (product, i) in enumerate(pairs):
            prompt = templates["train"][i].format(p=product_ref(product))
            split = "val" if k in val_pairs else "train"
            label = "t2t" if task == "price" else task
            sets[split].append(_sample(split, label, product, f"{task}/{i}", _text_task(task, product, prompt, False)))
            if split == "train":  # the base model saw the same prompts, answered in text
                base = _text_task(task, product, prompt, True)
                sets["base"].append(_sample("base", "t2t", product, f"{task}/{i}", base))
        for product in products:
            for i, template in enumerate(templates["heldout"]):
                prompt = template.format(p=product_ref(product))
                sets["heldout"].append(
                    _sample("heldout", task, product, f"{task}/heldout/{i}", _text_task(task, product, prompt, False))
                )

    # Image-prompted task: re-drawn input pictures (the shape says the category; colour and size vary).
    ti2t = TEMPLATES["ti2t"]
    variant_ranges = {
        "train": range(0, config.ti2t_train_variants + 1),  # 0 = the catalog picture
        "val": range(1000, 1000 + config.ti2t_val_variants),
        "heldout": range(config.heldout_variant_base, config.heldout_variant_base + config.ti2t_heldout_variants),
    }
    for split, variants in variant_ranges.items():
        phrasings = ti2t["heldout"] if split == "heldout" else ti2t["train"]
        for product in products:
            for variant in variants:
                i = rng.randrange(len(phrasings))
                tag = f"ti2t/heldout/{i}" if split == "heldout" else f"ti2t/{i}"
                segments = [_user_image(product, variant), _user(phrasings[i]), _say(category_text(product))]
                sets[split].append(_sample(split, "ti2t", product, tag, segments))
                if split == "train":
                    sets["base"].append(_sample("base", "ti2t", product, tag, segments))

    # Stage 3's subset: a few samples per product and task type, picked once (the "high quality" 50K each).
    by_key: dict[tuple[str, str], list[dict]] = {}
    for sample in sets["train"]:
        by_key.setdefault((sample["task"], sample["product"]), []).append(sample)
    for group in by_key.values():
        for sample in rng.sample(group, min(config.hq_per_product, len(group))):
            sample["hq"] = True

    for split, samples in sets.items():
        for n, sample in enumerate(samples):
            sample["id"] = f"{split}-{sample['task']}-{n:05d}"
    return sets


def prompt_text(sample: dict) -> str:
    return " ".join(s["text"] for s in sample["segments"] if s["role"] == "user" and s["type"] == "text")


def input_image(sample: dict) -> dict | None:
    for s in sample["segments"]:
        if s["role"] == "user" and s["type"] == "image":
            return s["image"]
    return None


def wants_picture(sample: dict) -> bool:
    return any(s["role"] == "assistant" and s["type"] == "image" for s in sample["segments"])


def select(samples: Iterable[dict], tasks: Sequence[str] | None = None, hq_only: bool = False) -> list[dict]:
    return [s for s in samples if (tasks is None or s["task"] in tasks) and (not hq_only or s.get("hq"))]


def write_jsonl(samples: Iterable[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for sample in samples:
            f.write(json.dumps(sample, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def write_datasets(sets: dict[str, list[dict]], directory: Path) -> str:
    """Write ``<split>.jsonl`` files; returns the data hash (SHA-256 over all files, in split order)."""
    for split, samples in sets.items():
        write_jsonl(samples, directory / f"{split}.jsonl")
    return data_hash(sets)


def data_hash(sets: dict[str, list[dict]]) -> str:
    digest = hashlib.sha256()
    for split in SPLITS:
        for sample in sets.get(split, []):
            digest.update(json.dumps(sample, sort_keys=True).encode())
            digest.update(b"\n")
    return digest.hexdigest()
