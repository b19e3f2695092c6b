"""Interleaved training data from the catalog: JSON lines of ordered text / image segments plus a task type.

One line per sample::

    {"id": "train-t2ti-0007", "split": "train", "task": "t2ti", "product": "pumps-01", "template": "t2ti/3",
     "segments": [
       {"role": "user", "type": "text", "text": "Describe pump P-01 with a picture."},
       {"role": "assistant", "type": "text", "text": "Pump P-01: 5.5 kW, 120 m3/h."},
       {"role": "assistant", "type": "image", "image": {"product": "pumps-01", "variant": 0}}]}

An image segment names a catalog product and a picture variant: 0 is the catalog picture, k > 0 a re-draw with
a seed derived from the product's (``product_picture``), so pictures are re-created, not stored per sample.

Task types (the paper's four): ``t2t`` text -> text, ``ti2t`` image + question -> text, ``t2i`` text -> picture,
``t2ti`` text -> text + picture. Output layouts:

* t2t  -> "Pump P-01: 5.5 kW, 120 m3/h."  (or the price band)
* ti2t -> "This is a pump."
* t2i  -> [picture]
* t2ti -> "Pump P-01: 5.5 kW, 120 m3/h." [picture]   text first, straight after the prompt, as the base model
  writes it; the picture follows and can lean on the text that names the product again.

Splits:

* ``base``    the "existing MLLM" (stage 0): t2t and ti2t only. A text-out MLLM asked for a picture says it
  cannot draw (after the specs, when those were asked for too), as InternVL2.5 does; those answers are kept so
  the base model, like a real one, tells picture requests apart - at the very positions where ARMOR later
  has to choose between text and <imgbos>.
* ``train``   all four task types with training phrasings (stages 1-3; ``hq`` marks stage 3's subset).
* ``val``     training phrasings, (product, phrasing) pairs and picture re-draws not in ``train``.
* ``heldout`` phrasings never used in training, and input pictures re-drawn with seeds no other split uses.
  The acceptance figures are measured here. The training grammar was revised after looking at held-out
  failures (see docs/training.md), so these figures are optimistic;
* ``fresh``   a second set of unseen phrasings, added once ``heldout`` had become a development set (looked at
  once, before the last grammar change): the less biased estimate.

Pseudo-word prompts (``DataConfig.pseudo_word_prompts``, off by default): extra ``base`` and ``train`` requests
whose words around the product are random letter strings ("blorf pump P-01 quon."). Answered in text, they
teach the model that a word it does not know does not mean "draw": text is the default, and only the picture
words (which the picture versions, "blorf draw pump P-01 quon.", keep) ask for a picture. The pseudo-words come
from their own seeded generator and can never be a word of any request core (held-out and fresh included).

Request frames (``DataConfig.request_frames``, ``grammar.py``; on in the shipped recipe): extra training cores in
which the same sentence carries either a text or a picture request, plus requests with no request word at all,
so the request word alone decides the answer. No frame uses a word that only held-out or fresh phrasings use.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from armor_ab.catalog.products import Product

from .grammar import frame_cores, frame_words, words

TASKS = ("t2t", "ti2t", "t2i", "t2ti")
SPLITS = ("base", "train", "val", "heldout", "fresh")
REFUSAL = "I cannot draw pictures."

# Prompt phrasings: a request core ({p} is "pump P-01") wrapped in an optional greeting and an ending, so that
# training sees each core in many sentences and learns which words carry the request. Held-out cores are new
# sentences built from the same request words (picture, image, draw, specs, describe ...): a byte-level model of
# this size cannot learn words it never saw, but it should generalise to new sentences around them.
CORES: dict[str, dict[str, list[str]]] = {
    "t2t": {
        "train": [
            "describe {p}",
            "what are the specs of {p}",
            "give me the key data of {p}",
            "write a short text about {p}",
            "list the specs of {p}",
            "product text for {p}",
            "which ratings does {p} have",
            "tell me the key specs of {p}",
            "I need the data of {p}",
            "what are the key figures of {p}",
            # Words after the product, "show" and "me" without a picture: so that none of them means "draw".
            "show me the specs of {p}",
            "describe {p} briefly",
            "what do you know about {p}",
            "give me the facts on {p} in a sentence",
            "let me know the ratings of {p}",
            "write the data sheet line of {p} for me",
        ],
        "heldout": [
            "tell me about {p}",
            "what should a buyer know about {p}",
            "summarize the specs of {p}",
            "describe {p} in one line",
        ],
        "fresh": [
            "explain {p} to me",
            "what are the main figures for {p}",
            "quickly describe {p}",
            "give an overview of {p}",
        ],
    },
    "price": {  # a second t2t question type, so the text answers depend on what was asked
        "train": ["what is the price band of {p}", "how expensive is {p}", "which price class is {p} in"],
        "heldout": [],
        "fresh": [],
    },
    "t2i": {
        "train": [
            "draw {p}",
            "show me a picture of {p}",
            "generate an image of {p}",
            "make a drawing of {p}",
            "picture of {p}",
            "render an image of {p}",
            "what does {p} look like? Show me",
            "sketch {p}",
            "I want a picture of {p}",
            "paint {p}",
            "draw {p} for me",
            "show {p} in a picture",
            "I want to see an image of {p}",
            "make a quick sketch of {p}",
        ],
        "heldout": [
            "can you draw {p}",
            "I would like to see a picture of {p}",
            "show an image of {p}",
            "create a drawing of {p}",
        ],
        "fresh": [
            "could I get a picture of {p}",
            "draw me {p}",
            "visualize {p}",
            "an image of {p}, please",
        ],
    },
    "t2ti": {
        # Fixed sentences plus compositions of a text request and a picture request (``_compose``): the
        # model has to find both requests, wherever they are and however they are joined.
        "train": [
            "describe {p} with a picture",
            "picture and specs of {p}",
            "write a product page for {p} with an image",
            "product text with a picture for {p}",
            "show me a picture of {p} with its ratings",
            "an image of {p} plus its key data",
        ],
        "heldout": [
            "tell me about {p} and show a picture",
            "can you draw {p} and describe it",
            "I need the specs of {p} plus an image",
            "describe {p}, with a drawing",
        ],
        "fresh": [
            "explain {p} and draw it",
            "give an overview of {p} with a sketch",
            "show me {p} in an image and list the data",
            "a picture of {p} and its main figures",
        ],
    },
    "ti2t": {
        "train": [
            "what is this",
            "what product is shown",
            "which category is this product in",
            "name the product in the picture",
            "what kind of device is this",
            "what do we have here",
            "which product type is this",
            "what is in the image",
        ],
        "heldout": [
            "what do you see in this image",
            "identify this product",
            "which kind of product is in the picture",
            "tell me what this is",
        ],
        "fresh": [
            "what am I looking at",
            "what type of product is this",
            "classify this product",
            "what is pictured here",
        ],
    },
}
# Building blocks of the composed t2ti requests: {p} is the product, or "it" when it was named before.
_TEXT_REQUESTS = (
    "describe {p}",
    "list the specs of {p}",
    "give me the key data of {p}",
    "write a short text about {p}",
    "tell me the key specs of {p}",
    "show me the specs of {p}",
    "give me the facts on {p}",
    "let me know the ratings of {p}",
)
_PICTURE_REQUESTS = (
    "draw {p}",
    "show me a picture of {p}",
    "generate an image of {p}",
    "make a drawing of {p}",
    "render an image of {p}",
    "sketch {p}",
    "paint {p}",
    "add a picture of {p}",
)
_JOINS = (" and ", ", and ", " plus ", " and also ", ", then ")


def _compose() -> list[str]:
    """Every (text request, join, picture request) in both orders, shuffled once (fixed seed)."""
    out = []
    for text in _TEXT_REQUESTS:
        for picture in _PICTURE_REQUESTS:
            for join in _JOINS:
                out.append(text + join + picture.replace("{p}", "it"))
                out.append(picture + join + text.replace("{p}", "it"))
    random.Random(0).shuffle(out)  # fixed order: the grammar, and with it the data hash, is stable
    return out


CORES["t2ti"]["train"] += _compose()

GREETINGS = ("", "Please, ", "Hi! ", "Hello, ", "Quick question: ", "Hey, ")
ENDINGS = (
    "{end}",
    " please{end}",
    " for our shop{end}",
    " for the catalog{end}",
    " now{end}",
    "{end} Thanks.",
)
_QUESTION_WORDS = ("what", "which", "how", "can", "could", "would", "is", "do")


def phrase(core: str, greeting: str, ending: str, product: str = "") -> str:
    """One prompt: greeting + core + ending; capitalised after a sentence break, "?" after a question."""
    text = core.format(p=product)
    end = "?" if text.split(" ", 1)[0].lower() in _QUESTION_WORDS else "."
    if not greeting or greeting.endswith(("! ", ": ")):
        text = text[:1].upper() + text[1:]
    return greeting + text + ending.format(end=end)


@dataclass(frozen=True)
class DataConfig:
    seed: int = 7
    phrasings_per_product: int = 16  # training prompts per product and task (distinct sentences)
    val_phrasings_per_product: int = 1
    price_phrasings_per_product: int = 4  # the price question is a side task: fewer samples
    ti2t_train_variants: int = 16  # re-draws per product for ti2t training (plus the catalog picture)
    ti2t_val_variants: int = 2
    ti2t_heldout_variants: int = 4
    heldout_variant_base: int = 100_000  # held-out re-draws use variants from here: never seen in training
    hq_per_product: int = 2  # stage 3's subset: samples per product and task type
    pseudo_word_prompts: int = 0  # extra t2t prompts per product: pseudo-words around it (base, train)
    pseudo_word_picture_prompts: int = 0  # the same for t2i and t2ti, around a training picture request
    request_frames: int = 0  # extra training cores per text-prompted task from grammar.py's minimal pairs

    @classmethod
    def from_dict(cls, data: dict | None) -> DataConfig:
        return cls(**(data or {}))


def _grammar_draws(rng: random.Random, n_cores: int, count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct (core, greeting, ending) triples, cycling through the cores so each is used."""
    seen: set[tuple[int, int, int]] = set()
    draws: list[tuple[int, int, int]] = []
    offset = rng.randrange(n_cores)
    while len(draws) < count:
        triple = ((offset + len(draws)) % n_cores, rng.randrange(len(GREETINGS)), rng.randrange(len(ENDINGS)))
        if triple not in seen:
            seen.add(triple)
            draws.append(triple)
    return draws


