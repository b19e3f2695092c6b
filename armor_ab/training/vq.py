"""Train the small VQ image tokenizer (the model package's ``ArmorVQGAN``: Chameleon encoder and quantizer,
taming / Janus decoder) on catalog pictures.

Recipe, sized for a few CPU minutes:

1. ``ae_steps`` as a plain autoencoder (no quantization), so the encoder's latents mean something;
2. the codebook is initialised by k-means on those latents (no dead codes at the start);
3. VQ training (reconstruction L1 + L2, codebook + commitment loss) with dead codes re-seeded from random
   latents every ``restart_every`` steps, which keeps the codebook in use on a small image set.

The generation targets are the catalog pictures, so half of every batch is catalog pictures and half re-draws
(other colours, sizes and positions), which keeps the tokenizer general enough for variety.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from armor_ab.catalog.products import Product, product_picture
from armor_ab.model.configuration import ArmorVQConfig
from armor_ab.model.vqgan import ArmorVQGAN

from .batches import pil_to_vq_pixels

VQ_FILE = "vqgan.safetensors"
VQ_META = "vq.json"


@dataclass(frozen=True)
class VQTrainConfig:
    seed: int = 11
    steps: int = 400  # including ae_steps
    ae_steps: int = 80
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 20
    redraws_per_product: int = 8
    restart_every: int = 40
    kmeans_iters: int = 12
    log_every: int = 10

    @classmethod
    def from_dict(cls, data: dict | None) -> VQTrainConfig:
        return cls(**(data or {}))


def _pool(products: list[Product], size: int, variants: range) -> torch.Tensor:
    return torch.stack([pil_to_vq_pixels(product_picture(p, v), size) for p in products for v in variants])


def _latents(vq: ArmorVQGAN, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> pre-quantization latents (B, E, g, g)."""
    return vq.quant_conv(vq.encoder(x))


def _reconstruct(
    vq: ArmorVQGAN, x: torch.Tensor, quantize: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h = _latents(vq, x)
    if quantize:
        q, vq_loss, codes = vq.quantize(h)
    else:
        q, vq_loss, codes = h, h.new_zeros(()), h.new_zeros(0, dtype=torch.long)
    return vq.decoder(vq.post_quant_conv(q)), vq_loss, codes


def _flat(h: torch.Tensor) -> torch.Tensor:
    return h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])  # (B * g * g, E)


