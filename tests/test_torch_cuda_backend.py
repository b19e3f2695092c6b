"""The torch-cuda backend (``armor_ab.engine.backends.torch_cuda.TorchCudaBackend``) against PyTorch eager.

On the CPU: the static-cache blocks uncompiled (Llama and Qwen2), then compiled by inductor without CUDA graphs,
fp32, within 1e-4 of ``TorchBackend`` step by step (several positions, row subsets, the adapter's chunk and
steps, the memoised heads); greedy interleaved generation (guidance on, images forced) identical in tokens
and codes; a bounded number of compiled steps however many tokens are generated, none after ``warmup``.
The CUDA-graph checks run only where CUDA is (``gpu`` marker): they skip here.

Compiling costs 10-25 s a step shape on a cold inductor cache (2 busy cores): the tests share shapes (four
rows: all rows, each half, the adapter over all rows; ``step_parity`` adds three rows and one) and a step's
graph depends on its number of rows only, so inductor's cache serves the repeats. 50-90 s cold, 15-35 s warm.
"""

from __future__ import annotations

import copy

import pytest
import torch
from typer.testing import CliRunner

from armor_ab.engine.backends.torch_cuda import LEN_BUCKET, TorchCudaBackend
from armor_ab.engine.loader import MODEL_BACKENDS, RUNTIME_BACKENDS
from armor_ab.engine.parity import greedy_parity, greedy_settings, step_parity
from armor_ab.model import InterleavedGenerator, load_model
from armor_ab.model.cache import position_ids_from_valid
from armor_ab.model.configuration import ArmorConfig
from armor_ab.model.modeling import ArmorForInterleavedGeneration
from armor_ab.model.presets import armor_tiny
from armor_ab.model.steps import TorchBackend
from armor_ab.model.tokenizer import ByteTokenizer

TOL = 1e-4


@pytest.fixture(scope="module")
def loaded():
    torch.set_num_threads(2)
    return load_model("armor-tiny", seed=0)


def _unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _tiny_qwen2() -> ArmorForInterleavedGeneration:
    """armor-tiny with a Qwen2 LM (q/k/v biases, perturbed so that dropping them shows)."""
    d = armor_tiny().to_dict()
    text = d["text_config"]
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings")
    d["text_config"] = {"model_type": "qwen2", **{k: text[k] for k in keys}}
    config = ArmorConfig(**d)
    config.validate_armor()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = ArmorForInterleavedGeneration(config).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.add_(torch.randn_like(p) * 0.1)
    return model


# --- the static-cache blocks, uncompiled ---
@pytest.mark.parametrize("lm", ["llama", "qwen2"])
def test_static_cache_blocks_match_eager(loaded, lm: str) -> None:
    model = loaded.model if lm == "llama" else _tiny_qwen2()
    be = TorchCudaBackend(model, compile=False)
    report = step_parity(model, be)
    assert report.worst() <= TOL, report.to_json()
    assert min(report.top1_agreement.values()) == 1.0
    result = greedy_parity(model, ByteTokenizer(), be)
    assert result["identical_tokens"] and result["identical_codes"], result
    assert result["images"] == 4 and be.compiled_steps == 0


def test_constructor_and_protocol(loaded) -> None:
    be = TorchCudaBackend(loaded.model, compile=False)
    assert be.kind == "torch-cuda" and be.dtype == torch.float32 and not be.cuda_graphs
    assert be.device == torch.device("cpu") and be.model is loaded.model  # fp32 already: no copy
    with pytest.raises(ValueError, match="CUDA"):
        TorchCudaBackend(loaded.model, cuda_graphs=True)
    with pytest.raises(ValueError, match="compile=True"):
        TorchCudaBackend(loaded.model, compile=False, cuda_graphs=True)
    half = TorchCudaBackend(loaded.model, dtype=torch.bfloat16, compile=False)
    assert half.model is not loaded.model and half.model.dtype == torch.bfloat16
    assert loaded.model.dtype == torch.float32  # the caller's model is left as it was
    be.check_capacity(4, 10_000, tokens=10, images=2)  # no fixed limits
    be.allocate(4, 70)
    assert (be.rows, be.max_len) == (4, LEN_BUCKET)
    assert be.lm.k.shape == (2, 4, 2, LEN_BUCKET, 16) and be.ad.k.shape == (1, 4, 2, LEN_BUCKET, 16)
    k = be.lm.k
    be.allocate(4, LEN_BUCKET)  # same rows, enough room: kept (zeroed)
    assert be.lm.k is k
    be.allocate(2, 70)
    assert be.lm.k is not k and be.rows == 2
    with pytest.raises(RuntimeError, match="KV cache full"):
        be.decode_step(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                       torch.ones((2, LEN_BUCKET + 1), dtype=torch.bool), slice(0, 2), LEN_BUCKET)
    be.close()
    assert be.lm is None


