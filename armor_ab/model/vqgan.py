"""Chameleon-style VQGAN (taming-transformers layout) built from transformers' own blocks.

* encoder, quantizer: ``ChameleonVQVAEEncoder`` / ``ChameleonVQVAEVectorQuantizer`` (transformers ships
  Chameleon's VQGAN encoder only: Chameleon there reads images but never draws them);
* decoder: ``JanusVQVAEDecoder`` - the same taming decoder (conv_in, mid.block_1/attn_1/block_2, up levels
  of ``num_res_blocks + 1`` ResNet blocks, norm_out, conv_out). Two differences from Chameleon, handled here:
  Janus (LlamaGen lineage) adds attention to the lowest-resolution up level, which Chameleon does not have
  (``attn_resolutions`` is empty), so those blocks are dropped; and Janus L2-normalises codebook vectors
  before decoding, Chameleon does not, so ``decode`` looks the codebook up directly.

``load_chameleon_vqgan`` maps the key names of Chameleon's original ``vqgan.ckpt`` onto this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers.models.chameleon.modeling_chameleon import (
    ChameleonVQVAEEncoder,
    ChameleonVQVAEVectorQuantizer,
)
from transformers.models.janus.modeling_janus import JanusVQVAEDecoder

from .configuration import ArmorVQConfig


class ArmorVQGAN(nn.Module):
    """Images <-> grids of codebook indices. Pixels are in [-1, 1], codes are row-major (B, grid * grid)."""

    def __init__(self, config: ArmorVQConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ChameleonVQVAEEncoder(config)
        self.quant_conv = nn.Conv2d(config.latent_channels, config.embed_dim, 1)
        self.quantize = ChameleonVQVAEVectorQuantizer(config)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.latent_channels, 1)
        self.decoder = JanusVQVAEDecoder(config)

        # Janus' decoder lists up levels in the order it runs them (0 = lowest resolution) and always has
        # attention at that lowest level; keep it only where attn_resolutions asks for it.
        levels = len(config.channel_multiplier)
        wanted = set(config.attn_resolutions or []) if config.attn_type == "vanilla" else set()
        lowest_res = config.resolution // 2 ** (levels - 1)
        if wanted - {lowest_res}:
            raise ValueError(
                f"decoder attention is only supported at the lowest resolution ({lowest_res} px)"
            )
        if lowest_res not in wanted:
            self.decoder.up[0].attn = nn.ModuleList()

    @property
    def grid_size(self) -> int:
        return self.config.grid_size

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> codes (B, grid * grid)."""
        h = self.quant_conv(self.encoder(pixels))  # (B, E, g, g)
        _, _, codes = self.quantize(h)  # (B * g * g,)
        return codes.view(pixels.shape[0], -1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, grid * grid) -> pixels (B, 3, H, W), nominally in [-1, 1]."""
        batch, n = codes.shape
        g = self.grid_size
        if n != g * g:
            raise ValueError(f"expected {g * g} codes per image, got {n}")
        z = self.quantize.embedding(codes)  # (B, g*g, E)
        z = z.view(batch, g, g, -1).permute(0, 3, 1, 2).contiguous()  # (B, E, g, g)
        return self.decoder(self.post_quant_conv(z))  # (B, 3, H, W)


# --- Chameleon vqgan.ckpt key mapping -----------------------------------------------------------------------
#
# Chameleon's tokenizer/vqgan.ckpt is a taming-transformers VQModel state dict. Names are identical to this
# module's except for one thing: taming's Decoder builds ``up`` with ``insert(0, ...)``, so ``decoder.up.i`` is
# resolution level i (0 = full resolution), while Janus' decoder appends levels in execution order
# (0 = lowest resolution). Hence ``decoder.up.{i}.* -> decoder.up.{levels - 1 - i}.*``.
#
#   quantize.embedding.weight            -> quantize.embedding.weight             (8192, 256)
#   quant_conv.*, post_quant_conv.*      -> same
#   encoder.*                            -> same (transformers' Chameleon encoder kept taming's names)
#   decoder.conv_in / mid.* / norm_out / conv_out -> same
#   decoder.up.{i}.block.{j}.{norm1,conv1,norm2,conv2,nin_shortcut}.* -> decoder.up.{L-1-i}.block.{j}.*
#   decoder.up.{i}.attn.{j}.*            -> decoder.up.{L-1-i}.attn.{j}.*  (none in Chameleon)
#   decoder.up.{i}.upsample.conv.*       -> decoder.up.{L-1-i}.upsample.conv.*
#   loss.*  (discriminator, LPIPS)       -> dropped
#
# Prefixes some exports add ("state_dict." wrappers are unwrapped by the caller, "model.vqmodel." from the HF
# conversion, "vqmodel.") are stripped.

_UP = re.compile(r"^decoder\.up\.(\d+)\.")
_PREFIXES = ("model.vqmodel.", "vqmodel.", "first_stage_model.")


def map_chameleon_vqgan_key(key: str, num_levels: int) -> str | None:
    """The ``ArmorVQGAN`` parameter name for a Chameleon ``vqgan.ckpt`` key, or None to drop it."""
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    if key.startswith("loss."):
        return None
    match = _UP.match(key)
    if match:
        level = int(match.group(1))
        key = f"decoder.up.{num_levels - 1 - level}." + key[match.end() :]
    return key


@dataclass
class VQGANLoadReport:
    loaded: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # training-only keys (loss.*)
    unexpected: list[str] = field(default_factory=list)  # mapped names this module does not have
    missing: list[str] = field(default_factory=list)  # module parameters the state dict did not provide


def load_chameleon_vqgan(
    vqgan: ArmorVQGAN, state_dict: Mapping[str, torch.Tensor], strict: bool = True
) -> VQGANLoadReport:
    """Copy a Chameleon-style VQGAN state dict into ``vqgan`` (shapes checked). ``strict`` also requires
    that every decoder / codebook tensor is provided; the encoder may be absent (decoding needs no encoder)."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]  # a Lightning checkpoint as saved by taming
    levels = len(vqgan.config.channel_multiplier)
    own = vqgan.state_dict()
    report = VQGANLoadReport()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = map_chameleon_vqgan_key(key, levels)
        if name is None:
            report.dropped.append(key)
        elif name not in own:
            report.unexpected.append(key)
        elif tuple(own[name].shape) != tuple(value.shape):
            raise ValueError(f"{key} -> {name}: shape {tuple(value.shape)} != {tuple(own[name].shape)}")
        else:
            mapped[name] = value
            report.loaded.append(key)
    report.missing = [name for name in own if name not in mapped]
    needed = [n for n in report.missing if not n.startswith(("encoder.", "quant_conv."))]
    if strict and (needed or report.unexpected):
        raise ValueError(
            f"VQGAN state dict mismatch: missing {needed[:8]}, unexpected {report.unexpected[:8]}"
        )
    vqgan.load_state_dict(mapped, strict=False)
    return report


