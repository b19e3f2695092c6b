"""Issue 18: a model of your own, trained on your own products from a pretrained base.

* data: samples for t2t, ti2t, t2i and t2ti built from ``CatalogItem``s and their photos; held-out phrasings
  that no training sample uses; answer photos tokenised by the model's own frozen VQGAN encoder;
* batches: the byte tokenizer's layout is what it was (the old ``encode_sample`` is kept here as the
  reference), a Hugging Face base gets its own chat template with labels on the answer only;
* recipes: bad own-catalog recipes fail naming the file and the field;
* end to end on the CPU, through the real CLI: the kitchen catalog of issue 16 imported into a real DuckDB
  (``armor-ab catalog import``), the tiny InternVL base made ARMOR (``init_from_base``), WoHG stages 1-3
  (``armor-ab train --recipe ... --base ... --catalog-db ...``), ``armor-ab eval`` on the held-out split and
  ``armor-ab content generate`` with the trained model.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from armor_ab.assets import DEMO_CATALOG, training_recipe
from armor_ab.catalog import load_catalog
from armor_ab.catalog.importer import parse_catalog
from armor_ab.cli import app
from armor_ab.model import ByteTokenizer, get_config, load_model
from armor_ab.model.from_base import init_from_base
from armor_ab.model.hf_tokenizer import HFTokenizer
from armor_ab.training.batches import (
    IGNORE,
    PictureStore,
    answer_picture_keys,
    collate,
    encode_sample,
    pil_to_vq_pixels,
)
from armor_ab.training.catalog_data import (
    DEFAULT_PHRASINGS,
    HELDOUT_VARIANT_BASE,
    VAL_VARIANT_BASE,
    CatalogDataConfig,
    FieldError,
    PhotoStore,
    build_catalog_datasets,
    load_photo,
    phrasings_used,
)
from armor_ab.training.data import DataConfig, build_datasets, prompt_text
from armor_ab.training.training_recipe import RecipeError, TrainingRecipe
from tests.helpers.base_models import chameleon_vqgan, tiny_internvl
from tests.helpers.content import stored_pages
from tests.helpers.second_catalog import write_catalog

ROOT = Path(__file__).resolve().parent.parent
TINY_RECIPE = Path(__file__).resolve().parent / "recipes" / "own-catalog-tiny.yaml"
EXP = "kitchen-own-model"


# --- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kitchen(tmp_path_factory) -> dict:
    """The kitchen catalog file, its photos, and the parsed items."""
    tmp = tmp_path_factory.mktemp("kitchen")
    csv_path, photos_dir, rows, photo_bytes = write_catalog(tmp)
    parsed = parse_catalog(csv_path, photos_dir)
    photos = {item.id: parsed.photos[item.image].path for item in parsed.items}
    return {"tmp": tmp, "csv": csv_path, "photos_dir": photos_dir, "rows": rows, "items": parsed.items,
            "photos": photos, "photo_bytes": photo_bytes}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The tiny InternVL (Qwen2 LM, Hugging Face tokenizer with a ChatML template) + a Chameleon VQGAN, made
    an ARMOR model directory by ``model init``'s own code."""
    tmp = tmp_path_factory.mktemp("base")
    internvl = tiny_internvl(tmp / "internvl", "qwen2")
    vqgan = chameleon_vqgan(tmp / "chameleon")
    out = tmp / "armor-kitchen-base"
    init_from_base(internvl, vqgan, out, adapter_layers=1)
    return out


def _sample(sets: dict, split: str, task: str, item: str | None = None) -> dict:
    return next(s for s in sets[split] if s["task"] == task and (item is None or s["product"] == item))


