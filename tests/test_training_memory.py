"""The per-GPU memory estimate of a WoHG stage against what a real CPU step holds.

The activation figure comes from a forward pass on the meta device; here the same pass runs on real CPU
tensors and the bytes autograd saves are counted the same way. The static part (weights, gradients, AdamW's
moments) is checked against the tensors a real optimizer step leaves behind.
"""

from __future__ import annotations

import pytest
import torch

from armor_ab.model import ArmorForInterleavedGeneration, get_config
from armor_ab.model.cache import position_ids_from_valid
from armor_ab.model.modeling import attention_mask_for
from armor_ab.training.memory import STAGE_HEADS, estimate_stage_memory


def _config():
    cfg = get_config("armor-tiny")
    cfg.text_config.num_hidden_layers = 3
    return cfg


def _real_saved_bytes(model, batch: int, seq: int, alpha: float, beta: float) -> tuple[int, torch.Tensor]:
    saved: dict[int, int] = {}
    weights = {p.untyped_storage()._cdata for p in model.parameters()}

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in weights:
            saved[storage._cdata] = storage.nbytes()
        return t

    ids = torch.randint(0, model.config.text_vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0))
    valid = torch.ones(batch, seq, dtype=torch.bool)
    positions, mask = position_ids_from_valid(valid), attention_mask_for(valid)
    loss = 0.0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        h = model.model.language_model(inputs_embeds=model.embed_tokens(ids), attention_mask=mask,
                                       position_ids=positions).last_hidden_state
        if alpha:
            logits = model.text_logits(h).float()
            loss = loss + torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))
        if beta:
            logits = model.visual_logits(model.adapter(h, positions, mask)).float()
            target = ids.reshape(-1) % model.config.visual_head_size
            loss = loss + torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target)
    return sum(saved.values()), loss


@pytest.mark.parametrize("stage", [1, 2, 3])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_activations_match_a_real_forward(stage: int, checkpointing: bool) -> None:
    cfg = _config()
    estimate = estimate_stage_memory(cfg, stage, micro_batch=2, seq_len=48, precision="fp32",
                                     gradient_checkpointing=checkpointing)
    torch.manual_seed(0)
    model = ArmorForInterleavedGeneration(cfg)
    model.set_wohg_stage(stage)
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    real, _ = _real_saved_bytes(model, 2, 48, *STAGE_HEADS[stage])
    assert real > 0
    # The meta pass runs SDPA's reference maths, which keeps a little more than the CPU kernel does (the
    # attention scores): over by a few per cent at most, and never under by more than a few scalars.
    assert 0.99 * real <= estimate.activations_bytes <= 1.15 * real, (estimate.activations_bytes, real)


def test_checkpointing_and_bf16_shrink_the_estimate() -> None:
    cfg = get_config("armor-1b")
    full = estimate_stage_memory(cfg, 3, micro_batch=2, seq_len=512, precision="fp32", gradient_checkpointing=False)
    ckpt = estimate_stage_memory(cfg, 3, micro_batch=2, seq_len=512, precision="fp32", gradient_checkpointing=True)
    bf16 = estimate_stage_memory(cfg, 3, micro_batch=2, seq_len=512, precision="bf16", gradient_checkpointing=True)
    assert ckpt.activations_bytes < full.activations_bytes / 2
    assert bf16.activations_bytes < ckpt.activations_bytes
    two = estimate_stage_memory(cfg, 3, micro_batch=2, seq_len=512, world_size=2)
    assert two.ddp_buckets_bytes == two.trainable * 4 and bf16.ddp_buckets_bytes == 0


def test_static_part_matches_a_real_optimizer_step() -> None:
    cfg = _config()
    estimate = estimate_stage_memory(cfg, 2, micro_batch=2, seq_len=16, precision="fp32")
    torch.manual_seed(0)
    model = ArmorForInterleavedGeneration(cfg)
    model.set_wohg_stage(2)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable)
    _, loss = _real_saved_bytes(model, 2, 16, *STAGE_HEADS[2])
    loss.backward()
    optimizer.step()
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    assert estimate.weights_bytes == nbytes(model.parameters())
    assert estimate.gradients_bytes == nbytes(p.grad for p in trainable)
    moments = [s[k] for s in optimizer.state.values() for k in ("exp_avg", "exp_avg_sq")]
    assert estimate.optimizer_bytes == nbytes(moments)
    assert estimate.trainable == sum(p.numel() for p in trainable)


def test_gpu_stage_runs_its_steps_on_cpu_and_refuses_cuda_without_one(tmp_path) -> None:
    """engine/gpu_check.sh's training stage: the same code on armor-tiny on the CPU (CI has no GPU)."""
    import json

    from armor_ab.training import gpu_stage

    out = tmp_path / "gpu_training.json"
    rc = gpu_stage.main(["--device", "cpu", "--config", "armor-tiny", "--rows", "2", "--prompt", "8",
                         "--steps", "3", "--warmup", "1", "--out", str(out)])
    figures = json.loads(out.read_text())
    assert rc == 0 and figures["config"] == "armor-tiny" and len(figures["step_s_all"]) == 3
    assert figures["tokens_per_s"] > 0 and figures["seq_len"] == 8 + 16 + 2
    assert all(0 < loss < 20 for loss in figures["losses"])
    assert figures["estimate"]["stage"] == 2 and figures["estimate"]["precision"] == "bf16"
    if not torch.cuda.is_available():
        assert gpu_stage.main(["--out", str(tmp_path / "x.json")]) == 3


def test_the_armor_1b_recipe_states_the_estimate_of_each_stage() -> None:
    """The per-GPU figures in armor-1b.yaml's header are what the estimator says for its stages now."""
    import re

    import yaml

    from armor_ab.assets import training_recipe
    from armor_ab.training.memory import GIB, recipe_estimates
    from armor_ab.training.training_recipe import StageConfig

    path = training_recipe("armor-1b")
    text = path.read_text()
    stated = {int(n): (float(gib), int(micro)) for n, gib, micro in
              re.findall(r"^#   stage (\d): ([\d.]+) GiB per GPU \(micro-batch (\d+) x 512 tokens", text, re.M)}
    assert sorted(stated) == [1, 2, 3]
    stages = [StageConfig.from_dict(s) for s in yaml.safe_load(text)["stages"]]
    assert all(s.precision == "bf16" and s.gradient_checkpointing for s in stages)
    estimates = recipe_estimates(stages, get_config("armor-1b"), 512, 8)
    for n, (gib, micro) in stated.items():
        assert estimates[n].micro_batch == micro
        assert round(estimates[n].total_bytes / GIB, 1) == gib, (n, estimates[n].total_bytes / GIB, gib)
