"""One training stage: AdamW, warmup + cosine, WoHG freezing, resumable checkpoints, JSON-lines loss log.

A stage directory holds::

    log.jsonl          {"step", "loss", "text_loss", "image_loss", "lr", "tokens", "elapsed_s"} per log_every
                       steps, and {"step", "val_loss", ...} per val_every steps
    checkpoint.pt      model + optimizer + step + RNG state, written atomically every checkpoint_every steps
                       (by rank 0; the model's own parameter names, the full optimizer state)
    model/             the stage's result (save_pretrained + tokenizer)
    stage.json         summary: steps, losses, duration, trainable groups, frozen-parameter check, world size,
                       what DDP synchronises

Freezing is the model's own ``set_wohg_stage``; the optimizer only ever holds the trainable tensors, and the
stage records a SHA-256 of every frozen tensor before and after, so ``stage.json`` proves they did not move.

One optimizer step (docs/training.md, "Distributed, bf16, accumulation"): the global batch of ``batch_size``
rows (``TaskSampler.batch(step, batch_size)``, the same in every process), each process's share of its rows
(``step_parts``) in micro-batches of ``micro_batch_size``, every micro-batch's loss its cross-entropy sum over
the whole step's target count (``accumulate_gradients``), so the gradient does not depend on how the batch is
split; under ``torchrun``, DDP (``distributed.wrap_ddp``) around the trainable tensors only. Optional bf16
autocast and gradient checkpointing. Only rank 0 writes files; a checkpoint resumes with any process count.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from armor_ab.model.cache import position_ids_from_valid
from armor_ab.model.loading import save_model
from armor_ab.model.modeling import WOHG_STAGES, ArmorForInterleavedGeneration, attention_mask_for
from armor_ab.model.tokenizer import ByteTokenizer

from .batches import IGNORE, Batch, TaskSampler, drop_conditions
from .data import REFUSAL
from .distributed import (
    DistContext,
    all_gather_object,
    all_reduce_sum,
    barrier,
    context,
    ddp_parameter_stats,
    init_from_env,
    shard,
    wrap_ddp,
)
from .training_recipe import StageConfig

CHECKPOINT = "checkpoint.pt"
REFUSAL_IDS = tuple(ByteTokenizer().encode(" " + REFUSAL))  # the base model's answer to "draw", after a text
Collate = Callable[[Sequence[dict]], Batch]
logger = logging.getLogger("armor_ab.training")


def target_counts(labels: torch.Tensor, config) -> tuple[int, int]:
    """(text targets, image targets) of a batch: what each head's loss is a mean over (``model.losses``'
    routing: text ids and <imgbos> to the text head; codes, <imgend> and <imgpad> to the visual head)."""
    is_text, _, is_image, _ = _route(labels, config)
    return int(is_text.sum()), int(is_image.sum())


def _route(labels: torch.Tensor, config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(is_text, text target, is_image, image target), each (B, T-1), aligned with ``labels[:, 1:]``."""
    vocab = config.text_vocab_size
    target = labels[:, 1:]
    is_text = (target >= 0) & ((target < vocab) | (target == config.imgbos_id))
    is_image = (target >= vocab) & (target < vocab + config.visual_head_size)
    text_target = torch.where(target == config.imgbos_id, vocab, target)
    text_target = torch.where(is_text, text_target, IGNORE)
    image_target = torch.where(is_image, target - vocab, IGNORE)
    return is_text, text_target, is_image, image_target


def _ce(logits: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor:
    """Cross-entropy over targets != IGNORE in at least fp32 (bf16 logits from autocast are upcast, fp64 kept)."""
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction=reduction
    )


def text_ce_sum(
    model: ArmorForInterleavedGeneration, text_logits: torch.Tensor, labels: torch.Tensor, weight: float = 1.0
) -> torch.Tensor:
    """Sum of the text head's cross-entropy over the text targets, the decision positions' terms times
    ``weight`` (``decision_positions``); 0 (still differentiable) without text targets. With weight 1 it is
    the plain sum (``model.losses``' mean times the count, bit for bit)."""
    if weight == 1.0:
        _, text_target, _, _ = _route(labels, model.config)
        return _ce(text_logits[:, :-1], text_target, "sum")
    return _weighted_text_ce_sum(model, text_logits, labels, weight)


