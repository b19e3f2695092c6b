"""Guardrails on the shipped demo model's 42 pages: pass/fail counts per check, and what checking costs.

    .venv/bin/python benchmarks/bench_guardrails.py [--runs 5] [--prompt TEMPLATE] [--json OUT] [--sheet PNG]
                                                    [--labels benchmarks/guardrails_labels.json]

Each run generates the page of every demo catalog item (the ARMOR variant of the demo experiment:
its prompt template, its seeds, batches of 4 as ``armor-ab content generate`` makes them), then runs
every check of the experiment's ``content_checks:`` policy on the 42 pages (three times, from scratch:
the median counts). Model loading (the
generator, the judge) happens once, before the first run, and is not timed. Goal (issue 19): the
checks take at most 10% of the time generating took, per run, medians over ``--runs``.

``--labels`` reads hand labels (item id -> {"acceptable": bool, "note": str}) and reports the false-
positive rate: pages a human accepts that a check fails. ``--sheet`` draws the pages (text and
pictures) into one PNG to label them from. ``--json`` writes every page's results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from armor_ab.assets import DEMO_EXPERIMENT
from armor_ab.catalog.demo import demo_items
from armor_ab.content.generate import (
    content_batches,
    load_generator,
    page_sampling,
    render_prompt,
    resolve_model,
)
from armor_ab.experiments.loader import load_experiment_file
from armor_ab.guardrails.model_context import context_for
from armor_ab.guardrails.page import Page
from armor_ab.guardrails.pipeline import check_pages, resolve_expects

BATCH = 4  # armor-ab content generate's default
CHECK_REPEATS = 3


def generate(gen, content, items, prompt_template: str):
    """The pages as `armor-ab content generate` makes them: its batches and seeds (``content_batches``), the
    generation alone (the checks are timed apart, so ``generate_batch``, which runs both, is not used)."""
    prompts = [render_prompt(prompt_template, item, "bench") for item in items]
    pages = []
    for rows in content_batches(list(range(len(items))), BATCH):
        result = gen.generate([prompts[r] for r in rows], settings=page_sampling(content, rows[0]))
        pages += result.contents
    return prompts, pages


def contact_sheet(items, pages, out: Path, columns: int = 3) -> None:
    """Each page as a tile: item, category, specs, its pictures and its text, for hand labelling."""
    tile_w, tile_h = 520, 420
    rows = (len(items) + columns - 1) // columns
    sheet = Image.new("RGB", (tile_w * columns, tile_h * rows), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (item, page) in enumerate(zip(items, pages, strict=True)):
        x, y = (n % columns) * tile_w, (n // columns) * tile_h
        draw.rectangle([x, y, x + tile_w - 1, y + tile_h - 1], outline="grey")
        head = f"{n + 1}. {item.id} [{item.category}] {', '.join(item.specs.values())}"
        draw.text((x + 6, y + 4), head[:80], fill="black")
        px = x + 6
        for image in page.images[:2]:
            pic = image.to_pil().resize((128, 128))
            sheet.paste(pic, (px, y + 22))
            px += 134
        body = "\n".join(textwrap.wrap(page.text.replace("\n", " "), 84)[:17])
        draw.text((x + 6, y + 156), body, fill="black")
    sheet.save(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default=None, help="prompt template (default: the demo experiment's ARMOR variant)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sheet", type=Path, default=None)
    ap.add_argument("--labels", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    spec = load_experiment_file(DEMO_EXPERIMENT)
    variant = next(v for v in spec.variants if v.content.source == "armor")
    content = variant.content
    if args.prompt:
        content = content.model_copy(update={"prompt": args.prompt, "expects": None})
    policy = spec.content_checks
    items = [item for item, _ in demo_items()]
    model = resolve_model(content.model)
    gen = load_generator(model)
    ctx_template = context_for(gen, model, items, policy)  # loads the judge: not timed

    gen_s, check_s, ratios = [], [], []
    verdicts: list = []
    pages = prompts = None
    for run in range(args.runs + 1):  # run 0 warms up (allocations, first-call overheads)
        start = time.perf_counter()
        prompts, pages = generate(gen, content, items, content.prompt or "")
        generated = time.perf_counter() - start
        # The checks are short next to generation, so a burst of load on this shared machine swings them
        # most: each run checks its pages CHECK_REPEATS times from scratch and keeps the median.
        times = []
        for _ in range(CHECK_REPEATS):
            ctx = dataclasses.replace(ctx_template, picture_hashes={}, cache={})  # nothing carried over
            start = time.perf_counter()
            checked = check_pages([Page.from_content(p, item, prompt, resolve_expects(content), variant.key)
                                   for p, item, prompt in zip(pages, items, prompts, strict=True)], policy, ctx)
            times.append(time.perf_counter() - start)
        checking = statistics.median(times)
        if run == 0:
            verdicts = checked
            continue
        gen_s.append(generated)
        check_s.append(checking)
        ratios.append(checking / generated)
        print(f"run {run}: generation {generated:.1f} s, checks {checking:.2f} s, ratio {checking / generated:.3f}",
              flush=True)

    per_check: dict[str, Counter] = {}
    for pc in verdicts:
        for r in pc.results:
            per_check.setdefault(r.check, Counter())[r.status] += 1
    print(f"\nprompt: {content.prompt!r}; {len(items)} pages; expects {resolve_expects(content)}")
    print("\n| check | action | pass | warn | fail |\n|---|---|---:|---:|---:|")
    for name, counts in per_check.items():
        print(f"| {name} | {getattr(policy, name).action} | {counts['pass']} | {counts['warn']} | {counts['fail']} |")
    by_verdict = Counter(pc.verdict for pc in verdicts)
    print(f"\npages by verdict: pass {by_verdict['pass']}, warn {by_verdict['warn']}, fail {by_verdict['fail']}")
    if ratios:
        print(f"\ngeneration median {statistics.median(gen_s):.1f} s, checks median {statistics.median(check_s):.2f} s, "
              f"checks / generation median {statistics.median(ratios):.3f} over {len(ratios)} runs")
        print(f"checks <= 10% of generation: {'PASS' if statistics.median(ratios) <= 0.10 else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps([{"item_id": item.id, "text": p.text, "verdict": pc.verdict,
                                          "checks": pc.to_json()}
                                         for item, p, pc in zip(items, pages, verdicts, strict=True)], indent=1))
    if args.sheet:
        contact_sheet(items, pages, args.sheet)
    if args.labels:
        label_file = json.loads(args.labels.read_text())
        labels = label_file["labels"]
        by_id = {item.id: pc for item, pc in zip(items, verdicts, strict=True)}
        accepted = [i for i, lab in labels.items() if lab["acceptable"]]
        rejected = [i for i, lab in labels.items() if not lab["acceptable"]]
        blocked = [i for i in accepted if by_id[i].verdict == "fail"]
        any_fail = [i for i in accepted if any(r.status == "fail" for r in by_id[i].results)]
        held = [i for i in accepted if by_id[i].verdict != "pass"]
        passed_bad = [i for i in rejected if by_id[i].verdict == "pass"]
        caught = [i for i in rejected if by_id[i].verdict != "pass"]
        print(f"\nhand labels ({label_file['labelled_by']}): {len(labels)} pages, {len(accepted)} acceptable, "
              f"{len(rejected)} not")
        print(f"false positives, a blocking check fails an acceptable page: {len(blocked)}/{len(accepted)} {blocked}")
        print(f"false positives, any check fails an acceptable page: {len(any_fail)}/{len(accepted)} {any_fail}")
        print(f"acceptable pages held for a human (verdict warn or fail): {len(held)}/{len(accepted)}")
        print(f"unacceptable pages held (warn or fail): {len(caught)}/{len(rejected)}; "
              f"auto-approved although unacceptable (verdict pass): {len(passed_bad)}/{len(rejected)} {passed_bad}")
        per = Counter(r.check for i in accepted for r in by_id[i].results if r.status == "fail")
        print(f"checks failing acceptable pages: {dict(per)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
