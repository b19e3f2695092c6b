"""Samples -> model inputs: extended-vocabulary ids, labels, input pixels; and a resumable batch sampler.

A sample becomes exactly the layout the generator prompts with (``ByteTokenizer.chat_prompt``)::

    <bos><|user|>[<img><IMG_CONTEXT>*n</img>\\n]{question}<|assistant|>{answer}<eos>

where an answer picture is ``<imgbos> code_1 ... code_N <imgend>`` (codes from the trained VQ encoder).
Labels are -100 on the prompt: only the answer (and <eos>) is learned, as in instruction tuning.

The sampler draws batch ``k`` from ``numpy.random.default_rng([seed, k])``: a batch is a pure function of the
step, so a resumed run sees exactly the batches the uninterrupted run would have seen, with no sampler state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from armor_ab.catalog.products import Product, product_picture
from armor_ab.model.configuration import ArmorConfig
from armor_ab.model.generate import unconditional_ids
from armor_ab.model.images import preprocess_image
from armor_ab.model.tokenizer import ByteTokenizer

IGNORE = -100
PictureKey = tuple[str, int]  # (product id, variant)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T) 1 = token, 0 = right padding
    labels: torch.Tensor  # (B, T) -100 = no loss
    pixel_values: torch.Tensor | None  # (n_images, 3, S, S) for the <IMG_CONTEXT> slots, in row order

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


class PictureStore:
    """Catalog pictures and re-draws on demand, cached: PIL at 64 px, ViT tensors, VQ codes."""

    def __init__(self, products: Sequence[Product], config: ArmorConfig) -> None:
        self.products = {p.id: p for p in products}
        self.config = config
        self._pil: dict[PictureKey, Image.Image] = {}
        self._vit: dict[PictureKey, torch.Tensor] = {}
        self.codes: dict[PictureKey, list[int]] = {}  # filled by ``encode_codes`` once the VQ is trained

    def pil(self, key: PictureKey) -> Image.Image:
        if key not in self._pil:
            self._pil[key] = product_picture(self.products[key[0]], key[1])
        return self._pil[key]

    def vit(self, key: PictureKey) -> torch.Tensor:
        if key not in self._vit:
            self._vit[key] = preprocess_image(self.pil(key), self.config.input_image_size)
        return self._vit[key]

    @torch.no_grad()
    def encode_codes(
        self, encode: Callable[[torch.Tensor], torch.Tensor], keys: Sequence[PictureKey]
    ) -> None:
        """VQ codes of the answer pictures (``encode``: pixels in [-1, 1] -> (B, N) codes)."""
        todo = sorted(set(keys) - set(self.codes))
        for start in range(0, len(todo), 64):
            chunk = todo[start : start + 64]
            pixels = torch.stack([pil_to_vq_pixels(self.pil(k), self.config.image_size) for k in chunk])
            for key, row in zip(chunk, encode(pixels).tolist(), strict=True):
                self.codes[key] = row


def pil_to_vq_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """PIL -> (3, size, size) in [-1, 1], the VQGAN's pixel range."""
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3)
    return x.permute(2, 0, 1).float() / 127.5 - 1.0


def answer_picture_keys(samples: Sequence[dict]) -> list[PictureKey]:
    keys = []
    for sample in samples:
        for seg in sample["segments"]:
            if seg["role"] == "assistant" and seg["type"] == "image":
                keys.append((seg["image"]["product"], seg["image"]["variant"]))
    return keys


