"""ARMOR on top of transformers' InternVL: one backbone, two heads, forward switching.

    pixels ──InternViT──pixel shuffle──MLP projector──┐             (understanding path, unchanged InternVL)
    ids ──extended embedding (frozen text rows | new rows)──┴──LM (Llama or Qwen2)──h
    h ──text head (lm_head ⊕ <imgbos> row)──────────────────────────> text logits     (text mode)
    h ──adapter (blocks of the LM's class)──visual head (codes ⊕ <imgend> ⊕ <imgpad>)──> code logits (image mode)
    codes ──VQGAN decoder──> pixels

Module names keep InternVL's (``model.vision_tower``, ``model.multi_modal_projector``, ``model.language_model``,
``lm_head``), so a transformers-format InternVL checkpoint loads into the base parts as is. The new parts are
``image_token_embed``, ``imgbos_head``, ``adapter``, ``visual_head`` and ``vqgan``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import InternVLModel, PreTrainedModel
from transformers.modeling_outputs import ModelOutput
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm, LlamaRotaryEmbedding
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RMSNorm, Qwen2RotaryEmbedding

from .cache import FixedKVCache, attention_mask, position_ids_from_valid
from .configuration import SUPPORTED_LMS, ArmorConfig
from .vqgan import ArmorVQGAN, VQGANLoadReport, load_chameleon_vqgan

# What each WoHG stage trains (the paper's table); everything else is frozen. Stage 0 is not in the paper: it
# trains the whole backbone, which the small random-init models need before ARMOR's stages make sense.
WOHG_STAGES: dict[int, frozenset[str]] = {
    0: frozenset({"base", "new_rows", "text_head", "adapter", "visual_head"}),
    1: frozenset({"new_rows", "text_head"}),  # what to generate: choose the modality
    2: frozenset({"new_rows", "adapter", "visual_head"}),  # how to generate images
    3: frozenset({"new_rows", "adapter", "visual_head", "text_head"}),  # better interleaved answers
}


# The adapter's blocks are the base LM's own (decoder layer, final norm, rotary embedding), so they take its
# config as it is: Qwen2's q/k/v biases, Llama's attention_bias flag, each family's RoPE settings.
LM_BLOCKS: dict[str, tuple[type[nn.Module], type[nn.Module], type[nn.Module]]] = {
    "llama": (LlamaDecoderLayer, LlamaRMSNorm, LlamaRotaryEmbedding),  # InternLM2.5 after conversion
    "qwen2": (Qwen2DecoderLayer, Qwen2RMSNorm, Qwen2RotaryEmbedding),  # Qwen2.5 (InternVL2.5-1B, 4B)
}
assert set(LM_BLOCKS) == set(SUPPORTED_LMS)


def lm_blocks(text_config) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    """(decoder layer, RMS norm, rotary embedding) classes of the base LM's family."""
    try:
        return LM_BLOCKS[text_config.model_type]
    except KeyError:
        raise ValueError(
            f"language model {text_config.model_type!r} is not supported (supported: {', '.join(LM_BLOCKS)})"
        ) from None


def adapter_text_config(config: ArmorConfig):
    """The LM's config as the adapter's blocks see it: its own depth, every block full attention. (Qwen2
    looks its block's attention type up by index in ``layer_types``, which lists only the LM's layers.)"""
    text = copy.deepcopy(config.text_config)
    text.num_hidden_layers = config.adapter_num_layers
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = ["full_attention"] * config.adapter_num_layers
    return text


@dataclass
class ArmorOutput(ModelOutput):
    loss: torch.Tensor | None = None
    text_loss: torch.Tensor | None = None
    image_loss: torch.Tensor | None = None
    text_logits: torch.Tensor | None = None  # (B, T, V + 1)
    visual_logits: torch.Tensor | None = None  # (B, T, N + 2)
    hidden_states: torch.Tensor | None = None  # (B, T, C) LM output, before the heads
    adapter_hidden_states: torch.Tensor | None = None  # (B, T, C)


