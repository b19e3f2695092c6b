"""Chameleon vqgan.ckpt key mapping: a synthetic state dict with taming's real key names and shapes.

The reference (``tests/helpers/taming.py``) writes down taming-transformers' Encoder/Decoder layout and decoder
forward pass independently of ``ArmorVQGAN``; the mapped module must decode exactly as the reference does.
"""

from __future__ import annotations

import pytest
import torch

from armor_ab.model import ArmorVQConfig, get_config
from armor_ab.model.vqgan import ArmorVQGAN, load_chameleon_vqgan, map_chameleon_vqgan_key
from tests.helpers.taming import taming_decode, taming_vqgan_shapes


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
