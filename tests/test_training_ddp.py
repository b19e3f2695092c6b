"""The trainer's scaling parts (trainer.py, distributed.py): torchrun + DDP, gradient accumulation, the loss
over the global target count, bf16 autocast, gradient checkpointing.

The DDP tests start real torchrun processes (gloo, CPU) on tests/helpers/ddp_worker.py: armor-tiny in float64,
seeded, dropout 0, the real TaskSampler. Two processes must end with the parameters one process reaches with
the whole batch, and a run stopped on two processes must resume on one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from armor_ab.model import ArmorForInterleavedGeneration
from armor_ab.training.batches import Batch, TaskSampler, collate
from armor_ab.training.distributed import DistContext, all_reduce_sum, init_from_env, shard
from armor_ab.training.trainer import (
    StageLoss,
    StageTrainer,
    accumulate_gradients,
    autocast,
    compute_losses,
    frozen_fingerprint,
    make_optimizer,
    set_gradient_checkpointing,
    step_parts,
    take_rows,
    target_counts,
)
from armor_ab.training.training_recipe import StageConfig
from tests.helpers import ddp_worker

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-9  # float64: what two processes may differ from one by after 3 AdamW steps (summation order only)


@pytest.fixture(scope="module")
def data():
    return ddp_worker.samples_and_store()


def _model(cfg, dtype=torch.float64, seed: int = 0) -> ArmorForInterleavedGeneration:
    torch.manual_seed(seed)
    return ArmorForInterleavedGeneration(cfg).to(dtype)


def _batch(data, size: int = 8, step: int = 0, dtype=torch.float64) -> Batch:
    cfg, tok, samples, store = data
    batch = collate(TaskSampler(samples, None, seed=5).batch(step, size), tok, cfg, store)
    pixels = batch.pixel_values.to(dtype) if batch.pixel_values is not None else None
    return Batch(batch.input_ids, batch.attention_mask, batch.labels, pixels)


def _torchrun(nproc: int, args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(
        OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
    cmd += ["-m", "tests.helpers.ddp_worker", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- torchrun: two processes = one process with the whole batch --------------------------------------------


def test_two_processes_train_what_one_process_does_with_the_whole_batch(data, tmp_path: Path) -> None:
    # Stage 0's setting (everything trainable, text loss only, x5 at the decisions): the adapter and the visual
    # head are trainable but unused on every process, the ViT only on the rows with an input picture.
    # The two processes also split their 4 rows into micro-batches of 3 + 1 and recompute activations.
    common = ["--steps", "3", "--batch-size", "8", "--wohg", "0", "--alpha", "1", "--beta", "0"]
    common += ["--switch-weight", "5", "--grad-clip", "0"]  # unclipped: the gradients' scale is compared too
    result = _torchrun(
        2, ["--out", str(tmp_path / "ddp"), *common, "--micro-batch-size", "3", "--gradient-checkpointing"]
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ddp_worker.main(["--out", str(tmp_path / "one"), *common])

    two = torch.load(tmp_path / "ddp" / "params.pt")
    one = torch.load(tmp_path / "one" / "params.pt")
    init = _model(data[0]).state_dict()
    diff = _max_diff(two, one)
    print(f"\nmax |param diff|, 2 processes vs 1 process, 3 steps: {diff:.3e}")
    assert diff < TOL
    assert _max_diff(one, init) > 1e-3  # the runs did train
    g_two, g_one = torch.load(tmp_path / "ddp" / "grads.pt"), torch.load(tmp_path / "one" / "grads.pt")
    g_diff = _max_diff(g_two, g_one)  # same tensors with a gradient (none for the unused ones), same values
    print(f"max |grad diff| at step 3: {g_diff:.3e}")
    assert g_diff < TOL
    moved = {k for k in one if not torch.equal(one[k], init[k])}
    assert any(k.startswith("model.vision_tower.") for k in moved)  # rows with a picture reached the ViT
    unused = [k for k in one if k.startswith(("adapter.", "visual_head."))]
    assert unused and all(torch.equal(two[k], init[k]) for k in unused)  # no gradient, no weight decay

    summary = json.loads((tmp_path / "ddp" / "stage.json").read_text())
    trainable = json.loads((tmp_path / "ddp" / "trainable.json").read_text())
    assert summary["world_size"] == 2 and summary["frozen_unchanged"]
    assert summary["ddp"] == {
        "parameter_tensors": trainable["tensors"],
        "parameter_bytes": trainable["bytes"],
    }
    logs = _log(tmp_path / "ddp" / "log.jsonl"), _log(tmp_path / "one" / "log.jsonl")
    assert [r["step"] for r in logs[0]] == [1, 2, 3]
    for a, b in zip(*logs, strict=True):  # the logged losses are the global means, as one process has them
        assert a["loss"] == pytest.approx(b["loss"], abs=2e-5) and a["tokens"] == b["tokens"]


def test_a_run_stopped_on_two_processes_resumes_on_one(data, tmp_path: Path) -> None:
    # WoHG stage 3 (frozen backbone), joint loss, condition dropout: 2 processes stop after step 3.
    common = ["--steps", "6", "--batch-size", "8", "--wohg", "3", "--alpha", "1", "--beta", "1"]
    common += ["--cfg-dropout", "0.5", "--checkpoint-every", "3"]
    out = tmp_path / "run"
    result = _torchrun(2, ["--out", str(out), *common, "--stop-after", "3"])
    assert result.returncode != 0 and "stopped before step 4" in result.stdout + result.stderr
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the model's names, not DDP's
    # DDP's reducer held the stage's trainable tensors and nothing of the frozen backbone
    model = _model(data[0])
    model.set_wohg_stage(3)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert ckpt["ddp"] == {
        "parameter_tensors": len(trainable),
        "parameter_bytes": sum(p.numel() * p.element_size() for p in trainable),
    }
    assert sum(p.numel() for p in trainable) < 0.2 * sum(p.numel() for p in model.parameters())
    assert [r["step"] for r in _log(out / "log.jsonl")] == [1, 2, 3]

    resumed = ddp_worker.main(["--out", str(out), *common, "--resume"])  # one process, no process group
    ddp_worker.main(["--out", str(tmp_path / "straight"), *common])
    a, b = torch.load(out / "params.pt"), torch.load(tmp_path / "straight" / "params.pt")
    diff = _max_diff(a, b)
    print(
        f"\nmax |param diff|, 2 processes x 3 steps + 1 process x 3 steps vs 1 process x 6 steps: {diff:.3e}"
    )
    assert diff < TOL
    assert resumed["frozen_unchanged"] and resumed["world_size"] == 1
    init = _model(data[0]).state_dict()
    frozen = [k for k in a if k.startswith("model.language_model.layers.")]
    assert frozen and all(torch.equal(a[k], init[k]) for k in frozen)
    log, straight = _log(out / "log.jsonl"), _log(tmp_path / "straight" / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(log, straight, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], abs=2e-5) and x["tokens"] == y["tokens"]


# --- in one process: the step does not depend on how its batch is split ------------------------------------


def _step_grads(model, parts, cfg, alpha=1.0, beta=1.0, switch_weight=5.0, precision="fp32"):
    model.zero_grad(set_to_none=True)
    losses = accumulate_gradients(
        StageLoss(model, alpha, beta, switch_weight), parts, cfg, alpha, beta, None, precision
    )
    return losses, _grads(model)


def test_micro_batches_give_the_whole_batch_gradient(data) -> None:
    cfg = data[0]
    model = _model(cfg).train()
    model.set_wohg_stage(0)
    batch = _batch(data)
    assert batch.pixel_values is not None  # the ViT is in the comparison
    whole, g_whole = _step_grads(model, [batch], cfg)
    for sizes in ([3, 3, 2], [1, 1, 1, 1, 1, 1, 1, 1]):
        parts, start = [], 0
        for n in sizes:
            parts.append(take_rows(batch, range(start, start + n), cfg))
            start += n
        split, g_split = _step_grads(model, parts, cfg)
        assert g_split.keys() == g_whole.keys()
        assert max(float((g_split[k] - g_whole[k]).abs().max()) for k in g_whole) < 1e-12
        assert split == pytest.approx(whole, rel=1e-12)
    # ... and the step's reported losses are the whole batch's means
    with torch.no_grad():
        loss, text, image = compute_losses(model, batch, 1.0, 1.0, 5.0)
    assert whole == pytest.approx((float(loss), float(text), float(image)), rel=1e-12)


def test_loss_is_normalised_by_the_step_token_count_not_per_micro_batch(data) -> None:
    """An uneven split: one micro-batch with one short text answer, the other with the rest. The mean of the
    micro-batch means weighs that one answer's few tokens like all the others; the global count does not."""
    cfg = data[0]
    model = _model(cfg).train()
    model.set_wohg_stage(3)
    batch = _batch(data)
    counts = [target_counts(take_rows(batch, rows, cfg).labels, cfg) for rows in (range(1), range(1, 8))]
    assert counts[0] != counts[1]  # different numbers of targets per micro-batch
    parts = [take_rows(batch, range(1), cfg), take_rows(batch, range(1, 8), cfg)]
    whole, g_whole = _step_grads(model, [batch], cfg)
    split, g_split = _step_grads(model, parts, cfg)
    assert max(float((g_split[k] - g_whole[k]).abs().max()) for k in g_whole) < 1e-12
    assert split == pytest.approx(whole, rel=1e-12)
    # The per-micro-batch mean (what a naive accumulation does) gives another gradient.
    model.zero_grad(set_to_none=True)
    for part in parts:
        (compute_losses(model, part, 1.0, 1.0, 5.0)[0] / len(parts)).backward()
    naive = _grads(model)
    assert max(float((naive[k] - g_whole[k]).abs().max()) for k in g_whole) > 1e-4


