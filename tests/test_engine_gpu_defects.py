"""The TensorRT review's defects (issue 21), checked on the CPU: what can be shown without a GPU is shown here.

TensorRT's own API is faked where a check needs it (a module object with ``__version__``, an execution context
that answers False the way TensorRT does); ONNX Runtime's by a session object with ``get_providers``. Our code
runs as it is: ``GraphBackend`` with a ``_run`` that binds through the TensorRT backend's ``bind_tensors`` on a
fake context instead of executing, and the real ONNX Runtime backend on the session's armor-tiny engine.
"""

from __future__ import annotations

import importlib.machinery
import math
import sys
import types
from itertools import combinations
from pathlib import Path

import pytest
import torch

from armor_ab.engine.backends.base import ALIGN, GraphBackend, aligned_empty, cache_len
from armor_ab.engine.backends.onnxruntime import check_providers, ort_session_options
from armor_ab.engine.backends.tensorrt import (
    bind_tensors,
    check_tensorrt_version,
    require_tensorrt,
    tensorrt_missing_reason,
)
from armor_ab.engine.errors import BackendUnavailable, EngineError
from armor_ab.engine.graphs import GRAPH_NAMES, PrefillGraph, graph_specs
from armor_ab.engine.loader import open_engine_backend
from armor_ab.engine.manifest import GraphEntry, Manifest, check_graph_specs
from armor_ab.engine.parity import ParityReport, first_divergence, high_position_steps, tolerances
from armor_ab.model import InterleavedGenerator, SamplingConfig, load_model
from armor_ab.model.cache import position_ids_from_valid
from armor_ab.model.steps import TorchBackend
from tests.helpers.engine import tiny_engine_dir

PROFILES = {"rows": [1, 2, 8], "tokens": [1, 16, 256], "cache": [1, 64, 256], "images": [1, 1, 4]}


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(2)
    return load_model("armor-tiny", seed=0)


def manifest_for(config, profiles=PROFILES, kv_dtype: str = "float32") -> Manifest:
    """An engine's manifest as a TensorRT build writes it (no files: nothing here opens one)."""
    specs = graph_specs(config, kv_dtype)
    return Manifest(
        name="armor-tiny",
        backend="tensorrt",
        precision="fp16" if kv_dtype == "float16" else "fp32",
        opset=18,
        config=config.to_dict(),
        config_hash=config.config_hash(),
        model={"source": "armor-tiny"},
        graphs={n: GraphEntry(n, f"{n}.plan", specs[n].inputs, specs[n].outputs) for n in GRAPH_NAMES},
        files={},
        profiles=profiles,
        kv_cache={"dtype": kv_dtype},
    )


class FakeContext:
    """TensorRT's ``IExecutionContext`` as far as binding goes: ``set_input_shape`` answers False for a shape
    outside the profile, ``set_tensor_address`` for an address that is not 256-byte aligned."""

    def __init__(self, spec, limits: dict[str, int]) -> None:
        self.shapes = {t.name: t.shape for t in spec.inputs}
        self.limits = limits
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        want = self.shapes[name]
        return len(shape) == len(want) and all(
            (1 <= n <= self.limits[w]) if isinstance(w, str) else n == w for n, w in zip(shape, want, strict=True)
        )

    def set_tensor_address(self, name: str, address: int) -> bool:
        if address % 256:
            return False
        self.addresses[name] = address
        return True


