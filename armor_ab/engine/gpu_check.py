"""The GPU check behind ``engine/gpu_check.sh``: ARMOR on one GPU, in stages, in at most 5 minutes.

    bash engine/gpu_check.sh [--stages armor-demo,armor-1b] [--cap armor-1b=200] [--torch-cuda-compile off]
    bash engine/gpu_check.sh --dry-run          # here, on a CPU: imports, shapes, arithmetic, the carried wheels
    python -m armor_ab.engine.gpu_check [--out engine/build/gpu_check.json] [--budget-s 290] [--dry-run]

Stages, each a child process with its own time cap; ``gpu_check.json`` is rewritten after each one and each
stage rewrites its own part after every measurement, so a run cut off anywhere still reports what it measured:

    bandwidth    device-to-device copy bandwidth: (bytes read + bytes written) / time, median of 10 copies of 1 GiB
    armor-demo   the shipped armor-demo (fp32) on PyTorch eager (``TorchBackend``) and on torch-cuda
                 (``TorchCudaBackend``, CUDA graphs); step parity of both against the same model on the CPU
    armor-1b     a random-initialised armor-1b, built on the GPU in bf16 (no download), on the same two backends
    tensorrt     where ``tensorrt`` imports: build the TensorRT engines, fp16 parity and the engine benchmark,
                 one recipe at a time (a failing recipe records its error and the check goes on)
    training     a few bf16 WoHG stage-2 steps of armor-1b (``armor_ab.training.gpu_stage``)

Per model and backend: text tokens/s at batch 1 and 16 (``text_long`` tokens, <eos> banned), images/s with
classifier-free guidance 5 at batch 1 and 16 (one image per prompt, <imgbos> forced by a logit bias), pages/s
for a catalog page (150 text tokens and 2 images, batch 1), the decode step time from two text lengths,
the peak memory the CUDA allocator saw, and the memory roofline of each figure: the bytes a step must read
(weights in their dtype, the KV cache at that length) over the copy bandwidth measured in the same run.
Construction, compilation, graph capture and each shape's first call are timed on their own, never in a figure.

Exit codes: 0 ok; 1 a parity check failed; 2 a stage or recipe raised an error (in the JSON); 3 refused (no
CUDA, outside ``--dry-run``); 124 a stage ran out of its time (its partial figures are in the JSON).

Runs from the root of a checkout (``engine/gpu_check.sh`` changes there): the TensorRT stage writes engines to
``engine/build`` (``armor_ab.config.DEFAULT_ENGINE_ROOT``) and runs ``benchmarks/bench_engine.py``. Sets
``USE_HUB_KERNELS=NO`` for itself and its stages: transformers 5.25's ``from_pretrained`` would otherwise swap
layers for Hugging Face hub kernels (the ``kernels`` package and the network, neither on the lent machine).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCHMARK = Path("benchmarks") / "bench_engine.py"  # a repository file: relative to the working directory
WHEELS = Path(".whl")
WHEEL_LIST = Path("engine") / "gpu_wheels.txt"
ENGINE_ROOT = Path("engine") / "build"  # = armor_ab.config.DEFAULT_ENGINE_ROOT, without importing pydantic

BUDGET_S = 300
FP16_TOP1 = 0.99
TORCH_CUDA_TOLERANCE = 1e-2  # x max(1, max |reference|) per graph, against fp32 on the CPU (TF32 convolutions)
PROMPT = "Write a short product description for a red running shoe."
EXIT_OK, EXIT_PARITY, EXIT_ERROR, EXIT_REFUSED, EXIT_BUDGET = 0, 1, 2, 3, 124

# stage -> (cap, reserve) in seconds: a stage gets min(cap, time left - the reserves of the stages after it).
STAGES: dict[str, tuple[int, int]] = {
    "bandwidth": (15, 10),
    "armor-demo": (70, 30),
    "armor-1b": (130, 60),
    "tensorrt": (90, 0),  # only where tensorrt is installed, and only with what is left
    "training": (45, 30),
}
DRY_CAPS = {"bandwidth": 30, "armor-demo": 90, "armor-1b": 60, "tensorrt": 30, "training": 60}  # a loaded CPU

# The lent machine (/work/.library/device/KINDS.md): versions where recorded, and the names of its packages.
MACHINE_PYTHON = "3.12.3"
MACHINE_VERSIONS = {
    "torch": "2.11.0", "transformers": "5.17.0", "huggingface-hub": "1.33.0", "tokenizers": "0.23.2",
    "safetensors": "0.8.0", "numpy": "2.5.2", "onnxruntime": "1.30.0", "onnx": "1.23.1", "accelerate": "1.15.0",
    "triton": "3.6.0", "sentencepiece": "0.2.2", "tiktoken": "0.14.0", "torchvision": "0.26.0",
}  # fmt: skip
MACHINE_PACKAGES = set(
    """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
    charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
    cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax
    fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
    hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2
    joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
    markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
    mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
    nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver
    nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
    nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
    orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
    protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
    pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml
    regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
    sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate
    tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
    torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
    typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
    zipp""".split()
)
# Requirements that neither the machine nor the carried wheels satisfy, and why that is fine.
NOT_NEEDED = {
    "kernels": "only from_pretrained(use_kernels=True) needs it; the check sets USE_HUB_KERNELS=NO",
    "backports-zstd": "httpx2 imports it only where it is installed (zstd responses; no network there)",
}
MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")  # fmt: skip


def log(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# Sizes, settings and the roofline arithmetic (pure functions: the dry run checks them on a CPU)
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    text_short: int = 8  # text tokens of the short run: (long - short) steps give the decode step time
    text_long: int = 72
    batch: int = 16
    page_text: int = 150  # a catalog page: about 150 text tokens and 2 pictures
    page_images: int = 2
    guidance: float = 5.0
    max_runs: int = 3  # timed runs per figure (median), fewer when a run is long


FULL = Sizes()
DRY = Sizes(text_short=2, text_long=6, batch=2, page_text=6, max_runs=1)


def text_settings(cfg, tokens: int):
    from armor_ab.model.generate import SamplingConfig

    return SamplingConfig(max_new_tokens=tokens, max_images=0, temperature=0.0, text_logit_bias={cfg.text_eos_id: -1e9})


def image_settings(cfg, guidance: float):
    from armor_ab.model.generate import SamplingConfig

    return SamplingConfig(max_new_tokens=1, max_images=1, temperature=0.0, image_temperature=0.0,
                          guidance_scale=guidance, text_logit_bias={cfg.imgbos_id: 1e9})  # fmt: skip


def page_settings(cfg, sizes: Sizes):
    """150 text tokens and 2 images: the <imgbos> bias puts both pictures first (the same steps as a page with
    text between them), and <eos> is banned so that the text runs to its length."""
    from armor_ab.model.generate import SamplingConfig

    return SamplingConfig(max_new_tokens=sizes.page_text + sizes.page_images, max_images=sizes.page_images,
                          temperature=0.0, image_temperature=0.0, guidance_scale=sizes.guidance,
                          text_logit_bias={cfg.imgbos_id: 1e9, cfg.text_eos_id: -1e9})  # fmt: skip


def weight_bytes(model) -> dict[str, int]:
    """Bytes of the weights each kind of step reads, in the dtype they are stored in."""

    def nbytes(params) -> int:
        return sum(p.numel() * p.element_size() for p in params)

    lm = model.model.language_model
    return {
        "lm_layers": nbytes(lm.layers.parameters()) + nbytes(lm.norm.parameters()),
        "text_head": nbytes([model.lm_head.weight, model.imgbos_head.weight]),
        "adapter": nbytes(model.adapter.parameters()),
        "visual_head": nbytes(model.visual_head.parameters()),
        "embedding_row": model.config.text_config.hidden_size * model.lm_head.weight.element_size(),
        "total": nbytes(model.parameters()),
    }


class Roofline:
    """Bytes read per generation step, and the memory-bound time of a whole generation at a bandwidth.

    A step of the loop (``armor_ab.model.generate``) reads every weight it uses once, whatever the batch, and the
    KV cache of each row up to the current length:

        text step   LM layers + text head, KV of the LM                      (B rows)
        code step   LM layers + adapter + visual head, KV of LM and adapter  (2B rows with guidance)
        <imgend>    LM layers, KV of the LM                                  (B rows)

    plus, once, the prompt's prefill and, per image, the lazy catch-up chunks of the unconditional rows and the
    adapter (their weights once each). Ignored: the writes, the prefills' FLOPs, the ViT and the VQ decoder
    (compute-bound), sampling. It is a bound: a run cannot beat ``bytes / bandwidth``.
    """

    def __init__(self, model) -> None:
        cfg = model.config
        text = cfg.text_config
        self.w = weight_bytes(model)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        size = model.lm_head.weight.element_size()  # the KV cache is kept in the model's dtype
        per_layer = 2 * text.num_key_value_heads * head_dim * size  # K and V of one token in one layer
        self.kv_lm = per_layer * text.num_hidden_layers
        self.kv_adapter = per_layer * cfg.adapter_num_layers
        self.codes = cfg.codes_per_image

    def text_step(self, length: int, rows: int) -> int:
        w = self.w
        return w["lm_layers"] + w["text_head"] + rows * (w["embedding_row"] + length * self.kv_lm)

    def code_step(self, length: int, rows: int) -> int:
        w = self.w
        kv = length * (self.kv_lm + self.kv_adapter)
        return w["lm_layers"] + w["adapter"] + w["visual_head"] + rows * (w["embedding_row"] + kv)

    def lm_step(self, length: int, rows: int) -> int:
        return self.w["lm_layers"] + rows * (self.w["embedding_row"] + length * self.kv_lm)

    def generation_bytes(self, prompt: int, text_tokens: int, images: int, batch: int, guided: bool = True) -> int:
        """Bytes of one ``generate`` call: ``text_tokens`` text-head tokens (<imgbos> included), ``images``
        pictures forced first, ``batch`` prompts of ``prompt`` tokens."""
        w = self.w
        image_rows = 2 * batch if guided else batch
        total = w["lm_layers"] + w["text_head"]  # the prompt's prefill and the first text-head step
        t, left = prompt + 1, text_tokens - 1
        for _ in range(images):
            total += w["lm_layers"] * guided + w["adapter"]  # catch-up chunks: unconditional LM rows, adapter
            for _ in range(self.codes):
                total += self.code_step(t, image_rows)
                t += 1
            total += self.lm_step(t, batch)  # <imgend>, forced
            t += 1
            if left:  # the next <imgbos>, or the first text token after the last picture
                total += self.text_step(t, batch)
                t, left = t + 1, left - 1
        for _ in range(left):
            total += self.text_step(t, batch)
            t += 1
        return total

    def plan(self, prompt: int, sizes: Sizes, bandwidth: float) -> dict[str, Any]:
        """Memory-bound figures for the runs the check times, at ``bandwidth`` bytes/s."""
        b = sizes.batch

        def rate(items: int, nbytes: int) -> float:
            return items * bandwidth / nbytes

        text1 = self.generation_bytes(prompt, sizes.text_long, 0, 1)
        textb = self.generation_bytes(prompt, sizes.text_long, 0, b)
        image1 = self.generation_bytes(prompt, 1, 1, 1)
        imageb = self.generation_bytes(prompt, 1, 1, b)
        page = self.generation_bytes(prompt, sizes.page_text + sizes.page_images, sizes.page_images, 1)
        return {
            "bandwidth_bytes_per_s": bandwidth,
            "weights_bytes": self.w,
            "kv_bytes_per_token": {"lm": self.kv_lm, "adapter": self.kv_adapter},
            "bytes": {"text_batch_1": text1, f"text_batch_{b}": textb, "image_batch_1": image1,
                      f"image_batch_{b}": imageb, "page": page},  # fmt: skip
            "text_tokens_per_s": {"batch_1": rate(sizes.text_long, text1), f"batch_{b}": rate(b * sizes.text_long, textb)},
            "images_per_s": {"batch_1": rate(1, image1), f"batch_{b}": rate(b, imageb)},
            "pages_per_s": rate(1, page),
        }


# --------------------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------------------
class BackendTimeout(BaseException):
    """A backend's share of its stage ran out (a BaseException, so ``except Exception`` in library code lets
    it through)."""


class Unavailable(Exception):
    """The backend does not exist or cannot run here: recorded, not an error."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    if seconds <= 0:
        raise BackendTimeout

    def expire(signum, frame):  # noqa: ARG001
        raise BackendTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Clock:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class Recorder:
    """A stage's JSON, rewritten atomically after every measurement."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.path)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device) -> tuple[float, Any]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def copy_bandwidth(device, nbytes: int = 1 << 30, copies: int = 10) -> dict[str, Any]:
    """Device-to-device copy: (bytes read + bytes written) / time, median of ``copies`` after 3 warm-ups."""
    import torch

    src = torch.ones(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(copies):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            times.append(timed(lambda: dst.copy_(src), device)[0])
    median = statistics.median(times)
    return {
        "what": f"torch copy_ of {nbytes / 2**20:.0f} MiB on {device}: (read + written) / time, median of {copies}",
        "bytes_per_copy": nbytes,
        "seconds_median": median,
        "seconds_all": times,
        "bytes_per_s": 2 * nbytes / median,
        "gb_per_s": round(2 * nbytes / median / 1e9, 1),
    }


class _OnDevice:
    """A ``StepBackend`` that moves tensor arguments to the wrapped backend's device, so that ``step_parity``
    (whose inputs are CPU tensors, its reference a CPU model) can drive a CUDA backend."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.config = backend.config

    @property
    def device(self):
        return self.backend.device

    def __getattr__(self, name: str):
        import torch

        target = getattr(self.backend, name)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            move = lambda x: x.to(self.backend.device) if isinstance(x, torch.Tensor) else x  # noqa: E731
            return target(*map(move, args), **{k: move(v) for k, v in kwargs.items()})

        return call


