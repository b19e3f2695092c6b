"""taming-transformers' VQGAN (Chameleon's ``vqgan.ckpt``) written down independently of ``ArmorVQGAN``: its
state-dict key names and shapes, and its decoder's forward pass on raw tensors. Tests build Chameleon-format
checkpoints from these and check that our module decodes exactly as taming does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from armor_ab.model import ArmorVQConfig


def taming_vqgan_shapes(cfg: ArmorVQConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a taming VQModel state dict (Chameleon's vqgan.ckpt), attn_resolutions empty."""
    ch, mult, nres, z = (
        cfg.base_channels,
        tuple(cfg.channel_multiplier),
        cfg.num_res_blocks,
        cfg.latent_channels,
    )
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def norm(name: str, c: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c,), (c,)

    def resnet(name: str, cin: int, cout: int) -> None:
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cin, cout, 1)

    def attn(name: str, c: int) -> None:
        norm(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", c, c, 1)

    levels = len(mult)
    conv("encoder.conv_in", 3, ch, 3)
    block_in = ch
    for i in range(levels):
        for j in range(nres):
            resnet(f"encoder.down.{i}.block.{j}", block_in, ch * mult[i])
            block_in = ch * mult[i]
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
    resnet("encoder.mid.block_1", block_in, block_in)
    attn("encoder.mid.attn_1", block_in)
    resnet("encoder.mid.block_2", block_in, block_in)
    norm("encoder.norm_out", block_in)
    conv("encoder.conv_out", block_in, z, 3)
    conv("quant_conv", z, cfg.embed_dim, 1)
    shapes["quantize.embedding.weight"] = (cfg.num_embeddings, cfg.embed_dim)
    conv("post_quant_conv", cfg.embed_dim, z, 1)
    block_in = ch * mult[-1]
    conv("decoder.conv_in", z, block_in, 3)
    resnet("decoder.mid.block_1", block_in, block_in)
    attn("decoder.mid.attn_1", block_in)
    resnet("decoder.mid.block_2", block_in, block_in)
    for i in reversed(range(levels)):  # taming: self.up.insert(0, up) -> up.{i} is resolution level i
        for j in range(nres + 1):
            resnet(f"decoder.up.{i}.block.{j}", block_in, ch * mult[i])
            block_in = ch * mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
    norm("decoder.norm_out", block_in)
    conv("decoder.conv_out", block_in, 3, 3)
    shapes["loss.discriminator.main.0.weight"] = (64, 3, 4, 4)  # training-only, must be dropped
    return shapes


def taming_decode(sd: dict[str, torch.Tensor], codes: torch.Tensor, cfg: ArmorVQConfig) -> torch.Tensor:
    """taming's Decoder.forward on raw state-dict tensors."""

    def conv(x: torch.Tensor, name: str) -> torch.Tensor:
        w = sd[f"{name}.weight"]
        return F.conv2d(x, w, sd[f"{name}.bias"], padding=w.shape[-1] // 2)

    def gn(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.group_norm(x, 32, sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6)

    def resnet(x: torch.Tensor, name: str) -> torch.Tensor:
        h = conv(F.silu(gn(x, f"{name}.norm1")), f"{name}.conv1")
        h = conv(F.silu(gn(h, f"{name}.norm2")), f"{name}.conv2")
        if f"{name}.nin_shortcut.weight" in sd:
            x = conv(x, f"{name}.nin_shortcut")
        return x + h

    def attn(x: torch.Tensor, name: str) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = gn(x, f"{name}.norm")
        q, k, v = (conv(h, f"{name}.{p}").reshape(b, c, hh * ww) for p in "qkv")
        w = torch.softmax(q.transpose(1, 2) @ k * c**-0.5, dim=-1)  # (b, hw, hw)
        out = (v @ w.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + conv(out, f"{name}.proj_out")

    g = cfg.grid_size
    z = sd["quantize.embedding.weight"][codes].view(codes.shape[0], g, g, -1).permute(0, 3, 1, 2)
    h = conv(conv(z, "post_quant_conv"), "decoder.conv_in")
    h = resnet(attn(resnet(h, "decoder.mid.block_1"), "decoder.mid.attn_1"), "decoder.mid.block_2")
    levels = len(cfg.channel_multiplier)
    for i in reversed(range(levels)):
        for j in range(cfg.num_res_blocks + 1):
            h = resnet(h, f"decoder.up.{i}.block.{j}")
        if i != 0:
            h = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), f"decoder.up.{i}.upsample.conv")
    return conv(F.silu(gn(h, "decoder.norm_out")), "decoder.conv_out")