def test_step_parts_share_out_the_rows_and_their_pictures(data) -> None:
    cfg = data[0]
    batch = _batch(data, size=7)
    seen = []
    for rank in range(2):
        ctx = DistContext(rank=rank, world_size=2)
        parts = step_parts(batch, cfg, ctx, micro_batch_size=3)
        assert [p.input_ids.shape[0] for p in parts] == ([3, 1] if rank == 0 else [3])
        for part in parts:
            width = part.input_ids.shape[1]
            assert part.attention_mask[:, -1].any()  # trailing padding columns are dropped
            for row in range(part.input_ids.shape[0]):
                seen.append((part.input_ids[row], part.labels[row], width))
            n_slots = int((part.input_ids == cfg.image_token_id).sum())
            n_pictures = 0 if part.pixel_values is None else part.pixel_values.shape[0]
            assert n_slots == n_pictures * cfg.image_seq_length
    assert len(seen) == 7
    for i, (ids, labels, width) in enumerate(seen):  # the rows, in order, unchanged
        assert torch.equal(ids, batch.input_ids[i, :width]) and torch.equal(labels, batch.labels[i, :width])
    # pictures travel with their rows: concatenated over the parts, they are the batch's, in order
    pictures = [p.pixel_values for r in range(2) for p in step_parts(batch, cfg, DistContext(r, 2), 3)]
    assert torch.equal(torch.cat([p for p in pictures if p is not None]), batch.pixel_values)
    assert [list(shard(7, DistContext(r, 3))) for r in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]