def step_parity_check(reference, backend, tolerance: float) -> dict[str, Any]:
    """``step_parity`` of ``backend`` against ``reference`` (fp32 on the CPU); ok within the relative bound."""
    from armor_ab.engine.parity import step_parity

    report = step_parity(reference, _OnDevice(backend))
    failures = report.failures(tolerance, relative=True)
    top1 = min(report.top1_agreement.values(), default=1.0)
    return report.to_json() | {
        "tolerance": f"max |diff| <= {tolerance} x max(1, max |reference|) per graph; top-1 >= {FP16_TOP1}",
        "failures": failures,
        "ok": not failures and top1 >= FP16_TOP1,
    }


def _load_model(name: str, device, dry: bool):
    """(model on the device, CPU fp32 reference or None, tokenizer, info)."""
    import torch

    from armor_ab.model.tokenizer import ByteTokenizer

    if name == "armor-demo":
        from armor_ab.assets import DEMO_MODEL
        from armor_ab.model.loading import load_model

        loaded = load_model(DEMO_MODEL)  # fp32 on the CPU: the parity reference
        model = copy.deepcopy(loaded.model).to(device).eval()
        info = {"source": str(DEMO_MODEL), "random_weights": False}
        return model, loaded.model, loaded.tokenizer, info
    if name == "armor-1b":
        from armor_ab.model import get_config
        from armor_ab.model.modeling import ArmorForInterleavedGeneration

        where = torch.device("meta") if dry else device  # the dry run: shapes and bytes only
        torch.manual_seed(0)
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)  # built in bf16 directly: half the memory and time of fp32
        try:
            with where:
                model = ArmorForInterleavedGeneration(get_config("armor-1b"))
        finally:
            torch.set_default_dtype(default)
        model = model.to(torch.bfloat16).eval()
        info = {
            "source": "armor_ab.model.presets.get_config('armor-1b'), random init on the device",
            "random_weights": True,
            "tokenizer": "ByteTokenizer (speed does not depend on the text; no Qwen2.5 tokenizer is needed)",
        }
        return model, None, ByteTokenizer(), info
    raise ValueError(f"no model stage {name!r}")


