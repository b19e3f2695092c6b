"""The acceptance figures of a demo model, on held-out prompts (phrasings never trained on):

* ``modality_accuracy``        pictures when the prompt asks for them (t2i, t2ti), text only when not (t2t,
                               ti2t); t2ti also needs text beside the picture
* ``image_category_accuracy``  generated pictures the judge (``classifier.py``) puts in the requested category;
                               ``image_category_accuracy_strict`` counts a missing picture as wrong
* ``spec_accuracy``            t2t / t2ti answers that name every key spec of the product
* ``ti2t_category_accuracy``   answers about an input picture (re-drawn with unseen seeds) that name its category

Decoding is greedy for text and low-temperature with classifier-free guidance for codes (``EvalConfig``).

A model fine-tuned on a user's own catalog (``own_pipeline.py``) has no judge trained for its categories, so
``evaluate_catalog`` asks the model itself: every generated picture goes back through its understanding path
(ViT -> projector -> LM) with a held-out "what is this?" question, and the picture counts when the answer
names the requested item's category (``armor_ab.catalog.categories.names_category``, shared with the
guardrails' image_text check). Its figures, on the held-out split of ``catalog_data.py`` (phrasings no
training sample used, photo augmentations no training sample saw):

* ``modality_accuracy``        as above
* ``image_category_accuracy``  generated pictures whose category the model's own answer names (``_strict``:
                               a missing picture counted as wrong)
* ``spec_accuracy``            t2t / t2ti answers that contain every spec value of the item (its name when it
                               has no specs)
* ``ti2t_category_accuracy``   answers about a held-out augmentation of the item's photo that name its category
  (and ``ti2t_name_accuracy``: that name the item); the ceiling of the picture check above
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from PIL import Image

from armor_ab.catalog.categories import names_category
from armor_ab.catalog.items import CatalogItem
from armor_ab.catalog.products import Product, product_picture
from armor_ab.model.generate import InterleavedGenerator, SamplingConfig
from armor_ab.model.modeling import ArmorForInterleavedGeneration
from armor_ab.model.tokenizer import TextTokenizer

from .batches import Pictures
from .classifier import CategoryClassifier
from .data import TASKS, input_image, prompt_text, wants_picture
from .training_recipe import EvalConfig

UNDERSTANDING_TASKS = ("t2t", "ti2t")  # what a text-out base model can be asked


def pick_heldout(samples: Sequence[dict], per_task: int, tasks: Sequence[str] = TASKS) -> list[dict]:
    """Up to ``per_task`` held-out samples per task: one per product first, phrasings rotating."""
    picked = []
    for task in tasks:
        by_product: dict[str, list[dict]] = {}
        for s in samples:
            if s["task"] == task:
                by_product.setdefault(s["product"], []).append(s)
        rows = []
        for rank in range(max((len(v) for v in by_product.values()), default=0)):
            for i, product in enumerate(sorted(by_product)):
                group = by_product[product]
                rows.append(group[(i + rank) % len(group)])  # rotate phrasings / pictures across products
        picked += rows[:per_task]
    return picked


def run_generation(
    model: ArmorForInterleavedGeneration,
    tokenizer: TextTokenizer,
    products: dict[str, Product],
    samples: Sequence[dict],
    cfg: EvalConfig,
    input_picture: Callable[[dict], Image.Image | None] | None = None,
) -> list[dict]:
    """Generate for each sample; returns per-sample text, picture (PIL or None) and the sample itself.

    ``input_picture``: a sample's input picture (default: the demo catalog's drawing it names)."""
    if input_picture is None:
        input_picture = lambda sample: _input_picture(sample, products)  # noqa: E731
    generator = InterleavedGenerator.from_model(model, tokenizer)
    settings = SamplingConfig(
        max_new_tokens=cfg.max_new_tokens,
        max_images=1,
        temperature=cfg.temperature,
        guidance_scale=cfg.guidance,
        image_temperature=cfg.image_temperature,
        image_top_k=cfg.image_top_k,
        seed=cfg.seed,
    )
    results = []
    # Batches of one task type keep the prompt lengths (and with them the padding) alike.
    for task in TASKS:
        group = [s for s in samples if s["task"] == task]
        for start in range(0, len(group), cfg.batch_size):
            chunk = group[start : start + cfg.batch_size]
            prompts = [prompt_text(s) for s in chunk]
            images = [input_picture(s) for s in chunk]
            out = generator.generate(
                prompts, images if any(i is not None for i in images) else None, settings
            )
            for sample, content in zip(chunk, out.contents, strict=True):
                text = " ".join(seg.text for seg in content.segments if seg.type == "text").strip()
                pictures = [seg.to_pil() for seg in content.segments if seg.type == "image"]
                results.append({"sample": sample, "text": text, "picture": pictures[0] if pictures else None})
    model.eval()
    return results


def _input_picture(sample: dict, products: dict[str, Product]) -> Image.Image | None:
    ref = input_image(sample)
    return product_picture(products[ref["product"]], ref["variant"]) if ref else None


def score(results: Sequence[dict], products: dict[str, Product], judge: CategoryClassifier | None) -> dict:
    """The figures (fractions in [0, 1]) and their counts, overall and per task."""
    per_task: dict[str, dict] = {}
    modality_ok = 0
    spec_hits = spec_n = 0
    ti2t_hits = ti2t_n = 0
    images = [r for r in results if r["picture"] is not None and wants_picture(r["sample"])]
    judged = judge.predict([r["picture"] for r in images]) if (judge and images) else []
    category_of = {id(r): c for r, c in zip(images, judged, strict=True)}
    img_hits = img_n = img_asked = 0
    for r in results:
        sample, text = r["sample"], r["text"]
        product = products[sample["product"]]
        task, wants = sample["task"], wants_picture(sample)
        modality_ok += _tally_modality(r, per_task)
        if task in ("t2t", "t2ti"):
            spec_n += 1
            spec_hits += all(v in text for v in product.spec_values)
        if task == "ti2t":
            ti2t_n += 1
            ti2t_hits += product.noun in text.lower()
        if wants:
            img_asked += 1
            if id(r) in category_of:
                img_n += 1
                img_hits += category_of[id(r)] == product.category
    for stats in per_task.values():
        stats["modality_accuracy"] = stats["modality_ok"] / stats["n"]
    return {
        "n": len(results),
        "modality_accuracy": _frac(modality_ok, len(results)),
        "image_category_accuracy": _frac(img_hits, img_n),
        "image_category_accuracy_strict": _frac(img_hits, img_asked),
        "images_generated": img_n,
        "images_requested": img_asked,
        "spec_accuracy": _frac(spec_hits, spec_n),
        "ti2t_category_accuracy": _frac(ti2t_hits, ti2t_n),
        "per_task": per_task,
    }


def _tally_modality(result: dict, per_task: dict[str, dict]) -> bool:
    """Whether a result answered in the modality asked for (a picture exactly when one was asked, and text
    unless only a picture was), counted into its task's ``n`` / ``modality_ok``."""
    sample, text, picture = result["sample"], result["text"], result["picture"]
    task = sample["task"]
    ok = (picture is not None) == wants_picture(sample) and (task == "t2i" or bool(text))
    stats = per_task.setdefault(task, {"n": 0, "modality_ok": 0})
    stats["n"] += 1
    stats["modality_ok"] += ok
    return ok


