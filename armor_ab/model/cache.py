"""A fixed-size KV cache (gpt-fast style) that transformers' attention layers can write into, and masks.

The buffers are allocated once per generation at ``(layers, rows, kv_heads, max_len, head_dim)``; nothing is
concatenated or reallocated while decoding. transformers' ``LlamaAttention`` calls
``cache.update(key_states, value_states, layer_idx)``: we write the new keys/values at positions
``[start, start + T)`` of the selected rows and hand back the buffer up to ``start + T`` (what exists so far).
Handing back the whole ``max_len`` would also be correct, because the mask hides unwritten slots - that is the
static-shape form an exported graph uses; in eager PyTorch trimming just skips attention work on empty slots.
"""

from __future__ import annotations

import torch


class FixedKVCache:
    """K/V buffers for ``num_layers`` attention layers, written in place."""

    def __init__(
        self,
        num_layers: int,
        rows: int,
        num_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (num_layers, rows, num_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # (L, R, H, S, D)
        self.v = torch.zeros(shape, dtype=dtype, device=device)  # (L, R, H, S, D)
        self.max_len = max_len
        self._rows = slice(0, rows)
        self._start = 0

    def at(self, rows: slice, start: int) -> FixedKVCache:
        """Select the rows and the first position the next forward pass writes (returns self)."""
        self._rows, self._start = rows, start
        return self

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self._start, self._start + key_states.shape[2]
        if end > self.max_len:
            raise RuntimeError(f"KV cache full: writing up to {end} > max_len {self.max_len}")
        k = self.k[layer_idx, self._rows]  # (R, H, S, D) view
        v = self.v[layer_idx, self._rows]  # (R, H, S, D) view
        k[:, :, start:end] = key_states  # (R, H, T, D)
        v[:, :, start:end] = value_states
        return k[:, :, :end], v[:, :, :end]  # (R, H, end, D)


def attention_mask(key_valid: torch.Tensor, q_start: int, q_len: int) -> torch.Tensor:
    """Boolean mask (R, 1, q_len, kv_len) for queries at positions [q_start, q_start + q_len).

    ``key_valid`` (R, kv_len) is False at left padding. A query sees valid keys at or before its own position,
    and always itself: a padding query would otherwise see nothing, and SDPA turns an all-masked row into NaN,
    which then leaks into later layers through the values.
    """
    kv_len = key_valid.shape[1]
    k_idx = torch.arange(kv_len, device=key_valid.device)  # (S,)
    q_idx = torch.arange(q_start, q_start + q_len, device=key_valid.device)  # (T,)
    causal = k_idx[None, :] <= q_idx[:, None]  # (T, S)
    itself = k_idx[None, :] == q_idx[:, None]  # (T, S)
    mask = (causal[None] & key_valid[:, None, :]) | itself[None]  # (R, T, S)
    return mask[:, None]  # (R, 1, T, S)


def position_ids_from_valid(key_valid: torch.Tensor) -> torch.Tensor:
    """RoPE positions (R, S) that start at 0 at each row's first valid token (left padding gets 0)."""
    return (key_valid.long().cumsum(-1) - 1).clamp(min=0)