# --- data -------------------------------------------------------------------------------------------------
def test_samples_for_all_four_tasks_come_from_the_items_and_their_photos(kitchen) -> None:
    items = kitchen["items"]
    sets = build_catalog_datasets(items, kitchen["photos"], CatalogDataConfig())
    assert set(sets) == {"train", "val", "heldout"}
    for split in sets:
        for item in items:  # every item, every task, every split
            assert {s["task"] for s in sets[split] if s["product"] == item.id} == {"t2t", "ti2t", "t2i", "t2ti"}
    flint = next(i for i in items if i.id == "grinder-02")
    t2t = _sample(sets, "train", "t2t", flint.id)
    answer = t2t["segments"][-1]["text"]
    # Name, specs (label and value) and description, as the item has them.
    assert answer.startswith("Flint grinder: capacity 300 g, burr flat 64 mm.")
    assert flint.description.split(".")[0] in answer
    assert "Flint grinder" in prompt_text(t2t)
    t2ti = _sample(sets, "train", "t2ti", flint.id)
    assert [(s["role"], s["type"]) for s in t2ti["segments"]] == [
        ("user", "text"), ("assistant", "text"), ("assistant", "image")]
    assert t2ti["segments"][2]["image"] == {"product": "grinder-02", "variant": 0}  # the photo itself
    t2i = _sample(sets, "train", "t2i", flint.id)
    assert [(s["role"], s["type"]) for s in t2i["segments"]] == [("user", "text"), ("assistant", "image")]
    ti2t = _sample(sets, "train", "ti2t", flint.id)
    assert ti2t["segments"][0] == {"role": "user", "type": "image", "image": {"product": "grinder-02", "variant": 0}}
    assert ti2t["segments"][-1]["text"] == "This is Flint grinder, from the grinders category."
    # The stage-3 subset, and an item without a photo: text only.
    assert {s["task"] for s in sets["train"] if s.get("hq")} == {"t2t", "ti2t", "t2i", "t2ti"}
    photos = {k: v for k, v in kitchen["photos"].items() if k != "kettle-01"}
    sets = build_catalog_datasets(items, photos, CatalogDataConfig())
    assert {s["task"] for s in sets["train"] if s["product"] == "kettle-01"} == {"t2t"}
    # Deterministic: the same items and settings give the same samples.
    assert build_catalog_datasets(items, photos, CatalogDataConfig()) == sets


def test_held_out_phrasings_and_photo_augmentations_are_never_trained_on(kitchen) -> None:
    config = CatalogDataConfig()
    sets = build_catalog_datasets(kitchen["items"], kitchen["photos"], config)
    trained = phrasings_used(sets["train"] + sets["val"], config)
    held = phrasings_used(sets["heldout"], config)
    assert held and trained and not held & trained
    assert held == {p for parts in DEFAULT_PHRASINGS.values() for p in parts["heldout"]}  # every one of them
    train_prompts = {prompt_text(s) for s in sets["train"]}
    assert not {prompt_text(s) for s in sets["heldout"]} & train_prompts
    variants = {split: {seg["image"]["variant"] for s in sets[split] for seg in s["segments"]
                        if seg["role"] == "user" and seg["type"] == "image"} for split in sets}
    assert max(variants["train"]) < VAL_VARIANT_BASE <= min(variants["val"])
    assert min(variants["heldout"]) >= HELDOUT_VARIANT_BASE
    # A validation phrasing of an item is not among that item's training phrasings.
    for v in sets["val"]:
        if v["task"] != "ti2t":
            assert v["template"] not in {s["template"] for s in sets["train"]
                                         if (s["product"], s["task"]) == (v["product"], v["task"])}

    # The phrasings are configurable; a held-out phrasing that is a training one (of any task) is refused.
    mine = CatalogDataConfig.from_dict({"seed": 3}, {"t2i": {"train": ["Sketch {name}.", "Paint {name}!"]}})
    assert mine.phrasings["t2i"]["train"] == ("Sketch {name}.", "Paint {name}!")
    assert mine.phrasings["t2t"] == DEFAULT_PHRASINGS["t2t"]  # the tasks not named keep the defaults
    bad = [
        ({"t2i": {"heldout": ["Describe {name}."]}}, "phrasings.t2i.heldout[0]", "also a training phrasing"),
        ({"t2i": {"train": ["Draw it."]}}, "phrasings.t2i.train[0]", "must name the item"),
        ({"ti2t": {"train": ["What is {name}?"]}}, "phrasings.ti2t.train[0]", "may not name the item"),
        ({"t2t": {"train": ["Price of {price}?"]}}, "phrasings.t2t.train[0]", "unknown placeholder {price}"),
        ({"t2x": {"train": ["Draw {name}."]}}, "phrasings.t2x", "unknown task type"),
    ]
    for phrasings, where, message in bad:
        with pytest.raises(FieldError) as info:
            CatalogDataConfig.from_dict(None, phrasings)
        assert info.value.field == where and message in info.value.message, str(info.value)
    # An answer template may name any column, but every item must have it.
    burr = CatalogDataConfig.from_dict({"answers": {"text": "{name}: burr {spec_burr}."}})
    with pytest.raises(FieldError, match=r"catalog_data.answers.text: item 'kettle-01' has no \{spec_burr\}"):
        build_catalog_datasets(kitchen["items"], kitchen["photos"], burr)
    grinders = [item for item in kitchen["items"] if item.category == "grinders"]
    sets = build_catalog_datasets(grinders, kitchen["photos"], burr)
    assert _sample(sets, "train", "t2t", "grinder-02")["segments"][-1]["text"] == "Flint grinder: burr flat 64 mm."


