"""The modality-decision probe: its batched, padded margins are the model's own logits at the decision points."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from armor_ab.assets import DEMO_CATALOG, DEMO_MODEL
from armor_ab.catalog import load_catalog
from armor_ab.model import ArmorForInterleavedGeneration, ByteTokenizer, get_config
from armor_ab.training.data import REFUSAL, DataConfig, build_datasets, prompt_text
from armor_ab.training.probe import by_phrasing, decision_margins, main


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(3)
    model = ArmorForInterleavedGeneration(get_config("armor-tiny")).eval()
    sets = build_datasets(load_catalog(DEMO_CATALOG), DataConfig())
    samples = [s for task in ("t2t", "t2i", "t2ti") for s in [x for x in sets["heldout"] if x["task"] == task][:5]]
    return model, ByteTokenizer(), samples


def _last_logits(model, ids: list[int]) -> torch.Tensor:
    """The text-head logits after ``ids``, one unpadded sequence through ``model.forward``."""
    out = model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
    return model.text_logits(out.hidden_states[0, -1])


@pytest.mark.parametrize("base", [False, True])
def test_margins_match_an_unbatched_forward_pass(tiny, base: bool) -> None:
    model, tok, samples = tiny
    margins = decision_margins(model, tok, samples, base, batch_size=4)  # ragged batches: padding matters
    assert [m["template"] for m in margins] == [s["template"] for s in samples]
    vocab = model.config.text_vocab_size
    eye, space = tok.encode("I")[0], tok.encode(" ")[0]
    with torch.no_grad():
        for sample, m in zip(samples, margins, strict=True):
            prompt = tok.chat_prompt(prompt_text(sample))
            logits = _last_logits(model, prompt)
            if base:
                others = torch.cat([logits[:eye], logits[eye + 1 : vocab]])
                first = logits[eye] - others.max()
            else:
                first = logits[vocab] - logits[:vocab].max()  # <imgbos> against the best text token
            assert m["first"] == pytest.approx(float(first), abs=1e-4)
            answer = [s["text"] for s in sample["segments"] if s["role"] == "assistant" and s["type"] == "text"]
            if answer:
                logits = _last_logits(model, prompt + tok.encode(answer[0]))
                end = logits[space if base else vocab] - logits[tok.eos_id]
                assert m["end"] == pytest.approx(float(end), abs=1e-4)
            want_picture_first = sample["task"] == "t2i"
            if want_picture_first:
                assert m["right"] == (m["first"] > 0)
            else:
                assert m["right"] == (m["first"] < 0 and (m["end"] > 0) == (sample["task"] == "t2ti"))


def test_shipped_model_reads_held_out_requests() -> None:
    """The probe tracks the full evaluation (tests/test_demo_model.py): most held-out decisions are right."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["--model", str(DEMO_MODEL), "--json"]) == 0
    table = json.loads(buffer.getvalue())
    assert set(table) >= {"t2t", "t2i", "t2ti", "t2t/heldout/0"}
    assert all(table[t]["n"] == 168 for t in ("t2t", "t2i", "t2ti"))
    right = sum(table[t]["right"] for t in ("t2t", "t2i", "t2ti"))
    assert right / (3 * 168) >= 0.9
    assert by_phrasing([{"task": "t2t", "template": "t2t/heldout/0/1/2", "right": True}]) == {
        "t2t": {"right": 1, "n": 1},
        "t2t/heldout/0": {"right": 1, "n": 1},
    }
    assert REFUSAL.startswith("I ")  # the base probe's picture token is the refusal's first letter
