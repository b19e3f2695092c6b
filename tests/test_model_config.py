"""Named configurations, the armor-8b and armor-1b parameter counts (meta device), config and tokenizer round trips."""

from __future__ import annotations

import pytest
import torch

from armor_ab.model import ArmorConfig, ArmorForInterleavedGeneration, ByteTokenizer, get_config, load_model

INTERNVL25_8B_PARAMS = 8_075_365_376  # InternVL2.5-8B as published (model card: 8.1B)
INTERNVL25_1B_PARAMS = 938_193_024  # InternVL2.5-1B as published (the hub's safetensors count: 938M)


def test_named_configs_build_and_fit_their_budgets() -> None:
    tiny = ArmorForInterleavedGeneration(get_config("armor-tiny")).parameter_counts()
    demo = ArmorForInterleavedGeneration(get_config("armor-demo")).parameter_counts()
    assert tiny["total"] * 4 < 4e6  # a few MB in fp32
    assert demo["total"] * 4 <= 20e6  # the shipped artifact (fp32 weights) stays under 20 MB
    demo_cfg = get_config("armor-demo")
    assert demo_cfg.codes_per_image == 64 and demo_cfg.image_size == 64 and demo_cfg.num_image_codes == 512


def test_armor_8b_parameter_count_on_meta_device() -> None:
    config = get_config("armor-8b")
    with torch.device("meta"):
        model = ArmorForInterleavedGeneration(config)
    counts = model.parameter_counts()
    # Vision + projector + LM (+ its output head) is InternVL2.5-8B: within 1% of the published 8.1B.
    assert abs(counts["base_with_lm_head"] - INTERNVL25_8B_PARAMS) / INTERNVL25_8B_PARAMS < 0.01
    assert counts["vision"] == 304_012_288  # InternViT-300M-448px
    # ARMOR's new parts (new embedding rows, <imgbos> row, adapter, visual head): the paper's ~0.7B.
    assert 0.6e9 < counts["armor_new"] < 0.8e9
    assert config.codes_per_image == 256 and config.num_image_codes == 8192
    assert config.vq_config.downsample_factor == 16


def test_armor_1b_on_meta_device_has_a_qwen2_lm_and_adapter() -> None:
    config = get_config("armor-1b")
    with torch.device("meta"):
        model = ArmorForInterleavedGeneration(config)
    counts = model.parameter_counts()
    assert config.text_config.model_type == "qwen2"
    assert abs(counts["base_with_lm_head"] - INTERNVL25_1B_PARAMS) / INTERNVL25_1B_PARAMS < 0.01
    assert counts["vision"] == 304_012_288  # the same InternViT-300M-448px as the 8B
    block = model.adapter.layers[0]
    assert type(block).__name__ == "Qwen2DecoderLayer" and block.self_attn.q_proj.bias is not None
    assert config.codes_per_image == 256 and config.tokenizer_kind == "hf"
    with pytest.raises(ValueError, match="model init"):
        load_model("armor-1b")  # real-size: needs the base's own tokenizer and weights


def test_unsupported_language_model_is_refused() -> None:
    config = get_config("armor-tiny")
    config.text_config.model_type = "mistral"
    with pytest.raises(ValueError, match="not supported"):
        config.validate_armor()


def test_config_round_trip_and_vocabulary_layout(tmp_path) -> None:
    config = get_config("armor-tiny")
    config.save_pretrained(tmp_path)
    loaded = ArmorConfig.from_pretrained(tmp_path)
    assert loaded.config_hash() == config.config_hash()
    assert type(loaded.vq_config).__name__ == "ArmorVQConfig"
    assert loaded.text_config.model_type == "llama"
    v, n = config.text_vocab_size, config.num_image_codes
    assert (config.code_offset, config.imgend_id, config.imgpad_id, config.imgbos_id) == (
        v,
        v + n,
        v + n + 1,
        v + n + 2,
    )
    assert config.visual_head_size == n + 2 and config.text_head_size == v + 1


def test_unknown_config_name() -> None:
    with pytest.raises(KeyError):
        get_config("armor-70b")


def test_byte_tokenizer_round_trip(tmp_path) -> None:
    tok = ByteTokenizer()
    text = "Red sneakers, size 42 — «leggero» 👟"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("<eos>") == list(b"<eos>")  # specials are never parsed out of user text
    prompt = tok.chat_prompt("hi", image_seq_length=4)
    assert prompt.count(tok.image_context_id) == 4 and prompt[0] == tok.bos_id
    assert tok.decode([*tok.encode("ab"), 10_000, tok.eos_id]) == "ab"  # image ids and specials dropped
    tok.save_pretrained(tmp_path)
    assert ByteTokenizer.from_pretrained(tmp_path).special_ids == tok.special_ids
    assert get_config("armor-tiny").text_vocab_size == tok.vocab_size
