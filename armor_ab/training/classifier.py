"""The judge: a tiny CNN that tells the product category from a 64 x 64 picture.

It scores the model's generated pictures ("does the picture show the requested category?"), so it is trained
apart from the model, on its own fresh draws (seeds ``seed * 10**6 + i``, a range no training split uses),
and never sees a generated picture. Blur, noise and coarse down/up-sampling during training make it read the
silhouette, not the crisp edges a VQ decoder may not reproduce.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from armor_ab.catalog.draw import CATEGORIES, draw_product

from .batches import pil_to_vq_pixels

CLASSIFIER_FILE = "classifier.safetensors"
CLASSIFIER_META = "classifier.json"
SIZE = 64


@dataclass(frozen=True)
class ClassifierConfig:
    seed: int = 99
    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    pool_per_category: int = 160  # pre-drawn pictures per category, augmented on the fly
    eval_per_category: int = 50

    @classmethod
    def from_dict(cls, data: dict | None) -> ClassifierConfig:
        return cls(**(data or {}))


class CategoryClassifier(nn.Module):
    """Four conv blocks and a linear layer: ~60K parameters, input (B, 3, 64, 64) in [-1, 1]."""

    def __init__(self, num_classes: int = len(CATEGORIES)) -> None:
        super().__init__()
        widths = (3, 16, 32, 64, 64)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i < len(self.convs) - 1:
                x = F.max_pool2d(x, 2)  # 64 -> 32 -> 16 -> 8
        return self.head(x.mean(dim=(2, 3)))  # (B, classes)

    @torch.no_grad()
    def predict(self, images: Sequence[Image.Image]) -> list[str]:
        self.eval()
        pixels = torch.stack([pil_to_vq_pixels(im, SIZE) for im in images])
        return [CATEGORIES[i] for i in self(pixels).argmax(-1).tolist()]


def _draws(seed_base: int, per_category: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for c, category in enumerate(CATEGORIES):
        for i in range(per_category):
            images.append(pil_to_vq_pixels(draw_product(category, seed_base + c * 10_000 + i), SIZE))
            labels.append(c)
    return torch.stack(images), torch.tensor(labels)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur, coarse resampling and noise, each on a random part of the batch."""
    B = x.shape[0]
    pick = torch.rand(B, generator=gen)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where((pick < 0.3)[:, None, None, None], blurred, x)
    coarse = F.interpolate(F.interpolate(x, size=16, mode="area"), size=SIZE, mode="bilinear")
    x = torch.where(((pick >= 0.3) & (pick < 0.5))[:, None, None, None], coarse, x)
    sigma = torch.rand(B, 1, 1, 1, generator=gen) * 0.1
    return (x + sigma * torch.randn(x.shape, generator=gen)).clamp(-1, 1)


def train_classifier(config: ClassifierConfig, out: Path) -> dict:
    """Train, evaluate on fresh draws, save weights + metadata; returns the metadata."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    start = time.time()
    x, y = _draws(config.seed * 10**6, config.pool_per_category)
    model = CategoryClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    losses = []
    for step in tqdm(range(config.steps), desc="classifier", leave=False):
        lr = config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(x), (config.batch_size,), generator=gen)
        loss = F.cross_entropy(model(_augment(x[idx], gen)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    accuracy = evaluate_classifier(model, config.seed * 10**6 + 5_000, config.eval_per_category)
    meta = {
        "what": "category classifier (judge of generated pictures), trained on its own fresh draws",
        "config": asdict(config),
        "categories": list(CATEGORIES),
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": float(np.mean(losses[-20:])),
        "fresh_draw_accuracy": accuracy,
        "duration_s": round(time.time() - start, 1),
    }
    save_classifier(model, out, meta)
    return meta


@torch.no_grad()
def evaluate_classifier(model: CategoryClassifier, seed_base: int, per_category: int) -> float:
    model.eval()
    x, y = _draws(seed_base, per_category)
    return float((model(x).argmax(-1) == y).float().mean())


def save_classifier(model: CategoryClassifier, directory: Path, meta: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / CLASSIFIER_FILE))
    (directory / CLASSIFIER_META).write_text(json.dumps(meta, indent=2) + "\n")


def load_classifier(directory: Path) -> CategoryClassifier:
    model = CategoryClassifier()
    model.load_state_dict(load_file(str(Path(directory) / CLASSIFIER_FILE)))
    return model.eval()