class ArmorAdapter(nn.Module):
    """ARMOR's adapter: a few LM-width blocks of the LM's own class between the LM output and the visual head.

    Causal self-attention over the whole sequence (text and images), with RoPE positions like the LM's; in
    generation it has its own KV cache, filled lazily when image mode starts (text tokens never need it).
    """

    def __init__(self, config: ArmorConfig) -> None:
        super().__init__()
        text = adapter_text_config(config)
        layer, norm, rotary = lm_blocks(text)
        self.layers = nn.ModuleList(layer(text, i) for i in range(config.adapter_num_layers))
        self.norm = norm(text.hidden_size, eps=text.rms_norm_eps)
        self.rotary_emb = rotary(text)

    def forward(
        self,
        h: torch.Tensor,  # (R, T, C)
        position_ids: torch.Tensor,  # (R, T)
        mask: torch.Tensor,  # (R, 1, T, S) bool
        cache: FixedKVCache | None = None,
    ) -> torch.Tensor:
        position_embeddings = self.rotary_emb(h, position_ids)  # cos, sin: (R, T, D)
        for layer in self.layers:
            h = layer(
                h,
                attention_mask=mask,
                position_ids=position_ids,
                cache=cache,
                position_embeddings=position_embeddings,
            )  # (R, T, C)
        return self.norm(h)


class ArmorPreTrainedModel(PreTrainedModel):
    config: ArmorConfig
    config_class = ArmorConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["LlamaDecoderLayer", "Qwen2DecoderLayer", "InternVLVisionLayer"]


