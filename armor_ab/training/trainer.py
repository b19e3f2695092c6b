"""One training stage: AdamW, warmup + cosine, WoHG freezing, resumable checkpoints, JSON-lines loss log.

A stage directory holds::

    log.jsonl          {"step", "loss", "text_loss", "image_loss", "lr", "tokens", "elapsed_s"} per log_every
                       steps, and {"step", "val_loss", ...} per val_every steps
    checkpoint.pt      model + optimizer + step + RNG state, written atomically every checkpoint_every steps
    model/             the stage's result (save_pretrained + tokenizer)
    stage.json         summary: steps, losses, duration, trainable groups, frozen-parameter check

Freezing is the model's own ``set_wohg_stage``; the optimizer only ever holds the trainable tensors, and the
stage records a SHA-256 of every frozen tensor before and after, so ``stage.json`` proves they did not move.
"""

from __future__ import annotations

import hashlib
import json
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
from .training_recipe import StageConfig

CHECKPOINT = "checkpoint.pt"
REFUSAL_IDS = tuple(ByteTokenizer().encode(" " + REFUSAL))  # the base model's answer to "draw", after a text
Collate = Callable[[Sequence[dict]], Batch]


def compute_losses(
    model: ArmorForInterleavedGeneration,
    batch: Batch,
    alpha: float,
    beta: float,
    switch_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha * text + beta * image, text loss, image loss): ``model.forward`` minus the unused half.

    Same embedding, mask, positions and loss routing as ``forward``, but a head whose weight is 0 is not run:
    with beta = 0 (stages 0 and 1) the adapter never runs, with alpha = 0 (stage 2) the text head does not.
    Its loss is then reported as NaN (not measured), never as a misleading number.

    ``switch_weight`` multiplies the text cross-entropy at the modality-decision positions
    (``decision_positions``); the text loss stays normalised by the number of text targets, so 1.0 is exactly
    the plain mean of ``model.losses``.
    """
    valid = batch.attention_mask.bool()  # (B, T)
    positions = position_ids_from_valid(valid)  # (B, T)
    mask = attention_mask_for(valid)  # (B, 1, T, T)
    embeds = model.embed(batch.input_ids, batch.pixel_values)  # (B, T, C)
    h = model.model.language_model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions
    ).last_hidden_state
    cfg = model.config
    B, T = batch.input_ids.shape
    text_logits = model.text_logits(h) if alpha else h.new_zeros(B, T, cfg.text_head_size)
    visual_logits = (
        model.visual_logits(model.adapter(h, positions, mask))
        if beta
        else h.new_zeros(B, T, cfg.visual_head_size)
    )
    text_loss, image_loss = model.losses(text_logits, visual_logits, batch.labels)
    if alpha and switch_weight != 1.0:
        text_loss = weighted_text_loss(model, text_logits, batch.labels, switch_weight)
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
        refusal[:, : windows.shape[1]] = (windows == torch.tensor(REFUSAL_IDS)).all(-1)
    return answer_start | switches | after_picture | refusal


def weighted_text_loss(
    model: ArmorForInterleavedGeneration, text_logits: torch.Tensor, labels: torch.Tensor, weight: float
) -> torch.Tensor:
    """``model.losses``' text cross-entropy with the decision positions' terms multiplied by ``weight``,
    normalised by the number of text targets (as the plain mean is)."""
    cfg = model.config
    vocab = cfg.text_vocab_size
    target = labels[:, 1:]
    is_text = (target >= 0) & ((target < vocab) | (target == cfg.imgbos_id))
    text_target = torch.where(target == cfg.imgbos_id, vocab, target)
    text_target = torch.where(is_text, text_target, IGNORE)
    if not bool(is_text.any()):
        return text_logits.sum() * 0.0
    logits = text_logits[:, :-1]
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        text_target.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view_as(text_target)
    weights = torch.where(decision_positions(labels, cfg), weight, 1.0) * is_text
    return (ce * weights).sum() / is_text.sum()


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
            digest.update(p.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


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
    ) -> None:
        self.model, self.tokenizer, self.stage = model, tokenizer, stage
        self.sampler, self.collate, self.out = sampler, collate, out
        self.val_samples = list(val_samples)
        self.progress = progress

    def run(self, resume: bool = False) -> dict:
        stage, model = self.stage, self.model
        self.out.mkdir(parents=True, exist_ok=True)
        model.set_wohg_stage(stage.wohg)
        model.train()
        optimizer = make_optimizer(model, stage)
        start_step, elapsed_before = 0, 0.0
        ckpt_path = self.out / CHECKPOINT
        if resume and ckpt_path.exists():
            ckpt = torch.load(ckpt_path, weights_only=False)
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            _set_rng_state(ckpt["rng"])
            start_step, elapsed_before = ckpt["step"], ckpt["elapsed_s"]
            frozen_before = ckpt["frozen_before"]
        else:
            frozen_before = frozen_fingerprint(model)
        log_path = self.out / "log.jsonl"
        records = _read_log(log_path, before_step=start_step) if start_step else []
        log = log_path.open("w")
        for record in records:  # a resumed run keeps the log up to its checkpoint, drops what came after
            log.write(json.dumps(record) + "\n")

        t0 = time.time() - elapsed_before
        window: list[tuple[float, float, float]] = []
        tokens = 0
        bar = tqdm(
            range(start_step, stage.steps),
            initial=start_step,
            total=stage.steps,
            desc=f"stage {stage.stage} ({stage.name})",
            mininterval=2,
            disable=not self.progress,
        )
        for step in bar:
            lr = lr_at(stage, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = self.collate(self.sampler.batch(step, stage.batch_size))
            if stage.cfg_dropout:  # drawn from the step like the batch itself: resumable
                rng = np.random.default_rng([self.sampler.seed, step, 1])
                batch = drop_conditions(batch, model.config, stage.cfg_dropout, rng)
            loss, text_loss, image_loss = compute_losses(
                model, batch, stage.alpha, stage.beta, stage.switch_weight
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if stage.grad_clip:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], stage.grad_clip
                )
            optimizer.step()
            tokens += batch.num_tokens
            window.append((loss.item(), text_loss.item(), image_loss.item()))
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
                log.write(json.dumps(record) + "\n")
                log.flush()
                records.append(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                window, tokens = [], 0
            if self.val_samples and (done % stage.val_every == 0 or done == stage.steps):
                record = {"step": done, **self.validate()}
                log.write(json.dumps(record) + "\n")
                log.flush()
                records.append(record)
            if done % stage.checkpoint_every == 0 and done < stage.steps:
                _atomic_save(
                    {
                        "stage": stage.stage,
                        "step": done,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": _rng_state(),
                        "elapsed_s": time.time() - t0,
                        "frozen_before": frozen_before,
                    },
                    ckpt_path,
                )
        bar.close()
        log.close()
        duration = time.time() - t0
        model.eval()
        frozen_after = frozen_fingerprint(model)
        save_model(model, self.tokenizer, self.out / "model")
        train_records = [r for r in records if "loss" in r]
        val_records = [r for r in records if "val_loss" in r]
        summary = {
            "stage": stage.stage,
            "name": stage.name,
            "config": asdict(stage),
            "trainable_groups": sorted(WOHG_STAGES[stage.wohg]),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "frozen_parameters": sum(p.numel() for p in model.parameters() if not p.requires_grad),
            "frozen_sha256_before": frozen_before,
            "frozen_unchanged": frozen_before == frozen_after,
            "steps": stage.steps,
            "duration_s": round(duration, 1),
            "steps_per_s": round((stage.steps - start_step) / max(1e-9, duration - elapsed_before), 3),
            "first": train_records[0] if train_records else None,
            "final": train_records[-1] if train_records else None,
            "final_val": val_records[-1] if val_records else None,
        }
        (self.out / "stage.json").write_text(json.dumps(summary, indent=2) + "\n")
        ckpt_path.unlink(missing_ok=True)  # the stage is done: model/ is its result
        return summary

    @torch.no_grad()
    def validate(self) -> dict:
        """Mean losses on up to ``val_batches`` fixed batches of the validation samples."""
        self.model.eval()
        size = self.stage.batch_size
        chunks = [self.val_samples[i : i + size] for i in range(0, len(self.val_samples), size)]
        totals = []
        for chunk in chunks[: self.stage.val_batches]:
            loss, text, image = compute_losses(
                self.model, self.collate(chunk), self.stage.alpha, self.stage.beta, self.stage.switch_weight
            )
            totals.append((float(loss), float(text), float(image)))
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
