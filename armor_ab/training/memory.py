"""Memory per GPU of a WoHG stage: what a recipe states before anyone rents a GPU.

    static       weights (every parameter, at the dtype training keeps them: fp32 master copies under bf16
                 autocast), gradients and AdamW's two moments for the trainable ones, and DDP's gradient
                 buckets (one more copy of the trainable gradients) when there is more than one process
    activations  what autograd keeps for the backward pass of one micro-batch: measured, not modelled, by
                 running the stage's forward pass (the heads its loss uses, gradient checkpointing as the
                 stage sets it) on the *meta* device with ``torch.autograd.graph.saved_tensors_hooks`` and
                 summing the distinct storages it saves. The model's own code decides what is kept, so the
                 figure follows the model; nothing is allocated.
    transient    the largest tensor the backward pass makes at once: the logits' gradient

Not counted: the CUDA context and allocator fragmentation (add ~1-2 GB on a real GPU), and the attention
kernel's own workspace (flash / memory-efficient attention keep O(T) per head, which the meta pass - eager
SDPA maths - over-counts if anything). ``gpu_stage.py`` measures the real peak on a GPU next to this figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from armor_ab.model.cache import position_ids_from_valid
from armor_ab.model.configuration import ArmorConfig
from armor_ab.model.modeling import ArmorForInterleavedGeneration, attention_mask_for

GIB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    stage: int
    micro_batch: int
    seq_len: int
    precision: str
    gradient_checkpointing: bool
    world_size: int
    parameters: int
    trainable: int
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    ddp_buckets_bytes: int
    activations_bytes: int
    transient_bytes: int

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.gradients_bytes + self.optimizer_bytes + self.ddp_buckets_bytes
                + self.activations_bytes + self.transient_bytes)

    def to_json(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes, "total_gib": round(self.total_bytes / GIB, 2)}


STAGE_HEADS = {0: (1.0, 0.0), 1: (1.0, 0.0), 2: (0.0, 1.0), 3: (1.0, 1.0)}  # (alpha, beta) of the paper's table


def estimate_stage_memory(
    config: ArmorConfig,
    stage: int,
    micro_batch: int,
    seq_len: int,
    precision: str = "bf16",
    gradient_checkpointing: bool = True,
    world_size: int = 1,
    alpha: float | None = None,
    beta: float | None = None,
) -> MemoryEstimate:
    """Bytes per GPU for one WoHG ``stage`` at ``micro_batch`` sequences of ``seq_len`` tokens."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, not {precision!r}")
    alpha, beta = (STAGE_HEADS[stage][0] if alpha is None else alpha), (STAGE_HEADS[stage][1] if beta is None else beta)
    with torch.device("meta"):
        model = ArmorForInterleavedGeneration(config)
    model.set_wohg_stage(stage)
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    activations, transient = _saved_bytes(model, micro_batch, seq_len, precision, gradient_checkpointing, alpha, beta)
    return MemoryEstimate(
        stage=stage,
        micro_batch=micro_batch,
        seq_len=seq_len,
        precision=precision,
        gradient_checkpointing=gradient_checkpointing,
        world_size=world_size,
        parameters=total,
        trainable=trainable,
        weights_bytes=total * 4,  # fp32, or fp32 master weights under bf16 autocast
        gradients_bytes=trainable * 4,
        optimizer_bytes=trainable * 8,  # AdamW: exp_avg and exp_avg_sq in fp32
        ddp_buckets_bytes=trainable * 4 if world_size > 1 else 0,
        activations_bytes=activations,
        transient_bytes=transient,
    )


def _saved_bytes(model: ArmorForInterleavedGeneration, batch: int, seq: int, precision: str,
                 checkpointing: bool, alpha: float, beta: float) -> tuple[int, int]:
    """(bytes autograd saves for backward, bytes of the largest logits) of one forward pass on meta."""
    if precision == "bf16":
        model = model.to(torch.bfloat16)  # activations at autocast's matmul dtype
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    cfg = model.config
    saved: dict[int, int] = {}
    weights = {p.untyped_storage()._cdata for p in model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in weights:
            saved[storage._cdata] = storage.nbytes()
        return t

    with torch.device("meta"):
        ids = torch.zeros(batch, seq, dtype=torch.long)
        valid = torch.ones(batch, seq, dtype=torch.bool)
    positions = position_ids_from_valid(valid)
    mask = attention_mask_for(valid)
    largest = 0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        h = model.model.language_model(
            inputs_embeds=model.embed_tokens(ids), attention_mask=mask, position_ids=positions
        ).last_hidden_state  # (B, T, C)
        if alpha:
            logits = model.text_logits(h).float()  # (B, T, V + 1): the loss reads fp32 logits
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))
            largest = max(largest, logits.numel() * 4)
        if beta:
            logits = model.visual_logits(model.adapter(h, positions, mask)).float()  # (B, T, N + 2)
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1) % cfg.visual_head_size)
            largest = max(largest, logits.numel() * 4)
    return sum(saved.values()), largest


def recipe_estimates(stages, config: ArmorConfig, seq_len: int, world_size: int) -> dict[int, MemoryEstimate]:
    """The estimate of each WoHG stage (``StageConfig``s of a recipe), per GPU, at its micro-batch size."""
    out = {}
    for stage in stages:
        if not isinstance(stage.stage, int):
            continue
        per_process = -(-stage.batch_size // world_size)  # ceil: rank 0 takes the larger share
        micro = min(stage.micro_batch_size or per_process, per_process)
        out[stage.stage] = estimate_stage_memory(
            config, stage.wohg, micro, seq_len, precision=stage.precision,
            gradient_checkpointing=stage.gradient_checkpointing, world_size=world_size,
            alpha=stage.alpha, beta=stage.beta,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m armor_ab.training.memory --recipe armor-1b --config armor-1b --seq-len 512 --world-size 8``"""
    import argparse
    import json

    import yaml

    from armor_ab.assets import TRAINING_RECIPES, recipe_file
    from armor_ab.model.presets import get_config

    from .training_recipe import StageConfig

    parser = argparse.ArgumentParser(description="Memory per GPU of each WoHG stage of a training recipe.")
    parser.add_argument("--recipe", required=True, help="a shipped recipe's name or a recipe file")
    parser.add_argument("--config", required=True, help="the named configuration of the model's sizes")
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per training sequence (the longest)")
    parser.add_argument("--world-size", type=int, default=1, help="processes (GPUs) sharing a step's batch")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    path = recipe_file(args.recipe, TRAINING_RECIPES)
    # The stages alone: a recipe's inputs (its base, its catalog) play no part in the memory a stage needs.
    stages = [StageConfig.from_dict(s) for s in yaml.safe_load(path.read_text())["stages"]]
    estimates = recipe_estimates(stages, get_config(args.config), args.seq_len, args.world_size)
    if args.json:
        print(json.dumps({str(k): v.to_json() for k, v in estimates.items()}, indent=2))
    else:
        for stage, e in estimates.items():
            print(f"stage {stage}: {e.total_bytes / GIB:.1f} GiB per GPU (micro-batch {e.micro_batch} x "
                  f"{e.seq_len} tokens, {e.precision}, checkpointing {'on' if e.gradient_checkpointing else 'off'}, "
                  f"{e.world_size} GPUs; weights {e.weights_bytes / GIB:.1f}, gradients + AdamW + buckets "
                  f"{(e.gradients_bytes + e.optimizer_bytes + e.ddp_buckets_bytes) / GIB:.1f}, activations "
                  f"{(e.activations_bytes + e.transient_bytes) / GIB:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
