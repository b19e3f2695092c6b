"""Parity of an engine backend against PyTorch eager, through the step interface both implement.

``step_parity`` drives the reference ``TorchBackend`` and the candidate with the same inputs, step by step as
the generation loop does (left-padded prompt, prefill, decode steps on all rows and on a subset of rows,
adapter chunk and steps with their own cache, both heads, the ViT, the VQ decoder; then prefill, decode and
adapter again at RoPE positions ending at the model's last one, where an fp16 RoPE would drift), and returns
the largest absolute difference per graph plus the top-1 agreement of the logits. Hidden states (and the other
non-logit outputs: embeddings, image features, pixels) and logits are measured apart, each against its own
tolerance (``tolerances``; their scales differ). Inputs of each step are the reference's outputs, so
differences do not compound. ``greedy_parity`` runs a whole greedy interleaved generation (images forced by a
logit bias, classifier-free guidance on, a prompt with an input image) on both and compares the tokens and
image codes; for fp16 engines it is reported (agreement, first divergence), not required: one near-tie that
flips an argmax legitimately changes the rest of a greedy sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from armor_ab.model.cache import position_ids_from_valid
from armor_ab.model.generate import InterleavedGenerator, SamplingConfig
from armor_ab.model.modeling import ArmorForInterleavedGeneration
from armor_ab.model.steps import StepBackend, TorchBackend
from armor_ab.model.tokenizer import TextTokenizer

PROMPTS = ("a red running shoe", "a blue ceramic mug, handmade")


TOP1_MIN = 0.99  # reduced-precision engines: least top-1 agreement of every logits graph


def tolerances(recipe_tolerance: dict[str, float], precision: str) -> tuple[float, float]:
    """(hidden, logits) tolerances of a precision: the recipe's ``tolerance.<precision>`` bounds the logits,
    ``tolerance.<precision>_hidden`` the hidden states (the logits' value when the recipe does not set it)."""
    logits = float(recipe_tolerance[precision])
    return float(recipe_tolerance.get(f"{precision}_hidden", logits)), logits


@dataclass
class ParityReport:
    # graph -> max |candidate - torch| and max |torch|, hidden states (and other non-logit outputs) apart
    # from logits: each has its own scale and tolerance
    hidden_diff: dict[str, float] = field(default_factory=dict)
    hidden_ref: dict[str, float] = field(default_factory=dict)
    logits_diff: dict[str, float] = field(default_factory=dict)
    logits_ref: dict[str, float] = field(default_factory=dict)
    top1_agreement: dict[str, float] = field(default_factory=dict)  # logits graphs: share of equal argmax

    def add(self, graph: str, ref: torch.Tensor, got: torch.Tensor, logits: bool = False) -> None:
        ref, got = ref.detach().float().cpu(), got.detach().float().cpu()
        if ref.shape != got.shape:
            raise AssertionError(f"{graph}: shape {tuple(got.shape)} != reference {tuple(ref.shape)}")
        diffs, refs = (self.logits_diff, self.logits_ref) if logits else (self.hidden_diff, self.hidden_ref)
        diff = float((ref - got).abs().max()) if ref.numel() else 0.0
        diffs[graph] = max(diffs.get(graph, 0.0), diff)
        refs[graph] = max(refs.get(graph, 0.0), float(ref.abs().max()) if ref.numel() else 0.0)
        if logits:
            agree = float((ref.argmax(-1) == got.argmax(-1)).float().mean())
            self.top1_agreement[graph] = min(self.top1_agreement.get(graph, 1.0), agree)

    @property
    def max_abs_diff(self) -> dict[str, float]:
        """Per graph, the largest difference of any of its outputs (a summary; the checks keep them apart)."""
        out = dict(self.hidden_diff)
        for graph, diff in self.logits_diff.items():
            out[graph] = max(out.get(graph, 0.0), diff)
        return out

    def worst(self) -> float:
        return max(self.max_abs_diff.values())

    def failures(
        self, tolerance: float, logits_tolerance: float | None = None, relative: bool = False
    ) -> dict[str, float]:
        """Outputs over their tolerance, as ``{"graph hidden" | "graph logits": diff}``: hidden states against
        ``tolerance``, logits against ``logits_tolerance`` (default: the same); ``relative`` (fp16/bf16):
        tolerance x max(1, max |reference|) of that output."""
        logits_tolerance = tolerance if logits_tolerance is None else logits_tolerance
        out = {}
        for kind, diffs, refs, tol in (
            ("hidden", self.hidden_diff, self.hidden_ref, tolerance),
            ("logits", self.logits_diff, self.logits_ref, logits_tolerance),
        ):
            for graph, diff in diffs.items():
                if diff > tol * (max(1.0, refs[graph]) if relative else 1.0):
                    out[f"{graph} {kind}"] = diff
        return out

    def top1_failures(self, least: float = TOP1_MIN) -> dict[str, float]:
        """Logits graphs whose top-1 agreement is under ``least``, as ``{"graph top1": agreement}``."""
        return {f"{graph} top1": agree for graph, agree in self.top1_agreement.items() if agree < least}

    def to_json(self) -> dict[str, Any]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "hidden": {"max_abs_diff": self.hidden_diff, "max_abs_reference": self.hidden_ref},
            "logits": {"max_abs_diff": self.logits_diff, "max_abs_reference": self.logits_ref},
            "top1_agreement": self.top1_agreement,
        }