class ArmorForInterleavedGeneration(ArmorPreTrainedModel):
    def __init__(self, config: ArmorConfig) -> None:
        super().__init__(config)
        hidden = config.text_config.hidden_size
        self.model = InternVLModel(config)  # vision_tower, multi_modal_projector, language_model
        self.lm_head = nn.Linear(hidden, config.text_vocab_size, bias=False)  # InternVL's head: text rows
        # New embedding rows (codes, <imgend>, <imgpad>, <imgbos>). The original rows stay in InternVL's own
        # embed_tokens: a split embedding, so freezing them is requires_grad=False on a whole tensor and the
        # optimizer never holds state for the 92K frozen rows.
        self.image_token_embed = nn.Embedding(config.num_new_tokens, hidden)
        self.imgbos_head = nn.Linear(hidden, 1, bias=False)  # the text head's <imgbos> row
        self.adapter = ArmorAdapter(config)
        self.visual_head = nn.Linear(hidden, config.visual_head_size, bias=False)
        self.vqgan = ArmorVQGAN(config.vq_config)
        self.post_init()
        self.set_wohg_stage(3)

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> ArmorForInterleavedGeneration:
        # transformers turns on Hugging Face hub kernels by default: layers downloaded at load time, with
        # their own numerics. Never here (no network in production, parity against our own graphs).
        kwargs.setdefault("use_kernels", False)
        model = super().from_pretrained(*args, **kwargs)
        model.set_wohg_stage(3)  # loading re-creates parameters and forgets requires_grad
        return model

    # --- parameter groups and WoHG freezing ---
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "base": list(self.model.parameters()),  # ViT, projector, LM (incl. the original embedding rows)
            "new_rows": list(self.image_token_embed.parameters()),
            "text_head": [self.lm_head.weight, self.imgbos_head.weight],
            "adapter": list(self.adapter.parameters()),
            "visual_head": list(self.visual_head.parameters()),
            "vqgan": list(
                self.vqgan.parameters()
            ),  # trained on its own (reconstruction), never by the LM loss
        }

    def parameter_counts(self) -> dict[str, int]:
        counts = {name: sum(p.numel() for p in params) for name, params in self.parameter_groups().items()}
        counts["vision"] = sum(p.numel() for p in self.model.vision_tower.parameters())
        counts["projector"] = sum(p.numel() for p in self.model.multi_modal_projector.parameters())
        counts["language_model"] = sum(p.numel() for p in self.model.language_model.parameters())
        counts["base_with_lm_head"] = counts["base"] + self.lm_head.weight.numel()  # = InternVL's size
        counts["armor_new"] = (
            counts["new_rows"] + self.imgbos_head.weight.numel() + counts["adapter"] + counts["visual_head"]
        )
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    def set_wohg_stage(self, stage: int) -> None:
        """Set requires_grad for a WoHG stage (1-3 as in the paper; 0 trains the whole backbone)."""
        trainable = WOHG_STAGES[stage]
        for name, params in self.parameter_groups().items():
            for p in params:
                p.requires_grad_(name in trainable)

    # --- the pieces the generation loop (and exported graphs) run ---
    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Extended-vocabulary embedding: (R, T) ids -> (R, T, C)."""
        vocab = self.config.text_vocab_size
        is_new = (ids >= vocab)[..., None]  # (R, T, 1)
        text = self.model.language_model.embed_tokens(ids.clamp(max=vocab - 1))  # (R, T, C)
        new = self.image_token_embed((ids - vocab).clamp(min=0))  # (R, T, C)
        return torch.where(is_new, new, text)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """InternVL's understanding path: (N, 3, H, W) -> ViT -> pixel shuffle -> projector -> (N, T_img, C)."""
        out = self.model.get_image_features(pixel_values=pixel_values, return_dict=True)
        return out.pooler_output

    def embed(self, ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the image placeholders replaced by projected ViT features, as InternVL does."""
        embeds = self.embed_tokens(ids)  # (R, T, C)
        if pixel_values is not None:
            features = self.image_features(pixel_values).to(embeds.dtype)  # (N, T_img, C)
            slots = ids == self.config.image_token_id  # (R, T)
            if int(slots.sum()) != features.shape[0] * features.shape[1]:
                raise ValueError(
                    f"{int(slots.sum())} image placeholders for {features.shape[0]} image(s) "
                    f"of {features.shape[1]} tokens"
                )
            embeds = embeds.masked_scatter(slots[..., None], features)
        return embeds

    def text_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Text head: (…, C) -> (…, V + 1), index V is <imgbos>."""
        return torch.cat([self.lm_head(h), self.imgbos_head(h)], dim=-1)

    def visual_logits(self, a: torch.Tensor) -> torch.Tensor:
        """Visual head on adapter output: (…, C) -> (…, N + 2); index j is token V + j (codes, <imgend>, <imgpad>)."""
        return self.visual_head(a)

    def decode_images(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, codes_per_image) code indices (0..N-1) -> (B, 3, H, W) pixels in [-1, 1]."""
        return self.vqgan.decode(codes)

    def load_chameleon_vqgan(
        self, state_dict: dict[str, torch.Tensor], strict: bool = True
    ) -> VQGANLoadReport:
        """Load Chameleon's vqgan.ckpt weights into the VQGAN (see ``vqgan.py`` for the key mapping)."""
        return load_chameleon_vqgan(self.vqgan, state_dict, strict=strict)

    # --- teacher-forced forward (training, and the no-cache reference) ---
    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T) extended-vocabulary ids
        attention_mask: torch.Tensor | None = None,  # (B, T) 1 = token, 0 = left padding
        pixel_values: torch.Tensor | None = None,  # (N, 3, H, W) input images for the placeholders
        labels: torch.Tensor | None = None,  # (B, T) targets aligned with input_ids, -100 = ignore
        text_loss_weight: float = 1.0,  # WoHG's alpha
        image_loss_weight: float = 1.0,  # WoHG's beta
        **kwargs,
    ) -> ArmorOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        valid = attention_mask.bool()  # (B, T)
        positions = position_ids_from_valid(valid)  # (B, T)
        # Our own 4D mask (not transformers' from the 2D one) so that padding queries still see themselves
        # and the LM, the adapter and the cached generation path all use the very same mask.
        mask = attention_mask_for(valid)  # (B, 1, T, T)
        embeds = self.embed(input_ids, pixel_values)  # (B, T, C)
        h = self.model.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions
        ).last_hidden_state  # (B, T, C)
        a = self.adapter(h, positions, mask)  # (B, T, C)
        text_logits = self.text_logits(h)  # (B, T, V + 1)
        visual_logits = self.visual_logits(a)  # (B, T, N + 2)
        out = ArmorOutput(
            text_logits=text_logits, visual_logits=visual_logits, hidden_states=h, adapter_hidden_states=a
        )
        if labels is not None:
            out.text_loss, out.image_loss = self.losses(text_logits, visual_logits, labels)
            out.loss = text_loss_weight * out.text_loss + image_loss_weight * out.image_loss
        return out

    def losses(
        self, text_logits: torch.Tensor, visual_logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token cross-entropy, routed by the target: text ids and <imgbos> to the text head, codes,
        <imgend> and <imgpad> to the visual head (the position before a code is in image mode)."""
        cfg = self.config
        vocab = cfg.text_vocab_size
        target = labels[:, 1:]  # (B, T-1)
        is_text = (target >= 0) & ((target < vocab) | (target == cfg.imgbos_id))
        is_image = (target >= vocab) & (target < vocab + cfg.visual_head_size)
        text_target = torch.where(target == cfg.imgbos_id, vocab, target)
        text_target = torch.where(is_text, text_target, -100)
        image_target = torch.where(is_image, target - vocab, -100)
        text_loss = _masked_ce(text_logits[:, :-1], text_target)
        image_loss = _masked_ce(visual_logits[:, :-1], image_target)
        return text_loss, image_loss


def attention_mask_for(valid: torch.Tensor) -> torch.Tensor:
    """Causal + padding mask (B, 1, T, T) for a whole sequence."""
    return attention_mask(valid, 0, valid.shape[1])


def _masked_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over targets != -100; 0 (still differentiable) when there are none."""
    if not bool((target != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100
    )