def test_photos_are_tokenised_by_the_models_own_vqgan_encoder(kitchen, base) -> None:
    loaded = load_model(base)
    cfg = loaded.model.config
    store = PhotoStore(kitchen["photos"], cfg)
    sets = build_catalog_datasets(kitchen["items"], kitchen["photos"], CatalogDataConfig())
    keys = sorted(set(answer_picture_keys(sets["train"])))
    assert keys == [(item.id, 0) for item in sorted(kitchen["items"], key=lambda i: i.id)]
    store.encode_codes(loaded.model.vqgan.encode, keys, chunk=5)
    for item_id, path in kitchen["photos"].items():
        pixels = pil_to_vq_pixels(load_photo(path, store.work_size), cfg.image_size)  # (3, 16, 16) in [-1, 1]
        assert pixels.shape == (3, cfg.image_size, cfg.image_size)
        expected = loaded.model.vqgan.encode(pixels[None])[0].tolist()
        assert store.codes[item_id, 0] == expected and len(expected) == cfg.codes_per_image
    # Augmented copies: deterministic, different from the photo, same size; the ViT gets the model's input size.
    assert store.pil(("kettle-01", 3)).tobytes() == PhotoStore(kitchen["photos"], cfg).pil(("kettle-01", 3)).tobytes()
    assert store.pil(("kettle-01", 3)).tobytes() != store.pil(("kettle-01", 0)).tobytes()
    assert store.vit(("kettle-01", HELDOUT_VARIANT_BASE)).shape == (3, cfg.input_image_size, cfg.input_image_size)


# --- batches ----------------------------------------------------------------------------------------------
def old_encode_sample(sample, tokenizer, config, pictures):
    """``batches.encode_sample`` as it was before own-catalog training (the reference for the byte layout)."""
    ids = [tokenizer.bos_id, tokenizer.user_id]
    inputs = []
    segments = sample["segments"]
    for seg in segments:
        if seg["role"] != "user":
            continue
        if seg["type"] == "image":
            key = (seg["image"]["product"], seg["image"]["variant"])
            inputs.append(key)
            ids += [tokenizer.img_start_id] + [tokenizer.image_context_id] * config.image_seq_length
            ids += [tokenizer.img_end_id] + tokenizer.encode("\n")
        else:
            ids += tokenizer.encode(seg["text"])
    ids.append(tokenizer.assistant_id)
    labels = [IGNORE] * len(ids)
    for seg in segments:
        if seg["role"] != "assistant":
            continue
        if seg["type"] == "image":
            codes = pictures.codes[(seg["image"]["product"], seg["image"]["variant"])]
            answer = [config.imgbos_id] + [config.code_offset + c for c in codes] + [config.imgend_id]
        else:
            answer = tokenizer.encode(seg["text"])
        ids += answer
        labels += answer
    ids.append(tokenizer.eos_id)
    labels.append(tokenizer.eos_id)
    return ids, labels, inputs


