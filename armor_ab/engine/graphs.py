"""The exportable graphs of ARMOR: plain ``nn.Module`` wrappers with tensor-only I/O and explicit KV state.

Every graph the generation loop needs, each a pure function of its inputs (no Python state, no cache object),
so that ``torch.onnx.export(..., dynamo=True)`` captures it and ONNX Runtime / TensorRT run it:

    graph        inputs                                              outputs
    vision       pixel_values (N, 3, H, W)                           image_features (N, T_img, C)
    embed        ids (R, T)                                          embeds (R, T, C)
    prefill      embeds (R, T, C), position_ids (R, T),              hidden (R, T, C),
                 past_valid (R, S), new_valid (R, T), PAST(L)        new_kv (L, 2, R, H, T, D)
    decode       ids (R,), position_ids (R,), past_valid (R, S),     hidden (R, C), text_logits (R, V + 1),
                 PAST(L)                                             new_kv (L, 2, R, H, 1, D)
    text_head    hidden (R, C)                                       text_logits (R, V + 1)
    adapter      hidden (R, T, C), position_ids (R, T),              adapter_hidden (R, T, C),
                 past_valid (R, S), new_valid (R, T), PAST(La)       visual_logits (R, N + 2) (last position),
                                                                     new_kv (La, 2, R, H, T, D)
    visual_head  adapter_hidden (R, C)                               visual_logits (R, N + 2)
    vq_decode    codes (B, n_codes)                                  pixels (B, 3, H_out, W_out)

    PAST(L) = past_key_0, past_value_0, ..., past_key_{L-1}, past_value_{L-1}, each (R, H, S, D)

Dynamic axes: R = ``rows``, T = ``tokens``, S = ``cache``, N/B = ``images``; every other dim is fixed by the
config. ``decode`` is the LM step fused with the embedding and the text head; ``adapter`` ends with the
visual head at the chunk's last position (the runtime skips the separate head calls when it can). Float I/O
is fp32, in the exported files always; an fp16 TensorRT engine makes its KV I/O (PAST, ``new_kv``) fp16 at
build time (``graph_specs(config, kv_dtype)``).

KV cache protocol (the same for every backend). The runtime owns one fixed-size buffer per stack,
``(layers, 2, rows, kv_heads, S, head_dim)``: for one layer, K or V, and any contiguous range of rows
(conditional, unconditional or both) it is one contiguous block, bound as ``past_key_i`` / ``past_value_i``
by pointer - no copy. A graph *reads* the whole past buffer (static size S; slots that are not valid are
masked by ``past_valid``) and *returns only its new tokens' keys/values* (``new_kv``), which the runtime writes
into the buffer at ``[start, start + T)``. A decode step therefore moves (L, 2, R, H, 1, D) numbers, never the
whole cache, and no graph aliases an input with an output (which ONNX does not define).

RoPE. cos/sin are rows of a precomputed fp32 table ``(max_position_embeddings, head_dim)`` (``rope_table``: the
model's own rotary embedding evaluated once at every position), gathered by position id - not position x
inv_freq and cos/sin computed in the graph, which TensorRT may run in fp16: the angle of position 1000 in
fp16 is off by up to 0.25 rad, while a table entry rounded to fp16 is off by at most 2.5e-4.

Attention (``decoder_block``) runs over [past buffer | new tokens] without concatenating them: scores against
the past keys where they lie, scores against the new keys, one softmax over both parts. A query sees the valid
past slots, the valid new tokens at or before itself and always itself - the mask of
``armor_ab.model.cache.attention_mask``; grouped-query heads read their KV head without ``repeat_kv`` copies.

The blocks are the base LM's own decoder layers (``armor_ab.model.modeling.LM_BLOCKS``: Llama, or Qwen2 with
its q/k/v biases), whose weights ``decoder_block`` runs through the layers' own projections, norms and MLP.
What it does not reproduce is refused before export (``check_exportable``): sliding-window attention, and
RoPE variants whose frequencies depend on the sequence length (``dynamic``, ``longrope``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.llama import modeling_llama
from transformers.models.qwen2 import modeling_qwen2

from armor_ab.model.configuration import ArmorConfig
from armor_ab.model.modeling import LM_BLOCKS, ArmorForInterleavedGeneration

from .errors import UnsupportedModel

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


NEG_INF = float("-inf")

# Each family's own rotary application (the two are the same maths; each layer uses its family's).
APPLY_ROTARY: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "llama": modeling_llama.apply_rotary_pos_emb,
    "qwen2": modeling_qwen2.apply_rotary_pos_emb,
}
assert set(APPLY_ROTARY) == set(LM_BLOCKS)
# RoPE types whose frequencies change with the sequence length at run time: an exported graph would freeze one.
LENGTH_DEPENDENT_ROPE = frozenset({"dynamic", "longrope"})


def export_problems(model: ArmorForInterleavedGeneration) -> list[str]:
    """What in this model the exported graphs would not compute as PyTorch does (empty: exportable)."""
    text = model.config.text_config
    family = text.model_type
    if family not in LM_BLOCKS:
        return [f"language model {family!r} is not supported (supported: {', '.join(LM_BLOCKS)})"]
    expected = LM_BLOCKS[family][0]
    problems = []
    stacks = {"language model": model.model.language_model.layers, "adapter": model.adapter.layers}
    for stack, layers in stacks.items():
        wrong = sorted({type(layer).__name__ for layer in layers if type(layer) is not expected})
        if wrong:
            problems.append(f"{stack} blocks are {', '.join(wrong)}, not the {expected.__name__} the graphs run")
        windowed = [i for i, layer in enumerate(layers) if getattr(layer.self_attn, "sliding_window", None)]
        if windowed:
            problems.append(
                f"{stack} layers {windowed} use sliding-window attention (window "
                f"{layers[windowed[0]].self_attn.sliding_window}); the graphs attend over the whole cache"
            )
    for kind in sorted(rope_types(text) & LENGTH_DEPENDENT_ROPE):
        problems.append(f"RoPE type {kind!r} changes its frequencies with the sequence length at run time")
    return problems


def rope_types(text_config) -> set[str]:
    """The RoPE type(s) of an LM config (transformers' ``rope_parameters``, flat or per layer type)."""
    rope = getattr(text_config, "rope_parameters", None) or getattr(text_config, "rope_scaling", None) or {}
    if not isinstance(rope, dict):
        return set()
    if any(isinstance(v, dict) for v in rope.values()):  # one set of parameters per attention type
        return {v.get("rope_type", "default") for v in rope.values() if isinstance(v, dict)}
    return {rope.get("rope_type", rope.get("type", "default"))}


def check_exportable(model: ArmorForInterleavedGeneration) -> None:
    """Raise ``UnsupportedModel`` naming everything the graphs would compute differently from PyTorch."""
    problems = export_problems(model)
    if problems:
        raise UnsupportedModel(
            f"{model.config.model_name}: cannot be exported as an engine: " + "; ".join(problems)
        )


def step_masks(
    past_valid: torch.Tensor, new_valid: torch.Tensor, groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks for the grouped query rows ``g * T + t`` (g: query head within its KV group, t: token):
    over the past buffer (R, 1, G*T, S) and over the chunk's own tokens (R, 1, G*T, T)."""
    t = new_valid.shape[1]
    idx = torch.arange(t, device=new_valid.device)  # (T,)
    causal = idx[None, :] <= idx[:, None]  # (T, T)
    itself = idx[None, :] == idx[:, None]  # (T, T)
    new = (causal[None] & new_valid[:, None, :]) | itself[None]  # (R, T, T)
    past = past_valid[:, None, :].expand(-1, t, -1)  # (R, T, S)
    new = new[:, None].expand(-1, groups, -1, -1).reshape(-1, 1, groups * t, t)  # (R, 1, G*T, T)
    r = past.shape[0]
    past = past[:, None].expand(-1, groups, -1, -1).reshape(r, 1, groups * t, -1)  # (R, 1, G*T, S)
    return past, new


def rms_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """``LlamaRMSNorm`` / ``Qwen2RMSNorm`` (the same maths) written as x / sqrt(mean(x^2) + eps) * w: the pattern ONNX Runtime fuses into one
    SimplifiedLayerNormalization kernel (transformers' x * rsqrt(...) form stays seven nodes)."""
    variance = x.pow(2).mean(-1, keepdim=True)  # (..., 1)
    return norm.weight * (x / torch.sqrt(variance + norm.variance_epsilon))


def decoder_block(
    layer: nn.Module,  # the LM family's decoder layer: LlamaDecoderLayer or Qwen2DecoderLayer
    x: torch.Tensor,  # (R, T, C)
    cos: torch.Tensor,  # (R, T, D)
    sin: torch.Tensor,  # (R, T, D)
    past_k: torch.Tensor,  # (R, Hkv, S, D)
    past_v: torch.Tensor,  # (R, Hkv, S, D)
    mask_past: torch.Tensor,  # (R, 1, G*T, S) bool
    mask_new: torch.Tensor,  # (R, 1, G*T, T) bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """transformers' ``LlamaDecoderLayer`` / ``Qwen2DecoderLayer`` (same weights, same maths: the layer's own
    q/k/v projections, with Qwen2's biases, its norms and MLP) with attention written for a static KV buffer:
    the past keys are read where they lie - no concatenation with the new keys, no ``repeat_kv`` copies for
    grouped-query attention - and the softmax runs over [past | new] in two parts. Full causal attention only:
    ``check_exportable`` refuses sliding-window layers before export."""
    attn = layer.self_attn
    r, t, _ = x.shape
    d = attn.head_dim
    hkv = past_k.shape[1]
    g = attn.num_key_value_groups
    h = rms_norm(x, layer.input_layernorm)
    q = attn.q_proj(h).view(r, t, hkv * g, d).transpose(1, 2)  # (R, Hq, T, D)
    k = attn.k_proj(h).view(r, t, hkv, d).transpose(1, 2)  # (R, Hkv, T, D)
    v = attn.v_proj(h).view(r, t, hkv, d).transpose(1, 2)  # (R, Hkv, T, D)
    q, k = APPLY_ROTARY[attn.config.model_type](q, k, cos, sin)
    q = q.reshape(r, hkv, g * t, d)  # (R, Hkv, G*T, D): query head kv * G + g reads KV head kv
    s_past = (q @ past_k.transpose(-1, -2)) * attn.scaling  # (R, Hkv, G*T, S)
    s_new = (q @ k.transpose(-1, -2)) * attn.scaling  # (R, Hkv, G*T, T)
    s_past = s_past.masked_fill(~mask_past, NEG_INF)
    s_new = s_new.masked_fill(~mask_new, NEG_INF)
    # Row max over both parts; finite, because every query sees itself.
    m = torch.maximum(s_past.amax(-1, keepdim=True), s_new.amax(-1, keepdim=True))  # (R, Hkv, G*T, 1)
    e_past, e_new = torch.exp(s_past - m), torch.exp(s_new - m)
    denom = e_past.sum(-1, keepdim=True) + e_new.sum(-1, keepdim=True)  # (R, Hkv, G*T, 1)
    o = (e_past @ past_v + e_new @ v) / denom  # (R, Hkv, G*T, D)
    o = o.reshape(r, hkv * g, t, d).transpose(1, 2).reshape(r, t, hkv * g * d)  # (R, T, Hq*D)
    x = x + attn.o_proj(o)
    x = x + layer.mlp(rms_norm(x, layer.post_attention_layernorm))
    return x, k, v  # (R, T, C), new keys and values (R, Hkv, T, D)


@torch.no_grad()
def rope_table(rotary_emb: nn.Module, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (P, D) in fp32 for positions 0..P-1: the model's own rotary embedding (its frequencies, its
    attention scaling) evaluated once at every position, so a graph gathers rows instead of computing angles."""
    position_ids = torch.arange(positions, device=rotary_emb.inv_freq.device)[None]  # (1, P)
    x = torch.zeros(1, dtype=torch.float32, device=position_ids.device)  # only its dtype and device are used
    cos, sin = rotary_emb(x, position_ids)  # (1, P, D) each
    return cos[0].float().contiguous(), sin[0].float().contiguous()


class RopeTable(nn.Module):
    """cos/sin rows by position id: the table is a constant of the exported graph (an ONNX Gather on it)."""

    def __init__(self, rotary_emb: nn.Module, positions: int) -> None:
        super().__init__()
        cos, sin = rope_table(rotary_emb, positions)
        self.register_buffer("cos", cos, persistent=False)  # (P, D)
        self.register_buffer("sin", sin, persistent=False)  # (P, D)

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.embedding(position_ids, self.cos), F.embedding(position_ids, self.sin)  # (R, T, D) each


def run_blocks(
    layers: nn.ModuleList,
    norm: nn.Module,
    rope: RopeTable,
    h: torch.Tensor,  # (R, T, C)
    position_ids: torch.Tensor,  # (R, T)
    past_valid: torch.Tensor,  # (R, S)
    new_valid: torch.Tensor,  # (R, T)
    past: list[torch.Tensor],  # [k_0, v_0, k_1, v_1, ...], each (R, Hkv, S, D)
) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = rope(position_ids)  # (R, T, D) each, fp32 rows of the table
    groups = layers[0].self_attn.num_key_value_groups
    mask_past, mask_new = step_masks(past_valid, new_valid, groups)
    new = []
    for i, layer in enumerate(layers):
        h, k, v = decoder_block(layer, h, cos, sin, past[2 * i], past[2 * i + 1], mask_past, mask_new)
        new.append(torch.stack([k, v]))  # (2, R, Hkv, T, D)
    return rms_norm(h, norm), torch.stack(new)  # (R, T, C), (L, 2, R, Hkv, T, D)


def max_positions(model: ArmorForInterleavedGeneration) -> int:
    """Rows of the RoPE tables: every position a request may use (``generate`` refuses longer ones)."""
    return model.config.text_config.max_position_embeddings


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
        self.rope = RopeTable(self.lm.rotary_emb, max_positions(model))

    def forward(
        self,
        embeds: torch.Tensor,  # (R, T, C)
        position_ids: torch.Tensor,  # (R, T)
        past_valid: torch.Tensor,  # (R, S)
        new_valid: torch.Tensor,  # (R, T)
        *past: torch.Tensor,  # past_key_0, past_value_0, ...: (R, H, S, D) each
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lm = self.lm
        return run_blocks(
            lm.layers, lm.norm, self.rope, embeds, position_ids, past_valid, new_valid, list(past)
        )


class DecodeGraph(nn.Module):
    """One LM step fused with the embedding and the text head: a text token costs one graph call."""

    def __init__(self, model: ArmorForInterleavedGeneration) -> None:
        super().__init__()
        self.model = model
        self.lm = model.model.language_model
        self.rope = RopeTable(self.lm.rotary_emb, max_positions(model))

    def forward(
        self,
        ids: torch.Tensor,  # (R,)
        position_ids: torch.Tensor,  # (R,)
        past_valid: torch.Tensor,  # (R, S)
        *past: torch.Tensor,  # past_key_0, past_value_0, ...: (R, H, S, D) each
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lm = self.lm
        embeds = self.model.embed_tokens(ids[:, None])  # (R, 1, C)
        new_valid = torch.ones_like(ids, dtype=torch.bool)[:, None]  # (R, 1): a query always sees itself
        h, new_kv = run_blocks(
            lm.layers,
            lm.norm,
            self.rope,
            embeds,
            position_ids[:, None],
            past_valid,
            new_valid,
            list(past),
        )
        h = h[:, 0]  # (R, C)
        return h, self.model.text_logits(h), new_kv  # (R, C), (R, V + 1), (L, 2, R, H, 1, D)


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
        self.rope = RopeTable(model.adapter.rotary_emb, max_positions(model))

    def forward(
        self,
        hidden: torch.Tensor,  # (R, T, C) LM output
        position_ids: torch.Tensor,  # (R, T)
        past_valid: torch.Tensor,  # (R, S)
        new_valid: torch.Tensor,  # (R, T)
        *past: torch.Tensor,  # past_key_0, past_value_0, ...: (R, H, S, D) each
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ad = self.adapter
        a, new_kv = run_blocks(
            ad.layers, ad.norm, self.rope, hidden, position_ids, past_valid, new_valid, list(past)
        )  # (R, T, C), (La, 2, R, H, T, D)
        return a, self.model.visual_logits(a[:, -1]), new_kv  # (R, T, C), (R, N + 2), (La, 2, R, H, T, D)


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
    dtype: str  # "float32", "float16" (an fp16 engine's KV cache), "int64", "bool"
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


KV_DTYPES = ("float32", "float16")  # the KV cache's I/O dtype: fp32, or fp16 for fp16 TensorRT engines


def graph_specs(config: ArmorConfig, kv_dtype: str = "float32") -> dict[str, GraphSpec]:
    """Names, dtypes and shapes of every graph's inputs and outputs (dynamic axes by name). ``kv_dtype`` is the
    dtype of the KV cache I/O (``past_*``, ``new_kv``); every other float tensor is fp32."""
    if kv_dtype not in KV_DTYPES:
        raise ValueError(f"KV dtype {kv_dtype!r}: expected one of {KV_DTYPES}")
    d = Dims.of(config)
    f, i, b = "float32", "int64", "bool"
    T = TensorSpec

    def past(layers: int) -> tuple[TensorSpec, ...]:
        shape = ("rows", d.kv_heads, "cache", d.head_dim)
        return tuple(
            T(f"past_{kind}_{i}", kv_dtype, shape) for i in range(layers) for kind in ("key", "value")
        )

    def new_kv(layers: int, t: int | str) -> TensorSpec:
        return T("new_kv", kv_dtype, (layers, 2, "rows", d.kv_heads, t, d.head_dim))

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
                *past(d.layers),
            ),
            (T("hidden", f, ("rows", "tokens", d.hidden)), new_kv(d.layers, "tokens")),
        ),
        "decode": GraphSpec(
            "decode",
            (
                T("ids", i, ("rows",)),
                T("position_ids", i, ("rows",)),
                T("past_valid", b, ("rows", "cache")),
                *past(d.layers),
            ),
            (
                T("hidden", f, ("rows", d.hidden)),
                T("text_logits", f, ("rows", d.text_logits)),
                new_kv(d.layers, 1),
            ),
        ),
        "text_head": GraphSpec(
            "text_head",
            (T("hidden", f, ("rows", d.hidden)),),
            (T("text_logits", f, ("rows", d.text_logits)),),
        ),
        "adapter": GraphSpec(
            "adapter",
            (
                T("hidden", f, ("rows", "tokens", d.hidden)),
                T("position_ids", i, ("rows", "tokens")),
                T("past_valid", b, ("rows", "cache")),
                T("new_valid", b, ("rows", "tokens")),
                *past(d.adapter_layers),
            ),
            (
                T("adapter_hidden", f, ("rows", "tokens", d.hidden)),
                T("visual_logits", f, ("rows", d.visual_logits)),
                new_kv(d.adapter_layers, "tokens"),
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


def example_inputs(
    spec: GraphSpec, config: ArmorConfig, seed: int = 0, **sizes: int
) -> dict[str, torch.Tensor]:
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
