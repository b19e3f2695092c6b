"""The exportable graphs of ARMOR: plain ``nn.Module`` wrappers with tensor-only I/O and explicit KV state.

Every graph the generation loop needs, each a pure function of its inputs (no Python state, no dynamic cache
object), so that ``torch.onnx.export(..., dynamo=True)`` captures it and ONNX Runtime / TensorRT run it:

    graph        inputs                                                   outputs
    vision       pixel_values (N, 3, H, W)                                image_features (N, T_img, C)
    embed        ids (R, T)                                               embeds (R, T, C)
    prefill      embeds (R, T, C), position_ids (R, T),                   hidden (R, T, C),
                 past_valid (R, S), new_valid (R, T), past_kv (R, L, 2, H, S, D)    new_kv (R, L, 2, H, T, D)
    decode       ids (R,), position_ids (R,), past_valid (R, S),          hidden (R, C), text_logits (R, V + 1),
                 past_kv (R, L, 2, H, S, D)                               new_kv (R, L, 2, H, 1, D)
    text_head    hidden (R, C)                                            text_logits (R, V + 1)
    adapter      hidden (R, T, C), position_ids (R, T), past_valid (R, S),  adapter_hidden (R, T, C),
                 new_valid (R, T), past_kv (R, La, 2, H, S, D)            visual_logits (R, N + 2)  (last position),
                                                                          new_kv (R, La, 2, H, T, D)
    visual_head  adapter_hidden (R, C)                                    visual_logits (R, N + 2)
    vq_decode    codes (B, n_codes)                                       pixels (B, 3, H_out, W_out)

KV cache protocol (the same for every backend). The cache is one fixed-size buffer per stack,
``(rows, layers, 2, kv_heads, S, head_dim)`` with rows first, so any contiguous range of rows (conditional,
unconditional, or both) is one contiguous block that can be bound as a graph input without a copy. A graph
*reads* the whole past buffer (static size S; slots that are not valid are masked by ``past_valid``) and
*returns only the keys/values of its new tokens* (``new_kv``); the backend writes those into the buffer at
``[start, start + T)``. So a decode step moves (R, L, 2, H, 1, D) numbers, never the whole cache, and no graph
aliases an input with an output (which ONNX does not define).

Attention inside a graph runs over ``S + T`` keys: the past buffer followed by the new tokens. A query sees the
valid past slots, the valid new tokens at or before itself, and always itself - the same mask as
``armor_ab.model.cache.attention_mask`` (the keys are merely in another order, which softmax ignores).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from armor_ab.model.configuration import ArmorConfig
from armor_ab.model.modeling import ArmorForInterleavedGeneration

GRAPH_NAMES = (
    "vision",
    "embed",
    "prefill",
    "decode",
    "text_head",
    "adapter",
    "visual_head",
    "vq_decode",
)


class GraphKV:
    """A cache object transformers' attention layers accept: reads a static past buffer, collects new K/V."""

    def __init__(self, past_kv: torch.Tensor) -> None:
        self.past = past_kv  # (R, L, 2, H, S, D)
        self.new: list[torch.Tensor] = []

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.new.append(torch.stack([key_states, value_states], dim=1))  # (R, 2, H, T, D)
        past_k = self.past[:, layer_idx, 0]  # (R, H, S, D)
        past_v = self.past[:, layer_idx, 1]  # (R, H, S, D)
        return torch.cat([past_k, key_states], dim=2), torch.cat([past_v, value_states], dim=2)  # (R, H, S+T, D)

    def new_kv(self) -> torch.Tensor:
        return torch.stack(self.new, dim=1)  # (R, L, 2, H, T, D)


def step_mask(past_valid: torch.Tensor, new_valid: torch.Tensor) -> torch.Tensor:
    """Boolean mask (R, 1, T, S + T) over [past buffer | new tokens]."""
    t = new_valid.shape[1]
    idx = torch.arange(t, device=new_valid.device)  # (T,)
    causal = idx[None, :] <= idx[:, None]  # (T, T)
    itself = idx[None, :] == idx[:, None]  # (T, T)
    new = (causal[None] & new_valid[:, None, :]) | itself[None]  # (R, T, T)
    past = past_valid[:, None, :].expand(-1, t, -1)  # (R, T, S)
    return torch.cat([past, new], dim=-1)[:, None]  # (R, 1, T, S + T)


def run_blocks(
    layers: nn.ModuleList,
    norm: nn.Module,
    rotary_emb: nn.Module,
    h: torch.Tensor,  # (R, T, C)
    position_ids: torch.Tensor,  # (R, T)
    mask: torch.Tensor,  # (R, 1, T, S + T)
    kv: GraphKV,
) -> torch.Tensor:
    position_embeddings = rotary_emb(h, position_ids)  # cos, sin: (R, T, D)
    for layer in layers:
        h = layer(
            h,
            attention_mask=mask,
            position_ids=position_ids,
            cache=kv,
            position_embeddings=position_embeddings,
        )  # (R, T, C)
    return norm(h)  # (R, T, C)


