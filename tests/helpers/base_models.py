"""Tiny checkpoints in the real formats a user brings, written by the libraries that define those formats:

* an InternVL checkpoint written by transformers' own ``InternVLForConditionalGeneration.save_pretrained``
  (random weights), with a Llama or a Qwen2 language model, sharded like the real ones;
* a byte-level BPE tokenizer trained with the ``tokenizers`` library and saved by transformers in Hugging
  Face format (``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``), ChatML template with a
  default system turn (as Qwen2.5's has), InternVL's image tokens added as transformers' conversion adds them;
* a Chameleon VQGAN: ``vqgan.ckpt`` (a taming-transformers VQModel state dict under ``state_dict``, with the
  training-only ``loss.*`` keys) and ``vqgan.yaml`` in taming's layout, key names and shapes from
  ``tests/helpers/taming.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from armor_ab.model import ArmorVQConfig
from tests.helpers.taming import taming_vqgan_shapes

CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful catalog assistant."
    "<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONTROL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
INTERNVL_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>"]
CORPUS = [
    "The red running shoe is light, with a breathable mesh upper and a cushioned sole.",
    "Industrial pump, stainless steel housing, 2.2 kW motor, flow 120 litres per minute.",
    "What is this product? Describe it for a catalog page and draw a picture of it.",
    "Ergonomic office chair with lumbar support, adjustable height and breathable fabric.",
    "Specifications: weight 3.4 kg, voltage 230 V, protection IP65, warranty 2 years.",
]


def bpe_tokenizer(directory: Path, vocab_size: int = 400, with_internvl_tokens: bool = True):
    """A byte-level BPE trained here, saved by transformers; returns the loaded fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=CONTROL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
    if with_internvl_tokens:
        fast.add_tokens(INTERNVL_TOKENS, special_tokens=True)
    fast.save_pretrained(str(directory))
    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


@dataclass(frozen=True)
class BaseSizes:
    hidden: int = 64
    intermediate: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    vision_hidden: int = 32
    vision_layers: int = 1
    extra_rows: int = 0  # embedding rows past the tokenizer's ids (real checkpoints may pad the vocabulary)


def tiny_internvl(
    directory: Path,
    lm: str,
    sizes: BaseSizes = BaseSizes(),
    shards: int | None = None,
    seed: int = 0,
    with_internvl_tokens: bool = True,
    dtype: torch.dtype = torch.float32,
    tied: bool = False,
) -> Path:
    """An InternVL checkpoint as transformers writes it (config.json, safetensors, tokenizer), random weights.

    ``lm``: "llama" (InternLM2.5 as converted) or "qwen2" (q/k/v biases, as in InternVL2.5-1B/4B).
    ``shards``: split the weights into about that many safetensors files (an index is written).
    ``tied``: the output head shares the input embedding (Qwen2.5-0.5B's own setting); the checkpoint then
    has no lm_head tensor, as transformers writes tied weights once.
    """
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    directory.mkdir(parents=True, exist_ok=True)
    tok = bpe_tokenizer(directory, with_internvl_tokens=with_internvl_tokens)
    image_token = tok.convert_tokens_to_ids("<IMG_CONTEXT>") if with_internvl_tokens else len(tok) - 1
    text = {
        "model_type": lm,
        "vocab_size": len(tok) + sizes.extra_rows,
        "hidden_size": sizes.hidden,
        "intermediate_size": sizes.intermediate,
        "num_hidden_layers": sizes.layers,
        "num_attention_heads": sizes.heads,
        "num_key_value_heads": sizes.kv_heads,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": tied,
        "bos_token_id": None,
        "eos_token_id": tok.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tok.pad_token_id,
    }
    vision = {
        "hidden_size": sizes.vision_hidden,
        "intermediate_size": sizes.vision_hidden * 2,
        "num_hidden_layers": sizes.vision_layers,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,  # 4 x 4 patches -> pixel shuffle 0.5 -> 4 LM tokens
        "attention_bias": True,
        "norm_type": "layer_norm",
        "use_mean_pooling": True,
    }
    config = InternVLConfig(
        text_config=text, vision_config=vision, image_token_id=image_token, image_seq_length=4
    )
    config.tie_word_embeddings = tied
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InternVLForConditionalGeneration(config).to(dtype)
        # transformers initialises norms to 1 and biases to 0: perturb them so that a wrongly mapped or
        # dropped tensor changes the logits the invariant test compares.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name or name.endswith("bias") or "lambda" in name:
                    p.add_(torch.randn_like(p) * 0.1)
    if shards:
        total = sum(p.numel() * p.element_size() for p in model.parameters())
        for factor in (1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0):  # whole tensors per shard: find the size for N
            model.save_pretrained(directory, max_shard_size=max(int(total / shards * factor), 1))
            files = sorted(directory.glob("model-*.safetensors"))
            if len(files) == shards:
                break
            for f in files:
                f.unlink()
        else:
            raise AssertionError(f"cannot split this model into {shards} shards")
    else:
        model.save_pretrained(directory)
    return directory


def chameleon_vqgan(
    directory: Path, config: ArmorVQConfig | None = None, seed: int = 0, scale: float = 0.1
) -> Path:
    """``directory/vqgan.ckpt`` + ``directory/vqgan.yaml`` as Chameleon ships its image tokenizer."""
    cfg = config or ArmorVQConfig(
        num_embeddings=64,
        embed_dim=8,
        latent_channels=32,
        base_channels=32,
        channel_multiplier=[1, 1, 2],  # 4x down: 16 px <-> 4 x 4 = 16 codes
        num_res_blocks=1,
        resolution=16,
    )
    directory.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=gen) * scale for k, s in taming_vqgan_shapes(cfg).items()}
    torch.save({"state_dict": state, "global_step": 0}, directory / "vqgan.ckpt")
    ddconfig = {
        "double_z": False,
        "z_channels": cfg.latent_channels,
        "resolution": cfg.resolution,
        "in_channels": 3,
        "out_ch": 3,
        "ch": cfg.base_channels,
        "ch_mult": list(cfg.channel_multiplier),
        "num_res_blocks": cfg.num_res_blocks,
        "attn_resolutions": [],
        "dropout": 0.0,
    }
    spec = {
        "model": {
            "base_learning_rate": 4.5e-06,
            "target": "taming.models.vqgan.VQModel",
            "params": {
                "embed_dim": cfg.embed_dim,
                "n_embed": cfg.num_embeddings,
                "ddconfig": ddconfig,
                "lossconfig": {
                    "target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                    "params": {"disc_start": 0, "codebook_weight": 1.0},
                },
            },
        }
    }
    (directory / "vqgan.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return directory
