"""ARMOR configuration: InternVL (vision + projector + LM) plus the ARMOR parts and a Chameleon-style VQGAN.

One config dataclass per concern, all transformers ``PreTrainedConfig`` subclasses so that
``save_pretrained`` / ``from_pretrained`` round-trip them as one ``config.json``:

* ``vision_config`` - ``InternVLVisionConfig`` (InternViT), unchanged from InternVL.
* ``text_config``   - the base LM's config: ``LlamaConfig`` or ``Qwen2Config`` (``SUPPORTED_LMS``). InternVL2.5-2B
  and 8B use InternLM2.5; transformers has no InternLM2 class, and its InternVL conversion maps InternLM2 onto
  Llama (InternLM2 is a Llama with a fused ``wqkv``, split at conversion). InternVL2.5-1B and 4B use
  Qwen2.5, a Qwen2 (q/k/v biases). The adapter's blocks follow the same class.
* ``vq_config``     - ``ArmorVQConfig`` (Chameleon's VQGAN hyper-parameters: codebook 8192, 16x down).
* ``ArmorConfig`` itself extends ``InternVLConfig`` (projector, image placeholder token) with the ARMOR parts:
  adapter depth and the layout of the extended vocabulary.

Extended vocabulary (token ids):

    [0, V)                  original text vocabulary (frozen rows; InternVL's own embedding and lm_head)
    [V, V + N)              N image codes (VQGAN codebook entries)
    V + N                   <imgend>
    V + N + 1               <imgpad>
    V + N + 2               <imgbos>

The order puts codes, <imgend> and <imgpad> side by side, so the visual head's output index ``j`` is simply
token ``V + j``; the text head is the text vocabulary plus one extra row for <imgbos>.
"""

from __future__ import annotations

import hashlib
import json

from transformers import InternVLConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto import AutoConfig
from transformers.models.chameleon.configuration_chameleon import ChameleonVQVAEConfig
from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

SUPPORTED_LMS = ("llama", "qwen2")  # text_config.model_type values the adapter and the engines support


class ArmorVQConfig(ChameleonVQVAEConfig):
    """Chameleon's VQGAN hyper-parameters (taming-transformers VQGAN), plus the decoder's output channels.

    ``resolution`` is the generated image size in pixels; the code grid is ``resolution / 2**(levels - 1)``
    per side (Chameleon: 5 levels, 16x down; 256 px -> 16 x 16 = 256 codes per image).
    """

    model_type = "armor_vqgan"
    out_channels: int = 3  # read by transformers' JanusVQVAEDecoder

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_multiplier) - 1)

    @property
    def grid_size(self) -> int:
        """Codes per side of the (square) code grid."""
        return self.resolution // self.downsample_factor


class ArmorConfig(InternVLConfig):
    """InternVL + ARMOR: extended embeddings, adapter, visual head, text head with <imgbos>, VQGAN decoder."""

    model_type = "armor"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "vision_config": InternVLVisionConfig,
        "vq_config": ArmorVQConfig,
    }

    vq_config: dict | PreTrainedConfig | None = None
    adapter_num_layers: int = 3  # transformer blocks between the LM and the visual head
    # Special ids of the text tokenizer (bos/eos/pad live in [0, V)); names avoid GenerationConfig's keys.
    text_bos_id: int = 1
    text_eos_id: int = 2
    text_pad_id: int = 0
    tokenizer_kind: str = "byte"  # "byte": tokenizer.ByteTokenizer; "hf": the base's own (hf_tokenizer.py)
    model_name: str = "armor"  # the named configuration this was built from, recorded in content metadata
    tie_word_embeddings: bool = False  # InternVL2.5-8B's LM keeps separate input and output embeddings

    # --- extended vocabulary layout (derived, never stored) ---
    @property
    def text_vocab_size(self) -> int:
        return self.text_config.vocab_size

    @property
    def num_image_codes(self) -> int:
        return self.vq_config.num_embeddings

    @property
    def codes_per_image(self) -> int:
        return self.vq_config.grid_size**2

    @property
    def image_size(self) -> int:
        """Generated image side in pixels."""
        return self.vq_config.resolution

    @property
    def code_offset(self) -> int:
        return self.text_vocab_size

    @property
    def imgend_id(self) -> int:
        return self.text_vocab_size + self.num_image_codes

    @property
    def imgpad_id(self) -> int:
        return self.text_vocab_size + self.num_image_codes + 1

    @property
    def imgbos_id(self) -> int:
        return self.text_vocab_size + self.num_image_codes + 2

    @property
    def num_new_tokens(self) -> int:
        """Rows added to the embedding: the codes and <imgend>, <imgpad>, <imgbos>."""
        return self.num_image_codes + 3

    @property
    def vocab_size_total(self) -> int:
        return self.text_vocab_size + self.num_new_tokens

    @property
    def text_head_size(self) -> int:
        return self.text_vocab_size + 1  # + <imgbos>

    @property
    def visual_head_size(self) -> int:
        return self.num_image_codes + 2  # + <imgend>, <imgpad>

    @property
    def input_image_size(self) -> int:
        """Side in pixels of an image for the understanding path (the ViT's input)."""
        return self.vision_config.image_size[0]

    def config_hash(self) -> str:
        """A short, stable hash of everything that shapes the model (recorded in content metadata)."""
        blob = json.dumps(_without_volatile(self.to_dict()), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def validate_armor(self) -> None:
        """Check that the parts fit together (placeholder count, special ids inside the text vocab)."""
        if self.text_config.model_type not in SUPPORTED_LMS:
            raise ValueError(
                f"text_config.model_type {self.text_config.model_type!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_LMS)})"
            )
        if getattr(self.text_config, "use_sliding_window", False):
            raise ValueError("sliding-window attention in the language model is not supported")
        vision = self.vision_config
        patches = (vision.image_size[0] // vision.patch_size[0]) ** 2
        expected = int(patches * self.downsample_ratio**2)
        if self.image_seq_length != expected:
            raise ValueError(f"image_seq_length={self.image_seq_length}, but the ViT gives {expected} tokens")
        for name in ("text_bos_id", "text_eos_id", "text_pad_id", "image_token_id"):
            if not 0 <= getattr(self, name) < self.text_vocab_size:
                raise ValueError(f"{name} must be a text token id (< {self.text_vocab_size})")
        if self.vq_config.resolution % self.vq_config.downsample_factor:
            raise ValueError("vq_config.resolution must be a multiple of the VQGAN's downsampling factor")


# Keys that record how a config was saved or loaded, not what the model is.
_VOLATILE = frozenset({"transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype"})


def _without_volatile(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in _VOLATILE}
    return value


# Known to transformers' Auto classes, so that AutoTokenizer / AutoConfig can read an ARMOR directory's
# config.json (AutoTokenizer opens it to pick a tokenizer class) instead of warning about an unknown type.
AutoConfig.register(ArmorConfig.model_type, ArmorConfig, exist_ok=True)
AutoConfig.register(ArmorVQConfig.model_type, ArmorVQConfig, exist_ok=True)