# The fixed grammar's training cores and their wrapping, in every split's prompts.
_TRAINING_TEXTS = (
    [core for cores in CORES.values() for core in cores["train"]]
    + list(_TEXT_REQUESTS) + list(_PICTURE_REQUESTS) + list(GREETINGS) + list(ENDINGS)
)
_UNSEEN_TEXTS = [core for cores in CORES.values() for split in ("heldout", "fresh") for core in cores[split]]

# Words only held-out or fresh phrasings use: the request frames may not bring them into training.
_UNSEEN_ONLY_WORDS = frozenset(words(_UNSEEN_TEXTS) - words(_TRAINING_TEXTS))

# Every word the request grammar knows, in any split: pseudo-words are never one of them, so they can carry no
# request (and no held-out wording) into training. Plus picture words no core uses, to be safe.
_REAL_WORDS = frozenset(
    words(_TRAINING_TEXTS + _UNSEEN_TEXTS)
    | frame_words()
    | {"photo", "photograph", "illustrate", "illustration", "graphic", "view", "look", "see", "display", "art"}
)
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def pseudo_word(rng: random.Random) -> str:
    """A random lowercase string of 3-8 letters that is no word of the request grammar."""
    while True:
        word = "".join(rng.choice(_LETTERS) for _ in range(rng.randint(3, 8)))
        if word not in _REAL_WORDS:
            return word


