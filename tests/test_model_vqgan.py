"""Chameleon vqgan.ckpt key mapping: a synthetic state dict with taming's real key names and shapes.

The reference below writes down taming-transformers' Encoder/Decoder layout and decoder forward pass
independently of ``ArmorVQGAN``; the mapped module must decode exactly as the reference does.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from armor_ab.model import ArmorVQConfig, get_config
from armor_ab.model.vqgan import ArmorVQGAN, load_chameleon_vqgan, map_chameleon_vqgan_key


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


def test_chameleon_vqgan_keys_load_and_decode_like_taming() -> None:
    # Unequal channel multipliers so that a wrong level order cannot load by accident.
    cfg = ArmorVQConfig(
        num_embeddings=64,
        embed_dim=8,
        latent_channels=32,
        base_channels=32,
        channel_multiplier=[1, 2],
        num_res_blocks=1,
        resolution=8,
    )
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=gen) * 0.1 for k, s in taming_vqgan_shapes(cfg).items()}
    vq = ArmorVQGAN(cfg)
    report = load_chameleon_vqgan(vq, sd)
    assert report.dropped == ["loss.discriminator.main.0.weight"]
    assert not report.missing and not report.unexpected
    # taming level 0 (full resolution, runs last) is the last level of Janus' decoder.
    assert torch.equal(vq.decoder.up[1].block[0].conv1.weight, sd["decoder.up.0.block.0.conv1.weight"])
    assert torch.equal(vq.quantize.embedding.weight, sd["quantize.embedding.weight"])
    codes = torch.randint(0, 64, (2, cfg.grid_size**2), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(vq.decode(codes), taming_decode(sd, codes, cfg), rtol=1e-4, atol=1e-5)
        assert vq.encode(torch.zeros(1, 3, 8, 8)).shape == (1, cfg.grid_size**2)


def test_decoder_only_checkpoint_and_prefixes() -> None:
    cfg = get_config("armor-tiny").vq_config
    shapes = taming_vqgan_shapes(cfg)
    sd = {
        f"model.vqmodel.{k}": torch.zeros(s)
        for k, s in shapes.items()
        if not k.startswith(("encoder", "quant_conv"))
    }
    report = load_chameleon_vqgan(ArmorVQGAN(cfg), {"state_dict": sd})
    assert all(name.startswith(("encoder.", "quant_conv.")) for name in report.missing)
    with pytest.raises(ValueError):
        load_chameleon_vqgan(ArmorVQGAN(cfg), {"decoder.conv_in.weight": torch.zeros(1)})


def test_armor_8b_vqgan_shapes_match_chameleon_on_meta() -> None:
    cfg = get_config("armor-8b").vq_config
    with torch.device("meta"):
        own = {k: tuple(v.shape) for k, v in ArmorVQGAN(cfg).state_dict().items()}
    mapped = {}
    for key, shape in taming_vqgan_shapes(cfg).items():
        name = map_chameleon_vqgan_key(key, len(cfg.channel_multiplier))
        if name is not None:
            assert own[name] == shape, key
            mapped[name] = shape
    assert mapped == own  # every tensor of the 8b VQGAN comes from the checkpoint
    assert own["quantize.embedding.weight"] == (8192, 256)