def _torch_cuda_backend(model, compile_: bool):
    try:
        from armor_ab.engine.backends.torch_cuda import TorchCudaBackend
    except ImportError as exc:
        raise Unavailable(f"armor_ab.engine.backends.torch_cuda does not import: {exc}") from exc
    from .errors import BackendUnavailable

    try:
        # CUDA graphs are torch.compile's (mode="reduce-overhead"): without compile the static-cache steps run eagerly.
        return TorchCudaBackend(model, compile=compile_, cuda_graphs=compile_)
    except (BackendUnavailable, ValueError) as exc:
        raise Unavailable(str(exc)) from exc


def measure_backend(entry: dict[str, Any], gen, *, sizes: Sizes, clock: Clock, device, save: Callable[[], None],
                    per_shape_warmup: bool, roofline: Roofline | None, bandwidth: float,
                    prompt_len: int) -> dict[str, Any]:  # fmt: skip
    """The timed runs, most important first; each is skipped when its estimate does not fit the time left.

    Returns the greedy tokens of the batch-1 text run (compared across backends)."""
    cfg = gen.backend.config
    b, n = sizes.batch, cfg.codes_per_image
    runs: dict[str, Any] = entry.setdefault("runs", {})
    tokens: dict[str, Any] = {}

    def measure(key: str, prompts: int, settings, estimate: float | None) -> None:
        need = None if estimate is None else estimate * (2 if per_shape_warmup else 1)
        if need is not None and need > clock.left():
            runs[key] = {"skipped": f"would take about {need:.1f} s; {clock.left():.1f} s left"}
            save()
            return
        item: dict[str, Any] = {"prompts": prompts}
        run = lambda: gen.generate([PROMPT] * prompts, settings=settings)  # noqa: E731
        if per_shape_warmup:  # compilation / graph capture for this shape: timed apart
            item["first_call_s"] = round(timed(run, device)[0], 4)
        times = []
        while True:
            seconds, out = timed(run, device)
            times.append(seconds)
            if len(times) >= sizes.max_runs or sum(times) > 2.0 or clock.left() < 3 * seconds:
                break
        item["seconds"] = statistics.median(times)
        item["seconds_all"] = [round(t, 5) for t in times]
        item["generated_tokens"] = sum(len(t) for t in out.tokens)
        runs[key] = item
        tokens[key] = out.tokens
        entry["figures"] = figures(runs, sizes, roofline, bandwidth, prompt_len, n)
        save()

    def seconds(key: str) -> float | None:
        return runs.get(key, {}).get("seconds")

    measure("text_batch_1_short", 1, text_settings(cfg, sizes.text_short), None)
    measure("text_batch_1", 1, text_settings(cfg, sizes.text_long), None)
    step = entry.get("figures", {}).get("decode", {}).get("step_s") or (seconds("text_batch_1") or 1) / sizes.text_long
    measure("image_batch_1", 1, image_settings(cfg, sizes.guidance), 1.3 * step * (n + 2))
    code = (seconds("image_batch_1") or 1.3 * step * (n + 2)) / (n + 2)
    page = step * (sizes.page_text + sizes.page_images) + sizes.page_images * (n + 1) * code
    measure("page_batch_1", 1, page_settings(cfg, sizes), page)
    measure(f"text_batch_{b}", b, text_settings(cfg, sizes.text_long), 1.5 * (seconds("text_batch_1") or 0))
    measure(f"image_batch_{b}", b, image_settings(cfg, sizes.guidance), 2.0 * (seconds("image_batch_1") or 0))
    return tokens


