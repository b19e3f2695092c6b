"""Interleaved text-and-image generation with forward switching and classifier-free guidance.

One loop over a ``StepBackend`` (``steps.py``). Per prompt ("row") a small state machine:

    TEXT  --sample <imgbos> from the text head-->  IMAGE
    IMAGE --exactly N codes from adapter + visual head (CFG), then <imgend> forced-->  TEXT
    TEXT  --<eos> / max_new_tokens-->  DONE          (<imgbos> is banned once max_images images exist)

Text mode samples from the text head only (text vocabulary + <imgbos>), so image codes cannot appear in text;
image mode samples from the visual head restricted to the N codes, so text cannot appear inside an image.

Classifier-free guidance. Rows ``[0, B)`` are conditional, rows ``[B, 2B)`` unconditional, in one batch. An
unconditional row is its conditional row with every text token (prompt, input-image placeholders and the
generated text alike) replaced by ``<imgpad>``; BOS and image tokens (<imgbos>, codes, <imgend>) are kept, so
guidance pushes away from the text condition while the image drawn so far stays shared. Guided logits are
``uncond + s * (cond - uncond)``; at ``s == 1`` there are no unconditional rows at all.

Lazy catch-up. Text steps need neither the unconditional rows nor the adapter, so both lag behind: when a
row enters image mode, the unconditional LM rows and then the adapter process everything they missed in one
chunk (a prefill), and from then on advance one token per step together with the conditional rows. Text
costs the same as without CFG; ``use_cache=False`` instead recomputes the whole sequence every step.

Budgets: ``max_new_tokens`` counts text-head tokens (text, <imgbos>, <eos>); image codes and <imgend> are
bounded by ``max_images``, so the KV cache is sized once: prompt + max_new_tokens + max_images * (N + 1).
Sampling is seeded per row (``seed + row``) with its own ``torch.Generator``, so a row's draws do not depend
on what the other rows do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image

from .cache import position_ids_from_valid
from .configuration import ArmorConfig
from .images import pixels_to_pil, preprocess_image
from .interleaved import (
    ContentMetadata,
    ImageSegment,
    InterleavedContent,
    Segment,
    TextSegment,
    png_bytes,
    sha256_hex,
)
from .sampling import apply_cfg, apply_repetition_penalty, sample_token
from .steps import StepBackend, TorchBackend
from .tokenizer import TextTokenizer

TEXT, IMAGE, DONE = "text", "image", "done"

SegmentCallback = Callable[[int, Segment], None]  # (row, finished segment)
ImageLogitsHook = Callable[
    [int, torch.Tensor, torch.Tensor | None, torch.Tensor], None
]  # step, cond, uncond, guided


@dataclass
class SamplingConfig:
    max_new_tokens: int = 128  # text-head tokens per row (text, <imgbos>, <eos>); codes are not counted
    max_images: int = 1
    temperature: float = 0.8  # text; 0 = greedy
    top_k: int = 0
    top_p: float = 0.95
    repetition_penalty: float = 1.0  # text only
    image_temperature: float = 1.0  # codes; 0 = greedy
    image_top_k: int = 0
    image_top_p: float = 1.0
    guidance_scale: float = 5.0  # CFG on code logits; 1 = no guidance
    seed: int = 0
    use_cache: bool = True
    text_logit_bias: dict[int, float] = field(default_factory=dict)  # token id (text or <imgbos>) -> bias

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["text_logit_bias"] = {str(k): v for k, v in self.text_logit_bias.items()}  # JSON keys
        return d


@dataclass
class GenerationResult:
    contents: list[InterleavedContent]
    tokens: list[list[int]]  # per row: generated extended-vocabulary ids (text, <imgbos>, codes, <imgend>)


def unconditional_ids(ids: torch.Tensor, config: ArmorConfig) -> torch.Tensor:
    """CFG's unconditional sequence: text tokens -> <imgpad>; BOS, padding and image tokens kept."""
    keep = (ids >= config.text_vocab_size) | (ids == config.text_bos_id) | (ids == config.text_pad_id)
    return torch.where(keep, ids, config.imgpad_id)


