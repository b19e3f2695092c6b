"""ONNX engine of armor-tiny vs PyTorch eager: every graph within 1e-4, identical greedy generation, the manifest.

The engine is built once per test session, through the real CLI (``armor-ab engine build``), into a temporary
directory; ``tests.helpers.engine.tiny_engine_dir`` is shared with the other ``test_engine_*`` modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from armor_ab.engine.backends.onnxruntime import OnnxRuntimeBackend
from armor_ab.engine.graphs import GRAPH_NAMES, graph_specs
from armor_ab.engine.loader import open_engine_backend, open_engine_generator
from armor_ab.engine.manifest import Manifest, read_manifest, sha256_file
from armor_ab.engine.parity import greedy_parity, greedy_settings, step_parity
from armor_ab.model import InterleavedGenerator, SamplingConfig, load_model
from tests.helpers.engine import tiny_engine_build_output, tiny_engine_dir


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_engine_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded():
    torch.set_num_threads(2)
    return load_model("armor-tiny", seed=0)  # the weights the recipe's engine was built from


@pytest.fixture(scope="module")
def ort_backend(engine_dir: Path, loaded) -> OnnxRuntimeBackend:
    return open_engine_backend(engine_dir, "onnxruntime", loaded.model.config, threads=1)


def test_build_writes_every_graph_and_a_self_describing_manifest(
    engine_dir: Path, loaded, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cfg = loaded.model.config
    data = json.loads((engine_dir / "manifest.json").read_text())
    assert data["format"] == "armor-engine/1" and data["backend"] == "onnx" and data["precision"] == "fp32"
    assert data["opset"] == 18 and data["config_hash"] == cfg.config_hash()
    assert data["model"]["random_weights"] is True and "RANDOM" in data["model"]["note"]
    assert list(data["graphs"]) == list(GRAPH_NAMES)
    for name, spec in graph_specs(cfg).items():
        entry = data["graphs"][name]
        path = engine_dir / entry["file"]
        assert [i["name"] for i in entry["inputs"]] == [t.name for t in spec.inputs]
        assert data["files"][entry["file"]]["sha256"] == sha256_file(path)
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        assert model.opset_import[0].version == 18
        # Named dynamic axes in the file itself, as the manifest lists them.
        dims = {
            i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input
        }
        for t in spec.inputs:
            assert dims[t.name] == list(t.shape), (name, t.name)
    decode = data["graphs"]["decode"]
    assert decode["dynamic_axes"]["past_key_0"] == {"0": "rows", "2": "cache"}
    assert {"torch", "onnx", "onnxruntime", "transformers", "python"} <= set(data["versions"])
    assert data["profiles"]["rows"][2] == 2 * data["recipe"]["max_batch"]  # CFG doubles the prompts
    parity = data["parity"]
    assert max(parity["max_abs_diff"].values()) <= 1e-4 and set(parity["max_abs_diff"]) == set(GRAPH_NAMES)
    assert parity["greedy_generation"]["identical_tokens"] and parity["greedy_generation"]["identical_codes"]
    printed = tiny_engine_build_output(tmp_path_factory)
    assert "built" in printed and "RANDOM" in printed


def test_manifest_round_trip(engine_dir: Path, tmp_path: Path) -> None:
    manifest = read_manifest(engine_dir)
    again = Manifest.from_json(json.loads(json.dumps(manifest.to_json())))
    assert again == manifest
    again.save(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == json.loads(
        (engine_dir / "manifest.json").read_text()
    )
    assert manifest.armor_config().config_hash() == manifest.config_hash
    assert manifest.graphs["adapter"].spec == graph_specs(manifest.armor_config())["adapter"]


def test_every_graph_matches_pytorch_within_1e4(loaded, ort_backend: OnnxRuntimeBackend) -> None:
    report = step_parity(loaded.model, ort_backend, seed=1)  # other inputs than the build's check
    assert set(report.max_abs_diff) == set(GRAPH_NAMES)
    assert report.failures(1e-4) == {}, report.max_abs_diff
    assert all(v == 1.0 for v in report.top1_agreement.values()), report.top1_agreement


def test_greedy_interleaved_generation_is_identical(loaded, ort_backend: OnnxRuntimeBackend) -> None:
    result = greedy_parity(loaded.model, loaded.tokenizer, ort_backend)
    assert result["images"] == 4  # 2 prompts x 2 images, forced by the <imgbos> bias
    assert result["identical_tokens"], (result["reference_tokens"], result["candidate_tokens"])
    assert result["identical_codes"]


def test_sampled_generation_with_guidance_matches_and_is_batched(engine_dir: Path, loaded) -> None:
    gen = open_engine_generator(engine_dir, "onnxruntime", threads=1)
    ref = InterleavedGenerator.from_model(loaded.model, loaded.tokenizer, "armor-tiny")
    cfg = loaded.model.config
    s = SamplingConfig(
        max_new_tokens=10,
        max_images=1,
        seed=5,
        top_k=40,
        guidance_scale=4.0,
        text_logit_bias={cfg.imgbos_id: 3.0},
    )
    prompts = ["a red running shoe", "a mug", "a lamp"]
    a, b = gen.generate(prompts, settings=s), ref.generate(prompts, settings=s)
    assert [c.to_json_str() for c in a.contents] == [c.to_json_str() for c in b.contents]
    assert [i.png for c in a.contents for i in c.images] == [i.png for c in b.contents for i in c.images]


def test_one_graph_call_per_text_token_and_kv_buffers_allocated_once(loaded, ort_backend) -> None:
    gen = InterleavedGenerator(ort_backend, loaded.tokenizer)
    cfg = loaded.model.config
    text = greedy_settings(cfg, max_images=0, max_new_tokens=12, text_logit_bias={cfg.text_eos_id: -1e9})
    gen.generate(["a red running shoe"], settings=text)
    kv_ptr = ort_backend.lm_kv.data_ptr()
    before = dict(ort_backend.calls)
    gen.generate(["a red running shoe"], settings=text)
    calls = {k: v - before[k] for k, v in ort_backend.calls.items() if v != before[k]}
    # prompt: embed + prefill + text head; then 11 tokens, each one fused decode + text head graph call.
    assert calls == {"embed": 1, "prefill": 1, "text_head": 1, "decode": 11}
    # A request of the same size reuses the KV buffers instead of reallocating them.
    assert ort_backend.lm_kv.data_ptr() == kv_ptr