# --- bf16 autocast ------------------------------------------------------------------------------------------


def test_bf16_autocast_runs_and_its_loss_is_close_to_fp32(data, tmp_path: Path) -> None:
    cfg = data[0]
    model = _model(cfg, torch.float32).train()
    batch = _batch(data, dtype=torch.float32)
    with torch.no_grad():
        fp32 = compute_losses(model, batch, 1.0, 1.0)
        with autocast("bf16", torch.device("cpu")):
            bf16 = compute_losses(model, batch, 1.0, 1.0)
            h = model.embed(batch.input_ids, batch.pixel_values)
            assert model.text_logits(h).dtype == torch.bfloat16  # the matmuls run in bf16
        with autocast("fp32", torch.device("cpu")):
            assert model.text_logits(h.float()).dtype == torch.float32
    for a, b in zip(bf16, fp32, strict=True):
        assert a.dtype == torch.float32 and torch.isfinite(a)  # the cross-entropy itself in fp32
        assert float(a) == pytest.approx(float(b), rel=2e-2)
        assert float(a) != float(b)  # it did run in reduced precision

    stage = StageConfig(stage=3, name="t", wohg=3, steps=3, batch_size=8, log_every=1, precision="bf16")
    cfg_, tok, samples, store = data
    trainer = StageTrainer(
        model,
        tok,
        stage,
        TaskSampler(samples, None, 1),
        lambda s: collate(s, tok, cfg_, store),
        tmp_path,
        progress=False,
    )
    summary = trainer.run()
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert summary["frozen_unchanged"] and all(r["loss"] > 0 for r in _log(tmp_path / "log.jsonl"))
    with pytest.raises(ValueError, match="precision"):
        StageConfig(stage=1, name="t", wohg=1, precision="fp16")