class InterleavedGenerator:
    def __init__(self, backend: StepBackend, tokenizer: TextTokenizer, model_name: str | None = None) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.model_name = model_name or backend.config.model_name

    @classmethod
    def from_model(
        cls, model, tokenizer: TextTokenizer, model_name: str | None = None
    ) -> InterleavedGenerator:
        return cls(TorchBackend(model), tokenizer, model_name)

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        images: Sequence[Image.Image | torch.Tensor | None] | None = None,
        settings: SamplingConfig | None = None,
        on_segment: SegmentCallback | None = None,
        on_step: Callable[[int], None] | None = None,
        image_logits_hook: ImageLogitsHook | None = None,
    ) -> GenerationResult:
        """Generate interleaved content for each prompt (optionally with an input image per prompt)."""
        run = _Run(self, list(prompts), images, settings or SamplingConfig(), on_segment, image_logits_hook)
        return run.execute(on_step)


class _Run:
    """State of one ``generate`` call: token buffers, stream progress and the per-row state machines."""

    def __init__(
        self,
        gen: InterleavedGenerator,
        prompts: list[str],
        images: Sequence[Image.Image | torch.Tensor | None] | None,
        s: SamplingConfig,
        on_segment: SegmentCallback | None,
        hook: ImageLogitsHook | None,
    ) -> None:
        be, cfg, tok = gen.backend, gen.backend.config, gen.tokenizer
        self.be, self.cfg, self.tok, self.s, self.gen = be, cfg, tok, s, gen
        self.on_segment, self.hook = on_segment, hook
        images = list(images) if images is not None else [None] * len(prompts)
        if len(images) != len(prompts):
            raise ValueError("one image (or None) per prompt")
        self.prompts, self.images = prompts, images

        B = self.B = len(prompts)
        self.cfg_on = s.max_images > 0 and s.guidance_scale != 1.0
        R = self.R = 2 * B if self.cfg_on else B
        N = self.N = cfg.codes_per_image  # codes per image (not the codebook size)
        V = self.V = cfg.text_vocab_size

        rows = [
            tok.chat_prompt(p, cfg.image_seq_length if img is not None else None)
            for p, img in zip(prompts, images, strict=True)
        ]
        T0 = self.T0 = max(len(r) for r in rows)
        self.max_len = T0 + s.max_new_tokens + s.max_images * (N + 1)
        if self.max_len > cfg.text_config.max_position_embeddings:
            raise ValueError(f"prompt + budget = {self.max_len} tokens > max_position_embeddings")
        device = be.device

        # Left-padded token buffer for all rows; unconditional rows mirror the conditional ones.
        self.ids = torch.full((R, self.max_len), cfg.text_pad_id, dtype=torch.long, device=device)  # (R, S)
        self.valid = torch.zeros((R, self.max_len), dtype=torch.bool, device=device)  # (R, S)
        for b, r in enumerate(rows):
            self.ids[b, T0 - len(r) : T0] = torch.tensor(r, device=device)
            self.valid[b, T0 - len(r) : T0] = True
        if self.cfg_on:
            self.ids[B:] = unconditional_ids(self.ids[:B], cfg)
            self.valid[B:] = self.valid[:B]

        # Everything the request needs, checked against the backend's limits before any graph runs: rows, KV
        # positions, the longest prefill chunk (the prompt; with images, a catch-up of the unconditional rows or
        # the adapter over prompt + text: at most T0 + max_new_tokens; without the cache, the whole sequence)
        # and the input images.
        with_image = [b for b in range(B) if images[b] is not None]
        chunk = T0 if s.max_images == 0 else min(self.max_len, T0 + s.max_new_tokens)
        be.check_capacity(R, self.max_len, chunk if s.use_cache else self.max_len, len(with_image))

        # Prompt embeddings; the conditional rows get projected ViT features in their image placeholders.
        embeds = be.embed(self.ids[:, :T0])  # (R, T0, C)
        if with_image:
            pixels = torch.stack([preprocess_image(images[b], cfg.input_image_size) for b in with_image])
            features = be.image_features(pixels).to(embeds.dtype)  # (n, T_img, C)
            slots = self.ids[:B, :T0] == cfg.image_token_id  # (B, T0)
            embeds[:B] = embeds[:B].masked_scatter(slots[..., None], features)
        self.prompt_embeds = embeds

        hidden = cfg.text_config.hidden_size
        self.h = torch.zeros((R, self.max_len, hidden), dtype=embeds.dtype, device=device)  # LM output
        self.a_last: torch.Tensor | None = None  # adapter output at the last processed position (R', C)
        self.lm_len = [0, 0]  # positions the conditional / unconditional LM rows have processed
        self.ad_len = 0  # positions the adapter has processed (all its rows together)
        be.allocate(R, self.max_len)

        # Text-head logit adjustments shared by all rows.
        self.bias = torch.zeros(V + 1, device=device)
        for token, value in s.text_logit_bias.items():
            self.bias[self._text_index(int(token))] += value
        self.banned = torch.tensor([cfg.text_pad_id, cfg.image_token_id], device=device)

        # Per-row state machine.
        self.mode = [TEXT] * B
        self.codes: list[list[int]] = [[] for _ in range(B)]
        self.text_ids: list[list[int]] = [[] for _ in range(B)]
        self.n_text = [0] * B
        self.n_images = [0] * B
        self.tokens: list[list[int]] = [[] for _ in range(B)]
        self.segments: list[list[Segment]] = [[] for _ in range(B)]
        self.seen = torch.zeros((B, V + 1), dtype=torch.bool, device=device)  # for the repetition penalty
        for b in range(B):
            prompt_text = self.ids[b, :T0][self.valid[b, :T0] & (self.ids[b, :T0] < V)]
            self.seen[b, prompt_text] = True
        self.generators = [torch.Generator(device="cpu").manual_seed(s.seed + b) for b in range(B)]

    def _text_index(self, token: int) -> int:
        if token == self.cfg.imgbos_id:
            return self.V
        if 0 <= token < self.V:
            return token
        raise ValueError(f"text_logit_bias: {token} is neither a text token nor <imgbos>")

    # --- running the graphs ---
    def _lm_chunk(self, rows: slice, start: int, end: int) -> None:
        """LM over positions [start, end) of ``rows``; hidden states go to ``self.h``."""
        key_valid = self.valid[rows, :end]  # (r, end)
        positions = position_ids_from_valid(key_valid)[:, start:end]  # (r, T)
        if end - start == 1 and start >= self.T0:
            h = self.be.decode_step(self.ids[rows, start], positions[:, 0], key_valid, rows, start)[:, None]
        else:
            parts = []
            if start < self.T0:
                parts.append(self.prompt_embeds[rows, start : min(end, self.T0)])
            if end > self.T0:
                parts.append(self.be.embed(self.ids[rows, max(start, self.T0) : end]))
            h = self.be.prefill(torch.cat(parts, dim=1), positions, key_valid, rows, start)  # (r, T, C)
        self.h[rows, start:end] = h

    def _advance_lm(self, t: int, with_uncond: bool) -> None:
        """Bring the conditional rows (and, for CFG, the unconditional ones) up to position t."""
        cond_len, uncond_len = self.lm_len
        if with_uncond and uncond_len < cond_len:  # catch up on what text mode skipped
            self._lm_chunk(slice(self.B, self.R), uncond_len, cond_len)
            self.lm_len[1] = cond_len
        if cond_len < t:
            rows = slice(0, self.R) if with_uncond else slice(0, self.B)  # one batch once they are level
            self._lm_chunk(rows, cond_len, t)
            self.lm_len[0] = t
            if with_uncond:
                self.lm_len[1] = t

    def _advance_adapter(self, t: int) -> torch.Tensor:
        """Adapter over the positions it has not seen yet, up to t; returns its output at t - 1 (R', C)."""
        if self.ad_len < t:
            rows = slice(0, self.R)  # conditional and (with CFG) unconditional rows, always level
            key_valid = self.valid[rows, :t]
            positions = position_ids_from_valid(key_valid)[:, self.ad_len : t]
            a = self.be.adapter(self.h[rows, self.ad_len : t], positions, key_valid, rows, self.ad_len)
            self.a_last = a[:, -1]  # (R', C)
            self.ad_len = t
        return self.a_last

    # --- the loop ---
    def execute(self, on_step: Callable[[int], None] | None) -> GenerationResult:
        s, B, N = self.s, self.B, self.N
        t = self.T0
        while t < self.max_len and any(m != DONE for m in self.mode):
            if not s.use_cache:  # forget everything: each step recomputes the whole sequence
                self.lm_len, self.ad_len = [0, 0], 0
            want_text = any(m == TEXT for m in self.mode)
            want_codes = any(self.mode[b] == IMAGE and len(self.codes[b]) < N for b in range(B))

            self._advance_lm(t, with_uncond=self.cfg_on and want_codes)
            text_logits = self.be.text_head(self.h[:B, t - 1]).float() if want_text else None  # (B, V + 1)
            guided = None
            if want_codes:
                visual = self.be.visual_head(self._advance_adapter(t)).float()  # (R', codebook + 2)
                cond, uncond = visual[:B], (visual[B:] if self.cfg_on else None)
                # (B, codebook + 2)
                guided = apply_cfg(cond, uncond, s.guidance_scale) if self.cfg_on else cond
                if self.hook is not None:
                    self.hook(t - self.T0, cond, uncond, guided)

            next_ids = [self._step_row(b, text_logits, guided) for b in range(B)]
            nxt = torch.tensor(next_ids, device=self.ids.device)  # (B,)
            self.ids[:B, t] = nxt
            if self.cfg_on:
                self.ids[B:, t] = unconditional_ids(nxt, self.cfg)
            self.valid[:, t] = True
            t += 1
            if on_step is not None:
                on_step(t - self.T0)

        for b in range(B):  # rows cut off by the length guard keep their text
            self._finish_text(b)
        return GenerationResult(
            contents=[InterleavedContent(self.segments[b], self._metadata(b)) for b in range(B)],
            tokens=self.tokens,
        )

    def _step_row(self, b: int, text_logits: torch.Tensor | None, guided: torch.Tensor | None) -> int:
        """Pick row b's next token and advance its state machine."""
        cfg, s, N, V = self.cfg, self.s, self.N, self.V
        mode = self.mode[b]
        if mode == DONE:
            return cfg.text_pad_id  # keeps the batch rectangular; never read back

        if mode == IMAGE:
            if len(self.codes[b]) < N:
                logits = guided[b].clone()  # (codebook + 2,)
                logits[cfg.num_image_codes :] = float("-inf")  # no <imgend>/<imgpad> before the N-th code
                code = sample_token(
                    logits, s.image_temperature, s.image_top_k, s.image_top_p, self.generators[b]
                )
                self.codes[b].append(code)
                return self._emit(b, cfg.code_offset + code)
            self._finish_image(b)  # N codes done: <imgend> is forced, not sampled
            return self._emit(b, cfg.imgend_id)

        logits = apply_repetition_penalty(text_logits[b], self.seen[b], s.repetition_penalty)  # (V + 1,)
        logits = logits + self.bias
        logits[self.banned] = float("-inf")
        if self.n_images[b] >= s.max_images:
            logits[V] = float("-inf")  # no more <imgbos>
        index = sample_token(logits, s.temperature, s.top_k, s.top_p, self.generators[b])
        self.n_text[b] += 1
        if index == V:  # <imgbos>: switch to the adapter + visual head
            self._finish_text(b)
            self.mode[b], self.codes[b] = IMAGE, []
            return self._emit(b, cfg.imgbos_id)
        self.seen[b, index] = True
        if index == cfg.text_eos_id:
            self._finish_text(b)
            self.mode[b] = DONE
            return self._emit(b, index)
        self.text_ids[b].append(index)
        if self.n_text[b] >= s.max_new_tokens:
            self._finish_text(b)
            self.mode[b] = DONE
        return self._emit(b, index)

    def _emit(self, b: int, token: int) -> int:
        self.tokens[b].append(token)
        return token

    def _finish_text(self, b: int) -> None:
        if self.text_ids[b]:
            self._add_segment(b, TextSegment(self.tok.decode(self.text_ids[b])))
            self.text_ids[b] = []

    def _finish_image(self, b: int) -> None:
        codes = torch.tensor([self.codes[b]], dtype=torch.long)  # (1, N)
        pixels = self.be.vq_decode(codes)[0]  # (3, H, W)
        self._add_segment(b, ImageSegment.from_pil(pixels_to_pil(pixels), self.codes[b]))
        self.n_images[b] += 1
        self.mode[b] = TEXT if self.n_text[b] < self.s.max_new_tokens else DONE

    def _add_segment(self, b: int, segment: Segment) -> None:
        self.segments[b].append(segment)
        if self.on_segment is not None:
            self.on_segment(b, segment)

    def _metadata(self, b: int) -> ContentMetadata:
        image = self.images[b]
        image_sha = None
        if isinstance(image, Image.Image):
            image_sha = sha256_hex(png_bytes(image))
        elif isinstance(image, torch.Tensor):
            image_sha = sha256_hex(image.detach().cpu().contiguous().numpy().tobytes())
        return ContentMetadata(
            model=self.gen.model_name,
            config_hash=self.cfg.config_hash(),
            seed=self.s.seed + b,
            prompt=self.prompts[b],
            sampling=self.s.to_dict(),
            input_image_sha256=image_sha,
        )
