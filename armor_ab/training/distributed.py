"""torch.distributed for the trainer: one process per device, started by ``torchrun`` (never our own launcher).

    torchrun --nproc-per-node 2 -m armor_ab.cli train --recipe ... --stage 1      # two processes, one machine

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``init_from_env``
reads them and joins the process group: ``nccl`` with one CUDA device per process (``cuda:LOCAL_RANK``) where
CUDA is available, ``gloo`` on the CPU otherwise. Without those variables (a plain ``python`` or ``armor-ab``)
there is no process group at all and every helper here is the single-process identity, so the same code runs
both ways.

The helpers are the few collectives the trainer needs (a sum, an object gather, a barrier) and the rank-0 rule
for files: one process writes logs, checkpoints and models; the others wait at a barrier where they must read
what it wrote.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import inspect
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from armor_ab.config import env_settings

logger = logging.getLogger("armor_ab.training")

# Backend override: "gloo" (e.g. CPU processes on a machine that has CUDA) or "nccl".


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group (one process)
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True when there is a process group of more than one process."""
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        """The process that writes files (rank 0)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def init_from_env(backend: str | None = None, timeout_s: float = 1800.0) -> DistContext:
    """The process group from torchrun's environment; joined once per process (later calls return it).

    ``WORLD_SIZE`` unset or 1: no process group, rank 0 of 1 on the CPU.
    """
    if dist.is_available() and dist.is_initialized():
        return _context(dist.get_backend())
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend or env_settings().dist_backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    atexit.register(shutdown)
    ctx = _context(backend)
    logger.info(
        "process group: rank %d of %d (local rank %d), backend %s, device %s",
        ctx.rank,
        ctx.world_size,
        ctx.local_rank,
        backend,
        ctx.device,
        extra={"rank": ctx.rank, "world_size": ctx.world_size, "backend": backend},
    )
    return ctx


def _context(backend: str) -> DistContext:
    local_rank = _env_int("LOCAL_RANK", 0)
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend, device)


def context() -> DistContext:
    """The current process's context without joining anything (one process when no group exists)."""
    if dist.is_available() and dist.is_initialized():
        return _context(dist.get_backend())
    return DistContext()


def shutdown() -> None:
    """Leave the process group (registered at exit by ``init_from_env``; safe to call twice)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The sum of ``tensor`` over all processes (a new tensor on ``tensor``'s device; itself with one process)."""
    if not ctx.enabled:
        return tensor
    buffer = tensor.detach().to(ctx.device, copy=True)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.to(tensor.device)


def all_gather_object(obj: Any, ctx: DistContext) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` with one process)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        if ctx.backend == "nccl":
            dist.barrier(device_ids=[ctx.local_rank])
        else:
            dist.barrier()


@contextlib.contextmanager
def main_first(ctx: DistContext) -> Iterator[bool]:
    """Rank 0 runs the block first (writes files), the others after it (read them); yields ``ctx.is_main``."""
    if not ctx.is_main:
        barrier(ctx)
    try:
        yield ctx.is_main
    finally:
        if ctx.is_main:
            barrier(ctx)


def shard(n: int, ctx: DistContext) -> range:
    """This process's contiguous share of ``n`` items (sizes differ by at most one, rank 0 first)."""
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return range(start, start + base + (1 if ctx.rank < extra else 0))


def wrap_ddp(
    module: torch.nn.Module, ctx: DistContext, find_unused_parameters: bool = True
) -> torch.nn.Module:
    """``DistributedDataParallel`` over the parameters that require grad (frozen ones must be frozen before:
    DDP's reducer then never holds them, and they get no gradient and no all-reduce).

    ``find_unused_parameters``: for a module whose steps may leave trainable tensors out of the graph (the
    trainer's stage 0 trains the adapter with beta = 0, and the ViT sees only rows with an input picture). DDP
    then leaves a tensor that no process used without a gradient, as one process would, so AdamW skips it
    alike, and gives one that some processes used the sum of their gradients.
    Buffers (rotary tables only; none is trained) are broadcast from rank 0 once, when DDP is built, not at
    every forward.
    """
    from torch.nn.parallel import DistributedDataParallel

    kwargs: dict[str, Any] = {"find_unused_parameters": find_unused_parameters}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        kwargs["forward_sync_buffers"] = False  # torch >= 2.13 (``broadcast_buffers`` is deprecated there)
    else:
        kwargs["broadcast_buffers"] = False
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, **kwargs)


def ddp_parameter_stats(ddp: torch.nn.Module) -> dict[str, int] | None:
    """What DDP's reducer synchronises, as its own logging data reports it: tensors and bytes (None if unknown)."""
    getter = getattr(ddp, "_get_ddp_logging_data", None)
    if getter is None:
        return None
    try:
        data = getter()
        return {
            "parameter_tensors": int(data["num_parameter_tensors"]),
            "parameter_bytes": int(data["total_parameter_size_bytes"]),
        }
    except (KeyError, RuntimeError, TypeError, ValueError):
        return None