# --- gradient checkpointing ---------------------------------------------------------------------------------


def _saved_bytes(model, batch) -> int:
    """Bytes autograd keeps from the forward for the backward (outside checkpointed blocks)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _, _ = compute_losses(model, batch, 1.0, 1.0)
    loss.backward()
    return total


def test_gradient_checkpointing_gives_the_same_gradients_with_less_held(data) -> None:
    cfg = data[0]
    model = _model(cfg).train()
    model.set_wohg_stage(0)
    batch = _batch(data)
    plain, g_plain = _step_grads(model, [batch], cfg)
    held_plain = _saved_bytes(model, batch)
    set_gradient_checkpointing(model, True)
    blocks = [
        *model.model.language_model.layers,
        *model.adapter.layers,
        *model.model.vision_tower.encoder.layer,
    ]
    assert all(b.gradient_checkpointing for b in blocks)  # the LM's, the adapter's and the ViT's blocks
    ckpt, g_ckpt = _step_grads(model, [batch], cfg)
    held_ckpt = _saved_bytes(model, batch)
    assert g_ckpt.keys() == g_plain.keys()
    assert max(float((g_ckpt[k] - g_plain[k]).abs().max()) for k in g_plain) < 1e-12
    assert ckpt == pytest.approx(plain, rel=1e-12)
    assert held_ckpt < 0.7 * held_plain, (held_ckpt, held_plain)
    set_gradient_checkpointing(model, False)
    assert not any(b.gradient_checkpointing for b in blocks)
    assert _saved_bytes(model, batch) == held_plain


# --- the stage: accumulation + checkpointing, frozen tensors, the default path -------------------------------


def test_stage_with_accumulation_and_checkpointing_trains_as_the_plain_stage(data, tmp_path: Path) -> None:
    cfg, tok, samples, store = data

    def run(out: Path, **extra) -> tuple[ArmorForInterleavedGeneration, dict]:
        model = _model(cfg)
        stage = StageConfig(
            stage=1, name="t", wohg=1, steps=3, batch_size=8, log_every=1, switch_weight=5.0, **extra
        )
        sampler = TaskSampler(samples, None, 3)

        def collate64(rows):
            b = collate(rows, tok, cfg, store)
            return Batch(
                b.input_ids,
                b.attention_mask,
                b.labels,
                b.pixel_values.double() if b.pixel_values is not None else None,
            )

        return model, StageTrainer(model, tok, stage, sampler, collate64, out, progress=False).run()

    before = _model(cfg)
    before.set_wohg_stage(1)
    plain, s_plain = run(tmp_path / "plain")
    split, s_split = run(tmp_path / "split", micro_batch_size=3, gradient_checkpointing=True)
    assert s_plain["frozen_unchanged"] and s_split["frozen_unchanged"]
    assert s_split["frozen_sha256_before"] == frozen_fingerprint(before)
    a, b = plain.state_dict(), split.state_dict()
    assert _max_diff(a, b) < TOL
    frozen = [n for n, p in before.named_parameters() if not p.requires_grad]
    assert frozen and all(torch.equal(b[n], before.state_dict()[n]) for n in frozen)
    assert not split.is_activation_checkpointing  # switched off again after the stage


def _mean_text_loss(model, batch: Batch, switch_weight: float) -> torch.Tensor:
    """The text loss as the trainer computed it before the global token count: ``model.losses``' mean, or the
    decision-weighted sum over the batch's own text-target count."""
    from armor_ab.model.cache import position_ids_from_valid
    from armor_ab.model.modeling import attention_mask_for
    from armor_ab.training.trainer import decision_positions

    cfg = model.config
    valid = batch.attention_mask.bool()
    h = model.model.language_model(
        inputs_embeds=model.embed(batch.input_ids, batch.pixel_values),
        attention_mask=attention_mask_for(valid),
        position_ids=position_ids_from_valid(valid),
    ).last_hidden_state
    logits = model.text_logits(h)
    if switch_weight == 1.0:
        B, T = batch.input_ids.shape
        return model.losses(logits, h.new_zeros(B, T, cfg.visual_head_size), batch.labels)[0]
    target = batch.labels[:, 1:]
    vocab = cfg.text_vocab_size
    is_text = (target >= 0) & ((target < vocab) | (target == cfg.imgbos_id))
    text_target = torch.where(is_text, torch.where(target == cfg.imgbos_id, vocab, target), -100)
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        text_target.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view_as(text_target)
    weights = torch.where(decision_positions(batch.labels, cfg), switch_weight, 1.0) * is_text
    return (ce * weights).sum() / is_text.sum()