def test_the_byte_tokenizer_layout_is_unchanged() -> None:
    products = load_catalog(DEMO_CATALOG)
    cfg, tok = get_config("armor-tiny"), ByteTokenizer()
    sets = build_datasets(products, DataConfig(ti2t_train_variants=1))
    store = PictureStore(products, cfg)
    for n, key in enumerate(sorted(set(answer_picture_keys(sets["train"])))):
        store.codes[key] = [(n * 5 + i) % cfg.num_image_codes for i in range(cfg.codes_per_image)]
    compared = 0
    for samples in sets.values():
        for task in ("t2t", "ti2t", "t2i", "t2ti"):
            for sample in [s for s in samples if s["task"] == task][:150]:
                assert encode_sample(sample, tok, cfg, store) == old_encode_sample(sample, tok, cfg, store), (
                    sample["id"])
                compared += 1
    assert compared > 1000


def test_a_hugging_face_base_is_trained_in_its_own_chat_template(kitchen, base) -> None:
    loaded = load_model(base)
    cfg, tok = loaded.model.config, loaded.tokenizer
    assert isinstance(tok, HFTokenizer)
    sets = build_catalog_datasets(kitchen["items"], kitchen["photos"], CatalogDataConfig())
    store = PhotoStore(kitchen["photos"], cfg)
    store.encode_codes(loaded.model.vqgan.encode, answer_picture_keys(sets["train"]))
    t2ti, ti2t = _sample(sets, "train", "t2ti", "scale-02"), _sample(sets, "train", "ti2t", "scale-02")
    im_end = tok.tok.convert_tokens_to_ids("<|im_end|>")
    for sample, n_image in ((t2ti, None), (ti2t, cfg.image_seq_length)):
        ids, labels, inputs = encode_sample(sample, tok, cfg, store)
        prompt = tok.chat_prompt(prompt_text(sample), n_image)
        assert ids[: len(prompt)] == prompt  # exactly what the generator sends
        assert labels[: len(prompt)] == [IGNORE] * len(prompt)  # no loss on the system turn or the question
        assert labels[len(prompt) :] == ids[len(prompt) :] and ids[-1] == im_end == tok.eos_id
        rendered = tok.decode(prompt, skip_special=False)
        assert rendered.startswith("<|im_start|>system\nYou are a helpful catalog assistant.<|im_end|>")
        assert rendered.endswith(prompt_text(sample) + "<|im_end|>\n<|im_start|>assistant\n")
        text = sample["segments"][2 if n_image else 1]["text"]
        answer = tok.encode(text)
        assert ids[len(prompt) : len(prompt) + len(answer)] == answer and tok.decode(answer) == text
        assert inputs == ([("scale-02", ti2t["segments"][0]["image"]["variant"])] if n_image else [])
    ids, _, _ = encode_sample(t2ti, tok, cfg, store)
    codes = [cfg.code_offset + c for c in store.codes["scale-02", 0]]
    assert ids[-len(codes) - 3 :] == [cfg.imgbos_id, *codes, cfg.imgend_id, im_end]  # text, then the photo
    batch = collate([t2ti, ti2t], tok, cfg, store)
    assert batch.pixel_values.shape == (1, 3, cfg.input_image_size, cfg.input_image_size)
    assert int((batch.input_ids == cfg.image_token_id).sum()) == cfg.image_seq_length
    assert int(batch.input_ids[0, -1]) in (cfg.text_pad_id, im_end)


