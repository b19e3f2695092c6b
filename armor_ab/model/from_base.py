"""``armor-ab model init``: a user's InternVL checkpoint + a Chameleon VQGAN -> an ARMOR checkpoint.

Inputs, in the formats their makers write:

* ``base``: an InternVL checkpoint in transformers' format (``InternVLForConditionalGeneration``:
  config.json with ``model_type: internvl``, safetensors shards, the tokenizer). OpenGVLab's original
  remote-code checkpoints are converted to it first with transformers' ``convert_internvl_weights_to_hf.py``
  (docs/models.md); the ``*-hf`` checkpoints on the hub already are.
* ``vqgan``: Chameleon's ``vqgan.ckpt`` and ``vqgan.yaml`` (the hyper-parameters come from the yaml).

What the ARMOR directory gets:

* the base's weights, **bit for bit**: each shard is rewritten with ARMOR's tensor names in its header and
  its data section copied in chunks (``safetensors_files.py``), so the base never enters memory;
* the new parts, in their own shards (``model-armor-*.safetensors``), in the base's dtype:
  - ``image_token_embed`` (the N code rows, <imgend>, <imgpad>, <imgbos>): every row the mean of the base's
    input-embedding rows. A new token then starts as an "average" token, whose norm and direction are those
    the LM is used to; random rows of the init scale would be out of distribution for a trained LM;
  - ``imgbos_head`` (the text head's <imgbos> row): the mean of the base's output-head rows, so the
    <imgbos> logit starts at the average logit: never the argmax, the base keeps answering in text;
  - ``adapter`` (blocks of the base LM's class: Llama or Qwen2) and ``visual_head``: transformers' init
    (normal, ``initializer_range``), seeded;
  - ``vqgan``: the Chameleon checkpoint's tensors (``vqgan.load_chameleon_vqgan``);
  - ``lm_head`` when the base ties it to the input embedding: a byte copy, because WoHG trains the text head
    while the original embedding rows stay frozen, so ARMOR keeps them apart;
* config.json (``ArmorConfig``), model.safetensors.index.json, the base's tokenizer extended with ARMOR's
  tokens (``hf_tokenizer.extend_for_armor``), and ``armor_init.json``: what made it, from what.

Everything is written into a staging directory next to ``out`` and renamed into place at the end, so an
interrupted run leaves no half-written model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm
from transformers import AutoTokenizer, InternVLConfig

from .configuration import ArmorConfig
from .hf_tokenizer import TokenizerExtension, chat_stop_id, extend_for_armor, pad_id_for
from .modeling import ArmorForInterleavedGeneration, adapter_text_config, lm_blocks
from .safetensors_files import TensorEntry, read_header, row_mean, write_renamed, write_tensor_copy
from .vqgan import (
    ArmorVQGAN,
    chameleon_vqgan_files,
    load_chameleon_vqgan,
    read_chameleon_state_dict,
    vq_config_from_chameleon_yaml,
)

log = logging.getLogger("armor_ab.model.init")

# How transformers' InternVL checkpoints name the base's tensors on disk (the legacy layout it still writes)
# -> the module names of InternVLForConditionalGeneration, which ARMOR keeps. Names already in module form
# pass unchanged. These are the renames transformers itself applies when it loads an InternVL checkpoint.
BASE_RENAMES = (
    (re.compile(r"^language_model\.lm_head\."), "lm_head."),
    (re.compile(r"^language_model\.model\."), "model.language_model."),
    (re.compile(r"^language_model\."), "model.language_model."),
    (re.compile(r"^vision_tower\."), "model.vision_tower."),
    (re.compile(r"^multi_modal_projector\."), "model.multi_modal_projector."),
)
EMBED = "model.language_model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"
_CONFIG_NOT_COPIED = {"model_type", "architectures", "transformers_version", "auto_map", "_name_or_path"}


class ModelInitError(ValueError):
    """The inputs cannot make an ARMOR model; the message names the file and what is wrong."""


@dataclass
class InitReport:
    out: str
    base: str
    language_model: str  # the base LM's model_type: "llama" or "qwen2"
    dtype: str
    base_tensors: int
    base_bytes: int
    new_parameters: dict[str, int]
    tied_lm_head_copied: bool
    tokenizer: dict[str, Any]
    vqgan: dict[str, Any]
    shards: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rss_baseline_bytes: int = 0
    peak_rss_above_baseline_bytes: int = 0  # the peak RSS (VmHWM) during init less the RSS at its start

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def base_module_name(disk_name: str) -> str:
    for pattern, replacement in BASE_RENAMES:
        if pattern.match(disk_name):
            return pattern.sub(replacement, disk_name, count=1)
    return disk_name


def init_from_base(
    base: str | Path,
    vqgan: str | Path,
    out: str | Path,
    adapter_layers: int = 3,
    name: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> InitReport:
    """Write an ARMOR checkpoint to ``out`` (which must not exist); see the module docstring."""
    start_time = time.perf_counter()
    baseline = _current_rss()
    base, out = Path(base), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelInitError(f"{out}: already exists; choose a new --out directory")
    if adapter_layers < 1:
        raise ModelInitError(f"--adapter-layers must be at least 1, got {adapter_layers}")

    base_config = _read_base_config(base)
    shards = _base_shards(base)
    ckpt, spec = chameleon_vqgan_files(vqgan)
    vq_config = vq_config_from_chameleon_yaml(spec)
    tok = _base_tokenizer(base)
    text_vocab = base_config.text_config.vocab_size
    extension = _extend_tokenizer(tok, base, text_vocab, vq_config.num_embeddings)
    config = _armor_config(base_config, vq_config, tok, extension, adapter_layers, name or out.name)
    with torch.device("meta"):
        meta = ArmorForInterleavedGeneration(config)
    expected = {n: tuple(p.shape) for n, p in meta.state_dict().items()}

    base_entries = _check_base_tensors(shards, expected, base)
    dtype = base_entries[EMBED][1].torch_dtype
    tied = LM_HEAD not in base_entries
    steps = len(shards) + config.adapter_num_layers + 2 + int(tied)
    staging = out.parent / f".{out.name}.init-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log.info("model init started", extra={"base": str(base), "lm": config.text_config.model_type,
                                          "shards": len(shards), "out": str(out)})
    try:
        weight_map: dict[str, str] = {}
        with tqdm(total=steps, desc="model init", unit="part", file=sys.stderr, leave=False,
                  disable=not progress) as bar:
            for shard in shards:  # the base, bit for bit
                # A lone model.safetensors keeps neither its name (transformers would load that file alone
                # and ignore the index) nor its place: every shard is listed in the index.
                target = "model-base.safetensors" if shard.name == "model.safetensors" else shard.name
                entries = write_renamed(shard, staging / target, base_module_name)
                weight_map.update({n: target for n in entries})
                bar.update(1)
            embed_file, embed_entry = base_entries[EMBED]
            new_counts, vq_report = {}, None
            for part, tensors in _new_parts(meta, config, base_entries, ckpt, dtype, seed):
                if part == "vqgan":
                    tensors, vq_report = tensors
                file = f"model-armor-{part}.safetensors"
                save_file(tensors, str(staging / file), metadata={"format": "pt"})
                weight_map.update({n: file for n in tensors})
                new_counts[part] = sum(t.numel() for t in tensors.values())
                del tensors
                bar.update(1)
            if tied:
                write_tensor_copy(embed_file, embed_entry.name, staging / "model-armor-lm_head.safetensors", LM_HEAD)
                weight_map[LM_HEAD] = "model-armor-lm_head.safetensors"
                bar.update(1)
        missing, extra = set(expected) - set(weight_map), set(weight_map) - set(expected)
        if missing or extra:  # a bug here, not a user error: never write a model that would load partly random
            raise ModelInitError(f"internal: tensors missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
        total = sum(_data_bytes(staging / f) for f in set(weight_map.values()))
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (staging / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        config.save_pretrained(staging)
        tok.save_pretrained(str(staging))
        report = InitReport(
            out=str(out),
            base=str(base),
            language_model=config.text_config.model_type,
            dtype=str(dtype).removeprefix("torch."),
            base_tensors=len(base_entries) - int(tied),
            base_bytes=sum(entry.end - entry.begin for _, entry in base_entries.values()),
            new_parameters=new_counts,
            tied_lm_head_copied=tied,
            tokenizer=asdict(extension),
            vqgan={"checkpoint": str(ckpt), "yaml": str(spec), "loaded": len(vq_report.loaded),
                   "dropped_training_only": len(vq_report.dropped),
                   "random_init_encoder_tensors": len(vq_report.missing)},
            shards=sorted(set(weight_map.values())),
        )
        (staging / "armor_init.json").write_text(json.dumps(_provenance(report, base, ckpt), indent=2))
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.seconds = round(time.perf_counter() - start_time, 2)
    report.rss_baseline_bytes = baseline
    report.peak_rss_above_baseline_bytes = max(0, _peak_rss() - baseline)
    log.info("model init done", extra={"out": str(out), "seconds": report.seconds,
                                       "peak_rss_above_baseline_mb": report.peak_rss_above_baseline_bytes >> 20})
    return report


# --- reading the inputs -------------------------------------------------------------------------------------
def _read_base_config(base: Path) -> InternVLConfig:
    path = base / "config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelInitError(f"{path}: cannot read the base's config ({exc})") from exc
    if raw.get("model_type") != "internvl":
        hint = ""
        if "auto_map" in raw or "InternVLChatModel" in (raw.get("architectures") or []):
            hint = (" It is OpenGVLab's remote-code format: convert it with transformers' "
                    "convert_internvl_weights_to_hf.py first (docs/models.md).")
        raise ModelInitError(
            f"{path}: model_type is {raw.get('model_type')!r}, not 'internvl' (transformers' "
            f"InternVLForConditionalGeneration).{hint}"
        )
    lm = (raw.get("text_config") or {}).get("model_type")
    if lm not in ("llama", "qwen2"):
        raise ModelInitError(f"{path}: text_config.model_type {lm!r}: supported language models are llama, qwen2")
    return InternVLConfig.from_pretrained(str(base), local_files_only=True)


def _base_shards(base: Path) -> list[Path]:
    index = base / "model.safetensors.index.json"
    if index.exists():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as exc:
            raise ModelInitError(f"{index}: not a safetensors index ({exc})") from exc
        shards = [base / f for f in files]
    elif (base / "model.safetensors").exists():
        shards = [base / "model.safetensors"]
    else:
        raise ModelInitError(f"{base}: no model.safetensors or model.safetensors.index.json (only safetensors "
                             "checkpoints are read; save the base with save_pretrained)")
    for s in shards:
        if not s.is_file():
            raise ModelInitError(f"{s}: listed in the index but missing")
    return shards


def _base_tokenizer(base: Path):
    if not ((base / "tokenizer.json").exists() or (base / "tokenizer_config.json").exists()):
        raise ModelInitError(f"{base}: no tokenizer (tokenizer.json / tokenizer_config.json); the base's own "
                             "tokenizer is needed, as transformers' conversion writes it")
    try:
        return AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelInitError(f"{base}: cannot load the tokenizer ({exc})") from exc


def _extend_tokenizer(tok, base: Path, text_vocab: int, num_codes: int) -> TokenizerExtension:
    try:
        return extend_for_armor(tok, text_vocab, num_codes)
    except ValueError as exc:
        raise ModelInitError(f"{base}: tokenizer: {exc}") from exc


def _armor_config(base_config: InternVLConfig, vq_config, tok, extension: TokenizerExtension,
                  adapter_layers: int, name: str) -> ArmorConfig:
    values = {k: v for k, v in base_config.to_dict().items() if k not in _CONFIG_NOT_COPIED}
    image_token = tok.convert_tokens_to_ids("<IMG_CONTEXT>")
    if "<IMG_CONTEXT>" not in extension.added_internvl and image_token != base_config.image_token_id:
        raise ModelInitError(f"the base's config says image_token_id={base_config.image_token_id} but its "
                             f"tokenizer has <IMG_CONTEXT> at {image_token}")
    pad = pad_id_for(tok)
    values |= dict(
        vq_config=vq_config.to_dict(),
        adapter_num_layers=adapter_layers,
        image_token_id=image_token,
        text_bos_id=tok.bos_token_id if tok.bos_token_id is not None else pad,
        text_eos_id=chat_stop_id(tok),
        text_pad_id=pad,
        tokenizer_kind="hf",
        model_name=name,
    )
    config = ArmorConfig(**values)
    config.tie_word_embeddings = False  # ARMOR keeps lm_head apart (see the module docstring)
    try:
        config.validate_armor()
    except ValueError as exc:
        raise ModelInitError(f"the base and VQGAN do not make a valid ARMOR config: {exc}") from exc
    return config


def _check_base_tensors(
    shards: list[Path], expected: dict[str, tuple[int, ...]], base: Path
) -> dict[str, tuple[Path, TensorEntry]]:
    """Every base tensor maps onto an ARMOR base parameter of the same shape; all base parameters exist."""
    found: dict[str, tuple[Path, TensorEntry]] = {}
    for shard in shards:
        try:
            tensors, _, _ = read_header(shard)
        except ValueError as exc:
            raise ModelInitError(str(exc)) from exc
        for disk_name, entry in tensors.items():
            name = base_module_name(disk_name)
            if name not in expected or not name.startswith(("model.", "lm_head.")):
                raise ModelInitError(f"{shard}: tensor {disk_name!r} is not part of an InternVL model")
            if tuple(entry.shape) != expected[name]:
                raise ModelInitError(f"{shard}: {disk_name} has shape {list(entry.shape)}, the config implies "
                                     f"{list(expected[name])}")
            found[name] = (shard, entry)
    wanted = {n for n in expected if n.startswith("model.")} | {LM_HEAD}
    missing = wanted - set(found) - {LM_HEAD}
    if missing:
        raise ModelInitError(f"{base}: the checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
    return found


# --- the new parts ------------------------------------------------------------------------------------------
def _new_parts(meta: ArmorForInterleavedGeneration, config: ArmorConfig,
               base_entries: dict[str, tuple[Path, TensorEntry]], ckpt: Path, dtype: torch.dtype, seed: int):
    """Yield (part name, tensors) one part at a time, so only one part is in memory."""
    hidden = config.text_config.hidden_size
    embed_file, embed_entry = base_entries[EMBED]
    embed_mean = row_mean(embed_file, embed_entry.name)  # (C,) float64
    head_file, head_entry = base_entries.get(LM_HEAD, base_entries[EMBED])
    head_mean = row_mean(head_file, head_entry.name)  # (C,)
    generator_state = torch.random.fork_rng(devices=[])
    with generator_state:
        torch.manual_seed(seed)
        visual_head = nn.Linear(hidden, config.visual_head_size, bias=False)
        visual_head.apply(meta._init_weights)
        yield "heads", {
            "image_token_embed.weight": embed_mean.to(dtype).expand(config.num_new_tokens, hidden).contiguous(),
            "imgbos_head.weight": head_mean.to(dtype)[None].contiguous(),
            "visual_head.weight": visual_head.weight.detach().to(dtype).contiguous(),
        }
        del visual_head
        # One adapter block at a time (a block of an 8B LM is ~0.9 GB in fp32).
        text = adapter_text_config(config)
        layer_cls, norm_cls, _ = lm_blocks(text)
        for i in range(config.adapter_num_layers):
            block = layer_cls(text, i)
            block.apply(meta._init_weights)
            part = {f"adapter.layers.{i}.{k}": v.detach().to(dtype).contiguous()
                    for k, v in block.state_dict().items()}
            del block
            if i == config.adapter_num_layers - 1:
                norm = norm_cls(text.hidden_size, eps=text.rms_norm_eps)
                norm.apply(meta._init_weights)
                part |= {f"adapter.norm.{k}": v.detach().to(dtype).contiguous() for k, v in norm.state_dict().items()}
            yield f"adapter-{i:02d}", part
        vqgan = ArmorVQGAN(config.vq_config)
        vqgan.apply(meta._init_weights)  # only the encoder keeps this when a checkpoint has no encoder
        try:
            report = load_chameleon_vqgan(vqgan, read_chameleon_state_dict(ckpt))
        except ValueError as exc:
            raise ModelInitError(f"{ckpt}: {exc}") from exc
        tensors = {f"vqgan.{k}": v.detach().to(dtype).contiguous() for k, v in vqgan.state_dict().items()}
        yield "vqgan", (tensors, report)


# --- bookkeeping --------------------------------------------------------------------------------------------
def _data_bytes(path: Path) -> int:
    tensors, _, _ = read_header(path)
    return sum(t.end - t.begin for t in tensors.values())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _provenance(report: InitReport, base: Path, ckpt: Path) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import transformers

    try:
        armor = version("armor-ab")
    except PackageNotFoundError:
        armor = "unknown"
    index = base / "model.safetensors.index.json"
    return {
        "made_by": "armor-ab model init",
        "versions": {"armor_ab": armor, "torch": torch.__version__, "transformers": transformers.__version__},
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": {
            "path": str(base.resolve()),
            "config_sha256": _sha256(base / "config.json"),
            "index_sha256": _sha256(index) if index.exists() else None,
        },
        "vqgan": {"path": str(ckpt.resolve()), "sha256": _sha256(ckpt)},
        "init": {
            "new_embedding_rows": "mean of the base's input-embedding rows",
            "imgbos_head": "mean of the base's output-head rows",
            "adapter_and_visual_head": "transformers init (normal, initializer_range), seeded",
        },
        "report": {k: v for k, v in report.to_json().items() if "rss" not in k and k != "seconds"},
    }


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field_name}")


def _current_rss() -> int:
    """RSS now; also restarts the kernel's peak-RSS mark (VmHWM) from here where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set size to the current one (Linux >= 4.0)
    except OSError:
        pass  # then the peak includes whatever this process reached before: an upper bound
    return _status_kib("VmRSS") * 1024


def _peak_rss() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: that carries over the parent's RSS across fork+exec."""
    return _status_kib("VmHWM") * 1024