# --- Chameleon's tokenizer/ directory: vqgan.ckpt + vqgan.yaml ----------------------------------------------

# taming's ddconfig / params names -> ArmorVQConfig's (ChameleonVQVAEConfig's) names.
_YAML_DDCONFIG = {
    "z_channels": "latent_channels",
    "resolution": "resolution",
    "in_channels": "in_channels",
    "out_ch": "out_channels",
    "ch": "base_channels",
    "ch_mult": "channel_multiplier",
    "num_res_blocks": "num_res_blocks",
    "attn_resolutions": "attn_resolutions",
    "dropout": "dropout",
    "double_z": "double_latent",
}


class VQGANFileError(ValueError):
    """A Chameleon VQGAN checkpoint or its yaml is missing or not in taming's layout."""


def chameleon_vqgan_files(path: str | Path) -> tuple[Path, Path]:
    """(vqgan.ckpt, vqgan.yaml) for PATH: the checkpoint file (its yaml beside it) or their directory."""
    path = Path(path)
    if path.is_dir():
        ckpt, spec = path / "vqgan.ckpt", path / "vqgan.yaml"
    else:
        ckpt = path
        spec = next((p for p in (path.with_suffix(".yaml"), path.parent / "vqgan.yaml") if p.exists()),
                    path.with_suffix(".yaml"))
    for p, what in ((ckpt, "checkpoint"), (spec, "yaml (hyper-parameters)")):
        if not p.is_file():
            raise VQGANFileError(f"{p}: the VQGAN {what} is missing (Chameleon ships tokenizer/vqgan.ckpt "
                                 "with tokenizer/vqgan.yaml)")
    return ckpt, spec


def vq_config_from_chameleon_yaml(path: str | Path) -> ArmorVQConfig:
    """ArmorVQConfig from taming's VQModel yaml: ``model.params.{embed_dim, n_embed, ddconfig}``."""
    import yaml

    try:
        spec = yaml.safe_load(Path(path).read_text())
        params = spec["model"]["params"]
        dd = params["ddconfig"]
        values = {"embed_dim": int(params["embed_dim"]), "num_embeddings": int(params["n_embed"])}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise VQGANFileError(
            f"{path}: not a taming VQModel yaml (model.params.embed_dim, n_embed, ddconfig): {exc!r}"
        ) from exc
    for key, name in _YAML_DDCONFIG.items():
        if key in dd:
            values[name] = list(dd[key]) if isinstance(dd[key], list | tuple) else dd[key]
    missing = {"ch", "ch_mult", "num_res_blocks", "z_channels", "resolution"} - set(dd)
    if missing:
        raise VQGANFileError(f"{path}: model.params.ddconfig lacks {', '.join(sorted(missing))}")
    if values.get("double_latent"):
        raise VQGANFileError(f"{path}: double_z is true, which is a VAE, not a VQGAN")
    return ArmorVQConfig(**values)


def read_chameleon_state_dict(ckpt: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a vqgan.ckpt (unwrapping Lightning's ``state_dict``), loaded without unpickling code."""
    try:
        data = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file; all mean the same
        raise VQGANFileError(f"{ckpt}: cannot read the VQGAN checkpoint ({exc})") from exc
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise VQGANFileError(f"{ckpt}: expected a state dict of tensors (optionally under 'state_dict')")
    return dict(data)
