"""Named ARMOR configurations: ``get_config("armor-tiny" | "armor-demo" | "armor-1b" | "armor-8b")``.

* ``armor-tiny``: a few hundred thousand parameters, random init, for tests (16 codes per 16 px image).
* ``armor-demo``: sized to be trained on a 2-core CPU in ~45 min and shipped at <= 20 MB with tokenizer
  and VQGAN (64 codes per 64 px image, codebook 512, byte tokenizer).
* ``armor-8b``: InternVL2.5-8B (InternViT-300M-448px + MLP projector + InternLM2.5-7B as a Llama) with
  Chameleon's VQGAN (codebook 8192, 16x down, 256 px -> 256 codes) and 3 adapter blocks. Only ever built on
  the meta device here: the base parts count 8,075,365,376 parameters, InternVL2.5-8B's published size.
* ``armor-1b``: InternVL2.5-1B (InternViT-300M-448px + MLP projector + Qwen2.5-0.5B-Instruct, a Qwen2 LM with
  q/k/v biases and untied input/output embeddings) with the same VQGAN and 3 adapter blocks. Meta device only.

The two real-size configurations use the base's own Hugging Face tokenizer ("hf"): a model directory made by
``armor-ab model init`` carries it.
"""

from __future__ import annotations

from collections.abc import Callable

from .configuration import ArmorConfig
from .tokenizer import ByteTokenizer

_BYTE = ByteTokenizer()


def _byte_ids() -> dict[str, int]:
    return {
        "image_token_id": _BYTE.image_context_id,
        "text_bos_id": _BYTE.bos_id,
        "text_eos_id": _BYTE.eos_id,
        "text_pad_id": _BYTE.pad_id,
        "tokenizer_kind": "byte",
    }


def armor_tiny() -> ArmorConfig:
    return ArmorConfig(
        model_name="armor-tiny",
        text_config={
            "model_type": "llama",
            "vocab_size": _BYTE.vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,  # 4 x 4 patches -> pixel shuffle 0.5 -> 4 LM tokens
            "attention_bias": True,
        },
        vq_config={
            "num_embeddings": 64,
            "embed_dim": 8,
            "latent_channels": 32,
            "base_channels": 32,  # GroupNorm(32) in the VQGAN blocks needs multiples of 32
            "channel_multiplier": [1, 1, 1],  # 4x down: 16 px <-> 4 x 4 = 16 codes
            "num_res_blocks": 1,
            "resolution": 16,
        },
        image_seq_length=4,
        adapter_num_layers=1,
        **_byte_ids(),
    )


def armor_demo() -> ArmorConfig:
    return ArmorConfig(
        model_name="armor-demo",
        text_config={
            "model_type": "llama",
            "vocab_size": _BYTE.vocab_size,
            "hidden_size": 256,
            "intermediate_size": 384,  # 1.5x: keeps the fp32 artifact under 20 MB with 2 adapter blocks
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 64,
            "patch_size": 8,  # 8 x 8 patches -> pixel shuffle 0.5 -> 16 LM tokens
            "attention_bias": True,
        },
        vq_config={
            "num_embeddings": 512,
            "embed_dim": 32,
            "latent_channels": 64,
            "base_channels": 32,
            "channel_multiplier": [1, 1, 1, 2],  # 8x down: 64 px <-> 8 x 8 = 64 codes
            "num_res_blocks": 1,
            "resolution": 64,
        },
        image_seq_length=16,
        adapter_num_layers=2,
        **_byte_ids(),
    )


def _internvit_300m() -> dict:
    """InternViT-300M-448px, the vision tower of InternVL2.5-1B to 8B."""
    return {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 448,
        "patch_size": 14,  # 32 x 32 patches -> pixel shuffle 0.5 -> 256 LM tokens
        "attention_bias": True,
        "layer_norm_eps": 1e-6,
        "norm_type": "layer_norm",
        "use_mean_pooling": True,  # no final LayerNorm, as in InternViT
    }


def _chameleon_vq() -> dict:
    """Chameleon's VQGAN (vqgan.yaml), generating at ARMOR's 256 px."""
    return {
        "num_embeddings": 8192,
        "embed_dim": 256,
        "latent_channels": 256,
        "base_channels": 128,
        "channel_multiplier": [1, 1, 2, 2, 4],
        "num_res_blocks": 2,
        "attn_resolutions": None,
        "resolution": 256,
    }


def armor_8b() -> ArmorConfig:
    return ArmorConfig(
        model_name="armor-8b",
        # InternLM2.5-7B-chat as transformers' InternVL conversion writes it (a Llama config).
        text_config={
            "model_type": "llama",
            "vocab_size": 92553,  # InternLM2's 92,544 + InternVL's added tokens
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1_000_000.0},
            "tie_word_embeddings": False,
        },
        vision_config=_internvit_300m(),
        vq_config=_chameleon_vq(),
        image_token_id=92546,  # <IMG_CONTEXT>
        image_seq_length=256,
        adapter_num_layers=3,  # 3 LM-sized blocks: ~0.65B of ARMOR's ~0.7B new parameters
        text_bos_id=1,
        text_eos_id=92542,  # <|im_end|>, InternLM2's chat stop token
        text_pad_id=0,
        tokenizer_kind="hf",
    )


def armor_1b() -> ArmorConfig:
    return ArmorConfig(
        model_name="armor-1b",
        # Qwen2.5-0.5B-Instruct as InternVL2.5-1B carries it: vocabulary resized to the tokenizer's 151,674
        # ids (Qwen2.5's 151,665 + InternVL's 9), input and output embeddings untied.
        text_config={
            "model_type": "qwen2",
            "vocab_size": 151674,
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
            "use_sliding_window": False,
            "tie_word_embeddings": False,
        },
        vision_config=_internvit_300m(),
        vq_config=_chameleon_vq(),
        image_token_id=151667,  # <IMG_CONTEXT> (<img> 151665, </img> 151666)
        image_seq_length=256,
        adapter_num_layers=3,
        text_bos_id=151643,  # Qwen2.5 has no BOS; <|endoftext|> stands in (it is also the pad token)
        text_eos_id=151645,  # <|im_end|>
        text_pad_id=151643,  # <|endoftext|>
        tokenizer_kind="hf",
    )


CONFIGS: dict[str, Callable[[], ArmorConfig]] = {
    "armor-tiny": armor_tiny,
    "armor-demo": armor_demo,
    "armor-1b": armor_1b,
    "armor-8b": armor_8b,
}


def get_config(name: str) -> ArmorConfig:
    """A fresh ``ArmorConfig`` for a named configuration."""
    try:
        config = CONFIGS[name]()
    except KeyError:
        raise KeyError(f"unknown ARMOR configuration {name!r}; known: {', '.join(CONFIGS)}") from None
    config.validate_armor()
    return config