def figures(runs: dict[str, Any], sizes: Sizes, roofline: Roofline | None, bandwidth: float, prompt_len: int,
            codes: int) -> dict[str, Any]:  # fmt: skip
    """Rates from the timed runs, each beside its memory roofline at the measured copy bandwidth."""
    b = sizes.batch
    sec = {k: v["seconds"] for k, v in runs.items() if "seconds" in v}
    plan = roofline.plan(prompt_len, sizes, bandwidth) if roofline is not None else None
    out: dict[str, Any] = {}

    def pair(name: str, key: str, measured: float, roof_key: tuple[str, ...]) -> None:
        row = out.setdefault(name, {})
        row[key] = measured
        if plan is not None:
            roof = plan[roof_key[0]] if len(roof_key) == 1 else plan[roof_key[0]][roof_key[1]]
            row[f"{key}_roofline"] = roof
            row[f"{key}_fraction_of_roofline"] = measured / roof

    if "text_batch_1" in sec:
        pair("text_tokens_per_s", "batch_1", sizes.text_long / sec["text_batch_1"], ("text_tokens_per_s", "batch_1"))
    if f"text_batch_{b}" in sec:
        pair("text_tokens_per_s", f"batch_{b}", b * sizes.text_long / sec[f"text_batch_{b}"],
             ("text_tokens_per_s", f"batch_{b}"))  # fmt: skip
    if "image_batch_1" in sec:
        pair("images_per_s", "batch_1", 1 / sec["image_batch_1"], ("images_per_s", "batch_1"))
    if f"image_batch_{b}" in sec:
        pair("images_per_s", f"batch_{b}", b / sec[f"image_batch_{b}"], ("images_per_s", f"batch_{b}"))
    if "page_batch_1" in sec:
        pair("pages_per_s", "batch_1", 1 / sec["page_batch_1"], ("pages_per_s",))
    if "text_batch_1" in sec and "text_batch_1_short" in sec:
        step = (sec["text_batch_1"] - sec["text_batch_1_short"]) / (sizes.text_long - sizes.text_short)
        decode: dict[str, Any] = {"step_s": step, "tokens_per_s": 1 / step if step > 0 else None,
                                  "how": "(t(text_long) - t(text_short)) / (text_long - text_short), batch 1"}  # fmt: skip
        if roofline is not None and step > 0:
            length = prompt_len + (sizes.text_short + sizes.text_long) // 2
            nbytes = roofline.text_step(length, 1)
            decode |= {"kv_length": length, "bytes_per_step": nbytes, "achieved_bytes_per_s": nbytes / step,
                       "fraction_of_copy_bandwidth": nbytes / step / bandwidth}  # fmt: skip
        out["decode"] = decode
    if "image_batch_1" in sec and roofline is not None:
        step = sec["image_batch_1"] / (codes + 2)  # an upper bound: prefill, catch-up and VQ decode included
        length = prompt_len + codes // 2
        nbytes = roofline.code_step(length, 2)
        out["code_step_with_guidance"] = {
            "step_s_upper_bound": step, "kv_length": length, "bytes_per_step": nbytes,
            "fraction_of_copy_bandwidth_lower_bound": nbytes / step / bandwidth,
        }  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------------------
# Stages (each runs in its own process: python -m armor_ab.engine.gpu_check --stage NAME ...)
# --------------------------------------------------------------------------------------------------------------
def stage_bandwidth(args, rec: Recorder) -> int:
    import torch

    device = torch.device(args.device)
    rec.data["copy"] = copy_bandwidth(device, (8 << 20) if args.dry_run else (1 << 30))
    rec.save()
    log(f"copy bandwidth on {device}: {rec.data['copy']['gb_per_s']} GB/s (read + written)")
    return EXIT_OK


