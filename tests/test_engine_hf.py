"""ONNX engines of models made by `armor-ab model init` (the base's Hugging Face tokenizer), Llama and Qwen2:
the `own-model` recipe, parity with PyTorch, the tokenizer in the engine directory, and the refusals.

The models and their engines come from ``tests.helpers.hf_engines`` (built once per session by
``armor-ab engine build --recipe own-model --model armor-<lm> --out engines``, shared with
``test_generate_hf``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from armor_ab.assets import build_recipe
from armor_ab.cli import app
from armor_ab.engine.build_recipe import load_recipe
from armor_ab.engine.errors import EngineError, UnsupportedModel
from armor_ab.engine.graphs import GRAPH_NAMES, check_exportable
from armor_ab.engine.loader import open_engine_backend
from armor_ab.engine.manifest import read_manifest, sha256_file
from armor_ab.engine.parity import greedy_parity, step_parity
from armor_ab.model import load_model
from armor_ab.model.hf_tokenizer import HFTokenizer
from tests.helpers.hf_engines import LMS, HFModel, hf_model

TOLERANCE = load_recipe(build_recipe("own-model")).tolerance["fp32"]
TOKENIZER_FILES = ["chat_template.jinja", "tokenizer.json", "tokenizer_config.json"]


@pytest.fixture(scope="module", params=LMS)
def built(request, tmp_path_factory: pytest.TempPathFactory) -> HFModel:
    return hf_model(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def loaded(built: HFModel):
    torch.set_num_threads(2)
    return load_model(built.model_dir)


def _verify(engine: Path, model: Path | None = None):
    args = ["engine", "verify", str(engine)] + (["--model", str(model)] if model else [])
    return CliRunner().invoke(app, args)


def test_own_model_recipe_names_the_engine_after_the_model_and_records_the_tokenizer(
    built: HFModel, loaded
) -> None:
    assert f"built engines/{built.name}/onnx" in built.build_output
    assert sorted(p.name for p in (built.root / "engines").iterdir()) == [f"armor-{lm}" for lm in LMS]
    assert [p.name for p in (built.root / "engines" / built.name).iterdir()] == ["onnx"]  # no .partial left
    manifest = read_manifest(built.engine_dir)
    config = loaded.model.config
    assert manifest.name == built.name and manifest.backend == "onnx" and manifest.precision == "fp32"
    assert manifest.config_hash == config.config_hash()
    assert manifest.config["text_config"]["model_type"] == built.lm == config.text_config.model_type
    assert manifest.recipe["name"] == built.name and manifest.recipe["tolerance"]["fp32"] == TOLERANCE
    assert manifest.model["source"] == built.name and manifest.model["random_weights"] is False
    assert manifest.model["weights_sha256"]  # the sharded weights are hashed too
    # Every tokenizer file the HF tokenizer wrote is listed and hashed; they are the model's own files.
    assert manifest.tokenizer == {"kind": "hf", "file": "tokenizer.json", "files": TOKENIZER_FILES}
    for name in TOKENIZER_FILES:
        path = built.engine_dir / name
        assert manifest.files[name]["sha256"] == sha256_file(path)
    assert (built.engine_dir / "chat_template.jinja").read_text() == (
        built.model_dir / "chat_template.jinja"
    ).read_text()
    assert not (built.engine_dir / "armor_tokenizer.json").exists()
    # The parity measured at build time: every graph within the recipe's tolerance, greedy generation equal.
    parity = manifest.parity
    assert set(parity["max_abs_diff"]) == set(GRAPH_NAMES)
    assert max(parity["max_abs_diff"].values()) <= TOLERANCE
    greedy = parity["greedy_generation"]
    assert greedy["identical_tokens"] and greedy["identical_codes"] and greedy["images"] == 4


def test_engine_matches_pytorch_step_by_step_and_in_greedy_generation(built: HFModel, loaded) -> None:
    backend = open_engine_backend(built.engine_dir, "onnxruntime", loaded.model.config, threads=1)
    try:
        report = step_parity(loaded.model, backend, seed=5)
        assert report.failures(TOLERANCE) == {}, report.to_json()
        assert set(report.max_abs_diff) == set(GRAPH_NAMES)
        assert min(report.top1_agreement.values()) == 1.0
        # The engine's own tokenizer (loaded back from its directory), against PyTorch with the model's.
        tokenizer = backend.tokenizer
        assert isinstance(tokenizer, HFTokenizer) and tokenizer.kind == "hf"
        assert tokenizer.chat_prompt("a red shoe", 4) == loaded.tokenizer.chat_prompt("a red shoe", 4)
        result = greedy_parity(loaded.model, tokenizer, backend, reference_tokenizer=loaded.tokenizer)
        assert result["identical_tokens"] and result["identical_codes"], result
        assert result["images"] == 4 and result["tokens"] > 4 * loaded.model.config.codes_per_image
    finally:
        backend.close()


def test_qwen2_biases_are_part_of_the_exported_attention(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The q/k/v biases of Qwen2 go through the graphs: with them removed from the PyTorch model, the same
    # engine no longer matches it (and with them, it does - the test above).
    built = hf_model(tmp_path_factory, "qwen2")
    model = load_model(built.model_dir).model
    attn = model.model.language_model.layers[0].self_attn
    assert attn.q_proj.bias is not None and float(attn.q_proj.bias.abs().max()) > 0.01
    with torch.no_grad():
        for layer in [*model.model.language_model.layers, *model.adapter.layers]:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.zero_()
    backend = open_engine_backend(built.engine_dir, "onnxruntime", model.config, threads=1)
    try:
        report = step_parity(model, backend)
    finally:
        backend.close()
    print(report.to_json())
    assert report.max_abs_diff["prefill"] > 10 * TOLERANCE and report.max_abs_diff["decode"] > 10 * TOLERANCE
    assert report.max_abs_diff["vq_decode"] <= TOLERANCE  # untouched parts still agree


def test_verify_accepts_the_engine_and_rejects_a_bad_tokenizer(
    built: HFModel, loaded, tmp_path: Path
) -> None:
    ok = _verify(built.engine_dir, built.model_dir)
    assert ok.exit_code == 0, ok.output
    assert "verified" in ok.output and "greedy tokens identical: True" in ok.output

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(built.engine_dir, target)
        return target

    tampered = copy("tampered")  # one token's string changed, same size
    path = tampered / "tokenizer.json"
    text = path.read_text()
    assert '"<imgbos>"' in text
    path.write_text(text.replace('"<imgbos>"', '"<imgBOS>"'))
    result = _verify(tampered)
    assert result.exit_code == 2 and "tokenizer.json" in result.output and "corrupt" in result.output
    assert "Traceback" not in result.output

    missing = copy("missing")
    (missing / "chat_template.jinja").unlink()
    result = _verify(missing)
    assert result.exit_code == 2 and "chat_template.jinja" in result.output and "missing" in result.output

    for extra, content in [("special_tokens_map.json", '{"eos_token": "<|endoftext|>"}'),
                           ("armor_tokenizer.json", '{"kind": "byte", "specials": []}')]:
        added = copy(f"extra-{extra}")
        (added / extra).write_text(content)
        result = _verify(added)
        assert result.exit_code == 2 and extra in result.output and "not recorded" in result.output

    # A tokenizer edited together with its manifest record (hashes consistent) must still fit the config.
    edited = copy("edited")
    config_path = edited / "tokenizer_config.json"
    data = json.loads(config_path.read_text())
    data["pad_token"] = "<|im_start|>"
    config_path.write_text(json.dumps(data))
    manifest_path = edited / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["tokenizer_config.json"] = {"sha256": sha256_file(config_path),
                                                  "bytes": config_path.stat().st_size}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(EngineError) as info:
        open_engine_backend(edited, "onnxruntime", threads=1)
    assert info.value.path == edited / "tokenizer.json"
    assert "does not fit the engine's config" in str(info.value) and "pad id" in str(info.value)
    result = _verify(edited)
    assert result.exit_code == 2 and "pad id" in result.output


def _edited_model(source: Path, target: Path, edit) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    edit(config["text_config"])
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.parametrize(
    ("lm", "edit", "expected"),
    [
        ("qwen2", lambda t: t.update(use_sliding_window=True, sliding_window=8, max_window_layers=0,
                                     layer_types=["sliding_attention"] * t["num_hidden_layers"]),
         "sliding-window attention"),
        ("llama", lambda t: t.update(rope_parameters={"rope_type": "dynamic", "factor": 2.0,
                                                      "rope_theta": 10000.0}),
         "RoPE type 'dynamic'"),
    ],
)
def test_a_model_the_graphs_cannot_reproduce_is_refused(
    lm: str, edit, expected: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model_dir = _edited_model(hf_model(tmp_path_factory, lm).model_dir, tmp_path / "armor-odd", edit)
    with pytest.raises(UnsupportedModel, match=expected):
        check_exportable(load_model(model_dir).model)
    args = ["engine", "build", "--recipe", "own-model", "--model", str(model_dir), "--out", str(tmp_path / "e")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and expected in result.output and "cannot be exported" in result.output
    assert not (tmp_path / "e" / "armor-odd").exists()  # refused before anything was written


def test_a_recipe_too_small_for_the_model_and_a_recipe_without_model_are_refused(
    built: HFModel, tmp_path: Path
) -> None:
    recipe = yaml.safe_load(build_recipe("own-model").read_text())
    recipe["max_seq_len"] = 48
    recipe.pop("profiles")
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(recipe))
    args = ["engine", "build", "--recipe", str(small), "--model", str(built.model_dir), "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "max_seq_len 48 is too small" in result.output, result.output
    assert not (tmp_path / built.name).exists()

    no_model = CliRunner().invoke(app, ["engine", "build", "--recipe", "own-model", "--out", str(tmp_path)])
    assert no_model.exit_code == 2 and "pass --model" in no_model.output
    unknown = CliRunner().invoke(app, ["engine", "build", "--recipe", "own-modle", "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "own-model" in unknown.output and "armor-tiny" in unknown.output
    assert list(tmp_path.iterdir()) == [small]


def test_a_shipped_recipe_is_found_by_name_from_any_directory(tmp_path: Path) -> None:
    from armor_ab.engine.build_recipe import resolve_recipe_path

    with contextlib.chdir(tmp_path):
        assert resolve_recipe_path("own-model") == build_recipe("own-model")
        (tmp_path / "own-model").mkdir()  # a path that exists wins over the shipped name
        assert resolve_recipe_path("own-model") == Path("own-model")
