"""One training run of ``StageTrainer`` for tests/test_training_ddp.py: armor-tiny, seeded random init, in
float64 (dropout is 0 in armor-tiny), on a fixed set of samples drawn by the real ``TaskSampler``.

Started by torchrun as a module (``-m``: as a script, tests/helpers/platform.py would shadow the standard
library's ``platform``), from the repository root, one process per rank::

    OMP_NUM_THREADS=1 python -m torch.distributed.run --nproc-per-node 2 -m tests.helpers.ddp_worker --out DIR ...

or called in the test's own process (``main([...])``) for the one-process reference, without a process group.
Rank 0 writes DIR/params.pt (the final state_dict), DIR/grads.pt (the last step's gradients) and
DIR/trainable.json beside the trainer's own files (DIR/stage.json, DIR/log.jsonl, DIR/model/).
``--stop-after N`` stops the run at step N + 1, the way a machine going away does (an exception), with exit
status 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from armor_ab.assets import DEMO_CATALOG
from armor_ab.catalog import load_catalog
from armor_ab.model import ArmorForInterleavedGeneration, ByteTokenizer, get_config
from armor_ab.training.batches import Batch, PictureStore, TaskSampler, answer_picture_keys, collate
from armor_ab.training.distributed import context, init_from_env
from armor_ab.training.trainer import StageTrainer
from armor_ab.training.training_recipe import StageConfig

EXIT_STOPPED = 3
DTYPES = {"float64": torch.float64, "float32": torch.float32}


class Stopped(Exception):
    """The run stops here (``--stop-after``)."""


def samples_and_store(products_used: int = 4):
    """Four task types for a few catalog products; answer pictures get stand-in codes (no VQ needed)."""
    cfg, tok = get_config("armor-tiny"), ByteTokenizer()
    products = load_catalog(DEMO_CATALOG)[:products_used]
    samples = []
    for p in products:
        draw = {"role": "assistant", "type": "image", "image": {"product": p.id, "variant": 0}}
        samples += [
            _sample("t2t", [_user(f"Tell me about {p.name}."), _say(p.spec_line())]),
            _sample("t2i", [_user(f"Draw {p.name}."), draw]),
            _sample("t2ti", [_user(f"Describe {p.name} with a picture."), _say(p.spec_line()), draw]),
            _sample(
                "ti2t",
                [
                    {"role": "user", "type": "image", "image": {"product": p.id, "variant": 1}},
                    _user("What is this?"),
                    _say(f"This is a {p.noun}."),
                ],
            ),
        ]
    store = PictureStore(products, cfg)
    for n, key in enumerate(sorted(set(answer_picture_keys(samples)))):
        store.codes[key] = [(n * 5 + 3 * i) % cfg.num_image_codes for i in range(cfg.codes_per_image)]
    return cfg, tok, samples, store


def _user(text: str) -> dict:
    return {"role": "user", "type": "text", "text": text}


def _say(text: str) -> dict:
    return {"role": "assistant", "type": "text", "text": text}


def _sample(task: str, segments: list[dict]) -> dict:
    return {"task": task, "segments": segments}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--micro-batch-size", type=int, default=0)
    ap.add_argument("--wohg", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--switch-weight", type=float, default=1.0)
    ap.add_argument("--cfg-dropout", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stop-after", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    init_from_env()  # under torchrun: join the group (gloo on the CPU); otherwise one process, no group
    dtype = DTYPES[args.dtype]
    cfg, tok, samples, store = samples_and_store()
    torch.manual_seed(args.seed)
    model = ArmorForInterleavedGeneration(cfg).to(dtype)
    stage = StageConfig(
        stage=args.wohg,
        name="ddp-test",
        wohg=args.wohg,
        steps=args.steps,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        lr=args.lr,
        warmup=args.warmup,
        grad_clip=args.grad_clip,
        alpha=args.alpha,
        beta=args.beta,
        switch_weight=args.switch_weight,
        cfg_dropout=args.cfg_dropout,
        log_every=1,
        checkpoint_every=args.checkpoint_every,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    calls = {"n": 0}

    def collate_fn(rows) -> Batch:
        calls["n"] += 1
        if args.stop_after is not None and calls["n"] > args.stop_after:
            raise Stopped(f"stopped before step {calls['n']}")
        batch = collate(rows, tok, cfg, store)
        pixels = batch.pixel_values.to(dtype) if batch.pixel_values is not None else None
        return Batch(batch.input_ids, batch.attention_mask, batch.labels, pixels)

    sampler = TaskSampler(samples, None, seed=args.seed + 7)
    trainer = StageTrainer(model, tok, stage, sampler, collate_fn, args.out, progress=False)
    summary = trainer.run(resume=args.resume)
    if context().is_main:
        torch.save(
            {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, args.out / "params.pt"
        )
        # the last step's gradients (after DDP's reduction, and clipping if any), still on the parameters
        grads = {n: p.grad.detach().cpu().clone() for n, p in model.named_parameters() if p.grad is not None}
        torch.save(grads, args.out / "grads.pt")
        trainable = [p for p in model.parameters() if p.requires_grad]
        (args.out / "trainable.json").write_text(
            json.dumps(
                {
                    "tensors": len(trainable),
                    "bytes": sum(p.numel() * p.element_size() for p in trainable),
                    "frozen_tensors": sum(1 for p in model.parameters() if not p.requires_grad),
                }
            )
        )
    return summary


if __name__ == "__main__":
    try:
        main()
    except Stopped as exc:
        print(f"ddp_worker: {exc}", file=sys.stderr)
        sys.exit(EXIT_STOPPED)
