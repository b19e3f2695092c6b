"""Generation speed of an ARMOR model on this machine: text tokens/s and seconds per image, KV cache on/off.

    .venv/bin/python benchmarks/bench_generate.py [--model armor-demo] [--runs 5] [--threads 2]

Random weights are fine for speed: the loop does the same work whatever the weights say, because text runs
have EOS banned (fixed length) and image runs force <imgbos> (exactly one image of N codes + VQGAN decode).
Prints a markdown table of medians over ``--runs`` timed runs (after one warm-up run each).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from armor_ab.model import InterleavedGenerator, SamplingConfig, load_model

PROMPT = "Write a short product description for a red running shoe."


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up (allocations, first-call overheads)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="armor-demo")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model(args.model)
    cfg = loaded.model.config
    gen = InterleavedGenerator.from_model(loaded.model, loaded.tokenizer)
    n = cfg.codes_per_image

    def text(use_cache: bool) -> Callable[[], object]:
        s = SamplingConfig(
            max_new_tokens=args.text_tokens,
            max_images=0,
            use_cache=use_cache,
            text_logit_bias={cfg.text_eos_id: -1e9},
        )
        return lambda: gen.generate([PROMPT], settings=s)

    def image(use_cache: bool, guidance: float) -> Callable[[], object]:
        s = SamplingConfig(
            max_new_tokens=1,
            max_images=1,
            use_cache=use_cache,
            guidance_scale=guidance,
            text_logit_bias={cfg.imgbos_id: 1e9},
        )
        return lambda: gen.generate([PROMPT], settings=s)

    rows = []
    for label, fn, per in [
        (f"text, {args.text_tokens} tokens, KV cache", text(True), "tok/s"),
        (f"text, {args.text_tokens} tokens, recompute (no cache)", text(False), "tok/s"),
        (f"image ({n} codes + VQ decode), CFG 5, KV cache", image(True, 5.0), "s/image"),
        (f"image ({n} codes + VQ decode), CFG 5, recompute (no cache)", image(False, 5.0), "s/image"),
        (f"image ({n} codes + VQ decode), no CFG, KV cache", image(True, 1.0), "s/image"),
    ]:
        times = timed(fn, args.runs)
        med = statistics.median(times)
        value = args.text_tokens / med if per == "tok/s" else med
        rows.append(
            (
                label,
                f"{value:,.1f} {per}" if per == "tok/s" else f"{value:.3f} {per}",
                f"{min(times):.3f} / {med:.3f} / {max(times):.3f}",
            )
        )

    counts = loaded.model.parameter_counts()
    print(
        f"\n{args.model}: {counts['total'] / 1e6:.2f}M parameters (random weights), "
        f"torch {torch.__version__}, {args.threads} thread(s) of {os.cpu_count()} CPUs, {platform.machine()}, "
        f"median of {args.runs} runs\n"
    )
    print("| run | median | wall s min / median / max |")
    print("|---|---|---|")
    for label, value, spread in rows:
        print(f"| {label} | {value} | {spread} |")


if __name__ == "__main__":
    main()