# --- recipes ----------------------------------------------------------------------------------------------
def _recipe(tmp: Path, name: str, raw: dict) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_bad_own_catalog_recipes_name_the_file_and_the_field(tmp_path: Path, base, kitchen) -> None:
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw |= {"base": str(base), "catalog_file": str(kitchen["csv"]), "catalog_images": str(kitchen["photos_dir"]),
            "catalog_db": None}
    good = TrainingRecipe.load(_recipe(tmp_path, "good", raw))
    assert good.own_catalog and [s.stage for s in good.stages] == [1, 2, 3] and good.config is None
    assert good.catalog_data.ti2t_train_variants == 3
    # A listed stage 0 is skipped: the pretrained base is its result. Locations are not hashed.
    with_zero = {**raw, "stages": [{"stage": 0, "name": "base", "wohg": 0}, *raw["stages"]]}
    assert [s.stage for s in TrainingRecipe.load(_recipe(tmp_path, "zero", with_zero)).stages] == [1, 2, 3]
    other = {**raw, "catalog_file": None, "catalog_images": None, "catalog_db": str(kitchen["csv"])}
    assert TrainingRecipe.load(_recipe(tmp_path, "other", other), {"export": "/x"}).sha256() == good.sha256()

    wohg0 = [dict(s) for s in raw["stages"]]
    wohg0[1]["wohg"] = 0
    unknown_stage_key = [dict(s) for s in raw["stages"]]
    unknown_stage_key[2]["learning_rate"] = 0.1
    cases = [
        ({**raw, "base": None}, "base", "not set"),
        ({**raw, "base": str(kitchen["tmp"])}, "base", "not a model directory"),
        ({**raw, "catalog_db": str(kitchen["csv"])}, "catalog_file", "exactly one catalog"),
        ({**raw, "catalog_file": None, "catalog_images": None}, "catalog_db", "exactly one catalog"),
        ({**raw, "catalog_file": str(tmp_path / "nope.csv")}, "catalog_file", "no such file"),
        ({**raw, "data": {"seed": 1}}, "data", "catalog_data"),
        ({**raw, "vq": {"steps": 3}}, "vq", "frozen"),
        ({**raw, "config": "armor-tiny"}, "config", "base model directory"),
        ({**raw, "colour": "red"}, "colour", "unknown field"),
        ({**raw, "stages": wohg0}, "stages[1].wohg", "must be 1, 2 or 3"),
        ({**raw, "stages": raw["stages"][:2]}, "stages", "stages 1, 2, 3"),
        ({**raw, "stages": unknown_stage_key}, "stages[2]", "learning_rate"),
        ({**raw, "catalog_data": {"ti2t_train_variant": 2}}, "catalog_data.ti2t_train_variant", "unknown setting"),
        ({**raw, "phrasings": {"t2t": {"heldout": ["Describe {name}."]}}}, "phrasings.t2t.heldout[0]", "training"),
    ]
    for n, (bad, field_name, message) in enumerate(cases):
        path = _recipe(tmp_path, f"bad{n}", bad)
        with pytest.raises(RecipeError) as info:
            TrainingRecipe.load(path)
        assert str(path) in str(info.value) and f"field '{field_name}'" in str(info.value), str(info.value)
        assert message in info.value.message, str(info.value)
    # Through the CLI: exit 2, the file and the field on stderr; the shipped template without --base too.
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--recipe", str(tmp_path / "bad9.yaml"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "bad9.yaml: field 'stages[1].wohg'" in result.output, result.output
    result = runner.invoke(app, ["train", "--recipe", "own-catalog", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "own-catalog.yaml: field 'base': not set" in result.output, result.output
    shipped = TrainingRecipe.load(training_recipe("own-catalog"), {"base": str(base), "catalog_db": None,
                                                                   "catalog_file": str(kitchen["csv"])})
    assert [(s.wohg, s.alpha, s.beta) for s in shipped.stages] == [(1, 1.0, 0.0), (2, 0.0, 1.0), (3, 1.0, 1.0)]
    assert set(shipped.stages[1].tasks) == {"t2i", "t2ti"} and shipped.stages[2].hq_only


# --- end to end -------------------------------------------------------------------------------------------
def cli(*args: str, cwd: Path = ROOT, expect: int = 0) -> subprocess.CompletedProcess:
    """``armor-ab ARGS`` as a user runs it: a child process of this interpreter."""
    r = subprocess.run([sys.executable, "-m", "armor_ab", *args], capture_output=True, text=True, timeout=600,
                       cwd=cwd)
    assert r.returncode == expect, (f"armor-ab {' '.join(args)} exited {r.returncode}, expected {expect}\n"
                                    f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-4000:]}")
    return r


def frozen_base_digest(model_dir: Path) -> dict[str, str]:
    """SHA-256 of the base's own parts WoHG never trains: original embedding rows, decoder layers, ViT."""
    model = load_model(model_dir).model
    parts = {
        "embedding_rows": [model.model.language_model.embed_tokens.weight],
        "decoder_layers": list(model.model.language_model.layers.parameters()),
        "vision": list(model.model.vision_tower.parameters()) + list(model.model.multi_modal_projector.parameters()),
    }
    out = {}
    for name, tensors in parts.items():
        digest = hashlib.sha256()
        for t in tensors:
            digest.update(t.detach().contiguous().numpy().tobytes())
        out[name] = digest.hexdigest()
    return out


EXPERIMENT_YAML = """\
key: {key}
name: Pages from our own model
hypothesis: Pages written by a model trained on our products raise dwell time.
owner: qa@example.com
variants:
  - {{key: control, weight: 0.5, content: {{source: catalog}}}}
  - {{key: armor, weight: 0.5, content: {{source: armor, model: "{model}", max_images: 1,
      prompt: "Describe {{name}} with a picture."}}}}
metrics: {{primary: dwell_time_per_view}}
"""


@pytest.fixture(scope="module")
def walk(kitchen, base) -> dict:
    tmp = kitchen["tmp"]
    db = tmp / "kitchen.duckdb"
    run, export = tmp / "run", tmp / "armor-kitchen"
    out: dict = {"db": db, "run": run, "export": export}
    out["import"] = cli("catalog", "import", str(kitchen["csv"]), "--images", str(kitchen["photos_dir"]),
                        "--db", str(db))
    out["before"] = frozen_base_digest(base)
    out["train"] = cli("train", "--recipe", str(TINY_RECIPE), "--base", str(base), "--catalog-db", str(db),
                       "--out", str(run), "--export", str(export))
    out["report"] = json.loads((run / "report.json").read_text())
    out["after"] = frozen_base_digest(export)
    out["eval"] = json.loads(cli("eval", "--model", str(export), "--json").stdout)
    experiment = tmp / "experiment.yaml"
    experiment.write_text(EXPERIMENT_YAML.format(key=EXP, model=export))
    cli("experiment", "apply", str(experiment), "--db", str(db))
    out["generate"] = cli("content", "generate", "--experiment", EXP, "--items", "kettle-01,scale-02",
                          "--db", str(db))
    out["pages"] = stored_pages(db, EXP)
    return out


def test_training_on_the_imported_catalog_runs_stages_1_to_3_and_freezes_the_base(walk, base) -> None:
    report = walk["report"]
    assert set(report["stages"]) == {"1", "2", "3"} and "0" in report["skipped"] and "vq" in report["skipped"]
    assert report["catalog"]["kind"] == "db" and report["catalog"]["items"] == 12
    assert report["catalog"]["with_photo"] == 12
    assert report["catalog"]["categories"] == ["grinders", "kettles", "scales"]
    assert report["base"]["path"] == str(base.resolve()) and report["base"]["tokenizer"] == "hf"
    assert report["base"]["armor_init"]["made_by"] == "armor-ab model init"
    trained = {"1": {"new_rows", "text_head"}, "2": {"new_rows", "adapter", "visual_head"},
               "3": {"new_rows", "adapter", "visual_head", "text_head"}}
    for key, summary in report["stages"].items():
        assert summary["frozen_unchanged"], key
        assert set(summary["trainable_groups"]) == trained[key]
    assert (report["stages"]["1"]["config"]["alpha"], report["stages"]["1"]["config"]["beta"]) == (1.0, 0.0)
    assert (report["stages"]["2"]["config"]["alpha"], report["stages"]["2"]["config"]["beta"]) == (0.0, 1.0)
    # Our own check: the base's embedding rows, decoder layers and ViT are bit for bit the base's.
    assert walk["after"] == walk["before"]
    # The loss goes down: text in stage 1, pictures in stage 2, both together on the subset in stage 3.
    for key, loss in (("1", "text_loss"), ("2", "image_loss"), ("3", "loss")):
        log = [json.loads(line) for line in (walk["run"] / f"stage{key}" / "log.jsonl").read_text().splitlines()]
        losses = [r[loss] for r in log if "loss" in r]
        assert losses[-1] < losses[0] * (0.8 if key != "3" else 1.0), (key, losses)
    # The answer photos were tokenised by the base's own VQGAN encoder, at its image size.
    codes = json.loads((walk["run"] / "data" / "codes.json").read_text())
    model = load_model(base).model
    assert len(codes["codes"]) == 12 and codes["image_size"] == model.config.image_size
    from armor_ab.store.catalog import image_path, list_items
    from armor_ab.store.content import images_dir_for
    from armor_ab.store.db import connect

    con = connect(walk["db"], read_only=True)
    try:
        items = list_items(con)
    finally:
        con.close()
    size = max(model.config.image_size, model.config.input_image_size)
    for item in items:
        photo = image_path(images_dir_for(walk["db"]), item.image, item.image_type)
        pixels = pil_to_vq_pixels(load_photo(photo, size), model.config.image_size)[None]
        assert codes["codes"][f"{item.id}/0"] == model.vqgan.encode(pixels)[0].tolist(), item.id
    # The export: the trained model under its own name, its held-out samples, what made it.
    record = json.loads((walk["export"] / "training.json").read_text())
    here = TrainingRecipe.load(TINY_RECIPE, {"base": str(base), "catalog_db": str(walk["db"])})
    assert record["recipe_sha256"] == here.sha256() == report["recipe_sha256"]
    assert record["catalog"]["items_sha256"] == report["catalog"]["items_sha256"]
    assert (walk["export"] / "heldout.jsonl").is_file() and "model:" in walk["train"].stdout
    exported = load_model(walk["export"])
    assert exported.model.config.model_name == "armor-kitchen" and isinstance(exported.tokenizer, HFTokenizer)
    examples = [json.loads(line) for line in (walk["run"] / "eval-examples" / "examples.jsonl").read_text().splitlines()]
    assert any("judged" in e for e in examples)  # pictures were put to the model's own understanding path


def test_eval_reports_modality_picture_category_and_specs_on_the_held_out_split(walk, base, kitchen) -> None:
    result = walk["eval"]
    figures = result["figures"]
    assert result["heldout"].endswith("heldout.jsonl") and result["catalog"]["items"] == 12
    assert figures["n"] == 4 * 3  # per_task 3, four task types
    for key in ("modality_accuracy", "spec_accuracy", "ti2t_category_accuracy", "image_category_accuracy_strict"):
        assert 0.0 <= figures[key] <= 1.0, key
    assert figures["images_requested"] == 6 and figures["images_generated"] >= 1
    assert 0.0 <= figures["image_category_accuracy"] <= 1.0
    assert "understanding path" in figures["picture_judge"]
    # The same figures the run measured on the trained model (greedy: deterministic).
    run_figures = walk["report"]["eval"]
    for key in ("modality_accuracy", "spec_accuracy", "image_category_accuracy", "ti2t_category_accuracy"):
        assert figures[key] == run_figures[key], key
    # The untrained base beside it, and the table.
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--model", str(walk["export"]), "--base", str(base), "--per-task", "1",
                                 "--json"])
    assert result.exit_code == 0, result.output
    both = json.loads(result.stdout)
    assert both["figures"]["n"] == both["base"]["figures"]["n"] == 4
    result = runner.invoke(app, ["eval", "--model", str(walk["export"]), "--per-task", "1"])
    assert result.exit_code == 0 and "recognises as the requested category" in result.output, result.output
    # Another catalog than the one trained on: its held-out split would not match, so eval refuses it.
    rows = [dict(row) for row in kitchen["rows"]]
    rows[0]["description"] = "A different kettle."
    changed = kitchen["tmp"] / "changed.csv"
    with changed.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = runner.invoke(app, ["eval", "--model", str(walk["export"]), "--catalog-file", str(changed),
                                 "--images", str(kitchen["photos_dir"])])
    assert result.exit_code == 2 and "not the catalog" in result.output, result.output


