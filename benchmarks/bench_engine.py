"""ARMOR engine benchmark: ONNX Runtime (and TensorRT where CUDA is present) vs PyTorch eager, in one run.

    .venv/bin/python benchmarks/bench_engine.py [--recipe armor_ab/assets/recipes/build/armor-demo.yaml]
        [--runs 5] [--threads 1] [--engine-root engine/build]

Model: the recipe's trained directory (armor_ab/assets/models/armor-demo) if it exists, else the named config with
random weights - the table says which. Speed does not depend on the weights: text runs ban <eos> (fixed
length), image runs force <imgbos> (one image: prefill, catch-up, N guided code steps, VQ decode).
Both backends decode greedily with the same settings, and the benchmark checks that they produce the same
tokens. Runs alternate between backends (after one warm-up each) so that load from other processes on the
machine hits both alike; the table shows medians of ``--runs`` timed runs and the ratios of those medians.

Goals (issue 5): text tokens/s ONNX Runtime >= 2x PyTorch eager; seconds per image with guidance >= 1.5x.
RSS: each backend in a fresh process (load + one text and one image generation), VmHWM and VmRSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "Write a short product description for a red running shoe."
TEXT_GOAL, IMAGE_GOAL = 2.0, 1.5


def _settings(cfg, kind: str, text_tokens: int, guidance: float = 5.0):
    from armor_ab.model import SamplingConfig

    if kind == "text":
        return SamplingConfig(
            max_new_tokens=text_tokens,
            max_images=0,
            temperature=0.0,
            text_logit_bias={cfg.text_eos_id: -1e9},
        )
    return SamplingConfig(
        max_new_tokens=1,
        max_images=1,
        temperature=0.0,
        image_temperature=0.0,
        guidance_scale=guidance,
        text_logit_bias={cfg.imgbos_id: 1e9},
    )


def _generators(args, which: list[str]):
    """name -> InterleavedGenerator for the requested backends, and (model source, random weights, config).

    The PyTorch model is only loaded when the torch baseline is requested (or an engine must be built), so an
    engine-only process holds no PyTorch weights."""
    import torch

    from armor_ab.engine.build import build_onnx, load_recipe_model
    from armor_ab.engine.build_recipe import load_recipe
    from armor_ab.engine.loader import open_engine_generator
    from armor_ab.engine.manifest import verify_engine_dir
    from armor_ab.model import InterleavedGenerator, get_config
    from armor_ab.model.configuration import ArmorConfig

    recipe = load_recipe(args.recipe)
    source, trained = recipe.model_source()
    cfg = ArmorConfig.from_pretrained(source) if trained else get_config(source)
    gens = {}
    if "torch" in which:
        loaded = load_recipe_model(recipe)
        device = torch.device(args.device)
        gens["torch"] = InterleavedGenerator.from_model(
            loaded.model.to(device), loaded.tokenizer, loaded.name
        )
    for backend, sub in (("onnxruntime", "onnx"), ("tensorrt", "tensorrt")):
        if backend not in which:
            continue
        engine = Path(args.engine_root) / recipe.name / sub
        try:
            verify_engine_dir(engine, cfg, backend=sub)
        except Exception as exc:  # noqa: BLE001 - missing or stale: build it now
            print(f"building {engine} ({exc})", file=sys.stderr)
            if backend == "onnxruntime":
                build_onnx(recipe, out_root=Path(args.engine_root))
            else:
                from armor_ab.engine.build import build_tensorrt

                build_tensorrt(recipe, out_root=Path(args.engine_root))
        gens[backend] = open_engine_generator(engine, backend, cfg, threads=args.threads)
    return gens, (source, not trained, cfg)


def timed_alternating(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    for fn in fns.values():
        fn()  # warm-up (allocations, first-call overheads)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def rss_child(args) -> None:
    """Load one backend, run one text and one image generation, print the process's memory as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    gens, _ = _generators(args, [args.rss_child])
    gen = next(iter(gens.values()))
    cfg = gen.backend.config
    gen.generate([PROMPT], settings=_settings(cfg, "text", args.text_tokens))
    gen.generate([PROMPT], settings=_settings(cfg, "image", args.text_tokens))
    status = Path("/proc/self/status").read_text()
    mem = {
        line.split(":")[0]: int(line.split()[1]) // 1024
        for line in status.splitlines()
        if line.startswith(("VmRSS", "VmHWM"))
    }
    print(
        json.dumps({"backend": args.rss_child, "rss_mib": mem.get("VmRSS"), "peak_rss_mib": mem.get("VmHWM")})
    )


