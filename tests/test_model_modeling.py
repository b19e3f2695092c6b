"""The model's parts: frozen embedding rows, the understanding path, the cached steps vs. the full forward."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from armor_ab.model import ArmorForInterleavedGeneration, ByteTokenizer, TorchBackend, get_config
from armor_ab.model.cache import position_ids_from_valid


@pytest.fixture(scope="module")
def tiny() -> ArmorForInterleavedGeneration:
    torch.manual_seed(0)
    return ArmorForInterleavedGeneration(get_config("armor-tiny")).eval()


def _interleaved_batch(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """A sequence with text, an image (imgbos, N codes, imgend) and text again."""
    tok = ByteTokenizer()
    codes = [cfg.code_offset + (i * 7) % cfg.num_image_codes for i in range(cfg.codes_per_image)]
    seq = (
        tok.chat_prompt("a shoe")
        + tok.encode("Here:")
        + [cfg.imgbos_id, *codes, cfg.imgend_id]
        + [tok.eos_id]
    )
    ids = torch.tensor([seq])
    return ids, ids.clone()


def test_frozen_original_rows_get_no_gradient(tiny: ArmorForInterleavedGeneration) -> None:
    model = tiny.train()
    try:
        for stage in (3, 1):
            model.set_wohg_stage(stage)
            model.zero_grad(set_to_none=True)
            ids, labels = _interleaved_batch(model.config)
            out = model(ids, labels=labels)
            assert out.text_loss > 0 and out.image_loss > 0
            out.loss.backward()
            frozen = model.model.language_model.embed_tokens.weight
            assert not frozen.requires_grad
            assert frozen.grad is None or not frozen.grad.any()  # original text rows: zero gradient
            new = model.image_token_embed.weight.grad
            assert new is not None and new.abs().sum() > 0  # new rows (codes, specials) do learn
            used_code_rows = new[: model.config.num_image_codes].abs().sum(-1) > 0
            assert used_code_rows.any()
            assert (
                model.model.language_model.layers[0].mlp.up_proj.weight.grad is None
            )  # decoder layers frozen
            assert model.model.vision_tower.embeddings.cls_token.grad is None
            adapter_grad = model.adapter.layers[0].mlp.up_proj.weight.grad
            if stage == 3:
                assert adapter_grad is not None and adapter_grad.abs().sum() > 0
            else:  # stage 1 trains only the new rows and the text head
                assert adapter_grad is None and model.visual_head.weight.grad is None
                assert model.lm_head.weight.grad.abs().sum() > 0
    finally:
        model.set_wohg_stage(3)
        model.zero_grad(set_to_none=True)
        model.eval()


def _image_prompt(cfg, tok: ByteTokenizer) -> torch.Tensor:
    return torch.tensor([tok.chat_prompt("What is this?", image_seq_length=cfg.image_seq_length)])


def test_understanding_path_uses_the_image(tiny: ArmorForInterleavedGeneration) -> None:
    cfg, tok = tiny.config, ByteTokenizer()
    ids = _image_prompt(cfg, tok)
    size = cfg.input_image_size
    from armor_ab.model.images import preprocess_image

    red = preprocess_image(Image.new("RGB", (50, 40), (220, 20, 20)), size)[None]
    noise = preprocess_image(torch.rand(3, 20, 20), size)[None]  # a tensor image, resized
    with torch.no_grad():
        feats = tiny.image_features(red)
        assert feats.shape == (1, cfg.image_seq_length, cfg.text_config.hidden_size)
        h_red = tiny(ids, pixel_values=red).hidden_states
        h_noise = tiny(ids, pixel_values=noise).hidden_states
        h_none = tiny(ids).hidden_states  # placeholders left as their token embedding
    first = int((ids[0] == cfg.image_token_id).nonzero()[0])
    assert torch.equal(h_red[:, :first], h_noise[:, :first])  # causal: nothing before the image changes
    assert not torch.allclose(h_red[:, -1], h_noise[:, -1])  # the answer position sees the image
    assert not torch.allclose(h_red[:, -1], h_none[:, -1])
    with pytest.raises(ValueError):
        tiny(ids[:, :-8][:, : first + 1], pixel_values=red)  # placeholder count must match the features


def test_cached_steps_equal_the_full_forward(tiny: ArmorForInterleavedGeneration) -> None:
    """Prefill a left-padded batch in chunks through the fixed KV cache; logits must match forward()."""
    model = tiny.double()
    try:
        cfg = model.config
        ids, _ = _interleaved_batch(cfg)
        short = ids[:, 5:]
        batch = torch.full((2, ids.shape[1]), cfg.text_pad_id)
        batch[0] = ids[0]
        batch[1, 5:] = short[0]
        valid = batch != cfg.text_pad_id
        valid[1, :5] = False
        with torch.no_grad():
            ref = model(batch, attention_mask=valid.long())
            be = TorchBackend(model)
            be.allocate(2, batch.shape[1] + 4)
            pos = position_ids_from_valid(valid)
            rows = slice(0, 2)
            split = 10
            h1 = be.prefill(be.embed(batch[:, :split]), pos[:, :split], valid[:, :split], rows, 0)
            steps = [
                be.decode_step(batch[:, t], pos[:, t], valid[:, : t + 1], rows, t)[:, None]
                for t in range(split, batch.shape[1])
            ]
            h = torch.cat([h1, *steps], dim=1)
            a = torch.cat(
                [
                    be.adapter(h[:, :split], pos[:, :split], valid[:, :split], rows, 0),
                    be.adapter(h[:, split:], pos[:, split:], valid, rows, split),
                ],
                dim=1,
            )
        keep = valid[..., None]
        torch.testing.assert_close(be.text_head(h) * keep, ref.text_logits * keep)
        torch.testing.assert_close(be.visual_head(a) * keep, ref.visual_logits * keep)
        # Padding must not change the short row: same logits as the row alone.
        with torch.no_grad():
            alone = model(short)
        torch.testing.assert_close(ref.visual_logits[1, 5:], alone.visual_logits[0])
    finally:
        tiny.float()


def test_own_mask_matches_transformers_causal_mask(tiny: ArmorForInterleavedGeneration) -> None:
    ids, _ = _interleaved_batch(tiny.config)
    with torch.no_grad():
        ours = tiny(ids).hidden_states
        theirs = tiny.model.language_model(inputs_embeds=tiny.embed(ids)).last_hidden_state  # its own mask
    torch.testing.assert_close(ours, theirs)