def test_the_imported_catalog_and_its_file_are_the_same_items(walk, kitchen) -> None:
    from armor_ab.cli._own_catalog import read_own_catalog

    from_db = read_own_catalog(walk["db"], None)
    from_file = read_own_catalog(None, kitchen["csv"], kitchen["photos_dir"])
    assert from_db.summary()["items_sha256"] == from_file.summary()["items_sha256"]
    assert {k: p.read_bytes() for k, p in from_db.photos.items()} == kitchen["photo_bytes"]
    assert from_file.source["file_sha256"] and from_db.source == {"kind": "db", "path": str(walk["db"].resolve())}
    from armor_ab.store.db import connect

    empty = kitchen["tmp"] / "empty.duckdb"
    connect(empty).close()  # a database with every table, and no catalog
    with pytest.raises(ValueError, match="no catalog; import one first"):
        read_own_catalog(empty, None)


def test_content_generate_uses_the_trained_model(walk) -> None:
    assert f"{EXP}: 2 generated" in walk["generate"].stdout
    config_hash = load_model(walk["export"]).model.config.config_hash()
    assert sorted(walk["pages"]) == ["kettle-01", "scale-02"]
    for page in walk["pages"].values():
        metadata = page.content["metadata"]
        assert metadata["model"] == "armor-kitchen" and metadata["config_hash"] == config_hash
        assert page.prompt.startswith("Describe ") and page.prompt.endswith(" with a picture.")


