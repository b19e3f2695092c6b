"""`armor-ab model init`: a transformers-format InternVL checkpoint + a Chameleon VQGAN -> an ARMOR model.

The inputs are tiny checkpoints written by transformers, tokenizers and torch in the real formats
(``tests/helpers/base_models.py``). The central check is the step-0 invariant: right after ``init``, ARMOR's
text logits equal those of ``InternVLForConditionalGeneration`` loaded from the same base directory, for text
and image+text prompts, with a Llama and with a Qwen2 language model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, InternVLForConditionalGeneration
from typer.testing import CliRunner

from armor_ab.cli import app
from armor_ab.model import load_model
from armor_ab.model.from_base import ModelInitError, base_module_name, init_from_base
from armor_ab.model.vqgan import VQGANFileError, vq_config_from_chameleon_yaml
from tests.helpers.base_models import BaseSizes, chameleon_vqgan, tiny_internvl
from tests.helpers.taming import taming_decode

LMS = ("llama", "qwen2")
runner = CliRunner()


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """For each LM: a base checkpoint (3 shards), the VQGAN and the ARMOR directory made from them."""
    root = tmp_path_factory.mktemp("init")
    vq = chameleon_vqgan(root / "chameleon" / "tokenizer")
    out = {}
    for i, lm in enumerate(LMS):
        base = tiny_internvl(root / f"base-{lm}", lm, shards=3, seed=i)
        armor = root / f"armor-{lm}"
        result = runner.invoke(app, ["model", "init", "--base", str(base), "--vqgan", str(vq), "--out",
                                     str(armor), "--adapter-layers", "3"])  # deeper than the LM (2)
        assert result.exit_code == 0, result.output
        out[lm] = {"base": base, "armor": armor, "vqgan": vq}
    return out


def _logits_pair(base: Path, armor: Path, prompt: str, with_image: bool):
    loaded = load_model(armor)
    reference = InternVLForConditionalGeneration.from_pretrained(base, dtype=torch.float32).eval()
    cfg = loaded.model.config
    ids = torch.tensor([loaded.tokenizer.chat_prompt(prompt, cfg.image_seq_length if with_image else None)])
    pixels = torch.randn(1, 3, cfg.input_image_size, cfg.input_image_size, generator=torch.Generator().manual_seed(1))
    kw = {"pixel_values": pixels} if with_image else {}
    with torch.no_grad():
        ours = loaded.model(ids, **kw).text_logits  # (1, T, V + 1)
        theirs = reference(input_ids=ids, **kw).logits  # (1, T, V)
    return ours, theirs, loaded


@pytest.mark.parametrize("lm", LMS)
@pytest.mark.parametrize("with_image", [False, True], ids=["text", "image+text"])
def test_step0_text_logits_equal_internvl(made, lm: str, with_image: bool) -> None:
    ours, theirs, loaded = _logits_pair(made[lm]["base"], made[lm]["armor"], "What is this product for?", with_image)
    assert loaded.model.config.text_config.model_type == lm
    assert type(loaded.model.adapter.layers[0]).__name__ == {"llama": "LlamaDecoderLayer",
                                                              "qwen2": "Qwen2DecoderLayer"}[lm]
    v = loaded.model.config.text_vocab_size
    assert ours.shape[-1] == v + 1 and theirs.shape[-1] == v
    assert (ours[..., :v] - theirs).abs().max().item() <= 1e-5
    # The <imgbos> logit starts at the average logit: the base keeps answering in text.
    assert bool((ours[..., v] < ours[..., :v].max(-1).values).all())


def test_base_weights_are_copied_bit_for_bit(made) -> None:
    base, armor = made["qwen2"]["base"], made["qwen2"]["armor"]
    index = json.loads((armor / "model.safetensors.index.json").read_text())["weight_map"]
    base_index = json.loads((base / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(base_index) > 20
    for disk_name, file in base_index.items():
        name = base_module_name(disk_name)
        with safe_open(base / file, "pt") as a, safe_open(armor / index[name], "pt") as b:
            x, y = a.get_tensor(disk_name), b.get_tensor(name)
        assert x.dtype == y.dtype and torch.equal(x, y), disk_name
    info = json.loads((armor / "armor_init.json").read_text())
    assert info["made_by"] == "armor-ab model init" and info["base"]["config_sha256"]
    assert info["report"]["language_model"] == "qwen2"


def test_new_parts_initialisation(made) -> None:
    base, armor = made["llama"]["base"], made["llama"]["armor"]
    model = load_model(armor).model
    reference = InternVLForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    embed = reference.model.language_model.embed_tokens.weight
    rows = model.image_token_embed.weight  # codes, <imgend>, <imgpad>, <imgbos>
    assert rows.shape[0] == model.config.num_new_tokens
    torch.testing.assert_close(rows, embed.mean(0, keepdim=True).expand_as(rows), rtol=0, atol=1e-6)
    torch.testing.assert_close(model.imgbos_head.weight[0], reference.lm_head.weight.mean(0), rtol=0, atol=1e-6)
    assert len(model.adapter.layers) == 3
    assert 0.01 < model.visual_head.weight.std().item() < 0.03  # initializer_range 0.02


def test_vqgan_decodes_like_taming(made) -> None:
    """The VQGAN inside the ARMOR directory decodes exactly as taming's decoder on the checkpoint's tensors."""
    vq_dir = made["llama"]["vqgan"]
    state = torch.load(vq_dir / "vqgan.ckpt", weights_only=True)["state_dict"]
    vq_cfg = vq_config_from_chameleon_yaml(vq_dir / "vqgan.yaml")
    model = load_model(made["llama"]["armor"]).model
    assert model.config.vq_config.num_embeddings == vq_cfg.num_embeddings
    assert list(model.config.vq_config.channel_multiplier) == list(vq_cfg.channel_multiplier)
    codes = torch.randint(0, vq_cfg.num_embeddings, (2, vq_cfg.grid_size**2), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.decode_images(codes), taming_decode(state, codes, vq_cfg), rtol=1e-4, atol=1e-5)


def test_tokenizer_ids_are_the_models_vocabulary(made) -> None:
    armor = made["qwen2"]["armor"]
    loaded = load_model(armor)
    cfg, tok = loaded.model.config, loaded.tokenizer
    assert tok.kind == "hf" and cfg.tokenizer_kind == "hf"
    hf = AutoTokenizer.from_pretrained(str(armor), local_files_only=True)
    ids = hf.convert_tokens_to_ids
    assert ids("<imgcode_0>") == cfg.code_offset
    assert (ids("<imgend>"), ids("<imgpad>"), ids("<imgbos>")) == (cfg.imgend_id, cfg.imgpad_id, cfg.imgbos_id)
    assert len(hf) == cfg.vocab_size_total
    assert cfg.text_eos_id == ids("<|im_end|>") and cfg.image_token_id == ids("<IMG_CONTEXT>")
    assert tok.vocab_size == cfg.text_vocab_size
    # The base's own chat template (with its default system turn) frames the prompt.
    text = tok.decode(tok.chat_prompt("hello"), skip_special=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful catalog assistant.")
    assert text.endswith("hello<|im_end|>\n<|im_start|>assistant\n")


def test_tied_output_head_becomes_a_copy(tmp_path) -> None:
    base = tiny_internvl(tmp_path / "base", "qwen2", tied=True)
    with safe_open(base / "model.safetensors", "pt") as f:
        assert not any("lm_head" in k for k in f.keys())  # transformers writes tied weights once
    vq = chameleon_vqgan(tmp_path / "vq")
    report = init_from_base(base, vq, tmp_path / "armor", adapter_layers=1)
    assert report.tied_lm_head_copied
    ours, theirs, loaded = _logits_pair(base, tmp_path / "armor", "a pump", with_image=False)
    assert (ours[..., :-1] - theirs).abs().max().item() <= 1e-5
    model = loaded.model
    assert torch.equal(model.lm_head.weight, model.model.language_model.embed_tokens.weight)
    assert model.lm_head.weight.data_ptr() != model.model.language_model.embed_tokens.weight.data_ptr()


def test_missing_internvl_tokens_use_unused_rows(tmp_path) -> None:
    base = tiny_internvl(tmp_path / "base", "llama", with_internvl_tokens=False,
                         sizes=BaseSizes(extra_rows=5))
    report = init_from_base(base, chameleon_vqgan(tmp_path / "vq"), tmp_path / "armor", adapter_layers=1)
    assert list(report.tokenizer["added_internvl"]) == ["<img>", "</img>", "<IMG_CONTEXT>"]
    assert report.tokenizer["unused_rows"] == 2
    loaded = load_model(tmp_path / "armor")
    cfg = loaded.model.config
    assert cfg.image_token_id == loaded.tokenizer.image_context_id < cfg.text_vocab_size
    ours, theirs, _ = _logits_pair(base, tmp_path / "armor", "a chair", with_image=False)
    assert (ours[..., :-1] - theirs).abs().max().item() <= 1e-5


def test_no_rows_for_missing_internvl_tokens_is_a_clear_error(tmp_path) -> None:
    base = tiny_internvl(tmp_path / "base", "llama", with_internvl_tokens=False)
    with pytest.raises(ModelInitError, match="embedding rows"):
        init_from_base(base, chameleon_vqgan(tmp_path / "vq"), tmp_path / "armor")
    assert not (tmp_path / "armor").exists()


def _cli(*args: str):
    return runner.invoke(app, ["model", "init", *args])


def test_bad_inputs_fail_cleanly_and_write_nothing(made, tmp_path) -> None:
    base, vq = made["llama"]["base"], made["llama"]["vqgan"]
    out = tmp_path / "out"

    def check(args: list[str], *needles: str) -> None:
        result = _cli(*args)
        assert result.exit_code == 2, result.output
        for needle in needles:
            assert needle in result.output, result.output
        assert not out.exists() and not [p for p in tmp_path.iterdir() if ".init-" in p.name]

    # An existing, non-empty --out is never overwritten.
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = _cli("--base", str(base), "--vqgan", str(vq), "--out", str(taken))
    assert result.exit_code == 2 and "already exists" in result.output
    assert (taken / "keep.txt").read_text() == "mine"
    # Not an InternVL checkpoint; OpenGVLab's remote-code layout gets the conversion hint.
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "internvl_chat", "architectures": ["InternVLChatModel"],
                                                     "auto_map": {"AutoModel": "modeling_internvl_chat.InternVLChatModel"}}))
    check(["--base", str(remote), "--vqgan", str(vq), "--out", str(out)], "convert_internvl_weights_to_hf.py")
    # A VQGAN without its yaml.
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "vqgan.ckpt").write_bytes((vq / "vqgan.ckpt").read_bytes())
    check(["--base", str(base), "--vqgan", str(lonely), "--out", str(out)], "vqgan.yaml", "missing")
    # A config that does not match the weights (as if the wrong config.json were copied in).
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for f in base.iterdir():
        (wrong / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["text_config"]["intermediate_size"] *= 2
    (wrong / "config.json").write_text(json.dumps(cfg))
    check(["--base", str(wrong), "--vqgan", str(vq), "--out", str(out)], "has shape")
    check(["--base", str(base), "--vqgan", str(vq), "--out", str(out), "--adapter-layers", "0"], "at least 1")


def test_vqgan_yaml_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "vqgan.yaml"
    bad.write_text("model:\n  params:\n    embed_dim: 8\n")
    with pytest.raises(VQGANFileError, match="vqgan.yaml"):
        vq_config_from_chameleon_yaml(bad)


def test_peak_memory_is_at_most_half_the_base(tmp_path) -> None:
    """On a base of 8 shards the init process's peak RSS above its start stays <= half the base on disk."""
    sizes = BaseSizes(hidden=512, intermediate=2048, layers=12, heads=8, kv_heads=4, vision_hidden=64)
    base = tiny_internvl(tmp_path / "base", "llama", sizes=sizes, shards=8)
    shards = sorted(base.glob("*.safetensors"))
    assert len(shards) == 8
    on_disk = sum(p.stat().st_size for p in shards)
    assert on_disk > 150e6  # large enough that copying it through memory would show
    vq = chameleon_vqgan(tmp_path / "vq")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "armor_ab", "model", "init", "--base", str(base), "--vqgan", str(vq),
         "--out", str(tmp_path / "armor"), "--adapter-layers", "3", "--json", "--log-level", "WARNING"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["base_bytes"] > 150e6
    peak = report["peak_rss_above_baseline_bytes"]
    assert 0 < peak <= on_disk / 2, (peak, on_disk, report["rss_baseline_bytes"], proc.stderr[-2000:])
    # The copy is complete: same bytes of base tensors in the output.
    index = json.loads((tmp_path / "armor" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] > report["base_bytes"]