def measure_rss(args, backend: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--rss-child",
        backend,
        "--recipe",
        args.recipe,
        "--threads",
        str(args.threads),
        "--engine-root",
        args.engine_root,
        "--device",
        args.device,
        "--text-tokens",
        str(args.text_tokens),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # same working directory
    if out.returncode != 0:
        return {"backend": backend, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from armor_ab.assets import build_recipe
    from armor_ab.config import DEFAULT_ENGINE_ROOT

    parser.add_argument("--recipe", default=str(build_recipe("armor-demo")))
    parser.add_argument("--engine-root", default=str(DEFAULT_ENGINE_ROOT), help="built engines (default engine/build)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads = ONNX Runtime intra-op threads"
    )
    parser.add_argument("--text-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4, help="prompts in the batched text row (info only)")
    parser.add_argument(
        "--backends", default="torch,onnxruntime", help="comma list: torch,onnxruntime,tensorrt"
    )
    parser.add_argument("--device", default="cpu", help="PyTorch device for the eager baseline")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args)
        return

    import torch

    torch.set_num_threads(args.threads)
    which = [b.strip() for b in args.backends.split(",") if b.strip()]
    gens, (source, random_weights, cfg) = _generators(args, which)
    n = cfg.codes_per_image
    weights = "RANDOM (no trained armor_ab/assets/models/armor-demo)" if random_weights else "trained"

    # Same tokens on every backend (greedy), checked once before timing.
    outputs = {}
    for name, gen in gens.items():
        text = gen.generate([PROMPT], settings=_settings(cfg, "text", args.text_tokens)).tokens
        image = gen.generate([PROMPT], settings=_settings(cfg, "image", args.text_tokens)).tokens
        outputs[name] = (text, image)
    same = {name: outputs[name] == outputs["torch"] for name in outputs if "torch" in outputs}

    def job(gen, kind: str, batch: int = 1) -> Callable[[], object]:
        s = _settings(cfg, kind, args.text_tokens)
        return lambda: gen.generate([PROMPT] * batch, settings=s)

    text_t = timed_alternating({k: job(g, "text") for k, g in gens.items()}, args.runs)
    image_t = timed_alternating({k: job(g, "image") for k, g in gens.items()}, args.runs)
    batch_t = timed_alternating({k: job(g, "text", args.batch) for k, g in gens.items()}, args.runs)
    calls = {}
    for name, gen in gens.items():  # graph calls per text token (fused decode + text head: 1)
        be = gen.backend
        if hasattr(be, "calls"):
            before = sum(be.calls.values())
            job(gen, "text")()
            calls[name] = (sum(be.calls.values()) - before) / args.text_tokens
    rss = {} if args.no_rss else {b: measure_rss(args, b) for b in gens}

    med = lambda ts: statistics.median(ts)  # noqa: E731
    figures = {
        "model": source,
        "weights": weights,
        "threads": args.threads,
        "runs": args.runs,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        "text_tokens_per_s": {k: args.text_tokens / med(v) for k, v in text_t.items()},
        "image_seconds": {k: med(v) for k, v in image_t.items()},
        "batched_text_tokens_per_s": {k: args.batch * args.text_tokens / med(v) for k, v in batch_t.items()},
        "text_seconds_all_runs": text_t,
        "image_seconds_all_runs": image_t,
        "graph_calls_per_text_token": calls,
        "identical_to_torch": same,
        "rss": rss,
    }
    rows = [
        "| metric | " + " | ".join(gens) + " | ratio vs torch | goal | result |",
        "|---|" + "---|" * len(gens) + "---|---|---|",
    ]
    for key, label, unit, goal, higher in [
        ("text_tokens_per_s", f"text, {args.text_tokens} tokens, 1 prompt", "tok/s", TEXT_GOAL, True),
        ("image_seconds", f"1 image ({n} codes, CFG 5, + VQ decode)", "s", IMAGE_GOAL, False),
        ("batched_text_tokens_per_s", f"text, {args.batch} prompts batched", "tok/s", None, True),
    ]:
        vals = figures[key]
        cells = [f"{vals[k]:.1f} {unit}" if unit == "tok/s" else f"{vals[k]:.3f} {unit}" for k in gens]
        for engine in [k for k in gens if k != "torch"]:
            if "torch" not in vals:
                continue
            ratio = vals[engine] / vals["torch"] if higher else vals["torch"] / vals[engine]
            verdict = "info" if goal is None else ("PASS" if ratio >= goal else "FAIL")
            goal_txt = "-" if goal is None else f">= {goal}x"
            rows.append(
                f"| {label} ({engine}) | " + " | ".join(cells) + f" | {ratio:.2f}x | {goal_txt} | {verdict} |"
            )
            figures.setdefault("ratios", {})[f"{key}:{engine}"] = ratio
    rss_cells = [
        f"{rss[k].get('rss_mib', '?')} MiB (peak {rss[k].get('peak_rss_mib', '?')})" if k in rss else "-"
        for k in gens
    ]
    rows.append("| process RSS after load + 1 text + 1 image | " + " | ".join(rss_cells) + " | | | info |")
    print(
        f"model: {source} - weights: {weights}; threads: {args.threads}; medians of {args.runs} runs; "
        f"{figures['machine']}"
    )
    print(f"identical greedy tokens vs torch: {same}; graph calls per text token: {calls}")
    print()
    print("\n".join(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