class BindingBackend(GraphBackend):
    """``GraphBackend`` bound as the TensorRT backend binds (profiles enforced, aligned addresses, the same
    ``bind_tensors`` on a fake context); instead of executing, outputs are zeros (``new_kv``: ``kv_fill``)."""

    kind = "tensorrt"
    fixed_profiles = True
    address_alignment = ALIGN

    def __init__(self, manifest: Manifest, config) -> None:
        super().__init__(manifest, config, Path("engine/fake"), torch.device("cpu"))
        self.bound: list[tuple[str, str, int]] = []  # (graph, tensor, address)
        self.chunks: list[int] = []  # the tokens axis of every call that has one
        self.asked: list[tuple[int, ...]] = []  # what check_capacity was asked (generate's call first)
        self.kv_fill: torch.Tensor | None = None

    def check_capacity(self, rows: int, max_len: int, tokens: int = 0, images: int = 0) -> None:
        self.asked.append((rows, max_len, tokens, images))
        super().check_capacity(rows, max_len, tokens, images)

    def _run(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = self._prepare(graph, inputs)
        outputs = self._output_buffers(graph, inputs)
        ctx = FakeContext(self.specs[graph], self.limits)
        bind_tensors(ctx, graph, inputs, outputs)
        self.bound += [(graph, name, address) for name, address in ctx.addresses.items()]
        if graph in ("embed", "prefill", "adapter"):
            self.chunks.append(next(iter(inputs.values())).shape[1])
        for name, buf in outputs.items():
            buf.zero_()
            if name == "new_kv" and self.kv_fill is not None:
                buf.copy_(self.kv_fill.expand_as(buf))  # cast to the buffer's dtype, as TensorRT's boundary does
        self.calls[graph] += 1
        return self._results(outputs)


# --- 1. TensorRT 10 only ---------------------------------------------------------------------------------------


def _fake_tensorrt(monkeypatch: pytest.MonkeyPatch, version: str) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return trt


def test_require_tensorrt_refuses_tensorrt_11(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tensorrt(monkeypatch, "11.4.0")
    with pytest.raises(BackendUnavailable, match=r"TensorRT 11\.4\.0 is installed, but .* TensorRT 10\.x") as exc:
        require_tensorrt()
    assert "pypi.nvidia.com" in str(exc.value) and "<11" in str(exc.value)


def test_require_tensorrt_accepts_tensorrt_10(monkeypatch: pytest.MonkeyPatch) -> None:
    trt = _fake_tensorrt(monkeypatch, "10.13.3.9")
    assert require_tensorrt() is trt
    for version in ("8.6.1", "unknown", ""):
        with pytest.raises(BackendUnavailable, match="TensorRT 10.x"):
            check_tensorrt_version(types.SimpleNamespace(__version__=version))


def test_missing_reason_names_an_installed_tensorrt_11_without_importing_it(monkeypatch) -> None:
    import importlib.metadata as md

    _fake_tensorrt(monkeypatch, "11.4.0")
    monkeypatch.setattr(md, "packages_distributions", lambda: {"tensorrt": ["tensorrt_cu12"]})
    monkeypatch.setattr(md, "version", {"tensorrt_cu12": "11.4.0.106"}.__getitem__)
    assert "TensorRT 11.4.0.106 is installed" in str(tensorrt_missing_reason())
    monkeypatch.setattr(md, "version", {"tensorrt_cu12": "10.13.3.9"}.__getitem__)
    assert tensorrt_missing_reason() is None


def test_pyproject_pins_tensorrt_10_and_no_second_onnxruntime() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == ["tensorrt-cu12>=10,<11"] and extras["gpu-cu13"] == ["tensorrt-cu13>=10,<11"]
    assert not any("onnxruntime" in d for deps in extras.values() for d in deps)  # one package per import name


# --- 2. aligned addresses ---------------------------------------------------------------------------------------


def test_cache_len_pads_the_row_stride_to_256_bytes() -> None:
    for row_bytes in (2 * 16 * 4, 2 * 16 * 2, 2 * 64 * 4, 14 * 64 * 2, 3 * 5 * 4, 1):
        for max_len in (1, 7, 23, 64, 255, 1000):
            s = cache_len(max_len, row_bytes)
            assert s >= max_len and s * row_bytes % ALIGN == 0
            assert s - max_len < ALIGN // math.gcd(ALIGN, row_bytes)  # the least padding that aligns
    assert cache_len(23, 2 * 16 * 4) == 24 and cache_len(23, 2 * 64 * 4) == 23  # armor-tiny fp32, armor-demo


def test_aligned_empty_starts_at_a_multiple_of_256() -> None:
    for shape, dtype in (((3, 7), torch.bool), ((2, 5, 3), torch.float16), ((1,), torch.float32)):
        for _ in range(4):
            x = aligned_empty(shape, dtype, torch.device("cpu"))
            assert x.data_ptr() % ALIGN == 0 and x.shape == shape and x.dtype == dtype and x.is_contiguous()


@pytest.mark.parametrize("kv_dtype", ["float32", "float16"])
def test_every_row_range_binds_aligned_addresses(tiny, kv_dtype: str) -> None:
    config = tiny.model.config
    be = BindingBackend(manifest_for(config, kv_dtype=kv_dtype), config)
    c = config.text_config.hidden_size
    for rows in (1, 2, 3):
        for max_len in (9, 23):  # odd: unpadded, a row of armor-tiny's KV would be 128 x 23 bytes long
            be.allocate(rows, max_len)
            s = be.lm_kv.shape[4]
            assert s == be.cache_len(max_len) >= max_len
            assert be.lm_kv.stride(2) * be.lm_kv.element_size() % ALIGN == 0
            for r0, r1 in combinations(range(rows + 1), 2):  # every contiguous row range
                sel, r, t = slice(r0, r1), r1 - r0, 3
                valid = torch.ones((r, t + 1), dtype=torch.bool)
                pos = position_ids_from_valid(valid)
                be.prefill(torch.randn(r, t, c), pos[:, :t], valid[:, :t], sel, 0)
                be.decode_step(torch.zeros(r, dtype=torch.long), pos[:, t], valid, sel, t)
                be.adapter(torch.randn(r, t + 1, c), pos, valid, sel, 0)
            be.close()
    bound = {(g, n) for g, n, _ in be.bound}
    assert {("decode", "past_valid"), ("prefill", "past_key_1"), ("adapter", "past_value_0")} <= bound
    assert all(address % ALIGN == 0 for _, _, address in be.bound)


def test_guided_generation_binds_aligned_addresses_and_asks_for_its_longest_chunk(tiny) -> None:
    # Classifier-free guidance: the unconditional rows (rows 2-3 of 4) catch up in one chunk; every
    # address bound, the catch-up's past_valid included, is aligned, and no chunk is longer than the
    # capacity generate asked for.
    config = tiny.model.config
    be = BindingBackend(manifest_for(config), config)
    prompts = ["a red shoe", "a mug, handmade"]
    t0 = max(len(tiny.tokenizer.chat_prompt(p, None)) for p in prompts)
    fixed = t0 + 2 * (config.codes_per_image + 1)
    new = 5 if (fixed + 5) % 2 else 6  # max_len = fixed + new, odd: a padded cache
    s = SamplingConfig(
        max_new_tokens=new, max_images=2, guidance_scale=3.0, temperature=0.0, image_temperature=0.0,
        text_logit_bias={config.imgbos_id: 30.0},
    )  # fmt: skip
    InterleavedGenerator(be, tiny.tokenizer).generate(prompts, settings=s)
    rows, max_len, tokens, images = be.asked[0]
    assert (rows, images) == (4, 0) and max_len % 2 == 1 and be.lm_kv.shape[4] == max_len + 1
    assert be.calls["adapter"] > 0 and any(g == "prefill" and n == "past_valid" for g, n, _ in be.bound)
    assert max(be.chunks) <= tokens < max_len


def test_bind_tensors_raises_naming_graph_and_tensor(tiny) -> None:
    spec = graph_specs(tiny.model.config)["text_head"]
    base = aligned_empty((2 * 64 + 16,), torch.float32, torch.device("cpu"))
    good, off = base[: 2 * 64].view(2, 64), base[4 : 4 + 2 * 64].view(2, 64)  # off: 16 bytes past 256
    out = aligned_empty((2, spec.outputs[0].shape[1]), torch.float32, torch.device("cpu"))
    ctx = FakeContext(spec, {"rows": 8})
    bind_tensors(ctx, "text_head", {"hidden": good}, {"text_logits": out})
    assert ctx.addresses == {"hidden": good.data_ptr(), "text_logits": out.data_ptr()}
    with pytest.raises(RuntimeError, match=r"graph 'text_head'.*tensor 'hidden'.*not 256-byte aligned"):
        bind_tensors(FakeContext(spec, {"rows": 8}), "text_head", {"hidden": off}, {"text_logits": out})
    with pytest.raises(RuntimeError, match=r"graph 'text_head'.*input 'hidden'.*shape \(2, 64\) refused"):
        bind_tensors(FakeContext(spec, {"rows": 1}), "text_head", {"hidden": good}, {"text_logits": out})

    class Refuses(FakeContext):
        def set_tensor_address(self, name: str, address: int) -> bool:
            return name != "text_logits"

    with pytest.raises(RuntimeError, match=r"graph 'text_head'.*tensor 'text_logits'.*refused"):
        bind_tensors(Refuses(spec, {"rows": 8}), "text_head", {"hidden": good}, {"text_logits": out})


# --- 4. RoPE from an fp32 table ---------------------------------------------------------------------------------


def test_rope_table_is_the_models_rope_at_every_position(tiny) -> None:
    lm = tiny.model.model.language_model
    top = tiny.model.config.text_config.max_position_embeddings
    rope = PrefillGraph(tiny.model).rope
    assert rope.cos.shape == (top, lm.rotary_emb.inv_freq.numel() * 2) and rope.cos.dtype == torch.float32
    positions = torch.tensor([[0, 1, 2, 517, 1000, top - 1]])
    cos, sin = lm.rotary_emb(torch.zeros(1), positions)
    got_cos, got_sin = rope(positions)
    assert torch.equal(got_cos, cos) and torch.equal(got_sin, sin)


def test_rope_table_survives_an_fp16_consumer_where_an_fp16_angle_does_not(tiny) -> None:
    # TensorRT with the FP16 flag may run the table's Gather (and what consumes it) in fp16: a table entry
    # rounded to fp16 is off by at most 2^-12. The old graph computed position x inv_freq and its cos in-graph,
    # which fp16 runs at an angle off by up to 0.25 rad at position 1000.
    inv_freq = tiny.model.model.language_model.rotary_emb.inv_freq.double()  # (D/2,)
    table = PrefillGraph(tiny.model).rope.cos  # (P, D) fp32
    pos = torch.tensor([1000.0], dtype=torch.float64)
    truth = torch.cat([pos[:, None] * inv_freq] * 2, -1).cos()  # (1, D)
    table_err = float((table[1000:1001].half().double() - truth).abs().max())
    angle16 = pos.half()[:, None] * inv_freq.half()  # the old graph's angle, in fp16
    in_graph_err = float((torch.cat([angle16] * 2, -1).float().cos().half().double() - truth).abs().max())
    assert table_err < 1e-3 < in_graph_err, (table_err, in_graph_err)


def test_onnx_graphs_match_pytorch_at_the_last_rope_position(tiny, tmp_path_factory) -> None:
    # prefill, decode and adapter at positions max_position_embeddings - 7 .. - 1 (the step_parity block an
    # fp16 RoPE would fail), in an odd cache (7 positions: padded to 8 for armor-tiny's fp32 rows).
    be = open_engine_backend(tiny_engine_dir(tmp_path_factory), "onnxruntime", tiny.model.config, threads=1)
    report = ParityReport()
    high_position_steps(report, TorchBackend(tiny.model), be, torch.Generator().manual_seed(3))
    assert be.lm_kv.shape[4] == 8 and set(report.hidden_diff) == {"prefill", "decode", "adapter"}
    assert report.failures(1e-4) == {}, report.to_json()
    assert all(a == 1.0 for a in report.top1_agreement.values())


# --- 5. capacity, checked before anything runs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("axis", "profiles", "prompts", "images", "settings"),
    [
        ("rows", {"rows": [1, 1, 3]}, ["a", "b"], None, {}),  # 2 prompts x guidance = 4 rows
        ("cache", {"cache": [1, 32, 40]}, ["a"], None, {"max_new_tokens": 30}),
        ("tokens", {"tokens": [1, 8, 8]}, ["a red running shoe"], None, {"max_images": 0}),
        ("images", {"images": [1, 1, 1]}, ["a", "b"], "two", {}),
    ],
)
def test_oversized_request_is_refused_before_any_graph_runs(tiny, axis, profiles, prompts, images, settings):
    from PIL import Image

    config = tiny.model.config
    be = BindingBackend(manifest_for(config, PROFILES | profiles), config)
    pictures = [Image.new("RGB", (32, 32), (200, 40, 40))] * len(prompts) if images else None
    s = SamplingConfig(**({"max_new_tokens": 4, "max_images": 1, "guidance_scale": 3.0} | settings))
    with pytest.raises(EngineError, match=rf"{axis} \d+ .*> {profiles[axis][2]}.*rebuild the engine") as exc:
        InterleavedGenerator(be, tiny.tokenizer).generate(prompts, pictures, settings=s)
    assert "manifest.json" in str(exc.value) and "optimisation profiles" in str(exc.value)
    assert set(be.calls.values()) == {0}  # not even the embedding ran


def test_torch_backend_has_no_limits(tiny) -> None:
    TorchBackend(tiny.model).check_capacity(10_000, 10**6, 10**6, 100)


# --- 6. ONNX Runtime's silent CPU fallback -----------------------------------------------------------------------


class FakeSession:
    def __init__(self, providers: list[str]) -> None:
        self.providers = providers

    def get_providers(self) -> list[str]:
        return self.providers


def test_check_providers_refuses_a_cpu_fallback() -> None:
    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    check_providers(Path("decode.onnx"), FakeSession(cuda), cuda)
    check_providers(Path("decode.onnx"), FakeSession(cuda), ["CUDAExecutionProvider"])
    check_providers(Path("decode.onnx"), FakeSession(["CPUExecutionProvider"]), ["CPUExecutionProvider"])
    with pytest.raises(EngineError, match=r"decode\.onnx: .*providers \['CPUExecutionProvider'\], not .*CUDA"):
        check_providers(Path("decode.onnx"), FakeSession(["CPUExecutionProvider"]), cuda)
    with pytest.raises(EngineError, match="onnxruntime-gpu"):
        check_providers(Path("decode.onnx"), FakeSession([]), ["CUDAExecutionProvider"])


def test_ort_warnings_are_shown_when_cuda_is_asked_for() -> None:
    assert ort_session_options(log_severity=2).log_severity_level == 2
    assert ort_session_options().log_severity_level == 3


# --- 7. fp16 KV I/O, separate tolerances, greedy reported ------------------------------------------------------


def test_fp16_kv_manifest_allocates_fp16_kv_and_writes_new_kv_into_it(tiny, tmp_path: Path) -> None:
    config = tiny.model.config
    manifest = manifest_for(config, kv_dtype="float16")
    check_graph_specs(manifest, tmp_path, config)  # declared fp16 KV I/O is what the config implies
    decode = {t.name: t.dtype for t in manifest.graphs["decode"].inputs + manifest.graphs["decode"].outputs}
    assert decode["past_key_0"] == decode["new_kv"] == "float16" and decode["hidden"] == "float32"

    be = BindingBackend(manifest, config)
    be.allocate(3, 9)
    assert be.lm_kv.dtype == be.ad_kv.dtype == torch.float16
    be.kv_fill = torch.linspace(-1, 1, 7).repeat(3)[:16] * 0.1  # fp32 values fp16 rounds, written as fp16
    valid = torch.ones((2, 5), dtype=torch.bool)
    be.decode_step(torch.zeros(2, dtype=torch.long), torch.full((2,), 4), valid, slice(1, 3), 4)
    want = be.kv_fill.half()  # (D,)
    assert torch.equal(be.lm_kv[:, :, 1:3, :, 4], want.expand_as(be.lm_kv[:, :, 1:3, :, 4]))
    assert not be.lm_kv[:, :, 0].any() and not be.lm_kv[..., :4, :].any()  # nothing else written

    # A manifest whose KV dtype disagrees with its graphs' I/O fails verification.
    wrong = manifest_for(config, kv_dtype="float16")
    wrong.kv_cache = {"dtype": "float32"}
    with pytest.raises(EngineError, match="shape mismatch"):
        check_graph_specs(wrong, tmp_path, config)


def test_hidden_states_and_logits_have_separate_tolerances() -> None:
    report = ParityReport()
    report.add("decode", torch.full((2, 4), 2.0), torch.full((2, 4), 2.0 + 5e-2))  # hidden: |ref| 2
    report.add("decode", torch.full((2, 8), 10.0), torch.full((2, 8), 10.0 + 0.15), logits=True)  # logits: 10
    assert report.hidden_diff["decode"] == pytest.approx(5e-2, abs=1e-5) and report.logits_ref["decode"] == 10.0
    # Relative 2e-2: the hidden states' bound is 2e-2 x 2 = 0.04 (mixed with the logits it was 2e-2 x 10).
    assert set(report.failures(2e-2, relative=True)) == {"decode hidden"}
    assert report.failures(3e-2, 1e-2, relative=True) == {"decode logits": pytest.approx(0.15, abs=1e-5)}
    assert report.max_abs_diff == {"decode": pytest.approx(0.15, abs=1e-5)}
    assert tolerances({"fp16": 2e-2}, "fp16") == (2e-2, 2e-2)
    assert tolerances({"fp16": 2e-2, "fp16_hidden": 1e-2}, "fp16") == (1e-2, 2e-2)
    assert report.top1_failures() == {}


def test_first_divergence() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2, 3], [1, 2]) == 2