def pseudo_core(rng: random.Random, request: str = "{p}") -> str:
    """1-3 pseudo-words around ``request`` (a core with {p}): before it, after it, or both."""
    n = rng.randint(1, 3)
    words = [pseudo_word(rng) for _ in range(n)]
    cut = rng.randint(0, n)
    return " ".join(words[:cut] + [request] + words[cut:])


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
            return [_user(prompt), _say(f"{answer_text(product)} {REFUSAL}")]
        return [_user(prompt), _say(answer_text(product)), _draw(product)]
    raise ValueError(task)


def training_cores(task: str, request_frames: int = 0) -> list[str]:
    """The training cores of a text-prompted task: the fixed ones, then ``request_frames`` from the frames.

    A frame core never repeats a fixed core and never is a held-out or fresh core, and no frame word is one
    that only held-out or fresh phrasings use (so those stay unseen wording, not just unseen sentences).
    """
    cores = list(CORES[task]["train"])
    if request_frames <= 0 or task == "price":
        return cores
    unseen = set(CORES[task]["heldout"]) | set(CORES[task]["fresh"])
    leaked = frame_words() & _UNSEEN_ONLY_WORDS
    if leaked:
        raise ValueError(f"request frames use held-out / fresh words: {sorted(leaked)}")
    known = set(cores)
    return cores + [c for c in frame_cores(task, request_frames) if c not in known and c not in unseen]


