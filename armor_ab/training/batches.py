"""Samples -> model inputs: extended-vocabulary ids, labels, input pixels; and a resumable batch sampler.

A sample becomes exactly the layout the generator prompts with: the tokenizer's ``chat_prompt`` around the
question (an input picture's ``<img><IMG_CONTEXT>*n</img>`` block first), then the answer and the tokenizer's
``eos_id``. For the byte tokenizer of the demo models that is::

    <bos><|user|>[<img><IMG_CONTEXT>*n</img>\\n]{question}<|assistant|>{answer}<eos>

and for a model made by ``armor-ab model init`` the base's own chat template (ChatML for InternVL2.5:
``<|im_start|>user\\n ... <|im_end|>\\n<|im_start|>assistant\\n{answer}<|im_end|>``), so training sees the very
prompts the base was tuned on and the generator later sends. An answer picture is
``<imgbos> code_1 ... code_N <imgend>`` (codes from the model's VQ encoder). Labels are -100 on the prompt:
only the answer (and the end token) is learned, as in instruction tuning.

Pictures come from a ``Pictures`` store, by ``(id, variant)`` key: the demo catalog's drawings
(``PictureStore``) or a user's product photos (``catalog_data.PhotoStore``).

The sampler draws batch ``k`` from ``numpy.random.default_rng([seed, k])``: a batch is a pure function of the
step, so a resumed run sees exactly the batches the uninterrupted run would have seen, with no sampler state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from armor_ab.catalog.products import Product, product_picture
from armor_ab.model.configuration import ArmorConfig
from armor_ab.model.generate import unconditional_ids
from armor_ab.model.images import preprocess_image
from armor_ab.model.tokenizer import TextTokenizer

IGNORE = -100
PictureKey = tuple[str, int]  # (product or catalog item id, variant)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T) 1 = token, 0 = right padding
    labels: torch.Tensor  # (B, T) -100 = no loss
    pixel_values: torch.Tensor | None  # (n_images, 3, S, S) for the <IMG_CONTEXT> slots, in row order

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


class Pictures(Protocol):
    """What batches need of a picture store: PIL pictures, ViT input tensors and VQ codes by key."""

    codes: dict[PictureKey, list[int]]  # the answer pictures' VQ codes (``encode_codes``)

    def pil(self, key: PictureKey) -> Image.Image: ...

    def vit(self, key: PictureKey) -> torch.Tensor: ...


class CachedPictures:
    """ViT tensors and VQ codes of the pictures a subclass's ``pil`` makes (``config``: the model's sizes).

    ``cache_size``: how many ViT tensors to keep (least recently used go first); None keeps all of them
    (the demo's 64 px drawings). VQ codes, a few hundred ints a picture, are always kept.
    """

    def __init__(self, config: ArmorConfig, cache_size: int | None = None) -> None:
        self.config = config
        self.cache_size = cache_size
        self._vit: OrderedDict[PictureKey, torch.Tensor] = OrderedDict()
        self.codes: dict[PictureKey, list[int]] = {}  # filled by ``encode_codes`` (the VQ encoder's codes)

    def pil(self, key: PictureKey) -> Image.Image:
        raise NotImplementedError

    def vit(self, key: PictureKey) -> torch.Tensor:
        if key in self._vit:
            self._vit.move_to_end(key)
            return self._vit[key]
        tensor = preprocess_image(self.pil(key), self.config.input_image_size)
        self.remember(self._vit, key, tensor)
        return tensor

    def remember(self, cache: OrderedDict, key: PictureKey, value) -> None:
        """Put ``value`` in ``cache``, dropping the least recently used entries beyond ``cache_size``."""
        cache[key] = value
        while self.cache_size is not None and len(cache) > self.cache_size:
            cache.popitem(last=False)

    def vq_pixels(self, key: PictureKey) -> torch.Tensor:
        """The picture as the VQ encoder takes it: (3, image_size, image_size) in [-1, 1]."""
        return pil_to_vq_pixels(self.pil(key), self.config.image_size)

    @torch.no_grad()
    def encode_codes(
        self, encode: Callable[[torch.Tensor], torch.Tensor], keys: Sequence[PictureKey], chunk: int = 64
    ) -> None:
        """VQ codes of the answer pictures (``encode``: pixels in [-1, 1] -> (B, N) codes)."""
        todo = sorted(set(keys) - set(self.codes))
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            pixels = torch.stack([self.vq_pixels(k) for k in part])
            for key, row in zip(part, encode(pixels).tolist(), strict=True):
                self.codes[key] = row


class PictureStore(CachedPictures):
    """Catalog pictures and re-draws on demand, cached: PIL at 64 px, ViT tensors, VQ codes."""

    def __init__(self, products: Sequence[Product], config: ArmorConfig) -> None:
        super().__init__(config)
        self.products = {p.id: p for p in products}
        self._pil: dict[PictureKey, Image.Image] = {}

    def pil(self, key: PictureKey) -> Image.Image:
        if key not in self._pil:
            self._pil[key] = product_picture(self.products[key[0]], key[1])
        return self._pil[key]


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
    sample: dict, tokenizer: TextTokenizer, config: ArmorConfig, pictures: Pictures
) -> tuple[list[int], list[int], list[PictureKey]]:
    """(ids, labels, input-picture keys) of one sample: ``tokenizer.chat_prompt`` of the question (with the
    input picture's block when there is one), then the answer segments and ``tokenizer.eos_id``."""
    segments = sample["segments"]
    user = [seg for seg in segments if seg["role"] == "user"]
    inputs: list[PictureKey] = [
        (seg["image"]["product"], seg["image"]["variant"]) for seg in user if seg["type"] == "image"
    ]
    if len(inputs) > 1 or (inputs and user[0]["type"] != "image"):
        raise ValueError(
            f"sample {sample.get('id')}: a prompt holds at most one input picture, before the question"
        )
    question = " ".join(seg["text"] for seg in user if seg["type"] == "text")
    ids = tokenizer.chat_prompt(question, config.image_seq_length if inputs else None)
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
    samples: Sequence[dict], tokenizer: TextTokenizer, config: ArmorConfig, pictures: Pictures
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
