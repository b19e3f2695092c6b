"""Build or load a model by name or directory: ``load_model("armor-tiny")`` or ``load_model("path/to/dir")``.

A directory is what ``save_model`` (``save_pretrained`` of the model plus the tokenizer) wrote. A name is a
named configuration with random weights, seeded so that two loads give the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .modeling import ArmorForInterleavedGeneration
from .presets import CONFIGS, get_config
from .tokenizer import TextTokenizer, load_tokenizer


@dataclass
class LoadedModel:
    model: ArmorForInterleavedGeneration
    tokenizer: TextTokenizer
    name: str  # the named config or the directory it came from
    random_weights: bool


def load_model(name_or_dir: str | Path, seed: int = 0, dtype: torch.dtype | None = None) -> LoadedModel:
    path = Path(name_or_dir)
    if path.is_dir():
        model = ArmorForInterleavedGeneration.from_pretrained(path, dtype=dtype or torch.float32)
        tokenizer = load_tokenizer(path, model.config.tokenizer_kind)
        return LoadedModel(model.eval(), tokenizer, str(path), random_weights=False)
    name = str(name_or_dir)
    if name not in CONFIGS:
        raise ValueError(
            f"{name!r} is neither a model directory nor a named configuration ({', '.join(CONFIGS)})"
        )
    config = get_config(name)
    if config.tokenizer_kind != "byte":
        raise ValueError(
            f"{name} is not built with random weights here: it is real-size and needs its base's own "
            "tokenizer; make a model directory from your InternVL checkpoint with `armor-ab model init` "
            "(docs/models.md) and pass that"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # deterministic random init, without disturbing the caller's RNG
        model = ArmorForInterleavedGeneration(config)
    if dtype is not None:
        model = model.to(dtype)
    return LoadedModel(model.eval(), load_tokenizer(None, config.tokenizer_kind), name, random_weights=True)


def save_model(model: ArmorForInterleavedGeneration, tokenizer: TextTokenizer, directory: str | Path) -> Path:
    """config.json + model.safetensors + the tokenizer, loadable with ``load_model(directory)``."""
    out = Path(directory)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