def test_torchrun_trains_an_own_catalog_stage_on_two_processes(kitchen, base, tmp_path) -> None:
    """``torchrun --nproc-per-node 2 -m armor_ab train`` on the own-catalog recipe: one stage trained by two
    gloo processes; rank 0 alone writes the data, the report and the stage's results."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "armor_ab", "train", "--recipe", str(TINY_RECIPE), "--base", str(base),
         "--catalog-file", str(kitchen["csv"]), "--images", str(kitchen["photos_dir"]),
         "--out", str(run), "--stage", "1"],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    stage = json.loads((run / "stage1" / "stage.json").read_text())
    assert stage["world_size"] == 2 and stage["frozen_unchanged"]
    assert stage["final"]["loss"] < stage["first"]["loss"]
    report = json.loads((run / "report.json").read_text())
    assert set(report["stages"]) == {"1"} and report["stages"]["1"]["world_size"] == 2
    assert (run / "data" / "codes.json").is_file() and (run / "stage1" / "model" / "config.json").is_file()
    assert not (run / "stage1" / "checkpoint.pt").exists()  # the stage is done: its model is the result


def test_the_shipped_1b_recipe_is_a_valid_own_catalog_recipe(kitchen, base) -> None:
    from armor_ab.assets import training_recipe

    recipe = TrainingRecipe.load(training_recipe("armor-1b"), {"base": str(base), "catalog_file": str(kitchen["csv"]),
                                                               "catalog_images": str(kitchen["photos_dir"])})
    assert recipe.own_catalog and [s.stage for s in recipe.stages] == [1, 2, 3]
    assert [s.wohg for s in recipe.stages] == [1, 2, 3]
    assert all(s.precision == "bf16" and s.gradient_checkpointing and s.batch_size % 8 == 0 for s in recipe.stages)
    assert all(s.batch_size // 8 % s.micro_batch_size == 0 for s in recipe.stages)  # 8 GPUs: whole micro-batches