@torch.inference_mode()
def step_parity(model: ArmorForInterleavedGeneration, candidate: StepBackend, seed: int = 0) -> ParityReport:
    cfg = model.config
    ref = TorchBackend(model)
    g = torch.Generator().manual_seed(seed)
    report = ParityReport()
    rows, t0, max_len = 3, 9, 24
    text_ids = lambda *shape: torch.randint(0, cfg.text_vocab_size, shape, generator=g)  # noqa: E731

    # Understanding path and VQ decoder.
    pixels = torch.rand((2, 3, cfg.input_image_size, cfg.input_image_size), generator=g) * 2 - 1
    report.add("vision", ref.image_features(pixels), candidate.image_features(pixels))
    codes = torch.randint(0, cfg.num_image_codes, (2, cfg.codes_per_image), generator=g)
    report.add("vq_decode", ref.vq_decode(codes), candidate.vq_decode(codes))

    # Left-padded prompt: row 1 has 3 padding slots, row 2 has 1.
    valid = torch.ones((rows, max_len), dtype=torch.bool)
    valid[1, :3] = False
    valid[2, :1] = False
    ids = text_ids(rows, max_len)
    ids[:, t0:] = cfg.code_offset + torch.randint(0, cfg.num_image_codes, (rows, max_len - t0), generator=g)
    ref_embeds = ref.embed(ids[:, :t0])
    report.add("embed", ref_embeds, candidate.embed(ids[:, :t0]))
    for be in (ref, candidate):
        be.allocate(rows, max_len)
    key_valid = valid[:, :t0]
    positions = position_ids_from_valid(key_valid)
    h_ref = ref.prefill(ref_embeds, positions, key_valid, slice(0, rows), 0)
    report.add("prefill", h_ref, candidate.prefill(ref_embeds, positions, key_valid, slice(0, rows), 0))
    report.add("text_head", ref.text_head(h_ref[:, -1]), candidate.text_head(h_ref[:, -1]), logits=True)

    # Decode steps: all rows, then the first row alone (a slice of the cache), then the rest.
    hidden = [h_ref]  # LM outputs, in position order
    per_t: dict[int, list[torch.Tensor]] = {}
    for t, sel in [
        (t0, slice(0, rows)),
        (t0 + 1, slice(0, 1)),
        (t0 + 1, slice(1, rows)),
        (t0 + 2, slice(0, rows)),
    ]:
        kv = valid[sel, : t + 1]
        pos = position_ids_from_valid(kv)[:, t]
        h_r = ref.decode_step(ids[sel, t], pos, kv, sel, t)
        h_c = candidate.decode_step(ids[sel, t], pos, kv, sel, t)
        report.add("decode", h_r, h_c)
        report.add("decode", ref.text_head(h_r), candidate.text_head(h_c), logits=True)
        per_t.setdefault(t, []).append(h_r)
    hidden += [torch.cat(per_t[t], dim=0)[:, None] for t in sorted(per_t)]

    # Adapter: one chunk over everything so far (lazy catch-up), then one step; then the visual head.
    h_all = torch.cat(hidden, dim=1)  # (rows, t0 + steps, C)
    t1 = h_all.shape[1]
    kv = valid[:, :t1]
    pos = position_ids_from_valid(kv)
    a_ref = ref.adapter(h_all[:, : t1 - 1], pos[:, : t1 - 1], valid[:, : t1 - 1], slice(0, rows), 0)
    a_got = candidate.adapter(h_all[:, : t1 - 1], pos[:, : t1 - 1], valid[:, : t1 - 1], slice(0, rows), 0)
    report.add("adapter", a_ref, a_got)
    report.add("adapter", ref.visual_head(a_ref[:, -1]), candidate.visual_head(a_got[:, -1]), logits=True)
    a_ref = ref.adapter(h_all[:, t1 - 1 :], pos[:, t1 - 1 :], kv, slice(0, rows), t1 - 1)
    a_got = candidate.adapter(h_all[:, t1 - 1 :], pos[:, t1 - 1 :], kv, slice(0, rows), t1 - 1)
    report.add("adapter", a_ref, a_got)
    report.add("visual_head", ref.visual_head(a_ref[:, -1]), candidate.visual_head(a_ref[:, -1]), logits=True)
    report.add("adapter", ref.visual_head(a_ref[:, -1]), candidate.visual_head(a_got[:, -1]), logits=True)

    high_position_steps(report, ref, candidate, g)
    return report


