"""Teacher-forced probes of the modality decision: where a model picks text or picture, and how sure it is.

Two places decide the output modality of a text prompt (see ``trainer.decision_positions``):

* ``first``: the first answer token. WoHG model: ``<imgbos>`` against the best text token; base model (stage 0,
  text only): the refusal's "I" ("I cannot draw pictures.") against the best other token.
* ``end``: right after the gold answer text of t2t / t2ti. WoHG model: ``<imgbos>`` against ``<eos>``; base model:
  the space that starts " I cannot draw pictures." against ``<eos>``.

A margin > 0 means "picture" (or the refusal). One forward pass per batch, no sampling: it isolates the decision
from everything generation adds after it, and a base model can be probed before it can draw at all.

    python -m armor_ab.training.probe --model build/train/armor-demo-v2/stage0/model --base --split heldout
    python -m armor_ab.training.probe --model armor_ab/assets/models/armor-demo --split fresh [--json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from armor_ab.model.cache import position_ids_from_valid
from armor_ab.model.modeling import ArmorForInterleavedGeneration, attention_mask_for
from armor_ab.model.tokenizer import TextTokenizer

from .data import prompt_text

TEXT_PROMPTED = ("t2t", "t2i", "t2ti")


@torch.no_grad()
def decision_margins(
    model: ArmorForInterleavedGeneration,
    tokenizer: TextTokenizer,
    samples: Sequence[dict],
    base: bool,
    batch_size: int = 64,
) -> list[dict]:
    """Per text-prompted sample: ``first`` and ``end`` margins (> 0: picture) and whether both are right."""
    cfg = model.config
    vocab = cfg.text_vocab_size
    picture_first = tokenizer.encode("I")[0] if base else vocab  # index into the text head's logits
    picture_end = tokenizer.encode(" ")[0] if base else vocab
    rows = [s for s in samples if s["task"] in TEXT_PROMPTED]
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        seqs, ends = [], []
        for sample in chunk:
            prompt = tokenizer.chat_prompt(prompt_text(sample))
            answer = [s["text"] for s in sample["segments"] if s["role"] == "assistant" and s["type"] == "text"]
            ids = prompt + (tokenizer.encode(answer[0]) if answer else [])
            seqs.append(ids)
            ends.append((len(prompt) - 1, len(ids) - 1))
        length = max(map(len, seqs))
        ids = torch.full((len(seqs), length), cfg.text_pad_id)  # (B, T)
        valid = torch.zeros((len(seqs), length), dtype=torch.bool)  # (B, T)
        for b, seq in enumerate(seqs):
            ids[b, : len(seq)] = torch.tensor(seq)
            valid[b, : len(seq)] = True
        h = model.model.language_model(
            inputs_embeds=model.embed_tokens(ids),
            attention_mask=attention_mask_for(valid),
            position_ids=position_ids_from_valid(valid),
        ).last_hidden_state  # (B, T, C)
        rows_idx = torch.arange(len(seqs))
        first = model.text_logits(h[rows_idx, torch.tensor([e[0] for e in ends])])  # (B, text_head_size)
        end = model.text_logits(h[rows_idx, torch.tensor([e[1] for e in ends])])  # (B, text_head_size)
        others = first[:, :vocab].clone()  # text tokens; the base model's "I" is not one of the others
        if base:
            others[:, picture_first] = float("-inf")
        first_margin = first[:, picture_first] - others.max(-1).values  # (B,)
        end_margin = end[:, picture_end] - end[:, tokenizer.eos_id]  # (B,)
        for sample, f, e in zip(chunk, first_margin.tolist(), end_margin.tolist(), strict=True):
            task = sample["task"]
            if task == "t2i":
                right = f > 0
            else:  # text first; then a picture (t2ti) or the end (t2t)
                right = f < 0 and (e > 0) == (task == "t2ti")
            out.append({"task": task, "template": sample["template"], "first": f, "end": e, "right": right})
    return out


def by_phrasing(margins: Sequence[dict]) -> dict[str, dict]:
    """Right / total per task and per phrasing (``task/core``: a template's first three fields)."""
    table: dict[str, dict] = {}
    for row in margins:
        for key in (row["task"], "/".join(row["template"].split("/")[:3])):
            entry = table.setdefault(key, {"right": 0, "n": 0})
            entry["right"] += int(row["right"])
            entry["n"] += 1
    return dict(sorted(table.items()))


def main(argv: Sequence[str] | None = None) -> int:
    from armor_ab.assets import training_recipe
    from armor_ab.catalog.products import load_catalog
    from armor_ab.model.loading import load_model

    from .data import build_datasets
    from .training_recipe import TrainingRecipe

    parser = argparse.ArgumentParser(prog="python -m armor_ab.training.probe", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model directory (a stage's model/ or an export)")
    parser.add_argument("--recipe", type=Path, default=training_recipe("armor-demo"))
    parser.add_argument("--split", default="heldout", choices=("train", "val", "heldout", "fresh"))
    parser.add_argument("--base", action="store_true", help="a text-only base model (stage 0): the refusal is its picture")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    args = parser.parse_args(argv)

    torch.set_num_threads(2)
    recipe = TrainingRecipe.load(args.recipe)
    samples = build_datasets(load_catalog(recipe.catalog), recipe.data)[args.split]
    loaded = load_model(args.model)
    table = by_phrasing(decision_margins(loaded.model.eval(), loaded.tokenizer, samples, args.base))
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        for key, entry in table.items():
            print(f"{key:<24} {entry['right']:>5}/{entry['n']:<5} {entry['right'] / entry['n']:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