def _weighted_text_ce_sum(
    model: ArmorForInterleavedGeneration, text_logits: torch.Tensor, labels: torch.Tensor, weight: float
) -> torch.Tensor:
    cfg = model.config
    is_text, text_target, _, _ = _route(labels, cfg)
    ce = _ce(text_logits[:, :-1], text_target, "none").view_as(text_target)
    weights = torch.where(decision_positions(labels, cfg), weight, 1.0) * is_text
    return (ce * weights).sum()


def image_ce_sum(
    model: ArmorForInterleavedGeneration, visual_logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Sum of the visual head's cross-entropy over the image targets (codes, <imgend>, <imgpad>)."""
    _, _, _, image_target = _route(labels, model.config)
    return _ce(visual_logits[:, :-1], image_target, "sum")


def loss_sums(
    model: ArmorForInterleavedGeneration,
    batch: Batch,
    alpha: float,
    beta: float,
    switch_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(text CE sum, image CE sum) of a batch: ``model.forward`` minus the unused half.

    Same embedding, mask, positions and loss routing as ``forward``, but a head whose weight is 0 is not run:
    with beta = 0 (stages 0 and 1) the adapter never runs, with alpha = 0 (stage 2) the text head does not;
    its sum is then a constant 0. Sums, not means: the trainer divides by the target count of the whole
    optimizer step (every micro-batch, every process), so a step does not depend on how its batch is split.
    """
    valid = batch.attention_mask.bool()  # (B, T)
    positions = position_ids_from_valid(valid)  # (B, T)
    mask = attention_mask_for(valid)  # (B, 1, T, T)
    embeds = model.embed(batch.input_ids, batch.pixel_values)  # (B, T, C)
    h = model.model.language_model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False
    ).last_hidden_state
    zero = torch.zeros((), dtype=torch.float32 if h.dtype.itemsize < 4 else h.dtype, device=h.device)
    text_sum = text_ce_sum(model, model.text_logits(h), batch.labels, switch_weight) if alpha else zero
    image_sum = (
        image_ce_sum(model, model.visual_logits(model.adapter(h, positions, mask)), batch.labels)
        if beta
        else zero
    )
    return text_sum, image_sum


def compute_losses(
    model: ArmorForInterleavedGeneration,
    batch: Batch,
    alpha: float,
    beta: float,
    switch_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha * text + beta * image, text loss, image loss) of one batch, each head's loss a mean over its
    own targets in this batch (``loss_sums`` / ``target_counts``); a head whose weight is 0 is not run and
    its loss is reported as NaN (not measured), never as a misleading number.

    ``switch_weight`` multiplies the text cross-entropy at the modality-decision positions
    (``decision_positions``); the text loss stays normalised by the number of text targets, so 1.0 is exactly
    the plain mean of ``model.losses``.
    """
    text_sum, image_sum = loss_sums(model, batch, alpha, beta, switch_weight)
    n_text, n_image = target_counts(batch.labels, model.config)
    text_loss = text_sum / max(n_text, 1)
    image_loss = image_sum / max(n_image, 1)
    loss = (alpha * text_loss if alpha else 0.0) + (beta * image_loss if beta else 0.0)
    if not alpha:
        text_loss = torch.full((), float("nan"))
    if not beta:
        image_loss = torch.full((), float("nan"))
    return loss, text_loss, image_loss


def decision_positions(labels: torch.Tensor, config) -> torch.Tensor:
    """(B, T-1) bool, aligned with the targets ``labels[:, 1:]``: where the model chooses what comes next.

    * the answer's first token (text or <imgbos>: write, or draw straight away)
    * every <imgbos> (switch to a picture) and every <eos> (end here) target
    * the token after a picture's <imgend> (more text, another picture, or the end)

    A t2t and a t2ti answer to the same request share their whole text; they differ in one target, the
    <eos> or <imgbos> after it. With a mean over ~30 answer tokens that choice gets little of the gradient.

    In the text-only base model (stage 0) a picture request is answered with the refusal
    (``data.REFUSAL``), so the refusal's first token after a text ("Pump P-01: ... I cannot draw pictures.") is
    that model's switch: the same choice, read later by ARMOR's <imgbos> (``REFUSAL_IDS``).
    """
    target = labels[:, 1:]
    previous = labels[:, :-1]
    answer_start = (target != IGNORE) & (previous == IGNORE)
    switches = (target == config.imgbos_id) | (target == config.text_eos_id)
    after_picture = (target != IGNORE) & (previous == config.imgend_id)
    refusal = torch.zeros_like(target, dtype=torch.bool)
    k = len(REFUSAL_IDS)
    if target.shape[1] >= k:
        windows = target.unfold(1, k, 1)  # (B, T-k, k)
        refusal[:, : windows.shape[1]] = (windows == torch.tensor(REFUSAL_IDS, device=target.device)).all(-1)
    return answer_start | switches | after_picture | refusal


def weighted_text_loss(
    model: ArmorForInterleavedGeneration, text_logits: torch.Tensor, labels: torch.Tensor, weight: float
) -> torch.Tensor:
    """``model.losses``' text cross-entropy with the decision positions' terms multiplied by ``weight``,
    normalised by the number of text targets (as the plain mean is)."""
    n_text, _ = target_counts(labels, model.config)
    # per-position terms at any weight (1.0 included), so that losses at two weights differ only there
    return _weighted_text_ce_sum(model, text_logits, labels, weight) / max(n_text, 1)


def lr_at(stage: StageConfig, step: int) -> float:
    """Linear warmup, then cosine from lr down to lr * min_lr_ratio."""
    if step < stage.warmup:
        return stage.lr * (step + 1) / stage.warmup
    progress = min(1.0, (step - stage.warmup) / max(1, stage.steps - stage.warmup))
    floor = stage.min_lr_ratio
    return stage.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: ArmorForInterleavedGeneration, stage: StageConfig) -> torch.optim.AdamW:
    """AdamW over the trainable tensors only; no weight decay on norms and other vectors."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": stage.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=stage.lr, betas=(0.9, 0.98), eps=1e-8)


def frozen_fingerprint(model: ArmorForInterleavedGeneration) -> str:
    """SHA-256 over every frozen tensor (names and bytes): equal before and after = nothing frozen moved."""
    digest = hashlib.sha256()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            digest.update(name.encode())
            digest.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def set_gradient_checkpointing(model: ArmorForInterleavedGeneration, enabled: bool) -> None:
    """transformers' activation checkpointing, non-reentrant (safe with DDP and frozen inputs), on every
    ``GradientCheckpointingLayer`` of the model: the LM's decoder layers, the adapter's (the LM's own class)
    and the ViT's. Their activations are recomputed in backward instead of held from forward."""
    kwargs = {"use_reentrant": False}
    if enabled:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        return
    if hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()
    hooks = getattr(model, "_require_grads_hooks", None) or getattr(model, "_require_grads_hook", None)
    if hooks:
        model.disable_input_require_grads()  # the embedding-output hook that enabling added


def autocast(precision: str, device: torch.device):
    """bfloat16 autocast for ``precision == "bf16"`` (weights, gradients and AdamW state stay fp32)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


class StageLoss(torch.nn.Module):
    """One micro-batch's share of the step loss, as a module: DDP prepares its reducer in its own forward, so
    the loss has to be computed inside a module it wraps.

    ``alpha * text_sum / n_text + beta * image_sum / n_image``, times ``scale``: the counts are the whole
    optimizer step's (all micro-batches, all processes) and ``scale`` is the process count, which undoes DDP's
    averaging of gradients, so the summed gradients are those of the global token mean.
    """

    def __init__(self, model: ArmorForInterleavedGeneration, alpha: float, beta: float, switch_weight: float):
        super().__init__()
        self.model = model
        self.alpha, self.beta, self.switch_weight = alpha, beta, switch_weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        pixel_values: torch.Tensor | None,
        n_text: int,
        n_image: int,
        scale: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = Batch(input_ids, attention_mask, labels, pixel_values)
        text_sum, image_sum = loss_sums(self.model, batch, self.alpha, self.beta, self.switch_weight)
        loss = (self.alpha * (text_sum / max(n_text, 1)) if self.alpha else 0.0) + (
            self.beta * (image_sum / max(n_image, 1)) if self.beta else 0.0
        )
        if scale != 1.0:
            loss = loss * scale
        return loss, text_sum.detach(), image_sum.detach()


def may_skip_trainable(stage: StageConfig) -> bool:
    """Whether a step of the stage can leave a trainable tensor without a gradient (DDP must then look for
    unused parameters in every step): the ViT and projector (stage 0 trains the whole backbone) only run for
    rows with an input picture, and a head whose loss weight is 0 is not run at all."""
    groups = WOHG_STAGES[stage.wohg]
    return (
        "base" in groups
        or (not stage.beta and bool(groups & {"adapter", "visual_head"}))
        or (not stage.alpha and "text_head" in groups)
    )


def take_rows(batch: Batch, rows: Sequence[int], config) -> Batch:
    """The batch's rows ``rows`` (their input pictures with them), trailing all-padding columns dropped.
    The whole batch, in order, is returned as it is."""
    B = batch.input_ids.shape[0]
    rows = list(rows)
    if rows == list(range(B)):
        return batch
    index = torch.tensor(rows, dtype=torch.long, device=batch.input_ids.device)
    ids, mask, labels = batch.input_ids[index], batch.attention_mask[index], batch.labels[index]
    used = mask.bool().any(0).nonzero()
    width = int(used.max()) + 1 if len(used) else ids.shape[1]
    pixels = None
    if batch.pixel_values is not None:
        # pixel_values hold the batch's input pictures in row order, image_seq_length placeholders each
        per_row = ((batch.input_ids == config.image_token_id).sum(1) // config.image_seq_length).tolist()
        starts = np.concatenate([[0], np.cumsum(per_row)]).astype(int)
        picked = [i for r in rows for i in range(starts[r], starts[r] + per_row[r])]
        if picked:
            pixels = batch.pixel_values[torch.tensor(picked, device=batch.pixel_values.device)]
    return Batch(ids[:, :width], mask[:, :width], labels[:, :width], pixels)


def step_parts(batch: Batch, config, ctx: DistContext, micro_batch_size: int = 0) -> list[Batch]:
    """This process's micro-batches of a step's global batch: its contiguous share of the rows
    (``distributed.shard``), in chunks of ``micro_batch_size`` rows (0: one chunk)."""
    rows = shard(batch.input_ids.shape[0], ctx)
    if not len(rows):
        raise ValueError(f"a batch of {batch.input_ids.shape[0]} rows for {ctx.world_size} processes")
    size = micro_batch_size or len(rows)
    return [take_rows(batch, rows[i : i + size], config) for i in range(0, len(rows), size)]


def _to_device(batch: Batch, device: torch.device) -> Batch:
    if batch.input_ids.device == device:
        return batch
    pixels = batch.pixel_values.to(device) if batch.pixel_values is not None else None
    return Batch(batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device), pixels)


def accumulate_gradients(
    loss_module: torch.nn.Module,
    parts: Sequence[Batch],
    config,
    alpha: float,
    beta: float,
    ctx: DistContext | None = None,
    precision: str = "fp32",
) -> tuple[float, float, float]:
    """Forward and backward over this process's micro-batches of one optimizer step; returns the step's
    global (loss, text loss, image loss), each head's a mean over the step's targets (NaN: not measured).

    ``loss_module``: a ``StageLoss``, or DDP around one. The target counts of the whole step are summed over the
    processes first (one all-reduce, from the labels alone), so every micro-batch's loss is its CE sum over
    the global count: the gradients add up to those of the whole batch in one pass, however it is split
    between micro-batches and processes. Under DDP, gradients are synchronised once, in the last micro-batch's
    backward (``no_sync`` before it).
    """
    ctx = ctx or DistContext()
    device = parts[0].input_ids.device
    counts = torch.tensor([0, 0], dtype=torch.long)
    for part in parts:
        counts += torch.tensor(target_counts(part.labels, config), dtype=torch.long)
    n_text, n_image = (int(c) for c in all_reduce_sum(counts, ctx))
    is_ddp = isinstance(loss_module, torch.nn.parallel.DistributedDataParallel)
    scale = float(ctx.world_size) if is_ddp else 1.0
    sums = torch.zeros(2, dtype=torch.float64)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        with loss_module.no_sync() if is_ddp and not last else contextlib.nullcontext():
            with autocast(precision, device):
                loss, text_sum, image_sum = loss_module(
                    part.input_ids, part.attention_mask, part.labels, part.pixel_values, n_text, n_image, scale
                )  # fmt: skip
            loss.backward()
        sums += torch.stack([text_sum.double().cpu(), image_sum.double().cpu()])
    text_total, image_total = all_reduce_sum(sums, ctx).tolist()
    text = text_total / max(n_text, 1) if alpha else float("nan")
    image = image_total / max(n_image, 1) if beta else float("nan")
    loss = (alpha * text if alpha else 0.0) + (beta * image if beta else 0.0)
    return loss, text, image


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint


class StageTrainer:
    """One stage, in one process or in each of ``torchrun``'s (``distributed.init_from_env``).

    Every process draws the same global batch for a step (``TaskSampler.batch(step, batch_size)``, a pure
    function of the seed and the step) and trains on its share of the rows (``step_parts``); only rank 0 writes
    the log, the checkpoints, the model and ``stage.json``. ``device``: where to train (default: the process
    group's device, ``cuda:LOCAL_RANK`` under NCCL, the CPU under gloo; in one process, the model's own).
    """

    def __init__(
        self,
        model: ArmorForInterleavedGeneration,
        tokenizer: ByteTokenizer,
        stage: StageConfig,
        sampler: TaskSampler,
        collate: Collate,
        out: Path,
        val_samples: Sequence[dict] = (),
        progress: bool = True,
        device: str | torch.device | None = None,
    ) -> None:
        self.model, self.tokenizer, self.stage = model, tokenizer, stage
        self.sampler, self.collate, self.out = sampler, collate, out
        self.val_samples = list(val_samples)
        self.progress = progress
        self.device = torch.device(device) if device is not None else None

    def run(self, resume: bool = False) -> dict:
        stage, model = self.stage, self.model
        ctx = init_from_env()
        if stage.batch_size < ctx.world_size:
            raise ValueError(
                f"stage {stage.stage}: batch_size {stage.batch_size} < {ctx.world_size} processes"
            )
        # given, else the process group's (cuda:LOCAL_RANK under NCCL), else where the model already is
        device = self.device or (ctx.device if ctx.enabled else next(model.parameters()).device)
        model.to(device)
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        model.set_wohg_stage(stage.wohg)  # before DDP: its reducer only ever holds the trainable tensors
        model.train()
        optimizer = make_optimizer(model, stage)
        start_step, elapsed_before = 0, 0.0
        ckpt_path = self.out / CHECKPOINT
        found = all_gather_object(bool(resume and ckpt_path.exists()), ctx)
        if len(set(found)) > 1:
            raise RuntimeError(
                f"{ckpt_path} is visible to some processes only: the run directory must be shared"
            )
        if found[0]:
            # Written by rank 0 of a run with any number of processes: the plain model, the full optimizer
            # state (every DDP process holds the same), the step. The next step's global batch is the same.
            ckpt = torch.load(ckpt_path, weights_only=False, map_location="cpu")
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            _set_rng_state(ckpt["rng"])
            start_step, elapsed_before = ckpt["step"], ckpt["elapsed_s"]
            frozen_before = ckpt["frozen_before"]
            logger.info(
                "stage %s: resumed at step %d (checkpoint of %s process(es), now %d)",
                stage.stage,
                start_step,
                ckpt.get("world_size", 1),
                ctx.world_size,
            )
        else:
            frozen_before = frozen_fingerprint(model)
        log_path = self.out / "log.jsonl"
        records = _read_log(log_path, before_step=start_step) if start_step else []
        barrier(ctx)  # everyone has read the log before rank 0 rewrites it
        log = log_path.open("w") if ctx.is_main else None
        if log:  # a resumed run keeps the log up to its checkpoint, drops what came after
            log.writelines(json.dumps(record) + "\n" for record in records)

        if stage.gradient_checkpointing:
            set_gradient_checkpointing(model, True)
        loss_module: torch.nn.Module = StageLoss(model, stage.alpha, stage.beta, stage.switch_weight)
        ddp_stats = None
        if ctx.enabled:
            loss_module = wrap_ddp(loss_module, ctx, find_unused_parameters=may_skip_trainable(stage))
            ddp_stats = ddp_parameter_stats(loss_module)
            logger.info("stage %s: DDP over %s", stage.stage, ddp_stats, extra={"armor_ddp": ddp_stats})
        trainable = [p for p in model.parameters() if p.requires_grad]

        t0 = time.time() - elapsed_before
        window: list[tuple[float, float, float]] = []
        tokens = 0
        bar = tqdm(
            range(start_step, stage.steps),
            initial=start_step,
            total=stage.steps,
            desc=f"stage {stage.stage} ({stage.name})",
            mininterval=2,
            disable=not (self.progress and ctx.is_main),
        )
        try:
            for step in bar:
                lr = lr_at(stage, step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = self.collate(self.sampler.batch(step, stage.batch_size))  # the global batch
                if stage.cfg_dropout:  # drawn from the step like the batch itself: resumable
                    rng = np.random.default_rng([self.sampler.seed, step, 1])
                    batch = drop_conditions(batch, model.config, stage.cfg_dropout, rng)
                parts = step_parts(batch, model.config, ctx, stage.micro_batch_size)
                parts = [_to_device(part, device) for part in parts]
                optimizer.zero_grad(set_to_none=True)
                losses = accumulate_gradients(
                    loss_module, parts, model.config, stage.alpha, stage.beta, ctx, stage.precision
                )
                if stage.grad_clip:
                    torch.nn.utils.clip_grad_norm_(trainable, stage.grad_clip)
                optimizer.step()
                tokens += batch.num_tokens
                window.append(losses)
                done = step + 1
                if done % stage.log_every == 0 or done == stage.steps:
                    mean = _nanmean(window)
                    record = {
                        "step": done,
                        "loss": _num(mean[0]),
                        "text_loss": _num(mean[1]),
                        "image_loss": _num(mean[2]),
                        "lr": lr,
                        "tokens": tokens,
                        "elapsed_s": round(time.time() - t0, 2),
                    }
                    self._log(log, record)
                    records.append(record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}")
                    window, tokens = [], 0
                if self.val_samples and (done % stage.val_every == 0 or done == stage.steps):
                    record = {"step": done, **self.validate(ctx)}
                    self._log(log, record)
                    records.append(record)
                if done % stage.checkpoint_every == 0 and done < stage.steps:
                    if ctx.is_main:
                        _atomic_save(
                            {
                                "stage": stage.stage,
                                "step": done,
                                "model": model.state_dict(),  # the model's own names, never DDP's "module."
                                "optimizer": optimizer.state_dict(),
                                "rng": _rng_state(),
                                "elapsed_s": time.time() - t0,
                                "frozen_before": frozen_before,
                                "world_size": ctx.world_size,  # for the record: any process count resumes
                                "ddp": ddp_stats,
                            },
                            ckpt_path,
                        )
                    barrier(ctx)  # the checkpoint exists before any process goes past its step
        finally:
            bar.close()
            if log:
                log.close()
            del loss_module  # DDP's reducer (and its gradient hooks) go with it
            if stage.gradient_checkpointing:
                set_gradient_checkpointing(model, False)
        duration = time.time() - t0
        model.eval()
        frozen_after = frozen_fingerprint(model)
        train_records = [r for r in records if "loss" in r]
        val_records = [r for r in records if "val_loss" in r]
        summary = {
            "stage": stage.stage,
            "name": stage.name,
            "config": asdict(stage),
            "trainable_groups": sorted(WOHG_STAGES[stage.wohg]),
            "trainable_parameters": sum(p.numel() for p in trainable),
            "frozen_parameters": sum(p.numel() for p in model.parameters() if not p.requires_grad),
            "frozen_sha256_before": frozen_before,
            "frozen_unchanged": frozen_before == frozen_after,
            "world_size": ctx.world_size,
            "ddp": ddp_stats,  # what DDP's reducer synchronises (tensors, bytes): the trainable ones only
            "steps": stage.steps,
            "duration_s": round(duration, 1),
            "steps_per_s": round((stage.steps - start_step) / max(1e-9, duration - elapsed_before), 3),
            "first": train_records[0] if train_records else None,
            "final": train_records[-1] if train_records else None,
            "final_val": val_records[-1] if val_records else None,
        }
        if ctx.is_main:
            save_model(model, self.tokenizer, self.out / "model")
            (self.out / "stage.json").write_text(json.dumps(summary, indent=2) + "\n")
            ckpt_path.unlink(missing_ok=True)  # the stage is done: model/ is its result
        barrier(ctx)  # the other processes may go on to read model/ (the next stage starts from it)
        return summary

    def _log(self, log, record: dict) -> None:
        """One record: a line of log.jsonl (rank 0) and a ``armor_ab.training`` log record."""
        if log is None:
            return
        log.write(json.dumps(record) + "\n")
        log.flush()
        logger.info("stage %s %s", self.stage.stage, json.dumps(record), extra={"armor_record": record})

    @torch.no_grad()
    def validate(self, ctx: DistContext | None = None) -> dict:
        """Mean losses on up to ``val_batches`` fixed batches of the validation samples (the batches are
        shared out between the processes; every process returns the same figures)."""
        ctx = ctx or context()
        self.model.eval()
        device = next(self.model.parameters()).device
        size = self.stage.batch_size
        chunks = [self.val_samples[i : i + size] for i in range(0, len(self.val_samples), size)]
        chunks = chunks[: self.stage.val_batches]
        mine = {}
        for i in range(ctx.rank, len(chunks), ctx.world_size):
            with autocast(self.stage.precision, device):
                loss, text, image = compute_losses(
                    self.model,
                    _to_device(self.collate(chunks[i]), device),
                    self.stage.alpha,
                    self.stage.beta,
                    self.stage.switch_weight,
                )
            mine[i] = (float(loss), float(text), float(image))
        gathered: dict[int, tuple[float, float, float]] = {}
        for part in all_gather_object(mine, ctx):
            gathered.update(part)
        totals = [gathered[i] for i in sorted(gathered)]
        self.model.train()
        mean = _nanmean(totals)
        return {"val_loss": _num(mean[0]), "val_text_loss": _num(mean[1]), "val_image_loss": _num(mean[2])}


def _nanmean(rows: list[tuple[float, float, float]]) -> list[float]:
    """Column means ignoring NaN (an unmeasured loss stays NaN instead of warning)."""
    columns = np.array(rows, dtype=float).reshape(-1, 3).T
    return [float(c[~np.isnan(c)].mean()) if (~np.isnan(c)).any() else float("nan") for c in columns]


def _num(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 5)


def _read_log(path: Path, before_step: int) -> list[dict]:
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["step"] <= before_step]