def high_position_steps(
    report: ParityReport, ref: TorchBackend, candidate: StepBackend, g: torch.Generator
) -> None:
    """Prefill, decode steps and the adapter at RoPE positions that end at the model's last one
    (max_position_embeddings - 1), in a small cache: position ids are inputs of their own, independent of the
    cache slots (as if a long context had been left out). An fp16 RoPE drifts here; it stays hidden at the
    small positions above."""
    cfg = ref.config
    rows, t0, n = 2, 4, 7  # a 4-token prompt, then 3 decode steps (an odd cache: padded where rows need it)
    base = cfg.text_config.max_position_embeddings - n
    valid = torch.ones((rows, n), dtype=torch.bool)
    positions = base + position_ids_from_valid(valid)  # (rows, n): base .. max_position_embeddings - 1
    ids = torch.randint(0, cfg.text_vocab_size, (rows, n), generator=g)
    for be in (ref, candidate):
        be.allocate(rows, n)
    every = slice(0, rows)
    embeds = ref.embed(ids[:, :t0])
    h_ref = ref.prefill(embeds, positions[:, :t0], valid[:, :t0], every, 0)
    report.add("prefill", h_ref, candidate.prefill(embeds, positions[:, :t0], valid[:, :t0], every, 0))
    hidden = [h_ref]
    for t in range(t0, n):
        h_r = ref.decode_step(ids[:, t], positions[:, t], valid[:, : t + 1], every, t)
        h_c = candidate.decode_step(ids[:, t], positions[:, t], valid[:, : t + 1], every, t)
        report.add("decode", h_r, h_c)
        report.add("decode", ref.text_head(h_r), candidate.text_head(h_c), logits=True)
        hidden.append(h_r[:, None])
    h_all = torch.cat(hidden, dim=1)  # (rows, n, C)
    a_ref = ref.adapter(h_all, positions, valid, every, 0)
    a_got = candidate.adapter(h_all, positions, valid, every, 0)
    report.add("adapter", a_ref, a_got)
    report.add("adapter", ref.visual_head(a_ref[:, -1]), candidate.visual_head(a_got[:, -1]), logits=True)


def greedy_settings(config, **overrides: Any) -> SamplingConfig:
    """Greedy text and codes, two images forced by a large <imgbos> bias, guidance 3."""
    kw: dict[str, Any] = dict(
        temperature=0.0,
        image_temperature=0.0,
        max_new_tokens=8,
        max_images=2,
        guidance_scale=3.0,
        text_logit_bias={config.imgbos_id: 30.0},
    )
    return SamplingConfig(**(kw | overrides))


@torch.inference_mode()
def greedy_parity(
    model: ArmorForInterleavedGeneration,
    tokenizer: TextTokenizer,
    candidate: StepBackend,
    settings: SamplingConfig | None = None,
    reference_tokenizer: TextTokenizer | None = None,
) -> dict[str, Any]:
    """Greedy interleaved generation on both backends; returns the tokens, codes and whether they agree.

    ``tokenizer`` (byte or Hugging Face) serves the candidate; the reference uses ``reference_tokenizer`` when
    given (a build passes the model's own, and the engine's copy loaded back from its directory here)."""
    cfg = model.config
    settings = settings or greedy_settings(cfg)
    image = Image.new("RGB", (cfg.input_image_size, cfg.input_image_size), (200, 40, 40))
    images = [None, image]
    ref_tok = reference_tokenizer or tokenizer
    ref = InterleavedGenerator(TorchBackend(model), ref_tok).generate(list(PROMPTS), images, settings)
    got = InterleavedGenerator(candidate, tokenizer).generate(list(PROMPTS), images, settings)
    codes = lambda result: [[list(i.codes) for i in c.images] for c in result.contents]  # noqa: E731
    flat_r = [t for row in ref.tokens for t in row]
    flat_g = [t for row in got.tokens for t in row]
    same = sum(a == b for a, b in zip(flat_r, flat_g, strict=False))
    return {
        "identical_tokens": ref.tokens == got.tokens,
        "identical_codes": codes(ref) == codes(got),
        "token_agreement": same / max(len(flat_r), len(flat_g), 1),
        "first_divergence": [first_divergence(r, c) for r, c in zip(ref.tokens, got.tokens, strict=True)],
        "images": sum(len(c.images) for c in ref.contents),
        "tokens": sum(len(t) for t in ref.tokens),
        "reference_tokens": ref.tokens,
        "candidate_tokens": got.tokens,
    }


def first_divergence(ref: list[int], got: list[int]) -> int | None:
    """Index of the first generated token where two rows differ (or where one ends first); None if equal."""
    for i, (a, b) in enumerate(zip(ref, got, strict=False)):
        if a != b:
            return i
    return None if len(ref) == len(got) else min(len(ref), len(got))
