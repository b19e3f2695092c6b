"""A few WoHG stage-2 steps of a random-initialised ``armor-1b`` on one GPU, in bf16: the training figures of
``engine/gpu_check.sh`` (its last stage, within its own cap there).

    python -m armor_ab.training.gpu_stage --out build/gpu_training.json           # CUDA: armor-1b
    python -m armor_ab.training.gpu_stage --device cpu --config armor-tiny        # the same code, tested in CI

Stage 2 trains the new embedding rows, the adapter and the visual head (``set_wohg_stage(2)``), loss on the
visual head only, AdamW on the trainable tensors, bf16 autocast over fp32 master weights, gradient
checkpointing. Each row is a text-to-picture sequence: a prompt of text ids, ``<imgbos>``, the picture's
codes, ``<imgend>``. Records per-step wall time (median after warm-up), tokens/s, the peak memory the CUDA
allocator saw, and ``memory.estimate_stage_memory`` for the same settings next to it. ``--out`` is rewritten
after the build and after every step, and ``--max-seconds`` ends the steps early (with the ones measured), so
a run cut off by its caller still leaves figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from armor_ab.model import ArmorForInterleavedGeneration, get_config

from .batches import IGNORE, Batch
from .memory import estimate_stage_memory
from .trainer import autocast, compute_losses


def batch(config, rows: int, prompt: int, generator: torch.Generator, device) -> Batch:
    """``rows`` t2i sequences (prompt, <imgbos>, codes, <imgend>); the codes and <imgend> are the targets."""
    n = config.codes_per_image
    text = torch.randint(0, config.text_vocab_size, (rows, prompt), generator=generator)
    codes = torch.randint(0, config.num_image_codes, (rows, n), generator=generator)
    ids = torch.cat([text, torch.full((rows, 1), config.imgbos_id), codes + config.code_offset,
                     torch.full((rows, 1), config.imgend_id)], dim=1)  # (R, T)
    labels = ids.clone()
    labels[:, : prompt + 1] = IGNORE  # the prompt and <imgbos> are given, not learned
    return Batch(ids.to(device), torch.ones_like(ids, device=device), labels.to(device), None)


def run(config_name: str, device: str, steps: int, warmup: int, rows: int, prompt: int,
        out: Path | None = None, max_seconds: float | None = None) -> dict:  # fmt: skip
    started = time.monotonic()
    config = get_config(config_name)
    dev = torch.device(device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with dev:
        model = ArmorForInterleavedGeneration(config)
    model.set_wohg_stage(2)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    build_s = time.perf_counter() - t0
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.98), fused=dev.type == "cuda")
    generator = torch.Generator().manual_seed(0)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    seq_len = prompt + config.codes_per_image + 2
    estimate = estimate_stage_memory(config, 2, rows, seq_len, precision="bf16", gradient_checkpointing=True)
    figures = {
        "what": "WoHG stage 2 (new rows, adapter, visual head), random-initialised, bf16 autocast, "
                "gradient checkpointing, AdamW",
        "config": config_name,
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "rows": rows,
        "seq_len": seq_len,
        "steps_measured": 0,
        "warmup_steps": warmup,
        "build_s": round(build_s, 2),
        "step_s_all": times,
        "losses": losses,
        "estimate": estimate.to_json(),
        "versions": {"torch": torch.__version__},
    }
    _save(out, figures)
    for step in range(warmup + steps):
        if max_seconds is not None and step > warmup and time.monotonic() - started > max_seconds:
            figures["stopped_early"] = f"after {step - warmup} measured steps: --max-seconds {max_seconds:g}"
            break
        step_batch = batch(config, rows, prompt, generator, dev)
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with autocast("bf16", dev):  # the trainer's own loss: visual head only (alpha 0, beta 1)
            loss, _, _ = compute_losses(model, step_batch, alpha=0.0, beta=1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(round(time.perf_counter() - t, 4))
        losses.append(round(loss.item(), 4))
        if times:
            step_s = statistics.median(times)
            figures |= {"steps_measured": len(times), "step_s_median": round(step_s, 4),
                        "tokens_per_s": round(rows * seq_len / step_s, 1)}  # fmt: skip
        figures["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if cuda else None
        _save(out, figures)
    return figures


def _save(path: Path | None, figures: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures, indent=2) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="armor-1b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--max-seconds", type=float, default=None, help="stop the measured steps after this")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_stage: refusing to run: no CUDA device visible to torch", file=sys.stderr)
        return 3
    figures = run(args.config, args.device, args.steps, args.warmup, args.rows, args.prompt, args.out,
                  args.max_seconds)  # fmt: skip
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