def encode_sample(
    sample: dict, tokenizer: ByteTokenizer, config: ArmorConfig, pictures: PictureStore
) -> tuple[list[int], list[int], list[PictureKey]]:
    """(ids, labels, input-picture keys) of one sample."""
    ids = [tokenizer.bos_id, tokenizer.user_id]
    inputs: list[PictureKey] = []
    segments = sample["segments"]
    for seg in segments:
        if seg["role"] != "user":
            continue
        if seg["type"] == "image":
            key = (seg["image"]["product"], seg["image"]["variant"])
            inputs.append(key)
            ids += [tokenizer.img_start_id] + [tokenizer.image_context_id] * config.image_seq_length
            ids += [tokenizer.img_end_id] + tokenizer.encode("\n")
        else:
            ids += tokenizer.encode(seg["text"])
    ids.append(tokenizer.assistant_id)
    labels = [IGNORE] * len(ids)
    for seg in segments:
        if seg["role"] != "assistant":
            continue
        if seg["type"] == "image":
            codes = pictures.codes[(seg["image"]["product"], seg["image"]["variant"])]
            answer = [config.imgbos_id] + [config.code_offset + c for c in codes] + [config.imgend_id]
        else:
            answer = tokenizer.encode(seg["text"])
        ids += answer
        labels += answer
    ids.append(tokenizer.eos_id)
    labels.append(tokenizer.eos_id)
    return ids, labels, inputs


def collate(
    samples: Sequence[dict], tokenizer: ByteTokenizer, config: ArmorConfig, pictures: PictureStore
) -> Batch:
    encoded = [encode_sample(s, tokenizer, config, pictures) for s in samples]
    length = max(len(ids) for ids, _, _ in encoded)
    B = len(encoded)
    input_ids = torch.full((B, length), config.text_pad_id, dtype=torch.long)
    labels = torch.full((B, length), IGNORE, dtype=torch.long)
    mask = torch.zeros((B, length), dtype=torch.long)
    keys: list[PictureKey] = []
    for b, (ids, lab, inputs) in enumerate(encoded):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        labels[b, : len(lab)] = torch.tensor(lab)
        mask[b, : len(ids)] = 1
        keys += inputs
    pixels = torch.stack([pictures.vit(k) for k in keys]) if keys else None
    return Batch(input_ids, mask, labels, pixels)


def drop_conditions(batch: Batch, config: ArmorConfig, rate: float, rng: np.random.Generator) -> Batch:
    """Condition dropout for classifier-free guidance (Janus, LlamaGen): a ``rate`` share of the rows with a
    picture answer become their unconditional form - exactly what the generator feeds its unconditional rows
    (``unconditional_ids``: every text token -> <imgpad>) - and keep only the picture's targets. Without this
    the unconditional logits are untrained noise, and guidance amplifies noise instead of the prompt.
    """
    if rate <= 0:
        return batch
    # Picture targets: the codes and <imgend> (what the visual head predicts).
    targets = (batch.labels >= config.code_offset) & (batch.labels <= config.imgend_id)  # (B, T)
    has_picture = targets.any(1)
    has_input_image = (batch.input_ids == config.image_token_id).any(1)  # keep the ViT slots intact
    drop = torch.from_numpy(rng.random(len(has_picture)) < rate) & has_picture & ~has_input_image
    if not drop.any():
        return batch
    ids, labels = batch.input_ids.clone(), batch.labels.clone()
    ids[drop] = unconditional_ids(ids[drop], config)  # padding and BOS are kept as they are
    labels[drop] = torch.where(targets[drop], labels[drop], IGNORE)
    return Batch(ids, batch.attention_mask, labels, batch.pixel_values)


class TaskSampler:
    """Batches drawn by task weight, then uniformly within the task; batch k depends only on (seed, k)."""

    def __init__(self, samples: Sequence[dict], weights: dict[str, float] | None, seed: int) -> None:
        self.by_task: dict[str, list[dict]] = {}
        for sample in samples:
            self.by_task.setdefault(sample["task"], []).append(sample)
        if not self.by_task:
            raise ValueError("no samples for this stage")
        self.tasks = sorted(self.by_task)
        raw = np.array([(weights or {}).get(t, 1.0) for t in self.tasks], dtype=float)
        if raw.sum() <= 0:
            raise ValueError(f"task weights {weights} give no weight to any of {self.tasks}")
        self.p = raw / raw.sum()
        self.seed = seed

    def batch(self, step: int, size: int) -> list[dict]:
        rng = np.random.default_rng([self.seed, step])
        tasks = rng.choice(len(self.tasks), size=size, p=self.p)
        out = []
        for t in tasks:
            group = self.by_task[self.tasks[t]]
            out.append(group[int(rng.integers(len(group)))])
        return out