@pytest.mark.parametrize("switch_weight", [1.0, 5.0])
def test_default_stage_step_is_the_plain_mean_loss_step(data, tmp_path: Path, switch_weight: float) -> None:
    """One process, fp32, no micro-batches: the trainer's step is the one it was before the global token
    count, AdamW on the mean text loss over the batch's targets - the shipped recipe trains as before."""
    from armor_ab.training.trainer import lr_at

    cfg, tok, samples, store = data
    stage = StageConfig(
        stage=0, name="t", wohg=0, steps=3, batch_size=8, beta=0.0, switch_weight=switch_weight, log_every=1
    )
    sampler = TaskSampler(samples, None, 11)
    model = _model(cfg, torch.float32)
    StageTrainer(
        model, tok, stage, sampler, lambda s: collate(s, tok, cfg, store), tmp_path, progress=False
    ).run()

    ref = _model(cfg, torch.float32)
    ref.set_wohg_stage(0)
    ref.train()
    optimizer = make_optimizer(ref, stage)
    losses = []
    for step in range(3):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(stage, step)
        loss = _mean_text_loss(ref, collate(sampler.batch(step, 8), tok, cfg, store), switch_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in ref.parameters() if p.requires_grad], stage.grad_clip)
        optimizer.step()
        losses.append(round(float(loss.detach()), 5))
    diff = _max_diff(model.state_dict(), ref.state_dict())
    print(f"\nswitch_weight {switch_weight}: max |param diff| against the mean-loss step: {diff:.3e}")
    assert diff == 0.0  # sum / count is the mean, bit for bit
    assert [r["loss"] for r in _log(tmp_path / "log.jsonl")] == losses


def test_one_process_has_no_process_group_and_identity_collectives() -> None:
    ctx = init_from_env()
    assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (0, 1, False, True)
    x = torch.tensor([1.5, 2.0])
    assert torch.equal(all_reduce_sum(x, ctx), x)
    with pytest.raises(TypeError):
        StageConfig.from_dict(
            {"stage": 1, "name": "t", "wohg": 1, "grad_accum": 2}
        )  # unknown keys still fail
    with pytest.raises(ValueError, match="micro_batch_size"):
        StageConfig(stage=1, name="t", wohg=1, micro_batch_size=-1)