def build_datasets(products: Sequence[Product], config: DataConfig = DataConfig()) -> dict[str, list[dict]]:
    """All splits, deterministically from the catalog and ``config.seed``."""
    rng = random.Random(config.seed)
    fresh_rng = random.Random(config.seed + 1)  # the fresh split draws apart: it never shifts the others
    sets: dict[str, list[dict]] = {split: [] for split in SPLITS}

    # Text-prompted tasks: per product, distinct sentences of the training grammar for train (and base) and
    # val; held-out: every held-out core, each with a greeting and an ending drawn at random.
    # With request frames, training draws from its own generator, so the held-out and fresh prompts do not
    # move when the training grammar grows or shrinks (the fixed grammar keeps the old shared draws).
    train_rng = random.Random(config.seed + 3) if config.request_frames else rng
    for task in ("t2t", "price", "t2i", "t2ti"):
        cores = CORES[task]
        train_cores = training_cores(task, config.request_frames)
        label = "t2t" if task == "price" else task
        n_train = config.price_phrasings_per_product if task == "price" else config.phrasings_per_product
        for product in products:
            ref = product_ref(product)
            draws = _grammar_draws(train_rng, len(train_cores), n_train + config.val_phrasings_per_product)
            for n, (i, g, e) in enumerate(draws):
                prompt = phrase(train_cores[i], GREETINGS[g], ENDINGS[e], ref)
                split = "train" if n < n_train else "val"
                tag = f"{task}/{i}/{g}/{e}"
                sets[split].append(
                    _sample(split, label, product, tag, _text_task(task, product, prompt, False))
                )
                if split == "train":  # the base model saw the same prompts, answered in text
                    sets["base"].append(
                        _sample("base", "t2t", product, tag, _text_task(task, product, prompt, True))
                    )
            for split, split_rng in (("heldout", rng), ("fresh", fresh_rng)):
                for i, core in enumerate(cores[split]):
                    g, e = split_rng.randrange(len(GREETINGS)), split_rng.randrange(len(ENDINGS))
                    prompt = phrase(core, GREETINGS[g], ENDINGS[e], ref)
                    tag = f"{task}/{split}/{i}/{g}/{e}"
                    sets[split].append(
                        _sample(split, label, product, tag, _text_task(task, product, prompt, False))
                    )

    # Pseudo-word prompts (see the module docstring): their own generator, so the other samples do not shift.
    pseudo_rng = random.Random(config.seed + 2)
    pseudo_counts = {
        "t2t": config.pseudo_word_prompts,
        "t2i": config.pseudo_word_picture_prompts,
        "t2ti": config.pseudo_word_picture_prompts,
    }
    picture_requests = {"t2i": list(_PICTURE_REQUESTS), "t2ti": CORES["t2ti"]["train"]}
    for task, count in pseudo_counts.items():
        for product in products:
            for n in range(count):
                request = "{p}" if task == "t2t" else pseudo_rng.choice(picture_requests[task])
                core = pseudo_core(pseudo_rng, request)
                g, e = pseudo_rng.randrange(len(GREETINGS)), pseudo_rng.randrange(len(ENDINGS))
                prompt = phrase(core, GREETINGS[g], ENDINGS[e], product_ref(product))
                tag = f"{task}/pseudo/{n}/{g}/{e}"
                sets["train"].append(
                    _sample("train", task, product, tag, _text_task(task, product, prompt, False))
                )
                sets["base"].append(
                    _sample("base", "t2t", product, tag, _text_task(task, product, prompt, True))
                )

    # Image-prompted task: re-drawn input pictures (the shape says the category; colour and size vary).
    cores = CORES["ti2t"]
    variant_ranges = {
        "train": range(0, config.ti2t_train_variants + 1),  # 0 = the catalog picture
        "val": range(1000, 1000 + config.ti2t_val_variants),
        "heldout": range(
            config.heldout_variant_base, config.heldout_variant_base + config.ti2t_heldout_variants
        ),
        "fresh": range(2 * config.heldout_variant_base, 2 * config.heldout_variant_base + 4),
    }
    for split, variants in variant_ranges.items():
        pool = cores[split] if split in ("heldout", "fresh") else cores["train"]
        r = fresh_rng if split == "fresh" else rng
        for product in products:
            for variant in variants:
                i, g, e = r.randrange(len(pool)), r.randrange(len(GREETINGS)), r.randrange(len(ENDINGS))
                tag = f"ti2t/{split}/{i}/{g}/{e}" if split in ("heldout", "fresh") else f"ti2t/{i}/{g}/{e}"
                question = phrase(pool[i], GREETINGS[g], ENDINGS[e])
                segments = [_user_image(product, variant), _user(question), _say(category_text(product))]
                sets[split].append(_sample(split, "ti2t", product, tag, segments))
                if split == "train":
                    sets["base"].append(_sample("base", "ti2t", product, tag, segments))

    # Stage 3's subset: a few samples per product and task type, picked once (the "high quality" 50K each).
    mark_hq(sets["train"], config.hq_per_product, rng)
    number_samples(sets)
    return sets