@torch.no_grad()
def _kmeans(vectors: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    centres = vectors[torch.randperm(len(vectors), generator=gen)[:k]].clone()
    if len(centres) < k:  # fewer latents than codes: pad with jittered copies
        extra = centres[torch.randint(len(centres), (k - len(centres),), generator=gen)]
        centres = torch.cat([centres, extra + 0.01 * torch.randn(extra.shape, generator=gen)])
    for _ in range(iters):
        assign = torch.cdist(vectors, centres).argmin(1)
        for j in range(k):
            members = vectors[assign == j]
            if len(members):
                centres[j] = members.mean(0)
    return centres


def train_vq(
    vq_config: ArmorVQConfig, products: list[Product], config: VQTrainConfig, out: Path
) -> tuple[ArmorVQGAN, dict]:
    """Train a VQGAN of ``vq_config`` on the catalog; saves ``vqgan.safetensors`` + ``vq.json`` in ``out``."""
    start = time.time()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    size = vq_config.resolution
    catalog = _pool(products, size, range(0, 1))  # (P, 3, S, S): the generation targets
    redraws = _pool(products, size, range(1, 1 + config.redraws_per_product))
    vq = ArmorVQGAN(vq_config).train()
    opt = torch.optim.Adam(vq.parameters(), lr=config.lr, betas=(0.5, 0.9))
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.jsonl").open("w")
    half = config.batch_size // 2

    def lr_at(step: int) -> float:
        if step < config.warmup:
            return config.lr * (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    bar = tqdm(range(config.steps), desc="vq", mininterval=2)
    for step in bar:
        quantize = step >= config.ae_steps
        if step == config.ae_steps:  # codebook from k-means on the autoencoder's latents
            with torch.no_grad():
                latents = _flat(_latents(vq, torch.cat([catalog, redraws])))
                vq.quantize.embedding.weight.copy_(
                    _kmeans(latents, vq_config.num_embeddings, config.kmeans_iters, gen)
                )
            usage = torch.zeros(vq_config.num_embeddings)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x = torch.cat(
            [
                catalog[torch.randint(len(catalog), (half,), generator=gen)],
                redraws[torch.randint(len(redraws), (config.batch_size - half,), generator=gen)],
            ]
        )
        y, vq_loss, codes = _reconstruct(vq, x, quantize)
        recon = F.l1_loss(y, x) + F.mse_loss(y, x)
        loss = recon + vq_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if quantize:
            usage += torch.bincount(codes, minlength=vq_config.num_embeddings).float()
            if (step - config.ae_steps + 1) % config.restart_every == 0:
                _restart_dead_codes(vq, x, usage, gen)
                usage.zero_()
        if step % config.log_every == 0 or step == config.steps - 1:
            record = {
                "step": step,
                "loss": loss.item(),
                "recon": recon.item(),
                "vq": vq_loss.item(),
                "lr": lr_at(step),
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            bar.set_postfix(recon=f"{recon.item():.4f}")
    log.close()
    vq.eval()
    meta = {
        "what": "VQ image tokenizer (ArmorVQGAN) trained on catalog pictures",
        "config": asdict(config),
        "vq_config": vq_config.to_dict(),
        "eval": evaluate_vq(vq, products, size),
        "duration_s": round(time.time() - start, 1),
    }
    save_file({k: v.contiguous() for k, v in vq.state_dict().items()}, str(out / VQ_FILE))
    (out / VQ_META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return vq, meta


@torch.no_grad()
def _restart_dead_codes(vq: ArmorVQGAN, x: torch.Tensor, usage: torch.Tensor, gen: torch.Generator) -> None:
    dead = (usage == 0).nonzero().flatten()
    if len(dead) == 0:
        return
    latents = _flat(_latents(vq, x))
    pick = torch.randint(len(latents), (len(dead),), generator=gen)
    vq.quantize.embedding.weight[dead] = latents[pick] + 0.01 * torch.randn(
        len(dead), latents.shape[1], generator=gen
    )


@torch.no_grad()
def evaluate_vq(vq: ArmorVQGAN, products: list[Product], size: int) -> dict:
    """Reconstruction error on the catalog pictures and on unseen re-draws, and codebook use."""
    vq.eval()
    catalog = _pool(products, size, range(0, 1))
    fresh = _pool(products, size, range(500, 502))
    result = {}
    for name, x in (("catalog", catalog), ("fresh_redraws", fresh)):
        codes = vq.encode(x)
        y = vq.decode(codes).clamp(-1, 1)
        result[f"{name}_mse"] = round(float(F.mse_loss(y, x)), 5)
        result[f"{name}_codes_used"] = int(codes.unique().numel())
    return result


def load_vq(vq_config: ArmorVQConfig, directory: Path) -> ArmorVQGAN:
    vq = ArmorVQGAN(vq_config)
    vq.load_state_dict(load_file(str(Path(directory) / VQ_FILE)))
    return vq.eval()


def reconstruction_grid(vq: ArmorVQGAN, products: list[Product], size: int) -> np.ndarray:
    """Originals (top row) over reconstructions (bottom row), one column per category's first product."""
    picks = [
        next(p for p in products if p.category == c) for c in dict.fromkeys(p.category for p in products)
    ]
    x = torch.stack([pil_to_vq_pixels(product_picture(p), size) for p in picks])
    with torch.no_grad():
        y = vq.decode(vq.encode(x)).clamp(-1, 1)
    grid = torch.cat([torch.cat(list(x), dim=2), torch.cat(list(y), dim=2)], dim=1)  # (3, 2S, n S)
    return ((grid + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
