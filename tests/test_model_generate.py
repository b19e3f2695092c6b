"""Interleaved generation: the forward-switching state machine, the KV cache, CFG, seeds, save/load."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from armor_ab.model import (
    ArmorForInterleavedGeneration,
    InterleavedContent,
    InterleavedGenerator,
    SamplingConfig,
    get_config,
    load_model,
    save_model,
)
from armor_ab.model.generate import unconditional_ids
from armor_ab.model.sampling import apply_repetition_penalty, sample_token
from armor_ab.model.tokenizer import ByteTokenizer

PROMPTS = ["red running shoe", "a blue ceramic mug, handmade"]


@pytest.fixture(scope="module")
def loaded():
    return load_model("armor-tiny", seed=0)


@pytest.fixture(scope="module")
def gen(loaded) -> InterleavedGenerator:
    return InterleavedGenerator.from_model(loaded.model, loaded.tokenizer)


def _force_images(cfg, **kw) -> SamplingConfig:
    """Bias the text head toward <imgbos> so that the random tiny model draws images."""
    return SamplingConfig(text_logit_bias={cfg.imgbos_id: 30.0}, **kw)


def _check_state_machine(tokens: list[int], cfg, max_images: int) -> int:
    """Walk the generated ids: text-mode ids are text/<imgbos>/<eos>, images are exactly N codes + <imgend>."""
    v, n = cfg.text_vocab_size, cfg.codes_per_image
    i, images = 0, 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == cfg.imgbos_id:
            body = tokens[i + 1 : i + 1 + n]
            assert len(body) == n and all(
                cfg.code_offset <= c < cfg.code_offset + cfg.num_image_codes for c in body
            )
            assert tokens[i + 1 + n] == cfg.imgend_id  # forced right after the N-th code
            images += 1
            i += n + 2
        else:
            assert tok < v, f"image token {tok} sampled in text mode"
            i += 1
    assert images <= max_images
    return images


def test_forward_switching_state_machine(gen: InterleavedGenerator) -> None:
    cfg = gen.backend.config
    seen: list[tuple[int, str]] = []
    s = _force_images(cfg, max_new_tokens=12, max_images=2, guidance_scale=3.0)
    result = gen.generate(PROMPTS, settings=s, on_segment=lambda row, seg: seen.append((row, seg.type)))
    for row, (content, tokens) in enumerate(zip(result.contents, result.tokens, strict=True)):
        assert _check_state_machine(tokens, cfg, max_images=2) == 2  # the bias makes both images happen
        assert len(content.images) == 2
        for image in content.images:
            assert len(image.codes) == cfg.codes_per_image
            assert (image.width, image.height) == (cfg.image_size, cfg.image_size)
        assert [t for r, t in seen if r == row] == [seg.type for seg in content.segments]  # streamed in order
        text_head_tokens = [t for t in tokens if t < cfg.text_vocab_size or t == cfg.imgbos_id]
        assert len(text_head_tokens) <= s.max_new_tokens

    # max_images=0: <imgbos> is banned however hard the text head wants it.
    none = gen.generate(PROMPTS, settings=_force_images(cfg, max_new_tokens=8, max_images=0))
    for tokens in none.tokens:
        assert _check_state_machine(tokens, cfg, max_images=0) == 0
        assert len(tokens) == 8


@pytest.fixture()
def gen64(loaded):
    """The tiny model in float64, so greedy decoding cannot flip on rounding between two code paths."""
    model = loaded.model.double()
    yield InterleavedGenerator.from_model(model, loaded.tokenizer)
    loaded.model.float()


def test_kv_cache_equals_recomputing_the_whole_sequence(gen64: InterleavedGenerator) -> None:
    cfg = gen64.backend.config
    images = [None, Image.new("RGB", (32, 32), (10, 200, 30))]  # batch with and without an input image
    greedy = dict(temperature=0.0, image_temperature=0.0, max_new_tokens=10, max_images=2, guidance_scale=2.5)
    bias = {cfg.imgbos_id: 4.0}  # images appear, but not at the first step
    cached = gen64.generate(PROMPTS, images, SamplingConfig(text_logit_bias=bias, **greedy))
    recomputed = gen64.generate(
        PROMPTS, images, SamplingConfig(text_logit_bias=bias, use_cache=False, **greedy)
    )
    assert cached.tokens == recomputed.tokens
    assert any(cfg.imgbos_id in t for t in cached.tokens) and any(cfg.imgend_id in t for t in cached.tokens)
    segments = [[seg.to_json() for seg in c.segments] for c in cached.contents]
    assert segments == [[seg.to_json() for seg in c.segments] for c in recomputed.contents]
    # Batching (left padding) does not change a row: the second prompt alone gives the same tokens.
    alone = gen64.generate(PROMPTS[1:], images[1:], SamplingConfig(text_logit_bias=bias, **greedy))
    assert alone.tokens[0] == cached.tokens[1]


def _reference_greedy(
    model: ArmorForInterleavedGeneration, tok: ByteTokenizer, prompt: str, steps: int, bias: float
) -> list[int]:
    """Plain conditional greedy decoding with the full forward pass and no CFG, written independently."""
    cfg = model.config
    seq = tok.chat_prompt(prompt)
    out: list[int] = []
    codes_left = 0
    with torch.no_grad():
        while len(out) < steps:
            res = model(torch.tensor([seq]))
            if codes_left:
                nxt = cfg.code_offset + int(res.visual_logits[0, -1, : cfg.num_image_codes].argmax())
                codes_left -= 1
            elif out and out[-1] >= cfg.code_offset and out[-1] < cfg.imgend_id:
                nxt = cfg.imgend_id
            else:
                logits = res.text_logits[0, -1].clone()
                logits[cfg.text_vocab_size] += bias
                logits[[cfg.text_pad_id, cfg.image_token_id]] = float("-inf")
                if cfg.imgend_id in out:
                    logits[cfg.text_vocab_size] = float("-inf")
                idx = int(logits.argmax())
                nxt = cfg.imgbos_id if idx == cfg.text_vocab_size else idx
                codes_left = cfg.codes_per_image if nxt == cfg.imgbos_id else 0
            out.append(nxt)
            seq.append(nxt)
            if nxt == cfg.text_eos_id:
                break
    return out


def test_guidance_scale_one_is_plain_conditional_sampling(gen64: InterleavedGenerator) -> None:
    cfg = gen64.backend.config
    calls = []
    s = SamplingConfig(
        temperature=0.0,
        image_temperature=0.0,
        max_new_tokens=6,
        max_images=1,
        guidance_scale=1.0,
        text_logit_bias={cfg.imgbos_id: 4.0},
    )
    result = gen64.generate(PROMPTS[:1], settings=s, image_logits_hook=lambda *a: calls.append(a))
    assert calls and all(uncond is None and guided is cond for _, cond, uncond, guided in calls)
    ref = _reference_greedy(gen64.backend.model, gen64.tokenizer, PROMPTS[0], len(result.tokens[0]), bias=4.0)
    assert result.tokens[0] == ref


def test_guidance_follows_the_cfg_formula(gen64: InterleavedGenerator) -> None:
    cfg, model, tok = gen64.backend.config, gen64.backend.model, gen64.tokenizer
    scale = 3.5
    calls = []
    s = SamplingConfig(
        temperature=0.0,
        image_temperature=0.7,
        max_new_tokens=4,
        max_images=1,
        seed=3,
        guidance_scale=scale,
        text_logit_bias={cfg.imgbos_id: 30.0},
    )
    result = gen64.generate(PROMPTS[:1], settings=s, image_logits_hook=lambda *a: calls.append(a))
    assert len(calls) == cfg.codes_per_image
    prompt = tok.chat_prompt(PROMPTS[0])
    tokens = result.tokens[0]
    for step, cond, uncond, guided in calls[:: max(1, len(calls) // 4)]:
        torch.testing.assert_close(guided, uncond + scale * (cond - uncond))
        seq = torch.tensor([prompt + tokens[:step]])
        with torch.no_grad():
            ref_cond = model(seq).visual_logits[0, -1]
            ref_uncond = model(unconditional_ids(seq, cfg)).visual_logits[0, -1]  # prompt -> <imgpad>
        torch.testing.assert_close(cond[0], ref_cond.float())
        torch.testing.assert_close(uncond[0], ref_uncond.float())
    uncond_prompt = unconditional_ids(torch.tensor(prompt), cfg).tolist()
    assert uncond_prompt[0] == tok.bos_id and set(uncond_prompt[1:]) == {cfg.imgpad_id}


def test_equal_seeds_give_identical_content(gen: InterleavedGenerator, tmp_path) -> None:
    cfg = gen.backend.config
    s = _force_images(cfg, max_new_tokens=10, max_images=1, seed=7, temperature=1.0)
    a = gen.generate(PROMPTS, settings=s).contents
    b = gen.generate(PROMPTS, settings=s).contents
    assert [c.to_json_str() for c in a] == [c.to_json_str() for c in b]
    assert [i.png for c in a for i in c.images] == [i.png for c in b for i in c.images]
    other = gen.generate(
        PROMPTS, settings=_force_images(cfg, max_new_tokens=10, max_images=1, seed=8)
    ).contents
    assert [c.digest() for c in other] != [c.digest() for c in a]
    assert a[0].metadata.seed == 7 and a[1].metadata.seed == 8  # per-row seed

    # content.json + <sha256>.png round trip
    path = a[0].save(tmp_path / "c0")
    assert path.name == "content.json"
    assert (tmp_path / "c0" / a[0].images[0].filename).read_bytes() == a[0].images[0].png
    back = InterleavedContent.load(tmp_path / "c0")
    assert back.digest() == a[0].digest() and back.text == a[0].text


def test_save_load_round_trip_gives_identical_outputs(loaded, tmp_path) -> None:
    directory = save_model(loaded.model, loaded.tokenizer, tmp_path / "tiny")
    again = load_model(directory)
    assert not again.random_weights
    assert again.model.config.config_hash() == loaded.model.config.config_hash()
    s = _force_images(loaded.model.config, max_new_tokens=8, max_images=1, seed=1)
    a = InterleavedGenerator.from_model(loaded.model, loaded.tokenizer).generate(PROMPTS, settings=s)
    b = InterleavedGenerator.from_model(again.model, again.tokenizer, "armor-tiny").generate(
        PROMPTS, settings=s
    )
    assert [c.to_json_str() for c in a.contents] == [c.to_json_str() for c in b.contents]
    assert (
        not again.model.model.language_model.embed_tokens.weight.requires_grad
    )  # still frozen after loading


def test_sampling_filters() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.0, 5.0, 4.9, -1.0])
    assert sample_token(logits, 0.0, 0, 1.0, g) == 1
    assert all(sample_token(logits, 1.0, 2, 1.0, g) in (1, 2) for _ in range(50))  # top-k
    assert all(sample_token(logits, 1.0, 0, 0.3, g) == 1 for _ in range(50))  # top-p keeps the head only
    seen = torch.tensor([False, True, False, True])
    penalised = apply_repetition_penalty(logits, seen, 2.0)
    torch.testing.assert_close(penalised, torch.tensor([0.0, 2.5, 4.9, -2.0]))


def test_generation_needs_room_in_the_position_table(gen: InterleavedGenerator) -> None:
    with pytest.raises(ValueError):
        gen.generate(
            ["x"],
            settings=SamplingConfig(
                max_new_tokens=get_config("armor-tiny").text_config.max_position_embeddings
            ),
        )