# --- compiled (inductor, no CUDA graphs) ---
def test_compiled_decode_and_adapter_steps_match_eager(loaded) -> None:
    """Decode steps at several positions on all rows and on each half, the adapter's chunk then its steps, the
    heads answered from the fused steps' logits: all within 1e-4 of eager."""
    model, cfg = loaded.model, loaded.model.config
    ref, be = TorchBackend(model), TorchCudaBackend(model)
    g = torch.Generator().manual_seed(3)
    rows, t0, max_len = 4, 7, 20
    valid = torch.ones((rows, max_len), dtype=torch.bool)
    valid[1, :2] = False  # left padding
    valid[3, :4] = False
    ids = torch.randint(0, cfg.text_vocab_size, (rows, max_len), generator=g)
    ids[:, t0 + 4 :] = cfg.code_offset + torch.randint(0, cfg.num_image_codes, (rows, max_len - t0 - 4), generator=g)
    for b in (ref, be):
        b.allocate(rows, max_len)
    kv, pos = valid[:, :t0], position_ids_from_valid(valid[:, :t0])
    embeds = ref.embed(ids[:, :t0])
    h_ref = ref.prefill(embeds, pos, kv, slice(0, rows), 0)
    assert (be.prefill(embeds, pos, kv, slice(0, rows), 0) - h_ref).abs().max() <= TOL
    hidden = [h_ref]
    half = rows // 2
    schedule = [(t0, slice(0, rows)), (t0 + 1, slice(0, half)), (t0 + 1, slice(half, rows))]
    schedule += [(t, slice(0, rows)) for t in range(t0 + 2, max_len - 1)]
    for t, sel in schedule:
        kv_t = valid[sel, : t + 1]
        pos_t = position_ids_from_valid(kv_t)[:, t]
        h_r = ref.decode_step(ids[sel, t], pos_t, kv_t, sel, t)
        h_c = be.decode_step(ids[sel, t], pos_t, kv_t, sel, t)
        assert (h_c - h_r).abs().max() <= TOL, (t, sel)
        assert (be.text_head(h_c) - ref.text_head(h_r)).abs().max() <= TOL  # the fused step's logits
        if sel.start == 0 and sel.stop == rows:
            hidden.append(h_r[:, None])
        elif sel.start == 0:
            hidden.append(torch.cat([h_r, torch.zeros_like(h_r)])[:, None])
        else:
            hidden[-1][half:] = h_r[:, None]
    # The fused logits serve every step that starts at row 0; the half starting at row 2 (where guidance puts
    # the unconditional rows, whose text logits the loop never asks for) is computed on request.
    assert be.calls["text_head"] == 1 and be.calls["decode"] == len(schedule)
    h_all = torch.cat(hidden, dim=1)  # (rows, t_end, C)
    t_end = h_all.shape[1]
    pos_all = position_ids_from_valid(valid[:, :t_end])
    chunk = t0 + 3  # the adapter's catch-up, then one step at a time
    a_r = ref.adapter(h_all[:, :chunk], pos_all[:, :chunk], valid[:, :chunk], slice(0, rows), 0)
    a_c = be.adapter(h_all[:, :chunk], pos_all[:, :chunk], valid[:, :chunk], slice(0, rows), 0)
    assert (a_c - a_r).abs().max() <= TOL
    for t in range(chunk, t_end):
        args = (h_all[:, t : t + 1], pos_all[:, t : t + 1], valid[:, : t + 1], slice(0, rows), t)
        a_r, a_c = ref.adapter(*args), be.adapter(*args)
        assert (a_c - a_r).abs().max() <= TOL, t
        assert (be.visual_head(a_c[:, -1]) - ref.visual_head(a_r[:, -1])).abs().max() <= TOL
    assert be.calls["visual_head"] == 0 and be.calls["adapter_step"] == t_end - chunk
    # A head asked about another hidden state computes it (no stale memo).
    other = torch.randn((2, cfg.text_config.hidden_size), generator=g)
    assert (be.visual_head(other) - ref.visual_head(other)).abs().max() <= TOL
    assert be.calls["visual_head"] == 1
    # One compiled step per stack and row range: all rows and each half, the adapter over all rows.
    assert be.compiled_steps == 4