def _frac(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def evaluate_model(
    model: ArmorForInterleavedGeneration,
    tokenizer: TextTokenizer,
    products: Sequence[Product],
    heldout: Sequence[dict],
    judge: CategoryClassifier | None,
    cfg: EvalConfig,
    tasks: Sequence[str] = TASKS,
    examples_dir: Path | None = None,
) -> dict:
    """Generate on the held-out prompts of ``tasks`` and score; optionally write example outputs."""
    start = time.time()
    by_id = {p.id: p for p in products}
    samples = pick_heldout(heldout, cfg.per_task, tasks)
    with torch.inference_mode():
        results = run_generation(model, tokenizer, by_id, samples, cfg)
    figures = score(results, by_id, judge)
    figures["tasks"] = list(tasks)
    figures["eval_config"] = asdict(cfg)
    figures["duration_s"] = round(time.time() - start, 1)
    if examples_dir is not None:
        write_examples(results, examples_dir)
    return figures


def write_examples(results: Sequence[dict], directory: Path, per_task: int = 6) -> None:
    """examples.jsonl (prompt, answer text, picture file) and the pictures of a few results per task."""
    directory.mkdir(parents=True, exist_ok=True)
    lines, seen = [], {}
    for r in results:
        task = r["sample"]["task"]
        seen[task] = seen.get(task, 0) + 1
        if seen[task] > per_task:
            continue
        record = {
            "task": task,
            "product": r["sample"]["product"],
            "prompt": prompt_text(r["sample"]),
            "text": r["text"],
        }
        if "judged" in r:  # the model's own answer about its picture (own-catalog evaluation)
            record["judged"] = r["judged"]
        if r["picture"] is not None:
            name = f"{r['sample']['id']}.png"
            r["picture"].save(directory / name)
            record["picture"] = name
        lines.append(json.dumps(record))
    (directory / "examples.jsonl").write_text("\n".join(lines) + "\n")


def picture_sheet(results: Sequence[dict], columns: int = 7) -> Image.Image | None:
    """The generated pictures side by side (for docs and the artifact)."""
    pictures = [r["picture"] for r in results if r["picture"] is not None]
    if not pictures:
        return None
    size = pictures[0].size[0]
    rows = (len(pictures) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * size, rows * size), (255, 255, 255))
    for i, picture in enumerate(pictures):
        sheet.paste(picture, ((i % columns) * size, (i // columns) * size))
    return sheet


# --- a model fine-tuned on the user's own catalog ------------------------------------------------------------
def answer_about_pictures(
    generator: InterleavedGenerator,
    pictures: Sequence[Image.Image],
    questions: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    seed: int = 0,
) -> list[str]:
    """The model's stripped text answers to ``questions[i]`` about ``pictures[i]``: its understanding path
    (ViT -> projector -> LM), greedy, no pictures drawn, ``batch_size`` pictures per ``generate`` call. The
    guardrails' image_text check asks through this too (``guardrails.model_context.understanding``)."""
    if len(pictures) != len(questions):
        raise ValueError(f"{len(pictures)} pictures but {len(questions)} questions")
    settings = SamplingConfig(max_new_tokens=max_new_tokens, max_images=0, temperature=0.0, seed=seed)
    answers: list[str] = []
    for start in range(0, len(pictures), max(1, batch_size)):
        stop = start + max(1, batch_size)
        out = generator.generate(list(questions[start:stop]), list(pictures[start:stop]), settings)
        answers += [content.text.strip() for content in out.contents]
    return answers


def ask_about_pictures(
    model: ArmorForInterleavedGeneration,
    tokenizer: TextTokenizer,
    pictures: Sequence[Image.Image],
    questions: Sequence[str],
    cfg: EvalConfig,
) -> list[str]:
    """The model's text answers to ``questions[i]`` about ``pictures[i]`` (its understanding path; greedy,
    no pictures drawn)."""
    generator = InterleavedGenerator.from_model(model, tokenizer)
    answers = answer_about_pictures(generator, pictures, questions, cfg.max_new_tokens, cfg.batch_size, cfg.seed)
    model.eval()
    return answers


def score_catalog(results: Sequence[dict], items: dict[str, CatalogItem], judged: dict[int, str]) -> dict:
    """The own-catalog figures (see the module docstring); ``judged``: result index -> the model's answer
    about the picture it generated."""
    categories = sorted({item.category for item in items.values()})
    per_task: dict[str, dict] = {}
    modality_ok = spec_hits = spec_n = ti2t_hits = ti2t_names = ti2t_n = 0
    img_hits = img_n = img_asked = 0
    for index, r in enumerate(results):
        sample, text = r["sample"], r["text"]
        item = items[sample["product"]]
        task, wants = sample["task"], wants_picture(sample)
        modality_ok += _tally_modality(r, per_task)
        if task in ("t2t", "t2ti"):
            spec_n += 1
            values = list(item.specs.values()) or [item.name]
            spec_hits += all(v.casefold() in text.casefold() for v in values)
        if task == "ti2t":
            ti2t_n += 1
            ti2t_hits += names_category(text, item.category, categories)
            ti2t_names += item.name.casefold() in text.casefold()
        if wants:
            img_asked += 1
            if index in judged:
                img_n += 1
                img_hits += names_category(judged[index], item.category, categories)
    for stats in per_task.values():
        stats["modality_accuracy"] = stats["modality_ok"] / stats["n"]
    return {
        "n": len(results),
        "modality_accuracy": _frac(modality_ok, len(results)),
        "image_category_accuracy": _frac(img_hits, img_n),
        "image_category_accuracy_strict": _frac(img_hits, img_asked),
        "images_generated": img_n,
        "images_requested": img_asked,
        "spec_accuracy": _frac(spec_hits, spec_n),
        "ti2t_category_accuracy": _frac(ti2t_hits, ti2t_n),
        "ti2t_name_accuracy": _frac(ti2t_names, ti2t_n),
        "per_task": per_task,
    }


def evaluate_catalog(
    model: ArmorForInterleavedGeneration,
    tokenizer: TextTokenizer,
    items: Sequence[CatalogItem],
    pictures: Pictures,
    heldout: Sequence[dict],
    questions: Sequence[str],
    cfg: EvalConfig,
    tasks: Sequence[str] = TASKS,
    examples_dir: Path | None = None,
) -> dict:
    """Generate on the held-out samples of ``tasks`` and score them; ``pictures`` gives the input photos,
    ``questions`` are the held-out "what is this?" phrasings the model is asked about its own pictures."""
    start = time.time()
    by_id = {item.id: item for item in items}
    samples = pick_heldout(heldout, cfg.per_task, tasks)

    def input_picture(sample: dict) -> Image.Image | None:
        ref = input_image(sample)
        return pictures.pil((ref["product"], ref["variant"])) if ref else None

    with torch.inference_mode():
        results = run_generation(model, tokenizer, {}, samples, cfg, input_picture)
        drawn = [i for i, r in enumerate(results) if r["picture"] is not None and wants_picture(r["sample"])]
        asked = [questions[n % len(questions)] for n in range(len(drawn))]
        answers = ask_about_pictures(model, tokenizer, [results[i]["picture"] for i in drawn], asked, cfg)
    judged = dict(zip(drawn, answers, strict=True))
    for i, question, answer in zip(drawn, asked, answers, strict=True):
        results[i]["judged"] = {"question": question, "answer": answer}
    figures = score_catalog(results, by_id, judged)
    figures["tasks"] = list(tasks)
    figures["picture_judge"] = "the model's own understanding path (ViT), asked held-out ti2t questions"
    figures["eval_config"] = asdict(cfg)
    figures["duration_s"] = round(time.time() - start, 1)
    if examples_dir is not None:
        write_examples(results, examples_dir)
    return figures
