"""Logit processing and sampling for one row: repetition penalty, classifier-free guidance, top-k/top-p."""

from __future__ import annotations

import torch


def apply_cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on logits: ``uncond + scale * (cond - uncond)`` (Janus, LlamaGen, Lumina-mGPT).

    Scale 1 is the conditional distribution; the generator skips the unconditional rows then instead of
    calling this, since ``u + (c - u)`` is not bit-equal to ``c`` in floating point.
    """
    return uncond + scale * (cond - uncond)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty on already seen tokens: positive logits divided by ``penalty``, negative multiplied."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def sample_token(
    logits: torch.Tensor,  # (V,)
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator,
) -> int:
    """One token id from a logit vector; temperature 0 is greedy (argmax, first index on ties)."""
    logits = logits.float()
    if temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = torch.softmax(sorted_logits, -1).cumsum(-1)
        drop_sorted = cum - torch.softmax(sorted_logits, -1) >= top_p  # keep the smallest set reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, -1)
    return int(torch.multinomial(probs, 1, generator=generator))
