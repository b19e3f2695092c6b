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
