"""GPU engines (marked ``gpu``; skipped where CUDA / TensorRT / the CUDA execution provider are absent).

TensorRT fp16 vs PyTorch fp32: max |diff| <= 2e-2 x max(1, max |reference|) per graph, hidden states and logits
apart (RoPE positions up to the model's last one included), and top-1 agreement of every logits graph >= 0.99
(docs/engine.md); greedy generation is reported (agreement, first divergence), not required. ONNX Runtime's
CUDA EP: the fp32 1e-4 bound of the CPU EP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from armor_ab.engine.backends.tensorrt import tensorrt_missing_reason

pytestmark = pytest.mark.gpu

FP16_TOLERANCE = 2e-2
TOP1 = 0.99


def _cuda_ep() -> bool:
    import onnxruntime as ort

    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def loaded():
    from armor_ab.model import load_model

    return load_model("armor-tiny", seed=0)


@pytest.mark.skipif(tensorrt_missing_reason() is not None, reason=str(tensorrt_missing_reason()))
def test_tensorrt_fp16_parity(tmp_path_factory: pytest.TempPathFactory, loaded) -> None:
    from armor_ab.engine.build import build_tensorrt
    from armor_ab.engine.build_recipe import load_recipe
    from armor_ab.engine.loader import open_engine_backend
    from armor_ab.engine.parity import greedy_parity, step_parity
    from tests.helpers.engine import TINY_RECIPE

    root = tmp_path_factory.mktemp("trt")
    directory: Path = build_tensorrt(load_recipe(TINY_RECIPE), out_root=root, progress=False)
    be = open_engine_backend(directory, "tensorrt", loaded.model.config)
    assert be.manifest.kv_dtype == "float16" and be.manifest.parity["within_tolerance"], be.manifest.parity
    assert be.stream.cuda_stream != torch.cuda.default_stream().cuda_stream  # not the legacy default stream
    report = step_parity(loaded.model, be)  # reference: PyTorch fp32 on the CPU
    assert be.lm_kv.dtype == torch.float16 and be.lm_kv.data_ptr() % 256 == 0
    assert report.failures(FP16_TOLERANCE, relative=True) == {}, report.to_json()
    assert report.top1_failures(TOP1) == {}, report.top1_agreement
    greedy = greedy_parity(loaded.model, loaded.tokenizer, be)  # reported, not required (fp16 near-ties)
    assert greedy["images"] == 4 and len(greedy["first_divergence"]) == 2, greedy


@pytest.mark.skipif(not _cuda_ep(), reason="needs CUDA and onnxruntime-gpu (CUDAExecutionProvider)")
def test_onnxruntime_cuda_ep_parity(tmp_path_factory: pytest.TempPathFactory, loaded) -> None:
    from armor_ab.engine.loader import open_engine_backend
    from armor_ab.engine.parity import step_parity
    from tests.helpers.engine import tiny_engine_dir

    be = open_engine_backend(tiny_engine_dir(tmp_path_factory), "onnxruntime", loaded.model.config)
    assert be.compute_device.type == "cuda"
    report = step_parity(loaded.model, be)
    assert report.failures(1e-4) == {}, report.max_abs_diff
