"""The step interface the generation loop runs on, and its PyTorch implementation.

The loop (``generate.py``) only ever calls these graphs, so a later backend (ONNX Runtime, TensorRT) can
implement the same protocol from exported graphs:

    image_features  ViT + pixel shuffle + projector          (N, 3, H, W)        -> (N, T_img, C)
    embed           extended-vocabulary embedding            (R, T)              -> (R, T, C)
    prefill         LM over a chunk, writing its KV          (R, T, C)           -> (R, T, C)
    decode_step     LM over one token, writing its KV        (R,) ids            -> (R, C)
    text_head       text vocabulary + <imgbos>               (R, C)              -> (R, V + 1)
    adapter         adapter blocks over a chunk, own KV      (R, T, C)           -> (R, T, C)
    visual_head     codes + <imgend> + <imgpad>              (R, C)              -> (R, N + 2)
    vq_decode       VQGAN decoder                            (B, n_codes)        -> (B, 3, H, W)

Backends: ``TorchBackend`` here; ``armor_ab.engine`` implements the same protocol over exported graphs on
ONNX Runtime and TensorRT (``armor_ab.engine.loader.open_engine_backend``), so the loop runs unchanged on any of them.
``device`` is where the loop keeps its token buffers (the engines keep it on the CPU and move graph I/O).

KV state lives in the backend, allocated once by ``allocate(rows, max_len)``. Every call that writes KV names
the rows (a slice of the allocated rows: the conditional rows, the unconditional rows or both) and the first
position it writes; ``key_valid`` (rows, end) marks real tokens (False = left padding) up to the chunk's end.
"""

from __future__ import annotations

from typing import Protocol

import torch

from .cache import FixedKVCache, attention_mask
from .configuration import ArmorConfig
from .modeling import ArmorForInterleavedGeneration


class StepBackend(Protocol):
    config: ArmorConfig

    @property
    def device(self) -> torch.device: ...

    def allocate(self, rows: int, max_len: int) -> None: ...

    def check_capacity(self, rows: int, max_len: int, tokens: int = 0, images: int = 0) -> None:
        """Raise before anything runs if a request of ``rows`` rows, ``max_len`` KV positions, prefill chunks of
        up to ``tokens`` tokens and ``images`` input images exceeds the backend's fixed limits."""
        ...

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor: ...

    def embed(self, ids: torch.Tensor) -> torch.Tensor: ...

    def prefill(
        self,
        embeds: torch.Tensor,
        position_ids: torch.Tensor,
        key_valid: torch.Tensor,
        rows: slice,
        start: int,
    ) -> torch.Tensor: ...

    def decode_step(
        self, ids: torch.Tensor, position_ids: torch.Tensor, key_valid: torch.Tensor, rows: slice, start: int
    ) -> torch.Tensor: ...

    def text_head(self, h: torch.Tensor) -> torch.Tensor: ...

    def adapter(
        self, h: torch.Tensor, position_ids: torch.Tensor, key_valid: torch.Tensor, rows: slice, start: int
    ) -> torch.Tensor: ...

    def visual_head(self, h: torch.Tensor) -> torch.Tensor: ...

    def vq_decode(self, codes: torch.Tensor) -> torch.Tensor: ...


class TorchBackend:
    """``StepBackend`` on an eager ``ArmorForInterleavedGeneration`` with two ``FixedKVCache``s (LM, adapter)."""

    def __init__(self, model: ArmorForInterleavedGeneration) -> None:
        self.model = model.eval()
        self.config = model.config
        self.lm_cache: FixedKVCache | None = None
        self.adapter_cache: FixedKVCache | None = None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def allocate(self, rows: int, max_len: int) -> None:
        text = self.config.text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        reuse = (
            self.lm_cache is not None
            and self.lm_cache.k.shape[1] == rows
            and self.lm_cache.max_len >= max_len
            and self.lm_cache.k.dtype == self.dtype
        )
        if reuse:  # same batch, enough room: keep the buffers (stale slots are never read)
            return
        kw = dict(
            rows=rows,
            num_kv_heads=text.num_key_value_heads,
            max_len=max_len,
            head_dim=head_dim,
            dtype=self.dtype,
            device=self.device,
        )
        self.lm_cache = FixedKVCache(num_layers=text.num_hidden_layers, **kw)
        self.adapter_cache = FixedKVCache(num_layers=self.config.adapter_num_layers, **kw)

    def check_capacity(self, rows: int, max_len: int, tokens: int = 0, images: int = 0) -> None:
        """Eager PyTorch has no fixed limits (``generate`` checks max_position_embeddings itself)."""

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.image_features(pixel_values.to(self.device, self.dtype))  # (N, T_img, C)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(ids)  # (R, T, C)

    def prefill(
        self,
        embeds: torch.Tensor,
        position_ids: torch.Tensor,
        key_valid: torch.Tensor,
        rows: slice,
        start: int,
    ) -> torch.Tensor:
        mask = attention_mask(key_valid, start, embeds.shape[1])  # (R, 1, T, end)
        out = self.model.model.language_model(
            inputs_embeds=embeds,  # (R, T, C)
            attention_mask=mask,
            position_ids=position_ids,  # (R, T)
            cache=self.lm_cache.at(rows, start),
            use_cache=True,
        )
        return out.last_hidden_state  # (R, T, C)

    def decode_step(
        self, ids: torch.Tensor, position_ids: torch.Tensor, key_valid: torch.Tensor, rows: slice, start: int
    ) -> torch.Tensor:
        embeds = self.embed(ids[:, None])  # (R, 1, C)
        return self.prefill(embeds, position_ids[:, None], key_valid, rows, start)[:, 0]  # (R, C)

    def text_head(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.text_logits(h)  # (R, V + 1)

    def adapter(
        self, h: torch.Tensor, position_ids: torch.Tensor, key_valid: torch.Tensor, rows: slice, start: int
    ) -> torch.Tensor:
        mask = attention_mask(key_valid, start, h.shape[1])  # (R, 1, T, end)
        return self.model.adapter(h, position_ids, mask, self.adapter_cache.at(rows, start))  # (R, T, C)

    def visual_head(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.visual_logits(h)  # (R, N + 2)

    def vq_decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode_images(codes.to(self.device))  # (B, 3, H, W)