class VisionGraph(nn.Module):
    def __init__(self, model: ArmorForInterleavedGeneration) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.image_features(pixel_values)  # (N, T_img, C)


class EmbedGraph(nn.Module):
    def __init__(self, model: ArmorForInterleavedGeneration) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(ids)  # (R, T, C)


class PrefillGraph(nn.Module):
    """The LM over a chunk of T tokens given as embeddings (prompt with image features, or catch-up)."""

    def __init__(self, model: ArmorForInterleavedGeneration) -> None:
        super().__init__()
        self.lm = model.model.language_model

    def forward(
        self,
        embeds: torch.Tensor,  # (R, T, C)
        position_ids: torch.Tensor,  # (R, T)
        past_valid: torch.Tensor,  # (R, S)
        new_valid: torch.Tensor,  # (R, T)
        past_kv: torch.Tensor,  # (R, L, 2, H, S, D)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        kv = GraphKV(past_kv)
        mask = step_mask(past_valid, new_valid)
        h = run_blocks(self.lm.layers, self.lm.norm, self.lm.rotary_emb, embeds, position_ids, mask, kv)
        return h, kv.new_kv()  # (R, T, C), (R, L, 2, H, T, D)


class DecodeGraph(nn.Module):
    """One LM step fused with the embedding and the text head: a text token costs one graph call."""

    def __init__(self, model: ArmorForInterleavedGeneration) -> None:
        super().__init__()
        self.model = model
        self.lm = model.model.language_model

    def forward(
        self,
        ids: torch.Tensor,  # (R,)
        position_ids: torch.Tensor,  # (R,)
        past_valid: torch.Tensor,  # (R, S)
        past_kv: torch.Tensor,  # (R, L, 2, H, S, D)
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kv = GraphKV(past_kv)
        embeds = self.model.embed_tokens(ids[:, None])  # (R, 1, C)
        new_valid = torch.ones_like(ids, dtype=torch.bool)[:, None]  # (R, 1): a query always sees itself
        mask = step_mask(past_valid, new_valid)  # (R, 1, 1, S + 1)
        h = run_blocks(
            self.lm.layers, self.lm.norm, self.lm.rotary_emb, embeds, position_ids[:, None], mask, kv
        )[:, 0]  # (R, C)
        return h, self.model.text_logits(h), kv.new_kv()  # (R, C), (R, V + 1), (R, L, 2, H, 1, D)


class TextHeadGraph(nn.Module):
    def __init__(self, model: ArmorForInterleavedGeneration) -> None:
        super().__init__()
        self.model = model

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.text_logits(hidden)  # (R, V + 1)


class AdapterGraph(nn.Module):
    """Adapter blocks over a chunk (own KV cache) fused with the visual head at the chunk's last position."""

    def __init__(self, model: ArmorForInterleavedGeneration) -> None:
        super().__init__()
        self.model = model
        self.adapter = model.adapter

    def forward(
        self,
        hidden: torch.Tensor,  # (R, T, C) LM output
        position_ids: torch.Tensor,  # (R, T)
        past_valid: torch.Tensor,  # (R, S)
        new_valid: torch.Tensor,  # (R, T)
        past_kv: torch.Tensor,  # (R, La, 2, H, S, D)
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kv = GraphKV(past_kv)
        mask = step_mask(past_valid, new_valid)
        ad = self.adapter
        a = run_blocks(ad.layers, ad.norm, ad.rotary_emb, hidden, position_ids, mask, kv)  # (R, T, C)
        return a, self.model.visual_logits(a[:, -1]), kv.new_kv()  # (R, T, C), (R, N + 2), (R, La, 2, H, T, D)


class VisualHeadGraph(nn.Module):
    def __init__(self, model: ArmorForInterleavedGeneration) -> None:
        super().__init__()
        self.model = model

    def forward(self, adapter_hidden: torch.Tensor) -> torch.Tensor:
        return self.model.visual_logits(adapter_hidden)  # (R, N + 2)


class VQDecodeGraph(nn.Module):
    def __init__(self, model: ArmorForInterleavedGeneration) -> None:
        super().__init__()
        self.model = model

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode_images(codes)  # (B, 3, H, W)


# --- I/O specifications -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, dtype and shape; a str dim is a dynamic axis with that name."""

    name: str
    dtype: str  # "float32", "int64", "bool"
    shape: tuple[int | str, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict) -> TensorSpec:
        return cls(data["name"], data["dtype"], tuple(data["shape"]))


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Dims:
    """The sizes the graphs' static dimensions take for one config."""

    hidden: int
    layers: int
    adapter_layers: int
    kv_heads: int
    head_dim: int
    text_logits: int
    visual_logits: int
    image_tokens: int
    input_image: int
    codes: int
    output_image: int

    @classmethod
    def of(cls, config: ArmorConfig) -> Dims:
        text = config.text_config
        return cls(
            hidden=text.hidden_size,
            layers=text.num_hidden_layers,
            adapter_layers=config.adapter_num_layers,
            kv_heads=text.num_key_value_heads,
            head_dim=getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads,
            text_logits=config.text_head_size,
            visual_logits=config.visual_head_size,
            image_tokens=config.image_seq_length,
            input_image=config.input_image_size,
            codes=config.codes_per_image,
            output_image=config.image_size,
        )


def graph_specs(config: ArmorConfig) -> dict[str, GraphSpec]:
    """Names, dtypes and shapes of every graph's inputs and outputs (dynamic axes by name)."""
    d = Dims.of(config)
    f, i, b = "float32", "int64", "bool"
    kv = lambda layers, t: (("rows", layers, 2, d.kv_heads, t, d.head_dim))  # noqa: E731
    T = TensorSpec
    return {
        "vision": GraphSpec(
            "vision",
            (T("pixel_values", f, ("images", 3, d.input_image, d.input_image)),),
            (T("image_features", f, ("images", d.image_tokens, d.hidden)),),
        ),
        "embed": GraphSpec(
            "embed", (T("ids", i, ("rows", "tokens")),), (T("embeds", f, ("rows", "tokens", d.hidden)),)
        ),
        "prefill": GraphSpec(
            "prefill",
            (
                T("embeds", f, ("rows", "tokens", d.hidden)),
                T("position_ids", i, ("rows", "tokens")),
                T("past_valid", b, ("rows", "cache")),
                T("new_valid", b, ("rows", "tokens")),
                T("past_kv", f, kv(d.layers, "cache")),
            ),
            (T("hidden", f, ("rows", "tokens", d.hidden)), T("new_kv", f, kv(d.layers, "tokens"))),
        ),
        "decode": GraphSpec(
            "decode",
            (
                T("ids", i, ("rows",)),
                T("position_ids", i, ("rows",)),
                T("past_valid", b, ("rows", "cache")),
                T("past_kv", f, kv(d.layers, "cache")),
            ),
            (
                T("hidden", f, ("rows", d.hidden)),
                T("text_logits", f, ("rows", d.text_logits)),
                T("new_kv", f, kv(d.layers, 1)),
            ),
        ),
        "text_head": GraphSpec(
            "text_head", (T("hidden", f, ("rows", d.hidden)),), (T("text_logits", f, ("rows", d.text_logits)),)
        ),
        "adapter": GraphSpec(
            "adapter",
            (
                T("hidden", f, ("rows", "tokens", d.hidden)),
                T("position_ids", i, ("rows", "tokens")),
                T("past_valid", b, ("rows", "cache")),
                T("new_valid", b, ("rows", "tokens")),
                T("past_kv", f, kv(d.adapter_layers, "cache")),
            ),
            (
                T("adapter_hidden", f, ("rows", "tokens", d.hidden)),
                T("visual_logits", f, ("rows", d.visual_logits)),
                T("new_kv", f, kv(d.adapter_layers, "tokens")),
            ),
        ),
        "visual_head": GraphSpec(
            "visual_head",
            (T("adapter_hidden", f, ("rows", d.hidden)),),
            (T("visual_logits", f, ("rows", d.visual_logits)),),
        ),
        "vq_decode": GraphSpec(
            "vq_decode",
            (T("codes", i, ("images", d.codes)),),
            (T("pixels", f, ("images", 3, d.output_image, d.output_image)),),
        ),
    }


GRAPH_MODULES: dict[str, type[nn.Module]] = {
    "vision": VisionGraph,
    "embed": EmbedGraph,
    "prefill": PrefillGraph,
    "decode": DecodeGraph,
    "text_head": TextHeadGraph,
    "adapter": AdapterGraph,
    "visual_head": VisualHeadGraph,
    "vq_decode": VQDecodeGraph,
}

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "bool": torch.bool}


def example_inputs(spec: GraphSpec, config: ArmorConfig, seed: int = 0, **sizes: int) -> dict[str, torch.Tensor]:
    """Random inputs for a graph (the export trace and the parity checks); dynamic axes from ``sizes``."""
    # Distinct sizes per axis so that the exporter cannot mistake one dynamic axis for another.
    axes = {"rows": 3, "tokens": 5, "cache": 11, "images": 2} | sizes
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for t in spec.inputs:
        shape = tuple(axes[s] if isinstance(s, str) else s for s in t.shape)
        if t.name == "ids":
            out[t.name] = torch.randint(0, config.vocab_size_total, shape, generator=g)
        elif t.name == "codes":
            out[t.name] = torch.randint(0, config.num_image_codes, shape, generator=g)
        elif t.name == "position_ids":
            out[t.name] = torch.randint(0, axes["cache"], shape, generator=g)
        elif t.dtype == "bool":
            out[t.name] = torch.rand(shape, generator=g) < 0.7
        elif t.name == "pixel_values":
            out[t.name] = torch.rand(shape, generator=g) * 2 - 1
        else:
            out[t.name] = torch.randn(shape, generator=g)
    return out