def stage_model(args, rec: Recorder) -> int:
    import torch

    from armor_ab.model.steps import TorchBackend

    clock = Clock(args.cap_s - 5)  # leave time to write
    device = torch.device(args.device)
    dry, sizes = args.dry_run, (DRY if args.dry_run else FULL)
    if device.type == "cpu":
        torch.set_num_threads(1)  # a shared CPU: one thread each avoids oversubscription
    rec.data |= {"sizes": asdict(sizes), "backends": {}}
    start = time.perf_counter()
    model, reference, tokenizer, info = _load_model(args.stage, device, dry)
    rec.data["imports"] = _import_origins()  # the carried wheels, or the machine's own packages
    cfg = model.config
    prompt_len = len(tokenizer.chat_prompt(PROMPT))
    rec.data["model"] = info | {
        "name": args.stage,
        "dtype": str(next(model.parameters()).dtype),
        "device": str(next(model.parameters()).device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "codes_per_image": cfg.codes_per_image,
        "prompt_tokens": prompt_len,
        "load_s": round(time.perf_counter() - start, 2),
    }
    roofline = Roofline(model)
    bandwidth = args.copy_bw
    if not bandwidth:
        rec.data["copy"] = copy_bandwidth(device, (8 << 20) if dry else (1 << 30))
        bandwidth = rec.data["copy"]["bytes_per_s"]
    meta = next(model.parameters()).device.type == "meta"  # the dry run's armor-1b: shapes and arithmetic
    rec.data["roofline"] = roofline.plan(prompt_len, FULL if meta else sizes, bandwidth) | {
        "bandwidth_from": f"the copy bandwidth measured in this run on {device}",
        "sizes": asdict(FULL if meta else sizes),
    }
    rec.save()
    if meta:
        plan = rec.data["roofline"]
        log(f"{args.stage}: {info['source']}: weights {plan['weights_bytes']['total'] / 2**30:.2f} GiB; a text "
            f"step reads {roofline.text_step(prompt_len, 1) / 2**30:.3f} GiB, a guided code step "
            f"{roofline.code_step(prompt_len, 2) / 2**30:.3f} GiB, a page {plan['bytes']['page'] / 2**30:.1f} GiB "
            "(dry run: no generation)")  # fmt: skip
        return EXIT_OK

    rc = EXIT_OK
    eager_tokens: dict[str, Any] = {}
    for i, kind in enumerate(("torch-eager", "torch-cuda")):
        entry: dict[str, Any] = rec.data["backends"].setdefault(kind, {})
        if kind == "torch-cuda" and device.type != "cuda":
            importable = importlib.util.find_spec("armor_ab.engine.backends.torch_cuda") is not None
            entry["not_run"] = (f"not run on {device}: torch-cuda needs CUDA (its module "
                                f"{'is there' if importable else 'is not there yet'})")  # fmt: skip
            rec.save()
            continue
        if kind == "torch-eager":
            factory = lambda: TorchBackend(model)  # noqa: E731
        else:
            factory = lambda: _torch_cuda_backend(model, args.torch_cuda_compile == "on")  # noqa: E731
        share = clock.left() * (0.45 if i == 0 and device.type == "cuda" else 1.0)
        try:
            with time_limit(share):
                tokens = _run_backend(
                    entry, kind, factory, tokenizer=tokenizer, reference=reference, sizes=sizes, device=device,
                    clock=Clock(min(share, clock.left()) - 1), rec=rec, roofline=roofline, bandwidth=bandwidth,
                    prompt_len=prompt_len, name=args.stage,
                )  # fmt: skip
            if kind == "torch-eager":
                eager_tokens = tokens
            elif "text_batch_1" in tokens and "text_batch_1" in eager_tokens:
                same = tokens["text_batch_1"] == eager_tokens["text_batch_1"]
                entry["same_greedy_text_as_eager"] = same  # information: bf16 near-ties may flip
        except BackendTimeout:
            entry["timed_out"] = f"stopped after its {share:.0f} s share of the {args.cap_s:.0f} s stage"
            log(f"{args.stage} {kind}: {entry['timed_out']}")
            rc = rc or EXIT_BUDGET
        except Unavailable as exc:
            entry["not_available"] = str(exc)
            log(f"{args.stage}: {kind}: not available ({exc})")
        except Exception as exc:  # noqa: BLE001 - recorded; the other backend still runs
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc()[-4000:]
            log(f"{args.stage} {kind}: error: {entry['error']}")
            rc = EXIT_ERROR
        finally:
            if device.type == "cuda":
                entry["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
            rec.save()
    if rec.data.get("parity_failures"):
        rc = EXIT_PARITY
    return rc


def _run_backend(entry: dict[str, Any], kind: str, factory: Callable[[], Any], *, tokenizer, reference, sizes: Sizes,
                 device, clock: Clock, rec: Recorder, roofline: Roofline, bandwidth: float, prompt_len: int,
                 name: str) -> dict[str, Any]:  # fmt: skip
    """Build one backend (timed), warm it up (timed), check its parity, then the timed runs."""
    import torch

    from armor_ab.model.generate import InterleavedGenerator

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    def phase(what: str) -> None:  # where a backend that runs out of time was
        entry["phase"] = what
        rec.save()

    phase("constructing")
    built = time.perf_counter()
    backend = factory()
    entry["construct_s"] = round(time.perf_counter() - built, 3)
    entry["kind"] = getattr(backend, "kind", kind)
    cfg = backend.config
    gen = InterleavedGenerator(backend, tokenizer, name)
    phase("warm-up: the first text generation (compilation, graph capture)")
    warm = lambda: gen.generate([PROMPT], settings=text_settings(cfg, sizes.text_short))  # noqa: E731
    entry["warmup_s"] = round(timed(warm, device)[0], 3)
    phase("warm-up: the first VQ decode")
    codes = torch.zeros((1, cfg.codes_per_image), dtype=torch.long)
    entry["vq_decode_warmup_s"] = round(timed(lambda: backend.vq_decode(codes), device)[0], 3)
    if reference is not None:  # step parity against the same weights in fp32 on the CPU
        phase("step parity against fp32 on the CPU")
        entry["parity"] = step_parity_check(reference, backend, TORCH_CUDA_TOLERANCE)
        if not entry["parity"]["ok"]:
            rec.data.setdefault("parity_failures", []).append(f"{name} {kind}: step parity")
    phase("timed runs")
    tokens = measure_backend(entry, gen, sizes=sizes, clock=clock, device=device, save=rec.save,
                           per_shape_warmup=kind != "torch-eager", roofline=roofline, bandwidth=bandwidth,
                           prompt_len=prompt_len)  # fmt: skip
    phase("done")
    return tokens


def stage_tensorrt(args, rec: Recorder) -> int:
    """The TensorRT path: per recipe, build (or reuse) the ONNX engine, build the TensorRT engine (its build
    measures fp16 parity), check ONNX Runtime's CUDA EP where installed; then the engine benchmark."""
    from .backends.tensorrt import tensorrt_missing_reason

    reason = tensorrt_missing_reason()
    if reason:
        rec.data["skipped"] = f"TensorRT: {reason}"
        rec.save()
        return EXIT_OK
    import onnxruntime as ort

    from armor_ab.assets import build_recipe

    from .backends.onnxruntime import OnnxRuntimeBackend
    from .build import build_onnx, build_tensorrt, load_recipe_model
    from .build_recipe import load_recipe
    from .manifest import tool_versions, verify_engine_dir
    from .parity import step_parity

    clock = Clock(args.cap_s - 5)
    root = Path(args.engine_root)
    rec.data |= {
        "versions": tool_versions(),
        "tolerance": {
            "fp32": "max |engine - torch| <= 1e-4 on every graph",
            "fp16": "max |trt - torch| <= 2e-2 * max(1, max |torch|) per graph; top-1 agreement >= 0.99",
        },
        "recipes": {},
    }
    rc = EXIT_OK
    cuda_ep = "CUDAExecutionProvider" in ort.get_available_providers()
    for name in args.recipes.split(","):
        entry: dict[str, Any] = {}
        rec.data["recipes"][name] = entry
        t = time.monotonic()
        try:
            recipe = load_recipe(build_recipe(name))
            loaded = load_recipe_model(recipe)
            entry["model"] = {"source": loaded.name, "random_weights": loaded.random_weights}
            try:
                onnx_manifest, config = verify_engine_dir(root / name / "onnx", loaded.model.config, backend="onnx")
            except Exception:  # noqa: BLE001 - missing or stale: build
                build_onnx(recipe, out_root=root, progress=False)
                onnx_manifest, config = verify_engine_dir(root / name / "onnx", loaded.model.config, backend="onnx")
            entry["onnx_build_parity"] = onnx_manifest.parity
            trt_dir = build_tensorrt(recipe, out_root=root, progress=False)
            trt = json.loads((trt_dir / "manifest.json").read_text())
            entry["tensorrt"] = {"parity": trt["parity"], "build_seconds": trt["build"]["seconds"]}
            top1 = min(trt["parity"].get("top1_agreement", {"-": 0.0}).values())
            trt_ok = bool(trt["parity"].get("within_tolerance")) and top1 >= FP16_TOP1
            entry["tensorrt"]["ok"] = trt_ok
            if not trt_ok:
                rec.data.setdefault("parity_failures", []).append(f"tensorrt {name}: fp16 parity")
            if cuda_ep:
                be = OnnxRuntimeBackend(onnx_manifest, config, root / name / "onnx")
                rep = step_parity(loaded.model, be)
                entry["onnxruntime_cuda"] = rep.to_json() | {"ok": not rep.failures(1e-4)}
                if rep.failures(1e-4):
                    rec.data.setdefault("parity_failures", []).append(f"onnxruntime-cuda {name}: parity")
            else:
                entry["onnxruntime_cuda"] = "skipped: onnxruntime-gpu (CUDAExecutionProvider) not installed"
        except Exception as exc:  # noqa: BLE001 - one failing recipe is recorded; the next one still runs
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc()[-4000:]
            rc = EXIT_ERROR
        entry["seconds"] = round(time.monotonic() - t, 1)
        log(f"tensorrt {name}: {entry.get('error') or 'ok=' + str(entry.get('tensorrt', {}).get('ok'))} "
            f"({entry['seconds']} s)")  # fmt: skip
        rec.save()

    left = clock.left()
    if not BENCHMARK.is_file():
        rec.data["benchmark"] = {"skipped": f"{BENCHMARK} not found: run from the root of a checkout"}
    elif left > 60:
        bench_json = Path(args.out_dir) / "bench_engine_gpu.json"
        cmd = [
            sys.executable, str(BENCHMARK),
            "--backends", "torch,onnxruntime,tensorrt", "--device", "cuda", "--threads", "8",
            "--runs", str(args.bench_runs), "--engine-root", str(root), "--json", str(bench_json), "--no-rss",
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=left - 10)
            rec.data["benchmark"] = {"table": done.stdout, "returncode": done.returncode}
            if bench_json.exists():
                rec.data["benchmark"]["figures"] = json.loads(bench_json.read_text())
            if done.returncode:
                rec.data["benchmark"]["stderr_tail"] = done.stderr[-3000:]
                rc = rc or EXIT_ERROR
        except subprocess.TimeoutExpired:
            rec.data["benchmark"] = {"skipped": f"timed out after {left - 10:.0f} s"}
    else:
        rec.data["benchmark"] = {"skipped": f"only {left:.0f} s left of the stage's {args.cap_s:.0f} s"}
    rec.save()
    return EXIT_PARITY if rec.data.get("parity_failures") else rc


def run_stage(args) -> int:
    rec = Recorder(Path(args.stage_out))
    rec.data["stage"] = args.stage
    rec.save()
    run = {"bandwidth": stage_bandwidth, "armor-demo": stage_model, "armor-1b": stage_model,
           "tensorrt": stage_tensorrt}[args.stage]  # fmt: skip
    try:
        return run(args, rec)
    except Exception as exc:  # noqa: BLE001 - recorded: the driver goes on with the next stage
        rec.data["error"] = f"{type(exc).__name__}: {exc}"
        rec.data["traceback"] = traceback.format_exc()[-4000:]
        rec.save()
        log(f"stage {args.stage}: error: {rec.data['error']}")
        return EXIT_ERROR


def _import_origins() -> dict[str, str]:
    """Where the packages that matter were imported from (the carried wheels, or the machine's own)."""
    import importlib.metadata as md

    out = {}
    for module, dist in (("transformers", "transformers"), ("huggingface_hub", "huggingface-hub"),
                         ("torch", "torch"), ("pydantic", "pydantic")):  # fmt: skip
        mod = sys.modules.get(module)
        if mod is None:
            continue
        try:
            version = md.version(dist)
        except md.PackageNotFoundError:
            version = getattr(mod, "__version__", "?")
        out[module] = f"{version} ({Path(mod.__file__).parent})"
    return out


# --------------------------------------------------------------------------------------------------------------
# The driver: environment, carried wheels, stages with their caps, the report
# --------------------------------------------------------------------------------------------------------------
def environment(carried_site: str | None = None) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    env: dict[str, Any] = {
        "python": f"{platform.python_version()} ({sys.executable})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none (a CPU build of torch)",
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "carried_site": carried_site or None,  # where gpu_check.sh installed the carried wheels
        "USE_HUB_KERNELS": os.environ.get("USE_HUB_KERNELS"),
    }
    if torch.cuda.is_available():
        try:
            props = torch.cuda.get_device_properties(0)
            env["gpu"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB, {props.multi_processor_count} SMs"
        except Exception as exc:  # noqa: BLE001 - a broken driver shows in the stages; the report still starts
            env["gpu"] = f"properties unreadable: {type(exc).__name__}: {exc}"
    for dist, module in (("transformers", "transformers"), ("huggingface-hub", "huggingface_hub"),
                         ("pydantic", "pydantic"), ("onnxruntime", "onnxruntime"), ("tensorrt", "tensorrt")):  # fmt: skip
        spec = importlib.util.find_spec(module)
        if spec is None:
            env[dist] = "not installed"
            continue
        try:
            version = md.version(dist)
        except md.PackageNotFoundError:
            version = "?"
        origin = Path(spec.origin or next(iter(spec.submodule_search_locations or []), "?")).parent
        carried = env["carried_site"] and str(origin).startswith(env["carried_site"])
        env[dist] = f"{version} ({'carried: ' if carried else ''}{origin})"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi], capture_output=True, text=True, timeout=20)
            env["nvidia_smi"] = (done.stdout or done.stderr).rstrip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            env["nvidia_smi"] = f"nvidia-smi failed: {exc}"
    else:
        env["nvidia_smi"] = "nvidia-smi: not found"
    return env


def print_environment(env: dict[str, Any]) -> None:
    log(f"Python {env['python']}")
    log(f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, GPU: {env.get('gpu', 'none')}")
    for dist in ("transformers", "huggingface-hub", "pydantic", "onnxruntime"):
        log(f"{dist} {env[dist]}")
    log("TensorRT: not installed" if env["tensorrt"] == "not installed" else f"TensorRT {env['tensorrt']}")
    print(env["nvidia_smi"], file=sys.stderr, flush=True)


def read_wheel_list(path: Path = WHEEL_LIST) -> dict[str, str]:
    """engine/gpu_wheels.txt: canonical name -> pinned version (``NAME==VERSION`` lines, ``#`` comments)."""
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or any(c in version for c in "<>=!~,; "):
            raise ValueError(f"{path}:{number}: {raw!r} is not NAME==VERSION")
        key = canonicalize_name(name.strip())
        if key in pins:
            raise ValueError(f"{path}:{number}: {name.strip()} is listed twice (one version of each)")
        pins[key] = str(Version(version.strip()))
    return pins


def _machine_tags():
    from packaging import tags

    python = tuple(int(x) for x in MACHINE_PYTHON.split(".")[:2])
    return set(tags.cpython_tags(python, abis=[f"cp{python[0]}{python[1]}"], platforms=list(MANYLINUX))) | set(
        tags.compatible_tags(python, f"cp{python[0]}{python[1]}", platforms=list(MANYLINUX))
    )


def check_wheels(root: Path = Path(".")) -> dict[str, Any]:
    """The dry run's look at the carried wheels: the list parses; if .whl/ holds wheels, each is listed, fits
    cp312 manylinux x86_64, its needs are met by the carried wheels or the machine, and pip accepts them."""
    import zipfile

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    pins = read_wheel_list(root / WHEEL_LIST)
    wheels = sorted((root / WHEELS).glob("*.whl"))
    out: dict[str, Any] = {"listed": pins}
    if not wheels:
        out["fetched"] = False
        out["note"] = (f"{len(pins)} wheels listed in {WHEEL_LIST}; not fetched (no {WHEELS}/): "
                       "bash engine/fetch_gpu_wheels.sh before a device run")  # fmt: skip
        return out
    problems, notes, found = [], [], {}
    machine_tags = _machine_tags()
    env = default_environment() | {
        "python_version": "3.12", "python_full_version": MACHINE_PYTHON, "sys_platform": "linux",
        "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
        "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": "",
    }  # fmt: skip
    for wheel in wheels:
        name, version, _, wheel_tags = parse_wheel_filename(wheel.name)
        if name in found:
            problems.append(f"{name}: two wheels ({found[name]} and {version}): one version of each")
        found[name] = str(version)
        if pins.get(name) != str(version):
            problems.append(f"{wheel.name}: not in {WHEEL_LIST} (pinned: {pins.get(name, 'nothing')})")
        if not set(wheel_tags) & machine_tags:
            problems.append(f"{wheel.name}: no tag for CPython {MACHINE_PYTHON} manylinux x86_64")
        with zipfile.ZipFile(wheel) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            lines = zf.read(meta).decode().splitlines()
        for line in lines:
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            dep = canonicalize_name(req.name)
            if dep in pins:
                if not req.specifier.contains(pins[dep], prereleases=True):
                    problems.append(f"{name} needs {req}; carried: {pins[dep]}")
            elif dep in MACHINE_VERSIONS:
                if not req.specifier.contains(MACHINE_VERSIONS[dep], prereleases=True):
                    problems.append(f"{name} needs {req}; the machine has {MACHINE_VERSIONS[dep]}")
            elif dep in MACHINE_PACKAGES:
                if req.specifier:
                    notes.append(f"{name} needs {req}: on the machine, version not recorded")
            elif dep in NOT_NEEDED:
                notes.append(f"{name} lists {req}: not carried, {NOT_NEEDED[dep]}")
            else:
                problems.append(f"{name} needs {req}: neither carried nor on the machine")
    problems += [f"{name}=={v}: listed but no wheel in {WHEELS}/" for name, v in pins.items() if name not in found]
    with tempfile.TemporaryDirectory() as target:
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index", "--no-deps",
               "--ignore-installed", "--disable-pip-version-check", "--target", target, "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
               *[x for p in MANYLINUX for x in ("--platform", p)], *map(str, wheels)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    out["pip_dry_run"] = "ok" if done.returncode == 0 else (done.stderr or done.stdout)[-2000:]
    if done.returncode:
        problems.append("pip install --dry-run refused the wheels (see pip_dry_run)")
    out |= {
        "fetched": True,
        "wheels": {w.name: w.stat().st_size for w in wheels},
        "total_mib": round(sum(w.stat().st_size for w in wheels) / 2**20, 2),
        "problems": problems,
        "notes": notes,
    }
    return out


STATUS = {EXIT_OK: "ok", EXIT_BUDGET: "partial: a backend ran out of its share"}


_RUNNING: dict[str, subprocess.Popen] = {}  # the stage process of the moment, for the driver's SIGTERM handler


class _Terminated(BaseException):
    """The driver itself was told to stop (gpu_check.sh's overall timeout)."""


def _end_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_child(cmd: list[str], cap: float, env: dict[str, str] | None = None) -> tuple[int, float, bool]:
    """Run a stage in its own process group; on its cap, end the group (compile workers included). The group
    stays in this session, so a machine that ends the command's processes ends it too."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, process_group=0, env=env)
    _RUNNING["stage"] = proc
    try:
        rc = proc.wait(timeout=cap)
        return rc, time.monotonic() - start, False
    except subprocess.TimeoutExpired:
        _end_group(proc)
        return EXIT_BUDGET, time.monotonic() - start, True
    finally:
        _RUNNING.pop("stage", None)


def _on_terminate(signum, frame) -> None:  # noqa: ARG001
    proc = _RUNNING.get("stage")
    if proc is not None:
        _end_group(proc)
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ENGINE_ROOT / "gpu_check.json"))
    parser.add_argument("--budget-s", type=float, default=BUDGET_S - 10, help="seconds for all the stages")
    parser.add_argument("--dry-run", action="store_true", help="on a CPU: imports, shapes, arithmetic, wheels")
    parser.add_argument("--carried-site", default=None, help="where gpu_check.sh installed the carried wheels")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma list, in this order: " + ",".join(STAGES))
    parser.add_argument("--cap", action="append", default=[], metavar="STAGE=SECONDS", help="a stage's own cap")
    parser.add_argument("--torch-cuda-compile", choices=("on", "off"), default="on",
                        help="TorchCudaBackend(compile=...): off runs its static-cache steps eagerly, without CUDA graphs")  # fmt: skip
    parser.add_argument("--recipes", default="armor-tiny,armor-demo", help="TensorRT stage: build recipes")
    parser.add_argument("--engine-root", default=str(ENGINE_ROOT))
    parser.add_argument("--bench-runs", type=int, default=3)
    # A stage's own process (started by the driver).
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--stage-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cap-s", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--copy-bw", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", default=str(ENGINE_ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # transformers 5.25 kernelizes from_pretrained models with Hugging Face hub kernels by default (use_kernels
    # unset means on), which needs the kernels package and the network on CUDA: neither is on the lent machine,
    # and the check measures ARMOR's own layers. Stages inherit this.
    os.environ.setdefault("USE_HUB_KERNELS", "NO")
    if args.stage:
        return run_stage(args)

    started = time.monotonic()
    deadline = started + args.budget_s
    out = Path(args.out)
    env = environment(args.carried_site)
    print_environment(env)
    if not args.dry_run and not env["cuda_available"]:
        log(f"refusing to run: no CUDA device visible to torch (torch {env['torch']})")
        return EXIT_REFUSED
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "what": "engine/gpu_check.sh" + (" --dry-run (CPU: imports, shapes, arithmetic)" if args.dry_run else ""),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "budget_s": args.budget_s,
        "environment": env,
        "stages": {},
    }
    if args.dry_run:
        report["wheels"] = check_wheels()
        wheels = report["wheels"]
        if wheels["fetched"]:
            log(f"carried wheels: {len(wheels['wheels'])} in {WHEELS}/, {wheels['total_mib']} MiB; pip --dry-run "
                f"for cp312 manylinux: {'ok' if wheels['pip_dry_run'] == 'ok' else 'REFUSED'}; "
                f"problems: {wheels['problems'] or 'none'}")  # fmt: skip
        else:
            log(f"carried wheels: {wheels['note']}")
    write(out, report)

    caps = dict(DRY_CAPS) if args.dry_run else {s: float(c) for s, (c, _) in STAGES.items()}
    for item in args.cap:
        stage, _, value = item.partition("=")
        caps[stage.strip()] = float(value)
    has_trt = env["tensorrt"] != "not installed"
    chosen = {s.strip() for s in args.stages.split(",")}
    if unknown := chosen - set(STAGES):
        parser.error(f"--stages: unknown {', '.join(sorted(unknown))} (known: {', '.join(STAGES)})")
    stages = [s for s in STAGES if s in chosen]
    device = "cuda" if env["cuda_available"] and not args.dry_run else "cpu"
    rc_all: list[int] = []
    signal.signal(signal.SIGTERM, _on_terminate)
    with tempfile.TemporaryDirectory(prefix="gpu_check.") as tmp:
        try:
            _run_stages(args, report, stages, caps, has_trt, device, deadline, Path(tmp), rc_all)
        except _Terminated:  # the stage running now is ended; what it wrote is kept
            rc_all.append(EXIT_BUDGET)
            stopped = "stopped: the whole check ran out of its time"
            for name, entry in report["stages"].items():
                if "status" not in entry:
                    entry |= {"status": stopped, "result": _read(Path(tmp) / f"{name}.json")}
            log(stopped)

    parity_failures = [f for s in report["stages"].values() for f in s.get("result", {}).get("parity_failures", [])]
    if args.dry_run and report["wheels"].get("problems"):
        rc_all.append(EXIT_ERROR)
    if parity_failures or EXIT_PARITY in rc_all:
        rc = EXIT_PARITY
    elif any(r not in (EXIT_OK, EXIT_BUDGET, EXIT_PARITY) for r in rc_all):
        rc = EXIT_ERROR
    elif EXIT_BUDGET in rc_all:
        rc = EXIT_BUDGET
    else:
        rc = EXIT_OK
    report |= {"parity_failures": parity_failures, "exit_code": rc, "elapsed_s": round(time.monotonic() - started, 1)}
    write(out, report)
    print(summary(report))
    verdict = {EXIT_OK: "OK", EXIT_PARITY: "PARITY FAILED", EXIT_ERROR: "A STAGE FAILED", EXIT_BUDGET: "OVER BUDGET"}
    log(f"{verdict[rc]} (exit {rc}) in {report['elapsed_s']} s; figures in {out}")
    return rc


def _run_stages(args, report: dict[str, Any], stages: list[str], caps: dict[str, float], has_trt: bool, device: str,
                deadline: float, tmp: Path, rc_all: list[int]) -> None:  # fmt: skip
    out = Path(args.out)
    out_dir = out.parent
    for index, stage in enumerate(stages):
        if stage == "tensorrt" and not has_trt:
            report["stages"][stage] = {"status": "skipped", "reason": "TensorRT: not installed"}
            log("stage tensorrt: skipped (TensorRT: not installed)")
            continue
        later = sum(STAGES[s][1] for s in stages[index + 1 :]) if not args.dry_run else 0
        left = deadline - time.monotonic()
        cap = min(caps.get(stage, 60.0), left - later)
        entry: dict[str, Any] = {"cap_s": round(cap, 1)}
        report["stages"][stage] = entry
        if cap < 8:
            entry |= {"status": "skipped", "reason": f"no time left ({left:.0f} s, {later} s kept for later stages)"}
            rc_all.append(EXIT_BUDGET)
            write(out, report)
            continue
        stage_out = tmp / f"{stage}.json"
        if stage == "training":
            cmd = [sys.executable, "-m", "armor_ab.training.gpu_stage", "--out", str(stage_out),
                   "--max-seconds", str(max(cap - 15, 5))]  # fmt: skip
            if args.dry_run:
                cmd += ["--device", "cpu", "--config", "armor-tiny", "--rows", "2", "--prompt", "8",
                        "--steps", "1", "--warmup", "1"]  # fmt: skip
        else:
            bw = report["stages"].get("bandwidth", {}).get("result", {}).get("copy", {}).get("bytes_per_s", 0)
            cmd = [sys.executable, "-m", "armor_ab.engine.gpu_check", "--stage", stage, "--stage-out",
                   str(stage_out), "--cap-s", str(cap), "--copy-bw", str(bw), "--device", device,
                   "--torch-cuda-compile", args.torch_cuda_compile, "--recipes", args.recipes,
                   "--engine-root", args.engine_root, "--bench-runs", str(args.bench_runs),
                   "--out-dir", str(out_dir)] + (["--dry-run"] if args.dry_run else [])  # fmt: skip
        log(f"stage {stage}: cap {cap:.0f} s ({left:.0f} s left in all)")
        child_env = os.environ | {"OMP_NUM_THREADS": "1"} if device == "cpu" else None  # a shared CPU
        rc, seconds, timed_out = run_child(cmd, cap, child_env)
        result = _read(stage_out)
        if timed_out:
            status = "timed out"
        elif result.get("parity_failures"):
            status = "parity failed"
        else:
            status = STATUS.get(rc, "error")
            rc = EXIT_ERROR if rc == EXIT_PARITY else rc  # an exit 1 without a parity failure: a crash
        entry |= {"status": status, "returncode": rc, "seconds": round(seconds, 1), "result": result}
        if stage == "training" and result and not args.dry_run:
            (out_dir / "gpu_training.json").write_text(json.dumps(result, indent=2) + "\n")
        rc_all.append(rc)
        log(f"stage {stage}: {status} after {seconds:.0f} s")
        write(out, report)


def _read(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    return {}


def write(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, path)


def summary(report: dict[str, Any]) -> str:
    """The figures as one Markdown table (measured, and the memory roofline in brackets)."""

    def num(value, digits=1) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = []
    bw = report["stages"].get("bandwidth", {}).get("result", {}).get("copy", {})
    if bw:
        lines.append(f"copy bandwidth: {bw['gb_per_s']} GB/s ({bw['what']})")
    results = [report["stages"].get(m, {}).get("result", {}) for m in ("armor-demo", "armor-1b")]
    batch = next((r["sizes"]["batch"] for r in results if "sizes" in r), FULL.batch)
    head = (f"| model | backend | text tok/s b1 | text tok/s b{batch} | images/s b1 | images/s b{batch} "
            "| pages/s [roofline] | decode step ms | decode % of copy BW | peak GiB | warm-up s |")  # fmt: skip
    rows = [head, "|" + "---|" * 11]
    for model, result in zip(("armor-demo", "armor-1b"), results, strict=True):
        for kind, entry in result.get("backends", {}).items():
            note = entry.get("not_available") or entry.get("not_run") or entry.get("error")
            if note and "figures" not in entry:
                rows.append(f"| {model} | {kind} | {note[:90]} |" + " |" * 8)
                continue
            f = entry.get("figures", {})
            text, images, pages = f.get("text_tokens_per_s", {}), f.get("images_per_s", {}), f.get("pages_per_s", {})
            decode = f.get("decode", {})
            frac = decode.get("fraction_of_copy_bandwidth")
            page = f"{num(pages.get('batch_1'), 3)} [{num(pages.get('batch_1_roofline'), 2)}]" if pages else "-"
            step = decode.get("step_s")
            rows.append(
                f"| {model} | {kind} | {num(text.get('batch_1'))} | {num(text.get(f'batch_{batch}'))} "
                f"| {num(images.get('batch_1'), 3)} | {num(images.get(f'batch_{batch}'), 3)} | {page} "
                f"| {num(step * 1e3 if step else None, 2)} | {num(frac * 100 if frac else None)} "
                f"| {num(entry.get('peak_memory_gib'), 2)} | {num(entry.get('warmup_s'), 2)} |"
            )
    lines += rows if len(rows) > 2 else []
    for name, stage in report["stages"].items():
        took = f" ({stage['seconds']} s of its {stage['cap_s']} s)" if "seconds" in stage else ""
        reason = f" - {stage['reason']}" if "reason" in stage else ""
        lines.append(f"stage {name}: {stage.get('status')}{took}{reason}")
    training = report["stages"].get("training", {}).get("result", {})
    if training.get("step_s_median"):
        peak = training.get("peak_memory_gib")
        lines.append(f"training ({training['config']}, {training['device']}): {training['step_s_median']} s/step, "
                     f"{training['tokens_per_s']} tokens/s" + (f", peak {peak} GiB" if peak is not None else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - exit 1 means a parity failure: a crash of the check itself is 2
        traceback.print_exc()
        sys.exit(EXIT_ERROR)
