"""The interleaved data builder: task types, layouts, splits (held-out disjoint from training), batches."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from armor_ab.assets import DEMO_CATALOG
from armor_ab.catalog import load_catalog
from armor_ab.model import ByteTokenizer, get_config
from armor_ab.training import grammar
from armor_ab.training.batches import (
    IGNORE,
    PictureStore,
    TaskSampler,
    answer_picture_keys,
    collate,
    encode_sample,
)
from armor_ab.training.data import (
    CORES,
    REFUSAL,
    TASKS,
    DataConfig,
    build_datasets,
    data_hash,
    input_image,
    prompt_text,
    pseudo_core,
    pseudo_word,
    read_jsonl,
    training_cores,
    wants_picture,
    write_datasets,
)
from armor_ab.training.grammar import TEXT_NOUNS, TEXT_VERBS, frame_cores


@pytest.fixture(scope="module")
def products():
    return load_catalog(DEMO_CATALOG)


@pytest.fixture(scope="module")
def sets(products):
    return build_datasets(products, DataConfig())


def _layout(sample: dict) -> list[str]:
    return [f"{s['role']}:{s['type']}" for s in sample["segments"]]


def test_every_split_has_its_task_types_and_layouts(sets) -> None:
    for split in ("train", "val", "heldout", "fresh"):
        assert {s["task"] for s in sets[split]} == set(TASKS)
    expected = {
        "t2t": ["user:text", "assistant:text"],
        "ti2t": ["user:image", "user:text", "assistant:text"],
        "t2i": ["user:text", "assistant:image"],
        "t2ti": ["user:text", "assistant:text", "assistant:image"],
    }
    for sample in sets["train"] + sets["heldout"]:
        assert _layout(sample) == expected[sample["task"]], sample
        assert wants_picture(sample) == (sample["task"] in ("t2i", "t2ti"))
    # The base model's data is text out only (it predates the picture head) and refuses to draw.
    assert {s["task"] for s in sets["base"]} == {"t2t", "ti2t"}
    assert not any(wants_picture(s) for s in sets["base"])
    assert any(s["segments"][-1]["text"] == REFUSAL for s in sets["base"])  # t2i prompts
    assert any(s["segments"][-1]["text"].endswith(" " + REFUSAL) for s in sets["base"])  # t2ti prompts


def test_heldout_phrasings_and_pictures_are_never_trained_on(sets) -> None:
    trained = sets["train"] + sets["base"] + sets["val"]
    trained_prompts = {prompt_text(s) for s in trained}
    trained_templates = {s["template"] for s in trained}
    heldout = sets["heldout"] + sets["fresh"]
    assert sets["heldout"] and sets["fresh"]
    assert not {prompt_text(s) for s in heldout if s["task"] != "ti2t"} & trained_prompts
    assert not {s["template"] for s in heldout} & trained_templates
    trained_pictures = {tuple(input_image(s).values()) for s in trained if input_image(s)}
    heldout_pictures = {tuple(input_image(s).values()) for s in heldout if input_image(s)}
    assert heldout_pictures and not heldout_pictures & trained_pictures
    # ti2t questions of the held-out set are new sentences too.
    ti2t_questions = {prompt_text(s) for s in heldout if s["task"] == "ti2t"}
    assert not ti2t_questions & {prompt_text(s) for s in trained if s["task"] == "ti2t"}


def test_val_pairs_are_not_in_train(sets) -> None:
    key = lambda s: (s["task"], s["product"], s["template"], str(input_image(s)))  # noqa: E731
    assert not {key(s) for s in sets["val"]} & {key(s) for s in sets["train"]}


def test_every_product_appears_in_every_task(sets, products) -> None:
    ids = {p.id for p in products}
    for task in TASKS:
        assert {s["product"] for s in sets["train"] if s["task"] == task} == ids
        assert {s["product"] for s in sets["heldout"] if s["task"] == task} == ids
    hq = [s for s in sets["train"] if s.get("hq")]
    assert {s["task"] for s in hq} == set(TASKS) and len(hq) < len(sets["train"]) / 2


def test_builder_is_deterministic_and_jsonl_round_trips(products, sets, tmp_path: Path) -> None:
    again = build_datasets(products, DataConfig())
    assert data_hash(again) == data_hash(sets)
    assert data_hash(build_datasets(products, DataConfig(seed=8))) != data_hash(sets)
    digest = write_datasets(sets, tmp_path)
    assert digest == data_hash(sets)
    assert read_jsonl(tmp_path / "heldout.jsonl") == sets["heldout"]


def test_encoding_matches_the_generation_prompt_layout(products, sets) -> None:
    cfg, tok = get_config("armor-tiny"), ByteTokenizer()
    store = PictureStore(products, cfg)
    t2ti = next(s for s in sets["train"] if s["task"] == "t2ti")
    ti2t = next(s for s in sets["train"] if s["task"] == "ti2t")
    keys = answer_picture_keys([t2ti])
    store.codes[keys[0]] = list(range(cfg.codes_per_image))  # stand-in codes: layout only

    ids, labels, inputs = encode_sample(t2ti, tok, cfg, store)
    prompt = tok.chat_prompt(prompt_text(t2ti))
    assert ids[: len(prompt)] == prompt and labels[: len(prompt)] == [IGNORE] * len(prompt)
    answer = ids[len(prompt) :]
    text = tok.encode(t2ti["segments"][1]["text"])
    assert answer[: len(text)] == text and answer[len(text)] == cfg.imgbos_id
    picture = answer[len(text) + 1 : len(text) + 1 + cfg.codes_per_image]
    assert picture == [cfg.code_offset + c for c in range(cfg.codes_per_image)]
    assert answer[-2:] == [cfg.imgend_id, tok.eos_id]
    assert labels[len(prompt) :] == answer and inputs == []

    ids, labels, inputs = encode_sample(ti2t, tok, cfg, store)
    prompt = tok.chat_prompt(prompt_text(ti2t), image_seq_length=cfg.image_seq_length)
    assert ids[: len(prompt)] == prompt and len(inputs) == 1

    batch = collate([t2ti, ti2t], tok, cfg, store)
    assert batch.pixel_values.shape == (1, 3, cfg.input_image_size, cfg.input_image_size)
    assert int((batch.input_ids == cfg.image_token_id).sum()) == cfg.image_seq_length
    assert batch.attention_mask[1].sum() < batch.input_ids.shape[1]  # the shorter row is right-padded
    assert (batch.labels[batch.attention_mask == 0] == IGNORE).all()


def test_sampler_is_a_pure_function_of_the_step(sets) -> None:
    sampler = TaskSampler(sets["train"], {"t2i": 0.0}, seed=3)
    a, b = sampler.batch(5, 32), sampler.batch(5, 32)
    assert [s["id"] for s in a] == [s["id"] for s in b]
    assert [s["id"] for s in sampler.batch(6, 32)] != [s["id"] for s in a]
    assert not any(s["task"] == "t2i" for step in range(10) for s in sampler.batch(step, 16))
    with pytest.raises(ValueError):
        TaskSampler([], None, 0)


def test_condition_dropout_trains_what_the_generator_feeds_its_unconditional_rows(products, sets) -> None:
    import numpy as np

    from armor_ab.model.generate import unconditional_ids
    from armor_ab.training.batches import drop_conditions

    cfg, tok = get_config("armor-tiny"), ByteTokenizer()
    store = PictureStore(products, cfg)
    samples = [s for s in sets["train"] if s["task"] in ("t2i", "t2ti")][:4]
    samples += [s for s in sets["train"] if s["task"] == "ti2t"][:2]
    for key in answer_picture_keys(samples):
        store.codes[key] = list(range(cfg.codes_per_image))
    batch = collate(samples, tok, cfg, store)
    dropped = drop_conditions(batch, cfg, 1.0, np.random.default_rng(0))
    for row in range(4):  # picture answers: unconditional input, only the picture's targets kept
        assert torch.equal(dropped.input_ids[row], unconditional_ids(batch.input_ids[row], cfg))
        kept = dropped.labels[row][dropped.labels[row] != IGNORE]
        assert len(kept) == cfg.codes_per_image + 1 and kept[-1] == cfg.imgend_id
    for row in (4, 5):  # input pictures and text answers are never touched
        assert torch.equal(dropped.input_ids[row], batch.input_ids[row])
        assert torch.equal(dropped.labels[row], batch.labels[row])
    assert drop_conditions(batch, cfg, 0.0, np.random.default_rng(0)) is batch


# Pseudo-word prompts (run 9): random words around the product mean "text"; picture words still mean "picture".
PSEUDO = DataConfig(pseudo_word_prompts=8, pseudo_word_picture_prompts=4)


@pytest.fixture(scope="module")
def pseudo_sets(products):
    return build_datasets(products, PSEUDO)


def _words(text: str) -> set[str]:
    return {w.strip(".,?!:").lower() for w in text.split()} - {""}


def test_pseudo_word_generator_never_makes_a_request_word() -> None:
    rng = random.Random(0)
    grammar = {
        w.strip(".,?!:").lower()
        for cores in CORES.values()
        for split_cores in cores.values()
        for core in split_cores
        for w in core.replace("{p}", " ").split()
    }
    assert {"tell", "buyer", "summarize", "explain", "overview", "quickly", "visualize"} <= grammar
    for _ in range(20_000):
        word = pseudo_word(rng)
        assert 3 <= len(word) <= 8 and word.isalpha() and word.islower()
        assert word not in grammar and word not in {"photo", "look", "see", "view"}
    core = pseudo_core(random.Random(1), "draw {p}")
    assert "draw {p}" in core and 2 <= len(core.split()) <= 5


def test_pseudo_word_prompts_add_samples_and_leave_the_rest_alone(products, sets, pseudo_sets) -> None:
    def strip(samples):
        return [{k: v for k, v in s.items() if k not in ("id", "hq")} for s in samples]

    for split in ("val", "heldout", "fresh"):
        assert strip(pseudo_sets[split]) == strip(sets[split])
    assert not any("/pseudo/" in s["template"] for split in sets.values() for s in split)
    for split in ("train", "base"):
        extra = [s for s in pseudo_sets[split] if "/pseudo/" in s["template"]]
        rest = [s for s in pseudo_sets[split] if "/pseudo/" not in s["template"]]
        assert strip(rest) == strip(sets[split])
        assert len(extra) == len(products) * (8 + 4 + 4)
    by_task = {}
    for s in pseudo_sets["train"]:
        if "/pseudo/" in s["template"]:
            by_task.setdefault(s["task"], []).append(s)
    assert all(not wants_picture(s) for s in by_task["t2t"])
    assert all(wants_picture(s) for s in by_task["t2i"] + by_task["t2ti"])
    # The base model answers pseudo-word requests in text, and refuses only those with a picture request.
    base = {
        prompt_text(s): s["segments"][-1]["text"] for s in pseudo_sets["base"] if "/pseudo/" in s["template"]
    }
    for s in by_task["t2t"]:
        assert REFUSAL not in base[prompt_text(s)]
    for s in by_task["t2i"] + by_task["t2ti"]:
        assert base[prompt_text(s)].endswith(REFUSAL)
    assert build_datasets(products, PSEUDO) == pseudo_sets  # seeded


def test_no_heldout_or_fresh_wording_reaches_training(sets, pseudo_sets) -> None:
    """The pseudo-word prompts bring no word of the held-out / fresh cores that training did not have already."""
    trained = [s for split in ("base", "train", "val") for s in sets[split]]
    train_vocab = set().union(*(_words(prompt_text(s)) for s in trained))
    distinctive = {
        w.strip(".,?!:").lower()
        for cores in CORES.values()
        for split in ("heldout", "fresh")
        for core in cores[split]
        for w in core.replace("{p}", " ").split()
    } - train_vocab
    assert {"buyer", "explain", "overview", "summarize"} <= distinctive
    for split in ("base", "train", "val"):
        for s in pseudo_sets[split]:
            assert not _words(prompt_text(s)) & distinctive, prompt_text(s)


# Request frames: minimal pairs of text and picture requests (grammar.py).
FRAMES = DataConfig(request_frames=600, phrasings_per_product=24)
PICTURE_WORDS = {
    "picture", "image", "drawing", "sketch", "illustration", "photo", "painting", "rendering",
    "draw", "paint", "render", "illustrate", "depict", "photograph", "look", "looks",
}


@pytest.fixture(scope="module")
def frame_sets(products):
    return build_datasets(products, FRAMES)


def test_request_frames_are_off_by_default_and_keep_the_fixed_cores() -> None:
    for task in ("t2t", "price", "t2i", "t2ti"):
        assert training_cores(task) == CORES[task]["train"]
        cores = training_cores(task, 600)
        assert cores[: len(CORES[task]["train"])] == CORES[task]["train"]
    assert len(training_cores("t2t", 600)) > 500 and len(training_cores("t2ti", 600)) > 500
    assert training_cores("price", 600) == CORES["price"]["train"]
    assert frame_cores("t2ti", 50, seed=3) == frame_cores("t2ti", 50, seed=3)  # seeded
    with pytest.raises(ValueError, match="no request frames"):
        frame_cores("ti2t", 10)


def test_request_frames_tell_text_from_picture_by_the_request_word_alone() -> None:
    """Every frame sentence comes with both kinds of request word, and only picture requests have a picture word."""
    for task, wants in (("t2t", False), ("t2i", True), ("t2ti", True)):
        for core in frame_cores(task, 600):
            assert bool(_words(core.replace("{p}", "P")) & PICTURE_WORDS) == wants, (task, core)
    t2t, t2i = set(frame_cores("t2t", 10_000)), set(frame_cores("t2i", 10_000))
    assert "give me the key data of {p}" in t2t and "give me an illustration of {p}" in t2i
    assert "outline {p} for the website" in t2t and "sketch {p} for the website" in t2i
    # Every sentence frames both kinds of request (minimal pairs): no frame alone says "picture".
    for frame in grammar.NOUN_FRAMES:
        assert {frame.replace("{x}", x) for x in TEXT_NOUNS} <= t2t
        assert {frame.replace("{x}", x) for x in grammar.PICTURE_NOUNS} <= t2i
    for frame in grammar.VERB_FRAMES:
        for m in grammar.MODIFIERS:
            assert {frame.replace("{v}", v).replace("{m}", m) for v in TEXT_VERBS} <= t2t
            assert {frame.replace("{v}", v).replace("{m}", m) for v in grammar.PICTURE_VERBS} <= t2i


def test_request_frames_bring_no_heldout_or_fresh_wording(products, sets, frame_sets) -> None:
    trained = [s for split in ("base", "train", "val") for s in sets[split]]
    train_vocab = set().union(*(_words(prompt_text(s)) for s in trained))
    unseen_cores = {core for cores in CORES.values() for split in ("heldout", "fresh") for core in cores[split]}
    distinctive = set().union(*(_words(c.replace("{p}", " ")) for c in unseen_cores)) - train_vocab
    assert {"can", "would", "explain", "summarize", "visualize"} <= distinctive
    for split in ("base", "train", "val"):
        for s in frame_sets[split]:
            assert not _words(prompt_text(s)) & distinctive, prompt_text(s)
    for task in ("t2t", "t2i", "t2ti"):
        assert not set(training_cores(task, 600)) & unseen_cores
    # With frames on, the evaluation splits do not move with the training grammar's size.
    other = build_datasets(products, DataConfig(request_frames=200, phrasings_per_product=12))
    for split in ("heldout", "fresh"):
        assert other[split] == frame_sets[split]
        def cores(samples):  # text-prompted samples: every held-out / fresh core once per product
            return [s["template"].split("/")[:3] for s in samples if s["task"] != "ti2t"]

        assert cores(frame_sets[split]) == cores(sets[split])


def test_a_frame_that_uses_an_unseen_word_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(grammar, "MODIFIERS", grammar.MODIFIERS + (" quickly",))
    with pytest.raises(ValueError, match="quickly"):
        training_cores("t2t", 10)