def test_greedy_generation_identical_after_warmup_without_compiling(loaded) -> None:
    model, tok = loaded.model, loaded.tokenizer
    be = TorchCudaBackend(model)
    be.warmup(4, LEN_BUCKET)  # two prompts with guidance: 4 rows
    assert be.compiled_steps == 4
    graphs = _unique_graphs()
    result = greedy_parity(model, tok, be)  # guidance on, two images forced, one prompt with an input image
    assert result["identical_tokens"] and result["identical_codes"], result
    assert result["images"] == 4
    assert be.max_len == LEN_BUCKET, "the generation did not fit the warmed-up allocation"
    assert be.compiled_steps == 4 and _unique_graphs() == graphs  # nothing compiled while generating
    # One model call per text token (the fused decode step), two per image code (LM step + adapter step).
    assert be.calls["text_head"] <= 4 and be.calls["visual_head"] <= 4  # after each prefill / catch-up only


def test_compiles_are_bounded_by_row_ranges_not_tokens(loaded) -> None:
    model, tok, cfg = loaded.model, loaded.tokenizer, loaded.model.config
    be = TorchCudaBackend(model)
    gen = InterleavedGenerator(be, tok)
    prompts = ["a red running shoe", "a blue ceramic mug, handmade"]
    graphs = _unique_graphs()
    short = gen.generate(prompts, settings=greedy_settings(cfg, max_new_tokens=4, max_images=1))
    first = be.compiled_steps  # 3 LM row ranges + the adapter, at most; one dynamo graph each
    assert first <= 4 and _unique_graphs() - graphs == first
    decodes = be.calls["decode"]
    long = gen.generate(prompts, settings=greedy_settings(cfg, max_new_tokens=24, max_images=2))
    assert be.calls["decode"] - decodes > decodes  # more steps ...
    assert be.compiled_steps == first and _unique_graphs() - graphs == first  # ... and no more compiles
    assert sum(len(t) for t in long.tokens) > sum(len(t) for t in short.tokens)
    ref = InterleavedGenerator.from_model(model, tok).generate(
        prompts, settings=greedy_settings(cfg, max_new_tokens=24, max_images=2))
    assert long.tokens == ref.tokens


def test_step_parity_compiled(loaded) -> None:
    be = TorchCudaBackend(loaded.model)
    report = step_parity(loaded.model, be)
    assert report.worst() <= TOL, report.to_json()
    assert min(report.top1_agreement.values()) == 1.0
    # decode on rows 0-2, 0, 1-2 and the adapter on 0-2; then decode on rows 0-1 of the high-RoPE-position steps
    assert be.compiled_steps == 5


# --- registration ---
def test_registered_as_a_runtime_backend(tmp_path) -> None:
    from armor_ab.cli import app
    from armor_ab.content.generate import ContentError, load_generator

    assert "torch-cuda" in RUNTIME_BACKENDS and "torch-cuda" in MODEL_BACKENDS
    gen = load_generator("armor-tiny", "torch-cuda")
    assert gen.backend.kind == "torch-cuda" and gen.model_name == "armor-tiny"
    assert gen.backend.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    with pytest.raises(ContentError, match="no --engine"):
        load_generator("armor-tiny", "torch-cuda", tmp_path)
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate", "--backend", "torch-cuda", "--prompt", "x", "--out", str(out)])
    assert result.exit_code == 2 and "--model is required with --backend torch-cuda" in result.output
    result = runner.invoke(app, ["generate", "--backend", "torch-cuda", "--model", "armor-tiny", "--engine",
                                 str(tmp_path), "--prompt", "x", "--out", str(out)])
    assert result.exit_code == 2 and "not torch-cuda" in result.output
    result = runner.invoke(app, ["serve", "--generate-backend", "cuda"])
    assert result.exit_code == 2 and "torch-cuda" in result.output


# --- CUDA graphs: only on a GPU ---
@pytest.mark.gpu
def test_cuda_graphs_match_eager_on_gpu(loaded) -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA is absent: the CUDA-graph checks need a GPU")
    from torch._dynamo.utils import counters

    model = loaded.model  # the reference: PyTorch eager fp32 on the CPU (the parity helpers feed CPU inputs)
    on_gpu = copy.deepcopy(model).to("cuda")
    be = TorchCudaBackend(on_gpu, dtype=torch.float32)  # fp32 on the GPU: the 1e-4 parity, with CUDA graphs
    assert be.cuda_graphs and be.mode == "reduce-overhead"
    skips = counters["inductor"]["cudagraph_skips"]
    report = step_parity(model, be)
    assert report.worst() <= TOL, report.to_json()
    be.warmup(4, LEN_BUCKET)
    result = greedy_parity(model, loaded.tokenizer, be)
    assert result["identical_tokens"] and result["identical_codes"], result
    assert counters["inductor"]["cudagraph_skips"] == skips, "a step ran without CUDA graphs"
    half = TorchCudaBackend(on_gpu)  # bf16: the default on CUDA
    assert half.dtype == torch.bfloat16
    report = step_parity(model, half)
    assert not report.failures(2e-2, relative=True), report.to_json()
    assert min(report.top1_agreement.values()) >= 0.99, report.to_json()