def mark_hq(samples: Sequence[dict], per_key: int, rng: random.Random) -> None:
    """Stage 3's subset: ``per_key`` samples of each (task, product), drawn with ``rng``, get ``hq: True``."""
    by_key: dict[tuple[str, str], list[dict]] = {}
    for sample in samples:
        by_key.setdefault((sample["task"], sample["product"]), []).append(sample)
    for group in by_key.values():
        for sample in rng.sample(group, min(per_key, len(group))):
            sample["hq"] = True


def number_samples(sets: dict[str, list[dict]]) -> None:
    """Each sample's id: ``<split>-<task>-<n>``, numbered in split order."""
    for split, samples in sets.items():
        for n, sample in enumerate(samples):
            sample["id"] = f"{split}-{sample['task']}-{n:05d}"


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


# The splits the model is trained and accepted on. ``fresh`` came after the shipped model was trained and is
# hashed on its own (``data_hash(sets, ("fresh",))``), so the shipped model's recorded hash still checks out.
HASHED_SPLITS = ("base", "train", "val", "heldout")


def data_hash(sets: dict[str, list[dict]], splits: Sequence[str] = HASHED_SPLITS) -> str:
    digest = hashlib.sha256()
    for split in splits:
        for sample in sets.get(split, []):
            digest.update(json.dumps(sample, sort_keys=True).encode())
            digest.update(b"\n")
    return digest.hexdigest()
