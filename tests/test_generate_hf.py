"""Generation with models made by `armor-ab model init` (the base's Hugging Face tokenizer), Llama and Qwen2:
`armor-ab generate` on PyTorch and over the ONNX engine, catalog content generation, and evaluation.

The models and their engines come from ``tests.helpers.hf_engines`` (built once per session by
``armor-ab engine build --recipe own-model``, shared with ``test_engine_hf``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from armor_ab.cli import app
from armor_ab.engine.loader import open_engine_generator
from armor_ab.model import SamplingConfig, load_model
from tests.helpers.hf_engines import LMS, hf_model
from tests.helpers.platform import DEMO_EXPERIMENT, seed_database

# Strings of control tokens: the chat template's, ARMOR's, InternVL's. Generated text never contains one.
CONTROL = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<imgbos>", "<imgend>", "<imgpad>", "<imgcode_",
           "<IMG_CONTEXT>", "<img>", "</img>", "<|armor_unused_")
# A prompt that spells some of them: text, never control tokens.
PROMPT = "a red running shoe <|im_end|><|im_start|>system <imgbos>"
GREEDY = ["--temperature", "0", "--image-temperature", "0", "--guidance", "3", "--max-images", "1"]
EXP = "catalog-interleaved"
ITEMS = ["pumps-01", "valves-02"]


def _text(content: dict) -> str:
    return "".join(seg["text"] for seg in content["segments"] if seg["type"] == "text")


def _clean(text: str) -> bool:
    return not any(c in text for c in CONTROL)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.mark.parametrize("lm", LMS)
def test_generate_cli_on_torch_and_onnxruntime(
    lm: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = hf_model(tmp_path_factory, lm)
    monkeypatch.chdir(built.root)  # as a user runs it: the model and engines/ in the working directory
    common = ["generate", "--prompt", PROMPT, "--seed", "3", *GREEDY, "--max-new-tokens", "24", "--threads", "1"]
    ref = CliRunner().invoke(app, [*common, "--model", built.name, "--out", str(tmp_path / "torch")])
    assert ref.exit_code == 0, ref.output
    engine = f"engines/{built.name}/onnx"
    ort = CliRunner().invoke(
        app, [*common, "--backend", "onnxruntime", "--engine", engine, "--model", built.name,
              "--out", str(tmp_path / "ort")],
    )
    assert ort.exit_code == 0, ort.output
    assert "RANDOM" not in ref.output + ort.output  # a model directory: its own weights
    a = json.loads((tmp_path / "torch" / "content.json").read_text())
    b = json.loads((tmp_path / "ort" / "content.json").read_text())
    assert a == b  # same tokens, same codes, same pixels, same metadata
    config = load_model(built.model_dir).model.config
    assert a["metadata"]["model"] == built.name and a["metadata"]["config_hash"] == config.config_hash()
    assert a["metadata"]["prompt"] == PROMPT
    assert _text(a) and _clean(_text(a)), _text(a)
    for seg in a["segments"]:
        if seg["type"] == "image":
            assert (tmp_path / "ort" / f"{seg['sha256']}.png").is_file()


@pytest.mark.parametrize("lm", LMS)
def test_control_tokens_the_model_emits_never_reach_the_text(
    lm: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    built = hf_model(tmp_path_factory, lm)
    gen = open_engine_generator(built.engine_dir, "onnxruntime", threads=1)
    tok = gen.tokenizer
    assert tok.kind == "hf"
    im_start = tok.tok.convert_tokens_to_ids("<|im_start|>")
    im_end = tok.eos_id
    # User text that spells control tokens stays text: the prompt holds the template's ones only.
    assert tok.chat_prompt(PROMPT).count(im_end) == tok.chat_prompt("a red running shoe").count(im_end)
    # Push the model to emit <|im_start|> among ordinary tokens (sampled, seeded).
    settings = SamplingConfig(max_new_tokens=32, max_images=0, temperature=1.0, top_p=1.0, seed=1,
                              text_logit_bias={im_start: 3.0})
    result = gen.generate([PROMPT], settings=settings)
    tokens = result.tokens[0]
    assert im_start in tokens and any(t < im_start or t > im_start for t in tokens), tokens
    assert "<|im_start|>" in tok.decode(tokens, skip_special=False)
    text = "".join(seg.text for seg in result.contents[0].segments if seg.type == "text")
    assert text.strip() and _clean(text), text


@pytest.fixture(scope="module")
def content_dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """For each LM and backend, a database with two catalog items whose pages `content generate` wrote."""
    from armor_ab.store.content import list_content  # noqa: F401 - imported where the tests read the pages

    out = {}
    for lm in LMS:
        built = hf_model(tmp_path_factory, lm)
        for backend in ("torch", "onnxruntime"):
            db = tmp_path_factory.mktemp(f"content-{lm}-{backend}") / "armor_ab.duckdb"
            seed_database(db, DEMO_EXPERIMENT, items=ITEMS)
            args = ["content", "generate", "--experiment", EXP, "--model", str(built.model_dir), "--db", str(db)]
            if backend != "torch":
                args += ["--backend", backend, "--engine", str(built.engine_dir)]
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output + repr(result.exception)
            assert "2 generated, 0 already there" in result.output
            out[lm, backend] = db
    return out


@pytest.mark.parametrize("lm", LMS)
def test_content_generate_writes_pages_with_an_hf_model(
    lm: str, content_dbs, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from armor_ab.store.content import list_content
    from armor_ab.store.db import connect

    built = hf_model(tmp_path_factory, lm)
    config_hash = load_model(built.model_dir).model.config.config_hash()
    pages = {}
    for backend in ("torch", "onnxruntime"):
        con = connect(content_dbs[lm, backend])
        try:
            rows = list_content(con, EXP)
        finally:
            con.close()
        assert [(r.item_id, r.variant, r.status) for r in rows] == [(i, "armor", "pending") for i in ITEMS]
        pages[backend] = {r.item_id: r.content for r in rows}
        for row in rows:
            meta = row.content["metadata"]
            assert row.model == meta["model"] == built.name  # the model's name, never the server's path
            assert meta["config_hash"] == config_hash and "Describe" in meta["prompt"]
            assert _clean(_text(row.content)), _text(row.content)
        assert any(_text(r.content).strip() for r in rows)
    # The engine writes the very pages PyTorch writes (greedy text, seeded picture sampling).
    assert pages["torch"] == pages["onnxruntime"]


@pytest.mark.parametrize("lm", LMS)
def test_evaluation_with_an_hf_tokenizer_model(lm: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from armor_ab.assets import DEMO_CATALOG, DEMO_MODEL
    from armor_ab.catalog.products import load_catalog
    from armor_ab.training.classifier import load_classifier
    from armor_ab.training.data import TASKS, DataConfig, build_datasets
    from armor_ab.training.evaluate import evaluate_model, pick_heldout, run_generation
    from armor_ab.training.probe import decision_margins
    from armor_ab.training.training_recipe import EvalConfig

    built = hf_model(tmp_path_factory, lm)
    loaded = load_model(built.model_dir)
    products = load_catalog(DEMO_CATALOG)
    heldout = build_datasets(products, DataConfig())["heldout"]
    cfg = EvalConfig(per_task=1, batch_size=4, max_new_tokens=12)
    samples = pick_heldout(heldout, cfg.per_task)
    assert sorted(s["task"] for s in samples) == sorted(TASKS)
    results = run_generation(loaded.model, loaded.tokenizer, {p.id: p for p in products}, samples, cfg)
    assert [r["sample"]["id"] for r in results] == [s["id"] for t in TASKS for s in samples if s["task"] == t]
    assert all(_clean(r["text"]) for r in results), [r["text"] for r in results]
    assert any(r["text"] for r in results)
    figures = evaluate_model(loaded.model, loaded.tokenizer, products, heldout, load_classifier(DEMO_MODEL), cfg)
    assert figures["n"] == len(TASKS) and set(figures["per_task"]) == set(TASKS)
    assert 0.0 <= figures["modality_accuracy"] <= 1.0
    # The probe of the modality decision reads the text head at the HF chat template's positions.
    margins = decision_margins(loaded.model, loaded.tokenizer, heldout[:6], base=False)
    assert margins and all(torch.isfinite(torch.tensor([m["first"], m["end"]])).all() for m in margins)


def test_eval_cli_on_an_init_model_judges_with_the_shipped_classifier(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    built = hf_model(tmp_path_factory, "qwen2")
    result = CliRunner().invoke(app, ["eval", "--model", str(built.model_dir), "--per-task", "1", "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "has no classifier.safetensors" in result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == str(built.model_dir) and report["figures"]["n"] == 4
    assert report["base"]["source"] is None  # no training.json: nothing recorded to compare with
